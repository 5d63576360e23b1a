"""Figures people can read: Pareto fronts, latency breakdowns, threshold sweeps, architecture
strips and hypervolume histories, built from a study as declared by a `dashboards/*.toml` view.

The same figures go two ways: `register` stores them in the study for optuna-dashboard (custom
plotly figures, a study note summarising system, search space and constraints, and a note per
Pareto-optimal trial with its architecture strip); `report_html` writes one self-contained HTML
file (plotly.js inlined, no network needed).

Every field a view names is checked against the study: a metric the study does not have is a
SpecError naming the view file, the field and the available metrics.
"""

from __future__ import annotations

import fnmatch
import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasopt.core.candidate import Candidate
from nasopt.core.pareto import hypervolume
from nasopt.errors import SpecError
from nasopt.presets import load_dashboard
from nasopt.spec import (
    ArchStripView,
    BreakdownView,
    DashboardSpec,
    HypervolumeView,
    ParetoView,
    ResolvedStudy,
    SweepView,
    resolve_preset,
)
from nasopt.study.lifecycle import SPEC_ATTR, load
from nasopt.study.pareto import front, is_feasible, metric_names

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.storages import BaseStorage

SAMPLER_ATTR = "nasopt:sampler"
FIGURE_PREFIX = "nasopt-"
_FRONT = "Pareto front (feasible)"
_DOMINATED = "dominated (feasible)"
_INFEASIBLE = "infeasible (violates a constraint)"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_DEVICE_SHADES = ("#dbe9f8", "#fde3c8", "#d9f0d9", "#f8d9d9", "#e6dcf3", "#eadfdb")


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


def _numeric(value: Any) -> TypeGuard[float]:
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
                if _numeric(value):
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


def _hover_keys(patterns: list[str], sample: dict[str, Any], every: list[str]) -> list[str]:
    keys: list[str] = []
    for pattern in patterns:
        for key in fnmatch.filter(every, pattern) if any(c in pattern for c in "*?[") else [pattern]:
            if key not in keys:
                keys.append(key)
    return keys


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _label(field: str) -> str:
    units = {"latency_ms": "latency (ms)", "energy_mj": "energy (mJ)", "accuracy": "accuracy (top-1)"}
    return units.get(field, field)


# ------------------------------------------------------------------ figures


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def pareto_figure(study: optuna.Study, view: ParetoView, every: list[str]) -> go.Figure:
    """Front = `study.best_trials` (feasible Pareto trials); dominated and infeasible marked."""
    import plotly.graph_objects as go

    trials = _complete(study)
    best = {t.number for t in front(study, feasible_only=True)}
    groups: dict[str, list[FrozenTrial]] = {_DOMINATED: [], _INFEASIBLE: [], _FRONT: []}
    for t in trials:
        if t.number in best:
            groups[_FRONT].append(t)
        elif is_feasible(t):
            groups[_DOMINATED].append(t)
        else:
            groups[_INFEASIBLE].append(t)
    fig = go.Figure()
    color_values = [trial_fields(study, t).get(view.color) for t in trials if view.color is not None]
    numeric_colors = [v for v in color_values if _numeric(v)]
    cmin = min(numeric_colors, default=0)
    cmax = max(numeric_colors, default=1)
    for name, members in groups.items():
        if not members:
            continue
        rows = [trial_fields(study, t) for t in members]
        if name == _FRONT:
            order = sorted(range(len(rows)), key=lambda i: (rows[i][view.x], rows[i][view.y]))
            members = [members[i] for i in order]
            rows = [rows[i] for i in order]
        keys = _hover_keys(view.hover, rows[0], every)
        custom = [[t.number, *(_fmt(r.get(k)) for k in keys)] for t, r in zip(members, rows, strict=True)]
        template = f"<b>trial %{{customdata[0]}}</b> ({name})<br>{_label(view.x)}: %{{x:.4g}}"
        template += f"<br>{_label(view.y)}: %{{y:.4g}}"
        if view.color is not None:
            template += f"<br>{view.color}: %{{marker.color}}"
        for j, k in enumerate(keys, start=1):
            template += f"<br>{html.escape(k)}: %{{customdata[{j}]}}"
        marker: dict[str, Any] = {"size": 9, "line": {"width": 0.5, "color": "#333"}}
        if view.color is not None:
            marker.update(
                color=[r.get(view.color) if _numeric(r.get(view.color)) else cmin for r in rows],
                coloraxis="coloraxis",
            )
        if name == _FRONT:
            marker.update(size=14, symbol="diamond", line={"width": 1.5, "color": "black"})
        elif name == _INFEASIBLE:
            marker.update(symbol="x", size=9, opacity=0.7, line={"width": 0})
        else:
            marker.update(opacity=0.55)
        fig.add_trace(
            go.Scatter(
                name=name,
                x=[r[view.x] for r in rows],
                y=[r[view.y] for r in rows],
                mode="lines+markers" if name == _FRONT else "markers",
                line={"shape": "hv", "color": "black", "width": 1.5, "dash": "dot"},
                marker=marker,
                customdata=custom,
                hovertemplate=template + "<extra></extra>",
            )
        )
    n_inf = len(groups[_INFEASIBLE])
    title = view.title or f"{_label(view.y)} vs {_label(view.x)}"
    title += f" — {study.study_name}: {len(trials)} trials, {len(best)} on the front, {n_inf} infeasible"
    fig.update_layout(
        title=title,
        xaxis={"title": _label(view.x), "type": "log" if view.log_x else "linear"},
        yaxis={"title": _label(view.y), "type": "log" if view.log_y else "linear"},
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


def _segment_order(resolved: ResolvedStudy, keys: list[str]) -> list[str]:
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
    hover_keys = _hover_keys(view.hover, rows[0], every) if rows else []
    custom = [[_fmt(r.get(k)) for k in hover_keys] for r in rows]
    extra = "".join(f"<br>{html.escape(k)}: %{{customdata[{j}]}}" for j, k in enumerate(hover_keys))
    for i, key in enumerate(_segment_order(resolved, keys)):
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
                    "color": _PALETTE[i % len(_PALETTE)],
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
                name=_label(view.y2),
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
        yaxis2={"title": _label(view.y2 or ""), "overlaying": "y", "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
        height=520,
    )
    return fig


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


def sweep_figure(
    study: optuna.Study, storage: BaseStorage, view: SweepView
) -> tuple[go.Figure, dict[str, list[tuple[float, float | None]]]]:
    """Best feasible accuracy at each threshold, one line per group (best over its studies)."""
    import plotly.graph_objects as go

    from nasopt.study.sweep import sweep_from_study

    pairs = sibling_studies(storage, study, view.studies)
    thresholds = view.thresholds
    if thresholds == "auto":
        values = [
            float(t.user_attrs[view.metric])
            for s, _ in pairs
            for t in _complete(s)
            if is_feasible(t) and _numeric(t.user_attrs.get(view.metric)) and t.user_attrs[view.metric] > 0
        ]
        lo, hi = (min(values), max(values)) if values else (1.0, 10.0)
        hi = max(hi, lo * 1.0001)
        thresholds = [lo * (hi / lo) ** (i / (view.points - 1)) for i in range(view.points)]
    thresholds = sorted(thresholds)
    lines: dict[str, list[tuple[float, float | None]]] = {}
    for s, resolved in pairs:
        label = group_label(s, resolved, view.group_by)
        points = sweep_from_study(s, resolved, view.metric, thresholds, reevaluate=False)
        current = lines.setdefault(label, [(th, None) for th in thresholds])
        for i, p in enumerate(points):
            best = current[i][1]
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
                line={"shape": "hv", "color": _PALETTE[i % len(_PALETTE)]},
                hovertemplate=f"{label}<br>{view.metric} ≤ %{{x:.4g}}<br>"
                "best accuracy %{y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(
        title=view.title or f"Best accuracy vs {view.metric} threshold (one line per {view.group_by})",
        xaxis={"title": f"{_label(view.metric)} threshold", "type": "log"},
        yaxis={"title": "best feasible accuracy"},
        legend={"title": {"text": view.group_by}},
        template="plotly_white",
        height=460,
    )
    return fig, lines


def _min_form(study: optuna.Study, values: list[float]) -> list[float]:
    return [
        v if d == optuna.study.StudyDirection.MINIMIZE else -v
        for v, d in zip(values, study.directions, strict=True)
    ]


def hypervolume_history(study: optuna.Study, reference: list[float]) -> tuple[list[int], list[float]]:
    """Hypervolume of the feasible trials up to each completed trial (minimisation form)."""
    xs: list[int] = []
    ys: list[float] = []
    points: list[list[float]] = []
    hv = 0.0
    for t in sorted(_complete(study), key=lambda t: t.number):
        if is_feasible(t):
            p = _min_form(study, list(t.values))
            if all(a < r for a, r in zip(p, reference, strict=True)):
                dominated = any(all(q_i <= p_i for q_i, p_i in zip(q, p, strict=True)) for q in points)
                if not dominated:
                    points = [q for q in points if not all(p_i <= q_i for p_i, q_i in zip(p, q, strict=True))]
                    points.append(p)
                    hv = hypervolume(points, reference)
        xs.append(t.number)
        ys.append(hv)
    return xs, ys


def hypervolume_figure(study: optuna.Study, storage: BaseStorage, view: HypervolumeView) -> go.Figure:
    import plotly.graph_objects as go

    pairs = sibling_studies(storage, study, view.studies)
    names = metric_names(study)
    if view.reference == "auto":
        feasible = [_min_form(s, list(t.values)) for s, _ in pairs for t in _complete(s) if is_feasible(t)]
        reference = []
        for j in range(len(names)):
            col = [p[j] for p in feasible] or [0.0]
            lo, hi = min(col), max(col)
            reference.append(hi + 0.1 * (hi - lo) + 1e-9 * max(1.0, abs(hi)))
    else:
        missing = [n for n in names if n not in view.reference]
        if missing:
            raise SpecError("reference needs every objective", field="hypervolume.reference", allowed=names)
        reference = _min_form(study, [float(view.reference[n]) for n in names])
    fig = go.Figure()
    labels = [group_label(s, r, view.group_by) for s, r in pairs]
    seen: dict[str, int] = {}
    for i, ((s, _), label) in enumerate(zip(pairs, labels, strict=True)):
        seen[label] = seen.get(label, 0) + 1
        shown = label if labels.count(label) == 1 else f"{label} ({s.study_name})"
        xs, ys = hypervolume_history(s, reference)
        fig.add_trace(
            go.Scatter(
                name=shown,
                x=xs,
                y=ys,
                mode="lines",
                line={"shape": "hv", "color": _PALETTE[i % len(_PALETTE)]},
                hovertemplate=f"{shown}<br>trial %{{x}}<br>hypervolume %{{y:.4g}}<extra></extra>",
            )
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


@dataclass
class StripLayer:
    index: int
    name: str
    op: str
    op_type: str
    kernel: int | None
    expansion: float | None
    width: int
    stride: int
    device: str


_SPACES: dict[str, Any] = {}


def _space_of(resolved: ResolvedStudy) -> Any:
    """The study's SearchSpace on its system, built once per spec (no accuracy estimator: the
    strip only needs analytic costs, and a supernet estimator would load torch)."""
    from nasopt.core.system import build_system
    from nasopt.space import SearchSpace

    key = resolved.fingerprint
    if key not in _SPACES:
        _SPACES[key] = SearchSpace(resolved.space, build_system(resolved.objective))
    return _SPACES[key]


def arch_layers(resolved: ResolvedStudy, trial: FrozenTrial) -> tuple[list[StripLayer], Any, Any]:
    """The trial's network layer by layer, with its device, plus the network and evaluation."""
    from nasopt.core.evaluation import evaluate

    space = _space_of(resolved)
    candidate = Candidate.from_dict(trial.user_attrs["candidate"])
    network = space.network(candidate)
    ev = evaluate(network, space.system)
    ops = space.macro.ops
    out = []
    for i, (layer, device) in enumerate(zip(network.layers, ev.placement, strict=True)):
        spec = ops.get(layer.op)
        stride = 2 if layer.in_shape[1] > layer.out_shape[1] else 1
        out.append(
            StripLayer(
                index=i,
                name=layer.name,
                op=layer.op,
                op_type=layer.op_type,
                kernel=spec.kernel
                if spec is not None and layer.op_type not in ("skip", "gap", "fc", "classifier")
                else None,
                expansion=spec.expansion if spec is not None and layer.op_type == "mbconv" else None,
                width=layer.out_shape[0],
                stride=stride,
                device=device,
            )
        )
    return out, network, ev


def _strip_trials(study: optuna.Study, view: ArchStripView) -> list[FrozenTrial]:
    if view.trials == "front":
        trials = sorted(front(study, feasible_only=True), key=lambda t: float(t.user_attrs["latency_ms"]))
    else:
        by_number = {t.number: t for t in _complete(study)}
        missing = [n for n in view.trials if n not in by_number]
        if missing:
            raise SpecError(
                "no completed trial with this number", field="arch_strip.trials", value=missing[0]
            )
        trials = [by_number[n] for n in view.trials]
    return trials[: view.max_trials]


_KERNEL_COLORS = {1: "#9ecae1", 3: "#4292c6", 5: "#2171b5", 7: "#08306b"}


def arch_strip_figure(study: optuna.Study, resolved: ResolvedStudy, view: ArchStripView) -> go.Figure:
    """SplitNets Fig. 9 (right): one row per trial, a bar per layer (height = output width,
    colour = kernel, hatched = stride 2), devices shaded, cuts and fusion marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trials = _strip_trials(study, view)
    rows = max(1, len(trials))
    titles = [
        f"trial {t.number}: accuracy {float(t.user_attrs['accuracy']):.4f}, "
        f"latency {float(t.user_attrs['latency_ms']):.4g} ms"
        for t in trials
    ] or ["no feasible Pareto-optimal trial"]
    fig = make_subplots(rows=rows, cols=1, subplot_titles=titles, vertical_spacing=0.12 / rows + 0.04)
    device_colors: dict[str, str] = {}
    legend_done: set[str] = set()
    for r, trial in enumerate(trials, start=1):
        layers, network, _ = arch_layers(resolved, trial)
        for layer in layers:
            device_colors.setdefault(layer.device, _DEVICE_SHADES[len(device_colors) % len(_DEVICE_SHADES)])
        # device spans as shaded backgrounds
        start = 0
        for i in range(1, len(layers) + 1):
            if i == len(layers) or layers[i].device != layers[start].device:
                fig.add_vrect(
                    x0=start - 0.5,
                    x1=i - 0.5,
                    fillcolor=device_colors[layers[start].device],
                    opacity=1,
                    layer="below",
                    line_width=0,
                    row=r,
                    col=1,
                    annotation_text=layers[start].device,
                    annotation_position="top left",
                    annotation_font_size=10,
                )
                start = i
        groups: dict[str, list[StripLayer]] = {}
        for layer in layers:
            if layer.op_type in ("conv_reduce", "conv_recover", "view_fuse"):
                key = {
                    "conv_reduce": "Conv-Reduce",
                    "conv_recover": "Conv-Recover",
                    "view_fuse": "View-Fuse",
                }[layer.op_type]
            elif layer.op_type == "skip":
                key = "skip"
            elif layer.kernel is None:
                key = layer.op_type
            else:
                key = f"k{layer.kernel}"
            groups.setdefault(key, []).append(layer)
        for key, members in sorted(groups.items()):
            color = {
                "Conv-Reduce": "#2ca02c",
                "Conv-Recover": "#98df8a",
                "View-Fuse": "#9467bd",
                "skip": "#cccccc",
            }.get(
                key, _KERNEL_COLORS.get(int(key[1:]) if key[1:].isdigit() and key[0] == "k" else 0, "#636363")
            )
            fig.add_trace(
                go.Bar(
                    name=key,
                    legendgroup=key,
                    showlegend=key not in legend_done,
                    x=[m.index for m in members],
                    y=[m.width for m in members],
                    marker={
                        "color": color,
                        "pattern": {"shape": ["/" if m.stride == 2 else "" for m in members]},
                        "line": {"width": 0.5, "color": "#222"},
                    },
                    customdata=[
                        [
                            m.name,
                            m.op,
                            m.op_type,
                            _fmt(m.kernel) or "-",
                            _fmt(m.expansion) or "-",
                            m.stride,
                            m.device,
                        ]
                        for m in members
                    ],
                    hovertemplate=(
                        "%{customdata[0]}: %{customdata[1]} (%{customdata[2]})<br>kernel %{customdata[3]}, "
                        "expansion %{customdata[4]}, stride %{customdata[5]}<br>width %{y}<br>"
                        "on %{customdata[6]}<extra></extra>"
                    ),
                    meta={"trial": trial.number},
                ),
                row=r,
                col=1,
            )
            legend_done.add(key)
        for c, cut in enumerate(network.cut_after):
            fig.add_vline(
                x=cut + 0.5,
                line={"color": "#d62728", "width": 2, "dash": "dash"},
                row=r,
                col=1,
                annotation_text=f"cut {c + 1}",
                annotation_font_color="#d62728",
                annotation_font_size=10,
            )
        if network.fuse_after is not None:
            fig.add_vline(
                x=network.fuse_after + 0.5,
                line={"color": "#9467bd", "width": 3},
                row=r,
                col=1,
                annotation_text="fusion",
                annotation_font_color="#9467bd",
            )
        fig.update_yaxes(title_text="width", type="log", row=r, col=1)
    fig.update_xaxes(title_text="layer", row=rows, col=1)
    fig.update_layout(
        title=view.title or "Architectures (bar height: output width; colour: kernel; hatched: stride 2)",
        barmode="overlay",
        bargap=0.15,
        template="plotly_white",
        height=220 * rows + 140,
        legend={"title": {"text": "op"}},
    )
    return fig


# ------------------------------------------------------------------ building a whole view


@dataclass
class BuiltFigure:
    id: str
    kind: str
    title: str
    figure: Any


def resolve_view(view: str | DashboardSpec) -> tuple[DashboardSpec, str]:
    if isinstance(view, DashboardSpec):
        return view, f"dashboard {view.name}"
    path = resolve_preset("dashboard", view)
    return load_dashboard(str(path)), str(path)


def build(
    storage: BaseStorage, study_name: str, view: str | DashboardSpec = "default"
) -> tuple[list[BuiltFigure], optuna.Study, ResolvedStudy]:
    """Every figure of `view` for the study; SpecError for a field the study lacks."""
    spec, file = resolve_view(view)
    study, resolved = load(storage, study_name)
    fields = StudyFields.of(study, _complete(study))
    check_view(spec, fields, file)
    out: list[BuiltFigure] = []

    def add(kind: str, i: int, fig: Any) -> None:
        title = fig.layout.title.text or kind
        out.append(BuiltFigure(f"{FIGURE_PREFIX}{kind}-{i}", kind, title, fig))

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
    except SpecError as exc:
        raise exc.in_file(file) from None
    return out, study, resolved


# ------------------------------------------------------------------ summaries and notes


def summary_sections(study: optuna.Study, resolved: ResolvedStudy) -> list[tuple[str, list[str]]]:
    """(heading, lines) describing the study, its system, search space and constraints."""
    from nasopt.core.system import build_system
    from nasopt.space import SearchSpace

    trials = study.get_trials(deepcopy=False)
    complete = _complete(study)
    feasible = [t for t in complete if is_feasible(t)]
    best = front(study, feasible_only=True)
    obj, space = resolved.objective, resolved.space
    directions = [
        f"{'minimise' if d == optuna.study.StudyDirection.MINIMIZE else 'maximise'} {n}"
        for n, d in zip(metric_names(study), study.directions, strict=True)
    ]
    head = [
        f"objectives: {', '.join(directions)}",
        f"sampler: {sampler_label(study, resolved)}; accuracy estimator: "
        f"{study.user_attrs.get('nasopt:accuracy_estimator', '?')}",
        f"trials: {len(trials)} ({len(complete)} complete, {len(feasible)} feasible, "
        f"{len(best)} on the feasible Pareto front)",
    ]
    if not best:
        head.append("no feasible trial yet: every trial violates a constraint")
    system = [f"{obj.name} ({obj.topology.kind}): {obj.description}".rstrip(": ")]
    for name, dev in obj.devices.items():
        c = dev.compute
        speed = f"{c.macs_per_s:.3g} MAC/s" if c.macs_per_s else c.kind
        cap = f", memory cap {dev.memory_bytes:,} B" if dev.memory_bytes else ""
        count = f" ×{dev.count}" if dev.count > 1 else ""
        system.append(f"device {name}{count}: {speed}{cap}")
    for name, link in obj.links.items():
        bw = f"{link.bandwidth_bps / 1e6:.4g} Mbit/s" if link.bandwidth_bps else f"medium {link.medium}"
        system.append(f"link {name}: {link.src} → {link.dst}, {bw}")
    sys_obj = build_system(obj)
    ss = SearchSpace(space, sys_obj)
    params = ss.params()
    size = ss.size()  # distinct candidates: cut orderings counted once
    space_lines = [
        f"{space.name}: {space.description}".rstrip(": "),
        f"input {space.input.channels}×{space.input.height}×{space.input.width}, "
        f"{space.num_classes} classes, {len(ss.macro.layers)} layers in {len(ss.macro.stages)} stages",
        f"{len(params)} parameters, {size:.3g} candidates: "
        + ", ".join(f"{p.name} ({len(p.choices)})" for p in params[:12])
        + (" …" if len(params) > 12 else ""),
    ]
    limits = obj.constraints
    constraints = []
    if limits.memory:
        caps = [n for n, d in obj.devices.items() if d.memory_bytes]
        constraints.append(f"peak memory within each device's cap ({', '.join(caps) or 'no device has one'})")
    if limits.latency_ms is not None:
        constraints.append(f"latency ≤ {limits.latency_ms:g} ms")
    if limits.energy_mj is not None:
        constraints.append(f"energy ≤ {limits.energy_mj:g} mJ")
    if limits.accuracy_min is not None:
        constraints.append(f"accuracy ≥ {limits.accuracy_min:g}")
    if not constraints:
        constraints.append("none")
    return [
        (f"Study {study.study_name}", head),
        ("System", system),
        ("Search space", space_lines),
        ("Constraints", constraints),
    ]


def summary_markdown(study: optuna.Study, resolved: ResolvedStudy) -> str:
    parts = []
    for heading, lines in summary_sections(study, resolved):
        parts.append(f"## {heading}\n\n" + "\n".join(f"- {line}" for line in lines))
    parts.append(
        "Figures (nasopt): Pareto front with feasible/infeasible marked, latency breakdown, "
        "threshold sweep, architecture strip and hypervolume history — see *Plotly graph objects* below."
    )
    return "\n\n".join(parts) + "\n"


def trial_note(resolved: ResolvedStudy, trial: FrozenTrial) -> str:
    """Markdown for one trial: metrics, latency breakdown and the architecture strip as a table."""
    layers, network, _ = arch_layers(resolved, trial)
    a = trial.user_attrs
    lines = [
        f"## Trial {trial.number}: accuracy {float(a['accuracy']):.4f}, "
        f"latency {float(a['latency_ms']):.4g} ms",
        "",
        f"`{a.get('arch', '')}`",
        "",
        f"Split: {a.get('split', '')}",
        "",
        "Breakdown: "
        + ", ".join(
            f"{k.split(':', 1)[0].replace('_ms', '')} {k.split(':', 1)[1]} {float(v):.4g} ms"
            for k, v in a.items()
            if k.startswith(("compute_ms:", "transfer_ms:"))
        ),
        "",
        "| # | layer | op | type | kernel | expansion | width | stride | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cuts = set(network.cut_after)
    if -1 in cuts:
        lines.append("| | **— cut: the input is sent —** | | | | | | | |")
    for layer in layers:
        lines.append(
            f"| {layer.index} | {layer.name} | {layer.op} | {layer.op_type} | {_fmt(layer.kernel) or '-'} | "
            f"{_fmt(layer.expansion) or '-'} | {layer.width} | {layer.stride} | {layer.device} |"
        )
        if layer.index in cuts:
            lines.append("| | **— cut —** | | | | | | | |")
        if network.fuse_after == layer.index:
            lines.append("| | **— fusion (View-Fuse) —** | | | | | | | |")
    return "\n".join(lines) + "\n"


def _save_trial_note(study: optuna.Study, trial: FrozenTrial, body: str) -> None:
    """optuna_dashboard.save_note needs a live Trial; finished trials go through its storage helper."""
    from optuna_dashboard._note import note_ver_key, save_note_with_version

    storage = study._storage
    attrs = storage.get_study_system_attrs(study._study_id)
    version = attrs.get(note_ver_key(trial._trial_id), 0) + 1
    save_note_with_version(storage, study._study_id, trial._trial_id, version, body)


def register(storage: BaseStorage, study_name: str, view: str | DashboardSpec = "default") -> list[str]:
    """Store the view's figures, the study note and per-trial notes for optuna-dashboard."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    figures, study, resolved = build(storage, study_name, view)
    ids = []
    for f in figures:
        f.figure.update_layout(width=1100)  # the dashboard's card would otherwise stretch it off-screen
        ids.append(save_plotly_graph_object(study, f.figure, graph_object_id=f.id))
    save_note(study, summary_markdown(study, resolved))
    for trial in front(study, feasible_only=True)[:50]:
        _save_trial_note(study, trial, trial_note(resolved, trial))
    return ids


def register_all(storage: BaseStorage, view: str | DashboardSpec = "default") -> list[str]:
    """Register the view for every nasopt study with completed trials; returns their names."""
    from nasopt.study.storage import study_names

    done = []
    for name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        if SPEC_ATTR in study.user_attrs and _complete(study):
            register(storage, name, view)
            done.append(name)
    return done


# ------------------------------------------------------------------ the HTML report


def _front_table_html(study: optuna.Study) -> str:
    from nasopt.study.pareto import rows

    data = rows(study, front(study, feasible_only=True))
    if not data:
        return "<p><b>No feasible Pareto-optimal trial:</b> every trial violates a constraint.</p>"
    cols = [c for c in data[0] if c != "split"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>" for r in data
    )
    return f"<table class='front'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.cards{display:flex;flex-wrap:wrap;gap:16px} .card{flex:1 1 260px;background:#f7f7f9;border-radius:6px;
padding:8px 14px} .card h3{margin:6px 0;font-size:1em} .card ul{margin:4px 0;padding-left:18px;font-size:.9em}
table.front{border-collapse:collapse;font-size:.8em} table.front td,table.front th{border:1px solid #ddd;
padding:3px 6px;text-align:left} .figure{margin:18px 0}
"""


def report_html(storage: BaseStorage, study_name: str, view: str | DashboardSpec = "default") -> str:
    """One self-contained HTML page: summary, front table and every figure (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    figures, study, resolved = build(storage, study_name, view)
    sections = summary_sections(study, resolved)
    cards = "".join(
        f"<div class='card'><h3>{html.escape(h)}</h3><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        + "</ul></div>"
        for h, lines in sections
    )
    plots = []
    for f in figures:
        div = f.figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f.id, config={"responsive": True}
        )
        plots.append(f"<section class='figure' data-kind='{f.kind}'>{div}</section>")
    title = f"nasopt report: {study.study_name}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><div class='cards'>{cards}</div>"
        f"<h2>Feasible Pareto front</h2>{_front_table_html(study)}"
        f"<h2>Figures</h2>{''.join(plots)}"
        "<p style='color:#888;font-size:.8em'>Generated by nasopt; works offline (plotly.js embedded).</p>"
        "</body></html>\n"
    )


# ------------------------------------------------------------------ serving


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, ready: Any = None) -> None:
    """optuna-dashboard on the storage, served by wsgiref until interrupted."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    from nasopt.study.storage import open_storage

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class _Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    app = wsgi(open_storage(storage_url, must_exist=True))
    with make_server(host, port, app, server_class=_Threaded, handler_class=_Quiet) as server:
        if ready is not None:
            ready(server.server_address[1])
        server.serve_forever()
