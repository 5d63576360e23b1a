"""How far apart stand-alone subnets of a study's space land on its data: the accuracy spread that
any ranking of the space has to resolve.

Draws N subnets uniformly (the distribution a sampler proposes), trains each one stand-alone from
scratch with the study's data, batch size, optimiser, schedule and label smoothing
(`benchmarks/supernet_ranking.py`'s `standalone_accuracy`), and reports the accuracy range, its
spread in points (goal >= 10 on a data set meant to rank the quickstart's space), Kendall's tau
with MACs, and the retraining noise measured by training the first `--repeat` subnets again with
a second seed. The smallest and largest subnets are trained as well and reported apart.

    python benchmarks/standalone_spread.py --study studies/quickstart-textures.toml --subnets 12 \
        --epochs 8 --repeat 3 --jobs 2 --markdown benchmarks/textures_spread.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from nasopt.accuracy.supernet import SupernetAccuracy
from nasopt.core.system import build_system
from nasopt.presets import resolve
from nasopt.space import SearchSpace

sys.path.insert(0, str(Path(__file__).parent))
from analytic import machine
from supernet_ranking import draw_subnets, kept_notes, standalone_runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/quickstart-textures.toml")
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="retrain this many subnets with a second seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="stand-alone trainings run at a time")
    ap.add_argument("--calibration", type=int, default=32, help="BatchNorm recalibration batches")
    ap.add_argument("--markdown", default=None, help="write the report here, raw numbers as .json")
    args = ap.parse_args(argv)
    command = "python benchmarks/standalone_spread.py " + " ".join(argv if argv is not None else sys.argv[1:])

    r = resolve(args.study)
    space = SearchSpace(r.space, build_system(r.objective))
    if dict(r.study.accuracy).get("estimator") != "supernet":
        raise SystemExit(f"{args.study}: [accuracy] estimator must be 'supernet' (it names the data)")
    cfg = SupernetAccuracy(space, dict(r.study.accuracy)).config
    drawn = draw_subnets(space, args.subnets, args.seed, spread=False)
    cands = [*drawn, space.smallest(), space.largest()]
    t0 = time.perf_counter()
    runs = standalone_runs(args.study, cands, args.epochs, 1, args.seed, args.jobs, args.calibration)
    again = standalone_runs(
        args.study, drawn[: args.repeat], args.epochs, 1, args.seed, args.jobs, args.calibration, first_seed=1
    )
    wall = time.perf_counter() - t0
    acc = [per[0][0] for per in runs]
    secs = [per[0][1] for per in runs]
    rep = [per[0][0] for per in again]
    macs = [space.network(c).macs for c in cands]
    uni, uni_macs = acc[: args.subnets], macs[: args.subnets]
    spread = (max(uni) - min(uni)) * 100
    noise = [abs(a - b) * 100 for a, b in zip(uni, rep, strict=False)]
    lines = [
        "# Stand-alone accuracy spread of uniformly drawn subnets",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; torch {torch.__version__}, {args.jobs} training(s) at a time; "
        f"{wall / 60:.1f} min in all.",
        "",
        f"Study `{args.study}`: space `{r.space.name}`, dataset `{cfg.dataset}` "
        f"({cfg.samples} samples, val_fraction {cfg.val_fraction}), batch {cfg.batch_size}, lr {cfg.lr}, "
        f"{args.epochs} epochs per subnet, BatchNorm recalibrated on {args.calibration} training "
        "batches, top-1 on the whole validation split.",
        "",
        f"- {args.subnets} uniformly drawn subnets ({min(uni_macs) / 1e6:.2f}-"
        f"{max(uni_macs) / 1e6:.2f} MMACs): accuracy **{min(uni):.3f}-{max(uni):.3f}**, spread "
        f"**{spread:.1f} points** (goal >= 10: {'met' if spread >= 10 else 'NOT met'}); standard "
        f"deviation {statistics.pstdev(uni) * 100:.1f} points",
        f"- Smallest subnet ({macs[-2] / 1e6:.2f} MMACs): {acc[-2]:.3f}; largest "
        f"({macs[-1] / 1e6:.2f} MMACs): {acc[-1]:.3f}; chance {1 / space.spec.num_classes:.3f}",
        f"- Kendall tau between MACs and accuracy over the drawn subnets: "
        f"**{kendalltau(uni_macs, uni).statistic:.3f}**",
    ]
    if noise:
        lines.append(
            f"- Retraining noise: the first {len(noise)} subnets retrained with a second seed differ by "
            f"{', '.join(f'{d:.1f}' for d in noise)} points (mean {statistics.mean(noise):.1f})"
        )
    lines += [
        f"- Median training time per subnet: {statistics.median(secs):.0f} s",
        "",
        "| subnet | MMACs | accuracy | second seed | s |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, a in enumerate(acc):
        name = str(i) if i < args.subnets else ("smallest" if i == args.subnets else "largest")
        second = f"{rep[i]:.3f}" if i < len(rep) else ""
        lines.append(f"| {name} | {macs[i] / 1e6:.2f} | {a:.3f} | {second} | {secs[i]:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        out = Path(args.markdown)
        out.write_text(text + kept_notes(out))
        raw = {
            "command": command,
            "candidates": [c.to_dict() for c in cands],
            "epochs": args.epochs,
            "accuracy": acc,
            "second_seed": rep,
            "macs": macs,
            "seconds": secs,
        }
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
