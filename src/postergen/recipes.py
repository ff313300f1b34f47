"""The recipe `train` uses when no --preset is given: the measured winner for the device and budget.

recipes.json holds, per device type, each recipe's quality-versus-time curve as benchmarks/curves.py
measured it (docs/training.md, "Quality versus time"): at each point the geometric mean of perceptual
FD and SWD, each over the real-vs-real floor (lower is better), against minutes at the recipe's quiet
speed. At a budget the recipe whose curve (interpolated in log-log) is lowest wins; a budget outside
the measured range takes the winner at its nearer end, and says so. A device with no curves keeps the
stable preset at its own widths. curves.py `--recipes-json` rewrites the file from a study;
$POSTERGEN_RECIPES names another table.
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
NO_GENRES = "-nogenres"  # a curve's name without genre conditioning (benchmarks/curves.py's)


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


def at(curve: list[list[float]], minutes: float) -> float:
    """A curve's score at `minutes` (within its points), linear in log(minutes) and log(score)."""
    for (m0, s0), (m1, s1) in zip(curve, curve[1:]):
        if m0 <= minutes <= m1:
            t = 0.0 if m1 == m0 else math.log(minutes / m0) / math.log(m1 / m0)
            return math.exp((1 - t) * math.log(s0) + t * math.log(s1))
    return curve[0][1] if minutes < curve[0][0] else curve[-1][1]


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
    lo = max(c[0][0] for c in curves.values())  # where every curve has a point
    hi = min(c[-1][0] for c in curves.values())
    where = min(max(budget, lo), hi)
    scores = {name: at(c, where) for name, c in curves.items()}
    best = min(scores, key=scores.get)
    recipe = measured["recipes"][best]
    new_steps = None
    if budget != minutes and best != FALLBACK:  # the steps' time, in the winner's own steps
        new_steps = max(1, round(budget * 60 * _speed(measured, best, conditional) / batch))
    how = f"--minutes {minutes:g}" if budget == minutes else f"{steps} steps of {batch} on {FALLBACK}"
    widths = ", ".join(f"{k} {v}" for k, v in recipe["options"].items())
    others = ", ".join(f"{name} {s:.3g}" for name, s in sorted(scores.items(), key=lambda kv: kv[1]) if name != best)
    edge = "" if where == budget else f" (the measured budget nearest {budget:.3g} min)"
    reason = (f"{best}: preset {recipe['preset']}{f', {widths}' if widths else ''}"
              f"{f' for {new_steps} steps' if new_steps else ''}; the best measured at {where:.3g} min{edge}, "
              f"the budget of {how} on {measured['what']} {'with' if conditional else 'without'} genres "
              f"(FD and SWD over real, geometric mean: {scores[best]:.3g}; {others}; docs/training.md)")
    return Choice(recipe["preset"], dict(recipe["options"]), reason, new_steps)
