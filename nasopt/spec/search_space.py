"""The search-space preset format (`search_spaces/*.toml`): op catalogue, stages, splits, fusion."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from nasopt.spec._base import SafeName, _Spec

# Sane bounds: beyond them a layer's MACs or bytes overflow a float.
Width = Annotated[int, Field(gt=0, le=100_000)]
Kernel = Annotated[int, Field(gt=0, le=31)]
Small = Annotated[int, Field(gt=0, le=1000)]

OpType = Literal[
    "conv",
    "dwconv",
    "dwsep",
    "mbconv",
    "skip",
    "fire",
    "fc",
    "svd_fc",
    "gap",
    "maxpool",
    "conv_reduce",
    "conv_recover",
    "view_fuse",
    "view_max",
    "view_mean",
    "classifier",
]
OP_TYPES: tuple[str, ...] = OpType.__args__  # type: ignore[attr-defined]


class OpSpec(_Spec):
    """One entry of a search space's op catalogue."""

    type: OpType
    kernel: Kernel = 3
    expansion: Annotated[float, Field(gt=0, le=64)] = 1.0
    groups: Width = 1
    shortcut: bool = True
    always_expand: bool = False
    se_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    squeeze_ratio: Annotated[float, Field(gt=0, le=1)] = 0.125
    rank: Width | None = None
    split_tap: Literal["output", "depthwise"] = "output"


class LayerSpec(_Spec):
    """A layer of a stage: a fixed op or a choice among catalogue ops."""

    op: str | None = None
    choices: list[str] | None = None
    stride: Annotated[int, Field(gt=0, le=16)] = 1
    repeat: Small = 1
    width: Width | None = None


class StageSpec(_Spec):
    """Consecutive layers sharing an output width; `parallel` > 1 makes parallel branches."""

    name: str
    widths: list[Width] = Field(min_length=1)
    layers: list[LayerSpec] = Field(min_length=1)
    parallel: Annotated[int, Field(gt=0, le=64)] = 1
    merge: Literal["concat", "sum"] = "concat"


class InputSpec(_Spec):
    channels: Annotated[int, Field(gt=0, le=4096)]
    height: Annotated[int, Field(gt=0, le=16384)]
    width: Annotated[int, Field(gt=0, le=16384)]


SplitPoints = list[Annotated[int, Field(ge=-1, le=100_000)]] | Literal["all"]


class SplitSpec(_Spec):
    """Where cuts may fall: after layer k (-1 means before the first layer: send the input)."""

    points: SplitPoints = "all"


class BottleneckSpec(_Spec):
    """Conv-Reduce/Conv-Recover widths at the first cut and bit widths of every sent feature."""

    widths: list[Width | Literal["none"]] = Field(default=["none"], min_length=1)
    bits: list[Annotated[int, Field(gt=0, le=64)]] = Field(default=[32], min_length=1)
    kernel: Kernel = 1

    @field_validator("widths")
    @classmethod
    def _no_duplicates(cls, widths: list[int | str]) -> list[int | str]:
        if len(set(widths)) != len(widths):
            raise ValueError("widths must not repeat")
        return widths


FusionPlacement = Literal["sensors", "aggregator"]


class FusionSpec(_Spec):
    """Multi-view: V views run the per-view layers, fused after a searched layer: View-Fuse
    concatenates the views' channels (`merge = "concat"`, SplitNets) or View-Pool takes their
    element-wise maximum or mean (`"max"`, `"mean"`, MVCNN). `placement`: where the per-view
    layers run, on each view's sensor (the cut is at the fusion point) or on the aggregator (each
    sensor sends its raw view; SplitNets' all-on-aggregator); several: parameter fuse.placement."""

    views: Annotated[int, Field(ge=2, le=64)]
    points: list[Annotated[int, Field(ge=0, le=100_000)]] | Literal["all"] = "all"
    merge: Literal["concat", "max", "mean"] = "concat"
    placement: list[FusionPlacement] = Field(default=["sensors"], min_length=1)

    @field_validator("placement")
    @classmethod
    def _no_repeats(cls, placement: list[str]) -> list[str]:
        if len(set(placement)) != len(placement):
            raise ValueError("placement must not repeat")
        return placement


class SearchSpaceSpec(_Spec):
    name: SafeName
    description: str = ""
    input: InputSpec
    num_classes: Annotated[int, Field(gt=0, le=1_000_000)]
    input_bits: Annotated[int, Field(gt=0, le=64)] = 8
    activation_bits: Annotated[int, Field(gt=0, le=64)] = 32
    weight_bits: Annotated[int, Field(gt=0, le=64)] = 32
    ops: dict[str, OpSpec] = {}
    stages: list[StageSpec] = Field(min_length=1)
    split: SplitSpec = SplitSpec()
    bottleneck: BottleneckSpec = BottleneckSpec()
    fusion: FusionSpec | None = None
