"""Poster folders / zips / tars -> dataset folder (DESIGN.md): robust parallel decode into a memory map.

Every candidate image ends up either in `images.npy` or in `dataset.json` `skipped` with a reason.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import stat
import sys
import tarfile
import threading
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import numpy as np
from PIL import Image
from tqdm import tqdm

from postergen.data.decode import decode_image
from postergen.data.labels import LabelTable, normalize_genre, parse_label_csv, poster_key, read_label_csv
from postergen.errors import UserError
from postergen.files import MARKER, check_apart, check_output_folder, mark_owned, write_atomic
from postergen.runfolder import RunLock

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_TAR_KINDS = {tarfile.FIFOTYPE: "a FIFO", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device"}


@dataclass
class PrepareConfig:
    """Settings of `postergen prepare`; each has one default, used by the CLI too."""

    size: int = 64  # short side of the output in pixels (32-512)
    aspect: str = "1:1"  # "1:1" square, "2:3" W x H = size x 1.5*size (the posters' own shape)
    fit: str = "crop"  # "crop": center crop (the seed's choice); "pad": letterbox on black
    labels: Path | None = None  # genre CSV; None: a single CSV at a source's top, else subfolder names
    use_labels: bool = True  # False: ignore CSVs and subfolders, write no genres
    genres: list[str] | None = None  # keep only posters with any of these genres; None keeps all
    min_side: int = 32  # skip images whose short side (pixels) is below this
    max_pixels: int = 40_000_000  # refuse larger images from their header, before decoding (bombs)
    workers: int = 1  # decoding processes
    holdout: float = 0.0  # percent of posters set aside, never trained on (evaluation's real set); 0: none

    @property
    def shape(self) -> tuple[int, int]:
        """Output (H, W)."""
        return (self.size, self.size) if self.aspect == "1:1" else (round(1.5 * self.size), self.size)


@dataclass
class _Source:
    path: Path
    kind: str  # "dir", "zip" or "tar" (uncompressed: its members can be read in any order)

    @property
    def label(self) -> str:
        return self.path.name


class _Archive:
    """Random access to the files of a zip or an uncompressed tar, by posix path.

    An archive may hold one name several times; like unzip and tar, the last member of a name is
    the one read, and names() lists the name once per member, so every member is accounted for.
    """

    def __init__(self, src: _Source) -> None:
        self.src = src
        self.special: list[tuple[str, str]] = []  # (name, what it is): tar FIFOs and devices, never read
        try:
            if src.kind == "zip":
                self._zip = zipfile.ZipFile(src.path)
                members = [(i.filename, i) for i in self._zip.infolist() if not i.is_dir()]
            else:
                self._tar = tarfile.open(src.path, "r:")
                everything = self._tar.getmembers()
                # links are read through to their target (extractfile does), so they are files too
                members = [(m.name, m) for m in everything if m.isfile() or m.islnk() or m.issym()]
                self.special = [(m.name, _TAR_KINDS.get(m.type, "not a regular file")) for m in everything
                                if not (m.isfile() or m.islnk() or m.issym() or m.isdir())]
        except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
            raise UserError(f"{src.path}: unreadable {src.kind} archive ({e})") from None
        self._all = sorted(name for name, _ in members)
        # A name -> member map (the last of a repeated name): TarFile.getmember scans the whole list.
        self._members = dict(members)

    def names(self) -> list[str]:
        """Every member's name, sorted; a name held twice appears twice."""
        return self._all

    def size(self, rel: str) -> int:
        """Stored (uncompressed) size in bytes, from the archive's index: nothing is read."""
        m = self._members[rel]
        return m.file_size if self.src.kind == "zip" else m.size

    def open(self, rel: str):
        return self._zip.open(rel) if self.src.kind == "zip" else self._tar.extractfile(self._members[rel])

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def close(self) -> None:
        (self._zip if self.src.kind == "zip" else self._tar).close()


@dataclass
class _Candidate:
    root: int  # index into the sources
    rel: str  # posix path inside the source
    genres: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------
# Workers (decoding itself: data/decode.py)

_WORKER: dict = {}  # per-process state set by _init_worker: config, sources, output map, open archives
_HEAD = 1 << 16  # bytes read before the rest of a large file: enough for nearly every image header


class _Skip(Exception):
    """A candidate that cannot be used: args are (reason, detail) for dataset.json's `skipped`."""


def _init_worker(cfg: PrepareConfig, sources: list[_Source], out: Path, parent: int | None = None) -> None:
    """Set up a decoding process; `parent`: prepare's pid, when this is a worker process of its own."""
    if parent is not None:
        _follow_parent(parent)
    Image.MAX_IMAGE_PIXELS = None  # bombs are refused by our own --max-pixels check, from the header
    # Workers write pixels straight into the shared memory map: only a status crosses processes.
    _WORKER.update(cfg=cfg, sources=sources, archives={}, out=np.load(out, mmap_mode="r+"))


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _follow_parent(parent: int) -> None:
    """End this worker when prepare ends, however it ends (kill -9 included): an orphan would keep its
    memory (hundreds of MB) and decode for nobody, indefinitely."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked under prepare's own SIGTERM handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; prepare stops us
    if hasattr(signal, "pthread_sigmask"):  # held while prepare forked us (_holding_stop_signals)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    _kill_on_parent_death()
    # Also where prctl is missing or fails: the parent's death reparents us (a new ppid). Its first
    # check also covers a parent that died before prctl was set.
    threading.Thread(target=_watch_parent, args=(parent, os.getppid()), daemon=True).start()


def _kill_on_parent_death() -> bool:
    """Linux: have the kernel SIGKILL this process the moment its parent exits; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        return prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                     ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, ppid: int) -> None:
    while os.getppid() == ppid and _alive(parent):
        time.sleep(0.2)
    os._exit(1)  # from this thread, mid-decode: nothing of a worker's needs cleaning up


def max_file_bytes(cfg: PrepareConfig) -> int:
    """The largest file a picture within --max-pixels can be (uncompressed 16-bit RGBA, 8 bytes a
    pixel, plus 1 MiB of metadata): larger files are skipped unread, so memory per file is bounded."""
    return cfg.max_pixels * 8 + (1 << 20)


def _check_header(head: bytes, cfg: PrepareConfig) -> None:
    """Refuse an over-large picture from its first bytes, before the rest is read into memory."""
    try:
        w, h = Image.open(io.BytesIO(head)).size
    except Exception:  # header beyond the first bytes, or not an image: the full decode says what is wrong
        return
    if w * h > cfg.max_pixels:
        raise _Skip("too-large", f"{w}x{h} pixels is above --max-pixels {cfg.max_pixels} (read from the header)")


def _read_bytes(root: int, rel: str) -> bytes:
    src: _Source = _WORKER["sources"][root]
    cfg: PrepareConfig = _WORKER["cfg"]
    if src.kind == "dir":
        # not pathlib: its parsing is 5% of a decode. O_NONBLOCK: a file swapped for a FIFO since it
        # was listed must not hang this process in open() waiting for a writer.
        fd = os.open(os.path.join(src.path, rel), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _Skip("not-a-file", "not a regular file (a FIFO, socket or device): not read")
        f, size = os.fdopen(fd, "rb"), st.st_size
    else:
        archives = _WORKER["archives"]
        if root not in archives:
            archives[root] = _Archive(src)
        size, f = archives[root].size(rel), archives[root].open(rel)
    limit = max_file_bytes(cfg)
    with f:
        if size > limit:
            raise _Skip("too-large", f"{size / 2**20:.0f} MiB file: larger than any picture within "
                                     f"--max-pixels {cfg.max_pixels} can be ({limit / 2**20:.0f} MiB)")
        data = f.read(_HEAD)
        if len(data) == _HEAD:  # a large file: look at its header before reading the rest
            _check_header(data, cfg)
            data += f.read(limit + 1 - _HEAD)
    if len(data) > limit:  # an archive index can understate a member's size
        raise _Skip("too-large", f"more than {limit / 2**20:.0f} MiB: larger than any picture within "
                                 f"--max-pixels {cfg.max_pixels} can be")
    return data


def _work(task: tuple[int, int, str]) -> tuple[str, str, bytes]:
    """Decode candidate into row `slot` of the output -> (reason or "ok", detail, content hash).

    Never raises: whatever goes wrong costs this one poster, with its reason, not the rest of a chunk.
    """
    slot, root, rel = task
    try:
        data = _read_bytes(root, rel)
    except _Skip as e:
        return e.args[0], e.args[1], b""
    except Exception as e:
        return "unreadable", f"{type(e).__name__}: {e}", b""
    try:
        reason, detail, arr = decode_image(data, _WORKER["cfg"])
    except Exception as e:  # a decoder fault (even StopIteration, which would end an imap silently)
        return "decode-error", f"{type(e).__name__}: {e}", b""
    if arr is not None:
        _WORKER["out"][slot] = arr
    return reason, detail, hashlib.blake2b(data, digest_size=16).digest()


# ---------------------------------------------------------------------------------------------
# Enumerating sources and labels (main process)

def _open_sources(paths: list[Path]) -> list[_Source]:
    sources = []
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
        if p.is_dir():
            sources.append(_Source(p.resolve(), "dir"))
        elif not p.is_file():  # a FIFO or device: even the zip/tar test would wait on it forever
            what = _special_kind(p) or "a special file"
            raise UserError(f"{p}: not a folder, a .zip or a .tar file, but {what}")
        elif zipfile.is_zipfile(p):
            sources.append(_Source(p.resolve(), "zip"))
        elif tarfile.is_tarfile(p):
            if _compressed_tar(p):
                raise UserError(f"{p}: a compressed tar cannot be read out of order; extract it "
                                f"(tar xf {p.name}) and prepare the folder, or pack it as .tar or .zip")
            sources.append(_Source(p.resolve(), "tar"))
        else:
            raise UserError(f"{p}: not a folder, a .zip or a .tar file")
    return sources


def _compressed_tar(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))  # gzip, bzip2, xz


def _list_files(src: _Source) -> tuple[list[str], list[tuple[str, str]]]:
    """-> the files (sorted; an archive's repeated name once per member) and the special files
    (FIFOs, sockets, devices: never opened, as reading one can wait forever) with what each is."""
    if src.kind != "dir":
        archive = _Archive(src)
        try:
            return archive.names(), archive.special
        finally:
            archive.close()
    files, special = [], []
    for dirpath, _, names in os.walk(src.path):
        rel_dir = Path(dirpath).relative_to(src.path)
        for n in names:
            if n != MARKER:
                rel, kind = (rel_dir / n).as_posix(), _special_kind(os.path.join(dirpath, n))
                if kind is None:
                    files.append(rel)
                else:
                    special.append((rel, kind))
    return sorted(files), sorted(special)


def _special_kind(path: str | Path) -> str | None:
    """What a non-regular file is ("a FIFO", ...), from stat (which opens nothing; links are followed),
    or None for a regular file or one stat cannot see (reading it then says what is wrong)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _is_appledouble(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _folder_genres(rels: list[str]) -> list[str | None]:
    """Genre per file from its first folder below the folders every image shares, else None."""
    dirs = [PurePosixPath(r).parts[:-1] for r in rels]
    common = 0
    if dirs:
        shortest = min(len(d) for d in dirs)
        while common < shortest and len({d[common] for d in dirs}) == 1:
            common += 1
    return [normalize_genre(d[common]) if len(d) > common else None for d in dirs]


def _find_csv(sources: list[_Source], listings: list[list[str]]) -> tuple[int, str] | None:
    found = sorted({(i, rel) for i, rels in enumerate(listings) for rel in rels
                    if rel.lower().endswith(".csv") and "/" not in rel and not _is_appledouble(rel)})
    if len(found) > 1:
        names = ", ".join(f"{sources[i].path / rel}" for i, rel in found)
        raise UserError(f"several CSV files found ({names}); choose one with --labels or use --no-labels")
    return found[0] if found else None


def _load_table(sources: list[_Source], listings: list[list[str]], cfg: PrepareConfig) -> LabelTable | None:
    if not cfg.use_labels:
        return None
    if cfg.labels is not None:
        return read_label_csv(cfg.labels)
    hit = _find_csv(sources, listings)
    if hit is None:
        return None
    root, rel = hit
    src = sources[root]
    if src.kind != "dir":
        archive = _Archive(src)
        try:
            return parse_label_csv(src.path / rel, archive.read(rel))
        finally:
            archive.close()
    return read_label_csv(src.path / rel)


def _collect(sources: list[_Source], cfg: PrepareConfig):
    """-> candidates (labelled), skipped entries, count of non-image files, label origin."""
    listings = [_list_files(s) for s in sources]
    table = _load_table(sources, [files for files, _ in listings], cfg)
    candidates, skipped, other = [], [], 0
    for root, (rels, special) in enumerate(listings):
        images, others = _triage(sources, root, rels, special, skipped)
        other += others
        folder = _folder_genres(images) if cfg.use_labels and table is None else [None] * len(images)
        for rel, g in zip(images, folder):
            candidates.append(_Candidate(root, rel, {g} if g else set()))
    origin = "none"
    if table is not None:
        origin = f"csv:{table.path}"
        skipped.extend(table.dropped)
        _apply_table(candidates, table, sources, skipped)
    elif any(c.genres for c in candidates):
        origin = "subfolders"
    return candidates, skipped, other, origin


def _triage(sources: list[_Source], root: int, rels: list[str], special: list[tuple[str, str]],
            skipped: list[dict]) -> tuple[list[str], int]:
    """One source's listing -> its images to decode (each name once) and its count of non-image
    files; every other file with an image extension is added to `skipped` with its reason."""
    images, other = [], 0
    for rel, kind in special:
        if PurePosixPath(rel).suffix.lower() in IMAGE_EXTS:
            skipped.append(_skip(sources, root, rel, "not-a-file", f"{kind}, not a regular file: not read"))
        else:
            other += 1
    for i, rel in enumerate(rels):
        if PurePosixPath(rel).suffix.lower() not in IMAGE_EXTS:
            other += 1
        elif _is_appledouble(rel):
            skipped.append(_skip(sources, root, rel, "appledouble", "macOS metadata file, not an image"))
        elif i and rels[i - 1] == rel:  # sorted: the same name again, another member of an archive
            skipped.append(_skip(sources, root, rel, "duplicate-member", "the archive holds several members "
                                 "of this name; the last one is read, as unzip and tar would extract it"))
        else:
            images.append(rel)
    return images, other


def _apply_table(candidates: list[_Candidate], table: LabelTable, sources, skipped: list[dict]) -> None:
    matched = set()
    for c in candidates:
        key = poster_key(PurePosixPath(c.rel).stem)
        if key in table.genres:
            c.genres = set(table.genres[key])
            matched.add(key)
    for key in table.genres.keys() - matched:
        skipped.append({"path": f"{key}.jpg", "reason": "missing-file",
                        "detail": f"listed in {table.path.name} but no image with this id was found"})


def _skip(sources: list[_Source], root: int, rel: str, reason: str, detail: str) -> dict:
    return {"path": _source_name(sources, root, rel), "reason": reason, "detail": detail}


def _source_name(sources: list[_Source], root: int, rel: str) -> str:
    return rel if len(sources) == 1 else f"{sources[root].label}/{rel}"


def _select_genres(candidates: list[_Candidate], wanted: list[str] | None) -> tuple[list[_Candidate], int]:
    if wanted is None:
        return candidates, 0
    known = sorted(set().union(*(c.genres for c in candidates)))
    if not known:
        raise UserError("--genres needs genre labels, but no CSV or genre subfolders were found")
    want = {normalize_genre(g) for g in wanted}
    unknown = sorted(want - set(known))
    if unknown:
        raise UserError(f"unknown genre {', '.join(unknown)}; known: {', '.join(known)}")
    kept = [c for c in candidates if c.genres & want]
    return kept, len(candidates) - len(kept)


# ---------------------------------------------------------------------------------------------
# Writing the dataset folder

def _check_out(out: Path, force: bool, sources: list[Path], labels: Path | None) -> None:
    """Before any work: the output must not touch a source, and --force replaces only a dataset
    folder postergen made (its marker file), never a source, an arbitrary folder or a file."""
    check_apart(out, sources + ([labels] if labels is not None else []))
    check_output_folder(out, "dataset", force, "dataset")


def _preallocate(path: Path) -> None:
    """Reserve the memory map's blocks now: a full disk is then one error here, before decoding, not
    a SIGBUS in whichever process first writes to a page the file system cannot back."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            os.posix_fallocate(f.fileno(), 0, size)
            return
        except (AttributeError, OSError) as e:  # no fallocate here (macOS, some network file systems)
            if isinstance(e, OSError) and e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        zeros = bytes(1 << 22)
        for offset in range(0, size, len(zeros)):  # writing the blocks reserves them just as well
            f.write(zeros[:min(len(zeros), size - offset)])
        f.flush()


def _shrink_npy(path: Path, count: int, item_shape: tuple[int, ...]) -> None:
    """Rewrite the .npy header for `count` rows and cut the file: no copy of the pixels."""
    with open(path, "r+b") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        old_len = f.tell()
        buf = io.BytesIO()
        header = {"descr": "|u1", "fortran_order": False, "shape": (count, *item_shape)}
        np.lib.format.write_array_header_1_0(buf, header)
        new = buf.getvalue()
        if len(new) != old_len:  # numpy pads headers to allow this; guard anyway
            new = new[:-1].ljust(old_len - 1) + b"\n"
        f.seek(0)
        f.write(new)
        f.truncate(old_len + count * int(np.prod(item_shape)))
        f.flush()
        os.fsync(f.fileno())


def _decode_all(todo: list[_Candidate], sources: list[_Source], cfg: PrepareConfig, tmp: Path):
    """Decode into tmp/images.npy (row i = candidate i), then close the gaps skips left.

    Returns the kept candidates in output order, the skipped entries and the upscaled entries.
    Every candidate ends as exactly one of kept or skipped (checked: nothing is dropped silently).
    """
    H, W = cfg.shape
    path = tmp / "images.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(todo), 3, H, W)).flush()
    _preallocate(path)
    kept_slots: list[int] = []
    skipped: list[dict] = []
    upscaled: list[dict] = []
    first_of: dict[bytes, int] = {}
    tasks = [(i, c.root, c.rel) for i, c in enumerate(todo)]
    pool = None
    done = 0
    try:
        if cfg.workers > 1:  # an Executor, not mp.Pool: a worker that dies raises here instead of hanging
            pool = ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context(), initializer=_init_worker,
                                       initargs=(cfg, sources, path, os.getpid()))
            with _holding_stop_signals():  # the workers start in map()
                results = pool.map(_work, tasks, chunksize=128)
        else:
            _init_worker(cfg, sources, path)
            results = map(_work, tasks)
        for slot, (reason, detail, digest) in enumerate(tqdm(results, total=len(todo), unit="img",
                                                              desc="prepare", disable=None, smoothing=0.1)):
            done += 1
            c = todo[slot]
            if reason != "ok":
                skipped.append(_skip(sources, c.root, c.rel, reason, detail))
            elif digest in first_of:
                first = todo[first_of[digest]]
                first.genres |= c.genres  # the same poster in two genre folders is one multi-genre poster
                skipped.append(_skip(sources, c.root, c.rel, "duplicate",
                                     f"same bytes as {_source_name(sources, first.root, first.rel)}"))
            else:
                first_of[digest] = slot
                kept_slots.append(slot)
                if detail:
                    upscaled.append({"path": _source_name(sources, c.root, c.rel), "detail": detail})
    except BrokenProcessPool:
        raise UserError(f"a decoding process died after {done} of {len(todo)} images (out of memory?); "
                        "nothing was written. Try fewer --workers") from None
    finally:
        if pool:
            _stop_pool(pool)
        _WORKER.clear()
    if done != len(todo):  # a bug, never a user error: refuse to write a dataset that lost posters
        raise RuntimeError(f"prepare accounted for {done} of {len(todo)} images; nothing was written")
    _compact(path, kept_slots, (3, H, W))
    return [todo[i] for i in kept_slots], skipped, upscaled


@contextmanager
def _holding_stop_signals():
    """Hold Ctrl-C and SIGTERM while workers are forked: one that reached a worker before it set its
    own handlers (_follow_parent) would run prepare's there, with a traceback. Delivered on exit."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, a job scheduler, a closing session) stops prepare as Ctrl-C does: workers stopped,
    temporary folder and lock removed, one line and a non-zero exit, instead of an instant death."""
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shut down now: on an error or Ctrl-C the queued chunks are cancelled and running ones killed."""
    procs = list(getattr(pool, "_processes", {}).values())  # no public terminate before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join()


def _compact(path: Path, kept_slots: list[int], item_shape: tuple[int, ...]) -> None:
    """Move kept rows forward over the skipped ones (in place, in order), then cut the file."""
    mm = np.load(path, mmap_mode="r+")
    for i, slot in enumerate(kept_slots):
        if slot != i:
            mm[i] = mm[slot]
    mm.flush()
    del mm
    _shrink_npy(path, len(kept_slots), item_shape)


def _write_meta(tmp: Path, kept: list[_Candidate], sources: list[_Source], cfg: PrepareConfig,
                skipped: list[dict], upscaled: list[dict], extra: dict) -> dict:
    names = sorted(set().union(*(c.genres for c in kept))) if kept else []
    col = {g: j for j, g in enumerate(names)}
    labels = np.zeros((len(kept), len(names)), dtype=np.uint8)
    for i, c in enumerate(kept):
        labels[i, [col[g] for g in c.genres]] = 1
    np.save(tmp / "labels.npy", labels)
    counts = labels.sum(0).tolist()
    held = holdout_indices(labels, cfg.holdout)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    meta = {
        "format": "postergen-dataset/1",
        "count": len(kept),
        "size": list(cfg.shape),
        "genres": [{"name": g, "count": int(n)} for g, n in zip(names, counts)],
        "sources": [_source_name(sources, c.root, c.rel) for c in kept],
        "skipped": skipped,
        "upscaled": upscaled,  # kept, but smaller than the output: enlarged (may look soft)
        **({"holdout": {"percent": cfg.holdout, "seed": HOLDOUT_SEED, "by": "genre combination",
                        "indices": held}} if held else {}),
        "prepare": {**settings, "roots": [str(s.path) for s in sources], **extra},
    }
    mark_owned(tmp, "dataset")
    # dataset.json is written last and fsynced: a folder without it is not a dataset.
    write_atomic(tmp / "dataset.json", json.dumps(meta, indent=1), durable=True)
    return meta


HOLDOUT_SEED = 0  # the held-out slice is a function of the posters and their genres alone


def holdout_indices(labels: np.ndarray, percent: float, seed: int = HOLDOUT_SEED) -> list[int]:
    """round(percent% of N) poster indices (at least 1 when percent > 0, never all), ascending, stratified
    by genre combination: posters sorted by (label row, a seeded shuffle), then every (N/k)-th taken, so
    each combination gives its share (rounded) and which of its posters is seeded."""
    n = len(labels)
    if percent <= 0 or n < 2:
        return []
    k = min(n - 1, max(1, round(n * percent / 100)))
    shuffled = np.random.default_rng(seed).permutation(n)
    rows = np.array([labels[i].tobytes() for i in shuffled], dtype=object)
    order = shuffled[np.argsort(rows, kind="stable")]  # by genre combination, shuffled within each
    picks = ((np.arange(k) + 0.5) * n / k).astype(np.int64)  # evenly spaced: proportional per combination
    return sorted(int(i) for i in order[picks])


def prepare(paths: list[Path], out: Path, cfg: PrepareConfig, force: bool = False) -> dict:
    """Build the dataset folder `out` from poster folders, zips and tars; returns its dataset.json content.

    Nothing is written until the new dataset is complete; it then replaces `out` in one rename. On
    any failure (a full disk, Ctrl-C or SIGTERM included) the temporary folder is removed and `out` is
    as it was. One prepare at a time writes a given `out`: a second one is refused with one line.
    """
    t0 = time.perf_counter()
    _check_out(out, force, list(paths), cfg.labels)
    sources = _open_sources(paths)
    candidates, skipped, other, origin = _collect(sources, cfg)
    if not candidates:
        raise UserError(f"no images found in {', '.join(str(p) for p in paths)}")
    todo, filtered = _select_genres(candidates, cfg.genres)
    info = {"labels_from": origin, "filtered_by_genre": filtered, "non_image_files": other}
    with _sigterm_as_interrupt():
        lock, ok = _lock_output(out), False
        try:
            # again, now that no other prepare can write `out`: one may have finished since the first check
            check_output_folder(out, "dataset", force, "dataset")
            _remove_stale(out.parent)
            meta = _build(todo, sources, cfg, out, force, skipped, info, t0)
            ok = True
        finally:
            _unlock_output(lock, failed=not ok)
    return meta


def _build(todo: list[_Candidate], sources: list[_Source], cfg: PrepareConfig, out: Path, force: bool,
           skipped: list[dict], info: dict, t0: float) -> dict:
    """Decode into a temporary folder beside `out` and swap it in; on any failure it is removed."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        kept, bad, upscaled = _decode_all(todo, sources, cfg, tmp)
        skipped.extend(bad)
        if not kept:
            reasons = sorted({s["reason"] for s in bad})
            raise UserError(f"no usable images: all {len(todo)} were skipped ({', '.join(reasons)})")
        extra = {**info, "seconds": round(time.perf_counter() - t0, 3)}
        meta = _write_meta(tmp, kept, sources, cfg, skipped, upscaled, extra)
        _replace(tmp, out, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        kept_old = " (the existing dataset is unchanged)" if out.is_dir() and any(out.iterdir()) else ""
        raise UserError(f"{out}: {e.strerror or e} while writing; nothing was written{kept_old}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _lock_output(out: Path) -> RunLock:
    """Hold `out` for this process as a trainer holds its run folder (RunLock, which also creates `out`):
    a second prepare into it stops at once, with one line naming this one's pid.

    The lock file lies beside `out` (`.NAME.lock`), not in it: `out` is replaced whole by the final
    rename. Its holder removes it when done, so a taker checks that the file it locked is still the
    one at that path; if not, it locked a removed file, and takes the new one.
    """
    # what RunLock uses of a RunFolder: the folder (created if missing) and the file it locks
    spot = SimpleNamespace(path=out, lock_file=out.parent / f".{out.name}.lock")
    created = not out.exists()
    for _ in range(100):
        lock = RunLock(spot)
        lock.created = created  # after a failure RunLock removes `out` only if it made it, and it is empty
        if lock.fd is None or _same_file(lock.fd, spot.lock_file):
            return lock
        lock.release()
    raise UserError(f"{out}: could not take its lock {spot.lock_file}; try again")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _unlock_output(lock: RunLock, failed: bool) -> None:
    if lock.fd is not None:
        try:
            lock.run.lock_file.unlink(missing_ok=True)  # while still held: see _lock_output
        except OSError:  # left behind it is harmless: the next prepare takes and removes it
            pass
    lock.release(failed)


_TMP_FOLDER = re.compile(r"^\..+\.tmp-(\d+)$")  # prepare's temporary folders: .NAME.tmp-PID


def _remove_stale(folder: Path) -> None:
    """Remove the temporary folders of prepare runs into `folder` that were killed (their process is
    gone), saying so: each can be as large as a dataset."""
    for tmp in folder.glob(".*.tmp-*"):
        m = _TMP_FOLDER.match(tmp.name)
        if not m or tmp.is_symlink() or not tmp.is_dir():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _alive(pid) or not ((tmp / "images.npy").exists() or (tmp / MARKER).exists()):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            print(f"note: removed {tmp}, left by a prepare that was stopped (pid {pid})", file=sys.stderr)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (ended, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # exists, but another user's; or no such pid can exist: keep its files
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # Linux; elsewhere a zombie counts as alive
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _replace(tmp: Path, out: Path, force: bool) -> None:
    """Swap the finished folder into place; the old dataset is removed only after the swap.

    `out` is checked again first: the lock keeps other prepares out, but not a process that does not
    take it (a copy, another machine on a network share), and its dataset must not be replaced.
    """
    try:
        replacing = check_output_folder(out, "dataset", force, "dataset")
    except UserError as e:
        raise UserError(f"{e} (it was written while this prepare ran; nothing was written)") from None
    if not replacing:
        # rename(2) replaces an empty folder (the lock's, or one the user made for us) and fails on a
        # non-empty one, so a dataset written since the check is not replaced either
        if os.name == "nt" and out.is_dir():  # Windows renames onto no folder at all
            out.rmdir()
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
