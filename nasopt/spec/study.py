"""The study preset format (`studies/*.toml`): space + objective + sampler + budget + accuracy."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from nasopt.spec._base import SafeDir, SafeName, _Spec
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


class RetrainSpec(_Spec):
    """`[retrain]`: how `nasopt retrain` trains a chosen candidate on the study's data set.

    `mode`: "fine-tune" starts from the supernet's weights, "scratch" from a fresh
    initialisation; `loss_rate`: packet-loss dropout on the sent features while training and
    scoring (None: the objective's largest link loss rate, as the supernet score uses);
    `calibration_batches`: training batches the final BatchNorm statistics are computed on."""

    mode: Literal["fine-tune", "scratch"] = "fine-tune"
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 3
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    loss_rate: Annotated[float, Field(ge=0, lt=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    calibration_batches: Annotated[int, Field(ge=1, le=100_000)] = 4
    checkpoint_dir: SafeDir = ".nasopt/retrain"
    checkpoint_every: Annotated[int, Field(ge=1, le=10_000_000)] = 20


class ModelTreeSpec(_Spec):
    """`[model_tree]`: the candidate is Wang et al.'s context-aware model tree (a compression
    choice and an offload decision per block and network context) instead of one network; the
    objective's chain must be edge -> cloud with a varying uplink. The study maximises Wang's
    reward (eq. 7) or, with `accuracy_floor`, minimises the mean latency at that accuracy.

    `cloud_base`: after an offload the cloud runs the uncompressed base network (Wang's rule);
    `deadline_ms`: for `deadline_miss` (None: the objective's `[robust] deadline_ms`). The
    replayed inferences are the objective's `[robust] samples` and `seed` (discrete: exact)."""

    deadline_ms: Annotated[float, Field(gt=0, le=1e9)] | None = None
    cloud_base: bool = False
    accuracy_floor: Annotated[float, Field(gt=0, lt=1)] | None = None


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
    # (both left out of the stored spec at their defaults, so older studies' fingerprints hold)
    split: Literal["searched", "optimal"] = Field(default="searched", exclude_if=lambda v: v == "searched")
    split_metric: Literal["latency_ms", "energy_mj"] = Field(
        default="latency_ms", exclude_if=lambda v: v == "latency_ms"
    )
    # left out of the stored spec (and so of its fingerprint) when absent: older studies resume
    retrain: RetrainSpec | None = Field(default=None, exclude_if=lambda v: v is None)
    # a model-tree study (same rule: absent from the stored spec when not set)
    model_tree: ModelTreeSpec | None = Field(default=None, exclude_if=lambda v: v is None)
