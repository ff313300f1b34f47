"""The synthetic poster set: Kaggle file layout, determinism, genre-distinct colours, and safe overwriting."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from postergen.data import synth
from postergen.data.synth import generate
from postergen.errors import UserError

KAGGLE_GENRES = {"Action", "Animation", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller"}


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "MovieGenre.csv", encoding="latin-1", newline="") as f:
        return list(csv.DictReader(f))


def folder_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "posters"
    return out, generate(out, n=64, seed=0, workers=2)


def test_csv_is_kaggle_format(sample):
    out, summary = sample
    raw = (out / "MovieGenre.csv").read_bytes()
    assert raw.decode("latin-1").splitlines()[0] == "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster"
    rows = read_rows(out)
    assert len(rows) == summary["count"] == 64
    for row in rows:
        assert row["imdbId"].isdigit()
        assert row["Imdb Link"] == f"http://www.imdb.com/title/tt{row['imdbId']}"
        assert 1.0 <= float(row["IMDB Score"]) <= 10.0
        genres = row["Genre"].split("|")
        assert 1 <= len(genres) <= 3 and len(set(genres)) == len(genres)
        assert set(genres) <= KAGGLE_GENRES
    assert len({row["imdbId"] for row in rows}) == len(rows)
    # Kaggle's file is latin-1: some titles must carry an accent, which is not valid UTF-8 on disk
    assert any(not row["Title"].isascii() for row in rows)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_summary_counts_match_csv(sample):
    out, summary = sample
    counts: dict[str, int] = {}
    for row in read_rows(out):
        for g in row["Genre"].split("|"):
            counts[g] = counts.get(g, 0) + 1
    assert summary["genres"] == counts
    assert summary["seconds"] > 0
    assert any(len(row["Genre"].split("|")) > 1 for row in read_rows(out))


def test_every_row_has_a_poster_jpeg(sample):
    out, _ = sample
    rows = read_rows(out)
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(row["imdbId"] for row in rows)
    for row in rows[:10]:
        with Image.open(out / "images" / f"{row['imdbId']}.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (182, 268))


def test_genres_look_different(sample):
    """The primary genre must show in the pixels, or a conditional GAN has nothing to learn."""
    out, _ = sample
    means: dict[str, list[np.ndarray]] = {}
    for row in read_rows(out):
        with Image.open(out / "images" / f"{row['imdbId']}.jpg") as im:
            means.setdefault(row["Genre"].split("|")[0], []).append(np.asarray(im, dtype=float).mean(axis=(0, 1)))
    rgb = {g: np.mean(v, axis=0) for g, v in means.items()}
    luma = {g: float(c @ [0.299, 0.587, 0.114]) for g, c in rgb.items()}
    assert set(rgb) == KAGGLE_GENRES
    assert min(luma, key=luma.get) == "Horror"
    assert luma["Comedy"] > luma["Horror"] + 100
    assert rgb["Sci-Fi"][2] > rgb["Sci-Fi"][0] + 20  # cold: blue over red
    assert rgb["Romance"][0] > rgb["Romance"][2] + 20  # warm pinks: red over blue


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    one = folder_bytes(Path(generate(tmp_path / "w1", n=12, seed=7, workers=1)["path"]))
    two = folder_bytes(Path(generate(tmp_path / "w2", n=12, seed=7, workers=2)["path"]))
    assert len(one) == 14 and one == two  # 12 posters, the CSV and the .postergen marker
    other = folder_bytes(Path(generate(tmp_path / "s8", n=12, seed=8, workers=2)["path"]))
    assert other.keys() == one.keys()
    assert other["MovieGenre.csv"] != one["MovieGenre.csv"]
    assert sum(other[k] != one[k] for k in one) >= 12


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "posters"
    generate(out, n=3, workers=1)
    with pytest.raises(UserError, match="exists; use --force to replace it"):
        generate(out, n=2, workers=1)
    assert generate(out, n=2, workers=1, force=True)["count"] == 2
    assert len(read_rows(out)) == 2 and len(list((out / "images").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posters"]  # no temporary folders left beside it


def test_force_refuses_to_delete_an_unrelated_folder(tmp_path):
    unrelated = tmp_path / "thesis"
    unrelated.mkdir()
    (unrelated / "chapter1.tex").write_text("precious")
    with pytest.raises(UserError, match="not made by postergen"):
        generate(unrelated, n=2, workers=1, force=True)
    assert (unrelated / "chapter1.tex").read_text() == "precious"


def test_empty_existing_folder_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert generate(tmp_path / "empty", n=2, workers=1)["count"] == 2


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    real = synth._make_poster

    def failing(i, **kwargs):
        if i == 3:
            raise KeyboardInterrupt
        return real(i, **kwargs)

    monkeypatch.setattr(synth, "_make_poster", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "posters", n=6, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError):
        generate(tmp_path / "a", n=0)
    with pytest.raises(UserError):
        generate(tmp_path / "b", n=2, seed=-1)
