"""Copy detection v2: planted copies of training posters are caught; novel, blurry, blank and noise images are not.

The training set is 400 built-in posters; the threshold comes from those posters held out one at a
time (nothing in this test sets it). Copies: exact, mirrored, JPEG-recompressed (quality 75, PIL's
default), slightly blurred (sigma 0.8 px), colour-shifted, crop-shifted (3 px cut, scaled back).
Others: novel built-in posters (another seed), heavy blurs of them, blurred blends of four training
posters (smooth images close to many posters: what the pixel check flagged), blank and noise images.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from conftest import built_in_dataset
from postergen.data.dataset import open_dataset
from postergen.metrics import METRICS, MetricInputs
from postergen.metrics.copies import CopiesConfig, copies_metric, nearest, save_histogram

PER_KIND = 25


def jpeg(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    out = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
        out.append(torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1))
    return torch.stack(out)


def crop_shift(images: torch.Tensor, px: int = 3) -> torch.Tensor:
    cut = images[..., px:, px:].float()
    return torch.nn.functional.interpolate(cut, size=images.shape[-2:], mode="bilinear", antialias=True).round().to(torch.uint8)


def colour_shift(images: torch.Tensor) -> torch.Tensor:
    return (images.float() * torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1) + 10).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """-> (training dataset, queries uint8 (Q, 3, 64, 64), kinds per query, copied training index or -1)."""
    root = tmp_path_factory.mktemp("copies")
    ds = open_dataset(built_in_dataset(root / "train", 400, 64, seed=0))
    novel = torch.from_numpy(np.array(open_dataset(built_in_dataset(root / "novel", 150, 64, seed=1)).images))
    train = torch.from_numpy(np.array(ds.images))
    gen = torch.Generator().manual_seed(0)
    src_idx = torch.randperm(len(train), generator=gen)[:PER_KIND]
    src = train[src_idx]
    blends = train[torch.randint(len(train), (PER_KIND, 4), generator=gen)].float().mean(1).to(torch.uint8)
    blank = torch.tensor([[v, v, v] for v in np.linspace(0, 250, 8)] + [[200, 20, 20], [20, 20, 60]], dtype=torch.uint8)
    groups = {"exact": src, "mirrored": src.flip(-1), "jpeg": jpeg(src), "blurred": gaussian_blur(src, 5, 0.8),
              "colour": colour_shift(src), "cropshift": crop_shift(src),
              "novel": novel[:100], "blurry": gaussian_blur(novel[100:125], 13, 3.0), "blend": gaussian_blur(blends, 9, 2.0),
              "blank": blank[:, :, None, None].expand(-1, -1, 64, 64).clone(),
              "noise": torch.randint(0, 256, (10, 3, 64, 64), dtype=torch.uint8, generator=gen)}
    kinds = [k for k, v in groups.items() for _ in range(len(v))]
    copied = torch.cat([src_idx if k in COPY_KINDS else torch.full((len(v),), -1) for k, v in groups.items()])
    return ds, torch.cat(list(groups.values())), kinds, copied


COPY_KINDS = ("exact", "mirrored", "jpeg", "blurred", "colour", "cropshift")


def run_copies(ds, queries, kinds, cfg=CopiesConfig()) -> dict:
    names = [f"{k}-{i}.png" for i, k in enumerate(kinds)]
    inputs = MetricInputs(real=queries[:2], fake=queries, dataset=ds, genres=[], fake_names=names)
    return copies_metric(inputs, cfg)


@pytest.mark.slow
def test_planted_copies_are_caught_and_nothing_else(planted):
    ds, queries, kinds, copied = planted
    result = run_copies(ds, queries, kinds)
    flagged = {row["file"] for row in result["likely_copies"]}
    is_flagged = [f"{k}-{i}.png" in flagged for i, k in enumerate(kinds)]
    copies = [f for f, k in zip(is_flagged, kinds) if k in COPY_KINDS]
    others = [f for f, k in zip(is_flagged, kinds) if k not in COPY_KINDS]
    by_kind = {k: sum(f for f, kk in zip(is_flagged, kinds) if kk == k) for k in dict.fromkeys(kinds)}
    assert sum(copies) >= 0.95 * len(copies), by_kind
    assert sum(others) <= 0.01 * len(others), by_kind
    for row in result["likely_copies"]:  # each caught copy is matched with its own original
        i = row["fake"]
        if kinds[i] in COPY_KINDS:
            assert row["real"] == int(copied[i]) and row["training"] == ds.meta["sources"][row["real"]]
            assert row["mirrored"] == (kinds[i] == "mirrored")
    assert result["threshold"] > 0 and result["expected_share"] == 0.01
    assert result["nn_distance"]["held_out_count"] == 400
    assert result["nn_distance"]["generated"]["p1"] < result["nn_distance"]["held_out_real"]["p1"]
    json.dumps(result)  # strict JSON: eval.json and --json take it as it is


@pytest.mark.slow
def test_descriptors_are_cached_beside_the_dataset_and_the_histogram_draws(planted, tmp_path):
    ds, queries, kinds, _ = planted
    run_copies(ds, queries[:20], kinds[:20])  # describes the dataset, unless the first test's run did
    cache = list(ds.path.glob("copies-lite2-*.pt"))
    assert len(cache) == 1  # written by the first test's run (or now)
    result = run_copies(ds, queries[:20], kinds[:20])
    assert result["training"].startswith("cached ")
    png = save_histogram(result, tmp_path / "hist.png")
    assert Image.open(png).size[0] > 100


def test_nearest_excludes_itself_and_finds_mirrors():
    rng = torch.Generator().manual_seed(0)
    train = torch.nn.functional.normalize(torch.randn(50, 16, generator=rng), dim=1)
    mirrored = torch.nn.functional.normalize(torch.randn(50, 16, generator=rng), dim=1)
    dist, index, flag = nearest(train[:5], train, mirrored, chunk=7)
    assert torch.equal(index, torch.arange(5)) and not flag.any() and dist.max() < 1e-3
    dist, index, flag = nearest(train[:5], train, mirrored, chunk=7, exclude=torch.arange(5))
    assert (index != torch.arange(5)).all() and (dist > 0.1).all()
    dist, index, flag = nearest(mirrored[[3]], train, mirrored, chunk=7)
    assert index.item() == 3 and flag.item()


def test_copies_is_registered():
    assert METRICS["copies"].config is CopiesConfig
