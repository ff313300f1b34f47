"""evaluate with the perceptual metrics: default metrics, per genre, --json, --images DIR, curves over training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import fast_pixel_configs
from postergen.checkpoint import step_files
from postergen.evaluate import DEFAULT_METRICS, evaluate, evaluate_images, format_table
from postergen.metrics.copies import CopiesConfig
from postergen.metrics.fd import FDConfig, KIDConfig
from postergen.metrics.perceptual import PerceptualConfig
from postergen.metrics.prdc import DCConfig, PRConfig
from postergen.report.sections import eval_series, headline

pytestmark = pytest.mark.usefixtures("no_cached_inception")  # data, run: private copies (conftest)

SMALL = PerceptualConfig(resolution=64)  # tests only: the documented default is Lite2's native 260 px
# the pixel metrics' fast settings, and small ones for the perceptual metrics
FAST = {**fast_pixel_configs(), "copies": CopiesConfig(resolution=64),
        "fd": FDConfig(min_per_genre=3), "kid": KIDConfig(subsets=10, min_per_genre=3),
        "precision": PRConfig(min_per_genre=6), "recall": PRConfig(min_per_genre=6),
        "density": DCConfig(min_per_genre=6), "coverage": DCConfig(min_per_genre=6)}


@pytest.mark.slow
def test_default_metrics_per_genre_and_json(run: Path, data: Path, tmp_path: Path):
    result = evaluate(run, data, n=1000, seed=1, configs=FAST, perceptual=SMALL, json_path=tmp_path / "out.json")
    m = result["metrics"]
    assert list(m) == list(DEFAULT_METRICS)
    assert json.loads((tmp_path / "out.json").read_text()) == result == json.loads((run / "eval.json").read_text())
    genres = [g["name"] for g in json.loads((data / "dataset.json").read_text())["genres"]]
    assert m["fd"]["value"] > 0 and set(m["fd"]["per_genre"]) <= set(genres) and m["fd"]["per_genre"]
    assert {"mean", "std"} <= m["kid"].keys()
    for name in ("precision", "recall", "density", "coverage"):
        assert 0 <= m[name]["value"] <= (5 if name == "density" else 1)
    assert m["copies"]["likely_copy_count"] == len(m["copies"]["likely_copies"])
    assert all(row["file"].startswith("seed") for row in m["copies"]["closest"])
    assert (run / result["nearest_pairs_png"]).is_file() and (run / result["nn_distances_png"]).is_file()
    assert (data / "features-lite2-64.pt").is_file()
    table = format_table(result)
    assert "fd value" in table and "fd per_genre" in table and "copies likely_copy_share" in table


def posters_folder(data: Path, folder: Path) -> list[str]:
    """4 exact copies of training posters (PNG), 4 noise images (JPEG, another size), 1 broken file."""
    images = np.load(data / "images.npy")
    folder.mkdir()
    names = []
    for i in range(4):
        Image.fromarray(images[10 * i].transpose(1, 2, 0)).save(folder / f"copy{i}.png")
        names.append(f"copy{i}.png")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(folder / f"noise{i}.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    return names


def test_images_folder_is_evaluated_and_copies_are_named(data: Path, tmp_path: Path):
    copies = posters_folder(data, tmp_path / "posters")
    result = evaluate_images(tmp_path / "posters", data, seed=0, metrics=["fd", "precision", "copies", "genre"],
                             configs=FAST, perceptual=SMALL, json_path=tmp_path / "eval.json")
    assert result["generated"] == 8 and result["n"] == 8
    assert result["skipped"] == [{"path": "broken.png", "reason": "not-an-image: not a recognised image format"}]
    flagged = [row["file"] for row in result["metrics"]["copies"]["likely_copies"]]
    assert sorted(flagged) == copies
    assert "no generator" in result["metrics"]["genre"]["skipped"]
    assert json.loads((tmp_path / "eval.json").read_text()) == result
    assert (tmp_path / "eval_nearest.png").is_file() and (tmp_path / "eval_nn_distances.png").is_file()
    assert "8 images vs 8 real" in format_table(result)


@pytest.mark.slow
def test_cli_images_and_json(cli, data: Path, tmp_path: Path):
    posters_folder(data, tmp_path / "posters")
    out = tmp_path / "result.json"
    code, stdout, err = cli("evaluate", "--images", tmp_path / "posters", "--data", data, "--metrics", "fd,copies",
                            "--json", out)
    assert code == 0, err
    saved = json.loads(out.read_text())
    assert set(saved["metrics"]) == {"fd", "copies"} and "likely_copies" in saved["metrics"]["copies"]
    assert "fd value" in stdout
    code, _, err = cli("evaluate", "--data", data)
    assert code == 2 and err.count("\n") == 1 and "--images" in err
    code, _, err = cli("evaluate", tmp_path / "run", "--images", tmp_path / "posters", "--data", data)
    assert code == 2 and err.count("\n") == 1
    code, _, err = cli("evaluate", "--images", tmp_path / "nowhere", "--data", data)
    assert code == 2 and err.count("\n") == 1 and "no such folder" in err


def test_curves_over_training_keep_the_headline_metrics(run: Path, data: Path):
    evaluate(run, data, n=16, metrics=["fd", "precision", "copies"], all_checkpoints=True, configs=FAST,
             perceptual=SMALL)
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == sorted(step_files(run / "checkpoints"))
    assert all({"fd", "precision", "copies"} == set(r["metrics"]) for r in rows)
    steps, series = eval_series(rows)
    assert list(headline(series)) == ["metrics.fd.value", "metrics.precision.value",
                                      "metrics.copies.likely_copy_share"]
