"""Built-in synthetic movie posters in the Kaggle "Movie Genre from its Poster" layout, so nothing needs a download.

Each of the 8 genres has its own palette, lighting and layout; the first genre of a poster draws the scene and
any others add a coloured side strip and a small icon, so a GAN has genre signal to learn. Poster i is drawn
from its own RNG seeded with (seed, i), so the files are byte-identical whatever the worker count.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features
from tqdm import tqdm

from postergen.errors import UserError
from postergen.files import check_output_folder, mark_owned

W, H = 182, 268  # the Kaggle poster files' size
JPEG_QUALITY = 90
CSV_NAME = "MovieGenre.csv"
CSV_HEADER = ["imdbId", "Imdb Link", "Title", "IMDB Score", "Genre", "Poster"]
FIRST_ID = 1000001
TEXT_PAD = 3  # px around cached word masks: room for the 3 px title outline

RGB = tuple[int, int, int]

# Words for made-up titles; the accented ones make a reader handle the CSV's latin-1 encoding.
ADJECTIVES = ("Last", "Silent", "Midnight", "Broken", "Golden", "Dark", "Crimson", "Lost", "Wild", "Eternal",
              "Hidden", "Frozen", "Burning", "Little", "Forgotten", "Electric", "Savage", "Sweet", "Final", "Blue")
NOUNS = ("Café", "Kingdom", "Storm", "Heart", "Signal", "Shadow", "Summer", "Protocol", "Garden", "Horizon",
         "Fiancée", "Engine", "Witness", "Carnival", "Harbor", "Machine", "River", "Soirée", "Empire", "House")


@dataclass(frozen=True)
class Palette:
    """Colour choices for a genre; each poster picks one of each and jitters it."""

    skies: tuple[tuple[RGB, RGB], ...]  # background gradient (top, bottom)
    figure: tuple[RGB, ...]  # silhouettes, clothes, bodies
    accent: tuple[RGB, ...]  # accent[0] is the genre's signature colour: the strip on multi-genre posters
    light: tuple[RGB, ...]  # glows, moons, highlights
    title: tuple[RGB, ...]
    band: tuple[RGB | None, ...]  # title band colour; None prints the title straight onto the picture


@dataclass
class Colours:
    """One poster's jittered picks from a Palette."""

    top: RGB
    bottom: RGB
    figure: RGB
    accent: RGB
    light: RGB
    title: RGB
    band: RGB | None


# ----------------------------------------------------------------------------- cached masks (once per process)

@functools.lru_cache(maxsize=None)
def _radial(radius: int) -> Image.Image:
    """L mask of size (2W, 2H): 255 at the centre fading to 0 at `radius`; a W x H crop puts a light anywhere."""
    y, x = np.ogrid[-H:H, -W:W]
    a = np.clip(1.0 - np.sqrt(x * x + y * y) / radius, 0.0, 1.0) ** 2
    return Image.fromarray((a * 255).astype(np.uint8), "L")


@functools.lru_cache(maxsize=None)
def _vignette_mask() -> Image.Image:
    y, x = np.ogrid[0:H, 0:W]
    d = np.sqrt(((x - W / 2) / (W / 2)) ** 2 + ((y - H / 2) / (H / 2)) ** 2)
    return Image.fromarray((np.clip((d - 0.45) / 0.75, 0, 1) ** 1.5 * 255).astype(np.uint8), "L")


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont | None:
    """Pillow's bundled font at `size`, or None where Pillow lacks FreeType (then titles are drawn as blocks)."""
    return ImageFont.load_default(size=size) if features.check("freetype2") else None


@functools.lru_cache(maxsize=8192)
def _width(text: str, size: int) -> float:
    font = _font(size)
    return font.getlength(text) if font is not None else 0.62 * size * len(text)


@functools.lru_cache(maxsize=8192)
def _word_mask(word: str, size: int, stroke: int) -> Image.Image:
    """The word, white on black, padded by the widest stroke so masks of any stroke line up. Cached because
    rendering text would otherwise be the costliest step of a poster, and titles reuse a few dozen words."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    mask = Image.new("L", (int(font.getlength(word)) + 2 * TEXT_PAD, ascent + descent + 2 * TEXT_PAD))
    ImageDraw.Draw(mask).text((TEXT_PAD, TEXT_PAD), word, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    return mask


def _scaled(mask: Image.Image, strength: float) -> Image.Image:
    return mask.point([int(v * strength) for v in range(256)])


# ----------------------------------------------------------------------------- colour and light helpers

def _jitter(rng: np.random.Generator, c: RGB, amount: int = 14) -> RGB:
    return tuple(min(255, max(0, v + int(dv))) for v, dv in zip(c, rng.integers(-amount, amount + 1, 3)))


def _choice(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b))


def _pick_colours(rng: np.random.Generator, p: Palette) -> Colours:
    top, bottom = _choice(rng, p.skies)
    band = _choice(rng, p.band)
    return Colours(_jitter(rng, top), _jitter(rng, bottom), _jitter(rng, _choice(rng, p.figure), 8),
                   _jitter(rng, _choice(rng, p.accent)), _jitter(rng, _choice(rng, p.light)),
                   _choice(rng, p.title), None if band is None else _jitter(rng, band, 8))


def _gradient(rng: np.random.Generator, top: RGB, bottom: RGB) -> Image.Image:
    t = np.linspace(0.0, 1.0, H)[:, None] ** rng.uniform(0.5, 2.0)  # the exponent moves the horizon up or down
    column = (np.asarray(top) * (1 - t) + np.asarray(bottom) * t).astype(np.uint8)  # (H, 3)
    # one column stretched sideways: a third of the cost of blending two full images
    return Image.fromarray(column[:, None, :]).resize((W, H), Image.Resampling.NEAREST)


def _glow(img: Image.Image, cx: float, cy: float, radius: int, colour: RGB, strength: float = 1.0) -> Image.Image:
    """Blend `colour` in around (cx, cy), in place; only the lit box is touched, which keeps small lights cheap."""
    cx, cy = int(min(max(cx, 0), W)), int(min(max(cy, 0), H))
    box = (max(cx - radius, 0), max(cy - radius, 0), min(cx + radius, W), min(cy + radius, H))
    mask = _radial(radius).crop((W - cx + box[0], H - cy + box[1], W - cx + box[2], H - cy + box[3]))
    img.paste(colour, box, _scaled(mask, strength) if strength < 1.0 else mask)
    return img


def _vignette(img: Image.Image, strength: float) -> Image.Image:
    img.paste((0, 0, 0), None, _scaled(_vignette_mask(), strength))
    return img


# ----------------------------------------------------------------------------- shapes

def _bust(d: ImageDraw.ImageDraw, cx: float, top: float, r: float, colour: RGB) -> tuple[float, float]:
    """Head and shoulders running off the bottom edge; returns the head centre for faces or eyes."""
    d.ellipse((cx - 0.8 * r, top, cx + 0.8 * r, top + 2 * r), fill=colour)
    neck = top + 1.8 * r
    d.rectangle((cx - 0.35 * r, neck - 0.3 * r, cx + 0.35 * r, neck + 0.6 * r), fill=colour)
    d.rounded_rectangle((cx - 2.2 * r, neck + 0.4 * r, cx + 2.2 * r, H + r), radius=int(r), fill=colour)
    return cx, top + r


def _standing(d: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, feet: float, h: float,
              colour: RGB) -> tuple[float, float]:
    """Full-body silhouette with a random stride and arm pose; returns the head centre."""
    hr = 0.09 * h
    head_y = feet - h + hr
    shoulder, hip = feet - h + 2.3 * hr, feet - 0.47 * h
    d.ellipse((cx - hr, head_y - hr, cx + hr, head_y + hr), fill=colour)
    d.polygon([(cx - 0.15 * h, shoulder), (cx + 0.15 * h, shoulder), (cx + 0.09 * h, hip), (cx - 0.09 * h, hip)],
              fill=colour)
    stride, lw = float(rng.uniform(0.03, 0.16)) * h, max(2, int(0.06 * h))
    d.line([(cx - 0.05 * h, hip), (cx - stride, feet)], fill=colour, width=lw)
    d.line([(cx + 0.05 * h, hip), (cx + stride, feet)], fill=colour, width=lw)
    for side in (-1, 1):
        reach = float(rng.uniform(-0.1, 0.35)) * h
        d.line([(cx + side * 0.13 * h, shoulder + 2), (cx + side * (0.17 * h + max(reach, 0) * 0.6),
                shoulder + 0.33 * h - reach)], fill=colour, width=max(2, int(0.045 * h)))
    return cx, head_y


def _face(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, skin: RGB, grin: bool, big_eyes: bool) -> None:
    d.ellipse((cx - 0.8 * r, cy - r, cx + 0.8 * r, cy + r), fill=skin)
    er = 0.22 * r if big_eyes else 0.09 * r
    for ex in (cx - 0.32 * r, cx + 0.32 * r):
        if big_eyes:
            d.ellipse((ex - er, cy - 0.3 * r - er, ex + er, cy - 0.3 * r + er), fill=(255, 255, 255))
        d.ellipse((ex - 0.45 * er, cy - 0.25 * r - 0.45 * er, ex + 0.45 * er, cy - 0.25 * r + 0.45 * er) if big_eyes
                  else (ex - er, cy - 0.25 * r - er, ex + er, cy - 0.25 * r + er), fill=(20, 15, 15))
    if grin:
        d.chord((cx - 0.45 * r, cy, cx + 0.45 * r, cy + 0.6 * r), 0, 180, fill=(250, 250, 250), outline=(90, 20, 20))
    else:
        d.arc((cx - 0.3 * r, cy + 0.1 * r, cx + 0.3 * r, cy + 0.5 * r), 20, 160, fill=(90, 40, 40), width=2)


def _burst(d: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, cy: float, r: float, colour: RGB) -> None:
    spikes = int(rng.integers(9, 15))
    a = np.linspace(0, 2 * np.pi, 2 * spikes, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * spikes) % 2 == 0, r, 0.5 * r) * rng.uniform(0.75, 1.15, 2 * spikes)
    d.polygon(list(zip(cx + rad * np.cos(a), cy + rad * np.sin(a))), fill=colour)


def _heart(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour: RGB) -> None:
    d.ellipse((cx - r, cy - 0.75 * r, cx, cy + 0.25 * r), fill=colour)
    d.ellipse((cx, cy - 0.75 * r, cx + r, cy + 0.25 * r), fill=colour)
    d.polygon([(cx - 0.97 * r, cy - 0.1 * r), (cx + 0.97 * r, cy - 0.1 * r), (cx, cy + r)], fill=colour)


def _planet(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour: RGB, ring: RGB) -> None:
    box = (cx - 1.8 * r, cy - 0.45 * r, cx + 1.8 * r, cy + 0.45 * r)
    w = max(1, int(r / 10))
    d.arc(box, 180, 360, fill=ring, width=w)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    d.arc(box, 0, 180, fill=ring, width=w)


def _moon(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour: RGB) -> None:
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    crater = _mix(colour, (0, 0, 0), 0.12)
    for dx, dy, cr in ((-0.3, -0.2, 0.22), (0.35, 0.25, 0.15), (0.05, 0.45, 0.1)):
        d.ellipse((cx + (dx - cr) * r, cy + (dy - cr) * r, cx + (dx + cr) * r, cy + (dy + cr) * r), fill=crater)


def _knife(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, blade: RGB, blood: RGB) -> None:
    d.rectangle((cx - 0.12 * r, cy - r, cx + 0.12 * r, cy - 0.35 * r), fill=(25, 15, 10))
    d.polygon([(cx - 0.18 * r, cy - 0.35 * r), (cx + 0.18 * r, cy - 0.35 * r), (cx, cy + r)], fill=blade)
    d.ellipse((cx - 0.08 * r, cy + 0.9 * r, cx + 0.08 * r, cy + 1.15 * r), fill=blood)


def _crosshair(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour: RGB) -> None:
    w = max(1, int(r / 8))
    d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=w)
    d.line([(cx - 1.3 * r, cy), (cx + 1.3 * r, cy)], fill=colour, width=w)
    d.line([(cx, cy - 1.3 * r), (cx, cy + 1.3 * r)], fill=colour, width=w)


def _tree(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, length: float, angle: float,
          width: int, colour: RGB) -> None:
    """Dead, forking tree: each branch splits in two until the twigs are short."""
    x2, y2 = x + length * np.cos(angle), y - length * np.sin(angle)
    d.line([(x, y), (x2, y2)], fill=colour, width=max(1, width))
    if length > 7:
        for turn in (-1, 1):
            _tree(d, rng, x2, y2, length * float(rng.uniform(0.6, 0.78)), angle + turn * float(rng.uniform(0.3, 0.7)),
                  width - 2, colour)


def _skyline(d: ImageDraw.ImageDraw, rng: np.random.Generator, base: float, colour: RGB, lit: RGB) -> None:
    x = -5.0
    while x < W:
        bw, bh = float(rng.uniform(12, 30)), float(rng.uniform(25, 110))
        d.rectangle((x, base - bh, x + bw, H), fill=colour)
        for _ in range(int(rng.integers(0, 4))):
            wx, wy = x + float(rng.uniform(2, bw - 4)), base - float(rng.uniform(5, bh - 4))
            d.rectangle((wx, wy, wx + 2, wy + 3), fill=lit)
        x += bw + float(rng.uniform(-2, 3))


def _car(d: ImageDraw.ImageDraw, x: float, y: float, w: float, colour: RGB) -> None:
    """Side-on car block with its wheels standing on y."""
    h = 0.32 * w
    d.rounded_rectangle((x, y - h, x + w, y - 0.25 * h), radius=int(h / 4), fill=colour)
    d.polygon([(x + 0.22 * w, y - h), (x + 0.35 * w, y - 1.7 * h), (x + 0.68 * w, y - 1.7 * h), (x + 0.8 * w, y - h)],
              fill=colour)
    for wx in (x + 0.22 * w, x + 0.78 * w):
        d.ellipse((wx - 0.3 * h, y - 0.55 * h, wx + 0.3 * h, y + 0.05 * h), fill=(10, 10, 10))


def _luma(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


# ----------------------------------------------------------------------------- genre scenes (primary genre)
# Each takes the gradient background and returns the finished picture, before title and credits.

def _scene_action(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Orange/teal: an explosion lighting silhouettes on the move."""
    bx, by = rng.uniform(30, W - 30), rng.uniform(0.3 * H, 0.6 * H)
    img = _glow(img, bx, by, 180, c.accent, 0.95)
    d = ImageDraw.Draw(img)
    r = rng.uniform(38, 70)
    for scale, col in ((1.0, c.accent), (0.68, _mix(c.accent, (255, 225, 110), 0.6)), (0.38, (255, 250, 225))):
        _burst(d, rng, bx, by, r * scale, col)
    ground = 0.82 * H + rng.uniform(-12, 8)
    d.rectangle((0, ground, W, H), fill=_mix(c.figure, c.bottom, 0.25))
    for _ in range(int(rng.integers(5, 15))):  # debris thrown out of the blast
        px, py, s = bx + rng.normal(0, 45), by + rng.normal(0, 40), rng.uniform(1.5, 4)
        d.polygon([(px - s, py), (px, py - s), (px + s, py + s)], fill=c.figure)
    if rng.random() < 0.4:
        _car(d, rng.uniform(-20, W - 60), ground + 2, rng.uniform(60, 90), c.figure)
    if rng.random() < 0.45:
        cx = W * (0.25 if rng.random() < 0.5 else 0.75) + rng.uniform(-12, 12)
        _bust(d, cx, rng.uniform(0.35, 0.5) * H, rng.uniform(18, 26), c.figure)
    else:
        count = int(rng.integers(1, 4))
        for x in (np.arange(count) + 0.5) / count * W + rng.uniform(-15, 15, count):
            _standing(d, rng, x, ground + rng.uniform(0, 10), rng.uniform(70, 115), c.figure)
    return img


def _scene_animation(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Saturated primaries, everything round: clouds, hills and big-eyed characters."""
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        x, y, s = rng.uniform(0, W), rng.uniform(10, 0.35 * H), rng.uniform(10, 18)
        for dx, dy, k in ((-1.0, 0.2, 0.8), (0.0, -0.2, 1.0), (1.0, 0.2, 0.8)):
            d.ellipse((x + dx * s - k * s, y + dy * s - k * s, x + dx * s + k * s, y + dy * s + k * s), fill=c.light)
    for _ in range(2):
        hx, hw = rng.uniform(-40, W + 40), rng.uniform(120, 220)
        top = rng.uniform(0.62, 0.8) * H
        d.ellipse((hx - hw / 2, top, hx + hw / 2, top + 2 * hw), fill=_mix(c.accent, (0, 0, 0), rng.uniform(0, 0.3)))
    primaries = ((230, 30, 45), (255, 205, 0), (30, 100, 240), (250, 120, 0), (150, 50, 220))
    count = int(rng.integers(1, 3))
    for k, x in enumerate((np.arange(count) + 0.5) / count * W + rng.uniform(-10, 10, count)):
        body = c.figure if k == 0 else _choice(rng, primaries)
        r = rng.uniform(30, 44) / count ** 0.4
        y = rng.uniform(0.55, 0.68) * H
        d.ellipse((x - r, y - r * 1.1, x + r, y + r * 1.3), fill=body)
        for side in (-1, 1):  # round ears
            d.ellipse((x + side * 0.7 * r - 0.3 * r, y - 1.2 * r, x + side * 0.7 * r + 0.3 * r, y - 0.6 * r), fill=body)
        _face(d, x, y - 0.1 * r, 0.7 * r, _mix(body, (255, 255, 255), 0.55), grin=rng.random() < 0.5, big_eyes=True)
    return img


def _scene_comedy(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """High-key yellow: sunburst rays behind a grinning line-up."""
    d = ImageDraw.Draw(img)
    cx, cy = W / 2 + rng.uniform(-40, 40), rng.uniform(0.3, 0.6) * H
    rays = int(rng.integers(8, 14)) * 2
    step, offset = 360 / rays, rng.uniform(0, 360 / rays)
    ray = _mix(c.top, (255, 255, 255), 0.45)
    for k in range(0, rays, 2):  # triangles reaching past the frame: cheaper than pieslices
        a = np.radians([offset + k * step, offset + (k + 1) * step])
        tips = zip(cx + 400 * np.cos(a), cy + 400 * np.sin(a))
        d.polygon([(cx, cy), *tips], fill=ray)
    skins = ((250, 210, 175), (225, 170, 125), (165, 110, 75), (255, 225, 195))
    shirts = ((225, 50, 40), (40, 110, 220), (60, 170, 80), (245, 245, 245), c.figure)
    count = int(rng.integers(1, 4))
    r = rng.uniform(20, 27) / count ** 0.3
    for x in (np.arange(count) + 0.5) / count * W + rng.uniform(-8, 8, count):
        top = rng.uniform(0.42, 0.55) * H
        hx, hy = _bust(d, x, top, r, _choice(rng, shirts))
        _face(d, hx, hy, r, _choice(rng, skins), grin=True, big_eyes=rng.random() < 0.3)
        d.chord((hx - 0.8 * r, hy - r, hx + 0.8 * r, hy + 0.1 * r), 180, 360, fill=_choice(rng, ((60, 35, 20),
                (20, 20, 20), (200, 150, 60), (150, 60, 30))))
    return img


def _scene_drama(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Muted and desaturated: a half-lit close-up, a lone figure, or two turned away; sometimes rain."""
    img = _glow(img, rng.uniform(0, W), rng.uniform(0, 0.4 * H), 180, c.light, 0.35)
    d = ImageDraw.Draw(img)
    horizon = rng.uniform(0.55, 0.78) * H
    d.rectangle((0, horizon, W, H), fill=_mix(c.bottom, (0, 0, 0), 0.3))
    layout = int(rng.integers(3))
    if layout == 0:
        r = rng.uniform(36, 52)
        hx, hy = _bust(d, rng.uniform(0.35, 0.65) * W, rng.uniform(0.2, 0.32) * H, r, c.figure)
        _face(d, hx, hy, r, _mix(c.light, (120, 100, 90), 0.5), grin=False, big_eyes=False)
        d.chord((hx - 0.8 * r, hy - r, hx + 0.8 * r, hy + r), *((90, 270) if rng.random() < 0.5 else (270, 90)),
                fill=_mix(c.figure, c.bottom, 0.3))
    elif layout == 1:
        _standing(d, rng, rng.uniform(0.2, 0.8) * W, horizon + rng.uniform(5, 25), rng.uniform(40, 75), c.figure)
    else:
        for side in (-1, 1):
            _bust(d, W / 2 + side * rng.uniform(30, 45), rng.uniform(0.4, 0.5) * H, rng.uniform(17, 23), c.figure)
    if rng.random() < 0.4:
        rain = _mix(c.light, c.top, 0.4)
        for x, y in zip(rng.uniform(-20, W, 40), rng.uniform(0, H, 40)):
            d.line([(x, y), (x + 4, y + 14)], fill=rain, width=1)
    return img


def _scene_horror(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Near-black, a pale (or red) moon, a dead tree or lone house, a figure with glowing eyes, lit from below."""
    mx, my, mr = rng.uniform(30, W - 30), rng.uniform(25, 95), rng.uniform(14, 30)
    img = _glow(img, mx, my, 120, _mix(c.light, c.top, 0.55), 0.6)
    d = ImageDraw.Draw(img)
    _moon(d, mx, my, mr, c.light)
    ground = rng.uniform(0.72, 0.85) * H
    d.polygon([(0, ground), (W * 0.3, ground - rng.uniform(0, 20)), (W * 0.7, ground - rng.uniform(0, 20)), (W, ground),
               (W, H), (0, H)], fill=c.figure)
    if rng.random() < 0.5:
        x = rng.uniform(0.1, 0.9) * W
        _tree(d, rng, x, ground + 2, rng.uniform(30, 45), np.pi / 2 + rng.uniform(-0.2, 0.2), 7, c.figure)
    else:
        x, hw, hh = rng.uniform(0.15, 0.85) * W, rng.uniform(22, 34), rng.uniform(28, 45)
        d.rectangle((x - hw, ground - hh, x + hw, ground + 2), fill=c.figure)
        d.polygon([(x - hw - 6, ground - hh), (x, ground - hh - 0.8 * hw), (x + hw + 6, ground - hh)], fill=c.figure)
        d.rectangle((x - 5, ground - hh + 8, x + 4, ground - hh + 18), fill=(235, 190, 70))
    hx, hy = _standing(d, rng, rng.uniform(0.25, 0.75) * W, H + 5, rng.uniform(110, 170), c.figure) \
        if rng.random() < 0.6 else _bust(d, rng.uniform(0.3, 0.7) * W, rng.uniform(0.45, 0.6) * H, 26, c.figure)
    er = 2.5 if rng.random() < 0.6 else 4
    for ex in (hx - 3 * er, hx + 3 * er):
        d.ellipse((ex - er, hy - er, ex + er, hy + er), fill=c.accent)
    if rng.random() < 0.4:
        _knife(d, rng.uniform(20, W - 20), rng.uniform(0.35, 0.6) * H, rng.uniform(18, 30), (200, 200, 205), c.accent)
    img = _glow(img, W / 2, H + 30, 180, c.accent, 0.45)
    return _vignette(img, 0.95)


def _scene_romance(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Pink and warm: soft glowing light, bokeh, a big faint heart and a couple leaning in."""
    cx, cy = rng.uniform(0.3, 0.7) * W, rng.uniform(0.25, 0.5) * H
    img = _glow(img, cx, cy, 180, c.light, 0.85)
    d = ImageDraw.Draw(img)
    bokeh = zip(rng.uniform(0, W, 12), rng.uniform(0, H, 12), rng.uniform(3, 11, 12), rng.uniform(0.2, 0.6, 12))
    for x, y, s, t in bokeh:
        d.ellipse((x - s, y - s, x + s, y + s), fill=_mix(c.top, c.light, float(t)))
    _heart(d, cx, cy, rng.uniform(40, 65), _mix(c.accent, c.light, rng.uniform(0.2, 0.5)))
    gap = rng.uniform(20, 28)
    if rng.random() < 0.65:
        r = rng.uniform(20, 26)
        top = rng.uniform(0.42, 0.52) * H
        _bust(d, cx - gap, top + rng.uniform(-4, 4), r, c.figure)
        _bust(d, cx + gap, top + rng.uniform(-4, 10), r * rng.uniform(0.85, 1.0), _mix(c.figure, c.accent, 0.2))
    else:
        feet = rng.uniform(0.8, 0.9) * H
        for side in (-1, 1):
            _standing(d, rng, cx + side * gap * 0.6, feet, rng.uniform(60, 80), c.figure)
    return img


def _scene_scifi(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Cold blues: stars, a ringed planet, a neon grid floor or a planet's rim, a visored figure in a cyan glow."""
    horizon = rng.uniform(0.6, 0.75) * H
    img = _glow(img, rng.uniform(0.2, 0.8) * W, horizon, 180, c.accent, 0.8)
    d = ImageDraw.Draw(img)
    d.point([(float(x), float(y)) for x, y in zip(rng.uniform(0, W, 60), rng.uniform(0, horizon, 60))], fill=c.light)
    _planet(d, rng.uniform(20, W - 20), rng.uniform(25, 0.4 * H), rng.uniform(14, 38),
            _mix(c.accent, c.top, rng.uniform(0.2, 0.6)), c.light)
    ground = _mix(c.top, (0, 0, 0), 0.3)
    if rng.random() < 0.6:
        d.rectangle((0, horizon, W, H), fill=ground)
        grid, vx = _mix(c.accent, c.top, 0.35), W / 2 + rng.uniform(-30, 30)
        for x in np.linspace(-3 * W, 4 * W, 15):
            d.line([(vx, horizon), (float(x), H)], fill=grid, width=1)
        for t in (0.08, 0.2, 0.38, 0.62, 1.0):
            d.line([(0, horizon + t * (H - horizon)), (W, horizon + t * (H - horizon))], fill=grid, width=1)
    else:  # standing on a world whose curved rim catches the light
        r = rng.uniform(250, 400)
        cx = W / 2 + rng.uniform(-60, 60)
        d.ellipse((cx - r, horizon, cx + r, horizon + 2 * r), fill=ground, outline=c.accent, width=2)
    if rng.random() < 0.5:
        hx, hy = _standing(d, rng, rng.uniform(0.3, 0.7) * W, horizon + rng.uniform(15, 40), rng.uniform(70, 120),
                           c.figure)
        size = 4
    else:
        hx, hy = _bust(d, rng.uniform(0.3, 0.7) * W, rng.uniform(0.38, 0.5) * H, rng.uniform(22, 30), c.figure)
        size = 9
    d.rectangle((hx - size * 1.6, hy - size * 0.4, hx + size * 1.6, hy + size * 0.4), fill=c.accent)  # visor
    return img


def _scene_thriller(img: Image.Image, rng: np.random.Generator, c: Colours) -> Image.Image:
    """Dark blue-grey at high contrast: a spotlight on a lone figure, a half-lit face, or a city in the blinds."""
    d = ImageDraw.Draw(img)
    layout = int(rng.integers(3))
    if layout == 0:
        x, spread = rng.uniform(0.3, 0.7) * W, rng.uniform(30, 60)
        d.polygon([(x - 6, 0), (x + 6, 0), (x + spread, H), (x - spread, H)], fill=_mix(c.light, c.top, 0.15))
        _standing(d, rng, x + rng.uniform(-10, 10), rng.uniform(0.8, 0.92) * H, rng.uniform(55, 90), c.figure)
    elif layout == 1:
        r = rng.uniform(38, 52)
        hx, hy = _bust(d, rng.uniform(0.35, 0.65) * W, rng.uniform(0.22, 0.32) * H, r, c.figure)
        d.chord((hx - 0.8 * r, hy - r, hx + 0.8 * r, hy + r), *((270, 90) if rng.random() < 0.5 else (90, 270)),
                fill=c.light)
        if rng.random() < 0.5:
            _crosshair(d, hx + rng.uniform(-10, 10), hy + rng.uniform(-10, 10), r * 0.5, c.accent)
    else:
        stripe, tilt = rng.uniform(10, 18), rng.uniform(20, 60)
        for y in np.arange(-tilt, H, 2 * stripe):
            d.polygon([(0, y), (W, y + tilt), (W, y + tilt + stripe * 0.6), (0, y + stripe * 0.6)],
                      fill=_mix(c.top, c.light, 0.35))
        _skyline(d, rng, rng.uniform(0.75, 0.9) * H, c.figure, _mix(c.light, (255, 220, 120), 0.5))
        _standing(d, rng, rng.uniform(0.2, 0.8) * W, H + 10, rng.uniform(100, 150), c.figure)
    return _vignette(img, 0.7)


# ----------------------------------------------------------------------------- secondary-genre icons

def _icon_action(d, rng, x, y, r, c):
    _burst(d, rng, x, y, r, c)


def _icon_animation(d, rng, x, y, r, c):
    _face(d, x, y, r, c, grin=True, big_eyes=True)


def _icon_comedy(d, rng, x, y, r, c):
    d.ellipse((x - r, y - r, x + r, y + r), fill=c)
    _face(d, x, y + 0.1 * r, 0.8 * r, c, grin=True, big_eyes=False)


def _icon_drama(d, rng, x, y, r, c):  # a tear
    d.ellipse((x - 0.6 * r, y - 0.1 * r, x + 0.6 * r, y + 1.1 * r), fill=c)
    d.polygon([(x - 0.55 * r, y + 0.3 * r), (x + 0.55 * r, y + 0.3 * r), (x, y - r)], fill=c)


def _icon_horror(d, rng, x, y, r, c):
    _knife(d, x, y, r, (210, 210, 215), c)


def _icon_romance(d, rng, x, y, r, c):
    _heart(d, x, y, r, c)


def _icon_scifi(d, rng, x, y, r, c):
    _planet(d, x, y, 0.6 * r, c, (230, 250, 255))


def _icon_thriller(d, rng, x, y, r, c):
    _crosshair(d, x, y, 0.8 * r, c)


@dataclass(frozen=True)
class Genre:
    display: str  # the Kaggle CSV spelling
    palette: Palette
    scene: Callable[[Image.Image, np.random.Generator, Colours], Image.Image]
    icon: Callable  # (draw, rng, x, y, r, colour): the small mark a secondary genre leaves


GENRES: dict[str, Genre] = {
    "action": Genre("Action", Palette(
        skies=(((18, 70, 85), (230, 120, 40)), ((10, 40, 60), (250, 150, 50)), ((30, 95, 105), (200, 80, 30))),
        figure=((12, 28, 34), (22, 22, 28)), accent=((255, 130, 20), (255, 170, 40), (250, 100, 20)),
        light=((255, 220, 120),), title=((255, 255, 255), (255, 210, 80)), band=(None, (15, 25, 30))),
        _scene_action, _icon_action),
    "animation": Genre("Animation", Palette(
        skies=(((40, 140, 255), (160, 225, 255)), ((255, 190, 40), (255, 240, 150)), ((120, 60, 220), (60, 170, 255))),
        figure=((235, 40, 40), (255, 200, 0), (30, 110, 240)), accent=((70, 200, 50), (40, 170, 70), (120, 220, 40)),
        light=((255, 255, 255), (255, 250, 225)), title=((255, 230, 0), (255, 255, 255), (235, 30, 40)),
        band=(None, (30, 60, 200), (220, 30, 40))),
        _scene_animation, _icon_animation),
    "comedy": Genre("Comedy", Palette(
        skies=(((255, 230, 60), (255, 165, 30)), ((255, 250, 205), (255, 205, 40)), ((255, 255, 250), (255, 215, 110))),
        figure=((230, 60, 40), (40, 120, 220)), accent=((255, 215, 0), (255, 190, 0)),
        light=((255, 255, 255),), title=((220, 30, 30), (30, 30, 30), (20, 80, 200)),
        band=((255, 255, 255), (255, 240, 90), None)),
        _scene_comedy, _icon_comedy),
    "drama": Genre("Drama", Palette(
        skies=(((120, 125, 130), (60, 60, 65)), ((140, 130, 115), (70, 65, 60)), ((95, 105, 115), (40, 45, 50)),
               ((170, 165, 150), (110, 105, 95))),
        figure=((38, 38, 40), (60, 55, 50)), accent=((165, 150, 125), (150, 140, 125)),
        light=((205, 200, 185), (190, 195, 200)), title=((240, 235, 225), (210, 200, 180)),
        band=(None, (30, 30, 32), (70, 68, 64))),
        _scene_drama, _icon_drama),
    "horror": Genre("Horror", Palette(
        skies=(((5, 5, 8), (40, 6, 6)), ((10, 12, 10), (30, 35, 25)), ((8, 5, 14), (45, 10, 20))),
        figure=((0, 0, 0), (12, 4, 4)), accent=((190, 0, 0), (220, 20, 20)),
        light=((230, 225, 200), (215, 220, 210), (190, 40, 30)), title=((200, 0, 0), (230, 230, 220)),
        band=(None, None, (0, 0, 0))),
        _scene_horror, _icon_horror),
    "romance": Genre("Romance", Palette(
        skies=(((255, 175, 200), (255, 225, 200)), ((250, 150, 170), (255, 210, 170)),
               ((230, 120, 150), (255, 200, 190))),
        figure=((120, 40, 70), (90, 30, 50), (150, 70, 90)), accent=((255, 100, 165), (235, 60, 110)),
        light=((255, 250, 235), (255, 235, 210)), title=((255, 255, 255), (170, 20, 70)),
        band=(None, (255, 240, 245), (150, 30, 70))),
        _scene_romance, _icon_romance),
    "sci-fi": Genre("Sci-Fi", Palette(
        skies=(((0, 5, 25), (10, 60, 110)), ((2, 10, 30), (0, 110, 140)), ((10, 0, 35), (20, 40, 120))),
        figure=((5, 10, 25), (10, 20, 40)), accent=((0, 220, 255), (60, 180, 255), (0, 255, 220)),
        light=((200, 245, 255), (255, 255, 255)), title=((170, 240, 255), (255, 255, 255)),
        band=(None, (0, 10, 30))),
        _scene_scifi, _icon_scifi),
    "thriller": Genre("Thriller", Palette(
        skies=(((25, 35, 55), (5, 8, 15)), ((60, 70, 85), (10, 12, 18)), ((15, 25, 45), (40, 50, 70))),
        figure=((0, 0, 0), (8, 10, 16)), accent=((80, 120, 190), (200, 30, 30)),
        light=((230, 235, 245), (210, 220, 235)), title=((245, 245, 250), (210, 30, 30)),
        band=(None, (0, 0, 0), (240, 240, 245))),
        _scene_thriller, _icon_thriller),
}


# ----------------------------------------------------------------------------- poster assembly

def _accents(d: ImageDraw.ImageDraw, rng: np.random.Generator, secondaries: list[str], title_top: bool) -> None:
    """Each secondary genre leaves a side strip in its signature colour and its icon on a badge."""
    left_first = rng.random() < 0.5
    for k, name in enumerate(secondaries):
        colour = GENRES[name].palette.accent[0]
        left = left_first == (k == 0)
        width = int(rng.integers(5, 9))
        x0 = 0 if left else W - width
        d.rectangle((x0, 0, x0 + width - 1, H), fill=colour)
        x, y, r = (24 if left else W - 24), (84 if title_top else 26) + rng.uniform(-4, 4), 13
        badge = (250, 250, 250) if _luma(colour) < 120 else (15, 15, 20)
        d.ellipse((x - r - 3, y - r - 3, x + r + 3, y + r + 3), fill=badge)
        GENRES[name].icon(d, rng, x, y, r * 0.85, colour)


def _fit_title(text: str, band_h: int) -> tuple[list[str], int]:
    """One line if it fits at a big size, else two; shrunk until the longest line fits the width."""
    size, lines, room = int(band_h * 0.62), [text], W - 16
    if _width(text, size) > room and " " in text:
        words = text.split()
        half = (len(words) + 1) // 2
        lines, size = [" ".join(words[:half]), " ".join(words[half:])], int(band_h * 0.42)
    longest = max(_width(s, size) for s in lines)
    if longest > room:
        size = int(size * room / longest)
    return lines, max(size, 8)


def _title(img: Image.Image, rng: np.random.Generator, c: Colours, title: str, top: bool) -> None:
    d = ImageDraw.Draw(img)
    band_h = int(rng.integers(38, 54))
    y0 = int(rng.integers(4, 14)) if top else H - 32 - band_h - int(rng.integers(0, 10))
    if c.band is not None:
        d.rectangle((0, y0, W, y0 + band_h), fill=c.band)
    # the bundled font has no accents; fold them so "CAFÉ" prints as "CAFE" rather than a missing-glyph box
    text = unicodedata.normalize("NFKD", title.upper()).encode("ascii", "ignore").decode()
    lines, size = _fit_title(text, band_h)
    colour = c.title
    if c.band is not None and abs(_luma(colour) - _luma(c.band)) < 90:  # the palette's pick would vanish on this band
        colour = (15, 15, 15) if _luma(c.band) > 127 else (250, 250, 250)
    font, outline = _font(size), (0, 0, 0) if _luma(colour) > 120 else (255, 255, 255)
    for k, line in enumerate(lines):
        y = y0 + band_h * (k + 0.5) / len(lines)
        if font is None:  # no FreeType: letters as blocks
            x = W / 2 - 0.31 * size * len(line)
            for ch in line:
                if ch != " ":
                    d.rectangle((x, y - 0.35 * size, x + 0.5 * size, y + 0.35 * size), fill=colour)
                x += 0.62 * size
        else:
            _paste_line(img, line, size, y, colour, None if c.band is not None else outline)


def _paste_line(img: Image.Image, line: str, size: int, y: float, colour: RGB, outline: RGB | None) -> None:
    """Centre `line` on height y from cached word masks. A 1 px stroke in the fill colour thickens the thin
    font; on the picture (no band) a contrasting outline around it keeps the title readable."""
    words, space = line.split(), _width(" ", size)
    ascent, descent = _font(size).getmetrics()
    x = W / 2 - (sum(_width(w, size) for w in words) + space * (len(words) - 1)) / 2 - TEXT_PAD
    top = int(y - (ascent + descent) / 2 - TEXT_PAD)
    for word in words:
        fill = _word_mask(word, size, 1)
        if outline is not None:
            img.paste(outline, (int(x), top), _word_mask(word, size, 3))
        img.paste(colour, (int(x), top), fill)
        x += _width(word, size) + space


def _credits(d: ImageDraw.ImageDraw, rng: np.random.Generator, c: Colours) -> None:
    """The billing block: rows of tiny word-like dashes along the bottom."""
    colour = (70, 70, 70) if _luma(c.bottom) > 150 else (200, 200, 200)
    for row in range(int(rng.integers(2, 5))):
        y, margin = H - 8 - 5 * row, rng.uniform(10, 24, 2)
        widths = rng.uniform(4, 14, 24)
        starts = margin[0] + np.cumsum(widths + 3) - widths - 3
        for x, w in zip(starts.tolist(), widths.tolist()):
            if x >= W - margin[1]:
                break
            d.rectangle((x, y, min(x + w, W - margin[1]), y + 1), fill=colour)


def _draw_poster(rng: np.random.Generator, genres: list[str], title: str) -> Image.Image:
    """Primary genre's scene, then secondary accents, the title block and the credits."""
    c = _pick_colours(rng, GENRES[genres[0]].palette)
    img = GENRES[genres[0]].scene(_gradient(rng, c.top, c.bottom), rng, c)
    d = ImageDraw.Draw(img)
    title_top = bool(rng.random() < 0.5)
    _accents(d, rng, genres[1:], title_top)
    _title(img, rng, c, title, title_top)
    _credits(d, rng, c)
    return img


# ----------------------------------------------------------------------------- dataset writing

def _pick_genres(rng: np.random.Generator) -> list[str]:
    """1-3 genres, mostly 1-2; the first (primary) is uniform so every genre is equally common as a scene."""
    names = list(GENRES)
    u = rng.random()
    count = 1 + int(u > 0.5) + int(u > 0.88)
    first = int(rng.integers(len(names)))
    others = [n for k, n in enumerate(names) if k != first]
    return [names[first]] + [others[int(k)] for k in rng.choice(len(others), count - 1, replace=False)]


def _pick_title(rng: np.random.Generator) -> str:
    words = f"{_choice(rng, ADJECTIVES)} {_choice(rng, NOUNS)}"
    return f"The {words}" if rng.random() < 0.3 else words


def _make_poster(i: int, seed: int, images: Path) -> list[str]:
    """Draw and save poster i from its own RNG; returns its CSV row."""
    rng = np.random.default_rng([seed, i])
    genres, title = _pick_genres(rng), _pick_title(rng)
    score = float(np.clip(rng.normal(6.3, 1.0), 1.5, 9.5))
    imdb_id = FIRST_ID + i
    _draw_poster(rng, genres, title).save(images / f"{imdb_id}.jpg", "JPEG", quality=JPEG_QUALITY)
    return [str(imdb_id), f"http://www.imdb.com/title/tt{imdb_id}", title, f"{score:.1f}",
            "|".join(GENRES[g].display for g in genres), f"https://posters.synthetic.invalid/tt{imdb_id}.jpg"]


def _render_all(images: Path, n: int, seed: int, workers: int) -> list[list[str]]:
    make = functools.partial(_make_poster, seed=seed, images=images)
    rows: list[list[str]] = []
    # disable=None lets tqdm switch itself off when stderr is not a terminal
    with tqdm(total=n, desc="synth", unit="poster", file=sys.stderr, disable=True if n < 200 else None) as bar:
        if workers == 1:
            for i in range(n):
                rows.append(make(i))
                bar.update()
        else:
            with Pool(workers) as pool:
                for row in pool.imap(make, range(n), chunksize=max(1, min(64, n // (workers * 8)))):
                    rows.append(row)
                    bar.update()
    return rows


def _check_target(out: Path, force: bool) -> None:
    """Refuse to overwrite without --force, and never delete a folder that is not ours even with it."""
    check_output_folder(out, "synth", force, "synth output")


def generate(out: Path, n: int, seed: int = 0, workers: int | None = None, force: bool = False) -> dict:
    """Write n posters to out/images/<imdbId>.jpg and out/MovieGenre.csv (Kaggle layout, latin-1).

    workers: processes to draw with (None: all cores); the output is the same for any value.
    force: replace an existing synth output at `out`.
    Returns {"count", "genres" (Kaggle name -> posters carrying it), "seconds", "seed", "path"}.
    """
    out = Path(out)
    if n < 1:
        raise UserError(f"n must be at least 1 (got {n})")
    if seed < 0:
        raise UserError(f"seed must be non-negative (got {seed})")
    _check_target(out, force)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    start = time.perf_counter()
    # build beside the target and swap in at the end, so an interrupted run leaves no half-written output
    tmp, old = out.with_name(f"{out.name}.tmp-{os.getpid()}"), out.with_name(f"{out.name}.tmp-{os.getpid()}-old")
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    try:
        rows = _render_all(tmp / "images", n, seed, workers)
        with open(tmp / CSV_NAME, "w", encoding="latin-1", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER)
            writer.writerows(rows)
        mark_owned(tmp, "synth")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    genres: dict[str, int] = {}
    for row in rows:
        for g in row[4].split("|"):
            genres[g] = genres.get(g, 0) + 1
    return {"count": n, "genres": dict(sorted(genres.items())), "seconds": time.perf_counter() - start,
            "seed": seed, "path": str(out)}
