"""DiffAugment: shapes, gradients, reproducibility, and what each policy does."""

from __future__ import annotations

import pytest
import torch

from postergen.engine.augment import diff_augment, rand_cutout, rand_translation

POLICIES = ["color", "translation", "cutout", "color,translation,cutout"]


def images(batch=4, height=24, width=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g) * 2 - 1


@pytest.mark.parametrize("policy", POLICIES)
def test_shape_and_gradient(policy):
    torch.manual_seed(0)
    x = images().requires_grad_(True)
    out = diff_augment(x, policy)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_output(policy):
    x = images()
    torch.manual_seed(1)
    a = diff_augment(x, policy)
    torch.manual_seed(1)
    b = diff_augment(x, policy)
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, policy))  # the RNG moved on


def test_default_policy_is_the_reference_combination():
    x = images()
    torch.manual_seed(2)
    a = diff_augment(x)
    torch.manual_seed(2)
    assert torch.equal(a, diff_augment(x, "color,translation,cutout"))


def test_empty_policy_is_identity():
    x = images()
    assert diff_augment(x, "") is x


def test_cutout_zeroes_a_region():
    torch.manual_seed(0)
    x = images(height=32, width=32) + 3.0  # all pixels in [2, 4]: any zero comes from the cutout
    out = rand_cutout(x)
    for sample in out:
        zero = (sample == 0).all(dim=0)  # (H, W)
        rows, cols = zero.any(dim=1).nonzero(), zero.any(dim=0).nonzero()
        # One rectangle, at most 16 x 16 (clipped at the image edge), nothing else touched.
        assert 0 < zero.sum() <= 16 * 16
        assert zero.sum() == len(rows) * len(cols)
        assert len(rows) <= 16 and len(cols) <= 16
    kept = out != 0
    assert torch.equal(out[kept], x[kept])


def test_translation_shifts_with_zero_fill():
    torch.manual_seed(0)
    x = images(batch=8, height=32, width=32) + 3.0
    out = rand_translation(x)
    assert not torch.equal(out, x)
    for src, dst in zip(x, out):
        # Recover the shift from the zero border, then check the content moved by exactly that.
        matched = False
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                shifted = torch.zeros_like(src)
                ys, yd = slice(max(dy, 0), 32 + min(dy, 0)), slice(max(-dy, 0), 32 + min(-dy, 0))
                xs, xd = slice(max(dx, 0), 32 + min(dx, 0)), slice(max(-dx, 0), 32 + min(-dx, 0))
                shifted[:, yd, xd] = src[:, ys, xs]
                matched |= torch.equal(shifted, dst)
        assert matched


def test_color_changes_values_not_layout():
    torch.manual_seed(0)
    x = images()
    out = diff_augment(x, "color")
    assert not torch.allclose(out, x)
    assert torch.equal(out == out, torch.ones_like(x, dtype=torch.bool))  # no NaNs


def test_policy_parsing():
    x = images()
    torch.manual_seed(3)
    a = diff_augment(x, " color , cutout ")
    torch.manual_seed(3)
    assert torch.equal(a, diff_augment(x, "color,cutout"))
    with pytest.raises(ValueError, match="flip"):
        diff_augment(x, "color,flip")
