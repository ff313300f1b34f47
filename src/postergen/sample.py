"""`postergen sample`: checkpoint + seeds + genres -> poster files, grids and interpolations; the
drawing itself (latents per seed, genres, renders, PNG writers) is draw.py's."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image

from postergen import __version__
from postergen.draw import PngWriter, condition, genre_vectors, noise, render, save_grid, walk
from postergen.errors import UserError, out_of_memory
from postergen.files import check_replaceable, file_label, save_image
from postergen.provenance import generated_by
from postergen.runtime import pick_device
from postergen.upscale import cached_upscaler, maybe_upscale
from postergen.weights import load_generator

GRID_COLUMNS = 16  # posters a grid row shows when there are several rows; the rest are files only
GRID_POSTERS = 64  # posters a one-row draw shows, 8 per grid line
BATCH = 32  # posters rendered (and upscaled) at once: memory stays flat in --n


def sample(path: Path, out: Path, n: int = 8, seed: int = 0, genres: list[str] | None = None,
           ema: bool = True, grid: bool = True, singles: bool = True, device: str = "cpu",
           truncation: float | None = None, form: str = "postergen", upscale: Path | None = None,
           batch: int = BATCH, force: bool = False) -> dict:
    """Write `n` posters per genre row (seeds seed..seed+n-1) as PNGs and/or one grid.

    Posters stream to disk `batch` at a time, so memory does not grow with n; the grid shows the
    first GRID_COLUMNS seeds of each row (GRID_POSTERS for one row). File names use each genre's
    safe form (files.file_label); a file there that postergen did not write is replaced only with force.
    """
    dev = pick_device(device)
    G, config = load_generator(path, ema=ema, form=form, device=dev)
    rows = genre_vectors(genres, config["genres"])
    seeds = list(range(seed, seed + n))
    names = {label: [out / f"{file_label(label)}-seed{s}.png" for s in seeds] if singles else [] for label, _ in rows}
    grid_path = out / "grid.png" if grid else None
    check_replaceable([f for files in names.values() for f in files] + ([grid_path] if grid else []), force)
    if upscale is not None:
        cached_upscaler(upscale, dev)  # a bad SR run is an error before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    shown = min(n, GRID_COLUMNS if len(rows) > 1 else GRID_POSTERS) if grid else 0
    step = config.get("step")
    kept, written = [], []
    with PngWriter() as writer, _memory_note(config, batch, dev, upscale):
        for label, vec in rows:
            for i in range(0, n, batch):
                z = noise(seeds[i:i + batch], config["model"]["z_dim"], truncation).to(dev)
                images = maybe_upscale(render(G, z, vec, dev), upscale, dev)  # (b, 3, H, W) uint8
                if i < shown:  # a copy, so the rest of the batch can be freed
                    kept.append(images[:shown - i].clone())
                for s, img, file in zip(seeds[i:i + batch], images, names[label][i:i + batch]):
                    writer.put(img, file, generated_by(config, s, label))
                    written.append(file)
    if grid:
        per_row = shown if len(rows) > 1 or shown <= 8 else 8
        save_grid(torch.cat(kept), per_row, grid_path, generated_by(config, seed, ",".join(r[0] for r in rows)))
    return {"step": step, "rows": [r[0] for r in rows], "files": written, "grid": grid_path, "grid_columns": shown}


@contextmanager
def _memory_note(config: dict, batch: int, device: torch.device, upscale: Path | None) -> Iterator[None]:
    """Running out of memory while drawing is one line saying what ran out and what to try; posters
    already written stay (each file is complete or absent)."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not out_of_memory(e):
            raise
        height, width = config["model"].get("height"), config["model"].get("width")
        size = f"{height}x{width} " if height and width else ""
        tips = "a smaller --batch" + (", no --upscale" if upscale is not None else "") + \
            (", or --device cpu" if device.type != "cpu" else "")
        raise UserError(f"out of {device.type} memory drawing {size}posters {batch} at a time; try {tips}") from None


def interpolate(path: Path, out: Path, seeds: tuple[int, int], frames: int = 16, genre: str | None = None,
                ema: bool = True, device: str = "cpu", form: str = "postergen", fmt: str = "gif",
                upscale: Path | None = None, truncation: float | None = None, force: bool = False) -> dict:
    """Walk from seed a to seed b: an animation (GIF or WebP, there and back) and a strip PNG."""
    dev = pick_device(device)
    G, config = load_generator(path, ema=ema, form=form, device=dev)
    label, vec = condition([genre] if genre else [], config["genres"])
    stem = f"{file_label(label)}-seed{seeds[0]}-to-{seeds[1]}"
    strip, anim = out / f"{stem}.png", out / f"{stem}.{fmt}"
    check_replaceable([strip, anim], force)
    _, z = walk(seeds, config["model"]["z_dim"], frames, truncation)
    images = maybe_upscale(render(G, z.to(dev), vec, dev), upscale, dev)
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, frames, strip, generated_by(config, seeds[0], label, interpolation=f"{seeds[0]}->{seeds[1]}"))
    pics = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    scale = max(1, math.ceil(128 / pics[0].width))  # small posters are enlarged for viewing
    pics = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pics]
    pics = pics + pics[-2:0:-1]  # there and back, so the loop has no jump
    # GIF/WebP have no PNG text: one line says what the posters are and which weights drew them
    mark = (f"postergen {__version__}: AI-generated movie posters ({label}; run {config.get('source')}, "
            f"weights {config.get('weights')}, step {config.get('step')}, seeds {seeds[0]}->{seeds[1]})").encode()
    save_image(pics[0], anim, save_all=True, append_images=pics[1:], duration=80, loop=0,
               **({"comment": mark} if fmt == "gif" else {"xmp": mark}))
    return {"strip": strip, "animation": anim, "frames": frames}
