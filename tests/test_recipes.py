"""Which recipe `train` picks without --preset: the measured winner for the device, budget and genres."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postergen import recipes
from postergen.recipes import choose

# Minutes, FD and SWD over their floors (lower is better). With genres the slow recipe gets better on both
# from about 8 minutes; FastGAN's pair only ever on FD (a challenger must beat stable on both). Without
# genres the fast one wins throughout.
TABLE = {"devices": {"cpu": {
    "what": "a 2-core CPU, 64 px",
    "recipes": {"stable": {"preset": "stable", "options": {"ngf": 32, "ndf": 32}},
                "projected": {"preset": "projected", "options": {}},
                "fastgan": {"preset": "stable", "options": {"arch": "fastgan", "discriminator": "fastgan"}}},
    "speeds": {"stable": 300.0, "projected": 50.0, "fastgan": 30.0, "stable-nogenres": 300.0,
               "projected-nogenres": 50.0},
    "curves": {"stable": [[0.5, 40, 40], [2, 20, 20], [8, 12, 12], [32, 10, 10]],
               "projected": [[0.5, 60, 60], [2, 25, 25], [8, 12, 12], [32.2, 5, 5]],
               "fastgan": [[0.5, 30, 90], [32, 2, 50]],
               "stable-nogenres": [[0.5, 40, 40], [32, 10, 10]],
               "projected-nogenres": [[0.5, 60, 60], [32, 20, 20]]},
}}}


def test_the_winner_follows_the_budget():
    early, late = choose("cpu", True, 64, minutes=1, table=TABLE), choose("cpu", True, 64, minutes=30, table=TABLE)
    assert (early.preset, early.options, early.steps) == ("stable", {"ngf": 32, "ndf": 32}, None)
    assert (late.preset, late.options) == ("projected", {})
    assert "better than stable on both FD and SWD" in late.reason and "--minutes 30" in late.reason
    assert "with genres" in late.reason and "\n" not in late.reason
    assert choose("cpu", False, 64, minutes=30, table=TABLE).preset == "stable"  # its own curves


def test_a_challenger_must_be_better_on_both_metrics():
    # at 30 minutes FastGAN's pair has the lowest FD (2.x) but the highest SWD: it never replaces stable
    c = choose("cpu", True, 64, minutes=30, table={"devices": {"cpu": {
        **TABLE["devices"]["cpu"], "recipes": {k: v for k, v in TABLE["devices"]["cpu"]["recipes"].items()
                                               if k != "projected"}}}})
    assert c.preset == "stable" and "no recipe better on both FD and SWD" in c.reason


def test_between_points_the_curves_are_interpolated_in_log_log():
    curve = [[1, 100.0, 10.0], [4, 25.0, 40.0]]
    assert recipes.at(curve, 2, 1) == pytest.approx(50.0) and recipes.at(curve, 2, 2) == pytest.approx(20.0)
    assert recipes.at(curve, 0.5, 1) == 100.0 and recipes.at(curve, 9, 2) == 40.0
    # stable and projected meet at 8 minutes: projected is better on both only after it
    assert choose("cpu", True, 64, minutes=7, table=TABLE).preset == "stable"
    assert choose("cpu", True, 64, minutes=9, table=TABLE).preset == "projected"


def test_a_budget_beyond_the_measured_range_takes_the_nearer_end_and_says_so():
    far = choose("cpu", True, 64, minutes=600, table=TABLE)
    assert far.preset == "projected" and "the measured budget nearest 600 min" in far.reason
    assert choose("cpu", True, 64, minutes=0.1, table=TABLE).preset == "stable"


def test_a_recipe_competes_only_as_far_as_its_curve_was_measured():
    # FastGAN's pair, measured to 8 minutes only, is best on both there; at 30 nothing says how it does
    table = {"devices": {"cpu": {**TABLE["devices"]["cpu"],
                                 "curves": {**TABLE["devices"]["cpu"]["curves"], "fastgan": [[0.5, 30, 30], [8, 1, 1]]}}}}
    assert choose("cpu", True, 64, minutes=4, table=table).options["arch"] == "fastgan"
    late = choose("cpu", True, 64, minutes=30, table=table)
    assert late.preset == "projected" and "fastgan" not in late.reason
    # curves of one length end a step apart: all still compete beyond it (projected 32.2, stable 31.9)
    table["devices"]["cpu"]["curves"]["stable"][-1][0] = 31.9
    far = choose("cpu", True, 64, minutes=600, table=table)
    assert far.preset == "projected" and "better than stable on both" in far.reason


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
    cpu = TABLE["devices"]["cpu"]
    with_genres_only = {"devices": {"cpu": {**cpu, "curves": {k: v for k, v in cpu["curves"].items() if "-" not in k}}}}
    c = choose("cpu", False, 64, minutes=30, table=with_genres_only)
    assert (c.preset, c.options) == ("stable", {}) and "no curves measured without genres" in c.reason


def test_the_shipped_table_is_well_formed():
    table = recipes.load(recipes.TABLE)
    for device, m in table["devices"].items():
        assert set(m) >= {"what", "command", "recipes", "speeds", "curves"}, device
        for name, curve in m["curves"].items():
            assert name.removesuffix(recipes.NO_GENRES) in m["recipes"] and name in m["speeds"]
            assert [p[0] for p in curve] == sorted(p[0] for p in curve)
            assert all(len(p) == 3 and min(p) > 0 for p in curve)


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
    assert config["recipe"] == err.strip().removeprefix("recipe ")  # config.json keeps why
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "1", "--device", "cpu",
                         "--ngf", "16", "--dry-run")
    config = json.loads(out)  # the winner's widths sit under the options given
    assert config["train"]["preset"] == "stable" and (config["model"]["ngf"], config["model"]["ndf"]) == (16, 32)
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--minutes", "30", "--preset", "stable",
                         "--device", "cpu", "--dry-run")
    assert json.loads(out)["train"]["preset"] == "stable" and "given with --preset" in err
    code, out, err = cli("train", tiny_dataset, "-o", tmp_path / "real", "--steps", "2", "--batch", "4",
                         "--device", "cpu", "--sample-every", "2", "--no-tensorboard")
    recorded = json.loads((tmp_path / "real" / "config.json").read_text())["recipe"]
    assert code == 0 and recorded.startswith("stable: preset stable") and f"recipe {recorded}" in out


def test_a_broken_table_is_one_line(cli, tiny_dataset: Path, tmp_path: Path, monkeypatch):
    (tmp_path / "bad.json").write_text("{not json")
    monkeypatch.setenv("POSTERGEN_RECIPES", str(tmp_path / "bad.json"))
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "run", "--dry-run")
    assert code == 2 and err.startswith("postergen train: error: recipe table ") and err.count("\n") == 1
