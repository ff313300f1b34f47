"""Perceptual features of a whole dataset, computed once and kept beside it; and of a metric's two sets.

`DATASET/features-lite2-<resolution>.pt` holds float32 (N, 1280) features with the key they were
made under: the weights file, the resolution, and a BLAKE2 hash of dataset.json and images.npy
(about 1 s per GB). A key that differs (the dataset was prepared again, or edited in place) or a
damaged file means computing them again; a read-only dataset folder means computing them every
time. Features of the whole training set serve copy detection; the real set of a comparison is a
subset of them (MetricInputs.real_index), so `evaluate` never runs the network on a real poster twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch

from postergen.checkpoint import atomic_save
from postergen.data.dataset import PosterDataset
from postergen.files import shared_name
from postergen.metrics.perceptual import PerceptualConfig, perceptual_features, weights_file
from postergen.metrics.registry import MetricInputs

FORMAT = "postergen-features/1"


def cache_path(ds: PosterDataset, cfg: PerceptualConfig) -> Path:
    return ds.path / f"features-lite2-{cfg.resolution}.pt"


_HASHES: dict[tuple, str] = {}  # (path, size, mtime_ns) -> hash: each file is read once per process


def file_hash(path: Path, block: int = 1 << 24) -> str:
    stat = Path(path).stat()
    memo = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _HASHES:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while chunk := f.read(block):
                h.update(chunk)
        _HASHES[memo] = h.hexdigest()
    return _HASHES[memo]


def dataset_key(ds: PosterDataset) -> dict:
    """What every cached result depends on: the network weights and every byte of the dataset."""
    return {"format": FORMAT, "weights": weights_file().name,
            "dataset_json": file_hash(ds.path / "dataset.json"), "images": file_hash(ds.path / "images.npy")}


def cached(ds: PosterDataset, path: Path, settings: dict, compute: Callable[[], dict[str, torch.Tensor]],
           cache: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """-> (tensors, "cached" | "computed"): `path` when its key (dataset_key + settings) matches, else compute()
    and save. The key is hashed again on every call, so a dataset prepared again is never answered stale."""
    key = {**dataset_key(ds), **settings} if cache else None
    if cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key and all(len(t) == len(ds) for t in saved["tensors"].values()):
                return saved["tensors"], "cached"
        except Exception:  # damaged or foreign: computed again and replaced
            pass
    tensors = compute()
    if cache:
        try:
            atomic_save({"key": key, "tensors": tensors}, path)
        except OSError:  # a read-only dataset folder: evaluate anyway
            pass
    return tensors, "computed"


def dataset_features(ds: PosterDataset, cfg: PerceptualConfig = PerceptualConfig(), device: torch.device | str = "cpu",
                     progress: bool = False, cache: bool = True) -> tuple[torch.Tensor, str]:
    """-> (float32 (N, 1280) pooled features of every poster, "cached" | "computed")."""
    tensors, how = cached(ds, cache_path(ds, cfg), {"resolution": cfg.resolution},
                          lambda: {"pooled": perceptual_features(ds.images, cfg, device, progress)}, cache)
    return tensors["pooled"], how


def set_features(inputs: MetricInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (real (N, 1280), fake (M, 1280)) features of the two compared sets, each computed once.

    Real: rows of the dataset's cached features when `real_index` says which posters `real` holds,
    else computed from `real` (kept in inputs.cache across checkpoints). Fake: per MetricInputs.
    """
    if "real_features" not in inputs.cache:
        if inputs.real_index is not None:
            inputs.cache["real_features"] = training_features(inputs)[inputs.real_index]
        else:
            inputs.cache["real_features"] = perceptual_features(inputs.real, inputs.perceptual, inputs.device,
                                                                inputs.progress)
    if "fake_features" not in inputs.scratch:
        inputs.scratch["fake_features"] = perceptual_features(inputs.fake, inputs.perceptual, inputs.device,
                                                              inputs.progress)
    return inputs.cache["real_features"], inputs.scratch["fake_features"]


def training_features(inputs: MetricInputs) -> torch.Tensor:
    """float32 (len(dataset), 1280): every training poster's features, from the dataset's cache."""
    if "training_features" not in inputs.cache:
        feats, how = dataset_features(inputs.dataset, inputs.perceptual, inputs.device, inputs.progress,
                                      inputs.feature_cache)
        inputs.cache["training_features"] = feats
        inputs.cache["training_features_source"] = f"{how} {shared_name(cache_path(inputs.dataset, inputs.perceptual))}"
    return inputs.cache["training_features"]


def genre_subsets(inputs: MetricInputs, real: torch.Tensor, fake: torch.Tensor, min_count: int):
    """-> [(genre, real rows, fake rows)] of posters labelled (real) or conditioned (fake) with each genre
    that has at least `min_count` on both sides; [] when either side's genres are unknown."""
    if not inputs.genres or inputs.real_genres is None or inputs.fake_genres is None:
        return []
    out = []
    for g, name in enumerate(inputs.genres):
        r, f = inputs.real_genres[:, g] > 0, inputs.fake_genres[:, g] > 0
        if int(r.sum()) >= min_count and int(f.sum()) >= min_count:
            out.append((name, real[r], fake[f]))
    return out
