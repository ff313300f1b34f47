"""Quality versus training time of each recipe on the built-in posters (issue 23): where do the curves cross?

Each recipe (stable, the projected preset, FastGAN's own pair; with and without genres) trains for the
images its quiet speed (below) shows in `--minutes`, with a step checkpoint about every 1/`--checkpoints` of its expected length, so
checkpoints exist near log-spaced images seen. Right after it trains, `--points` of them, at about
1/32, 1/16, ... 1/2 and all of the run (each the nearest kept), are evaluated against held-out posters
(`prepare --holdout`, never trained on) with perceptual FD, SWD, precision/recall and genre fidelity,
as `postergen evaluate` does (each point is a line in RUN/eval.jsonl), and the other step checkpoints
are deleted (30 to 60 MB each at these widths; `--keep-all` keeps them). The real-vs-real floor: `--n`
other built-in posters (`synth --seed 1`) against the same held-out ones.

Two cores are easily disturbed, so time is not the runs' own wall clock: images seen convert to minutes
with each run's speed, the engine's training step timed by benchmarks/gan_speed.py in a quiet phase
before any training (OUT/speeds.json; or give `--speeds FILE`, {run name: img/s}, measured on a quiet
machine). Writes OUT/curves.json and OUT/curves.md, a 2x2 figure (FD and SWD against images seen and
against minutes, the floor dashed) and each run's last grid, and puts the table and both figures
between `<!-- curves:begin -->` and `<!-- curves:end -->` in `--doc` (figures in its img/ folder);
rerunning replaces them.

    python benchmarks/curves.py --out out/curves --minutes 60                          # the study, 2-core CPU
    python benchmarks/curves.py --out /tmp/curves --minutes 0.05 --posters 300 --n 60 \\
        --doc /tmp/curves/training.md                                                  # a smoke test
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from common import POSTERGEN, built_in_dataset, final_row, study_parser
from gan_speed import speed
from postergen.config import MAX_KEEP, flag, from_preset
from postergen.data.dataset import open_dataset
from postergen.evaluate import evaluate_checkpoint, prepare_evaluation, real_inputs, real_pool, record_curve_point
from postergen.recipes import NO_GENRES  # a run's name without genres: the one spelling train's table reads
from postergen.runfolder import RunFolder
from projected import compose, summary, tile

REUSE = False  # --reuse: keep speeds, runs, evaluations and the floor already in OUT
BEGIN, END = "<!-- curves:begin -->", "<!-- curves:end -->"
METRICS = ["fd", "swd", "precision", "recall", "genre"]
FLOOR_METRICS = ["fd", "swd", "precision", "recall"]  # genre fidelity needs a generator
SEED = 0  # evaluation: generated poster i from seed i, and the draw of the real posters

# name -> {device type: (preset, TrainConfig options)}: each recipe at the widths one would ship on that
# device. CPU: the widths measured on 2 cores (docs/benchmarks.md); CUDA: 64, FastGAN's G at half (its
# last map is then as wide as DCGAN's at 64), as benchmarks/gpu.sh's 128 px study.
RECIPES: dict[str, dict[str, tuple[str, dict]]] = {
    "stable": {"cpu": ("stable", dict(ngf=32, ndf=32)), "cuda": ("stable", dict(ngf=64, ndf=64))},
    # the preset as a user gets it on each device (config.PRESETS, CUDA_PRESETS: ngf 16, ndf 32 on a CPU)
    "projected": {"cpu": ("projected", {}), "cuda": ("projected", {})},
    # FastGAN's G and its self-supervised D, stable's loss and optimiser
    "fastgan": {"cpu": ("stable", dict(arch="fastgan", discriminator="fastgan", ngf=16, ndf=32)),
                "cuda": ("stable", dict(arch="fastgan", discriminator="fastgan", ngf=32, ndf=64))},
    # the projected preset with MSGAN's mode-seeking term at weight 1 (the paper's) and 0.1: its
    # 60-minute grid was one poster per genre
    **{f"projected-ms{w:g}": {device: ("projected", dict(mode_seeking=w)) for device in ("cpu", "cuda")}
       for w in (1.0, 0.1)},
}
# The recipes the study trains unless --recipes names others, and the only ones --recipes-json writes
STUDY = ["stable", "projected", "fastgan"]


def plan(recipes: list[str], genres: list[bool], device_type: str) -> dict[str, tuple[str, dict]]:
    """Run name -> (preset, options): each recipe with genres, then each without (as `genres` asks)."""
    runs = {}
    for with_genres in genres:
        for name in recipes:
            preset, options = RECIPES[name][device_type]
            if with_genres:
                runs[name] = preset, options
            else:
                runs[name + NO_GENRES] = preset, {**options, "conditional": False}
    return runs


def train_flags(preset: str, options: dict) -> list[str]:
    """`postergen train` options for a preset and TrainConfig fields: {"conditional": False} -> --no-conditional."""
    out = ["--preset", preset]
    for name, value in options.items():
        if isinstance(value, bool):
            out.append(flag(name) if value else "--no-" + flag(name)[2:])
        else:
            out += [flag(name), str(value)]
    return out


def quiet_speeds(ds: Path, runs: dict, args) -> dict[str, float]:
    """img/s of each run's training step (gan_speed.speed), measured before any training; --speeds FILE
    (and, with --reuse, OUT/speeds.json) gives those already measured."""
    path = args.out / "speeds.json"
    known = json.loads(path.read_text()) if REUSE and path.is_file() else {}
    if args.speeds:
        known |= json.loads(args.speeds.read_text())
    missing = [name for name in runs if name not in known]
    if missing:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        print(f"timing {', '.join(missing)} (load average {load:.1f}: other work on the cores makes these low)")
        data, device = open_dataset(ds), torch.device(args.device)
        for name in missing:
            preset, options = runs[name]
            known[name] = speed(data, device, args.speed_steps, args.speed_warmup, args.precision, preset=preset,
                                **options)
            print(f"  {name}: {known[name]:.1f} img/s", flush=True)
        path.write_text(json.dumps(known, indent=1) + "\n")
    return {name: known[name] for name in runs}


def train(ds: Path, run: Path, preset: str, options: dict, img_per_s: float, args) -> None:
    """Train one run for the images its quiet speed shows in --minutes (`train --steps`, not its own clock:
    a run that shares the cores still sees them all), a step checkpoint about every 1/--checkpoints of them,
    each kept until curve() has evaluated. With --reuse, a run already that long is kept and a shorter one
    is resumed to the new length, so a study can grow across sittings (--minutes 15, later 60)."""
    done = run / "bench-train.json"
    batch = from_preset(preset, device=args.device, **options).batch
    steps = max(1, round(img_per_s * args.minutes * 60 / batch))
    every = max(1, round(steps / args.checkpoints))
    before = json.loads(done.read_text()) if REUSE and done.is_file() else None
    if before and before["steps"] >= steps:
        if before["steps"] > steps:
            print(f"note: {run.name} kept as it was, {before['minutes']:g} minutes (not {args.minutes:g})")
        return
    if before:  # the same run, on to the new length
        setup = ["--resume"]
    else:
        (run / "eval.jsonl").unlink(missing_ok=True)  # points of an earlier run of that name
        setup = ["--force", *train_flags(preset, options)]
    subprocess.run(POSTERGEN + ["train", str(ds), "-o", str(run), "--steps", str(steps),
                                "--device", args.device, "--precision", args.precision,
                                "--checkpoint-every", str(every), "--keep-checkpoints", str(MAX_KEEP),
                                "--sample-every", str(every * 10), "--log-every", str(min(25, every)),
                                "--no-tensorboard", *setup, *args.extra.split()],
                   check=True)
    done.write_text(json.dumps({"minutes": args.minutes, "steps": steps, "checkpoint_every": every}) + "\n")


def log_spaced(steps: list[int], points: int) -> list[int]:
    """Of the sorted `steps`, those nearest (in log scale) to last / 2^k for k = points - 1 ... 0."""
    targets = [steps[-1] / 2**k for k in range(points - 1, -1, -1)]
    return sorted({min(steps, key=lambda s: abs(math.log(s / t))) for t in targets})


class Evaluator:
    """`postergen evaluate`'s metrics for one checkpoint at a time, against the same real posters each
    time (their features computed once); set up on first use, so a run fully --reuse'd costs nothing."""

    def __init__(self, ds: Path, n: int, device: str) -> None:
        self.ds, self.n, self.device, self.ready = ds, n, device, None

    def __call__(self, run: Path, checkpoint: Path) -> dict:
        if self.ready is None:
            data, _, names, shared = prepare_evaluation(self.ds, self.n, SEED, METRICS, None, self.device, None,
                                                        True, False, lambda line: None)
            self.ready = data, names, shared, real_inputs(data, self.n, shared)
        data, names, shared, real = self.ready
        return evaluate_checkpoint(checkpoint, data, run, real, names, {}, shared)[0]


def curve(run: Path, evaluate: Evaluator, points: int, keep_all: bool) -> list[dict]:
    """evaluate's results at log-spaced step checkpoints of `run`, and at any step evaluated before (a
    run grown to a longer --minutes keeps its earlier points), oldest first; each is a line in
    RUN/eval.jsonl (kept and reused with --reuse when it has every metric at this n). Then, unless
    keep_all, the step checkpoints not evaluated are deleted (latest.pt stays): 30 to 60 MB each."""
    checkpoints = RunFolder(run).step_checkpoints()
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()] \
        if REUSE and (run / "eval.jsonl").is_file() else []
    done = {r["step"]: r for r in rows if (r.get("n"), r.get("seed")) == (evaluate.n, SEED)
            and set(METRICS) <= set(r.get("metrics", {}))}
    for step in log_spaced(sorted(checkpoints), points):
        if step not in done:
            print(f"evaluating {run.name} step {step}", flush=True)
            done[step] = evaluate(run, checkpoints[step])
            record_curve_point(run / "eval.jsonl", done[step])
    for step, path in checkpoints.items():
        if not keep_all and step not in done:
            path.unlink()
    return [done[step] for step in sorted(done)]


def real_floor(out: Path, ds: Path, n: int, device: str) -> dict:
    """Real vs real: n other built-in posters (`synth --seed 1`) evaluated as if generated, against the
    same held-out posters the runs meet -> summary() of it."""
    path = out / f"floor-{n}.json"
    if not (REUSE and path.is_file()):
        subprocess.run(POSTERGEN + ["synth", str(out / "floor-posters"), "--n", str(n), "--seed", "1", "--force"],
                       check=True)
        subprocess.run(POSTERGEN + ["evaluate", "--images", str(out / "floor-posters" / "images"), "--data", str(ds),
                                    "--n", str(n), "--seed", str(SEED), "--metrics", ",".join(FLOOR_METRICS),
                                    "--device", device, "--json", str(path), "--force"],
                       check=True, stdout=subprocess.DEVNULL)
    return summary(json.loads(path.read_text()))


def point_row(name: str, run: Path, result: dict, img_per_s: float, floor: dict) -> dict:
    """One table row: the run, where on its curve (images seen, minutes at its quiet speed), the metrics."""
    config = json.loads((run / "config.json").read_text())
    images = result["step"] * config["train"]["batch"]
    m = summary(result)
    return {"run": name, "ngf": config["model"]["ngf"], "ndf": config["model"]["ndf"], "step": result["step"],
            "images": images, "minutes": images / img_per_s / 60, "fd": m["fd"], "swd": m["swd"],
            "precision": m["precision"], "recall": m["recall"], "genre_top1": m["genre_top1"],
            "fd_floor": m["fd"] / floor["fd"], "swd_floor": m["swd"] / floor["swd"]}


def plot(rows: list[dict], floor: dict, path: Path) -> None:
    """FD and SWD (rows) against images seen and minutes (columns), log-log; one colour per recipe, dotted
    without genres, the real-vs-real floor dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2, sharey="row", sharex="col")
    names = list(dict.fromkeys(r["run"] for r in rows))
    recipes = list(dict.fromkeys(n.removesuffix(NO_GENRES) for n in names))
    for i, (metric, label) in enumerate((("fd", "perceptual FD (Lite2)"), ("swd", "SWD ×10³"))):
        for j, (x, xlabel) in enumerate((("images", "images seen"), ("minutes", "minutes at the quiet speed"))):
            ax = axes[i][j]
            for name in names:
                points = [r for r in rows if r["run"] == name]
                genres = not name.endswith(NO_GENRES)
                ax.plot([p[x] for p in points], [p[metric] for p in points], marker="o",
                        color=f"C{recipes.index(name.removesuffix(NO_GENRES))}", linestyle="-" if genres else ":",
                        markerfacecolor=None if genres else "none", label=name)
            ax.axhline(floor[metric], color="black", linestyle="--", label="real vs real")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel(xlabel if i else "")
            ax.set_ylabel(label if j == 0 else "")
    axes[0][0].legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _num(x: float) -> str:
    return "–" if isinstance(x, float) and math.isnan(x) else f"{x:.3g}"


def markdown(data: dict, earlier: list[str], links: tuple[str, str], command: str, earlier_file: str) -> str:
    """The block between the markers: how it was made, the floor, speeds, every point, both figures."""
    floor, speeds, rows, n = data["floor"], data["speeds"], data["rows"], data["n"]
    lines = [f"Written by `{command}`; rerunning replaces everything between the markers.", "",
             f"Real vs real ({n} other built-in posters against the {n} held-out ones): FD {_num(floor['fd'])}, "
             f"SWD {_num(floor['swd'])}, precision {_num(floor['precision'])}, recall {_num(floor['recall'])}.", ""]
    if earlier:
        lines += [f"Rows of {', '.join(earlier)} come from `{earlier_file}` (`--earlier`): an earlier sitting of this "
                  "study, whose runs are no longer on disk; their grids are the tiles it kept.", ""]
    lines += ["| run | ngf, ndf | img/s, quiet step | img/s, the run's own |", "|---|---|---|---|"]
    for name in dict.fromkeys(r["run"] for r in rows):
        row, own = next(r for r in rows if r["run"] == name), data["own_img_per_s"].get(name)
        lines.append(f"| {name} | {row['ngf']}, {row['ndf']} | {speeds[name]:.0f} | {f'{own:.0f}' if own else '–'} |")
    cols = ["minutes", "images", "fd", "swd", "precision", "recall", "genre_top1", "fd_floor", "swd_floor"]
    heads = ["minutes", "images", "FD ↓", "SWD ↓", "precision", "recall", "genre top-1", "FD / floor", "SWD / floor"]
    lines += ["", "| run | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [f"{r['minutes']:.1f}", f"{r['images'] / 1000:.1f}k"] + [_num(r[c]) for c in cols[2:]]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    lines += ["", f"![FD and SWD against images seen and against minutes]({links[0]})", "",
              f"![the last grid of each run]({links[1]})"]
    return "\n".join(lines)


def replace_between(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """text with what lies between the markers replaced by block (the markers appended at the end when
    text has neither); one marker alone, or the end before the begin, is a ValueError."""
    i, j = text.find(begin), text.find(end)
    if i < 0 and j < 0:
        return text.rstrip("\n") + f"\n\n{begin}\n{block}\n{end}\n"
    if i < 0 or j < i:
        raise ValueError(f"expected {begin} before {end}, each once")
    return text[:i + len(begin)] + f"\n{block}\n" + text[j:]


def study_data(args, rows: list[dict], floor: dict, speeds: dict, runs: dict[str, Path], n: int) -> dict:
    """What the study measured, as OUT/curves.json (and, with --doc, its data/curves_SIZE.json) holds it: a
    later sitting on another machine can extend it with --earlier."""
    return {"size": args.size, "posters": args.posters, "holdout": args.holdout, "n": n, "floor": floor,
            "speeds": speeds, "own_img_per_s": {name: final_row(run)["img_per_s"] for name, run in runs.items()},
            "rows": rows}


def run_order(name: str) -> tuple[bool, int]:
    """With genres first, then without; recipes in RECIPES' order."""
    return name.endswith(NO_GENRES), list(RECIPES).index(name.removesuffix(NO_GENRES))


def merge_earlier(path: Path, data: dict) -> tuple[dict, list[str]]:
    """`data` with the runs it lacks taken from an earlier sitting's data file (rows, speeds, own speeds),
    and their names. The earlier study must be the same one: size, posters, holdout, n, and a real-vs-real
    floor within 1% (the same held-out posters, evaluated the same way)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"--earlier {path}: {e}")
    keys = ("size", "posters", "holdout", "n")
    differ = [f"{k} {earlier.get(k)} (now {data[k]})" for k in keys if earlier.get(k) != data[k]]
    differ += [f"floor {m} {earlier['floor'][m]:.3g} (now {data['floor'][m]:.3g})" for m in ("fd", "swd")
               if abs(earlier["floor"][m] / data["floor"][m] - 1) > 0.01]
    if differ:
        sys.exit(f"--earlier {path}: not the same study: {', '.join(differ)}")
    have = {r["run"] for r in data["rows"]}
    taken = [name for name in dict.fromkeys(r["run"] for r in earlier["rows"]) if name not in have]
    rows = [r for r in earlier["rows"] if r["run"] in taken] + data["rows"]
    rows.sort(key=lambda r: (run_order(r["run"]), r["minutes"]))
    merged = {**data, "rows": rows,
              "speeds": {**{k: earlier["speeds"][k] for k in taken}, **data["speeds"]},
              "own_img_per_s": {**{k: earlier["own_img_per_s"].get(k) for k in taken}, **data["own_img_per_s"]}}
    return merged, taken


def grids(data: dict, runs: dict[str, Path], folder: Path, path: Path) -> None:
    """The last grid of each run in the table, side by side: a run trained here gives a fresh tile (kept in
    `folder` for later sittings), an earlier one its kept tile (left out, with a note, where none was kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for name in dict.fromkeys(r["run"] for r in data["rows"]):
        kept = folder / f"{name}.jpg"
        if name in runs:
            tile(name, runs[name]).save(kept, quality=92)
        if kept.is_file():
            tiles.append(Image.open(kept).convert("RGB"))
        else:
            print(f"note: no grid kept for {name} ({kept})")
    if tiles:
        compose(tiles, path)


def write_results(args, data: dict, runs: dict[str, Path], earlier: list[str]) -> None:
    """OUT/curves.json and curves.md, the two figures, and (with --doc) the block in it, the study's data
    in its data/ folder and each run's last grid in img/curves_SIZE/."""
    (args.out / "curves.json").write_text(json.dumps(data, indent=1) + "\n")
    folder = args.doc.parent / "img" if args.doc else args.out
    curves_png, grids_jpg = folder / f"curves_{args.size}.png", folder / f"curves_grids_{args.size}.jpg"
    plot(data["rows"], data["floor"], curves_png)
    grids(data, runs, folder / f"curves_{args.size}", grids_jpg)
    command = "python benchmarks/curves.py " + shlex.join(a for a in sys.argv[1:] if a != "--reuse")  # the study's

    def block(base: Path) -> str:
        return markdown(data, earlier, (os.path.relpath(curves_png, base), os.path.relpath(grids_jpg, base)),
                        command, str(args.earlier))

    if args.recipes_json:
        write_recipes(args.recipes_json, data["rows"], data["speeds"], args.device, args.size, command)
    (args.out / "curves.md").write_text(block(args.out) + "\n")
    print(block(args.out))
    if args.doc:
        kept = args.doc.parent / "data" / f"curves_{args.size}.json"
        kept.parent.mkdir(exist_ok=True)
        kept.write_text(json.dumps(data, indent=1) + "\n")
        args.doc.write_text(replace_between(args.doc.read_text(), block(args.doc.parent)))
        print(f"wrote {args.doc}, {kept}, {curves_png}, {grids_jpg}")


def write_recipes(path: Path, rows: list[dict], speeds: dict, device: str, size: int, command: str) -> None:
    """This study's curves as postergen's recipe table (postergen/recipes.py reads it): for this device
    type, each recipe's preset and widths, speeds, and [minutes, FD over the floor, SWD over the floor]
    per run; other devices' entries are kept. Only the study's recipes (STUDY): one tried beside them
    (--recipes) is tabulated, and becomes a recipe `train` may pick once it is added to STUDY."""
    table = json.loads(path.read_text()) if path.is_file() else {}
    curves = {}
    for r in (r for r in rows if r["run"].removesuffix(NO_GENRES) in STUDY):
        curves.setdefault(r["run"], []).append([round(r["minutes"], 4), round(r["fd_floor"], 4), round(r["swd_floor"], 4)])
    recipes = {name: {"preset": RECIPES[name][device][0], "options": RECIPES[name][device][1]}
               for name in dict.fromkeys(run.removesuffix(NO_GENRES) for run in curves)}
    what = (f"{os.cpu_count()}-core CPU" if device == "cpu" else torch.cuda.get_device_name()) + f", {size} px"
    table.setdefault("devices", {})[device] = {"what": what, "command": command, "recipes": recipes,
                                               "speeds": {k: round(v, 1) for k, v in speeds.items() if k in curves},
                                               "curves": curves}
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {path}")


def parse_args():
    parser = study_parser(__doc__, out="out/curves", posters=2500, size=64, kimg=None)
    parser.add_argument("--holdout", type=float, default=20.0, help="percent of the posters held out (prepare's)")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="each run's length: the images its quiet speed shows in this many minutes")
    parser.add_argument("--recipes", default=",".join(STUDY),
                        help=f"comma-separated, from: {', '.join(RECIPES)} (default: {', '.join(STUDY)})")
    genres = parser.add_mutually_exclusive_group()
    genres.add_argument("--with-genres", action="store_true", help="only the runs with genres (default: both)")
    genres.add_argument("--no-genres", action="store_true", help="only the runs without genres (default: both)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the runs train")
    parser.add_argument("--precision", default="auto", help="train's --precision (and the speed timing's)")
    parser.add_argument("--checkpoints", type=int, default=64, help="step checkpoints per run, about")
    parser.add_argument("--keep-all", action="store_true", help="keep every step checkpoint, not just those evaluated")
    parser.add_argument("--points", type=int, default=6, help="checkpoints evaluated per run, log-spaced (x2 apart)")
    parser.add_argument("--n", type=int, default=500, help="posters per evaluation (capped at the held-out count)")
    parser.add_argument("--eval-device", default="cpu", help="evaluate's --device")
    parser.add_argument("--speeds", type=Path, default=None, help="JSON {run name: img/s} measured on a quiet machine")
    parser.add_argument("--speed-steps", type=int, default=20, help="steps timed per run in the quiet phase")
    parser.add_argument("--speed-warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--extra", default="", help="options added to every run, e.g. '--feature-res 128'")
    parser.add_argument("--doc", type=Path, default=Path("docs/training.md"),
                        help="markdown file to write the table and figures into (its img/ folder); '' for none")
    parser.add_argument("--recipes-json", type=Path, default=None,
                        help="also write the curves into this recipe table (src/postergen/recipes.json: what train "
                             "picks without --preset)")
    parser.add_argument("--reuse", action="store_true", help="keep speeds, runs, evaluations and the floor in OUT")
    parser.add_argument("--earlier", type=Path, default=None,
                        help="an earlier sitting's data (docs/data/curves_SIZE.json, which --doc writes): the runs "
                             "not in OUT are tabulated from it, so a study grows across machines")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs already in OUT, each at the length it has (with "
                             "--reuse; a study grown in parts: --minutes 60 for some runs, 15 for others)")
    args = parser.parse_args()
    if args.report_only and not args.reuse:
        sys.exit("--report-only goes with --reuse (it reads what OUT holds)")
    args.doc = args.doc if str(args.doc) not in ("", ".") else None
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        sys.exit(f"unknown recipe(s): {', '.join(unknown)}")
    if args.doc and not args.doc.is_file():
        sys.exit(f"--doc {args.doc}: no such file")
    return args


def main() -> None:
    args = parse_args()
    global REUSE
    REUSE = args.reuse
    genres = [True] if args.with_genres else [False] if args.no_genres else [True, False]
    planned = plan(args.recipes.split(","), genres, args.device)
    if args.report_only:
        for name in [name for name in planned if not (args.out / "runs" / name / "bench-train.json").is_file()]:
            print(f"note: {name} left out, not trained yet (--report-only)")
            del planned[name]
    ds = built_in_dataset(args.out, args.posters, args.size, args.holdout)
    speeds = quiet_speeds(ds, planned, args)  # first, while nothing else of this study runs
    n = min(args.n, len(real_pool(open_dataset(ds))))
    floor = real_floor(args.out, ds, n, args.eval_device)
    evaluate, runs, rows = Evaluator(ds, n, args.eval_device), {}, []
    for name, (preset, options) in planned.items():  # one run at a time: train, evaluate, prune
        runs[name] = args.out / "runs" / name
        if not args.report_only:
            train(ds, runs[name], preset, options, speeds[name], args)
        rows += [point_row(name, runs[name], result, speeds[name], floor)
                 for result in curve(runs[name], evaluate, args.points, args.keep_all)]
    data, earlier = study_data(args, rows, floor, speeds, runs, n), []
    if args.earlier:
        data, earlier = merge_earlier(args.earlier, data)
    write_results(args, data, runs, earlier)


if __name__ == "__main__":
    main()
