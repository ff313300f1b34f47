"""Training curves as PNG bytes (matplotlib's Figure on an Agg canvas, no pyplot state): loss.png
while a run trains, and the report's curves."""

from __future__ import annotations

import io
import math

from postergen.engine.diagnose import Finding

PLOT_DPI = 90


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    return buf.getvalue()


def _figure(ncols: int, nrows: int = 1, width: float = 10.0, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * nrows), layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def loss_plot(rows: list[dict], findings: list[Finding] = ()) -> bytes:
    """G and D loss, and D(x) / D(G(z)), against step; shaded where D overpowered G."""
    fig, (ax1, ax2) = _figure(2)
    steps = [r["step"] for r in rows]
    for ax, keys, labels in ((ax1, ("loss_d", "loss_g"), ("D loss", "G loss")),
                             (ax2, ("d_real", "d_fake"), ("D(x) on real", "D(G(z)) on fake"))):
        for key, label in zip(keys, labels):
            ax.plot(steps, [r.get(key, math.nan) for r in rows], label=label, marker="." if len(rows) < 30 else None)
        for f in findings:
            if f.kind == "overpowering":
                ax.axvspan(f.start, f.end, color="tab:red", alpha=0.15)
        ax.set_xlabel("step")
        ax.legend()
    ax1.set_title("losses")
    ax2.set_title("D's mean output (sigmoid of its logits)")
    ax2.set_ylim(-0.02, 1.02)
    return figure_png(fig)


def curves_plot(steps: list[int], series: dict[str, list[float]]) -> bytes:
    """One small line plot per named series against step (three to a row)."""
    from matplotlib.ticker import MaxNLocator

    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig, axes = _figure(ncols, nrows, width=3.4 * ncols, height=2.8)
    for ax, (name, values) in zip(axes, series.items()):
        ax.plot(steps, values, marker=".")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)  # 0.1551 on the axis, not 1e-5 + 1.551e-1
    for ax in axes[len(series):]:
        ax.set_visible(False)
    return figure_png(fig)
