"""Non-dominated filtering, Pareto ranks and hypervolume: moocore against hand-written numpy
(the pairwise ranking nasopt's samplers used before) and Optuna's own hypervolume.

Run:  python benchmarks/pareto_libs.py [--markdown benchmarks/pareto_libs.md]

Points: uniform in [0, 1]^m (most points dominated) and on the simplex x1 + ... + xm = 1 plus
noise (most points non-dominated); median of 5 timings each, one core. Every pair is checked
to agree before it is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import moocore
import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytic import machine

from nasopt.core.pareto import hypervolume, nondominated


def nondominated_ranks(F: np.ndarray) -> np.ndarray:
    """The pairwise numpy ranking nasopt's samplers used before moocore (kept for comparison)."""
    n = len(F)
    ranks = np.full(n, -1, dtype=int)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)
    rank = 0
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        front = remaining & (count == 0)
        ranks[front] = rank
        remaining &= ~front
        count = count - dom[front].sum(axis=0)
        count[~remaining] = -1
        rank += 1
    return ranks


def points(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.random((n, m))
    x = rng.dirichlet(np.ones(m), size=n)
    return x + 1e-3 * rng.random((n, m))


def timed(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    rows = []
    for kind in ("uniform", "simplex"):
        for m in (2, 3):
            for n in (100, 1000, 4000):
                F = points(kind, n, m, rng)
                hand_mask = nondominated_ranks(F) == 0
                assert np.array_equal(hand_mask, nondominated(F))
                hand_ranks = nondominated_ranks(F)
                assert np.array_equal(hand_ranks, np.asarray(moocore.pareto_rank(F)))
                front = F[hand_mask]
                ref = np.full(m, 1.1)
                hv_optuna = compute_hypervolume(front, ref)
                assert abs(hv_optuna - hypervolume(front, ref)) <= 1e-9 * max(1.0, hv_optuna)
                rows.append(
                    (
                        kind,
                        m,
                        n,
                        len(front),
                        timed(lambda F=F: nondominated_ranks(F)),
                        timed(lambda F=F: moocore.pareto_rank(F)),
                        timed(lambda F=F: nondominated(F)),
                        timed(lambda front=front, ref=ref: compute_hypervolume(front, ref)),
                        timed(lambda front=front, ref=ref: hypervolume(front, ref)),
                    )
                )
                print(rows[-1], flush=True)
    lines = [
        "# Pareto helpers: moocore vs hand-written numpy and Optuna",
        "",
        "Command: `python benchmarks/pareto_libs.py"
        + (f" --markdown {args.markdown}`" if args.markdown else "`"),
        "",
        f"Machine: {machine()}; one core (affinity); load average at start "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}; Optuna {optuna.__version__};"
        f" moocore {moocore.__version__}. Median of 5 timings, milliseconds; every pair agreed.",
        "",
        "| points | m | n | front | ranks, hand (ms) | ranks, moocore (ms) | non-dominated mask, moocore (ms)"
        " | HV of the front, Optuna (ms) | HV, moocore (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, m, n, size, hand, mr, mask, hv_o, hv_m in rows:
        lines.append(
            f"| {kind} | {m} | {n:,} | {size:,} | {hand * 1e3:.2f} | {mr * 1e3:.2f} | {mask * 1e3:.2f}"
            f" | {hv_o * 1e3:.2f} | {hv_m * 1e3:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
