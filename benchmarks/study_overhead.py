"""Trials per second of an analytic-only study through nasopt versus bare Optuna.

Both sides use the same sampler (seeded), the same storage kind and the same parameters (bare
Optuna suggests exactly nasopt's distributions and returns a cheap function of them); nasopt
adds the analytic evaluation, the constraint list and the dashboard user attrs.

Run:  python benchmarks/study_overhead.py [--study quickstart-proxy] [--trials 200]
          [--storages memory,sqlite,journal] [--repeats 3] [--markdown benchmarks/study_overhead.md]
Target (issue: studies): nasopt's cost per trial <= 1.3x bare Optuna's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from nasopt.presets import resolve
from nasopt.spec import SamplerSpec
from nasopt.study.lifecycle import make_sampler
from nasopt.study.objective import NasObjective
from nasopt.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).parent))
from analytic import machine


def _storage(kind: str, folder: Path, tag: str) -> optuna.storages.BaseStorage | None:
    if kind == "memory":
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        return open_storage(f"sqlite:///{folder / tag}.db")
    return open_storage(f"journal:{folder / tag}.log")


def run_bare(objective: NasObjective, sampler: SamplerSpec, kind: str, folder: Path, n: int) -> float:
    dists = objective.space.distributions()

    def bare(trial: optuna.Trial) -> tuple[float, ...]:
        params = [trial.suggest_categorical(name, d.choices) for name, d in dists.items()]
        h = float(hash(tuple(map(str, params))) % 1000)
        return tuple(h for _ in objective.directions)

    study = optuna.create_study(
        storage=_storage(kind, folder, "bare"), directions=objective.directions, sampler=make_sampler(sampler)
    )
    start = time.perf_counter()
    study.optimize(bare, n_trials=n)
    return n / (time.perf_counter() - start)


def run_nasopt(objective: NasObjective, sampler: SamplerSpec, kind: str, folder: Path, n: int) -> float:
    study = optuna.create_study(
        storage=_storage(kind, folder, "nasopt"),
        directions=objective.directions,
        sampler=make_sampler(sampler),
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=n)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="quickstart-proxy")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--storages", default="memory,sqlite,journal")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; medians are reported")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    resolved = resolve(args.study)
    objective = NasObjective(resolved.study, resolved.space, resolved.objective)
    sampler = resolved.study.sampler
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="nasopt-bench-"))
    try:
        for kind in args.storages.split(","):
            bares, oursl = [], []
            for r in range(args.repeats):  # alternate the two sides: the machine's speed drifts
                bares.append(run_bare(objective, sampler, kind, folder / f"{r}", args.trials))
                oursl.append(run_nasopt(objective, sampler, kind, folder / f"{r}", args.trials))
            bare, ours = statistics.median(bares), statistics.median(oursl)
            rows.append((kind, bare, ours, bare / ours))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = "python benchmarks/study_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Study overhead: nasopt versus bare Optuna",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Study `{args.study}` (space `{resolved.space.name}`, objective `{resolved.objective.name}`,"
        f" sampler `{sampler.name}`, {len(objective.space.params())} parameters), {args.trials} trials per"
        f" run, one process, median of {args.repeats} alternating runs per side."
        " Cost ratio = nasopt's seconds per trial / bare Optuna's.",
        "",
        "| storage | bare Optuna trials/s | nasopt trials/s | cost ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {k} | {b:,.1f} | {o:,.1f} | {r:.2f}x |" for k, b, o, r in rows]
    worst = max(r for *_, r in rows)
    lines += ["", f"Worst ratio {worst:.2f}x; target ≤ 1.3x."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
