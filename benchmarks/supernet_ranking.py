"""Supernet ranking quality and speed on a study's search space (default: the quickstart).

Trains the study's supernet (or reuses its cached checkpoint), draws N random subnets, trains
each one stand-alone from scratch (fresh weights, same data, batch size, optimiser, learning-rate
schedule and label smoothing as the supernet, `--standalone-epochs` epochs), scores both the same
way (BatchNorm recalibrated on the same training batches, the whole held-out validation split),
and reports Kendall's tau between supernet and stand-alone accuracy (target >= 0.6), the
supernet's training time and the time to evaluate one candidate as a study does, BN
recalibration included (target <= 1 s). With several seeds it also reports how well two
stand-alone trainings agree with each other: a reference that disagrees with itself caps the tau
any estimator can show against it.
It also reports the reference's noise ceiling, the tau a noiseless estimator would reach against
the mean of the seeds (`--ceiling JSON...` prints it for stored references without training), and
Kendall's tau between MACs and either accuracy, to tell ranking from a mere size
preference. `--jobs 2` trains two stand-alone nets at a time; `--spread-macs` draws one random
subnet per MACs bin instead of uniformly; `--reference-calibration` sets the BatchNorm
recalibration batches of the stand-alone nets (default 32: 4 add ~0.005 of noise) and
`--calibration-batches` those of the supernet's candidates (default: the study's);
`--common-seeds` trains every subnet of one stand-alone seed from the same initial weights and
batch order, so that a seed column differs between subnets by architecture only. A rerun keeps
the report's hand-written notes (everything from the NOTES_MARKER line on). `--reference` scores
the supernet against the stand-alone accuracies stored by an earlier run (training only the seeds
it lacks), so that supernet variants share one reference; `--supernet-epochs` and `--init-seed`
override the study's epochs and initialisation seed (another training of the same supernet on the
same data).

    python benchmarks/supernet_ranking.py --study studies/quickstart.toml --subnets 16 --standalone-seeds 3 \
        --standalone-epochs 6 --jobs 2 --markdown benchmarks/supernet_ranking.md
    python benchmarks/supernet_ranking.py --study studies/quickstart-shapes.toml --subnets 16 --spread-macs \
        --standalone-epochs 6 --standalone-seeds 5 --jobs 2 \
        --reference benchmarks/supernet_ranking_shapes_reference.json \
        --markdown benchmarks/supernet_ranking_shapes.md
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr  # optuna's GP sampler already pulls scipy in
from tqdm import tqdm

from nasopt.accuracy.supernet import RunContext, Supernet, SupernetAccuracy
from nasopt.accuracy.supernet._train import lr_schedule
from nasopt.core.candidate import Candidate
from nasopt.core.system import build_system
from nasopt.presets import resolve
from nasopt.space import SearchSpace

sys.path.insert(0, str(Path(__file__).parent))
from analytic import machine


def standalone_accuracy(
    est: SupernetAccuracy, cand: Candidate, epochs: int, seed: int, calibration_batches: int
) -> float:
    """Train a fresh network for `cand` alone (the supernet's modules, of which only the
    candidate's slices get gradients) and score it with the supernet's evaluation protocol,
    BatchNorm recalibrated on the first `calibration_batches` of the same training batches."""
    cfg = est.config
    torch.manual_seed(seed)
    net = Supernet(est.space.spec)
    params = list(net.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = est.data
    sched = lr_schedule(opt, cfg, len(data.train_y) // cfg.batch_size, epochs)
    net.train()
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for x, y in data.batches(cfg.batch_size, gen):
            opt.zero_grad(set_to_none=True)
            logits = net(x, cand, RunContext())
            F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()
            sched.step()
    options = {**_eval_options(est), "calibration_batches": calibration_batches}
    alone = SupernetAccuracy(est.space, {"estimator": "supernet", **options})
    alone._net = net
    alone._net_loaded = True  # its weights are this training's, not a checkpoint's
    net.eval()
    alone._data = data
    return alone.evaluate(cand)


def _eval_options(est: SupernetAccuracy) -> dict:
    cfg = est.config
    opts = {k: v for k, v in cfg.training_key().items() if v is not None}
    opts["calibration_batches"] = cfg.calibration_batches
    opts["val_samples"] = 0
    return opts


def draw_subnets(space: SearchSpace, n: int, seed: int, spread: bool, pool: int = 2000) -> list[Candidate]:
    """`n` uniformly random subnets, or with `spread` one random subnet from each of n equal-width
    MACs bins over the range of `pool` random draws (nearest draw when a bin is empty): uniform
    draws cluster around the median size, where subnets differ by less than retraining noise."""
    rng = random.Random(seed)
    if not spread:
        return [space.sample(rng) for _ in range(n)]
    drawn = [(space.network(c).macs, c) for c in (space.sample(rng) for _ in range(pool))]
    lo, hi = min(m for m, _ in drawn), max(m for m, _ in drawn)
    width = (hi - lo) / n
    out = []
    for k in range(n):
        left, right = lo + k * width, lo + (k + 1) * width
        inside = [c for m, c in drawn if left <= m < right or (k == n - 1 and m == hi)]
        centre = (left + right) / 2
        out.append(rng.choice(inside) if inside else min(drawn, key=lambda mc: abs(mc[0] - centre))[1])
    return out


@functools.cache
def _ranking_estimator(study: str) -> SupernetAccuracy:
    """The study's space and data with the ranking's evaluation settings (whole validation split)."""
    r = resolve(study)
    space = SearchSpace(r.space, build_system(r.objective))
    return SupernetAccuracy(space, _eval_options(SupernetAccuracy(space, dict(r.study.accuracy))))


def _standalone_job(
    study: str, cand: Candidate, epochs: int, seed: int, calibration_batches: int, threads: int
) -> tuple[float, float]:
    """One stand-alone training in a worker process: (accuracy, seconds)."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    acc = standalone_accuracy(_ranking_estimator(study), cand, epochs, seed, calibration_batches)
    return acc, time.perf_counter() - t0


def standalone_seed(base_seed: int, subnet: int, seed_index: int, common_seeds: bool) -> int:
    """The torch seed of one stand-alone training: its own per subnet, or with `common_seeds` one
    per seed index shared by every subnet (same initial supernet weights and batch order)."""
    return base_seed * 1000 + (0 if common_seeds else subnet) + 100_000 * seed_index


def standalone_runs(
    study: str,
    cands: list[Candidate],
    epochs: int,
    seeds: int,
    base_seed: int,
    jobs: int,
    calibration_batches: int,
    first_seed: int = 0,
    common_seeds: bool = False,
) -> list[list[tuple[float, float]]]:
    """(accuracy, seconds) of every subnet x seed (seed indices `first_seed` on), trained `jobs`
    at a time in spawned processes (each with cores/jobs intra-op threads) or here when jobs is 1.
    With `common_seeds`, seed index k gives every subnet the same initial weights and batch order
    instead of a seed of its own."""
    work = [
        (i, k, standalone_seed(base_seed, i, first_seed + k, common_seeds))
        for k in range(seeds)
        for i in range(len(cands))
    ]
    out: list[list[tuple[float, float]]] = [[(0.0, 0.0)] * seeds for _ in cands]
    bar = tqdm(total=len(work), desc="stand-alone training", unit="run")

    def job(i: int, seed: int) -> tuple[str, Candidate, int, int, int]:
        return study, cands[i], epochs, seed, calibration_batches

    def record(i: int, k: int, result: tuple[float, float]) -> None:
        out[i][k] = result
        bar.write(f"subnet {i} seed {first_seed + k}: accuracy {result[0]:.4f} ({result[1]:.0f} s)")
        bar.update()

    if jobs <= 1:
        for i, k, seed in work:
            record(i, k, _standalone_job(*job(i, seed), torch.get_num_threads()))
    else:
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        ctx = multiprocessing.get_context("spawn")  # no fork after this process used OpenMP
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_standalone_job, *job(i, seed), threads): (i, k) for i, k, seed in work}
            for fut in as_completed(futures):
                record(*futures[fut], fut.result())
    bar.close()
    return out


def reused_reference(
    path: Path, cands: list[Candidate], epochs: int, calibration_batches: int, common_seeds: bool
) -> tuple[list[list[float]], list[float], str]:
    """Stand-alone accuracies (per subnet, per seed), seconds and command of an earlier run, so
    that supernet variants are compared against one reference without retraining it; refused
    unless it holds the same subnets, stand-alone epochs and recalibration."""
    raw = json.loads(path.read_text())
    wanted = {
        "candidates": [c.to_dict() for c in cands],
        "standalone_epochs": epochs,
        "reference_calibration": calibration_batches,
        "common_seeds": common_seeds,
    }
    for key, value in wanted.items():
        if raw.get(key, False if key == "common_seeds" else None) != value:
            raise SystemExit(
                f"{path}: field {key!r} does not match this run (same --study, --subnets, --seed, "
                "--spread-macs, --standalone-epochs, --reference-calibration and --common-seeds needed)"
            )
    return raw["standalone_acc"], raw.get("standalone_s", []), raw["command"]


def seed_columns(seed_acc: list[list[float]]) -> list[list[float]]:
    """Per seed, the accuracies of every subnet (`seed_acc` is per subnet, per seed)."""
    return [[a[j] for a in seed_acc] for j in range(len(seed_acc[0]))]


def seed_pair_taus(seed_acc: list[list[float]]) -> list[float]:
    """Kendall tau between every two seeds' accuracies over the subnets."""
    column = seed_columns(seed_acc)
    k = len(column)
    return [kendalltau(column[a], column[b]).statistic for a in range(k) for b in range(a + 1, k)]


def noise_ceiling(seed_acc: list[list[float]], target: float = 0.6) -> tuple[float, float, int]:
    """(mean Kendall tau between two seeds, the tau a noiseless estimator would show against the
    mean of all seeds, seeds whose mean would let it reach `target`). Assumes each seed is the
    true accuracy plus independent normal noise: a pair's tau gives one seed's reliability
    r = sin(pi tau / 2) (Greiner's relation), the mean of k seeds has k r / (1 + (k - 1) r)
    (Spearman-Brown), and a noiseless estimator correlates with it at the square root of that."""
    k = len(seed_acc[0])
    pair_tau = statistics.mean(seed_pair_taus(seed_acc))
    r = max(math.sin(math.pi * pair_tau / 2), 1e-6)
    reliability = k * r / (1 + (k - 1) * r)
    ceiling = 2 / math.pi * math.asin(math.sqrt(reliability))
    needed = math.sin(math.pi * target / 2) ** 2
    return pair_tau, ceiling, max(1, math.ceil(needed * (1 - r) / (r * (1 - needed))))


def print_ceilings(paths: list[str]) -> int:
    """The noise ceiling of every stored reference (`--ceiling`), no training."""
    for path in paths:
        raw = json.loads(Path(path).read_text())
        seed_acc = raw["standalone_acc"]
        if len(seed_acc[0]) < 2:
            print(f"{path}: one seed, no ceiling")
            continue
        alone = [statistics.mean(a) for a in seed_acc]
        pair_tau, ceiling, seeds = noise_ceiling(seed_acc)
        tau = kendalltau(raw["supernet_acc"], alone).statistic
        print(
            f"{path}: {len(seed_acc[0])} seeds, tau between two {pair_tau:.3f}, ceiling of their mean "
            f"{ceiling:.3f}, seeds for a 0.6 ceiling {seeds}; supernet vs the mean {tau:.3f}"
        )
    return 0


NOTES_MARKER = "<!-- notes: written by hand, kept when the benchmark rewrites this file -->"


def kept_notes(path: Path) -> str:
    """The hand-written part of an earlier report (from NOTES_MARKER on), or a fresh marker."""
    old = path.read_text() if path.is_file() else ""
    at = old.find(NOTES_MARKER)
    return "\n" + (old[at:] if at >= 0 else NOTES_MARKER + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/quickstart.toml")
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--standalone-epochs", type=int, default=None, help="default: the supernet's epochs")
    ap.add_argument("--standalone-seeds", type=int, default=1, help="mean over this many retrainings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--spread-macs", action="store_true", help="one random subnet per MACs bin instead of uniform draws"
    )
    ap.add_argument("--jobs", type=int, default=1, help="stand-alone trainings run at a time")
    ap.add_argument(
        "--reference-calibration",
        type=int,
        default=32,
        help="BatchNorm recalibration batches for the stand-alone nets (4 batches add ~0.005 noise)",
    )
    ap.add_argument(
        "--common-seeds",
        action="store_true",
        help="stand-alone seed k trains every subnet from the same initial weights and batch order "
        "(common random numbers, as NAS-Bench-201 trains every cell with the same seeds)",
    )
    ap.add_argument(
        "--reference",
        default=None,
        help="reuse the stand-alone accuracies of an earlier run's JSON (same subnets and settings); "
        "a larger --standalone-seeds trains the missing seeds",
    )
    ap.add_argument("--supernet-epochs", type=int, default=None, help="override the study's supernet epochs")
    ap.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="override the supernet's init_seed (another training on the same data)",
    )
    ap.add_argument(
        "--calibration-batches",
        type=int,
        default=None,
        help="override the study's BatchNorm recalibration batches per candidate (evaluation only: "
        "the trained supernet is reused)",
    )
    ap.add_argument(
        "--markdown", default=None, help="write the report here (and print it), raw numbers as .json"
    )
    ap.add_argument(
        "--ceiling",
        nargs="+",
        metavar="JSON",
        help="only print the noise ceiling of these stored references (no training)",
    )
    args = ap.parse_args(argv)
    if args.ceiling:
        return print_ceilings(args.ceiling)
    command = "python benchmarks/supernet_ranking.py " + " ".join(argv if argv is not None else sys.argv[1:])

    r = resolve(args.study)
    space = SearchSpace(r.space, build_system(r.objective))
    accuracy = dict(r.study.accuracy)
    if args.supernet_epochs:
        accuracy["epochs"] = args.supernet_epochs
    if args.init_seed is not None:
        accuracy["init_seed"] = args.init_seed
    if args.calibration_batches:
        accuracy["calibration_batches"] = args.calibration_batches
    if accuracy.get("estimator") != "supernet":
        raise SystemExit(f"{args.study}: [accuracy] estimator must be 'supernet'")
    study_est = SupernetAccuracy(space, accuracy)  # the study's own evaluation settings
    t = time.perf_counter()
    res = study_est.ensure_trained(progress=True)
    wall = time.perf_counter() - t
    trained = "trained by this run" if res.trained else f"cached checkpoint's record; {wall:.1f} s to load"
    # the ranking uses the whole validation split for both sides
    est = SupernetAccuracy(space, _eval_options(study_est))
    est._net, est._data = study_est._net, study_est._data
    epochs = args.standalone_epochs or est.config.epochs

    cands = draw_subnets(space, args.subnets, args.seed, args.spread_macs)
    study_est.data  # noqa: B018  (generated or read once per worker, not per candidate: not timed)
    evals, sup_acc = [], []
    for c in cands:
        evals.append(study_est.timed_evaluate(c, 0.0)[1])
        sup_acc.append(est.evaluate(c))
    if args.reference:
        seed_acc, run_s, reference_command = reused_reference(
            Path(args.reference), cands, epochs, args.reference_calibration, args.common_seeds
        )
    else:
        seed_acc, run_s = [[] for _ in cands], []
    reused = len(seed_acc[0])
    if args.standalone_seeds > reused:  # train the seeds the reference lacks
        runs = standalone_runs(
            args.study,
            cands,
            epochs,
            args.standalone_seeds - reused,
            args.seed,
            args.jobs,
            args.reference_calibration,
            first_seed=reused,
            common_seeds=args.common_seeds,
        )
        seed_acc = [old + [acc for acc, _ in per] for old, per in zip(seed_acc, runs, strict=True)]
        run_s += [sec for per in runs for _, sec in per]
    seeds = len(seed_acc[0])
    alone_acc = [statistics.mean(accs) for accs in seed_acc]
    tau = kendalltau(sup_acc, alone_acc)
    rho = spearmanr(sup_acc, alone_acc)

    cfg = est.config
    lines = [
        "# Supernet ranking: supernet accuracy vs stand-alone training",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} intra-op threads "
        f"for the supernet, {args.jobs} stand-alone training(s) at a time.",
        "",
        f"Study `{args.study}`: space `{r.space.name}` ({space.size():.3g} candidates), dataset "
        f"`{cfg.dataset}` ({len(est.data.train_y)} training / {len(est.data.val_y)} validation "
        f"samples), supernet training `{cfg.sampling}` with {cfg.random_subnets} random subnet(s) "
        f"per step, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}"
        + (f", init seed {cfg.init_seed}" if cfg.init_seed is not None else "")
        + ".",
        "",
        f"- Supernet training: **{res.seconds:.0f} s** ({trained})",
        f"- Time to evaluate one candidate as the study does ({cfg.calibration_batches} calibration "
        f"batch(es), {study_est.config.val_samples or len(est.data.val_y)} validation samples), BN "
        f"recalibration included: median **{statistics.median(evals):.2f} s**, max {max(evals):.2f} s "
        "(target <= 1 s)",
        f"- Kendall tau over {len(cands)} random subnets"
        f"{' (one per MACs bin, --spread-macs)' if args.spread_macs else ''}: "
        f"**{tau.statistic:.3f}** (p = {tau.pvalue:.3g}; "
        f"target >= 0.6); Spearman rho {rho.statistic:.3f}",
        f"- Stand-alone training: {epochs} epochs per subnet, mean accuracy of {seeds} "
        f"seed(s)"
        + (" common to all subnets (same init and batch order per seed)" if args.common_seeds else "")
        + (f"; {reused} reused from `{args.reference}`, trained by `{reference_command}`" if reused else "")
        + (f"; {statistics.median(run_s):.0f} s median per training" if run_s else ""),
    ]
    macs = [space.network(c).macs for c in cands]
    lines.append(
        "- Size: Kendall tau between MACs and supernet accuracy "
        f"**{kendalltau(macs, sup_acc).statistic:.3f}**, between MACs and stand-alone accuracy "
        f"**{kendalltau(macs, alone_acc).statistic:.3f}**"
    )
    if seeds >= 2:
        pairs = seed_pair_taus(seed_acc)
        versus = [kendalltau(sup_acc, col).statistic for col in seed_columns(seed_acc)]
        _, ceiling, needed = noise_ceiling(seed_acc)
        lines.append(
            "- Repeatability of the reference: Kendall tau between two stand-alone seeds "
            f"**{statistics.mean(pairs):.3f}** (mean of {len(pairs)} pairs, "
            f"{', '.join(f'{t:.3f}' for t in pairs)}); supernet vs one seed: "
            f"**{statistics.mean(versus):.3f}** (mean; {', '.join(f'{t:.3f}' for t in versus)})"
        )
        lines.append(
            f"- Noise ceiling: a noiseless estimator would reach Kendall tau **{ceiling:.3f}** against "
            f"the mean of these {seeds} seeds; a 0.6 ceiling needs {needed} seed(s) "
            "(seeds as truth + independent normal noise: Greiner's relation and Spearman-Brown)"
        )
    lines += [
        "",
        "Both accuracies are top-1 on the whole validation split, without packet loss, after BatchNorm "
        f"recalibration on the same training batches: the study's {cfg.calibration_batches} for the "
        f"supernet, {args.reference_calibration} for the stand-alone nets.",
        "",
        "| subnet | MMACs | supernet acc | stand-alone acc (mean) | per seed | eval s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, accs in enumerate(seed_acc):
        per_seed = ", ".join(f"{a:.3f}" for a in accs)
        lines.append(
            f"| {i} | {macs[i] / 1e6:.2f} | {sup_acc[i]:.3f} | {alone_acc[i]:.3f} | "
            f"{per_seed} | {evals[i]:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + kept_notes(Path(args.markdown)))
        raw = {
            "command": command,
            "candidates": [c.to_dict() for c in cands],
            "standalone_epochs": epochs,
            "reference_calibration": args.reference_calibration,
            "common_seeds": args.common_seeds,
            "supernet_acc": sup_acc,
            "standalone_acc": seed_acc,
            "standalone_s": run_s,
            "reference": args.reference,
            "eval_s": evals,
        }
        Path(args.markdown).with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
