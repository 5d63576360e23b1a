"""`nasopt profile --check`: how well each compute model predicts the measured end-to-end latency
of random candidates on this machine, and `--export DIR`: the measured time of exported parts.

Each candidate runs whole on this machine as the extracted `Subnet` of an untrained supernet
(weights do not change the time; BatchNorm statistics from one random batch), with PyTorch, or
exported to ONNX exactly as `nasopt export` exports a part and run with onnxruntime. Predicted
latency = the sum of the compute model's per-layer times over the candidate's layers (the cost
model's `Network`, views counted per view) plus the table's `run_overhead_s` once: the empty-run
cost and, for a table profiled with calibration candidates, their median excess over the table
(`profile_and_check`); the tested candidates are a separate random stream.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasopt.core.candidate import Candidate
from nasopt.core.compute import ComputeModel, load_table
from nasopt.core.network import Network
from nasopt.deploy.profile import (
    ProfileResult,
    check_backend,
    check_output,
    check_timing,
    compute_specs,
    fit_models,
    machine_info,
    prepare_ops,
    read_meta,
    time_all,
    write_table,
)
from nasopt.deploy.profile_keys import keyed_layers
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import SearchSpaceSpec

CHECK_FORMAT = "nasopt-profile-check/1"
WITHIN = 0.10  # the band of "predicted within +-10 % of measured"


@dataclass
class Measured:
    candidate: Candidate
    macs: int
    measured_ms: float
    predicted_ms: dict[str, float]


def predicted_s(network: Network, model: ComputeModel) -> float:
    """The candidate's compute time on one device of `model`: every layer, per view, and one
    run overhead (the whole candidate is one part)."""
    total = model.spec.run_overhead_s
    for i, layer in enumerate(network.layers):
        n = network.views if network.fuse_after is not None and i <= network.fuse_after else 1
        total += model.layer_time_s(layer) * n
    return total


def _input(spec: SearchSpaceSpec, candidate: Candidate, batch: int, views: int) -> torch.Tensor:
    shape: tuple[int, ...] = (batch, spec.input.channels, spec.input.height, spec.input.width)
    if candidate.fuse_after is not None:
        shape = (batch, views, *shape[1:])
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def subnet_call(sub: Any, x: torch.Tensor, backend: str, threads: int = 1) -> Callable[[], Any]:
    """One forward pass of `sub` on `x` with `backend` (onnxruntime: `sub` exported as `nasopt
    export` exports a part); for torch, call it under `torch_threads` and `no_grad`."""
    from nasopt.deploy._onnx import ort_session
    from nasopt.deploy.profile_ops import export_onnx, onnx_call

    if backend == "torch":
        return lambda: sub(x)
    sess = ort_session(export_onnx(sub, (x,), ["input"], ["logits"]), threads)
    return onnx_call(sess, {"input": x.numpy()})


def _table_fits(spec: SearchSpaceSpec, table: Path) -> dict[str, Any]:
    data = load_table(str(table), field="--table")
    keys = keyed_layers(spec)
    missing = sorted(set(keys) - set(data))
    if missing:
        raise SpecError(
            f"the table lacks {len(missing)} of the space's {len(keys)} op keys (first: {missing[0]}); "
            "profile this space first",
            field="--table",
            value=str(table),
        )
    return fit_models(keys, {k: data[k] for k in keys})


def check_predictions(
    spec: SearchSpaceSpec,
    table: Path,
    *,
    backend: str = "onnxruntime",
    candidates: int = 20,
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
    clock: str = "cpu",
    statistic: str = "min",
    rounds: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure `candidates` random candidates of `spec` end to end (`statistic` of `repeats` runs,
    in `rounds` round-robin passes over all candidates) and compare each compute model's
    prediction (throughput and linear fitted to an existing `table`'s timings, the lookup
    `table`, each with the table's run overhead). The JSON document `nasopt profile --check`
    writes."""
    from nasopt.deploy.profile_ops import check_clock, using_clock

    check_timing(warmup, repeats)
    if candidates < 1:
        raise SpecError("need at least one candidate", field="--candidates", value=candidates)
    fits = _table_fits(spec, table)  # a bad table fails before any export
    with using_clock(check_clock(clock, threads), statistic):
        cands = prepare_candidates(spec, backend, candidates, 0, seed, threads, progress)
        what = f"{len(cands.calls)} candidates"
        timings_s = time_all(cands.calls, what, warmup, repeats, rounds, threads, progress)
    doc = cands.doc(table, fits, timings_s, warmup=warmup, repeats=repeats, with_table=False)
    return {**doc, "clock": clock, "statistic": statistic, "rounds": rounds}


def profile_and_check(
    spec: SearchSpaceSpec,
    table: Path,
    *,
    backend: str = "onnxruntime",
    candidates: int = 20,
    calibrate: int = 10,
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
    clock: str = "cpu",
    statistic: str = "min",
    rounds: int = 5,
    progress: bool = True,
    in_graph: bool = True,
) -> tuple[ProfileResult, dict[str, Any] | None]:
    """Profile `spec` into `table` (as `profile_space`), calibrated on `calibrate` random whole
    candidates, and check it on `candidates` others (0: no check, None returned for the
    document). Ops and candidates are timed in the same round-robin passes, so a slow or fast
    spell of the machine (a few % over minutes on a shared host) lands on all alike.

    Calibration: the median over the calibration candidates of measured minus the table's sum
    (with the empty-run cost) is added to the table's `run_overhead_ms`: what a whole model pays
    once beyond its ops timed one by one (measured; its cause is not pinned down, docs/deploy.md).
    The tested candidates are a separate random stream, never used to calibrate."""
    from nasopt.deploy.profile_ops import check_clock, using_clock

    check_timing(warmup, repeats)
    check_output(table)  # before minutes of measuring
    if candidates < 0 or calibrate < 0:
        raise SpecError("need candidates >= 0 and calibrate >= 0", field="--calibrate", value=calibrate)
    with using_clock(check_clock(clock, threads), statistic):
        ops = prepare_ops(spec, backend, warmup, repeats, threads, progress, in_graph=in_graph)
        cands = prepare_candidates(spec, backend, candidates, calibrate, seed, threads, progress)
        what = f"{len(ops.calls)} ops and {len(cands.calls)} candidates together"
        timings_s = time_all(ops.calls + cands.calls, what, warmup, repeats, rounds, threads, progress)
    result = ops.result(
        timings_s[: len(ops.calls)],
        warmup=warmup,
        repeats=repeats,
        clock=clock,
        statistic=statistic,
        rounds=rounds,
    )
    write_table(result, table)
    cand_s = timings_s[len(ops.calls) :]
    fits = result.fits()  # what the table just written holds; no need to read it back
    if calibrate:
        result.calibration = cands.calibration_fit(table, fits, cand_s[:calibrate])
        write_table(result, table)
    if not candidates:
        return result, None
    doc = cands.doc(table, fits, cand_s, warmup=warmup, repeats=repeats, with_table=True)
    return result, {**doc, "clock": clock, "statistic": statistic, "rounds": rounds}


@dataclass
class CandidateCalls:
    """Random candidates of a space, exported and ready to time: the calibration ones first."""

    spec: SearchSpaceSpec
    backend: str
    seed: int
    threads: int
    tested: list[Candidate]
    calibration: list[Candidate]
    calls: list[Callable[[], Any]]
    machine: dict[str, Any]

    def _measured(
        self, cands: list[Candidate], models: dict[str, ComputeModel], timings_s: list[float]
    ) -> list[Measured]:
        space = SearchSpace(self.spec)
        rows = []
        for cand, t in zip(cands, timings_s, strict=True):
            network = space.network(cand)
            pred = {name: predicted_s(network, m) * 1e3 for name, m in models.items()}
            rows.append(Measured(cand, network.macs, t * 1e3, pred))
        return rows

    def calibration_fit(self, table: Path, fits: dict[str, Any], timings_s: list[float]) -> dict[str, Any]:
        """The table's calibration from the calibration candidates' times: the median of measured
        minus the uncalibrated lookup prediction."""
        lookup = {"lookup": ComputeModel(compute_specs(table, fits, calibrated=False)["lookup"], "profile")}
        rows = self._measured(self.calibration, lookup, timings_s)
        return {
            "candidates": len(rows),
            "seed": self.seed + _CALIBRATION_SEED,
            "offset_ms": statistics.median(r.measured_ms - r.predicted_ms["lookup"] for r in rows),
            "fit": "median of measured - lookup-predicted latency (ops and empty run) over the calibration "
            "candidates, timed with the ops",
        }

    def doc(
        self,
        table: Path,
        fits: dict[str, Any],
        timings_s: list[float],
        *,
        warmup: int,
        repeats: int,
        with_table: bool,
    ) -> dict[str, Any]:
        """The check document from one time per call, calibration candidates first (`with_table`:
        timed in the same passes as the table's ops). With a calibrated table, the lookup table
        without its calibration is a fourth model, "lookup (uncalibrated)"."""
        specs = compute_specs(table, fits)
        models = {name: ComputeModel(s, f"profile.{name}") for name, s in specs.items()}
        meta = read_meta(table) or {}
        calibration = meta.get("calibration")
        if calibration:
            plain = compute_specs(table, fits, calibrated=False)["lookup"]
            models["lookup (uncalibrated)"] = ComputeModel(plain, "profile.lookup")
        rows = self._measured(self.tested, models, timings_s[len(self.calibration) :])
        fits_out = {**fits, "lookup": {"table": str(table), "fallback": "throughput (the fitted rate)"}}
        return {
            "format": CHECK_FORMAT,
            "space": self.spec.name,
            "backend": self.backend,
            "table": str(table),
            "table_meta": meta or None,
            "timed_with_table": with_table,
            "candidates": len(rows),
            "seed": self.seed,
            "warmup": warmup,
            "repeats": repeats,
            "threads": self.threads,
            "within": WITHIN,
            "machine": self.machine,
            "models": fits_out,
            "calibration": calibration,
            "summary": {name: summarise(rows, name) for name in models},
            "rows": [
                {
                    "candidate": r.candidate.to_dict(),
                    "macs": r.macs,
                    "measured_ms": r.measured_ms,
                    "predicted_ms": r.predicted_ms,
                }
                for r in rows
            ],
        }


_CALIBRATION_SEED = 1_000_003  # the calibration candidates' stream: seed + this, never the tested one


def prepare_candidates(
    spec: SearchSpaceSpec,
    backend: str,
    candidates: int,
    calibrate: int,
    seed: int,
    threads: int,
    progress: bool,
) -> CandidateCalls:
    """`calibrate` + `candidates` random candidates of `spec` (separate seeded streams), each the
    extracted subnet of an untrained supernet, exported for `backend` (see the module doc)."""
    from tqdm import tqdm

    from nasopt.accuracy.supernet import Supernet
    from nasopt.deploy._subnet import calibrated_subnet

    check_backend(backend)
    space = SearchSpace(spec)
    rng = random.Random(seed)
    tested = [space.sample(rng) for _ in range(candidates)]
    calib_rng = random.Random(seed + _CALIBRATION_SEED)
    calib = [space.sample(calib_rng) for _ in range(calibrate)]
    torch.manual_seed(seed)
    net = Supernet(spec).eval()
    machine = machine_info()
    calls = []
    for cand in tqdm(
        calib + tested, desc=f"exporting candidates ({backend})", unit="candidate", disable=not progress
    ):
        x = _input(spec, cand, 1, net.views)
        sub = calibrated_subnet(net, cand, [_input(spec, cand, 2, net.views)], var_floor=1e-3)
        calls.append(subnet_call(sub, x, backend, threads))
    return CandidateCalls(spec, backend, seed, threads, tested, calib, calls, machine)


def summarise(rows: list[Measured], name: str) -> dict[str, float]:
    """Fraction of candidates predicted within +-10 %, median |error| and median signed error
    (relative to the measured latency)."""
    rel = [(r.predicted_ms[name] - r.measured_ms) / r.measured_ms for r in rows]
    return {
        "within_10pct": sum(abs(e) <= WITHIN for e in rel) / len(rel),
        "median_abs_error": statistics.median(abs(e) for e in rel),
        "median_error": statistics.median(rel),
        "max_abs_error": max(abs(e) for e in rel),
    }


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The check's summary as table rows (one per compute model)."""
    return [
        {
            "model": name,
            "within ±10 %": f"{s['within_10pct']:.2f}",
            "median |error|": f"{100 * s['median_abs_error']:.1f} %",
            "median error": f"{100 * s['median_error']:+.1f} %",
            "max |error|": f"{100 * s['max_abs_error']:.1f} %",
        }
        for name, s in doc["summary"].items()
    ]


def write_check(doc: dict[str, Any], path: Path) -> Path:
    if not path.parent.is_dir():
        raise SpecError("the output file's folder does not exist", field="--check-output", value=str(path))
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def read_check(path: Path) -> dict[str, Any]:
    """A `--check` JSON file, refused with a one-line error if it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read check file: {exc.strerror}", file=str(path)) from None
    except ValueError as exc:
        raise SpecError(f"check file is not JSON: {exc}", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != CHECK_FORMAT:
        raise SpecError("not a nasopt profile --check file", file=str(path), allowed=CHECK_FORMAT)
    return doc


# ------------------------------------------------------------------ exported parts


def time_export(
    out_dir: Path,
    *,
    backend: str = "onnxruntime",
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
    clock: str = "cpu",
    statistic: str = "min",
) -> dict[str, Any]:
    """Time (`statistic` of `repeats` runs) of every exported part of `out_dir` (checked against
    its manifest first) on this machine, each fed what its sources send for one input, and of all
    parts run in execution order (no transfer), beside the manifest's predicted compute times."""
    from nasopt.deploy.profile_ops import check_clock, using_clock

    check_backend(backend)
    with using_clock(check_clock(clock, threads), statistic):
        doc = _time_export(out_dir, backend, warmup, repeats, threads)
    return {**doc, "clock": clock, "statistic": statistic}


def _time_export(out_dir: Path, backend: str, warmup: int, repeats: int, threads: int) -> dict[str, Any]:
    import warnings

    import numpy as np

    from nasopt.deploy._onnx import ort_session
    from nasopt.deploy.export import check_export
    from nasopt.deploy.manifest import input_value
    from nasopt.deploy.profile_ops import time_call, torch_threads

    manifest = check_export(out_dir)
    shape = [1 if d == "batch" else int(d) for d in manifest.input.shape]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    values: dict[str, Any] = {"input": x.numpy()}
    runners: list[tuple[str, Any]] = []
    rows = []
    for part in manifest.parts:
        if part.onnx is None or part.torchscript is None:
            continue
        sess = ort_session(str(out_dir / part.onnx.path), threads)
        names = [i.name for i in part.inputs]
        feeds = {n: input_value(n, values) for n in names}
        outs = sess.run(None, feeds)
        values.update(zip([o.name for o in part.outputs], outs, strict=True))
        if backend == "onnxruntime":

            def run_ort(s: Any = sess, f: dict[str, Any] = feeds) -> Any:
                return s.run(None, f)

            t = time_call(run_ort, warmup, repeats)
            runners.append((part.device, run_ort))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(out_dir / part.torchscript.path))
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]

            def call(m: Any = module, aa: list[torch.Tensor] = args) -> Any:
                return m(*aa)

            with torch_threads(threads), torch.no_grad():
                t = time_call(call, warmup, repeats)
            runners.append((part.device, call))
        rows.append(
            {"device": part.device, "measured_ms": t * 1e3, "predicted_compute_ms": part.predicted_compute_ms}
        )
    with torch_threads(threads), torch.no_grad():
        total = time_call(lambda: [run() for _, run in runners], warmup, repeats)
    return {
        "export": str(out_dir),
        "backend": backend,
        "warmup": warmup,
        "repeats": repeats,
        "threads": threads,
        "machine": machine_info(),
        "parts": rows,
        "sequential_ms": total * 1e3,
        "predicted_compute_ms": sum(r["predicted_compute_ms"] for r in rows),
        "predicted_latency_ms": manifest.predicted_latency_ms,
    }
