"""The architecture strip: per layer op, kernel, expansion and width, with split and fusion marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from nasopt.core.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.spec import (
    ArchStripView,
    ResolvedStudy,
)
from nasopt.study.pareto import front
from nasopt.views.fields import complete_trials, fmt

if TYPE_CHECKING:
    import plotly.graph_objects as go


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


def space_of(resolved: ResolvedStudy) -> Any:
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

    space = space_of(resolved)
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


def strip_trials(study: optuna.Study, view: ArchStripView) -> list[FrozenTrial]:
    if view.trials == "front":
        trials = sorted(front(study, feasible_only=True), key=lambda t: float(t.user_attrs["latency_ms"]))
    else:
        by_number = {t.number: t for t in complete_trials(study)}
        missing = [n for n in view.trials if n not in by_number]
        if missing:
            raise SpecError(
                "no completed trial with this number", field="arch_strip.trials", value=missing[0]
            )
        trials = [by_number[n] for n in view.trials]
    return trials[: view.max_trials]


_KERNEL_COLORS = {1: "#9ecae1", 3: "#4292c6", 5: "#2171b5", 7: "#08306b"}
# device bands behind the bars: light but clearly distinct from the white background and the bars
BAND_COLORS = ("#fdae6b", "#a1d99b", "#bcbddc", "#fc9272", "#bdbdbd", "#fdd0a2")


def cut_labels(cut_after: list[int] | tuple[int, ...]) -> list[tuple[int, str]]:
    """One label per cut position: coinciding cuts (a device left empty, relaying) share one.

    >>> cut_labels([3, 3, 9])
    [(3, 'cuts 1+2'), (9, 'cut 3')]
    """
    at: dict[int, list[int]] = {}
    for c, cut in enumerate(cut_after):
        at.setdefault(cut, []).append(c + 1)
    return [
        (cut, f"cut {n[0]}" if len(n) == 1 else "cuts " + "+".join(map(str, n)))
        for cut, n in sorted(at.items())
    ]


def thin_ticks(values: list[int], max_ticks: int = 6) -> list[int]:
    """The widths to label on the log axis: the ones present, at most `max_ticks`, spread out.

    >>> thin_ticks([8, 16, 24, 32, 48, 64, 96, 1280])
    [8, 24, 48, 96, 1280]
    """
    if len(values) <= max_ticks:
        return values
    step = -(-len(values) // (max_ticks - 1))
    picked = values[::step]
    return picked if picked[-1] == values[-1] else [*picked, values[-1]]


def arch_strip_figure(study: optuna.Study, resolved: ResolvedStudy, view: ArchStripView) -> go.Figure:
    """SplitNets Fig. 9 (right): one row per trial, a bar per layer (height = output width,
    colour = kernel, hatched = stride 2), devices shaded, cuts and fusion marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trials = strip_trials(study, view)
    rows = max(1, len(trials))
    titles = [
        f"trial {t.number}: accuracy {float(t.user_attrs['accuracy']):.3f}, "
        f"latency {float(t.user_attrs['latency_ms']):.3g} ms"
        for t in trials
    ] or ["no feasible Pareto-optimal trial"]
    fig = make_subplots(rows=rows, cols=1, subplot_titles=titles, vertical_spacing=0.12 / rows + 0.04)
    device_colors: dict[str, str] = {}
    legend_done: set[str] = set()
    for r, trial in enumerate(trials, start=1):
        layers, network, _ = arch_layers(resolved, trial)
        for layer in layers:
            device_colors.setdefault(layer.device, BAND_COLORS[len(device_colors) % len(BAND_COLORS)])
        # device spans as shaded backgrounds
        start = 0
        for i in range(1, len(layers) + 1):
            if i == len(layers) or layers[i].device != layers[start].device:
                fig.add_vrect(
                    x0=start - 0.5,
                    x1=i - 0.5,
                    fillcolor=device_colors[layers[start].device],
                    opacity=0.45,
                    layer="below",
                    # drawn before the bars: plotly would skip a shape on a still empty subplot
                    exclude_empty_subplots=False,
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
                    width=0.8,  # one layer wide: plotly would size a bar by the trace's x gaps
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
                            fmt(m.kernel) or "-",
                            fmt(m.expansion) or "-",
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
        for k, (cut, numbers) in enumerate(cut_labels(network.cut_after)):
            fig.add_vline(
                x=cut + 0.5,
                line={"color": "#d62728", "width": 2, "dash": "dash"},
                row=r,
                col=1,
                annotation_text=numbers,
                # at the bottom: the top is the device band's label, at the same x; neighbours alternate
                annotation_position="bottom right" if k % 2 == 0 else "bottom left",
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
        ticks = sorted({layer.width for layer in layers})
        fig.update_yaxes(
            title_text="width",
            type="log",
            tickvals=thin_ticks(ticks),
            ticktext=[str(t) for t in thin_ticks(ticks)],
            row=r,
            col=1,
        )
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
