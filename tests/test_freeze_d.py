"""--freeze-d N (FreezeD, Mo et al. 2020): D's first N blocks, nearest the image, never train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import one_line_error, tiny_flags, tiny_train_args
from postergen.models.registry import DISCRIMINATORS


@pytest.mark.parametrize("name", list(DISCRIMINATORS))
def test_each_d_says_its_blocks_nearest_the_image_first(name: str):
    from postergen.config import ModelConfig

    D = DISCRIMINATORS[name](ModelConfig(height=32, width=32, ndf=8, ngf=8, n_genres=2, discriminator=name))
    blocks = D.blocks()
    owned = [{id(p) for p in b.parameters()} for b in blocks]
    assert all(owned) and sum(map(len, owned)) == len(set().union(*owned))  # each block has weights, none shared
    head = {id(p) for p in D.parameters() if p.requires_grad} - set().union(*owned)
    assert head or not blocks  # the head always trains
    if blocks:  # the first block takes the image itself
        first = next(m for m in blocks[0].modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 3


@pytest.mark.parametrize("discriminator", ["dcgan", "fastgan"])
def test_frozen_blocks_stay_bit_identical_while_the_rest_trains(tiny_dataset: Path, discriminator: str):
    from postergen.config import from_preset
    from postergen.data.dataset import Batches, open_dataset
    from postergen.engine.gan import build
    from postergen.engine.step import Stepper

    ds = open_dataset(tiny_dataset)
    cfg = from_preset("stable", **tiny_train_args(freeze_d=2, discriminator=discriminator))
    model_cfg = cfg.model_config(32, 32, len(ds.genres))
    m = build(cfg, model_cfg, torch.device("cpu"))
    frozen = [p for b in m.D.blocks()[:2] for p in b.parameters()]
    rest = [p for b in m.D.blocks()[2:] for p in b.parameters()]
    in_opt = {id(p) for group in m.opt_d.param_groups for p in group["params"]}
    assert frozen and rest and not in_opt & {id(p) for p in frozen} and {id(p) for p in rest} <= in_opt
    before = [p.detach().clone() for p in frozen + rest]
    stepper, batches = Stepper(m, cfg, torch.device("cpu"), conditional=True), Batches(ds, 8, torch.device("cpu"), 0)
    for step in range(3):
        stepper.step(step, *batches.get(step))
    assert all(torch.equal(a, p) for a, p in zip(before, frozen))
    assert all(not torch.equal(a, p) for a, p in zip(before[len(frozen):], rest))
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in rest)  # G's step restored only these


def test_more_blocks_than_d_has_is_one_line(cli, tiny_dataset: Path, tmp_path: Path):
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "r", *tiny_flags(), "--steps", "1", "--freeze-d", "4")
    assert "dcgan discriminator has 3 blocks to freeze; give --freeze-d 3 at most" in one_line_error(code, err, "train")
    assert not (tmp_path / "r").exists()
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "r", *tiny_flags(), "--freeze-d", "4", "--dry-run")
    one_line_error(code, err, "train", "give --freeze-d 3 at most")  # a dry run fails where the run would
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "r", *tiny_flags(), "--freeze-d", "-1")
    one_line_error(code, err, "train", "--freeze-d must be between 0 and 64 blocks")


def test_a_d_that_cannot_freeze_says_so(cli, tiny_dataset: Path, tmp_path: Path):
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "r", *tiny_flags(), "--steps", "1",
                       "--discriminator", "projected", "--freeze-d", "1")
    one_line_error(code, err, "train", "projected discriminator has no blocks to freeze", "--freeze-d 0 at most")


@pytest.mark.slow
def test_recorded_in_config_and_fixed_for_the_run(cli, tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "r"
    assert cli("train", tiny_dataset, "-o", run, *tiny_flags(), "--steps", "2", "--freeze-d", "2")[0] == 0
    assert json.loads((run / "config.json").read_text())["train"]["freeze_d"] == 2
    code, _, err = cli("train", tiny_dataset, "-o", run, *tiny_flags(), "--steps", "4", "--resume", "--freeze-d", "0")
    one_line_error(code, err, "train", "cannot change --freeze-d (2 -> 0)")
    assert cli("train", tiny_dataset, "-o", run, *tiny_flags(), "--steps", "4", "--resume")[0] == 0
    code, out, _ = cli("info", run)
    assert code == 0 and "--freeze-d 2" in out
