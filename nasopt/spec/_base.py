"""The base of every preset model: unknown keys are errors, models are frozen, and no number is
infinite or NaN (TOML's `inf` and `nan` are refused for every float field)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
# Names that become parts of file names (checkpoints) or study names: a safe character set.
SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}$"
SafeName = Annotated[str, Field(pattern=SAFE_NAME_PATTERN)]


def _no_parent_steps(value: str) -> str:
    if ".." in PurePath(value).parts or "\x00" in value:
        raise ValueError("must not contain '..' (a folder under the working directory, or absolute)")
    return value


# A folder nasopt writes into (checkpoints): no step out of where the user pointed it.
SafeDir = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_no_parent_steps)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
