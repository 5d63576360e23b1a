"""The dashboard view format (`dashboards/*.toml`): which figures to draw from a study."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nasopt.spec._base import PositiveFloat, PositiveInt, _Spec

GroupBy = Literal["sampler", "system", "study"]


class ParetoView(_Spec):
    """Any two metrics against each other; the study's feasible front highlighted."""

    title: str = ""
    x: str = "latency_ms"
    y: str = "accuracy"
    color: str | None = "cut"
    hover: list[str] = ["arch", "split"]
    log_x: bool = False
    log_y: bool = False


class BreakdownView(_Spec):
    """Stacked compute/transfer bars per Pareto-optimal trial, a metric on a second axis."""

    title: str = ""
    y2: str | None = "accuracy"
    max_trials: PositiveInt = 40
    hover: list[str] = ["arch"]


class SweepView(_Spec):
    """Best accuracy versus a latency (or energy) threshold, one line per group of studies."""

    title: str = ""
    metric: str = "latency_ms"
    thresholds: list[PositiveFloat] | Literal["auto"] = "auto"
    points: Annotated[int, Field(ge=2, le=200)] = 16
    group_by: GroupBy = "sampler"
    studies: list[str] | Literal["all"] = "all"


class ArchStripView(_Spec):
    """Per layer: op, kernel, expansion, width; split and fusion positions marked."""

    title: str = ""
    trials: list[Annotated[int, Field(ge=0)]] | Literal["front"] = "front"
    max_trials: PositiveInt = 6


class HypervolumeView(_Spec):
    """Hypervolume of the feasible front after each trial, one line per group of studies."""

    title: str = ""
    group_by: GroupBy = "sampler"
    studies: list[str] | Literal["all"] = "all"
    reference: dict[str, float] | Literal["auto"] = "auto"
    exact_front: str = ""


class ModelTreeView(_Spec):
    """A model-tree study's branch sharing: one row per block, one column per context, the
    contexts that share a node merged into one cell, offloading nodes marked. `trial`: "best"
    (the study's stored best tree) or a trial number."""

    title: str = ""
    trial: Annotated[int, Field(ge=0)] | Literal["best"] = "best"


class DashboardSpec(_Spec):
    """A dashboard view file: which figures to draw, in this order of kinds."""

    name: str
    description: str = ""
    pareto: list[ParetoView] = []
    latency_breakdown: list[BreakdownView] = []
    threshold_sweep: list[SweepView] = []
    arch_strip: list[ArchStripView] = []
    hypervolume: list[HypervolumeView] = []
    model_tree: list[ModelTreeView] = []
