"""The studio's work, free of HTTP: find runs, keep their generators loaded, and turn seeds and
genres into PNG data URLs that carry provenance.

Blocking calls (model loads, rendering) happen here; the app runs them in worker threads.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch
from PIL import Image

from postergen.config import MAX_STUDIO_SEED
from postergen.draw import condition, noise, render, walk
from postergen.errors import UserError
from postergen.provenance import generated_by
from postergen.runfolder import RunFolder
from postergen.web import runs as run_folders
from postergen.web.runs import NotFound, Unavailable
from postergen.web.upscaler import Upscaler
from postergen.weights import load_generator


class Generators:
    """Loaded generators by checkpoint file, each loaded once and shared by all requests.

    A file that changes on disk (a run still training rewrites latest.pt) loads afresh; the
    `capacity` most recently used stay in memory. Loads of one file are serialised by its own
    lock, so two requests never load the same checkpoint twice and other runs are not held up.
    """

    def __init__(self, device: torch.device, capacity: int = 4) -> None:
        self.device = device
        self.capacity = capacity
        self.loads = 0  # how many times a checkpoint was read from disk (tests check the cache with it)
        self._models: OrderedDict[tuple, tuple[torch.nn.Module, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, path: Path) -> tuple[torch.nn.Module, dict]:
        try:
            stat = path.stat()
        except OSError:  # rotated away by a run that keeps only its newest checkpoints
            raise NotFound(f"checkpoint {path.name} is gone; list the run's checkpoints again") from None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            try:
                G, config = load_generator(path, ema=True, device=self.device)
                with self._lock:
                    self.loads += 1
                    for old in [k for k in self._models if k[0] == key[0]]:
                        del self._models[old]  # an older version of the same file
                    self._models[key] = (G, config)
                    while len(self._models) > self.capacity:
                        self._models.popitem(last=False)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        return G, config


def png_data_url(image: torch.Tensor, config: dict, seed: int, genres: str, **extra) -> str:
    """uint8 (3, H, W) -> 'data:image/png;base64,...' with postergen's provenance text chunks."""
    buffer = io.BytesIO()
    info = generated_by(config, seed, genres, **extra)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG", pnginfo=info)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Studio:
    """Runs under one root, one device, a generator cache and an optional upscaler."""

    def __init__(self, root: Path, device: torch.device, upscaler: Upscaler | None = None) -> None:
        self.root = Path(root)
        self.device = device
        self.upscaler = upscaler
        self.generators = Generators(device)

    def _bases(self) -> tuple[Path, Path]:
        """The folder paths are shown relative to, resolved and as given (made absolute): the root, or the
        folder above it when the root is one run, so that shown paths start with the run id the API uses."""
        resolved, given = self.root.resolve(), self.root.absolute()
        try:
            one_run = run_folders.is_run(resolved) or list(run_folders.discover(resolved).values()) == [resolved]
        except (OSError, UserError):
            one_run = False
        return (resolved.parent, given.parent) if one_run else (resolved, given)

    def relative(self, text: str) -> str:
        """`text` (an error message) with the served folder's absolute spellings replaced by relative paths."""
        for base in sorted({str(b) for b in self._bases()}, key=len, reverse=True):
            if base != "/":
                text = re.sub(re.escape(base) + r"(/|(?![\w.-]))", lambda m: "" if m.group(1) else ".", text)
        return text

    def runs(self) -> dict[str, Path]:
        return run_folders.discover(self.root)  # listed afresh: runs appear while the server runs

    def run(self, run_id: str | None) -> tuple[str, Path]:
        """A run by id from the server's own list; None picks the only run."""
        runs = self.runs()
        if run_id is None:
            if len(runs) == 1:
                return next(iter(runs.items()))
            if not runs:
                raise NotFound("no runs in the served folder (a run folder holds config.json or checkpoints/latest.pt)")
            raise UserError(f"choose a run: {', '.join(runs)}")
        if run_id not in runs:
            raise NotFound(f"unknown run {run_id[:80]!r}; known: {', '.join(runs) or 'none'}")
        return run_id, runs[run_id]

    def _model(self, run_id: str | None, checkpoint: str) -> tuple[str, torch.nn.Module, dict]:
        run_id, run = self.run(run_id)
        path = run_folders.checkpoint_path(run, checkpoint)
        try:
            G, config = self.generators.get(path)
        except NotFound:
            raise
        except UserError as e:  # a damaged file: the server's problem, not the request's, and no absolute path
            raise Unavailable(self.relative(str(e))) from None
        return run_id, G, config  # provenance: the run by name, the checkpoint file and the weights' fingerprint

    def generate(self, run: str | None = None, checkpoint: str = RunFolder.LATEST, genres: list[str] = (),
                 seed: int | None = None, n: int = 8, truncation: float | None = None,
                 upscale: bool = False) -> dict:
        """n posters from seeds seed..seed+n-1 (as `postergen sample`); no seed draws a random first one."""
        if upscale and self.upscaler is None:
            raise Unavailable("no upscaler available (needs postergen.upscale and an sr/ run next to the runs)")
        started = time.perf_counter()
        run_id, G, config = self._model(run, checkpoint)
        label, vec = condition(list(genres), config["genres"])
        seed = secrets.randbelow(MAX_STUDIO_SEED - n) if seed is None else seed  # seed + n - 1 stays a valid seed
        seeds = list(range(seed, seed + n))
        z = noise(seeds, config["model"]["z_dim"], truncation).to(self.device)  # (n, z_dim)
        images = render(G, z, vec, self.device)
        if upscale:
            images = self.upscaler(images)  # (n, 3, sH, sW) uint8
        extra = {**({"truncation": truncation} if truncation is not None else {}),
                 **({"upscaled": "true"} if upscale else {})}
        return {
            "run": run_id, "checkpoint": checkpoint, "step": config.get("step"), "genres": label,
            "truncation": truncation, "upscaled": upscale,
            "height": images.shape[2], "width": images.shape[3],
            "images": [{"seed": s, "genres": label, "url": png_data_url(img, config, s, label, **extra)}
                       for s, img in zip(seeds, images)],
            "seconds": round(time.perf_counter() - started, 4),
        }

    def interpolate(self, seeds: list[int], run: str | None = None, checkpoint: str = RunFolder.LATEST,
                    genres: list[str] = (), frames: int = 16, truncation: float | None = None) -> dict:
        """A walk from seeds[0] to seeds[1] along the great circle of the latent sphere (slerp)."""
        run_id, G, config = self._model(run, checkpoint)
        label, vec = condition(list(genres), config["genres"])
        ts, z = walk(tuple(seeds), config["model"]["z_dim"], frames, truncation)  # z: (frames, z_dim)
        images = render(G, z.to(self.device), vec, self.device)
        route = f"{seeds[0]}->{seeds[1]}"
        return {
            "run": run_id, "checkpoint": checkpoint, "step": config.get("step"), "genres": label,
            "seeds": list(seeds), "height": images.shape[2], "width": images.shape[3],
            "frames": [{"t": round(t, 6), "url": png_data_url(img, config, seeds[0], label, interpolation=route, t=round(t, 6))}
                       for t, img in zip(ts, images)],
        }
