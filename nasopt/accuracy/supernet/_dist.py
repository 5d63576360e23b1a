"""Data-parallel supernet training over `torch.distributed` (gloo on CPU, NCCL for CUDA tensors).

No `DistributedDataParallel` wrapper: the sandwich's subnets use different slices of the
weights at every step, which DDP's unused-parameter detection handles poorly. Instead every rank
draws the same subnets (seeded by step), runs its own rows of the global batch, and after the
backward passes one flat all-reduce averages every gradient. BatchNorm reduces its batch
statistics across ranks (`sync_sums`), so N ranks with global batch B compute what one process
computes with batch B, up to float rounding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from nasopt.errors import SpecError


def active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints and shows progress."""
    return rank() == 0


def backend(device: torch.device | None = None) -> str:
    return "nccl" if device is not None and device.type == "cuda" else "gloo"


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) when WORLD_SIZE > 1; True when distributed. Idempotent."""
    if dist.is_available() and dist.is_initialized():
        return active()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return False
    timeout = timedelta(seconds=_env_int("NASOPT_DIST_TIMEOUT_S", 1800))
    dist.init_process_group(backend(device), rank=_env_int("RANK", 0), world_size=size, timeout=timeout)
    return True


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise SpecError("not a non-negative integer", field=name, value=raw)
    return int(raw)


def check_world(batch_size: int, nproc: int, option: str) -> None:
    """`nproc` ranks must split the global batch evenly (`option` names where nproc came from)."""
    allowed = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
    if nproc not in allowed:
        raise SpecError(
            f"{nproc} processes cannot split the global batch of {batch_size} (accuracy.batch_size) evenly",
            field=option,
            value=nproc,
            allowed=allowed,
        )


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch (the batch size divides by the world size)."""
    n = world_size()
    if n == 1:
        return t
    per = t.shape[0] // n
    return t[rank() * per : (rank() + 1) * per]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of the ranks' gradients
    (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        return g


def sync_sums(x: torch.Tensor) -> torch.Tensor:
    """`x` summed over ranks, differentiable (BatchNorm's sums of values and squares)."""
    if not active():
        return x
    return _AllReduceSum.apply(x)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average every parameter's gradient over ranks in one flat all-reduce. A parameter without
    a gradient contributes zeros (so every rank reduces the same vector) and stays without one
    only when no rank has one (AdamW then skips it, as in a single process)."""
    if not active():
        return
    ps = list(params)
    parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in ps]
    has = torch.tensor([p.grad is not None for p in ps], dtype=parts[0].dtype if parts else None)
    flat = torch.cat([*parts, has])
    dist.all_reduce(flat)
    flat /= world_size()
    seen = flat[-len(ps) :] > 0
    offset = 0
    for i, p in enumerate(ps):
        n = p.numel()
        if seen[i]:
            p.grad = flat[offset : offset + n].view_as(p)
        offset += n


def reduce_sum(values: list[float]) -> list[float]:
    """Plain floats summed over ranks (losses and correct counts for the progress line)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def agree(flag: bool) -> bool:
    """Rank 0's `flag` on every rank (e.g. whether a finished checkpoint exists)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)])
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
