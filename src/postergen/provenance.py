"""Provenance in every PNG postergen writes: AI-generated, by which tool, run, step, seed, genres.

The seed project asked who authored generated posters and whether they may be mistaken for real
ones; the answer travels with each file as PNG text chunks that `postergen info IMAGE.png` prints.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, PngImagePlugin

from postergen import __version__
from postergen.errors import UserError
from postergen.files import shown

PREFIX = "postergen:"


def png_info(source: str, step: int | None, seed: int | None, genres: str, **extra) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    fields = {
        "Software": f"postergen {__version__}",
        "Description": "AI-generated movie poster (a GAN sample, not a real film's poster)",
        f"{PREFIX}ai_generated": "true",
        f"{PREFIX}source": source,
        f"{PREFIX}step": "" if step is None else str(step),
        f"{PREFIX}seed": "" if seed is None else str(seed),
        f"{PREFIX}genres": genres,
        **{f"{PREFIX}{k}": str(v) for k, v in extra.items()},
    }
    for key, value in fields.items():
        info.add_itxt(key, value)
    return info


def generated_by(config: dict, seed: int | None, genres: str, **extra) -> PngImagePlugin.PngInfo:
    """png_info for posters of a loaded generator (weights.load_generator's config): the run by its
    folder name, the weights by file name and fingerprint, never by a path (PNGs are shared)."""
    made = {k: config[k] for k in ("checkpoint", "weights") if config.get(k)}
    return png_info(str(config.get("source", "")), config.get("step"), seed, genres, **made, **extra)


def read(path: Path) -> dict[str, str]:
    """Text chunks of a PNG; a one-line error for anything else."""
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise UserError(f"{path}: not a PNG ({im.format})")
            return dict(im.text)
    except (OSError, SyntaxError) as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def describe(path: Path) -> str:
    text = read(path)
    if f"{PREFIX}ai_generated" not in text:
        return f"{path}: no postergen provenance (not written by postergen)"
    text = {shown(k): shown(v, 200) for k, v in text.items()}  # a PNG's text is anyone's: escape it
    width = max(len(k) for k in text)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in text.items())
