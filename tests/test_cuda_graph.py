"""--cuda-graph: the capturable form of the step computes what the plain step computes.

On CPU (CI) the static-buffer form runs eagerly and must match Stepper.step bit for bit; the
capture and replay themselves need a GPU and are checked by the CUDA test, skipped elsewhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import NoHostReads, outside_mode, parameters_of, tiny_train_args
from postergen.config import from_preset
from postergen.data.dataset import Batches, open_dataset
from postergen.engine.gan import build
from postergen.engine.step import Meter, Stepper


def _persistent(m, meter) -> list[torch.Tensor]:
    """Everything that outlives a step; a captured step may only update these in place."""
    nets = (m.G, m.D, m.G_ema)
    optim = [t for opt in (m.opt_g, m.opt_d) for state in opt.state.values() for t in state.values()]
    return [*(t for net in nets for t in (*net.parameters(), *net.buffers())), *optim,
            meter.sums, meter.counts, meter.first_bad]


@pytest.mark.parametrize("augment", ["color,translation,cutout", "ada"])
def test_static_step_matches_plain_step(tiny_dataset: Path, augment: str):
    from postergen.engine.step import StaticStep

    ds = open_dataset(tiny_dataset)
    # d_every=2 with R1 every 2nd D update: all three kinds of step, (D, R1), (no D), (D, no R1).
    cfg = from_preset("stable", **tiny_train_args(d_every=2, r1_every=2, augment=augment))
    model_cfg = cfg.model_config(*ds.meta["size"], len(ds.genres))
    device = torch.device("cpu")
    batches = Batches(ds, cfg.batch, device, cfg.seed)
    results = []
    for graphable in (False, True):
        run_cfg = dataclasses.replace(cfg, cuda_graph=graphable)  # autocast without its cache when True
        m = build(run_cfg, model_cfg, device)
        stepper, meter = Stepper(m, run_cfg, device, conditional=True), Meter(device)
        m.opt_g.step, m.opt_d.step = outside_mode(m.opt_g.step), outside_mode(m.opt_d.step)
        static = StaticStep(stepper, meter)
        torch.manual_seed(5)
        for step in range(6):
            real, genres = batches.get(step)
            if graphable:
                with NoHostReads():
                    static(step, real, genres)
            else:
                meter.add(step, stepper.step(step, real, genres))
            if step == 2:  # every kind has run once: all state exists
                before = [(t, t.data_ptr()) for t in _persistent(m, meter)]
        if graphable:  # a graph replays into the addresses it captured: no state may be rebound
            after = _persistent(m, meter)
            assert len(after) == len(before)
            assert all(a is t and a.data_ptr() == ptr for a, (t, ptr) in zip(after, before))
        results.append((parameters_of(m), meter.sums.clone(), meter.counts.clone()))
    (plain, plain_sums, plain_counts), (static_p, static_sums, static_counts) = results
    assert {stepper.phase(s) for s in range(6)} == {(True, False, False), (False, False, False), (True, True, False)}
    assert all(torch.equal(a, b) for a, b in zip(plain, static_p))
    assert torch.equal(plain_sums, static_sums) and torch.equal(plain_counts, static_counts)
    assert plain_counts.tolist() == [3, 6, 3, 3, 0, 0, 0]  # D statistics on D steps only, G's on every step; no parts


def test_cuda_graph_needs_cuda(cli, tiny_dataset: Path, tmp_path: Path):
    code, _, err = cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", "2", "--batch", "8",
                       "--device", "cpu", "--cuda-graph")
    assert code == 2
    assert err.strip() == "postergen train: error: --cuda-graph needs a CUDA device; this run is on cpu"
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_training_tracks_eager_training(tiny_dataset: Path, tmp_path: Path):
    """Same seed, fp32: graph replays follow the eager run (same RNG offsets), up to kernel rounding."""
    from postergen.checkpoint import load_latest
    from postergen.engine.gan import train

    ds = open_dataset(tiny_dataset)
    args = tiny_train_args(steps=20, device="cuda", precision="fp32", checkpoint_every=20, sample_every=20)
    initial = build(from_preset("stable", **args), from_preset("stable", **args).model_config(
        *ds.meta["size"], len(ds.genres)), torch.device("cuda")).G.state_dict()
    weights = {}
    for graphed in (False, True):
        out = train(ds, tmp_path / str(graphed), from_preset("stable", **args, cuda_graph=graphed))
        if graphed:  # 2 kinds (R1 or not) x 3 eager warm-up steps; the other 14 steps are replays
            assert out["cuda_graph_replays"] == 14
        weights[graphed] = load_latest(tmp_path / str(graphed))["G"]
    for name, w0 in initial.items():
        if not w0.is_floating_point():
            continue
        eager, graph = weights[False][name].float(), weights[True][name].float()
        moved = (eager - w0.cpu().float()).norm()
        assert (graph - eager).norm() <= 0.1 * moved + 1e-6, name
