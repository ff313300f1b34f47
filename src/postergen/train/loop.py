"""The training loop as small phases: set up the run, build, step, log, sample, checkpoint.

The step itself has no host synchronisation: statistics accumulate in device tensors and are read
every `log_every` steps, so the data can live on the device and the step can later be captured whole.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from postergen import __version__
from postergen.config import RUN_FIXED, TrainConfig, check
from postergen.data.dataset import Batches, PosterDataset
from postergen.errors import UserError
from postergen.files import os_error, save_image, write_atomic
from postergen.models.dcgan import ModelConfig, build_models
from postergen.runfolder import RunFolder
from postergen.train import checkpoint as ckpt
from postergen.train.augment import diff_augment
from postergen.train.losses import bce_d, get_loss, r1_penalty
from postergen.train.monitor import FailureWatch, plot_metrics, read_metrics
from postergen.train.runtime import Dist, StopFlag, autocast, init_distributed


class TrainingDiverged(UserError):
    """A loss became NaN or inf."""


@dataclass
class Models:
    G: nn.Module  # the bare modules: checkpoints, sampling, and passes that need no gradient sync
    D: nn.Module
    G_ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    G_train: nn.Module | None = None  # DDP wrappers under torchrun (else the bare modules): the passes
    D_train: nn.Module | None = None  # whose backward updates that network go through these

    def __post_init__(self) -> None:
        self.G_train = self.G_train or self.G
        self.D_train = self.D_train or self.D


@dataclass
class RunState:
    cfg: TrainConfig
    model_cfg: ModelConfig
    genres: list[str]
    start_step: int
    resume_state: dict | None


# ---------------------------------------------------------------------------------------------
# Setting up

def setup_run(run: Path, cfg: TrainConfig, ds: PosterDataset, resume: bool, force: bool,
              changed: set[str], dist: Dist = Dist()) -> RunState:
    """New run: clear the folder of any old run, write config.json. --resume: the run's own config,
    with only duration/logging changed. Rank 0 holds the run's lock while this runs."""
    if resume:
        state = ckpt.load_latest(run)
        saved = state["config"]
        ckpt.check_unchanged(cfg, saved["train"], changed & RUN_FIXED)
        merged = {**saved["train"], **{k: getattr(cfg, k) for k in changed - RUN_FIXED}}
        cfg = TrainConfig(**merged)
        _check_same_data(saved, ds, run)
        return RunState(cfg, ModelConfig(**saved["model"]), saved["genres"], state["step"], state)
    folder = RunFolder(run)
    if folder.has_checkpoints() and not force:
        raise UserError(f"{run} already has checkpoints; use --resume to continue or --force to start over")
    H, W = ds.meta["size"]
    genres = ds.genres if cfg.conditional else []
    model_cfg = cfg.model_config(H, W, len(genres))
    if dist.main:
        folder.start_fresh(force)
        write_atomic(folder.config, json.dumps(run_config(cfg, model_cfg, genres, ds), indent=1))
    return RunState(cfg, model_cfg, genres, 0, None)


def run_config(cfg: TrainConfig, model_cfg: ModelConfig, genres: list[str], ds: PosterDataset) -> dict:
    return {"postergen": __version__, "train": dataclasses.asdict(cfg), "model": dataclasses.asdict(model_cfg),
            "genres": genres, "dataset": {"path": str(ds.path.resolve()), "count": len(ds), "size": ds.meta["size"]}}


def _check_same_data(saved: dict, ds: PosterDataset, run: Path) -> None:
    if saved["dataset"]["size"] != ds.meta["size"] or (saved["genres"] and saved["genres"] != ds.genres):
        raise UserError(f"{run} was trained on {saved['dataset']['path']} ({saved['dataset']['size']}, "
                        f"genres {saved['genres']}); {ds.path} does not match")


def build(cfg: TrainConfig, model_cfg: ModelConfig, device: torch.device, dist: Dist = Dist()) -> Models:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    G, D = build_models(model_cfg)
    if dist.enabled and cfg.sync_bn:
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    G, D = G.to(device), D.to(device)
    if cfg.channels_last and device.type in ("cuda", "cpu"):
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_kimg > 0 else None
    # Fused Adam keeps its step count on the GPU; capturable=True lets --cuda-graph record its update.
    fused = {"fused": True, "capturable": cfg.cuda_graph} if device.type == "cuda" else {}
    betas = (float(cfg.beta1), float(cfg.beta2))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas, **fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas, **fused)
    if not dist.enabled:
        return Models(G, D, G_ema, opt_g, opt_d)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return Models(G, D, G_ema, opt_g, opt_d, DDP(G, device_ids=ids), DDP(D, device_ids=ids))


def training_state(m: Models, cfg: TrainConfig, model_cfg: ModelConfig, genres: list[str],
                   ds_info: dict, step: int, epoch: int, world: int = 1) -> dict:
    return {
        "step": step, "epoch": epoch,
        "G": m.G.state_dict(), "D": m.D.state_dict(),
        "G_ema": m.G_ema.state_dict() if m.G_ema is not None else None,
        "opt_g": m.opt_g.state_dict(), "opt_d": m.opt_d.state_dict(),
        "rng": ckpt.rng_state(), "world_size": world,
        "config": {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(model_cfg), "genres": genres,
                   "dataset": ds_info, "postergen": __version__},
    }


def restore(m: Models, state: dict, cfg: TrainConfig, dist: Dist = Dist()) -> None:
    m.G.load_state_dict(state["G"])
    m.D.load_state_dict(state["D"])
    if m.G_ema is not None:
        m.G_ema.load_state_dict(state["G_ema"])
    m.opt_g.load_state_dict(state["opt_g"])
    m.opt_d.load_state_dict(state["opt_d"])
    if dist.world == 1 and state.get("world_size", 1) == 1:
        ckpt.set_rng_state(state["rng"])  # bit-exact continuation
    else:  # one saved stream cannot serve several ranks: a fresh, distinct stream per rank
        seed_rank_rng(cfg.seed, dist, offset=state["step"])


def seed_rank_rng(seed: int, dist: Dist, offset: int = 0) -> None:
    """Noise, augmentation and label dropout differ per rank: seed * world + rank (+ resume offset)."""
    torch.manual_seed((seed * dist.world + dist.rank) * 1_000_003 + offset)


# ---------------------------------------------------------------------------------------------
# One step: D update(s), G update(s), EMA. No .item(), no host syncs.

@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, weight: float | torch.Tensor) -> None:
    """G_ema += weight * (G - G_ema); weight = 1 - beta (a device tensor in a captured step)."""
    ema, params = list(G_ema.parameters()), list(G.parameters())
    # No foreach lerp takes one tensor weight (it would be read on the host); a list of it is fine.
    torch._foreach_lerp_(ema, params, [weight] * len(ema) if isinstance(weight, torch.Tensor) else weight)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


class Stepper:
    """Holds the loss functions and augmentation chosen once from the config."""

    def __init__(self, m: Models, cfg: TrainConfig, device: torch.device, conditional: bool, world: int = 1) -> None:
        self.m, self.cfg, self.device, self.conditional = m, cfg, device, conditional
        self.images_per_step = cfg.batch * world
        d_loss, self.g_loss = get_loss(cfg.loss)
        self.d_loss = partial(bce_d, real_target=cfg.real_label) if cfg.loss == "bce" else d_loss
        self.aug = partial(diff_augment, policy=cfg.augment) if cfg.augment else (lambda x: x)
        self.autocast = autocast(device, cfg.precision, cache=not cfg.cuda_graph)
        self.channels_last = cfg.channels_last and device.type in ("cuda", "cpu")

    def _genres(self, genres: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        # Label dropout: a zero genre vector means "no genre", so the model also samples without one.
        keep = torch.rand(genres.shape[0], 1, device=genres.device) >= self.cfg.label_dropout
        return genres * keep

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def d_update(self, real: torch.Tensor, genres: torch.Tensor | None, r1: bool) -> tuple[torch.Tensor, ...]:
        m, cfg = self.m, self.cfg
        with self.autocast:
            with torch.no_grad():
                fake = m.G(self._z(real.shape[0]), genres)
            logits_real = m.D_train(self.aug(real), genres)  # (B,)
            logits_fake = m.D_train(self.aug(fake), genres)  # (B,)
            loss = self.d_loss(logits_real, logits_fake)
        if r1:
            # R1 = gamma/2 * E||grad_x D(x)||^2 on real images, lazily every r1_every updates (scaled up).
            # Through the bare D: DDP cannot run autograd.grad, and the one backward below still
            # reaches D's gradient hooks, so the penalty's gradient is averaged across ranks too.
            x = real.detach().requires_grad_(True)
            penalty = r1_penalty(m.D(self.aug(x), genres).float(), x)
            loss = loss + (cfg.r1_gamma / 2) * cfg.r1_every * penalty
        m.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        m.opt_d.step()
        return loss.detach(), torch.sigmoid(logits_real.detach().float()).mean(), \
            torch.sigmoid(logits_fake.detach().float()).mean()

    def g_update(self, batch: int, genres: torch.Tensor | None) -> torch.Tensor:
        m = self.m
        m.D.requires_grad_(False)  # G's step needs gradients through D, not for D (bare D: no sync)
        with self.autocast:
            fake = m.G_train(self._z(batch), genres)
            loss = self.g_loss(m.D(self.aug(fake), genres))
        m.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        m.opt_g.step()
        m.D.requires_grad_(True)
        return loss.detach()

    def ema_weight(self, step: int) -> float:
        """1 - the per-step EMA decay, for a half-life of ema_kimg thousand images (StyleGAN2-ADA's schedule).

        With ramp-up the half-life is at most ema_rampup x images seen, so a young run's EMA is not
        stuck near the random initial weights.
        """
        cfg = self.cfg
        seen = (step + 1) * self.images_per_step
        half_life = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            half_life = min(half_life, seen * cfg.ema_rampup)
        return 1.0 - 0.5 ** (self.images_per_step / max(half_life, 1e-8))

    def kind(self, step: int) -> tuple[bool, bool]:
        """(D updates?, R1 penalty?) at this step: a function of the step, so a resumed run keeps the
        schedule. Steps of one kind run the same kernels; --cuda-graph captures one graph per kind."""
        cfg = self.cfg
        d = step % cfg.d_every == 0
        return d, d and cfg.r1_gamma > 0 and (step // cfg.d_every + 1) % cfg.r1_every == 0

    def step(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.run(self.kind(step), real, genres, self.ema_weight(step))

    def run(self, kind: tuple[bool, bool], real: torch.Tensor, genres: torch.Tensor,
            ema_weight: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of the given kind; the step number enters only through `kind` and `ema_weight`."""
        d, r1 = kind
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        genres = self._genres(genres)
        out = {}
        if d:
            out["loss_d"], out["d_real"], out["d_fake"] = self.d_update(real, genres, r1)
        for _ in range(self.cfg.g_steps):
            out["loss_g"] = self.g_update(real.shape[0], genres)
        if self.m.G_ema is not None:
            update_ema(self.m.G_ema, self.m.G, ema_weight)
        return out


class Meter:
    """Device-side sums of the step statistics; read (one sync, across ranks too) only at log time."""

    KEYS = ("loss_d", "loss_g", "d_real", "d_fake")

    def __init__(self, device: torch.device, dist: Dist = Dist()) -> None:
        self.dist = dist
        self.sums = torch.zeros(len(self.KEYS), device=device)
        self.counts = torch.zeros(len(self.KEYS), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, step: int | torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        for i, k in enumerate(self.KEYS):
            if k in stats:
                self.sums[i] += stats[k].float()
                self.counts[i] += 1
        finite = torch.stack([torch.isfinite(v.float()) for v in stats.values()]).all()
        # In place: a captured step must update the tensors the meter reads, not rebind new ones.
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~finite, step, self.first_bad))

    def read_check(self) -> None:
        """Raises TrainingDiverged if a loss was NaN/inf on any rank (so no NaN gets saved)."""
        bad = int(self.dist.all_reduce(self.first_bad.clone(), op="max"))
        if bad >= 0:
            raise TrainingDiverged(f"loss became NaN/inf at step {bad + 1}")

    def read(self) -> dict[str, float]:
        """Mean statistics since the last read, over all ranks (checked for NaN/inf first)."""
        self.read_check()
        totals = self.dist.all_reduce(torch.stack([self.sums, self.counts]))
        values = (totals[0] / totals[1].clamp(min=1)).tolist()
        self.sums.zero_()
        self.counts.zero_()
        return dict(zip(self.KEYS, values))


def step_runner(stepper: Stepper, meter: Meter, cuda_graph: bool = False):
    """The loop's per-step call, (step, real, genres) -> None: the plain step feeding the meter, or
    (cuda_graph) its CUDA-graph replay (train/graphs.py)."""
    if cuda_graph:
        from postergen.train.graphs import GraphedStep

        return GraphedStep(stepper, meter)
    return lambda step, real, genres: meter.add(step, stepper.step(step, real, genres))


# ---------------------------------------------------------------------------------------------
# Samples

def fixed_inputs(model_cfg: ModelConfig, genres: list[str], seed: int, device: torch.device, per_row: int = 8):
    """The fixed noise of the progression grids: one row per genre (conditional) or an 8x8 grid."""
    gen = torch.Generator().manual_seed(seed + 1)  # its own RNG: sampling never moves the training RNG
    if not genres:
        return torch.randn(per_row * per_row, model_cfg.z_dim, generator=gen).to(device), None, per_row
    z = torch.randn(per_row, model_cfg.z_dim, generator=gen).repeat(len(genres), 1)
    onehot = torch.eye(len(genres)).repeat_interleave(per_row, dim=0)
    return z.to(device), onehot.to(device), per_row


@torch.no_grad()
def render(G: nn.Module, z: torch.Tensor, genres: torch.Tensor | None, device: torch.device,
           precision: str = "auto") -> torch.Tensor:
    """G in eval mode (BatchNorm uses running stats and stays untouched) -> uint8 (N, 3, H, W) on CPU.

    genres: (N, G) per poster, or one (G,) vector for all of them, or None.
    """
    if genres is not None and genres.dim() == 1:
        genres = genres.to(z.device).expand(len(z), -1)
    was_training = G.training
    G.eval()
    with autocast(device, precision):
        images = torch.cat([G(z[i:i + 64], None if genres is None else genres[i:i + 64])
                            for i in range(0, len(z), 64)])
    G.train(was_training)
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def save_grid(images: torch.Tensor, per_row: int, path: Path, pnginfo=None) -> None:
    """uint8 (N, 3, H, W) -> one PNG grid with 2 px black gaps; pnginfo carries provenance."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=per_row, padding=2, pad_value=0)  # (3, H', W') uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(Image.fromarray(grid.permute(1, 2, 0).numpy()), path, pnginfo=pnginfo)


# ---------------------------------------------------------------------------------------------
# The loop

class _Outputs:
    """Files of a run written while it trains: metrics.jsonl, loss.png, samples/, TensorBoard (rank 0)."""

    def __init__(self, run: Path, state: RunState, enable_tb: bool) -> None:
        self.run = run
        self.rows = read_metrics(run / "metrics.jsonl", up_to_step=state.start_step)
        self.watch = FailureWatch()
        self.tb = None
        if enable_tb:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=state.start_step)
            except ImportError:
                pass

    def log(self, row: dict) -> str | None:
        self.rows.append(row)
        with open(self.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, row["step"])
        return self.watch.update(row)

    def sample(self, step: int, images: torch.Tensor, per_row: int, genres: list[str]) -> Path:
        from postergen.provenance import png_info

        path = self.run / "samples" / f"step-{step:07d}.png"
        rows = ",".join(genres) if genres else "all"
        save_grid(images, per_row, path, png_info(str(self.run), step, None, rows, fixed_noise="true"))
        plot_metrics(self.rows, self.run / "loss.png")
        if self.tb is not None:
            from torchvision.utils import make_grid
            self.tb.add_image("samples", make_grid(images, nrow=per_row), step)
        return path

    def close(self) -> None:
        plot_metrics(self.rows, self.run / "loss.png")
        if self.tb is not None:
            self.tb.close()


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


class Trainer:
    """One run: set up once, then `run()` steps until done or asked to stop."""

    def __init__(self, ds: PosterDataset, run: Path, cfg: TrainConfig, resume: bool, force: bool,
                 changed: set[str], echo=print) -> None:
        check(cfg)
        self.dist, self.device = init_distributed(cfg.device)
        self.lock = None
        try:
            # One trainer per folder: a second one (or its --force) would mix or delete this one's files.
            self.lock = RunFolder(run).lock() if self.dist.main else None
            self._setup(ds, run, cfg, resume, force, changed, echo)
        except BaseException:
            if self.lock is not None:
                self.lock.release(failed=True)
            self.dist.shutdown()
            raise

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
        self.dist.shutdown()

    def _setup(self, ds: PosterDataset, run: Path, cfg: TrainConfig, resume: bool, force: bool,
               changed: set[str], echo) -> None:
        if cfg.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise UserError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU version)")
        if cfg.cuda_graph and self.device.type != "cuda":
            raise UserError(f"--cuda-graph needs a CUDA device; this run is on {self.device.type}")
        if cfg.cuda_graph and self.dist.enabled:
            raise UserError("--cuda-graph runs single-process only; leave it off under torchrun")
        self.run_dir, self.echo = run, echo if self.dist.main else (lambda *a: None)
        self.state = setup_run(run, cfg, ds, resume, force, set(changed), self.dist)
        self.dist.barrier()  # rank 0 has prepared the folder before anyone reads or writes in it
        self.cfg, self.model_cfg = cfg, model_cfg = self.state.cfg, self.state.model_cfg
        self.m = build(self.cfg, model_cfg, self.device, self.dist)
        seed_rank_rng(self.cfg.seed, self.dist)
        if self.state.resume_state is not None:
            restore(self.m, self.state.resume_state, self.cfg, self.dist)
            self.echo(f"resuming {run} at step {self.state.start_step}")
        self.batches = Batches(ds, self.cfg.batch, self.device, self.cfg.seed, self.dist.rank, self.dist.world)
        self.stepper = Stepper(self.m, self.cfg, self.device, conditional=model_cfg.n_genres > 0,
                               world=self.dist.world)
        self.meter = Meter(self.device, self.dist)
        self.step_fn = step_runner(self.stepper, self.meter, self.cfg.cuda_graph)
        self.outputs = _Outputs(run, self.state, self.cfg.tensorboard) if self.dist.main else None
        self.fixed = fixed_inputs(model_cfg, self.state.genres, self.cfg.seed, self.device)
        self.ds_info = {"path": str(ds.path.resolve()), "count": len(ds), "size": ds.meta["size"]}
        self.step = self.state.start_step
        self.last_saved = self.step if self.state.resume_state is not None else -1

    def save(self) -> None:
        self.meter.read_check()  # never save NaN weights
        if self.dist.main:
            state = training_state(self.m, self.cfg, self.model_cfg, self.state.genres, self.ds_info, self.step,
                                   self.batches.epoch_of(self.step), self.dist.world)
            ckpt.save_checkpoint(state, self.run_dir / "checkpoints", self.step, self.cfg.keep_checkpoints)
        self.last_saved = self.step

    def log(self, seconds: float, images: int, bar) -> None:
        stats = self.meter.read()  # collective: every rank calls it at the same steps
        if not self.dist.main:
            return
        rate = images * self.dist.world / seconds
        row = {"step": self.step, "epoch": self.batches.epoch_of(self.step),
               "kimg": self.step * self.cfg.batch * self.dist.world / 1000, **stats, "img_per_s": round(rate, 1),
               "lr_g": self.m.opt_g.param_groups[0]["lr"], "lr_d": self.m.opt_d.param_groups[0]["lr"]}
        warning = self.outputs.log(row)
        if warning:
            bar.write(f"warning: {warning}")
        bar.set_postfix(img_s=f"{rate:.0f}", loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}")

    def sample(self) -> None:
        if self.dist.main:
            z, genres, per_row = self.fixed
            G = self.m.G_ema if self.m.G_ema is not None else self.m.G
            self.outputs.sample(self.step, render(G, z, genres, self.device, self.cfg.precision), per_row,
                                self.state.genres)

    def stop_requested(self, stop: StopFlag) -> bool:
        """Single process: every step. Under torchrun, ranks agree at log steps (one tiny all-reduce)."""
        if not self.dist.enabled:
            return bool(stop)
        if self.step % self.cfg.log_every:
            return False
        flag = torch.tensor(1 if stop else 0, device=self.device)
        return bool(self.dist.all_reduce(flag, op="max"))

    def run(self) -> dict:
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", desc="train", dynamic_ncols=True,
                   disable=None if self.dist.main else True)
        t_log, seen = time.perf_counter(), 0
        stopped = failed = False
        try:
            with StopFlag() as stop:
                while self.step < cfg.steps and not stopped:
                    real, genres = self.batches.get(self.step)
                    self.step_fn(self.step, real, genres)
                    self.step += 1
                    seen += real.shape[0]
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        self.log(time.perf_counter() - t_log, seen, bar)
                        t_log, seen = time.perf_counter(), 0
                    if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                        self.sample()
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                        self.save()
                    stopped = self.stop_requested(stop)
                if stopped and self.step != self.last_saved:
                    self.save()
        except TrainingDiverged as e:
            failed = True
            raise TrainingDiverged(f"{e}; stopped ({self.last_good()}). "
                                   "Try a lower --lr-d/--lr-g or --preset stable") from None
        except OSError as e:  # disk full, folder gone read-only, ...: the last checkpoint is intact
            failed = True
            good = RunFolder(self.run_dir).step_checkpoints()
            raise UserError(f"{os_error(e)}; training stopped at step {self.step} ({self.last_good()}); "
                            f"fix that and {'continue with --resume' if good else 'start again with --force'}") from None
        finally:
            bar.close()
            self._close_outputs(failed)
        return self.summary(stopped)

    def last_good(self) -> str:
        good = RunFolder(self.run_dir).step_checkpoints()
        return f"last good checkpoint: step {max(good)}" if good else "no checkpoint was written"

    def _close_outputs(self, failed: bool) -> None:
        try:
            if self.outputs is not None:
                self.outputs.close()
        except OSError:
            if not failed:  # while failing, the first error is the one to report
                raise

    def summary(self, stopped: bool) -> dict:
        prints = self.dist.all_gather_float(fingerprint([self.m.G, self.m.D, self.m.G_ema]), self.device)
        out = {"run": str(self.run_dir), "step": self.step, "interrupted": stopped, "device": str(self.device),
               "world_size": self.dist.world, "samples": str(self.run_dir / "samples"),
               "latest": str(self.run_dir / "checkpoints" / "latest.pt")}
        if self.cfg.cuda_graph:
            out["cuda_graph_replays"] = self.step_fn.replays
        if self.dist.enabled and self.dist.main:
            # Ranks must end with bit-identical weights; recorded so a test (or a person) can check.
            write_atomic(self.run_dir / "ddp.json", json.dumps({"world_size": self.dist.world, "step": self.step,
                                                                 "fingerprints": prints}))
            if len(set(prints)) != 1:
                raise RuntimeError(f"ranks diverged: weight fingerprints {prints}")
        return out


def train(ds: PosterDataset, run: Path, cfg: TrainConfig, resume: bool = False, force: bool = False,
          changed: set[str] = frozenset(), echo=print) -> dict:
    """Train (or continue) a run; returns a summary. Ctrl-C/SIGTERM stop after a checkpoint."""
    trainer = Trainer(ds, run, cfg, resume, force, set(changed), echo)
    try:
        return trainer.run()
    finally:
        trainer.close()
