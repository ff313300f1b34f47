"""Shared fixtures and helpers: tests make their own image files, nothing is downloaded.

Every helper more than one test module uses lives here (test modules import nothing from each other).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes


def pytest_configure(config):
    """One torch thread in the test process, as every postergen process the tests start has
    (OMP_NUM_THREADS=1). Tiny tensors gain nothing from a second thread, and on a busy 2-core machine
    two threads wait on each other: a step that takes 0.3 s alone took 46 s beside other work.

    And no measured recipes (POSTERGEN_RECIPES, for this process and those it starts): a run without
    --preset trains stable whatever src/postergen/recipes.json holds, so a new measurement cannot
    change what the tests train; test_recipes.py gives its own tables."""
    torch.set_num_threads(1)
    empty = Path(config.rootpath) / ".pytest_cache" / "no-recipes.json"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text('{"devices": {}}\n')
    os.environ["POSTERGEN_RECIPES"] = str(empty)


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


def built_in_dataset(root: Path, n: int, size: int, seed: int = 0, relabel=None, **options) -> Path:
    """ROOT/ds: n built-in posters (with genres) drawn with `seed`, prepared at size x size in this
    process; relabel(i, genres) -> poster i's new Genre field ('A|B') in the CSV; `options`: more
    PrepareConfig fields."""
    import csv

    from postergen.data.ingest import PrepareConfig, prepare
    from postergen.data.synth import generate

    generate(root / "posters", n=n, seed=seed, workers=1)
    if relabel is not None:
        table = root / "posters" / "MovieGenre.csv"
        rows = list(csv.reader(table.open(encoding="latin-1")))
        column = rows[0].index("Genre")
        for i, row in enumerate(rows[1:]):
            row[column] = relabel(i, row[column])
        with table.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
    prepare([root / "posters"], root / "ds", PrepareConfig(size=size, workers=1, **options))
    return root / "ds"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """48 built-in posters with genres at 32x32: the smallest dataset training tests need."""
    return built_in_dataset(tmp_path_factory.mktemp("tiny"), n=48, size=32)


@pytest.fixture(scope="session")
def hr_dataset(tmp_path_factory) -> Path:
    """24 built-in posters at 64x64: the high-resolution side of super-resolution pairs."""
    return built_in_dataset(tmp_path_factory.mktemp("sr"), n=24, size=64)


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


# ---------------------------------------------------------------------------------------------
# Command lines and processes

def tiny_flags(**options) -> list[str]:
    """`postergen train` flags for the smallest runs (batch 8, ngf = ndf = 8, no TensorBoard, CPU), plus
    OPTIONS as flags: genre_dim=8 -> --genre-dim 8, tensorboard=True -> --tensorboard."""
    flags = []
    for name, value in {"batch": 8, "ngf": 8, "ndf": 8, "tensorboard": False, "device": "cpu", **options}.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else ["--no-" + flag[2:]] if value is False else [flag, str(value)]
    return flags


HUGE = "99999999999999999999"  # beyond int64: used to reach torch as an overflow traceback


def one_line_error(code: int, err: str, command: str, *names: str, exit_code: int = 2) -> str:
    """The error, after checking it is one line from `postergen COMMAND` (exit status EXIT_CODE, no
    traceback) that names every NAME."""
    assert code == exit_code, err
    assert err.count("\n") == 1 and err.startswith(f"postergen {command}: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in err, err
    return err


def with_small_defaults(extra: list[str], **defaults: str) -> list[str]:
    """`extra` plus small settings for the options it leaves out, so a check that lets a bad value
    through costs seconds of training, not minutes."""
    given = {a.split("=")[0] for a in extra if a.startswith("--")}
    length = {"--steps", "--epochs", "--kimg"}
    out = [*extra]
    for name, value in defaults.items():
        flag = "--" + name.replace("_", "-")
        if flag not in given and not (flag == "--steps" and given & length):
            out += [flag, value]
    return out


def run_postergen(*args, torchrun: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    """`postergen ARGS` in a process of its own, one thread a process; with `torchrun`, 2 processes under
    torchrun (gloo). Whatever it started is killed with it if it outlives `timeout` (a deadline for a
    hung run, far beyond a slow one) or the test is interrupted."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([*launcher, "-m", "postergen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    def kill_all() -> None:  # the process group: torchrun's workers too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all()
        out, err = proc.communicate()
        pytest.fail(f"postergen {' '.join(map(str, args))} ran over {timeout} s; its stderr ends:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:  # interrupted
            kill_all()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def torchrun_train(dataset: Path, run: Path, *args) -> subprocess.CompletedProcess:
    """`postergen train DATASET -o RUN ARGS` in 2 CPU processes under torchrun, at the smallest size."""
    flags = tiny_flags(genre_dim=8, log_every=2, sample_every=4, checkpoint_every=2)
    return run_postergen("train", dataset, "-o", run, *flags, *args, torchrun=True)


# ---------------------------------------------------------------------------------------------
# Checkpoints

def checkpoint_weights(path: Path) -> dict:
    """G, D, EMA G and both optimisers' states of a checkpoint file (a run folder: its latest.pt)."""
    from postergen.checkpoint import load_checkpoint

    path = Path(path)
    state = load_checkpoint(path / "checkpoints" / "latest.pt" if path.is_dir() else path)
    return {k: state[k] for k in ("G", "D", "G_ema", "opt_g", "opt_d")}


def assert_same(a, b) -> None:
    """Nested dicts, lists and tuples of tensors and values are equal, every tensor bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


# ---------------------------------------------------------------------------------------------
# Models

def build_gan(cfg, arch: str = "dcgan") -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) for model config `cfg`, built and initialised as every trainer builds them: the model
    registry's entry for `arch`."""
    from postergen.models import registry

    return registry.get(arch, kind="gan").build(cfg)


# ---------------------------------------------------------------------------------------------
# The capturable (--cuda-graph) step, checked on the CPU

def parameters_of(m) -> list[torch.Tensor]:
    """Copies of every parameter of G, D and EMA G of built models `m`."""
    return [p.detach().clone() for net in (m.G, m.D, m.G_ema) for p in net.parameters()]


class NoHostReads(TorchDispatchMode):
    """Fails on any read of a tensor's value into Python (.item(), bool(t), a tensor as a Scalar
    argument): on a GPU each is a sync that breaks capture. Optimiser steps run outside it: on CPU
    Adam reads its step count, on CUDA it runs capturable."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        assert func is not torch.ops.aten._local_scalar_dense.default, "a host read inside the step"
        return func(*args, **(kwargs or {}))


def outside_mode(step_fn):
    """`step_fn` run outside any dispatch mode (NoHostReads)."""
    def step(*args, **kwargs):
        with _disable_current_modes():
            return step_fn(*args, **kwargs)
    return step


# ---------------------------------------------------------------------------------------------
# Evaluation and the pretrained networks

def fast_pixel_configs() -> dict:
    """Small settings for the pixel metrics (SWD, the genre classifier): seconds, not minutes."""
    from postergen.metrics.genre import GenreConfig
    from postergen.metrics.swd import SWDConfig

    return {"swd": SWDConfig(nhoods_per_image=16, dir_repeats=1, dirs_per_repeat=32),
            "genre": GenreConfig(epochs=1, channels=8, per_genre=4)}


# ImageNet class indices (the 1000-class order every ImageNet classifier uses)
MILITARY_UNIFORM, BOW_TIE, SUIT, WINDSOR_TIE = 652, 457, 834, 906


def grace_hopper() -> torch.Tensor:
    """A photo that ships with matplotlib -> uint8 (1, 3, H, W)."""
    from matplotlib import cbook

    image = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]


# ---------------------------------------------------------------------------------------------
# The studio over real HTTP

def call(base: str, method: str, path: str, body=None, raw: bytes | None = None, host: str | None = None,
         timeout: float = 120) -> tuple[int, str, bytes]:
    """-> (status, content type, body). The path goes out byte for byte: `..` and %2F stay as written;
    the Host header as given (None: the base URL's). `timeout` bounds a server that never answers."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {} if host is None else {"Host": host}
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    out = response.status, response.getheader("Content-Type", ""), response.read()
    conn.close()
    return out


def get_json(base: str, path: str):
    status, kind, body = call(base, "GET", path)
    assert status == 200, body
    assert kind.startswith("application/json")
    return json.loads(body)


def post(base: str, path: str, body) -> tuple[int, dict]:
    status, kind, data = call(base, "POST", path, body)
    assert kind.startswith("application/json"), (status, data[:200])
    return status, json.loads(data)


def decode(url: str) -> Image.Image:
    """A data: URL of a PNG -> the image, loaded."""
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    image.load()
    assert image.format == "PNG"
    return image
