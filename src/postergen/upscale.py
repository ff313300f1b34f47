"""Enlarge posters with a trained SR run: image files, GAN samples, or arrays already in memory."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from postergen import __version__
from postergen.checkpoint import load_checkpoint
from postergen.data.decode import to_rgb
from postergen.errors import UserError
from postergen.files import save_image
from postergen.models.sr import SRConfig, SRNet, build_sr, sr_forward
from postergen.provenance import PREFIX
from postergen.runfolder import RunFolder, run_name
from postergen.runtime import pick_device
from postergen.weights import brief

MAX_INPUT_PIXELS = 1024 * 1024  # larger inputs are skipped: x4 of them would need gigabytes


def load_upscaler(path: Path, device: torch.device | str = "cpu") -> tuple[SRNet, dict]:
    """SR run folder or checkpoint -> (network in eval mode on `device`, config with model, step, source)."""
    path = Path(path)
    state = load_checkpoint(path)
    config = state.get("config")
    if not isinstance(config, dict) or config.get("kind") != "sr":
        raise UserError(f"{path}: not a super-resolution run (made by `postergen train-sr`)")
    try:
        model = build_sr(SRConfig(**config["model"]))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"{path}: SR weights do not fit their config ({brief(e)})") from None
    source = run_name(_checkpoint_file(path))  # by name: the PNGs it enlarges are shared
    return model.to(device).eval(), {**config, "step": state["step"], "source": source}


def upscale_images(model: SRNet, images: torch.Tensor | np.ndarray, device: torch.device | str = "cpu",
                   batch: int = 64, precision: str = "auto") -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, h * scale, w * scale) on the CPU, `batch` images at a time."""
    images = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    device = torch.device(device)
    return sr_forward(model, images, device, precision, batch)


@functools.lru_cache(maxsize=2)
def _cached(path: str, mtime_ns: int, device: str) -> tuple[SRNet, dict]:
    return load_upscaler(Path(path), device)


def maybe_upscale(images: torch.Tensor, sr_path: Path | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """The hook of `postergen sample --upscale SR_RUN`: uint8 (N, 3, h, w) unchanged without a path,
    else enlarged. The network is loaded once per path (and reloaded when its checkpoint changes)."""
    if sr_path is None:
        return images
    return upscale_images(cached_upscaler(sr_path, device), images, device)


def cached_upscaler(sr_path: Path, device: torch.device | str = "cpu") -> SRNet:
    """The network of an SR run, loaded once per path (and again when its checkpoint changes)."""
    latest = _checkpoint_file(Path(sr_path))
    mtime = latest.stat().st_mtime_ns if latest.is_file() else 0
    return _cached(str(Path(sr_path).resolve()), mtime, str(torch.device(device)))[0]


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        return RunFolder(path).latest if RunFolder(path).checkpoints.is_dir() else path / RunFolder.LATEST
    return path


def read_image(path: Path) -> tuple[np.ndarray | None, str, dict]:
    """-> (uint8 (3, H, W), '', postergen provenance of a PNG) or (None, reason, {}).

    Reasons: missing, not a file, not an image, too large, corrupt (truncated or damaged data).
    """
    if not path.exists():
        return None, "missing", {}
    if not path.is_file():
        return None, "not a file", {}
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_INPUT_PIXELS:
                return None, f"too large ({im.width}x{im.height} px; at most {MAX_INPUT_PIXELS} pixels)", {}
            text = {k: v for k, v in getattr(im, "text", {}).items() if k.startswith(PREFIX)}
            # decodes everything, so truncation fails here; alpha on white and 16-bit as `prepare` does
            pixels = np.asarray(to_rgb(ImageOps.exif_transpose(im)))
    except UnidentifiedImageError:
        return None, "not an image", {}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return None, f"corrupt ({brief(e, limit=80)})", {}
    return pixels.transpose(2, 0, 1).copy(), "", text


def _provenance(text: dict, config: dict, scale: int) -> PngInfo:
    """The input's postergen chunks (a GAN sample's seed, run, genres) plus what enlarged it."""
    info = PngInfo()
    fields = {"Software": f"postergen {__version__}",
              "Description": f"enlarged x{scale} by a super-resolution network: the added detail is AI-generated",
              f"{PREFIX}ai_generated": "true", **text,
              f"{PREFIX}upscaled_by": str(config["source"]), f"{PREFIX}upscale_step": str(config["step"]),
              f"{PREFIX}upscale": f"x{scale}"}
    for key, value in fields.items():
        info.add_itxt(key, value)
    return info


def _out_names(paths: list[Path], out: Path, scale: int) -> list[Path]:
    """OUT/<stem>_x<scale>.png; a stem seen before gets -2, -3, ... so no input overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen[p.stem] = seen.get(p.stem, 0) + 1
        names.append(out / f"{p.stem}{'' if n == 1 else f'-{n}'}_x{scale}.png")
    return names


def upscale_files(paths: list[Path], out: Path, model_path: Path, device: str = "cpu", batch: int = 16) -> dict:
    """Enlarge image files into OUT as PNGs. A bad file is skipped with its reason; all bad is a UserError.

    Returns {"written": [Path], "skipped": [{"path", "reason"}], "scale", "step", "seconds"}.
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    model, config = load_upscaler(model_path, dev)
    scale = config["model"]["scale"]
    paths = [Path(p) for p in paths]
    images, texts, skipped = {}, {}, []
    for i, p in enumerate(paths):
        pixels, reason, texts[i] = read_image(p)
        if pixels is None:
            skipped.append({"path": str(p), "reason": reason})
        else:
            images[i] = pixels
    if not images:
        reasons = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise UserError(f"no image to upscale: {reasons}{more}")
    out.mkdir(parents=True, exist_ok=True)
    names = _out_names(paths, out, scale)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, pixels in images.items():  # same-size images share batches
        by_size.setdefault(pixels.shape[1:], []).append(i)
    written = {}
    for group in by_size.values():
        big = upscale_images(model, np.stack([images[i] for i in group]), dev, batch)  # (n, 3, sH, sW)
        for i, img in zip(group, big):
            pixels = Image.fromarray(img.permute(1, 2, 0).numpy())
            save_image(pixels, names[i], pnginfo=_provenance(texts[i], config, scale))
            written[i] = names[i]
    return {"written": [written[i] for i in sorted(written)], "skipped": skipped, "scale": scale,
            "step": config["step"], "seconds": round(time.perf_counter() - t0, 3)}
