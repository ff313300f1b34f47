"""What each ingredient of the stable preset buys: the full preset, then each ingredient taken out.

Every variant trains on the same built-in posters for the same number of images, one run at a
time (runs side by side would share the cores), once per seed, then `postergen evaluate` scores
the EMA (or plain) generator: SWD (lower is closer to the real posters), diversity ratio (near 0
is collapse) and D's final outputs. Prints a markdown table; runs stay under --out, and a run
that already has its eval.json is reused, so an interrupted study continues where it stopped.

    python benchmarks/ablation.py --out out/ablation --size 64 --kimg 48 --width 32
    python benchmarks/ablation.py --device cuda --size 128 --kimg 2000 --width 64   # a GPU study
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import POSTERGEN, built_in_dataset, final_row, study_parser

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
    parser = study_parser(__doc__, out="out/ablation", posters=3000, size=64, kimg=48)
    parser.add_argument("--n", type=int, default=2000, help="posters per set for evaluate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per variant and seed")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    ds = built_in_dataset(args.out, args.posters, args.size)
    rows = []
    for i, (name, flags) in enumerate(VARIANTS.items()):
        if args.only and name not in args.only:
            continue
        results = [one_run(args, ds, args.out / f"v{i}-s{seed}", flags, seed) for seed in args.seeds]
        rows.append((name, results))
        print(f"{name}: SWD {' / '.join(f'{r[0]:.1f}' for r in results)}", file=sys.stderr, flush=True)
    seeds = ", ".join(map(str, args.seeds))
    print(f"| variant ({args.size} px, {args.kimg:g}k images, width {args.width}; seeds {seeds}) | SWD mean "
          "(per seed) | diversity / real | D(x) | D(G(z)) | img/s |")
    print("|---|---|---|---|---|---|")
    for name, results in rows:
        swd, div, d_real, d_fake, rate = (np.mean([r[k] for r in results]) for k in range(5))
        each = " / ".join(f"{r[0]:.1f}" for r in results)
        print(f"| {name} | {swd:.1f} ({each}) | {div:.2f} | {d_real:.3f} | {d_fake:.3f} | {rate:.0f} |")


def one_run(args, ds: Path, run: Path, flags: list[str], seed: int) -> tuple[float, ...]:
    """Train and evaluate one variant (kept and reused when its eval.json is already there)."""
    if not (run / "eval.json").exists():
        subprocess.run(POSTERGEN + ["train", str(ds), "-o", str(run), "--preset", "stable", "--kimg", str(args.kimg),
                                    "--ngf", str(args.width), "--ndf", str(args.width), "--device", args.device,
                                    "--seed", str(seed), "--log-every", "20", "--sample-every", "200",
                                    "--checkpoint-every", "1000", "--no-tensorboard", "--force", *flags],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(POSTERGEN + ["evaluate", str(run), "--data", str(ds), "--n", str(args.n),
                                    "--device", args.device, "--metrics", "swd,diversity"],
                       check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    last = final_row(run)
    return metrics["swd"]["mean"], metrics["diversity"]["ratio"], last["d_real"], last["d_fake"], last["img_per_s"]

if __name__ == "__main__":
    main()
