"""The one save/load for checkpoints: state_dicts + config, atomic writes, weights_only loads."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from postergen.errors import UserError

FORMAT = "postergen-checkpoint/1"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def rng_state() -> dict:
    """torch / CUDA / numpy / python RNG states as tensors and ints (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temp file, fsync, rename: a crash leaves the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_latest(step_file: Path, latest: Path) -> None:
    """Point latest.pt at the new step file: a hard link swapped in atomically (no second write)."""
    tmp = latest.with_name(f".{latest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(step_file, tmp)
    except OSError:  # file systems without hard links: copy
        import shutil
        shutil.copyfile(step_file, tmp)
    os.replace(tmp, latest)


def save_checkpoint(state: dict, folder: Path, step: int, keep: int) -> Path:
    """Write checkpoints/step-N.pt and latest.pt; keep the newest `keep` step files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    atomic_save({"format": FORMAT, **state}, path)
    _link_latest(path, folder / "latest.pt")
    steps = sorted(step_files(folder))
    for old in steps[:-keep] if keep > 0 else steps[:-1]:
        (folder / f"step-{old:07d}.pt").unlink(missing_ok=True)
    return path


def step_files(folder: Path) -> dict[int, Path]:
    """{step: path} of the step checkpoints in a folder."""
    out = {}
    for p in folder.glob("step-*.pt") if folder.is_dir() else []:
        m = _STEP_FILE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True on CPU; anything that is not a postergen checkpoint is a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt" if (path / "checkpoints").is_dir() else path / "latest.pt"
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler raises many kinds on foreign or damaged files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a loadable postergen checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a postergen checkpoint (no '{FORMAT}' marker)")
    return state


def load_latest(run: Path) -> dict:
    """The state a --resume continues from; a one-line error when the run has none."""
    latest = Path(run) / "checkpoints" / "latest.pt"
    if not latest.is_file():
        raise UserError(f"{run}: nothing to resume (no checkpoints/latest.pt)")
    return load_checkpoint(latest)


def check_unchanged(cfg, saved: dict, names: set[str]) -> None:
    """--resume keeps a run's settings: any of `names` given with a different value is an error."""
    fixed = sorted(k.replace("_", "-") for k in names if getattr(cfg, k) != saved[k])
    if fixed:
        raise UserError(f"--resume keeps the run's settings; cannot change --{', --'.join(fixed)}")
