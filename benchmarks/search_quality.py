"""Search quality: hypervolume of each sampler's trials as a fraction of the exact Pareto front's.

Run:  python benchmarks/search_quality.py [--seeds 10] [--trials 1000] [--processes 2]
          [--samplers asng,evolution,reinforce,random,tpe,nsga2] [--markdown benchmarks/search_quality.md]

Problems are analytic and built from the shipped presets (see PROBLEMS): every candidate of the
space is enumerated once with the batched analytic model and the deterministic `analytic-proxy`
accuracy surrogate (`nasopt front --exact`, nasopt/study/exact_front.py), so the exact feasible
Pareto front is known. A study's objective scores each trial with the scalar model
(`NasObjective.evaluate`, in-memory storage), with constraints written as Optuna's legacy
"constraints" list, as NasObjective does. A sampler named `NAME+optimal` runs the study with
`split = "optimal"`: it searches the architecture only and each trial is placed at its
latency-optimal cuts under the memory caps; its front is scored against the same exact front.

Hypervolume: objectives normalised to [0, 1] by the feasible candidates' min and max, reference
point 1.1 in every objective; only feasible trials count. Reported: HV(trials so far) / HV(exact
front) after 100, 300 and 1000 trials, median (and min-max) over seeds. nasopt's samplers get the
search space and the analytic hard-constraint check (memory caps), as `nasopt run` gives them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytic import machine

from nasopt.core.pareto import hypervolume, nondominated
from nasopt.presets import load_objective, load_space
from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, StudySpec
from nasopt.study.exact_front import ExactFront, exact_front
from nasopt.study.feasibility import hard_constraint_check
from nasopt.study.objective import NasObjective

BUDGETS = (100, 300, 1000)
REFERENCE = 1.1


def _fbnet_4() -> tuple[SearchSpaceSpec, ObjectiveSpec]:
    """fbnet-nasc with the first block of stages 2-5 searched (9 choices each), their other blocks
    fixed to skip, the single blocks of stages 1, 6 and 7 fixed to k3_e1, and the 23 split points:
    9^4 x 23 = 150,903 candidates, on nasc-raspi-edgegpu (error, latency; latency <= 30 ms)."""
    doc = load_space("fbnet-nasc").model_dump(mode="json")
    stages = []
    for i, stage in enumerate(doc["stages"]):
        layers = []
        for layer in stage["layers"]:
            if layer.get("choices") and (i in (2, 3, 4, 5)):
                first = {**layer, "repeat": 1}
                layers.append(first)
                if layer["repeat"] > 1:
                    layers.append(
                        {**layer, "choices": None, "op": "skip", "stride": 1, "repeat": layer["repeat"] - 1}
                    )
            elif layer.get("choices"):
                layers.append({**layer, "choices": None, "op": "k3_e1"})
            else:
                layers.append(layer)
        stages.append({**stage, "layers": layers})
    doc.update(name="fbnet-nasc-4", stages=stages)
    return SearchSpaceSpec.model_validate(doc), load_objective("nasc-raspi-edgegpu")


def _vgg_capped() -> tuple[SearchSpaceSpec, ObjectiveSpec]:
    """vgg11-compress with the two conv layers of block 5 fixed to conv (the other compression
    choices and the partition point searched), on edge-cloud-4g with a 2 MB peak-memory cap on
    the phone (a benchmark addition: a hard constraint the samplers' feasibility check sees)."""
    doc = load_space("vgg11-compress").model_dump(mode="json")
    stages = []
    for stage in doc["stages"]:
        if stage["name"] == "block5":
            stage = {
                **stage,
                "layers": [
                    {**lay, "choices": None, "op": "conv"} if lay.get("choices") else lay
                    for lay in stage["layers"]
                ],
            }
        stages.append(stage)
    doc.update(name="vgg11-compress-b5fixed", stages=stages)
    obj = load_objective("edge-cloud-4g").model_dump(mode="json")
    obj["devices"]["phone"]["memory_bytes"] = 2_000_000
    obj["name"] = "edge-cloud-4g-2MB"
    return SearchSpaceSpec.model_validate(doc), ObjectiveSpec.model_validate(obj)


def _fbnet_7() -> tuple[SearchSpaceSpec, ObjectiveSpec]:
    """The shipped fbnet-nasc-7 preset: the first block of each of the 7 stages searched (9
    choices each), the other 15 fixed to k3_e3, and the 23 split points: 9^7 x 23 = 110,008,287
    candidates, on nasc-raspi-edgegpu (error, latency; latency <= 30 ms)."""
    return load_space("fbnet-nasc-7"), load_objective("nasc-raspi-edgegpu")


PROBLEMS = {"fbnet-nasc-4": _fbnet_4, "vgg11-compress-2MB": _vgg_capped, "fbnet-nasc-7": _fbnet_7}
OPTIMAL = "+optimal"  # a sampler name ending so runs the study with split = "optimal"


class Problem:
    """A problem's exact front (batched enumeration, nasopt.study.exact_front), its hypervolume,
    and the objectives a study calls: the split searched, or solved inside the objective."""

    def __init__(self, name: str, fronts: Path | None = None) -> None:
        space_spec, objective_spec = PROBLEMS[name]()
        self.name = name
        self.objectives = {
            split: NasObjective(
                StudySpec(name=name, space=space_spec.name, objective=objective_spec.name, split=split),
                space_spec,
                objective_spec,
            )
            for split in ("searched", "optimal")
        }
        self.objective = self.objectives["searched"]
        self.space = self.objective.space
        self.names = [p.name for p in self.space.params()]
        cached = fronts / f"{name}.json" if fronts is not None else None
        if cached is not None and cached.is_file():
            front = ExactFront.load(cached)
            if (front.space, front.objective) != (space_spec.name, objective_spec.name):
                raise SystemExit(f"{cached} is the front of another problem; remove it")
        else:
            front = exact_front(self.objective)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                front.save(cached)
        self.enumerate_s = front.seconds
        self.n_feasible = front.n_feasible
        self.front = front.losses()
        sign = np.array([1.0 if d == "minimize" else -1.0 for d in self.objective.directions])
        self.sign = sign
        assert front.feasible_min is not None and front.feasible_max is not None
        bounds = np.array([front.feasible_min, front.feasible_max]) * sign
        self.lo, self.hi = bounds.min(axis=0), bounds.max(axis=0)
        self.hv_exact = self._hv(self.front)

    def _hv(self, F: np.ndarray) -> float:
        if len(F) == 0:
            return 0.0
        Z = (F - self.lo) / np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return hypervolume(Z, np.full(Z.shape[1], REFERENCE))

    def hv_fraction(self, values: list[tuple[float, ...] | None]) -> float:
        points = [v for v in values if v is not None]
        F = np.array(points) * self.sign if points else np.zeros((0, len(self.sign)))
        return self._hv(F[nondominated(F)] if len(F) else F) / self.hv_exact

    def study_objective(self, split: str) -> Any:
        """A study's objective: the trial's parameters (the architecture only when the split is
        optimal) -> the analytic metrics, the constraints stored as NasObjective stores them."""
        objective = self.objectives[split]
        dists = objective.distributions()

        def call(trial: optuna.trial.Trial) -> tuple[float, ...]:
            params = {n: trial.suggest_categorical(n, list(d.choices)) for n, d in dists.items()}
            result = objective.evaluate(objective.candidate_of(params))
            trial.study._storage.set_trial_system_attr(trial._trial_id, "constraints", result.constraints)
            return tuple(result.metrics[m] for m in objective.metric_names)

        return call


def make(name: str, seed: int, problem: Problem) -> optuna.samplers.BaseSampler:
    split = "optimal" if name.endswith(OPTIMAL) else "searched"
    name = name.removesuffix(OPTIMAL)
    objective = problem.objectives[split]
    nasopt_kwargs: dict[str, Any] = {
        "seed": seed,
        "search_space": objective.distributions(),
        "feasibility": hard_constraint_check(objective),
    }
    if name == "asng":
        return ASNGSampler(**nasopt_kwargs)
    if name == "evolution":
        return EvolutionSampler(**nasopt_kwargs)
    if name == "reinforce":
        return ReinforceSampler(**nasopt_kwargs)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(name)


_PROBLEMS: dict[str, Problem] = {}


def run_one(task: tuple[str, str, int, int]) -> dict[str, Any]:
    problem_name, sampler_name, seed, n_trials = task
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if problem_name not in _PROBLEMS:
        _PROBLEMS[problem_name] = Problem(problem_name)
    problem = _PROBLEMS[problem_name]
    study = optuna.create_study(
        directions=problem.objective.directions, sampler=make(sampler_name, seed, problem)
    )
    start = time.perf_counter()
    study.optimize(
        problem.study_objective("optimal" if sampler_name.endswith(OPTIMAL) else "searched"),
        n_trials=n_trials,
    )
    elapsed = time.perf_counter() - start
    feasible_values = [
        tuple(t.values) if all(c <= 0 for c in t.system_attrs["constraints"]) else None for t in study.trials
    ]
    hv = {b: problem.hv_fraction(feasible_values[:b]) for b in BUDGETS if b <= n_trials}
    infeasible = sum(v is None for v in feasible_values)
    return {
        "problem": problem_name,
        "sampler": sampler_name,
        "seed": seed,
        "hv": hv,
        "seconds": elapsed,
        "infeasible": infeasible,
        "distinct": len({tuple(t.params.values()) for t in study.trials}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--samplers", default="asng,evolution,reinforce,random,tpe,nsga2")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write raw results here, after every run; an existing file"
        " of the same --trials is resumed (its runs are kept and not rerun)",
    )
    parser.add_argument(
        "--fronts", type=Path, default=None, help="keep the exact fronts here (reused when present)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="write the result tables here")
    parser.add_argument(
        "--render", type=Path, nargs="+", default=None, help="only merge these --json files into --markdown"
    )
    args = parser.parse_args(argv)
    if args.render:
        docs = [json.loads(p.read_text()) for p in args.render]
        results = [r for d in docs for r in d["results"]]
        for r in results:
            r["hv"] = {int(k): v for k, v in r["hv"].items()}
        commands = "`; `".join(d["command"] for d in docs)
        names = list(dict.fromkeys(r["sampler"] for r in results))
        order = [s for s in args.samplers.split(",") if s in names] + [
            s for s in names if s not in args.samplers
        ]
        text = report(
            docs[0]["info"], results, order, commands, sum(d["total_s"] for d in docs), docs[0]["args"]
        )
        if args.markdown:
            args.markdown.write_text(text)
        print(text)
        return 0
    samplers = args.samplers.split(",")
    problems = args.problems.split(",")
    info = {}
    for name in problems:
        p = _PROBLEMS[name] = Problem(name, args.fronts)  # once, shared with the forked workers
        info[name] = {
            "size": p.space.size(),
            "params": len(p.names),
            "feasible": p.n_feasible,
            "front": len(p.front),
            "enumerate_s": p.enumerate_s,
            "space": p.space.spec.name,
            "objective": p.objective.objective_spec.name,
            "metrics": p.objective.metric_names,
            "constraints": p.objective.constraint_names,
            "doc": PROBLEMS[name].__doc__,
        }
        print(
            f"{name}: {info[name]['size']:,} candidates, {p.n_feasible:,} feasible, "
            f"front {len(p.front)}, enumerated in {p.enumerate_s:.1f} s",
            flush=True,
        )
    # slowest (TPE) first so the two processes finish together
    tasks = [
        (pr, s, seed, args.trials)
        for s in sorted(samplers, key=lambda s: s != "tpe")
        for pr in problems
        for seed in range(args.seeds)
    ]
    command = "python benchmarks/search_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    run_args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results: list[dict[str, Any]] = []
    earlier_s = 0.0
    if args.json and args.json.is_file():
        old = json.loads(args.json.read_text())
        if old["args"]["trials"] == args.trials:
            results = [r for r in old["results"] if r["problem"] in problems and r["sampler"] in samplers]
            earlier_s = float(old["total_s"])
            done = {(r["problem"], r["sampler"], r["seed"]) for r in results}
            tasks = [t for t in tasks if t[:3] not in done]
            print(f"resuming {args.json}: {len(results)} runs kept, {len(tasks)} to go", flush=True)
    start = time.perf_counter()

    def save() -> None:
        if args.json:
            doc = {
                "info": info,
                "results": results,
                "total_s": earlier_s + time.perf_counter() - start,
                "command": command.strip(),
                "args": run_args,
            }
            args.json.write_text(json.dumps(doc, indent=1, default=str))

    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        for r in pool.imap_unordered(run_one, tasks):
            results.append(r)
            save()
            print(
                f"{r['problem']} {r['sampler']} seed {r['seed']}: {r['hv']} {r['seconds']:.1f} s", flush=True
            )
    save()
    total = earlier_s + time.perf_counter() - start
    for r in results:
        r["hv"] = {int(k): v for k, v in r["hv"].items()}
    text = report(info, results, samplers, command.strip(), total, run_args)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


def report(
    info: dict, results: list[dict], samplers: list[str], command: str, total: float, args: Any
) -> str:
    lines = [
        "# Search quality: hypervolume vs the exact Pareto front",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; {args['processes']} worker process(es) per command;"
        f" Optuna {optuna.__version__};"
        " in-memory storage.",
        f"Sampler runs: {total / 60:.1f} min of wall time in all.",
        "",
        "Metric: hypervolume of the feasible trials so far / hypervolume of the exact feasible front "
        f"(objectives normalised by the feasible candidates' min-max, reference point {REFERENCE}); "
        f"median over the seeds of each row (seeds 0..{args['seeds'] - 1} asked), min-max in brackets.",
        "",
    ]
    for name, i in info.items():
        lines += [
            f"## {name}",
            "",
            " ".join((i["doc"] or "").split()),
            "",
            f"{i['size']:,} candidates ({i['params']} parameters), {i['feasible']:,} feasible, exact front "
            f"{i['front']} points; metrics {', '.join(i['metrics'])}; "
            f"constraints {', '.join(i['constraints']) or 'none'}; "
            f"enumerated in {i['enumerate_s']:.1f} s.",
            "",
            "| sampler | "
            + " | ".join(f"HV @ {b}" for b in BUDGETS)
            + " | s / run | infeasible trials | distinct candidates | seeds |",
            "|---|" + "---:|" * (len(BUDGETS) + 4),
        ]
        for s in samplers:
            rs = [r for r in results if r["problem"] == name and r["sampler"] == s]
            if not rs:
                continue
            cells = []
            for b in BUDGETS:
                vals = [r["hv"][b] for r in rs if b in r["hv"]]
                cells.append(
                    f"{statistics.median(vals):.3f} [{min(vals):.3f}-{max(vals):.3f}]" if vals else "-"
                )
            sec = statistics.median(r["seconds"] for r in rs)
            inf = statistics.median(r["infeasible"] for r in rs)
            dis = statistics.median(r["distinct"] for r in rs)
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {sec:.1f} | {inf:g} | {dis:g} | {len(rs)} |")
        lines.append("")
    lines += verdict(info, results, samplers)
    return "\n".join(lines) + "\n"


def verdict(info: dict, results: list[dict], samplers: list[str]) -> list[str]:
    """The issue's targets checked on the medians: >= 0.95 by the last budget, and no worse than
    NSGA-II at any budget; every loss is listed."""

    def median(problem: str, sampler: str, budget: int) -> float | None:
        vals = [
            r["hv"][budget]
            for r in results
            if r["problem"] == problem and r["sampler"] == sampler and budget in r["hv"]
        ]
        return statistics.median(vals) if vals else None

    lines = ["## Verdict (medians)", ""]
    budgets = [b for b in BUDGETS if any(b in r["hv"] for r in results)]
    last = budgets[-1]
    for s in samplers:
        if s.endswith(OPTIMAL):
            searched = s.removesuffix(OPTIMAL)
            for problem in info:
                pairs = [(b, median(problem, s, b), median(problem, searched, b)) for b in budgets]
                if any(o is None or p is None for _, o, p in pairs):
                    continue
                cells = ", ".join(f"{o:.3f} vs {p:.3f} @ {b}" for b, o, p in pairs)
                lines.append(f"- {searched} on {problem}, split optimal vs searched: {cells}.")
            continue
        if s == "nsga2":
            continue
        for problem in info:
            final = median(problem, s, last)
            if final is None:
                continue
            losses = [
                f"{b} trials ({median(problem, s, b):.3f} < {median(problem, 'nsga2', b):.3f})"
                for b in budgets
                if median(problem, "nsga2", b) is not None
                and median(problem, s, b) < median(problem, "nsga2", b)
            ]
            target = "meets" if final >= 0.95 else "MISSES"
            vs = (
                "no worse than NSGA-II at every budget"
                if not losses
                else "loses to NSGA-II at " + ", ".join(losses)
            )
            lines.append(f"- {s} on {problem}: {target} 0.95 by {last} trials ({final:.3f}); {vs}.")
    lines.append("")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
