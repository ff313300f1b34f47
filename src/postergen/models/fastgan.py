"""FastGAN's lightweight generator (Liu et al., ICLR 2021), as Projected GAN uses it ("fastgan_lite").

z (+ genre embedding) -> 4x4 (6x4 for 2:3) -> [upsample x2, 3x3 conv, BatchNorm, GLU] per doubling
-> 3x3 conv to RGB -> tanh. Skip-layer excitation (SLE) gates the 64, 128 and 256 px maps channel-wise
with the 4, 8 and 16 px ones: the coarse layout steers the fine texture's channels, and the early
layers get a short gradient path, which is what lets the generator learn from few images.

Widths per map size follow the reference's multipliers of ngf, capped at max_channels.
Conditioning as in the DCGAN generator: a genre embedding concatenated to z (zero = no genre).
"""

from __future__ import annotations

import torch
from torch import nn

from postergen.config import ModelConfig

WIDTH_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}  # the reference's nfc_multi, by map width
SLE_PAIRS = {64: 4, 128: 8, 256: 16}  # the map at width k is excited by the map at width v


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """The reference's UpBlockSmall: nearest x2, conv to 2x channels, BatchNorm, GLU back to c_out."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out * 2, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(c_out * 2), nn.GLU(dim=1))


class SLE(nn.Module):
    """Skip-layer excitation: big * sigmoid(conv(swish(conv4x4(pool4(small)))))."""

    def __init__(self, c_small: int, c_big: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False), nn.SiLU(),
                                  nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.main(small)


class Generator(nn.Module):
    """z (+ genres) -> image in [-1, 1], cfg.height x cfg.width."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = {k: max(1, min(int(m * cfg.ngf), cfg.max_channels)) for k, m in WIDTH_MULT.items()}
        in_ch = cfg.z_dim
        if cfg.n_genres:
            self.genre_embed = nn.Linear(cfg.n_genres, cfg.genre_dim, bias=False)
            in_ch += cfg.genre_dim
        self.init = nn.Sequential(nn.ConvTranspose2d(in_ch, width[4] * 2, cfg.start_hw, 1, 0, bias=False),
                                  nn.BatchNorm2d(width[4] * 2), nn.GLU(dim=1))
        self.sizes = [4 * 2**i for i in range(1, cfg.n_scales + 1)]  # 8 ... cfg.width
        self.ups = nn.ModuleDict({str(k): _up(width[k // 2], width[k]) for k in self.sizes})
        self.sle = nn.ModuleDict({str(k): SLE(width[s], width[k]) for k, s in SLE_PAIRS.items() if k in self.sizes})
        self.to_rgb = nn.Conv2d(width[cfg.width], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        batch = z.shape[0]
        z = z.reshape(batch, self.cfg.z_dim)
        z = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()  # onto the sphere, as the reference
        if self.cfg.n_genres:
            if genres is not None and genres.shape != (batch, self.cfg.n_genres):
                raise ValueError(f"genres must have shape ({batch}, {self.cfg.n_genres}), got {tuple(genres.shape)}")
            g = z.new_zeros(batch, self.cfg.genre_dim) if genres is None else self.genre_embed(genres.to(z.dtype))
            z = torch.cat([z, g], dim=1)
        elif genres is not None:
            raise ValueError("unconditional model (n_genres=0) was given genres; pass None")
        maps = {4: self.init(z[:, :, None, None])}
        for k in self.sizes:
            h = self.ups[str(k)](maps[k // 2])
            maps[k] = self.sle[str(k)](maps[SLE_PAIRS[k]], h) if str(k) in self.sle else h
        return torch.tanh(self.to_rgb(maps[self.cfg.width]))
