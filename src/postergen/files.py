"""Writing files and folders without losing data (docs/faults.md).

Every file postergen writes goes to a hidden temporary name beside its target and is renamed over
it only when complete, so a reader (the studio, a browser, a second command) and a full disk both
see the old file or the new one, never half of one; a failed write removes its temporary file.
Folders postergen makes carry a marker file, and `--force` replaces only folders that have it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from postergen.errors import UserError

MARKER = ".postergen"  # {"kind": "dataset" | "run" | "synth"}: this folder is postergen's to replace
CARD_MARK = "library_name: postergen"  # in an export's model card (README.md): postergen wrote it


def _tmp_name(path: Path) -> Path:
    # pid and thread: several processes or PNG-writer threads may write beside one another
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it cannot bring back the old name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it is renamed over `path`,
    on any error (disk full included) it is removed and `path` is untouched. durable: fsync first."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None:  # a write's own error names no file: name the one being written
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: Path, data: str | bytes, durable: bool = False) -> None:
    """Replace `path` with `data` all at once: readers see the old file or the new."""
    with replacing(path, durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def save_image(image, path: Path, format: str | None = None, **options) -> None:
    """A PIL image -> file, atomically: encoded in memory first, so a full disk leaves no empty PNG."""
    buf = io.BytesIO()
    image.save(buf, format=format or _image_format(path), **options)
    write_atomic(path, buf.getvalue())


def _image_format(path: Path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}.get(ext, "PNG")


# ---------------------------------------------------------------------------------------------
# Folders postergen owns

def mark_owned(folder: Path, kind: str) -> None:
    """Record that postergen made `folder` (a dataset, run or synth folder), so --force may replace it."""
    from postergen import __version__

    write_atomic(Path(folder) / MARKER, json.dumps({"kind": kind, "postergen": __version__}) + "\n")


def owned_kind(folder: Path) -> str | None:
    """The kind in `folder`'s marker, or, for folders made before markers existed, the kind their own
    files prove (dataset.json of our format, a run's config.json, synth's CSV + images/); else None."""
    folder = Path(folder)
    try:
        return json.loads((folder / MARKER).read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        if json.loads((folder / "dataset.json").read_text()).get("format", "").startswith("postergen-dataset"):
            return "dataset"
    except (OSError, ValueError, AttributeError):
        pass
    try:
        if "postergen" in json.loads((folder / "config.json").read_text()):
            return "run"
    except (OSError, ValueError, TypeError):
        pass
    if (folder / "MovieGenre.csv").is_file() and (folder / "images").is_dir():
        return "synth"
    return None


def check_output_folder(out: Path, kind: str, force: bool, what: str) -> bool:
    """Whether `out` may be written as a new `kind` folder; returns True when it exists and --force
    will replace it. A regular file, or a non-empty folder postergen did not make, is never replaced."""
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"{out} is a file, not a {what} folder; choose another output")
    if not any(out.iterdir()):
        return False
    if not force:
        raise UserError(f"{out} exists; use --force to replace it")
    found = owned_kind(out)
    if found != kind:
        made = f"is a postergen {found} folder, not a {what}" if found else f"was not made by postergen as a {what}"
        raise UserError(f"{out} {made}; --force replaces only {what} folders postergen made, choose another output")
    return True


def check_apart(out: Path, sources: list[Path], what: str = "source") -> None:
    """Refuse an output that is, contains, or lies inside one of `sources`: replacing it would
    delete the user's files, or the output would be read back as input."""
    o = Path(out).resolve()
    for src in sources:
        s = Path(src).resolve()
        if o == s:
            raise UserError(f"{out}: the output cannot be the {what} itself; choose another output folder")
        if s.is_relative_to(o):
            raise UserError(f"{out}: the output folder contains the {what} {src}; choose another output folder")
        if o.is_relative_to(s) and s.is_dir():
            raise UserError(f"{out}: the output folder lies inside the {what} {src}; choose another output folder")


# ---------------------------------------------------------------------------------------------
# Names from data, as file names

NAME_CHARS = 48  # longest readable part of a file name made from a label (bytes stay under 255)


def file_label(text: str) -> str:
    """A label from a dataset (a genre, 'action+comedy') as one safe file-name part.

    Letters and digits of any script, '+', '-', '_', spaces and inner '.' stay; anything else ('/',
    '..', control characters, HTML) becomes '_'. A label that had to change (or be cut) gets 6 hex digits
    of its hash, so two labels never share a file name. The real label stays in provenance and grids.
    """
    text = unicodedata.normalize("NFC", text)
    safe = "".join(c if c.isalnum() or c in "+-_. " else "_" for c in text).strip(". ") or "_"
    if safe == text and len(safe) <= NAME_CHARS:
        return safe
    return f"{safe[:NAME_CHARS]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def shown(text: str, limit: int = 60) -> str:
    """Dataset text as printed to a terminal: control and format characters escaped (a genre name
    cannot move the cursor, recolour the screen or reverse the line), and a long name cut."""
    text = "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Files postergen owns

def written_by_postergen(path: Path) -> bool:
    """Whether an existing file is one postergen wrote (its kind's own mark): images carry
    provenance, reports a generator tag, JSON results a "postergen" key, exports their metadata and
    model cards their front matter."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".png", ".gif", ".webp"):
            from PIL import Image

            with Image.open(path) as im:
                marks = (*getattr(im, "text", {}).values(), im.info.get("comment", b""), im.info.get("xmp", b""))
                return any(_is_mark(m) for m in marks)
        if suffix in (".html", ".htm"):
            head = path.read_bytes()[:2048]
            return b'<meta name="generator" content="postergen' in head or b"<title>postergen report:" in head
        if suffix == ".md":
            return CARD_MARK.encode() in path.read_bytes()[:2048]
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(data, dict) and ("postergen" in data or {"metrics", "data", "n"} <= data.keys())
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return "postergen" in (f.metadata() or {})
    except Exception:  # unreadable or another format: not provably ours, so it is the user's
        return False
    return False


def _is_mark(value) -> bool:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.startswith("postergen ") or "postergen:ai_generated" in text


def check_replaceable(paths: list[Path], force: bool) -> None:
    """Before any work: every existing file among `paths` may be replaced, because postergen wrote it
    or --force says so. A file of the user's (a thesis.html, a photo named grid.png) is never
    replaced silently."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"{path} is a folder; give the name of a file to write")
        if path.exists() and not force and not written_by_postergen(path):
            raise UserError(f"{path} exists and was not written by postergen; use --force to replace it, "
                            f"or choose another name")


def shared_name(path: Path) -> str:
    """A file as results people share name it (eval.json, reports): 'its folder/its name', never the
    absolute path, which tells where and whose the files are."""
    path = Path(path)
    return f"{path.resolve().parent.name}/{path.name}"


def home_relative(path: Path | str) -> str:
    """A path under the home folder as '~/...': what a message shows of a user's cache folder."""
    path, home = Path(path), Path.home()
    return f"~/{path.relative_to(home).as_posix()}" if path.is_relative_to(home) else str(path)


def os_error(e: OSError, path: Path | str | None = None) -> str:
    """'PATH: cause' for an OSError, e.g. 'data/images.npy: No space left on device'. For a rename or
    link PATH is the destination (filename2), the user's path rather than a temporary one."""
    where = next((w for w in (e.filename2, e.filename, path) if w is not None), None)
    cause = e.strerror or str(e) or type(e).__name__
    return f"{where}: {cause}" if where is not None else cause
