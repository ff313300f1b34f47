"""sample: per-genre rows, reproducible seeds, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from postergen.sample import sample


def test_rows_per_genre_and_seeds_are_reproducible(tiny_run: Path, tmp_path: Path):
    a = sample(tiny_run, tmp_path / "a", n=3, seed=5, genres=["horror", "action+comedy"])
    assert a["rows"] == ["horror", "action+comedy"]
    assert sorted(p.name for p in a["files"])[:3] == ["action+comedy-seed5.png", "action+comedy-seed6.png",
                                                      "action+comedy-seed7.png"]
    assert Image.open(a["grid"]).size == (3 * 34 + 2, 2 * 34 + 2)
    b = sample(tiny_run, tmp_path / "b", n=1, seed=6, genres=["horror"], grid=False)
    same = [np.asarray(Image.open(tmp_path / d / "horror-seed6.png")) for d in ("a", "b")]
    assert np.array_equal(*same)  # a poster depends on its own seed, not on n or the first seed
    assert b["grid"] is None


def test_cli_sample_errors(cli, tiny_run: Path, tmp_path: Path):
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "s", "--genre", "westen")
    assert code == 2 and "unknown genre westen; known: action" in err and err.count("\n") == 1
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02}q\x00")
    code, out, err = cli("sample", tmp_path / "junk.pt", "-o", tmp_path / "s")
    assert code == 2 and "not a loadable postergen checkpoint" in err and err.count("\n") == 1
    code, out, err = cli("sample", tiny_run, "-o", tmp_path / "s", "--n", "2")
    assert code == 0 and "16 posters" in out
