"""Precision and recall (Kynkäänniemi et al. 2019, k=3), density and coverage (Naeem et al. 2020, k=5).

All four judge generated posters against k-nearest-neighbour balls in the perceptual space; a
point's ball reaches its k-th nearest other point of its own set.
- precision: share of generated posters inside some real ball (fidelity: do they look real?).
- recall: share of real posters inside some generated ball (variety: is all of the data reached?).
- density: mean number of real balls a generated poster lies in, / k (fidelity that a few real
  outliers cannot inflate; 1 for a copy of the distribution, above 1 when crowded on the modes).
- coverage: share of real posters whose ball holds a generated poster (variety, outlier-robust).
All are in [0, 1] (density unbounded) and higher is better; real-vs-real gives the floor/ceiling.

Written here, not imported: the authors' `prdc` package needs scikit-learn, prints on every call,
takes one k for all four and holds three dense N x N distance matrices (1.2 GB at 10k posters);
torchmetrics has no PRDC. This scans (N x block) distances and keeps the same strict "<" tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from postergen.metrics.featurecache import genre_subsets, set_features
from postergen.metrics.pixels import pairwise_distances
from postergen.metrics.registry import MetricInputs, register_metric


@dataclass
class PRConfig:
    k: int = 3  # neighbourhood size of precision and recall (Kynkäänniemi et al. 2019)
    min_per_genre: int = 20  # genres with fewer posters on either side get no per-genre value


@dataclass
class DCConfig:
    k: int = 5  # neighbourhood size of density and coverage (Naeem et al. 2020)
    min_per_genre: int = 20  # genres with fewer posters on either side get no per-genre value


def knn_radii(x: torch.Tensor, ks: tuple[int, ...], block: int = 2048) -> list[torch.Tensor]:
    """(N, D) -> for each k, (N,) distance from each point to its k-th nearest *other* point of the set."""
    out = torch.empty(len(ks), len(x))
    for i in range(0, len(x), block):
        d = pairwise_distances(x[i:i + block], x)  # (B, N)
        d[torch.arange(len(d)), torch.arange(i, i + len(d))] = float("inf")  # not itself
        nearest = d.topk(max(ks), dim=1, largest=False).values  # (B, max k), ascending
        out[:, i:i + block] = nearest[:, [k - 1 for k in ks]].T
    return list(out)


def knn_radius(x: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """(N, D) -> (N,) distance from each point to its k-th nearest *other* point of the set."""
    return knn_radii(x, (k,), block)[0]


def prdc(real: torch.Tensor, fake: torch.Tensor, k_pr: int = 3, k_dc: int = 5, block: int = 2048) -> dict:
    """(N, D) real, (M, D) generated features -> {"precision", "recall", "density", "coverage"}."""
    real, fake = real.float(), fake.float()
    (r_pr, r_dc), f_pr = knn_radii(real, (k_pr, k_dc), block), knn_radius(fake, k_pr, block)
    in_real_ball = torch.zeros(len(fake), dtype=torch.bool)  # precision, per generated poster
    balls_hit = torch.zeros(len(fake))  # density, per generated poster
    recalled = torch.zeros(len(real), dtype=torch.bool)  # recall, per real poster
    nearest_fake = torch.full((len(real),), float("inf"))  # coverage, per real poster
    for j in range(0, len(fake), block):
        d = pairwise_distances(real, fake[j:j + block])  # (N, B)
        in_real_ball[j:j + block] = (d < r_pr[:, None]).any(0)
        balls_hit[j:j + block] = (d < r_dc[:, None]).sum(0).float()
        recalled |= (d < f_pr[None, j:j + block]).any(1)
        nearest_fake = torch.minimum(nearest_fake, d.min(1).values)
    return {"precision": in_real_ball.float().mean().item(), "recall": recalled.float().mean().item(),
            "density": balls_hit.mean().item() / k_dc, "coverage": (nearest_fake < r_dc).float().mean().item()}


def _scores(inputs: MetricInputs, k_pr: int, k_dc: int, min_per_genre: int) -> dict:
    """All four, overall and per genre, computed once per evaluation (the four metrics share them)."""
    key = ("prdc", k_pr, k_dc, min_per_genre)
    if key not in inputs.scratch:
        real, fake = set_features(inputs)
        inputs.scratch[key] = {"all": prdc(real, fake, k_pr, k_dc),
                               "per_genre": {g: prdc(r, f, k_pr, k_dc) for g, r, f in
                                             genre_subsets(inputs, real, fake, max(min_per_genre, k_pr + 1, k_dc + 1))}}
    return inputs.scratch[key]


def _result(scores: dict, name: str, k: int) -> dict:
    out = {"value": scores["all"][name], "k": k}
    if scores["per_genre"]:
        out["per_genre"] = {g: s[name] for g, s in scores["per_genre"].items()}
    return out


@register_metric("precision", PRConfig, "perceptual", headline="value")
def precision_metric(inputs: MetricInputs, cfg: PRConfig) -> dict:
    return _result(_scores(inputs, cfg.k, DCConfig.k, cfg.min_per_genre), "precision", cfg.k)


@register_metric("recall", PRConfig, "perceptual", headline="value")
def recall_metric(inputs: MetricInputs, cfg: PRConfig) -> dict:
    return _result(_scores(inputs, cfg.k, DCConfig.k, cfg.min_per_genre), "recall", cfg.k)


@register_metric("density", DCConfig, "perceptual", headline="value")
def density_metric(inputs: MetricInputs, cfg: DCConfig) -> dict:
    return _result(_scores(inputs, PRConfig.k, cfg.k, cfg.min_per_genre), "density", cfg.k)


@register_metric("coverage", DCConfig, "perceptual", headline="value")
def coverage_metric(inputs: MetricInputs, cfg: DCConfig) -> dict:
    return _result(_scores(inputs, PRConfig.k, cfg.k, cfg.min_per_genre), "coverage", cfg.k)
