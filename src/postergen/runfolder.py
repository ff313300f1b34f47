"""A run folder (DESIGN.md): the paths `train` and `train-sr` write, the lock a training holds, and
its config.json read back with the fields readers use checked (read_config, check_config).

Only one process trains in a run folder at a time: it holds an exclusive lock on `.lock` for its
whole life. The kernel releases the lock when the process ends in any way (kill -9 included), so
a crash never leaves a stale lock behind; the file itself stays and is reused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path, PurePath, PureWindowsPath

from postergen.errors import UserError
from postergen.fields import OBJECT, SIZE, TEXT, TEXTS, integer, need, optional
from postergen.files import check_output_folder, mark_owned

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one trainer per folder is then up to the user
    fcntl = None

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


class RunFolder:
    """Every path of a run folder, named once."""

    LATEST = "latest.pt"  # the newest checkpoint, a file of its own beside the step-N.pt files

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.checkpoints = self.path / "checkpoints"
        self.latest = self.checkpoints / self.LATEST
        self.samples = self.path / "samples"
        self.metrics = self.path / "metrics.jsonl"
        self.loss_plot = self.path / "loss.png"
        self.tensorboard = self.path / "tensorboard"
        self.eval_json = self.path / "eval.json"
        self.eval_jsonl = self.path / "eval.jsonl"
        self.report = self.path / "report.html"
        self.lock_file = self.path / ".lock"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}.pt"

    def sample_grid(self, step: int) -> Path:
        return self.samples / f"step-{step:07d}.png"

    def step_checkpoints(self) -> dict[int, Path]:
        return step_files(self.checkpoints)

    def has_checkpoints(self) -> bool:
        return self.latest.exists() or bool(self.step_checkpoints())

    def refuse_fresh(self) -> UserError:
        """A fresh start over checkpoints: --resume continues from them (latest.pt or, without it, the
        newest step file); --force is named with what it deletes, so no one loses them unaware."""
        steps = self.step_checkpoints()
        kept = f"step {max(steps)}" + ("" if self.latest.is_file() else ", without latest.pt") if steps else "latest.pt"
        return UserError(f"{self.path} already has checkpoints ({kept}); use --resume to continue or --force "
                         "to delete them and start over")

    # -----------------------------------------------------------------------------------------

    def lock(self) -> "RunLock":
        """Take the folder for this process (creating it); a one-line error if another process has it."""
        return RunLock(self)

    def start_fresh(self, force: bool) -> None:
        """Before a new run writes anything: refuse to mix with another run's checkpoints unless
        --force, refuse to clear a folder postergen did not make, then remove every file a training
        writes, so nothing of an old run can be loaded, resumed or plotted with the new one."""
        if self.has_checkpoints() and not force:
            raise self.refuse_fresh()
        if _user_files(self.path):
            check_output_folder(self.path, "run", force=True, what="run")
        for folder in (self.checkpoints, self.samples, self.tensorboard):
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():  # ignore_errors hides why: say it, rather than train beside old files
                raise UserError(f"{folder}: could not remove the old run's files; remove it by hand")
        for path in (self.metrics, self.loss_plot, self.config, self.eval_json, self.eval_jsonl, self.report,
                     self.path / "ddp.json"):
            path.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        mark_owned(self.path, "run")


GAN_MODEL_FIELDS = ("height", "width", "z_dim")  # the model fields every reader of a gan run uses


# ---------------------------------------------------------------------------------------------
# Names a run folder can travel with: nothing it records or shares holds an absolute path

def run_name(path: Path) -> str:
    """The name of the run that `path` (a run folder, or a checkpoint in one) belongs to: what files
    meant to be shared record instead of a path, which would tell where and whose the files are."""
    path = Path(path).resolve()
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.name if path.is_dir() else path.stem


def relative_path(target: Path, run: Path) -> str | None:
    """`target` as seen from the run folder (POSIX, e.g. '../data/ds'), so a run moved together with it
    still finds it; None when they share no folder but the filesystem root (or drive): that path would
    spell out the absolute one."""
    target, run = Path(target).resolve(), Path(run).resolve()
    try:
        common = Path(os.path.commonpath([target, run]))
    except ValueError:  # different drives
        return None
    if common == Path(common.anchor):
        return None
    return Path(os.path.relpath(target, run)).as_posix()


def dataset_path(run: Path, record: dict) -> Path | None:
    """Where config.json's "dataset" says the run's data is: relative to the run folder (older runs
    recorded an absolute path, read as is); None when it recorded no path."""
    path = record.get("path") if isinstance(record, dict) else None
    if not isinstance(path, str) or not path:
        return None
    return Path(os.path.normpath(Path(run) / path))


def withhold_paths(value):
    """`value` (a config or result, nested) with every absolute path as its last part: what older runs
    recorded (the dataset's path, eval.json's run) shown without telling where and whose the files are."""
    if isinstance(value, dict):
        return {k: withhold_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [withhold_paths(v) for v in value]
    if isinstance(value, str) and len(value) > 1 and value[1:3] in (":\\", ":/"):  # C:\Users\...
        return f"{PureWindowsPath(value).name} (path withheld)"
    if isinstance(value, str) and len(value) > 1 and value.startswith("/"):
        return f"{PurePath(value).name} (path withheld)"
    return value


def dataset_name(record: dict) -> str:
    """The recorded dataset as messages and reports name it: its folder name, never a path."""
    if not isinstance(record, dict):
        return "?"
    name = record.get("name") or (Path(record["path"]).name if isinstance(record.get("path"), str) else None)
    return str(name or "?")


def read_config(run: Path) -> dict:
    """RUN/config.json with the fields readers use checked (check_config): a missing, unreadable or
    hand-damaged file is a one-line UserError naming the file and the field."""
    path = RunFolder(run).config
    if not Path(run).is_dir():
        raise UserError(f"{run}: no such run folder")
    if not path.is_file():
        raise UserError(f"{run}: not a run folder (no config.json; train writes it first)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
        raise UserError(f"{path}: unreadable ({str(e)[:200] or type(e).__name__})") from None
    return check_config(config, path, whole=True)


def check_config(config, file: Path | str, whole: bool = False) -> dict:
    """A run's config (config.json, a checkpoint's or an export's) with the fields readers use checked
    -> config. whole: config.json itself, which also holds the training settings (`train`). Fields no
    reader uses are left alone: configs of older and newer versions still load."""
    if not isinstance(config, dict):
        raise UserError(f"{file}: not a postergen run config (not a JSON object)")
    kind = need(file, config, "kind", TEXT, required=False)
    need(file, config, "arch", TEXT, required=False)
    train = need(file, config, "train", OBJECT, required=whole) or {}
    need(file, train, "train.steps", integer(1), required=False)
    model = need(file, config, "model", OBJECT)
    if kind in (None, "gan"):  # runs from before kinds are gans
        for key in GAN_MODEL_FIELDS:
            need(file, model, f"model.{key}", integer(1))
        need(file, config, "genres", TEXTS)
    elif kind == "sr":
        need(file, model, "model.scale", integer(1))
    dataset = need(file, config, "dataset", OBJECT, required=False) or {}
    need(file, dataset, "dataset.path", optional(TEXT), required=False)  # null: no relative path existed
    need(file, dataset, "dataset.count", integer(0), required=False)
    need(file, dataset, "dataset.size", SIZE, required=False)
    return config


def step_files(folder: Path) -> dict[int, Path]:
    """{step: path} of the step checkpoints in a checkpoints folder."""
    out = {}
    for p in folder.glob("step-*.pt") if folder.is_dir() else []:
        m = _STEP_FILE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _user_files(folder: Path) -> list[Path]:
    """Entries that are not the lock or marker, which a fresh run may find (and leave) in place."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name not in (".lock", ".postergen")]


class RunLock:
    """An exclusive flock on RUN/.lock, held until release() or the process ends."""

    def __init__(self, run: RunFolder) -> None:
        self.run, self.fd, self.created = run, None, False
        if fcntl is None:
            return
        self.created = not run.path.exists()
        run.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{run.path} is in use by another postergen process (pid {holder}); "
                            "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self, failed: bool = False) -> None:
        """Let go; after a failure in a folder this lock created, remove the folder if nothing else is in it."""
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        if failed and self.created and not _user_files(self.run.path):
            shutil.rmtree(self.run.path, ignore_errors=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.release(failed=kind is not None)
