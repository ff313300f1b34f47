"""--cuda-graph: each kind of training step captured once as a CUDA graph, then replayed.

A 64 px DCGAN step launches a few hundred small kernels; issuing them one by one from Python takes
longer than running them on a large GPU, which then idles. A graph replay launches all of them at
once. What capture requires, and where this code provides it:

- fixed input addresses: each batch is copied into static buffers before the replay;
- no host synchronisation inside the step: Stepper and Meter have none (statistics stay on the
  device until the log step reads them);
- step-dependent numbers as device tensors: the EMA weight and the step number of the NaN check.
  The D-update and R1 schedule is Python control flow, so each kind of step (Stepper.kind) gets
  its own graph, at most three;
- Adam with capturable=True (`build` sets it) and autocast without its cast cache (Stepper);
- warm-up: the first WARMUP steps of each kind run eagerly on a side stream, so cuDNN autotuning
  and Adam's lazy state allocation happen before capture, as PyTorch's CUDA-graph recipe asks.

Noise, augmentation and label dropout draw from the CUDA generator; every replay advances it, so
each replay draws fresh numbers, and the offsets match what the eager step would use.
Persistent state (weights, Adam moments, EMA, meter sums) is allocated outside the graphs, so the
graphs' private memory holds only per-step temporaries and gradients.
"""

from __future__ import annotations

from collections import Counter

import torch

from postergen.errors import UserError
from postergen.train.loop import Meter, Stepper


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

    def load(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> tuple[bool, bool]:
        """Copy this step's inputs into the static buffers; -> the step's kind."""
        if self.real is None:
            self.real, self.genres = torch.empty_like(real), torch.empty_like(genres)
        self.real.copy_(real)
        self.genres.copy_(genres)
        self.step_t.fill_(step)
        self.ema_w.fill_(self.stepper.ema_weight(step))
        return self.stepper.kind(step)

    def body(self, kind: tuple[bool, bool]) -> None:
        self.meter.add(self.step_t, self.stepper.run(kind, self.real, self.genres, self.ema_w))

    def __call__(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> None:
        self.body(self.load(step, real, genres))


class GraphedStep(StaticStep):
    """StaticStep whose body is captured per kind after WARMUP eager runs of that kind, then replayed."""

    WARMUP = 3

    def __init__(self, stepper: Stepper, meter: Meter) -> None:
        if stepper.device.type != "cuda":
            raise UserError(f"--cuda-graph needs a CUDA device; this run is on {stepper.device.type}")
        super().__init__(stepper, meter)
        self.graphs: dict[tuple[bool, bool], torch.cuda.CUDAGraph] = {}
        self.eager_runs: Counter = Counter()
        self.replays = 0
        self.side = torch.cuda.Stream(stepper.device)

    def __call__(self, step: int, real: torch.Tensor, genres: torch.Tensor) -> None:
        kind = self.load(step, real, genres)
        graph = self.graphs.get(kind)
        if graph is None and self.eager_runs[kind] < self.WARMUP:
            self.eager_runs[kind] += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.body(kind)
            torch.cuda.current_stream().wait_stream(self.side)
            return
        if graph is None:
            graph = self.graphs[kind] = torch.cuda.CUDAGraph()
            # thread_local: the streaming loader's thread may touch CUDA (pinned memory) meanwhile.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.body(kind)  # recorded, not run: the replay below runs this step
        graph.replay()
        self.replays += 1
