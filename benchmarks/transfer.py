"""Genre specialists from a few hundred posters: from scratch vs fine-tuned from a general run, with
fixed DiffAugment, adaptive augmentation (ADA) and FreezeD, judged on horror posters no run saw.

Data, all built-in posters (`postergen synth`), split by primary genre (the one whose scene a poster
shows), so no poster is in two sets:
- general: synth seed 1, every poster with no horror among its genres; the parent trains on it.
- specialist sets: synth seed 2, horror-primary posters labelled "Horror" only, prepared with
  `--holdout 10` so D's output on unseen posters is logged (d_heldout): 300 and 1000 trained on
  (the smaller set's posters are among the larger's).
- evaluation set: the next horror-primary posters of seed 2 (never trained on).

Each specialist config trains to 20k images, is evaluated, then resumes (bit-exact) to 50k and is
evaluated again: perceptual FD, SWD, precision/recall against the evaluation set, and likely copies
against its own training set. Writes OUT/results.json, OUT/results.md and the last grids.

    python benchmarks/transfer.py --out out/transfer
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import POSTERGEN, final_row, study_parser
from projected import figure

SIZES = (300, 1000)
# name -> (starts from the parent?, `postergen train` options)
CONFIGS: dict[str, tuple[bool, list[str]]] = {
    "scratch+diffaug": (False, ["--augment", "color,translation,cutout"]),
    "scratch+ada": (False, ["--augment", "ada"]),
    "finetune+ada": (True, ["--augment", "ada"]),
    "finetune+ada+freezed": (True, ["--augment", "ada", "--freeze-d", "FREEZE"]),
}
METRICS = "fd,swd,precision,recall,coverage,perceptual_diversity,diversity"
BATCH = 64
HOLDOUT = 10  # percent of each specialist set set aside for d_heldout


def run(*args: str) -> None:
    subprocess.run(POSTERGEN + list(args), check=True, stdout=subprocess.DEVNULL)


def synth(out: Path, n: int, seed: int) -> list[list[str]]:
    """OUT (made once) and its CSV rows (header first)."""
    if not (out / "MovieGenre.csv").is_file():
        run("synth", str(out), "--n", str(n), "--seed", str(seed), "--force")
    with open(out / "MovieGenre.csv", newline="", encoding="latin-1") as f:  # as Kaggle's
        return list(csv.reader(f))


def subset(src: Path, rows: list[list[str]], dest: Path, relabel: str | None = None) -> Path:
    """DEST: hard links to SRC's images of `rows` and their CSV (genres replaced by `relabel`)."""
    if (dest / "MovieGenre.csv").is_file():
        return dest
    (dest / "images").mkdir(parents=True, exist_ok=True)
    header, genre_col = rows[0], rows[0].index("Genre")
    with open(dest / "MovieGenre.csv", "w", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows[1:]:
            os.link(src / "images" / f"{r[0]}.jpg", dest / "images" / f"{r[0]}.jpg")
            w.writerow([*r[:genre_col], relabel or r[genre_col], *r[genre_col + 1:]])
    return dest


def prepare(src: Path, ds: Path, size: int, holdout: float) -> Path:
    if not (ds / "dataset.json").is_file():
        run("prepare", str(src), "-o", str(ds), "--size", str(size), "--holdout", str(holdout), "--force")
    return ds


def datasets(out: Path, size: int, general: int, specialist_pool: int) -> dict[str, Path]:
    gen_rows = synth(out / "posters-general", general, seed=1)
    spec_rows = synth(out / "posters-horror", specialist_pool, seed=2)
    keep = [r for r in gen_rows[1:] if "Horror" not in r[gen_rows[0].index("Genre")].split("|")]
    horror = [r for r in spec_rows[1:] if r[spec_rows[0].index("Genre")].split("|")[0] == "Horror"]
    total = {n: round(n / (1 - HOLDOUT / 100)) for n in SIZES}  # trained on + held out
    if len(horror) < max(total.values()) + 300:
        sys.exit(f"only {len(horror)} horror posters in {specialist_pool}; raise --pool")
    sets = {"general": subset(out / "posters-general", [gen_rows[0], *keep], out / "src-general")}
    for n in SIZES:
        sets[f"horror{n}"] = subset(out / "posters-horror", [spec_rows[0], *horror[:total[n]]],
                                    out / f"src-horror{n}", relabel="Horror")
    sets["eval"] = subset(out / "posters-horror", [spec_rows[0], *horror[max(total.values()):]], out / "src-eval",
                          relabel="Horror")
    return {name: prepare(src, out / f"ds-{name}", size, HOLDOUT if name.startswith("horror") else 0)
            for name, src in sets.items()}


def train(ds: Path, dest: Path, kimg: float, width: int, options: list[str], every: int) -> float:
    """Train DEST to `kimg` thousand images: from scratch, or on from its checkpoint (bit-exact, so a run
    taken to 20k and then to 50k is the 50k run); -> wall seconds of this call (0 when already there)."""
    if (dest / "metrics.jsonl").is_file() and final_row(dest)["kimg"] >= kimg - 0.1:
        return 0.0
    resume = (dest / "checkpoints" / "latest.pt").is_file()
    t0 = time.perf_counter()
    subprocess.run(POSTERGEN + ["train", str(ds), "-o", str(dest), "--preset", "stable", "--batch", str(BATCH),
                                "--kimg", str(kimg), "--ngf", str(width), "--ndf", str(width), "--log-every", "10",
                                "--sample-every", str(every), "--checkpoint-every", str(every), "--no-tensorboard",
                                *(["--resume"] if resume else ["--force", *options])], check=True)
    return time.perf_counter() - t0


def evaluate(dest: Path, eval_ds: Path, train_ds: Path, n: int, tag: str) -> dict:
    """Quality against the evaluation set, copies against the run's own training set."""
    quality, copies = dest / f"bench-eval-{tag}.json", dest / f"bench-copies-{tag}.json"
    if not quality.is_file():
        run("evaluate", str(dest), "--data", str(eval_ds), "--n", str(n), "--seed", "0", "--metrics", METRICS,
            "--json", str(quality))
    if not copies.is_file():
        run("evaluate", str(dest), "--data", str(train_ds), "--n", str(n), "--seed", "0", "--metrics", "copies",
            "--json", str(copies))
    m = json.loads(quality.read_text())["metrics"]
    c = json.loads(copies.read_text())["metrics"]
    return {"fd": m["fd"]["value"], "swd": m["swd"]["mean"], "precision": m["precision"]["value"],
            "recall": m["recall"]["value"], "coverage": m["coverage"]["value"],
            "perceptual_div": m["perceptual_diversity"]["ratio"], "pixel_div": m["diversity"]["ratio"],
            "copies": c["copies"]["likely_copy_share"]}


def main() -> None:
    parser = study_parser(__doc__, out="out/transfer", posters=8000, size=64, kimg=50)
    parser.add_argument("--pool", type=int, default=12000, help="seed-2 posters the horror sets come from")
    parser.add_argument("--parent-kimg", type=float, default=100)
    parser.add_argument("--first-kimg", type=float, default=20, help="the earlier evaluation point")
    parser.add_argument("--freeze-d", type=int, default=2, help="D blocks frozen in the +freezed config")
    parser.add_argument("--n", type=int, default=400, help="posters generated and real posters compared (the evaluation set has about 400)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--parent-only", action="store_true", help="train the general run and stop")
    parser.add_argument("--only-done", action="store_true", help="tabulate the finished runs; train nothing")
    args = parser.parse_args()
    ds = datasets(args.out, args.size, args.posters, args.pool)
    parent = args.out / "general"
    parent_s = train(ds["general"], parent, args.parent_kimg, args.width, [], every=390)
    print(f"parent: {final_row(parent)['kimg']:.0f} kimg ({parent_s:.0f} s this call)", flush=True)
    if args.parent_only:
        return
    results, runs = {}, {}
    for n in map(int, args.sizes.split(",")):
        for name in args.configs.split(","):
            from_parent, options = CONFIGS[name]
            options = [str(args.freeze_d) if o == "FREEZE" else o for o in options]
            options += ["--init-from", str(parent)] if from_parent else []
            dest = args.out / f"horror{n}-{name}"
            key = f"{n} posters, {name}"
            if args.only_done and not (dest / "bench-copies-last.json").is_file():
                continue
            train(ds[f"horror{n}"], dest, args.first_kimg, args.width, options, every=156)
            first = evaluate(dest, ds["eval"], ds[f"horror{n}"], args.n, "first")
            train(ds[f"horror{n}"], dest, args.kimg, args.width, options, every=156)
            last = evaluate(dest, ds["eval"], ds[f"horror{n}"], args.n, "last")
            results[key] = {"first": first, "last": last, "img_per_s": final_row(dest)["img_per_s"]}
            runs[f"{n}: {name}"] = dest
            print(key, json.dumps(results[key]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    cols = ["fd", "swd", "precision", "recall", "coverage", "pixel_div", "copies"]
    head = [f"{c} @{args.first_kimg:g}k" for c in ("fd", "swd")] + [f"{c} @{args.kimg:g}k" for c in cols]
    lines = ["| run | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for key, r in results.items():
        vals = [r["first"]["fd"], r["first"]["swd"]] + [r["last"][c] for c in cols]
        lines.append(f"| {key} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figure(runs, args.out / "grids.png", per_row=len(args.configs.split(",")))


if __name__ == "__main__":
    main()
