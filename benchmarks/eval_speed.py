"""Seconds to evaluate n generated posters at 64 px on the CPU, split per metric (the default metrics:
perceptual FD/KID/PRDC/diversity and copies, SWD, pixel diversity, genre; FID needs Inception
weights and is skipped).

Not a test: run by hand, e.g. `python benchmarks/eval_speed.py --n 10000 --repeat 2`. It draws n
built-in posters, prepares them at 64 px, trains a 2-step run (the model's quality does not matter,
only its size: `--ngf`), then times `evaluate`. The first evaluation also computes the dataset's
perceptual features and copy descriptors and trains the genre classifier, all cached beside the
dataset; the second (`--repeat 2`) shows the cost of evaluating a run when they are cached.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from postergen.config import from_preset
from postergen.data.dataset import open_dataset
from postergen.data.ingest import PrepareConfig, prepare
from postergen.data.synth import generate
from postergen.engine.gan import train
from postergen.evaluate import evaluate

METRICS = None  # evaluate's defaults


def make_run(root: Path, n: int, size: int, ngf: int) -> tuple[Path, Path]:
    """-> (run folder, dataset folder): n built-in posters at `size` px and a 2-step conditional run."""
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    generate(root / "posters", n=n, seed=0, workers=cores)
    prepare([root / "posters"], root / "ds", PrepareConfig(size=size, workers=cores))
    cfg = from_preset("stable", steps=2, batch=16, ngf=ngf, ndf=16, log_every=2, sample_every=2,
                      checkpoint_every=2, tensorboard=False, device="cpu")
    train(open_dataset(root / "ds"), root / "run", cfg, echo=lambda *a: None)
    print(f"setup (synth, prepare, 2 training steps): {time.perf_counter() - t0:.1f} s")
    return root / "run", root / "ds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="posters per set (also the dataset size)")
    parser.add_argument("--size", type=int, default=64, help="poster size in pixels")
    parser.add_argument("--ngf", type=int, default=64, help="generator width (64: the real model)")
    parser.add_argument("--repeat", type=int, default=1, help="evaluations in a row (the 2nd reuses the cache)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a core shared with other work)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        run, data = make_run(Path(tmp), args.n, args.size, args.ngf)
        for i in range(args.repeat):
            t0 = time.perf_counter()
            result = evaluate(run, data, n=args.n, metrics=METRICS)
            total = time.perf_counter() - t0
            split = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
            print(f"evaluation {i + 1}: {total:.1f} s for {result['n']} posters at {args.size} px ({split})")


if __name__ == "__main__":
    main()
