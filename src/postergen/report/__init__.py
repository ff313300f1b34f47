"""Run folder -> one self-contained HTML page (RUN/report.html) a person can read offline.

Sections: header with the configuration, loss curves, training health (failure modes in plain
words), sample progression with an animation, the final model by genre, real next to generated
posters, and evaluation results when `postergen evaluate` has been run.
"""

from __future__ import annotations

import time
from pathlib import Path

from postergen import __version__
from postergen.diagnose import Finding, Thresholds, diagnose
from postergen.files import write_atomic
from postergen.report import html, sections
from postergen.runfolder import run_name

__all__ = ["report", "diagnose", "Finding", "Thresholds"]


def report(run: Path, out: Path | None = None, sample_n: int = 8, device: str = "cpu") -> Path:
    """Write the report of `run` to `out` (default RUN/report.html) and return its path.

    sample_n: posters per genre row in the final-model grid (unconditional: a sample_n x sample_n
    grid) and real/generated posters side by side. device: where G renders (cpu, cuda, mps, auto).
    Raises UserError when `run` is not a run folder (no config.json).
    """
    run = Path(run)
    if sample_n < 1:
        raise ValueError(f"sample_n must be at least 1, got {sample_n}")
    info = sections.load_run(run, device)
    body = [
        sections.header(info),
        sections.contents(),
        sections.losses(info),
        sections.health(info),
        sections.progression(info),
        sections.genre_grids(info, sample_n),
        sections.real_vs_generated(info, sample_n),
        sections.evaluation(info),
    ]
    footer = f"postergen {__version__} - report written {time.strftime('%Y-%m-%d %H:%M')}"
    out = Path(out) if out is not None else run / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, html.page(f"postergen report: {run_name(run)}", body, footer))
    return out
