"""FastGAN's self-supervised discriminator (--discriminator fastgan): its shapes, its genre term, D's
loss is exactly the adversarial loss plus its reconstruction loss on real images, the decoders
really learn to reconstruct, and a run with it trains, resumes bit-exactly and samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import assert_same, checkpoint_weights, tiny_train_args, torchrun_train
from postergen import checkpoint as ckpt
from postergen.config import ModelConfig, from_preset
from postergen.data.dataset import open_dataset
from postergen.engine.gan import build, train
from postergen.engine.losses import hinge_d, hinge_g
from postergen.engine.step import Stepper
from postergen.models import fastgan
from postergen.models.verdict import Verdict

CPU = torch.device("cpu")


def _d(**kw) -> fastgan.Discriminator:
    torch.manual_seed(0)
    return fastgan.Discriminator(ModelConfig(**{"discriminator": "fastgan", "ndf": 8, **kw}))


@pytest.mark.parametrize("height,width,logits", [(32, 32, 25), (64, 64, 25), (96, 64, 45), (256, 256, 25)])
def test_shapes_square_and_2_3(height, width, logits):
    D = _d(height=height, width=width).eval()  # eval: spectral norm's power iteration holds still
    x = torch.rand(2, 3, height, width) * 2 - 1
    assert D(x).shape == (2, logits)  # a 5x5 (9x5 for 2:3) map of logits from the 8 px wide map
    out = D(x, reconstruct=True)
    assert isinstance(out, Verdict) and out.aux.shape == () and out.aux > 0
    assert torch.equal(out.logits, D(x))  # the logits do not depend on reconstructing
    # the decoders rebuild the image at its own size (up to 128 px) and a quarter of it at half that
    with torch.no_grad():
        rec = D.decode_all(torch.zeros(1, fastgan._d_width(D.cfg, 8), 8 * height // width, 8))
        part = D.decode_quarter(torch.zeros(1, fastgan._d_width(D.cfg, 16), 8 * height // width, 8))
    w = min(width, fastgan.MAX_RECON)
    assert rec.shape[-2:] == (w * height // width, w) and part.shape[-1] == min(width // 2, fastgan.MAX_RECON)


def test_quarter_picks_each_sample_its_own_quarter():
    x = torch.arange(2 * 1 * 4 * 6, dtype=torch.float).reshape(2, 1, 4, 6)
    q = torch.tensor([3, 1])
    got = fastgan._quarter(x, q)
    assert torch.equal(got[0], x[0, :, 2:, 3:]) and torch.equal(got[1], x[1, :, :2, 3:])


def test_genres_change_the_logits_and_zero_genres_mean_none():
    D = _d(n_genres=3).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    assert not torch.allclose(D(x, g), D(x, g.flip(0)))
    assert torch.equal(D(x, torch.zeros(2, 3)), D(x, None))
    with pytest.raises(ValueError, match="genres must have shape"):
        D(x, torch.zeros(2, 4))


def _stepper(**kw) -> Stepper:
    cfg = from_preset("stable", **tiny_train_args(discriminator="fastgan", arch="fastgan", precision="fp32",
                                                  r1_gamma=0.0, **kw))
    m = build(cfg, cfg.model_config(32, 32, 3), CPU)
    return Stepper(m, cfg, CPU, conditional=True)


def test_d_loss_is_the_hinge_plus_the_reconstruction_of_real_images_and_g_ignores_it():
    stepper = _stepper()
    m, augment = stepper.m, stepper.obj.augment
    g = torch.Generator().manual_seed(0)
    real, genres = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, (torch.rand(8, 3, generator=g) > 0.5).float()

    G, D = copy.deepcopy(m.G), copy.deepcopy(m.D)
    torch.manual_seed(1)
    stats = stepper.d_update(real, genres, r1=False)
    torch.manual_seed(1)  # the same noise, augmentation and quarters, by hand
    with torch.no_grad():
        fake = G(torch.randn(8, stepper.cfg.z_dim), genres)
    on_real = D(augment(real), genres, reconstruct=True)
    on_fake = D(augment(fake), genres)
    assert isinstance(on_fake, torch.Tensor)  # fakes are never reconstructed
    assert torch.equal(stats["loss_d"], (hinge_d(on_real.logits, on_fake) + on_real.aux).detach())
    assert torch.equal(stats["loss_recon"], on_real.aux.detach())  # logged beside the total
    assert on_real.aux > 0 and torch.equal(stats["d_real"], torch.sigmoid(on_real.logits.detach()).mean())
    decoders = [p for n, p in m.D.named_parameters() if n.startswith("decode_")]
    assert decoders and all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoders)

    G, D = copy.deepcopy(m.G), copy.deepcopy(m.D)
    torch.manual_seed(2)
    stats = stepper.g_update(8, genres)
    torch.manual_seed(2)
    fake = G(torch.randn(8, stepper.cfg.z_dim), genres)
    assert stats.keys() == {"loss_g"} and torch.equal(stats["loss_g"], hinge_g(D(augment(fake), genres)).detach())


@pytest.mark.slow
def test_the_decoders_learn_to_reconstruct_real_images():
    D = _d(height=32, width=32)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)  # some structure
    opt = torch.optim.Adam(D.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        loss = D(x, reconstruct=True).aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def _train(ds: Path, run: Path, resume: bool = False, **kw) -> dict:
    cfg = from_preset("stable", **tiny_train_args(arch="fastgan", discriminator="fastgan", **kw))
    return train(open_dataset(ds), run, cfg, resume=resume, changed={"steps"}, echo=lambda *a: None)


@pytest.mark.slow
def test_a_run_resumes_bit_exactly_and_samples(tiny_dataset, tmp_path, cli):
    _train(tiny_dataset, tmp_path / "straight", steps=4)
    _train(tiny_dataset, tmp_path / "split", steps=2)
    assert _train(tiny_dataset, tmp_path / "split", steps=4, resume=True)["step"] == 4
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))
    state = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert state["config"]["model"]["discriminator"] == "fastgan"
    assert any(k.startswith("decode_quarter.") for k in state["D"])
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss_recon"] > 0 for r in rows if "loss_d" in r)  # the reconstruction, logged
    code, _, err = cli("sample", tmp_path / "straight", "-o", tmp_path / "samples", "--n", "4", "--seed", "0")
    assert code == 0, err
    from PIL import Image

    pngs = sorted((tmp_path / "samples").glob("*-seed0.png"))  # one per genre (and "any")
    assert pngs and all(Image.open(p).size == (32, 32) for p in pngs)


@pytest.mark.slow
def test_torchrun_two_ranks_train_with_it(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    done = torchrun_train(tiny_dataset, run, "--arch", "fastgan", "--discriminator", "fastgan", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((run / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["fingerprints"][0] == ddp["fingerprints"][1]
