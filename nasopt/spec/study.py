"""The study preset format (`studies/*.toml`): space + objective + sampler + budget + accuracy."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from nasopt.spec._base import SafeName, _Spec
from nasopt.spec.accuracy import AccuracySpec, ProxyAccuracySpec


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


class SamplerSpec(_Spec):
    """The sampler's name and options are checked by `nasopt.study.lifecycle.make_sampler`
    (which knows the samplers); here only that every option value is finite."""

    name: str = "tpe"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    options: dict[str, Any] = {}

    @field_validator("options")
    @classmethod
    def _finite(cls, options: dict[str, Any]) -> dict[str, Any]:
        _check_finite(options, "options")
        return options


class StudySpec(_Spec):
    name: SafeName
    description: str = ""
    space: Annotated[str, Field(min_length=1, max_length=4096)]
    objective: Annotated[str, Field(min_length=1, max_length=4096)]
    sampler: SamplerSpec = SamplerSpec()
    n_trials: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    accuracy: AccuracySpec = ProxyAccuracySpec()
    # "searched": cuts (and the fusion point) are search parameters; "optimal": the sampler
    # searches the architecture only and every trial is placed at its best cuts by `split_metric`
    split: Literal["searched", "optimal"] = "searched"
    split_metric: Literal["latency_ms", "energy_mj"] = "latency_ms"
