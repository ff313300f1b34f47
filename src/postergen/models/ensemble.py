"""Feature-ensemble discriminator (Vision-aided GAN; Kumari et al., CVPR 2022), genre-conditional.

Two discriminators side by side on the same (augmented) image:

    base:     the DCGAN-family D (models/dcgan.py; spectral norm in the stable preset), learning its
              own features from the pixels;
    features: the projected D (models/projected.py), judging through the frozen EfficientNet-Lite0.

forward(x, genres, staged=True) returns both parts' logits, Verdict(base (B,), staged=features (B, n)),
and only the base's with staged=False, so a step that leaves the feature term out runs nothing of
it. How the parts combine is the objective's business: loss = loss(base) + w * loss(features)
(engine/objectives.py), from the step `feature_start` on (engine/step.py); D's statistics and R1
use the base alone.

Nothing new is saved: the parts' state_dicts sit under `base.` and `features.`, and the frozen
network stays outside the module tree as in the projected D (in no checkpoint or optimiser).
"""

from __future__ import annotations

import torch
from torch import nn

from postergen.config import ModelConfig
from postergen.models import dcgan
from postergen.models.projected import ProjectedDiscriminator
from postergen.models.verdict import Judged, Verdict


class EnsembleDiscriminator(nn.Module):
    """image in [-1, 1] (+ genres) -> Verdict(base logits (B,), feature logits (B, n)), or the base's alone."""

    ABOUT = "both side by side: the dcgan D plus the projected one as a feature D; Vision-aided GAN"
    STEP_OPTIONS = {"staged": "staged"}  # the feature part runs only once it counts
    LOSS_PARTS = {"staged": "features"}  # logged as loss_d_features, loss_g_features
    IDLE_PARTS = ("features",)  # before --feature-start no step uses it

    def init_weights(self) -> None:
        """Each part's own: the base as the dcgan D, the feature part keeps PyTorch's."""
        self.base.init_weights()

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.base = dcgan.Discriminator(cfg)
        self.features = ProjectedDiscriminator(cfg)

    def blocks(self) -> list[nn.Module]:
        """The base part's (the feature part looks through a network frozen already)."""
        return self.base.blocks()

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None = None,
                staged: bool = True) -> Judged:
        base = self.base(x, genres)
        return Verdict(base, staged=self.features(x, genres)) if staged else base
