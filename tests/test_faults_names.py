"""Dataset text never becomes a path as it is: hostile genre names stay inside -o, and what
postergen did not write is not replaced without --force (docs/faults.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import built_in_dataset, tiny_train_args
from postergen.files import file_label, written_by_postergen

HOSTILE = ["../../escaped", "action/adventure", "a\x07bell\x1b[2j", "<b>html</b>&amp;", "x" * 300,
           "ужасы", "..", "/", "film noir", "sci+fi"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A run whose dataset's CSV gives every poster one hostile genre besides its own."""
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import train

    root = tmp_path_factory.mktemp("hostile")
    built_in_dataset(root, n=40, size=32, relabel=lambda i, genres: f"{HOSTILE[i % len(HOSTILE)]}|{genres}")
    train(open_dataset(root / "ds"), root / "run", from_preset("stable", **tiny_train_args(steps=1)),
          echo=lambda *a: None)
    return root / "run"


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_file_label_is_one_safe_unique_component():
    labels = [file_label(g) for g in HOSTILE] + [file_label("action_adventure")]
    assert len(set(labels)) == len(labels)  # 'action/adventure' and 'action_adventure' stay apart
    for label in labels:
        assert "/" not in label and "\x00" not in label and label not in (".", "..") and not label.startswith(".")
        assert all(c.isprintable() for c in label) and len(label.encode()) <= 200
    assert file_label("horror") == "horror" and file_label("action+comedy") == "action+comedy"
    assert file_label("ужасы") == "ужасы" and file_label("film noir") == "film noir"  # readable as they are


@pytest.mark.slow
def test_sample_writes_every_hostile_genre_inside_out(cli, hostile_run: Path, tmp_path: Path):
    import json

    genres = json.loads((hostile_run / "config.json").read_text())["genres"]
    assert "../../escaped" in genres and "a bell [2j" in genres  # control characters are spaces in names
    out = tmp_path / "work" / "deep" / "out"
    before = _files_under(tmp_path)
    code, stdout, err = cli("sample", hostile_run, "-o", out, "--n", "2", *[a for g in genres for a in ("--genre", g)])
    assert code == 0, err
    new = _files_under(tmp_path) - before
    assert new and all(p.parent == out for p in new)  # nothing escaped -o, nothing in a sub-folder
    assert len(new) == 2 * len(genres) + 1  # every row's posters and the grid: no two genres share a name
    shown = {Image.open(p).text["postergen:genres"] for p in new if p.name != "grid.png"}
    assert shown == set(genres)  # provenance keeps the real names
    assert "\x1b" not in stdout and "\x07" not in stdout
    code, _, err = cli("sample", hostile_run, "-o", out, "--interpolate", "1", "2", "--frames", "2",
                       "--genre", "../../escaped")
    assert code == 0, err
    assert {p.parent for p in _files_under(tmp_path) - before} == {out}


def test_a_genre_with_plus_in_its_name_is_one_genre(hostile_run: Path, tmp_path: Path):
    from postergen.sample import sample

    r = sample(hostile_run, tmp_path / "s", n=1, genres=["sci+fi"])
    assert r["rows"] == ["sci+fi"] and Image.open(r["files"][0]).text["postergen:genres"] == "sci+fi"


def test_info_prints_control_characters_escaped(cli, hostile_run: Path):
    import json

    ds = hostile_run.parent / "ds"
    meta = json.loads((ds / "dataset.json").read_text())
    meta["genres"][0]["name"] = "evil\x1b]0;pwned\x07\u202e"  # a dataset.json edited by someone else
    (ds / "dataset.json").write_text(json.dumps(meta))
    code, out, _ = cli("info", ds)
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "evil\\x1b" in out


# ---------------------------------------------------------------------------------------------
# Other people's files

def test_outputs_refuse_files_postergen_did_not_write(cli, tiny_run: Path, tmp_path: Path):
    thesis = tmp_path / "thesis.html"
    thesis.write_text("<html>my thesis</html>")
    mine = {thesis: "report", tmp_path / "model.safetensors": "export", tmp_path / "pics" / "grid.png": "sample"}
    (tmp_path / "model.safetensors").write_bytes(b"my own weights")
    Image.new("RGB", (4, 4)).save(tmp_path / "pics.png")
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "pics" / "grid.png")
    before = {p: p.read_bytes() for p in mine}
    calls = {"report": ("report", tiny_run, "-o", thesis),
             "export": ("export", tiny_run, "-o", tmp_path / "model.safetensors"),
             "sample": ("sample", tiny_run, "-o", tmp_path / "pics", "--n", "1")}
    for path, command in mine.items():
        code, _, err = cli(*calls[command])
        assert code == 2 and "was not written by postergen; use --force" in err and err.count("\n") == 1, err
        assert path.read_bytes() == before[path]
    for path, command in mine.items():  # --force replaces; then postergen's own file is replaced freely
        assert cli(*calls[command], "--force")[0] == 0 and path.read_bytes() != before[path]
        assert written_by_postergen(path) and cli(*calls[command])[0] == 0


def test_evaluate_json_refuses_a_file_it_did_not_write(cli, data: Path, tmp_path: Path):
    results = tmp_path / "results.json"
    results.write_text('{"mine": true}')
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(images / f"{i}.png")
    args = ("evaluate", "--images", images, "--data", data, "--n", "4", "--metrics", "swd", "--json", results)
    code, _, err = cli(*args)
    assert code == 2 and "results.json exists and was not written by postergen" in err
    assert results.read_text() == '{"mine": true}'
    assert cli(*args, "--force")[0] == 0 and written_by_postergen(results)
    assert cli(*args)[0] == 0  # its own result is replaced without --force


def test_animations_carry_a_mark_so_they_can_be_replaced(tiny_run: Path, tmp_path: Path):
    from postergen.sample import interpolate

    for fmt in ("gif", "webp"):
        r = interpolate(tiny_run, tmp_path, (1, 2), frames=2, fmt=fmt)
        assert written_by_postergen(r["animation"]) and written_by_postergen(r["strip"])
        interpolate(tiny_run, tmp_path, (1, 2), frames=2, fmt=fmt)  # again: no --force needed


# ---------------------------------------------------------------------------------------------
# Memory

def test_sample_streams_in_batches_and_caps_the_grid(tiny_run: Path, tmp_path: Path, monkeypatch):
    import postergen.sample as sampling

    sizes = []
    render = sampling.render
    monkeypatch.setattr(sampling, "render", lambda G, z, *a, **k: sizes.append(len(z)) or render(G, z, *a, **k))
    r = sampling.sample(tiny_run, tmp_path, n=40, genres=["horror", "comedy"], batch=16)
    assert sizes == [16, 16, 8, 16, 16, 8]  # never more than --batch posters in memory per render
    assert len(r["files"]) == 80 and r["grid_columns"] == sampling.GRID_COLUMNS
    assert Image.open(r["grid"]).size == (16 * 34 + 2, 2 * 34 + 2)  # 16 columns, not 40
    one = sampling.sample(tiny_run, tmp_path / "one", n=100, genres=["horror"], singles=False)
    assert Image.open(one["grid"]).size == (8 * 34 + 2, 8 * 34 + 2)  # 64 posters in rows of 8


@pytest.fixture(scope="module")
def run256(tmp_path_factory) -> Path:
    """A 1-step run at 256 px: big enough posters that a large --batch cannot fit a capped process."""
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import train

    root = tmp_path_factory.mktemp("r256")
    cfg = from_preset("stable", **tiny_train_args(steps=1, batch=2, sample_every=1000, checkpoint_every=1000))
    train(open_dataset(built_in_dataset(root, n=8, size=256)), root / "run", cfg, echo=lambda *a: None)
    return root / "run"


@pytest.mark.slow
def test_out_of_memory_while_sampling_is_one_line_and_keeps_written_posters(run256: Path, tmp_path: Path):
    """A real allocation failure: the process's address space is capped 1.5 GB above what it holds
    after start-up; 1024 posters of 256 px at once need about 2.4 GB more, 4 at once about 0.3 GB."""
    import subprocess
    import sys

    script = (
        "import resource, sys, torch\n"
        "from postergen.cli import main\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 1500 * 2**20, resource.RLIM_INFINITY))\n"
        "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [sys.executable, "-c", script, "sample", str(run256), "-o", str(out), "--genre", "horror", "--no-grid"]
    small = subprocess.run(common + ["--n", "4"], capture_output=True, text=True, env=env, timeout=900)
    assert small.returncode == 0, small.stderr
    huge = subprocess.run(common + ["--n", "1024", "--batch", "1024", "--seed", "100"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert huge.returncode == 2, huge.stderr
    assert "out of cpu memory drawing 256x256 posters 1024 at a time; try a smaller --batch" in huge.stderr
    assert "Traceback" not in huge.stderr and huge.stderr.count("\n") == 1
    assert len(list(out.glob("horror-seed*.png"))) == 4  # the earlier posters are untouched
