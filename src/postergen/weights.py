"""Generator weights in every form postergen reads: run folders and checkpoints, exported
safetensors, and state_dicts saved by PyTorch's DCGAN example/tutorial (`torch.save(netG.state_dict())`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from postergen import __version__
from postergen.errors import UserError
from postergen.models.dcgan import Generator, ModelConfig
from postergen.engine.checkpoint import load_checkpoint

ARCHS = ("postergen", "dcgan-tutorial")


def _tutorial(path: Path) -> tuple[dict, dict]:
    """A bare netG state_dict from the tutorial: 64 px, z 100, ngf 64, no genres."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a loadable PyTorch state_dict ({first[:160]})") from None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise UserError(f"{path}: not a DCGAN tutorial generator state_dict (no 'main.0.weight')")
    w0 = state["main.0.weight"]  # (nz, ngf*8, 4, 4)
    model = ModelConfig(z_dim=w0.shape[0], ngf=w0.shape[1] // 8)
    config = {"model": dataclasses.asdict(model), "genres": [], "step": None, "source": "dcgan-tutorial"}
    return state, config


def _safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    if "postergen" not in meta:
        raise UserError(f"{path}: safetensors file without postergen metadata (not made by `postergen export`)")
    return state, json.loads(meta["postergen"])


def load_generator(path: Path, ema: bool = True, arch: str = "postergen",
                   device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """-> G in eval mode, and a config dict with at least model, genres and step."""
    path = Path(path)
    if arch == "dcgan-tutorial":
        state, config = _tutorial(path)
    elif path.suffix == ".safetensors":
        state, config = _safetensors(path)
    else:
        ckpt = load_checkpoint(path)
        config = {**ckpt["config"], "step": ckpt["step"], "source": str(path)}
        state = ckpt["G_ema"] if ema and ckpt.get("G_ema") is not None else ckpt["G"]
    G = Generator(ModelConfig(**config["model"]))
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the generator ({str(e).splitlines()[0][:160]})") from None
    return G.to(device).eval(), config


def export(run: Path, out: Path, ema: bool = True) -> dict:
    """Generator weights + a small JSON config as safetensors: shareable, loads without unpickling."""
    from safetensors.torch import save_file

    G, config = load_generator(run, ema=ema)
    meta = {"model": config["model"], "genres": config["genres"], "step": config["step"],
            "ema": ema, "postergen": __version__, "run": str(Path(run).resolve())}
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in G.state_dict().items()}
    save_file(tensors, str(out), metadata={"postergen": json.dumps(meta), "format": "pt"})
    return meta
