"""Mode collapse, measured in a fixed feature space: is the generated set as varied as the real one?

Feature: each poster area-downsampled to 16 px wide (aspect kept; 16x16 or 16x24), compared by
RMS colour difference (features.py). At that size a poster is its layout and colour scheme, which is
what collapses first; no learned weights, so the numbers mean the same on every machine.

- ratio: mean pairwise distance of generated posters / that of real posters (1 = as varied).
- near_duplicates: share of generated pairs closer than the 1st percentile of real-real pairs.
- coverage: k-means on real features (k = min(50, N/10)); share of clusters that are the nearest
  cluster of at least one generated poster (clusters the generator never visits are lost modes).
- collapsed: ratio < 0.5. Healthy runs stay near 1 and partial collapse drifts down; below half
  the real spread, repeats are plain to see in a sample grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from postergen.metrics.featurecache import genre_subsets, set_features
from postergen.metrics.pixels import pairwise_distances, pixel_vectors
from postergen.metrics.registry import MetricInputs, register_metric


@dataclass
class DiversityConfig:
    width: int = 16  # feature: posters area-downsampled to this width in pixels (aspect kept)
    max_posters: int = 2000  # pairwise statistics use at most this many posters per set (seeded sample)
    duplicate_percentile: float = 1.0  # near-duplicate threshold: this percentile of real-real pair distances
    max_clusters: int = 50  # k-means on real features uses k = min(max_clusters, N // posters_per_cluster)
    posters_per_cluster: int = 10  # see max_clusters; k is at least 1
    kmeans_iters: int = 25  # Lloyd iterations after k-means++ seeding
    collapse_ratio: float = 0.5  # `collapsed` when the diversity ratio falls below this


def pair_distances(feats: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N(N-1)/2,) distances of all unordered pairs."""
    i, j = torch.triu_indices(len(feats), len(feats), offset=1)
    return pairwise_distances(feats, feats)[i, j]


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """(N, D) -> (k, D) centroids: k-means++ seeding, then Lloyd steps; an empty cluster keeps its centre."""
    centres = [x[int(torch.randint(len(x), (1,), generator=gen))]]
    d2 = pairwise_distances(x, centres[0][None]).squeeze(1).pow(2)  # to the nearest centre so far
    for _ in range(1, k):
        pick = int(torch.multinomial(d2, 1, generator=gen)) if d2.sum() > 0 else 0  # else: fewer distinct points than k
        centres.append(x[pick])
        d2 = torch.minimum(d2, pairwise_distances(x, x[pick][None]).squeeze(1).pow(2))
    centres = torch.stack(centres)
    for _ in range(iters):
        members = F.one_hot(pairwise_distances(x, centres).argmin(1), k).float()  # (N, k)
        counts = members.sum(0).unsqueeze(1)
        centres = torch.where(counts > 0, (members.T @ x) / counts.clamp(min=1), centres)
    return centres


def _subsample(feats: torch.Tensor, limit: int, gen: torch.Generator) -> torch.Tensor:
    return feats if len(feats) <= limit else feats[torch.randperm(len(feats), generator=gen)[:limit]]


def real_statistics(real: torch.Tensor, cfg: DiversityConfig, seed: int) -> dict:
    """uint8 (N, 3, H, W) -> what the comparison needs from the real side (computed once per real set)."""
    gen = torch.Generator().manual_seed(seed)
    feats = pixel_vectors(real, cfg.width)
    pairs = pair_distances(_subsample(feats, cfg.max_posters, gen))
    k = max(1, min(cfg.max_clusters, len(feats) // cfg.posters_per_cluster))
    return {"mean_distance": pairs.mean().item(),
            "duplicate_threshold": torch.quantile(pairs, cfg.duplicate_percentile / 100).item(),
            "centres": kmeans(feats, k, cfg.kmeans_iters, gen)}


def diversity(real: torch.Tensor, fake: torch.Tensor, cfg: DiversityConfig = DiversityConfig(), seed: int = 0,
              real_stats: dict | None = None) -> dict:
    """uint8 (N, 3, H, W) x2 -> ratio, near_duplicates, coverage, collapsed and the two mean distances."""
    stats = real_stats or real_statistics(real, cfg, seed)
    feats = pixel_vectors(fake, cfg.width)
    pairs = pair_distances(_subsample(feats, cfg.max_posters, torch.Generator().manual_seed(seed + 1)))
    ratio = pairs.mean().item() / max(stats["mean_distance"], 1e-12)
    hit = pairwise_distances(feats, stats["centres"]).argmin(1).unique()
    return {"ratio": ratio,
            "mean_distance_fake": pairs.mean().item(),
            "mean_distance_real": stats["mean_distance"],
            "near_duplicates": (pairs <= stats["duplicate_threshold"]).float().mean().item(),
            "coverage": len(hit) / len(stats["centres"]),
            "clusters": len(stats["centres"]),
            "collapsed": ratio < cfg.collapse_ratio}


@register_metric("diversity", DiversityConfig, "pixel", headline="ratio")
def diversity_metric(inputs: MetricInputs, cfg: DiversityConfig) -> dict:
    if "diversity" not in inputs.cache:
        inputs.cache["diversity"] = real_statistics(inputs.real, cfg, inputs.seed)
    return diversity(inputs.real, inputs.fake, cfg, inputs.seed, inputs.cache["diversity"])


@dataclass
class PerceptualDiversityConfig:
    max_posters: int = 2000  # mean pairwise distance over at most this many posters per set (seeded sample)
    min_per_genre: int = 20  # genres with fewer posters on either side get no per-genre ratio


def diversity_ratio(real: torch.Tensor, fake: torch.Tensor, limit: int, seed: int) -> float:
    """(N, D), (M, D) features -> mean pairwise distance of generated / that of real (1 = as varied)."""
    gen = torch.Generator().manual_seed(seed)
    spread_real = pair_distances(_subsample(real, limit, gen)).mean().item()
    spread_fake = pair_distances(_subsample(fake, limit, gen)).mean().item()
    return spread_fake / max(spread_real, 1e-12)


@register_metric("perceptual_diversity", PerceptualDiversityConfig, "perceptual", headline="ratio")
def perceptual_diversity_metric(inputs: MetricInputs, cfg: PerceptualDiversityConfig) -> dict:
    """The diversity ratio in the perceptual space, overall and per genre: a genre whose posters
    collapse to a few looks shows up here even when the overall mix of genres stays varied."""
    real, fake = set_features(inputs)
    out = {"ratio": diversity_ratio(real, fake, cfg.max_posters, inputs.seed)}
    per_genre = {g: diversity_ratio(r, f, cfg.max_posters, inputs.seed)
                 for g, r, f in genre_subsets(inputs, real, fake, cfg.min_per_genre)}
    return {**out, "per_genre": per_genre} if per_genre else out
