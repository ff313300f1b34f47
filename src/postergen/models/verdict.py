"""The discriminator contract: what a D returns when it has more to say than one tensor of logits,
and what it says it needs from training.

Every D's forward is `D(x, genres, **options) -> logits | Verdict`. A Verdict is a NamedTuple, so
DDP and torch's pytree see the tensors inside.

What a D needs from training it says in class attributes, each optional (the default in brackets),
so the step, the objective and DDP set-up treat every D alike and never ask for one by name:

- STEP_OPTIONS [{}]: {forward keyword: the step fact passed in it}. The facts: "staged", whether
  its staged part (Verdict.staged) counts on this step (from --feature-start on, while
  --feature-weight > 0); "real", whether x are real images of D's update. A D with none keeps the
  plain signature.
- LOSS_PARTS [{}]: {Verdict field: name} of the parts it returns, logged beside loss_d and loss_g in
  metrics.jsonl: "staged" as loss_d_<name> and loss_g_<name>, "aux" as loss_<name>.
- IDLE_PARTS [()]: submodules a step may leave unused; DDP then looks for unused parameters.
- init_weights() [PyTorch's init]: its own initialisation, run once when the registry builds it.
- blocks() [none: nothing to freeze]: the modules `--freeze-d N` freezes (FreezeD), nearest the image
  first; the first N stop training before any optimiser is built. A D whose image side is frozen
  already (the projected D) returns [], and `--freeze-d` with it is a one-line error.
- ABOUT: its one line in `postergen train --help`.

A generator says init_weights() too; its one line is its registry entry's `about`.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch


class Verdict(NamedTuple):
    logits: torch.Tensor  # the adversarial logits D's statistics and R1 are about
    staged: torch.Tensor | None = None  # a part's logits that count from --feature-start on (the ensemble's feature D), weighted
    aux: torch.Tensor | None = None  # a loss D adds to its own on these images (FastGAN D's reconstruction)


Judged = Union[torch.Tensor, Verdict]


def verdict(out: Judged) -> Verdict:
    """Any D's output as a Verdict."""
    return out if isinstance(out, Verdict) else Verdict(out)
