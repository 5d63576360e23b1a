"""Does every seed space's supernet train? One small supernet per space, scored over random subnets.

For each seed search space (the quickstart's mbconv-quick, NASC's FBNet space at its 32x32 input,
JMSNAS's full op set with its no-shortcut MBConvs, SplitNets' multi-view space, Wang et al.'s
VGG11 with and without compression actions) this trains a small weight-sharing supernet on the
bundled synthetic `shapes` set (10 classes; one camera, or one per view for the multi-view space),
then scores `--subnets` uniformly drawn subnets on the held-out split (BatchNorm recalibrated per
subnet) and reports their accuracy range against chance (1 / 10). A space counts as **clearly
above chance** when even its worst drawn subnet scores at least twice chance.

Budget, so that the whole run fits about an hour on 2 shared CPU cores: 2,400 images (a
quarter held out), 3-4 epochs (fbnet-nasc 6); spaces whose largest subnet costs over 50 MMACs
train one random subnet per step (`uniform`) instead of the sandwich. Two spaces mix op types or
shortcuts within a layer and train with the sandwich and block-wise distillation
(`block_distill`): vgg11-compress (6 epochs) and mbconv-jmsnas-quick (16 epochs, ~10 min).
splitnets-multiview-32 (12 views, up to 4.2 GMACs a sample) is cut to 4 views at 16x16 with the
4-sensor objective, fused only after each MB stage, and trains with the sandwich; every other
space runs as shipped. `--merge` reruns the `--only` rows and
keeps the others from the report's JSON, each row with the command and machine that produced it.

    python benchmarks/supernet_spaces.py --markdown benchmarks/supernet_spaces.md
    python benchmarks/supernet_spaces.py --only mbconv-jmsnas-quick   # one row, printed
    python benchmarks/supernet_spaces.py --only fbnet-nasc --markdown benchmarks/supernet_spaces.md --merge
    python benchmarks/supernet_spaces.py --only vgg11-compress --set epochs=12   # another budget
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from nasopt.accuracy.supernet import SupernetAccuracy
from nasopt.core.system import build_system
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import SearchSpaceSpec

sys.path.insert(0, str(Path(__file__).parent))
from analytic import machine
from supernet_ranking import kept_notes

BASE: dict[str, Any] = {
    "estimator": "supernet",
    "dataset": "shapes",
    "samples": 2400,
    "val_fraction": 0.25,
    "sampling": "sandwich",
    "random_subnets": 1,
    "epochs": 4,
    "batch_size": 32,
    "lr": 0.003,
    "warmup_epochs": 0.5,
    "label_smoothing": 0.1,
    "loss_rates": [0.0],
    "calibration_batches": 8,
    "val_samples": 0,
}
HEAVY = {"sampling": "uniform", "epochs": 3}


@dataclass
class Row:
    """One space's supernet: the preset names, what differs from BASE, and why."""

    label: str
    space: str
    objective: str
    options: dict[str, Any] = field(default_factory=dict)
    views: int | None = None  # multi-view: cut to this many views ...
    px: int | None = None  # ... at this input size
    fusion_points: list[int] | None = None  # multi-view: fuse only after these layers
    note: str = ""


ROWS = [
    Row("mbconv-quick", "mbconv-quick", "jmsnas-chain"),
    Row(
        "fbnet-nasc",
        "fbnet-nasc",
        "nasc-raspi-edgegpu",
        {**HEAVY, "epochs": 6},  # 3 epochs: 0.065-0.233, median 0.19
        note="32x32, 100-way classifier",
    ),
    Row(
        "mbconv-jmsnas-quick",
        "mbconv-jmsnas-quick",
        "jmsnas-chain",
        # sandwich 4 epochs: 0.082-0.148; with block_distill 5: 0.123-0.173
        {"epochs": 16, "block_distill": 5.0},
        note="13 ops incl. no-shortcut, block-wise distillation",
    ),
    Row(
        "splitnets-multiview-32",
        "splitnets-multiview-32",
        "splitnets-hmd-4",
        # its supernet has 79 M parameters at 4 views. Fusing after any of the 37 layers left the
        # entry layer behind each fusion point nearly untrained: uniform 12 ep 0.163-0.232,
        # sandwich 4 ep 0.120-0.205; fusing after each MB stage (SplitNets' "block"): 0.210-0.448
        {"sampling": "sandwich", "epochs": 4, "max_params": 100_000_000},
        views=4,
        px=16,
        fusion_points=[2, 7, 13, 19, 27, 35, 37],
        note="4 of 12 views, 16x16, 40-way classifier",
    ),
    Row(
        "vgg11-compress",
        "vgg11-compress",
        "edge-cloud-4g",
        # uniform 3 epochs: 0.092-0.167; sandwich 6 epochs without block_distill: 0.090-0.157
        {"sampling": "sandwich", "epochs": 6, "block_distill": 5.0},
        note="per-layer op types, block-wise distillation",
    ),
    Row("vgg11-cifar", "vgg11-cifar", "edge-cloud-4g", HEAVY, note="one network: only the cut varies"),
]


def space_of(row: Row) -> SearchSpaceSpec:
    spec = load_space(row.space)
    update: dict[str, Any] = {}
    if row.px is not None:
        update["input"] = spec.input.model_copy(update={"height": row.px, "width": row.px})
    if row.views is not None and spec.fusion is not None:
        fusion: dict[str, Any] = {"views": row.views}
        if row.fusion_points is not None:
            fusion["points"] = row.fusion_points
        update["fusion"] = spec.fusion.model_copy(update=fusion)
    if update:
        update["name"] = f"{spec.name}-{row.views}v{row.px}px"
    return spec.model_copy(update=update)


def run_row(row: Row, subnets: int, seed: int, checkpoint_dir: str) -> dict[str, Any]:
    space = SearchSpace(space_of(row), build_system(load_objective(row.objective)))
    options = {**BASE, **row.options, "checkpoint_dir": checkpoint_dir}
    est = SupernetAccuracy(space, options)
    t = time.perf_counter()
    res = est.ensure_trained(progress=False)
    train_s = time.perf_counter() - t
    rng = random.Random(seed)
    cands = [space.sample(rng) for _ in range(subnets)]
    acc = [est.evaluate(c) for c in cands]
    macs = [space.network(c).macs for c in cands]
    chance = 1 / est.data.num_classes
    return {
        "label": row.label,
        "space": space.spec.name,
        "objective": row.objective,
        "note": row.note,
        "fusion_points": row.fusion_points,
        "options": {k: v for k, v in options.items() if k != "checkpoint_dir"},
        "train_s": res.seconds,  # the checkpoint's own record when it was reused
        "load_s": train_s,
        "trained": res.trained,
        "train_samples": len(est.data.train_y),
        "val_samples": len(est.data.val_y),
        "accuracy": acc,
        "macs": macs,
        "chance": chance,
        "above_chance": min(acc) >= 2 * chance,
    }


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| space | supernet training | train s | subnet MMACs | accuracy min-max (median) | chance "
        "| clearly above chance |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        o = r["options"]
        acc, macs = r["accuracy"], r["macs"]
        training = f"{o['sampling']}, {o['epochs']} ep, lr {o['lr']}, warm-up {o['warmup_epochs']}"
        if o.get("block_distill"):
            training += f", block distill {o['block_distill']}"
        note = r["note"] + (f", fused after layers {r['fusion_points']}" if r.get("fusion_points") else "")
        label = r["label"] + (f" ({note})" if note else "")
        lines.append(
            f"| {label} | {training} | {r['train_s']:.0f} | {min(macs) / 1e6:.1f}-{max(macs) / 1e6:.1f} | "
            f"{min(acc):.3f}-{max(acc):.3f} ({statistics.median(acc):.3f}) | {r['chance']:.2f} | "
            f"{'**yes**' if r['above_chance'] else 'no'} |"
        )
    return lines


def merged(path: Path, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an earlier report's JSON in ROWS order, the `fresh` ones replacing theirs;
    rows recorded before commands and machines were kept per row get the file's command."""
    raw = json.loads(path.read_text())
    by_label = {
        r["label"]: {"command": raw["command"], "machine": raw.get("machine", "?"), **r} for r in raw["rows"]
    }
    by_label.update({r["label"]: r for r in fresh})
    return [by_label[r.label] for r in ROWS if r.label in by_label]


def by_row(results: list[dict[str, Any]], key: str, title: str) -> list[str]:
    """`title: value`, or with several values one line per value naming its rows."""
    rows: dict[str, list[str]] = {}
    for r in results:
        rows.setdefault(r[key], []).append(r["label"])
    fmt = (lambda v: f"`{v}`") if key == "command" else str
    if len(rows) == 1:
        return [f"{title}: {fmt(next(iter(rows)))}"]
    return [f"{title}s:", *(f"- {fmt(v)}: {', '.join(labels)}" for v, labels in rows.items())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subnets", type=int, default=8, help="random subnets scored per space")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None, help="run only this row (repeatable)")
    ap.add_argument("--checkpoint-dir", default=".nasopt/benchmark-spaces")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override one [accuracy] option of every row run, e.g. --set epochs=12 (repeatable)",
    )
    ap.add_argument(
        "--fusion-points",
        type=lambda text: [int(p) for p in text.split(",")],
        default=None,
        metavar="L1,L2,...",
        help="multi-view rows: fuse only after these layers (default: the space's points)",
    )
    ap.add_argument("--markdown", default=None, help="write the report here, raw numbers as .json")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="with --only and --markdown: keep the report's other rows (its .json), each with its command",
    )
    args = ap.parse_args(argv)
    command = "python benchmarks/supernet_spaces.py " + " ".join(argv if argv is not None else sys.argv[1:])
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=JSON, e.g. epochs=12")
        overrides[key] = json.loads(value)
    rows = [r for r in ROWS if args.only is None or r.label in args.only]
    rows = [replace(r, options={**r.options, **overrides}) for r in rows]
    if args.fusion_points is not None:
        rows = [replace(r, fusion_points=args.fusion_points) if r.views else r for r in rows]
    results = []
    t0 = time.perf_counter()
    for row in rows:
        results.append(run_row(row, args.subnets, args.seed, args.checkpoint_dir))
        print("\n".join(table(results[-1:])[2:]), flush=True)
    wall = time.perf_counter() - t0
    host = machine()
    for r in results:
        r["command"], r["machine"] = command, host
    if args.merge:
        if not args.markdown:
            raise SystemExit("--merge needs --markdown (the report whose other rows are kept)")
        results = merged(Path(args.markdown).with_suffix(".json"), results)
    above = [r["label"] for r in results if r["above_chance"]]
    below = [r["label"] for r in results if not r["above_chance"]]
    lines = [
        "# Every seed space's supernet: accuracy of random subnets vs chance",
        "",
        *by_row(results, "command", "Command"),
        "",
        *by_row(results, "machine", "Machine"),
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s); "
        f"{wall / 60:.1f} min for the rows run by the last command.",
        "",
        f"Data: bundled `shapes` ({results[0]['train_samples']} training / {results[0]['val_samples']} "
        f"validation images, 10 classes). {args.subnets} uniformly drawn subnets per space (seed "
        f"{args.seed}), each scored on the whole validation split without packet loss after "
        f"BatchNorm recalibration on {BASE['calibration_batches']} training batches.",
        "",
        *table(results),
        "",
        f"Clearly above chance (worst drawn subnet >= 2x chance): {', '.join(above) or 'none'}. "
        f"Not: {', '.join(below) or 'none'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        out = Path(args.markdown)
        out.write_text(text + kept_notes(out))
        out.with_suffix(".json").write_text(
            json.dumps({"command": command, "rows": results}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
