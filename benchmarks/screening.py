"""Cost per trial of the samplers' hard-constraint screening, open vs tightly constrained spaces.

Run:  python benchmarks/screening.py [--trials 200] [--markdown benchmarks/screening.md]

fbnet-nasc on nasc-raspi-edgegpu with the analytic proxy: the latency threshold is set so that
about all, 10 % and 1 % of uniform draws meet it (measured on 20,000 draws, printed). Each
nasopt sampler runs `--trials` trials with max_retries = 200, once screening proposals with the
batched model (what `nasopt run` does) and once with the scalar check one proposal at a time;
reported: milliseconds per trial (sampling + the objective) and the mean rejected proposals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytic import machine

from nasopt.presets import load_objective, load_space
from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler
from nasopt.spec import StudySpec
from nasopt.study.feasibility import HardConstraintCheck, hard_constraint_check
from nasopt.study.objective import NasObjective

SAMPLERS = {"asng": ASNGSampler, "evolution": EvolutionSampler, "reinforce": ReinforceSampler}
FEASIBLE_SHARES = (1.0, 0.1, 0.01)


def objective_at(latency_ms: float | None) -> NasObjective:
    space, spec = load_space("fbnet-nasc"), load_objective("nasc-raspi-edgegpu")
    limits = spec.constraints.model_copy(update={"latency_ms": latency_ms})
    spec = spec.model_copy(update={"constraints": limits})
    return NasObjective(StudySpec(name="screening", space=space.name, objective=spec.name), space, spec)


def thresholds() -> dict[float, float | None]:
    """The latency threshold admitting each share of uniform draws (None: no threshold)."""
    objective = objective_at(None)
    batch = objective.space.sample_batch(np.random.default_rng(0), 20_000)
    latency_ms = objective.batch_evaluator().evaluate(batch).latency_ms
    return {share: None if share >= 1 else float(np.quantile(latency_ms, share)) for share in FEASIBLE_SHARES}


def run(sampler: str, objective: NasObjective, mode: str, n_trials: int) -> tuple[float, float]:
    check = hard_constraint_check(objective)
    feasibility: Any = check
    if check is not None and mode == "scalar":
        scalar: HardConstraintCheck = check
        feasibility = lambda params: scalar(params)  # noqa: E731 (no `many`: one by one)
    s = SAMPLERS[sampler](
        seed=0, search_space=objective.distributions(), feasibility=feasibility, max_retries=200
    )
    study = optuna.create_study(directions=objective.directions, sampler=s)
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    ms = (time.perf_counter() - start) * 1e3 / n_trials
    rejected = [t.system_attrs.get(s.record_attr, {}).get("rejected_infeasible", 0) for t in study.trials]
    return ms, float(np.mean(rejected))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    limits = thresholds()
    lines = [
        "# Screening: cost per trial, open vs tightly constrained",
        "",
        f"Command: `python benchmarks/screening.py --trials {args.trials}"
        + (f" --markdown {args.markdown}`" if args.markdown else "`"),
        "",
        f"Machine: {machine()}; one core (affinity); load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; Optuna {optuna.__version__}; in-memory storage.",
        "",
        "fbnet-nasc on nasc-raspi-edgegpu, analytic proxy, max_retries = 200. Thresholds from 20,000 uniform"
        " draws: "
        + ", ".join(f"{s:.0%} feasible: {'none' if v is None else f'{v:.2f} ms'}" for s, v in limits.items()),
        "",
        "| sampler | feasible share | batched ms/trial | scalar ms/trial | rejected proposals/trial |",
        "|---|---:|---:|---:|---:|",
    ]
    for sampler in SAMPLERS:
        for share, latency_ms in limits.items():
            objective = objective_at(latency_ms)
            batched_ms, rejected = run(sampler, objective, "batched", args.trials)
            scalar_ms, _ = run(sampler, objective, "scalar", args.trials)
            row = f"| {sampler} | {share:.0%} | {batched_ms:.2f} | {scalar_ms:.2f} | {rejected:.1f} |"
            print(row, flush=True)
            lines.append(row)
    lines += [
        "",
        f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
    ]
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
