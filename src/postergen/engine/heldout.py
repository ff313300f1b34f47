"""D's overfitting made visible: its mean output on held-out real posters (`prepare --holdout`) beside
training posters, measured the same way at sample steps (ADA, Karras et al. 2020, Figure 1).

While D learns what makes a poster real, it rates posters it never saw like the ones it trains on. Once it
memorises its training posters, the unseen ones drift toward the fakes' rating: `d_train - d_heldout`
grows. d_real (logged every step) is measured on augmented batches in training mode; both numbers here
come from fixed, unaugmented batches with D in eval mode (Stepper.d_output), so their gap is D's alone.
"""

from __future__ import annotations

import numpy as np
import torch

from postergen.data.dataset import PosterDataset

PROBE_POSTERS = 64  # per fixed batch: a mean of 64 sigmoid outputs (std ~0.2 each) varies by ~0.025


class HeldOutProbe:
    """Fixed batches of held-out and of training posters, on the device, picked once from the seed."""

    def __init__(self, ds: PosterDataset, device: torch.device, seed: int) -> None:
        rng = np.random.default_rng(seed)  # its own generator: training's random streams do not move
        held = np.sort(rng.choice(ds.held_out, min(len(ds.held_out), PROBE_POSTERS), replace=False))
        seen = np.sort(rng.choice(ds.training, min(len(ds.training), len(held)), replace=False))
        self.batches = {key: (torch.from_numpy(np.array(ds.images[idx])).to(device),  # uint8 (n, 3, H, W)
                              torch.from_numpy(ds.labels[idx].astype(np.float32)).to(device))  # (n, G)
                        for key, idx in (("d_heldout", held), ("d_train", seen))}

    def measure(self, stepper) -> dict[str, float]:
        """{"d_heldout", "d_train"}: D's mean output on each batch (engine/step.py's Stepper.d_output)."""
        return {key: round(stepper.d_output(pixels.float().div(127.5).sub(1.0), genres), 4)
                for key, (pixels, genres) in self.batches.items()}
