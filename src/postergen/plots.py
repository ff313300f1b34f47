"""Training curves as PNG bytes (matplotlib's Figure on an Agg canvas, no pyplot state): loss.png
while a run trains, and the report's curves."""

from __future__ import annotations

import io
import math

from postergen.diagnose import Finding, Thresholds

PLOT_DPI = 90


def figure_png(fig) -> bytes:
    from postergen import __version__

    buf = io.BytesIO()  # the Software tag marks the file as postergen's to replace (files.written_by_postergen)
    fig.savefig(buf, format="png", dpi=PLOT_DPI, metadata={"Software": f"postergen {__version__}"})
    return buf.getvalue()


def _figure(ncols: int, nrows: int = 1, width: float = 10.0, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * nrows), layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def loss_plot(rows: list[dict], findings: list[Finding] = ()) -> bytes:
    """G and D loss, and D(x) / D(G(z)) (and on held-out posters), against step; shaded where D overpowered
    G. With sample diversity logged (engine/collapse.py), a third panel: its ratio to real, shaded where it fell."""
    diverse = [r for r in rows if isinstance(r.get("sample_diversity"), (int, float))]
    fig, axes = _figure(3 if diverse else 2, width=15.0 if diverse else 10.0)
    steps = [r["step"] for r in rows]
    for ax, keys, labels in ((axes[0], ("loss_d", "loss_g"), ("D loss", "G loss")),
                             (axes[1], ("d_real", "d_fake"), ("D(x) on real", "D(G(z)) on fake"))):
        for key, label in zip(keys, labels):
            ax.plot(steps, [r.get(key, math.nan) for r in rows], label=label, marker="." if len(rows) < 30 else None)
        _shade(ax, findings, "overpowering")
        ax.set_xlabel("step")
        ax.legend()
    _heldout(axes[1], rows, findings)
    adaptive = [r for r in rows if isinstance(r.get("augment_p"), (int, float))]
    if adaptive:  # --augment ada: p shares the [0, 1] panel of D's outputs it follows
        axes[1].plot([r["step"] for r in adaptive], [r["augment_p"] for r in adaptive], linestyle="--",
                     color="tab:gray", label="augment p (ADA)")
        axes[1].legend()
    axes[0].set_title("losses")
    axes[1].set_title("D's mean output (sigmoid of its logits)")
    axes[1].set_ylim(-0.02, 1.02)
    if diverse:
        ax = axes[2]
        ax.plot([r["step"] for r in diverse], [r["sample_diversity"] for r in diverse], marker=".", label="samples")
        ax.axhline(1.0, color="tab:green", linestyle=":", label="real posters")
        ax.axhline(Thresholds.collapse_ratio, color="tab:red", linestyle="--", label="collapse line")
        _shade(ax, findings, "collapse")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("step")
        ax.set_title("sample diversity, ratio to real (fixed noise, within rows)")
        ax.legend()
    return figure_png(fig)


def _heldout(ax, rows: list[dict], findings: list[Finding]) -> None:
    """With held-out posters (engine/heldout.py): D's output on them and on training posters measured the
    same way, beside d_real and d_fake; shaded where it memorises."""
    probed = [r for r in rows if isinstance(r.get("d_heldout"), (int, float))]
    if not probed:
        return
    steps = [r["step"] for r in probed]
    if all(isinstance(r.get("d_train"), (int, float)) for r in probed):
        ax.plot(steps, [r["d_train"] for r in probed], marker="o", linestyle=":", color="tab:blue",
                label="D(x) on training posters, unaugmented")
    ax.plot(steps, [r["d_heldout"] for r in probed], marker="o", linestyle=":", color="tab:purple",
            label="D(x) on held-out posters")
    _shade(ax, findings, "memorising")
    ax.legend()


def _shade(ax, findings: list[Finding], kind: str) -> None:
    for f in findings:
        if f.kind == kind:
            ax.axvspan(f.start, f.end, color="tab:red", alpha=0.15)


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
