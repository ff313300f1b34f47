"""The seed preset vs the stable preset at 128 px on the built-in posters, same images seen.

Trains both presets side by side (one process each), then writes a figure with each run's loss
curves and final fixed-noise grid, and prints a table: final D(x), D(G(z)), and sample diversity
(mean pairwise distance of 256 samples at 32 px, relative to the same measure on real posters;
near 0 means collapse).

    python benchmarks/stable_vs_seed.py --out out/stable_vs_seed --kimg 40 --width 32
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common import POSTERGEN, built_in_dataset, final_row, study_parser
from postergen.data.dataset import open_dataset
from postergen.weights import load_generator


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance of images in [0, 1], downsampled to 32 px."""
    x = F.interpolate(images.float(), size=(32, 32), mode="area").flatten(1)
    return torch.pdist(x).mean().item()


def generated(run: Path, n: int = 256) -> torch.Tensor:
    G, config = load_generator(run, ema=True)
    gen = torch.Generator().manual_seed(123)
    z = torch.randn(n, config["model"]["z_dim"], generator=gen)
    with torch.no_grad():
        return (G(z, None) + 1) / 2


def figure(runs: dict[str, Path], path: Path) -> None:
    """Per preset: its loss plot above its last sample grid; presets side by side."""
    columns = []
    for name, run in runs.items():
        loss = Image.open(run / "loss.png").convert("RGB")
        grid = Image.open(sorted((run / "samples").glob("step-*.png"))[-1]).convert("RGB")
        grid = grid.resize((loss.width, round(grid.height * loss.width / grid.width)))
        col = Image.new("RGB", (loss.width, loss.height + grid.height), "white")
        col.paste(loss, (0, 0))
        col.paste(grid, (0, loss.height))
        columns.append(col)
    out = Image.new("RGB", (sum(c.width for c in columns) + 10, max(c.height for c in columns)), "white")
    x = 0
    for col in columns:
        out.paste(col, (x, 0))
        x += col.width + 10
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def main() -> None:
    parser = study_parser(__doc__, out="out/stable_vs_seed", posters=4000, size=128, kimg=40)
    parser.add_argument("--figure", type=Path, default=Path("docs/img/stable_vs_seed_128.png"))
    args = parser.parse_args()
    pg = POSTERGEN
    ds = built_in_dataset(args.out, args.posters, args.size)
    runs = {p: args.out / p for p in ("seed", "stable")}
    threads = max(1, (os.cpu_count() or 2) // len(runs))
    procs = [subprocess.Popen(pg + ["train", str(ds), "-o", str(run), "--preset", preset, "--kimg", str(args.kimg),
                                    "--ngf", str(args.width), "--ndf", str(args.width), "--log-every", "10",
                                    "--sample-every", "100", "--checkpoint-every", "100", "--force"],
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
             for preset, run in runs.items()]
    if any(p.wait() != 0 for p in procs):
        sys.exit("a training run failed")
    real = torch.from_numpy(np.array(open_dataset(ds).images[:256])).float() / 255
    ref = diversity(real)
    print("| preset | kimg | img/s | D(x) | D(G(z)) | loss D | loss G | diversity / real |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        r = final_row(run)
        div = diversity(generated(run)) / ref
        print(f"| {name} | {r['kimg']:.1f} | {r['img_per_s']:.0f} | {r['d_real']:.3f} | {r['d_fake']:.3f} | "
              f"{r['loss_d']:.3f} | {r['loss_g']:.3f} | {div:.2f} |")
    figure(runs, args.figure)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
