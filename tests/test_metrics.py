"""Metrics: SWD against a naive computation and known distortions, FID/KID closed forms and a
random-CNN path, mode-collapse flags, planted copies, the genre classifier and its cache."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from postergen.data.dataset import open_dataset
from postergen.errors import UserError
from postergen.metrics import METRICS, MetricInputs
from postergen.metrics import fid as fid_mod
from postergen.metrics.diversity import DiversityConfig, diversity, kmeans
from postergen.metrics.fid import (
    FIDConfig,
    RandomConvFeatures,
    fid_kid,
    fid_metric,
    frechet_distance,
    kernel_inception_distance,
)
from postergen.metrics.genre import CACHE_FILE, GenreConfig, auc, genre_fidelity, load_or_train
from postergen.metrics.memorization import MemorizationConfig, memorization, nearest_training, save_pairs
from postergen.metrics.swd import (
    SWDConfig,
    laplacian_pyramid,
    normalize_descriptors,
    pyr_down,
    pyr_up,
    random_directions,
    sample_descriptors,
    sliced_wasserstein,
    swd,
)

SMALL_SWD = SWDConfig(nhoods_per_image=32, dir_repeats=2, dirs_per_repeat=64)


@pytest.fixture(scope="module")
def posters(tiny_dataset: Path) -> torch.Tensor:
    """The 48 tiny posters, uint8 (48, 3, 32, 32)."""
    return torch.from_numpy(np.array(open_dataset(tiny_dataset).images))


def test_registry_has_every_metric():
    assert {"swd", "fid", "diversity", "memorization", "genre", "fd", "kid", "precision", "recall", "density",
            "coverage", "perceptual_diversity", "copies"} <= METRICS.keys()


# ---------------------------------------------------------------------------------------------
# SWD

def test_swd_of_a_set_with_itself_is_zero(posters):
    out = swd(posters, posters.clone(), SMALL_SWD, seed=3)
    assert set(out) == {"32px", "16px", "mean"}
    assert all(v == 0 for v in out.values())


def test_swd_grows_with_blur_and_with_noise(posters):
    blurred = [swd(posters, gaussian_blur(posters, [9, 9], [s, s]), SMALL_SWD)["mean"] for s in (0.5, 1.0, 2.0)]
    assert 0 < blurred[0] < blurred[1] < blurred[2]
    gen = torch.Generator().manual_seed(0)

    def noisy(amp: float) -> torch.Tensor:
        return (posters.float() + amp * torch.randn(posters.shape, generator=gen)).clamp(0, 255).round().byte()

    noised = [swd(posters, noisy(a), SMALL_SWD)["mean"] for a in (4, 16, 64)]
    assert 0 < noised[0] < noised[1] < noised[2]


def test_swd_ignores_a_global_affine_colour_change(posters):
    """Descriptors are normalised per set (as in the reference), so only structure counts."""
    shifted = (posters.float() * 0.5 + 60).round().byte()
    assert swd(posters, shifted, SMALL_SWD)["mean"] < 0.2 * swd(posters, gaussian_blur(posters, [9, 9], [1.0, 1.0]),
                                                                 SMALL_SWD)["mean"]


def test_sliced_wasserstein_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(12, 2, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(12, 2, 3, 3, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    dirs = [d.double() for d in random_directions(18, 2, 5, gen)]

    def naive_normalise(desc):
        out = desc.clone()
        for c in range(desc.shape[1]):
            values = [float(v) for v in desc[:, c].flatten()]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            out[:, c] = (desc[:, c] - mean) / std
        return out.flatten(1).tolist()

    na, nb = naive_normalise(a), naive_normalise(b)
    per_repeat = []
    for d in dirs:
        total = 0.0
        for k in range(d.shape[1]):
            pa = sorted(sum(x[i] * float(d[i, k]) for i in range(18)) for x in na)
            pb = sorted(sum(x[i] * float(d[i, k]) for i in range(18)) for x in nb)
            total += sum(abs(p - q) for p, q in zip(pa, pb)) / len(pa)
        per_repeat.append(total / d.shape[1])
    expected = sum(per_repeat) / len(per_repeat)
    got = sliced_wasserstein(normalize_descriptors(a), normalize_descriptors(b), dirs)
    assert got == pytest.approx(expected, rel=1e-9)


def _mirror(i: int, n: int) -> int:  # scipy.ndimage mode="mirror": d c b | a b c d | c b a
    return -i if i < 0 else 2 * (n - 1) - i if i >= n else i


def _naive_blur(img: torch.Tensor, c: int, y: int, x: int, gain: float = 1.0) -> float:
    """The reference's scipy.ndimage.convolve(img, 5x5 binomial / 256 * gain, mode="mirror") at one pixel."""
    k, (H, W) = [1, 4, 6, 4, 1], img.shape[-2:]
    return gain * sum(k[dy] * k[dx] * float(img[0, c, _mirror(y + dy - 2, H), _mirror(x + dx - 2, W)])
                      for dy in range(5) for dx in range(5)) / 256


def test_pyramid_steps_match_the_reference_convolutions():
    img = torch.arange(2 * 8 * 6, dtype=torch.float64).reshape(1, 2, 8, 6) ** 1.3
    down = pyr_down(img)  # reference pyr_down: blur, then [::2, ::2]
    assert down.shape == (1, 2, 4, 3)
    for c, y, x in np.ndindex(2, 4, 3):
        assert float(down[0, c, y, x]) == pytest.approx(_naive_blur(img, c, 2 * y, 2 * x))
    zeros = torch.zeros(1, 2, 8, 6, dtype=torch.float64)  # reference pyr_up: zero-insert, blur x4
    zeros[:, :, ::2, ::2] = down
    up = pyr_up(down, (8, 6))
    for c, y, x in np.ndindex(2, 8, 6):
        assert float(up[0, c, y, x]) == pytest.approx(_naive_blur(zeros, c, y, x, gain=4.0))
    pyramid = laplacian_pyramid(img, 2)
    assert [p.shape[-2:] for p in pyramid] == [(8, 6), (4, 3)]
    assert torch.allclose(pyramid[0] + pyr_up(pyramid[1], (8, 6)), img)  # the pyramid is invertible


def test_descriptors_are_whole_neighbourhoods_of_their_own_image():
    B, C, H, W = 3, 3, 12, 10
    b, c, y, x = torch.meshgrid(*(torch.arange(s) for s in (B, C, H, W)), indexing="ij")
    level = (b * 10000 + c * 1000 + y * 30 + x).float()  # every pixel says where it is
    desc = sample_descriptors(level, per_image=5, size=7, gen=torch.Generator().manual_seed(0))
    assert desc.shape == (15, 3, 7, 7)
    corner = desc[:, :1, :1, :1]
    offsets = torch.arange(7)
    expected = (torch.arange(3) * 1000)[:, None, None] + offsets[:, None] * 30 + offsets[None, :]
    assert torch.equal(desc - corner, expected.expand(15, -1, -1, -1).float())
    assert torch.equal((corner.flatten() // 10000).long(), torch.arange(3).repeat_interleave(5))
    ys, xs = (corner.flatten() % 1000) // 30, (corner.flatten() % 1000) % 30
    assert ys.min() >= 0 and ys.max() <= H - 7 and xs.min() >= 0 and xs.max() <= W - 7


# ---------------------------------------------------------------------------------------------
# FID and KID

def _with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean and (unbiased) covariance are exactly `mean` and `cov`."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample cov = I
    return z @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_identical_features_is_zero():
    feats = np.random.default_rng(0).standard_normal((300, 10))
    assert abs(frechet_distance(feats, feats)) < 1e-8
    assert abs(frechet_distance(torch.from_numpy(feats), feats)) < 1e-8


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    cov_a = np.array([[2.0, 0.5], [0.5, 1.0]])
    cov_b = np.array([[1.0, -0.3], [-0.3, 3.0]])  # does not commute with cov_a
    a, b = _with_moments(400, mu_a, cov_a, 0), _with_moments(500, mu_b, cov_b, 1)
    m = cov_a @ cov_b  # 2x2 with real positive spectrum: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M))
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    diag_a, diag_b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    assert frechet_distance(_with_moments(50, np.zeros(3), diag_a, 2),
                            _with_moments(60, np.zeros(3), diag_b, 3)) == pytest.approx(2.0)


def test_frechet_distance_with_fewer_samples_than_dimensions_matches_covariances():
    """Under D samples the distance is computed in sample space; it must equal the covariance form."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((9, 40)), rng.standard_normal((12, 40)) * 2 + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shifted = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert shifted["mean"] > 10 * abs(same["mean"]) and shifted["mean"] > 0.01
    assert kernel_inception_distance(a, b, 20, 200) == same  # seeded


def test_fid_kid_path_with_a_random_cnn(posters):
    extractor = RandomConvFeatures(seed=0, dim=32)
    cfg = FIDConfig(kid_subsets=10, kid_subset_size=24, batch=16)
    same = fid_kid(posters[:24], posters[:24], extractor, cfg)
    blurred = fid_kid(posters[:24], gaussian_blur(posters[:24], [9, 9], [3.0, 3.0]), extractor, cfg)
    assert set(same) == {"fid", "kid", "kid_std"}
    assert abs(same["fid"]) < 1e-9 and blurred["fid"] > 1e3 * abs(same["fid"]) and blurred["kid"] > same["kid"]
    assert torch.equal(RandomConvFeatures(seed=0, dim=32)(posters[:2]), extractor(posters[:2]))  # seeded


def _inputs(posters: torch.Tensor, ds_path: Path, **kw) -> MetricInputs:
    return MetricInputs(real=posters, fake=posters, dataset=open_dataset(ds_path), genres=[], **kw)


def test_fid_without_weights_is_skipped_and_downloads_nothing(posters, tiny_dataset, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    out = fid_metric(_inputs(posters, tiny_dataset), FIDConfig())
    assert list(out) == ["skipped"] and "no InceptionV3 weights" in out["skipped"] and "\n" not in out["skipped"]
    with pytest.raises(UserError, match="no such Inception weights file"):
        fid_metric(_inputs(posters, tiny_dataset, inception_weights=tmp_path / "missing.pth"), FIDConfig())


def test_fid_without_the_library_says_so(posters, tiny_dataset, tmp_path, monkeypatch):
    (tmp_path / "w.pth").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    out = fid_metric(_inputs(posters, tiny_dataset, inception_weights=tmp_path / "w.pth"), FIDConfig())
    assert out == {"skipped": f"torch-fidelity is not installed ({fid_mod.INSTALL_HINT})"}


def test_fid_with_local_inception_weights(posters, tiny_dataset, tmp_path, monkeypatch):
    """torch-fidelity's Inception from a local file (random weights here: the path, not the numbers)."""
    module = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    monkeypatch.setattr(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    monkeypatch.setattr(module, "load_state_dict_from_url", lambda *a, **k: {})
    weights = tmp_path / "inception.pth"
    torch.save(module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict(), weights)
    monkeypatch.undo()
    monkeypatch.setattr(module, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    out = fid_metric(_inputs(posters[:2], tiny_dataset, inception_weights=weights),
                     FIDConfig(kid_subsets=2, kid_subset_size=2))
    assert set(out) == {"fid", "kid", "kid_std"} and abs(out["fid"]) < 1e-3


# ---------------------------------------------------------------------------------------------
# Diversity

def test_diversity_flags_a_collapsed_set_and_not_real_posters(posters):
    cfg = DiversityConfig(posters_per_cluster=5)
    real, other = posters[:24], posters[24:]
    healthy = diversity(real, other, cfg)
    collapsed = diversity(real, posters[5:6].expand(24, -1, -1, -1), cfg)
    assert not healthy["collapsed"] and 0.7 < healthy["ratio"] < 1.4 and healthy["coverage"] > 0.5
    assert collapsed["collapsed"] and collapsed["ratio"] < 0.01 and collapsed["near_duplicates"] == 1.0
    assert collapsed["coverage"] == 1 / collapsed["clusters"] and collapsed["clusters"] == 4


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = (centres.repeat_interleave(50, 0) + 0.3 * torch.randn(150, 2, generator=gen))
    found = kmeans(points, 3, 10, torch.Generator().manual_seed(1))
    nearest = torch.cdist(centres, found).min(1).values
    assert nearest.max() < 0.3


# ---------------------------------------------------------------------------------------------
# Memorization

def test_memorization_finds_planted_copies(posters, tmp_path):
    gen = torch.Generator().manual_seed(0)
    fake = torch.randint(0, 256, (20, 3, 32, 32), generator=gen, dtype=torch.uint8)
    planted = {3: 7, 11: 40, 12: 0, 17: 23}  # fake index -> training index
    for i, j in planted.items():
        fake[i] = posters[j]
    near = (posters[40].int() + torch.randint(-3, 4, (3, 32, 32), generator=gen)).clamp(0, 255).byte()
    fake[11] = near  # a near copy, not an exact one
    train = posters.numpy()  # an array, as the dataset's memory map is
    dist, index = nearest_training(fake, train, width=32, chunk=7)
    assert [int(index[i]) for i in planted] == list(planted.values())
    assert dist[3] == 0 and 0 < dist[11] < 0.02
    out = memorization(fake, train, MemorizationConfig(chunk=7, typical_sample=30), seed=0)
    assert {(p["fake"], p["real"]) for p in out["likely_copies"]} == set(planted.items())
    assert out["likely_copy_count"] == 4 and out["likely_copy_share"] == pytest.approx(4 / 20)
    assert out["typical_distance"] > out["copy_threshold"] > 0.02
    assert [p["fake"] for p in out["closest"][:4]] != [] and out["closest"][0]["distance"] == 0
    png = save_pairs(fake, train, out["closest"][:4], tmp_path / "pairs.png", per_row=2)
    assert Image.open(png).size == (4 * 34 + 2, 2 * 34 + 2)  # 2 pairs a row, 2 rows


def test_real_to_real_nearest_skips_itself(posters):
    dist, index = nearest_training(posters[:5], posters, width=32, chunk=16, exclude=torch.arange(5))
    assert (index != torch.arange(5)).all() and (dist > 0).all()


# ---------------------------------------------------------------------------------------------
# Genre fidelity

def test_auc_matches_pairwise_counting_with_ties():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.3, 0.4, 0.9])
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
    assert auc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
    assert auc(scores, torch.ones(7)) is None


def test_genre_classifier_trains_caches_and_reloads(tiny_dataset, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data)
    ds = open_dataset(data)
    cfg = GenreConfig(epochs=2, channels=8, holdout=0.25)
    model, holdout, cached = load_or_train(ds, cfg)
    assert not cached and (data / CACHE_FILE).is_file()
    assert 0 <= holdout["auc"] <= 1 and 0 <= holdout["top1"] <= 1
    again, holdout_again, cached = load_or_train(ds, cfg)
    assert cached and holdout_again == holdout
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    _, _, cached = load_or_train(ds, GenreConfig(epochs=1, channels=8, holdout=0.25))
    assert not cached  # other settings: trained afresh


def test_genre_fidelity_scores_each_condition():
    """A generator that paints its genre and a classifier that reads it: every condition is honoured."""
    genres = ["a", "b", "c"]

    def generate(conditions: torch.Tensor, seed: int) -> torch.Tensor:
        return (conditions.argmax(1) * 100).byte()[:, None, None, None].expand(-1, 3, 32, 32).clone()

    class Reader(torch.nn.Module):
        def forward(self, images):
            return torch.nn.functional.one_hot((images[:, 0, 0, 0].float() / 100).round().long(), 3).float()

    out = genre_fidelity(Reader(), generate, genres, GenreConfig(per_genre=4))
    assert out == {"auc": 1.0, "top1": 1.0, "per_genre_top1": {"a": 1.0, "b": 1.0, "c": 1.0}}
