"""One GAN training step: D update(s), G update(s), EMA, plain or replayed as a CUDA graph.

The step has no host synchronisation (no .item()): statistics accumulate in device tensors (Meter)
and are read every `log_every` steps, so the data can live on the device and the step can be
captured whole.

--cuda-graph: each phase of training step captured once as a CUDA graph, then replayed.

A 64 px DCGAN step launches a few hundred small kernels; issuing them one by one from Python takes
longer than running them on a large GPU, which then idles. A graph replay launches all of them at
once. What capture requires, and where this code provides it:

- fixed input addresses: each batch is copied into static buffers before the replay;
- no host synchronisation inside the step: Stepper and Meter have none (statistics stay on the
  device until the log step reads them);
- step-dependent numbers as device tensors: the EMA weight and the step number of the NaN check.
  The D-update and R1 schedule, and whether the ensemble D's feature term counts yet
  (--feature-start), are Python control flow, so each phase of step (Stepper.phase) gets its own
  graph: at most three, and three more from the feature term's start on;
- Adam with capturable=True (`build` sets it) and autocast without its cast cache (Stepper);
- warm-up: the first WARMUP steps of each phase run eagerly on a side stream, so cuDNN autotuning
  and Adam's lazy state allocation happen before capture, as PyTorch's CUDA-graph recipe asks.

Noise, augmentation and label dropout draw from the CUDA generator; every replay advances it, so
each replay draws fresh numbers, and the offsets match what the eager step would use.
Persistent state (weights, Adam moments, EMA, meter sums) is allocated outside the graphs, so the
graphs' private memory holds only per-step temporaries and gradients.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from postergen.config import ADAPTIVE, TrainConfig
from postergen.engine.ada import AdaController
from postergen.engine.losses import mode_seeking, r1_penalty
from postergen.engine.objectives import Objective, frozen, part_keys, trainable
from postergen.errors import TrainingDiverged, UserError
from postergen.models.registry import DISCRIMINATORS
from postergen.models.verdict import Verdict, verdict
from postergen.runtime import Dist, autocast


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



@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, weight: float | torch.Tensor) -> None:
    """G_ema += weight * (G - G_ema); weight = 1 - beta (a device tensor in a captured step)."""
    ema, params = list(G_ema.parameters()), list(G.parameters())
    # No foreach lerp takes one tensor weight (it would be read on the host); a list of it is fine.
    torch._foreach_lerp_(ema, params, [weight] * len(ema) if isinstance(weight, torch.Tensor) else weight)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


class Phase(NamedTuple):
    """What a step does, a function of its number: steps of one phase run the same kernels."""

    d: bool  # D updates
    r1: bool  # with the R1 penalty
    staged: bool  # D's staged part counts (--feature-start)


# What a step tells a D that asks (its STEP_OPTIONS, models/verdict.py): whether its second part counts
# on this step, and whether the images are real ones of D's update.
STEP_FACTS = ("staged", "real")
MODE_SEEKING = "loss_ms"  # metrics.jsonl's key of G's mode-seeking term (--mode-seeking), unweighted


class Stepper:
    """One training step of the models in `m` under the objective chosen once from the config."""

    def __init__(self, m: Models, cfg: TrainConfig, device: torch.device, conditional: bool, world: int = 1) -> None:
        self.m, self.cfg, self.device, self.conditional = m, cfg, device, conditional
        self.images_per_step = cfg.batch * world
        # --augment ada: p and its statistics, on the device (engine/ada.py)
        self.ada = AdaController(self.images_per_step, device=device) if cfg.augment == ADAPTIVE else None
        self.obj = Objective.from_config(cfg, getattr(m.D, "LOSS_PARTS", {}), self.ada)
        # {D's forward keyword: the step fact it gets}: what D takes besides (x, genres)
        self.d_options = dict(getattr(m.D, "STEP_OPTIONS", {}))
        unknown = sorted(set(self.d_options.values()) - set(STEP_FACTS))
        if unknown:
            raise ValueError(f"{type(m.D).__name__}.STEP_OPTIONS asks for {', '.join(unknown)}; a step tells "
                             f"{', '.join(STEP_FACTS)}")
        self.has_staged = "staged" in self.d_options.values()  # D has a part that starts at --feature-start
        self.d_trainable = trainable(m.D)  # switched off for G's update, and only these switched back
        self.autocast = autocast(device, cfg.precision, cache=not cfg.cuda_graph)
        self.channels_last = cfg.channels_last and device.type in ("cuda", "cpu")

    @property
    def part_keys(self) -> tuple[str, ...]:
        """What a step reports besides Meter.KEYS: D's loss parts, and the mode-seeking term where it is on."""
        return self.obj.part_keys + ((MODE_SEEKING,) if self.cfg.mode_seeking else ())

    def _genres(self, genres: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        # Label dropout: a zero genre vector means "no genre", so the model also samples without one.
        keep = torch.rand(genres.shape[0], 1, device=genres.device) >= self.cfg.label_dropout
        return genres * keep

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def _judge(self, D: nn.Module, x: torch.Tensor, genres: torch.Tensor | None, staged: bool = False,
               real: bool = False) -> Verdict:
        """D's verdict on x. staged: D's staged part counts; real: x are real images of D's update. A D
        gets the facts it asks for, under its own keywords."""
        facts = {"staged": staged, "real": real}
        return verdict(D(x, genres, **{k: facts[fact] for k, fact in self.d_options.items()}))

    def d_update(self, real: torch.Tensor, genres: torch.Tensor | None, r1: bool,
                 staged: bool = False) -> dict[str, torch.Tensor]:
        """One D update; -> loss_d, d_real, d_fake (mean sigmoid of the logits) and the loss's parts."""
        m = self.m
        with self.autocast:
            with torch.no_grad():
                fake = m.G(self._z(real.shape[0]), genres)
            real_v = self._judge(m.D_train, self.obj.augment(real), genres, staged, real=True)
            fake_v = self._judge(m.D_train, self.obj.augment(fake), genres, staged)
            losses = self.obj.d_losses(real_v, fake_v)
        if self.ada is not None:
            self.ada.observe(real_v.logits)
        loss = losses["loss_d"]
        if r1:
            # R1 = gamma/2 * E||grad_x D(x)||^2 on real images, lazily every r1_every updates (scaled up).
            # Through the bare D: DDP cannot run autograd.grad, and the one backward below still
            # reaches D's gradient hooks, so the penalty's gradient is averaged across ranks too.
            # The ensemble's base part only: the feature part is held smooth by its spectral norm and
            # the frozen network it looks through (as in Vision-aided GAN), and a double backward
            # through that network would cost more than the rest of the step.
            x = real.detach().requires_grad_(True)
            penalty = r1_penalty(self._judge(m.D, self.obj.augment(x), genres).logits.float(), x)
            loss = loss + self.obj.r1_weight * penalty
        m.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        m.opt_d.step()
        stats = {k: v.detach() for k, v in losses.items()} | {"loss_d": loss.detach()}  # loss_d: with R1
        return stats | {"d_real": torch.sigmoid(real_v.logits.detach().float()).mean(),
                        "d_fake": torch.sigmoid(fake_v.logits.detach().float()).mean()}

    @torch.no_grad()
    def d_output(self, real: torch.Tensor, genres: torch.Tensor | None) -> float:
        """D's mean output (mean sigmoid of its logits, as d_real) on images as they are: no augmentation, no
        label dropout, outside any CUDA graph, D in eval mode so nothing of it changes (spectral norm takes
        no power step; BatchNorm uses its running statistics, which are not those of a training batch, so
        compare such numbers only with each other)."""
        D, was = self.m.D, self.m.D.training
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        D.eval()
        try:
            with self.autocast:
                logits = self._judge(D, real, genres if self.conditional else None).logits
        finally:
            D.train(was)
        return float(torch.sigmoid(logits.float()).mean())

    def g_update(self, batch: int, genres: torch.Tensor | None, staged: bool = False) -> dict[str, torch.Tensor]:
        """One G update; -> loss_g and its parts (loss_ms: the mode-seeking term, unweighted, where it is on)."""
        m, pairs = self.m, batch // 2
        z = self._z(batch)
        if self.cfg.mode_seeking and genres is not None:  # the second half repeats the first's genres
            genres = torch.cat([genres[:pairs], genres[:pairs], genres[2 * pairs:]])
        with frozen(self.d_trainable):  # G's step needs gradients through D, not for D (bare D: no sync)
            with self.autocast:
                fake = m.G_train(z, genres)
                losses = self.obj.g_losses(self._judge(m.D, self.obj.augment(fake), genres, staged))
            if self.cfg.mode_seeking:
                losses[MODE_SEEKING] = ms = mode_seeking(fake[:pairs], fake[pairs:2 * pairs], z[:pairs], z[pairs:2 * pairs])
                losses["loss_g"] = losses["loss_g"] + self.cfg.mode_seeking * ms
            m.opt_g.zero_grad(set_to_none=True)
            losses["loss_g"].backward()
            m.opt_g.step()
        return {k: v.detach() for k, v in losses.items()}

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

    def phase(self, step: int) -> Phase:
        """(D updates?, R1 penalty?, D's second part counts?) at this step: a function of the step,
        so a resumed run keeps the schedule. Steps of one phase run the same kernels; --cuda-graph
        captures one graph per phase."""
        cfg = self.cfg
        d = step % cfg.d_every == 0
        r1 = d and cfg.r1_gamma > 0 and (step // cfg.d_every + 1) % cfg.r1_every == 0
        return Phase(d, r1, self.has_staged and self.obj.feature_weight > 0 and step >= cfg.feature_start)

    def step(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.run(self.phase(step), real, genres, self.ema_weight(step))
        self.after(step)
        return out

    def after(self, step: int) -> None:
        """Between steps, outside any captured graph: ADA adjusts p every few steps."""
        if self.ada is not None:
            self.ada.adjust(step + 1)

    def run(self, phase: Phase, real: torch.Tensor, genres: torch.Tensor,
            ema_weight: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of the given phase; the step number enters only through `phase` and `ema_weight`."""
        d, r1, staged = phase
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        genres = self._genres(genres)
        out = {}
        if d:
            out.update(self.d_update(real, genres, r1, staged))
        for _ in range(self.cfg.g_steps):
            out.update(self.g_update(real.shape[0], genres, staged))
        if self.m.G_ema is not None:
            update_ema(self.m.G_ema, self.m.G, ema_weight)
        return out


class Meter:
    """Device-side sums of the step statistics; read (one sync, across ranks too) only at log time."""

    KEYS = ("loss_d", "loss_g", "d_real", "d_fake")

    def __init__(self, device: torch.device, dist: Dist = Dist(), parts: tuple[str, ...] | None = None) -> None:
        """parts: the loss parts D says it reports (Objective.part_keys), logged on steps that have them;
        None: those of every registered D, a layout for any of them."""
        self.dist = dist
        if parts is None:
            parts = dict.fromkeys(k for D in DISCRIMINATORS.values() for k in part_keys(getattr(D, "LOSS_PARTS", {})))
        self.keys = self.KEYS + tuple(parts)
        self.sums = torch.zeros(len(self.keys), device=device)
        self.counts = torch.zeros(len(self.keys), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, step: int | torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        for i, k in enumerate(self.keys):
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
        counts = totals[1].tolist()
        self.sums.zero_()
        self.counts.zero_()
        return {k: v for k, v, n in zip(self.keys, values, counts) if k in self.KEYS or n > 0}


def step_runner(stepper: Stepper, meter: Meter, cuda_graph: bool = False):
    """The loop's per-step call, (step, real, genres) -> None: the plain step feeding the meter, or
    (cuda_graph) its CUDA-graph replay (below)."""
    if cuda_graph:
        return GraphedStep(stepper, meter)
    return lambda step, real, genres: meter.add(step, stepper.step(step, real, genres))



# ---------------------------------------------------------------------------------------------
# --cuda-graph




class StaticStep:
    """Runs steps through fixed input buffers and device scalars: the form a CUDA graph captures.

    On its own it runs eagerly (on any device), which is how the CPU test suite checks that this
    form computes exactly what Stepper.step + Meter.add compute.
    """

    def __init__(self, stepper: Stepper, meter: Meter) -> None:
        self.stepper, self.meter = stepper, meter
        self.real: torch.Tensor | None = None  # allocated from the first batch's shape
        self.genres: torch.Tensor | None = None
        device = stepper.device
        self.step_t = torch.zeros((), dtype=torch.long, device=device)
        self.ema_w = torch.zeros((), dtype=torch.float32, device=device)

    def load(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> tuple[bool, bool, bool]:
        """Copy this step's inputs into the static buffers; -> the step's phase."""
        if self.real is None:
            self.real, self.genres = torch.empty_like(real), torch.empty_like(genres)
        self.real.copy_(real)
        self.genres.copy_(genres)
        self.step_t.fill_(step)
        self.ema_w.fill_(self.stepper.ema_weight(step))
        return self.stepper.phase(step)

    def body(self, phase: Phase) -> None:
        self.meter.add(self.step_t, self.stepper.run(phase, self.real, self.genres, self.ema_w))

    def __call__(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> None:
        self.body(self.load(step, real, genres))
        self.stepper.after(step)


class GraphedStep(StaticStep):
    """StaticStep whose body is captured per phase after WARMUP eager runs of that phase, then replayed."""

    WARMUP = 3

    def __init__(self, stepper: Stepper, meter: Meter) -> None:
        if stepper.device.type != "cuda":
            raise UserError(f"--cuda-graph needs a CUDA device; this run is on {stepper.device.type}")
        super().__init__(stepper, meter)
        self.graphs: dict[Phase, torch.cuda.CUDAGraph] = {}
        self.eager_runs: Counter = Counter()
        self.replays = 0
        self.side = torch.cuda.Stream(stepper.device)

    def __call__(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> None:
        phase = self.load(step, real, genres)
        graph = self.graphs.get(phase)
        if graph is None and self.eager_runs[phase] < self.WARMUP:
            self.eager_runs[phase] += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.body(phase)
            torch.cuda.current_stream().wait_stream(self.side)
            self.stepper.after(step)
            return
        if graph is None:
            graph = self.graphs[phase] = torch.cuda.CUDAGraph()
            # thread_local: the streaming loader's thread may touch CUDA (pinned memory) meanwhile.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.body(phase)  # recorded, not run: the replay below runs this step
        graph.replay()
        self.replays += 1
        self.stepper.after(step)
