"""Training speed of each generator x discriminator pairing (and the projected D's input size), img/s.

The engine's own step (build, Stepper, one D and one G update, EMA, DiffAugment) on a prepared
dataset, the stable preset otherwise; no sampling, checkpoints or logging in the timed steps.

    python benchmarks/gan_speed.py --data demo/dataset               # 2-core CPU, 64 px, ngf = ndf = 32
    python benchmarks/gan_speed.py --data demo/dataset --precision fp32 --only "(stable),(ngf 16) + projected D @ 64"
    python benchmarks/gan_speed.py --data DATASET --device cuda --width 64 --steps 50
"""

from __future__ import annotations

import argparse
import time

import torch

from postergen.config import from_preset
from postergen.data.dataset import Batches, open_dataset
from postergen.engine.gan import build
from postergen.engine.step import Meter, Stepper, step_runner

PAIRS = [  # (label, options)
    ("dcgan G + dcgan D (stable)", {}),
    ("fastgan G + dcgan D", {"arch": "fastgan"}),
    ("fastgan G (ngf 16) + dcgan D", {"arch": "fastgan", "ngf": 16}),
    ("dcgan G + projected D @ 64", {"discriminator": "projected", "feature_res": 64}),
    ("dcgan G + projected D @ 128", {"discriminator": "projected", "feature_res": 128}),
    ("dcgan G + projected D @ 224", {"discriminator": "projected", "feature_res": 224}),
    ("fastgan G (ngf 16) + projected D @ 64", {"arch": "fastgan", "ngf": 16, "discriminator": "projected",
                                               "feature_res": 64}),
    ("fastgan G (ngf 16) + projected D @ 128", {"arch": "fastgan", "ngf": 16, "discriminator": "projected",
                                                "feature_res": 128}),
    ("fastgan G (ngf 16) + fastgan D", {"arch": "fastgan", "ngf": 16, "discriminator": "fastgan"}),
    ("fastgan G (ngf 16) + fastgan D (ndf 16)", {"arch": "fastgan", "ngf": 16, "discriminator": "fastgan",
                                                "ndf": 16}),
    ("dcgan G + ensemble D @ 64 (feature term on)", {"discriminator": "ensemble", "feature_res": 64,
                                                     "feature_start": 0}),
]


def speed(ds, device: torch.device, steps: int, warmup: int, precision: str, preset: str = "stable",
          **options) -> float:
    """img/s of the engine's step for `preset` with `options` (TrainConfig fields) on `ds`."""
    cfg = from_preset(preset, device=device.type, tensorboard=False, precision=precision, **options)
    H, W = ds.meta["size"]
    model_cfg = cfg.model_config(H, W, len(ds.genres))
    stepper = Stepper(build(cfg, model_cfg, device, arch=cfg.arch), cfg, device, conditional=model_cfg.n_genres > 0)
    run = step_runner(stepper, Meter(device))
    batches = Batches(ds, cfg.batch, device, 0, 0, 1)
    for s in range(warmup):
        run(s, *batches.get(s))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        run(s, *batches.get(s))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a prepared dataset folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--width", type=int, default=32, help="ngf = ndf unless a pairing sets its own")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated substrings: time only the pairings they match")
    args = parser.parse_args()
    wanted = [w for w in args.only.split(",") if w]
    ds = open_dataset(args.data)
    device = torch.device(args.device)
    print(f"| pairing ({ds.meta['size'][0]}x{ds.meta['size'][1]} px, {args.device}, {args.precision}) | img/s |")
    print("|---|---|")
    for label, options in PAIRS:
        if wanted and not any(w in label for w in wanted):
            continue
        options = {"ngf": args.width, "ndf": args.width, **options}
        print(f"| {label} | {speed(ds, device, args.steps, args.warmup, args.precision, **options):.0f} |", flush=True)


if __name__ == "__main__":
    main()
