"""Run folders as the studio sees them: which runs a root holds, their checkpoints, their
training progress, and the few files a browser may read from them.

Names that come from clients (run ids, checkpoint and file names) are looked up in lists the
server builds itself or matched against a fixed allow-list, and the resulting path must still
resolve inside the run folder (no `..`, no absolute paths, no symlinks out).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

from postergen.checkpoint import run_kind
from postergen.errors import UserError
from postergen.runfolder import RunFolder, check_config, withhold_paths
from postergen.weights import EXPORT_FILE, export_config

UPSCALER_FOLDER = "sr"  # the preferred super-resolution run next to the GAN runs
ACTIVE_SECONDS = 120  # a run that wrote metrics or samples this recently counts as still training

CHECKPOINT_NAME = re.compile(r"^(latest|step-\d{1,12})\.pt$")
SAMPLE_NAME = re.compile(r"^samples/step-(\d{1,12})\.png$")
RUN_FILES = {  # name -> media type: everything else under a run folder stays private
    "report.html": "text/html",
    "loss.png": "image/png",
    "config.json": "application/json",
    "eval.json": "application/json",
    "metrics.jsonl": "application/x-ndjson",
}


class NotFound(UserError):
    """An unknown run, checkpoint or file (HTTP 404)."""


class Unavailable(UserError):
    """The request is well formed but the server cannot do it now: no checkpoint yet, no upscaler (HTTP 409)."""


def is_run(folder: Path) -> bool:
    """A run folder: `train` writes config.json first and checkpoints/latest.pt from the first save on."""
    run = RunFolder(folder)
    return run.config.is_file() or run.latest.is_file()


def exports(folder: Path) -> list[str]:
    """The generator files of an export folder (`postergen export -o FOLDER`, or NAME.safetensors files
    with their model card), generator.safetensors first; [] for a run folder or a folder without any."""
    if is_run(folder) or RunFolder(folder).checkpoints.is_dir():
        return []
    names = sorted(p.name for p in Path(folder).glob("*.safetensors") if p.is_file())
    return sorted(names, key=lambda name: name != EXPORT_FILE)


def kind(folder: Path) -> str:
    """'gan' or 'sr' from config.json (runs from before kinds were recorded, or unreadable: 'gan')."""
    if exports(folder):
        return "gan"
    try:
        return run_kind(read_config(folder))[0]
    except UserError:
        return "gan"


def is_gan_run(folder: Path) -> bool:
    return is_run(folder) and kind(folder) == "gan"


def sr_runs(root: Path) -> list[Path]:
    """Super-resolution runs the studio may upscale with, preferred first: ROOT/sr or the `sr` folder
    beside a single served run, then any other run of kind sr among ROOT's folders (by name)."""
    root = root.resolve()
    named = [f for f in (root / UPSCALER_FOLDER, root.parent / UPSCALER_FOLDER) if f.is_dir() and is_run(f)]
    try:
        others = sorted(f for f in root.iterdir() if f.is_dir() and f not in named and is_run(f) and kind(f) == "sr")
    except OSError:
        others = []
    return [f for f in named if kind(f) == "sr"] + others


def discover(root: Path) -> dict[str, Path]:
    """-> {run id: folder}. A root that is a run is the only run; otherwise its immediate subfolders that are
    runs or export folders; a root with none of those that is an export folder is the only one.

    A root the OS will not list is Unavailable (its message names no path: clients see it); a
    subfolder that cannot be read is skipped, so one locked folder does not hide the other runs.
    """
    root = root.resolve()
    try:
        if is_run(root):
            return {root.name: root} if kind(root) == "gan" else {}
        if not root.is_dir():
            return {}
        folders = sorted(root.iterdir())
    except OSError as e:
        raise Unavailable(f"cannot list the served folder ({e.strerror or type(e).__name__})") from None
    runs = {}
    for folder in folders:
        if folder.name.startswith("."):
            continue
        try:
            if folder.is_dir() and (is_gan_run(folder) or exports(folder)):  # SR runs are upscalers
                runs[folder.name] = folder
        except OSError:
            continue
    if not runs and exports(root):  # after the subfolders: an export saved beside runs hides none of them
        return {root.name: root}
    return runs


def read_config(run: Path) -> dict:
    """The run's config.json ({} before training writes it), or an export's from its metadata; Unavailable
    when it is unreadable, not an object, or a field readers use is missing or of the wrong type
    (runfolder.check_config)."""
    files = exports(run)
    if files:
        try:
            return export_config(run / files[0])
        except UserError:  # its message names the absolute path: clients see this one
            raise Unavailable(f"{run.name}/{files[0]}: not a readable postergen export") from None
    try:
        config = json.loads(RunFolder(run).config.read_text())
    except FileNotFoundError:
        return {}
    except OSError as e:  # str(e) would name the absolute path; strerror does not
        raise Unavailable(f"{run.name}: config.json is not readable ({e.strerror or type(e).__name__})") from None
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
        raise Unavailable(f"{run.name}: config.json is not readable ({str(e)[:200] or type(e).__name__})") from None
    if not isinstance(config, dict):
        raise Unavailable(f"{run.name}: config.json is not readable (not a JSON object)")
    try:  # named from the served folder: the message reaches clients
        return check_config(config, f"{run.name}/config.json", whole=True)
    except UserError as e:
        raise Unavailable(str(e)) from None


def _section(config: dict, key: str) -> dict:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def genre_list(config: dict) -> list[str]:
    """The config's genres as the page expects them: a list of strings (a damaged file gives [])."""
    genres = config.get("genres")
    return [g for g in genres if isinstance(g, str)] if isinstance(genres, list) else []


def checkpoints(run: Path) -> list[str]:
    """Checkpoint file names, latest.pt first, then steps newest first; an export folder's generator files."""
    if exports(run):
        return exports(run)
    folder, latest = RunFolder(run).checkpoints, RunFolder.LATEST
    names = [p.name for p in folder.glob("*.pt") if CHECKPOINT_NAME.match(p.name)] if folder.is_dir() else []
    return sorted(names, key=lambda n: (n != latest, -int(n[5:-3]) if n != latest else 0))


def checkpoint_path(run: Path, name: str) -> Path:
    """A checkpoint the run has, by file name from the server's own list."""
    names = checkpoints(run)
    if not names:
        raise Unavailable(f"run {run.name} has no checkpoint yet (training saves the first one at --checkpoint-every)")
    if exports(run):  # latest.pt, the default, is its first generator
        return run / (names[0] if name == RunFolder.LATEST else _known(run, name, names))
    return RunFolder(run).checkpoints / _known(run, name, names)


def _known(run: Path, name: str, names: list[str]) -> str:
    if name not in names:
        raise NotFound(f"run {run.name} has no checkpoint {name[:80]!r}; it has {', '.join(names)}")
    return name


def run_file(run: Path, name: str) -> tuple[Path, str]:
    """An allow-listed file of the run -> (path, media type); anything else is NotFound."""
    if name in RUN_FILES:
        media = RUN_FILES[name]
    elif SAMPLE_NAME.match(name):
        media = "image/png"
    else:
        raise NotFound(f"no file {name[:80]!r} in run {run.name}")
    path = (run / name).resolve()
    if not path.is_relative_to(run.resolve()) or not path.is_file():
        raise NotFound(f"no file {name[:80]!r} in run {run.name}")
    return path, media


def snapshot(run: Path, name: str) -> tuple[bytes, str]:
    """An allow-listed file of the run, read once -> (bytes, media type).

    Training appends to metrics.jsonl while it is served: a size taken before reading would not match
    the bytes read, cutting the answer short. So the answer is exactly the bytes read here, and
    metrics.jsonl ends after its last complete line (training may be halfway through writing one).
    """
    path, media = run_file(run, name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # removed since run_file looked (an old sample grid, a --force restart)
        raise NotFound(f"no file {name[:80]!r} in run {run.name}") from None
    except OSError as e:  # str(e) would name the absolute path; strerror does not
        raise Unavailable(f"{run.name}/{name}: not readable ({e.strerror or type(e).__name__})") from None
    if name == "metrics.jsonl":
        data = data[:data.rfind(b"\n") + 1]
    elif name.endswith(".json"):  # older runs recorded absolute paths: never served
        try:
            data = json.dumps(withhold_paths(json.loads(data)), indent=1).encode()
        except (ValueError, RecursionError):
            pass  # served as it is: the client sees the same damage the readers report
    return data, media


def file_url(run_id: str, name: str) -> str:
    return f"/api/runs/{quote(run_id, safe='')}/files/{name}"


def _stamped(run_id: str, run: Path, name: str) -> dict | None:
    """{url, mtime} of a file that training rewrites; the ?v= part changes with it, so browsers refetch."""
    try:
        stat = (run / name).stat()
    except OSError:  # not written yet, or replaced at this very moment
        return None
    return {"url": f"{file_url(run_id, name)}?v={stat.st_mtime_ns}", "mtime": stat.st_mtime}


def last_step(run: Path) -> int | None:
    """Step of the last metrics line (read from the end: metrics.jsonl grows during training)."""
    try:
        with open(RunFolder(run).metrics, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short while training writes it
    return None


def latest_sample(run: Path) -> tuple[str, int] | None:
    """-> ('samples/step-N.png', N) of the newest fixed-noise grid, or None."""
    samples = RunFolder(run).samples
    found = [(int(m.group(1)), p.name) for p in samples.glob("step-*.png")
             if (m := SAMPLE_NAME.match(f"samples/{p.name}"))] if samples.is_dir() else []
    if not found:
        return None
    step, name = max(found)
    return f"samples/{name}", step


def is_active(run: Path) -> bool:
    """Still training: metrics or samples written in the last ACTIVE_SECONDS."""
    recent = []
    for path in (RunFolder(run).metrics, RunFolder(run).samples):
        try:
            recent.append(path.stat().st_mtime)
        except OSError:
            continue
    return bool(recent) and time.time() - max(recent) < ACTIVE_SECONDS


def summary(run_id: str, run: Path) -> dict:
    """What the page shows about a run, from its files alone (no model is loaded)."""
    try:
        config, error = read_config(run), None
    except Unavailable as e:  # one broken run must not hide the others
        config, error = {}, str(e)
    model = _section(config, "model")
    return {
        "id": run_id,
        "error": error,
        "genres": genre_list(config),
        "height": model.get("height"),
        "width": model.get("width"),
        "z_dim": model.get("z_dim"),
        "step": last_step(run) if not exports(run) else config.get("step"),
        "steps": _section(config, "train").get("steps"),
        "checkpoints": checkpoints(run),
        "report": file_url(run_id, "report.html") if (run / "report.html").is_file() else None,
        "active": is_active(run),
    }


def progress(run_id: str, run: Path) -> dict:
    """Training progress: the loss curve and the newest sample grid, with URLs that change when the files do."""
    sample = latest_sample(run)
    samples = None if sample is None else _stamped(run_id, run, sample[0])
    config = read_config(run)
    return {
        "run": run_id,
        "step": last_step(run),
        "steps": _section(config, "train").get("steps"),
        "active": is_active(run),
        "checkpoints": checkpoints(run),
        "loss": _stamped(run_id, run, "loss.png"),
        "samples": None if samples is None else {**samples, "step": sample[1]},
        "report": file_url(run_id, "report.html") if (run / "report.html").is_file() else None,
    }
