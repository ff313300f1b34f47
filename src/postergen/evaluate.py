"""Run folder (or a folder of images) + dataset -> quality, diversity, copying and genre metrics:
RUN/eval.json (+ eval.jsonl curves), or any JSON file (`json_path`).

The generated and the real sets hold the same number of posters (n, capped at the dataset size).
Generated poster i comes from seed `seed + i`, so `postergen sample --seed` can redraw any of them;
conditional runs draw each poster's genres as the label row of a random real poster, so the
generated set follows the dataset's genre mix. `evaluate_images` takes any generator's posters
from a folder instead, decoded and resized as `prepare` made the dataset.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from postergen import __version__
from postergen.data.dataset import PosterDataset, open_dataset
from postergen.data.decode import decode_image
from postergen.data.ingest import PrepareConfig
from postergen.draw import noise, render
from postergen.errors import UserError
from postergen.files import write_atomic
from postergen.metrics import MetricInputs, default_metrics, get_metric
from postergen.metrics.copies import save_histogram
from postergen.metrics.memorization import save_pairs
from postergen.metrics.perceptual import PerceptualConfig
from postergen.runfolder import RunFolder, run_name
from postergen.runtime import pick_device
from postergen.weights import load_generator

DEFAULT_METRICS = tuple(default_metrics())  # the registry's default set as imported; evaluate asks it anew
NEAREST_PNG = "eval_nearest.png"
DISTANCES_PNG = "eval_nn_distances.png"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------------------------
# Inputs

def checkpoints_to_evaluate(run: Path, all_checkpoints: bool) -> list[Path]:
    """The newest checkpoint, or every step checkpoint oldest first; a run without any is a user error."""
    folder = RunFolder(run)
    if not folder.path.is_dir():
        raise UserError(f"{run}: no such run folder")
    steps = folder.step_checkpoints()
    if all_checkpoints and steps:
        return [steps[s] for s in sorted(steps)]
    if folder.latest.is_file():
        return [folder.latest]
    if steps:
        return [steps[max(steps)]]
    raise UserError(f"{run}: no checkpoints in {folder.checkpoints} (train first)")


def check_compatible(config: dict, ds: PosterDataset, run: Path) -> None:
    """The dataset must hold posters of the run's size and, for a conditional run, the same genres."""
    model_hw = (config["model"]["height"], config["model"]["width"])
    data_hw = tuple(ds.meta["size"])
    if model_hw != data_hw:
        raise UserError(f"{ds.path}: posters are {data_hw[1]}x{data_hw[0]} px but {run} generates "
                        f"{model_hw[1]}x{model_hw[0]} px (W x H); evaluate against a dataset of the run's size")
    if config["genres"] and config["genres"] != ds.genres:
        raise UserError(f"{ds.path}: genres {','.join(ds.genres) or 'none'} differ from the run's "
                        f"{','.join(config['genres'])}")


def real_pool(ds: PosterDataset) -> np.ndarray:
    """The posters the real set is drawn from: the held-out ones (`prepare --holdout`, never trained on)
    when there are at least 2, else every poster."""
    return ds.held_out if len(ds.held_out) >= 2 else np.arange(len(ds), dtype=np.int64)


def real_posters(ds: PosterDataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n distinct random posters of real_pool(ds) -> (uint8 (n, 3, H, W), their dataset indices (n,)), in index order."""
    pool = torch.from_numpy(real_pool(ds))
    idx = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]].sort().values
    return torch.from_numpy(np.ascontiguousarray(ds.images[idx.numpy()])), idx


def image_files(folder: Path) -> list[Path]:
    """PNG and JPEG files under `folder` (recursively), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--images {folder}: no PNG or JPEG files")
    return files


def load_images(folder: Path, ds: PosterDataset, limit: int) -> tuple[torch.Tensor, list[str], list[dict]]:
    """The first `limit` images of `folder` that decode -> (uint8 (M, 3, H, W) resized as `prepare` made the
    dataset, their paths relative to the folder, skipped [{path, reason}])."""
    H, W = ds.meta["size"]
    settings = ds.meta.get("prepare") or {}
    cfg = PrepareConfig(size=W, aspect=settings.get("aspect", "1:1" if H == W else "2:3"),
                        fit=settings.get("fit", "crop"), min_side=1)
    images, names, skipped = [], [], []
    for path in image_files(folder):
        if len(images) == limit:
            break
        rel = path.relative_to(folder).as_posix()
        try:
            status, detail, pixels = decode_image(path.read_bytes(), cfg)
        except OSError as e:
            status, detail, pixels = "unreadable", str(e), None
        if pixels is None or pixels.shape != (3, H, W):
            skipped.append({"path": rel, "reason": f"{status}: {detail}" if detail else status})
            continue
        images.append(torch.from_numpy(pixels.copy()))  # decode_image returns a read-only view
        names.append(rel)
    if len(images) < 2:
        raise UserError(f"--images {folder}: {len(images)} image(s) decoded; evaluating needs at least 2")
    return torch.stack(images), names, skipped


def condition_rows(ds: PosterDataset, n: int, seed: int) -> torch.Tensor:
    """(n, G) float: label rows of random real posters (with replacement), i.e. the dataset's genre mix."""
    idx = torch.randint(len(ds), (n,), generator=torch.Generator().manual_seed(seed + 1))
    return torch.from_numpy(ds.labels[idx.numpy()].astype(np.float32))


def generate_posters(G: nn.Module, z: torch.Tensor, genres: torch.Tensor | None, device: torch.device,
                     batch: int = 512) -> torch.Tensor:
    """z (N, z_dim), genres (N, G) or None -> uint8 (N, 3, H, W) on the CPU, `batch` at a time."""
    parts = []
    for i in range(0, len(z), batch):
        cond = None if genres is None else genres[i:i + batch].to(device)
        parts.append(render(G, z[i:i + batch].to(device), cond, device))
    return torch.cat(parts)


def generator_fn(G: nn.Module, z_dim: int, device: torch.device) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """-> generate(genres (M, G), seed) -> uint8 (M, 3, H, W), poster i from seed + i (for the genre metric)."""
    def generate(genres: torch.Tensor, seed: int) -> torch.Tensor:
        return generate_posters(G, noise(list(range(seed, seed + len(genres))), z_dim), genres, device)
    return generate


# ---------------------------------------------------------------------------------------------
# Evaluation

def real_set(ds: PosterDataset) -> str:
    """Where the real posters come from, as results name it: "held-out" or "all"."""
    return "held-out" if len(real_pool(ds)) < len(ds) else "all"


def real_inputs(ds: PosterDataset, n: int, shared: dict) -> dict:
    """The real side of every comparison: n random posters, their dataset indices and genre labels."""
    real, idx = real_posters(ds, n, shared["seed"])
    return {"real": real, "real_index": idx, "real_genres": torch.from_numpy(ds.labels[idx.numpy()].astype(np.float32)),
            "dataset": ds, "seed": shared["seed"], "device": shared["device"],
            "inception_weights": shared["inception_weights"], "cache": shared["cache"],
            "progress": shared["progress"], "perceptual": shared["perceptual"], "feature_cache": shared["feature_cache"]}


def run_metrics(inputs: MetricInputs, names: list[str], configs: dict, seconds: dict, echo) -> dict:
    """Each named metric on `inputs`, timed into `seconds` -> {name: result}."""
    metrics = {}
    for name in names:
        metric = get_metric(name)
        t0 = time.perf_counter()
        metrics[name] = metric.fn(inputs, configs.get(name) or metric.config())
        seconds[name] = time.perf_counter() - t0
        echo(f"  {name:<20} {seconds[name]:7.1f} s")
    return metrics


def evaluate_checkpoint(path: Path, ds: PosterDataset, run: Path, real: dict, names: list[str],
                        configs: dict, shared: dict) -> tuple[dict, torch.Tensor]:
    """One checkpoint -> (result dict, generated posters (n, 3, H, W) uint8).

    `real` is real_inputs(); `shared` carries the seed, device, weights path and the real-side cache
    across checkpoints.
    """
    G, config = load_generator(path, ema=True, device=str(shared["device"]))
    check_compatible(config, ds, run)
    n, seed, device = len(real["real"]), shared["seed"], shared["device"]
    z_dim = config["model"]["z_dim"]
    conditional = bool(config["genres"])
    seconds = {}
    t0 = time.perf_counter()
    genres = condition_rows(ds, n, seed) if conditional else None
    fake = generate_posters(G, noise(list(range(seed, seed + n)), z_dim), genres, device)
    seconds["generate"] = time.perf_counter() - t0
    inputs = MetricInputs(**real, fake=fake, genres=config["genres"], fake_genres=genres,
                          fake_names=[f"seed{seed + i}" for i in range(n)],
                          generate=generator_fn(G, z_dim, device) if conditional else None)
    metrics = run_metrics(inputs, names, configs, seconds, shared["echo"])
    # named, never by path: eval.json travels with the run and is served by the studio
    result = {"postergen": __version__, "run": run_name(run), "weights": config["weights"], "data": ds.path.resolve().name,
              "checkpoint": path.name, "step": config["step"],
              "n": n, "real_set": real_set(ds), "seed": seed, "size": list(ds.meta["size"]), "metrics": metrics, "seconds": seconds}
    return _jsonable(result), fake


def prepare_evaluation(data: Path, n: int, seed: int, metrics: list[str] | None, inception_weights: Path | None,
                       device: str, perceptual: PerceptualConfig | None, feature_cache: bool, progress: bool,
                       echo) -> tuple[PosterDataset, int, list[str], dict]:
    """Checks shared by runs and image folders -> (dataset, n capped at its size, metric names, shared state)."""
    names = list(metrics or default_metrics())
    for name in names:
        get_metric(name)  # unknown names fail before any work
    ds = open_dataset(data)
    if len(ds) < 2:
        raise UserError(f"{ds.path}: {len(ds)} poster(s); evaluating needs at least 2 real posters")
    n = min(n, len(real_pool(ds)))
    if n < 2:
        raise UserError(f"--n must be at least 2 posters per set (got {n})")
    shared = {"seed": seed, "device": pick_device(device), "inception_weights": inception_weights,
              "cache": {}, "progress": progress, "echo": echo, "perceptual": perceptual or PerceptualConfig(),
              "feature_cache": feature_cache}
    return ds, n, names, shared


def evaluate(run: Path, data: Path, n: int = 10000, seed: int = 0, metrics: list[str] | None = None,
             all_checkpoints: bool = False, inception_weights: Path | None = None, device: str = "cpu",
             configs: dict | None = None, progress: bool = False, json_path: Path | None = None,
             perceptual: PerceptualConfig | None = None, feature_cache: bool = True,
             echo: Callable[[str], None] = lambda line: None) -> dict:
    """Evaluate the newest checkpoint of `run` (or every one) against `data`; write RUN/eval.json.

    n: posters per set (generated and real), capped at the dataset size. metrics: names from
    postergen.metrics.METRICS (None = its default set, metrics.default_metrics()). all_checkpoints: also record one
    JSON line per step checkpoint in RUN/eval.jsonl (metric-vs-step curves; see record_curve_point).
    configs: per-metric config objects by name, replacing that metric's defaults. json_path: also
    write the result there. perceptual: the feature space's settings (None: Lite2 at 260 px).
    feature_cache: keep the dataset's features beside it. echo: receives progress lines.
    Returns the newest checkpoint's result (as written to eval.json).
    """
    run = Path(run)
    paths = checkpoints_to_evaluate(run, all_checkpoints)
    ds, n, names, shared = prepare_evaluation(data, n, seed, metrics, inception_weights, device, perceptual,
                                              feature_cache, progress, echo)
    real = real_inputs(ds, n, shared)
    for path in paths:
        echo(f"evaluating {path} on {n} posters")
        result, fake = evaluate_checkpoint(path, ds, run, real, names, configs or {}, shared)
        if all_checkpoints:
            record_curve_point(run / "eval.jsonl", result)
    result = save_pictures(result, fake, ds, run / NEAREST_PNG, run / DISTANCES_PNG)
    write_atomic(run / "eval.json", json.dumps(result, indent=2) + "\n")
    if json_path is not None:
        write_atomic(Path(json_path), json.dumps(result, indent=2) + "\n")
    return result


def evaluate_images(images: Path, data: Path, n: int = 10000, seed: int = 0, metrics: list[str] | None = None,
                    json_path: Path | None = None, inception_weights: Path | None = None, device: str = "cpu",
                    configs: dict | None = None, progress: bool = False, perceptual: PerceptualConfig | None = None,
                    feature_cache: bool = True, echo: Callable[[str], None] = lambda line: None) -> dict:
    """Evaluate any generator's posters: up to n PNG/JPEG files of `images` (sorted by path) against as
    many random posters of `data`, with the same metrics (genre fidelity needs a generator: skipped).
    Likely copies are listed by file name. json_path: write the result there, with the pictures beside it.
    """
    ds, n, names, shared = prepare_evaluation(data, n, seed, metrics, inception_weights, device, perceptual,
                                              feature_cache, progress, echo)
    t0 = time.perf_counter()
    fake, files, skipped = load_images(Path(images), ds, n)
    seconds = {"load": time.perf_counter() - t0}
    echo(f"evaluating {len(fake)} images of {images} ({len(skipped)} skipped)")
    real = real_inputs(ds, min(n, len(fake)), shared)
    inputs = MetricInputs(**real, fake=fake, genres=ds.genres, fake_names=files)  # fake_genres unknown: no per-genre
    metrics_out = run_metrics(inputs, names, configs or {}, seconds, echo)
    result = _jsonable({"postergen": __version__, "images": Path(images).resolve().name, "data": ds.path.resolve().name,
                        "n": len(real["real"]), "generated": len(fake),
                        "real_set": real_set(ds), "seed": seed, "size": list(ds.meta["size"]), "skipped": skipped,
                        "metrics": metrics_out, "seconds": seconds})
    if json_path is not None:
        json_path, nearest, distances = json_files(json_path)
        result = save_pictures(result, fake, ds, nearest, distances)
        write_atomic(json_path, json.dumps(result, indent=2) + "\n")
    return result


def json_files(json_path: Path) -> list[Path]:
    """What `--json PATH` writes for --images: the JSON and, beside it, its two pictures."""
    stem = Path(json_path).with_suffix("")
    return [Path(json_path), Path(f"{stem}_nearest.png"), Path(f"{stem}_nn_distances.png")]


def save_pictures(result: dict, fake: torch.Tensor, ds: PosterDataset, nearest_png: Path, distances_png: Path) -> dict:
    """The closest generated/training pairs side by side, and the copy distance histogram; their file names (the
    JSON sits beside them) join the result."""
    found = result["metrics"].get("copies") or result["metrics"].get("memorization")
    if isinstance(found, dict) and found.get("closest"):
        save_pairs(fake, ds.images, found["closest"], nearest_png)
        result = {**result, "nearest_pairs_png": nearest_png.name}
    copies = result["metrics"].get("copies")
    if isinstance(copies, dict) and "histogram" in copies:
        save_histogram(copies, distances_png)
        result = {**result, "nn_distances_png": distances_png.name}
    return result


def record_curve_point(path: Path, result: dict) -> None:
    """One line per checkpoint step in eval.jsonl. Evaluating a step again updates its line: with the
    same n and seed the metrics merge (swd now, fid later: one point with both), otherwise the new
    result replaces it. Lines that do not parse are kept as they are; the file is rewritten atomically."""
    lines = path.read_text().splitlines() if path.is_file() else []
    out, placed = [], False
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(row, dict) or row.get("step") != result["step"]:
            out.append(line)
        elif not placed:
            if (row.get("n"), row.get("seed")) == (result["n"], result["seed"]):
                result = {**result, "metrics": {**row.get("metrics", {}), **result["metrics"]},
                          "seconds": {**row.get("seconds", {}), **result["seconds"]}}
            out.append(json.dumps(result))
            placed = True
    if not placed:
        out.append(json.dumps(result))
    write_atomic(path, "".join(line + "\n" for line in out))


def _jsonable(value):
    """Non-finite floats become null: eval.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Printing

def _rows(prefix: str, value) -> list[tuple[str, str]]:
    """Flatten one metric's dict to (name, text) rows; lists and histograms stay in the JSON, a per-genre
    dict is one row."""
    if isinstance(value, dict):
        if "skipped" in value:
            return [(prefix, f"skipped: {value['skipped']}")]
        if prefix.endswith(" per_genre"):
            return [(prefix, ", ".join(f"{g} {_short(v)}" for g, v in value.items()))]
        return [row for k, v in value.items() if k != "histogram" for row in _rows(f"{prefix} {k}", v)]
    if isinstance(value, list):
        return [(prefix, f"{len(value)} listed in the JSON")]
    if isinstance(value, bool):
        return [(prefix, "yes" if value else "no")]
    if isinstance(value, float):
        return [(prefix, f"{value:.4g}")]
    return [(prefix, "-" if value is None else str(value))]


def _short(value) -> str:
    if isinstance(value, dict) and {"mean", "std"} <= value.keys():
        return f"{value['mean']:.4g}±{value['std']:.2g}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _real_words(result: dict) -> str:
    return "held-out real" if result.get("real_set") == "held-out" else "real"


def format_table(result: dict) -> str:
    """A result of `evaluate` or `evaluate_images` -> an aligned two-column table with a heading line and timings."""
    rows = [row for name, value in result["metrics"].items() for row in _rows(name, value)]
    width = max((len(name) for name, _ in rows), default=10)
    H, W = result["size"]
    if "images" in result:
        lines = [f"{result['images']}: {result['generated']} images vs {result['n']} {_real_words(result)} {W}x{H} posters "
                 f"(seed {result['seed']}; {len(result['skipped'])} files skipped)"]
    else:
        lines = [f"{result['run']} step {result['step']}: {result['n']} generated vs {result['n']} {_real_words(result)} "
                 f"{W}x{H} posters (seed {result['seed']})"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    if result.get("nearest_pairs_png"):
        lines.append(f"  nearest pairs: {result['nearest_pairs_png']}")
    if result.get("nn_distances_png"):
        lines.append(f"  nearest-distance histogram: {result['nn_distances_png']}")
    return "\n".join(lines)
