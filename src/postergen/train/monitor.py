"""Watching a run: metric lines, the loss-curve PNG, and the seed's failure mode."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path


def read_metrics(path: Path, up_to_step: int | None = None) -> list[dict]:
    """Metric lines of a run; with up_to_step, the file is cut back to that step (after a crash)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by kill -9
    if up_to_step is not None:
        rows = [r for r in rows if r["step"] <= up_to_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def plot_metrics(rows: list[dict], path: Path) -> None:
    """Loss of G and D, and D's mean outputs on real and fake, against images seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    kimg = [r["kimg"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(kimg, [r["loss_d"] for r in rows], label="D loss")
    ax1.plot(kimg, [r["loss_g"] for r in rows], label="G loss")
    ax1.set_xlabel("thousand images seen")
    ax1.legend()
    ax2.plot(kimg, [r["d_real"] for r in rows], label="D(x)")
    ax2.plot(kimg, [r["d_fake"] for r in rows], label="D(G(z))")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("thousand images seen")
    ax2.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


class FailureWatch:
    """Warns once when D wins outright for a stretch: D(x) near 1, D(G(z)) near 0, G loss rising.

    That is how the seed failed at 128 px: G's gradient vanishes and samples stop improving.
    """

    def __init__(self, window: int = 8, high: float = 0.95, low: float = 0.05) -> None:
        self.window, self.high, self.low = window, high, low
        self.rows: deque = deque(maxlen=window)
        self.warned = False

    def update(self, row: dict) -> str | None:
        self.rows.append(row)
        if self.warned or len(self.rows) < self.window:
            return None
        saturated = all(r["d_real"] > self.high and r["d_fake"] < self.low for r in self.rows)
        half = self.window // 2
        g_first = sum(r["loss_g"] for r in list(self.rows)[:half]) / half
        g_last = sum(r["loss_g"] for r in list(self.rows)[half:]) / (self.window - half)
        if saturated and g_last >= g_first:
            self.warned = True
            start = self.rows[0]["step"]
            return (f"D is overpowering G since step {start} (D(x)={row['d_real']:.3f}, "
                    f"D(G(z))={row['d_fake']:.3f}, G loss rising): try --preset stable, or slow D with "
                    f"--d-every 2 / a lower --lr-d, or add --augment color,translation,cutout")
        return None
