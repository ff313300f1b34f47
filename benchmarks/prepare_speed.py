"""Steady-state decode rate of `postergen prepare` vs a torchvision ImageFolder pipeline (one process).

Both read the same built-in posters (182x268 JPEG) and produce 64x64 center crops. Start-up is
excluded: prepare is timed on N_small and N posters and the rate taken from the difference; the
torchvision loop is timed after a warm-up. Target: ratio >= 3.5 on 2 cores.

    python benchmarks/prepare_speed.py --n 6000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from postergen.data.ingest import PrepareConfig, prepare
from postergen.data.synth import generate


def torchvision_rate(root: Path, size: int, warmup: int = 300) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    ds = datasets.ImageFolder(str(root), transform=tf)
    for i in range(warmup):
        ds[i]
    t0 = time.perf_counter()
    for i in range(warmup, len(ds)):
        ds[i]
    return (len(ds) - warmup) / (time.perf_counter() - t0)


def prepare_rate(small: Path, large: Path, n_small: int, n_large: int, size: int, workers: int, tmp: Path) -> float:
    cfg = PrepareConfig(size=size, workers=workers, use_labels=False)
    t_small = prepare([small], tmp / f"ds-small-{workers}", cfg)["prepare"]["seconds"]
    t_large = prepare([large], tmp / f"ds-large-{workers}", cfg)["prepare"]["seconds"]
    return (n_large - n_small) / (t_large - t_small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6000, help="posters in the large run")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    n_small = args.n // 4
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "small", n=n_small, seed=0)
        generate(tmp / "large", n=args.n, seed=0)  # the first n_small posters are the same files
        ref = torchvision_rate(tmp / "large", args.size)
        print(f"torchvision ImageFolder+Resize+CenterCrop+ToTensor, 1 process: {ref:,.0f} img/s")
        for workers in sorted({1, cores}):
            rate = prepare_rate(tmp / "small", tmp / "large", n_small, args.n, args.size, workers, tmp)
            print(f"postergen prepare, {workers} worker(s): {rate:,.0f} img/s  ratio {rate / ref:.2f}x")


if __name__ == "__main__":
    main()
