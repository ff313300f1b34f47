"""Helpers the training benchmarks share (imported as `common`: benchmarks run as scripts)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

POSTERGEN = [sys.executable, "-m", "postergen"]


def built_in_dataset(out: Path, posters: int, size: int, holdout: float = 0.0) -> Path:
    """OUT/dataset<size> from `posters` built-in posters (with `holdout` percent of them set aside,
    OUT/dataset<size>-holdout<P>: `prepare --holdout`); made once, reused by later runs."""
    ds = out / (f"dataset{size}-holdout{holdout:g}" if holdout else f"dataset{size}")
    if not (ds / "dataset.json").exists():
        subprocess.run(POSTERGEN + ["synth", str(out / "posters"), "--n", str(posters), "--force"], check=True)
        held = ["--holdout", str(holdout)] if holdout else []
        subprocess.run(POSTERGEN + ["prepare", str(out / "posters"), "-o", str(ds), "--size", str(size), "--force",
                                    *held], check=True)
    return ds


def final_row(run: Path) -> dict:
    """The run's last five metric lines averaged, its images seen, and its mean speed."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tail = rows[-5:]
    return {k: float(np.mean([r[k] for r in tail])) for k in ("d_real", "d_fake", "loss_d", "loss_g")} | \
        {"kimg": rows[-1]["kimg"], "img_per_s": float(np.mean([r["img_per_s"] for r in rows[1:]] or [0]))}


def study_parser(doc: str, out: str, posters: int, size: int, kimg: float | None) -> argparse.ArgumentParser:
    """The options every training study has: where, how many posters, what size, how long, how wide
    (kimg None: a study that sets its runs' lengths and widths itself, without --kimg and --width)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--posters", type=int, default=posters)
    parser.add_argument("--size", type=int, default=size)
    if kimg is not None:
        parser.add_argument("--kimg", type=float, default=kimg, help="thousands of images each run sees")
        parser.add_argument("--width", type=int, default=32, help="ngf = ndf (the seed's is 64)")
    return parser
