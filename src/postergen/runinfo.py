"""`postergen info RUN`: a run folder in a few lines, from its config.json and newest checkpoint.

Names and paths come from files a person may have edited: they are printed escaped (files.shown), as
`info DATASET` prints genre names.
"""

from __future__ import annotations

from pathlib import Path

from postergen.checkpoint import load_checkpoint, run_kind
from postergen.errors import UserError
from postergen.files import shown
from postergen.runfolder import RunFolder, dataset_name, read_config

PATH_SHOWN = 200  # characters of a path before it is cut


def describe_run(run: Path) -> str:
    """Human summary of a gan or sr run folder: what it is, how far it trained, on what, from what."""
    config = read_config(run)
    kind, arch = run_kind(config)
    train, model = config.get("train") or {}, config["model"]
    lines = [f"run       {shown(run, PATH_SHOWN)}"]
    if kind == "gan":
        d = model.get("discriminator", "dcgan")
        lines.append(f"model     {shown(arch)} generator, {shown(d)} D; preset {shown(train.get('preset', '?'))}"
                     + (f", --freeze-d {train['freeze_d']}" if train.get("freeze_d") else ""))
        lines.append(f"image     {model['width']}x{model['height']} px (W x H)")
        genres = [shown(g) for g in config["genres"]]
        lines.append(f"genres    {len(genres)}: {', '.join(genres)}" if genres else "genres    none (unconditional)")
    else:
        lines.append(f"model     {kind} run, {shown(arch)}, x{model.get('scale', '?')}")
    lines.append(_progress(run, train))
    lines.append(_dataset(config.get("dataset")))
    if isinstance(config.get("init_from"), dict):
        lines.append(_parent(config["init_from"]))
    return "\n".join(lines)


def _progress(run: Path, train: dict) -> str:
    """Steps and images seen at the newest checkpoint (latest.pt)."""
    folder = RunFolder(run)
    if not folder.latest.is_file():
        return f"trained   no checkpoint yet ({train.get('steps', '?')} steps planned)"
    try:
        state = load_checkpoint(folder.latest)
    except UserError as e:
        return f"trained   unknown: {e}"
    step, world = state.get("step", 0), state.get("world_size", 1)
    batch = state.get("config", {}).get("train", {}).get("batch")
    seen = f", {step * batch * world / 1000:g} thousand images seen" if isinstance(batch, int) else ""
    return f"trained   step {step} of {train.get('steps', '?')}{seen} (checkpoints/{folder.LATEST})"


def _dataset(record) -> str:
    if not isinstance(record, dict):
        return "dataset   not recorded"
    facts = [f"{record.get('count', '?')} posters"]
    if record.get("held_out"):
        facts.append(f"{record['held_out']} held out")
    if isinstance(record.get("path"), str):
        facts.append(f"at {shown(record['path'], PATH_SHOWN)} from the run")
    if isinstance(record.get("content"), str):
        facts.append(f"content {shown(record['content'][:19])}")  # 'sha256:' + 12 hex digits
    return f"dataset   {shown(dataset_name(record))} ({', '.join(facts)})"


def _parent(record: dict) -> str:
    """config.json's init_from (engine/transfer.py): the run this one was fine-tuned from."""
    step = f" at step {record['step']}" if isinstance(record.get("step"), int) else ""
    genres = record.get("genres")
    known = f", {len(genres)} genres" if isinstance(genres, list) else ""
    weights = shown(record.get("weights", "?"))
    path = record.get("path")
    where = f"{shown(path, PATH_SHOWN)} (from the run)" if isinstance(path, str) and not Path(path).is_absolute() \
        else shown(path if isinstance(path, str) else "?", PATH_SHOWN)
    return (f"init from {where}{step} (weights {weights}, "
            f"{shown(record.get('arch', '?'))}{known})")


def describe_export(path: Path) -> str:
    """Human summary of an exported generator (a .safetensors file), from its metadata alone."""
    from postergen.weights import export_config

    meta = export_config(path)
    model, genres = meta["model"], [shown(g) for g in meta.get("genres") or []]
    params = meta.get("parameters")
    lines = [f"export    {shown(path, PATH_SHOWN)} (postergen {shown(meta.get('postergen', '?'))})",
             f"model     {shown(meta.get('arch', '?'))} generator, {'EMA' if meta.get('ema') else 'raw'} weights"
             + (f", {params:,} parameters" if isinstance(params, int) else ""),
             f"image     {model['width']}x{model['height']} px (W x H)",
             f"genres    {len(genres)}: {', '.join(genres)}" if genres else "genres    none (unconditional)",
             f"trained   step {meta.get('step', '?')} in run {shown(meta.get('run', '?'), PATH_SHOWN)}"
             + (f", weights {shown(meta['weights'])}" if isinstance(meta.get("weights"), str) else "")]
    return "\n".join(lines)
