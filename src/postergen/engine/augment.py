"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

Applied to reals and fakes alike (and in G's step), so D cannot memorise a small poster set while
G still gets gradients through the augmentation. Follows the reference DiffAugment_pytorch.py:
same policies and ranges, but translation and cutout index with broadcasting instead of meshgrid.
Randomness comes from torch's global RNG on x's device, so a restored RNG state replays it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from postergen.config import AUGMENT_POLICIES

TRANSLATION_RATIO = 1 / 8  # max shift as a fraction of the image side
CUTOUT_RATIO = 1 / 2  # cutout square side as a fraction of the image side


def _uniform(x: torch.Tensor) -> torch.Tensor:
    """One U[0, 1) draw per sample, shaped to broadcast over (B, C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    """Add U[-0.5, 0.5) to every pixel of a sample."""
    return x + (_uniform(x) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance from its channel mean (grey) by U[0, 2)."""
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - grey) * (_uniform(x) * 2) + grey


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each sample's distance from its overall mean by U[0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def rand_translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each sample by up to ratio * side pixels per axis, filling with zeros."""
    B, C, H, W = x.shape
    max_dy, max_dx = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (B, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (B, 1, 1), device=x.device)
    # Read from a 1-pixel zero border: indices pushed past the image clamp onto the border.
    rows = (torch.arange(H, device=x.device)[None, :, None] + dy + 1).clamp(0, H + 1)  # (B, H, 1)
    cols = (torch.arange(W, device=x.device)[None, None, :] + dx + 1).clamp(0, W + 1)  # (B, 1, W)
    batch = torch.arange(B, device=x.device)[:, None, None]  # (B, 1, 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def rand_cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero one (ratio*H x ratio*W) rectangle per sample, centred anywhere (clipped at the edges)."""
    B, C, H, W = x.shape
    cut_h, cut_w = int(H * ratio + 0.5), int(W * ratio + 0.5)
    # Centre ranges as in the reference (one extra position when the side is even).
    cy = torch.randint(0, H + (1 - cut_h % 2), (B, 1, 1), device=x.device)
    cx = torch.randint(0, W + (1 - cut_w % 2), (B, 1, 1), device=x.device)
    top, left = cy - cut_h // 2, cx - cut_w // 2
    ys = torch.arange(H, device=x.device)[None, :, None]  # (1, H, 1)
    xs = torch.arange(W, device=x.device)[None, None, :]  # (1, 1, W)
    inside = (ys >= top) & (ys < top + cut_h) & (xs >= left) & (xs < left + cut_w)  # (B, H, W)
    return x * (~inside).to(x.dtype)[:, None]  # mask (B, 1, H, W)


AUGMENTS = dict(zip(AUGMENT_POLICIES, (  # in config's order: the CLI checks names against that list
    [rand_brightness, rand_saturation, rand_contrast],  # color
    [rand_translation],  # translation
    [rand_cutout],  # cutout
), strict=True))


def parse_policy(policy: str) -> list[str]:
    """'color, translation' -> ['color', 'translation']; raises ValueError on unknown names."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in AUGMENTS]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown)}; choose from: {', '.join(AUGMENTS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Augment a batch (B, 3, H, W) in [-1, 1] -> same shape; differentiable w.r.t. x."""
    for name in parse_policy(policy):
        for augment in AUGMENTS[name]:
            x = augment(x)
    return x
