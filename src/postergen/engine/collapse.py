"""The collapse guard's measurement: how varied the fixed-noise samples are, against real posters.

Mode collapse shows as posters that stop depending on z. In the fixed grid (draw.fixed_inputs) the
posters of one row share their genre and differ in z: a conditional grid repeats the same
`per_row` latents in every genre row, an unconditional one has a distinct latent per poster. So
the spread *within* rows measures what z does; spread across rows would also count genre, and a
G that ignores z but draws each genre its own way would pass for varied.

The real side is laid out the same way, once per run: row g holds `per_row` real posters of genre
g (any posters for an unconditional grid), a seeded sample of the dataset. The feature space is
evaluate's pixel diversity (metrics/diversity.py): area-downsampled to 16 px wide, RMS colour
distance, no learned weights, a few milliseconds per grid.
"""

from __future__ import annotations

import numpy as np
import torch

from postergen.data.dataset import PosterDataset
from postergen.metrics.diversity import DiversityConfig, pair_distances
from postergen.metrics.pixels import pixel_vectors

FEATURE_WIDTH = DiversityConfig.width  # px: evaluate's diversity feature, so the two ratios read alike


def real_rows(labels: np.ndarray, conditional: bool, per_row: int, seed: int) -> list[np.ndarray]:
    """Dataset indices laid out like the fixed grid: one row per genre column of `labels` (N, G)
    (posters carrying that genre) or, unconditional, `per_row` rows of any posters."""
    rng = np.random.default_rng(seed)
    if not conditional:
        pick = rng.permutation(len(labels))[:per_row * per_row]
        return [pick[i:i + per_row] for i in range(0, len(pick), per_row)]
    rows = []
    for g in range(labels.shape[1]):
        members = np.flatnonzero(labels[:, g])
        rows.append(rng.permutation(members)[:per_row])
    return rows


def row_spread(images: torch.Tensor, rows: list[torch.Tensor | np.ndarray]) -> float:
    """uint8 (N, 3, H, W) and index rows -> mean distance over all pairs of posters in the same row."""
    feats = pixel_vectors(images, FEATURE_WIDTH)  # (N, D)
    pairs = torch.cat([pair_distances(feats[torch.as_tensor(r, dtype=torch.long)]) for r in rows])
    return pairs.mean().item()


class SampleDiversity:
    """sample_diversity: the fixed grid's within-row spread / real posters' in the same layout.

    1 means z varies the samples as much as real posters of a genre vary; 0 means every row is one
    image. Rows whose genre has fewer than two real posters count on neither side.
    """

    def __init__(self, ds: PosterDataset, conditional: bool, per_row: int, seed: int) -> None:
        rows = real_rows(ds.labels, conditional, per_row, seed)
        kept = [i for i, r in enumerate(rows) if len(r) >= 2]
        self.grid_rows = [torch.arange(i * per_row, (i + 1) * per_row) for i in kept]  # in the fixed grid
        used = np.unique(np.concatenate([rows[i] for i in kept])) if kept else np.zeros(0, np.int64)
        real = torch.from_numpy(np.array(ds.images[used]))  # sorted: a memory map reads best in order
        self.real_spread = row_spread(real, [np.searchsorted(used, rows[i]) for i in kept]) if kept else 0.0

    @property
    def enabled(self) -> bool:
        """False when no row has two real posters (a tiny or one-poster dataset): nothing to compare."""
        return bool(self.grid_rows) and self.real_spread > 0

    def ratio(self, fake: torch.Tensor) -> float:
        """uint8 (N, 3, H, W), the fixed grid as rendered (row-major, draw.fixed_inputs' order)."""
        return row_spread(fake, self.grid_rows) / self.real_spread

