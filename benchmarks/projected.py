"""Seed vs stable vs the projected discriminator (and FastGAN's generator) on the built-in posters,
at equal images seen and at equal wall time, judged with `postergen evaluate`'s metrics.

Each configuration trains in its own process, one after the other, so each has the whole machine
and its wall time is its own. Then every run is evaluated the same way (its EMA generator, `--n`
posters, seed 0): perceptual FD and precision/recall/coverage in EfficientNet-Lite2's space (a
network the projected D does not use: it looks through Lite0), SWD, perceptual and pixel diversity
relative to real posters, and the share of likely copies. `--equal-time NAME` also trains the
stable preset for as long as run NAME took (from stable's own speed), the equal-wall-time row.
Writes OUT/results.json, OUT/results.md (the table) and a figure of the last fixed-noise grids.

    python benchmarks/projected.py --out out/projected --kimg 20 --equal-time projected
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from common import POSTERGEN, built_in_dataset, final_row, study_parser

REUSE = False  # --reuse: keep runs and evaluations already in OUT

# name -> `postergen train` options besides the common ones (--kimg, widths, intervals)
CONFIGS: dict[str, list[str]] = {
    "seed": ["--preset", "seed"],
    "stable": ["--preset", "stable"],
    "projected": ["--preset", "stable", "--discriminator", "projected"],
    # FastGAN at ngf = width / 2: its widths run from 16x ngf at 4 px to 2x at 64 px, so its last map is
    # as wide as DCGAN's at ngf = width (at width 32: 72 img/s with this D at 64 px on 2 cores)
    "fastgan-projected": ["--preset", "projected", "--ngf", "HALFWIDTH"],
    # ... with genres also in every upsampling block's BatchNorm (the reference's conditional FastGAN)
    "fastgan-projected-genre-bn": ["--preset", "projected", "--ngf", "HALFWIDTH", "--genre-bn"],
    "fastgan-stable": ["--preset", "stable", "--arch", "fastgan"],
    # FastGAN's own pair: its G and its self-supervised D (reconstruction decoders), stable's loss and optimiser
    "fastgan": ["--preset", "stable", "--arch", "fastgan", "--discriminator", "fastgan", "--ngf", "HALFWIDTH"],
    # Vision-aided: the feature term from half-way (HALF: half the run's steps), weight 0.1
    "ensemble": ["--preset", "stable", "--discriminator", "ensemble", "--feature-start", "HALF"],
}
BATCH = 64  # the stable preset's; the seed's 128 only changes its step count


def train(ds: Path, run: Path, options: list[str], kimg: float, width: int, extra: list[str]) -> float:
    """Train one run from scratch (unless --reuse finds it done); -> wall seconds of the training process."""
    done = run / "bench-train.json"
    if REUSE and done.is_file():
        return json.loads(done.read_text())["train_s"]
    t0 = time.perf_counter()
    steps = int(kimg * 1000 / BATCH)
    every = max(1, steps // 8)  # about 8 grids and checkpoints per run
    options = [{"HALF": str(steps // 2), "HALFWIDTH": str(max(1, width // 2))}.get(o, o) for o in options]
    # a configuration's own options come after the common ones, so they win (FastGAN's --ngf)
    subprocess.run(POSTERGEN + ["train", str(ds), "-o", str(run), "--kimg", str(kimg),
                                "--ngf", str(width), "--ndf", str(width), "--log-every", "10",
                                "--sample-every", str(every), "--checkpoint-every", str(every),
                                "--no-tensorboard", "--force", *options, *extra], check=True)
    seconds = time.perf_counter() - t0
    done.write_text(json.dumps({"train_s": seconds}))
    return seconds


def evaluate(run: Path, ds: Path, n: int, device: str) -> dict:
    out = run / "bench-eval.json"
    if REUSE and out.is_file():
        return json.loads(out.read_text())
    subprocess.run(POSTERGEN + ["evaluate", str(run), "--data", str(ds), "--n", str(n), "--seed", "0",
                                "--device", device, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def summary(r: dict) -> dict:
    """The table's numbers from evaluate's JSON; NaN for a metric it did not compute (or null)."""
    m = r["metrics"] if "metrics" in r else r

    def get(metric: str, key: str) -> float:
        value = (m.get(metric) or {}).get(key)
        return float("nan") if value is None else value

    return {"fd": get("fd", "value"), "kid": get("kid", "mean"), "precision": get("precision", "value"),
            "recall": get("recall", "value"), "coverage": get("coverage", "value"),
            "perceptual_div": get("perceptual_diversity", "ratio"), "swd": get("swd", "mean"),
            "pixel_div": get("diversity", "ratio"), "copies": get("copies", "likely_copy_share"),
            # the genre classifier's top-1 on generated posters (chance 1/genres); NaN when unconditional
            "genre_top1": get("genre", "fake_top1")}


def tile(name: str, run: Path) -> Image.Image:
    """The run's last fixed-noise grid under a label: its name and images seen."""
    grid = Image.open(sorted((run / "samples").glob("step-*.png"))[-1]).convert("RGB")
    out = Image.new("RGB", (grid.width + 8, grid.height + 18), "white")
    out.paste(grid, (0, 18))
    ImageDraw.Draw(out).text((4, 3), f"{name} ({final_row(run)['kimg']:.0f} kimg)", fill="black")
    return out


def compose(tiles: list[Image.Image], path: Path, per_row: int = 3) -> None:
    """Tiles side by side, per_row to a row, saved to path."""
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = (len(tiles) + per_row - 1) // per_row
    out = Image.new("RGB", (w * min(per_row, len(tiles)), h * rows), "white")
    for i, t in enumerate(tiles):
        out.paste(t, ((i % per_row) * w, (i // per_row) * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def figure(runs: dict[str, Path], path: Path, per_row: int = 3) -> None:
    """Each run's last fixed-noise grid, labelled, side by side (per_row to a row)."""
    compose([tile(name, run) for name, run in runs.items()], path, per_row)


def main() -> None:
    parser = study_parser(__doc__, out="out/projected", posters=2000, size=64, kimg=20)
    parser.add_argument("--configs", default="seed,stable,projected,fastgan-projected",
                        help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--equal-time", default=None, metavar="NAME",
                        help="also train stable for as long as run NAME took")
    parser.add_argument("--n", type=int, default=2000, help="posters generated per evaluation")
    parser.add_argument("--extra", default="", help="options added to every run, e.g. '--feature-res 128'")
    parser.add_argument("--figure", type=Path, default=None, help="default: OUT/grids.png")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs and evaluations found in OUT")
    parser.add_argument("--eval-device", default="cpu", help="evaluate's --device")
    args = parser.parse_args()
    global REUSE
    REUSE = args.reuse
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown config(s): {', '.join(unknown)}")
    ds = built_in_dataset(args.out, args.posters, args.size)
    extra = args.extra.split()
    results, runs = {}, {}
    for name in names:
        runs[name] = args.out / name
        seconds = train(ds, runs[name], CONFIGS[name], args.kimg, args.width, extra)
        results[name] = {"kimg": args.kimg, "train_s": seconds}
    if args.equal_time:
        stable_speed = final_row(runs["stable"])["img_per_s"] if "stable" in runs else None
        if stable_speed is None:
            sys.exit("--equal-time needs stable among --configs (its speed sets the length)")
        budget = results[args.equal_time]["train_s"]
        kimg = round(stable_speed * budget / 1000, 1)
        name = f"stable@{args.equal_time}-time"
        runs[name] = args.out / f"stable-equal-{args.equal_time}"
        results[name] = {"kimg": kimg, "train_s": train(ds, runs[name], CONFIGS["stable"], kimg, args.width, extra)}
    for name, run in runs.items():
        row = final_row(run)  # what the run really saw (a reused run keeps its own length)
        results[name].update(kimg=row["kimg"], img_per_s=row["img_per_s"],
                             **summary(evaluate(run, ds, args.n, args.eval_device)))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    cols = ["kimg", "train_s", "img_per_s", "fd", "kid", "precision", "recall", "coverage", "perceptual_div",
            "swd", "pixel_div", "copies", "genre_top1"]
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3g}" for c in cols) + " |")
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    fig = args.figure or args.out / "grids.png"
    figure(runs, fig)
    print(f"figure: {fig}")


if __name__ == "__main__":
    main()
