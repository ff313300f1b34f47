"""The feature-ensemble discriminator (--discriminator ensemble): the loss is exactly loss(base) +
w * loss(features); the feature D neither runs nor trains before --feature-start and trains after;
resume is bit-exact across the start; checkpoints hold no frozen network; readers draw from the run;
bad option values are one-line errors."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import (
    HUGE,
    NoHostReads,
    assert_same,
    checkpoint_weights,
    one_line_error,
    outside_mode,
    parameters_of,
    tiny_train_args,
    with_small_defaults,
)
from postergen import checkpoint as ckpt
from postergen.config import from_preset
from postergen.data.dataset import open_dataset
from postergen.engine.gan import build, train
from postergen.engine.losses import hinge_d, hinge_g
from postergen.engine.step import Stepper
from postergen.models import efficientnet
from postergen.models.ensemble import EnsembleDiscriminator

CPU = torch.device("cpu")


def _args(**kw) -> dict:
    return tiny_train_args(**{"discriminator": "ensemble", "feature_res": 64, **kw})


def _stepper(**kw) -> Stepper:
    cfg = from_preset("stable", **_args(precision="fp32", **kw))
    m = build(cfg, cfg.model_config(32, 32, 3), CPU)
    return Stepper(m, cfg, CPU, conditional=True)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    genres = (torch.rand(8, 3, generator=g) > 0.5).float()
    return real, genres


def test_the_loss_is_the_base_loss_plus_w_times_the_feature_loss():
    stepper = _stepper(feature_weight=0.3, feature_start=0, r1_gamma=0.0)
    m, augment = stepper.m, stepper.obj.augment
    assert isinstance(m.D, EnsembleDiscriminator)
    real, genres = _data()

    G, D = copy.deepcopy(m.G), copy.deepcopy(m.D)  # the same weights and spectral-norm vectors
    torch.manual_seed(1)
    stats = stepper.d_update(real, genres, r1=False, staged=True)
    torch.manual_seed(1)  # the same noise and augmentation, by hand
    with torch.no_grad():
        fake = G(torch.randn(8, stepper.cfg.z_dim), genres)
    on_real, on_fake = D(augment(real), genres), D(augment(fake), genres)
    base, feats = hinge_d(on_real[0], on_fake[0]), hinge_d(on_real[1], on_fake[1])
    assert torch.equal(stats["loss_d"], (base + 0.3 * feats).detach())
    assert feats.abs() > 0 and not torch.equal(stats["loss_d"], base.detach())
    assert torch.equal(stats["loss_d_features"], feats.detach())  # logged beside the total, unweighted
    assert torch.equal(stats["d_real"], torch.sigmoid(on_real[0].detach()).mean())  # statistics: the base D's

    G, D = copy.deepcopy(m.G), copy.deepcopy(m.D)
    torch.manual_seed(2)
    stats = stepper.g_update(8, genres, staged=True)
    torch.manual_seed(2)
    out = D(augment(G(torch.randn(8, stepper.cfg.z_dim), genres)), genres)
    assert torch.equal(stats["loss_g"], (hinge_g(out[0]) + 0.3 * hinge_g(out[1])).detach())
    assert torch.equal(stats["loss_g_features"], hinge_g(out[1]).detach())

    G, D = copy.deepcopy(m.G), copy.deepcopy(m.D)
    torch.manual_seed(3)
    stats = stepper.g_update(8, genres, staged=False)  # before the start: the base D alone
    torch.manual_seed(3)
    out = D(augment(G(torch.randn(8, stepper.cfg.z_dim), genres)), genres, staged=False)
    assert isinstance(out, torch.Tensor) and torch.equal(stats["loss_g"], hinge_g(out).detach())
    assert "loss_g_features" not in stats


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_feature_d_neither_runs_nor_trains_before_its_start_and_trains_after():
    stepper = _stepper(feature_start=3, r1_gamma=1.0, r1_every=2)
    D = stepper.m.D
    assert [stepper.phase(s)[2] for s in range(5)] == [False, False, False, True, True]
    net = [p.detach().clone() for p in D.features.network.parameters()]
    start, base_start = _snapshot(D.features), _snapshot(D.base)
    torch.manual_seed(0)
    for step in range(3):
        stepper.step(step, *_data(step))
    # not run: its BatchNorm statistics and spectral-norm vectors (buffers) have not moved either
    assert_same(_snapshot(D.features), start)
    assert any(not torch.equal(v, base_start[k]) for k, v in _snapshot(D.base).items())  # the base D trained
    for step in range(3, 5):
        stepper.step(step, *_data(step))
    now = dict(D.features.named_parameters())
    trainable = [k for k, p in now.items() if p.requires_grad]
    assert trainable and all(not torch.equal(now[k], start[k]) for k in trainable)
    assert all(torch.equal(now[k], start[k]) for k, p in now.items() if not p.requires_grad)  # projections
    assert all(torch.equal(a, b) for a, b in zip(net, D.features.network.parameters()))  # frozen network


def test_a_zero_weight_never_switches_the_feature_term_on():
    stepper = _stepper(feature_weight=0.0, feature_start=0)
    assert not any(stepper.phase(s)[2] for s in range(4))
    plain = Stepper(stepper.m, from_preset("stable", **_args(discriminator="dcgan")), CPU, conditional=True)
    assert not any(plain.phase(s)[2] for s in range(4))  # one-part Ds: never a feature term


@pytest.mark.slow
def test_the_capturable_step_matches_the_plain_step_across_feature_start():
    """--cuda-graph's static form (run eagerly here) computes what the plain step computes, with no host
    read, through all the kinds: before the start (D+R1, D) and after it (the same with the feature term)."""
    from postergen.engine.step import Meter, StaticStep

    results = []
    for graphable in (False, True):
        stepper = _stepper(feature_start=2, r1_gamma=1.0, r1_every=2, cuda_graph=graphable)
        m, meter = stepper.m, Meter(CPU)
        m.opt_g.step, m.opt_d.step = outside_mode(m.opt_g.step), outside_mode(m.opt_d.step)
        static = StaticStep(stepper, meter)
        torch.manual_seed(5)
        for step in range(4):
            if graphable:
                with NoHostReads():
                    static(step, *_data(step))
            else:
                meter.add(step, stepper.step(step, *_data(step)))
        results.append((parameters_of(m), meter.sums.clone()))
    assert {stepper.phase(s) for s in range(4)} == {(True, True, False), (True, False, False),
                                                    (True, True, True), (True, False, True)}
    (plain, plain_sums), (static_p, static_sums) = results
    assert all(torch.equal(a, b) for a, b in zip(plain, static_p)) and torch.equal(plain_sums, static_sums)


def _train(ds: Path, run: Path, resume: bool = False, echo=lambda *a: None, **kw) -> dict:
    cfg = from_preset("stable", **_args(feature_start=3, **kw))
    return train(open_dataset(ds), run, cfg, resume=resume, changed={"steps"}, echo=echo)


@pytest.fixture(scope="module")
def ensemble_run(tiny_dataset: Path, tmp_path_factory) -> Path:
    """4 steps, the feature term on from step 3 (R1 every 2nd D update, genres, EMA, DiffAugment)."""
    run = tmp_path_factory.mktemp("ensemble") / "run"
    _train(tiny_dataset, run, steps=4)
    return run


@pytest.mark.slow
def test_resume_is_bit_exact_across_feature_start(ensemble_run, tiny_dataset, tmp_path):
    said = []
    _train(tiny_dataset, tmp_path / "split", steps=2, echo=said.append)
    assert any("--feature-start 3 is not before the run's end" in line for line in said)
    assert _train(tiny_dataset, tmp_path / "split", steps=4, resume=True)["step"] == 4
    assert_same(checkpoint_weights(ensemble_run), checkpoint_weights(tmp_path / "split"))


@pytest.mark.slow
def test_the_feature_parts_are_logged_once_they_count(ensemble_run):
    rows = {r["step"]: r for r in map(json.loads, (ensemble_run / "metrics.jsonl").read_text().splitlines())}
    assert not {"loss_d_features", "loss_g_features"} & rows[2].keys()  # steps 0-1: before --feature-start 3
    assert rows[4]["loss_d_features"] > 0 and rows[4]["loss_g_features"] != 0  # step 3 had them


@pytest.mark.slow
def test_checkpoints_hold_no_frozen_network(ensemble_run):
    state = ckpt.load_checkpoint(ensemble_run / "checkpoints" / "latest.pt")
    config = state["config"]
    assert config["model"]["discriminator"] == "ensemble"
    assert (config["train"]["feature_weight"], config["train"]["feature_start"]) == (0.1, 3)
    assert all(k.startswith(("base.", "features.discs.", "features.project.")) for k in state["D"])
    lite0 = {tuple(p.shape) for p in efficientnet.network("lite0").parameters()}
    saved = {tuple(v.shape) for v in state["D"].values()}
    assert (320, 1152, 1, 1) in lite0 and (320, 1152, 1, 1) not in saved  # Lite0's last projection


@pytest.mark.slow
def test_sample_and_export_work_on_an_ensemble_run(ensemble_run, tmp_path, cli):
    code, _, err = cli("sample", ensemble_run, "-o", tmp_path / "samples", "--n", "4", "--seed", "0")
    assert code == 0, err
    assert len(list((tmp_path / "samples").glob("*.png"))) >= 4
    code, _, err = cli("export", ensemble_run, "-o", tmp_path / "g.safetensors")
    assert code == 0, err
    from postergen.weights import load_generator

    G, meta = load_generator(tmp_path / "g.safetensors")
    with torch.no_grad():
        assert G(torch.randn(2, 100), torch.zeros(2, len(meta["genres"]))).shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_resume_keeps_the_feature_settings(ensemble_run, tiny_dataset, tmp_path, cli):
    shutil.copytree(ensemble_run, tmp_path / "run")
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--resume", "--steps", "6",
                       "--feature-start", "1", "--device", "cpu")
    one_line_error(code, err, "train", "--feature-start (3 -> 1)")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["feature_start"] == 3


BAD = [(["--feature-weight", "-1"], "--feature-weight"), (["--feature-weight", "nan"], "--feature-weight"),
       (["--feature-weight", "inf"], "--feature-weight"), (["--feature-start", "-1"], "--feature-start"),
       (["--feature-start", HUGE], "--feature-start")]


@pytest.mark.parametrize("extra, option", BAD, ids=["_".join(e) for e, _ in BAD])
def test_bad_feature_options_are_one_line_errors(cli, tiny_dataset, tmp_path, extra, option):
    out = tmp_path / "run"
    args = with_small_defaults(extra, steps="2", batch="8", ngf="8", ndf="8", genre_dim="8", feature_res="64", device="cpu")
    code, _, err = cli("train", tiny_dataset, "-o", out, "--no-tensorboard", "--discriminator", "ensemble", *args)
    one_line_error(code, err, "train", option)
    assert not out.exists()
