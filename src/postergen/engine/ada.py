"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for `--augment ada`.

Each augmentation applies to a sample with probability p. p follows D's overfitting: every
`interval` steps, r_t = E[sign(D(real))] over those steps is compared with a target (ADA's 0.6); p
rises while D is over-confident on real posters (r_t > target) and falls otherwise, by at most
`interval * batch / speed_images` per adjustment, so p can cross [0, 1] in `speed_images` images.

Posters carry title text, so the set never mirrors or rotates: translation, isotropic scaling,
colour and cutout, each non-leaking at p < 1 because G is also judged through them. p and the
sign statistics stay on the device (no host sync per step, CUDA-graph safe); under torchrun the
statistics are summed over ranks before each adjustment, so every rank holds the same p.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from postergen.engine.augment import rand_brightness, rand_contrast, rand_cutout, rand_saturation, rand_translation

ADA_TARGET = 0.6  # ADA's r_t target: the share of real posters D may call real with confidence
ADA_INTERVAL = 4  # steps between adjustments of p
ADA_SPEED_IMAGES = 20_000  # images over which p may move from 0 to 1 (ADA: 500k, far beyond a CPU run)
SCALE_STD = 0.2 * math.log(2)  # ADA's isotropic scaling: log2 scale ~ N(0, 0.2)


def rand_scale(x: torch.Tensor) -> torch.Tensor:
    """Zoom each sample about its centre by 2^N(0, 0.2), filling with zeros (as translation does)."""
    B = x.shape[0]
    s = torch.exp(torch.randn(B, device=x.device) * SCALE_STD)  # (B,)
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = (1 / s).to(x.dtype)  # sampling grid shrinks when the image grows
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


ADA_AUGMENTS = (rand_translation, rand_scale, rand_brightness, rand_saturation, rand_contrast, rand_cutout)


def ada_augment(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> same; each augmentation hits each sample with probability p (a 0-d
    tensor). Every augmentation is computed for the whole batch and masked, so shapes and kernels
    never depend on p (one CUDA graph serves every p)."""
    for augment in ADA_AUGMENTS:
        hit = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p  # (B, 1, 1, 1)
        x = torch.where(hit, augment(x), x)
    return x


class AdaController:
    """Holds p and the sign statistics of D's real logits; `observe` each D step, `adjust` each step."""

    def __init__(self, batch: int, target: float = ADA_TARGET, interval: int = ADA_INTERVAL,
                 speed_images: int = ADA_SPEED_IMAGES, device: torch.device | str = "cpu") -> None:
        self.target, self.interval = target, interval
        self.step_size = interval * batch / speed_images
        self.p = torch.zeros((), device=device)
        self.stats = torch.zeros(2, device=device)  # (sum of sign(D(real)), count) since the last adjustment
        self.r_t = torch.zeros((), device=device)  # the last adjustment's r_t, for the metrics line

    def observe(self, logits_real: torch.Tensor) -> None:
        """Accumulate sign(D(real)) of one D step; logits (B, ...) of any shape (patch Ds count each patch)."""
        signs = torch.sign(logits_real.detach().float())
        self.stats[0] += signs.sum()
        self.stats[1] += signs.numel()  # a scalar operand, not a host tensor: safe inside a CUDA graph

    def adjust(self, step: int) -> None:
        """After step `step` (1-based): every `interval` steps, move p toward keeping r_t at the target."""
        if step % self.interval:
            return
        stats = self.stats.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)  # every rank adjusts by the same r_t, so p stays equal across ranks
        self.r_t = stats[0] / stats[1].clamp(min=1)
        moved = (stats[1] > 0) * torch.sign(self.r_t - self.target) * self.step_size  # no D step: p stays
        self.p.copy_((self.p + moved).clamp(0, 1))
        self.stats.zero_()

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu(), "stats": self.stats.detach().cpu(), "r_t": self.r_t.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.p.copy_(state["p"])
        self.stats.copy_(state["stats"])
        self.r_t.copy_(state["r_t"])
