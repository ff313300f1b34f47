"""The run engine: one lifecycle for GAN and SR runs, run kinds, and what trains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import build_gan, built_in_dataset, tiny_train_args
from postergen.checkpoint import load_checkpoint
from postergen.config import from_preset
from postergen.data.dataset import open_dataset
from postergen.engine import sr as sr_engine
from postergen.engine.gan import train
from postergen.engine.sr import SRTrainConfig, train_sr
from postergen.errors import TrainingDiverged, UserError

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_sr(**overrides) -> SRTrainConfig:
    args = dict(scale=4, channels=8, blocks=1, steps=2, batch=4, patch=8, log_every=2, val_every=2,
                checkpoint_every=2, val_posters=2, device="cpu", precision="fp32")
    return SRTrainConfig(**{**args, **overrides})


# ---------------------------------------------------------------------------------------------
# 1, 2. SR runs share the GAN runs' lifecycle: resume keeps the run's length, NaN is never saved

def test_sr_resume_without_steps_keeps_the_runs_length(hr_dataset, tmp_path, cli):
    run = tmp_path / "sr"
    train_sr(hr_dataset, run, tiny_sr(steps=2))
    code, out, err = cli("train-sr", hr_dataset, "-o", run, "--resume")  # no --steps: the run's 2 stand
    assert code == 0, err
    assert "done: step 2" in out
    assert load_checkpoint(run)["config"]["train"]["steps"] == 2


def test_sr_nan_loss_is_never_checkpointed(hr_dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_l1 = sr_engine.l1_loss

    def poisoned(sr, hr):
        calls["n"] += 1
        loss = real_l1(sr, hr)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(sr_engine, "l1_loss", poisoned)
    # logging only at the end, a checkpoint every step: the guard must stand before each save
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at step 3.*last good checkpoint: step 2"):
        train_sr(hr_dataset, tmp_path / "sr", tiny_sr(steps=6, checkpoint_every=1, log_every=6, val_every=6))
    state = load_checkpoint(tmp_path / "sr")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


# ---------------------------------------------------------------------------------------------
# Run kinds

def test_every_run_records_its_kind_and_arch(tiny_run, hr_dataset, tmp_path):
    import json

    gan = json.loads((tiny_run / "config.json").read_text())
    assert (gan["kind"], gan["arch"]) == ("gan", "dcgan")
    assert (load_checkpoint(tiny_run)["config"]["kind"]) == "gan"
    train_sr(hr_dataset, tmp_path / "sr", tiny_sr())
    sr = json.loads((tmp_path / "sr" / "config.json").read_text())
    assert (sr["kind"], sr["arch"]) == ("sr", "edsr")


def test_resuming_a_run_of_the_other_kind_says_which_command_takes_it(tiny_run, tiny_dataset, hr_dataset, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "gan")
    with pytest.raises(UserError, match=r"is a gan run \(dcgan\); postergen train-sr --resume needs a sr run"):
        train_sr(hr_dataset, tmp_path / "gan", tiny_sr(), resume=True)
    train_sr(hr_dataset, tmp_path / "sr", tiny_sr())
    cfg = from_preset("stable", **tiny_train_args())
    with pytest.raises(UserError, match=r"is a sr run \(edsr\).*postergen upscale --model"):
        train(open_dataset(tiny_dataset), tmp_path / "sr", cfg, resume=True, echo=lambda *a: None)


def test_a_run_from_before_kinds_resumes_as_a_dcgan_gan(tmp_path):
    """tests/fixtures/legacy_run was written by postergen 654aaed (no kind, no arch)."""
    legacy = load_checkpoint(FIXTURES / "legacy_run")
    assert "kind" not in legacy["config"]
    data = built_in_dataset(tmp_path, n=16, size=32)  # its dataset: built-in posters at 32 px with the same 8 genres
    shutil.copytree(FIXTURES / "legacy_run", tmp_path / "run")
    summary = train(open_dataset(data), tmp_path / "run",
                    from_preset("stable", steps=3, batch=4, device="cpu", tensorboard=False),
                    resume=True, changed={"steps"}, echo=lambda *a: None)
    assert summary["step"] == 3
    state = load_checkpoint(tmp_path / "run")
    assert (state["config"]["kind"], state["config"]["arch"]) == ("gan", "dcgan")
    assert state["config"]["train"]["ngf"] == 4  # the run's own settings, not the defaults


# ---------------------------------------------------------------------------------------------
# 7. A frozen part of D stays frozen: never in an optimiser, never switched on by a step

@pytest.mark.parametrize("captured", [False, True])
def test_a_frozen_part_of_d_stays_frozen_and_bit_identical(captured, monkeypatch):
    from postergen.engine.gan import build
    from postergen.engine.step import Meter, StaticStep, Stepper
    from postergen.models import dcgan, registry

    cfg = from_preset("stable", **tiny_train_args())
    model_cfg = cfg.model_config(32, 32, 0)
    frozen_part = lambda D: D.main[0]  # noqa: E731 (the first convolution, as a pretrained stem would be)

    def build_with_frozen_stem(mc):
        G, D = build_gan(mc)  # the dcgan entry's G and D
        frozen_part(D).requires_grad_(False)
        return G, D

    # a model family with a frozen part is one registry entry
    monkeypatch.setitem(registry.ARCHS, "frozen-stem",
                        registry.Arch("gan", dcgan.ModelConfig, build_with_frozen_stem, dcgan.Generator))
    m = build(cfg, model_cfg, torch.device("cpu"), arch="frozen-stem")
    # parameters, not buffers: spectral norm's power-iteration vectors move with every forward pass
    before = {k: v.detach().clone() for k, v in frozen_part(m.D).named_parameters()}
    others = {k: v.detach().clone() for k, v in m.D.named_parameters() if not k.startswith("main.0.")}
    in_opt = {id(p) for group in m.opt_d.param_groups for p in group["params"]}
    assert not any(id(p) in in_opt for p in frozen_part(m.D).parameters())
    stepper, meter = Stepper(m, cfg, torch.device("cpu"), conditional=False), Meter(torch.device("cpu"))
    run = StaticStep(stepper, meter) if captured else (lambda s, r, g: meter.add(s, stepper.step(s, r, g)))
    torch.manual_seed(0)
    for step in range(3):
        run(step, torch.rand(8, 3, 32, 32) * 2 - 1, torch.zeros(8, 0))
    assert all(not p.requires_grad for p in frozen_part(m.D).parameters())
    after = dict(frozen_part(m.D).named_parameters())
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    now = dict(m.D.named_parameters())
    assert all(not torch.equal(v, now[k]) for k, v in others.items())  # the rest trained


def test_the_studio_takes_an_sr_run_by_its_kind_not_its_folder_name(tiny_run, hr_dataset, tmp_path):
    import json
    import urllib.request

    from postergen.web.app import create_app, running

    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "posters")
    train_sr(hr_dataset, root / "enhance", tiny_sr(scale=2))
    with running(create_app(root, device="cpu")) as base:
        def get(path):
            with urllib.request.urlopen(base + path) as r:
                return json.loads(r.read())

        assert [r["id"] for r in get("/api/runs")] == ["posters"]  # the SR run is no poster run
        assert get("/api/health")["upscaler"] is True
        req = urllib.request.Request(base + "/api/generate", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"run": "posters", "n": 1, "upscale": True}).encode())
        with urllib.request.urlopen(req) as r:
            body = json.loads(r.read())
        assert body["upscaled"] is True


# ---------------------------------------------------------------------------------------------
# 3, 4, 5. Readers dispatch on the kind; the length counts every process; --dry-run --resume tells the truth

@pytest.mark.parametrize("command", [["sample", "-o", "OUT"], ["export", "-o", "OUT/g.safetensors"],
                                     ["evaluate", "--data", "DATA", "--n", "4"], ["report"]])
def test_gan_readers_refuse_an_sr_run_in_one_line(hr_dataset, tmp_path, cli, command):
    train_sr(hr_dataset, tmp_path / "sr", tiny_sr())
    args = [str(a).replace("OUT", str(tmp_path / "out")).replace("DATA", str(hr_dataset)) for a in command]
    code, _, err = cli(args[0], tmp_path / "sr", *args[1:])
    errors = [line for line in err.splitlines() if line.startswith("postergen")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "is a sr run (edsr)" in errors[0] and "upscale" in errors[0]
    assert not (tmp_path / "out").exists()


def test_epochs_and_kimg_count_every_process(tiny_dataset, tmp_path, cli, monkeypatch):
    import json

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: the global batch is 2 x 8
    code, out, _ = cli("train", tiny_dataset, "-o", tmp_path / "run", "--batch", 8, "--epochs", 1, "--dry-run")
    assert code == 0 and json.loads(out)["train"]["steps"] == 3  # 48 posters / 16 a step
    code, out, _ = cli("train", tiny_dataset, "-o", tmp_path / "run", "--batch", 8, "--kimg", 0.064, "--dry-run")
    assert code == 0 and json.loads(out)["train"]["steps"] == 4  # 64 images / 16 a step


def test_dry_run_resume_prints_the_runs_own_configuration(tiny_run, tiny_dataset, tmp_path, cli):
    import json

    shutil.copytree(tiny_run, tmp_path / "run")
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--resume", "--steps", 9, "--dry-run")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["train"]["ngf"] == 8 and printed["train"]["steps"] == 9  # the run's width, the new length
    assert load_checkpoint(tmp_path / "run")["step"] == 2  # nothing ran


# ---------------------------------------------------------------------------------------------
# 6. One source of truth for every model option and its default

def test_model_options_have_one_default_and_doc():
    import dataclasses

    from postergen.config import MODEL_OPTIONS, ModelConfig, TrainConfig

    model = {f.name: f for f in dataclasses.fields(ModelConfig)}
    train = {f.name: f for f in dataclasses.fields(TrainConfig)}
    # every model field is a training option, but those the data sets: the ones that follow its shape and genres
    small, large = TrainConfig().model_config(32, 32, 1), TrainConfig().model_config(96, 64, 3)
    from_data = {name for name in model if getattr(small, name) != getattr(large, name)}
    assert from_data and set(MODEL_OPTIONS) == model.keys() - from_data
    for name in MODEL_OPTIONS:
        assert (train[name].default, train[name].metadata["doc"]) == (model[name].default, model[name].metadata["doc"])
    assert TrainConfig().model_config(64, 64, 0) == ModelConfig()  # the stable preset's model is the default model


# ---------------------------------------------------------------------------------------------
# 8. --mode-seeking: G's batch is pairs of noise with the same genres, and the term is logged

def test_mode_seeking_pairs_genres_in_gs_batch_and_logs_its_term(tiny_dataset, tmp_path):
    import json

    from postergen.engine.gan import build
    from postergen.engine.step import MODE_SEEKING, Stepper

    cfg = from_preset("stable", **tiny_train_args(mode_seeking=1.0, label_dropout=0.0))
    m = build(cfg, cfg.model_config(32, 32, 3), torch.device("cpu"))
    seen = []
    m.G.register_forward_hook(lambda mod, args, out: seen.append(args[1].clone()))
    stepper = Stepper(m, cfg, torch.device("cpu"), conditional=True)
    genres = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2, 0])]  # an odd batch: the last has no partner
    out = stepper.g_update(7, genres)
    (given,) = seen
    assert torch.equal(given[:3], genres[:3]) and torch.equal(given[3:6], genres[:3]) and torch.equal(given[6], genres[6])
    assert out[MODE_SEEKING] > 0 and MODE_SEEKING in stepper.part_keys
    off = Stepper(m, from_preset("stable", **tiny_train_args()), torch.device("cpu"), conditional=True)
    assert MODE_SEEKING not in off.g_update(7, genres) and MODE_SEEKING not in off.part_keys

    run = tmp_path / "run"
    train(open_dataset(tiny_dataset), run, cfg, echo=lambda *a: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(MODE_SEEKING in row for row in rows)
    assert json.loads((run / "config.json").read_text())["train"]["mode_seeking"] == 1.0
