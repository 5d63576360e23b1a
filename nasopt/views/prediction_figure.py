"""Predicted versus measured end-to-end latency of `nasopt profile --check` candidates, one
marker series per compute model, with the y = x line and the +-10 % band."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from nasopt.views.fields import PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go


def prediction_scatter(check: dict[str, Any]) -> go.Figure:
    """The scatter of a `--check` document (`nasopt.deploy.profile_check.check_predictions`)."""
    import plotly.graph_objects as go

    rows = check["rows"]
    measured = [r["measured_ms"] for r in rows]
    fig = go.Figure()
    names = list(check["summary"])
    for i, name in enumerate(names):
        s = check["summary"][name]
        fig.add_trace(
            go.Scatter(
                x=measured,
                y=[r["predicted_ms"][name] for r in rows],
                mode="markers",
                name=f"{name}: {s['within_10pct']:.0%} within ±10 %, median |error| "
                f"{s['median_abs_error']:.1%}",
                marker={"color": PALETTE[i % len(PALETTE)], "size": 7, "opacity": 0.8},
                customdata=[r["macs"] for r in rows],
                hovertemplate="measured %{x:.4g} ms<br>predicted %{y:.4g} ms<br>%{customdata:,} MACs",
            )
        )
    top = max([*measured, *(r["predicted_ms"][n] for r in rows for n in names)]) * 1.05
    for scale, dash, label in ((1.0, "solid", "y = x"), (1.1, "dot", "+10 %"), (0.9, "dot", "−10 %")):
        fig.add_trace(
            go.Scatter(
                x=[0, top],
                y=[0, top * scale],
                mode="lines",
                name=label,
                line={"color": "#888", "dash": dash, "width": 1},
                hoverinfo="skip",
                showlegend=scale == 1.0,
            )
        )
    fig.update_layout(
        title=(
            f"Latency prediction on this machine: {check['space']}, {check['backend']}, "
            f"{check['candidates']} random candidates"
        ),
        xaxis_title="measured latency (ms)",
        yaxis_title="predicted latency (ms)",
        xaxis={"range": [0, top]},
        yaxis={"range": [0, top]},
        legend={"orientation": "h", "y": -0.2},
        height=560,
    )
    return fig


def prediction_section_html(check: dict[str, Any]) -> str:
    """The report's section: the summary table and the scatter (plotly.js loaded by the page)."""
    head = "<tr><th>model</th><th>within ±10 %</th><th>median |error|</th><th>median error</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s['within_10pct']:.2f}</td>"
        f"<td>{100 * s['median_abs_error']:.1f} %</td><td>{100 * s['median_error']:+.1f} %</td></tr>"
        for name, s in check["summary"].items()
    )
    machine = check.get("machine", {})
    fits = check.get("models", {})
    rate = fits.get("throughput", {}).get("macs_per_s")
    note = (
        f"Measured on {html.escape(str(machine.get('cpu', '?')))} (load average "
        f"{html.escape(str(machine.get('load_average', '?')))}), {check['backend']}, "
        f"{check.get('threads', 1)} thread, {check.get('statistic', 'median')} of "
        f"{check.get('repeats', '?')} runs; throughput "
        f"and linear models fitted to the profiled op timings by least squares"
        + (f" ({rate:.4g} MAC/s)" if rate else "")
        + "."
    )
    div = prediction_scatter(check).to_html(
        full_html=False, include_plotlyjs=False, div_id="prediction-scatter", config={"responsive": True}
    )
    return (
        f"<p>{note}</p><table class='front'><thead>{head}</thead><tbody>{body}</tbody></table>"
        f"<section class='figure' data-kind='prediction'>{div}</section>"
    )
