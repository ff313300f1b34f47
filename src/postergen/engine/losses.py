"""GAN losses: pure functions of D's logits, each returning a scalar mean over the batch.

Identities used throughout (sigma = logistic sigmoid):
    -log(sigma(x))     = softplus(-x)
    -log(1 - sigma(x)) = softplus(x)
softplus is evaluated stably, so these equal Sigmoid + BCE without its overflow at large |x|.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

DLoss = Callable[..., torch.Tensor]  # (logits_real, logits_fake) -> scalar
GLoss = Callable[[torch.Tensor], torch.Tensor]  # logits_fake -> scalar


def bce_d(logits_real: torch.Tensor, logits_fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """D's binary cross-entropy; real_target < 1 is one-sided label smoothing (Salimans et al. 2016)."""
    # -[t log sigma(r) + (1-t) log(1 - sigma(r))] - log(1 - sigma(f))
    #   = t softplus(-r) + (1-t) softplus(r) + softplus(f)
    t = real_target
    loss_real = t * F.softplus(-logits_real) + (1.0 - t) * F.softplus(logits_real)
    loss_fake = F.softplus(logits_fake)
    return loss_real.mean() + loss_fake.mean()


def bce_g(logits_fake: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss (Goodfellow et al. 2014): strong gradients while D wins."""
    # -log sigma(f) = softplus(-f)
    return F.softplus(-logits_fake).mean()


def hinge_d(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """D's hinge loss (Lim & Ye 2017; SNGAN, BigGAN)."""
    # max(0, 1 - r) + max(0, 1 + f)
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


def hinge_g(logits_fake: torch.Tensor) -> torch.Tensor:
    """G's loss paired with hinge_d."""
    # -f
    return -logits_fake.mean()


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty (Mescheder et al. 2018), unscaled: the caller multiplies by gamma / 2.

    `real` must have had requires_grad_(True) before D saw it.
    """
    # mean_i ||d D(x_i) / d x_i||^2 over the real batch. Differentiating sum_i D(x_i) yields each
    # sample's own gradient because D scores samples independently (train-mode BatchNorm and
    # minibatch-std couple them slightly; the usual R1 implementations accept that).
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)  # (B, 3, H, W)
    return grad.square().flatten(1).sum(dim=1).mean()


def mode_seeking(fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor,
                 eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019), for G to minimise: 1 / (image distance over noise
    distance) between pairs G(z_a, c), G(z_b, c) of the same genres. A G whose noise barely moves its
    output (one poster per genre) pays a large term; the mean absolute difference keeps it bounded."""
    ratio = (fake_a.float() - fake_b.float()).abs().mean() / (z_a.float() - z_b.float()).abs().mean()
    return 1.0 / (ratio + eps)


LOSSES: dict[str, tuple[DLoss, GLoss]] = {
    "bce": (bce_d, bce_g),
    "hinge": (hinge_d, hinge_g),
}


def get_loss(name: str) -> tuple[DLoss, GLoss]:
    """(d_loss, g_loss) registered under `name`."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
