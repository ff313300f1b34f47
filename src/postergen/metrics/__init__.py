"""Evaluation metrics, registered by name on import (pixel: swd, diversity, memorization; perceptual:
fd, kid, precision, recall, density, coverage, perceptual_diversity, copies; fid (Inception); genre)."""

# Within a group (registry.GROUPS) metrics keep this registration order, in evaluate's default set, its
# results and the report's curves.
from postergen.metrics import fd, prdc, swd, diversity, copies, genre, fid, memorization  # noqa: F401, I001  (registers them)
from postergen.metrics.registry import (METRICS, MetricInputs, default_metrics, get_metric, headline_keys,
                                        register_metric)

__all__ = ["METRICS", "MetricInputs", "default_metrics", "get_metric", "headline_keys", "register_metric"]
