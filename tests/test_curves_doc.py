"""benchmarks/curves.py's cheap parts: which checkpoints it evaluates, and rerunning it replaces only its
block of the doc (the study itself is a benchmark, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def curves(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))  # benchmarks run as scripts
    import curves

    return curves


def test_rerunning_replaces_only_the_block_between_the_markers(curves):
    begin, end = curves.BEGIN, curves.END
    doc = f"# Training\n\ntext\n\n{begin}\nold table\n{end}\n\nmore\n"
    once = curves.replace_between(doc, "new table")
    assert once == f"# Training\n\ntext\n\n{begin}\nnew table\n{end}\n\nmore\n"
    assert curves.replace_between(once, "new table") == once
    assert curves.replace_between("# Training\n", "t") == f"# Training\n\n{begin}\nt\n{end}\n"  # no markers yet
    for broken in (f"{end}\n{begin}\n", f"{begin}\n", f"x\n{end}\n"):
        with pytest.raises(ValueError, match="curves:begin"):
            curves.replace_between(broken, "t")


def test_points_are_log_spaced_and_end_at_the_last_checkpoint(curves):
    assert curves.log_spaced(list(range(10, 1001, 10)), 6) == [30, 60, 130, 250, 500, 1000]
    assert curves.log_spaced([1, 2, 3], 6) == [1, 2, 3]  # a short run: each of its few checkpoints once
    assert curves.train_flags("stable", {"ngf": 16, "conditional": False}) == \
        ["--preset", "stable", "--ngf", "16", "--no-conditional"]


def test_a_study_becomes_the_recipe_table_train_reads(curves, tmp_path: Path):
    from postergen.recipes import choose

    def row(run, minutes, fd_floor, swd_floor):
        return {"run": run, "minutes": minutes, "fd_floor": fd_floor, "swd_floor": swd_floor}

    rows = [row("stable", 1, 16, 12), row("stable", 10, 9, 9), row("projected", 1, 25, 25), row("projected", 10, 4, 4),
            row("stable-nogenres", 1, 16, 16), row("stable-nogenres", 10, 9, 9)]
    path = tmp_path / "recipes.json"
    path.write_text('{"devices": {"cuda": {"kept": true}}}')
    speeds = {"stable": 300.0, "projected": 50.0, "stable-nogenres": 310.0}
    curves.write_recipes(path, rows, speeds, "cpu", 64, "python benchmarks/curves.py --minutes 10")
    table = json.loads(path.read_text())
    assert table["devices"]["cuda"] == {"kept": True}  # another device's curves stay
    cpu = table["devices"]["cpu"]
    assert cpu["curves"]["stable"] == [[1, 16, 12], [10, 9, 9]]  # minutes, FD and SWD over their floors
    assert cpu["recipes"]["projected"] == {"preset": "projected", "options": {}}
    assert cpu["recipes"]["stable"] == {"preset": "stable", "options": {"ngf": 32, "ndf": 32}}
    assert choose("cpu", True, 64, minutes=1, table=table).preset == "stable"
    assert choose("cpu", True, 64, minutes=10, table=table).preset == "projected"
    assert choose("cpu", False, 64, minutes=10, table=table).preset == "stable"  # no projected curve without genres


def test_a_run_tried_beside_the_study_is_no_recipe_until_it_joins_it(curves, tmp_path: Path):
    tried = "projected-ms1"
    assert tried in curves.RECIPES and tried not in curves.STUDY
    rows = [{"run": run, "minutes": m, "fd_floor": q, "swd_floor": q}
            for run in ("stable", tried) for m, q in ((1, 16 if run == "stable" else 2), (10, 9 if run == "stable" else 1))]
    path = tmp_path / "recipes.json"
    curves.write_recipes(path, rows, {"stable": 300.0, tried: 40.0}, "cpu", 64, "curves.py")
    cpu = json.loads(path.read_text())["devices"]["cpu"]
    assert list(cpu["recipes"]) == list(cpu["curves"]) == list(cpu["speeds"]) == ["stable"]  # better, but not picked


def test_an_earlier_sitting_fills_in_the_runs_this_one_lacks(curves, tmp_path: Path):
    def row(run, minutes, fd):
        return {"run": run, "minutes": minutes, "fd": fd}

    def study(rows, floor_fd=18.3, n=500):
        return {"size": 64, "posters": 2500, "holdout": 20.0, "n": n, "floor": {"fd": floor_fd, "swd": 16.6},
                "speeds": {r["run"]: 100.0 for r in rows}, "own_img_per_s": {r["run"]: 90.0 for r in rows},
                "rows": rows}

    earlier = tmp_path / "curves_64.json"
    earlier.write_text(json.dumps(study([row("stable", 2, 200), row("stable", 60, 106), row("projected", 15, 99)])))
    now = study([row("projected-nogenres", 15, 120), row("projected", 15, 98), row("projected", 60, 80)],
                floor_fd=18.28)  # the same floor, to the rounding an earlier file may hold
    merged, taken = curves.merge_earlier(earlier, now)
    assert taken == ["stable"]  # projected was trained again: only its new rows count
    assert [(r["run"], r["minutes"]) for r in merged["rows"]] == [
        ("stable", 2), ("stable", 60), ("projected", 15), ("projected", 60), ("projected-nogenres", 15)]
    assert merged["speeds"]["stable"] == 100.0 and merged["own_img_per_s"]["stable"] == 90.0
    for other in (study([], floor_fd=25.0), study([], n=1000)):  # another evaluation: not the same study
        with pytest.raises(SystemExit, match="not the same study"):
            curves.merge_earlier(earlier, other)
    with pytest.raises(SystemExit, match="--earlier"):
        curves.merge_earlier(tmp_path / "missing.json", now)


def test_earlier_runs_show_the_grid_tile_they_kept(curves, tmp_path: Path, capsys):
    from PIL import Image

    kept = tmp_path / "tiles"
    kept.mkdir()
    Image.new("RGB", (40, 30), "red").save(kept / "stable.jpg")
    data = {"rows": [{"run": "stable"}, {"run": "fastgan"}]}
    curves.grids(data, {}, kept, tmp_path / "grids.jpg")
    assert Image.open(tmp_path / "grids.jpg").size == (40, 30)  # stable's tile; fastgan kept none
    assert "no grid kept for fastgan" in capsys.readouterr().out


def test_a_run_grown_longer_keeps_the_points_evaluated_before(curves, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)

    def save(*steps):
        for step in steps:
            (run / "checkpoints" / f"step-{step:07d}.pt").write_bytes(b"weights")

    def evaluate(folder, checkpoint):
        step = int(checkpoint.stem.split("-")[1])
        return {"step": step, "n": 8, "seed": curves.SEED, "metrics": dict.fromkeys(curves.METRICS, step)}

    evaluate.n = 8
    monkeypatch.setattr(curves, "REUSE", True)
    save(*range(10, 101, 10))  # 100 steps, then grown to 200
    first = [r["step"] for r in curves.curve(run, evaluate, 3, keep_all=False)]
    save(*range(110, 201, 10))
    grown = [r["step"] for r in curves.curve(run, evaluate, 3, keep_all=False)]
    assert first == [30, 50, 100] and grown == [30, 50, 100, 200]  # 30 is not among 200's log-spaced points
    assert sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").iterdir()) == grown  # the rest deleted
