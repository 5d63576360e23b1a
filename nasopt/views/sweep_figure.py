"""Best accuracy versus a latency (or energy) threshold, one line per group of studies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from nasopt.spec import SweepView
from nasopt.study.baselines import baseline_sweep, load_baselines
from nasopt.study.pareto import is_feasible
from nasopt.views.fields import (
    BASELINE_MARKERS,
    PALETTE,
    axis_label,
    complete_trials,
    group_label,
    is_numeric,
    sibling_studies,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.storages import BaseStorage


def sweep_figure(
    study: optuna.Study, storage: BaseStorage, view: SweepView
) -> tuple[go.Figure, dict[str, list[tuple[float, float | None]]]]:
    """Best feasible accuracy at each threshold, one line per group (best over its studies), and
    a dashed line per stored baseline of `study` (`nasopt baselines`)."""
    import plotly.graph_objects as go

    from nasopt.study.sweep import sweep_from_study

    pairs = sibling_studies(storage, study, view.studies)
    thresholds = view.thresholds
    if thresholds == "auto":
        values = [
            float(t.user_attrs[view.metric])
            for s, _ in pairs
            for t in complete_trials(s)
            if is_feasible(t) and is_numeric(t.user_attrs.get(view.metric)) and t.user_attrs[view.metric] > 0
        ]
        lo, hi = (min(values), max(values)) if values else (1.0, 10.0)
        hi = max(hi, lo * 1.0001)
        thresholds = [lo * (hi / lo) ** (i / (view.points - 1)) for i in range(view.points)]
    thresholds = sorted(thresholds)
    # each study's stored trials re-scored at every threshold: nested feasible sets, so every
    # line is monotone by construction (a group's line is the best of its studies', also monotone)
    lines: dict[str, list[tuple[float, float | None]]] = {}
    binds: dict[str, list[bool]] = {}
    for s, resolved in pairs:
        label = group_label(s, resolved, view.group_by)
        points = sweep_from_study(s, resolved, view.metric, thresholds, reevaluate=False)
        current = lines.setdefault(label, [(th, None) for th in thresholds])
        bound = binds.setdefault(label, [False] * len(thresholds))
        for i, p in enumerate(points):
            best = current[i][1]
            bound[i] = bound[i] or bool(p.binds)
            if p.accuracy is not None and (best is None or p.accuracy > best):
                current[i] = (p.threshold, p.accuracy)
    fig = go.Figure()
    for i, (label, pts) in enumerate(lines.items()):
        fig.add_trace(
            go.Scatter(
                name=label,
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                mode="lines+markers",
                line={"shape": "hv", "color": PALETTE[i % len(PALETTE)]},
                marker={"symbol": ["circle" if b else "circle-open" for b in binds[label]], "size": 9},
                customdata=["binds" if b else "does not bind" for b in binds[label]],
                hovertemplate=f"{label}<br>{view.metric} ≤ %{{x:.4g}} (%{{customdata}})<br>"
                "best accuracy %{y:.4f}<extra></extra>",
            )
        )
    stored = load_baselines(study)
    if stored is not None:
        for name, pts in baseline_sweep(stored, view.metric, thresholds).items():
            if name == "dynamic-surgery":
                continue  # at scale 1 it is the Neurosurgeon line
            fig.add_trace(
                go.Scatter(
                    name=f"baseline: {name}",
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines+markers",
                    line={"shape": "hv", "dash": "dash", "color": BASELINE_MARKERS[name][1]},
                    marker={"symbol": BASELINE_MARKERS[name][0]},
                    hovertemplate=f"baseline {name}<br>{view.metric} ≤ %{{x:.4g}}<br>"
                    "best accuracy %{y:.4g}<extra></extra>",
                )
            )
    binding = sorted({th for label in binds for th, b in zip(thresholds, binds[label], strict=True) if b})
    note = (
        f"filled: the threshold binds ({len(binding)} of {len(thresholds)}); "
        "open: the most accurate trial meets it"
        if binding
        else "no threshold binds: the most accurate trial meets every one (open markers)"
    )
    fig.add_annotation(
        text=note,
        xref="paper",
        yref="paper",
        x=0,
        y=1.06,
        showarrow=False,
        font={"size": 11, "color": "#555"},
    )
    fig.update_layout(
        title=view.title or f"Best accuracy vs {view.metric} threshold (one line per {view.group_by})",
        xaxis={"title": f"{axis_label(view.metric)} threshold", "type": "log"},
        yaxis={"title": "best feasible accuracy", "tickformat": ".3f"},
        legend={"title": {"text": view.group_by}},
        template="plotly_white",
        height=460,
    )
    return fig, lines
