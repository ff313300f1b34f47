"""sample: per-genre rows, reproducible seeds, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from postergen.sample import sample


def test_rows_per_genre_and_seeds_are_reproducible(tiny_run: Path, tmp_path: Path):
    a = sample(tiny_run, tmp_path / "a", n=3, seed=5, genres=["horror", "action+comedy"])
    assert a["rows"] == ["horror", "action+comedy"]
    assert sorted(p.name for p in a["files"])[:3] == ["action+comedy-seed5.png", "action+comedy-seed6.png",
                                                      "action+comedy-seed7.png"]
    assert Image.open(a["grid"]).size == (3 * 34 + 2, 2 * 34 + 2)
    b = sample(tiny_run, tmp_path / "b", n=1, seed=6, genres=["horror"], grid=False)
    same = [np.asarray(Image.open(tmp_path / d / "horror-seed6.png")) for d in ("a", "b")]
    assert np.array_equal(*same)  # a poster depends on its own seed, not on n or the first seed
    assert b["grid"] is None


def test_cli_sample_errors(cli, tiny_run: Path, tmp_path: Path):
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "s", "--genre", "westen")
    assert code == 2 and "unknown genre westen; known: action" in err and err.count("\n") == 1
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02}q\x00")
    code, out, err = cli("sample", tmp_path / "junk.pt", "-o", tmp_path / "s")
    assert code == 2 and "not a loadable postergen checkpoint" in err and err.count("\n") == 1
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "s", "--n", "2")
    assert code == 0 and "16 posters" in out


def test_every_png_carries_provenance(cli, tiny_run: Path, tmp_path: Path):
    r = sample(tiny_run, tmp_path / "s", n=1, seed=42, genres=["horror"])
    text = Image.open(r["files"][0]).text
    assert text["postergen:ai_generated"] == "true" and text["postergen:seed"] == "42"
    assert text["postergen:genres"] == "horror" and text["postergen:step"] == "2"
    assert text["Software"].startswith("postergen ") and text["postergen:source"] == tiny_run.name  # by name, not path
    assert text["postergen:checkpoint"] == "latest.pt" and len(text["postergen:weights"]) == 16
    assert Image.open(sorted((tiny_run / "samples").glob("*.png"))[-1]).text["postergen:ai_generated"] == "true"
    code, out, _ = cli("info", r["files"][0])
    assert code == 0 and "postergen:seed" in out and "42" in out
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    code, out, _ = cli("info", tmp_path / "plain.png")
    assert code == 0 and "no postergen provenance" in out


def test_export_to_safetensors_samples_the_same(cli, tiny_run: Path, tmp_path: Path):
    code, out, err = cli("export", tiny_run, "-o", tmp_path / "g.safetensors")
    assert code == 0, err
    a = sample(tiny_run, tmp_path / "a", n=2, seed=3, genres=["comedy"], grid=False)
    b = sample(tmp_path / "g.safetensors", tmp_path / "b", n=2, seed=3, genres=["comedy"], grid=False)
    for fa, fb in zip(a["files"], b["files"]):
        assert np.array_equal(np.asarray(Image.open(fa)), np.asarray(Image.open(fb)))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    code, _, err = cli("sample", tmp_path / "bad.safetensors", "-o", tmp_path / "c")
    assert code == 2 and "not a readable safetensors file" in err and err.count("\n") == 1


def test_tutorial_state_dict_loads_and_samples(cli, tmp_path: Path):
    import torch
    from torch import nn

    nz, ngf = 100, 64
    netG = nn.Module()
    netG.main = nn.Sequential(  # PyTorch's DCGAN tutorial Generator, layer for layer
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())
    torch.manual_seed(0)
    for mod in netG.modules():
        if isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.weight, 1.0, 0.02)
            mod.running_mean.normal_(0, 0.1)
    torch.save(netG.state_dict(), tmp_path / "netG_epoch_24.pth")
    code, out, err = cli("sample", tmp_path / "netG_epoch_24.pth", "--weights", "dcgan-tutorial", "-o", tmp_path / "s",
                         "--n", "2", "--seed", "7")
    assert code == 0, err
    img = np.asarray(Image.open(tmp_path / "s" / "all-seed7.png"))
    netG.eval()
    with torch.no_grad():
        z = torch.randn(100, generator=torch.Generator().manual_seed(7)).view(1, 100, 1, 1)
        ref = netG.main(z)[0].add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert img.shape == (64, 64, 3) and np.abs(img.astype(int) - ref.astype(int)).max() <= 1
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pth")
    code, _, err = cli("sample", tmp_path / "other.pth", "--arch", "dcgan-tutorial", "-o", tmp_path / "s")
    assert code == 2 and "not a DCGAN tutorial generator state_dict" in err


def test_truncation_bounds_latents_and_is_seeded():
    from postergen.draw import noise

    z = noise([1, 2, 3], 100, truncation=0.5)
    assert z.abs().max() <= 0.5 and torch_equal(z, noise([1, 2, 3], 100, truncation=0.5))
    assert not torch_equal(z, noise([1, 2, 3], 100))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_interpolation_animation_and_strip(cli, tiny_run: Path, tmp_path: Path):
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "i", "--interpolate", "1", "9", "--frames", "5",
                         "--genre", "horror")
    assert code == 0, err
    anim = Image.open(tmp_path / "i" / "horror-seed1-to-9.gif")
    assert anim.n_frames == 8  # 5 there + 3 back
    strip = Image.open(tmp_path / "i" / "horror-seed1-to-9.png")
    assert strip.size == (5 * 34 + 2, 34 + 2) and strip.text["postergen:interpolation"] == "1->9"


def test_png_writer_writes_everything_and_reports_failures(tmp_path: Path):
    from postergen.draw import PngWriter

    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    with PngWriter(threads=2) as writer:
        for i, img in enumerate(images):
            writer.put(img, tmp_path / f"{i}.png")
    assert all(np.array_equal(np.asarray(Image.open(tmp_path / f"{i}.png")), img.permute(1, 2, 0).numpy())
               for i, img in enumerate(images))
    with pytest.raises(FileNotFoundError):
        with PngWriter(threads=2) as writer:
            writer.put(images[0], tmp_path / "no-such-folder" / "a.png")
