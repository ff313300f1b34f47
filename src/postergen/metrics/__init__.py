"""Evaluation metrics, registered by name on import: swd, fid, diversity, memorization, genre."""

from postergen.metrics import diversity, fid, genre, memorization, swd  # noqa: F401  (registers them)
from postergen.metrics.registry import METRICS, MetricInputs, get_metric, register_metric

__all__ = ["METRICS", "MetricInputs", "get_metric", "register_metric"]
