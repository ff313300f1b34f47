"""Batches: resident and streamed paths give the same batches; order is a function of (seed, step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from postergen.data.dataset import Batches, open_dataset
from postergen.errors import UserError


def test_resident_and_streamed_batches_agree(tiny_dataset: Path):
    ds = open_dataset(tiny_dataset)
    resident = Batches(ds, 8, torch.device("cpu"), seed=3)
    streamed = Batches(ds, 8, torch.device("cpu"), seed=3, max_bytes=0)
    assert resident.resident and not streamed.resident
    for step in [0, 1, 2, 7, 5, 6]:  # includes an epoch change and a jump (as after a resume)
        (a, ga), (b, gb) = resident.get(step), streamed.get(step)
        assert torch.equal(a, b) and torch.equal(ga, gb)
    real, genres = resident.get(0)
    assert real.shape == (8, 3, 32, 32) and real.min() >= -1 and real.max() <= 1
    assert genres.shape == (8, len(ds.genres))


def test_each_epoch_visits_every_poster_once_across_ranks(tiny_dataset: Path):
    ds = open_dataset(tiny_dataset)
    ranks = [Batches(ds, 8, torch.device("cpu"), seed=0, rank=r, world=2) for r in range(2)]
    per_epoch = ranks[0].steps_per_epoch
    assert per_epoch == 48 // 16
    seen = [tuple(x.flatten().tolist()) for b in ranks for s in range(per_epoch) for x in b.get(s)[0]]
    assert len(set(seen)) == len(seen) == 48  # the synthetic posters are all distinct


def test_too_small_for_one_batch(tiny_dataset: Path):
    with pytest.raises(UserError, match="fewer than one batch"):
        Batches(open_dataset(tiny_dataset), 64, torch.device("cpu"), seed=0)


def test_broken_dataset_arrays_are_one_line_errors(tiny_dataset: Path, tmp_path: Path):
    import shutil

    broken = tmp_path / "ds"
    shutil.copytree(tiny_dataset, broken)
    np.save(broken / "labels.npy", np.zeros((3, 1), np.uint8))
    with pytest.raises(UserError, match="labels.npy: shape"):
        open_dataset(broken)
    (broken / "images.npy").write_bytes(b"junk")
    with pytest.raises(UserError, match="broken dataset arrays"):
        open_dataset(broken)
