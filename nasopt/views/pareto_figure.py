"""Any two metrics against each other, the study's feasible front highlighted."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from nasopt.spec import ParetoView
from nasopt.study.baselines import BASELINES, BaselinePoint, load_baselines
from nasopt.study.pareto import front, is_feasible, retrained_accuracies
from nasopt.views.fields import (
    BASELINE_MARKERS,
    DOMINATED_LABEL,
    FRONT_LABEL,
    INFEASIBLE_LABEL,
    axis_label,
    complete_trials,
    fmt,
    hover_keys,
    is_numeric,
    tick_format,
    trial_fields,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go


def add_baseline_traces(fig: go.Figure, study: optuna.Study, view: ParetoView) -> None:
    """The study's stored baselines (`nasopt baselines`) on its own system, one marked trace per
    baseline; dynamic surgery at other bandwidths is left out (another system)."""
    import plotly.graph_objects as go

    stored = load_baselines(study)
    if stored is None:
        return
    for name in BASELINES:
        if name == "dynamic-surgery":
            continue  # at scale 1 it is the Neurosurgeon point, elsewhere another system
        members: list[BaselinePoint] = [
            p
            for p in stored.points
            if p.baseline == name
            and p.nominal
            and is_numeric(p.fields.get(view.x))
            and is_numeric(p.fields.get(view.y))
        ]
        if not members:
            continue
        symbol, color = BASELINE_MARKERS[name]
        fig.add_trace(
            go.Scatter(
                name=f"baseline: {name}",
                x=[p.fields[view.x] for p in members],
                y=[p.fields[view.y] for p in members],
                mode="markers",
                marker={"symbol": symbol, "size": 15, "color": color, "line": {"width": 1, "color": "black"}},
                customdata=[
                    [
                        html.escape(p.label),
                        "yes" if p.feasible else "no",
                        html.escape(str(p.fields.get("arch", ""))),
                    ]
                    for p in members
                ],
                hovertemplate=f"<b>{html.escape(name)}</b>: %{{customdata[0]}}"
                f"<br>{axis_label(view.x)}: %{{x:.4g}}<br>{axis_label(view.y)}: %{{y:.4g}}"
                "<br>feasible: %{customdata[1]}"
                "<br>%{customdata[2]}<extra></extra>",
            )
        )


def add_retrained_traces(fig: go.Figure, study: optuna.Study, view: ParetoView) -> None:
    """Retrained finalists (`nasopt retrain`) beside their supernet estimates: a star at the
    retrained accuracy (or error), joined to the trial's point, when an axis shows either."""
    import plotly.graph_objects as go

    retrained = retrained_accuracies(study)
    axes = {view.x, view.y}
    metric = "accuracy" if "accuracy" in axes else "error" if "error" in axes else None
    if not retrained or metric is None:
        return
    xs: list[float | None] = []
    ys: list[float | None] = []
    stars_x, stars_y, custom = [], [], []
    for t in complete_trials(study):
        if t.number not in retrained:
            continue
        fields = trial_fields(study, t)
        acc = retrained[t.number]
        moved = {**fields, metric: acc if metric == "accuracy" else 1.0 - acc}
        if not all(is_numeric(f.get(a)) for f in (fields, moved) for a in (view.x, view.y)):
            continue
        xs += [fields[view.x], moved[view.x], None]
        ys += [fields[view.y], moved[view.y], None]
        stars_x.append(moved[view.x])
        stars_y.append(moved[view.y])
        custom.append([t.number, fmt(fields.get("accuracy")), fmt(acc)])
    if not stars_x:
        return
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": "#c0392b", "width": 1},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            name="retrained (nasopt retrain)",
            x=stars_x,
            y=stars_y,
            mode="markers",
            marker={"symbol": "star", "size": 15, "color": "#c0392b", "line": {"width": 1, "color": "black"}},
            customdata=custom,
            hovertemplate="<b>trial %{customdata[0]}</b> retrained<br>accuracy %{customdata[2]}"
            " (supernet estimate %{customdata[1]})"
            f"<br>{axis_label(view.x)}: %{{x:.4g}}<br>{axis_label(view.y)}: %{{y:.4g}}<extra></extra>",
        )
    )


def pareto_figure(study: optuna.Study, view: ParetoView, every: list[str]) -> go.Figure:
    """Front = `study.best_trials` (feasible Pareto trials); dominated and infeasible marked."""
    import plotly.graph_objects as go

    trials = complete_trials(study)
    best = {t.number for t in front(study, feasible_only=True)}
    groups: dict[str, list[FrozenTrial]] = {DOMINATED_LABEL: [], INFEASIBLE_LABEL: [], FRONT_LABEL: []}
    for t in trials:
        if t.number in best:
            groups[FRONT_LABEL].append(t)
        elif is_feasible(t):
            groups[DOMINATED_LABEL].append(t)
        else:
            groups[INFEASIBLE_LABEL].append(t)
    fig = go.Figure()
    color_values = [trial_fields(study, t).get(view.color) for t in trials if view.color is not None]
    numeric_colors = [v for v in color_values if is_numeric(v)]
    cmin = min(numeric_colors, default=0)
    cmax = max(numeric_colors, default=1)
    for name, members in groups.items():
        if not members:
            continue
        rows = [trial_fields(study, t) for t in members]
        if name == FRONT_LABEL:
            order = sorted(range(len(rows)), key=lambda i: (rows[i][view.x], rows[i][view.y]))
            members = [members[i] for i in order]
            rows = [rows[i] for i in order]
        keys = hover_keys(view.hover, rows[0], every)
        custom = [[t.number, *(fmt(r.get(k)) for k in keys)] for t, r in zip(members, rows, strict=True)]
        template = f"<b>trial %{{customdata[0]}}</b> ({name})<br>{axis_label(view.x)}: %{{x:.4g}}"
        template += f"<br>{axis_label(view.y)}: %{{y:.4g}}"
        if view.color is not None:
            template += f"<br>{view.color}: %{{marker.color}}"
        for j, k in enumerate(keys, start=1):
            template += f"<br>{html.escape(k)}: %{{customdata[{j}]}}"
        marker: dict[str, Any] = {"size": 9, "line": {"width": 0.5, "color": "#333"}}
        if view.color is not None:
            marker.update(
                color=[r.get(view.color) if is_numeric(r.get(view.color)) else cmin for r in rows],
                coloraxis="coloraxis",
            )
        if name == FRONT_LABEL:
            marker.update(size=14, symbol="diamond", line={"width": 1.5, "color": "black"})
        elif name == INFEASIBLE_LABEL:
            marker.update(symbol="x", size=9, opacity=0.7, line={"width": 0})
        else:
            marker.update(opacity=0.55)
        fig.add_trace(
            go.Scatter(
                name=name,
                x=[r[view.x] for r in rows],
                y=[r[view.y] for r in rows],
                mode="lines+markers" if name == FRONT_LABEL else "markers",
                line={"shape": "hv", "color": "black", "width": 1.5, "dash": "dot"},
                marker=marker,
                customdata=custom,
                hovertemplate=template + "<extra></extra>",
            )
        )
    add_baseline_traces(fig, study, view)
    add_retrained_traces(fig, study, view)
    n_inf = len(groups[INFEASIBLE_LABEL])
    title = view.title or f"{axis_label(view.y)} vs {axis_label(view.x)}"
    title += f" — {study.study_name}: {len(trials)} trials, {len(best)} on the front, {n_inf} infeasible"
    fig.update_layout(
        title=title,
        xaxis={"title": axis_label(view.x), "type": "log" if view.log_x else "linear", **tick_format(view.x)},
        yaxis={"title": axis_label(view.y), "type": "log" if view.log_y else "linear", **tick_format(view.y)},
        legend={"orientation": "h", "y": -0.18},
        template="plotly_white",
        height=520,
    )
    if view.color is not None:
        fig.update_layout(
            coloraxis={
                "colorscale": "Viridis",
                "cmin": cmin,
                "cmax": cmax if cmax > cmin else cmin + 1,
                "colorbar": {"title": {"text": view.color}},
            }
        )
    return fig
