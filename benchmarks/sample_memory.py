"""Peak memory of `postergen sample` against --n: posters stream to disk --batch at a time and the
grid shows at most 16 seeds per row, so peak memory should stay flat as --n grows.

    python benchmarks/sample_memory.py --size 256 --genres 8 --n 16 128 1024

It draws built-in posters, prepares them at --size, trains a 1-step run at the seed's widths (the
weights do not change the cost), then runs `postergen sample` in a fresh process per --n, with
--genres genre rows, and reports that process's peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_run(root: Path, size: int) -> Path:
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.data.ingest import PrepareConfig, prepare
    from postergen.data.synth import generate
    from postergen.engine.gan import train

    cores = os.cpu_count() or 1
    generate(root / "posters", n=64, seed=0, workers=cores)
    prepare([root / "posters"], root / "ds", PrepareConfig(size=size, workers=cores))
    cfg = from_preset("stable", steps=1, batch=4, log_every=1, sample_every=1000, checkpoint_every=1000,
                      tensorboard=False, device="cpu")
    train(open_dataset(root / "ds"), root / "run", cfg, echo=lambda *a: None)
    return root / "run"


def peak_mib(args: list[str]) -> tuple[float, float]:
    """Run one command in a child process -> (its peak RSS in MiB, seconds). A child per call: ru_maxrss
    of RUSAGE_CHILDREN is the largest child so far, so each measurement uses a fresh wrapper process."""
    code = ("import resource, subprocess, sys\n"
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--genres", type=int, default=8, help="genre rows drawn")
    parser.add_argument("--n", type=int, nargs="+", default=[16, 128, 1024])
    parser.add_argument("--batch", type=int, default=None, help="sample --batch (default: sample's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), args.size)
        genres = json.loads((run / "config.json").read_text())["genres"][:args.genres]
        rows = [a for g in genres for a in ("--genre", g)]
        batch = ["--batch", str(args.batch)] if args.batch else []
        for n in args.n:
            out = Path(tmp) / f"out{n}"
            mib, seconds = peak_mib([sys.executable, "-m", "postergen", "sample", str(run), "-o", str(out),
                                     "--n", str(n), *rows, *batch])
            print(f"--n {n:>5} x {len(genres)} genres at {args.size} px: peak RSS {mib:,.0f} MiB, {seconds:.0f} s")


if __name__ == "__main__":
    main()
