"""Metrics registered by name: each is `fn(inputs, config) -> dict` (stylegan2-ada's metric_main pattern)."""

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


METRICS: dict[str, Metric] = {}


def register_metric(name: str, config: type):
    """Decorator: `@register_metric("swd", SWDConfig)` over `def swd_metric(inputs, cfg) -> dict`."""
    def wrap(fn):
        METRICS[name] = Metric(name, fn, config)
        return fn
    return wrap


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]
