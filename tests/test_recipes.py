"""Which recipe `train` picks without --preset: the measured winner for the device, budget and genres."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postergen import recipes
from postergen.recipes import choose

# A fast recipe that wins early and a slow one that wins late (scores: FD and SWD over real, lower is
# better); without genres the fast one wins throughout.
TABLE = {"devices": {"cpu": {
    "what": "a 2-core CPU, 64 px",
    "recipes": {"stable": {"preset": "stable", "options": {"ngf": 32, "ndf": 32}},
                "projected": {"preset": "projected", "options": {}}},
    "speeds": {"stable": 300.0, "projected": 50.0, "stable-nogenres": 300.0, "projected-nogenres": 50.0},
    "curves": {"stable": [[0.5, 40.0], [2, 20.0], [8, 12.0], [32, 10.0]],
               "projected": [[0.5, 60.0], [2, 25.0], [8, 10.0], [32, 5.0]],
               "stable-nogenres": [[0.5, 40.0], [32, 10.0]],
               "projected-nogenres": [[0.5, 60.0], [32, 20.0]]},
}}}


def test_the_winner_follows_the_budget():
    early, late = choose("cpu", True, 64, minutes=1, table=TABLE), choose("cpu", True, 64, minutes=30, table=TABLE)
    assert (early.preset, early.options, early.steps) == ("stable", {"ngf": 32, "ndf": 32}, None)
    assert (late.preset, late.options) == ("projected", {})
    assert "--minutes 30" in late.reason and "with genres" in late.reason and "\n" not in late.reason
    assert choose("cpu", False, 64, minutes=30, table=TABLE).preset == "stable"  # its own curves


def test_between_points_the_curve_is_interpolated_in_log_log():
    assert recipes.at([[1, 100.0], [4, 25.0]], 2) == pytest.approx(50.0)
    assert recipes.at([[1, 100.0], [4, 25.0]], 0.5) == 100.0 and recipes.at([[1, 100.0], [4, 25.0]], 9) == 25.0
    # the curves cross between 2 and 8 minutes: stable 20 -> 12, projected 25 -> 10
    assert choose("cpu", True, 64, minutes=3, table=TABLE).preset == "stable"
    assert choose("cpu", True, 64, minutes=7, table=TABLE).preset == "projected"


def test_a_budget_beyond_the_measured_range_takes_the_nearer_end_and_says_so():
    far = choose("cpu", True, 64, minutes=600, table=TABLE)
    assert far.preset == "projected" and "the measured budget nearest 600 min" in far.reason
    assert choose("cpu", True, 64, minutes=0.1, table=TABLE).preset == "stable"


def test_a_length_in_steps_is_timed_at_the_fallback_speed_and_given_to_the_winner_in_its_steps():
    # 9000 steps of 64 at stable's 300 img/s: 32 minutes, where projected wins; at its 50 img/s
    # 32 minutes are 1500 steps
    c = choose("cpu", True, 64, steps=9000, table=TABLE)
    assert (c.preset, c.steps) == ("projected", 1500) and "9000 steps of 64 on stable" in c.reason
    assert choose("cpu", True, 64, steps=200, table=TABLE).steps is None  # stable wins: the steps as given
    both = choose("cpu", True, 64, minutes=30, steps=200, table=TABLE)  # the first limit reached: 0.7 min
    assert both.preset == "stable"


def test_a_device_without_curves_keeps_the_stable_preset():
    c = choose("cuda", True, 64, minutes=30, table=TABLE)
    assert (c.preset, c.options) == ("stable", {}) and "no quality-versus-time curves measured on cuda" in c.reason


def test_the_shipped_table_is_well_formed():
    table = recipes.load(recipes.TABLE)
    for device, m in table["devices"].items():
        assert set(m) >= {"what", "command", "recipes", "speeds", "curves"}, device
        for name, curve in m["curves"].items():
            assert name.removesuffix(recipes.NO_GENRES) in m["recipes"] and name in m["speeds"]
            assert [p[0] for p in curve] == sorted(p[0] for p in curve) and all(p[1] > 0 for p in curve)


@pytest.fixture
def table(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps(TABLE))
    monkeypatch.setenv("POSTERGEN_RECIPES", str(path))
    return path


def test_train_without_a_preset_trains_the_winner_and_says_why(cli, table, tiny_dataset: Path, tmp_path: Path):
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "30", "--device", "cpu",
                         "--dry-run")
    config = json.loads(out)
    assert code == 0 and config["train"]["preset"] == "projected" and config["train"]["minutes"] == 30
    assert err.startswith("recipe projected: preset projected") and err.count("\n") == 1
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "1", "--device", "cpu",
                         "--ngf", "16", "--dry-run")
    config = json.loads(out)  # the winner's widths sit under the options given
    assert config["train"]["preset"] == "stable" and (config["model"]["ngf"], config["model"]["ndf"]) == (16, 32)
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "30", "--preset", "stable",
                         "--device", "cpu", "--dry-run")
    assert json.loads(out)["train"]["preset"] == "stable" and "given with --preset" in err


def test_a_broken_table_is_one_line(cli, tiny_dataset: Path, tmp_path: Path, monkeypatch):
    (tmp_path / "bad.json").write_text("{not json")
    monkeypatch.setenv("POSTERGEN_RECIPES", str(tmp_path / "bad.json"))
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--dry-run")
    assert code == 2 and err.startswith("postergen train: error: recipe table ") and err.count("\n") == 1
