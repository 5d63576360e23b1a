"""The objective preset format (`objectives/*.toml`): devices, links, media, topology, metrics."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from nasopt.spec._base import SafeName, _Spec

# Sane bounds: beyond them a cost overflows or underflows to inf/0 (1 bit/s is the slowest link,
# an hour the longest fixed delay, 1 J per MAC or bit the most energy).


def _at_least_one(value: float) -> float:
    if value < 1:
        raise ValueError("must be at least 1 per second (allowed: 1 <= x <= 1e18)")
    return value


Rate = Annotated[float, Field(gt=0, le=1e18), AfterValidator(_at_least_one)]
SecondsPerUnit = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(ge=0, le=3600)]
JoulesPerUnit = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(gt=0, le=1_000_000)]


class ComputeSpec(_Spec):
    """How a device turns MACs into seconds."""

    kind: Literal["throughput", "linear", "lookup"]
    macs_per_s: Rate | None = None
    conv_s_per_mac: dict[str, SecondsPerUnit] = {}
    fc_s_per_mac: SecondsPerUnit | None = None
    default_s_per_mac: SecondsPerUnit | None = None
    overhead_s: Seconds = 0.0
    table: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    table_unit: Literal["s", "ms", "us"] = "ms"
    fallback: Literal["throughput", "error"] = "error"


class DeviceSpec(_Spec):
    memory_bytes: Annotated[int, Field(gt=0, le=2**62)] | None = None
    # how peak memory is counted (docs/memory-models.md): "liveness" or "splitnets"
    memory_model: Literal["liveness", "splitnets"] = "liveness"
    compute: ComputeSpec
    count: Annotated[int, Field(gt=0, le=1024)] = 1
    energy_j_per_mac: JoulesPerUnit = 0.0


class SizeTermPointSpec(_Spec):
    """f(S|W) = intercept_s + s_per_byte * S fitted at one bandwidth W."""

    bandwidth_bps: Rate
    intercept_s: Seconds = 0.0
    s_per_byte: SecondsPerUnit = 0.0


class SizeTermSpec(_Spec):
    """Wang et al.'s f(S|W) (eq. 6): a first-packet delay linear in the payload size S given the
    bandwidth W. Either one fit for every bandwidth (`intercept_s`, `s_per_byte`) or fits at
    several bandwidths (`by_bandwidth`, increasing), interpolated linearly in W between them and
    held at the nearest end outside them."""

    intercept_s: Seconds = 0.0
    s_per_byte: SecondsPerUnit = 0.0
    by_bandwidth: list[SizeTermPointSpec] = []

    @model_validator(mode="after")
    def _one_form(self) -> SizeTermSpec:
        points = self.by_bandwidth
        if points and (self.intercept_s or self.s_per_byte):
            raise ValueError("give either intercept_s / s_per_byte or by_bandwidth, not both")
        for a, b in itertools.pairwise(points):
            if b.bandwidth_bps <= a.bandwidth_bps:
                raise ValueError(
                    f"by_bandwidth must list strictly increasing bandwidth_bps (got {a.bandwidth_bps:g} "
                    f"then {b.bandwidth_bps:g})"
                )
        return self


class LinkSpec(_Spec):
    src: str
    dst: str
    bandwidth_bps: Rate | None = None
    medium: str | None = None
    latency_s: Seconds = 0.0
    size_term: SizeTermSpec | None = None
    loss_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    energy_j_per_bit: JoulesPerUnit = 0.0


class MediumSpec(_Spec):
    """A shared channel (a bus, a cell); each of `sharers` gets an equal share of it."""

    bandwidth_bps: Rate
    sharers: Count | None = None


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
    latency_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None
    energy_mj: Annotated[float, Field(gt=0, le=1e15)] | None = None
    accuracy_min: Annotated[float, Field(ge=0, le=1)] | None = None
    memory: bool = True


class ObjectiveSpec(_Spec):
    name: SafeName
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

    @field_validator("objectives")
    @classmethod
    def _no_repeats(cls, objectives: list[MetricSpec]) -> list[MetricSpec]:
        names = [m.name for m in objectives]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"objective {repeated[0]!r} is listed twice; each metric once")
        return objectives
