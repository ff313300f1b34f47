"""Super-resolution: shapes, the degradation, training, resume, and upscaling files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import built_in_dataset
from postergen.checkpoint import load_checkpoint
from postergen.engine.sr import SRTrainConfig, degrade, l1_loss, step_generator, train_sr
from postergen.errors import UserError
from postergen.models.sr import SRConfig, build_sr
from postergen.upscale import load_upscaler, maybe_upscale, upscale_files, upscale_images


def tiny_sr_args(**overrides) -> dict:
    """The smallest config that exercises every part: blur, three downscalers, noise, JPEG, validation."""
    args = dict(scale=4, channels=8, blocks=1, steps=4, batch=4, patch=8, lr=2e-3, blur_prob=0.5, noise_prob=0.5,
                jpeg_prob=0.5, log_every=2, val_every=2, checkpoint_every=2, val_posters=2, device="cpu",
                precision="fp32")
    args.update(overrides)
    return args


@pytest.fixture(scope="module")
def sr_run(hr_dataset: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("srrun") / "run"
    train_sr(hr_dataset, run, SRTrainConfig(**tiny_sr_args()))
    return run


@pytest.mark.parametrize("arch", ["edsr", "espcn"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("hw", [(16, 16), (16, 24)])  # square and 2:3 (W x H)
def test_shapes_and_untrained_is_bicubic(arch: str, scale: int, hw: tuple[int, int]):
    torch.manual_seed(0)
    model = build_sr(SRConfig(scale=scale, arch=arch, channels=8, blocks=1))
    x = torch.rand(2, 3, hw[1], hw[0])
    y = model(x)
    assert y.shape == (2, 3, hw[1] * scale, hw[0] * scale)
    # the detail branch starts at zero: training starts from bicubic, not from noise
    assert torch.equal(y, F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False))


def test_bad_model_config():
    with pytest.raises(ValueError, match="scale must be 2 or 4"):
        build_sr(SRConfig(scale=3))


def test_degradation_is_seeded():
    cfg = SRTrainConfig(blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)
    hr = torch.rand(4, 3, 32, 48)
    a = degrade(hr, 4, cfg, step_generator(0, 7))
    b = degrade(hr, 4, cfg, step_generator(0, 7))
    c = degrade(hr, 4, cfg, step_generator(0, 8))
    assert a.dtype == torch.uint8 and a.shape == (4, 3, 8, 12)
    assert torch.equal(a, b) and not torch.equal(a, c)
    clean = dataclasses.replace(cfg, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    assert not torch.equal(a, degrade(hr, 4, clean, step_generator(0, 7)))


def test_training_lowers_the_loss(hr_dataset: Path, tmp_path: Path):
    from postergen.data.dataset import open_dataset
    from postergen.engine.sr import Crops, Split

    # A network that starts at bicubic first overshoots, then improves: 100 small steps (< 1 s).
    cfg = SRTrainConfig(**tiny_sr_args(steps=100, patch=16, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                                       log_every=50, val_every=100, checkpoint_every=100))
    summary = train_sr(hr_dataset, tmp_path / "run", cfg)
    assert summary["step"] == 100 and "val_gain_db" in summary
    ds = open_dataset(hr_dataset)
    crops = Crops(ds, Split.of(len(ds), cfg.val_fraction), cfg, torch.device("cpu"))
    batches = [crops.get(step) for step in range(10)]  # crops the run trained on
    untrained = build_sr(cfg.model_config())  # exactly bicubic
    trained, _ = load_upscaler(tmp_path / "run")
    with torch.no_grad():
        before = np.mean([l1_loss(untrained(lr.float() / 255), hr).item() for hr, lr in batches])
        after = np.mean([l1_loss(trained(lr.float() / 255), hr).item() for hr, lr in batches])
    assert after < before * 0.99


def test_resume_gives_the_same_weights(hr_dataset: Path, tmp_path: Path):
    train_sr(hr_dataset, tmp_path / "straight", SRTrainConfig(**tiny_sr_args(steps=4)))
    train_sr(hr_dataset, tmp_path / "split", SRTrainConfig(**tiny_sr_args(steps=2)))
    summary = train_sr(hr_dataset, tmp_path / "split", SRTrainConfig(**tiny_sr_args(steps=4)), resume=True)
    assert summary["step"] == 4
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all("val_gain_db" in r for r in rows)


def test_trains_on_2_3_posters(hr_dataset: Path, tmp_path: Path):
    from postergen.data.ingest import PrepareConfig, prepare

    tall = tmp_path / "tall"
    prepare([hr_dataset.parent / "posters"], tall, PrepareConfig(size=32, aspect="2:3", workers=1))  # 32x48
    summary = train_sr(tall, tmp_path / "run", SRTrainConfig(**tiny_sr_args(steps=2)))
    assert summary["step"] == 2 and "val_psnr" in summary
    model, _ = load_upscaler(tmp_path / "run")
    assert upscale_images(model, np.zeros((1, 3, 12, 8), np.uint8)).shape == (1, 3, 48, 32)


def test_run_folder_errors(hr_dataset: Path, sr_run: Path, tmp_path: Path):
    with pytest.raises(UserError, match="no such dataset folder"):
        train_sr(tmp_path / "nope", tmp_path / "run", SRTrainConfig(**tiny_sr_args()))
    with pytest.raises(UserError, match="--resume to continue or --force"):
        train_sr(hr_dataset, sr_run, SRTrainConfig(**tiny_sr_args()))
    with pytest.raises(UserError, match="cannot change --scale"):
        train_sr(hr_dataset, sr_run, SRTrainConfig(**tiny_sr_args(scale=2, steps=6)), resume=True)
    with pytest.raises(UserError, match="smaller than one training crop"):
        train_sr(hr_dataset, tmp_path / "run", SRTrainConfig(**tiny_sr_args(patch=32)))
    with pytest.raises(UserError, match="scale must be 2 or 4"):
        train_sr(hr_dataset, tmp_path / "run", SRTrainConfig(**tiny_sr_args(scale=3)))


def test_upscale_images_and_hook(sr_run: Path):
    model, config = load_upscaler(sr_run)
    assert config["kind"] == "sr" and config["step"] == 4
    images = torch.randint(0, 256, (3, 3, 24, 16), dtype=torch.uint8)  # 2:3
    big = upscale_images(model, images, "cpu", batch=2)
    assert big.dtype == torch.uint8 and big.shape == (3, 3, 96, 64)
    assert torch.equal(maybe_upscale(images, sr_run), big)
    assert maybe_upscale(images, None) is images


def test_upscale_files_skips_bad_inputs(sr_run: Path, tmp_path: Path):
    Image.fromarray(np.full((24, 16, 3), 120, np.uint8)).save(tmp_path / "good.png")
    Image.fromarray(np.full((16, 16, 4), 200, np.uint8)).save(tmp_path / "alpha.png")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.txt").write_text("not a poster")
    inputs = [tmp_path / n for n in ("good.png", "alpha.png", "cut.png", "notes.txt", "missing.jpg")]
    result = upscale_files(inputs, tmp_path / "out", sr_run)
    assert [p.name for p in result["written"]] == ["good_x4.png", "alpha_x4.png"]
    assert Image.open(result["written"][0]).size == (64, 96)
    reasons = {Path(s["path"]).name: s["reason"] for s in result["skipped"]}
    assert reasons["notes.txt"] == "not an image" and reasons["missing.jpg"] == "missing"
    assert reasons["cut.png"].startswith("corrupt")


def test_upscale_files_errors_in_one_line(sr_run: Path, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a poster")
    with pytest.raises(UserError) as e:
        upscale_files([tmp_path / "notes.txt", tmp_path / "missing.png"], tmp_path / "out", sr_run)
    assert "\n" not in str(e.value) and "not an image" in str(e.value) and "missing" in str(e.value)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
    broken = tmp_path / "broken.pt"
    broken.write_bytes((sr_run / "checkpoints" / "latest.pt").read_bytes()[:500])
    for model in (broken, tmp_path / "nope"):
        with pytest.raises(UserError) as e:
            upscale_files([tmp_path / "good.png"], tmp_path / "out", model)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_cli_train_sr_upscale_and_sample_upscale(cli, tiny_run, tmp_path):
    """The three entry points end to end: train-sr, upscale (with a bad file skipped), sample --upscale."""
    hr = built_in_dataset(tmp_path, n=12, size=64, seed=1)
    code, out, err = cli("train-sr", hr, "-o", tmp_path / "sr", "--scale", "2", "--steps", "2",
                         "--batch", "2", "--patch", "8", "--channels", "4", "--blocks", "1", "--val-posters", "1",
                         "--device", "cpu")
    assert code == 0, err
    (tmp_path / "bad.png").write_text("not an image")
    samples = sorted((tiny_run / "samples").glob("*.png"))[:1]
    code, out, err = cli("upscale", *samples, tmp_path / "bad.png", "-o", tmp_path / "up", "--model", tmp_path / "sr")
    assert code == 0 and "upscaled 1 image(s) x2" in out and "skipped" in err and "bad.png" in err
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "s", "--n", "1", "--genre", "horror",
                         "--upscale", tmp_path / "sr")
    assert code == 0, err
    assert Image.open(tmp_path / "s" / "horror-seed0.png").size == (64, 64)  # 32 px posters, x2
    with pytest.raises(SystemExit) as e:  # argparse rejects it before anything runs
        cli("train-sr", hr, "-o", tmp_path / "sr2", "--scale", "3")
    assert e.value.code == 2 and not (tmp_path / "sr2").exists()
