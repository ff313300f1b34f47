"""GAN training as a task of the run engine: build G, D and their optimisers, step, draw, report.

The lifecycle (folder, resume, checkpoints, signals, logging) is engine/run.py's; the update itself
is engine/step.py's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from postergen import __version__
from postergen.checkpoint import check_kind, run_kind
from postergen.config import RESUMABLE, ModelConfig, TrainConfig, check
from postergen.data.dataset import Batches, PosterDataset
from postergen.diagnose import d_memorising, d_overpowering, diversity_drops
from postergen.draw import fixed_inputs, render, save_grid
from postergen.engine.collapse import SampleDiversity
from postergen.engine.heldout import HeldOutProbe
from postergen.engine.monitor import CollapseWatch, FailureWatch
from postergen.engine.objectives import freeze_blocks, trainable
from postergen.engine.run import (
    Engine,
    Schedule,
    Task,
    check_dataset,
    dataset_record,
    memory_error,
    open_run,
    resume_config,
    short_of_memory,
    start_fresh,
)
from postergen.engine.step import Meter, Models, Stepper, step_runner
from postergen.engine.transfer import init_from
from postergen.errors import UserError
from postergen.files import write_atomic
from postergen.models import registry
from postergen.plots import loss_plot
from postergen.runfolder import RunFolder, dataset_name, run_name
from postergen.runtime import Dist, init_distributed, pick_device, resolve_precision


def build(cfg: TrainConfig, model_cfg: ModelConfig, device: torch.device, dist: Dist = Dist(),
          arch: str | None = None) -> Models:
    """G, D, EMA G and optimisers of gan architecture `arch` (cfg.arch unless given) for model_cfg."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    G, D = registry.get(arch or cfg.arch, kind="gan").build(model_cfg)  # each model initialises its own weights
    try:  # --freeze-d: before the optimisers and DDP take D's trainable parameters
        freeze_blocks(D, cfg.freeze_d, getattr(model_cfg, "discriminator", type(D).__name__))
    except ValueError as e:
        raise UserError(str(e)) from None
    if dist.enabled and cfg.sync_bn:
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    G, D = G.to(device), D.to(device)
    if cfg.channels_last and device.type in ("cuda", "cpu"):
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_kimg > 0 else None
    # Fused Adam keeps its step count on the GPU; capturable=True lets --cuda-graph record its update.
    fused = {"fused": True, "capturable": cfg.cuda_graph} if device.type == "cuda" else {}
    betas = (float(cfg.beta1), float(cfg.beta2))
    # Over trainable parameters only: a frozen part (a pretrained backbone) is never updated.
    opt_g = torch.optim.Adam(trainable(G), lr=cfg.lr_g, betas=betas, **fused)
    opt_d = torch.optim.Adam(trainable(D), lr=cfg.lr_d, betas=betas, **fused)
    if not dist.enabled:
        return Models(G, D, G_ema, opt_g, opt_d)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    # A D with parts a step may leave unused (the ensemble's feature part before --feature-start) says
    # so: DDP must then look for unused parameters, or the next step fails waiting for their gradients.
    unused = bool(getattr(D, "IDLE_PARTS", ()))
    return Models(G, D, G_ema, opt_g, opt_d, DDP(G, device_ids=ids),
                  DDP(D, device_ids=ids, find_unused_parameters=unused))


def seed_rank_rng(seed: int, dist: Dist, offset: int = 0) -> None:
    """Noise, augmentation and label dropout differ per rank: seed * world + rank (+ resume offset)."""
    torch.manual_seed((seed * dist.world + dist.rank) * 1_000_003 + offset)


def fingerprint(modules: list[nn.Module | None]) -> float:
    """One number per set of weights; ranks in sync have bit-identical weights, so equal numbers.

    Parameters only: buffers (BatchNorm running stats, spectral-norm vectors) follow each rank's own
    batches between DDP's broadcasts from rank 0, and rank 0's are the ones saved.
    """
    total = torch.zeros((), dtype=torch.float64)
    for module in filter(None, modules):
        for i, p in enumerate(module.parameters()):
            total += (p.detach().double().cpu().flatten() * (1 + i % 7)).sum()
    return float(total)


# ---------------------------------------------------------------------------------------------
# Configuration: fresh, or the run's own on --resume

def gan_config(cfg: TrainConfig, model_cfg: ModelConfig, genres: list[str], ds: PosterDataset, run: Path) -> dict:
    """What config.json and every checkpoint hold: enough to rebuild the models."""
    return {"postergen": __version__, "kind": "gan", "arch": cfg.arch, "train": dataclasses.asdict(cfg),
            "model": dataclasses.asdict(model_cfg), "genres": genres, "dataset": dataset_record(ds, run)}


def resumed_config(saved: dict, cfg: TrainConfig, changed: set[str], run: Path) -> TrainConfig:
    """The run's stored settings with only the options the user gave (and a run may change) applied."""
    check_kind(saved, "gan", run, "postergen train --resume")
    return resume_config(TrainConfig, saved["train"], {k: getattr(cfg, k) for k in changed}, RESUMABLE, run)


def _check_same_data(saved: dict, ds: PosterDataset, run: Path, allow: bool) -> str | None:
    """The model is built for its poster size and genre rows: other ones are refused even with
    --allow-other-data, which only lets other posters (count, content) through."""
    if saved["dataset"]["size"] != ds.meta["size"] or (saved["genres"] and saved["genres"] != ds.genres):
        raise UserError(f"{run} was trained on {dataset_name(saved['dataset'])} ({saved['dataset']['size']}, "
                        f"genres {saved['genres']}); {ds.path} does not match")
    return check_dataset(saved["dataset"], ds, run, allow)


# ---------------------------------------------------------------------------------------------
# The task

class GANTask(Task):
    kind = "gan"
    divergence_advice = "Try a lower --lr-d/--lr-g or --preset stable"

    def __init__(self, ds: PosterDataset, cfg: TrainConfig, model_cfg: ModelConfig, genres: list[str],
                 device: torch.device, dist: Dist, arch: str | None = None) -> None:
        self.cfg, self.genres, self.device, self.dist, self.seed = cfg, genres, device, dist, cfg.seed
        self.m = build(cfg, model_cfg, device, dist, arch)
        seed_rank_rng(cfg.seed, dist)
        self.batches = Batches(ds, cfg.batch, device, cfg.seed, dist.rank, dist.world)
        self.images_per_step = cfg.batch * dist.world
        self.workload = workload(cfg, ds)
        self.precision = resolve_precision(cfg.precision, device)
        self.stepper = Stepper(self.m, cfg, device, conditional=model_cfg.n_genres > 0, world=dist.world)
        self.meter = Meter(device, dist, self.stepper.part_keys)
        self.step_fn = step_runner(self.stepper, self.meter, cfg.cuda_graph)
        self.fixed = fixed_inputs(model_cfg, genres, cfg.seed, device)
        self.diversity = SampleDiversity(ds, conditional=bool(genres), per_row=self.fixed.per_row, seed=cfg.seed)
        self.rendered: tuple[int, torch.Tensor] | None = None  # (step, fixed grid) validate rendered for draw
        self.heldout = HeldOutProbe(ds, device, cfg.seed) if len(ds.held_out) else None  # d_heldout, d_train
        self.watch, self.collapse_watch = FailureWatch(), CollapseWatch()
        self.tb = None  # the engine's TensorBoard writer, for sample grids

    def state(self) -> dict:
        m = self.m
        ada = self.stepper.ada
        return {"G": m.G.state_dict(), "D": m.D.state_dict(),
                "G_ema": m.G_ema.state_dict() if m.G_ema is not None else None,
                "opt_g": m.opt_g.state_dict(), "opt_d": m.opt_d.state_dict(),
                **({"ada": ada.state_dict()} if ada is not None else {})}

    def restore(self, state: dict) -> None:
        m = self.m
        m.G.load_state_dict(state["G"])
        m.D.load_state_dict(state["D"])
        if m.G_ema is not None:
            m.G_ema.load_state_dict(state["G_ema"])
        m.opt_g.load_state_dict(state["opt_g"])
        m.opt_d.load_state_dict(state["opt_d"])
        if self.stepper.ada is not None:
            self.stepper.ada.load_state_dict(state["ada"])  # --augment is fixed for a run's life

    def reseed(self, step: int) -> None:
        seed_rank_rng(self.cfg.seed, self.dist, offset=step)

    def step(self, step: int) -> None:
        real, genres = self.batches.get(step)
        self.step_fn(step, real, genres)

    def read_stats(self) -> dict[str, float]:
        ada = self.stepper.ada
        return {**self.meter.read(), "lr_g": self.m.opt_g.param_groups[0]["lr"],
                "lr_d": self.m.opt_d.param_groups[0]["lr"],
                **({"augment_p": round(float(ada.p), 4), "ada_rt": round(float(ada.r_t), 4)} if ada else {})}

    def check_finite(self) -> None:
        self.meter.read_check()

    def render_grid(self) -> torch.Tensor:
        """The fixed-noise grid, uint8 (N, 3, H, W), from G_ema when there is one."""
        z, genres, _ = self.fixed  # draw.FixedGrid
        G = self.m.G_ema if self.m.G_ema is not None else self.m.G
        return render(G, z, genres, self.device, self.cfg.precision)

    def validate(self, step: int) -> dict[str, float]:
        """sample_diversity (engine/collapse.py) of the grid that draw() then writes; every rank measures,
        so every rank logs at the same steps. With held-out posters, D's output on them and on training
        posters (engine/heldout.py)."""
        out = self.heldout.measure(self.stepper) if self.heldout is not None else {}
        if not self.diversity.enabled:
            return out
        self.rendered = step, images = step, self.render_grid()
        return {"sample_diversity": round(self.diversity.ratio(images), 4), **out}

    def draw(self, step: int, folder: RunFolder) -> None:
        from postergen.provenance import png_info

        per_row = self.fixed.per_row
        rendered_step, images = self.rendered or (None, None)
        if rendered_step != step:
            images = self.render_grid()
        self.rendered = None
        rows = ",".join(self.genres) if self.genres else "all"
        save_grid(images, per_row, folder.sample_grid(step),
                  png_info(run_name(folder.path), step, None, rows, fixed_noise="true"))
        if self.tb is not None:
            from torchvision.utils import make_grid
            self.tb.add_image("samples", make_grid(images, nrow=per_row), step)

    def warn(self, row: dict) -> str | None:
        warnings = [w for w in (self.watch.update(row), self.collapse_watch.update(row)) if w]
        return "; ".join(warnings) or None

    def history(self, rows: list[dict]) -> None:
        self.collapse_watch.history(rows)  # a resumed run keeps its best sample_diversity

    def plot(self, rows: list[dict]) -> bytes | None:
        return loss_plot(rows, d_overpowering(rows) + diversity_drops(rows) + d_memorising(rows))

    def epoch_of(self, step: int) -> int:
        return self.batches.epoch_of(step)

    def agree_stop(self, stop: int, step: int) -> int:
        """Single process: every step. Under torchrun, ranks agree at log steps only (one tiny all-reduce,
        the max of their stop codes): a stop comes up to log_every - 1 steps late, but on CUDA no step
        waits on the device for it, as log steps wait anyway (read_stats)."""
        if not self.dist.enabled:
            return stop
        if step % self.cfg.log_every:
            return 0
        flag = torch.tensor(int(stop), device=self.device)
        return int(self.dist.all_reduce(flag, op="max"))

    def summary(self) -> dict:
        return {"device": str(self.device), "world_size": self.dist.world,
                **({"cuda_graph_replays": self.step_fn.replays} if self.cfg.cuda_graph else {})}

    def check_ranks(self, run: Path, step: int) -> None:
        """Ranks must end with bit-identical weights; recorded so a test (or a person) can check."""
        mine = fingerprint([self.m.G, self.m.D, self.m.G_ema])
        if self.stepper.ada is not None:  # ADA's p must agree too: each rank augments with it
            mine += float(self.stepper.ada.p)
        prints = self.dist.all_gather_float(mine, self.device)
        if self.dist.enabled and self.dist.main:
            import json

            write_atomic(Path(run) / "ddp.json", json.dumps({"world_size": self.dist.world, "step": step,
                                                             "fingerprints": prints}))
            if len(set(prints)) != 1:
                raise RuntimeError(f"ranks diverged: weight fingerprints {prints}")


def _check_device(cfg: TrainConfig, device: torch.device, dist: Dist) -> None:
    if cfg.sync_bn and dist.enabled and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU version)")
    if cfg.cuda_graph and device.type != "cuda":
        raise UserError(f"--cuda-graph needs a CUDA device; this run is on {device.type}")
    if cfg.cuda_graph and dist.enabled:
        raise UserError("--cuda-graph runs single-process only; leave it off under torchrun")


def workload(cfg: TrainConfig, ds: PosterDataset) -> str:
    """What a step holds in memory, as the options that set it (for out-of-memory errors)."""
    H, W = ds.meta["size"]
    return f"--batch {cfg.batch} at {W}x{H} px"


def resolve(ds: PosterDataset, run: Path, cfg: TrainConfig, changed: set[str] = frozenset(),
            start: dict | None = None, allow_other_data: bool = False, echo=lambda line: None, recipe: str = ""
            ) -> tuple[TrainConfig, dict]:
    """The settings a run will really use -> (TrainConfig, the config.json dict). start: the checkpoint
    a --resume continues from (its stored settings, with only the given options a run may change
    applied), None for a fresh run. recipe: why a fresh run trains this preset (`train` without --preset:
    the recipe line), kept in config.json. `train --dry-run` prints this."""
    if start is not None:
        saved = start["config"]
        cfg = resumed_config(saved, cfg, set(changed), run)
        note = _check_same_data(saved, ds, run, allow_other_data)
        if note:
            echo(note)
        # the data it trains on from now on (a moved dataset's new path; a fingerprint for older runs)
        data = {**saved["dataset"], **dataset_record(ds, run)}
        return cfg, {**saved, "kind": "gan", "arch": run_kind(saved)[1], "train": dataclasses.asdict(cfg),
                     "dataset": data}
    H, W = ds.meta["size"]
    genres = ds.genres if cfg.conditional else []
    try:  # the arch's own config: its own checks of its own options
        model_cfg = cfg.model_config(H, W, len(genres), registry.get(cfg.arch, kind="gan").config)
    except ValueError as e:
        raise UserError(f"--arch {cfg.arch}: {e}") from None
    if cfg.freeze_d:  # D's block count, so a --dry-run fails where the run would (no memory: on "meta")
        with torch.device("meta"):
            D = registry.get(cfg.arch, kind="gan").build(model_cfg)[1]
        try:
            freeze_blocks(D, cfg.freeze_d, getattr(model_cfg, "discriminator", type(D).__name__))
        except ValueError as e:
            raise UserError(str(e)) from None
    return cfg, gan_config(cfg, model_cfg, genres, ds, run) | ({"recipe": recipe} if recipe else {})


def check_train(cfg: TrainConfig) -> None:
    """Every option of `train` before anything is read or written: config.check's ranges, then the
    names only the model registry knows (ValueError, one line each)."""
    check(cfg)
    registry.check_names(cfg)


def train(ds: PosterDataset, run: Path, cfg: TrainConfig, resume: bool = False, force: bool = False,
          changed: set[str] = frozenset(), echo=print, allow_other_data: bool = False, recipe: str = "") -> dict:
    """Train (or continue) a run; returns a summary. Ctrl-C/SIGTERM stop after a checkpoint.

    changed: the options the user gave; on --resume only those (and only ones a run may change)
    override the run's stored settings. allow_other_data: resume on a dataset other than the run's.
    recipe: why this preset, recorded in a fresh run's config.json.
    """
    check_train(cfg)
    # Settings no rank can train with fail before any rank joins the job: a rank that leaves a gloo
    # group while another is still joining or leaving it can take that one down (SIGABRT) unheard.
    _check_device(cfg, pick_device(cfg.device), Dist(world=int(os.environ.get("WORLD_SIZE", "1"))))
    dist, device = init_distributed(cfg.device)
    lock, finished = None, False
    try:
        _check_device(cfg, device, dist)
        lock, start = open_run(run, resume, force, dist, echo)
        cfg, config = resolve(ds, run, cfg, changed, start, allow_other_data, echo if dist.main else (lambda line: None),
                              recipe)
        model_cfg, genres = registry.model_config(config), config["genres"]
        task = GANTask(ds, cfg, model_cfg, genres, device, dist, config["arch"])
        if dist.main and task.stepper.has_staged and cfg.feature_start >= cfg.steps:
            echo(f"note: --feature-start {cfg.feature_start} is not before the run's end (step {cfg.steps}): "
                 "D's feature part will not train in this run")
        if start is None and cfg.init_from:
            config["init_from"], line = init_from(Path(cfg.init_from), task.m, model_cfg, config["arch"], genres, run)
            config["train"]["init_from"] = config["init_from"]["path"]  # config.json names no absolute path
            if dist.main:
                echo(line)
        if start is None:
            start_fresh(run, config, force, dist)
        else:
            if dist.main:
                echo(f"resuming {run} at step {start['step']}")
        schedule = Schedule(cfg.steps, cfg.log_every, cfg.sample_every, cfg.checkpoint_every, cfg.keep_checkpoints,
                            cfg.minutes)
        engine = Engine(task, run, config, schedule, start, lock, dist, cfg.tensorboard, echo)
        task.tb = engine.tb
        summary = engine.run()
        task.check_ranks(run, summary["step"])
        finished = True
        return summary
    except BaseException as e:
        if lock is not None:
            lock.release(failed=True)
            lock = None
        if short_of_memory(e):  # building the models or moving the posters to the device (a step's is the engine's)
            task = Task()
            task.workload, task.precision = workload(cfg, ds), resolve_precision(cfg.precision, device)
            kept = RunFolder(run).has_checkpoints()
            raise memory_error(e, "while setting up the run", task,
                               "its checkpoints are as they were" if kept else "nothing was trained", kept) from None
        raise
    finally:
        if lock is not None:
            lock.release()
        dist.shutdown(finished)
