"""Bad option values and OS errors: one line naming the option (or the path), a non-zero exit, no
traceback, and nothing written (docs/faults.md). Every case fails before training or sampling starts."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HUGE, built_in_dataset, one_line_error, with_small_defaults

# (extra arguments, the option the message must name); the dataset, run and output are added per command
TRAIN = [
    (["--lr-g", "nan"], "--lr-g"), (["--lr-g", "inf"], "--lr-g"), (["--lr-d", "0"], "--lr-d"),
    (["--label-dropout", "nan"], "--label-dropout"), (["--real-label", "nan"], "--real-label"),
    (["--ema-kimg", "inf"], "--ema-kimg"), (["--ema-rampup", "nan"], "--ema-rampup"),
    (["--r1-gamma", "nan"], "--r1-gamma"), (["--r1-gamma", "-1"], "--r1-gamma"),
    (["--beta1", "nan"], "--beta1"), (["--beta1", "2"], "--beta1"), (["--beta2", "1"], "--beta2"),
    (["--augment", "bogus"], "--augment"), (["--augment", " "], "--augment"), (["--augment", ",,"], "--augment"),
    (["--precision", "bogus"], "--precision"), (["--device", ""], "--device"), (["--device", "cuda:0"], "--device"),
    (["--loss", "wasserstein"], "--loss"), (["--d-norm", "layer"], "--d-norm"),
    (["--z-dim", "0"], "--z-dim"), (["--z-dim", "99999999999"], "--z-dim"), (["--ngf", "100000"], "--ngf"),
    (["--ndf", "-1"], "--ndf"), (["--max-channels", "0"], "--max-channels"), (["--genre-dim", "0"], "--genre-dim"),
    (["--d-every", "0"], "--d-every"), (["--g-steps", "100000"], "--g-steps"), (["--r1-every", "0"], "--r1-every"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints"), (["--seed", "-1"], "--seed"), (["--seed", HUGE], "--seed"),
    (["--batch", "1000000000"], "--batch"), (["--batch", "1"], "--batch"), (["--batch", "100"], "--batch"),
    (["--steps", "0"], "--steps"), (["--steps", HUGE], "--steps"), (["--log-every", "0"], "--log-every"),
    (["--sample-every", HUGE], "--sample-every"), (["--epochs", "nan"], "--epochs"), (["--epochs", "inf"], "--epochs"),
    (["--epochs", "0"], "--epochs"), (["--epochs", "1e30"], "--epochs"), (["--kimg", "-1"], "--kimg"),
    (["--kimg", "nan"], "--kimg"), (["--r1-gamma", "1e308"], "--r1-gamma"),
    (["--feature-weight", "1e308"], "--feature-weight"), (["--ema-kimg", "1e308"], "--ema-kimg"),
    (["--ema-rampup", "1e308"], "--ema-rampup"),
]
TRAIN_SR = [
    (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--blur-max", "inf"], "--blur-max"),
    (["--blur-max", "1e9"], "--blur-max"), (["--noise-max", "inf"], "--noise-max"),
    (["--blur-prob", "nan"], "--blur-prob"), (["--val-fraction", "nan"], "--val-fraction"),
    (["--channels", "99999999999"], "--channels"), (["--blocks", "99999999999"], "--blocks"),
    (["--patch", "3"], "--patch"), (["--patch", HUGE], "--patch"), (["--batch", "0"], "--batch"),
    (["--steps", HUGE], "--steps"), (["--seed", "-1"], "--seed"), (["--val-posters", "-1"], "--val-posters"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints"), (["--device", ""], "--device"),
    (["--precision", ""], "--precision"), (["--jpeg-min-quality", "0"], "--jpeg-min-quality"),
    (["--lr-halve-every", HUGE], "--lr-halve-every"),
]
SAMPLE = [
    (["--n", "0"], "--n"), (["--n", HUGE], "--n"), (["--seed", "-1"], "--seed"), (["--seed", HUGE], "--seed"),
    (["--truncation", "nan"], "--truncation"), (["--truncation", "inf"], "--truncation"),
    (["--truncation", "0"], "--truncation"), (["--genre", ""], "--genre"), (["--genre", ","], "--genre"),
    (["--genre", "horror+"], "--genre"), (["--device", ""], "--device"), (["--device", "bogus"], "--device"),
    (["--interpolate", "0", HUGE], "--interpolate"), (["--interpolate", "-1", "2"], "--interpolate"),
    (["--interpolate", "0", "1", "--frames", "1000"], "--frames"),
    (["--interpolate", "0", "1", "--truncation", "nan"], "--truncation"), (["--truncation", "1e308"], "--truncation"),
    (["--batch", "0"], "--batch"), (["--batch", HUGE], "--batch"),
]
EVALUATE = [
    (["--n", "1"], "--n"), (["--n", HUGE], "--n"), (["--seed", HUGE], "--seed"), (["--metrics", ""], "--metrics"),
    (["--metrics", ",,"], "--metrics"), (["--metrics", "swd,"], "--metrics"), (["--device", ""], "--device"),
    (["--inception-weights", "no-such-file.pth"], "--inception-weights"),
]
SYNTH = [
    (["--n", "0"], "--n"), (["--n", HUGE], "--n"), (["--seed", HUGE], "--seed"), (["--workers", "0"], "--workers"),
    (["--workers", "100000"], "--workers"),
]
PREPARE = [
    (["--size", "0"], "--size"), (["--size", "100000"], "--size"), (["--min-side", "-5"], "--min-side"),
    (["--max-pixels", "0"], "--max-pixels"), (["--max-pixels", HUGE], "--max-pixels"),
    (["--workers", "100000"], "--workers"), (["--no-labels", "--genres", "horror"], "--no-labels"),
    (["--genres", " , "], "--genres"),
]


def _ids(cases) -> list[str]:
    return ["_".join(extra) or "empty" for extra, _ in cases]


@pytest.mark.parametrize("extra, option", TRAIN, ids=_ids(TRAIN))
def test_train_options(cli, tiny_dataset, tmp_path, extra, option):
    out = tmp_path / "run"
    args = with_small_defaults(extra, steps="2", batch="8", ngf="8", ndf="8", z_dim="8", genre_dim="8", device="cpu")
    code, _, err = cli("train", tiny_dataset, "-o", out, "--no-tensorboard", *args)
    one_line_error(code, err, "train", option)
    assert not out.exists()  # no folder, no config.json


@pytest.fixture(scope="module")
def odd_size_dataset(tmp_path_factory) -> Path:
    """Posters at 48 px: `prepare` makes them (for train-sr), the GAN cannot train them."""
    return built_in_dataset(tmp_path_factory.mktemp("odd"), n=8, size=48)


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_train_refuses_a_size_the_gan_cannot_make(cli, odd_size_dataset, tmp_path, dry_run):
    out = tmp_path / "run"
    code, _, err = cli("train", odd_size_dataset, "-o", out, "--batch", "4", *dry_run)
    one_line_error(code, err, "train", "48x48 px", "--size", "32, 64, 128 or 256")
    assert not out.exists()


def test_prepare_says_which_sizes_train_takes(cli, odd_size_dataset, tmp_path):
    code, _, err = cli("prepare", odd_size_dataset.parent / "posters", "-o", tmp_path / "ds", "--size", "48",
                       "--workers", "1")
    assert code == 0 and "--size 48 px suits `train-sr` only" in err


@pytest.mark.parametrize("extra, option", TRAIN_SR, ids=_ids(TRAIN_SR))
def test_train_sr_options(cli, tiny_dataset, tmp_path, extra, option):
    out = tmp_path / "sr"
    args = with_small_defaults(extra, scale="2", patch="8", steps="2", batch="4", channels="4", blocks="0", device="cpu")
    code, _, err = cli("train-sr", tiny_dataset, "-o", out, *args)
    one_line_error(code, err, "train-sr", option)
    assert not out.exists()


@pytest.mark.parametrize("extra, option", SAMPLE, ids=_ids(SAMPLE))
def test_sample_options(cli, tiny_run, tmp_path, extra, option):
    out = tmp_path / "posters"
    code, _, err = cli("sample", tiny_run, "-o", out, *extra)
    one_line_error(code, err, "sample", option)
    assert not out.exists()


def test_sample_with_a_bad_upscaler_writes_nothing(cli, tiny_run, tmp_path):
    out = tmp_path / "posters"
    code, _, err = cli("sample", tiny_run, "-o", out, "--upscale", tiny_run)  # a GAN run, not an SR run
    one_line_error(code, err, "sample", "not a super-resolution run")
    assert not out.exists()


@pytest.mark.parametrize("extra, option", EVALUATE, ids=_ids(EVALUATE))
def test_evaluate_options(cli, tiny_run, tiny_dataset, tmp_path, extra, option):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, _, err = cli("evaluate", run, "--data", tiny_dataset, *extra)
    one_line_error(code, err, "evaluate", option)
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize("extra, option", SYNTH, ids=_ids(SYNTH))
def test_synth_options(cli, tmp_path, extra, option):
    code, _, err = cli("synth", tmp_path / "posters", *extra)
    one_line_error(code, err, "synth", option)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("extra, option", PREPARE, ids=_ids(PREPARE))
def test_prepare_options(cli, tiny_dataset, tmp_path, extra, option):
    out = tmp_path / "ds"
    code, _, err = cli("prepare", tiny_dataset.parent / "posters", "-o", out, *extra)
    one_line_error(code, err, "prepare", option)
    assert not out.exists()


@pytest.mark.parametrize("command", [["report", "RUN", "--n", "0"], ["report", "RUN", "--device", ""],
                                     ["upscale", "RUN/x.png", "-o", "OUT", "--model", "RUN", "--device", ""]])
def test_report_and_upscale_options(cli, tiny_run, tmp_path, command):
    args = [str(a).replace("RUN", str(tiny_run)).replace("OUT", str(tmp_path / "out")) for a in command]
    code, _, err = cli(*args)
    one_line_error(code, err, command[0], command[-2])
    assert not (tmp_path / "out").exists() and not (tiny_run / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "DATA", "-o", "OUT", "--steps", "x"], "argument --steps: invalid int value"),
    (["train", "DATA", "-o", "", "--steps", "2"], "argument -o/--out: empty path"),
    (["prepare", "", "-o", "OUT"], "argument src: empty path"),
    (["prepare", "DATA", "-o", "OUT", "--labels", ""], "argument --labels: empty path"),
    (["train-sr", "DATA", "-o", "OUT", "--scale", "3"], "argument --scale: invalid choice"),
])
def test_command_line_errors_are_one_line(capsys, tiny_dataset, tmp_path, args, message):
    from postergen.cli import main

    args = [a.replace("DATA", str(tiny_dataset)).replace("OUT", str(tmp_path / "out")) for a in args]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1 and "usage:" not in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# OS errors: one line naming the path, exit 1 (a file where a folder belongs: exit 2, checked first)

WRONG_KIND = {  # command -> what the message says about the output path
    "train -o FILE": (lambda p: ["train", p.data, "-o", p.file, "--steps", "1"], "is a file"),
    "train -o FILE/run": (lambda p: ["train", p.data, "-o", p.file / "run", "--steps", "1"], "is a file"),
    "train-sr -o FILE": (lambda p: ["train-sr", p.data, "-o", p.file], "is a file"),
    "sample -o FILE": (lambda p: ["sample", p.run, "-o", p.file], "is a file"),
    "sample -o FILE/posters": (lambda p: ["sample", p.run, "-o", p.file / "posters"], "is a file"),
    "upscale -o FILE": (lambda p: ["upscale", p.image, "-o", p.file, "--model", p.run], "is a file"),
    "prepare -o FILE/ds": (lambda p: ["prepare", p.posters, "-o", p.file / "ds"], "is a file"),
    "synth FILE/posters": (lambda p: ["synth", p.file / "posters", "--n", "2"], "is a file"),
    "export -o FOLDER": (lambda p: ["export", p.run, "-o", p.folder], "is a folder"),
    "report -o FOLDER": (lambda p: ["report", p.run, "-o", p.folder], "is a folder"),
}


@pytest.mark.parametrize("case", WRONG_KIND)
def test_output_path_of_the_wrong_kind(cli, tiny_dataset, tiny_run, tmp_path, case):
    from types import SimpleNamespace

    paths = SimpleNamespace(data=tiny_dataset, run=tiny_run, posters=tiny_dataset.parent / "posters",
                            image=next((tiny_run / "samples").glob("*.png")), file=tmp_path / "notes.txt",
                            folder=tmp_path / "folder.safetensors")
    paths.file.write_text("keep")
    paths.folder.mkdir()
    command, says = WRONG_KIND[case]
    code, _, err = cli(*command(paths))
    one_line_error(code, err, case.split()[0], says)
    assert paths.file.read_text() == "keep" and not any(paths.folder.iterdir())


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB tmpfs; tests fill it, then may remount it read-only (root ignores chmod, so a folder's
    mode bits would not make it read-only)."""
    path = tmp_path / "disk"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'mount failed'}); needs root")
    yield path
    subprocess.run(["umount", str(path)], capture_output=True)


def _read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


READ_ONLY = {
    "sample": lambda p: ["sample", p.run, "-o", p.disk / "posters", "--n", "1"],
    "export": lambda p: ["export", p.run, "-o", p.disk / "g.safetensors"],
    "train": lambda p: ["train", p.data, "-o", p.disk / "run", "--steps", "1"],
    "report": lambda p: ["report", p.disk / "run"],
    "evaluate": lambda p: ["evaluate", p.disk / "run", "--data", p.data],  # refused before minutes of metrics
}


@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_folder(cli, tiny_dataset, tiny_run, disk, command):
    from types import SimpleNamespace

    shutil.copytree(tiny_run, disk / "run", ignore=shutil.ignore_patterns("samples", "step-*"))
    _read_only(disk)
    code, _, err = cli(*READ_ONLY[command](SimpleNamespace(run=tiny_run, data=tiny_dataset, disk=disk)))
    one_line_error(code, err, command, ": Read-only file system", str(disk), exit_code=1)


def test_disk_full(cli, tiny_run, disk):
    (disk / "filler").write_bytes(bytes(4 * 2**20 - 64 * 2**10))  # leave 64 KiB: room for a few posters
    code, _, err = cli("sample", tiny_run, "-o", disk / "posters", "--n", "64")
    one_line_error(code, err, "sample", "No space left on device", str(disk / "posters"), exit_code=1)


def test_os_error_names_the_destination_and_exits_1(cli, tiny_run, tmp_path, monkeypatch):
    import postergen.weights

    def full(run, out, ema=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".g.tmp"), None, str(out))

    monkeypatch.setattr(postergen.weights, "export", full)
    code, _, err = cli("export", tiny_run, "-o", tmp_path / "g.safetensors")
    one_line_error(code, err, "export", f"{tmp_path / 'g.safetensors'}: No space left on device", exit_code=1)


def test_programming_errors_still_raise(cli, tiny_run, tmp_path, monkeypatch):
    import postergen.weights

    def broken(run, out, ema=True):
        raise KeyError("a bug, not the user's mistake")

    monkeypatch.setattr(postergen.weights, "export", broken)
    with pytest.raises(KeyError):
        cli("export", tiny_run, "-o", tmp_path / "g.safetensors")


# ---------------------------------------------------------------------------------------------
# Messages from torch: whole sentences, the useful one

def test_foreign_checkpoint_message_is_whole_sentences(cli, tmp_path):
    import numpy as np
    import torch

    torch.save({"weights": np.zeros(3)}, tmp_path / "foreign.pt")  # needs unpickling numpy: refused
    code, _, err = cli("sample", tmp_path / "foreign.pt", "-o", tmp_path / "out")
    one_line_error(code, err, "sample", "Weights only load failed: Unsupported global",
                   "was not an allowed global by default)")
    assert "\x1b" not in err and "arbitrary code" not in err


def test_state_dict_mismatch_is_summarised_not_cut():
    from postergen.models.dcgan import Generator, ModelConfig
    from postergen.weights import brief

    try:
        Generator(ModelConfig(ngf=8)).load_state_dict(Generator(ModelConfig(ngf=16)).state_dict())
    except RuntimeError as e:
        text = brief(e)
    assert text.startswith("size mismatch for main.0.weight: copying a param with shape torch.Size([100, 128, 4, 4])")
    assert text.endswith("torch.Size([100, 64, 4, 4]) (1 of 21 problems)")
    long = brief(RuntimeError("Error(s) in loading state_dict for G:\n\tMissing key(s) in state_dict: "
                              + ", ".join(f'"layer.{i}.weight"' for i in range(100)) + ". "))
    assert len(long) <= 220 and long.endswith('.weight", ...')
