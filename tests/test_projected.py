"""The projected discriminator and the FastGAN generator: the frozen network is the pretrained one, stays
frozen and out of every file; the models train, resume exactly, and every reader draws from their runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import (
    BOW_TIE,
    MILITARY_UNIFORM,
    SUIT,
    WINDSOR_TIE,
    assert_same,
    built_in_dataset,
    checkpoint_weights,
    decode,
    grace_hopper,
    post,
    tiny_train_args,
    torchrun_train,
)
from postergen import checkpoint as ckpt
from postergen.config import ModelConfig, from_preset
from postergen.data.dataset import open_dataset
from postergen.engine.gan import train
from postergen.models import efficientnet, registry
from postergen.models.fastgan import Generator as FastGAN
from postergen.models.projected import ProjectedDiscriminator


def test_lite0_is_the_pretrained_imagenet_classifier():
    net = efficientnet.network("lite0")
    assert len(net.blocks) == 16  # Lite0: repeats 1, 2, 2, 3, 3, 4, 1
    x = (grace_hopper().float() - efficientnet.MEAN) / efficientnet.STD
    with torch.inference_mode():
        probs = net.logits(torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear")).softmax(1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == MILITARY_UNIFORM, top5
    assert {BOW_TIE, SUIT, WINDSOR_TIE} & set(top5[1:]), top5


def test_taps_are_at_strides_4_8_16_32():
    shapes = [t.shape for t in efficientnet.network("lite0").taps(torch.zeros(1, 3, 224, 224), efficientnet.LITES["lite0"].taps)]
    assert [tuple(s[1:]) for s in shapes] == [(24, 56, 56), (40, 28, 28), (112, 14, 14), (320, 7, 7)]


def _projected(**kw) -> ProjectedDiscriminator:
    torch.manual_seed(0)
    return ProjectedDiscriminator(ModelConfig(**{"discriminator": "projected", "feature_res": 64, **kw}))


def test_frozen_network_is_outside_state_dict_and_optimiser_and_never_changes():
    D = _projected(n_genres=3)
    net = D.network
    before = [p.clone() for p in net.parameters()]
    keys = D.state_dict().keys()
    assert not any(k.startswith(("network", "_frozen")) for k in keys)
    net_params = {id(p) for p in net.parameters()}
    assert not net_params & {id(p) for p in D.parameters()}
    trainable = [n for n, p in D.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("discs.") for n in trainable)
    frozen_proj = [n for n, p in D.named_parameters() if not p.requires_grad]
    assert frozen_proj and all(n.startswith("project.") for n in frozen_proj)  # random projections: saved, fixed
    proj_before = {n: p.clone() for n, p in D.project.named_parameters()}

    opt = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(4, 3, 64, 64, requires_grad=True)
    genres = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    for _ in range(2):
        opt.zero_grad()
        logits = D(x, genres)
        logits.mean().backward()
        opt.step()
    assert logits.shape[0] == 4 and logits.ndim == 2
    assert x.grad is not None and x.grad.abs().sum() > 0  # G's gradient flows through the frozen network
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(torch.equal(proj_before[n], p) for n, p in D.project.named_parameters())


def test_moving_d_moves_the_frozen_network():
    D = _projected().to(torch.float64)
    assert next(D.network.parameters()).dtype == torch.float64
    assert D(torch.randn(2, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64
    D = _projected().to(memory_format=torch.channels_last)
    assert D.network.stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_genres_change_the_logits_and_zero_genres_mean_none():
    D = _projected(n_genres=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        none = D(x)
        zero = D(x, torch.zeros(2, 3))
        some = D(x, torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
        mixed = D(x, torch.tensor([[1.0, 0, 0], [0, 0, 0]]))  # a genre, and none (label dropout)
    assert torch.allclose(none, zero) and not torch.allclose(none, some)
    assert torch.equal(mixed[0], some[0]) and torch.equal(mixed[1], none[1])
    with pytest.raises(ValueError, match="genres must have shape"):
        D(x, torch.zeros(2, 4))


@pytest.mark.parametrize("height,width", [(64, 64), (96, 64), (128, 128), (192, 128), (256, 256)])
def test_fastgan_shapes_square_and_2_3(height, width):
    G = FastGAN(ModelConfig(height=height, width=width, ngf=4, n_genres=2))
    x = G(torch.randn(2, 100), torch.tensor([[1.0, 0], [0, 0]]))
    assert x.shape == (2, 3, height, width) and x.abs().max() <= 1
    assert len(G.sle) == {64: 1, 128: 2, 256: 3}[width]  # skip-layer excitation from 64 px up


def test_fastgan_genre_bn_conditions_every_block_from_the_start():
    """--genre-bn: genres set the BatchNorm gain and bias of every upsampling block (the reference's
    conditional FastGAN); without it, a freshly initialised G barely depends on its genres."""
    from postergen.models.dcgan import init_weights
    from postergen.models.fastgan import GenreBatchNorm

    z, genres = torch.randn(4, 100), torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    effect = {}
    for genre_bn in (False, True):
        torch.manual_seed(0)
        G = FastGAN(ModelConfig(ngf=8, n_genres=3, genre_bn=genre_bn))
        G.apply(init_weights)  # the registry's init: it must leave the genre code's scale alone
        G(torch.randn(16, 100), genres.repeat(4, 1))  # BatchNorm statistics from a batch
        G.eval()
        with torch.no_grad():
            effect[genre_bn] = (G(z, genres) - G(z, genres.roll(1, 0))).abs().mean().item()
            assert torch.equal(G(z, None), G(z, torch.zeros(4, 3)))  # no genre = the zero code
        blocks = [m for m in G.modules() if isinstance(m, GenreBatchNorm)]
        assert len(blocks) == (len(G.sizes) if genre_bn else 0)
    assert effect[True] > 100 * effect[False], effect
    assert not FastGAN(ModelConfig(ngf=4, n_genres=0, genre_bn=True)).genre_bn  # unconditional: nothing to add


def test_projected_d_at_2_3_keeps_the_aspect():
    D = _projected(height=96, width=64, feature_res=64)
    assert D.res == (96, 64)
    assert D(torch.randn(2, 3, 96, 64)).shape[0] == 2


def _train(ds: Path, run: Path, resume: bool = False, **kw) -> dict:
    cfg = from_preset("projected", **tiny_train_args(r1_gamma=0.0, **kw))
    assert (cfg.arch, cfg.discriminator, cfg.feature_res) == ("fastgan", "projected", 64)
    assert cfg.genre_bn == kw.get("genre_bn", True)
    return train(open_dataset(ds), run, cfg, resume=resume, changed={"steps"}, echo=lambda *a: None)


def test_the_preset_trains_at_the_measured_widths_on_a_cpu(cli, tiny_dataset, tmp_path):
    code, out, _ = cli("train", tiny_dataset, "-o", tmp_path / "run", "--preset", "projected", "--device", "cpu",
                       "--dry-run")
    printed = json.loads(out)  # the config.json this run would write
    assert code == 0 and (printed["model"]["ngf"], printed["model"]["ndf"]) == (16, 32)
    code, out, _ = cli("train", tiny_dataset, "-o", tmp_path / "run", "--preset", "projected", "--device", "cpu",
                       "--ngf", "24", "--dry-run")
    assert code == 0 and json.loads(out)["model"]["ngf"] == 24  # given widths still win
    on_cuda = from_preset("projected", device="cuda")  # no GPU needed: the config only
    assert (on_cuda.ngf, on_cuda.ndf) == (64, 64) and from_preset("stable", device_type="cuda").ngf == 64


@pytest.mark.slow
def test_resume_is_bit_exact_and_checkpoints_hold_no_frozen_network(tiny_dataset, tmp_path):
    _train(tiny_dataset, tmp_path / "straight", steps=4)
    _train(tiny_dataset, tmp_path / "split", steps=2)
    assert _train(tiny_dataset, tmp_path / "split", steps=4, resume=True)["step"] == 4
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))

    state = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert state["config"]["arch"] == "fastgan" and state["config"]["model"]["discriminator"] == "projected"
    lite0 = {tuple(p.shape) for p in efficientnet.network("lite0").parameters()}
    saved = {tuple(v.shape) for v in state["D"].values()}
    assert not any(k.startswith("network") for k in state["D"])
    assert (320, 1152, 1, 1) in lite0 and (320, 1152, 1, 1) not in saved  # Lite0's last projection is not saved


@pytest.mark.slow
def test_a_projected_run_from_before_genre_bn_still_samples_and_resumes(tiny_dataset, tmp_path, cli):
    """Runs written before --genre-bn existed (the preset then had none) lack the field everywhere: they
    load with its default, off, the form they were trained in."""
    run = tmp_path / "old"
    _train(tiny_dataset, run, steps=2, genre_bn=False)
    config = json.loads((run / "config.json").read_text())
    for part in (config["train"], config["model"]):
        del part["genre_bn"]
    (run / "config.json").write_text(json.dumps(config))
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        for part in (state["config"]["train"], state["config"]["model"]):
            del part["genre_bn"]
        torch.save(state, path)
    code, _, err = cli("sample", run, "-o", tmp_path / "samples", "--n", "2", "--seed", "0")
    assert code == 0, err
    code, _, err = cli("train", tiny_dataset, "-o", run, "--resume", "--steps", "3", "--no-tensorboard")
    assert code == 0, err
    state = ckpt.load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["step"] == 3 and not registry.generator(state["config"]).genre_bn  # still the old form


@pytest.mark.slow
def test_every_reader_draws_from_a_fastgan_projected_run(tmp_path, cli):
    data = built_in_dataset(tmp_path, n=24, size=64)  # 64 px: the SLE path runs
    run = tmp_path / "run"
    _train(data, run, steps=2, ngf=4, ndf=4)
    assert json.loads((run / "config.json").read_text())["arch"] == "fastgan"
    code, _, err = cli("sample", run, "-o", tmp_path / "samples", "--n", "4", "--seed", "0")
    assert code == 0, err
    code, _, err = cli("export", run, "-o", tmp_path / "g.safetensors")
    assert code == 0, err
    from postergen.weights import load_generator

    G, meta = load_generator(tmp_path / "g.safetensors")
    assert isinstance(G, FastGAN)
    with torch.no_grad():
        assert G(torch.randn(2, 100)).shape == (2, 3, 64, 64)
    assert registry.generator(json.loads((run / "config.json").read_text())).__class__ is FastGAN

    code, _, err = cli("evaluate", run, "--data", data, "--n", "16", "--metrics", "swd,diversity")
    assert code == 0, err
    assert json.loads((run / "eval.json").read_text())["metrics"]["swd"]["mean"] > 0
    code, _, err = cli("report", run)
    assert code == 0, err
    assert "fastgan" in (run / "report.html").read_text()

    from postergen.web.app import create_app, running

    with running(create_app(run, device="cpu")) as base:  # the studio, over real HTTP
        status, body = post(base, "/api/generate", {"genres": [open_dataset(data).genres[0]], "seed": 3, "n": 2})
    assert status == 200, body
    assert [decode(p["url"]).size for p in body["images"]] == [(64, 64), (64, 64)]


@pytest.mark.slow
def test_torchrun_two_ranks_train_the_projected_preset(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    done = torchrun_train(tiny_dataset, run, "--preset", "projected", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((run / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["fingerprints"][0] == ddp["fingerprints"][1]
