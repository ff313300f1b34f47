"""Fréchet distance and KID in the perceptual space (EfficientNet-Lite2 pooled features), overall and per genre.

The distances themselves are fid.py's (the same formulas as the Inception FID/KID, which only
read a different feature space): FD fits a Gaussian to each set, so it mixes fidelity and variety
into one number and is biased upward for small sets (compare FDs at one n only); KID is the
unbiased MMD with a cubic kernel, averaged over random subsets (mean and std), and fairer for small
sets. Neither library that offers them fits: torchmetrics' FID/KID take images and run their own
extractor on every call, where these reuse features computed once per dataset (featurecache.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from postergen.metrics.featurecache import genre_subsets, set_features
from postergen.metrics.fid import frechet_distance, kernel_inception_distance
from postergen.metrics.registry import MetricInputs, register_metric

SPACE = "efficientnet-lite2"


@dataclass
class FDConfig:
    min_per_genre: int = 50  # genres with fewer posters on either side get no per-genre FD (too biased)


@dataclass
class KIDConfig:
    subsets: int = 100  # random subsets averaged (torch-fidelity's default)
    subset_size: int = 1000  # posters per subset from each set; capped at the smaller set
    subsets_per_genre: int = 10  # random subsets per genre (each costs as much as one overall subset)
    min_per_genre: int = 50  # genres with fewer posters on either side get no per-genre KID


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@register_metric("fd", FDConfig, "perceptual", headline="value")
def fd_metric(inputs: MetricInputs, cfg: FDConfig) -> dict:
    real, fake = set_features(inputs)
    out = {"value": _finite(frechet_distance(real, fake)), "space": f"{SPACE}-{inputs.perceptual.resolution}px"}
    per_genre = {g: _finite(frechet_distance(r, f)) for g, r, f in genre_subsets(inputs, real, fake, cfg.min_per_genre)}
    return {**out, "per_genre": per_genre} if per_genre else out


@register_metric("kid", KIDConfig, "perceptual", headline="mean")
def kid_metric(inputs: MetricInputs, cfg: KIDConfig) -> dict:
    real, fake = set_features(inputs)
    out = kernel_inception_distance(real, fake, cfg.subsets, cfg.subset_size, inputs.seed)
    per_genre = {g: kernel_inception_distance(r, f, cfg.subsets_per_genre, cfg.subset_size, inputs.seed)
                 for g, r, f in genre_subsets(inputs, real, fake, cfg.min_per_genre)}
    return {**out, "per_genre": per_genre} if per_genre else out
