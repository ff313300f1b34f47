"""The studio's one hook for super-resolution: `find(root, device)` -> an upscaler or None.

An upscaler is a function uint8 (N, 3, H, W) -> uint8 (N, 3, s*H, s*W), both on the CPU. One is
available when a super-resolution run folder named `sr/` (from `postergen train-sr`) lies next to
the served runs (ROOT/sr when ROOT holds runs, or beside ROOT when ROOT is one run). Otherwise
the studio answers "no upscaler available" to requests that ask for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from postergen.errors import UserError
from postergen.web.runs import UPSCALER_FOLDER

Upscaler = Callable[[torch.Tensor], torch.Tensor]


def candidates(root: Path) -> list[Path]:
    root = root.resolve()
    return [root / UPSCALER_FOLDER, root.parent / UPSCALER_FOLDER]


def find(root: Path, device: torch.device) -> Upscaler | None:
    from postergen.upscale import load_upscaler, upscale_images

    for folder in candidates(root):
        if folder.is_dir():
            try:
                model, _ = load_upscaler(folder, device)
            except UserError:
                return None
            return lambda images: upscale_images(model, images, device)
    return None
