"""Failure modes read from metrics.jsonl rows: pure functions of the rows, one finding per problem.

Rows are the dicts train logs (step, loss_d, loss_g, d_real, d_fake, ...); D's outputs are the
mean sigmoid of its logits, so they lie in [0, 1] whatever the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOGGED = ("loss_d", "loss_g", "d_real", "d_fake")


@dataclass(frozen=True)
class Thresholds:
    """What counts as a problem, in the report and in train's live warning (engine/monitor.py's FailureWatch)."""

    d_high: float = 0.95  # D(x) above this while D(G(z)) is below d_low: D tells them apart every time
    d_low: float = 0.05
    overpower_rows: int = 3  # consecutive metric lines needed for an overpowering stretch
    warn_rows: int = 8  # ... and before train warns while running
    climb_abs: float = 1.0  # G loss rise (smoothed) that counts as climbing, in loss units ...
    climb_rel: float = 0.5  # ... or this share of its lowest value, whichever is larger
    climb_share: float = 0.25  # the climb must span at least this share of the logged lines
    smooth: int = 3  # moving-average window (metric lines) before looking for swings
    trend_share: float = 0.1  # window for the G-loss trend, as a share of the lines (at least `smooth`)
    swing_band: float = 0.2  # a swing goes from below this quantile of the series to above 1 - it
    swing_d_fake: float = 0.3  # smallest distance between those quantiles of D(G(z)) that counts
    swing_loss_g: float = 1.0  # same for G loss, in loss units
    swing_cycles: int = 3  # highs (each after a low) needed to call it oscillation
    # Collapse: sample_diversity (engine/collapse.py) 1 = the fixed-noise samples of a row vary as much as real
    # posters of that genre. Evaluate's pixel diversity calls a ratio under 0.5 `collapsed`: repeats are plain
    # to see in a grid. A G still learning variety sits there too (fresh: 0.001-0.06; a stable run at 64 px
    # after 10k images: 0.18), so a collapse is a *fall*: under collapse_ratio and under collapse_drop x the
    # best the run had reached, that best being at least collapse_min_best.
    collapse_ratio: float = 0.5
    collapse_drop: float = 0.5
    collapse_min_best: float = 0.1  # below it the samples never varied: no evidence G ever used z
    collapse_recover: float = 0.75  # a drop ends when the ratio is back above this x the best; a later fall counts again
    # Memorising (`prepare --holdout`): gap = D's output on training posters - on held-out ones
    # (engine/heldout.py).
    # Large: held-out posters rated at least memorise_share of the way from training posters down to the fakes
    # (ADA's Figure 1: memorised, unseen reals drift toward the fakes), a share, so it reads the same under the
    # hinge loss (outputs near 0.27/0.73) and BCE (near 0/1); and at least memorise_gap, twice the noise of the
    # difference of two 64-poster means (engine/heldout.py), so chance never counts. Growing: by memorise_gap
    # or more since the first measurement. For memorise_rows measurements in a row: one noisy batch is no trend.
    memorise_share: float = 0.5
    memorise_gap: float = 0.05
    memorise_rows: int = 3


@dataclass(frozen=True)
class Finding:
    """One detected problem: kind, first and last step it covers, and advice in plain words."""

    kind: str  # nan, overpowering, g_climbing, oscillation, collapse, memorising
    start: int
    end: int
    message: str


ADVICE_D = ("try --preset stable (hinge loss, spectral norm, R1, DiffAugment), or slow D down with "
            "--d-every 2 or a lower --lr-d, or add --augment color,translation,cutout")


ADVICE_MEMORISING = ("try --augment ada, more posters, or --init-from a run trained on many posters (with "
                     "--freeze-d to keep its D's low-level features)")


ADVICE_COLLAPSE = ("keep a checkpoint from before the drop (checkpoints/step-*.pt still sample and export; only the "
                   "last --keep-checkpoints stay, so copy it now), then start again with --force and a lower --lr-g "
                   "and --lr-d (half, say), keeping --augment color,translation,cutout and --minibatch-std on, or use "
                   "--preset stable (--resume keeps a run's learning rates); with --discriminator projected, "
                   "use --arch fastgan (the DCGAN generator collapsed under it in every measured setting)")


def diagnose(rows: list[dict], t: Thresholds = Thresholds()) -> list[Finding]:
    """Every finding, NaN first; an empty list means the curves look healthy."""
    complete = [r for r in rows if "step" in r and all(k in r for k in LOGGED)]
    finite = [r for r in complete if all(_finite(r[k]) for k in LOGGED)]
    g_swings = oscillation(finite, "loss_g", t.swing_loss_g, t)
    climbing = [] if g_swings else g_loss_climbing(finite, t)  # a cycle ending high is no climb
    return (non_finite(complete) + d_overpowering(finite, t) + climbing
            + oscillation(finite, "d_fake", t.swing_d_fake, t) + g_swings + diversity_drops(rows, t)
            + d_memorising(rows, t))


def non_finite(rows: list[dict]) -> list[Finding]:
    """NaN/inf in a logged value (train stops on it, but an older or edited log may hold one)."""
    bad = [r["step"] for r in rows if not all(_finite(r[k]) for k in LOGGED)]
    if not bad:
        return []
    return [Finding("nan", bad[0], bad[-1],
                    f"Losses became NaN or infinite at step {bad[0]} ({len(bad)} metric line(s)): training "
                    "diverged. Resume from an earlier checkpoint with a lower learning rate, or use --preset stable.")]


def d_overpowering(rows: list[dict], t: Thresholds = Thresholds()) -> list[Finding]:
    """Stretches of at least `overpower_rows` lines where D(x) > d_high and D(G(z)) < d_low."""
    flags = [r["d_real"] > t.d_high and r["d_fake"] < t.d_low for r in rows]
    findings = []
    for i, j in _runs(flags):
        if j - i < t.overpower_rows:
            continue
        start, end = rows[i]["step"], rows[j - 1]["step"]
        findings.append(Finding(
            "overpowering", start, end,
            f"D overpowered G from step {start} to step {end}: D(x) stayed above {t.d_high} and D(G(z)) "
            f"below {t.d_low}, so G's gradient vanishes and its samples stop improving. To fix it, {ADVICE_D}."))
    return findings


def g_loss_climbing(rows: list[dict], t: Thresholds = Thresholds()) -> list[Finding]:
    """G loss (smoothed) rising from its low point to the end by more than the climb threshold."""
    if len(rows) < 2 * t.smooth:
        return []
    loss = moving_average([r["loss_g"] for r in rows], max(t.smooth, int(t.trend_share * len(rows))))
    low_i = min(range(len(loss)), key=loss.__getitem__)
    rise = loss[-1] - loss[low_i]
    if rise < max(t.climb_abs, t.climb_rel * abs(loss[low_i])) or len(loss) - low_i < t.climb_share * len(loss):
        return []
    start, end = rows[low_i]["step"], rows[-1]["step"]
    return [Finding("g_climbing", start, end,
                    f"G loss kept climbing from {loss[low_i]:.2f} at step {start} to {loss[-1]:.2f} at step {end}: "
                    f"D is pulling ahead. If the samples stopped improving, {ADVICE_D}.")]


def oscillation(rows: list[dict], key: str, min_swing: float, t: Thresholds = Thresholds()) -> list[Finding]:
    """Repeated swings of `key` between its low and high band (collapse cycles).

    The series is smoothed; its `swing_band` and 1 - `swing_band` quantiles bound the low and high
    bands, which must lie at least `min_swing` apart: small noise, one outlier or a single trend
    never count, a series that keeps travelling between the bands does.
    """
    if len(rows) < 2 * t.smooth:
        return []
    values = moving_average([r[key] for r in rows], t.smooth)
    lo, hi = quantile(values, t.swing_band), quantile(values, 1 - t.swing_band)
    if hi - lo < min_swing:
        return []
    highs = rising_edges(values, lo, hi)
    if len(highs) < t.swing_cycles:
        return []
    steps = [rows[i]["step"] for i in highs]
    period = (steps[-1] - steps[0]) / (len(steps) - 1)
    name = {"d_fake": "D(G(z))", "loss_g": "G loss"}.get(key, key)
    shown = ", ".join(str(s) for s in steps[:8]) + (", ..." if len(steps) > 8 else "")
    return [Finding("oscillation", steps[0], steps[-1],
                    f"{name} swung between {min(values):.2f} and {max(values):.2f} {len(steps)} times "
                    f"(highs at steps {shown}; "
                    f"about every {period:.0f} steps): G and D are chasing each other, a sign of collapse "
                    f"cycles where G jumps between a few poster types. Check the samples at those steps; "
                    f"{ADVICE_D}.")]


def diversity_drops(rows: list[dict], t: Thresholds = Thresholds()) -> list[Finding]:
    """Stretches where sample_diversity fell under collapse_ratio and under collapse_drop x the best
    before it (see Thresholds); each ends when the ratio is back above collapse_recover x that best."""
    findings: list[Finding] = []
    best, best_step, drop = 0.0, None, None  # drop: [start, end, first, lowest, best, best_step] while open
    for r in rows:
        value = r.get("sample_diversity")
        if not _finite(value) or "step" not in r:
            continue
        if drop is not None and value >= t.collapse_recover * drop[4]:
            findings.append(_collapse(*drop))
            drop = None
        elif drop is not None:
            drop[1], drop[3] = r["step"], min(drop[3], value)
        elif best >= t.collapse_min_best and value < min(t.collapse_ratio, t.collapse_drop * best):
            drop = [r["step"], r["step"], value, value, best, best_step]
        if value > best:
            best, best_step = value, r["step"]
    return findings + ([_collapse(*drop)] if drop is not None else [])


def _collapse(start: int, end: int, first: float, lowest: float, best: float, best_step: int) -> Finding:
    stayed = f", and stayed low until step {end} (lowest {lowest:.2f})" if end > start else ""
    return Finding("collapse", start, end,
                   f"Sample diversity (how much the fixed-noise posters of a row differ, against real posters; "
                   f"1 = as varied) fell from {best:.2f} at step {best_step} to {first:.2f} at step {start}{stayed}: "
                   f"G is collapsing onto a few posters. To recover, {ADVICE_COLLAPSE}.")


def heldout_gaps(rows: list[dict]) -> list[tuple[dict, float, float]]:
    """[(row, gap, span)] for rows with D's held-out output: gap = D's output on training posters (d_train,
    measured like d_heldout; d_real in logs without it) - on held-out ones; span = training posters - fakes."""
    out = []
    for r in rows:
        seen = r.get("d_train", r.get("d_real"))
        if "step" in r and all(_finite(v) for v in (r.get("d_heldout"), seen, r.get("d_fake"))):
            out.append((r, seen - r["d_heldout"], seen - r["d_fake"]))
    return out


def d_memorising(rows: list[dict], t: Thresholds = Thresholds()) -> list[Finding]:
    """Stretches of at least memorise_rows measurements where the train-vs-held-out gap is large and has
    grown since the first measurement (see Thresholds)."""
    gaps = heldout_gaps(rows)
    if not gaps:
        return []
    first = gaps[0][1]
    flags = [gap >= max(t.memorise_gap, t.memorise_share * span) and gap >= first + t.memorise_gap
             for _, gap, span in gaps]
    findings = []
    for i, j in _runs(flags):
        if j - i < t.memorise_rows:
            continue
        (start, gap0, _), (end, gap1, _) = gaps[i], gaps[j - 1]
        findings.append(Finding(
            "memorising", start["step"], end["step"],
            f"D rates training posters above unseen ones: it is memorising them, and its feedback to G degrades. "
            f"From step {start['step']} to {end['step']} its output on held-out posters trailed the training "
            f"posters' by {gap0:.2f} to {gap1:.2f} (at the first measurement {first:.2f}), half the way or more "
            f"down to the fakes'. To fix it, {ADVICE_MEMORISING}."))
    return findings


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default), without numpy."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    i = int(pos)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (pos - i) * (ordered[j] - ordered[i])


def rising_edges(values: list[float], low: float, high: float) -> list[int]:
    """Indices where the series enters its high band after having been in its low band."""
    edges, was_low = [], False
    for i, v in enumerate(values):
        if v <= low:
            was_low = True
        elif v >= high and was_low:
            edges.append(i)
            was_low = False
    return edges


def moving_average(values: list[float], window: int) -> list[float]:
    """Centred mean over `window` values (shorter at the ends): same length as the input."""
    half = window // 2
    return [sum(values[max(0, i - half):i + half + 1]) / len(values[max(0, i - half):i + half + 1])
            for i in range(len(values))]


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[(start, stop)] of the runs of True, stop exclusive."""
    runs, start = [], None
    for i, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
