"""Evaluation metrics, registered by name on import (pixel: swd, diversity, memorization; perceptual:
fd, kid, precision, recall, density, coverage, perceptual_diversity, copies; fid (Inception); genre)."""

from postergen.metrics import copies, diversity, fd, fid, genre, memorization, prdc, swd  # noqa: F401  (registers them)
from postergen.metrics.registry import METRICS, MetricInputs, get_metric, register_metric

__all__ = ["METRICS", "MetricInputs", "get_metric", "register_metric"]
