"""`--minutes`/`--hours`: a run stops at a time budget with a checkpoint and a grid, whatever its step.

Time is the engine's clock (engine/run.py's `clock`), replaced here by one that moves only when a
training step runs, so the step a budget ends at is exact and no test waits or depends on speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import one_line_error, tiny_flags, torchrun_train
from postergen import checkpoint as ckpt
from postergen.config import MAX_STEPS
from postergen.engine import run as engine_run
from postergen.engine.gan import GANTask
from postergen.engine.sr import SRTask
from postergen.runfolder import RunFolder


class StepClock:
    """A clock that moves `per_step` seconds in each training step, and not otherwise."""

    def __init__(self) -> None:
        self.now, self.per_step = 0.0, 10.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def step_clock(monkeypatch) -> StepClock:
    clock = StepClock()
    monkeypatch.setattr(engine_run, "clock", clock)
    for task in (GANTask, SRTask):
        def step(self, step: int, _step=task.step) -> None:
            _step(self, step)
            clock.now += clock.per_step
        monkeypatch.setattr(task, "step", step)
    return clock


def _train(cli, dataset: Path, run: Path, *args):
    flags = tiny_flags(genre_dim=8, log_every=1, sample_every=100, checkpoint_every=100)
    return cli("train", dataset, "-o", run, *flags, *args)


def _state(run: Path) -> dict:
    return ckpt.load_checkpoint(run / "checkpoints" / "latest.pt")


def test_a_budget_stops_at_the_step_that_crosses_it_with_a_checkpoint_and_grid(cli, tiny_dataset, tmp_path,
                                                                                 step_clock):
    run = tmp_path / "run"
    code, out, err = _train(cli, tiny_dataset, run, "--minutes", "1")
    assert code == 0, err
    assert "1 min of training" in out and "done: step 6 (1.0 min trained: the time budget)" in out
    state = _state(run)
    assert state["step"] == 6 and state["seconds"] == 60.0  # 6 steps of 10 s reach the 60 s budget
    folder = RunFolder(run)
    assert set(folder.step_checkpoints()) == {6}  # between --checkpoint-every's steps (100)
    assert [p.name for p in folder.samples.glob("*.png")] == [folder.sample_grid(6).name]
    train = json.loads(folder.config.read_text())["train"]
    assert train["minutes"] == 1.0 and train["steps"] == MAX_STEPS  # the budget alone lifts the step limit
    rows = [json.loads(line) for line in folder.metrics.read_text().splitlines()]
    assert rows[-1]["step"] == 6 and "sample_diversity" in rows[-1]  # the last step's validation too


def test_resume_adds_minutes_and_plain_resume_keeps_the_budget(cli, tiny_dataset, tmp_path, step_clock):
    run = tmp_path / "run"
    assert _train(cli, tiny_dataset, run, "--minutes", "1")[0] == 0
    code, out, err = _train(cli, tiny_dataset, run, "--resume", "--minutes", "0.5")
    assert code == 0, err
    assert "0.5 min of training" in out  # what this session will train
    state = _state(run)
    assert (state["step"], state["seconds"]) == (9, 90.0)  # 30 more seconds: 3 more steps
    assert state["config"]["train"]["minutes"] == 1.5  # the run's budget in all
    code, out, err = _train(cli, tiny_dataset, run, "--resume")  # the budget is spent: nothing to train
    assert code == 0 and _state(run)["step"] == 9, err
    code, out, err = _train(cli, tiny_dataset, run, "--resume", "--steps", "11")  # a length alone lifts the budget
    assert code == 0 and _state(run)["step"] == 11 and "time budget" not in out, err


def test_the_first_limit_reached_ends_the_run(cli, tiny_dataset, tmp_path, step_clock):
    code, out, err = _train(cli, tiny_dataset, tmp_path / "steps", "--steps", "4", "--minutes", "1")
    assert code == 0, err
    assert "4 steps of 8 or 1 min, whichever ends first" in out and "time budget" not in out
    assert _state(tmp_path / "steps")["step"] == 4
    step_clock.per_step = 600.0  # 10-minute steps, so half an hour (exact in binary) is 3 steps
    code, out, err = _train(cli, tiny_dataset, tmp_path / "time", "--steps", "20", "--hours", "0.5")
    assert code == 0, err
    assert _state(tmp_path / "time")["step"] == 3 and "the time budget" in out


def test_train_sr_takes_the_budget_too(cli, hr_dataset, tmp_path, step_clock):
    run = tmp_path / "sr"
    flags = ["--scale", "4", "--channels", "4", "--blocks", "1", "--batch", "2", "--patch", "8", "--val-posters", "1",
             "--val-every", "100", "--checkpoint-every", "100", "--device", "cpu", "--precision", "fp32"]
    code, out, err = cli("train-sr", hr_dataset, "-o", run, "--minutes", "0.5", *flags)
    assert code == 0, err
    assert "done: step 3 (0.5 min trained: the time budget)" in out
    assert _state(run)["step"] == 3 and set(RunFolder(run).step_checkpoints()) == {3}
    rows = [json.loads(line) for line in RunFolder(run).metrics.read_text().splitlines()]
    assert rows[-1]["step"] == 3 and "val_psnr" in rows[-1]  # validated at the budget's end
    code, out, err = cli("train-sr", hr_dataset, "-o", run, "--resume", "--minutes", "0.5", *flags)
    assert code == 0, err
    assert _state(run)["step"] == 6 and _state(run)["seconds"] == 60.0  # 30 s more


@pytest.mark.parametrize("args,names", [
    (["--minutes", "-1"], ["--minutes", "greater than 0"]),
    (["--minutes", "0"], ["--minutes", "greater than 0"]),
    (["--minutes", "nan"], ["--minutes", "finite"]),
    (["--hours", "inf"], ["--hours", "finite"]),
    (["--minutes", "1e12"], ["--minutes", "at most"]),
])
def test_bad_budgets_are_one_line_errors(cli, tiny_dataset, tmp_path, args, names):
    for command, dataset in (("train", tiny_dataset), ("train-sr", tiny_dataset)):
        code, out, err = cli(command, dataset, "-o", tmp_path / "run", *args)
        one_line_error(code, err, command, *names)
    assert not (tmp_path / "run").exists()


def test_minutes_and_hours_together_are_refused(cli, tiny_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "1", "--hours", "1")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--hours: not allowed with argument --minutes" in err


def test_dry_run_says_the_budget(cli, tiny_dataset, tmp_path):
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--hours", "2", "--dry-run")
    assert code == 0, err
    train = json.loads(out)["train"]
    assert math.isclose(train["minutes"], 120.0) and train["steps"] == MAX_STEPS
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--kimg", "1", "--minutes", "5", "--dry-run")
    train = json.loads(out)["train"]
    assert code == 0 and train["minutes"] == 5.0 and train["steps"] == math.ceil(1000 / 64)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # starts torchrun and 2 training processes
def test_ranks_stop_at_the_same_step_under_torchrun(tiny_dataset: Path, tmp_path: Path):
    """Rank 0's clock decides at a log step (every 2 steps here) and every rank stops there; a rank that
    stopped alone would leave the other waiting in a collective, and their weights would differ."""
    run = tmp_path / "run"
    done = torchrun_train(tiny_dataset, run, "--minutes", "0.05")  # 3 s of training; no step limit
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("the time budget") == 1  # only rank 0 talks
    ddp = json.loads((run / "ddp.json").read_text())
    assert ddp["fingerprints"][0] == ddp["fingerprints"][1]
    state = _state(run)
    assert state["step"] == ddp["step"] and state["step"] % 2 == 0 and state["seconds"] >= 3.0
    assert RunFolder(run).sample_grid(state["step"]).is_file()
