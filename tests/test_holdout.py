"""prepare --holdout: a seeded slice of posters no training draws, evaluate's real set, and D's output on
it (d_heldout) made visible in metrics.jsonl, loss.png and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same, built_in_dataset, checkpoint_weights, one_line_error, tiny_flags, tiny_train_args
from postergen.data.dataset import Batches, open_dataset


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Path:
    """The tiny dataset's 48 built-in posters again (same posters and genres), 10% held out."""
    return built_in_dataset(tmp_path_factory.mktemp("held"), n=48, size=32, holdout=10.0)


def test_prepare_records_a_seeded_slice_stratified_by_genres(held: Path, cli):
    from postergen.data.ingest import holdout_indices

    ds = open_dataset(held)
    assert ds.meta["holdout"]["percent"] == 10.0
    assert list(ds.held_out) == ds.meta["holdout"]["indices"] and len(ds.held_out) == 5  # round(4.8)
    assert sorted(set(ds.held_out) | set(ds.training)) == list(range(48)) and not set(ds.held_out) & set(ds.training)
    assert list(ds.held_out) == holdout_indices(ds.labels, 10.0)  # a function of the posters' genres alone
    labels = np.repeat(np.eye(4, dtype=np.uint8), [400, 300, 200, 100], axis=0)  # four genres, 1000 posters
    picked = holdout_indices(labels, 10.0)
    assert len(picked) == 100 and labels[picked].sum(0).tolist() == [40, 30, 20, 10]  # each genre its share
    assert holdout_indices(labels, 10.0, seed=1) != picked and holdout_indices(labels, 0.0) == []
    code, out, _ = cli("info", held)
    assert code == 0 and "held out  5 (10.4%)" in out
    code, _, err = cli("prepare", held.parent / "posters", "-o", held.parent / "other", "--holdout", "60")
    one_line_error(code, err, "prepare", "between 0 and 50 percent (got 60 percent)", "--holdout")


def test_a_dataset_without_the_field_still_opens_and_a_bad_one_is_one_line(tiny_dataset: Path, held: Path,
                                                                            tmp_path: Path, cli):
    old = open_dataset(tiny_dataset)
    assert "holdout" not in old.meta and len(old.held_out) == 0 and list(old.training) == list(range(48))
    import shutil

    shutil.copytree(held, tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    for bad, says in (([3, 1], "ascending"), ([2, 48], "names poster 48, but there are 48"), ("7", "a list")):
        (tmp_path / "ds" / "dataset.json").write_text(json.dumps({**meta, "holdout": {"indices": bad}}))
        code, _, err = cli("info", tmp_path / "ds")
        assert says in one_line_error(code, err, "info", "holdout.indices")


def test_the_loaders_never_draw_a_held_out_poster(held: Path):
    from postergen.engine.sr import Crops, Split, SRTrainConfig, training_ids

    ds = open_dataset(held)
    for world, max_bytes in ((1, 4 << 30), (2, 0)):  # resident on the device, and streamed from the memory map
        ranks = [Batches(ds, 4, torch.device("cpu"), seed=1, rank=r, world=world, max_bytes=max_bytes)
                 for r in range(world)]
        for epoch in range(2):
            drawn = [int(i) for b in ranks for s in range(ranks[0].steps_per_epoch)
                     for i in b._indices(epoch * b.steps_per_epoch + s)]
            assert len(drawn) == len(set(drawn)) == 40  # 43 training posters, whole batches of 4 x world
            assert not set(drawn) & set(ds.held_out.tolist())
    real, _ = ranks[0].get(0)
    assert real.shape == (4, 3, 32, 32)
    split = Split.of(len(ds), 0.1)  # SR's own validation slice, the last 5, besides the dataset's
    ids = training_ids(ds, split)
    assert not set(ids.tolist()) & set(ds.held_out.tolist()) and ids.max() < split.train
    crops = Crops(ds, split, SRTrainConfig(batch=4, patch=8, scale=2), torch.device("cpu"))
    drawn = [int(i) for s in range(crops.steps_per_epoch) for i in crops._indices(s)]
    assert set(drawn) <= set(ids.tolist())


def test_evaluate_compares_with_the_held_out_posters(held: Path, run: Path, tmp_path: Path):
    import shutil

    from conftest import fast_pixel_configs
    from postergen.evaluate import evaluate, format_table, real_posters

    ds = open_dataset(held)
    _, idx = real_posters(ds, 100, seed=0)
    assert sorted(idx.tolist()) == ds.held_out.tolist()  # every held-out poster, capped there
    shutil.copytree(held, tmp_path / "ds")  # evaluation caches in the dataset folder
    result = evaluate(run, tmp_path / "ds", n=100, metrics=["swd"], configs=fast_pixel_configs())
    assert result["real_set"] == "held-out" and result["n"] == 5
    assert "5 generated vs 5 held-out real" in format_table(result)


@pytest.mark.slow
def test_d_heldout_is_logged_only_with_held_out_posters_and_resume_is_exact(held: Path, tiny_run: Path,
                                                                          tmp_path: Path, cli):
    flags = [*tiny_flags(genre_dim=8), "--log-every", "2", "--sample-every", "2", "--checkpoint-every", "2"]
    assert cli("train", held, "-o", tmp_path / "straight", *flags, "--steps", "4")[0] == 0
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "d_heldout" in r]
    assert [r["step"] for r in probed] == [2, 4] and all(0 <= r["d_heldout"] <= 1 and "d_train" in r for r in probed)
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["dataset"]["held_out"] == 5 and config["dataset"]["count"] == 48
    untouched = (tiny_run / "metrics.jsonl").read_text()
    assert "d_real" in untouched and "d_heldout" not in untouched  # no held-out posters: nothing new logged
    assert cli("train", held, "-o", tmp_path / "split", *flags, "--steps", "2")[0] == 0
    code, _, err = cli("train", held, "-o", tmp_path / "split", *flags, "--steps", "4", "--resume")
    assert code == 0, err
    assert_same(checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "split"))


@pytest.mark.parametrize("preset", ["stable", "seed"])  # spectral norm; BatchNorm
def test_measuring_d_changes_nothing_of_d_or_the_random_streams(held: Path, preset: str):
    from postergen.config import from_preset
    from postergen.engine.gan import build
    from postergen.engine.heldout import HeldOutProbe
    from postergen.engine.step import Stepper

    ds = open_dataset(held)
    cfg = from_preset(preset, **tiny_train_args())
    model_cfg = cfg.model_config(32, 32, len(ds.genres))
    m = build(cfg, model_cfg, torch.device("cpu"))
    stepper = Stepper(m, cfg, torch.device("cpu"), conditional=model_cfg.n_genres > 0)
    probe = HeldOutProbe(ds, torch.device("cpu"), seed=0)
    assert len(probe.batches["d_heldout"][0]) == 5 and len(probe.batches["d_train"][0]) == 5
    before, rng = {k: v.clone() for k, v in m.D.state_dict().items()}, torch.get_rng_state()
    first = probe.measure(stepper)
    assert_same(before, m.D.state_dict())  # no power-iteration step, no running-statistics update
    assert torch.equal(rng, torch.get_rng_state()) and m.D.training
    assert first == probe.measure(stepper) and set(first) == {"d_heldout", "d_train"}


def _rows(gaps: list[float]) -> list[dict]:
    """Metric lines of a hinge run (D on training posters ~0.7, on fakes ~0.35) with these held-out gaps."""
    return [{"step": 100 * (i + 1), "loss_d": 1.5, "loss_g": 0.8, "d_real": 0.66, "d_fake": 0.35,
             "d_train": 0.7, "d_heldout": round(0.7 - gap, 4)} for i, gap in enumerate(gaps)]


def test_the_report_advises_when_the_gap_is_large_and_growing(tmp_path: Path):
    from postergen.diagnose import diagnose
    from postergen.report.sections import RunInfo, health, losses

    growing = _rows([0.01, 0.03, 0.08, 0.19, 0.2, 0.24])  # half of 0.7 - 0.35 is 0.175
    flat = _rows([0.02, 0.03, 0.01, 0.02, 0.03, 0.02])
    large_from_the_start = _rows([0.25, 0.24, 0.26, 0.25, 0.24, 0.25])  # no growth: a hard split, not memorising
    findings = diagnose(growing)
    assert [(f.kind, f.start, f.end) for f in findings] == [("memorising", 400, 600)]
    assert "--augment ada" in findings[0].message and "--init-from" in findings[0].message
    assert diagnose(flat) == [] and diagnose(large_from_the_start) == []
    advice = "D rates training posters above unseen ones: it is memorising"
    for rows, warned in ((growing, True), (flat, False)):
        info = RunInfo(tmp_path, {}, rows, diagnose(rows))
        text = losses(info)
        assert "The gap between them was" in text and (advice in text) == warned
        assert (advice in health(info)) == warned
    assert "held-out" not in losses(RunInfo(tmp_path, {}, [{k: v for k, v in r.items() if k not in ("d_train", "d_heldout")}
                                                           for r in growing], []))
