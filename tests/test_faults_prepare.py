"""Fault injection for `prepare`, for real: killed and terminated processes, two prepares at once,
archives that repeat a member name, FIFOs and sockets among the posters (docs/faults.md).

The input is real (4000x4000 PNGs, small on disk, ~0.3 s each to decode), but a prepare that a test
stops or races is held: its decoding waits for a gate file (HOLD) that the test opens when it is done,
so the prepare is still decoding when the test acts, however fast or loaded the machine is.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import noise, solid
from postergen.data.dataset import open_dataset
from postergen.data.ingest import PrepareConfig, prepare

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
# prepare in a process of its own: the CLI where its one-line messages are tested, else the library
# call (SRC OUT WORKERS), which starts seconds sooner (the CLI imports torch); NO_PRCTL: without
# prctl(PR_SET_PDEATHSIG), as on macOS, so the workers' own watch on prepare must do.
CLI = "import sys; from postergen.cli import main; sys.exit(main(sys.argv[1:]))"
LIB = ("import sys; from pathlib import Path; from postergen.data.ingest import PrepareConfig, prepare; "
       "prepare([Path(sys.argv[1])], Path(sys.argv[2]), PrepareConfig(size=32, workers=int(sys.argv[3])))")
NO_PRCTL = ("import multiprocessing as mp; mp.set_start_method('fork', force=True); "  # workers keep the patch
            "from postergen.data import ingest; ingest._kill_on_parent_death = lambda: False; " + LIB)
# Put before any of them: each image's decoding (in prepare or in its forked workers) first touches
# GATE.held, then waits until the file GATE exists (at most 10 minutes: a test that dies leaves no
# prepare behind for long).
HOLD = """
import os, time
from pathlib import Path
from postergen.data import ingest

def _held(data, cfg, decode=ingest.decode_image, gate=Path(os.environ["POSTERGEN_TEST_GATE"])):
    gate.with_suffix(".held").touch()
    deadline = time.monotonic() + 600
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return decode(data, cfg)

ingest.decode_image = _held
"""

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@pytest.fixture(scope="module")
def big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (10, 100, 200)).save(buf, "PNG")  # encoding takes ~1 s: once
    return buf.getvalue()


def _big_pngs(folder: Path, data: bytes, n: int) -> Path:
    """n copies: each is decoded (a byte-identical copy is found a duplicate only after decoding)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"big{i:02d}.png").write_bytes(data)
    return folder


def _start(code: str, *args, gate: Path) -> subprocess.Popen:
    """CODE in a process of its own, its decoding held until the file GATE exists (HOLD)."""
    return subprocess.Popen([sys.executable, "-c", HOLD + code, *map(str, args)], text=True,
                            env={**ENV, "POSTERGEN_TEST_GATE": str(gate)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _run(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a process of its own; `timeout` bounds one that hangs (on a FIFO, say), not a slow one."""
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], env=ENV, text=True,
                          capture_output=True, timeout=timeout)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _descendants(pid: int) -> list[int]:
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (st := _stat(int(p.name))):
            parents[int(p.name)] = st[1]
    found, todo = [], [pid]
    while todo:
        up = todo.pop()
        kids = [k for k, parent in parents.items() if parent == up]
        found += kids
        todo += kids
    return found


def _running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has ended; only reaping is left


def _wait_decoding(proc: subprocess.Popen, tmp: Path, workers: int, gate: Path, timeout: float = 600) -> list[int]:
    """Wait until `proc` (started with `gate`) holds an image mid-decode in `tmp`, with its worker
    processes started; return their pids. `timeout` only bounds a prepare that never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        kids = _descendants(proc.pid)
        if (tmp / "images.npy").exists() and gate.with_suffix(".held").exists() and len(kids) >= workers:
            return kids
        time.sleep(0.05)
    raise AssertionError("prepare did not start decoding")


def _outliving(pids: list[int], timeout: float = 120) -> list[int]:
    """The processes still running after `timeout` (then killed, so a failure leaves no orphans); waits
    only as long as one of them runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(_running, pids)):
        time.sleep(0.05)
    left = [p for p in pids if _running(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


# ---------------------------------------------------------------------------------------------
# 1. However prepare ends, its workers end with it; SIGTERM cleans up like Ctrl-C

@pytest.mark.slow
@linux_only
@pytest.mark.parametrize("code", [LIB, NO_PRCTL], ids=["prctl", "watching"])
def test_kill_9_takes_the_workers_along_and_the_next_prepare_clears_up(tmp_path, big_png, code, capsys):
    src = _big_pngs(tmp_path / "src", big_png, 16)
    gate = tmp_path / "gate"  # never opened: prepare is killed mid-decode
    proc = _start(code, src, tmp_path / "ds", 2, gate=gate)
    tmp = tmp_path / f".ds.tmp-{proc.pid}"
    try:
        workers = _wait_decoding(proc, tmp, 2, gate)
        assert len(workers) >= 2
    finally:
        proc.kill()  # kill -9: no clean-up of its own runs
        proc.wait()
    assert _outliving(workers) == [], "decoding processes outlived a killed prepare"
    assert tmp.is_dir()  # left behind by the killed process ...
    small = tmp_path / "small"
    noise(small / "a.jpg", seed=1)
    prepare([small], tmp_path / "other", PrepareConfig(size=32, workers=1))
    assert not tmp.exists()  # ... and removed by the next prepare into the same folder, which says so
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if tmp.name in line]
    assert len(notes) == 1 and f"pid {proc.pid}" in notes[0], err


@pytest.mark.slow
@linux_only
def test_sigterm_stops_prepare_like_ctrl_c(tmp_path, big_png):
    src = _big_pngs(tmp_path / "src", big_png, 16)
    gate = tmp_path.parent / f"{tmp_path.name}-gate"  # never opened; outside tmp_path, whose listing is checked
    proc = _start(CLI, "prepare", src, "-o", tmp_path / "ds", "--size", 32, "--workers", 2, gate=gate)
    tmp = tmp_path / f".ds.tmp-{proc.pid}"
    try:
        workers = _wait_decoding(proc, tmp, 2, gate)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert _outliving(workers) == []
    assert proc.returncode not in (0, -signal.SIGTERM), err  # it handled the signal, and says it failed
    assert err.strip() == "postergen prepare: interrupted", err  # one line, no traceback from any process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no temporary folder, lock or output


# ---------------------------------------------------------------------------------------------
# 2. One prepare per output at a time; the loser never replaces the winner

@pytest.mark.slow
@linux_only
def test_a_second_prepare_into_the_same_output_is_refused(tmp_path, big_png, cli):
    gate = tmp_path.parent / f"{tmp_path.name}-gate"  # never opened: the first is still decoding at the end
    first = _start(LIB, _big_pngs(tmp_path / "big", big_png, 30), tmp_path / "ds", 1, gate=gate)
    small = tmp_path / "small"
    noise(small / "a.jpg", seed=1)
    try:
        _wait_decoding(first, tmp_path / f".ds.tmp-{first.pid}", 0, gate)
        code, _, err = cli("prepare", small, "-o", tmp_path / "ds", "--size", 32, "--workers", 1)
        assert code != 0 and err.count("\n") == 1, err
        assert f"in use by another postergen process (pid {first.pid})" in err
        assert first.poll() is None  # the first goes on undisturbed
        assert not (tmp_path / "ds" / "dataset.json").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "small"]


@pytest.mark.slow
@linux_only
def test_an_output_written_meanwhile_is_not_replaced(tmp_path, big_png):
    """Where the lock cannot help (another machine on a network share, an OS without flock), the
    check that the output is free is made again at the final rename."""
    theirs = tmp_path / "theirs"
    small = tmp_path / "small"
    noise(small / "a.jpg", seed=1)
    prepare([small], theirs, PrepareConfig(size=32, workers=1))
    gate = tmp_path.parent / f"{tmp_path.name}-gate"
    first = _start(CLI, "prepare", _big_pngs(tmp_path / "big", big_png, 4), "-o", tmp_path / "ds",
                   "--size", 32, "--workers", 1, gate=gate)
    try:
        _wait_decoding(first, tmp_path / f".ds.tmp-{first.pid}", 0, gate)
        shutil.copytree(theirs, tmp_path / "ds", dirs_exist_ok=True)  # lands while the first decodes
        gate.touch()  # only now may the first finish
        _, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 2 and err.count("\n") == 1 and "exists" in err, err
    assert open_dataset(tmp_path / "ds").meta["sources"] == ["a.jpg"]  # theirs, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "ds", "small", "theirs"]


# ---------------------------------------------------------------------------------------------
# 3. An archive holding one member name twice: every member is kept or listed

def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 96), color).save(buf, "PNG")
    return buf.getvalue()


def _archive(path: Path, members: list[tuple[str, bytes]]) -> Path:
    if path.suffix == ".zip":
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
            warnings.simplefilter("ignore")  # zipfile warns about the repeated name, and writes it
            for name, data in members:
                z.writestr(name, data)
    else:
        with tarfile.open(path, "w") as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_repeated_member_name_is_listed_not_lost(tmp_path, kind, workers):
    red, blue, green = _png((250, 0, 0)), _png((0, 0, 250)), _png((0, 250, 0))
    archive = _archive(tmp_path / f"posters.{kind}", [("p/a.png", red), ("p/b.png", green), ("p/a.png", blue)])
    meta = prepare([archive], tmp_path / "ds", PrepareConfig(size=32, workers=workers))
    assert meta["count"] + len(meta["skipped"]) == 3
    assert meta["sources"] == ["p/a.png", "p/b.png"]
    assert [(s["path"], s["reason"]) for s in meta["skipped"]] == [("p/a.png", "duplicate-member")]
    a = open_dataset(tmp_path / "ds").images[0]
    assert a[2].min() > 200 and a[0].max() < 50  # the last member of that name, as unzip or tar keeps


# ---------------------------------------------------------------------------------------------
# 4. FIFOs, sockets and devices among the posters are skipped unopened, never waited on

@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_and_sockets_are_skipped_not_opened(tmp_path):
    src = tmp_path / "src"
    solid(src / "ok.png")
    os.mkfifo(src / "x.jpg")  # opening it for reading would wait for a writer forever
    os.mkfifo(src / "MovieGenre.csv")  # nor may it be taken for the genre table
    (src / "sub").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sub" / "y.png"))
    os.symlink(src / "x.jpg", src / "link.png")  # a link to a FIFO is the FIFO
    try:
        r = _run("prepare", src, "-o", tmp_path / "ds", "--size", 32, "--workers", 2)  # waiting on a FIFO: no end
    finally:
        sock.close()
    assert r.returncode == 0, r.stderr
    meta = open_dataset(tmp_path / "ds").meta
    assert meta["sources"] == ["ok.png"]
    skipped = {s["path"]: (s["reason"], s["detail"]) for s in meta["skipped"]}
    assert {p: why for p, (why, _) in skipped.items()} == {
        "x.jpg": "not-a-file", "sub/y.png": "not-a-file", "link.png": "not-a-file"}
    assert "FIFO" in skipped["x.jpg"][1] and "socket" in skipped["sub/y.png"][1]
    assert meta["prepare"]["labels_from"] == "none" and meta["prepare"]["non_image_files"] == 1


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_as_the_source_is_refused(tmp_path):
    os.mkfifo(tmp_path / "posters.zip")
    r = _run("prepare", tmp_path / "posters.zip", "-o", tmp_path / "ds")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a folder, a .zip or a .tar" in r.stderr
    assert not (tmp_path / "ds").exists()


def test_special_tar_members_are_listed_and_links_read(tmp_path):
    """A tar can hold FIFOs and devices too, and links, which were once dropped unlisted."""
    path = tmp_path / "posters.tar"
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("a.png")
        data = _png((0, 0, 250))
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        for name, kind in (("fifo.jpg", tarfile.FIFOTYPE), ("dev.png", tarfile.CHRTYPE),
                           ("hard.png", tarfile.LNKTYPE), ("soft.png", tarfile.SYMTYPE)):
            member = tarfile.TarInfo(name)
            member.type, member.linkname = kind, "a.png" if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE) else ""
            t.addfile(member)
    meta = prepare([path], tmp_path / "ds", PrepareConfig(size=32, workers=1))
    assert meta["sources"] == ["a.png"]
    assert {s["path"]: s["reason"] for s in meta["skipped"]} == {
        "fifo.jpg": "not-a-file", "dev.png": "not-a-file", "hard.png": "duplicate", "soft.png": "duplicate"}
