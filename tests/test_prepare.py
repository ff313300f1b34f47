"""prepare: every bad-file kind is skipped with its reason, every valid image kept and converted."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import noise, png_bomb, solid
from postergen.data import decode, ingest
from postergen.data.dataset import open_dataset
from postergen.data.ingest import PrepareConfig, prepare
from postergen.errors import UserError


def reasons(meta: dict) -> Counter:
    return Counter(s["reason"] for s in meta["skipped"])


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """One folder with every kind of bad file next to three good ones."""
    src = tmp_path / "posters"
    for i in range(3):
        noise(src / f"{i}.jpg", seed=i)
    (src / "empty.jpg").write_bytes(b"")
    good = (src / "0.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "corrupt.jpg").write_bytes(good[:200] + b"\x00garbage" * 50)
    (src / "notes.jpg").write_text("this is a text file with an image extension\n")
    (src / "._0.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    png_bomb(src / "bomb.png")
    solid(src / "tiny.png", size=(20, 30))
    (src / "copy_of_0.jpg").write_bytes(good)
    (src / "readme.txt").write_text("not a poster")
    return src


def test_every_bad_kind_is_skipped_with_reason(messy: Path, tmp_path: Path):
    meta = prepare([messy], tmp_path / "ds", PrepareConfig(size=32))
    assert meta["count"] == 3
    assert reasons(meta) == {"empty": 1, "corrupt": 2, "not-an-image": 1, "appledouble": 1,
                             "too-large": 1, "too-small": 1, "duplicate": 1}
    by_path = {s["path"]: s["reason"] for s in meta["skipped"]}
    assert by_path["truncated.jpg"] == "corrupt" and by_path["bomb.png"] == "too-large"
    assert "0.jpg" in next(s["detail"] for s in meta["skipped"] if s["path"] == "copy_of_0.jpg")
    assert sorted(meta["sources"]) == ["0.jpg", "1.jpg", "2.jpg"]
    assert meta["prepare"]["non_image_files"] == 1
    ds = open_dataset(tmp_path / "ds")
    assert ds.images.shape == (3, 3, 32, 32) and ds.labels.shape == (3, 0)


def test_pixels_match_a_direct_decode(tmp_path: Path):
    src = tmp_path / "src"
    solid(src / "a.png", color=(10, 200, 90))
    ds = open_dataset(_prep(src, tmp_path / "ds", size=48))
    assert np.abs(ds.images[0].astype(int) - np.array([10, 200, 90])[:, None, None]).max() <= 1


def test_modes_are_converted_not_skipped(tmp_path: Path):
    src = tmp_path / "src"
    solid(src / "gray.jpg", color=128, mode="L")
    solid(src / "cmyk.jpg", color=(0, 255, 255, 0), mode="CMYK")  # pure red in CMYK
    pal = Image.new("P", (100, 150), 0)
    pal.putpalette([0, 0, 255] + [0] * 765)
    pal.save(src / "palette.png")
    solid(src / "clear.png", color=(0, 0, 0, 0), mode="RGBA")  # fully transparent -> white
    solid(src / "la.png", color=(0, 0), mode="LA")
    Image.fromarray(np.full((150, 100), 30000, np.uint16)).save(src / "deep.png")  # 16-bit gray
    ds = open_dataset(_prep(src, tmp_path / "ds", size=32))
    assert ds.meta["skipped"] == []
    px = {Path(s).stem: ds.images[i][:, 16, 16].astype(int) for i, s in enumerate(ds.meta["sources"])}
    assert np.abs(px["gray"] - 128).max() <= 2
    assert px["cmyk"][0] > 200 and px["cmyk"][1:].max() < 40
    assert list(px["palette"]) == [0, 0, 255]
    assert list(px["clear"]) == [255, 255, 255] and list(px["la"]) == [255, 255, 255]
    assert np.abs(px["deep"] - round(30000 / 257)).max() <= 1  # scaled from 16 bits, not clipped to 255


def test_exif_rotation_is_applied(tmp_path: Path):
    """Stored 300x150 (top red, bottom blue) with orientation 6 displays 150x300, blue left, red right."""
    src = tmp_path / "src"
    src.mkdir()
    a = np.zeros((150, 300, 3), np.uint8)
    a[:75] = (255, 0, 0)
    a[75:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(src / "rot.jpg", exif=exif, quality=95)
    img = open_dataset(_prep(src, tmp_path / "ds", size=64, fit="pad")).images[0].astype(int)
    assert img[:, 32, 2].max() < 20  # pad bars: displayed image is portrait
    assert img[2, 32, 22] > 200 and img[0, 32, 22] < 60  # blue on the left
    assert img[0, 32, 42] > 200 and img[2, 32, 42] < 60  # red on the right


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_fast_jpeg_path_matches_pillow(tmp_path: Path, fit: str, monkeypatch):
    """Plain JPEGs skip Pillow's header parsing; the pixels must be Pillow's, bit for bit."""
    import io

    pytest.importorskip("simplejpeg")

    rng = np.random.default_rng(0)
    cfg = PrepareConfig(size=40, fit=fit, aspect="2:3")
    jpegs = {}
    for i, (mode, size, save) in enumerate([("RGB", (182, 268), {}), ("RGB", (183, 271), {"progressive": True}),
                                            ("L", (97, 301), {}), ("RGB", (640, 480), {"quality": 60}),
                                            ("RGB", (33, 47), {})]):  # smaller than the output: upscaled
        pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).resize(size, Image.NEAREST).convert(mode).save(buf, "JPEG", **save)
        jpegs[f"{mode}{i}"] = buf.getvalue()
    fast = {k: decode._decode_plain_jpeg(v, cfg) for k, v in jpegs.items()}
    monkeypatch.setattr(decode, "_decode_plain_jpeg", lambda data, cfg: None)
    for name, data in jpegs.items():
        reason, note, slow = decode.decode_image(data, cfg)
        assert reason == "ok" and fast[name] is not None and np.array_equal(fast[name][0], slow), name
        assert fast[name][1] == note and note.startswith("upscaled") == name.endswith("4"), name
    monkeypatch.undo()
    # Everything else goes to Pillow: CMYK, EXIF (may rotate), damage, size limits.
    cmyk, exif = io.BytesIO(), io.BytesIO()
    Image.new("CMYK", (100, 150)).save(cmyk, "JPEG")
    Image.new("RGB", (100, 150)).save(exif, "JPEG", exif=Image.Exif())
    plain = jpegs["RGB0"]
    for data in (cmyk.getvalue(), exif.getvalue(), plain[:len(plain) // 2]):
        assert decode._decode_plain_jpeg(data, cfg) is None
    assert decode._decode_plain_jpeg(plain, PrepareConfig(size=40, max_pixels=1000)) is None


@pytest.mark.parametrize("aspect,fit,shape", [("1:1", "crop", (3, 40, 40)), ("1:1", "pad", (3, 40, 40)),
                                              ("2:3", "crop", (3, 60, 40)), ("2:3", "pad", (3, 60, 40))])
def test_shapes(tmp_path: Path, aspect: str, fit: str, shape):
    src = tmp_path / "src"
    solid(src / "wide.png", color=(255, 255, 255), size=(300, 100))
    img = open_dataset(_prep(src, tmp_path / "ds", size=40, aspect=aspect, fit=fit)).images[0]
    assert img.shape == shape
    H, W = shape[1:]
    if fit == "crop":
        assert img.min() == 255  # a center crop of a white image has no border
    else:
        assert img[:, 0, W // 2].max() == 0 and img[:, H // 2, W // 2].min() == 255  # letterbox bars


def test_kaggle_moviegenre_csv(tmp_path: Path):
    src = tmp_path / "src"
    noise(src / "images" / "114709.jpg", 1)
    noise(src / "images" / "113497.jpg", 2)
    noise(src / "images" / "999.jpg", 3)  # no CSV row: kept, no genres
    csv = ("imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
           "114709,http://www.imdb.com/title/tt114709,Toy Story (1995),8.3,Animation|Adventure|Comedy,https://x/1.jpg\n"
           "113497,http://www.imdb.com/title/tt113497,Caf\xe9 Noir,7.0,Horror,https://x/2.jpg\n"
           "113228,http://www.imdb.com/title/tt113228,Missing Poster,6.6,Comedy|Romance,https://x/3.jpg\n"
           "113497,http://www.imdb.com/title/tt113497,Caf\xe9 Noir,7.0,Horror,https://x/2.jpg\n")
    (src / "MovieGenre.csv").write_bytes(csv.encode("latin-1"))
    ds = open_dataset(_prep(src, tmp_path / "ds", size=32))
    assert ds.genres == ["adventure", "animation", "comedy", "horror"]
    rows = {Path(s).stem: ds.labels[i].tolist() for i, s in enumerate(ds.meta["sources"])}
    assert rows == {"114709": [1, 1, 1, 0], "113497": [0, 0, 0, 1], "999": [0, 0, 0, 0]}
    assert reasons(ds.meta) == {"missing-file": 1, "duplicate-csv-row": 1}
    assert ds.meta["prepare"]["labels_from"].endswith("MovieGenre.csv")


def test_multi_hot_csv_and_genre_subset(tmp_path: Path):
    src = tmp_path / "posters"
    for i in range(4):
        noise(src / f"tt{i:07d}.jpg", i)
    labels = tmp_path / "train.csv"
    labels.write_text('Id,Genre,Action,Horror,Comedy\n'
                      'tt0000000,"[\'Action\']",1,0,0\n'
                      'tt0000001,"[\'Horror\']",0,1,0\n'
                      'tt0000002,"[\'Horror\', \'Comedy\']",0,1,1\n'
                      'tt0000003,"[\'Comedy\']",0,0,1\n')
    ds = open_dataset(_prep(src, tmp_path / "ds", size=32, labels=labels, genres=["Horror"]))
    assert ds.meta["count"] == 2 and ds.meta["prepare"]["filtered_by_genre"] == 2
    assert ds.genres == ["comedy", "horror"]
    assert sorted(ds.labels.tolist()) == [[0, 1], [1, 1]]


def test_subfolder_genres_from_zip_with_macos_junk(tmp_path: Path):
    """The Kaggle zips: a top folder, genre subfolders, and a __MACOSX/._* twin per poster."""
    files = tmp_path / "files"
    for i, genre in enumerate(["horror", "horror", "action", "comedy"]):
        noise(files / f"{genre}_{i}.jpg", i)
    archive = tmp_path / "posters.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, genre in enumerate(["horror", "horror", "action", "comedy"]):
            zf.write(files / f"{genre}_{i}.jpg", f"Posters/{genre}/{i}.jpg")
            zf.writestr(f"__MACOSX/Posters/{genre}/._{i}.jpg", b"\x00\x05\x16\x07")
        zf.write(files / "horror_0.jpg", "Posters/comedy/0.jpg")  # the same poster in two genres
    ds = open_dataset(_prep(archive, tmp_path / "ds", size=32))
    assert ds.meta["count"] == 4
    assert ds.genres == ["action", "comedy", "horror"]
    rows = dict(zip(ds.meta["sources"], ds.labels.tolist()))
    merged = rows["Posters/comedy/0.jpg"] if "Posters/comedy/0.jpg" in rows else rows["Posters/horror/0.jpg"]
    assert merged == [0, 1, 1]
    assert reasons(ds.meta) == {"appledouble": 4, "duplicate": 1}


def test_tar_with_csv_and_subfolders(tmp_path: Path, cli):
    """An uncompressed tar reads like a folder (its CSV included); a compressed one is refused in one line."""
    import tarfile

    folder = tmp_path / "posters"
    for i in range(4):
        noise(folder / "images" / f"{i}.jpg", i)
    (folder / "MovieGenre.csv").write_text("imdbId,Title,Genre\n0,A,Horror\n1,B,Comedy|Horror\n2,C,Action\n")
    for name, mode in (("posters.tar", "w"), ("posters.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / name, mode) as tf:
            for child in folder.iterdir():  # the CSV at the top, as in the folder
                tf.add(child, arcname=child.name)
    from_tar = open_dataset(_prep(tmp_path / "posters.tar", tmp_path / "from_tar", size=32, workers=2))
    from_dir = open_dataset(_prep(folder, tmp_path / "from_dir", size=32))
    assert from_tar.meta["count"] == 4 and from_tar.genres == ["action", "comedy", "horror"]
    assert np.array_equal(from_tar.images, from_dir.images) and np.array_equal(from_tar.labels, from_dir.labels)
    assert from_tar.labels.sum(axis=0).tolist() == [1, 1, 2]
    code, _, err = cli("prepare", tmp_path / "posters.tar.gz", "-o", tmp_path / "gz")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "compressed tar" in err
    assert not (tmp_path / "gz").exists()
    whole = (tmp_path / "posters.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[:len(whole) // 2])
    code, _, err = cli("prepare", tmp_path / "cut.tar", "-o", tmp_path / "cut")
    assert code == 2 and err.strip().endswith("cut.tar: unreadable tar archive (unexpected end of data)")


def test_several_sources_and_worker_counts_agree(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(6):
        noise((a if i % 2 else b) / f"{i}.jpg", i)
    one = open_dataset(_prep(a, tmp_path / "one", b, size=32, workers=1))
    two = open_dataset(_prep(a, tmp_path / "two", b, size=32, workers=2))
    assert one.meta["count"] == 6 and one.meta["sources"][0] == "a/1.jpg"
    assert np.array_equal(one.images, two.images) and one.meta["sources"] == two.meta["sources"]


def test_force_and_existing_folders(tmp_path: Path):
    src = tmp_path / "src"
    noise(src / "0.jpg", 0)
    out = _prep(src, tmp_path / "ds", size=32)
    with pytest.raises(UserError, match="use --force"):
        prepare([src], out, PrepareConfig(size=32))
    noise(src / "1.jpg", 1)
    assert prepare([src], out, PrepareConfig(size=32), force=True)["count"] == 2
    assert open_dataset(out).meta["count"] == 2
    precious = tmp_path / "precious"
    (precious / "thesis.txt").parent.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(UserError, match="not made by postergen as a dataset"):
        prepare([src], precious, PrepareConfig(size=32), force=True)
    assert (precious / "thesis.txt").exists()


def test_failure_midway_leaves_no_dataset(tmp_path: Path, monkeypatch):
    src = tmp_path / "src"
    noise(src / "0.jpg", 0)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "_write_meta", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare([src], tmp_path / "ds", PrepareConfig(size=32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_header_shrink_keeps_a_loadable_array(tmp_path: Path):
    path = tmp_path / "a.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1000, 3, 4, 4))
    mm[:7] = np.arange(7, dtype=np.uint8)[:, None, None, None]
    del mm
    ingest._shrink_npy(path, 7, (3, 4, 4))
    back = np.load(path)
    assert back.shape == (7, 3, 4, 4) and back[6].min() == 6


def _prep(src: Path, out: Path, *more: Path, **cfg) -> Path:
    cfg.setdefault("min_side", 32)
    prepare([src, *more], out, PrepareConfig(**cfg))
    return out


# ---------------------------------------------------------------------------------------------
# CLI: user mistakes are one line on stderr and a non-zero exit


def test_cli_prepare_and_info(cli, messy: Path, tmp_path: Path):
    code, out, err = cli("prepare", messy, "-o", tmp_path / "ds", "--size", "32", "--workers", "1")
    assert code == 0 and "3 posters at 32x32" in out
    code, out, _ = cli("info", tmp_path / "ds")
    assert code == 0 and "posters   3" in out and "appledouble" in out and "too-large" in out


@pytest.mark.parametrize("args,message", [
    (["prepare", "nowhere", "-o", "ds"], "nowhere: no such file or folder"),
    (["prepare", "src", "-o", "ds", "--size", "16"], "--size must be between 32 and 512"),
    (["prepare", "src", "-o", "ds", "--genres", "horor"], "needs genre labels"),
    (["prepare", "src", "-o", "ds", "--labels", "bad.csv"], "expected columns imdbId,Genre"),
    (["prepare", "src", "-o", "ds", "--labels", "missing.csv"], "labels CSV not found"),
    (["prepare", "empty", "-o", "ds"], "no images found"),
    (["prepare", "junk", "-o", "ds"], "no usable images: all 1 were skipped (not-an-image)"),
    (["info", "src"], "not a dataset folder"),
])
def test_cli_errors_are_one_line(cli, tmp_path: Path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    noise(tmp_path / "src" / "0.jpg", 0)
    (tmp_path / "bad.csv").write_text("name,score\nx,1\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("hello")
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "ds").exists()


def test_cli_unknown_genre_lists_known(cli, tmp_path: Path):
    noise(tmp_path / "src" / "horror" / "0.jpg", 0)
    noise(tmp_path / "src" / "comedy" / "1.jpg", 1)
    code, _, err = cli("prepare", tmp_path / "src", "-o", tmp_path / "ds", "--genres", "horror,western")
    assert code == 2 and "unknown genre western; known: comedy, horror" in err


def test_dataset_json_is_valid_json(tmp_path: Path):
    src = tmp_path / "src"
    noise(src / "0.jpg", 0)
    meta = json.loads((_prep(src, tmp_path / "ds", size=32) / "dataset.json").read_text())
    assert meta["size"] == [32, 32] and meta["count"] == 1
