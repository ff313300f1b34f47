"""`train --init-from PARENT`: a new run starts from a trained run's weights (transfer learning).

The parent is a run folder, a checkpoint or an exported generator. G, EMA G and D (where the
parent has one and the same discriminator) are copied; optimisers and the step start fresh.
Genres map by name: a genre-indexed tensor (found by building the model with two genre counts and
seeing which axes follow) gets the parent's slice for each genre both share and keeps its fresh
initialisation for a new genre; a parent's genre missing here is dropped. Where conditioning adds
input channels (an unconditional parent into a conditional run, or back), the shared leading part
is copied (z comes before the genre embedding in G's input) and the rest stays fresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from postergen.checkpoint import check_kind, load_checkpoint, run_kind, weights_fingerprint
from postergen.errors import UserError
from postergen.models import registry
from postergen.runfolder import relative_path

# Model fields that may differ between parent and child: the genres are mapped by name.
GENRE_FIELDS = ("n_genres",)


def load_parent(path: Path) -> tuple[dict, dict]:
    """-> ({"G", "G_ema", "D"} state dicts, some None; the parent's config dict)."""
    from postergen.weights import export_in, read_export

    path = Path(path)
    if not path.exists():
        raise UserError(f"--init-from {path}: no such run folder, checkpoint or export")
    path = export_in(path) or path  # an export folder: its generator
    if path.suffix == ".safetensors":
        state, config = read_export(path)
        return {"G": state, "G_ema": state, "D": None}, config  # an export is one (usually EMA) G
    ckpt = load_checkpoint(path)
    config = {**ckpt["config"], "step": ckpt.get("step")}
    check_kind(config, "gan", path, "--init-from")
    return {"G": ckpt["G"], "G_ema": ckpt.get("G_ema") or ckpt["G"], "D": ckpt.get("D")}, config


def parent_recipe(path: Path) -> tuple[str, dict]:
    """(preset, TrainConfig options) that rebuild a parent's model: what a child given no --preset
    trains, so the weights carry over (the parent's preset; stable for an export, which has none)."""
    from postergen.config import MODEL_OPTIONS

    _, config = load_parent(path)
    model = config.get("model", {})
    options = {name: model[name] for name in MODEL_OPTIONS if name in model}
    return config.get("train", {}).get("preset", "stable"), {**options, "arch": run_kind(config)[1]}


def check_compatible(parent: dict, child_model, arch: str, where: Path) -> None:
    """One line naming both values when the parent's weights cannot carry over."""
    parent_arch = run_kind(parent)[1]
    if parent_arch != arch:
        raise UserError(f"--init-from {where}: its generator is {parent_arch}, this run's {arch}")
    mine = dataclasses.asdict(child_model)
    for field, value in parent["model"].items():
        if field in GENRE_FIELDS or field == "discriminator" or field not in mine or mine[field] == value:
            continue
        raise UserError(f"--init-from {where}: its model.{field} is {value}, this run's {mine[field]}; "
                        f"give the same --{field.replace('_', '-')} (or start without --init-from)")


def genre_axes(arch: str, model_cfg) -> tuple[dict[str, int], dict[str, int]]:
    """{tensor name: its genre axis} for G and for D: the axes whose size follows the genre count."""
    def shapes(n: int) -> list[dict[str, tuple]]:
        with torch.random.fork_rng():  # probing draws weights: the run's RNG must not move
            G, D = registry.get(arch, kind="gan").build(dataclasses.replace(model_cfg, n_genres=n))
        return [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in (G, D)]

    out = []
    for two, three in zip(shapes(2), shapes(3)):
        axes = {}
        for key, a in two.items():
            b = three.get(key)
            diff = [i for i, (x, y) in enumerate(zip(a, b or ())) if (x, y) == (2, 3)]
            if b is not None and len(diff) == 1:
                axes[key] = diff[0]
        out.append(axes)
    return out[0], out[1]


def carry(module: nn.Module, parent: dict, axes: dict[str, int], genres: list[str],
          parent_genres: list[str]) -> int:
    """Copy the parent's tensors into `module` (see the module doc); -> how many stayed fresh or partly so."""
    state, fresh = module.state_dict(), 0
    shared = [(genres.index(g), parent_genres.index(g)) for g in genres if g in parent_genres]
    for key, mine in state.items():
        theirs = parent.get(key)
        if theirs is None or theirs.dim() != mine.dim():
            fresh += 1
            continue
        theirs = theirs.to(mine.dtype)
        if key in axes and theirs.shape[axes[key]] == len(parent_genres):
            for j, i in shared:
                mine.select(axes[key], j).copy_(theirs.select(axes[key], i))
            continue
        if theirs.shape == mine.shape:
            mine.copy_(theirs)
            continue
        lead = tuple(slice(0, min(a, b)) for a, b in zip(mine.shape, theirs.shape))
        mine[lead].copy_(theirs[lead])  # conditioning changed an input width: the shared part
        fresh += 1
    module.load_state_dict(state)
    return fresh


def init_from(path: Path, models, model_cfg, arch: str, genres: list[str], run: Path | None = None) -> tuple[dict, str]:
    """Load PARENT into the new run's G, EMA G and D -> (config.json's init_from record, one line). The
    record names the parent relative to `run` (or by its name), never by an absolute path."""
    states, parent = load_parent(path)
    check_compatible(parent, model_cfg, arch, path)
    g_axes, d_axes = genre_axes(arch, model_cfg)
    parent_genres = list(parent.get("genres") or [])
    fresh = carry(models.G, states["G"], g_axes, genres, parent_genres)
    if models.G_ema is not None:
        carry(models.G_ema, states["G_ema"], g_axes, genres, parent_genres)
    same_d = states["D"] is not None and parent["model"].get("discriminator", "dcgan") == model_cfg.discriminator
    if same_d:
        fresh += carry(models.D, states["D"], d_axes, genres, parent_genres)
    kept = [g for g in genres if g in parent_genres]
    line = (f"init from {path}: G{', EMA G' if models.G_ema is not None else ''}"
            f"{' and D' if same_d else ' (D starts fresh: ' + ('an export has none' if states['D'] is None else 'another discriminator') + ')'}"
            f"; genres: {len(kept)} kept, {len(genres) - len(kept)} new, "
            f"{len([g for g in parent_genres if g not in genres])} of the parent's dropped"
            + (f"; {fresh} tensors start fresh or partly fresh (conditioning differs)" if fresh else ""))
    shown = (relative_path(path, run) if run is not None else None) or Path(path).name
    record = {"path": shown, "weights": weights_fingerprint(states["G"]), "arch": run_kind(parent)[1],
              "genres": parent_genres, "step": parent.get("step")}
    return record, line
