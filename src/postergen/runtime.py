"""Device and precision, chosen once; library code never calls .cuda()."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass

import torch

from postergen.errors import UserError


def pick_device(name: str) -> torch.device:
    """'auto' prefers CUDA, then MPS, then CPU; asking for one that is absent is a user error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"--device {name}: no {name.upper()} device is available here")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on CUDA and on CPUs with native bf16 (1.8x faster training on the 2-core test CPU), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str = "auto", cache: bool = True):
    """The autocast context for forward passes; weights and optimiser state stay fp32.

    cache=False for code captured in a CUDA graph (PyTorch's rule for autocast under capture).
    """
    if resolve_precision(precision, device) == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


class StopFlag:
    """First Ctrl-C or SIGTERM asks the loop to stop after the current step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, sig: int, frame) -> None:
        if self.signal == signal.SIGINT and sig == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = sig

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __bool__(self) -> bool:
        return self.signal is not None


@dataclass
class Dist:
    """Where this process sits in a torchrun job; world 1 without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t

    def all_gather_float(self, value: float, device: torch.device) -> list[float]:
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        out = [torch.zeros((), dtype=torch.float64, device=device) for _ in range(self.world)]
        dist.all_gather(out, torch.tensor(value, dtype=torch.float64, device=device))
        return [float(v) for v in out]

    def shutdown(self, finished: bool = False) -> None:
        """Leave the job cleanly; exiting with gloo threads still up aborts the process. finished: every
        rank got here without an error, so they meet first: a rank that tears its connections down
        while a peer still reads from them can die in gloo's threads (SIGABRT, seen under load)."""
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                if finished:
                    dist.barrier()
                dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun job described by the environment (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: pick the fastest kernels once
    if world == 1:
        return Dist(), device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type == "cpu":  # processes on one machine share its cores
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device
