"""Genre tables: read the two Kaggle CSV formats into {poster key: set of genres}."""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from postergen.errors import UserError

_KAGGLE_COLUMNS = ("imdbId", "Genre")


def normalize_genre(name: str) -> str:
    """'Sci-Fi' -> 'sci-fi', ' Horror ' -> 'horror': one spelling for CSV, folders and --genres.
    Control characters count as spaces: no genre name can hold a terminal escape or a newline."""
    name = "".join(" " if unicodedata.category(c) == "Cc" else c for c in name)
    return re.sub(r"\s+", " ", name.strip().lower())


def poster_key(name: str) -> str:
    """Key that matches a CSV id to a file stem: 'tt0114709', '0114709' and '114709' are one poster."""
    key = name.strip().lower()
    if key.startswith("tt") and key[2:].isdigit():
        key = key[2:]
    if key.isdigit():
        key = str(int(key))
    return key


@dataclass
class LabelTable:
    """Genres per poster key, as read from a CSV; `dropped` lists rows that cannot be used."""

    path: Path
    kind: str  # "kaggle-moviegenre" or "multi-hot"
    genres: dict[str, set[str]] = field(default_factory=dict)
    dropped: list[dict] = field(default_factory=list)


def read_label_csv(path: Path) -> LabelTable:
    """Read Kaggle MovieGenre.csv (latin-1, Genre 'A|B') or an id + 0/1-columns CSV."""
    if not path.is_file():
        raise UserError(f"{path}: labels CSV not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read labels CSV ({e.strerror})") from None
    return parse_label_csv(path, raw)


def parse_label_csv(path: Path, raw: bytes) -> LabelTable:
    """Parse CSV bytes; `path` only names the file in errors (it may live inside a zip)."""
    # Kaggle's MovieGenre.csv is latin-1; utf-8 is tried first because latin-1 never fails.
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV ({e})") from None
    if not rows or not rows[0]:
        raise UserError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    if all(c in header for c in _KAGGLE_COLUMNS):
        return _read_kaggle(path, header, rows[1:])
    lower = [h.lower() for h in header]
    if "id" in lower:
        return _read_multi_hot(path, header, lower.index("id"), rows[1:])
    raise UserError(
        f"{path}: expected columns imdbId,Genre (Kaggle MovieGenre.csv) or id plus 0/1 genre columns; "
        f"found {','.join(header[:8])}"
    )


def _read_kaggle(path: Path, header: list[str], rows: list[list[str]]) -> LabelTable:
    table = LabelTable(path, "kaggle-moviegenre")
    i_id, i_genre = header.index("imdbId"), header.index("Genre")
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(i_id, i_genre) or not row[i_id].strip():
            table.dropped.append({"path": f"{path.name}:{line}", "reason": "bad-csv-row",
                                  "detail": "missing imdbId or Genre"})
            continue
        key = poster_key(row[i_id])
        if key in table.genres:
            table.dropped.append({"path": f"{path.name}:{line}", "reason": "duplicate-csv-row",
                                  "detail": f"imdbId {row[i_id].strip()} listed before"})
            continue
        table.genres[key] = {normalize_genre(g) for g in row[i_genre].split("|") if g.strip()}
    return table


def _read_multi_hot(path: Path, header: list[str], i_id: int, rows: list[list[str]]) -> LabelTable:
    table = LabelTable(path, "multi-hot")
    body = [r for r in rows if any(c.strip() for c in r)]
    # A genre column is any column other than id whose every value is 0 or 1 (a 'Genre' text column is not).
    genre_cols = [
        j for j in range(len(header))
        if j != i_id and body and all(len(r) > j and r[j].strip() in ("0", "1", "0.0", "1.0") for r in body)
    ]
    if not genre_cols:
        raise UserError(f"{path}: has an id column but no 0/1 genre columns")
    for line, row in enumerate(body, start=2):
        if len(row) <= i_id or not row[i_id].strip():
            table.dropped.append({"path": f"{path.name}:{line}", "reason": "bad-csv-row", "detail": "missing id"})
            continue
        key = poster_key(Path(row[i_id].strip()).stem if "." in row[i_id] else row[i_id])
        if key in table.genres:
            table.dropped.append({"path": f"{path.name}:{line}", "reason": "duplicate-csv-row",
                                  "detail": f"id {row[i_id].strip()} listed before"})
            continue
        table.genres[key] = {normalize_genre(header[j]) for j in genre_cols if row[j].strip() in ("1", "1.0")}
    return table
