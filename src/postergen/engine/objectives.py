"""What a GAN optimises, apart from how a step runs it: the adversarial loss, the regularisers,
the augmentation D sees, and which parameters train.

The math lives in losses.py (pure functions of logits) and augment.py (DiffAugment); this module
picks them from a TrainConfig once. A D returns one logit tensor or a Verdict (models/verdict.py):
a staged part (the ensemble's feature D, on steps with the feature term) combines as
loss(logits) + feature_weight * loss(staged) in D's objective and in G's; a D's own auxiliary loss
(FastGAN D's reconstruction of real images) is added to D's objective as it is. Each part is logged
under the name the D gives it (its LOSS_PARTS). Parameters with
requires_grad=False (a frozen pretrained backbone) are never given to an optimiser and never switched
on by a step.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

import torch
from torch import nn

from postergen.config import TrainConfig
from postergen.engine.ada import AdaController, ada_augment
from postergen.engine.augment import diff_augment
from postergen.engine.losses import DLoss, GLoss, bce_d, get_loss
from postergen.models.verdict import Judged, verdict


@dataclass
class Objective:
    d_loss: DLoss  # (logits_real, logits_fake) -> scalar
    g_loss: GLoss  # logits_fake -> scalar
    augment: Callable[[torch.Tensor], torch.Tensor]  # applied to every image D sees, real or fake
    r1_weight: float  # the lazy R1 term's multiplier: gamma / 2 x r1_every; 0 = no R1
    feature_weight: float = 0.0  # a D's second part (Verdict.staged): weight w of its loss
    parts: dict[str, str] = field(default_factory=dict)  # the D's LOSS_PARTS: {Verdict field: name}

    def _key(self, part: str, prefix: str = "loss") -> str:
        return part_key(self.parts, part, prefix)

    @property
    def part_keys(self) -> tuple[str, ...]:
        """The keys of the parts the D says it reports, beside loss_d and loss_g (the meter's slots)."""
        return part_keys(self.parts)

    def d_losses(self, real: Judged, fake: Judged) -> dict[str, torch.Tensor]:
        """D's loss, "loss_d": loss(logits) [+ w * loss(staged)] [+ D's auxiliary losses]; and its parts
        beside it, as metrics.jsonl logs them: the staged part (unweighted) and the auxiliary loss."""
        real, fake = verdict(real), verdict(fake)
        loss = self.d_loss(real.logits, fake.logits)
        out = {}
        if real.staged is not None:
            out[self._key("staged", "loss_d")] = part = self.d_loss(real.staged, fake.staged)
            loss = loss + self.feature_weight * part
        aux = [v.aux for v in (real, fake) if v.aux is not None]
        if aux:
            out[self._key("aux")] = part = sum(aux)
            loss = loss + part
        return {"loss_d": loss, **out}

    def g_losses(self, fake: Judged) -> dict[str, torch.Tensor]:
        """G's loss, "loss_g": loss(logits) [+ w * loss(staged)], and the staged part (unweighted); D's
        auxiliary losses are D's alone."""
        fake = verdict(fake)
        loss = self.g_loss(fake.logits)
        if fake.staged is None:
            return {"loss_g": loss}
        staged = self.g_loss(fake.staged)
        return {"loss_g": loss + self.feature_weight * staged, self._key("staged", "loss_g"): staged}

    @classmethod
    def from_config(cls, cfg: TrainConfig, parts: dict[str, str] | None = None,
                    ada: AdaController | None = None) -> "Objective":
        """The objective of `cfg` for a D whose LOSS_PARTS are `parts`; `ada` holds p for --augment ada."""
        d_loss, g_loss = get_loss(cfg.loss)
        if cfg.loss == "bce":
            d_loss = partial(bce_d, real_target=cfg.real_label)
        if ada is not None:
            aug = partial(ada_augment, p=ada.p)
        else:
            aug = partial(diff_augment, policy=cfg.augment) if cfg.augment else (lambda x: x)
        return cls(d_loss, g_loss, aug, cfg.r1_gamma / 2 * cfg.r1_every, cfg.feature_weight, dict(parts or {}))


def part_key(parts: dict[str, str], part: str, prefix: str = "loss") -> str:
    """metrics.jsonl's key of a D's part: prefix_<the D's name for it> (the Verdict field's by default)."""
    return f"{prefix}_{parts.get(part, part)}"


def part_keys(parts: dict[str, str]) -> tuple[str, ...]:
    """The keys a D with LOSS_PARTS `parts` logs beside loss_d and loss_g: its second part's loss for D
    and for G, then its own auxiliary loss."""
    keys = (part_key(parts, "staged", "loss_d"), part_key(parts, "staged", "loss_g")) if "staged" in parts else ()
    return keys + ((part_key(parts, "aux"),) if "aux" in parts else ())


def freeze_blocks(D: nn.Module, n: int, name: str) -> None:
    """FreezeD (Mo et al. 2020): D's first n blocks (its blocks(), nearest the image first) stop training.
    Call before the optimisers and DDP are built: both take the parameters that require gradients then.
    Only parameters freeze; BatchNorm statistics and spectral-norm estimates in those blocks still follow
    the data. More blocks than D has: a ValueError naming the most it takes."""
    if n == 0:
        return
    blocks = D.blocks() if hasattr(D, "blocks") else []
    if n > len(blocks):
        has = (f"has {len(blocks)} blocks to freeze" if blocks
               else "has no blocks to freeze (what sees the image is frozen already, or it names none)")
        raise ValueError(f"--freeze-d {n}: the {name} discriminator {has}; give --freeze-d {len(blocks)} at most")
    for block in blocks[:n]:
        block.requires_grad_(False)


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser updates: those that require gradients when the model is built."""
    return [p for p in module.parameters() if p.requires_grad]


@contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """Stop gradients into `params` for a while (D during G's update): gradients still flow through
    them to the input, and afterwards exactly these parameters train again, frozen ones stay frozen."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
