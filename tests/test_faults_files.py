"""Files postergen reads back, damaged for real: zero-byte arrays, a hand-edited dataset.json or
config.json. Each is one line naming the file and the field, exit status 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import one_line_error, run_postergen, tiny_flags

TINY = tiny_flags(steps=2)


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# --- 3. zero-byte arrays in a dataset folder -----------------------------------------------------

def dataset_commands(data: Path, run: Path, out: Path) -> list[tuple[str, list]]:
    return [("info", [data]), ("train", [data, "-o", out, *TINY]),
            ("evaluate", [run, "--data", data, "--metrics", "swd", "--n", 8, "--device", "cpu"])]


@pytest.mark.parametrize("array", ["images.npy", "labels.npy"])
def test_zero_byte_array(cli, data: Path, run: Path, tmp_path: Path, array: str):
    (data / array).write_bytes(b"")
    for command, args in dataset_commands(data, run, tmp_path / "out"):
        err = one_line_error(*cli(command, *args)[::2], command, f"{data / array}:", "empty file, 0 bytes")
        assert "labels.npy" not in err if array == "images.npy" else "images.npy" not in err
    assert not (tmp_path / "out").exists()  # train stopped before making the run folder


def test_array_cut_inside_its_header(cli, data: Path):
    with open(data / "labels.npy", "r+b") as f:
        f.truncate(20)
    one_line_error(*cli("info", data)[::2], "info", f"{data / 'labels.npy'}:", "broken dataset arrays")


# --- 4. dataset.json edited by hand --------------------------------------------------------------

def _genres_as_strings(meta: dict) -> None:
    meta["genres"] = [g["name"] for g in meta["genres"]]


DATASET_JSON = [  # (what, change, the field named, words of the message)
    ("size a number", lambda m: m.update(size=32), "size", "[height, width] in pixels, not the number 32"),
    ("size of three", lambda m: m.update(size=[32, 32, 3]), "size", "not a list of 3"),
    ("size a string", lambda m: m.update(size=["32", "32"]), "size", "[height, width]"),
    ("genres plain strings", _genres_as_strings, "genres[0]", 'an object {"name": ..., "count": ...}, not the string "action"'),
    ("genre name a number", lambda m: m["genres"][1].update(name=7), "genres[1].name", "a string, not the number 7"),
    ("genre count missing", lambda m: m["genres"][0].pop("count"), "genres[0].count", "is missing"),
    ("genres an object", lambda m: m.update(genres={}), "genres", "a list, not an object"),
    ("count negative", lambda m: m.update(count=-1), "count", "an integer >= 0, not the number -1"),
    ("count a float", lambda m: m.update(count=48.0), "count", "not the number 48.0"),
    ("count missing", lambda m: m.pop("count"), "count", "is missing"),
    ("skipped of strings", lambda m: m.update(skipped=["a.jpg"]), "skipped[0]", "an object"),
    ("prepare roots a string", lambda m: m["prepare"].update(roots="posters"), "prepare.roots", "a list of strings"),
]


@pytest.mark.parametrize("what, change, field, words", DATASET_JSON, ids=[c[0] for c in DATASET_JSON])
def test_dataset_json_with_a_wrong_field(cli, data: Path, run: Path, tmp_path: Path, what, change, field, words):
    edit_json(data / "dataset.json", change)
    for command, args in dataset_commands(data, run, tmp_path / "out"):
        one_line_error(*cli(command, *args)[::2], command, f"{data / 'dataset.json'}: field {field} ", words)


# --- 5. config.json edited by hand ---------------------------------------------------------------

CONFIG_JSON = [  # (what, change, the field named, words of the message)
    ("train a list", lambda c: c.update(train=[]), "train", "an object, not an empty list"),
    ("model width missing", lambda c: c["model"].pop("width"), "model.width", "is missing"),
    ("model height a string", lambda c: c["model"].update(height="64"), "model.height", 'an integer >= 1, not the string "64"'),
    ("model z_dim true", lambda c: c["model"].update(z_dim=True), "model.z_dim", "not true"),
    ("model null", lambda c: c.update(model=None), "model", "an object, not null"),
    ("genres a string", lambda c: c.update(genres="horror"), "genres", "a list of strings"),
    ("dataset a list", lambda c: c.update(dataset=[]), "dataset", "an object"),
    ("dataset size a number", lambda c: c["dataset"].update(size=32), "dataset.size", "[height, width]"),
    ("train steps a string", lambda c: c["train"].update(steps="2"), "train.steps", "an integer >= 1"),
    ("kind a number", lambda c: c.update(kind=1), "kind", "a string"),
    # well-typed, but no longer what the checkpoint was trained with: G would fail inside torch
    ("model z_dim changed", lambda c: c["model"].update(z_dim=99), "model.z_dim", "is 99, but"),
    ("genres changed", lambda c: c.update(genres=["horror"]), "genres", "latest.pt was trained with"),
]


@pytest.mark.parametrize("what, change, field, words", CONFIG_JSON, ids=[c[0] for c in CONFIG_JSON])
def test_report_on_config_json_with_a_wrong_field(cli, run: Path, what, change, field, words):
    edit_json(run / "config.json", change)
    one_line_error(*cli("report", run)[::2], "report", f"{run / 'config.json'}: field {field} ", words)
    assert not (run / "report.html").exists()


def test_config_json_not_an_object(cli, run: Path):
    (run / "config.json").write_text("[1, 2]")
    one_line_error(*cli("report", run)[::2], "report", f"{run / 'config.json'}:", "not a JSON object")


def test_a_checkpoint_with_a_damaged_config_is_one_line(cli, run: Path, tmp_path: Path):
    """The config inside a checkpoint is read by sample, export, evaluate and the studio alike."""
    import torch

    latest = run / "checkpoints" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    state["config"]["model"]["width"] = "wide"
    torch.save(state, latest)
    one_line_error(*cli("sample", run, "-o", tmp_path / "out.png", "--device", "cpu")[::2], "sample", f"{latest}:",
             "field model.width", "the string \"wide\"")
    state["config"]["model"]["no_such_field"] = 1
    state["config"]["model"]["width"] = 32
    torch.save(state, latest)
    one_line_error(*cli("export", run, "-o", tmp_path / "g.safetensors")[::2], "export", f"{latest}:", "no_such_field")


@pytest.mark.slow
def test_a_real_process_prints_one_line(run: Path, data: Path):
    """The same faults in a real `postergen` process: what a user sees on the terminal."""
    (data / "images.npy").write_bytes(b"")
    edit_json(run / "config.json", lambda c: c.update(train=[]))
    for args, names in (([ "info", data], [f"{data / 'images.npy'}:", "0 bytes"]),
                        (["report", run], [f"{run / 'config.json'}: field train "])):
        done = run_postergen(*args)
        one_line_error(done.returncode, done.stderr, args[0], *names)
