"""The base of every preset model: unknown keys are errors, models are frozen."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
