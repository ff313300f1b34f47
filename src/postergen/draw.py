"""Drawing posters from a generator: genres, seeds and truncation -> latents, renders, grids and PNG
files (used by train, sample, evaluate, report and the studio).

Each poster is reproducible from its own seed: the latent of seed s depends on s only, not on
how many posters are drawn or in which order.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image, PngImagePlugin
from torch import nn

from postergen import __version__
from postergen.config import ModelConfig
from postergen.errors import UserError
from postergen.files import save_image
from postergen.runtime import autocast


class FixedGrid(NamedTuple):
    """The inputs of the progression grids, the same at every sample step of a run."""

    z: torch.Tensor  # (N, z_dim)
    genres: torch.Tensor | None  # (N, G) one-hot rows, or None for an unconditional run
    per_row: int  # posters per grid row


def fixed_inputs(model_cfg: ModelConfig, genres: list[str], seed: int, device: torch.device,
                 per_row: int = 8) -> FixedGrid:
    """The fixed noise of the progression grids: one row per genre (conditional) or an 8x8 grid."""
    gen = torch.Generator().manual_seed(seed + 1)  # its own RNG: sampling never moves the training RNG
    if not genres:
        return FixedGrid(torch.randn(per_row * per_row, model_cfg.z_dim, generator=gen).to(device), None, per_row)
    z = torch.randn(per_row, model_cfg.z_dim, generator=gen).repeat(len(genres), 1)
    onehot = torch.eye(len(genres)).repeat_interleave(per_row, dim=0)
    return FixedGrid(z.to(device), onehot.to(device), per_row)


@torch.no_grad()
def render(G: nn.Module, z: torch.Tensor, genres: torch.Tensor | None, device: torch.device,
           precision: str = "auto") -> torch.Tensor:
    """G in eval mode (BatchNorm uses running stats and stays untouched) -> uint8 (N, 3, H, W) on CPU.

    genres: (N, G) per poster, or one (G,) vector for all of them, or None.
    """
    if genres is not None and genres.dim() == 1:
        genres = genres.to(z.device).expand(len(z), -1)
    was_training = G.training
    G.eval()
    with autocast(device, precision):
        images = torch.cat([G(z[i:i + 64], None if genres is None else genres[i:i + 64])
                            for i in range(0, len(z), 64)])
    G.train(was_training)
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def save_grid(images: torch.Tensor, per_row: int, path: Path, pnginfo=None) -> None:
    """uint8 (N, 3, H, W) -> one PNG grid with 2 px black gaps; pnginfo carries provenance."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=per_row, padding=2, pad_value=0)  # (3, H', W') uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    if pnginfo is None:  # at least the tool's name, so a later run may replace the file (files.written_by_postergen)
        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_itxt("Software", f"postergen {__version__}")
    save_image(Image.fromarray(grid.permute(1, 2, 0).numpy()), path, pnginfo=pnginfo)


def genre_vectors(names: list[str] | None, known: list[str]) -> list[tuple[str, torch.Tensor | None]]:
    """['horror', 'action+comedy'] -> [(label, multi-hot)]; None -> every genre, or one unconditional row."""
    if not known:
        if names:
            raise UserError("this model was trained without genres; drop --genre")
        return [("all", None)]
    rows = []
    for spec in names or known:
        want = _names(spec, known)
        unknown = [g for g in want if g not in known]
        if unknown:
            raise UserError(f"unknown genre {', '.join(unknown)}; known: {', '.join(known)}")
        vec = torch.zeros(len(known))
        vec[[known.index(g) for g in want]] = 1
        rows.append(("+".join(want), vec))
    return rows


def _names(spec: str, known: list[str]) -> list[str]:
    """'action+comedy' -> ['action', 'comedy']; a known genre whose own name holds '+' stays whole."""
    whole = spec.strip().lower()
    return [whole] if whole in known else [g.strip().lower() for g in spec.split("+") if g.strip()]


UNCONDITIONED = "all"  # the label of posters drawn without genres


def condition(genres: list[str], known: list[str]) -> tuple[str, torch.Tensor | None]:
    """['action', 'comedy'] -> ('action+comedy', one multi-hot vector). No genres: the zero vector
    that label dropout trained a conditional G on, or None for an unconditional one."""
    names = list(dict.fromkeys(g for spec in genres for g in _names(spec, known)))
    if not names:
        return UNCONDITIONED, torch.zeros(len(known)) if known else None
    return genre_vectors(["+".join(names)], known)[0]


def noise(seeds: list[int], z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """One latent per seed from its own generator. Truncation redraws entries with |z| > t
    (the truncation trick: less variety, fewer broken samples)."""
    out = []
    for s in seeds:
        gen = torch.Generator().manual_seed(s)
        z = torch.randn(z_dim, generator=gen)
        if truncation is not None:
            for _ in range(100):  # P(|z| > t) < 1 for t > 0, so this ends; the cap is a safety net
                bad = z.abs() > truncation
                if not bad.any():
                    break
                z[bad] = torch.randn(int(bad.sum()), generator=gen)
            z = z.clamp(-truncation, truncation)
        out.append(z)
    return torch.stack(out)  # (N, z_dim)


class PngWriter:
    """Writes uint8 (3, H, W) images as PNGs on background threads while G renders the next batch.

    PNG encoding (zlib) releases the GIL, so it scales with the cores; leaving the `with` block
    waits for every file and raises the first error.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="png")
        self.pending: list[Future] = []

    def put(self, img: torch.Tensor, path: Path, pnginfo=None) -> None:
        while len(self.pending) >= 4 * self.threads:  # a bounded queue: G never runs far ahead of the disk
            self.pending.pop(0).result()
        # atomic, and a disk error names the file (PIL's own write errors name none)
        self.pending.append(self.pool.submit(
            lambda: save_image(Image.fromarray(img.permute(1, 2, 0).numpy()), path, pnginfo=pnginfo)))

    def __enter__(self) -> "PngWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pool.shutdown(cancel_futures=True)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: stays at the typical norm of Gaussian latents, unlike a straight line."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def walk(seeds: tuple[int, int], z_dim: int, frames: int,
         truncation: float | None = None) -> tuple[list[float], torch.Tensor]:
    """Positions t in [0, 1] and latents (frames, z_dim) along the slerp from seed a to seed b."""
    za, zb = noise(list(seeds), z_dim, truncation)
    ts = [i / max(frames - 1, 1) for i in range(frames)]
    return ts, torch.stack([slerp(za, zb, t) for t in ts])
