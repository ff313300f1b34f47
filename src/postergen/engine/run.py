"""The one run lifecycle, for every kind of training (DESIGN.md); a Task plugs in what differs.

The engine owns the run folder and its lock, a fresh start or a resume, the run's length (steps
and a time budget, whichever ends first), the progress bar, metrics.jsonl (and TensorBoard),
periodic samples, atomic checkpoints behind the NaN/inf guard, SIGINT/SIGTERM and the RNG state.
A task owns its models and optimisers, one training step, its statistics, and what it draws or
validates at sample steps.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from postergen import checkpoint as ckpt
from postergen.checkpoint import read_metrics
from postergen.errors import TrainingDiverged, UserError, out_of_memory
from postergen.files import os_error, write_atomic
from postergen.runfolder import RunFolder, RunLock, dataset_name, relative_path
from postergen.runtime import Dist, StopFlag


@dataclass
class Schedule:
    """How long a run lasts and how often it reports; the fields every kind's config has."""

    steps: int
    log_every: int
    sample_every: int
    checkpoint_every: int
    keep_checkpoints: int
    minutes: float = 0.0  # time budget: the run's training seconds in all sessions, / 60; 0: none


# The engine's clock, read between steps; tests replace it to make time without waiting.
clock = time.perf_counter
# Stop codes ranks agree on (their max wins, so a signal outranks the budget). A budget stop is the
# run's planned end (its step logs, samples and saves like the last one); a signal stop only saves.
GO_ON, OUT_OF_TIME, SIGNALLED = 0, 1, 2


def steps_for(length: str, value: float, images_per_step: int, dataset_size: int) -> int:
    """--steps/--epochs/--kimg -> steps. images_per_step is the global batch: batch x processes."""
    if length == "steps":
        return int(value)
    if length == "epochs":
        return max(1, math.ceil(value * max(1, dataset_size // images_per_step)))
    if length == "kimg":
        return max(1, math.ceil(value * 1000 / images_per_step))
    raise ValueError(f"unknown length unit {length!r}")


def resume_config(cfg_class, saved: dict, given: dict, resumable: set[str], run: Path):
    """The stored configuration with only the options the user gave changed. `resumable` lists the
    fields a resume may change (an allow-list, so a new field is fixed until listed); changing any
    other (one that defines the model or the optimisation) is a one-line error."""
    names = {f for f in cfg_class.__dataclass_fields__}
    fixed = names - set(resumable)
    changed = sorted(k for k in given if k in fixed and saved.get(k) != given[k])
    if changed:
        raise UserError(f"{run}: --resume keeps the run's settings; cannot change "
                        + ", ".join(f"--{k.replace('_', '-')} ({saved.get(k)!r} -> {given[k]!r})" for k in changed))
    return cfg_class(**{**{k: v for k, v in saved.items() if k in names}, **{k: v for k, v in given.items() if k not in fixed}})


# ---------------------------------------------------------------------------------------------
# The dataset a run trains on: recorded at the start, checked on --resume

SAMPLED_POSTERS = 256  # posters whose pixels the fingerprint hashes: cheap at any dataset size


def dataset_record(ds, run: Path) -> dict:
    """config.json's "dataset": where it is from the run folder (relative, so the two can move together;
    null where only an absolute path would do: runs are shared, and that path names its owner), its
    folder name, and a fingerprint of what it is (count, size, genres, content), so a resume can tell
    other posters from the same posters moved elsewhere."""
    return {"path": relative_path(ds.path, run), "name": ds.path.resolve().name, "count": len(ds),
            "size": list(ds.meta["size"]), "genres": list(ds.genres), "content": _content_hash(ds),
            "held_out": len(ds.held_out)}  # posters no training draws (prepare --holdout; in content too)


def _content_hash(ds) -> str:
    """dataset.json without its `prepare` section (where from, how, how long: not what), the labels
    and an even sample of posters' pixels (other posters under the same file names differ there)."""
    import hashlib

    import numpy as np

    meta = {k: v for k, v in ds.meta.items() if k != "prepare"}
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    h.update(np.ascontiguousarray(ds.labels).tobytes())
    picks = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), SAMPLED_POSTERS)).astype(np.int64))
    h.update(np.ascontiguousarray(ds.images[picks]).tobytes())
    return "sha256:" + h.hexdigest()


def check_dataset(saved: dict, ds, run: Path, allow: bool) -> str | None:
    """On --resume: a one-line error when `ds` is not the data the run recorded (count, genres or
    content), or with `allow` (--allow-other-data) a note saying what differs. Runs written before
    fingerprints record no content: they are checked only on what they record (size, genres)."""
    if "content" not in saved:
        return None
    now = {"count": len(ds), "genres": list(ds.genres), "content": _content_hash(ds)}
    if saved["count"] != now["count"]:
        what = f"{now['count']} posters, the run's had {saved['count']}"
    elif saved.get("genres") != now["genres"]:
        what = f"genres {', '.join(now['genres']) or 'none'}, the run's were {', '.join(saved['genres']) or 'none'}"
    elif saved.get("held_out", 0) != len(ds.held_out):  # the posters it trains on differ
        what = f"{len(ds.held_out)} posters held out, the run's had {saved.get('held_out', 0)}"
    elif saved["content"] != now["content"]:
        what = "other posters (the same count and genres, different content)"
    else:
        return None
    where = f"{ds.path} is not the dataset {run} was trained on ({dataset_name(saved)}): {what}"
    if not allow:
        raise UserError(f"{where}; give --allow-other-data to continue on it anyway")
    return f"note: {where}; continuing on it (--allow-other-data)"


class Task:
    """What a kind of training plugs into the engine. Every method is called on every rank."""

    kind: str = ""  # config.json's "kind"
    seed: int = 0
    images_per_step: int = 1  # global: batch x processes
    workload: str = ""  # what a step holds in memory, as options, e.g. "--batch 64 at 128x128 px"
    precision: str = "fp32"  # resolved: what an out-of-memory error can suggest

    def state(self) -> dict:
        """Models, optimisers and anything else the next step depends on (a checkpoint's body)."""
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        raise NotImplementedError

    def reseed(self, step: int) -> None:
        """Fresh random streams for a resume that cannot restore the saved one (another world size)."""
        torch.manual_seed(self.seed * 1_000_003 + step)

    def step(self, step: int) -> None:
        """One update; no host synchronisation (statistics stay on the device until read_stats)."""
        raise NotImplementedError

    def read_stats(self) -> dict[str, float]:
        """Mean statistics since the last read (one sync); raises TrainingDiverged on a NaN/inf loss."""
        raise NotImplementedError

    def check_finite(self) -> None:
        """Raises TrainingDiverged if any loss since the start was NaN/inf: nothing unhealthy is saved."""
        raise NotImplementedError

    def validate(self, step: int) -> dict[str, float]:
        """Extra metrics measured at sample steps (logged with that step's row)."""
        return {}

    def draw(self, step: int, folder: RunFolder) -> None:
        """Write what this kind shows at sample steps (rank 0 only)."""

    def warn(self, row: dict) -> str | None:
        """A warning about training health from the newest metrics row, or None."""
        return None

    def history(self, rows: list[dict]) -> None:
        """The metric rows logged before this session (on a resume; rank 0), for warnings that look back."""

    def plot(self, rows: list[dict]) -> bytes | None:
        """loss.png from the metric rows, or None."""
        return None

    def epoch_of(self, step: int) -> int:
        return 0

    def agree_stop(self, stop: int, step: int) -> int:
        """The stop code (GO_ON, OUT_OF_TIME, SIGNALLED) every rank acts on: under torchrun every rank
        must stop at the same step, the same way."""
        return stop

    def summary(self) -> dict:
        return {}


class Engine:
    """One run: a fresh start (config.json written) or a resume, then steps until done or stopped.

    config: the dict config.json holds (kind, arch, train, model, ...); it goes into every checkpoint.
    """

    def __init__(self, task: Task, run: Path, config: dict, schedule: Schedule, start: dict | None,
                 lock: RunLock | None, dist: Dist = Dist(), tensorboard: bool = False, echo=print) -> None:
        self.task, self.folder, self.config, self.schedule = task, RunFolder(run), config, schedule
        self.dist, self.lock, self.echo = dist, lock, echo if dist.main else (lambda *a, **k: None)
        self.step = start["step"] if start else 0
        self.seconds = float(start.get("seconds", 0.0)) if start else 0.0
        self.last_saved = self.step if start else -1
        if start:
            task.restore(start)
            if dist.world == 1 and start.get("world_size", 1) == 1:
                ckpt.set_rng_state(start["rng"])  # bit-exact continuation
            else:  # one saved stream cannot serve several ranks: a fresh, distinct stream per rank
                task.reseed(self.step)
        if start and dist.main:  # what the run now trains with: new --steps, a moved dataset's new place
            write_atomic(self.folder.config, json.dumps(config, indent=1))
        self.rows = read_metrics(self.folder.metrics, up_to_step=self.step) if dist.main else []
        task.history(self.rows)
        self.tb = _tensorboard(self.folder, self.step) if tensorboard and dist.main else None

    # -----------------------------------------------------------------------------------------

    def save(self) -> None:
        self.task.check_finite()  # never save NaN weights
        if self.dist.main:
            state = {"step": self.step, "epoch": self.task.epoch_of(self.step), "seconds": self.seconds,
                     **self.task.state(), "rng": ckpt.rng_state(), "world_size": self.dist.world,
                     "config": self.config}
            ckpt.save_checkpoint(state, self.folder.checkpoints, self.step, self.schedule.keep_checkpoints)
        self.last_saved = self.step

    def log(self, seconds: float, steps: int, extra: dict, bar) -> None:
        stats = self.task.read_stats()  # collective: every rank calls it at the same steps
        if not self.dist.main:
            return
        rate = steps * self.task.images_per_step / max(seconds, 1e-9)
        row = {"step": self.step, "epoch": self.task.epoch_of(self.step),
               "kimg": self.step * self.task.images_per_step / 1000, **stats, **extra,
               "img_per_s": round(rate, 1), "seconds": round(self.seconds, 1)}
        self.rows.append(row)
        with open(self.folder.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])
        warning = self.task.warn(row)
        if warning:
            bar.write(f"warning: {warning}")
        bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k.startswith("loss")} | {"img_s": f"{rate:.0f}"})

    def sample(self) -> None:
        if self.dist.main:
            self.task.draw(self.step, self.folder)
            self.plot()

    def plot(self) -> None:
        png = self.task.plot(self.rows) if self.rows else None
        if png is not None:
            write_atomic(self.folder.loss_plot, png)

    # -----------------------------------------------------------------------------------------

    def spent(self) -> bool:
        """The time budget is used up: the run's training seconds (every session's) reached it."""
        return self.schedule.minutes > 0 and self.seconds >= self.schedule.minutes * 60

    def lap(self) -> None:
        """Count the wall time since the last lap as training time (logging, samples and saves included)."""
        now = clock()
        self.seconds += now - self.lap_start
        self.lap_start = now

    def run(self) -> dict:
        s = self.schedule
        bar = self._bar()
        code = OUT_OF_TIME if self.spent() else GO_ON  # the same on every rank: the checkpoint's seconds
        failed = False
        try:
            with StopFlag() as stop:
                self.lap_start = t_log = clock()
                steps_since = 0
                while self.step < s.steps and code == GO_ON:
                    self.task.step(self.step)
                    self.step += 1
                    steps_since += 1
                    self.lap()
                    # rank 0's clock decides, so every rank stops at the same step (agree_stop)
                    mine = SIGNALLED if stop else OUT_OF_TIME if self.dist.main and self.spent() else GO_ON
                    code = self.task.agree_stop(mine, self.step)
                    last = self.step == s.steps or code == OUT_OF_TIME
                    extra = self.task.validate(self.step) if self.step % s.sample_every == 0 or last else {}
                    if self.step % s.log_every == 0 or last or extra:
                        self.log(clock() - t_log, steps_since, extra, bar)
                        t_log, steps_since = clock(), 0
                    if self.step % s.sample_every == 0 or last:
                        self.sample()
                    if self.step % s.checkpoint_every == 0 or last:
                        self.save()
                    self.lap()
                    self._show(bar)
                if code == SIGNALLED and self.step != self.last_saved:
                    self.save()
        except TrainingDiverged as e:
            failed = True
            raise TrainingDiverged(f"{e}; stopped ({self.last_good()}). {getattr(self.task, 'divergence_advice', '')}".rstrip())\
                from None
        except OSError as e:  # disk full, folder gone read-only, ...: the last checkpoint is intact
            failed = True
            resume = "continue with --resume" if self.folder.step_checkpoints() else "start again with --force"
            raise UserError(f"{os_error(e)}; training stopped at step {self.step} ({self.last_good()}); "
                            f"fix that and {resume}") from None
        except (MemoryError, RuntimeError, ImportError) as e:
            if not short_of_memory(e):
                raise
            failed = True  # nothing of the failed step is saved: its update may be half done
            raise memory_error(e, f"in step {self.step + 1}", self.task, self.last_good(),
                               bool(self.folder.step_checkpoints())) from None
        finally:
            bar.close()
            self._close(failed)
        return {"run": str(self.folder.path), "step": self.step, "interrupted": code == SIGNALLED,
                "seconds": round(self.seconds, 1), "minutes": s.minutes, "out_of_time": code == OUT_OF_TIME,
                "samples": str(self.folder.samples), "latest": str(self.folder.latest), **self.task.summary()}

    def _bar(self) -> tqdm:
        """Steps done of the run's steps or, with a time budget, seconds trained of the budget."""
        hide = None if self.dist.main else True
        if not self.schedule.minutes:
            return tqdm(total=self.schedule.steps, initial=self.step, unit="step", desc=self.task.kind,
                        dynamic_ncols=True, disable=hide)
        budget = self.schedule.minutes * 60
        return tqdm(total=budget, initial=min(self.seconds, budget), desc=self._time_left(), dynamic_ncols=True,
                    disable=hide, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")

    def _time_left(self) -> str:
        left = max(0.0, self.schedule.minutes * 60 - self.seconds)
        return f"{self.task.kind} step {self.step}, {tqdm.format_interval(left)} left"

    def _show(self, bar: tqdm) -> None:
        """One step more on the bar, or with a time budget: the seconds trained, and the time left."""
        if not self.schedule.minutes:
            bar.update(1)
            return
        bar.set_description_str(self._time_left(), refresh=False)
        bar.update(min(self.seconds, self.schedule.minutes * 60) - bar.n)

    def last_good(self) -> str:
        good = self.folder.step_checkpoints()
        return f"last good checkpoint: step {max(good)}" if good else "no checkpoint was written"

    def _close(self, failed: bool) -> None:
        try:
            if self.dist.main:
                self.plot()
            if self.tb is not None:
                self.tb.close()
        except Exception:  # OSError, or memory still short after an out-of-memory error
            if not failed:  # while failing, the first error is the one to report
                raise


def short_of_memory(e: BaseException) -> bool:
    """Out of memory, including a library first imported at a sample step (matplotlib) that the
    loader could not map: that is an ImportError."""
    text = str(e)
    return out_of_memory(e) or (isinstance(e, ImportError) and ("failed to map segment" in text
                                                                 or "Cannot allocate memory" in text))


def memory_error(e: BaseException, when: str, task: Task, saved: str, resumable: bool) -> UserError:
    """Out of memory as one line: which memory, in what, with which settings, and what to try."""
    import re

    gpu = type(e).__name__ == "OutOfMemoryError" or "CUDA" in str(e) or "MPS" in str(e)
    size = re.search(r"[Tt]ried to allocate ([\d.]+ ?\w+)", str(e))
    asked = f", asking for {size.group(1)} more" if size else ""
    bf16 = task.precision != "bf16"  # bf16 activations take half the memory
    if resumable:  # a resumed run keeps its batch: only a new run can take a smaller one
        fix = ("continue with --resume --precision bf16" if bf16 else "free memory and continue with --resume") + \
            ", or start over with a smaller --batch (--force deletes this run's checkpoints)"
    else:
        fix = "try a smaller --batch" + (" or --precision bf16" if bf16 else "")
    return UserError(f"out of {'GPU' if gpu else 'CPU'} memory {when} ({task.workload}{asked}); "
                     f"training stopped ({saved}); {fix}")


def _tensorboard(folder: RunFolder, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder.tensorboard), purge_step=start_step)


def open_run(run: Path, resume: bool, force: bool, dist: Dist = Dist(),
             echo=lambda line: None) -> tuple[RunLock | None, dict | None]:
    """Take the run folder (rank 0 holds its lock) and, for --resume, load the newest checkpoint
    (echo says when that is not latest.pt). A fresh start is checked here and cleared by
    `start_fresh` once the new config is known."""
    lock = RunFolder(run).lock() if dist.main else None
    try:
        if resume:
            return lock, ckpt.load_latest(run, echo if dist.main else (lambda line: None))
        folder = RunFolder(run)
        if folder.has_checkpoints() and not force:
            raise folder.refuse_fresh()
        return lock, None
    except BaseException:
        if lock is not None:
            lock.release(failed=True)
        raise


def start_fresh(run: Path, config: dict, force: bool, dist: Dist = Dist()) -> None:
    """Rank 0: remove every file of an old run, then write config.json (atomically)."""
    if dist.main:
        folder = RunFolder(run)
        folder.start_fresh(force)
        write_atomic(folder.config, json.dumps(config, indent=1))
    dist.barrier()  # rank 0 has prepared the folder before anyone reads or writes in it
