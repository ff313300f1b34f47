"""GAN losses: known values, label smoothing, agreement with torch's BCE, R1 on a linear D."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from postergen.engine.losses import (
    LOSSES,
    bce_d,
    bce_g,
    get_loss,
    hinge_d,
    hinge_g,
    mode_seeking,
    r1_penalty,
)

LOG2 = math.log(2.0)


def close(a: torch.Tensor, b: float) -> bool:
    return math.isclose(a.item(), b, rel_tol=1e-6, abs_tol=1e-6)


def test_known_values():
    zeros = torch.zeros(4)
    assert close(bce_d(zeros, zeros), 2 * LOG2)
    assert close(bce_g(zeros), LOG2)
    assert close(hinge_d(torch.ones(4), -torch.ones(4)), 0.0)
    assert close(hinge_d(zeros, zeros), 2.0)
    assert close(hinge_d(torch.tensor([3.0, -1.0]), torch.tensor([-2.0, 0.5])), (0 + 2) / 2 + (0 + 1.5) / 2)
    assert close(hinge_g(torch.tensor([1.0, 3.0])), -2.0)


def test_bce_matches_torch():
    torch.manual_seed(0)
    real, fake = torch.randn(8) * 3, torch.randn(6) * 3  # batch sizes may differ
    expected_d = F.binary_cross_entropy_with_logits(real, torch.ones(8)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros(6)
    )
    torch.testing.assert_close(bce_d(real, fake), expected_d)
    torch.testing.assert_close(bce_g(fake), F.binary_cross_entropy_with_logits(fake, torch.ones(6)))
    smoothed = F.binary_cross_entropy_with_logits(real, torch.full((8,), 0.9))
    smoothed += F.binary_cross_entropy_with_logits(fake, torch.zeros(6))
    torch.testing.assert_close(bce_d(real, fake, real_target=0.9), smoothed)


def test_label_smoothing_follows_the_formula():
    r, f = torch.tensor([2.0]), torch.tensor([-1.0])
    t = 0.9
    sig_r, sig_f = torch.sigmoid(r).item(), torch.sigmoid(f).item()
    expected = -(t * math.log(sig_r) + (1 - t) * math.log(1 - sig_r)) - math.log(1 - sig_f)
    assert close(bce_d(r, f, real_target=t), expected)
    # Smoothing penalises a confident real logit: the loss rises versus t = 1 when r > 0.
    assert bce_d(r, f, real_target=t) > bce_d(r, f)


def test_bce_is_stable_for_large_logits():
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(bce_d(big, -big)) and torch.isfinite(bce_g(big))
    assert close(bce_g(torch.tensor([-200.0])), 200.0)


def test_r1_penalty_of_linear_d_is_weight_norm_squared():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)
    real = torch.randn(5, 3, 4, 4).requires_grad_(True)
    logits = (real * w).sum(dim=(1, 2, 3))  # D(x) = sum(w * x): grad_x D = w for every sample
    penalty = r1_penalty(logits, real)
    torch.testing.assert_close(penalty, w.square().sum())


def test_r1_penalty_is_differentiable():
    w = torch.randn(3, 2, 2, requires_grad=True)
    real = torch.randn(2, 3, 2, 2).requires_grad_(True)
    penalty = r1_penalty((real * w).sum(dim=(1, 2, 3)), real)
    penalty.backward()  # create_graph=True lets the penalty train D: d||w||^2/dw = 2w
    torch.testing.assert_close(w.grad, 2 * w.detach())


def test_registry():
    assert get_loss("bce") == (bce_d, bce_g)
    assert get_loss("hinge") == (hinge_d, hinge_g)
    assert set(LOSSES) == {"bce", "hinge"}
    with pytest.raises(ValueError, match="bce, hinge"):
        get_loss("wasserstein")


def test_mode_seeking_is_the_inverse_of_image_over_noise_distance():
    a, z_a = torch.zeros(4, 3, 2, 2), torch.zeros(4, 8)
    # images 0.5 apart everywhere for noise 2 apart: ratio 0.25
    torch.testing.assert_close(mode_seeking(a, a + 0.5, z_a, z_a + 2), torch.tensor(1 / (0.25 + 1e-5)))
    assert mode_seeking(a, a, z_a, z_a + 1) > 1e4  # a G that ignores its noise pays most


def test_mode_seeking_pushes_a_pair_apart():
    a, b = torch.zeros(2, 3, 2, 2, requires_grad=True), torch.full((2, 3, 2, 2), 0.1, requires_grad=True)
    mode_seeking(a, b, torch.zeros(2, 4), torch.ones(2, 4)).backward()
    # descending the term moves a down and b up: the pair's difference grows
    assert (a.grad > 0).all() and (b.grad < 0).all()
