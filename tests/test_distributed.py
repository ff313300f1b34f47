"""A real 2-process torchrun (gloo, CPU): ranks stay identical, and the run resumes single-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_postergen, torchrun_train
from postergen import checkpoint as ckpt

pytestmark = pytest.mark.slow  # each test starts torchrun and its processes


@pytest.mark.parametrize("preset,extra", [("stable", ["--r1-gamma", "1", "--r1-every", "2"]), ("seed", []),
                                          ("stable", ["--augment", "ada"])])
def test_two_ranks_agree_and_resume_alone(tiny_dataset: Path, tmp_path: Path, preset: str, extra: list[str]):
    run = tmp_path / "run"
    done = torchrun_train(tiny_dataset, run, "--preset", preset, "--steps", "4", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: step 4") == 1  # only rank 0 talks
    ddp = json.loads((run / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and len(ddp["fingerprints"]) == 2
    assert ddp["fingerprints"][0] == ddp["fingerprints"][1]  # G, D and EMA weights bit-identical on both ranks
    state = ckpt.load_checkpoint(run)
    assert state["world_size"] == 2 and state["step"] == 4
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["kimg"] == 4 * 8 * 2 / 1000  # each rank drew its own 8 posters per step
    alone = run_postergen("train", tiny_dataset, "-o", run, "--resume", "--steps", "6", "--device", "cpu")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert ckpt.load_checkpoint(run)["step"] == 6 and ckpt.load_checkpoint(run)["world_size"] == 1


def test_sync_bn_on_cpu_is_a_one_line_error(tiny_dataset: Path, tmp_path: Path):
    done = torchrun_train(tiny_dataset, tmp_path / "run", "--preset", "seed", "--sync-bn", "--steps", "2")
    assert done.returncode != 0
    assert "postergen train: error: --sync-bn needs CUDA devices" in done.stderr
    assert "Traceback" not in done.stderr.split("error: --sync-bn")[0].split("\n")[-1]
