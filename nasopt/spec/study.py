"""The study preset format (`studies/*.toml`): space + objective + sampler + budget + accuracy."""

from __future__ import annotations

from typing import Any, Literal

from nasopt.spec._base import PositiveInt, _Spec


class SamplerSpec(_Spec):
    name: str = "tpe"
    seed: int | None = None
    options: dict[str, Any] = {}


class StudySpec(_Spec):
    name: str
    description: str = ""
    space: str
    objective: str
    sampler: SamplerSpec = SamplerSpec()
    n_trials: PositiveInt = 100
    accuracy: dict[str, Any] = {}
    # "searched": cuts (and the fusion point) are search parameters; "optimal": the sampler
    # searches the architecture only and every trial is placed at its best cuts by `split_metric`
    split: Literal["searched", "optimal"] = "searched"
    split_metric: Literal["latency_ms", "energy_mj"] = "latency_ms"
