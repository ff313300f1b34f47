"""Copying: for each generated poster, its nearest training poster, and how near that is.

Posters are compared as pixels area-downsampled to 32 px wide (aspect kept), distances reported
as RMS colour difference in [0, 1]. "Near" is judged against the data itself: the typical
distance is the median, over a sample of training posters, of each one's nearest *other*
training poster. A generated poster nearer to a training poster than `copy_ratio` x typical is a
likely copy. The scan is blockwise (`chunk` training x `chunk` generated posters per matmul), so
10k x 41k at 32 px holds about 0.3 GB (mostly the generated posters' features), never the
1.6 GB distance matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from postergen.metrics.pixels import pairwise_distances, pixel_vectors
from postergen.metrics.registry import MetricInputs, register_metric


@dataclass
class MemorizationConfig:
    width: int = 32  # posters compared as pixels area-downsampled to this width (aspect kept)
    chunk: int = 4096  # posters per block of the scan, on both sides (memory: chunk^2 distances)
    typical_sample: int = 1000  # training posters whose nearest other one sets the typical distance
    copy_ratio: float = 0.5  # likely copy: nearer to a training poster than this x the typical distance
    closest: int = 16  # pairs listed in the result (and drawn by save_pairs), nearest first
    max_listed: int = 100  # likely copies listed by index (all are counted)


def nearest_training(queries: torch.Tensor, train: torch.Tensor | np.ndarray, width: int, chunk: int = 4096,
                     exclude: torch.Tensor | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 queries (Q, 3, H, W), uint8 training posters (N, 3, H, W) (a memory map is fine)
    -> RMS distance (Q,) and index (Q,) of each query's nearest training poster.

    `exclude` (Q,): a training index each query must not match (itself, for real-to-real).
    """
    q = pixel_vectors(queries, width)  # (Q, D)
    best = torch.full((len(q),), math.inf)
    index = torch.zeros(len(q), dtype=torch.long)
    for start in tqdm(range(0, len(train), chunk), desc="nearest", unit="block", disable=not progress):
        block = pixel_vectors(train[start:start + chunk], width)  # (C, D): each block is read once
        for q0 in range(0, len(q), chunk):
            d = pairwise_distances(q[q0:q0 + chunk], block)  # (chunk, C)
            if exclude is not None:
                own = exclude[q0:q0 + chunk] - start
                mine = ((own >= 0) & (own < len(block))).nonzero().squeeze(1)
                d[mine, own[mine]] = math.inf
            dist, arg = d.min(1)
            better = dist < best[q0:q0 + chunk]
            best[q0:q0 + chunk][better] = dist[better]
            index[q0:q0 + chunk][better] = arg[better] + start
    return _exact_distance(q, train, index, width), index


def _exact_distance(q: torch.Tensor, train: torch.Tensor | np.ndarray, index: torch.Tensor, width: int) -> torch.Tensor:
    """The matmul form loses precision near 0; the chosen pairs are measured again directly."""
    order = np.argsort(index.numpy(), kind="stable")  # sorted reads are sequential on disk
    rows = train[index.numpy()[order]]
    rows = torch.from_numpy(np.ascontiguousarray(rows)) if isinstance(rows, np.ndarray) else rows
    nearest = torch.empty_like(q)
    nearest[torch.from_numpy(order)] = pixel_vectors(rows, width)
    return (q - nearest).norm(dim=1)


def typical_distance(train: torch.Tensor | np.ndarray, cfg: MemorizationConfig, seed: int,
                     progress: bool = False) -> float:
    """Median over a seeded sample of training posters of the RMS distance to the nearest other one."""
    n = min(cfg.typical_sample, len(train))
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    sample = train[idx.numpy()] if isinstance(train, np.ndarray) else train[idx]
    sample = torch.from_numpy(np.ascontiguousarray(sample)) if isinstance(sample, np.ndarray) else sample
    dist, _ = nearest_training(sample, train, cfg.width, cfg.chunk, exclude=idx, progress=progress)
    return dist.median().item()


def memorization(fake: torch.Tensor, train: torch.Tensor | np.ndarray, cfg: MemorizationConfig = MemorizationConfig(),
                 seed: int = 0, typical: float | None = None, progress: bool = False) -> dict:
    """uint8 generated (N, 3, H, W), training posters (M, 3, H, W) -> copy statistics and the closest pairs.

    `closest` lists {"fake": index into `fake`, "real": index into `train`, "distance"}, nearest first;
    `likely_copies` lists the generated posters under the copy threshold the same way (first `max_listed`).
    """
    if typical is None:
        typical = typical_distance(train, cfg, seed, progress)
    dist, index = nearest_training(fake, train, cfg.width, cfg.chunk, progress=progress)
    order = torch.argsort(dist, stable=True)
    threshold = cfg.copy_ratio * typical
    pairs = [{"fake": int(i), "real": int(index[i]), "distance": float(dist[i])} for i in order]
    copies = [p for p in pairs if p["distance"] < threshold]
    return {"typical_distance": typical,
            "median_distance": dist.median().item(),
            "closer_than_typical": (dist < typical).float().mean().item(),
            "copy_threshold": threshold,
            "likely_copy_share": len(copies) / max(len(fake), 1),
            "likely_copy_count": len(copies),
            "likely_copies": copies[:cfg.max_listed],
            "closest": pairs[:cfg.closest]}


def save_pairs(fake: torch.Tensor, train: torch.Tensor | np.ndarray, pairs: list[dict], path: Path,
               per_row: int = 4) -> Path:
    """Write a PNG of the given pairs side by side (generated | nearest training poster), `per_row` pairs a row."""
    from postergen.draw import save_grid

    tiles = []
    for p in pairs:
        real = train[p["real"]]
        tiles += [fake[p["fake"]], torch.from_numpy(np.array(real)) if isinstance(real, np.ndarray) else real]
    save_grid(torch.stack(tiles), 2 * min(per_row, max(len(pairs), 1)), path)
    return path


@register_metric("memorization", MemorizationConfig, "pixel", default=False)  # on request (--metrics)
def memorization_metric(inputs: MetricInputs, cfg: MemorizationConfig) -> dict:
    train = inputs.dataset.images
    if "memorization" not in inputs.cache:  # the typical distance depends on the training set only
        inputs.cache["memorization"] = typical_distance(train, cfg, inputs.seed, inputs.progress)
    return memorization(inputs.fake, train, cfg, inputs.seed, inputs.cache["memorization"], inputs.progress)
