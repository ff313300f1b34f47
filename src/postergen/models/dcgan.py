"""DCGAN generator and discriminator for movie posters, square or 2:3, optionally genre-conditional.

At 64x64 unconditional with the seed preset's D options (config.SEED_MODEL: BatchNorm, no spectral
norm, no minibatch std) both networks are layer-for-layer the PyTorch DCGAN tutorial's `netG` /
`netD` (same `main.<i>` indices), so the tutorial's state_dicts load strictly. The config
(ModelConfig, its sizes and check_size) lives in config.py, with the other configurations.
Other sizes add or drop stride-2 layers; 2:3 posters start from a 6x4 map instead of 4x4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from postergen.config import ModelConfig

INIT_STD = 0.02  # the DCGAN paper's N(0, 0.02) weight init
LEAKY_SLOPE = 0.2  # the DCGAN paper's LeakyReLU slope in D
MBSTD_GROUP = 4  # samples per minibatch-std group (ProGAN / StyleGAN default)
SN_INIT_ITERS = 15  # power iterations after re-initialising a spectral-normed weight (torch's own count)


def check_genres(genres: torch.Tensor | None, batch: int, n_genres: int) -> None:
    """ValueError unless genres is None or a (batch, n_genres) tensor for a conditional model (every G and D)."""
    if genres is None:
        return
    if n_genres == 0:
        raise ValueError("unconditional model (n_genres=0) was given genres; pass None")
    if tuple(genres.shape) != (batch, n_genres):
        raise ValueError(f"genres must have shape ({batch}, {n_genres}), got {tuple(genres.shape)}")


class Generator(nn.Module):
    """z (+ genres) -> image in [-1, 1]."""

    def init_weights(self) -> None:
        """The tutorial's N(0, 0.02) init (models/verdict.py: what a model says)."""
        self.apply(init_weights)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_scales
        # widths[i]: channels after the i-th hidden layer; the tutorial's ngf*8, *4, *2, *1 at 64 px
        widths = [min(cfg.ngf * 2 ** (n - 1 - i), cfg.max_channels) for i in range(n)]
        in_ch = cfg.z_dim
        if cfg.n_genres:
            # A sum of per-genre vectors; an all-zero multi-hot embeds to 0 = "no genre".
            self.genre_embed = nn.Linear(cfg.n_genres, cfg.genre_dim, bias=False)
            in_ch += cfg.genre_dim
        layers = [nn.ConvTranspose2d(in_ch, widths[0], cfg.start_hw, 1, 0, bias=False)]
        layers += [nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        batch = z.shape[0]
        z = z.reshape(batch, self.cfg.z_dim)  # accepts (B, z_dim) or the tutorial's (B, z_dim, 1, 1)
        check_genres(genres, batch, self.cfg.n_genres)
        if self.cfg.n_genres:
            if genres is None:
                embedded = z.new_zeros(batch, self.cfg.genre_dim)  # same as an all-zero multi-hot
            else:
                embedded = self.genre_embed(genres.to(z.dtype))  # (B, genre_dim)
            z = torch.cat([z, embedded], dim=1)  # (B, z_dim + genre_dim)
        return self.main(z[:, :, None, None])  # (B, C0, 1, 1) -> (B, 3, H, W)


class MinibatchStd(nn.Module):
    """Append one channel: feature std across a group of samples, averaged (ProGAN).

    It lets D see batch diversity, which penalises a collapsed G.
    """

    def __init__(self, group_size: int = MBSTD_GROUP):
        super().__init__()
        self.group_size = group_size

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, C, H, W = h.shape
        group = min(self.group_size, B)
        while B % group:  # batch sizes not divisible by 4 (a last partial batch) use a smaller group
            group -= 1
        y = h.reshape(group, B // group, C, H, W)  # sample b sits in group b % (B // group)
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (B/g, C, H, W)
        std = std.mean(dim=(1, 2, 3))  # (B/g,)
        std = std.repeat(group)[:, None, None, None].expand(B, 1, H, W)
        return torch.cat([h, std], dim=1)  # (B, C + 1, H, W)


class Discriminator(nn.Module):
    """image (+ genres) -> one real/fake logit per sample; conditional via a projection term."""

    ABOUT = "learns its own features"

    def init_weights(self) -> None:
        """The tutorial's N(0, 0.02) init."""
        self.apply(init_weights)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        sn = _spectral_norm if cfg.spectral_norm else (lambda m: m)
        n = cfg.n_scales
        widths = [min(cfg.ndf * 2**i, cfg.max_channels) for i in range(n)]
        # The first layer has no norm, as in the tutorial.
        layers = [sn(nn.Conv2d(3, widths[0], 4, 2, 1, bias=False)), nn.LeakyReLU(LEAKY_SLOPE, True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)))
            if cfg.d_norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, True))
        self.feature_channels = widths[-1]
        self.mbstd = MinibatchStd() if cfg.minibatch_std else None
        last_in = widths[-1] + (1 if cfg.minibatch_std else 0)
        # Last conv stays inside `main` so the tutorial's keys (main.11.weight at 64 px) line up.
        layers.append(sn(nn.Conv2d(last_in, 1, cfg.start_hw, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)
        if cfg.n_genres:
            self.genre_embed = sn(nn.Linear(cfg.n_genres, widths[-1], bias=False))

    def blocks(self) -> list[nn.Module]:
        """Its stride-2 layers (conv [+ BatchNorm] + LeakyReLU), nearest the image first (models/verdict.py);
        the last conv and the genre projection are the head, which always trains."""
        starts = [i for i, layer in enumerate(self.main) if isinstance(layer, nn.Conv2d)]  # the last is the head's
        return [self.main[a:b] for a, b in zip(starts[:-1], starts[1:])]

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        batch = x.shape[0]
        check_genres(genres, batch, self.cfg.n_genres)
        h = self.main[:-1](x)  # (B, C, 4, 4), or (B, C, 6, 4) for 2:3
        h_last = self.mbstd(h) if self.mbstd is not None else h  # (B, C [+1], 4, 4)
        logits = self.main[-1](h_last).reshape(batch)  # (B,)
        if genres is not None:
            # Projection discriminator (Miyato & Koyama 2018): logit += <embed(y), sum_space(h)>.
            pooled = h.sum(dim=(2, 3))  # (B, C)
            logits = logits + (self.genre_embed(genres.to(h.dtype)) * pooled).sum(dim=1)
        return logits


def init_weights(module: nn.Module) -> None:
    """The tutorial's weights_init: conv/linear weights N(0, 0.02), BatchNorm N(1, 0.02), biases 0.

    Use as `model.apply(init_weights)`. Spectral-normed layers get their `original` weight
    initialised and their power-iteration vectors re-estimated for it.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        sn = parametrize.is_parametrized(module, "weight")
        # On a parametrized module `.weight` is recomputed on access, so writing to it would be lost.
        weight = module.parametrizations.weight.original if sn else module.weight
        nn.init.normal_(weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        if sn:
            _refresh_spectral_norm(module)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:  # affine=False: its gain comes from elsewhere
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def _refresh_spectral_norm(module: nn.Module) -> None:
    """Re-run power iteration after a weight re-init; stale u, v would misjudge sigma at step 1."""
    params = module.parametrizations.weight
    was_training = params.training
    params.train()  # each access of .weight in train mode runs one power-iteration step
    with torch.no_grad():
        for _ in range(SN_INIT_ITERS):
            module.weight
    params.train(was_training)


def count_params(module: nn.Module) -> int:
    """Number of parameter scalars, frozen or not (spectral norm's u, v are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())
