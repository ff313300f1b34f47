"""train --init-from: a run starts from a trained run's (or an export's) weights, genres mapped by name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import assert_same, built_in_dataset, checkpoint_weights, one_line_error, tiny_flags
from postergen.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def horror(tmp_path_factory) -> Path:
    """Other built-in posters with the genres comedy, horror and a new one, western: genres the parent
    partly knows, in other positions."""
    relabel = lambda i, genres: ("Western|Horror", "Comedy", "Horror")[i % 3]  # replaces each poster's genres
    return built_in_dataset(tmp_path_factory.mktemp("horror"), n=48, size=32, seed=3, relabel=relabel)


def _genres(path: Path) -> list[str]:
    return [g["name"] for g in json.loads((path / "dataset.json").read_text())["genres"]]


def test_child_starts_from_the_parents_weights_with_genres_by_name(tiny_run: Path, horror: Path, tmp_path: Path):
    from conftest import tiny_train_args
    from postergen.config import from_preset
    from postergen.data.dataset import open_dataset
    from postergen.engine.gan import build
    from postergen.engine.transfer import init_from

    parent = load_checkpoint(tiny_run)
    parent_genres, genres = parent["config"]["genres"], _genres(horror)
    assert genres == ["comedy", "horror", "western"] and "western" not in parent_genres
    cfg = from_preset("stable", **tiny_train_args())
    model_cfg = cfg.model_config(*open_dataset(horror).meta["size"], len(genres))
    models = build(cfg, model_cfg, torch.device("cpu"))
    record, line = init_from(tiny_run, models, model_cfg, "dcgan", genres)
    assert "G, EMA G and D" in line and "2 kept, 1 new" in line
    assert record["step"] == 2 and len(record["weights"]) == 16
    for name, mine in models.G.state_dict().items():
        theirs = parent["G"][name]
        if mine.shape == theirs.shape:
            assert torch.equal(mine, theirs), name
        else:  # the genre embedding: each genre's column comes from the parent's column of that name
            for j, g in enumerate(genres[:2]):
                assert torch.equal(mine[:, j], theirs[:, parent_genres.index(g)]), name
    same = [k for k, v in models.D.state_dict().items() if v.shape == parent["D"][k].shape]
    assert same and all(torch.equal(models.D.state_dict()[k], parent["D"][k]) for k in same)


@pytest.mark.slow
def test_cli_init_from_records_the_parent_and_resumes_exactly(cli, tiny_run: Path, horror: Path, tmp_path: Path):
    flags = tiny_flags(genre_dim=8)
    code, out, err = cli("train", horror, "-o", tmp_path / "straight", *flags, "--steps", "4", "--init-from", tiny_run)
    assert code == 0, err
    assert f"init from {tiny_run}" in out
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["init_from"]["path"] == os.path.relpath(tiny_run, tmp_path / "straight")  # no absolute path
    assert config["train"]["init_from"] == config["init_from"]["path"] and len(config["init_from"]["weights"]) == 16
    cli("train", horror, "-o", tmp_path / "split", *flags, "--steps", "2", "--init-from", tiny_run)
    code, _, err = cli("train", horror, "-o", tmp_path / "split", *flags, "--steps", "4", "--resume")
    assert code == 0, err
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))
    code, out, err = cli("report", tmp_path / "straight")
    assert code == 0, err
    assert "started from" in (tmp_path / "straight" / "report.html").read_text()
    code, out, err = cli("info", tmp_path / "straight")
    assert code == 0, err
    parent = config["init_from"]
    assert f"init from {parent['path']} (from the run) at step 2 (weights {parent['weights']}, dcgan, 8 genres)" in out
    assert "genres    3: comedy, horror, western" in out and "trained   step 4 of 4, 0.032 thousand images" in out


def test_an_export_gives_g_and_d_starts_fresh(cli, tiny_run: Path, horror: Path, tmp_path: Path):
    assert cli("export", tiny_run, "-o", tmp_path / "g.safetensors")[0] == 0
    code, out, err = cli("train", horror, "-o", tmp_path / "r", *tiny_flags(genre_dim=8), "--steps", "2",
                         "--init-from", tmp_path / "g.safetensors")
    assert code == 0, err
    assert "D starts fresh: an export has none" in out


def test_unconditional_parent_into_a_conditional_run(cli, tiny_dataset: Path, horror: Path, tmp_path: Path):
    assert cli("train", tiny_dataset, "-o", tmp_path / "u", *tiny_flags(genre_dim=8), "--steps", "2", "--no-conditional")[0] == 0
    code, out, err = cli("train", horror, "-o", tmp_path / "c", *tiny_flags(genre_dim=8), "--steps", "2",
                         "--init-from", tmp_path / "u")
    assert code == 0, err
    assert "0 kept, 3 new" in out and "start fresh or partly fresh (conditioning differs)" in out


def test_what_cannot_carry_over_is_one_line(cli, tiny_run: Path, horror: Path, tmp_path: Path):
    code, _, err = cli("train", horror, "-o", tmp_path / "r", *tiny_flags(genre_dim=8, ngf=16), "--steps", "2", "--init-from", tiny_run)
    assert "its model.ngf is 8, this run's 16" in one_line_error(code, err, "train")
    assert not (tmp_path / "r").exists()
    code, _, err = cli("train", horror, "-o", tmp_path / "r", *tiny_flags(genre_dim=8), "--steps", "2", "--init-from", tmp_path / "nope")
    assert "no such run folder, checkpoint or export" in one_line_error(code, err, "train")


def test_info_describes_a_run_folder(cli, run: Path):
    code, out, err = cli("info", run)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert "model     dcgan generator, dcgan D; preset stable" in out and "image     32x32 px (W x H)" in out
    assert "trained   step 2 of 2, 0.016 thousand images seen (checkpoints/latest.pt)" in out
    assert f"(48 posters, at {config['dataset']['path']} from the run, content {config['dataset']['content'][:19]})" in out
    assert "init from" not in out  # trained from scratch
    config["genres"][0] = "ac\x1b[2Jtion"  # a name edited into the file: escaped, never a terminal control
    (run / "config.json").write_text(json.dumps(config))
    code, out, _ = cli("info", run)
    assert code == 0 and "ac\\x1b[2Jtion" in out and "\x1b" not in out


def test_without_a_preset_the_child_takes_the_parents_model(cli, tiny_run: Path, horror: Path, tmp_path: Path):
    # no --ngf/--ndf/--genre-dim: the parent's (8, 8, 8), not the recipe a new run would get
    code, out, err = cli("train", horror, "-o", tmp_path / "r", "--batch", "8", "--device", "cpu", "--steps", "2",
                         "--init-from", tiny_run, "--dry-run")
    assert code == 0, err
    model = json.loads(out)["model"]
    assert (model["ngf"], model["ndf"], model["genre_dim"]) == (8, 8, 8)
    assert err == "recipe stable: the parent's preset and model (--init-from)\n"
