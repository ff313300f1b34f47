"""FID and KID: the distances here work on features from any extractor; Inception comes from torch-fidelity.

The standard numbers need InceptionV3 weights (torch-fidelity's port of the 2015 TensorFlow
graph). They are only ever read from a local file: `inception_weights`, or the file torch-fidelity
itself would have cached under torch.hub's checkpoint folder. Without one the metric reports
{"skipped": reason}; nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from postergen.errors import UserError
from postergen.files import home_relative
from postergen.metrics.registry import MetricInputs, register_metric

# The file name torch-fidelity's downloader gives the weights in torch.hub's cache (v0.2.0 release).
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INSTALL_HINT = "pip install 'postergen[fid]'"


@dataclass
class FIDConfig:
    kid_subsets: int = 100  # random subsets KID averages over (torch-fidelity's default)
    kid_subset_size: int = 1000  # posters per KID subset; capped at the set size
    batch: int = 64  # images per feature-extractor pass


# ---------------------------------------------------------------------------------------------
# Distances on features (any extractor)

def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """(N, D), (M, D) -> |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), Gaussians fitted to each.

    tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a S_b, computed from a
    symmetric PSD matrix with the same nonzero spectrum (stable in float64, no scipy sqrtm):
    S_a^(1/2) S_b S_a^(1/2) (D x D) when both sets have at least D samples, else K K^T with
    K = X_a X_b^T of the centred samples (N x N): exact, and cheap when N < D (e.g. 2048-d Inception).
    """
    a, b = _float64(feats_a), _float64(feats_b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = a - mu_a, b - mu_b
    na, nb, dim = len(a), len(b), a.shape[1]
    if min(na, nb) < dim:
        k = xa @ xb.T  # (N, M)
        small = k @ k.T if na <= nb else k.T @ k
        tr_covmean = _sqrt_trace(small) / math.sqrt((na - 1) * (nb - 1))
    else:
        cov_a, cov_b = xa.T @ xa / (na - 1), xb.T @ xb / (nb - 1)
        root_a = _psd_sqrt(cov_a)
        tr_covmean = _sqrt_trace(root_a @ cov_b @ root_a)
    trace_a, trace_b = (xa ** 2).sum() / (na - 1), (xb ** 2).sum() / (nb - 1)
    return float(((mu_a - mu_b) ** 2).sum() + trace_a + trace_b - 2 * tr_covmean)


def _sqrt_trace(sym: np.ndarray) -> float:
    """Sum of the square roots of a symmetric PSD matrix's eigenvalues (rounding negatives to 0)."""
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((sym + sym.T) / 2), 0, None)).sum())


def kernel_inception_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray,
                              subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """(N, D), (M, D) -> {"mean", "std"} of the unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3.

    Per subset of m from each set: sum_{i!=j} k(x_i,x_j)/(m(m-1)) + same for y - 2 sum k(x_i,y_j)/m^2
    (Binkowski et al. 2018, as in torch-fidelity). Unbiased, so it can dip below 0 for equal sets.
    The kernels are float32 matmuls (3x faster than float64 on the CPU; 100 subsets of 1000 are
    most of the cost) summed in float64.
    """
    a, b = _float64(feats_a), _float64(feats_b)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    a32, b32 = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    values = []
    for _ in range(subsets):
        x = a32[torch.from_numpy(rng.choice(len(a), m, replace=False))]
        y = b32[torch.from_numpy(rng.choice(len(b), m, replace=False))]
        k_xx, k_yy, k_xy = ((x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3)
        k_xx, k_yy, k_xy = k_xx.double(), k_yy.double(), k_xy.double()
        within = (k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()) / (m * (m - 1))
        values.append(float(within - 2 * k_xy.sum() / m ** 2))
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _float64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


# ---------------------------------------------------------------------------------------------
# Feature extractors: uint8 (B, 3, H, W) -> float (B, D)

@torch.no_grad()
def extract_features(images: torch.Tensor, extractor: Callable[[torch.Tensor], torch.Tensor],
                     batch: int = 64, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float64 (N, D) on the CPU, `batch` images per pass."""
    feats = [extractor(images[i:i + batch].to(device)).double().cpu() for i in range(0, len(images), batch)]
    return torch.cat(feats)


class RandomConvFeatures(nn.Module):
    """A randomly initialised small CNN: uint8 (B, 3, H, W) -> (B, dim) globally pooled features.

    Not a quality measure anyone publishes; it exercises the FID/KID path without weights and,
    seeded, gives a comparable "random-network FID" between runs of one machine and version.
    """

    def __init__(self, seed: int = 0, dim: int = 64, width: int = 16) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * width, dim, 3, 2, 1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 127.5 - 1.0)


def inception_weights_path(explicit: Path | None) -> Path | None:
    """The local weights file to use: `explicit` (which must exist), else torch-fidelity's cached file, else None."""
    if explicit is not None:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise UserError(f"{explicit}: no such Inception weights file")
        return explicit
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


def inception_extractor(weights: Path) -> nn.Module:
    """torch-fidelity's InceptionV3 (2048-d pool features) from a local file; ImportError when not installed.

    The library loads the file with weights_only=False; loading it here first with
    weights_only=True refuses a file that carries code before the library ever unpickles it.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler raises many kinds on foreign files
        raise UserError(f"{weights}: not a plain InceptionV3 state_dict ({str(e).splitlines()[0][:120]})") from None
    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    return _FirstOutput(model)


class _FirstOutput(nn.Module):
    """torch-fidelity extractors return a tuple of the requested features; keep the one."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]


# ---------------------------------------------------------------------------------------------
# The metric

def fid_kid(real: torch.Tensor, fake: torch.Tensor, extractor: Callable[[torch.Tensor], torch.Tensor],
            cfg: FIDConfig = FIDConfig(), seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """uint8 (N, 3, H, W) x2 -> {"fid", "kid", "kid_std"} in the extractor's feature space."""
    feats_real = extract_features(real, extractor, cfg.batch, device)
    feats_fake = extract_features(fake, extractor, cfg.batch, device)
    kid = kernel_inception_distance(feats_real, feats_fake, cfg.kid_subsets, cfg.kid_subset_size, seed)
    fid = frechet_distance(feats_real, feats_fake)
    return {"fid": fid if math.isfinite(fid) else None, "kid": kid["mean"], "kid_std": kid["std"]}


@register_metric("fid", FIDConfig, "inception", headline="fid")
def fid_metric(inputs: MetricInputs, cfg: FIDConfig) -> dict:
    weights = inception_weights_path(inputs.inception_weights)
    if weights is None:
        return {"skipped": f"no InceptionV3 weights (pass --inception-weights FILE, or put {INCEPTION_FILE} "
                           f"in {home_relative(Path(torch.hub.get_dir()) / 'checkpoints')}); nothing is downloaded"}
    try:
        extractor = inception_extractor(weights).to(inputs.device)
    except ImportError:
        return {"skipped": f"torch-fidelity is not installed ({INSTALL_HINT})"}
    return fid_kid(inputs.real, inputs.fake, extractor, cfg, inputs.seed, inputs.device)
