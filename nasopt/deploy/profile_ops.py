"""One op configuration as a runnable module, and the timers of both backends.

An op is built from the supernet's own elastic modules (`ElasticConv`, `ElasticMBConv`, ...) at
exactly the configuration's widths, with fixed BatchNorm statistics, so it runs the code the
exported or extracted subnet runs (channels-last input, the same kernel crops on small maps).
Timing: `warmup` untimed calls, then the median of `repeats` timed calls, one thread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasopt.accuracy.supernet._ops import (
    ElasticConv,
    ElasticLinear,
    ElasticMBConv,
    RunContext,
    bn_statistics,
)
from nasopt.core.ops import is_residual
from nasopt.deploy._onnx import to_onnx
from nasopt.deploy.profile_keys import KeyedLayer
from nasopt.errors import SpecError

BACKENDS = ("onnxruntime", "torch")


class OpModule(nn.Module):
    """The layer of one lookup key: `forward(x)` with x of its input shape (batch first)."""

    def __init__(self, item: KeyedLayer) -> None:
        super().__init__()
        layer, op, s = item.layer, item.op, item.stride
        c, _, _ = layer.in_shape
        cout = layer.out_shape[0]
        t = op.type
        self.kind = t
        self.identity = False
        if t in ("conv", "conv_reduce", "conv_recover"):
            self.conv = ElasticConv(c, cout, op.kernel, "op.conv")
            act = t != "conv_reduce"
            self.fn: Callable[[torch.Tensor, RunContext], torch.Tensor] = lambda x, ctx: self.conv(
                x, ctx, cout, op.kernel, s, op.groups, act=act
            )
        elif t == "mbconv":
            self.mb = ElasticMBConv(c, cout, [op], "op.mb", is_residual(op, c, cout, s))
            self.fn = lambda x, ctx: self.mb(x, ctx, op, cout, s)
        elif t == "skip":
            self.identity = c == cout and s == 1
            self.proj = ElasticConv(c, cout, 1, "op.proj")
            self.fn = lambda x, ctx: x if self.identity else self.proj(x, ctx, cout, 1, s, act=False)
        elif t == "gap":
            self.fn = lambda x, ctx: x.mean(dim=(2, 3), keepdim=True)
        elif t in ("fc", "classifier"):
            self.fc = ElasticLinear(c * layer.in_shape[1] * layer.in_shape[2], cout)
            relu = t == "fc"
            self.fn = lambda x, ctx: _fc(self.fc, x, ctx, cout, relu)
        else:  # pragma: no cover - keyed_layers only yields the keyed op types above
            raise SpecError(f"no profiling module for op type {t!r}", field=item.key)
        x = example_input(item, batch=2)
        collect: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            self.fn(x, RunContext(bn_collect=collect))
        self.ctx = RunContext(bn_fixed=bn_statistics(collect, var_floor=1e-3))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.ctx)


def _fc(fc: ElasticLinear, x: torch.Tensor, ctx: RunContext, cout: int, relu: bool) -> torch.Tensor:
    y = fc(x.flatten(1), ctx, cout)
    return (F.relu(y) if relu else y)[:, :, None, None]


def example_input(item: KeyedLayer, batch: int = 1) -> torch.Tensor:
    """A random input of the op's shape, channels-last as the subnet's activations are."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *item.layer.in_shape), generator=gen)
    return x.contiguous(memory_format=torch.channels_last)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads, restoring the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}
"""`cpu`: CPU time of the calling thread, which one-thread inference runs on: on a shared
machine it leaves out the time other processes hold the core (preemption), which wall time
counts; on an idle machine the two agree. `wall`: elapsed time (needed with several threads)."""


STATISTICS: dict[str, Callable[[list[float]], float]] = {"min": min, "median": statistics.median}
"""What one measurement keeps of its timed runs. `min`: the run least disturbed by the rest of a
shared machine, whose speed drifts by 20-40 % over seconds (benchmarks/prediction.md); `median`."""

_TIMING = {"clock": "cpu", "statistic": "median"}  # what `time_calls` uses (set by `using_clock`)


def check_clock(clock: str, threads: int) -> str:
    if clock not in CLOCKS:
        raise SpecError("unknown clock", field="--clock", value=clock, allowed=list(CLOCKS))
    if clock == "cpu" and threads != 1:
        raise SpecError("the cpu clock times one thread; use --clock wall", field="--threads", value=threads)
    return clock


def check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise SpecError("unknown statistic", field="--statistic", value=statistic, allowed=list(STATISTICS))
    return statistic


@contextmanager
def using_clock(clock: str, statistic: str = "median") -> Iterator[None]:
    """Time with `clock` ("cpu" or "wall") and keep `statistic` of the runs inside the block."""
    before = dict(_TIMING)
    _TIMING.update(clock=clock, statistic=check_statistic(statistic))
    try:
        yield
    finally:
        _TIMING.update(before)


def time_calls(calls: list[Callable[[], Any]], warmup: int, repeats: int, rounds: int = 1) -> list[float]:
    """Seconds of each of `calls` (current clock and statistic, see `using_clock`) over `repeats`
    timed runs after `warmup` untimed ones. The timed runs are taken in `rounds` round-robin
    passes, each timing repeats/rounds runs of one call back to back before the next call, so
    every call's runs spread over the whole measurement and a slow spell hits all alike."""
    if rounds < 1:
        raise SpecError("need at least one round", field="--rounds", value=rounds)
    for call in calls:
        for _ in range(warmup):
            call()
    clock = CLOCKS[_TIMING["clock"]]
    rounds = min(rounds, repeats)
    times: list[list[float]] = [[] for _ in calls]
    for r in range(rounds):
        n = repeats // rounds + (r < repeats % rounds)
        for call, ts in zip(calls, times, strict=True):
            for _ in range(n):
                t0 = clock()
                call()
                ts.append(clock() - t0)
    keep = STATISTICS[_TIMING["statistic"]]
    return [keep(ts) for ts in times]


def time_call(call: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Time of `call()` over `repeats` runs after `warmup` untimed ones (the current clock and
    statistic: the median unless `using_clock` says otherwise)."""
    return time_calls([call], warmup, repeats)[0]


def onnx_call(session: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """One `session.run` on `feeds` (each made C-contiguous once, so no run copies its input)."""
    fixed = {name: np.ascontiguousarray(v) for name, v in feeds.items()}
    return lambda: session.run(None, fixed)


def time_onnx(session: Any, feeds: dict[str, np.ndarray], warmup: int, repeats: int) -> float:
    """Seconds of one `session.run` on `feeds`."""
    return time_call(onnx_call(session, feeds), warmup, repeats)


def export_onnx(
    module: nn.Module, args: tuple[torch.Tensor, ...], in_names: list[str], out_names: list[str]
) -> bytes:
    """`module` as ONNX, as `nasopt export` writes its parts (fixed shapes); the serialised
    model with its shapes inferred."""
    import onnx

    _, onnx_program = to_onnx(module, args, in_names, out_names)
    proto = onnx_program.model_proto
    return bytes(onnx.shape_inference.infer_shapes(proto).SerializeToString())


class _Bundle(nn.Module):
    """Several op modules side by side (one input and one output each): one export for many."""

    def __init__(self, mods: list[OpModule]) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m(x) for m, x in zip(self.mods, xs, strict=True))


def export_ops(mods: list[OpModule], inputs: list[torch.Tensor]) -> list[bytes]:
    """Each op as its own ONNX model: the ops are exported together (one torch.export run, the
    slow step) and each op's subgraph cut out of the bundle with `onnx.utils.Extractor`."""
    import onnx
    from onnx.utils import Extractor

    n = len(mods)
    in_names = [f"in{i}" for i in range(n)]
    out_names = [f"out{i}" for i in range(n)]
    data = export_onnx(_Bundle(mods), tuple(inputs), in_names, out_names)
    extractor = Extractor(onnx.load_from_string(data))
    return [
        extractor.extract_model([a], [b]).SerializeToString()
        for a, b in zip(in_names, out_names, strict=True)
    ]
