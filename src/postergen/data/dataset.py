"""Read a dataset folder written by `prepare` (DESIGN.md: images.npy, labels.npy, dataset.json)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from postergen.errors import UserError
from postergen.fields import INDICES, LIST, OBJECT, SIZE, TEXT, TEXTS, Check, check, integer, need, optional
from postergen.files import shown

if TYPE_CHECKING:
    import torch


GENRE: Check = ('an object {"name": ..., "count": ...}', lambda v: isinstance(v, dict))


@dataclass
class PosterDataset:
    """A prepared dataset: images (N, 3, H, W) uint8 memory map, labels (N, G) uint8 multi-hot."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    meta: dict

    @property
    def genres(self) -> list[str]:
        return [g["name"] for g in self.meta["genres"]]

    def __len__(self) -> int:
        return len(self.images)

    @cached_property
    def held_out(self) -> np.ndarray:
        """Indices of the posters `prepare --holdout` set aside, ascending; empty when none. No training
        draws them: they are evaluation's real set and D's unseen posters (d_heldout)."""
        return np.asarray((self.meta.get("holdout") or {}).get("indices", []), dtype=np.int64)

    @cached_property
    def training(self) -> np.ndarray:
        """Indices of the posters training may draw: every poster but the held-out ones, ascending."""
        return np.setdiff1d(np.arange(len(self), dtype=np.int64), self.held_out)


def read_meta(path: Path) -> dict:
    meta_path = Path(path) / "dataset.json"
    if not Path(path).is_dir():
        raise UserError(f"{path}: no such dataset folder")
    if not meta_path.is_file():
        raise UserError(f"{path}: not a dataset folder (no dataset.json; was `postergen prepare` interrupted?)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: not a postergen dataset.json (not a JSON object)")
    check_meta(meta, meta_path)
    return meta


def check_meta(meta: dict, file: Path) -> None:
    """The fields of dataset.json that readers use, as `prepare` writes them (DESIGN.md): a file edited
    by hand or cut short is a one-line error naming the field, not a TypeError in whatever reads it."""
    need(file, meta, "count", integer(0))
    need(file, meta, "size", SIZE)
    for i, genre in enumerate(need(file, meta, "genres", LIST)):
        check(file, f"genres[{i}]", genre, GENRE)
        need(file, genre, f"genres[{i}].name", TEXT)
        need(file, genre, f"genres[{i}].count", integer(0))
    for i, item in enumerate(need(file, meta, "skipped", LIST, required=False) or []):
        check(file, f"skipped[{i}]", item, OBJECT)
        need(file, item, f"skipped[{i}].reason", TEXT)
    need(file, meta, "sources", TEXTS, required=False)
    holdout = need(file, meta, "holdout", OBJECT, required=False) or {}
    indices = need(file, holdout, "holdout.indices", INDICES, required="holdout" in meta) or []
    if indices and indices[-1] >= meta["count"]:
        raise UserError(f"{file}: field holdout.indices names poster {indices[-1]}, but there are {meta['count']}")
    need(file, meta, "upscaled", LIST, required=False)
    prepare = need(file, meta, "prepare", OBJECT, required=False) or {}
    for key, what in (("roots", TEXTS), ("genres", optional(TEXTS)), ("fit", TEXT), ("aspect", TEXT)):
        need(file, prepare, f"prepare.{key}", what, required=False)


def _load_array(file: Path, mmap: bool) -> np.ndarray:
    """One .npy file of the dataset; a one-line error naming it when it is empty, cut short or not an array."""
    try:
        return np.load(file, mmap_mode="r" if mmap else None)
    except EOFError:  # numpy's word for a file that ends before its header does
        why = "cut short inside its .npy header" if file.stat().st_size else "empty file, 0 bytes"
    except (OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"{file}: broken dataset arrays ({why}); run `postergen prepare` again")


def open_dataset(path: Path) -> PosterDataset:
    """Open without reading pixels: images stay memory-mapped until indexed."""
    path = Path(path)
    meta = read_meta(path)
    images = _load_array(path / "images.npy", mmap=True)
    labels = _load_array(path / "labels.npy", mmap=False)
    H, W = meta["size"]
    if images.shape != (meta["count"], 3, H, W) or images.dtype != np.uint8:
        raise UserError(f"{path}/images.npy: shape {images.shape} does not match dataset.json")
    if labels.shape != (meta["count"], len(meta["genres"])):
        raise UserError(f"{path}/labels.npy: shape {labels.shape} does not match dataset.json")
    return PosterDataset(path, images, labels, meta)


def describe(path: Path) -> str:
    """Human summary for `postergen info`."""
    ds = open_dataset(path)
    meta = ds.meta
    H, W = meta["size"]
    prep = meta.get("prepare", {})
    lines = [
        f"dataset   {ds.path}",
        f"posters   {meta['count']}",
        f"image     {W}x{H} (W x H), fit {prep.get('fit', '?')}, "
        f"{ds.images.nbytes / 2**20:.1f} MiB",
        f"source    {', '.join(prep.get('roots', [])) or '?'}",
        f"labels    {prep.get('labels_from', '?')}",
    ]
    if meta["genres"]:
        multi = int((ds.labels.sum(1) > 1).sum())
        none = int((ds.labels.sum(1) == 0).sum())
        lines.append(f"genres    {len(meta['genres'])} ({multi} posters with several, {none} with none)")
        names = [shown(g["name"]) for g in meta["genres"]]  # names come from a CSV: never raw to a terminal
        width = max(map(len, names))
        for name, g in zip(names, meta["genres"]):
            lines.append(f"  {name:<{width}}  {g['count']:>7}")
    else:
        lines.append("genres    none")
    if len(ds.held_out):
        share = 100 * len(ds.held_out) / max(1, len(ds))
        lines.append(f"held out  {len(ds.held_out)} ({share:.1f}%): never trained on; evaluate compares with them")
    if prep.get("filtered_by_genre"):
        lines.append(f"filtered  {prep['filtered_by_genre']} posters outside --genres {','.join(prep['genres'])}")
    reasons = Counter(s["reason"] for s in meta.get("skipped", []))
    lines.append(f"skipped   {sum(reasons.values())}")
    for reason, n in reasons.most_common():
        lines.append(f"  {reason:<18} {n:>7}")
    upscaled = meta.get("upscaled", [])
    if upscaled:
        lines.append(f"upscaled  {len(upscaled)} (kept, but smaller than {W}x{H}: enlarged, may look soft)")
    return "\n".join(lines)


def check_one_batch(ds: PosterDataset, batch: int, world: int = 1, hint: str = "") -> None:
    """UserError unless the posters that train (held-out ones never do) fill one batch of batch x world
    (processes under torchrun); hint ends the message (what to do)."""
    if len(ds.training) < batch * world:
        held = f" (after {len(ds.held_out)} held out)" if len(ds.held_out) else ""
        per = f" ({world} processes x --batch {batch})" if world > 1 else ""
        raise UserError(f"{ds.path}: {len(ds.training)} posters{held} is fewer than one batch of {batch * world} "
                        f"images{per}{hint}")


class Batches:
    """Random batches in epoch order, a pure function of (seed, step): resuming continues exactly.

    The uint8 array moves to the device once when it fits (`max_bytes`): batches are then drawn by
    index on the device with no host work. Otherwise a background thread gathers the next batch
    from the memory map (into pinned memory on CUDA) while the current step runs.
    Normalisation to [-1, 1] happens on the device.
    """

    def __init__(self, ds: PosterDataset, batch: int, device: "torch.device", seed: int,
                 rank: int = 0, world: int = 1, max_bytes: int = 4 << 30) -> None:
        import torch

        check_one_batch(ds, batch, world)
        self.count = len(ds.training)  # held-out posters are never drawn
        self.batch, self.device, self.seed, self.rank, self.world = batch, device, seed, rank, world
        self.steps_per_epoch = self.count // (batch * world)  # the incomplete last batch is dropped
        # permutation position -> dataset index; None: the identity (no held-out posters), as before they existed
        self.ids = torch.from_numpy(ds.training) if len(ds.held_out) else None
        self.resident = ds.images.nbytes <= max_bytes
        self.images = torch.from_numpy(np.array(ds.images)).to(device) if self.resident else ds.images
        self.labels = torch.from_numpy(ds.labels.astype(np.float32)).to(device)
        self._perms: dict[int, "torch.Tensor"] = {}
        self._pending = None  # (step, future) of the streamed batch being gathered

    def _permutation(self, epoch: int):
        import torch

        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.count, generator=gen)
            if self.ids is not None:
                perm = self.ids[perm]
            self._perms = {epoch: perm.to(self.device) if self.resident else perm}  # keep one epoch
        return self._perms[epoch]

    def _indices(self, step: int):
        epoch, i = divmod(step, self.steps_per_epoch)
        start = (i * self.world + self.rank) * self.batch
        return self._permutation(epoch)[start:start + self.batch]

    def _gather(self, idx) -> "torch.Tensor":
        """Streamed path: rows from the memory map (sorted reads), back in batch order."""
        import torch

        idx = idx.numpy()
        order = np.argsort(idx)
        pixels = np.empty((len(idx), *self.images.shape[1:]), np.uint8)
        pixels[order] = self.images[idx[order]]
        out = torch.from_numpy(pixels)
        return out.pin_memory() if self.device.type == "cuda" else out

    def _streamed(self, step: int) -> "torch.Tensor":
        from concurrent.futures import ThreadPoolExecutor

        if not hasattr(self, "_pool"):
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="postergen-batches")
        if self._pending is None or self._pending[0] != step:
            self._pending = (step, self._pool.submit(self._gather, self._indices(step)))
        pixels = self._pending[1].result()
        self._pending = (step + 1, self._pool.submit(self._gather, self._indices(step + 1)))
        return pixels.to(self.device, non_blocking=True)

    def get(self, step: int):
        """-> real (B, 3, H, W) float in [-1, 1], genres (B, G) float multi-hot, both on the device."""
        idx = self._indices(step)
        pixels = self.images[idx] if self.resident else self._streamed(step)
        real = pixels.float().div_(127.5).sub_(1.0)
        return real, self.labels[idx.to(self.labels.device)]

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch
