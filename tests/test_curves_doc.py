"""benchmarks/curves.py's cheap parts: which checkpoints it evaluates, and rerunning it replaces only its
block of the doc (the study itself is a benchmark, not a test)."""

from __future__ import annotations

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
