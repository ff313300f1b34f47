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
