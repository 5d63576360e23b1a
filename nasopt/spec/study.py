"""The study preset format (`studies/*.toml`): space + objective + sampler + budget + accuracy."""

from __future__ import annotations

from typing import Any

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
