"""Candidates per second for sample -> costs -> latency + memory, on one core.

Run:  python benchmarks/analytic.py [--space fbnet-nasc] [--objective nasc-raspi-edgegpu]
          [--candidates 50000] [--repeats 5] [--markdown benchmarks/analytic.md]
Target (issue: foundation): >= 20,000 candidates per second on one core for fbnet-nasc on
nasc-raspi-edgegpu, so the analytic part vanishes beside an Optuna trial (milliseconds).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from nasopt.core.evaluation import evaluate
from nasopt.core.system import build_system
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace


def measure(space: SearchSpace, n: int, seed: int) -> float:
    """Candidates per second for `n` fresh random candidates."""
    rng = random.Random(seed)
    system = space.system
    start = time.perf_counter()
    for _ in range(n):
        ev = evaluate(space.network(space.sample(rng)), system)
        ev.memory_violations()
    return n / (time.perf_counter() - start)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}; {os.cpu_count()} logical cores; Python {platform.python_version()}; {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fbnet-nasc")
    parser.add_argument("--objective", default="nasc-raspi-edgegpu")
    parser.add_argument("--candidates", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=None, help="write the result table here")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    space = SearchSpace(load_space(args.space), build_system(load_objective(args.objective)))
    measure(space, 2_000, seed=-1)  # warm the per-layer cost caches
    rates = [measure(space, args.candidates, seed=r) for r in range(args.repeats)]
    median = statistics.median(rates)
    command = "python benchmarks/analytic.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Analytic core throughput",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine()} (pinned to one core)",
        "",
        f"Space `{args.space}` ({space.size():.3g} candidates, {len(space.params())} parameters) on"
        f" objective `{args.objective}`; each candidate is sampled, its layers costed, placed and its"
        " latency and per-device peak memory computed.",
        "",
        "| repeat | candidates | candidates / s |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {i + 1} | {args.candidates:,} | {rate:,.0f} |" for i, rate in enumerate(rates)]
    lines += [
        "",
        f"Median: **{median:,.0f} candidates/s** ({1e6 / median:.1f} µs per candidate); target ≥ 20,000.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    return 0 if median >= 20_000 else 1


if __name__ == "__main__":
    sys.exit(main())
