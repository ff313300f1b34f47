"""Training: resume is exact, checkpoints are atomic and safe to load, runs stop cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from PIL import Image

from conftest import assert_same, checkpoint_weights, tiny_flags, tiny_train_args
from postergen import checkpoint as ckpt
from postergen.config import PRESETS, TrainConfig, from_preset
from postergen.data.dataset import open_dataset
from postergen.diagnose import Thresholds, d_overpowering
from postergen.engine.gan import train
from postergen.engine.monitor import FailureWatch
from postergen.engine.step import Stepper
from postergen.errors import TrainingDiverged, UserError


def _train(ds_path: Path, run: Path, resume=False, preset="stable", **overrides) -> dict:
    cfg = from_preset(preset, **tiny_train_args(**overrides))
    return train(open_dataset(ds_path), run, cfg, resume=resume, changed=set(overrides) | {"steps"},
                 echo=lambda *a: None)


@pytest.mark.parametrize("preset", ["stable", "seed"])
@pytest.mark.slow
def test_resume_gives_the_same_weights(tiny_dataset: Path, tmp_path: Path, preset: str):
    _train(tiny_dataset, tmp_path / "straight", preset=preset, steps=5)
    _train(tiny_dataset, tmp_path / "split", preset=preset, steps=3)  # odd: R1 (every 2nd D step) straddles
    summary = _train(tiny_dataset, tmp_path / "split", preset=preset, steps=5, resume=True)
    assert summary["step"] == 5
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))
    rows = [json.loads(l) for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3, 4, 5]


@pytest.mark.slow
def test_run_folder_contents(tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    _train(tiny_dataset, run, steps=4, keep_checkpoints=1)
    config = json.loads((run / "config.json").read_text())
    genres = open_dataset(tiny_dataset).genres
    assert config["genres"] == genres and config["model"]["n_genres"] == len(genres)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step-0000004.pt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    grid = Image.open(run / "samples" / "step-0000004.png")
    assert grid.size == (8 * 34 + 2, len(genres) * 34 + 2)  # one row of 8 per genre, 2 px padding
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "kimg", "loss_d", "loss_g", "d_real", "d_fake", "img_per_s", "lr_g", "lr_d"} <= rows[0].keys()
    assert not {"loss_d_features", "loss_g_features", "loss_recon"} & rows[0].keys()  # parts of other Ds only
    assert rows[-1]["kimg"] == 4 * 8 / 1000
    assert Image.open(run / "loss.png").size[0] > 100
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 4 and state["config"]["train"]["preset"] == "stable"
    assert {"torch", "numpy", "python"} <= state["rng"].keys()


@pytest.mark.slow
def test_existing_run_needs_resume_or_force(tiny_dataset: Path, tmp_path: Path):
    _train(tiny_dataset, tmp_path / "run", steps=2)
    with pytest.raises(UserError, match="--resume to continue or --force"):
        _train(tiny_dataset, tmp_path / "run", steps=2)
    with pytest.raises(UserError, match="cannot change --lr-d"):
        _train(tiny_dataset, tmp_path / "run", steps=4, resume=True, lr_d=1e-3)
    with pytest.raises(UserError, match="nothing to resume"):
        _train(tiny_dataset, tmp_path / "fresh", steps=2, resume=True)


@pytest.mark.slow
def test_interrupted_checkpoint_write_keeps_latest_loadable(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    _train(tiny_dataset, run, steps=2)
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        real_save({"half": torch.zeros(10)}, f)  # some bytes reach the temp file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_dataset, run, steps=4, resume=True)
    assert ckpt.load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2
    assert not list((run / "checkpoints").glob(".*tmp*"))


def test_nan_loss_stops_with_the_step(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    original = Stepper.g_update

    def poisoned(self, *args):
        stats = original(self, *args)
        self.g_calls = getattr(self, "g_calls", 0) + 1
        return stats | {"loss_g": stats["loss_g"] * float("nan")} if self.g_calls >= 3 else stats

    monkeypatch.setattr(Stepper, "g_update", poisoned)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at step 3.*last good checkpoint: step 2"):
        _train(tiny_dataset, tmp_path / "run", steps=6)
    assert ckpt.load_checkpoint(tmp_path / "run")["step"] == 2


@pytest.mark.parametrize("content", [b"", b"garbage bytes", None])
def test_broken_checkpoints_are_one_line_errors(tmp_path: Path, content):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"main.0.weight": torch.zeros(1)}, path)  # a real torch file, not ours
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as e:
        ckpt.load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_failure_watch_names_the_fix():
    watch = FailureWatch(Thresholds(warn_rows=4))
    healthy = [{"step": s, "d_real": 0.7, "d_fake": 0.3, "loss_g": 1.0} for s in range(4)]
    assert all(watch.update(r) is None for r in healthy)
    warnings = [watch.update({"step": 10 + s, "d_real": 0.99, "d_fake": 0.01, "loss_g": 5.0 + s}) for s in range(4)]
    assert warnings[:3] == [None] * 3 and "--d-every" in warnings[3] and "step 10" in warnings[3]
    # the same stretch is what the report finds, with the same thresholds
    assert [f.start for f in d_overpowering(list(watch.rows))] == [10]
    assert watch.update({"step": 20, "d_real": 0.99, "d_fake": 0.01, "loss_g": 9.0}) is None  # warns once


def test_seed_preset_is_the_seed_recipe():
    cfg = from_preset("seed")
    assert (cfg.batch, cfg.loss, cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.d_every, cfg.g_steps) == \
        (128, "bce", 2e-4, 2e-4, 0.5, 1, 1)
    assert not (cfg.conditional or cfg.spectral_norm or cfg.minibatch_std or cfg.augment or cfg.ema_kimg)
    assert cfg.d_norm == "batch" and set(PRESETS["seed"]) < {f for f in TrainConfig.__dataclass_fields__}


@contextlib.contextmanager
def _training(ds: Path, run: Path, steps: int) -> Iterator[subprocess.Popen]:
    """`postergen train` in a process of its own, killed on the way out if it still runs (a failed
    check must not leave it training for the rest of the suite)."""
    cmd = [sys.executable, "-m", "postergen", "train", str(ds), "-o", str(run), "--steps", str(steps),
           *tiny_flags(checkpoint_every=3, log_every=3, sample_every=1000)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until `path` exists, as long as `proc` runs; `timeout` only bounds a hung trainer."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"no {path} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_signal_saves_and_exits_cleanly(tiny_dataset: Path, tmp_path: Path, sig, code):
    run = tmp_path / "run"
    with _training(tiny_dataset, run, 100000) as proc:
        _wait_for(run / "checkpoints" / "latest.pt", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "--resume" in err
    step = ckpt.load_checkpoint(run)["step"]
    assert step >= 3 and ckpt.step_files(run / "checkpoints").get(step)


@pytest.mark.slow
def test_kill_9_leaves_a_loadable_checkpoint_and_resumes(tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    with _training(tiny_dataset, run, 100000) as proc:
        _wait_for(run / "checkpoints" / "step-0000006.pt", proc)
        proc.kill()
        proc.communicate()
    # what --resume reads: the kill may land between the step file and latest.pt, so latest.pt alone can
    # still be the step before; the step file it waited for is complete (written whole, then renamed)
    step = ckpt.load_latest(run)["step"]
    assert step >= 6
    summary = _train(tiny_dataset, run, steps=step + 2, resume=True, batch=8, ngf=8, ndf=8, genre_dim=64,
                     r1_gamma=0.0, r1_every=4, log_every=3, sample_every=1000, checkpoint_every=3)
    assert summary["step"] == step + 2


def test_cli_train_help_and_errors(cli, tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(SystemExit) as e:
        cli("train", "--help")
    assert e.value.code == 0
    code, out, err = cli("train", tmp_path / "nope", "-o", tmp_path / "run")
    assert code == 2 and "no such dataset folder" in err and err.count("\n") == 1
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--loss", "wasserstein")
    assert code == 2 and "loss must be bce or hinge" in err
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--batch", "4096")
    assert code == 2 and "fewer than one batch" in err
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--preset", "seed", "--epochs", "2",
                         "--dry-run")
    printed = json.loads(out)  # the config.json this run would write
    assert code == 0 and printed["train"]["steps"] == 2  # 48 posters < one batch of 128: one step per epoch
    assert printed["train"]["loss"] == "bce" and printed["kind"] == "gan" and printed["model"]["d_norm"] == "batch"


def test_train_help_shows_each_default_once(capsys):
    from postergen.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--lr-d LR_D" in text and "default 0.0002" in text and "seed preset 'bce'" in text
    assert "--spectral-norm, --no-spectral-norm" in text


def test_ema_half_life_and_rampup():
    from postergen.engine.step import Stepper

    cfg = from_preset("stable", batch=50, ema_kimg=10.0, ema_rampup=0.05)
    stepper = Stepper.__new__(Stepper)
    stepper.cfg, stepper.images_per_step = cfg, 100  # 2 ranks x 50
    # Late in training: half-life 10,000 images, so 100 steps of 100 images halve the old weight.
    assert (1 - stepper.ema_weight(10**6)) ** 100 == pytest.approx(0.5)
    # Early: half-life capped at 5% of the images seen (step 99: 10,000 seen -> 500 images).
    assert (1 - stepper.ema_weight(99)) ** 5 == pytest.approx(0.5)
