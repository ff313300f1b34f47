"""What every reader of a run folder needs: the one save/load for checkpoints (state_dicts + config,
atomic writes, weights_only loads), the run's metric lines, and run kinds."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from postergen.errors import UserError, out_of_memory
from postergen.files import replacing, write_atomic
from postergen.runfolder import RunFolder, step_files  # step_files re-exported: callers list checkpoints here

FORMAT = "postergen-checkpoint/1"

KINDS = {"gan": "postergen train", "sr": "postergen train-sr"}  # run kind -> the command that trains it


class Unreadable(UserError):
    """A checkpoint file that is there but cannot be loaded: damaged, cut short, or not postergen's."""


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
    """torch.save to a temp file, fsync, rename: a crash or a full disk leaves the old file, never half."""
    with replacing(path, durable=True) as tmp:
        try:
            with open(tmp, "wb") as f:  # a Python file: its OSError (disk full) stays in the chain
                torch.save(obj, f)
        except RuntimeError as e:  # torch's writer wraps a failed write in a RuntimeError
            cause = e.__context__
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__context__
            if cause is None:
                raise
            raise cause from None


def _copy_latest(step_file: Path, latest: Path) -> None:
    """latest.pt as a file of its own (not a link: damage to one must not reach the other), swapped in
    atomically; a copy of bytes just written, so no second serialisation."""
    with replacing(latest, durable=True) as tmp:
        try:
            shutil.copyfile(step_file, tmp)
        except OSError as e:  # copyfile may name its source; the file that could not be written is latest
            raise OSError(e.errno, e.strerror or str(e), str(latest)) from None


def save_checkpoint(state: dict, folder: Path, step: int, keep: int) -> Path:
    """Write checkpoints/step-N.pt and latest.pt; keep the newest `keep` step files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    atomic_save({"format": FORMAT, **state}, path)
    try:
        _copy_latest(path, folder / RunFolder.LATEST)
    except BaseException:  # all or nothing: the newest step file and latest.pt always agree
        path.unlink(missing_ok=True)
        raise
    steps = sorted(step_files(folder))
    for old in steps[:-keep] if keep > 0 else steps[:-1]:
        (folder / f"step-{old:07d}.pt").unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True on CPU; anything that is not a postergen checkpoint is a UserError."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).latest if RunFolder(path).checkpoints.is_dir() else path / RunFolder.LATEST
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler raises many kinds on foreign or damaged files
        if out_of_memory(e):  # the machine's fault, not the file's: never report a good file as damaged
            raise UserError(f"{path}: not enough memory to load it ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no details'})") from None
        import re

        # Whole sentences: torch's first says what failed and its "WeightsUnpickler error:" line why;
        # the rest is advice on loading untrusted files, which no postergen checkpoint needs.
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines()]
        why = [line.split(":", 1)[1] for line in lines if line.startswith("WeightsUnpickler error:")]
        said = [re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0].rstrip(".") for text in lines[:1] + why]
        reason = ": ".join(filter(None, said))
        reason = reason if " " in reason else f"{type(e).__name__} {reason}".strip()
        raise Unreadable(f"{path}: not a loadable postergen checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise Unreadable(f"{path}: not a postergen checkpoint (no '{FORMAT}' marker)")
    return state


def load_latest(run: Path, note=lambda line: None) -> dict:
    """The state a --resume continues from: the newest checkpoint that loads; a one-line error when
    the run has none. latest.pt is a copy of the newest step file, so when it is missing or damaged
    that step file is the same checkpoint and the run resumes from it, saying so through `note`."""
    folder = RunFolder(run)
    steps = folder.step_checkpoints()
    if not folder.latest.is_file() and not steps:
        raise UserError(f"{run}: nothing to resume (no checkpoints/latest.pt)")
    problem = f"{folder.latest} is missing"
    if folder.latest.is_file():
        try:
            state = load_checkpoint(folder.latest)
        except Unreadable as e:
            problem = f"{folder.latest} is damaged ({str(e).removeprefix(f'{folder.latest}: ')})"
        else:
            newer = {s: p for s, p in steps.items() if s > state["step"]}
            if not newer:
                return state
            # a save cut short after its step file: that file is the newer checkpoint
            problem = f"{folder.latest} is at step {state['step']}"
            return _from_step_files(folder, newer, problem, note, fallback=state)
    return _from_step_files(folder, steps, problem, note)


def _from_step_files(folder: RunFolder, steps: dict[int, Path], problem: str, note,
                     fallback: dict | None = None) -> dict:
    """Resume from the newest step file when it loads. When it does not, an older good one would
    pass over steps without asking: the error names the good one and how to resume from it."""
    damaged = []
    for step in sorted(steps, reverse=True):
        try:
            state = load_checkpoint(steps[step])
        except Unreadable:
            damaged.append(steps[step])
            continue
        if not damaged:
            note(f"note: {problem}; resuming from {steps[step]} (step {step}), the newest checkpoint")
            return state
        raise _only_older(folder, problem, damaged, steps[step], step)
    if fallback is not None:  # every newer step file is damaged; latest.pt itself loads
        raise _only_older(folder, problem, damaged, folder.latest, fallback["step"])
    found = f"{', '.join(p.name for p in damaged)} cannot be loaded either" if damaged else "there is no step file"
    raise UserError(f"{problem}, and {found}: nothing to resume; --force deletes the run's checkpoints and starts over")


def _only_older(folder: RunFolder, problem: str, damaged: list[Path], good: Path, step: int) -> UserError:
    aside = folder.path / "damaged"
    return UserError(f"{problem}, and {', '.join(p.name for p in damaged)}, newer than step {step}, cannot be loaded "
                     f"either; the newest good checkpoint is {good}. To resume from it, move the damaged files aside "
                     f"(mkdir {aside} && mv {' '.join(map(str, damaged))} {aside}) and --resume again")


# ---------------------------------------------------------------------------------------------
# Run kinds: what a run folder or checkpoint holds

def weights_fingerprint(state: dict) -> str:
    """16 hex digits of a hash over a state dict's tensors (names, shapes and values): names a set of
    weights wherever its file travels (a checkpoint's EMA G and its export print alike)."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d tensors (BN counts) too
    return digest.hexdigest()[:16]


def run_kind(config: dict) -> tuple[str, str]:
    """(kind, arch) of a run's config.json or checkpoint config; runs from before kinds were
    recorded are GANs of the DCGAN family."""
    return config.get("kind", "gan"), config.get("arch", "dcgan")


def check_kind(config: dict, want: str, where: Path | str, use: str) -> None:
    """A one-line error when a run of another kind is given to a command, naming the right one."""
    kind, arch = run_kind(config)
    if kind != want:
        raise UserError(f"{where} is a {kind} run ({arch}); {use} needs a {want} run. "
                        f"{_what_takes(kind)}")


def _what_takes(kind: str) -> str:
    if kind == "sr":
        return "Use it with `postergen upscale --model RUN` or `postergen sample GAN_RUN --upscale RUN`."
    return "Use it with sample, evaluate, report, export or serve."


# ---------------------------------------------------------------------------------------------
# Metric lines (metrics.jsonl)

def read_metrics(path: Path, up_to_step: int | None = None) -> list[dict]:
    """Metric lines of a run; with up_to_step, the file is cut back to that step (after a crash)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by kill -9
    if up_to_step is not None:
        rows = [r for r in rows if r["step"] <= up_to_step]
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))  # a full disk keeps the old file
    return rows
