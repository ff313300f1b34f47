"""Runs that travel (issue 24): a run trained in one folder, moved elsewhere with its dataset gone,
samples, exports, evaluates, reports and serves, and nothing it writes or serves names a path it was
ever at; `train --resume` finds its dataset at any path by fingerprint; an export is a folder a person
can publish (weights and a model card) that `sample` and the studio take."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import built_in_dataset, call, get_json, one_line_error, post, tiny_train_args
from postergen.web.app import create_app, running


@pytest.fixture(scope="module")
def travelled(tmp_path_factory) -> dict:
    """Trained at COLAB/runs/horror on COLAB/posters-ds, then moved to LAPTOP/downloads/carried; the
    dataset left its folder (kept in STASH, which the run was never told about)."""
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import train

    colab, laptop = tmp_path_factory.mktemp("colab"), tmp_path_factory.mktemp("laptop")
    data = built_in_dataset(colab, n=48, size=32)
    trained = colab / "runs" / "horror"
    train(open_dataset(data), trained, from_preset("stable", **tiny_train_args(steps=2)), echo=lambda *a: None)
    run = laptop / "downloads" / "carried"
    run.parent.mkdir()
    shutil.move(trained, run)
    stash = tmp_path_factory.mktemp("stash") / "moved-posters"
    shutil.move(data, stash)
    assert not data.exists() and not trained.exists()
    base = tmp_path_factory.getbasetemp()
    secrets = {str(p) for p in (base, base.resolve(), trained, data, colab, laptop, stash)}
    return {"run": run, "data": stash, "out": laptop / "out", "old": trained, "secrets": sorted(secrets)}


def leaks(data: bytes, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s.encode() in data]


def files_under(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()]


def assert_no_trace(secrets: list[str], *folders: Path) -> None:
    """No file (checkpoints, PNG text, GIF comments, HTML, JSON, the model card) names a secret path."""
    found = {str(p): leaks(p.read_bytes(), secrets) for p in files_under(*folders)}
    assert {p: s for p, s in found.items() if s} == {}
    for png in (p for p in files_under(*folders) if p.suffix == ".png"):
        with Image.open(png) as image:  # compressed text chunks too
            assert not leaks(json.dumps(getattr(image, "text", {})).encode(), secrets), png


def data_urls(body: bytes) -> list[Image.Image]:
    """Every PNG a JSON answer carries as a data: URL, decoded (its text is not greppable as base64)."""
    urls = re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", body)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in urls]


@pytest.mark.slow
def test_a_moved_run_works_and_nothing_it_writes_names_a_path(cli, travelled):
    run, out, secrets = travelled["run"], travelled["out"], travelled["secrets"]
    assert cli("sample", run, "-o", out / "posters", "--n", 2, "--genre", "horror")[0] == 0
    assert cli("sample", run, "-o", out / "walk", "--interpolate", 1, 2, "--frames", 3)[0] == 0
    code, _, err = cli("evaluate", run, "--data", travelled["data"], "--n", 16, "--metrics", "swd,copies")
    assert code == 0, err
    code, _, err = cli("export", run, "-o", out / "horror-gan")
    assert code == 0, err
    assert sorted(p.name for p in (out / "horror-gan").iterdir()) == ["README.md", "generator.safetensors"]
    code, _, err = cli("report", run)
    assert code == 0, err
    report = (run / "report.html").read_text()
    assert "<h1>Run carried</h1>" in report and "is gone from where the run recorded it" in report
    code, text, err = cli("info", out / "posters" / "horror-seed0.png")
    assert code == 0, err
    assert re.search(r"postergen:source\s+carried\b", text) and re.search(r"postergen:seed\s+0\b", text)
    assert re.search(r"postergen:step\s+2\b", text) and re.search(r"postergen:genres\s+horror\b", text)
    assert re.search(r"postergen:weights\s+[0-9a-f]{16}\b", text)
    assert cli("info", run)[0] == 0
    assert_no_trace(secrets, run, out)


@pytest.mark.slow
def test_the_studio_serves_a_moved_run_and_its_export_without_paths(cli, travelled):
    run, out, secrets = travelled["run"], travelled["out"], travelled["secrets"]
    assert cli("export", run, "-o", out / "served-export")[0] == 0
    assert cli("report", run)[0] == 0
    shutil.copytree(out / "served-export", run.parent / "horror-export")  # an export beside the run
    with running(create_app(run.parent, device="cpu")) as base:
        runs = get_json(base, "/api/runs")
        assert {r["id"]: r["checkpoints"] for r in runs} == {"carried": ["latest.pt", "step-0000002.pt"],
                                                             "horror-export": ["generator.safetensors"]}
        bodies = [call(base, "GET", path)[2] for path in (
            "/", "/api/health", "/api/runs", "/api/runs/carried", "/api/runs/carried/progress",
            "/api/runs/carried/files/config.json", "/api/runs/carried/files/report.html",
            "/api/runs/horror-export", "/api/runs/horror-export/genres")]
        for run_id in ("carried", "horror-export"):
            status, body = post(base, "/api/generate", {"run": run_id, "genres": ["horror"], "seed": 3, "n": 2})
            assert status == 200, body
            bodies.append(json.dumps(body).encode())
            status, body = post(base, "/api/interpolate", {"run": run_id, "seeds": [1, 2], "frames": 3})
            assert status == 200, body
            bodies.append(json.dumps(body).encode())
    for body in bodies:
        assert not leaks(body, secrets)
        for image in data_urls(body):  # the report's figures too
            assert not leaks(json.dumps(getattr(image, "text", {})).encode(), secrets)
    posters = [image.text for body in bodies[-4:] for image in data_urls(body)]
    assert len(posters) == 10 and all(text["postergen:source"] == "carried" for text in posters)
    fingerprints = {text["postergen:weights"] for text in posters}
    assert len(fingerprints) == 1  # the run's EMA G and its export are the same weights, named alike


@pytest.mark.slow
def test_resume_finds_the_moved_dataset_by_fingerprint(cli, travelled, tmp_path):
    from postergen.checkpoint import load_checkpoint
    from postergen.runfolder import dataset_path

    run = tmp_path / "again"
    shutil.copytree(travelled["run"], run)
    code, out, err = cli("train", travelled["data"], "-o", run, "--steps", 4, "--resume", "--device", "cpu")
    assert code == 0, err
    assert "not the dataset" not in out + err and load_checkpoint(run)["step"] == 4
    record = json.loads((run / "config.json").read_text())["dataset"]
    assert not Path(record["path"]).is_absolute() and record["name"] == "moved-posters"
    assert dataset_path(run, record) == travelled["data"].resolve()
    assert not leaks((run / "config.json").read_bytes(), [str(tmp_path), str(travelled["data"])])


@pytest.mark.slow
def test_resume_refuses_a_different_dataset_in_one_line(cli, travelled, tmp_path):
    run = tmp_path / "again"
    shutil.copytree(travelled["run"], run)
    other = built_in_dataset(tmp_path / "other", n=48, size=32, seed=1)  # same count, size, genres
    code, _, err = cli("train", other, "-o", run, "--steps", 4, "--resume", "--device", "cpu")
    one_line_error(code, err, "train", "other posters", "(ds)", "--allow-other-data")  # the recorded data, by name
    assert str(travelled["old"]) not in err


# ---------------------------------------------------------------------------------------------
# Runs from before: an absolute dataset path still works, and is not shown

def test_an_old_run_with_an_absolute_dataset_path_reports_without_showing_it(cli, run: Path, data: Path):
    config = json.loads((run / "config.json").read_text())
    config["dataset"] = {"path": str(data.resolve()), "count": 48, "size": [32, 32]}  # as runs recorded it
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = cli("report", run)
    assert code == 0, err
    report = (run / "report.html").read_text()
    assert "real posters from ds" in report  # found by its absolute path
    assert str(data.resolve()) not in report and "ds (path withheld)" in report
    with running(create_app(run, device="cpu")) as base:
        status, _, body = call(base, "GET", f"/api/runs/{run.name}/files/config.json")
    assert status == 200 and str(data.resolve()).encode() not in body


# ---------------------------------------------------------------------------------------------
# The export: weights and a model card, taken by sample and the studio

def test_export_writes_a_model_card_beside_the_weights(cli, tiny_run: Path, tmp_path: Path):
    code, out, err = cli("export", tiny_run, "-o", tmp_path / "card")
    assert code == 0 and "README.md" in out, err
    card = (tmp_path / "card" / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "library_name: postergen" in front and "license:" in front and "- gan" in front
    config = json.loads((tiny_run / "config.json").read_text())
    assert ", ".join(config["genres"]) in body and "32 x 32 px" in body and "| steps | 2 of 2 |" in body
    assert "| images seen | 16 |" in body and "Not evaluated yet" in body and "Not checked" in body
    assert "copyright" in body and "may closely resemble" in body
    assert str(tiny_run) not in card and str(tmp_path) not in card
    code, _, err = cli("export", tiny_run, "-o", tmp_path / "file" / "horror.safetensors")  # a file: the card beside it
    assert code == 0, err
    assert "`horror.safetensors`" in (tmp_path / "file" / "README.md").read_text()


def test_an_evaluated_run_has_its_numbers_and_copy_check_on_the_card(run: Path, tmp_path: Path):
    from postergen.modelcard import export

    (run / "eval.json").write_text(json.dumps({"step": 2, "n": 100, "metrics": {
        "swd": {"mean": 12.5}, "copies": {"likely_copy_share": 0.03, "likely_copy_count": 3, "expected_share": 0.01}}}))
    card = export(run, tmp_path / "x")["card"].read_text()
    assert "| swd (mean) | 12.5 |" in card and "| copies (likely_copy_share) | 0.03 |" in card and "at step 2 on 100 generated" in card
    assert "3 of 100 generated posters (3.0%)" in card and "about 1.0%" in card


def test_info_describes_an_export_folder_and_file(cli, tiny_run: Path, tmp_path: Path):
    """`info` on what `export` wrote: the generator, size, genres, step and run, from the metadata."""
    assert cli("export", tiny_run, "-o", tmp_path / "gan")[0] == 0
    config = json.loads((tiny_run / "config.json").read_text())
    for target in (tmp_path / "gan", tmp_path / "gan" / "generator.safetensors"):
        code, out, err = cli("info", target)
        assert code == 0, err
        assert "dcgan generator, EMA weights" in out and "32x32 px" in out
        assert f"genres    {len(config['genres'])}: {', '.join(config['genres'])}" in out
        assert f"step 2 in run {tiny_run.name}" in out and str(tiny_run.parent) not in out
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    one_line_error(*cli("info", tmp_path / "bad.safetensors")[::2], "info", "not a readable safetensors file")


def test_export_refuses_a_readme_it_did_not_write_and_a_wrong_suffix(cli, tiny_run: Path, tmp_path: Path):
    (tmp_path / "README.md").write_text("# my project\n")
    code, _, err = cli("export", tiny_run, "-o", tmp_path / "g.safetensors")
    one_line_error(code, err, "export", "README.md exists and was not written by postergen")
    assert (tmp_path / "README.md").read_text() == "# my project\n" and not (tmp_path / "g.safetensors").exists()
    one_line_error(*cli("export", tiny_run, "-o", tmp_path / "g.pt")[::2], "export", "NAME.safetensors file or an export folder")


def test_sample_takes_an_export_folder_as_it_takes_the_run(cli, tiny_run: Path, tmp_path: Path):
    from postergen.sample import sample

    assert cli("export", tiny_run, "-o", tmp_path / "gan")[0] == 0
    a = sample(tiny_run, tmp_path / "a", n=2, seed=3, genres=["comedy"], grid=False)
    b = sample(tmp_path / "gan", tmp_path / "b", n=2, seed=3, genres=["comedy"], grid=False)
    for fa, fb in zip(a["files"], b["files"]):
        assert np.array_equal(np.asarray(Image.open(fa)), np.asarray(Image.open(fb)))
        ta, tb = Image.open(fa).text, Image.open(fb).text
        assert ta["postergen:weights"] == tb["postergen:weights"] and ta["postergen:source"] == tb["postergen:source"]
    assert (ta["postergen:checkpoint"], tb["postergen:checkpoint"]) == ("latest.pt", "generator.safetensors")
    shutil.copy(tmp_path / "gan" / "generator.safetensors", tmp_path / "gan" / "second.safetensors")
    assert sample(tmp_path / "gan", tmp_path / "c", n=1)["step"] == 2  # generator.safetensors is the folder's own
    (tmp_path / "gan" / "generator.safetensors").rename(tmp_path / "gan" / "first.safetensors")
    one_line_error(*cli("sample", tmp_path / "gan", "-o", tmp_path / "c")[::2], "sample", "holds 2 exports")


@pytest.mark.slow
def test_the_studio_serves_an_export_folder_alone(cli, tiny_run: Path, tmp_path: Path):
    assert cli("export", tiny_run, "-o", tmp_path / "gan")[0] == 0
    with running(create_app(tmp_path / "gan", device="cpu")) as base:
        runs = get_json(base, "/api/runs")
        status, body = post(base, "/api/generate", {"n": 1, "seed": 4})
    assert [(r["id"], r["checkpoints"], r["step"]) for r in runs] == [("gan", ["generator.safetensors"], 2)]
    assert status == 200 and body["checkpoint"] == "latest.pt" and len(body["images"]) == 1
    assert os.fspath(tmp_path).encode() not in json.dumps(body).encode()
