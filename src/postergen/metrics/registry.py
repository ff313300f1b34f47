"""Metrics registered by name: each is `fn(inputs, config) -> dict` (stylegan2-ada's metric_main pattern).

The registry is the one list of metrics: `evaluate`'s default set and the CLI's help (`default`), and the
report's curves (`headline`) come from it, ordered by what a metric looks at (GROUPS), then as registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from postergen.data.dataset import PosterDataset
from postergen.errors import UserError
from postergen.metrics.perceptual import PerceptualConfig


@dataclass
class MetricInputs:
    """What every metric sees: equal-sized real and generated sets, plus what some metrics need."""

    real: torch.Tensor  # (N, 3, H, W) uint8: random posters of the dataset
    fake: torch.Tensor  # (N, 3, H, W) uint8: generated posters
    dataset: PosterDataset  # the whole training set (memorization scans it, genre trains on it)
    genres: list[str]  # the run's genre names in label order; [] for an unconditional run
    generate: Callable[[torch.Tensor, int], torch.Tensor] | None = None  # (M, G) multi-hot, seed -> (M, 3, H, W) uint8
    seed: int = 0  # every random choice of every metric derives from it
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    inception_weights: Path | None = None  # local InceptionV3 weights for FID/KID; None = look in the hub cache
    cache: dict = field(default_factory=dict)  # real-side results reused across checkpoints, keyed by metric
    progress: bool = False  # progress bars on long scans
    real_index: torch.Tensor | None = None  # (N,) dataset index of each row of `real`; None: not from the dataset
    real_genres: torch.Tensor | None = None  # (N, G) multi-hot labels of `real`; None: no per-genre results
    fake_genres: torch.Tensor | None = None  # (N, G) multi-hot conditions of `fake`; None: unknown (a folder)
    fake_names: list[str] | None = None  # a name per generated poster (file name or "seed42"); None: "#index"
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)  # the shared feature space's settings
    feature_cache: bool = True  # keep the dataset's perceptual features in the dataset folder
    scratch: dict = field(default_factory=dict)  # fake-side results shared by metrics of one evaluation


@dataclass
class Metric:
    name: str
    fn: Callable[[MetricInputs, object], dict]
    config: type  # the metric's config dataclass; its defaults are the metric's defaults
    headline: str | None = None  # the key of its result the report draws against step (None: none)
    default: bool = True  # run when `evaluate` is given no --metrics
    group: str | None = None  # what it looks at, one of GROUPS (None: after them)


# What metrics look at, in the order evaluate runs and shows them: perceptual features (quality, variety,
# copying), pixels, genres, then Inception's features (FID).
GROUPS = ("perceptual", "pixel", "genre", "inception")

METRICS: dict[str, Metric] = {}


def register_metric(name: str, config: type, group: str | None = None, headline: str | None = None,
                    default: bool = True):
    """Decorator: `@register_metric("swd", SWDConfig, "pixel", headline="mean")` over
    `def swd_metric(inputs, cfg) -> dict`."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"metric {name!r}: group {group!r} is none of {', '.join(GROUPS)}")

    def wrap(fn):
        METRICS[name] = Metric(name, fn, config, headline, default, group)
        return fn
    return wrap


def ordered() -> list[Metric]:
    """Every metric by group, then as registered (metrics/__init__.py's imports)."""
    rank = {g: i for i, g in enumerate(GROUPS)}
    return sorted(METRICS.values(), key=lambda m: rank.get(m.group, len(GROUPS)))


def default_metrics() -> list[str]:
    """What `evaluate` measures unless told otherwise."""
    return [m.name for m in ordered() if m.default]


def headline_keys() -> list[str]:
    """The results the report draws against step, as `name.key` (flattened eval.jsonl keys)."""
    return [f"{m.name}.{m.headline}" for m in ordered() if m.headline]


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]
