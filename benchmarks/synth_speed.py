"""Posters per second of `postergen synth` with one worker and with all cores (target: >= 1,000/s on 2 cores).

Not a test: run by hand, e.g. `python benchmarks/synth_speed.py --n 4000`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from postergen.data.synth import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000, help="posters per run")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for workers in sorted({1, cores}):
            summary = generate(Path(tmp) / f"w{workers}", n=args.n, seed=0, workers=workers)
            print(f"workers={workers}: {args.n / summary['seconds']:,.0f} posters/s "
                  f"({summary['seconds']:.2f} s for {args.n})")


if __name__ == "__main__":
    main()
