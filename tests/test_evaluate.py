"""evaluate: a run folder + dataset -> eval.json (and eval.jsonl per checkpoint), one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import fast_pixel_configs
from postergen.checkpoint import step_files
from postergen.errors import UserError
from postergen.evaluate import condition_rows, evaluate, format_table
from postergen.metrics.genre import CACHE_FILE

FAST = fast_pixel_configs()
PIXEL_METRICS = ["swd", "fid", "diversity", "memorization", "genre"]  # the perceptual ones: test_evaluate_perceptual.py


pytestmark = pytest.mark.usefixtures("no_cached_inception")  # data, run: private copies (conftest)


def test_evaluate_writes_eval_json_with_every_metric(run: Path, data: Path):
    result = evaluate(run, data, n=1000, seed=1, metrics=PIXEL_METRICS, configs=FAST)
    assert result["n"] == 48 and result["step"] == 2 and result["size"] == [32, 32]  # n capped at the dataset
    assert json.loads((run / "eval.json").read_text()) == result
    m = result["metrics"]
    assert list(m) == ["swd", "fid", "diversity", "memorization", "genre"]
    assert set(m["swd"]) == {"32px", "16px", "mean"} and m["swd"]["mean"] > 0
    assert "skipped" in m["fid"]
    assert {"ratio", "near_duplicates", "coverage", "collapsed"} <= m["diversity"].keys()
    assert {"typical_distance", "closer_than_typical", "likely_copies", "closest"} <= m["memorization"].keys()
    genres = [g["name"] for g in json.loads((data / "dataset.json").read_text())["genres"]]
    assert list(m["genre"]["per_genre_top1"]) == genres and 0 <= m["genre"]["fake_top1"] <= 1
    assert (data / CACHE_FILE).is_file() and (run / result["nearest_pairs_png"]).is_file()  # named in the run
    assert set(result["seconds"]) == {"generate", *m}
    table = format_table(result)
    assert "swd mean" in table and "fid" in table and "skipped: no InceptionV3 weights" in table
    assert "diversity collapsed" in table and "genre per_genre_top1 horror" in table


def test_all_checkpoints_keeps_one_line_per_checkpoint(run: Path, data: Path):
    def lines():
        return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]

    steps = sorted(step_files(run / "checkpoints"))
    evaluate(run, data, n=16, metrics=["diversity"], all_checkpoints=True)
    first = lines()
    assert [row["step"] for row in first] == steps
    evaluate(run, data, n=16, metrics=["diversity"], all_checkpoints=True)  # again: updated, not appended
    assert lines() == [{**row, "seconds": new["seconds"]} for row, new in zip(first, lines())]  # seeded: same numbers
    evaluate(run, data, n=16, metrics=["swd"], all_checkpoints=True)  # another metric joins each line
    assert [row["step"] for row in lines()] == steps
    assert all(set(row["metrics"]) == {"diversity", "swd"} for row in lines())
    evaluate(run, data, n=8, metrics=["swd"], all_checkpoints=True)  # other n: the new result replaces
    assert all(set(row["metrics"]) == {"swd"} and row["n"] == 8 for row in lines())
    assert "nearest_pairs_png" not in json.loads((run / "eval.json").read_text())  # no memorization asked


def test_generated_genres_follow_the_dataset_mix(data: Path):
    from postergen.data.dataset import open_dataset

    ds = open_dataset(data)
    rows = condition_rows(ds, 4000, seed=0)
    share = rows.mean(0).numpy()
    assert np.allclose(share, ds.labels.mean(0), atol=0.03)
    assert set(map(tuple, rows.numpy().astype(np.uint8))) <= set(map(tuple, ds.labels))


def _fake_dataset(path: Path, size: int, genres: list[str]) -> Path:
    path.mkdir()
    np.save(path / "images.npy", np.zeros((4, 3, size, size), np.uint8))
    np.save(path / "labels.npy", np.zeros((4, len(genres)), np.uint8))
    meta = {"count": 4, "size": [size, size], "genres": [{"name": g, "count": 0} for g in genres]}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def test_bad_input_is_a_one_line_user_error(run: Path, data: Path, tmp_path: Path):
    genres = [g["name"] for g in json.loads((data / "dataset.json").read_text())["genres"]]
    (tmp_path / "empty").mkdir()
    cases = [
        (lambda: evaluate(tmp_path / "empty", data), "no checkpoints"),
        (lambda: evaluate(tmp_path / "nowhere", data), "no such run folder"),
        (lambda: evaluate(run, _fake_dataset(tmp_path / "big", 64, genres)), "posters are 64x64 px but"),
        (lambda: evaluate(run, _fake_dataset(tmp_path / "other", 32, ["western"])), "differ from the run's"),
        (lambda: evaluate(run, data, metrics=["swd", "inception"]), "unknown metric 'inception'"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    assert not (run / "eval.json").exists()


def test_cli_evaluate_prints_a_table_and_errors_are_one_line(cli, tiny_run, tiny_dataset, tmp_path):

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, out, err = cli("evaluate", run, "--data", tiny_dataset, "--n", "16", "--metrics", "swd,diversity")
    assert code == 0, err
    assert "swd" in out and "diversity ratio" in out and (run / "eval.json").is_file()
    code, out, err = cli("evaluate", run, "--data", tiny_dataset, "--metrics", "beauty")
    assert code == 2 and err.count("\n") == 1 and "beauty" in err
    code, out, err = cli("evaluate", tmp_path / "nowhere", "--data", tiny_dataset)
    assert code == 2 and err.count("\n") == 1
