"""Supernet ranking quality and speed on a study's search space (default: the quickstart).

Trains the study's supernet (or reuses its cached checkpoint), draws N random subnets, trains
each one stand-alone from scratch (fresh weights, same data, batch size, optimiser, learning-rate
schedule and label smoothing as the supernet, `--standalone-epochs` epochs), scores both the same
way (BatchNorm recalibrated on the same training batches, the whole held-out validation split),
and reports Kendall's tau between supernet and stand-alone accuracy (target >= 0.6), the
supernet's training time and the time to evaluate one candidate as a study does, BN
recalibration included (target <= 1 s).

    python benchmarks/supernet_ranking.py --study studies/quickstart.toml --subnets 16 --standalone-seeds 2 \
        --markdown benchmarks/supernet_ranking.md
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr  # optuna's GP sampler already pulls scipy in
from tqdm import tqdm

from nasopt.candidate import Candidate
from nasopt.space import SearchSpace
from nasopt.study import resolve
from nasopt.supernet import RunContext, Supernet, SupernetAccuracy
from nasopt.supernet._train import lr_schedule
from nasopt.system import build_system

sys.path.insert(0, str(Path(__file__).parent))
from analytic import machine


def standalone_accuracy(est: SupernetAccuracy, cand: Candidate, epochs: int, seed: int) -> float:
    """Train a fresh network for `cand` alone (the supernet's modules, of which only the
    candidate's slices get gradients) and score it with the supernet's evaluation protocol."""
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
    alone = SupernetAccuracy(est.space, {"estimator": "supernet", **_eval_options(est)})
    alone._net = net
    net._nasopt_loaded = True  # type: ignore[attr-defined]
    net.eval()
    alone._data = data
    return alone.evaluate(cand)


def _eval_options(est: SupernetAccuracy) -> dict:
    cfg = est.config
    opts = {k: v for k, v in cfg.training_key().items() if v is not None}
    opts["calibration_batches"] = cfg.calibration_batches
    opts["val_samples"] = 0
    return opts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/quickstart.toml")
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--standalone-epochs", type=int, default=None, help="default: the supernet's epochs")
    ap.add_argument("--standalone-seeds", type=int, default=1, help="mean over this many retrainings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", default=None, help="write the report here (and print it)")
    args = ap.parse_args(argv)
    command = "python benchmarks/supernet_ranking.py " + " ".join(argv if argv is not None else sys.argv[1:])

    r = resolve(args.study)
    space = SearchSpace(r.space, build_system(r.objective))
    accuracy = dict(r.study.accuracy)
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

    rng = random.Random(args.seed)
    cands = [space.sample(rng) for _ in range(args.subnets)]
    rows = []
    for i, c in enumerate(tqdm(cands, desc="stand-alone training", unit="subnet")):
        _, eval_s = study_est.timed_evaluate(c, 0.0)
        sup = est.evaluate(c)
        t0 = time.perf_counter()
        runs = [
            standalone_accuracy(est, c, epochs, args.seed * 1000 + i + 100_000 * k)
            for k in range(args.standalone_seeds)
        ]
        alone = statistics.mean(runs)
        rows.append((i, space.network(c).macs, sup, alone, eval_s, time.perf_counter() - t0))
    sup_acc = [row[2] for row in rows]
    alone_acc = [row[3] for row in rows]
    tau = kendalltau(sup_acc, alone_acc)
    rho = spearmanr(sup_acc, alone_acc)
    evals = sorted(row[4] for row in rows)

    cfg = est.config
    lines = [
        "# Supernet ranking: supernet accuracy vs stand-alone training",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} intra-op threads.",
        "",
        f"Study `{args.study}`: space `{r.space.name}` ({space.size():.3g} candidates), dataset "
        f"`{cfg.dataset}` ({len(est.data.train_y)} training / {len(est.data.val_y)} validation "
        f"samples), supernet training `{cfg.sampling}` with {cfg.random_subnets} random subnet(s) "
        f"per step, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}.",
        "",
        f"- Supernet training: **{res.seconds:.0f} s** ({trained})",
        f"- Time to evaluate one candidate as the study does ({cfg.calibration_batches} calibration "
        f"batch(es), {study_est.config.val_samples or len(est.data.val_y)} validation samples), BN "
        f"recalibration included: median **{statistics.median(evals):.2f} s**, max {evals[-1]:.2f} s "
        "(target <= 1 s)",
        f"- Kendall tau over {len(rows)} random subnets: **{tau.statistic:.3f}** (p = {tau.pvalue:.3g}; "
        f"target >= 0.6); Spearman rho {rho.statistic:.3f}",
        f"- Stand-alone training: {epochs} epochs per subnet, mean accuracy of {args.standalone_seeds} "
        f"seed(s), {statistics.median(row[5] for row in rows):.0f} s median per subnet",
        "",
        "Both accuracies are top-1 on the whole validation split, without packet loss, after BatchNorm "
        "recalibration on the same training batches.",
        "",
        "| subnet | MMACs | supernet acc | stand-alone acc | eval s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i, macs, sup, alone, eval_s, _ in rows:
        lines.append(f"| {i} | {macs / 1e6:.2f} | {sup:.3f} | {alone:.3f} | {eval_s:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
