"""Checkpoint + seeds + genres -> posters: each poster is reproducible from its own seed."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from postergen.errors import UserError
from postergen.models.dcgan import Generator, ModelConfig
from postergen.train.checkpoint import load_checkpoint
from postergen.train.loop import render, save_grid
from postergen.train.runtime import pick_device


def load_generator(path: Path, ema: bool = True, device: str = "cpu") -> tuple[Generator, dict]:
    """G (EMA weights when the run kept them and `ema`) from a run folder or checkpoint file."""
    state = load_checkpoint(path)
    config = state["config"]
    G = Generator(ModelConfig(**config["model"]))
    weights = state["G_ema"] if ema and state.get("G_ema") is not None else state["G"]
    G.load_state_dict(weights)
    return G.to(pick_device(device)).eval(), {**config, "step": state["step"]}


def genre_vectors(names: list[str] | None, known: list[str]) -> list[tuple[str, torch.Tensor | None]]:
    """['horror', 'action,comedy'] -> [(label, multi-hot)]; None -> every genre, or one unconditional row."""
    if not known:
        if names:
            raise UserError("this model was trained without genres; drop --genre")
        return [("all", None)]
    rows = []
    for spec in names or known:
        want = [g.strip().lower() for g in spec.split("+") if g.strip()]
        unknown = [g for g in want if g not in known]
        if unknown:
            raise UserError(f"unknown genre {', '.join(unknown)}; known: {', '.join(known)}")
        vec = torch.zeros(len(known))
        vec[[known.index(g) for g in want]] = 1
        rows.append(("+".join(want), vec))
    return rows


def noise(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One latent per seed, each from its own generator: a poster depends on its seed only."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def sample(path: Path, out: Path, n: int = 8, seed: int = 0, genres: list[str] | None = None,
           ema: bool = True, grid: bool = True, singles: bool = True, device: str = "cpu") -> dict:
    """Write `n` posters per genre row (seeds seed..seed+n-1) as PNGs and/or one grid."""
    G, config = load_generator(path, ema, device)
    rows = genre_vectors(genres, config["genres"])
    seeds = list(range(seed, seed + n))
    z = noise(seeds, config["model"]["z_dim"])
    dev = next(G.parameters()).device
    out.mkdir(parents=True, exist_ok=True)
    images, written = [], []
    for label, vec in rows:
        cond = None if vec is None else vec.expand(n, -1).to(dev)
        batch = render(G, z.to(dev), cond, dev)  # (n, 3, H, W) uint8
        images.append(batch)
        for s, img in zip(seeds, batch) if singles else []:
            path_png = out / f"{label}-seed{s}.png"
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(path_png)
            written.append(path_png)
    grid_path = None
    if grid:
        grid_path = out / "grid.png"
        save_grid(torch.cat(images), n if len(rows) > 1 or n <= 8 else 8, grid_path)
    return {"step": config["step"], "rows": [r[0] for r in rows], "files": written, "grid": grid_path}
