"""Drawing posters from a generator: noise, renders and grids (used by train, sample, evaluate,
report and the studio)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from postergen.engine.runtime import autocast
from postergen.files import save_image
from postergen.models.dcgan import ModelConfig


def fixed_inputs(model_cfg: ModelConfig, genres: list[str], seed: int, device: torch.device, per_row: int = 8):
    """The fixed noise of the progression grids: one row per genre (conditional) or an 8x8 grid."""
    gen = torch.Generator().manual_seed(seed + 1)  # its own RNG: sampling never moves the training RNG
    if not genres:
        return torch.randn(per_row * per_row, model_cfg.z_dim, generator=gen).to(device), None, per_row
    z = torch.randn(per_row, model_cfg.z_dim, generator=gen).repeat(len(genres), 1)
    onehot = torch.eye(len(genres)).repeat_interleave(per_row, dim=0)
    return z.to(device), onehot.to(device), per_row


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
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=per_row, padding=2, pad_value=0)  # (3, H', W') uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(Image.fromarray(grid.permute(1, 2, 0).numpy()), path, pnginfo=pnginfo)


