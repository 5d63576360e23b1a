"""The study preset format (`studies/*.toml`): space + objective + sampler + budget + accuracy."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from nasopt.spec._base import NonNegFloat, PositiveFloat, PositiveInt, _Spec


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
    # left out of the stored spec (and so of its fingerprint) when absent: older studies resume
    retrain: RetrainSpec | None = Field(default=None, exclude_if=lambda v: v is None)


class RetrainSpec(_Spec):
    """`[retrain]`: how `nasopt retrain` trains a chosen candidate on the study's data set.

    `mode`: "fine-tune" starts from the supernet's weights, "scratch" from a fresh
    initialisation; `loss_rate`: packet-loss dropout on the sent features while training and
    scoring (None: the objective's largest link loss rate, as the supernet score uses);
    `calibration_batches`: training batches the final BatchNorm statistics are computed on."""

    mode: Literal["fine-tune", "scratch"] = "fine-tune"
    epochs: PositiveInt = 3
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegFloat = 1e-4
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    loss_rate: Annotated[float, Field(ge=0, lt=1)] | None = None
    seed: int = 0
    calibration_batches: PositiveInt = 4
    checkpoint_dir: str = ".nasopt/retrain"
    checkpoint_every: PositiveInt = 20
