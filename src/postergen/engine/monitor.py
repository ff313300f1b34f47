"""Watching a run as it trains: the seed's failure mode and mode collapse (loss.png: GANTask.plot;
the metric lines themselves: checkpoint.read_metrics)."""

from __future__ import annotations

import dataclasses
from collections import deque

from postergen.diagnose import ADVICE_D, Thresholds, d_overpowering, diversity_drops


class FailureWatch:
    """Warns once when D wins outright: D(x) near 1 and D(G(z)) near 0 for `warn_rows` log lines.

    That is how the seed failed at 128 px: G's gradient vanishes and samples stop improving. The
    detector and thresholds are the report's (diagnose.d_overpowering); the live warning only asks
    for a longer stretch, so a brief swing does not interrupt anyone.
    """

    def __init__(self, t: Thresholds = Thresholds()) -> None:
        self.t = dataclasses.replace(t, overpower_rows=t.warn_rows)
        self.rows: deque = deque(maxlen=t.warn_rows)
        self.warned = False

    def update(self, row: dict) -> str | None:
        self.rows.append(row)
        if self.warned or len(self.rows) < self.t.overpower_rows:
            return None
        found = d_overpowering(list(self.rows), self.t)
        if not found:
            return None
        self.warned = True
        return (f"D is overpowering G since step {found[0].start} (D(x)={row['d_real']:.3f}, "
                f"D(G(z))={row['d_fake']:.3f}): {ADVICE_D}")


class CollapseWatch:
    """Warns when sample_diversity falls toward collapse: once per drop, again after a recovery.

    The drops are the report's (diagnose.diversity_drops, same thresholds). `history` takes the rows
    logged before a resume, so a resumed run still knows its best; a drop still open then is
    warned about again, in this session.
    """

    def __init__(self, t: Thresholds = Thresholds()) -> None:
        self.t = t
        self.rows: list[dict] = []  # rows that carry sample_diversity (one per sample grid)
        self.warned: set[int] = set()  # start steps of drops warned about

    def history(self, rows: list[dict]) -> None:
        self.rows = [r for r in rows if "sample_diversity" in r]

    def update(self, row: dict) -> str | None:
        if "sample_diversity" not in row:
            return None
        self.rows.append(row)
        drops = diversity_drops(self.rows, self.t)
        if not drops or drops[-1].end != row["step"] or drops[-1].start in self.warned:
            return None
        self.warned.add(drops[-1].start)
        return drops[-1].message
