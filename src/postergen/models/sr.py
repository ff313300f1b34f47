"""Super-resolution networks that enlarge 64 px posters 2x or 4x.

Both architectures work in low-resolution space and end in one pixel shuffle, and both predict
only the detail missing from a bicubic enlargement (a global residual), so an untrained network
already starts at bicubic quality and all the compute goes into edges and text:

- `espcn`: Shi et al. 2016, three convolutions (5x5, 3x3, 3x3) with tanh.
- `edsr`: a lite EDSR-baseline (Lim et al. 2017): a head convolution, `blocks` residual blocks
  (conv-ReLU-conv, no BatchNorm), a body convolution with a skip around the body, and a tail
  convolution to 3 * scale^2 channels followed by the pixel shuffle.
Images are floats in [0, 1]; outputs are not clamped (callers clamp when they quantise).
`sr_forward` is that caller for uint8 posters (training's validation, upscale, the studio): batches on
any device, eval mode, uint8 back on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from postergen.runtime import autocast

SCALES = (2, 4)
MIN_CHANNELS, MAX_CHANNELS = 4, 1024  # EDSR's full model uses 256
MAX_BLOCKS = 256  # EDSR's full model uses 32


@dataclass
class SRConfig:
    """Enough to rebuild an SR network; saved in every SR checkpoint."""

    scale: int = 4  # enlargement factor: 2 or 4 (64 px -> 128 or 256 px)
    arch: str = "edsr"  # a name in NETS (models/registry.py lists them); espcn ignores blocks
    channels: int = 32  # feature width in low-resolution space (espcn: width of its first layer)
    blocks: int = 4  # residual blocks of the edsr body; 0: head, body convolution and tail only


def check_sr(cfg: SRConfig) -> None:
    """Range checks with messages a user can act on (ValueError); the arch is the registry's to check."""
    from postergen.config import check_range

    if cfg.scale not in SCALES:
        raise ValueError(f"--scale must be 2 or 4, not {cfg.scale}")
    check_range("--channels", cfg.channels, MIN_CHANNELS, MAX_CHANNELS, "channels")
    check_range("--blocks", cfg.blocks, 0, MAX_BLOCKS, "blocks")


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SRNet(nn.Module):
    """(B, 3, h, w) in [0, 1] -> (B, 3, h * scale, w * scale): bicubic enlargement + predicted detail.

    What the nets share; each subclass makes its head, body and tail (`layers`) and says whether a
    skip goes around its body (RESIDUAL)."""

    ABOUT = ""  # its one line in `postergen train-sr --help`
    RESIDUAL = False

    def __init__(self, cfg: SRConfig) -> None:
        super().__init__()
        check_sr(cfg)
        self.cfg = cfg
        self.head, self.body, self.tail = self.layers(cfg.channels, 3 * cfg.scale ** 2, cfg)
        self.shuffle = nn.PixelShuffle(cfg.scale)
        # The detail starts at zero, so an untrained network is exactly bicubic.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.scale
        # The base stays fp32 under autocast: low bf16 bits would otherwise land in every output pixel.
        base = F.interpolate(x.float(), scale_factor=s, mode="bicubic", align_corners=False)  # (B, 3, sH, sW)
        features = self.head(x)  # (B, C, h, w)
        features = features + self.body(features) if self.RESIDUAL else self.body(features)
        detail = self.shuffle(self.tail(features))  # (B, 3 * s^2, h, w) -> (B, 3, sH, sW)
        return base + detail.float()


    def layers(self, C: int, out: int, cfg: SRConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(head, body, tail) for width C and `out` = 3 * scale^2 channels before the shuffle."""
        raise NotImplementedError


class EDSR(SRNet):
    ABOUT = "residual blocks"
    RESIDUAL = True

    def layers(self, C: int, out: int, cfg: SRConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
        body = nn.Sequential(*[ResBlock(C) for _ in range(cfg.blocks)], nn.Conv2d(C, C, 3, padding=1))
        return nn.Conv2d(3, C, 3, padding=1), body, nn.Conv2d(C, out, 3, padding=1)


class ESPCN(SRNet):
    ABOUT = "three convolutions"

    def layers(self, C: int, out: int, cfg: SRConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
        head = nn.Sequential(nn.Conv2d(3, C, 5, padding=2), nn.Tanh())
        body = nn.Sequential(nn.Conv2d(C, C // 2, 3, padding=1), nn.Tanh())
        return head, body, nn.Conv2d(C // 2, out, 3, padding=1)


# The SR nets by name: models/registry.py lists them from here, as sr architectures.
NETS: dict[str, type[SRNet]] = {"edsr": EDSR, "espcn": ESPCN}


def build_sr(cfg: SRConfig) -> SRNet:
    """The net NETS names cfg.arch (ValueError for another name)."""
    from postergen.config import check_choice

    check_choice("--arch", cfg.arch, list(NETS))
    return NETS[cfg.arch](cfg)


@torch.no_grad()
def sr_forward(model: SRNet, lr: torch.Tensor, device: torch.device, precision: str = "auto",
               batch: int = 64) -> torch.Tensor:
    """uint8 LR (N, 3, h, w) on any device -> uint8 SR (N, 3, sh, sw) on the CPU, in batches, eval mode."""
    was_training = model.training
    model.eval()
    out = []
    with autocast(device, precision):
        for i in range(0, len(lr), batch):
            x = lr[i:i + batch].to(device).float().div_(255)
            out.append(model(x).mul_(255).round_().clamp_(0, 255).to(torch.uint8).cpu())
    model.train(was_training)
    return torch.cat(out)
