"""Pictures for the report, made in memory: poster grids and the progression animation, as
encoded bytes (PNG, WebP or GIF) ready to embed. The curves are plots.py's."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont, features

LABEL_PX = 12  # font size of labels drawn onto grids and animation frames
WEBP_QUALITY = 85  # lossy WebP for posters: a tenth of PNG's size for GAN samples, no visible loss at 1x
HAS_WEBP = features.check("webp")


def grid_image(images: torch.Tensor, per_row: int) -> Image.Image:
    """uint8 (N, 3, H, W) -> one PIL grid, 2 px black padding (as the run's sample grids)."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=per_row, padding=2, pad_value=0)  # (3, H', W') uint8
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def label_rows(grid: Image.Image, labels: list[str], row_px: int) -> Image.Image:
    """The grid with a white margin on the left naming each row; the height is unchanged."""
    font = _font()
    width = max(int(ImageDraw.Draw(grid).textlength(t, font=font)) for t in labels) + 8
    out = Image.new("RGB", (grid.width + width, grid.height), "white")
    out.paste(grid, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        draw.text((4, 2 + i * row_px + (row_px - LABEL_PX) // 2), text, fill="black", font=font)
    return out


def png(image: Image.Image, max_side: int | None = None) -> bytes:
    """PIL image -> PNG bytes, shrunk (never enlarged) so its longer side is at most max_side."""
    image = shrink(image, max_side)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def photo(image: Image.Image, max_side: int | None = None) -> bytes:
    """Posters and grids -> lossy WebP (PNG where Pillow lacks WebP), shrunk like png()."""
    if not HAS_WEBP:
        return png(image, max_side)
    buf = io.BytesIO()
    shrink(image.convert("RGB"), max_side).save(buf, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buf.getvalue()


def shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def animation(paths: list[Path], labels: list[str], max_side: int, frame_ms: int = 400,
              hold_ms: int = 2000) -> bytes:
    """Sample grids -> an animated WebP (GIF without WebP), looping, last frame held, each frame captioned."""
    frames = [_captioned(shrink(Image.open(p).convert("RGB"), max_side), text) for p, text in zip(paths, labels)]
    buf = io.BytesIO()
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    options = dict(format="WEBP", quality=WEBP_QUALITY, method=4) if HAS_WEBP else dict(format="GIF", optimize=True)
    frames[0].save(buf, save_all=True, append_images=frames[1:], duration=durations, loop=0, **options)
    return buf.getvalue()


def _captioned(image: Image.Image, text: str) -> Image.Image:
    bar = LABEL_PX + 8
    out = Image.new("RGB", (image.width, image.height + bar), "white")
    out.paste(image, (0, bar))
    ImageDraw.Draw(out).text((4, (bar - LABEL_PX) // 2), text, fill="black", font=_font())
    return out


def _font():
    try:
        return ImageFont.load_default(size=LABEL_PX)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
