"""Fields of a study's trials that views can name, their checks and formatting, and how
studies are grouped into lines."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasopt.errors import SpecError
from nasopt.spec import (
    DashboardSpec,
    ResolvedStudy,
)
from nasopt.study.lifecycle import SPEC_ATTR, load
from nasopt.study.pareto import is_feasible, metric_names

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


SAMPLER_ATTR = "nasopt:sampler"


FIGURE_PREFIX = "nasopt-"


FRONT_LABEL = "Pareto front (feasible)"


DOMINATED_LABEL = "dominated (feasible)"


INFEASIBLE_LABEL = "infeasible (violates a constraint)"


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


# (plotly marker symbol, colour) of each baseline of nasopt.study.baselines on the figures
BASELINE_MARKERS = {
    "all-on-first": ("triangle-up", "#d62728"),
    "all-on-last": ("triangle-down", "#9467bd"),
    "neurosurgeon": ("star", "#ff7f0e"),
    "nas-then-split": ("square", "#2ca02c"),
    "dynamic-surgery": ("cross", "#8c564b"),
}


def tick_format(metric: str) -> dict[str, str]:
    """Axis ticks of accuracy-like metrics with 3 decimals (not 0.94256)."""
    return {"tickformat": ".3f"} if metric in ("accuracy", "error") else {}


DEVICE_SHADES = ("#dbe9f8", "#fde3c8", "#d9f0d9", "#f8d9d9", "#e6dcf3", "#eadfdb")


# ------------------------------------------------------------------ fields of a study


def trial_fields(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """Every field a view may name, for one completed trial."""
    out: dict[str, Any] = {}
    out.update(trial.params)
    out.update(trial.user_attrs)
    if trial.values is not None:
        out.update(dict(zip(metric_names(study), trial.values, strict=True)))
    cand = trial.user_attrs.get("candidate")
    if isinstance(cand, dict):
        cuts = cand.get("cuts") or []
        if cuts:
            out["cut"] = cuts[0]
        out["n_cuts"] = len(cuts)
        out["bits"] = cand.get("bits", 32)
        out["bottleneck_width"] = cand.get("bottleneck_width", 0)
        if cand.get("fuse_after") is not None:
            out["fuse_after"] = cand["fuse_after"]
    out["feasible"] = is_feasible(trial)
    out.pop("candidate", None)
    return out


def is_numeric(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class StudyFields:
    """Which fields the completed trials of a study carry: numeric ones and all of them."""

    numeric: list[str]
    every: list[str]

    @classmethod
    def of(cls, study: optuna.Study, trials: list[FrozenTrial]) -> StudyFields:
        numeric: dict[str, None] = {}
        every: dict[str, None] = {}
        for t in trials:
            for key, value in trial_fields(study, t).items():
                every[key] = None
                if is_numeric(value):
                    numeric[key] = None
        return cls(sorted(numeric), sorted(every))


def check_view(spec: DashboardSpec, fields: StudyFields, file: str) -> None:
    """Every metric and hover field the view names must exist in the study."""

    def need(field: str, value: str | None, numeric: bool = True) -> None:
        if value is None:
            return
        available = fields.numeric if numeric else fields.every
        if value not in available:
            raise SpecError(
                "the study has no such metric",
                file=file,
                field=field,
                value=value,
                allowed=available or "(no completed trials)",
            )

    def need_hover(field: str, patterns: list[str]) -> None:
        for i, pattern in enumerate(patterns):
            if not fnmatch.filter(fields.every, pattern):
                need(f"{field}[{i}]", pattern, numeric=False)

    for i, v in enumerate(spec.pareto):
        need(f"pareto[{i}].x", v.x)
        need(f"pareto[{i}].y", v.y)
        need(f"pareto[{i}].color", v.color)
        need_hover(f"pareto[{i}].hover", v.hover)
    for i, b in enumerate(spec.latency_breakdown):
        need(f"latency_breakdown[{i}].y2", b.y2)
        need_hover(f"latency_breakdown[{i}].hover", b.hover)
    for i, s in enumerate(spec.threshold_sweep):
        from nasopt.study.sweep import SWEEPABLE

        if s.metric not in SWEEPABLE:
            raise SpecError(
                "not a threshold metric",
                file=file,
                field=f"threshold_sweep[{i}].metric",
                value=s.metric,
                allowed=list(SWEEPABLE),
            )
        need(f"threshold_sweep[{i}].metric", s.metric)


def hover_keys(patterns: list[str], sample: dict[str, Any], every: list[str]) -> list[str]:
    keys: list[str] = []
    for pattern in patterns:
        for key in fnmatch.filter(every, pattern) if any(c in pattern for c in "*?[") else [pattern]:
            if key not in keys:
                keys.append(key)
    return keys


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def axis_label(field: str) -> str:
    units = {"latency_ms": "latency (ms)", "energy_mj": "energy (mJ)", "accuracy": "accuracy (top-1)"}
    return units.get(field, field)


# ------------------------------------------------------------------ figures


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def sampler_label(study: optuna.Study, resolved: ResolvedStudy | None) -> str:
    """The sampler a study ran with: user attr `nasopt:sampler`, else its stored spec's."""
    name = study.user_attrs.get(SAMPLER_ATTR)
    if name:
        return str(name)
    return resolved.study.sampler.name if resolved is not None else study.study_name


def group_label(study: optuna.Study, resolved: ResolvedStudy | None, group_by: str) -> str:
    if group_by == "sampler":
        return sampler_label(study, resolved)
    if group_by == "system":
        return str(study.user_attrs.get("nasopt:objective") or study.study_name)
    return study.study_name


def sibling_studies(
    storage: BaseStorage, study: optuna.Study, names: list[str] | str
) -> list[tuple[optuna.Study, ResolvedStudy]]:
    """The studies a comparison view draws: `study` first, then the named ones (or every
    nasopt study in the storage with the same objectives)."""
    from nasopt.study.storage import study_names

    available = study_names(storage)
    if names == "all":
        wanted = [n for n in available if n != study.study_name]
    else:
        wanted = [n for n in names if n != study.study_name]
        for n in wanted:
            if n not in available:
                raise SpecError("unknown study", field="studies", value=n, allowed=available)
    out = [(study, load(storage, study.study_name)[1])]
    for n in wanted:
        other = optuna.load_study(study_name=n, storage=storage)
        if SPEC_ATTR not in other.user_attrs:
            continue
        if metric_names(other) != metric_names(study) or other.directions != study.directions:
            if names == "all":
                continue
            raise SpecError("study has different objectives", field="studies", value=n)
        out.append(load(storage, n))
    return out
