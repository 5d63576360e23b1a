"""`nasopt profile`: time every op configuration of a search space on this machine and write a
lookup table an objective names as `compute = { kind = "lookup", table = "FILE" }`.

The keys are the lookup-table compute model's (`nasopt.deploy.profile_keys`); each op runs as
the supernet's own module (`nasopt.deploy.profile_ops`) with onnxruntime or PyTorch, one thread,
`warmup` untimed runs, then the minimum (`--statistic min`, the default) or the median of
`repeats` timed runs, taken in round-robin passes over all the ops so that a slow spell of a
shared machine does not land on a few of them. onnxruntime times have the cost of an empty
`session.run` (measured, stated in the side file as `call_overhead_ms`) subtracted, since a whole
model pays it once, not once per layer: a device's `run_overhead_s` adds it back once per part.
An identity skip costs 0. Beside the table (`FILE`, key -> ms) a side file `FILE.meta.json`
records the machine, backend, settings, load average, and a throughput and a linear compute model
fitted to the same timings by least squares, for the layers the table has no key for
(`fallback = "throughput"`) and for `nasopt profile --check`. The command profiles through
`profile_check.profile_and_check`, which also times whole candidates with the ops and records
their excess over the table as its calibration (`run_overhead_ms`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nasopt.deploy.profile_graph import InnerGraph, inner_graph
from nasopt.deploy.profile_keys import KeyedLayer, keyed_layers
from nasopt.errors import SpecError
from nasopt.spec import ComputeSpec, SearchSpaceSpec

TABLE_FORMAT = "nasopt-profile/1"


@dataclass
class ProfileResult:
    """Measured per-op latencies of one space on this machine."""

    space: str
    backend: str
    times_ms: dict[str, float]
    layers: dict[str, KeyedLayer]
    warmup: int
    repeats: int
    threads: int
    clock: str = "cpu"
    statistic: str = "median"
    rounds: int = 1
    call_overhead_ms: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    in_graph_ops: int | None = None  # ops timed without their end conversions; None: as is
    calibration: dict[str, Any] | None = None  # whole candidates timed with the ops: `offset_ms`

    @property
    def run_overhead_ms(self) -> float:
        """What a part pays once per run beyond its ops: the empty-run cost, plus the calibration
        candidates' median excess over the table's sum (not below 0 in all)."""
        offset = float(self.calibration["offset_ms"]) if self.calibration else 0.0
        return max(self.call_overhead_ms + offset, 0.0)

    def fits(self) -> dict[str, Any]:
        return fit_models(self.layers, self.times_ms)

    def meta(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "space": self.space,
            "backend": self.backend,
            "unit": "ms",
            "keys": len(self.times_ms),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "statistic": self.statistic,
            "rounds": self.rounds,
            "threads": self.threads,
            "clock": self.clock,
            "call_overhead_ms": self.call_overhead_ms,
            "calibration": self.calibration,
            "run_overhead_ms": self.run_overhead_ms,
            "in_graph_ops": self.in_graph_ops,
            "machine": self.machine,
            "fits": self.fits(),
        }


def check_backend(backend: str) -> str:
    from nasopt.deploy.profile_ops import BACKENDS

    if backend not in BACKENDS:
        raise SpecError("unknown backend", field="--backend", value=backend, allowed=list(BACKENDS))
    return backend


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, load average, library versions."""
    import onnxruntime
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def profile_space(
    spec: SearchSpaceSpec,
    *,
    backend: str = "onnxruntime",
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
    clock: str = "cpu",
    statistic: str = "min",
    rounds: int = 5,
    progress: bool = True,
    chunk: int = 48,
    in_graph: bool = True,
) -> ProfileResult:
    """Time every op configuration of `spec` with `backend` (`statistic` of `repeats` runs after
    `warmup`, taken in `rounds` round-robin passes over all the ops, `threads` intra-op
    threads, on `clock`: see `profile_ops.CLOCKS`); a bar on stderr with `progress`.
    `in_graph` (onnxruntime): time each op without the layout conversions at its ends, as it
    runs between other layers (`profile_graph`); False: the op's graph as is."""
    from nasopt.deploy.profile_ops import check_clock, using_clock

    check_timing(warmup, repeats)
    with using_clock(check_clock(clock, threads), statistic):
        ops = prepare_ops(spec, backend, warmup, repeats, threads, progress, chunk, in_graph)
        timings_s = time_all(ops.calls, f"{len(ops.calls)} ops", warmup, repeats, rounds, threads, progress)
    return ops.result(
        timings_s, warmup=warmup, repeats=repeats, clock=clock, statistic=statistic, rounds=rounds
    )


def time_all(
    calls: list[Callable[[], Any]],
    what: str,
    warmup: int,
    repeats: int,
    rounds: int,
    threads: int,
    progress: bool,
) -> list[float]:
    """`profile_ops.time_calls` on `threads` intra-op threads under `torch.no_grad` (the current
    clock and statistic), announced on stderr with `progress`."""
    import torch

    from nasopt.deploy.profile_ops import time_calls, torch_threads

    if progress:
        print(f"timing {what} ({rounds} round-robin passes) ...", file=sys.stderr, flush=True)
    with torch_threads(threads), torch.no_grad():
        return time_calls(calls, warmup, repeats, rounds)


def check_timing(warmup: int, repeats: int) -> None:
    if warmup < 0 or repeats < 1:
        raise SpecError("need warmup >= 0 and repeats >= 1", field="--repeats", value=repeats)


@dataclass
class OpCalls:
    """The ops of a space, ready to time: one call per op that runs anything, and (onnxruntime)
    the time of an empty `session.run`, measured first and taken off every op."""

    spec: SearchSpaceSpec
    backend: str
    threads: int
    layers: dict[str, KeyedLayer]
    keys: list[str]  # one per call
    calls: list[Callable[[], Any]]
    zero_ms: dict[str, float]  # identity skips: they run nothing
    in_graph_ops: int | None
    machine: dict[str, Any]
    overhead_s: float

    def result(
        self, timings_s: list[float], *, warmup: int, repeats: int, clock: str, statistic: str, rounds: int
    ) -> ProfileResult:
        """The table from `timings_s`, one per call (see `profile_ops.time_calls`)."""
        op_ms = {k: max(t - self.overhead_s, 0.0) * 1e3 for k, t in zip(self.keys, timings_s, strict=True)}
        times = {**self.zero_ms, **op_ms}
        return ProfileResult(
            space=self.spec.name,
            backend=self.backend,
            times_ms=dict(sorted(times.items())),
            layers=self.layers,
            warmup=warmup,
            repeats=repeats,
            threads=self.threads,
            clock=clock,
            statistic=statistic,
            rounds=rounds,
            call_overhead_ms=self.overhead_s * 1e3,
            machine=self.machine,
            in_graph_ops=self.in_graph_ops,
        )


def prepare_ops(
    spec: SearchSpaceSpec,
    backend: str,
    warmup: int,
    repeats: int,
    threads: int,
    progress: bool,
    chunk: int = 48,
    in_graph: bool = True,
) -> OpCalls:
    """Every op of `spec` as a call to time with `backend` (see `profile_space`; torch calls run
    under `torch.no_grad`)."""
    from tqdm import tqdm

    from nasopt.deploy._onnx import ort_session
    from nasopt.deploy.profile_ops import OpModule, example_input, export_ops, onnx_call

    check_backend(backend)
    machine = machine_info()
    layers = keyed_layers(spec)
    zero_ms: dict[str, float] = {}
    items = list(layers.values())
    keys: list[str] = []
    calls: list[Callable[[], Any]] = []
    stripped = 0  # ops timed without the NCHWc conversions at their ends
    with tqdm(total=len(items), desc=f"preparing ops ({backend})", unit="op", disable=not progress) as bar:
        for start in range(0, len(items), chunk):
            group = items[start : start + chunk]
            mods = [OpModule(item) for item in group]
            xs = [example_input(item) for item in group]
            live = [i for i, m in enumerate(mods) if not m.identity]
            for i, m in enumerate(mods):
                if m.identity:  # an identity skip runs nothing (HW-NAS-Bench reports 0 too)
                    zero_ms[group[i].key] = 0.0
            keys += [group[i].key for i in live]
            if backend == "torch":
                calls += [partial(mods[i], xs[i]) for i in live]
            elif live:
                models = export_ops([mods[i] for i in live], [xs[i] for i in live])
                for i, data in zip(live, models, strict=True):
                    inner = inner_graph(data) if in_graph else None
                    if inner is None:
                        sess, x = ort_session(data, threads), xs[i].numpy()
                    else:
                        sess, x = ort_session(inner.model, threads, optimize=False), _blocked(inner)
                        stripped += 1
                    calls.append(onnx_call(sess, {sess.get_inputs()[0].name: x}))
            bar.update(len(group))
    return OpCalls(
        spec=spec,
        backend=backend,
        threads=threads,
        layers=layers,
        keys=keys,
        calls=calls,
        zero_ms=zero_ms,
        in_graph_ops=stripped if backend == "onnxruntime" and in_graph else None,
        machine=machine,
        overhead_s=_empty_run_s(warmup, repeats, threads) if backend == "onnxruntime" else 0.0,
    )


def _blocked(inner: InnerGraph) -> np.ndarray:
    """A fixed random input of an inner graph's (channel-blocked) input shape."""
    return np.random.default_rng(0).standard_normal(inner.input_shape, dtype=np.float32)


def _empty_run_s(warmup: int, repeats: int, threads: int) -> float:
    """Seconds of `session.run` on a one-node graph (Identity of 1 float): the cost every op's
    time includes and a whole model pays once."""
    import onnx
    from onnx import TensorProto, helper

    from nasopt.deploy._onnx import ort_session
    from nasopt.deploy.profile_ops import time_onnx

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    sess = ort_session(model.SerializeToString(), threads)
    return time_onnx(sess, {"x": np.zeros(1, dtype=np.float32)}, warmup, max(repeats, 200))


def meta_path(table: Path) -> Path:
    """The side file of a table: `T.json` -> `T.meta.json`."""
    return table.with_name(table.stem + ".meta.json")


def check_output(path: Path) -> Path:
    """`path` if a table can be written there (its folder exists)."""
    if not path.parent.is_dir():
        raise SpecError("the output file's folder does not exist", field="-o", value=str(path))
    return path


def write_table(result: ProfileResult, path: Path) -> Path:
    """Write the lookup table (key -> ms) to `path` and its side file (`meta_path`)."""
    check_output(path)
    path.write_text(json.dumps(result.times_ms, indent=1) + "\n", encoding="utf-8")
    meta_path(path).write_text(json.dumps(result.meta(), indent=2) + "\n", encoding="utf-8")
    return path


def read_meta(table: Path) -> dict[str, Any] | None:
    side = meta_path(table)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------ fitted compute models


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (drop the most negative and refit)."""
    active = list(range(a.shape[1]))
    coef = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def fit_models(layers: dict[str, KeyedLayer], times_ms: dict[str, float]) -> dict[str, Any]:
    """A throughput (MAC/s) and a linear (s/MAC per kernel size and FC, plus a per-layer
    overhead) compute model fitted by least squares to the measured op times; each with the
    `ComputeSpec` fields it sets and how it was fitted."""
    rows = [(layers[k].layer, t * 1e-3) for k, t in times_ms.items() if k in layers]
    with_macs = [(layer, t) for layer, t in rows if layer.macs > 0]
    if not with_macs:
        raise SpecError("no profiled op has MACs: nothing to fit a throughput to", field="table")
    m = np.array([float(layer.macs) for layer, _ in with_macs])
    t = np.array([t for _, t in with_macs])
    macs_per_s = float((m * m).sum() / (m * t).sum())
    kinds = sorted({k for layer, _ in with_macs for k, _ in layer.macs_by_kernel})
    a = np.zeros((len(with_macs), 1 + len(kinds)))
    for r, (layer, _) in enumerate(with_macs):
        a[r, 0] = 1.0 if layer.primitive_count else 0.0
        for k, macs in layer.macs_by_kernel:
            a[r, 1 + kinds.index(k)] += macs
    coef = _nnls(a, t)
    conv = {k[4:]: float(c) for k, c in zip(kinds, coef[1:], strict=True) if k.startswith("conv")}
    fc = next((float(c) for k, c in zip(kinds, coef[1:], strict=True) if k == "fc"), None)
    linear: dict[str, Any] = {"overhead_s": float(coef[0]), "conv_s_per_mac": conv}
    if fc is not None:
        linear["fc_s_per_mac"] = fc
    if not any(conv.values()) and not fc:  # every coefficient zero: the spec needs one
        linear["default_s_per_mac"] = 1.0 / macs_per_s
    return {
        "throughput": {
            "macs_per_s": macs_per_s,
            "fit": f"least squares through the origin, t = MACs / rate, on {len(with_macs)} op timings",
        },
        "linear": {
            **linear,
            "fit": (
                "non-negative least squares, t = overhead_s + sum over kernel sizes of s_per_mac * MACs,"
                f" on {len(with_macs)} op timings"
            ),
        },
    }


def compute_specs(table: Path, fits: dict[str, Any], calibrated: bool = True) -> dict[str, ComputeSpec]:
    """The three compute models of `nasopt profile --check`: the fitted throughput and linear
    models, and the lookup table with the fitted throughput as fallback for keyless layers;
    each adds the table's run overhead once per run (`run_overhead_s`)."""
    lin = {k: v for k, v in fits["linear"].items() if k != "fit"}
    rate = fits["throughput"]["macs_per_s"]
    run = run_overhead_s(table, calibrated)
    return {
        "throughput": ComputeSpec(kind="throughput", macs_per_s=rate, run_overhead_s=run),
        "linear": ComputeSpec(kind="linear", run_overhead_s=run, **lin),
        "lookup": ComputeSpec(
            kind="lookup",
            table=str(table),
            table_unit="ms",
            fallback="throughput",
            macs_per_s=rate,
            run_overhead_s=run,
        ),
    }


def run_overhead_s(table: Path, calibrated: bool = True) -> float:
    """The per-run cost of `table`'s side file: `run_overhead_ms` (the empty-run cost subtracted
    from every op plus the calibration, see `ProfileResult.run_overhead_ms`), or with
    `calibrated=False` (or an older side file) the empty-run cost alone; 0 without side file."""
    meta = read_meta(table) or {}
    value = meta.get("run_overhead_ms") if calibrated else None
    if not isinstance(value, int | float):
        value = meta.get("call_overhead_ms", 0.0)
    return float(value) * 1e-3 if isinstance(value, int | float) else 0.0


def objective_snippet(table: Path, fits: dict[str, Any]) -> str:
    rate = fits["throughput"]["macs_per_s"]
    return (
        f'compute = {{ kind = "lookup", table = "{table}", table_unit = "ms", '
        f'fallback = "throughput", macs_per_s = {rate:.4g}, run_overhead_s = {run_overhead_s(table):.4g} }}'
    )
