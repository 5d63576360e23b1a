"""Every figure a dashboard view declares, built for one study."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from nasopt.errors import SpecError
from nasopt.presets import load_dashboard
from nasopt.spec import (
    DashboardSpec,
    ResolvedStudy,
    resolve_preset,
)
from nasopt.study.lifecycle import load
from nasopt.views.arch_strip import arch_strip_figure
from nasopt.views.breakdown_figure import breakdown_figure
from nasopt.views.fields import FIGURE_PREFIX, StudyFields, check_view, complete_trials
from nasopt.views.hypervolume_figure import hypervolume_figure
from nasopt.views.pareto_figure import pareto_figure
from nasopt.views.sweep_figure import sweep_figure
from nasopt.views.tree_figure import tree_figure

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


@dataclass
class BuiltFigure:
    id: str
    kind: str
    title: str
    figure: Any


TREE_VIEW = "model-tree"  # what a model-tree study draws when asked for the default view


def view_for(view: str | DashboardSpec, resolved: ResolvedStudy) -> str | DashboardSpec:
    """A model-tree study's trials are trees, not networks: the default view becomes
    `dashboards/model-tree.toml` (its sharing figure and accuracy vs mean latency)."""
    if view == "default" and resolved.study.model_tree is not None:
        return TREE_VIEW
    return view


def resolve_view(view: str | DashboardSpec) -> tuple[DashboardSpec, str]:
    if isinstance(view, DashboardSpec):
        return view, f"dashboard {view.name}"
    path = resolve_preset("dashboard", view)
    return load_dashboard(str(path)), str(path)


def figure_count(view: str | DashboardSpec) -> int:
    """How many figures `view` declares (progress bars count them)."""
    spec, _ = resolve_view(view)
    return (
        sum(len(x) for x in (spec.pareto, spec.latency_breakdown, spec.threshold_sweep, spec.arch_strip))
        + len(spec.hypervolume)
        + len(spec.model_tree)
    )


def build(
    storage: BaseStorage,
    study_name: str,
    view: str | DashboardSpec = "default",
    *,
    on_figure: Callable[[str], None] | None = None,
) -> tuple[list[BuiltFigure], optuna.Study, ResolvedStudy]:
    """Every figure of `view` for the study; SpecError for a field the study lacks.
    `on_figure(kind)` is called after each figure is built (progress)."""
    study, resolved = load(storage, study_name)
    spec, file = resolve_view(view_for(view, resolved))
    fields = StudyFields.of(study, complete_trials(study))
    check_view(spec, fields, file)
    out: list[BuiltFigure] = []

    def add(kind: str, i: int, fig: Any) -> None:
        title = fig.layout.title.text or kind
        out.append(BuiltFigure(f"{FIGURE_PREFIX}{kind}-{i}", kind, title, fig))
        if on_figure is not None:
            on_figure(kind)

    try:
        for i, v in enumerate(spec.pareto):
            add("pareto", i, pareto_figure(study, v, fields.every))
        for i, b in enumerate(spec.latency_breakdown):
            add("latency_breakdown", i, breakdown_figure(study, resolved, b, fields.every))
        for i, s in enumerate(spec.threshold_sweep):
            add("threshold_sweep", i, sweep_figure(study, storage, s)[0])
        for i, a in enumerate(spec.arch_strip):
            add("arch_strip", i, arch_strip_figure(study, resolved, a))
        for i, h in enumerate(spec.hypervolume):
            add("hypervolume", i, hypervolume_figure(study, storage, h))
        for i, t in enumerate(spec.model_tree):
            add("model_tree", i, tree_figure(study, resolved, t))
    except SpecError as exc:
        raise exc.in_file(file) from None
    return out, study, resolved


# ------------------------------------------------------------------ summaries and notes
