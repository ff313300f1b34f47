"""What each ingredient of the stable preset buys: the full preset, then each ingredient taken out.

Every variant trains on the same built-in posters for the same number of images, one run at a
time (runs side by side would share the cores), then `postergen evaluate` scores the EMA (or
plain) generator: SWD (lower is closer to the real posters), diversity ratio (near 0 is
collapse) and D's final outputs. Prints a markdown table; runs and eval.json stay under --out.

    python benchmarks/ablation.py --out out/ablation --size 64 --kimg 48 --width 32
    python benchmarks/ablation.py --device cuda --size 128 --kimg 2000 --width 64   # a GPU study
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import POSTERGEN, built_in_dataset, final_row

# name -> extra train flags (the stable preset's defaults otherwise; R1 is off in the preset).
VARIANTS = {
    "stable": [],
    "- spectral norm": ["--no-spectral-norm"],
    "- minibatch std": ["--no-minibatch-std"],
    "- DiffAugment": ["--augment", ""],
    "- EMA": ["--ema-kimg", "0"],
    "hinge -> BCE": ["--loss", "bce"],
    "Adam betas -> seed's (0.5, 0.999)": ["--beta1", "0.5", "--beta2", "0.999"],
    "+ R1 (gamma 1)": ["--r1-gamma", "1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/ablation"))
    parser.add_argument("--posters", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--kimg", type=float, default=48, help="thousands of images each variant sees")
    parser.add_argument("--width", type=int, default=32, help="ngf = ndf (the seed's is 64)")
    parser.add_argument("--n", type=int, default=2000, help="posters per set for evaluate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    pg = POSTERGEN
    ds = built_in_dataset(args.out, args.posters, args.size)
    rows = []
    for i, (name, flags) in enumerate(VARIANTS.items()):
        if args.only and name not in args.only:
            continue
        run = args.out / f"v{i}"
        t0 = time.perf_counter()
        subprocess.run(pg + ["train", str(ds), "-o", str(run), "--preset", "stable", "--kimg", str(args.kimg),
                             "--ngf", str(args.width), "--ndf", str(args.width), "--device", args.device,
                             "--log-every", "20", "--sample-every", "200", "--checkpoint-every", "1000",
                             "--no-tensorboard", "--force", *flags], check=True, stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - t0) / 60
        subprocess.run(pg + ["evaluate", str(run), "--data", str(ds), "--n", str(args.n), "--device", args.device,
                             "--metrics", "swd,diversity"], check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((run / "eval.json").read_text())["metrics"]
        rows.append((name, metrics["swd"]["mean"], metrics["diversity"]["ratio"], final_row(run), minutes))
        print(f"{name}: SWD {rows[-1][1]:.1f}", file=sys.stderr, flush=True)
    print(f"| variant ({args.size} px, {args.kimg:g}k images, width {args.width}) | SWD mean | diversity / real "
          "| D(x) | D(G(z)) | train min |")
    print("|---|---|---|---|---|---|")
    for name, swd, div, d, minutes in rows:
        print(f"| {name} | {swd:.1f} | {div:.2f} | {d['d_real']:.3f} | {d['d_fake']:.3f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
