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
    # once per inference of the device's part, however many layers it runs (a runtime's per-call
    # cost and what a whole model pays beyond its ops: `nasopt profile` writes run_overhead_ms)
    run_overhead_s: Seconds = 0.0
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


Probability = Annotated[float, Field(ge=0, le=1)]


class ContextStateSpec(_Spec):
    """One network context of a link (Wang et al.'s bandwidth context): its bandwidth and, if
    given, its own fixed latency and loss rate (else the link's)."""

    name: SafeName
    bandwidth_bps: Rate
    latency_s: Seconds | None = None
    loss_rate: Annotated[float, Field(ge=0, lt=1)] | None = None
    probability: Probability | None = None  # discrete: how often the context holds


class LinkContextsSpec(_Spec):
    """A link whose bandwidth varies: named contexts with probabilities (`discrete`), a Markov
    chain over them (`markov`: `transition[i][j]` = P(i -> j) every `step_s`), or a recorded or
    bundled trace (`trace`: CSV of time_s, bandwidth_bps; `states` then name the levels a model
    tree matches the measured bandwidth to, nearest in log-bandwidth)."""

    kind: Literal["discrete", "markov", "trace"]
    states: list[ContextStateSpec] = Field(default=[], max_length=64)
    transition: list[list[Probability]] = []
    step_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    trace: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> LinkContextsSpec:
        names = [s.name for s in self.states]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"state {repeated[0]!r} is listed twice; each context once")
        k = len(self.states)
        if self.kind == "discrete":
            if k == 0:
                raise ValueError("kind = 'discrete' needs states (name, bandwidth_bps, probability)")
            missing = [s.name for s in self.states if s.probability is None]
            if missing:
                raise ValueError(
                    f"kind = 'discrete' needs a probability for every state (missing: {missing[0]})"
                )
            total = sum(s.probability or 0.0 for s in self.states)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"state probabilities must sum to 1 (got {total:g})")
        if self.kind == "markov":
            if k == 0:
                raise ValueError("kind = 'markov' needs states (name, bandwidth_bps)")
            if self.step_s is None:
                raise ValueError("kind = 'markov' needs step_s (seconds per transition)")
            if len(self.transition) != k or any(len(row) != k for row in self.transition):
                raise ValueError(f"transition must be a {k}x{k} matrix (one row and column per state)")
            for i, row in enumerate(self.transition):
                if abs(sum(row) - 1.0) > 1e-6:
                    raise ValueError(
                        f"transition row {i} ({self.states[i].name}) must sum to 1 (got {sum(row):g})"
                    )
        elif self.transition or self.step_s is not None:
            raise ValueError("transition and step_s belong to kind = 'markov'")
        if self.kind == "trace":
            if self.trace is None:
                raise ValueError("kind = 'trace' needs trace (a bundled trace name or a CSV path)")
        elif self.trace is not None:
            raise ValueError("trace belongs to kind = 'trace'")
        return self


class LinkSpec(_Spec):
    src: str
    dst: str
    bandwidth_bps: Rate | None = None
    contexts: LinkContextsSpec | None = None  # a varying bandwidth instead of bandwidth_bps
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


class RobustSpec(_Spec):
    """How the robust latency metrics over a link's contexts are computed: exactly for discrete
    contexts, else by replaying `samples` inferences started at seeded random times."""

    deadline_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None  # for deadline_miss
    samples: Annotated[int, Field(ge=16, le=1_000_000)] = 2000
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0


class ConstraintsSpec(_Spec):
    latency_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None
    latency_mean_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None
    latency_p95_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None
    latency_worst_ms: Annotated[float, Field(gt=0, le=1e12)] | None = None
    deadline_miss: Annotated[float, Field(ge=0, le=1)] | None = None  # most fraction over the deadline
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
    robust: RobustSpec = RobustSpec()

    @field_validator("objectives")
    @classmethod
    def _no_repeats(cls, objectives: list[MetricSpec]) -> list[MetricSpec]:
        names = [m.name for m in objectives]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"objective {repeated[0]!r} is listed twice; each metric once")
        return objectives
