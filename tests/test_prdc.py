"""Fréchet distance, KID, precision/recall and density/coverage on feature sets whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from postergen.metrics import METRICS, MetricInputs
from postergen.metrics.fid import frechet_distance, kernel_inception_distance
from postergen.metrics.prdc import knn_radius, prdc


def gaussian(n: int, dim: int = 16, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


def reference_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict:
    """The definitions, with whole distance matrices (as the authors' prdc package computes them)."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radius(x, k):
        return np.sort(dist(x, x), axis=1)[:, k]  # column 0 is the point itself

    d = dist(real, fake)  # (N, M)
    r_pr, r_dc, f_pr = radius(real, k_pr), radius(real, k_dc), radius(fake, k_pr)
    return {"precision": (d < r_pr[:, None]).any(0).mean(), "recall": (d < f_pr[None, :]).any(1).mean(),
            "density": (d < r_dc[:, None]).sum(0).mean() / k_dc, "coverage": (d.min(1) < r_dc).mean()}


def test_prdc_matches_the_definitions_blockwise():
    real, fake = gaussian(70, 8, seed=1), gaussian(50, 8, shift=0.4, seed=2)
    got = prdc(real, fake, 3, 5, block=16)  # several blocks on both sides
    want = reference_prdc(real.double().numpy(), fake.double().numpy(), 3, 5)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_knn_radius_skips_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radius(x, 1, block=3).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radius(x, 2, block=3).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_identical_sets_are_perfect_and_shifted_sets_worse():
    real = gaussian(400)
    same = prdc(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.02)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    previous = {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0, "fd": 0.0}
    for shift in (0.5, 1.0, 2.0):
        fake = gaussian(400, shift=shift, seed=1)
        scores = {**prdc(real, fake), "fd": frechet_distance(real, fake)}
        assert scores["fd"] > previous["fd"] and scores["fd"] == pytest.approx(16 * shift ** 2, rel=0.25)
        for name in ("precision", "recall", "density", "coverage"):
            assert scores[name] < previous[name], (shift, name)
        previous = scores
    assert previous["precision"] < 0.2 and previous["coverage"] < 0.2


def test_precision_and_recall_tell_fidelity_from_variety():
    """Generated posters from one of two real modes: all look real (precision), half the data is missed (recall)."""
    modes = torch.cat([gaussian(300, seed=3), gaussian(300, shift=8.0, seed=4)])
    one_mode = gaussian(300, seed=5)
    scores = prdc(modes, one_mode)
    assert scores["precision"] > 0.7 and scores["density"] > 0.6
    assert 0.35 < scores["recall"] < 0.6 and 0.35 < scores["coverage"] < 0.6


def test_kid_is_unbiased_mean_and_std_over_subsets():
    real = gaussian(600)
    same = kernel_inception_distance(real, gaussian(600, seed=7), subsets=20, subset_size=200)
    apart = kernel_inception_distance(real, gaussian(600, shift=1.0, seed=7), subsets=20, subset_size=200)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert apart["mean"] > 10 * same["std"] and apart["std"] > 0


def inputs_with_features(real: torch.Tensor, fake: torch.Tensor, genres: list[str] | None = None,
                         real_genres=None, fake_genres=None) -> MetricInputs:
    """MetricInputs whose perceptual features are already known (the network is tested elsewhere)."""
    blank = torch.zeros(len(real), 3, 8, 8, dtype=torch.uint8)
    inputs = MetricInputs(real=blank, fake=blank[:len(fake)], dataset=None, genres=genres or [],
                          real_genres=real_genres, fake_genres=fake_genres)
    inputs.cache["real_features"], inputs.scratch["fake_features"] = real, fake
    return inputs


def test_registered_metrics_report_overall_and_per_genre():
    # genre 0 posters are generated well, genre 1 posters land far from their real ones
    real = torch.cat([gaussian(200, seed=1), gaussian(200, shift=6.0, seed=2)])
    fake = torch.cat([gaussian(200, seed=3), gaussian(200, shift=-6.0, seed=4)])
    labels = torch.zeros(400, 2)
    labels[:200, 0] = labels[200:, 1] = 1
    inputs = inputs_with_features(real, fake, ["drama", "horror"], labels, labels.clone())
    results = {name: METRICS[name].fn(inputs, METRICS[name].config()) for name in
               ("fd", "kid", "precision", "recall", "density", "coverage", "perceptual_diversity")}
    for name in ("precision", "recall", "density", "coverage"):
        assert results[name]["per_genre"]["drama"] > 0.6 and results[name]["per_genre"]["horror"] < 0.1, name
        assert results[name]["k"] == (3 if name in ("precision", "recall") else 5)
    assert results["fd"]["per_genre"]["horror"] > 10 * results["fd"]["per_genre"]["drama"]
    assert results["kid"]["per_genre"]["horror"]["mean"] > 10 * results["kid"]["per_genre"]["drama"]["mean"]
    assert results["fd"]["space"] == "efficientnet-lite2-260px"
    assert 0.8 < results["perceptual_diversity"]["per_genre"]["drama"] < 1.2
    unconditional = inputs_with_features(real, fake)
    assert "per_genre" not in METRICS["precision"].fn(unconditional, METRICS["precision"].config())
