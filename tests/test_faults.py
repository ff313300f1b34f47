"""Fault injection: nothing the user made is lost or touched, a full disk is one clear error.

Disk-full tests run postergen in a real process against a small tmpfs (mounting needs root or a
user namespace; without either they are skipped, with the reason shown).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import png_bomb, run_postergen, tiny_flags
from postergen.data import ingest
from postergen.data.dataset import open_dataset
from postergen.data.ingest import PrepareConfig, prepare

POSTERGEN = [sys.executable, "-m", "postergen"]


def _jpeg(path: Path, seed: int, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------------------------------
# 1. Every input ends as exactly one of: kept, or skipped with a reason

@pytest.mark.parametrize("workers", [1, 2])
def test_small_posters_are_kept_and_reported_not_dropped(tmp_path, workers):
    src = tmp_path / "src"
    for i in range(40):  # every fifth poster is smaller than the output but above --min-side
        _jpeg(src / f"p{i:02d}.jpg", i, (40, 60) if i % 5 == 2 else (182, 268))
    meta = prepare([src], tmp_path / "ds", PrepareConfig(size=64, workers=workers))
    assert meta["count"] == 40 and meta["skipped"] == []
    assert sorted(u["path"] for u in meta["upscaled"]) == [f"p{i:02d}.jpg" for i in range(2, 40, 5)]
    # Above every poster's own size: all kept, all reported as enlarged, none "skipped" without a reason.
    meta = prepare([src], tmp_path / "big", PrepareConfig(size=300, workers=workers))
    assert meta["count"] == 40 and len(meta["upscaled"]) == 40 and meta["skipped"] == []


def test_a_decoder_fault_costs_one_poster_with_its_reason(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(6):
        _jpeg(src / f"p{i}.jpg", i, (90, 130))
    real = ingest.decode_image

    def flaky(data, cfg):
        if data == (src / "p2.jpg").read_bytes():
            raise StopIteration  # inside map() this used to end the whole iteration silently
        return real(data, cfg)

    monkeypatch.setattr(ingest, "decode_image", flaky)
    meta = prepare([src], tmp_path / "ds", PrepareConfig(size=32, workers=1))
    assert meta["count"] == 5
    assert [(s["path"], s["reason"]) for s in meta["skipped"]] == [("p2.jpg", "decode-error")]


# ---------------------------------------------------------------------------------------------
# 2. A full disk: one line naming the path and cause, no partial files, the old output intact

@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_on_a_full_disk_fails_cleanly(tmp_path, small_disk, workers):
    src = tmp_path / "src"
    for i in range(120):  # 120 x 3 x 64 x 64 bytes = 1.4 MiB: more than the disk holds
        _jpeg(src / f"p{i:03d}.jpg", i, (64, 96))
    r = run_postergen("prepare", src, "-o", small_disk / "ds", "--size", 64, "--workers", workers)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "No space left on device" in r.stderr and str(small_disk / "ds") in r.stderr
    assert list(small_disk.iterdir()) == []  # no temporary folder left behind


@pytest.mark.slow
def test_prepare_on_a_full_disk_keeps_the_previous_dataset(tmp_path, small_disk):
    src = tmp_path / "src"
    for i in range(120):
        _jpeg(src / f"p{i:03d}.jpg", i, (64, 96))
    assert run_postergen("prepare", src, "-o", small_disk / "ds", "--size", 32, "--workers", 1).returncode == 0
    before = _files(small_disk / "ds")
    r = run_postergen("prepare", src, "-o", small_disk / "ds", "--size", 64, "--workers", 1, "--force")
    assert r.returncode == 2 and "No space left on device" in r.stderr and "unchanged" in r.stderr
    assert _files(small_disk / "ds") == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["ds"]
    assert open_dataset(small_disk / "ds").meta["count"] == 120


def test_a_killed_prepare_leaves_nothing_the_next_run_trips_over(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        _jpeg(src / f"p{i}.jpg", i, (64, 96))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: its temporary folder is stale
    stale = tmp_path / f".ds.tmp-{dead.pid}"
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"half")
    prepare([src], tmp_path / "ds", PrepareConfig(size=32, workers=1))
    assert not stale.exists() and open_dataset(tmp_path / "ds").meta["count"] == 4


# ---------------------------------------------------------------------------------------------
# 3. --force never deletes a source, an arbitrary folder or a file

def _posters(folder: Path, n: int = 3) -> Path:
    for i in range(n):
        _jpeg(folder / f"p{i}.jpg", i, (64, 96))
    return folder


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_force_refuses_an_output_that_overlaps_the_source(tmp_path, cli, where):
    src = _posters(tmp_path / "data" / "posters")
    before = _files(tmp_path / "data")
    out = {"same": src, "inside": src / "ds", "around": tmp_path / "data"}[where]
    code, _, err = cli("prepare", src, "-o", out, "--size", 32, "--force", "--workers", 1)
    assert code == 2 and "source" in err and err.count("\n") == 1
    assert _files(tmp_path / "data") == before


def test_force_refuses_an_output_holding_the_label_csv(tmp_path, cli):
    src = _posters(tmp_path / "posters")
    labels = tmp_path / "out" / "genres.csv"
    labels.parent.mkdir()
    labels.write_text("imdbId,Genre\n1,Horror\n")
    code, _, err = cli("prepare", src, "-o", tmp_path / "out", "--labels", labels, "--force")
    assert code == 2 and "genres.csv" in err and labels.exists()


def test_force_replaces_only_folders_postergen_made(tmp_path, cli):
    src = _posters(tmp_path / "posters")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    code, _, err = cli("prepare", src, "-o", thesis, "--force", "--size", 32)
    assert code == 2 and "not made by postergen" in err and (thesis / "chapter1.tex").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    code, _, err = cli("prepare", src, "-o", notes, "--force", "--size", 32)
    assert code == 2 and "is a file" in err and notes.read_text() == "keep"
    # a run folder is postergen's, but not a dataset: --force must not turn it into one
    run = tmp_path / "run"
    run.mkdir()
    (run / ".postergen").write_text('{"kind": "run"}')
    (run / "metrics.jsonl").write_text("{}\n")
    code, _, err = cli("prepare", src, "-o", run, "--force", "--size", 32)
    assert code == 2 and "run folder" in err and (run / "metrics.jsonl").exists()
    # its own dataset folder is replaced
    assert cli("prepare", src, "-o", tmp_path / "ds", "--size", 32)[0] == 0
    assert (tmp_path / "ds" / ".postergen").is_file()
    assert cli("prepare", src, "-o", tmp_path / "ds", "--size", 48, "--force")[0] == 0
    assert open_dataset(tmp_path / "ds").meta["size"] == [48, 48]


# ---------------------------------------------------------------------------------------------
# 9. Archives: memory per member is bounded; an over-large member is skipped with a reason

@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_members_beyond_the_pixel_limit_are_skipped_unread(tmp_path, kind, monkeypatch):
    src = tmp_path / "src"
    for i in range(3):
        _jpeg(src / f"ok{i}.jpg", i, (64, 96))
    bomb = png_bomb(tmp_path / "bomb.png")
    header_only = bomb.read_bytes()[:-12]  # the IHDR claims 60000 x 60000; drop IEND
    (src / "claims-huge.png").write_bytes(header_only + os.urandom(200_000))  # > 64 KiB: header read first
    (src / "huge.bmp").write_bytes(b"BM" + os.urandom(3_000_000))  # bigger than any picture within the limit
    archive = tmp_path / f"posters.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            for p in sorted(src.iterdir()):
                z.write(p, p.name)
    else:
        with tarfile.open(archive, "w") as t:
            for p in sorted(src.iterdir()):
                t.add(p, p.name)
    read = {}  # bytes read per member
    real_open = ingest._Archive.open

    class Counting(io.RawIOBase):
        def __init__(self, f, rel):
            self.f, self.rel = f, rel
            read[rel] = 0

        def read(self, n=-1):
            data = self.f.read(n)
            read[self.rel] += len(data)
            return data

        def close(self):
            self.f.close()

    monkeypatch.setattr(ingest._Archive, "open", lambda self, rel: Counting(real_open(self, rel), rel))
    cfg = PrepareConfig(size=32, workers=1, max_pixels=100_000)  # files above ~1.8 MiB cannot fit
    meta = prepare([archive], tmp_path / "ds", cfg)
    assert meta["count"] == 3
    reasons = {s["path"]: (s["reason"], s["detail"]) for s in meta["skipped"]}
    assert reasons["huge.bmp"][0] == "too-large" and "MiB" in reasons["huge.bmp"][1]
    assert reasons["claims-huge.png"][0] == "too-large" and "header" in reasons["claims-huge.png"][1]
    assert read["huge.bmp"] == 0  # skipped by its stored size
    assert read["claims-huge.png"] == 1 << 16  # skipped after its header, the rest never read


# ---------------------------------------------------------------------------------------------
# 2 (training). A full disk stops the run with one line; checkpoints stay loadable, no partial files

TINY = tiny_flags(log_every=2)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name or (p.is_file() and p.stat().st_size == 0)]


@pytest.mark.slow
def test_train_on_a_full_disk_keeps_the_last_checkpoint(tiny_dataset, tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    # 4 MiB: one checkpoint (1.7 MB) and its latest.pt fit, the next step file does not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        r = run_postergen("train", tiny_dataset, "-o", mnt / "run", "--steps", 40, "--sample-every", 2, "--checkpoint-every", 2, *TINY)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "No space left on device" in line and "last good checkpoint: step 2" in line and "--resume" in line
        assert "checkpoints/step-0000004.pt" in line
        assert _leftovers(mnt) == []
        from postergen.checkpoint import load_checkpoint

        assert load_checkpoint(mnt / "run")["step"] == 2
        assert sorted(p.name for p in (mnt / "run" / "checkpoints").iterdir()) == ["latest.pt", "step-0000002.pt"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------------------------------
# 4. One trainer per run folder: a lock, released on any exit

def _wait_for_lock(run: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "checkpoints" / "latest.pt").exists():  # holding the lock and past its first checkpoint
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the first trainer did not start")


@pytest.mark.slow
@pytest.mark.parametrize("second", [["train", "--force"], ["train", "--resume"], ["train-sr", "--force"]])
def test_a_second_trainer_on_the_same_folder_is_refused(tiny_dataset, tmp_path, second):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*POSTERGEN, "train", str(tiny_dataset), "-o", str(run), "--steps", "100000",
                              "--checkpoint-every", "1", "--keep-checkpoints", "1", *map(str, TINY)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock(run, first)
        command, flag = second
        extra = ["--patch", 4, "--batch", 2] if command == "train-sr" else TINY
        r = run_postergen(command, tiny_dataset, "-o", run, flag, *extra)
        assert r.returncode == 2, r.stderr
        assert f"in use by another postergen process (pid {first.pid})" in r.stderr
        assert first.poll() is None  # the first one goes on, its files untouched
        assert (run / "checkpoints" / "latest.pt").exists()
    finally:
        first.kill()  # kill -9: no clean-up runs, yet the lock must not outlive the process
        first.wait()
    r = run_postergen("train", tiny_dataset, "-o", run, "--resume", "--steps", first_step(run) + 1, *TINY)
    assert r.returncode == 0, r.stderr


def first_step(run: Path) -> int:
    """The step --resume continues from (after a kill -9 latest.pt may trail the newest step file)."""
    from postergen.checkpoint import load_latest

    return load_latest(run)["step"]


# ---------------------------------------------------------------------------------------------
# 5, 6. A fresh start leaves nothing of the old run; latest.pt is a file of its own

@pytest.mark.slow
def test_a_fresh_start_leaves_nothing_of_the_old_run_to_load(tiny_dataset, tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", tiny_dataset, "-o", run, "--steps", 6, "--checkpoint-every", 2, *TINY)[0] == 0
    (run / "eval.jsonl").write_text('{"step": 6}\n')
    (run / "checkpoints" / "latest.pt").unlink()  # e.g. lost, or removed by hand
    code, _, err = cli("train", tiny_dataset, "-o", run, "--steps", 2, "--checkpoint-every", 2, *TINY)
    assert code == 2 and "already has checkpoints" in err  # old step files would mix with the new run's
    assert cli("train", tiny_dataset, "-o", run, "--steps", 2, "--checkpoint-every", 2, "--force", *TINY)[0] == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step-0000002.pt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png"]
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [2]
    assert not (run / "eval.jsonl").exists()


def test_force_does_not_clear_a_folder_postergen_did_not_make(tiny_dataset, tmp_path, cli):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "step-0000001.pt").write_text("my own file")
    (folder / "config.json").write_text("{}")
    code, _, err = cli("train", tiny_dataset, "-o", folder, "--steps", 1, "--force", *TINY)
    assert code == 2 and "not made by postergen" in err
    assert (folder / "checkpoints" / "step-0000001.pt").read_text() == "my own file"


def test_latest_is_independent_of_the_step_file(tiny_dataset, tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", tiny_dataset, "-o", run, "--steps", 2, "--checkpoint-every", 2, *TINY)[0] == 0
    latest, step = run / "checkpoints" / "latest.pt", run / "checkpoints" / "step-0000002.pt"
    assert latest.read_bytes() == step.read_bytes()
    assert not os.path.samefile(latest, step) and os.stat(latest).st_nlink == 1
    with open(step, "r+b") as f:  # damage the step file in place
        f.write(b"\0" * 4096)
    from postergen.checkpoint import load_checkpoint

    assert load_checkpoint(latest)["step"] == 2
