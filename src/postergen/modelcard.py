"""`postergen export`: a run's generator as something a person can publish: the weights as
safetensors and, beside them, a model card (README.md) in the shape model hubs show: YAML front
matter, then what the generator is, how it was trained, how it measured, whether it copies, and the
caution the seed project raised about generated posters.

The card names the run by its folder name and the weights by their fingerprint, never by a path.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from postergen import weights
from postergen.checkpoint import read_metrics
from postergen.files import CARD_MARK, write_atomic
from postergen.metrics import headline_keys
from postergen.runfolder import RunFolder, dataset_name

CARD = "README.md"  # what hubs show as a model's page


def export_paths(out: Path) -> tuple[Path, Path]:
    """-o OUT -> (weights file, model card): NAME.safetensors is the weights with README.md beside it;
    any other name is an export folder holding generator.safetensors and README.md."""
    out = Path(out)
    if out.suffix == ".safetensors":
        return out, out.parent / CARD
    return out / weights.EXPORT_FILE, out / CARD


def export(run: Path, out: Path, ema: bool = True) -> dict:
    """Write the generator of `run` (a run folder, checkpoint or export) and its model card -> the
    export's metadata, with the two paths written."""
    weights_file, card_file = export_paths(out)
    meta = weights.export(run, weights_file, ema=ema)  # looked up at call time: tests replace it
    shown = Path(out).name if weights_file.name == weights.EXPORT_FILE else weights_file.name  # what to sample
    write_atomic(card_file, model_card(meta, weights_file.name, shown, _run_folder(Path(run))))
    return {**meta, "file": weights_file, "card": card_file}


def _run_folder(path: Path) -> Path | None:
    """The run folder `path` is or sits in (a checkpoint in RUN/checkpoints/); None for an export."""
    for folder in (path, path.parent.parent):
        if RunFolder(folder).config.is_file():
            return folder
    return None


def model_card(meta: dict, file_name: str, shown: str, run: Path | None) -> str:
    """README.md for an export: front matter, then the model, its training, evaluation, copies, caution.
    file_name: the weights' file; shown: what `postergen sample` is given (the export folder or file)."""
    config, rows, result = _read_run(run)
    parts = [_front_matter(meta), _about(meta, file_name, shown), _training(meta, config, rows),
             _evaluation(meta, result), _copies(result), CAUTION]
    return "\n".join(parts)


def _read_run(run: Path | None) -> tuple[dict, list[dict], dict]:
    """config.json, metric lines and eval.json of the run, each empty when missing or unreadable."""
    if run is None:
        return {}, [], {}
    folder = RunFolder(run)
    loaded = []
    for path in (folder.config, folder.eval_json):
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            value = {}
        loaded.append(value if isinstance(value, dict) else {})
    return loaded[0], read_metrics(folder.metrics), loaded[1]  # [] when the run has no metrics.jsonl


def _front_matter(meta: dict) -> str:
    tags = ["postergen", "gan", meta["arch"], "image-generation", "movie-posters",
            "genre-conditional" if meta["genres"] else "unconditional"]
    return "\n".join(["---", CARD_MARK,
                      "license: unknown  # fill in the license you share these weights under",
                      "pipeline_tag: unconditional-image-generation", "tags:", *[f"- {t}" for t in tags],
                      "---", ""])


def _about(meta: dict, file_name: str, shown: str) -> str:
    model, genres = meta["model"], meta["genres"]
    kind = f"conditioned on {len(genres)} genres" if genres else "without genre control"
    return "\n".join([
        f"# {meta['run']}: a movie poster generator", "",
        f"A GAN generator trained with postergen {meta['postergen']}: "
        f"it draws {model['width']}x{model['height']} px movie posters from a {model['z_dim']}-number noise "
        f"vector, {kind}. Every poster it draws is AI-generated, not a real film's poster.", "",
        "| | |", "|---|---|",
        f"| architecture | `{meta['arch']}` generator{' (EMA weights)' if meta.get('ema') else ''}, "
        f"{meta.get('parameters', 0):,} parameters |",
        f"| image size | {model['width']} x {model['height']} px (W x H) |",
        f"| genres | {', '.join(genres) if genres else 'none (unconditional)'} |",
        f"| weights | `{file_name}` (safetensors; its config is in the file's metadata), fingerprint "
        f"`{meta['weights']}` |", "",
        "## Use", "", "With postergen installed (its README says how):", "", "```",
        f"postergen sample {shown} -o posters"
        + (f" --genre {shlex.quote(genres[0])}" if genres else ""),
        "```", "",
        "`postergen serve` on the folder opens it in the studio. Every PNG postergen writes carries its "
        "provenance (this model's run name and fingerprint, seed, genres); `postergen info POSTER.png` prints it.", ""])


def _training(meta: dict, config: dict, rows: list[dict]) -> str:
    step, train = meta["step"], config.get("train") if isinstance(config.get("train"), dict) else {}
    seen = next((r.get("kimg") for r in reversed(rows) if r.get("step") == step), None)
    lines = ["## Training", "", "| | |", "|---|---|", f"| steps | {step if step is not None else 'unknown'}"
             + (f" of {train['steps']}" if isinstance(train.get("steps"), int) else "") + " |"]
    if isinstance(seen, (int, float)):
        lines.append(f"| images seen | {seen * 1000:,.0f} |")
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    for key, value in (("preset", train.get("preset")), ("batch", train.get("batch")),
                       ("discriminator", model.get("discriminator"))):
        if value is not None:
            lines.append(f"| {key} | {value} |")
    data = config.get("dataset")
    if isinstance(data, dict):
        content = str(data.get("content", ""))[:23]
        lines.append(f"| trained on | `{dataset_name(data)}`: {data.get('count', '?')} posters"
                     + (f" (fingerprint `{content}`)" if content else "") + " |")
    if not config:
        lines.append("| run | not found beside the weights: exported from an export |")
    return "\n".join(lines + [""])


def _evaluation(meta: dict, result: dict) -> str:
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    rows = []
    for key in headline_keys():
        name, _, field = key.partition(".")
        value = metrics.get(name, {}).get(field) if isinstance(metrics.get(name), dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append(f"| {name}{'' if field == 'value' else f' ({field})'} | {value:.4g} |")
    if not rows:
        return "## Evaluation\n\nNot evaluated yet: `postergen evaluate RUN --data DATASET` measures quality, " \
               "variety and copying, and the next export shows the results here.\n"
    when = result.get("step")
    note = "" if when == meta["step"] else f" (these weights are from step {meta['step']})"
    return "\n".join(["## Evaluation", "", f"`postergen evaluate` at step {when} on {result.get('n', '?')} generated "
                      f"and as many real posters{note}; what each number means: postergen's docs/evaluation.md.", "",
                      "| metric | value |", "|---|---|", *rows, ""])


def _copies(result: dict) -> str:
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    copies = metrics.get("copies") if isinstance(metrics.get("copies"), dict) else {}
    if "likely_copy_share" not in copies:
        return "## Copies of training posters\n\nNot checked: `postergen evaluate` (its `copies` metric) " \
               "looks for generated posters that copy a training poster.\n"
    share, expected = copies["likely_copy_share"], copies.get("expected_share", 0.01)
    return "\n".join(["## Copies of training posters", "",
                      f"{copies.get('likely_copy_count', '?')} of {result.get('n', '?')} generated posters "
                      f"({share:.1%}) lie nearer a training poster than held-out real posters do; fresh posters "
                      f"would give about {expected:.1%}. A share well above that means the generator copies.", ""])


CAUTION = """## Caution: generated art and copyright

The posters this generator draws are AI-generated. It learned from real movie posters, which are
copyrighted works, and a generated poster may closely resemble one of them: check posters before
you publish them (`postergen evaluate` lists likely copies), say that they are AI-generated, and do
not present them as real films' posters. The PNG files postergen writes say so in their metadata.
"""
