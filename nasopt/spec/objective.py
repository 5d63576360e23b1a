"""The objective preset format (`objectives/*.toml`): devices, links, media, topology, metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nasopt.spec._base import NonNegFloat, PositiveFloat, PositiveInt, _Spec


class ComputeSpec(_Spec):
    """How a device turns MACs into seconds."""

    kind: Literal["throughput", "linear", "lookup"]
    macs_per_s: PositiveFloat | None = None
    conv_s_per_mac: dict[str, NonNegFloat] = {}
    fc_s_per_mac: NonNegFloat | None = None
    default_s_per_mac: NonNegFloat | None = None
    overhead_s: NonNegFloat = 0.0
    table: str | None = None
    table_unit: Literal["s", "ms", "us"] = "ms"
    fallback: Literal["throughput", "error"] = "error"


class DeviceSpec(_Spec):
    memory_bytes: PositiveInt | None = None
    # how peak memory is counted (docs/memory-models.md): "liveness" or "splitnets"
    memory_model: Literal["liveness", "splitnets"] = "liveness"
    compute: ComputeSpec
    count: PositiveInt = 1
    energy_j_per_mac: NonNegFloat = 0.0


class SizeTermSpec(_Spec):
    """Wang et al.'s f(S|W): a first-packet delay linear in the payload size."""

    intercept_s: NonNegFloat = 0.0
    s_per_byte: NonNegFloat = 0.0


class LinkSpec(_Spec):
    src: str
    dst: str
    bandwidth_bps: PositiveFloat | None = None
    medium: str | None = None
    latency_s: NonNegFloat = 0.0
    size_term: SizeTermSpec | None = None
    loss_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    energy_j_per_bit: NonNegFloat = 0.0


class MediumSpec(_Spec):
    """A shared channel (a bus, a cell); each of `sharers` gets an equal share of it."""

    bandwidth_bps: PositiveFloat
    sharers: PositiveInt | None = None


class TopologySpec(_Spec):
    kind: Literal["chain", "mesh", "tree"]
    devices: list[str] = []
    before: list[str] = []
    root: str | None = None
    branches: list[str] = []
    after: list[str] = []
    leaves: list[str] = []


class MetricSpec(_Spec):
    name: str
    direction: Literal["minimize", "maximize"]


class ConstraintsSpec(_Spec):
    latency_ms: PositiveFloat | None = None
    energy_mj: PositiveFloat | None = None
    accuracy_min: Annotated[float, Field(ge=0, le=1)] | None = None
    memory: bool = True


class ObjectiveSpec(_Spec):
    name: str
    description: str = ""
    devices: dict[str, DeviceSpec] = Field(min_length=1)
    links: dict[str, LinkSpec] = {}
    media: dict[str, MediumSpec] = {}
    topology: TopologySpec
    objectives: list[MetricSpec] = Field(
        default=[
            MetricSpec(name="error", direction="minimize"),
            MetricSpec(name="latency_ms", direction="minimize"),
        ],
        min_length=1,
    )
    constraints: ConstraintsSpec = ConstraintsSpec()
