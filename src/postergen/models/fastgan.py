"""FastGAN (Liu et al., ICLR 2021): its lightweight generator, as Projected GAN uses it ("fastgan_lite"),
and its self-supervised discriminator.

z (+ genre embedding) -> 4x4 (6x4 for 2:3) -> [upsample x2, 3x3 conv, BatchNorm, GLU] per doubling
-> 3x3 conv to RGB -> tanh. Skip-layer excitation (SLE) gates the 64, 128 and 256 px maps channel-wise
with the 4, 8 and 16 px ones: the coarse layout steers the fine texture's channels, and the early
layers get a short gradient path, which is what lets the generator learn from few images.

Widths per map size follow the reference's multipliers of ngf, capped at max_channels.
Conditioning as in the DCGAN generator: a genre embedding concatenated to z (zero = no genre); with
genre_bn also the reference's conditional form, class-conditional BatchNorm in every upsampling block.

The discriminator (`--discriminator fastgan`) learns its own features, and is kept from
overfitting a small dataset by a self-supervised task: on real images it must also reconstruct the
whole image from its last (8 px wide) map and a random quarter of it from that quarter of its 16 px
map, through small decoders. Image -> 3x3 conv -> DownBlockComp per halving (a strided 4x4 path and
an average-pool 1x1 path, averaged) down to 8 px wide, with skip-layer excitation from each map to
the one 8x smaller -> 1x1 conv, BatchNorm, 4x4 conv -> a 5x5 (9x5 for 2:3) map of logits; every conv
spectral-normed. Genres by a projection term, as in the DCGAN D. Differences from the reference,
for what postergen has: the reconstruction loss is mean squared error (the reference's LPIPS needs
VGG weights no wheel ships), reconstructions are at the image's own size up to 128 px, and there is
no second branch on a half-size copy (the reference's for 256 px and up).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from postergen.config import ModelConfig
from postergen.models.dcgan import check_genres, init_weights
from postergen.models.verdict import Judged, Verdict

WIDTH_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}  # the reference's nfc_multi, by map width
SLE_PAIRS = {64: 4, 128: 8, 256: 16}  # the map at width k is excited by the map at width v
D_LAST = 8  # width of D's last map (the logits' and the whole-image decoder's)
D_SLE = 8  # D: the map at width k excites the one at width k / 8 (the reference's se_2_16, se_4_32, se_8_64)
DECODER_MULT = {16: 4, 32: 2, 64: 2, 128: 1}  # the reference's SimpleDecoder widths x ndf / 2, by map width
MAX_RECON = 128  # reconstructions are at most this wide (the reference's size)
LEAKY_SLOPE = 0.2


def _up(c_in: int, c_out: int, genre_dim: int = 0) -> nn.Sequential:
    """The reference's UpBlockSmall: nearest x2, conv to 2x channels, BatchNorm, GLU back to c_out; with
    genre_dim, its UpBlockSmallCond: the BatchNorm's gain and bias come from the genre code."""
    bn = GenreBatchNorm(c_out * 2, genre_dim) if genre_dim else nn.BatchNorm2d(c_out * 2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out * 2, 3, 1, 1, bias=False),
                         bn, nn.GLU(dim=1))


class GenreBatchNorm(nn.Module):
    """Class-conditional BatchNorm (the reference's CCBN): normalise, then x (1 + gain e) + bias e for the
    genre code e. A zero code (no genre) leaves plain normalisation. Plain parameters, not Linear layers,
    so the DCGAN init (N(0, 0.02) for every Linear) leaves their default scale: with the N(0, 1) genre
    table that gives gains of about 1 +- 0.6 from the first step, as the reference's embedding does."""

    def __init__(self, channels: int, genre_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        bound = genre_dim ** -0.5  # nn.Linear's default init
        self.gain = nn.Parameter(torch.empty(channels, genre_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels, genre_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        e = e.to(x.dtype)
        gain, bias = e @ self.gain.to(x.dtype).t(), e @ self.bias.to(x.dtype).t()  # (B, C)
        return self.bn(x) * (1 + gain[:, :, None, None]) + bias[:, :, None, None]


def _conv(*args, sn: bool = False, **kw) -> nn.Module:
    conv = nn.Conv2d(*args, **kw)
    return spectral_norm(conv) if sn else conv


def _up_genre(block: nn.Sequential, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    upsample, conv, bn, glu = block
    return glu(bn(conv(upsample(h)), e))


class SLE(nn.Module):
    """Skip-layer excitation: big * sigmoid(conv(swish(conv4x4(pool4(small))))). In G `small` is the
    coarser map; in D (sn: spectral-normed convs) it is the finer one."""

    def __init__(self, c_small: int, c_big: int, sn: bool = False) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), _conv(c_small, c_big, 4, 1, 0, bias=False, sn=sn), nn.SiLU(),
                                  _conv(c_big, c_big, 1, 1, 0, bias=False, sn=sn), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.main(small)


class Generator(nn.Module):
    """z (+ genres) -> image in [-1, 1], cfg.height x cfg.width."""

    def init_weights(self) -> None:
        """N(0, 0.02), as the reference (the genre table keeps its N(0, 1) codes)."""
        self.apply(init_weights)

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
        self.genre_bn = bool(cfg.n_genres and cfg.genre_bn)
        if self.genre_bn:  # the reference's class embedding: one N(0, 1) code per genre, summed for multi-hot
            self.genre_table = nn.Parameter(torch.randn(cfg.n_genres, cfg.genre_dim))
        self.ups = nn.ModuleDict({str(k): _up(width[k // 2], width[k], cfg.genre_dim if self.genre_bn else 0)
                                  for k in self.sizes})
        self.sle = nn.ModuleDict({str(k): SLE(width[s], width[k]) for k, s in SLE_PAIRS.items() if k in self.sizes})
        self.to_rgb = nn.Conv2d(width[cfg.width], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        batch = z.shape[0]
        z = z.reshape(batch, self.cfg.z_dim)
        z = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()  # onto the sphere, as the reference
        check_genres(genres, batch, self.cfg.n_genres)
        if self.cfg.n_genres:
            g = z.new_zeros(batch, self.cfg.genre_dim) if genres is None else self.genre_embed(genres.to(z.dtype))
            z = torch.cat([z, g], dim=1)
        if self.genre_bn:
            code = z.new_zeros(batch, self.cfg.genre_dim) if genres is None else genres.to(z.dtype) @ self.genre_table
        maps = {4: self.init(z[:, :, None, None])}
        for k in self.sizes:
            block = self.ups[str(k)]
            h = _up_genre(block, maps[k // 2], code) if self.genre_bn else block(maps[k // 2])
            maps[k] = self.sle[str(k)](maps[SLE_PAIRS[k]], h) if str(k) in self.sle else h
        return torch.tanh(self.to_rgb(maps[self.cfg.width]))


def _d_width(cfg: ModelConfig, k: int) -> int:
    """D's channels on its map k px wide: the reference's nfc[2k] = ndf x 64 / k, capped."""
    return max(1, min(cfg.ndf * 64 // k, cfg.max_channels))


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, True)


class DownBlockComp(nn.Module):
    """The reference's D block: (conv 4x4/2, BN, LReLU, conv 3x3, BN, LReLU) + (avg-pool 2, conv 1x1, BN,
    LReLU), averaged: the pooled path keeps a short route for the gradient."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(_conv(c_in, c_out, 4, 2, 1, bias=False, sn=True), nn.BatchNorm2d(c_out), _lrelu(),
                                  _conv(c_out, c_out, 3, 1, 1, bias=False, sn=True), nn.BatchNorm2d(c_out), _lrelu())
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), _conv(c_in, c_out, 1, 1, 0, bias=False, sn=True),
                                    nn.BatchNorm2d(c_out), _lrelu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def _decoder(c_in: int, width_in: int, width_out: int, ndf: int) -> nn.Sequential:
    """The reference's SimpleDecoder: (nearest x2, conv 3x3, BN, GLU) per doubling, then conv 3x3 to RGB, tanh."""
    layers, c, w = [], c_in, width_in
    while w < width_out:
        w *= 2
        c_out = max(1, int(DECODER_MULT.get(w, 1) * ndf / 2))
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(c, c_out * 2, 3, 1, 1, bias=False, sn=True),
                   nn.BatchNorm2d(c_out * 2), nn.GLU(dim=1)]
        c = c_out
    return nn.Sequential(*layers, _conv(c, 3, 3, 1, 1, bias=False, sn=True), nn.Tanh())


def _quarter(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quarter q[b] (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of each map x[b]; one
    gather on the device, so a captured step draws a new quarter at each replay."""
    B, C, H, W = x.shape
    quarters = x.reshape(B, C, 2, H // 2, 2, W // 2).permute(0, 2, 4, 1, 3, 5).reshape(B, 4, C, H // 2, W // 2)
    return quarters[torch.arange(B, device=x.device), q]


def _recon_loss(rec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.shape[-2:] != rec.shape[-2:]:
        target = F.interpolate(target, size=rec.shape[-2:], mode="area")
    return F.mse_loss(rec.float(), target.float())


class Discriminator(nn.Module):
    """image in [-1, 1] (+ genres) -> (B, n) logits; with reconstruct=True (real images) a Verdict
    whose aux is the reconstruction loss."""

    ABOUT = "FastGAN's, kept from overfitting by reconstructing real images"
    STEP_OPTIONS = {"reconstruct": "real"}  # reconstructs real images of D's update only
    LOSS_PARTS = {"aux": "recon"}  # its reconstruction loss, logged as loss_recon

    def init_weights(self) -> None:
        """N(0, 0.02), as the reference."""
        self.apply(init_weights)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sizes = [cfg.width // 2**i for i in range(1, cfg.n_scales) if cfg.width // 2**i >= D_LAST]  # ... 8
        self.stem = nn.Sequential(_conv(3, _d_width(cfg, cfg.width), 3, 1, 1, bias=False, sn=True), _lrelu())
        self.downs = nn.ModuleDict({str(k): DownBlockComp(_d_width(cfg, k * 2), _d_width(cfg, k)) for k in self.sizes})
        self.sle = nn.ModuleDict({str(k // D_SLE): SLE(_d_width(cfg, k), _d_width(cfg, k // D_SLE), sn=True)
                                  for k in [cfg.width, *self.sizes] if k // D_SLE in self.sizes})
        last, wide = _d_width(cfg, D_LAST), _d_width(cfg, D_LAST // 2)  # the reference's nfc[16], nfc[8]
        self.out = nn.Sequential(_conv(last, wide, 1, 1, 0, bias=False, sn=True), nn.BatchNorm2d(wide), _lrelu(),
                                 _conv(wide, 1, 4, 1, 0, bias=False, sn=True))
        if cfg.n_genres:
            self.genre_embed = spectral_norm(nn.Linear(cfg.n_genres, last, bias=False))
        self.decode_all = _decoder(last, D_LAST, min(cfg.width, MAX_RECON), cfg.ndf)
        self.decode_quarter = _decoder(_d_width(cfg, 2 * D_LAST), D_LAST, min(cfg.width // 2, MAX_RECON), cfg.ndf)

    def blocks(self) -> list[nn.Module]:
        """The stem, then each down block with the skip-layer excitation that joins its output, nearest the
        image first (models/verdict.py); the head and the decoders always train."""
        levels = [nn.ModuleList([self.downs[str(k)], *([self.sle[str(k)]] if str(k) in self.sle else [])])
                  for k in self.sizes]
        return [self.stem, *levels]

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None = None, reconstruct: bool = False) -> Judged:
        batch = x.shape[0]
        check_genres(genres, batch, self.cfg.n_genres)
        maps = {self.cfg.width: self.stem(x)}
        for k in self.sizes:
            h = self.downs[str(k)](maps[k * 2])
            maps[k] = self.sle[str(k)](maps[k * D_SLE], h) if str(k) in self.sle else h
        last = maps[D_LAST]  # (B, C, 8, 8), or (B, C, 12, 8) for 2:3
        logits = self.out(last).flatten(1)  # (B, 25), or (B, 45)
        if genres is not None:
            # Projection discriminator (Miyato & Koyama 2018): each logit += <embed(y), sum_space(h)>
            logits = logits + (self.genre_embed(genres.to(last.dtype)) * last.sum(dim=(2, 3))).sum(1, keepdim=True)
        if not reconstruct:
            return logits
        q = torch.randint(0, 4, (batch,), device=x.device)
        aux = _recon_loss(self.decode_all(last), x) + \
            _recon_loss(self.decode_quarter(_quarter(maps[2 * D_LAST], q)), _quarter(x, q))
        return Verdict(logits, aux=aux)
