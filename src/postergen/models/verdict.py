"""What a discriminator returns when it has more to say than one tensor of logits.

Every D's forward is `D(x, genres, **options) -> logits | Verdict`, where the options are the
names in the D's class attribute STEP_OPTIONS (none for the dcgan and projected Ds): the training
step passes only those, so a D with nothing extra keeps the plain signature. A NamedTuple, so DDP
and torch's pytree see the tensors inside.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch


class Verdict(NamedTuple):
    logits: torch.Tensor  # the adversarial logits D's statistics and R1 are about
    features: torch.Tensor | None = None  # a second part's logits (the ensemble's feature D), weighted
    aux: torch.Tensor | None = None  # a loss D adds to its own on these images (FastGAN D's reconstruction)


Judged = Union[torch.Tensor, Verdict]


def verdict(out: Judged) -> Verdict:
    """Any D's output as a Verdict."""
    return out if isinstance(out, Verdict) else Verdict(out)
