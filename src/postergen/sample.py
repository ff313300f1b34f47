"""Checkpoint + seeds + genres -> posters, grids and interpolations.

Each poster is reproducible from its own seed: the latent of seed s depends on s only, not on
how many posters are drawn or in which order.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from postergen.errors import UserError
from postergen.files import save_image
from postergen.provenance import png_info
from postergen.draw import render, save_grid
from postergen.engine.runtime import pick_device
from postergen.upscale import cached_upscaler, maybe_upscale
from postergen.weights import load_generator  # noqa: F401  (re-exported: the one loader for G)


def genre_vectors(names: list[str] | None, known: list[str]) -> list[tuple[str, torch.Tensor | None]]:
    """['horror', 'action+comedy'] -> [(label, multi-hot)]; None -> every genre, or one unconditional row."""
    if not known:
        if names:
            raise UserError("this model was trained without genres; drop --genre")
        return [("all", None)]
    rows = []
    for spec in names or known:
        want = [g.strip().lower() for g in spec.split("+") if g.strip()]
        unknown = [g for g in want if g not in known]
        if unknown:
            raise UserError(f"unknown genre {', '.join(unknown)}; known: {', '.join(known)}")
        vec = torch.zeros(len(known))
        vec[[known.index(g) for g in want]] = 1
        rows.append(("+".join(want), vec))
    return rows


UNCONDITIONED = "all"  # the label of posters drawn without genres


def condition(genres: list[str], known: list[str]) -> tuple[str, torch.Tensor | None]:
    """['action', 'comedy'] -> ('action+comedy', one multi-hot vector). No genres: the zero vector
    that label dropout trained a conditional G on, or None for an unconditional one."""
    names = list(dict.fromkeys(g.strip().lower() for spec in genres for g in spec.split("+") if g.strip()))
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


def sample(path: Path, out: Path, n: int = 8, seed: int = 0, genres: list[str] | None = None,
           ema: bool = True, grid: bool = True, singles: bool = True, device: str = "cpu",
           truncation: float | None = None, arch: str = "postergen", upscale: Path | None = None) -> dict:
    """Write `n` posters per genre row (seeds seed..seed+n-1) as PNGs and/or one grid."""
    dev = pick_device(device)
    G, config = load_generator(path, ema=ema, arch=arch, device=dev)
    rows = genre_vectors(genres, config["genres"])
    seeds = list(range(seed, seed + n))
    z = noise(seeds, config["model"]["z_dim"], truncation).to(dev)
    if upscale is not None:
        cached_upscaler(upscale, dev)  # a bad SR run is an error before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    images, written = [], []
    source, step = str(config.get("source", "")), config.get("step")
    with PngWriter() as writer:
        for label, vec in rows:
            batch = render(G, z, vec, dev)  # (n, 3, H, W) uint8
            batch = maybe_upscale(batch, upscale, dev)
            images.append(batch)
            for s, img in zip(seeds, batch) if singles else []:
                written.append(out / f"{label}-seed{s}.png")
                writer.put(img, written[-1], png_info(source, step, s, label))
    grid_path = None
    if grid:
        grid_path = out / "grid.png"
        per_row = n if len(rows) > 1 or n <= 8 else 8
        save_grid(torch.cat(images), per_row, grid_path, png_info(source, step, seed, ",".join(r[0] for r in rows)))
    return {"step": config.get("step"), "rows": [r[0] for r in rows], "files": written, "grid": grid_path}


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


def interpolate(path: Path, out: Path, seeds: tuple[int, int], frames: int = 16, genre: str | None = None,
                ema: bool = True, device: str = "cpu", arch: str = "postergen", fmt: str = "gif",
                upscale: Path | None = None, truncation: float | None = None) -> dict:
    """Walk from seed a to seed b: an animation (GIF or WebP, there and back) and a strip PNG."""
    dev = pick_device(device)
    G, config = load_generator(path, ema=ema, arch=arch, device=dev)
    label, vec = condition([genre] if genre else [], config["genres"])
    _, z = walk(seeds, config["model"]["z_dim"], frames, truncation)
    images = maybe_upscale(render(G, z.to(dev), vec, dev), upscale, dev)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{label}-seed{seeds[0]}-to-{seeds[1]}"
    strip = out / f"{stem}.png"
    save_grid(images, frames, strip, png_info(str(config.get("source", "")), config.get("step"), seeds[0], label,
                                              interpolation=f"{seeds[0]}->{seeds[1]}"))
    pics = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    scale = max(1, math.ceil(128 / pics[0].width))  # small posters are enlarged for viewing
    pics = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pics]
    anim = out / f"{stem}.{fmt}"
    pics = pics + pics[-2:0:-1]  # there and back, so the loop has no jump
    save_image(pics[0], anim, save_all=True, append_images=pics[1:], duration=80, loop=0)
    return {"strip": strip, "animation": anim, "frames": frames}
