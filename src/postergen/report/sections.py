"""The report's sections: each reads one part of the run folder and returns an HTML fragment.

A part that is missing (no samples yet, no checkpoint, dataset moved, no evaluation) gives a
note saying so, never an error: a report of a half-finished run is still useful.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from postergen import plots
from postergen.checkpoint import check_kind, read_metrics
from postergen.data.dataset import open_dataset
from postergen.diagnose import ADVICE_MEMORISING, Finding, diagnose, heldout_gaps
from postergen.draw import genre_vectors, noise, render
from postergen.errors import UserError
from postergen.report import figures, html
from postergen.runfolder import (
    GAN_MODEL_FIELDS,
    RunFolder,
    dataset_name,
    dataset_path,
    read_config,
    run_name,
    withhold_paths,
)
from postergen.runtime import pick_device
from postergen.weights import load_generator

PROGRESSION_SHOWN = 12  # sample grids shown as stills, evenly spaced over training
ANIMATION_FRAMES = 40  # at most this many grids in the animation
ANIMATION_SIDE = 480  # px, longer side of an animation frame (keeps the HTML small)
PROGRESSION_SIDE = 540  # px, longer side of a progression still as stored ...
PROGRESSION_CSS = 360  # ... and as shown, three to a row (high-DPI screens use the extra pixels)
STILL_SIDE = 1100  # px, longer side of any other embedded grid (larger ones are shrunk)
SMALL_POSTER = 96  # px; posters shorter than this are shown at 2x, pixelated
REAL_SEED = 0  # picks the real posters shown next to generated ones
REAL_PER_ROW = 4  # posters per row in the real and generated grids
EVAL_HINT = "postergen evaluate {run} --data {data}"
EVAL_BOOKKEEPING = ("step", "n", "seed")  # numbers in eval.jsonl that are not metrics


@dataclass
class RunInfo:
    """What every section needs, read once: config, metric lines, findings, the final G (or why not)."""

    path: Path
    config: dict
    rows: list[dict]
    findings: list[Finding]
    G: torch.nn.Module | None = None
    step: int | None = None
    missing_G: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def load_run(run: Path, device: str = "cpu") -> RunInfo:
    """Read config.json (required: a folder without it is not a run) and metrics; load EMA G if any."""
    folder = RunFolder(run)
    config = read_config(run)  # every field used below is checked there
    check_kind(config, "gan", run, "postergen report")
    rows = [r for r in read_metrics(folder.metrics) if isinstance(r, dict) and "step" in r]
    info = RunInfo(run, config, rows, diagnose(rows))
    try:
        info.G, loaded = load_generator(run, ema=True, device=pick_device(device))  # 'auto' too
        info.step, info.device = loaded["step"], next(info.G.parameters()).device
    except UserError as e:  # shown in the report: the run by name, not by the path it was given as
        info.missing_G = str(e).replace(str(Path(run).resolve()), run_name(run)).replace(str(run), run_name(run))
    else:
        _check_agrees(folder, config, loaded)
    return info


def _check_agrees(folder: RunFolder, config: dict, loaded: dict) -> None:
    """The sections draw G with config.json's shape and genres: a hand-edited config.json that no longer
    matches the checkpoint would fail inside the model, so it is a one-line error naming the field."""
    def short(value) -> str:
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:56] + " ..."

    pairs = [(f"model.{k}", config["model"][k], loaded["model"].get(k)) for k in GAN_MODEL_FIELDS]
    for name, ours, theirs in pairs + [("genres", config["genres"], loaded.get("genres"))]:
        if ours != theirs:
            raise UserError(f"{folder.config}: field {name} is {short(ours)}, but {folder.latest} was trained "
                            f"with {short(theirs)}")


# ---------------------------------------------------------------------------------------------
# Header

def header(info: RunInfo) -> str:
    cfg, train = info.config, info.config["train"]
    model, genres = cfg["model"], cfg["genres"]
    last = info.rows[-1] if info.rows else {}
    step = info.step if info.step is not None else last.get("step", 0)
    speed = [r["img_per_s"] for r in info.rows if isinstance(r.get("img_per_s"), (int, float))]
    facts = [
        ("run folder", run_name(info.path)),  # by name: reports are shared, and a path tells whose files these are
        ("preset", str(train.get("preset", "?"))),
        ("image size", f"{model['width']} x {model['height']} px (W x H)"),
        ("genres", ", ".join(genres) if genres else "none (unconditional)"),
        ("steps trained", f"{step} of {train.get('steps', '?')}" + (f" ({last['kimg']:g} thousand images seen)"
                                                                    if "kimg" in last else "")),
        ("dataset", _dataset_fact(cfg.get("dataset"))),
        *([("started from", _parent(cfg["init_from"]))] if isinstance(cfg.get("init_from"), dict) else []),
        ("started", _date(RunFolder(info.path).config)),
        ("last written", _date(*_progress_files(info.path))),
    ]
    if speed:
        facts.append(("speed", f"{float(np.median(speed)):.0f} images/s (median)"))
    config_rows = [(k, value_text(withhold_paths(v))) for k, v in flatten(cfg)]
    return (f"<h1>Run {html.escape(run_name(info.path))}</h1>\n" + html.table(facts, cls="facts")
            + html.details("Full configuration (config.json)", html.table(config_rows, ("setting", "value"))))


def _parent(record: dict) -> str:
    """config.json's init_from as one line: which weights a fine-tuned run started from."""
    step = f" at step {record['step']}" if record.get("step") is not None else ""
    return f"{withhold_paths(record.get('path', '?'))}{step} (weights {record.get('weights', '?')})"


def _dataset_fact(record) -> str:
    """The dataset by name, size and fingerprint: what identifies it wherever it is now."""
    if not isinstance(record, dict):
        return "?"
    content = str(record.get("content", ""))
    return (f"{dataset_name(record)} ({record.get('count', '?')} posters"
            + (f", fingerprint {content[:23]}" if content else "") + ")")


CONTENTS = (("losses", "loss curves"), ("health", "training health"), ("progression", "sample progression"),
            ("genres", "final model"), ("real", "real and generated"), ("evaluation", "evaluation"))


def contents() -> str:
    """One line of links to the sections."""
    return "<nav>" + " &middot; ".join(f'<a href="#{a}">{t}</a>' for a, t in CONTENTS) + "</nav>"


def _progress_files(run: Path) -> list[Path]:
    folder = RunFolder(run)
    written = [p for p in (folder.metrics, folder.latest) if p.exists()]
    return written or [folder.config]


def _date(*paths: Path) -> str:
    newest = max(p.stat().st_mtime for p in paths)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(newest))


# ---------------------------------------------------------------------------------------------
# Training curves and health

def losses(info: RunInfo) -> str:
    if not info.rows:
        return html.section("losses", "Loss curves", html.para("No metrics.jsonl lines yet.", "note"))
    diverse = any("sample_diversity" in r for r in info.rows)
    text = (f"Left: the losses of G and D. {'Middle' if diverse else 'Right'}: D's average output on real "
            "posters, D(x), and on generated ones, D(G(z)); when D(x) sits at 1 and D(G(z)) at 0, D wins "
            "outright and G stops learning (shaded red, if it happened).")
    if diverse:
        text += (" Right: sample diversity, how much the fixed-noise posters of a row differ, against real "
                 "posters of that genre (1 = as varied); a fall under 0.5 and under half the run's best is mode "
                 "collapse (shaded red).")
    return html.section("losses", "Loss curves", html.para(text) + _heldout_gap(info) + html.img(
        plots.loss_plot(info.rows, info.findings), "loss curves of G and D, and D(x) / D(G(z))"))


def _heldout_gap(info: RunInfo) -> str:
    """The train-vs-held-out gap of D's output (engine/heldout.py) in words, with advice when it memorises."""
    gaps = heldout_gaps(info.rows)
    if not gaps:
        return ""
    (first, gap0, _), (last, gap1, _) = gaps[0], gaps[-1]
    text = (f"Dotted: D's output on held-out posters it never trained on, and on training posters measured the "
            f"same way (no augmentation, D in eval mode). The gap between them was {gap0:.2f} at step "
            f"{first['step']} and {gap1:.2f} at step {last['step']}; a gap that grows means D is memorising its "
            "training posters (ADA's Figure 1).")
    memorising = [f for f in info.findings if f.kind == "memorising"]
    if not memorising:
        return html.para(text)
    advice = f"D rates training posters above unseen ones: it is memorising; {ADVICE_MEMORISING}."
    return html.para(text) + html.para(advice, "warn")


def health(info: RunInfo) -> str:
    if not info.rows:
        body = html.para("Nothing to judge yet: no metric lines.", "note")
    elif not info.findings:
        body = html.para(f"Healthy: over {len(info.rows)} metric lines (steps {info.rows[0]['step']} to "
                         f"{info.rows[-1]['step']}) no sign of D overpowering G, a climbing G loss, collapse "
                         "cycles, a fall in sample diversity, D memorising its posters (with held-out ones) or NaN.",
                         "ok")
    else:
        body = "".join(html.para(f.message, "warn") for f in info.findings)
    return html.section("health", "Training health", body)


# ---------------------------------------------------------------------------------------------
# Samples

def sample_grids(run: Path) -> list[tuple[int, Path]]:
    """[(step, path)] of samples/step-NNNNNNN.png, by step."""
    found = []
    for p in RunFolder(run).samples.glob("step-*.png"):
        try:
            found.append((int(p.stem.split("-", 1)[1]), p))
        except ValueError:
            continue
    return sorted(found)


def evenly(items: list, k: int) -> list:
    """At most k items, evenly spaced, always including the first and the last."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def progression(info: RunInfo) -> str:
    grids = sample_grids(info.path)
    if not grids:
        return html.section("progression", "Sample progression", html.para("No sample grids in samples/ yet.", "note"))
    height = info.config["model"]["height"]
    stills = "".join(_still(p, height, s) for s, p in evenly(grids, PROGRESSION_SHOWN))
    shown = evenly(grids, ANIMATION_FRAMES)
    movie = figures.animation([p for _, p in shown], [f"step {s}" for s, _ in shown], ANIMATION_SIDE)
    width, small = _display(Image.open(io.BytesIO(movie)).width, height)
    intro = (f"The same fixed noise{' (one row per genre)' if info.config['genres'] else ''} rendered as training "
             f"went on: {len(grids)} grids, {min(len(grids), PROGRESSION_SHOWN)} shown, then all of them animated.")
    animated = html.img(movie, "fixed-noise samples over training", width=width, pixelated=small)
    return html.section("progression", "Sample progression",
                        html.para(intro) + stills + "<h3>Animation</h3>" + animated)


def _still(path: Path, poster_h: int, step: int) -> str:
    """A sample grid from samples/, shrunk for a row of three."""
    with Image.open(path) as image:
        data = figures.photo(image, PROGRESSION_SIDE)
    return html.img(data, f"samples at step {step}", f"step {step}", width=PROGRESSION_CSS,
                    pixelated=poster_h < SMALL_POSTER)


def _show(image: Image.Image, poster_h: int, alt: str, caption: str | None = None) -> str:
    """A generated or real grid, embedded as WebP."""
    width, small = _display(min(image.width, STILL_SIDE), poster_h)
    return html.img(figures.photo(image, STILL_SIDE), alt, caption, width=width, pixelated=small)


def _display(width: int, poster_h: int) -> tuple[int | None, bool]:
    """(CSS width, pixelated): small posters at 2x so a 32 px poster is still visible."""
    if poster_h >= SMALL_POSTER:
        return None, False
    return min(2 * width, STILL_SIDE), True


def genre_grids(info: RunInfo, sample_n: int) -> str:
    """Final (EMA) G: one row of sample_n posters per genre, the same seeds in every row."""
    title = "Final model by genre" if info.config["genres"] else "Final model"
    if info.G is None:
        return html.section("genres", title, html.para(f"No model to sample: {info.missing_G}", "note"))
    rows = genre_vectors(None, info.config["genres"])
    z_dim, height = info.config["model"]["z_dim"], info.config["model"]["height"]
    if rows[0][1] is None:
        images = render(info.G, noise(list(range(sample_n * sample_n)), z_dim).to(info.device), None, info.device)
        grid = figures.grid_image(images, sample_n)  # (sample_n x sample_n) posters
        text = f"{sample_n * sample_n} posters, seeds 0 to {sample_n * sample_n - 1}, EMA weights, step {info.step}."
    else:
        z = noise(list(range(sample_n)), z_dim).repeat(len(rows), 1)
        cond = torch.stack([vec for _, vec in rows]).repeat_interleave(sample_n, dim=0)
        images = render(info.G, z.to(info.device), cond.to(info.device), info.device)  # (genres*n, 3, H, W)
        grid = figures.label_rows(figures.grid_image(images, sample_n), [name for name, _ in rows], height + 2)
        text = (f"One row per genre; column k uses seed k in every row, so a column shows one latent "
                f"across genres. EMA weights, step {info.step}.")
    return html.section("genres", title, html.para(text) + _show(grid, height, "final model samples"))


def real_vs_generated(info: RunInfo, sample_n: int) -> str:
    title = "Real and generated posters"
    record = info.config.get("dataset", {})
    data = dataset_path(info.path, record)
    if data is None or not data.is_dir():
        return html.section("real", title, html.para(f"The dataset folder {dataset_name(record)} is gone from where "
                                                     "the run recorded it, so there are no real posters to show here.", "note"))
    try:
        ds = open_dataset(data)
    except UserError:  # its message names the path
        return html.section("real", title, html.para(f"Real posters unavailable: {dataset_name(record)} is not "
                                                     "a readable dataset folder.", "note"))
    n = min(sample_n, len(ds))
    idx = np.sort(torch.randperm(len(ds), generator=torch.Generator().manual_seed(REAL_SEED))[:n].numpy())
    real = torch.from_numpy(np.ascontiguousarray(ds.images[idx]))
    per_row = min(n, REAL_PER_ROW)
    parts = [_show(figures.grid_image(real, per_row), ds.meta["size"][0], "real posters",
                   f"{n} real posters from {data.name}")]
    if info.G is None:
        parts.append(html.para(f"No model to sample: {info.missing_G}", "note"))
    else:
        fake, how = _generated_like(info, ds, idx)
        parts.append(_show(figures.grid_image(fake, per_row), info.config["model"]["height"], "generated posters",
                           f"{n} generated posters ({how})"))
    return html.section("real", title, "".join(parts))


def _generated_like(info: RunInfo, ds, idx: np.ndarray) -> tuple[torch.Tensor, str]:
    """Generated posters for the real ones at idx: with the same genres when the genre lists agree."""
    genres = info.config["genres"]
    z = noise(list(range(len(idx))), info.config["model"]["z_dim"]).to(info.device)
    if not genres:
        return render(info.G, z, None, info.device), "unconditional"
    if genres == ds.genres:
        cond, how = torch.from_numpy(ds.labels[idx].astype(np.float32)), "the same genres as the real ones"
    else:
        cond, how = torch.eye(len(genres))[[i % len(genres) for i in range(len(idx))]], "one genre each, in turn"
    return render(info.G, z, cond.to(info.device), info.device), how


# ---------------------------------------------------------------------------------------------
# Evaluation

def evaluation(info: RunInfo) -> str:
    run, parts = info.path, []
    result = _read_json(run / "eval.json")
    if isinstance(result, dict):
        rows = [(k, value_text(v)) for k, v in flatten(withhold_paths(result))]  # older results named paths
        parts.append("<h3>Newest evaluation (eval.json)</h3>" + html.table(rows, ("metric", "value")))
    curves = eval_series(_read_jsonl(run / "eval.jsonl"))
    if curves is not None:
        parts.append("<h3>Metrics by checkpoint (eval.jsonl)</h3>" + _curves(*curves))
    images = eval_images(run, result)
    if images:
        parts.append("<h3>Evaluation images</h3>" + "".join(html.img(_photo(p), p.name, p.name) for p in images))
    if not parts:
        parts.append(html.code_note("No evaluation yet. To measure quality, diversity and copying, run ",
                                    _eval_hint(run, info.config.get("dataset")),
                                    " (add --all-checkpoints for metric curves over training)."))
    return html.section("evaluation", "Evaluation", "".join(parts))


def _eval_hint(run: Path, record) -> str:
    """The evaluate command as typed in the folder holding the run (so it names no absolute path)."""
    data = dataset_path(Path(run_name(run)), record) if isinstance(record, dict) else None
    shown = data.as_posix() if data is not None and not data.is_absolute() else "DATASET"
    return EVAL_HINT.format(run=run_name(run), data=shown)


def headline(series: dict[str, list[float]]) -> dict[str, list[float]]:
    """The curves drawn when a line has them: each metric's headline number (the metric registry's; per-genre
    values, quantiles and the rest stay in eval.jsonl), in the registry's order, when there are any; else
    all of them (older eval.jsonl)."""
    from postergen.metrics import headline_keys

    chosen = {f"metrics.{k}": series[f"metrics.{k}"] for k in headline_keys() if f"metrics.{k}" in series}
    return chosen or series


def _curves(steps: list[int], series: dict[str, list[float]]) -> str:
    """Plots of the headline metrics that change; the constant ones (often the real side) listed in words."""
    series = headline(series)
    moving = {k: v for k, v in series.items() if len(steps) < 2 or len(set(v)) > 1}
    still = [f"{k.removeprefix('metrics.')} = {value_text(v[0])}" for k, v in series.items() if k not in moving]
    parts = [html.img(plots.curves_plot(steps, {k.removeprefix("metrics."): v for k, v in moving.items()}),
                      "evaluation metrics against step")] if moving else []
    if still:
        parts.append(html.para(f"The same at every checkpoint: {'; '.join(still)}."))
    return "".join(parts)


def eval_series(rows: list[dict]) -> tuple[list[int], dict[str, list[float]]] | None:
    """eval.jsonl rows -> (steps, {metric: values}) for every numeric key but bookkeeping; None if none."""
    rows = sorted((r for r in rows if isinstance(r, dict) and _is_number(r.get("step"))), key=lambda r: r["step"])
    flat = [dict(flatten(r)) for r in rows]
    names = list(dict.fromkeys(k for f in flat for k, v in f.items() if _is_number(v) and _is_metric(k)))
    series = {k: [float(f[k]) if _is_number(f.get(k)) else math.nan for f in flat] for k in names}
    if not series:
        return None
    return [r["step"] for r in rows], series


def eval_images(run: Path, result) -> list[Path]:
    """PNGs under RUN/eval/, RUN/eval*.png, and PNG paths eval.json names that exist; each once."""
    found = sorted((run / "eval").rglob("*.png")) + sorted(run.glob("eval*.png"))
    if isinstance(result, dict):
        found += [run / v for _, v in flatten(result) if isinstance(v, str) and v.lower().endswith(".png")]
    unique = {}
    for p in found:
        if p.is_file():
            unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _photo(path: Path) -> bytes:
    with Image.open(path) as image:
        return figures.photo(image, STILL_SIDE)


def _is_metric(key: str) -> bool:
    return key not in EVAL_BOOKKEEPING and not key.startswith("seconds")


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {path.name: f"unreadable ({e})"}


def _read_jsonl(path: Path) -> list:
    return read_metrics(path) if path.is_file() else []


# ---------------------------------------------------------------------------------------------
# Values as text

def flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts -> [('a.b.c', leaf)] in file order; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        return [row for k, v in value.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    return [(prefix, value)]


def value_text(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 120 else f"{len(value)} items (see the file)"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
