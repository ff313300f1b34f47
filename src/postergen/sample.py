"""`postergen sample`: checkpoint + seeds + genres -> poster files, grids and interpolations; the
drawing itself (latents per seed, genres, renders, PNG writers) is draw.py's."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from postergen.files import save_image
from postergen.provenance import png_info
from postergen.draw import PngWriter, condition, genre_vectors, noise, render, save_grid, walk
from postergen.engine.runtime import pick_device
from postergen.upscale import cached_upscaler, maybe_upscale
from postergen.weights import load_generator


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
