"""Threshold sweeps: best accuracy versus a latency (or energy) threshold.

Two ways: run one constrained study per threshold value (`sweep_studies`), or answer from the
trials of an existing study without new trials (`sweep_from_study`), re-evaluating each stored
candidate analytically when `--set` changed the system (e.g. a link's bandwidth).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nasopt.core.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.spec import ObjectiveSpec, ResolvedStudy, SearchSpaceSpec, StudySpec, parse_spec
from nasopt.study.objective import NasObjective

SWEEPABLE = ("latency_ms", "energy_mj")


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    accuracy: float | None  # None: no trial meets the threshold and the other constraints
    trial: int | None
    latency_ms: float | None
    trials: int
    study_name: str
    # whether the threshold excluded a more accurate trial (one meeting the other constraints);
    # False: the answer is the same without the threshold
    binds: bool | None = None
    # the swept metric of the most accurate trial without the threshold (None: no such trial)
    free_metric: float | None = None


def parse_threshold(text: str) -> tuple[str, list[float]]:
    """`latency_ms=5,10,20` -> ('latency_ms', [5.0, 10.0, 20.0])."""
    key, sep, values = text.partition("=")
    if not sep or not values:
        raise SpecError("expected KEY=V1,V2,...", field="--threshold", value=text, allowed=list(SWEEPABLE))
    if key not in SWEEPABLE:
        raise SpecError("unknown threshold key", field="--threshold", value=key, allowed=list(SWEEPABLE))
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise SpecError("threshold values must be numbers", field="--threshold", value=values) from None
    if not numbers or any(v <= 0 for v in numbers):
        raise SpecError("threshold values must be positive", field="--threshold", value=values)
    return key, numbers


def apply_sets(resolved: ResolvedStudy, sets: list[str]) -> ResolvedStudy:
    """Apply `--set section.path=value` overrides (section: study, space or objective)."""
    if not sets:
        return resolved
    doc = json.loads(resolved.to_json())
    for item in sets:
        path, sep, raw = item.partition("=")
        keys = path.split(".")
        if not sep or len(keys) < 2 or keys[0] not in doc:
            raise SpecError(
                "expected SECTION.PATH=VALUE",
                field="--set",
                value=item,
                allowed=["study.", "space.", "objective."],
            )
        node: Any = doc
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                allowed = sorted(node) if isinstance(node, dict) else None
                raise SpecError("unknown key", field=f"--set {'.'.join(keys[: depth + 1])}", allowed=allowed)
            node = node[key]
        last = keys[-1]
        if not isinstance(node, dict) or last not in node:
            allowed = sorted(node) if isinstance(node, dict) else None
            raise SpecError("unknown key", field=f"--set {path}", allowed=allowed)
        try:
            node[last] = json.loads(raw)
        except json.JSONDecodeError:
            node[last] = raw
    source = "--set"
    try:
        return ResolvedStudy(
            study=parse_spec(StudySpec, doc["study"], source),
            space=parse_spec(SearchSpaceSpec, doc["space"], source),
            objective=parse_spec(ObjectiveSpec, doc["objective"], source),
        )
    except SpecError as exc:
        raise SpecError(
            exc.detail, field=f"--set {exc.field}", value=exc.value, allowed=exc.allowed
        ) from None


def with_threshold(resolved: ResolvedStudy, key: str, value: float) -> ResolvedStudy:
    constraints = resolved.objective.constraints.model_copy(update={key: value})
    return resolved.with_objective(resolved.objective.model_copy(update={"constraints": constraints}))


def best_feasible(trials: list[tuple[int, float, float, bool]]) -> tuple[int, float, float] | None:
    """(number, accuracy, latency_ms) of the most accurate feasible trial, ties to lower latency."""
    ok = [(n, acc, lat) for n, acc, lat, feasible in trials if feasible]
    if not ok:
        return None
    return max(ok, key=lambda t: (t[1], -t[2]))


def _point(
    scored: list[tuple[int, float, float, float, bool]], value: float, trials: int, study_name: str
) -> SweepPoint:
    """The best trial with metric <= `value` among `scored` (number, accuracy, latency_ms,
    metric, other constraints met), and whether the threshold binds."""
    free = best_feasible([(n, acc, lat, ok) for n, acc, lat, _, ok in scored])
    free_metric = None
    if free is not None:
        free_metric = next(m for n, _, _, m, _ in scored if n == free[0])
    best = best_feasible([(n, acc, lat, ok and metric <= value) for n, acc, lat, metric, ok in scored])
    binds = None if free_metric is None else free_metric > value
    if best is None:
        return SweepPoint(value, None, None, None, trials, study_name, binds, free_metric)
    return SweepPoint(value, best[1], best[0], best[2], trials, study_name, binds, free_metric)


def study_point(study: optuna.Study, threshold: float, key: str = "latency_ms") -> SweepPoint:
    """The best feasible trial of a constrained sweep study (its own search for `threshold`)."""
    scored = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        others_ok = all(
            v <= 0 for n, v in a.items() if n.startswith("violation:") and n != f"violation:{key}"
        )
        scored.append((t.number, float(a["accuracy"]), float(a["latency_ms"]), float(a[key]), others_ok))
    return _point(scored, threshold, len(study.trials), study.study_name)


def _single_networks(resolved: ResolvedStudy) -> None:
    """Threshold sweeps rank single networks by a constrained metric; a model tree's trials
    carry a reward over replayed contexts instead, so such a study is refused by name."""
    if resolved.study.model_tree is not None:
        raise SpecError(
            f"study {resolved.study.name!r} searches model trees ([model_tree]): a threshold sweep "
            "compares single networks; compare trees with nasopt.study.model_tree.compare "
            "(README, Varying networks)",
            field="model_tree",
        )


def sweep_from_study(
    study: optuna.Study, resolved: ResolvedStudy, key: str, values: list[float], *, reevaluate: bool
) -> list[SweepPoint]:
    """Answer a threshold sweep from an existing study's completed trials (no new trials).

    With `reevaluate`, each stored candidate is re-scored under `resolved` (e.g. after
    `--set objective.links.X.bandwidth_bps=...`); otherwise the stored attributes are used."""
    _single_networks(resolved)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # per trial, once: (number, accuracy, latency_ms, the swept metric, other constraints met)
    scored: list[tuple[int, float, float, float, bool]] = []
    if reevaluate:
        target = with_threshold(resolved, key, values[0])
        objective = NasObjective(target.study, target.space, target.objective)
        for t in complete:
            result = objective.evaluate(Candidate.from_dict(t.user_attrs["candidate"]))
            others_ok = all(
                v <= 0
                for name, v in zip(objective.constraint_names, result.constraints, strict=True)
                if name != key
            )
            m = result.metrics
            scored.append((t.number, result.accuracy, m["latency_ms"], m[key], others_ok))
    else:
        for t in complete:
            a = t.user_attrs
            others_ok = all(
                v <= 0 for n, v in a.items() if n.startswith("violation:") and n != f"violation:{key}"
            )
            scored.append((t.number, float(a["accuracy"]), float(a["latency_ms"]), float(a[key]), others_ok))
    # one set of trials, nested feasible sets: best accuracy never falls as the threshold rises
    return [_point(scored, value, len(complete), study.study_name) for value in values]


def sweep_notes(key: str, points: list[SweepPoint], *, from_one_study: bool) -> list[str]:
    """Lines under a sweep table: which thresholds bind, and (separate searches only) where a
    looser threshold found a less accurate best than a tighter one."""
    notes = []
    binding = [p.threshold for p in points if p.binds]
    free = [p.free_metric for p in points if p.free_metric is not None]
    if points and not binding:
        where = f" ({key} {max(free):.4g})" if free else ""
        notes.append(
            f"note: no threshold binds: the most accurate trial{where} meets every threshold, "
            "so the sweep cannot show a trade-off; try smaller values"
        )
    elif binding:
        notes.append(f"binding thresholds ({key} <=): {', '.join(f'{v:g}' for v in binding)}")
    if not from_one_study:
        ordered = sorted(points, key=lambda p: p.threshold)
        for lo, hi in itertools.pairwise(ordered):
            if lo.accuracy is not None and (hi.accuracy is None or hi.accuracy < lo.accuracy):
                notes.append(
                    f"note: separate searches disagree: best accuracy at {key} <= {hi.threshold:g} "
                    f"({'none' if hi.accuracy is None else f'{hi.accuracy:.4f}'}) is below that at "
                    f"<= {lo.threshold:g} ({lo.accuracy:.4f}); each threshold ran its own search, so "
                    "this is search noise, not the threshold. `nasopt sweep --from-front` re-scores "
                    "one set of trials and is monotone by construction"
                )
                break
    return notes


def render_points(key: str, points: list[SweepPoint]) -> str:
    from nasopt.study.pareto import table

    data = [
        {
            f"{key} <=": p.threshold,
            "best accuracy": "none feasible" if p.accuracy is None else round(p.accuracy, 4),
            "latency_ms": "-" if p.latency_ms is None else round(p.latency_ms, 4),
            "trial": "-" if p.trial is None else p.trial,
            "binds": "-" if p.binds is None else ("yes" if p.binds else "no"),
            "trials": p.trials,
            "study": p.study_name,
        }
        for p in points
    ]
    return table(data, list(data[0]))


def threshold_studies(
    base: ResolvedStudy, key: str, values: list[float], sets: list[str]
) -> list[tuple[float, ResolvedStudy, str]]:
    """One study per threshold value: (value, its resolved spec, its study name), every spec
    checked by building its objective, so a bad value fails before anything is written. `sets`
    (the `--set` overrides already applied to `base`) give the names a suffix of their own."""
    import hashlib

    _single_networks(base)
    suffix = "." + hashlib.sha256("|".join(sets).encode()).hexdigest()[:6] if sets else ""
    out = []
    for value in values:
        resolved = with_threshold(base, key, value)
        NasObjective(resolved.study, resolved.space, resolved.objective)
        out.append((value, resolved, f"{base.study.name}.{key}={value:g}{suffix}"))
    return out


def run_threshold_sweep(
    storage_url: str | None,
    studies: list[tuple[float, ResolvedStudy, str]],
    key: str,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    show_progress: bool = True,
    prepare: Any = None,
) -> list[SweepPoint]:
    """Create or resume each threshold's study, run it to its budget (or `n_trials` more) and
    return one point per threshold; `prepare(resolved)` runs first (e.g. trains the supernet)."""
    from nasopt.study.lifecycle import create_or_resume, remaining_budget, run_workers
    from nasopt.study.storage import open_storage

    storage = open_storage(storage_url)
    points = []
    for value, resolved, name in studies:
        if prepare is not None:
            prepare(resolved)
        study = create_or_resume(resolved, storage, name)
        n = n_trials if n_trials is not None else remaining_budget(study, resolved)
        if n:
            run_workers(storage_url, name, n, workers, show_progress=show_progress)
        points.append(study_point(study, value, key))
    return points
