"""Supernet ranking quality and speed on the quickstart space.

Trains the quickstart study's supernet (or reuses its checkpoint), then draws N random subnets,
trains each stand-alone from scratch with the same data and budget, and reports Kendall's tau
between supernet accuracy and stand-alone accuracy (target >= 0.6), the supernet's training
time, and the time to evaluate one candidate including BN recalibration (target <= 1 s).

    python benchmarks/supernet_ranking.py --subnets 12 --standalone-epochs 2 > benchmarks/supernet_ranking.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import torch
import torch.nn.functional as F
from scipy.stats import kendalltau  # optuna's GP sampler already pulls scipy in

from nasopt.space import SearchSpace
from nasopt.study import resolve
from nasopt.supernet import RunContext, Supernet, SupernetAccuracy
from nasopt.system import build_system


def standalone_accuracy(est: SupernetAccuracy, cand: object, epochs: int, seed: int) -> float:
    """Train a fresh network for `cand` alone (same modules, only its slices get gradients)."""
    torch.manual_seed(seed)
    net = Supernet(est.space.spec)
    opt = torch.optim.AdamW(net.parameters(), lr=est.config.lr, weight_decay=est.config.weight_decay)
    data = est.data
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 100 + epoch)
        for x, y in data.batches(est.config.batch_size, gen):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x, cand, RunContext()), y).backward()
            opt.step()
    other = SupernetAccuracy(est.space, {"estimator": "supernet", **est.config.training_key()})
    other._net = net
    net._nasopt_loaded = True  # type: ignore[attr-defined]
    other._data = data
    return other.evaluate(cand)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default="studies/quickstart-supernet.toml")
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--standalone-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    r = resolve(args.study)
    space = SearchSpace(r.space, build_system(r.objective))
    est = SupernetAccuracy(space, r.study.accuracy)
    t = time.perf_counter()
    res = est.ensure_trained(progress=False)
    print(f"# Supernet ranking benchmark\n\nstudy `{args.study}`, space `{r.space.name}`")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs visible, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print(
        f"- supernet training: {res.seconds:.1f} s ({'trained now' if res.trained else 'cached'}; "
        f"wall here {time.perf_counter() - t:.1f} s)"
    )
    rng = random.Random(args.seed)
    cands = [space.sample(rng) for _ in range(args.subnets)]
    times, sup, alone = [], [], []
    for i, c in enumerate(cands):
        acc, dt = est.timed_evaluate(c, 0.0)
        times.append(dt)
        sup.append(acc)
        alone.append(standalone_accuracy(est, c, args.standalone_epochs, args.seed + i))
        print(
            f"  - subnet {i}: {space.network(c).macs / 1e6:.2f} M MACs, supernet {acc:.3f}, "
            f"stand-alone {alone[-1]:.3f}, eval {dt:.2f} s",
            flush=True,
        )
    tau = kendalltau(sup, alone).statistic
    times.sort()
    print(f"- Kendall tau (supernet vs stand-alone, {len(cands)} subnets): {tau:.3f} (target >= 0.6)")
    print(
        f"- time to evaluate one candidate incl. BN recalibration: median {times[len(times) // 2]:.2f} s, "
        f"max {times[-1]:.2f} s (target <= 1 s)"
    )


if __name__ == "__main__":
    main()
