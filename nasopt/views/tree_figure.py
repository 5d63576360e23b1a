"""The branch-sharing structure of a model-tree study's tree: one row per block, one column per
context; the contexts that share a node at a block (`nasopt.core.model_tree.shared_blocks`)
are one cell (merged where they are neighbours, the same colour and label where not), and a node
that offloads there is outlined in red and labelled so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from nasopt.core.model_tree import ModelTree, TreeLayout, shared_blocks, tree_layout
from nasopt.core.system import build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ModelTreeView, ResolvedStudy
from nasopt.study.tree_objective import TREE_ATTR, best_tree_trial, tree_from_dict
from nasopt.views.fields import PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go

OFFLOAD_COLOUR = "#d62728"


def study_layout(resolved: ResolvedStudy) -> TreeLayout:
    """The tree's blocks and contexts for a stored model-tree study."""
    if resolved.study.model_tree is None:
        raise SpecError(
            "a model_tree figure needs a model-tree study (a [model_tree] table in its spec)",
            field="model_tree",
            value=resolved.study.name,
        )
    system = build_system(resolved.objective)
    space = SearchSpace(resolved.space, system)
    return tree_layout(space.macro, system, space.largest())


def study_tree(study: optuna.Study, layout: TreeLayout, view: ModelTreeView) -> tuple[ModelTree, int]:
    """The tree a view draws: the study's best one, or trial `view.trial`'s."""
    if view.trial == "best":
        best = best_tree_trial(study)
        if best is None:
            raise SpecError("the study has no tree yet (no completed trial)", field="model_tree.trial")
        return tree_from_dict(layout, best.user_attrs[TREE_ATTR]), best.number
    numbers = {t.number: t for t in study.get_trials(deepcopy=False) if TREE_ATTR in t.user_attrs}
    if view.trial not in numbers:
        raise SpecError(
            "no completed tree trial with this number",
            field="model_tree.trial",
            value=view.trial,
            allowed=sorted(numbers)[:20] or "(none)",
        )
    return tree_from_dict(layout, numbers[view.trial].user_attrs[TREE_ATTR]), view.trial


def _runs(columns: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of neighbouring columns: [0, 1, 3] -> [(0, 1), (3, 3)]."""
    out: list[tuple[int, int]] = []
    for c in sorted(columns):
        if out and c == out[-1][1] + 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def sharing_plot(layout: TreeLayout, tree: ModelTree, title: str = "") -> go.Figure:
    """The figure of `tree`. One scatter trace per node, its `meta` naming the block, the node's
    label, its contexts and whether it offloads (what tests and hover read)."""
    import plotly.graph_objects as go

    contexts = list(layout.contexts)
    fig = go.Figure()
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for j, (block, groups) in enumerate(zip(layout.blocks, shared_blocks(layout, tree), strict=True)):
        for g, members in enumerate(groups):
            cols = [contexts.index(m) for m in members]
            offload = tree.offload[j][cols[0]]
            label = f"{chr(65 + j % 26)}{g + 1}"
            ops = [tree.ops[cols[0]][i] for i in block.searched]
            what = "offload: the cloud runs the rest" if offload else "run on the edge"
            hover = f"{block.name}, node {label}: {what}<br>contexts: {', '.join(members)}" + (
                f"<br>ops: {', '.join(ops)}" if ops and not offload else ""
            )
            for c0, c1 in _runs(cols):
                shapes.append(
                    {
                        "type": "rect",
                        "x0": c0 - 0.45,
                        "x1": c1 + 0.45,
                        "y0": j - 0.38,
                        "y1": j + 0.38,
                        "fillcolor": PALETTE[g % len(PALETTE)],
                        "opacity": 0.35,
                        "line": {
                            "color": OFFLOAD_COLOUR if offload else "#555",
                            "width": 3 if offload else 1,
                        },
                        "layer": "below",
                    }
                )
                annotations.append(
                    {
                        "x": (c0 + c1) / 2,
                        "y": j,
                        "text": f"<b>{label}</b>" + (" ⇧ offload" if offload else ""),
                        "showarrow": False,
                        "font": {"color": OFFLOAD_COLOUR if offload else "#222"},
                    }
                )
            fig.add_trace(
                go.Scatter(
                    x=cols,
                    y=[j] * len(cols),
                    mode="markers",
                    marker={"size": 28, "opacity": 0.0},
                    name=f"{block.name} {label}",
                    hovertext=[hover] * len(cols),
                    hoverinfo="text",
                    showlegend=False,
                    meta={"block": block.name, "node": label, "contexts": members, "offload": bool(offload)},
                )
            )
    fig.update_layout(
        title=title or "Model tree: which blocks the contexts share",
        shapes=shapes,
        annotations=annotations,
        xaxis={
            "tickvals": list(range(len(contexts))),
            "ticktext": contexts,
            "range": [-0.6, len(contexts) - 0.4],
            "title": "context observed before the block",
            "side": "top",
            "showgrid": False,
            "zeroline": False,
        },
        yaxis={
            "tickvals": list(range(len(layout.blocks))),
            "ticktext": [b.name for b in layout.blocks],
            "range": [len(layout.blocks) - 0.5, -0.5],
            "title": "block",
            "showgrid": False,
            "zeroline": False,
        },
        height=max(320, 70 * len(layout.blocks) + 160),
        plot_bgcolor="white",
    )
    return fig


def tree_figure(study: optuna.Study, resolved: ResolvedStudy, view: ModelTreeView) -> go.Figure:
    """The view's figure for a stored model-tree study."""
    layout = study_layout(resolved)
    tree, number = study_tree(study, layout, view)
    title = view.title or f"Model tree of trial {number}: which blocks the contexts share"
    return sharing_plot(layout, tree, title)
