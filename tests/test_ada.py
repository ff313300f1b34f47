"""ADA: p follows D's confidence on real posters, augmentations hit with probability p."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import assert_same, checkpoint_weights, tiny_train_args
from postergen.engine.ada import ADA_INTERVAL, ADA_TARGET, AdaController, ada_augment, rand_scale


def test_p_rises_while_d_is_overconfident_and_falls_otherwise():
    ada = AdaController(batch=8, interval=2, speed_images=160)  # step size 2 * 8 / 160 = 0.1
    for step in range(1, 9):
        ada.observe(torch.ones(8, 1))  # every real called real: r_t = 1 > 0.6
        ada.adjust(step)
    assert abs(float(ada.p) - 0.4) < 1e-6 and float(ada.r_t) == 1.0
    for step in range(9, 41):
        ada.observe(-torch.ones(8, 1))  # r_t = -1 < 0.6: p falls and stops at 0
        ada.adjust(step)
    assert float(ada.p) == 0.0
    for step in range(41, 1000):
        ada.observe(torch.ones(8, 5, 5))  # a patch D's logits count per patch
        ada.adjust(step)
    assert float(ada.p) == 1.0  # clamped


def test_p_stays_when_no_d_step_was_observed():
    ada = AdaController(batch=8, interval=1, speed_images=8)
    ada.p.fill_(0.5)
    ada.adjust(1)
    assert float(ada.p) == 0.5


def test_state_round_trip_continues_exactly():
    a = AdaController(batch=4, interval=2, speed_images=40)
    for step in range(1, 6):
        a.observe(torch.randn(4, 1, generator=torch.Generator().manual_seed(step)))
        a.adjust(step)
    b = AdaController(batch=4, interval=2, speed_images=40)
    b.load_state_dict(a.state_dict())
    for ctl in (a, b):
        ctl.observe(torch.ones(4, 1))
        ctl.adjust(6)
    assert torch.equal(a.p, b.p) and torch.equal(a.stats, b.stats)


def test_augment_hits_with_probability_p():
    x = torch.rand(512, 3, 16, 16) * 2 - 1
    assert torch.equal(ada_augment(x, torch.tensor(0.0)), x)  # p = 0: D sees the posters as they are
    changed = (ada_augment(x, torch.tensor(1.0)) != x).flatten(1).any(1)
    assert changed.float().mean() > 0.99
    torch.manual_seed(0)
    some = (ada_augment(x, torch.tensor(0.2)) != x).flatten(1).any(1).float().mean()
    assert 0.6 < some < 0.8  # 1 - 0.8^6 = 0.74 of samples get at least one of the 6 augmentations


def test_scale_is_differentiable_and_keeps_shape():
    x = torch.rand(4, 3, 24, 16, requires_grad=True)
    y = rand_scale(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None and x.grad.abs().sum() > 0


def _train(ds: Path, run: Path, steps: int, resume: bool = False) -> dict:
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import train

    cfg = from_preset("stable", **tiny_train_args(steps=steps, augment="ada", log_every=1))
    return train(open_dataset(ds), run, cfg, resume=resume, changed={"steps"}, echo=lambda *a: None)


@pytest.mark.slow
def test_ada_run_logs_p_saves_it_and_resumes_exactly(tiny_dataset: Path, tmp_path: Path):
    from postergen.checkpoint import load_checkpoint

    _train(tiny_dataset, tmp_path / "straight", steps=10)
    _train(tiny_dataset, tmp_path / "split", steps=6)  # 6: mid-way between two adjustments (every 4 steps)
    _train(tiny_dataset, tmp_path / "split", steps=10, resume=True)
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))
    states = [load_checkpoint(tmp_path / r / "checkpoints" / "latest.pt")["ada"] for r in ("straight", "split")]
    assert_same(*states)
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["augment_p"] <= 1 and -1 <= r["ada_rt"] <= 1 for r in rows)
    p = 0.0  # p moves only at adjustments (every 4 steps), by 4 x 8 / 20,000 toward keeping r_t at 0.6
    for r in rows:
        if r["step"] % ADA_INTERVAL == 0:
            p = min(1.0, max(0.0, p + (0.0016 if r["ada_rt"] > ADA_TARGET else -0.0016)))
        assert abs(r["augment_p"] - p) < 1e-6, r
    assert float(states[0]["p"]) == rows[-1]["augment_p"]


def test_fixed_augment_runs_log_no_p(tiny_run: Path):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert not {"augment_p", "ada_rt"} & rows[0].keys()


def test_cli_takes_ada_alone(cli, tiny_dataset: Path, tmp_path: Path):
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "r", "--augment", "ada,color", "--dry-run")
    assert code == 2 and "unknown policy ada" in err and "ada alone" in err
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "r", "--augment", "ada", "--dry-run")
    assert code == 0, err
