"""Generator weights in every form postergen reads: run folders and checkpoints, exported
safetensors, and state_dicts saved by PyTorch's DCGAN example/tutorial (`torch.save(netG.state_dict())`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch
from torch import nn

from postergen import __version__
from postergen.checkpoint import check_kind, load_checkpoint, run_kind, weights_fingerprint
from postergen.config import ModelConfig
from postergen.errors import UserError
from postergen.models import registry
from postergen.runfolder import RunFolder, check_config, run_name

FORMATS = ("postergen", "dcgan-tutorial")  # the forms of generator weights load_generator reads
EXPORT_FILE = "generator.safetensors"  # the weights in an export folder (`postergen export -o FOLDER`)


def brief(error: BaseException, limit: int = 200) -> str:
    """One line of a torch (or PIL) error, cut only where a sentence or a list item ends.

    torch's first line often only announces the details ("Error(s) in loading state_dict for
    Generator:"), so the first detail line is kept instead; its later sentences are advice for other
    situations. A long list (missing keys) keeps its first items and says how many problems there are.
    """
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(error).__name__
    more = ""
    if lines[0].endswith(":") and len(lines) > 1:
        lines, more = lines[1:], f" (1 of {len(lines) - 1} problems)" if len(lines) > 2 else ""
    why = [line.split(":", 1)[1] for line in lines if line.startswith("WeightsUnpickler error:")]
    text = ": ".join(re.split(r"(?<=[.!?])\s", part.strip(), maxsplit=1)[0].rstrip(".") for part in lines[:1] + why)
    if len(text) > limit:
        cut = text.rfind(", ", 0, limit)
        space = text.rfind(" ", 0, limit)
        text = text[:cut] + ", ..." if cut > limit // 2 else text[:space] + " ..." if space > 0 else text
    return (text if " " in text else f"{type(error).__name__} {text}") + more


def _tutorial(path: Path) -> tuple[dict, dict]:
    """A bare netG state_dict from the tutorial: 64 px, z 100, ngf 64, no genres."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a loadable PyTorch state_dict ({brief(e)})") from None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise UserError(f"{path}: not a DCGAN tutorial generator state_dict (no 'main.0.weight')")
    w0 = state["main.0.weight"]  # (nz, ngf*8, 4, 4)
    model = ModelConfig(z_dim=w0.shape[0], ngf=w0.shape[1] // 8)
    config = {"model": dataclasses.asdict(model), "genres": [], "step": None, "source": path.name}
    return state, config


def export_in(folder: Path) -> Path | None:
    """The generator an export folder holds (README.md beside the weights): generator.safetensors, or
    its only .safetensors file; None for a run folder or a folder without one. Several: say which to give."""
    folder = Path(folder)
    if not folder.is_dir() or RunFolder(folder).config.is_file() or RunFolder(folder).checkpoints.is_dir():
        return None
    if (folder / EXPORT_FILE).is_file():
        return folder / EXPORT_FILE
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if len(found) > 1:
        raise UserError(f"{folder} holds {len(found)} exports ({', '.join(p.name for p in found[:4])}"
                        f"{', ...' if len(found) > 4 else ''}); give the file to use")
    return found[0] if found else None


def export_config(path: Path) -> dict:
    """An export's config from its metadata alone (no tensors read): what lists and checks need."""
    return _export_meta(path)[1]


def _export_meta(path: Path, tensors: bool = False) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path)) if tensors else {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    if "postergen" not in meta:
        raise UserError(f"{path}: safetensors file without postergen metadata (not made by `postergen export`)")
    try:
        config = json.loads(meta["postergen"])
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: its postergen metadata is not JSON ({str(e)[:200]})") from None
    return state, check_config(config, path)


def read_export(path: Path) -> tuple[dict, dict]:
    """An exported generator -> (its state_dict, its config from the metadata)."""
    return _export_meta(path, tensors=True)


def _checkpoint_file(path: Path) -> Path:
    """The file load_checkpoint reads for PATH: a run folder means its latest.pt."""
    if not path.is_dir():
        return path
    return RunFolder(path).latest if RunFolder(path).checkpoints.is_dir() else path / RunFolder.LATEST


def load_generator(path: Path, ema: bool = True, form: str = "postergen",
                   device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """-> G in eval mode, and a config dict with at least model, genres and step, and what provenance
    names: source (the run's folder name), checkpoint (the file's name) and weights (their fingerprint).
    PATH: a run folder, a checkpoint, an export file or an export folder."""
    path = where = Path(path)  # where: the file errors name
    exported = export_in(path) if form != "dcgan-tutorial" else None
    if exported is not None:
        path = where = exported
    if form == "dcgan-tutorial":
        state, config = _tutorial(path)
    elif path.suffix == ".safetensors":
        state, config = read_export(path)
        config = {**config, "source": _exported_run(config, path)}
    else:
        ckpt = load_checkpoint(path)
        where = _checkpoint_file(path)
        config = {**check_config(ckpt.get("config"), where), "step": ckpt["step"], "source": run_name(where)}
        check_kind(config, "gan", path, "drawing posters")
        state = ckpt["G_ema"] if ema and ckpt.get("G_ema") is not None else ckpt["G"]
    config = {**config, "checkpoint": where.name, "weights": weights_fingerprint(state)}
    try:
        G = registry.generator(config)
    except (TypeError, ValueError) as e:  # a model field of another version, or out of range
        raise UserError(f"{where}: its model settings do not build a generator ({brief(e)})") from None
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{where}: weights do not fit the generator ({brief(e)})") from None
    return G.to(device).eval(), config


def _exported_run(config: dict, path: Path) -> str:
    """The run an export came from, by name (exports before names recorded its absolute path)."""
    run = config.get("run")
    return Path(run).name if isinstance(run, str) and run else path.stem


def export(run: Path, out: Path, ema: bool = True) -> dict:
    """Generator weights + a small JSON config as safetensors: shareable, loads without unpickling.
    The run is named by its folder name and the weights by their fingerprint, never by a path."""
    from safetensors.torch import save

    from postergen.files import write_atomic

    G, config = load_generator(run, ema=ema)
    meta = {"kind": "gan", "arch": run_kind(config)[1], "model": config["model"],
            "genres": config["genres"], "step": config["step"], "ema": ema, "postergen": __version__,
            "run": config["source"], "weights": config["weights"],
            "parameters": sum(p.numel() for p in G.parameters())}
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in G.state_dict().items()}
    # Encoded in memory, then written whole: a disk error is an OSError naming `out` (save_file's own
    # errors are not OSErrors), and a failed write leaves no half file.
    write_atomic(out, save(tensors, metadata={"postergen": json.dumps(meta), "format": "pt"}))
    return meta

