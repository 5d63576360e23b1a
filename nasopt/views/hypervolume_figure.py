"""Hypervolume of the feasible front after each trial, one line per group of studies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from nasopt.core.pareto import hypervolume
from nasopt.errors import SpecError
from nasopt.spec import HypervolumeView
from nasopt.study.exact_front import ExactFront
from nasopt.study.pareto import is_feasible, metric_names, min_form
from nasopt.views.fields import PALETTE, complete_trials, group_label, sibling_studies

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.storages import BaseStorage


def hypervolume_history(study: optuna.Study, reference: list[float]) -> tuple[list[int], list[float]]:
    """Hypervolume of the feasible trials up to each completed trial (minimisation form)."""
    xs: list[int] = []
    ys: list[float] = []
    points: list[list[float]] = []
    hv = 0.0
    for t in sorted(complete_trials(study), key=lambda t: t.number):
        if is_feasible(t):
            p = min_form(study, list(t.values))
            if all(a < r for a, r in zip(p, reference, strict=True)):
                dominated = any(all(q_i <= p_i for q_i, p_i in zip(q, p, strict=True)) for q in points)
                if not dominated:
                    points = [q for q in points if not all(p_i <= q_i for p_i, q_i in zip(p, q, strict=True))]
                    points.append(p)
                    hv = hypervolume(points, reference)
        xs.append(t.number)
        ys.append(hv)
    return xs, ys


def _exact_front(view: HypervolumeView, study: optuna.Study, names: list[str]) -> ExactFront:
    """The view's exact-front file, checked to hold the study's objectives in its directions."""
    front = ExactFront.load(Path(view.exact_front))
    directions = [d.name.lower() for d in study.directions]
    if front.metric_names != names or front.directions != directions:
        raise SpecError(
            f"the exact front has objectives {front.metric_names} ({', '.join(front.directions)}),"
            f" the study {names} ({', '.join(directions)})",
            field="hypervolume.exact_front",
            value=view.exact_front,
        )
    return front


def hypervolume_figure(study: optuna.Study, storage: BaseStorage, view: HypervolumeView) -> go.Figure:
    import plotly.graph_objects as go

    pairs = sibling_studies(storage, study, view.studies)
    names = metric_names(study)
    if view.reference == "auto":
        feasible = [
            min_form(s, list(t.values)) for s, _ in pairs for t in complete_trials(s) if is_feasible(t)
        ]
        reference = []
        for j in range(len(names)):
            col = [p[j] for p in feasible] or [0.0]
            lo, hi = min(col), max(col)
            reference.append(hi + 0.1 * (hi - lo) + 1e-9 * max(1.0, abs(hi)))
    else:
        missing = [n for n in names if n not in view.reference]
        if missing:
            raise SpecError("reference needs every objective", field="hypervolume.reference", allowed=names)
        reference = min_form(study, [float(view.reference[n]) for n in names])
    exact = _exact_front(view, study, names) if view.exact_front else None
    if exact is not None and view.reference == "auto":  # the true front bounds the reference too
        worst = exact.losses().max(axis=0) if len(exact) else None
        if worst is not None:
            reference = [max(r, w + 1e-9 * max(1.0, abs(w))) for r, w in zip(reference, worst, strict=True)]
    exact_hv = hypervolume(exact.losses(), reference) if exact is not None else None
    fig = go.Figure()
    labels = [group_label(s, r, view.group_by) for s, r in pairs]
    seen: dict[str, int] = {}
    for i, ((s, _), label) in enumerate(zip(pairs, labels, strict=True)):
        seen[label] = seen.get(label, 0) + 1
        shown = label if labels.count(label) == 1 else f"{label} ({s.study_name})"
        xs, ys = hypervolume_history(s, reference)
        share = "<br>%{customdata:.1%} of the exact front's<extra></extra>" if exact_hv else "<extra></extra>"
        fig.add_trace(
            go.Scatter(
                name=shown,
                x=xs,
                y=ys,
                customdata=[y / exact_hv for y in ys] if exact_hv else None,
                mode="lines",
                line={"shape": "hv", "color": PALETTE[i % len(PALETTE)]},
                hovertemplate=f"{shown}<br>trial %{{x}}<br>hypervolume %{{y:.4g}}" + share,
            )
        )
    if exact is not None and exact_hv is not None:
        fig.add_hline(
            y=exact_hv,
            line={"dash": "dash", "color": "#444"},
            annotation_text=(
                f"exact front: {len(exact)} points, {exact.n_feasible:,} feasible of"
                f" {exact.n_candidates:,} candidates"
            ),
            annotation_position="bottom right",
        )
    ref_text = ", ".join(f"{n}={r:.4g}" for n, r in zip(names, reference, strict=True))
    fig.update_layout(
        title=(view.title or f"Hypervolume history (one line per {view.group_by})")
        + f"<br><sup>reference point (minimisation form): {ref_text}</sup>",
        xaxis={"title": "trial"},
        yaxis={"title": "hypervolume"},
        legend={"title": {"text": view.group_by}},
        template="plotly_white",
        height=460,
    )
    return fig
