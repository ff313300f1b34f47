"""Deterministic, weight-free image features shared by diversity and memorization.

Posters are compared as pixels after area downsampling: no learned weights, so numbers compare
across machines, runs and library versions. Features are scaled by 1/sqrt(dim), so the L2
distance of two posters is their RMS colour difference, in [0, 1] at any size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def downsample(images: torch.Tensor, width: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 (N, 3, h, width) in [0, 1] by area averaging; h keeps the aspect."""
    H, W = images.shape[-2:]
    h = max(1, round(H * width / W))
    x = images.float().div_(255.0)
    return x if (h, width) == (H, W) else F.adaptive_avg_pool2d(x, (h, width))


def pixel_vectors(images: torch.Tensor | np.ndarray, width: int, batch: int = 1024) -> torch.Tensor:
    """uint8 (N, 3, H, W) tensor or memory map -> float32 (N, 3*h*width) / sqrt(3*h*width), `batch` posters at a time."""
    chunks = []
    for i in range(0, len(images), batch):
        part = images[i:i + batch]
        part = torch.from_numpy(np.array(part)) if isinstance(part, np.ndarray) else part
        flat = downsample(part, width).flatten(1)
        chunks.append(flat / math.sqrt(flat.shape[1]))
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, D), (B, D) -> (A, B) L2 distances via one matmul; tiny negatives from rounding clamp to 0."""
    d2 = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * (a @ b.T)
    return d2.clamp_(min=0).sqrt_()
