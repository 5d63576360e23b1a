"""Batched analytic evaluation vs the scalar path, and exact fronts of whole spaces, on one core.

Run:  python benchmarks/batched.py [--candidates 1000000] [--scalar 20000]
          [--markdown benchmarks/batched.md]
Target (issue: batched engine): >= 1,000,000 candidates/s on one core for fbnet-nasc on
nasc-raspi-edgegpu, and the exact front of a >= 1e7-candidate space in < 60 s.
Rates are given per wall second (the process pinned to one core) and per CPU second of the
process: on a shared machine the second is the one that does not depend on the neighbours.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytic import machine

from nasopt.core.batched import BatchEvaluator
from nasopt.core.evaluation import evaluate
from nasopt.core.system import build_system
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import StudySpec
from nasopt.study.exact_front import exact_front
from nasopt.study.objective import NasObjective

PAIRS = [
    ("fbnet-nasc", "nasc-raspi-edgegpu", "chain, throughput"),
    ("fbnet-nasc", "nasc-raspi-edgegpu-measured", "chain, lookup (HW-NAS-Bench)"),
    ("vgg11-compress", "edge-cloud-4g", "chain, linear (Wang)"),
    ("mbconv-jmsnas-mesh", "jmsnas-mesh", "mesh"),
    ("splitnets-multiview", "splitnets-hmd-12", "tree (12 views)"),
]
FRONTS = [("fbnet-nasc-7", "nasc-raspi-edgegpu"), ("vgg11-compress", "edge-cloud-4g")]


def _rates(run: object) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = run()  # type: ignore[operator]
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu), n


def scalar_rate(space: SearchSpace, n: int) -> tuple[float, float, int]:
    rng = random.Random(1)
    system = space.system
    assert system is not None
    for _ in range(2_000):  # warm the per-layer cost caches
        evaluate(space.network(space.sample(rng)), system).memory_violations()

    def run() -> int:
        for _ in range(n):
            evaluate(space.network(space.sample(rng)), system).memory_violations()
        return n

    return _rates(run)


def batched_rate(space: SearchSpace, n: int, chunk: int) -> tuple[float, float, int]:
    rng = np.random.default_rng(1)
    assert space.system is not None
    evaluator = BatchEvaluator(space.macro, space.system)
    evaluator.evaluate(space.sample_batch(rng, chunk)).feasible()  # build the tables

    def run() -> int:
        for _ in range(max(1, n // chunk)):
            evaluator.evaluate(space.sample_batch(rng, chunk)).feasible()
        return max(1, n // chunk) * chunk

    return _rates(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1_000_000, help="batched candidates per pair")
    parser.add_argument("--scalar", type=int, default=20_000, help="scalar candidates per pair")
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--no-fronts", action="store_true", help="skip the exact fronts")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    load_before = os.getloadavg()
    command = "python benchmarks/batched.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Batched analytic evaluation",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine()} (pinned to one core); load average at start"
        f" {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (1 / 5 / 15 min).",
        "",
        "Each candidate is sampled, costed, placed, and its latency breakdown, per-device peak"
        " memory (checked against the caps) and energy computed: `SearchSpace.sample` +"
        " `build_network` + `evaluate` one at a time (scalar), `SearchSpace.sample_batch` +"
        f" `BatchEvaluator.evaluate` in chunks of {args.chunk:,} (batched). tests/test_batched.py"
        " checks that both give the same numbers on every preset.",
        "",
        "| space | objective | system | scalar / s (wall) | scalar / s (CPU) | batched / s (wall)"
        " | batched / s (CPU) | ratio (CPU) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for space_name, objective_name, kind in PAIRS:
        space = SearchSpace(load_space(space_name), build_system(load_objective(objective_name)))
        s_wall, s_cpu, _ = scalar_rate(space, args.scalar)
        b_wall, b_cpu, _ = batched_rate(space, args.candidates, args.chunk)
        lines.append(
            f"| {space_name} | {objective_name} | {kind} | {s_wall:,.0f} | {s_cpu:,.0f} | {b_wall:,.0f} |"
            f" {b_cpu:,.0f} | {b_cpu / s_cpu:,.0f}x |"
        )
        print(lines[-1], flush=True)
    if not args.no_fronts:
        lines += [
            "",
            "## Exact fronts (`nasopt front --exact SPACE OBJECTIVE`)",
            "",
            "Every candidate enumerated, scored with the analytic proxy, infeasible ones dropped,"
            " a running non-dominated set kept (moocore).",
            "",
            "| space | objective | candidates | feasible | front | wall s | CPU s |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for space_name, objective_name in FRONTS:
            study = StudySpec(name="bench", space=space_name, objective=objective_name)
            objective = NasObjective(study, load_space(space_name), load_objective(objective_name))
            cpu = time.process_time()
            front = exact_front(objective, chunk=args.chunk)
            cpu = time.process_time() - cpu
            lines.append(
                f"| {space_name} | {objective_name} | {front.n_candidates:,} | {front.n_feasible:,} |"
                f" {len(front)} | {front.seconds:.1f} | {cpu:.1f} |"
            )
            print(lines[-1], flush=True)
    load_after = os.getloadavg()
    lines += [
        "",
        f"Load average at the end {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
