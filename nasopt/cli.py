"""Command line: parses, calls the library, prints. Bad input exits 2 with one line, no traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasopt.errors import SpecError

if TYPE_CHECKING:
    from nasopt.spec import ResolvedStudy, SamplerSpec

_STORAGE_HELP = "storage URL (default sqlite:///nasopt.db): sqlite:///F.db, postgresql+psycopg://..., "
_STORAGE_HELP += "mysql+pymysql://..., journal:FILE, redis://HOST:PORT/DB, grpc://HOST:PORT (a storage-proxy)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="nasopt", description="Split-aware multi-objective NAS.")
    parser.add_argument("--version", action="version", version=f"nasopt {version('nasopt')}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="copy the bundled presets into a folder to edit and run")
    p.add_argument("dir", help="folder to create (or an empty existing one)")
    p.add_argument("--force", action="store_true", help="overwrite preset files already in DIR")

    p = sub.add_parser("validate", help="check preset files (search spaces, objectives, studies)")
    p.add_argument("paths", nargs="+", help="preset files or preset folders")

    p = sub.add_parser("describe", help="one candidate on one system, layer by layer")
    p.add_argument("--space", required=True, help="search space preset name or path")
    p.add_argument("--objective", required=True, help="objective preset name or path")
    p.add_argument(
        "--candidate",
        default="largest",
        help="largest | smallest | random:SEED | JSON object | @file.json (default: largest)",
    )
    p.add_argument(
        "--format", choices=["table", "json"], default="table", help="output form (default: table)"
    )

    sub.add_parser("presets", help="list the presets nasopt can find")

    p = sub.add_parser("run", help="create or resume a study and run trials")
    p.add_argument("study", help="study preset name or path (studies/*.toml)")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--study-name", default=None, help="default: the spec's name")
    p.add_argument(
        "--n-trials", type=_positive_int, default=None, help="new trials (default: rest of budget)"
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per worker")
    p.add_argument("--workers", type=_positive_int, default=1, help="local worker processes")
    p.add_argument(
        "--sampler",
        default=None,
        help="override the spec's sampler: asng, evolution, reinforce, tpe, nsga2, nsga3, gp, random;"
        " options as NAME:JSON, e.g. 'evolution:{\"population_size\": 30}'",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run to try things out: 4 supernet epochs and 30 trials, study NAME-quick",
    )

    p = sub.add_parser("train-supernet", help="train a study's supernet, or reuse its cached checkpoint")
    p.add_argument("study", help="study preset name or path (its [accuracy] estimator = 'supernet')")
    p.add_argument("--retrain", action="store_true", help="discard any cached or partial checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train data-parallel in N local processes (N divides accuracy.batch_size, the global "
        "batch); see docs/training.md, also for torchrun",
    )

    p = sub.add_parser("worker", help="join an existing study knowing only its name and storage")
    p.add_argument("--study-name", required=True, help="name of the study to join")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--n-trials", type=_positive_int, default=None, help="default: rest of budget")
    p.add_argument("--timeout", type=float, default=None, help="seconds this worker runs at most")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("studies", help="list studies in a storage")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)

    p = sub.add_parser("pareto", help="print a study's Pareto front")
    p.add_argument("--study-name", required=True, help="name of the study to read")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table (short arch column), or csv/json with every parameter and the candidate",
    )
    p.add_argument("--feasible-only", action="store_true", help="only trials meeting every constraint")
    p.add_argument(
        "--with-baselines", action="store_true", help="add the stored baselines (see `nasopt baselines`)"
    )

    p = sub.add_parser(
        "baselines",
        help="a study's baselines: all on one device, Neurosurgeon, NAS-then-split, dynamic surgery",
    )
    p.add_argument("study_name", metavar="STUDY", help="a nasopt study in the storage")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument(
        "--reference",
        default="largest",
        help="the fixed network: largest | smallest | trial:N | JSON candidate | @file.json"
        " (default: largest)",
    )
    p.add_argument(
        "--bandwidth-scales",
        default="0.1,0.3,1,3,10",
        help="dynamic surgery: factors applied to every link's bandwidth (default: 0.1,0.3,1,3,10)",
    )
    p.add_argument(
        "--nas-trials",
        type=_positive_int,
        default=None,
        help="trials of the NAS-then-split search (default: the study's n_trials, the same budget)",
    )
    p.add_argument(
        "--nas-device", default=None, help="device of the NAS-then-split search (default: the first)"
    )
    p.add_argument("--no-nas-then-split", action="store_true", help="skip the NAS-then-split search")
    p.add_argument("--recompute", action="store_true", help="recompute even if baselines are stored")
    p.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output form (default: table)"
    )

    p = sub.add_parser("sweep", help="best accuracy versus a latency/energy threshold")
    p.add_argument("study", nargs="?", help="study preset (omit with --from-front)")
    p.add_argument("--threshold", required=True, help="KEY=V1,V2,... e.g. latency_ms=5,10,20")
    p.add_argument("--set", action="append", default=[], help="SECTION.PATH=VALUE override, repeatable")
    p.add_argument("--from-front", action="store_true", help="answer from an existing study, no new trials")
    p.add_argument("--study-name", default=None, help="with --from-front: the study to read")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument(
        "--n-trials", type=_positive_int, default=None, help="trials per threshold (default: budget)"
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="local worker processes per study")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "front", help="the exact Pareto front of a whole analytic space (a study's sampled front: pareto)"
    )
    p.add_argument(
        "presets",
        nargs="+",
        metavar="PRESET",
        help="a study preset, or a search space and an objective preset",
    )
    p.add_argument("--exact", action="store_true", required=True, help="enumerate every candidate")
    p.add_argument("-o", "--output", default=None, help="write the front as JSON (a reference front)")
    p.add_argument(
        "--max-candidates",
        type=_positive_int,
        default=1_000_000_000,
        help="refuse larger spaces (default 1e9: minutes at about 1M candidates/s on one core)",
    )
    p.add_argument(
        "--chunk", type=_positive_int, default=200_000, help="candidates per batch (bounds memory)"
    )
    p.add_argument(
        "--format", choices=["table", "json"], default="table", help="output form (default: table)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("dashboard", help="serve optuna-dashboard with nasopt's figures and notes")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port (0: any free port; printed)")
    p.add_argument("--view", default="default", help="dashboard view preset name or path")
    p.add_argument("--no-register", action="store_true", help="serve without (re)storing figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while registering")

    p = sub.add_parser("storage-proxy", help="serve an RDB storage to workers over gRPC (grpc://HOST:PORT)")
    p.add_argument("--storage", required=True, help="the RDB storage URL to serve (postgresql+psycopg://...)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=13000, help="port (default 13000)")
    p.add_argument("--threads", type=_positive_int, default=16, help="server threads (default 16)")

    p = sub.add_parser("report", help="write a self-contained HTML report of a study")
    p.add_argument("--study-name", required=True, help="name of the study to report")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--view", default="default", help="dashboard view preset name or path")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--check", default=None, help="add a latency-prediction section (nasopt profile --check JSON)"
    )
    _add_deploy_commands(sub)
    return parser


# ---------------------------------------------------------------- deployment (nasopt.deploy)


def _add_deploy_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="a trial's subnet as a stand-alone PyTorch model (weights copied)")
    p.add_argument("--study-name", required=True, help="name of the study the trial belongs to")
    p.add_argument("--trial", type=int, required=True, help="trial number")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("-o", "--output", default=None, help="file to write (default: STUDY-trialT.pt)")

    p = sub.add_parser("export", help="a trial's subnet per device: ONNX + TorchScript + manifest.json")
    p.add_argument("--study-name", required=True, help="name of the study the trial belongs to")
    p.add_argument("--trial", type=int, required=True, help="trial number")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("-o", "--output", required=True, help="folder to write the parts and manifest to")
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=16,
        help="validation images the verification runs (default 16)",
    )

    p = sub.add_parser("retrain", help="fine-tune or train from scratch chosen trials per [retrain]")
    p.add_argument("--study-name", required=True, help="name of the study whose trials to retrain")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trials", default=None, help="comma-separated trial numbers, e.g. 3,7")
    which.add_argument("--front", action="store_true", help="every trial of the feasible Pareto front")
    p.add_argument("--spec", default=None, help="take the [retrain] table from this study file instead")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "profile", help="time a space's ops on this machine: a lookup table; --check: model accuracy"
    )
    p.add_argument("--space", default=None, help="search space preset name or path")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | torch (default: onnxruntime)")
    p.add_argument(
        "-o", "--output", default=None, help="table to write (default: profile-SPACE-BACKEND.json)"
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per measurement (default 10)")
    p.add_argument(
        "--repeats", type=_positive_int, default=50, help="timed runs per measurement (default 50)"
    )
    p.add_argument(
        "--statistic", default="min", help="kept of the timed runs: min (default; robust to load) | median"
    )
    p.add_argument(
        "--rounds",
        type=_positive_int,
        default=5,
        help="round-robin passes the timed runs are split into (default 5)",
    )
    p.add_argument("--threads", type=_positive_int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--clock", default="cpu", help="cpu (the thread's CPU time; default) | wall")
    p.add_argument(
        "--isolated",
        action="store_true",
        help="onnxruntime: time each op's graph as is, with the layout conversions at its ends that a"
        " model pays once, not per layer (default: without them)",
    )
    p.add_argument(
        "--check", action="store_true", help="measure random candidates end to end, compare models"
    )
    p.add_argument("--table", default=None, help="with --check: an existing table (default: profile first)")
    p.add_argument(
        "--candidates", type=_positive_int, default=20, help="with --check: candidates (default 20)"
    )
    p.add_argument(
        "--calibrate",
        type=int,
        default=None,
        help="whole candidates timed with the ops, whose median excess over the table's sum becomes "
        "its run overhead (default 10; 0: none; not with --table)",
    )
    p.add_argument("--seed", type=int, default=0, help="with --check: candidate sampling seed (default 0)")
    p.add_argument("--check-output", default=None, help="check JSON (default: check-SPACE-BACKEND.json)")
    p.add_argument(
        "--export", default=None, help="instead: time the parts of an export folder (nasopt export)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "serve-part", help="serve one device's part of an export over TCP (run-split drives it)"
    )
    p.add_argument("export_dir", help="the folder `nasopt export` wrote (manifest.json and the parts)")
    p.add_argument("--device", required=True, help="the device of the manifest to serve")
    p.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default 127.0.0.1:0: any free port)"
    )

    p = sub.add_parser(
        "run-split", help="run an export's parts as one process per device over TCP; measured vs predicted"
    )
    p.add_argument("export_dir", help="the folder `nasopt export` wrote (manifest.json and the parts)")
    p.add_argument(
        "--runs", type=_positive_int, default=20, help="timed inferences (default 20; the median is reported)"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed inferences first (default 3)")
    p.add_argument("--batch", type=_positive_int, default=1, help="samples per inference (default 1)")
    p.add_argument(
        "--bandwidth-from-objective",
        action="store_true",
        help="pace every link at the objective's bandwidth and add its latency (recorded in the manifest)",
    )
    p.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="NAME=BPS",
        help="pace link NAME at BPS bits/s (k, M, G suffixes; repeatable; overrides the objective's)",
    )
    p.add_argument(
        "--latency", action="append", default=[], metavar="NAME=MS", help="add MS ms per message on link NAME"
    )
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="device NAME is already served there (`nasopt serve-part --listen`); others start locally",
    )
    p.add_argument(
        "--bind", default="127.0.0.1", help="host the locally started parts listen on (default 127.0.0.1)"
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the report as JSON to FILE ('-': stdout only)",
    )


def _serve_part(args: argparse.Namespace) -> int:
    from nasopt.deploy.serve_part import serve_part

    try:
        serve_part(Path(args.export_dir), args.device, args.listen)
    except KeyboardInterrupt:
        return 130
    return 0


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SpecError("expected NAME=VALUE", field=flag, value=item)
        out[name] = value
    return out


def _rate(text: str, flag: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise SpecError("not a number (k, M, G suffixes allowed)", field=flag, value=text) from None


def _run_split(args: argparse.Namespace) -> int:
    from nasopt.deploy.manifest import read_manifest
    from nasopt.deploy.runner import link_paces, run_split
    from nasopt.deploy.serve_part import parse_address

    export_dir = Path(args.export_dir)
    manifest = read_manifest(export_dir / "manifest.json")
    bandwidth = {k: _rate(v, "--link") for k, v in _pairs(args.link, "--link").items()}
    latency = {k: _rate(v, "--latency") for k, v in _pairs(args.latency, "--latency").items()}
    remote = {k: parse_address(v, "--device") for k, v in _pairs(args.device, "--device").items()}
    if args.warmup < 0:
        raise SpecError("must be at least 0", field="--warmup", value=args.warmup)
    paces = link_paces(
        manifest, from_objective=args.bandwidth_from_objective, bandwidth_bps=bandwidth, latency_ms=latency
    )
    try:
        rep = run_split(
            export_dir,
            runs=args.runs,
            warmup=args.warmup,
            batch=args.batch,
            paces=paces,
            remote=remote,
            bind_host=args.bind,
        )
    except KeyboardInterrupt:
        raise _Interrupted("interrupted; every part process it started was stopped") from None
    doc = json.dumps(rep.to_dict(), indent=2)
    if args.json == "-":
        print(doc)
        return 0
    print(rep.format())
    if args.json:
        Path(args.json).write_text(doc + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from nasopt.deploy import save_subnet, validation_accuracy
    from nasopt.deploy.trials import study_trial
    from nasopt.study.storage import open_storage

    st = study_trial(open_storage(args.storage, must_exist=True), args.study_name, args.trial)
    sub, est = st.extract(Path.cwd())
    out = Path(args.output or f"{args.study_name}-trial{args.trial}.pt")
    if not out.parent.is_dir():
        raise SpecError("the output file's folder does not exist", field="-o", value=str(out))
    acc = validation_accuracy(sub, est)
    meta = {"study": args.study_name, "trial": args.trial, "accuracy:extracted": acc}
    save_subnet(sub, out, meta)
    params = sum(p.numel() for p in sub.parameters())
    print(f"wrote {out} and {out.with_suffix('.json')} ({params:,} parameters, copied from the supernet)")
    supernet = est.evaluate(st.candidate)
    print(f"validation accuracy of the extracted model: {acc:.4f} (supernet, no packet loss: {supernet:.4f})")
    stored = st.trial.user_attrs.get("accuracy")
    if stored is not None:
        print(f"stored trial accuracy (at the objective's loss rate): {stored:.4f}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from nasopt.deploy.export import export_parts
    from nasopt.deploy.trials import study_trial
    from nasopt.study.pareto import table
    from nasopt.study.storage import open_storage

    st = study_trial(open_storage(args.storage, must_exist=True), args.study_name, args.trial)
    sub, est = st.extract(Path.cwd())
    sample = est.data.val_x[: args.samples]
    m = export_parts(sub, st.system, Path(args.output), sample, study=args.study_name, trial=args.trial)
    parts = [
        {
            "device": p.device,
            "role": p.role,
            "onnx": p.onnx.path if p.onnx else "",
            "inputs": " ".join(f"{i.name}:{i.dtype}" for i in p.inputs),
            "outputs": " ".join(f"{o.name}:{o.dtype}" for o in p.outputs),
            "compute_ms": p.predicted_compute_ms,
        }
        for p in m.parts
    ]
    print(table(parts, list(parts[0])))
    if m.links:
        links = [
            {
                "link": f"{link.name} ({link.src}->{link.dst})",
                "bits": link.bits,
                "bytes/sample": link.bytes_per_sample,
                "predicted_bytes": link.predicted_bytes,
                "transfer_ms": link.predicted_transfer_ms,
            }
            for link in m.links
        ]
        print()
        print(table(links, list(links[0])))
    v = m.verification
    print(
        f"\nverified: the parts run in order with onnxruntime reproduce the model on {v.samples} "
        f"validation images, max |error| {v.max_abs_error:.2e} "
        f"(TorchScript {v.torchscript_max_abs_error:.2e}) <= {v.tolerance:.2e}"
    )
    print(f"wrote {Path(args.output) / 'manifest.json'} (execution order: {' -> '.join(m.execution_order)})")
    return 0


def _retrain_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise SpecError("must be comma-separated trial numbers", field="--trials", value=text) from None
    if not numbers:
        raise SpecError("no trial numbers given", field="--trials", value=text)
    return numbers


def _retrain(args: argparse.Namespace) -> int:
    from nasopt.deploy.retrain import retrain, store_result
    from nasopt.deploy.trials import study_trial
    from nasopt.presets import load_study
    from nasopt.spec import RetrainSpec
    from nasopt.study.lifecycle import load
    from nasopt.study.pareto import front
    from nasopt.study.storage import open_storage

    storage = open_storage(args.storage, must_exist=True)
    study, resolved = load(storage, args.study_name)
    source = load_study(args.spec) if args.spec else resolved.study
    config = source.retrain or RetrainSpec()
    numbers = [t.number for t in front(study)] if args.front else _retrain_numbers(args.trials)
    if not numbers:
        raise SpecError("the study has no feasible Pareto-optimal trial", field="--front")
    trials = [study_trial(storage, args.study_name, n) for n in numbers]  # all checked before training
    rows = []
    for st in trials:
        loss_rate = max((link.loss_rate for link in st.system.links.values()), default=0.0)
        result = retrain(
            st.estimator(Path.cwd()), st.candidate, config, loss_rate=loss_rate, progress=not args.no_progress
        )
        store_result(study, st.trial.number, result, config)
        rows.append(
            {
                "trial": st.trial.number,
                "accuracy:supernet": result.supernet_accuracy,
                "accuracy:retrained": result.accuracy,
                "mode": config.mode,
                "epochs": config.epochs,
                "seconds": result.seconds,
                "reused": not result.trained,
            }
        )
    from nasopt.study.pareto import table

    print(table(rows, list(rows[0])))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from nasopt.deploy.profile import check_backend, objective_snippet
    from nasopt.deploy.profile_check import (
        check_predictions,
        profile_and_check,
        summary_rows,
        time_export,
        write_check,
    )
    from nasopt.presets import load_space
    from nasopt.study.pareto import table

    backend = check_backend(args.backend)
    opts = {
        "backend": backend,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": args.threads,
        "clock": args.clock,
        "statistic": args.statistic,
    }
    if args.export:
        doc = time_export(Path(args.export), **opts)
        print(table(doc["parts"], ["device", "measured_ms", "predicted_compute_ms"]))
        print(f"\nall parts in order (no transfer): {doc['sequential_ms']:.4g} ms measured on this machine")
        return 0
    if args.space is None:
        raise SpecError(
            "a search space is needed", field="--space", allowed="a preset name or path, or --export DIR"
        )
    spec = load_space(args.space)
    check_opts = {"seed": args.seed, "rounds": args.rounds, "progress": not args.no_progress, **opts}
    check_doc: dict[str, Any] | None
    if args.table is None:
        out = Path(args.output or f"profile-{spec.name}-{backend}.json")
        calibrate = 10 if args.calibrate is None else args.calibrate
        result, check_doc = profile_and_check(
            spec,
            out,
            candidates=args.candidates if args.check else 0,
            calibrate=calibrate,
            in_graph=not args.isolated,
            **check_opts,
        )
        print(
            f"wrote {out} ({len(result.times_ms)} op timings, ms, {args.statistic} of {args.repeats}) "
            "and its side file"
        )
        if result.calibration:
            print(
                f"calibrated on {calibrate} whole candidates: run overhead {result.run_overhead_ms:.4g} ms "
                f"(empty run {result.call_overhead_ms:.4g} ms, median excess "
                f"{result.calibration['offset_ms']:+.4g} ms)"
            )
        print(f"objective device: {objective_snippet(out, result.fits())}")
        if check_doc is None:
            return 0
    elif args.calibrate is not None:
        raise SpecError(
            "a table's calibration is measured when it is profiled", field="--calibrate", allowed="no --table"
        )
    elif not args.check:
        return 0
    else:
        check_doc = check_predictions(spec, Path(args.table), candidates=args.candidates, **check_opts)
    check_out = write_check(check_doc, Path(args.check_output or f"check-{spec.name}-{backend}.json"))
    rows = summary_rows(check_doc)
    print(table(rows, list(rows[0])))
    rate = check_doc["models"]["throughput"]["macs_per_s"]
    print(
        f"\n{check_doc['candidates']} candidates of {spec.name}, {backend}; throughput and linear fitted to "
        f"the table's op timings (least squares): {rate:.4g} MAC/s. Wrote {check_out}"
    )
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from nasopt.study.storage import open_storage
    from nasopt.views.dashboard import register_all, serve
    from nasopt.views.figures import resolve_view

    storage = open_storage(args.storage, must_exist=True)
    resolve_view(args.view)  # a bad view fails before anything is served
    if not args.no_register:
        names = register_all(storage, args.view, progress=not args.no_progress)
        print(f"registered figures and notes for: {', '.join(names) or '(no nasopt study with trials)'}")

    def ready(port: int) -> None:
        print(
            f"optuna-dashboard serving {args.storage or 'sqlite:///nasopt.db'} on http://{args.host}:{port}/"
        )
        print("press Ctrl-C to stop", flush=True)

    serve(args.storage or "sqlite:///nasopt.db", args.host, args.port, ready=ready)
    return 0


def _report(args: argparse.Namespace) -> int:
    from nasopt.study.storage import open_storage
    from nasopt.views.report import report_html

    check = None
    if args.check:
        from nasopt.deploy.profile_check import read_check

        check = read_check(Path(args.check))
    storage = open_storage(args.storage, must_exist=True)
    text = report_html(storage, args.study_name, args.view, progress=not args.no_progress, check=check)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise SpecError("the output file's folder does not exist", field="-o", value=args.output)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text) / 1e6:.1f} MB, self-contained)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from nasopt.presets import resolve
    from nasopt.study.lifecycle import load
    from nasopt.study.pareto import accuracy_note, estimator_name
    from nasopt.study.storage import open_storage
    from nasopt.study.sweep import (
        apply_sets,
        parse_threshold,
        render_points,
        run_threshold_sweep,
        sweep_from_study,
        sweep_notes,
        threshold_studies,
    )

    key, values = parse_threshold(args.threshold)
    if args.from_front:
        if args.study_name is None:
            raise SpecError("--from-front needs --study-name", field="--study-name")
        storage = open_storage(args.storage, must_exist=True)
        study, resolved = load(storage, args.study_name)
        resolved = apply_sets(resolved, args.set)
        points = sweep_from_study(study, resolved, key, values, reevaluate=bool(args.set))
        print(f"best accuracy vs {key} from the {len(study.trials)} trials of {args.study_name}:")
        print(accuracy_note(estimator_name(resolved.study)))
        print(render_points(key, points))
        for line in sweep_notes(key, points, from_one_study=True):
            print(line)
        return 0
    if args.study is None:
        raise SpecError("give a study preset, or --from-front --study-name N", field="study")
    base = apply_sets(resolve(args.study), args.set)
    studies = threshold_studies(base, key, values, args.set)  # all checked before anything is written
    print(accuracy_note(estimator_name(base.study)))
    points = run_threshold_sweep(
        args.storage,
        studies,
        key,
        n_trials=args.n_trials,
        workers=args.workers,
        show_progress=not args.no_progress,
        prepare=lambda resolved: _prepare_accuracy(resolved, not args.no_progress),
    )
    print(f"best accuracy vs {key}:")
    print(render_points(key, points))
    for line in sweep_notes(key, points, from_one_study=False):
        print(line)
    return 0


def _init(target: str, force: bool) -> int:
    """Copy every bundled preset into TARGET/<kind folder>/, so it can be edited and run there
    (presets in the working directory's folders take precedence over the bundled ones)."""
    import shutil

    from nasopt.spec import KIND_FOLDERS, preset_dirs

    root = Path(target)
    if root.exists() and not root.is_dir():
        raise SpecError("exists and is not a folder", field="DIR", value=target)
    copies: list[tuple[Path, Path]] = []
    for kind, folder in KIND_FOLDERS.items():
        seen: set[str] = set()
        for d in preset_dirs(kind):
            if d.resolve() == (root / folder).resolve():
                continue
            for src in sorted(d.glob("*.toml")):
                if src.name not in seen:
                    seen.add(src.name)
                    copies.append((src, root / folder / src.name))
    clash = [str(dst) for _, dst in copies if dst.exists()]
    if clash and not force:
        raise SpecError(
            f"{len(clash)} preset file(s) already there, e.g. {clash[0]}; pass --force to overwrite",
            field="DIR",
            value=target,
        )
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    print(f"copied {len(copies)} presets into {root}/ ({', '.join(KIND_FOLDERS.values())})")
    print(f"next: cd {root} && nasopt validate studies && nasopt run quickstart --quick")
    return 0


def _validate(paths: list[str]) -> int:
    from nasopt.presets import load_preset
    from nasopt.spec import detect_kind

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(path.glob("*.toml"))
        elif path.is_file():
            files.append(path)
        else:
            raise SpecError("no such file or folder", file=raw)
    if not files:
        raise SpecError("no .toml files found", file=" ".join(paths))
    for path in files:
        kind = detect_kind(path)
        if kind == "study":
            from nasopt.presets import resolve
            from nasopt.study.lifecycle import check_study

            resolved = resolve(str(path))
            try:
                check_study(resolved)  # the checks `nasopt run` makes before its first trial
            except SpecError as exc:
                raise exc.in_file(str(path)) from None
        else:
            spec = load_preset(kind, str(path))
            if kind == "objective":
                from nasopt.study.objective import check_metrics

                try:
                    check_metrics(spec)
                except SpecError as exc:
                    raise exc.in_file(str(path)) from None
        print(f"ok  {kind:<9} {path}")
    return 0


def _describe(args: argparse.Namespace) -> int:
    from nasopt.describe import describe, render_table
    from nasopt.presets import load_objective, load_space

    doc = describe(load_space(args.space), load_objective(args.objective), args.candidate)
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(doc))
    return 0


def _presets() -> int:
    from nasopt.spec import KIND_FOLDERS, preset_names

    for kind, folder in KIND_FOLDERS.items():
        print(f"{folder}: {', '.join(preset_names(kind)) or '(none)'}")
    return 0


def _sampler_override(name: str | None, base: object) -> SamplerSpec | None:
    if name is None:
        return None
    from nasopt.spec import SamplerSpec, parse_spec
    from nasopt.study.lifecycle import make_sampler

    name, _, raw = name.partition(":")
    try:
        options = (
            json.loads(raw)
            if raw
            else dict(getattr(base, "options", {}) if getattr(base, "name", None) == name else {})
        )
    except json.JSONDecodeError as exc:
        raise SpecError(f"sampler options are not JSON: {exc}", field="--sampler", value=raw) from None
    if not isinstance(options, dict):
        raise SpecError("sampler options must be a JSON object", field="--sampler", value=raw)
    doc = {"name": name, "seed": getattr(base, "seed", None), "options": options}
    try:
        spec = parse_spec(SamplerSpec, doc, "")
    except SpecError as exc:
        raise SpecError(
            exc.detail, field=f"--sampler {exc.field}", value=exc.value, allowed=exc.allowed
        ) from None
    make_sampler(spec)  # validates the name and options before anything is written
    return spec


def _print_front(
    study: object,
    storage_url: str | None,
    study_name: str,
    spec_ref: str,
    sampler: str | None = None,
    quick: bool = False,
) -> None:
    import shlex

    from nasopt.study.pareto import accuracy_note, front, render, rows, study_estimator
    from nasopt.study.storage import DEFAULT_STORAGE
    from nasopt.study.tree_objective import best_tree_summary

    trials = front(study, feasible_only=True)  # type: ignore[arg-type]
    n = len(study.trials)  # type: ignore[attr-defined]
    tree = best_tree_summary(study)  # type: ignore[arg-type]
    if tree is not None:
        print(f"\n{tree}")
        print(accuracy_note(study_estimator(study)))  # type: ignore[arg-type]
    elif trials:
        print(f"\nPareto front of {study_name} ({len(trials)} of {n} trials, feasible only):")
        print(accuracy_note(study_estimator(study)))  # type: ignore[arg-type]
        print(render(rows(study, trials), "table"))  # type: ignore[arg-type]
    else:
        print(f"\nNo feasible trial yet among {n}: every trial violates a constraint (see `nasopt pareto`).")
    url, name = shlex.quote(storage_url or DEFAULT_STORAGE), shlex.quote(study_name)
    also = (" --quick" if quick else "") + (f" --sampler {shlex.quote(sampler)}" if sampler else "")
    print(
        f"\nResume or extend:  nasopt run {shlex.quote(spec_ref)} --storage {url} --study-name {name}"
        f"{also} --n-trials N"
    )
    print(f"Another worker:    nasopt worker --study-name {name} --storage {url}")
    print(f"Dashboard:         nasopt dashboard --storage {url}")
    print(f"Report:            nasopt report --study-name {name} --storage {url} -o report.html")


def _prepare_accuracy(resolved: ResolvedStudy, progress: bool, retrain: bool = False) -> None:
    """Train the study's supernet once, before any worker starts (each then loads it)."""
    from nasopt.accuracy.supernet import prepare_study

    r = resolved
    try:
        result = prepare_study(r.study, r.space, r.objective, progress=progress, retrain=retrain)
    except KeyboardInterrupt:
        raise _Interrupted(
            "interrupted during supernet training, before any trial ran (no study was created or "
            "changed); run the same command again: training resumes from its last checkpoint "
            f"(written every {_checkpoint_every(r)} steps and after each epoch)"
        ) from None
    from nasopt.accuracy.supernet import _dist

    if result is not None and _dist.is_main():
        what = "trained" if result.trained else "reusing"
        print(f"supernet: {what} {result.path} ({result.seconds:.0f} s of training)", file=sys.stderr)


def _train_supernet(args: argparse.Namespace) -> int:
    from nasopt.presets import resolve

    resolved = resolve(args.study)
    if resolved.study.accuracy.estimator != "supernet":
        raise SpecError(
            "this study does not use the supernet estimator", field="accuracy.estimator", allowed="supernet"
        )
    from nasopt.accuracy.supernet import _dist

    batch = resolved.study.accuracy.batch_size
    ranks = os.environ.get("WORLD_SIZE", "").strip()
    if args.nproc is not None:
        _dist.check_world(batch, args.nproc, "--nproc")
        if ranks and int(ranks) != args.nproc:
            raise SpecError(
                f"--nproc {args.nproc} differs from WORLD_SIZE={ranks} (set by torchrun); drop --nproc",
                field="--nproc",
            )
        if not ranks and args.nproc > 1:
            from nasopt.accuracy.supernet._launch import launch

            forwarded = ["train-supernet", args.study]
            forwarded += ["--retrain"] * args.retrain + ["--no-progress"] * args.no_progress
            return launch(args.nproc, forwarded)
    try:
        _dist.init_from_env()
        _prepare_accuracy(resolved, not args.no_progress, args.retrain)
    finally:
        _dist.shutdown()
    return 0


def _run(args: argparse.Namespace) -> int:
    from nasopt.presets import resolve
    from nasopt.spec import resolve_preset
    from nasopt.study.lifecycle import check_study, create_or_resume, remaining_budget, run_workers
    from nasopt.study.storage import open_storage, study_names

    resolved = resolve(args.study)
    if args.quick:
        resolved = quick_variant(resolved)
    print(run_plan(resolved, quick=args.quick), flush=True)  # stdout: an error stays one stderr line
    sampler = _sampler_override(args.sampler, resolved.study.sampler)
    try:
        check_study(resolved, sampler)  # everything checked before anything is written or trained
    except SpecError as exc:
        raise exc.in_file(str(resolve_preset("study", args.study))) from None
    _prepare_accuracy(resolved, not args.no_progress)
    with no_empty_storage_left(args.storage):
        storage = open_storage(args.storage)
        name = args.study_name or resolved.study.name
        resuming = name in study_names(storage)
        study = create_or_resume(resolved, storage, args.study_name)
    if sampler is not None and sampler != resolved.study.sampler:
        _announce_sampler(sampler, resolved.study.sampler, resuming)
    budget = None if args.n_trials is not None else resolved.study.n_trials
    n = args.n_trials if args.n_trials is not None else remaining_budget(study, resolved)
    if n == 0:
        done = resolved.study.n_trials
        print(f"study {study.study_name} already has its {done} trials; use --n-trials N for more")
    else:
        run_workers(
            args.storage,
            study.study_name,
            n,
            args.workers,
            timeout_s=args.timeout,
            sampler=sampler,
            show_progress=not args.no_progress,
            budget=budget,
        )
    _print_front(study, args.storage, study.study_name, args.study, args.sampler, quick=args.quick)
    return 0


def _announce_sampler(sampler: object, stored: object, resuming: bool) -> None:
    """One line on stderr when `--sampler` differs from the spec's: the change is recorded in
    the study (user attrs `nasopt:sampler`, `nasopt:sampler_changes`), not silent."""
    new, old = getattr(sampler, "name", "?"), getattr(stored, "name", "?")
    what = f"{new} {getattr(sampler, 'options', {}) or ''}".strip()
    where = "this study's spec" if resuming else "the spec"
    print(
        f"sampler: running with {what} instead of {where}'s {old}; recorded in the study "
        "(nasopt:sampler_changes); resume with the same --sampler to keep it",
        file=sys.stderr,
    )


def _worker(args: argparse.Namespace) -> int:
    from nasopt.study.lifecycle import check_study, load, remaining_budget, run_workers
    from nasopt.study.storage import open_storage

    storage = open_storage(args.storage, must_exist=True)
    study, resolved = load(storage, args.study_name)
    check_study(resolved)
    _prepare_accuracy(resolved, not args.no_progress)
    budget = None if args.n_trials is not None else resolved.study.n_trials
    n = args.n_trials if args.n_trials is not None else remaining_budget(study, resolved)
    if n:
        run_workers(
            args.storage,
            args.study_name,
            n,
            1,
            timeout_s=args.timeout,
            show_progress=not args.no_progress,
            budget=budget,
        )
    print(f"worker done: study {args.study_name} has {len(study.trials)} trials")
    return 0


def _studies(args: argparse.Namespace) -> int:
    import optuna

    from nasopt.study.storage import open_storage

    storage = open_storage(args.storage, must_exist=True)
    summaries = optuna.get_all_study_summaries(storage=storage, include_best_trial=False)
    if not summaries:
        print("(no studies)")
        return 0
    from nasopt.study.pareto import front, table

    data = []
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
        attrs = study.user_attrs
        data.append(
            {
                "study": s.study_name,
                "space": attrs.get("nasopt:space", "-"),
                "objective": attrs.get("nasopt:objective", "-"),
                "sampler": attrs.get("nasopt:sampler", "-"),
                "accuracy": attrs.get("nasopt:accuracy_estimator", "-"),
                "objectives": ", ".join(
                    f"{'min' if d.name == 'MINIMIZE' else 'max'} {n}"
                    for n, d in zip(names, study.directions, strict=True)
                ),
                "trials": sum(counts.values()),
                "states": " ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                "front": len(front(study)),
            }
        )
    print(table(data, list(data[0])))
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from nasopt.study.baselines import baseline_rows, load_baselines
    from nasopt.study.lifecycle import load
    from nasopt.study.pareto import accuracy_note, front, render, rows, study_estimator
    from nasopt.study.storage import open_storage

    storage = open_storage(args.storage, must_exist=True)
    study, _ = load(storage, args.study_name)
    trials = front(study, feasible_only=args.feasible_only)
    if not trials and not args.with_baselines:
        what = "feasible " if args.feasible_only else ""
        print(f"no {what}Pareto-optimal trial among {len(study.trials)} trials", file=sys.stderr)
        return 1
    note = accuracy_note(study_estimator(study))
    # the table is for people (note on stdout); CSV/JSON are for programs (note on stderr,
    # and every row carries its `accuracy_estimator`)
    print(note, file=sys.stdout if args.format == "table" else sys.stderr)
    data = rows(study, trials, detail=args.format != "table")
    if args.with_baselines:
        stored = load_baselines(study)
        if stored is None:
            print(
                f"no baselines stored for {args.study_name}: run `nasopt baselines {args.study_name}`",
                file=sys.stderr,
            )
        else:
            data = [{"baseline": "", "label": "", **row} for row in data]
            data += baseline_rows(study, stored, nominal_only=True)
    print(render(data, args.format))
    return 0


def _float_list(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SpecError("must be comma-separated numbers", field=option, value=text) from None
    if not values or any(not v > 0 for v in values):
        raise SpecError("must be positive numbers", field=option, value=text, allowed="e.g. 0.1,1,10")
    return values


def _baselines(args: argparse.Namespace) -> int:
    from nasopt.study.baselines import baseline_table, ensure_baselines
    from nasopt.study.lifecycle import load
    from nasopt.study.pareto import render
    from nasopt.study.storage import open_storage

    scales = _float_list(args.bandwidth_scales, "--bandwidth-scales")
    storage = open_storage(args.storage, must_exist=True)
    study, resolved = load(storage, args.study_name)
    _prepare_accuracy(resolved, progress=False)  # the study's supernet: trained once, or reused
    baselines, computed = ensure_baselines(
        study,
        resolved,
        recompute=args.recompute,
        reference=args.reference,
        bandwidth_scales=scales,
        nas_trials=args.nas_trials,
        nas_device=args.nas_device,
        with_nas_then_split=not args.no_nas_then_split,
    )
    if args.format != "table":
        print(render(baseline_table(study, baselines, arch_chars=None), args.format))
        return 0
    data = baseline_table(study, baselines)
    how = "computed and stored" if computed else f"stored {baselines.created}, --recompute to rebuild"
    estimator = study.user_attrs.get("nasopt:accuracy_estimator", "?")
    print(f"Baselines of {args.study_name} ({how}; accuracy: {estimator})")
    print(f"reference network: {baselines.reference}")
    print(render(data, "table"))
    for name, why in baselines.skipped.items():
        print(f"{name}: not applicable here: {why}")
    print(
        "study_best_ms: least latency of a feasible trial of the study at least as accurate "
        "(empty: none is); dynamic-surgery rows other than x1 are on a system with scaled links"
    )
    return 0


def _front(args: argparse.Namespace) -> int:
    import numpy as np

    from nasopt.presets import load_objective, load_space, resolve
    from nasopt.spec import StudySpec
    from nasopt.study.exact_front import exact_front
    from nasopt.study.objective import NasObjective, arch_string

    if len(args.presets) == 1:
        resolved = resolve(args.presets[0])
        study, space, objective_spec = resolved.study, resolved.space, resolved.objective
    elif len(args.presets) == 2:
        space, objective_spec = load_space(args.presets[0]), load_objective(args.presets[1])
        study = StudySpec(
            name=f"{space.name}.{objective_spec.name}", space=space.name, objective=objective_spec.name
        )
    else:
        raise SpecError("give a study preset, or a search space and an objective", field="PRESET")
    objective = NasObjective(study, space, objective_spec)
    size = objective.space.size()
    if not args.no_progress and size <= args.max_candidates:
        print(f"enumerating {size:,} candidates of {space.name} on {objective_spec.name}", file=sys.stderr)
    front = exact_front(
        objective, chunk=args.chunk, max_candidates=args.max_candidates, progress=not args.no_progress
    )
    if args.output:
        out = Path(args.output)
        if not out.parent.is_dir():
            raise SpecError("the output file's folder does not exist", field="-o", value=args.output)
        front.save(out)
    if args.format == "json":
        print(json.dumps(front.to_json(), indent=1))
        return 0
    print(
        f"exact front of {front.space} on {front.objective} ({objective.estimator.name} accuracy):"
        f" {len(front)} non-dominated of {front.n_feasible:,} feasible of {front.n_candidates:,}"
        f" candidates in {front.seconds:.1f} s"
    )
    names = front.metric_names
    print("  ".join(f"{n:>12}" for n in names) + "  arch")
    for i in np.lexsort(front.values.T[::-1]):
        values = "  ".join(f"{v:>12.6g}" for v in front.values[i])
        print(f"{values}  {arch_string(objective.space, front.candidates[i])}")
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _storage_proxy(args: argparse.Namespace) -> int:
    from nasopt.study.storage import proxy_server

    server = proxy_server(args.storage, host=args.host, port=args.port, threads=args.threads)
    print(f"storage proxy for {args.storage} on grpc://{args.host}:{args.port}", flush=True)
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=2)
    return 0


_COMMANDS = {
    "init": lambda a: _init(a.dir, a.force),
    "validate": lambda a: _validate(a.paths),
    "describe": _describe,
    "presets": lambda a: _presets(),
    "run": _run,
    "worker": _worker,
    "train-supernet": _train_supernet,
    "studies": _studies,
    "pareto": _pareto,
    "baselines": _baselines,
    "sweep": _sweep,
    "dashboard": _dashboard,
    "report": _report,
    "front": _front,
    "storage-proxy": _storage_proxy,
    "extract": _extract,
    "export": _export,
    "retrain": _retrain,
    "profile": _profile,
    "serve-part": _serve_part,
    "run-split": _run_split,
}


# ------------------------------------------------------------------ command-line conventions
# Shared by every command: the run plan and --quick, the interruption messages, no empty
# storage file after a failed run, quiet exit on a closed pipe, no Optuna traceback on Ctrl-C.


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C with a message saying what state it left (main prints it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


QUICK_EPOCHS = 4
QUICK_TRIALS = 30


def quick_variant(resolved: ResolvedStudy) -> ResolvedStudy:
    """`nasopt run STUDY --quick`: the same study with a short supernet training and a small
    budget, under the name NAME-quick (its own checkpoint and study, so the full run is kept)."""
    from nasopt.spec import SupernetSpec
    from nasopt.study.sweep import apply_sets

    r = resolved
    sets = [f"study.name={r.study.name}-quick", f"study.n_trials={min(QUICK_TRIALS, r.study.n_trials)}"]
    accuracy = r.study.accuracy
    if isinstance(accuracy, SupernetSpec):
        sets.append(f"study.accuracy.epochs={min(QUICK_EPOCHS, accuracy.epochs)}")
        sets.append(f"study.accuracy.loss_warmup_epochs={min(1.0, accuracy.loss_warmup_epochs)}")
    return apply_sets(r, sets)


def run_plan(resolved: ResolvedStudy, *, quick: bool) -> str:
    """What `nasopt run` is about to do, printed before it starts (the bars give measured ETAs)."""
    from nasopt.spec import SupernetSpec

    r = resolved
    acc = r.study.accuracy
    n = r.study.n_trials
    if isinstance(acc, SupernetSpec):
        epochs = acc.epochs
        plan = (
            f"plan: train the supernet ({epochs} epochs; skipped when its checkpoint is cached), "
            f"then up to {n} trials. For the quickstart on 2 idle CPU cores that took 3.5 min "
            "(145 s of training); on a busy machine it takes much longer (README). An estimate "
            "measured on this machine follows after the first steps; the bars show the ETA."
        )
    else:
        plan = f"plan: up to {n} trials with the {acc.estimator} accuracy estimator."
    if not quick:
        plan += " For a short try: add --quick."
    return plan


def _checkpoint_every(resolved: ResolvedStudy) -> int:
    from nasopt.spec import SupernetSpec

    accuracy = resolved.study.accuracy
    return accuracy.checkpoint_every if isinstance(accuracy, SupernetSpec) else 20


def _sqlite_file(url: str | None) -> Path | None:
    from nasopt.study.storage import DEFAULT_STORAGE

    url = url or DEFAULT_STORAGE
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///"))


def _has_studies(path: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(path) as con:
            return bool(con.execute("SELECT COUNT(*) FROM studies").fetchone()[0])
    except sqlite3.Error:  # no `studies` table: nothing was ever stored
        return False


class no_empty_storage_left:
    """A SQLite file created by a command that then fails, holding no study, is removed: a
    failed `nasopt run` leaves no empty `.db` behind."""

    def __init__(self, url: str | None) -> None:
        self.path = _sqlite_file(url)
        self.new = self.path is not None and not self.path.exists()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, *_: object) -> None:
        path = self.path
        failed = exc_type is not None and self.new and path is not None and path.exists()
        if failed and path is not None and not _has_studies(path):
            path.unlink()


def _quiet_optuna() -> None:
    """Optuna's per-trial INFO logs and experimental-feature warnings drown the progress bar;
    its traceback of a trial stopped by Ctrl-C says nothing the user does not know."""
    import warnings

    import optuna

    from nasopt.study.interrupts import drop_interrupt_tracebacks

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    drop_interrupt_tracebacks()


def _closed_pipe() -> int:
    """`nasopt ... | head`: the reader went away; stop quietly (Python would report the
    BrokenPipeError again when it flushes stdout at exit, so stdout goes to /dev/null)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command in (
        "run",
        "worker",
        "studies",
        "pareto",
        "baselines",
        "sweep",
        "dashboard",
        "report",
        "train-supernet",
        "storage-proxy",
        "extract",
        "export",
        "retrain",
    ):
        _quiet_optuna()
    try:
        return _COMMANDS[args.command](args)
    except SpecError as exc:
        print(f"nasopt: error: {exc}", file=sys.stderr)
        return 2
    except _Interrupted as exc:
        print(f"nasopt: {exc.message}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            "nasopt: interrupted; the running trial was marked FAIL, completed trials are kept "
            "(run the same command again to continue the study)",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        return _closed_pipe()


if __name__ == "__main__":
    sys.exit(main())
