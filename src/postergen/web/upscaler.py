"""The studio's one hook for super-resolution: `find(root, device)` -> an upscaler or None.

An upscaler is a function uint8 (N, 3, H, W) -> uint8 (N, 3, s*H, s*W), both on the CPU. One is
available when a super-resolution run (from `postergen train-sr`, config kind "sr") lies among or
beside the served runs: ROOT/sr (or `sr` beside ROOT when ROOT is one run) first, else any run of
kind sr in ROOT. Otherwise the studio answers "no upscaler available" to requests that ask for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from postergen.errors import UserError
from postergen.web.runs import sr_runs

Upscaler = Callable[[torch.Tensor], torch.Tensor]


def find(root: Path, device: torch.device) -> Upscaler | None:
    from postergen.upscale import load_upscaler, upscale_images

    for folder in sr_runs(root):
        try:
            model, _ = load_upscaler(folder, device)
        except UserError:  # no checkpoint yet, or damaged: try the next one
            continue
        return lambda images: upscale_images(model, images, device)
    return None
