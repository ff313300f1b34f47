"""Shared helpers: tests make their own image files, nothing is downloaded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def solid(path: Path, color=(200, 30, 30), size=(182, 268), mode="RGB", **save) -> Path:
    """Write a one-colour image; `size` is (W, H) as PIL counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save)
    return path


def noise(path: Path, seed: int, size=(182, 268)) -> Path:
    """A distinct image per seed (so no two are byte-identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_bomb(path: Path, width=60000, height=60000) -> Path:
    """A tiny PNG whose header claims a huge image: must be refused without decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from postergen.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def built_in_dataset(root: Path, n: int, size: int) -> Path:
    """ROOT/ds: n built-in posters (with genres) prepared at size x size, in this process."""
    from postergen.data.ingest import PrepareConfig, prepare
    from postergen.data.synth import generate

    generate(root / "posters", n=n, seed=0, workers=1)
    prepare([root / "posters"], root / "ds", PrepareConfig(size=size, workers=1))
    return root / "ds"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """48 built-in posters with genres at 32x32: the smallest dataset training tests need."""
    return built_in_dataset(tmp_path_factory.mktemp("tiny"), n=48, size=32)


def tiny_train_args(**overrides) -> dict:
    """Smallest stable config that exercises every part of the step (EMA, R1, DiffAugment, genres)."""
    args = dict(steps=4, batch=8, ngf=8, ndf=8, genre_dim=8, r1_gamma=1.0, r1_every=2, log_every=2,
                sample_every=2, checkpoint_every=2, tensorboard=False, device="cpu")
    args.update(overrides)
    return args


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory) -> Path:
    """A conditional stable run of 2 steps on the tiny dataset."""
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import train

    run = tmp_path_factory.mktemp("run") / "run"
    train(open_dataset(tiny_dataset), run, from_preset("stable", **tiny_train_args(steps=2)), echo=lambda *a: None)
    return run


@pytest.fixture
def data(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset: evaluation caches features, descriptors and its genre
    classifier in the dataset folder."""
    import shutil

    shutil.copytree(tiny_dataset, tmp_path / "ds")
    return tmp_path / "ds"


@pytest.fixture
def run(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run: evaluate writes into the run folder."""
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def no_cached_inception(tmp_path, monkeypatch):
    """torch.hub looks in an empty folder, so no Inception weights a user cached change what FID does."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
