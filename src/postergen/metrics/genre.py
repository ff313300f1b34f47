"""Genre fidelity of a conditional run: does a poster generated for "horror" look like horror?

A small multi-label CNN learns genres from the dataset at 32 px (seeded, a few epochs on the CPU)
and is cached in the dataset folder as `genre_classifier.pt` (state_dict + JSON-able config,
loaded with weights_only=True). Its skill is measured on held-out real posters, then on posters
generated with a one-hot condition per genre: generated scores near the real ones mean the
condition is honoured as well as the classifier can tell.

- auc: mean over genres of the ROC AUC of that genre's score (real: multi-hot labels; generated:
  "was conditioned on this genre").
- top1: share of posters whose highest-scoring genre is one of theirs (generated: the condition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from postergen.checkpoint import atomic_save
from postergen.data.dataset import PosterDataset
from postergen.files import shared_name
from postergen.metrics.pixels import downsample
from postergen.metrics.registry import MetricInputs, register_metric

CACHE_FILE = "genre_classifier.pt"
FORMAT = "postergen-genre-classifier/1"


@dataclass
class GenreConfig:
    width: int = 32  # classifier input: posters area-downsampled to this width in pixels (aspect kept)
    channels: int = 32  # channels of the first conv layer; doubled by each of the next two
    epochs: int = 5  # passes over the training split
    batch: int = 64  # posters per optimiser step
    lr: float = 2e-3  # Adam learning rate
    holdout: float = 0.1  # share of posters never trained on, on which the classifier is measured
    seed: int = 0  # split, initialisation and batch order
    per_genre: int = 256  # generated posters per genre (one-hot condition)
    cache: bool = True  # read/write genre_classifier.pt in the dataset folder


TRAINING_FIELDS = ("width", "channels", "epochs", "batch", "lr", "holdout", "seed")  # what the cache depends on


class GenreClassifier(nn.Module):
    """uint8 (B, 3, H, W) at the config's width -> (B, n_genres) logits."""

    def __init__(self, n_genres: int, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, n_genres))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 127.5 - 1.0)


def shrink(images: torch.Tensor | np.ndarray, width: int, batch: int = 1024) -> torch.Tensor:
    """uint8 (N, 3, H, W) tensor or memory map -> uint8 (N, 3, h, width): small enough to hold whole."""
    out = []
    for i in range(0, len(images), batch):
        part = images[i:i + batch]
        part = torch.from_numpy(np.array(part)) if isinstance(part, np.ndarray) else part
        out.append(downsample(part, width).mul_(255).round_().to(torch.uint8))
    return torch.cat(out)


def split(count: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (train indices, held-out indices), a seeded permutation; at least one poster on each side."""
    perm = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    n_hold = min(max(1, round(count * holdout)), count - 1)
    return perm[n_hold:], perm[:n_hold]


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties at average rank; None without both classes."""
    positive = positive.bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    sorted_scores, order = scores.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = ((ends - counts + 1 + ends) / 2)[inverse]
    return ((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """(N, G) logits, (N, G) multi-hot -> {"auc": mean per-genre AUC, "top1": hit rate} over labelled posters."""
    per_genre = [auc(logits[:, g], labels[:, g]) for g in range(labels.shape[1])]
    per_genre = [a for a in per_genre if a is not None]
    labelled = labels.sum(1) > 0
    top = logits[labelled].argmax(1)
    hits = labels[labelled].gather(1, top[:, None]).squeeze(1).float()
    return {"auc": sum(per_genre) / len(per_genre) if per_genre else None,
            "top1": hits.mean().item() if len(hits) else None}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """uint8 (N, 3, h, w) already at the classifier's width -> (N, G) logits."""
    model.eval()
    return torch.cat([model(images[i:i + batch]) for i in range(0, len(images), batch)])


def train_classifier(ds: PosterDataset, cfg: GenreConfig) -> tuple[GenreClassifier, dict]:
    """Train on the seeded training split; -> (model, {"auc", "top1"} on the held-out split)."""
    images = shrink(ds.images, cfg.width)
    labels = torch.from_numpy(ds.labels.astype(np.float32))
    train_idx, hold_idx = split(len(ds), cfg.holdout, cfg.seed)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        model = GenreClassifier(labels.shape[1], cfg.channels)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        loss_fn = nn.BCEWithLogitsLoss()
        for _ in range(cfg.epochs):
            model.train()
            for batch in train_idx[torch.randperm(len(train_idx))].split(cfg.batch):
                loss = loss_fn(model(images[batch]), labels[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval(), score(predict(model, images[hold_idx]), labels[hold_idx])


def load_or_train(ds: PosterDataset, cfg: GenreConfig) -> tuple[GenreClassifier, dict, bool]:
    """-> (model, held-out scores, loaded_from_cache). A cache from other settings or data is retrained."""
    path = ds.path / CACHE_FILE
    want = {"format": FORMAT, "config": {k: getattr(cfg, k) for k in TRAINING_FIELDS},
            "genres": ds.genres, "count": len(ds)}
    if cfg.cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if all(saved.get(k) == v for k, v in want.items()):
                model = GenreClassifier(len(ds.genres), cfg.channels)
                model.load_state_dict(saved["state_dict"])
                return model.eval(), saved["holdout"], True
        except Exception:  # a damaged or foreign file is rebuilt, not trusted
            pass
    model, holdout = train_classifier(ds, cfg)
    if cfg.cache:
        try:
            atomic_save({**want, "holdout": holdout, "state_dict": model.state_dict()}, path)
        except OSError:  # a read-only dataset folder: evaluate anyway, train again next time
            pass
    return model, holdout, False


def genre_fidelity(model: nn.Module, generate: Callable[[torch.Tensor, int], torch.Tensor], genres: list[str],
                   cfg: GenreConfig, seed: int = 0) -> dict:
    """Generate `per_genre` posters per one-hot genre -> {"auc", "top1", "per_genre_top1": {genre: rate}}."""
    G = len(genres)
    conditions = torch.eye(G).repeat_interleave(cfg.per_genre, dim=0)  # (G * per_genre, G)
    fake = generate(conditions, seed)  # (G * per_genre, 3, H, W) uint8
    logits = predict(model, shrink(fake, cfg.width))
    hits = (logits.argmax(1) == conditions.argmax(1)).float().view(G, cfg.per_genre).mean(1)
    return {**score(logits, conditions), "per_genre_top1": dict(zip(genres, hits.tolist()))}


@register_metric("genre", GenreConfig, "genre", headline="fake_top1")
def genre_metric(inputs: MetricInputs, cfg: GenreConfig) -> dict:
    if not inputs.genres:
        return {"skipped": "unconditional run: no genre to check"}
    if inputs.generate is None:
        return {"skipped": "no generator to ask for a genre (images from a folder)"}
    if "genre" not in inputs.cache:
        inputs.cache["genre"] = load_or_train(inputs.dataset, cfg)
    model, holdout, cached = inputs.cache["genre"]
    fake = genre_fidelity(model, inputs.generate, inputs.genres, cfg, inputs.seed)
    return {"real_auc": holdout["auc"], "real_top1": holdout["top1"],
            "fake_auc": fake["auc"], "fake_top1": fake["top1"], "per_genre_top1": fake["per_genre_top1"],
            "classifier": f"{'cached' if cached else 'trained'} {shared_name(inputs.dataset.path / CACHE_FILE)}"}
