"""Stacked compute and transfer bars per Pareto-optimal trial, a metric on a second axis."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import optuna

from nasopt.spec import (
    BreakdownView,
    ResolvedStudy,
)
from nasopt.study.pareto import front
from nasopt.views.fields import PALETTE, axis_label, fmt, hover_keys, tick_format, trial_fields

if TYPE_CHECKING:
    import plotly.graph_objects as go


def segment_order(resolved: ResolvedStudy, keys: list[str]) -> list[str]:
    """compute_ms:<device> and transfer_ms:<link> in execution order where the topology says."""
    compute = [k for k in keys if k.startswith("compute_ms:")]
    transfer = [k for k in keys if k.startswith("transfer_ms:")]
    order: list[str] = []
    links = resolved.objective.links
    for c in compute:
        order.append(c)
        device = c.split(":", 1)[1]
        order += [
            t
            for t in transfer
            if t not in order
            and links.get(t.split(":", 1)[1], None) is not None
            and links[t.split(":", 1)[1]].src == device
        ]
    return order + [t for t in transfer if t not in order]


def breakdown_figure(
    study: optuna.Study, resolved: ResolvedStudy, view: BreakdownView, every: list[str]
) -> go.Figure:
    """One stacked bar per Pareto-optimal trial (sorted by latency); segments sum to its latency."""
    import plotly.graph_objects as go

    trials = sorted(front(study, feasible_only=True), key=lambda t: float(t.user_attrs["latency_ms"]))
    trials = trials[: view.max_trials]
    rows = [trial_fields(study, t) for t in trials]
    labels = [f"#{t.number}" for t in trials]
    keys = sorted({k for r in rows for k in r if k.startswith(("compute_ms:", "transfer_ms:"))})
    fig = go.Figure()
    shown = hover_keys(view.hover, rows[0], every) if rows else []
    custom = [[fmt(r.get(k)) for k in shown] for r in rows]
    extra = "".join(f"<br>{html.escape(k)}: %{{customdata[{j}]}}" for j, k in enumerate(shown))
    for i, key in enumerate(segment_order(resolved, keys)):
        values = [float(r.get(key, 0.0)) for r in rows]
        if not any(values):
            continue
        kind, where = key.split(":", 1)
        name = f"{'compute on' if kind == 'compute_ms' else 'transfer over'} {where}"
        fig.add_trace(
            go.Bar(
                name=name,
                x=labels,
                y=values,
                marker={
                    "color": PALETTE[i % len(PALETTE)],
                    "pattern": {"shape": "" if kind == "compute_ms" else "/"},
                },
                customdata=custom,
                hovertemplate=f"%{{x}} {name}: %{{y:.4g}} ms{extra}<extra></extra>",
                meta={"segment": key},
            )
        )
    totals = [float(r["latency_ms"]) for r in rows]
    summed = [sum(float(r.get(k, 0.0)) for k in keys) for r in rows]
    residual = [t - s for t, s in zip(totals, summed, strict=True)]
    note = ""
    if any(r > 1e-9 * max(1.0, t) for r, t in zip(residual, totals, strict=True)):
        fig.add_trace(
            go.Bar(
                name="other (link latency, waits)",
                x=labels,
                y=[max(r, 0.0) for r in residual],
                marker={"color": "#bbbbbb"},
                meta={"segment": "other"},
            )
        )
    if any(r < -1e-9 * max(1.0, t) for r, t in zip(residual, totals, strict=True)):
        note = " (parallel branches overlap: bars show summed work, ◆ the end-to-end latency)"
    fig.add_trace(
        go.Scatter(
            name="end-to-end latency",
            x=labels,
            y=totals,
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 18, "color": "black"},
            hovertemplate="%{x} latency: %{y:.4g} ms<extra></extra>",
        )
    )
    if view.y2 is not None:
        fig.add_trace(
            go.Scatter(
                name=axis_label(view.y2),
                x=labels,
                y=[r.get(view.y2) for r in rows],
                yaxis="y2",
                mode="lines+markers",
                line={"dash": "dash", "color": "#d62728"},
                marker={"symbol": "star", "size": 12},
                hovertemplate=f"%{{x}} {view.y2}: %{{y:.4g}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=(view.title or "Latency breakdown of the Pareto-optimal trials") + note,
        barmode="stack",
        xaxis={"title": "Pareto-optimal trial (sorted by latency)", "type": "category"},
        yaxis={"title": "latency (ms)"},
        yaxis2={
            "title": axis_label(view.y2 or ""),
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            **tick_format(view.y2 or ""),
        },
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
        height=520,
    )
    return fig
