"""The recipe `train` uses when no --preset is given: the measured winner for the device and budget.

recipes.json holds, per device type, each recipe's quality-versus-time curve as benchmarks/curves.py
measured it (docs/training.md, "Quality versus time"): at each point the minutes (images seen over
the recipe's quiet speed), perceptual FD over the real-vs-real floor and SWD over its floor. Both
curves are interpolated in log-log at the budget. Another recipe replaces the stable one only where
it measures better on both FD and SWD (the best geometric mean of the two among those that do):
FD's feature network and the projected D's backbone are both ImageNet EfficientNets, so FD alone
can favour a D that matches those features while the pixels (SWD) and the grid say otherwise, as
they did on this CPU. A recipe competes only up to its curve's last point, and a budget outside
the measured range takes the nearer end, and says so. A
device with no curves keeps the stable preset at its own widths. curves.py `--recipes-json`
rewrites the file from a study; $POSTERGEN_RECIPES names another table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from postergen.errors import UserError

TABLE = Path(__file__).with_name("recipes.json")
FALLBACK = "stable"  # the preset where nothing was measured, and the one steps are timed with
NO_GENRES = "-nogenres"  # a curve's name without genre conditioning (benchmarks/curves.py's runs too)
# Runs of one study are trained to the same minutes in whole steps, so their last points differ by a step
# or two: a curve reaches a budget within this factor of its last point.
REACH_SLACK = 1.05


@dataclass(frozen=True)
class Choice:
    preset: str
    options: dict = field(default_factory=dict)  # TrainConfig fields under the options a user gives (widths)
    reason: str = ""
    steps: int | None = None  # a length given in steps, as the winner's steps in the same time


def load(path: Path | None = None) -> dict:
    """The table: `path`, else $POSTERGEN_RECIPES (a table of one's own), else the one shipped."""
    path = Path(path or os.environ.get("POSTERGEN_RECIPES") or TABLE)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"recipe table {path}: {e}") from None


def at(curve: list[list[float]], minutes: float, column: int) -> float:
    """A curve's value in `column` at `minutes` (points' first column), linear in log-log; the nearer
    end's value outside the points."""
    for p0, p1 in zip(curve, curve[1:]):
        (m0, y0), (m1, y1) = (p0[0], p0[column]), (p1[0], p1[column])
        if m0 <= minutes <= m1:
            t = 0.0 if m1 == m0 else math.log(minutes / m0) / math.log(m1 / m0)
            return math.exp((1 - t) * math.log(y0) + t * math.log(y1))
    return curve[0][column] if minutes < curve[0][0] else curve[-1][column]


def _speed(measured: dict, name: str, conditional: bool) -> float | None:
    return measured.get("speeds", {}).get(name if conditional else name + NO_GENRES)


def choose(device_type: str, conditional: bool, batch: int, minutes: float | None = None, steps: int | None = None,
           table: dict | None = None) -> Choice:
    """The winner on `device_type` (with or without genres) for a budget of `minutes`, or of `steps` of
    `batch` images, timed at the fallback recipe's measured speed (the first limit, where both are
    given), and why in one line. A length in steps stays a length in steps: where another recipe wins,
    Choice.steps is what it trains in that time at its own measured speed."""
    table = load() if table is None else table
    measured = table.get("devices", {}).get(device_type)
    speed = _speed(measured, FALLBACK, conditional) if measured else None
    budgets = [m for m in (minutes, steps * batch / speed / 60 if steps and speed else None) if m is not None]
    if not measured or not budgets:
        why = (f"no quality-versus-time curves measured on {device_type} yet (benchmarks/curves.py)" if not measured
               else "the budget is not known in minutes")
        return Choice(FALLBACK, {}, f"{FALLBACK}: {why}")
    budget = min(budgets)
    suffix = "" if conditional else NO_GENRES
    curves = {name: measured["curves"][name + suffix] for name in measured["recipes"]
              if name + suffix in measured["curves"]}
    if not curves:
        return Choice(FALLBACK, {}, f"{FALLBACK}: no curves measured {'with' if conditional else 'without'} genres "
                                    f"on {measured['what']} yet (benchmarks/curves.py)")
    # a recipe competes up to its curve's last point: beyond it, nothing says how it does
    reach = max(c[-1][0] for c in curves.values())
    curves = {name: c for name, c in curves.items() if c[-1][0] * REACH_SLACK >= min(budget, reach)}
    lo = max(c[0][0] for c in curves.values())  # where every remaining curve has a point
    where = min(max(budget, lo), reach)
    fd, swd = ({name: at(c, where, column) for name, c in curves.items()} for column in (1, 2))
    mean = {name: math.sqrt(fd[name] * swd[name]) for name in curves}
    incumbent = FALLBACK if FALLBACK in curves else min(mean, key=mean.get)
    better = [name for name in curves if fd[name] < fd[incumbent] and swd[name] < swd[incumbent]]
    best = min(better, key=mean.get) if better else incumbent
    recipe = measured["recipes"][best]
    new_steps = None
    if budget != minutes and best != FALLBACK:  # the steps' time, in the winner's own steps
        new_steps = max(1, round(budget * 60 * _speed(measured, best, conditional) / batch))
    how = f"--minutes {minutes:g}" if budget == minutes else f"{steps} steps of {batch} on {FALLBACK}"
    widths = ", ".join(f"{k} {v}" for k, v in recipe["options"].items())
    edge = "" if where == budget else f" (the measured budget nearest {budget:.3g} min)"
    verdict = (f"better than {incumbent} on both FD and SWD" if best != incumbent
               else "no recipe better on both FD and SWD" if len(curves) > 1 else "the only one measured")
    # the winner beside the one it beat (or, where stable holds, the best of the rest)
    shown = [best] + ([incumbent] if best != incumbent else [n for n in sorted(curves, key=mean.get) if n != best][:1])
    scores = "; ".join(f"{name} {fd[name]:.3g}, {swd[name]:.3g}" for name in shown)
    reason = (f"{best}: preset {recipe['preset']}{f', {widths}' if widths else ''}"
              f"{f' for {new_steps} steps' if new_steps else ''}; {verdict} at {where:.3g} min{edge} ({how}; "
              f"{measured['what']}, {'with' if conditional else 'without'} genres; FD, SWD over real: {scores}; "
              f"docs/training.md)")
    return Choice(recipe["preset"], dict(recipe["options"]), reason, new_steps)
