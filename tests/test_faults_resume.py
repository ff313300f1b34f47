"""Faults around resuming a run, injected for real: run folders made by `postergen train`, real
checkpoint files removed or damaged, another dataset in place of the run's, a trainer that runs out
of memory (its address space capped while it trains)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_same, built_in_dataset, checkpoint_weights, tiny_flags
from postergen.checkpoint import load_checkpoint
from postergen.data.dataset import open_dataset

TINY = tiny_flags(genre_dim=8, log_every=2, sample_every=1000, checkpoint_every=2, keep_checkpoints=5)


def _posters(root: Path, n: int = 48, seed: int = 0, **prepare) -> Path:
    """ROOT/ds: n built-in posters drawn with `seed`, prepared at 32 px."""
    return built_in_dataset(root, n, 32, seed=seed, **prepare)


def _train(cli, ds: Path, run: Path, *args) -> tuple[int, str, str]:
    return cli("train", ds, "-o", run, *TINY, *args)


def _last_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# 1. latest.pt missing or damaged while the step files are good: nothing is lost

@pytest.mark.slow
def test_a_missing_latest_resumes_from_the_newest_step_file(cli, tiny_dataset, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert _train(cli, tiny_dataset, straight, "--steps", 6)[0] == 0
    assert _train(cli, tiny_dataset, run, "--steps", 4)[0] == 0
    (run / "checkpoints" / "latest.pt").unlink()
    kept = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}

    code, _, err = _train(cli, tiny_dataset, run, "--steps", 6)  # no --resume: refused, saying what --force does
    line = _last_line(err)
    assert code == 2 and "already has checkpoints (step 4, without latest.pt)" in line
    assert "--resume to continue" in line and "--force to delete them" in line
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == kept

    code, out, err = _train(cli, tiny_dataset, run, "--steps", 6, "--resume")
    assert code == 0, err
    note = [line for line in out.splitlines() if "latest.pt is missing" in line]
    assert len(note) == 1 and "resuming from" in note[0] and "step-0000004.pt (step 4)" in note[0]
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 6
    # it continued from step 4's state: the same weights as a run that was never interrupted
    assert_same(checkpoint_weights(run), checkpoint_weights(straight))


@pytest.mark.slow
def test_a_damaged_latest_resumes_from_its_copy_in_the_step_file(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(cli, tiny_dataset, run, "--steps", 4)[0] == 0
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # cut short, as by a failing disk
    code, out, err = _train(cli, tiny_dataset, run, "--steps", 6, "--resume")
    assert code == 0, err
    note = [line for line in out.splitlines() if "latest.pt is damaged" in line]
    assert len(note) == 1 and "step-0000004.pt (step 4)" in note[0]
    assert load_checkpoint(latest)["step"] == 6  # written anew by the resumed run


@pytest.mark.slow
def test_a_kill_between_the_step_file_and_latest_resumes_from_the_step_file(cli, tiny_dataset, tmp_path):
    """kill -9 after step-4.pt is renamed into place but before latest.pt is: latest.pt still holds step
    2, and --resume (checkpoint.load_latest) continues from the newer step file, losing nothing."""
    from postergen.checkpoint import load_latest

    run = tmp_path / "run"
    assert _train(cli, tiny_dataset, run, "--steps", 4)[0] == 0
    folder = run / "checkpoints"
    shutil.copyfile(folder / "step-0000002.pt", folder / "latest.pt")  # the state such a kill leaves
    assert load_checkpoint(run)["step"] == 2 and load_latest(run)["step"] == 4
    code, out, err = _train(cli, tiny_dataset, run, "--steps", 6, "--resume")
    assert code == 0, err
    assert "latest.pt is at step 2" in out and "step-0000004.pt (step 4)" in out
    assert load_checkpoint(run)["step"] == 6


@pytest.mark.slow
def test_when_the_newest_checkpoints_are_damaged_the_error_names_the_good_one(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(cli, tiny_dataset, run, "--steps", 4)[0] == 0
    folder = run / "checkpoints"
    for name in ("latest.pt", "step-0000004.pt"):
        with open(folder / name, "r+b") as f:
            f.write(b"\0" * 4096)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = _train(cli, tiny_dataset, run, "--steps", 6, "--resume")
    line = _last_line(err)
    assert code == 2 and "latest.pt is damaged" in line and "step-0000004.pt" in line
    assert f"the newest good checkpoint is {folder / 'step-0000002.pt'}" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing removed or rewritten
    # doing what it says resumes from step 2
    aside = run / "damaged"
    assert f"mkdir {aside} && mv {folder / 'step-0000004.pt'} {aside}" in line
    aside.mkdir()
    shutil.move(folder / "step-0000004.pt", aside)
    code, out, err = _train(cli, tiny_dataset, run, "--steps", 6, "--resume")
    assert code == 0, err
    assert "resuming from" in out and "step-0000002.pt (step 2)" in out
    assert load_checkpoint(folder / "latest.pt")["step"] == 6


# ---------------------------------------------------------------------------------------------
# 2. --resume on other data is refused, saying what differs; a moved dataset is the same data

@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {"run": _posters(root / "a"), "other": _posters(root / "b", seed=1),
            "fewer": _posters(root / "c", n=40), "no-genres": _posters(root / "d", use_labels=False)}


@pytest.mark.slow
def test_resume_refuses_other_posters_unless_allowed(cli, datasets, tmp_path):
    run, other = tmp_path / "run", datasets["other"]
    a, b = open_dataset(datasets["run"]), open_dataset(other)
    assert (len(a), a.meta["size"], a.genres) == (len(b), b.meta["size"], b.genres)  # only the posters differ
    assert _train(cli, datasets["run"], run, "--steps", 2)[0] == 0
    recorded = json.loads((run / "config.json").read_text())["dataset"]
    assert {"count", "size", "genres", "content"} <= recorded.keys() and recorded["count"] == 48

    code, _, err = _train(cli, other, run, "--steps", 4, "--resume")
    line = _last_line(err)
    assert code == 2 and "other posters" in line and "--allow-other-data" in line and str(other) in line
    assert load_checkpoint(run)["step"] == 2

    code, out, err = _train(cli, other, run, "--steps", 4, "--resume", "--allow-other-data")
    assert code == 0, err
    assert "other posters" in out and load_checkpoint(run)["step"] == 4
    assert load_checkpoint(run)["config"]["dataset"]["path"] == os.path.relpath(other, run)  # what it trains on now


@pytest.mark.parametrize("which,says", [("fewer", "40 posters, the run's had 48"),
                                        ("no-genres", "genres none, the run's were action")])
@pytest.mark.slow
def test_resume_says_what_differs(cli, datasets, tmp_path, which, says):
    run = tmp_path / "run"
    assert _train(cli, datasets["run"], run, "--steps", 2, "--no-conditional")[0] == 0
    code, _, err = _train(cli, datasets[which], run, "--steps", 4, "--resume")
    assert code == 2 and says in _last_line(err)


@pytest.mark.slow
def test_a_moved_dataset_is_the_same_data(cli, datasets, tmp_path):
    run, moved = tmp_path / "run", tmp_path / "elsewhere" / "posters"
    assert _train(cli, datasets["run"], run, "--steps", 2)[0] == 0
    shutil.copytree(datasets["run"], moved)
    code, out, err = _train(cli, moved, run, "--steps", 4, "--resume")
    assert code == 0, err
    assert "not the dataset" not in out + err and load_checkpoint(run)["step"] == 4


def test_allow_other_data_is_only_for_resume(cli, tiny_dataset, tmp_path):
    code, _, err = _train(cli, tiny_dataset, tmp_path / "run", "--steps", 2, "--allow-other-data")
    assert code == 2 and "--allow-other-data goes with --resume" in _last_line(err)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# 3. Out of memory: one line, nothing corrupt saved, --resume goes on

# glibc otherwise serves a step's tensors from heap memory freed by the step before, so a trainer
# capped at its current size could go on for ever; with a fixed mmap threshold each tensor above
# 64 KiB is mapped anew, and the first one after the cap fails as on a machine out of memory.
OOM_ENV = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}


def _starved_train(ds: Path, run: Path, ready: Path, *args) -> subprocess.CompletedProcess:
    """`postergen train` in its own process; once `ready` exists, its address space is capped at
    what it has mapped then (RLIMIT_AS, as `ulimit -v` sets it), so what it allocates next fails."""
    if not hasattr(resource, "prlimit") or not Path("/proc/self/status").exists():
        pytest.skip("capping a running process's memory needs Linux")
    cmd = [sys.executable, "-m", "postergen", "train", str(ds), "-o", str(run), *map(str, TINY), *map(str, args)]
    proc = subprocess.Popen(cmd, env={**os.environ, **OOM_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 600  # bounds a hung trainer only: each check below waits on a condition
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the trainer did not get going"
            time.sleep(0.01)
        with open(f"/proc/{proc.pid}/status") as f:
            mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (mapped, resource.RLIM_INFINITY))
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_out_of_memory_mid_run_is_one_line_and_resume_goes_on(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    r = _starved_train(tiny_dataset, run, folder / "latest.pt", "--steps", 400)
    line = _last_line(r.stderr)
    assert r.returncode == 2, r.stderr
    assert line.startswith("postergen train: error: out of CPU memory in step ") and "--batch 8 at 32x32 px" in line
    assert "last good checkpoint: step" in line and "continue with --resume" in line and "smaller --batch" in line
    # nothing half-written or unhealthy: the newest step file and latest.pt are the same good checkpoint
    steps = sorted(folder.glob("step-*.pt"))
    assert steps and not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert (folder / "latest.pt").read_bytes() == steps[-1].read_bytes()
    step = load_checkpoint(folder / "latest.pt")["step"]
    assert f"last good checkpoint: step {step}" in line
    code, out, err = _train(cli, tiny_dataset, run, "--steps", step + 2, "--resume")
    assert code == 0, err
    assert load_checkpoint(run)["step"] == step + 2


@pytest.mark.slow
def test_out_of_memory_before_any_checkpoint_suggests_a_smaller_batch(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    # capped after its first metrics line (step 2), not at once: native code that compiles kernels in
    # the first steps (oneDNN) may crash rather than fail cleanly when memory runs out right there
    r = _starved_train(tiny_dataset, run, run / "metrics.jsonl", "--steps", 400, "--checkpoint-every", 1000,
                       "--batch", 48)
    line = _last_line(r.stderr)
    assert r.returncode == 2, r.stderr
    assert "out of CPU memory" in line and "--batch 48 at 32x32 px" in line and "try a smaller --batch" in line
    assert not list(run.glob("checkpoints/*"))
    code, _, err = _train(cli, tiny_dataset, run, "--steps", 2)  # a new start needs no --force: nothing to lose
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# 4. The resume banner shows the run's own settings

@pytest.mark.slow
def test_the_resume_banner_shows_the_runs_batch_and_preset(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(cli, tiny_dataset, run, "--steps", 2, "--preset", "seed")[0] == 0
    code, out, err = cli("train", tiny_dataset, "-o", run, "--resume", "--steps", 4, "--no-tensorboard")
    assert code == 0, err
    banner = out.splitlines()[0]
    assert banner.endswith("4 steps of 8") and "preset seed" in banner and "0 genres" in banner
