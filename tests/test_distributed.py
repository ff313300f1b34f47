"""A real 2-process torchrun (gloo, CPU): ranks stay identical, and the run resumes single-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postergen.engine import checkpoint as ckpt

TINY = ["--batch", "8", "--ngf", "8", "--ndf", "8", "--genre-dim", "8", "--log-every", "2", "--sample-every", "4",
        "--checkpoint-every", "2", "--no-tensorboard", "--device", "cpu"]


def _postergen(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "-m", "postergen", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("preset,extra", [("stable", ["--r1-gamma", "1", "--r1-every", "2"]), ("seed", [])])
def test_two_ranks_agree_and_resume_alone(tiny_dataset: Path, tmp_path: Path, preset: str, extra: list[str]):
    run = tmp_path / "run"
    done = _postergen("train", str(tiny_dataset), "-o", str(run), "--preset", preset, "--steps", "4", *TINY, *extra,
                      torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: step 4") == 1  # only rank 0 talks
    ddp = json.loads((run / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and len(ddp["fingerprints"]) == 2
    assert ddp["fingerprints"][0] == ddp["fingerprints"][1]  # G, D and EMA weights bit-identical on both ranks
    state = ckpt.load_checkpoint(run)
    assert state["world_size"] == 2 and state["step"] == 4
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["kimg"] == 4 * 8 * 2 / 1000  # each rank drew its own 8 posters per step
    alone = _postergen("train", str(tiny_dataset), "-o", str(run), "--resume", "--steps", "6", "--device", "cpu")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert ckpt.load_checkpoint(run)["step"] == 6 and ckpt.load_checkpoint(run)["world_size"] == 1


def test_sync_bn_on_cpu_is_a_one_line_error(tiny_dataset: Path, tmp_path: Path):
    done = _postergen("train", str(tiny_dataset), "-o", str(tmp_path / "run"), "--preset", "seed", "--sync-bn",
                      "--steps", "2", *TINY, torchrun=True)
    assert done.returncode != 0
    assert "postergen train: error: --sync-bn needs CUDA devices" in done.stderr
    assert "Traceback" not in done.stderr.split("error: --sync-bn")[0].split("\n")[-1]
