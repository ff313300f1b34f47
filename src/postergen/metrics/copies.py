"""Copy detection: is a generated poster a copy of a training poster, judged in a perceptual space?

Space: Lite2's feature map after stage 3 (48 channels, stride 8) of the poster at 128 px, average-
pooled to an 8 x 8 grid and L2-normalised (3072 numbers; distances in [0, 2]). Mid-level features
with their layout: a copy keeps both, so JPEG, slight blur, a colour shift or a small crop-shift
stay near the original, while a smooth blur or a blank poster, whose pixels sit close to many dark
low-detail posters, is far from all of them. Mirror images count: every training poster is also
compared mirrored. The pooled 260-px features (fd.py) suit distributions but not this; measured on
built-in posters they let JPEG copies and near-twin posters overlap (tests/test_copies.py, docs).

Threshold, from the data: real posters held out (each compared with every training poster but
itself, which is what a fresh poster of the same distribution would be) give a distribution of
nearest-neighbour distances; its `percentile` is the threshold. So a generator that drew fresh
posters from the data distribution would have about percentile % "likely copies" (reported as
`expected_share`), and a share well above it means copying. The two distributions (generated vs
held-out real) are reported too: copying piles generated posters at small distances, underfitting
pushes them all to large ones (Stein et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from postergen.files import shared_name
from postergen.metrics.featurecache import cached
from postergen.metrics.perceptual import grid_features
from postergen.metrics.registry import MetricInputs, register_metric

QUANTILES = (1, 5, 25, 50, 75)


@dataclass
class CopiesConfig:
    resolution: int = 128  # descriptor input (px): 2x a 64-px poster; at 260 upsampled JPEG blocks dominate
    blocks: int = 7  # descriptor: Lite2's map after this many blocks (7 = end of stage 3, stride 8)
    grid: int = 8  # ... average-pooled to grid x grid cells, so the layout counts
    percentile: float = 1.0  # threshold: this percentile of held-out real posters' nearest distances
    holdout: int = 2000  # real posters held out (each against all others) to set the threshold
    chunk: int = 4096  # training posters per block of the scan (memory: chunk x queries distances)
    closest: int = 16  # pairs drawn side by side (eval_nearest.png), nearest first
    batch: int = 32  # posters per forward pass (32: fastest on the 2-core CPU; 64 measured 1.6x slower)
    bins: int = 30  # histogram bins of the two distance distributions

    def space(self) -> str:
        return f"efficientnet-lite2 after {self.blocks} blocks, {self.grid}x{self.grid} grid, {self.resolution} px"


def descriptors(images, cfg: CopiesConfig, device="cpu", progress: bool = False, mirror: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float16 (N, D) L2-normalised copy descriptors."""
    return grid_features(images, cfg.resolution, cfg.blocks, cfg.grid, cfg.batch, device, progress, mirror)


def training_descriptors(inputs: MetricInputs, cfg: CopiesConfig) -> tuple[torch.Tensor, torch.Tensor, str]:
    """-> (descriptors (N, D), of the mirrored posters (N, D), where from): cached beside the dataset."""
    ds = inputs.dataset
    settings = {"resolution": cfg.resolution, "blocks": cfg.blocks, "grid": cfg.grid}
    path = ds.path / f"copies-lite2-{cfg.resolution}-b{cfg.blocks}-g{cfg.grid}.pt"

    def compute() -> dict[str, torch.Tensor]:
        return {"plain": descriptors(ds.images, cfg, inputs.device, inputs.progress),
                "mirrored": descriptors(ds.images, cfg, inputs.device, inputs.progress, mirror=True)}

    tensors, how = cached(ds, path, settings, compute, inputs.feature_cache)
    return tensors["plain"], tensors["mirrored"], f"{how} {shared_name(path)}"


def nearest(queries: torch.Tensor, train: torch.Tensor, train_mirrored: torch.Tensor, chunk: int = 4096,
            exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-normalised (Q, D) queries, (N, D) training descriptors and their mirrors -> each query's
    (distance, training index, mirrored?) to the nearest, |q - t| = sqrt(2 - 2 q.t) (Q,) each.
    `exclude` (Q,): a training index a query must not match (itself, for held-out real posters)."""
    q = queries.float()
    best = torch.full((len(q),), -2.0)  # best cosine so far
    index = torch.zeros(len(q), dtype=torch.long)
    mirrored = torch.zeros(len(q), dtype=torch.bool)
    rows = torch.arange(len(q))
    for start in range(0, len(train), chunk):
        for flag, side in ((False, train), (True, train_mirrored)):
            cos = q @ side[start:start + chunk].float().T  # (Q, C)
            if exclude is not None:
                own = exclude - start
                mine = (own >= 0) & (own < cos.shape[1])
                cos[rows[mine], own[mine]] = -2.0
            value, arg = cos.max(1)
            better = value > best
            best[better], index[better], mirrored[better] = value[better], arg[better] + start, flag
    return (2 - 2 * best).clamp(min=0).sqrt(), index, mirrored


def heldout_distances(train: torch.Tensor, train_mirrored: torch.Tensor, cfg: CopiesConfig, seed: int) -> torch.Tensor:
    """Nearest-training distances of `holdout` seeded real posters, each compared with every other training poster."""
    n = min(cfg.holdout, len(train))
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    dist, _, _ = nearest(train[idx], train, train_mirrored, cfg.chunk, exclude=idx)
    return dist


def quantiles(x: torch.Tensor) -> dict:
    return {f"p{q}": torch.quantile(x.float(), q / 100).item() for q in QUANTILES}


def copy_report(fake: torch.Tensor, train: torch.Tensor, train_mirrored: torch.Tensor, held_out: torch.Tensor,
                cfg: CopiesConfig, fake_names: list[str], train_names: list[str]) -> dict:
    """Descriptors of generated posters (M, D) -> threshold, share and list of likely copies, closest pairs,
    and the two distance distributions (quantiles and a shared-bin histogram)."""
    threshold = torch.quantile(held_out.float(), cfg.percentile / 100).item()
    dist, index, mirrored = nearest(fake, train, train_mirrored, cfg.chunk)
    order = torch.argsort(dist, stable=True).tolist()

    def pair(i: int) -> dict:
        j = int(index[i])
        return {"file": fake_names[i], "training": train_names[j], "fake": i, "real": j,
                "distance": float(dist[i]), "mirrored": bool(mirrored[i])}

    flagged = [pair(i) for i in order if dist[i] < threshold]
    top = float(max(dist.max().item() if len(dist) else 0.0, held_out.max().item()))
    edges = torch.linspace(0, top, cfg.bins + 1)
    return {"space": cfg.space(), "threshold": threshold, "percentile": cfg.percentile,
            "expected_share": cfg.percentile / 100,  # fresh posters of the data distribution below the threshold
            "likely_copy_share": len(flagged) / max(len(fake), 1), "likely_copy_count": len(flagged),
            "likely_copies": flagged, "closest": [pair(i) for i in order[:cfg.closest]],
            "nn_distance": {"generated": quantiles(dist), "held_out_real": quantiles(held_out),
                            "held_out_count": len(held_out)},
            "histogram": {"edges": edges.tolist(), "generated": torch.histogram(dist, edges).hist.long().tolist(),
                          "held_out_real": torch.histogram(held_out.float(), edges).hist.long().tolist()}}


def save_histogram(result: dict, path: Path) -> Path:
    """The nearest-training distance distributions of generated and held-out real posters, with the threshold."""
    from matplotlib.figure import Figure

    from postergen.files import write_atomic
    from postergen.plots import figure_png

    hist = result["histogram"]
    edges = np.array(hist["edges"])
    fig = Figure(figsize=(6.0, 3.2), layout="tight")
    ax = fig.subplots()
    for name, color in (("held_out_real", "tab:blue"), ("generated", "tab:orange")):
        counts = np.array(hist[name], dtype=float)
        ax.stairs(counts / max(counts.sum(), 1), edges, label=name.replace("_", " "), color=color)
    ax.axvline(result["threshold"], color="k", linestyle="--", label=f"threshold (p{result['percentile']:g} of held-out)")
    ax.set_xlabel("distance to the nearest training poster", fontsize=8)
    ax.set_ylabel("share", fontsize=8)
    ax.legend(fontsize=7)
    write_atomic(path, figure_png(fig))
    return path


@register_metric("copies", CopiesConfig, "perceptual", headline="likely_copy_share")
def copies_metric(inputs: MetricInputs, cfg: CopiesConfig) -> dict:
    key = ("copies", cfg.resolution, cfg.blocks, cfg.grid, cfg.holdout, cfg.percentile)
    if key not in inputs.cache:  # the training side and its threshold: once per dataset and settings
        train, train_mirrored, source = training_descriptors(inputs, cfg)
        inputs.cache[key] = (train, train_mirrored, heldout_distances(train, train_mirrored, cfg, inputs.seed), source)
    train, train_mirrored, held_out, source = inputs.cache[key]
    fake = descriptors(inputs.fake, cfg, inputs.device, inputs.progress)
    names = inputs.fake_names or [f"#{i}" for i in range(len(fake))]
    sources = inputs.dataset.meta.get("sources") or []
    train_names = sources if len(sources) == len(train) else [f"#{j}" for j in range(len(train))]
    return {**copy_report(fake, train, train_mirrored, held_out, cfg, names, train_names), "training": source}
