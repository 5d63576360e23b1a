"""The analytic cost model by hand: the op registry, the memory models, residual cuts, View-Pool,
all-on-aggregator multi-view placement and the transfer model."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.ops import OP_COSTS
from nasopt.core.split import optimal_split
from nasopt.core.system import Link, System, build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import OP_TYPES, ObjectiveSpec, SearchSpaceSpec, parse_spec


def test_every_op_kind_has_one_cost_function():
    assert set(OP_COSTS) == set(OP_TYPES)


# ------------------------------------------------------------------ memory models by hand

# 3x8x8 input, 8-bit weights and activations: a 3x3 conv 3 -> 8, an MBConv (expansion 4, 8 -> 8,
# residual), global pooling and a 10-class classifier.
MEMORY_SPACE: dict[str, Any] = {
    "name": "memory-by-hand",
    "input": {"channels": 3, "height": 8, "width": 8},
    "num_classes": 10,
    "input_bits": 8,
    "activation_bits": 8,
    "weight_bits": 8,
    "ops": {"mb": {"type": "mbconv", "kernel": 3, "expansion": 4}},
    "stages": [
        {"name": "stem", "widths": [8], "layers": [{"op": "conv3"}]},
        {"name": "body", "widths": [8], "layers": [{"op": "mb"}]},
        {"name": "head", "widths": [8], "layers": [{"op": "gap"}, {"op": "classifier"}]},
    ],
    "bottleneck": {"bits": [8]},
}
HW = 8 * 8
PARAMS = {
    "stem": 3 * 3 * 3 * 8 + 2 * 8,  # 3x3 conv weights + batch norm
    "body": (8 * 32 + 2 * 32) + (9 * 32 + 2 * 32) + (32 * 8 + 2 * 8),  # expand, depthwise, project
    "head": 8 * 10 + 10,
}


def _two_devices(model: str, cap: int | None = None) -> System:
    sensor: dict[str, Any] = {"compute": {"kind": "throughput", "macs_per_s": 1e9}, "memory_model": model}
    if cap is not None:
        sensor["memory_bytes"] = cap
    data = {
        "name": "two",
        "devices": {"sensor": sensor, "agg": {"compute": {"kind": "throughput", "macs_per_s": 1e10}}},
        "links": {"up": {"src": "sensor", "dst": "agg", "bandwidth_bps": 1e6}},
        "topology": {"kind": "chain", "devices": ["sensor", "agg"]},
    }
    return build_system(parse_spec(ObjectiveSpec, data, "inline"))


def _all_on_sensor(model: str) -> Evaluation:
    system = _two_devices(model)
    space = SearchSpace(parse_spec(SearchSpaceSpec, MEMORY_SPACE, "inline"), system)
    return evaluate(space.network(space.candidate({"split.after": 3})), system)


def test_liveness_memory_by_hand():
    """Liveness: weights plus the most elements alive at once; in the MBConv that is the depthwise
    conv's input and output (32 x 8 x 8 each) plus the residual's held input (8 x 8 x 8)."""
    ev = _all_on_sensor("liveness")
    live = {
        "stem": 3 * HW + 8 * HW,
        "expand": 8 * HW + 32 * HW,
        "depthwise": 32 * HW + 32 * HW + 8 * HW,
        "project": 32 * HW + 8 * HW + 8 * HW,
        "pool": 8 * HW + 8,
        "fc": 8 + 10,
    }
    assert max(live.values()) == live["depthwise"] == 4608
    assert ev.memory_bytes["sensor"] == sum(PARAMS.values()) + 4608  # 1 byte per weight and value


def test_splitnets_memory_by_hand():
    """SplitNets: weights plus two copies of the largest activation tensor (the 32 x 8 x 8
    expanded feature), i.e. the input and output of its batch norm."""
    ev = _all_on_sensor("splitnets")
    assert ev.memory_bytes["sensor"] == sum(PARAMS.values()) + 2 * 32 * HW


def test_memory_model_is_per_device_and_drives_the_cap():
    """A cap between the two models' peaks admits the placement under one model, not the other."""
    weights = sum(PARAMS.values())
    cap = weights + 4300  # splitnets needs 4096 activation bytes, liveness 4608
    space = SearchSpace(parse_spec(SearchSpaceSpec, MEMORY_SPACE, "inline"), cuts=1)
    network = space.network(space.candidate({"split.after": 3}))
    assert not evaluate(network, _two_devices("splitnets", cap)).memory_violations()
    assert evaluate(network, _two_devices("liveness", cap)).memory_violations() == {"sensor": 308}
    assert evaluate(network, _two_devices("liveness")).memory_bytes["agg"] == 0  # the other device


def test_optimal_split_respects_the_memory_model():
    """The latency-optimal cut under the cap uses the device's memory model: on a slow link
    all-on-sensor is fastest and fits under splitnets; under liveness the MBConv does not fit,
    and sending the 192-byte input beats sending the stem's 512-byte output."""
    cap = sum(PARAMS.values()) + 4300
    space = SearchSpace(parse_spec(SearchSpaceSpec, MEMORY_SPACE, "inline"), cuts=1)
    candidate = space.candidate({"split.after": 3})
    assert optimal_split(space.macro, candidate, _two_devices("splitnets", cap)).cuts == (3,)
    assert optimal_split(space.macro, candidate, _two_devices("liveness", cap)).cuts == (-1,)


# ------------------------------------------------------------------ Wang et al.'s transfer model


def _link_with(size_term: dict[str, Any], bandwidth_bps: float) -> Link:
    data = {
        "name": "wang",
        "devices": {n: {"compute": {"kind": "throughput", "macs_per_s": 1e9}} for n in ("edge", "cloud")},
        "links": {
            "up": {"src": "edge", "dst": "cloud", "bandwidth_bps": bandwidth_bps, "size_term": size_term}
        },
        "topology": {"kind": "chain", "devices": ["edge", "cloud"]},
    }
    return build_system(parse_spec(ObjectiveSpec, data, "inline")).link("edge", "cloud")


FITS = {
    "by_bandwidth": [
        {"bandwidth_bps": 1e6, "intercept_s": 0.05, "s_per_byte": 1e-6},
        {"bandwidth_bps": 1e7, "intercept_s": 0.01, "s_per_byte": 2e-7},
    ]
}


def test_transfer_model_with_f_depending_on_the_bandwidth():
    """Eq. 6, T_t = f(S|W) + S/W, f(S|W) = a(W) + b(W) S: at 4 Mb/s, a third of the way from the
    1 Mb/s fit to the 10 Mb/s fit."""
    size = 1000.0
    link = _link_with(FITS, 4e6)
    a = 0.05 + (4e6 - 1e6) / (1e7 - 1e6) * (0.01 - 0.05)
    b = 1e-6 + (4e6 - 1e6) / (1e7 - 1e6) * (2e-7 - 1e-6)
    assert link.size_term() == pytest.approx((a, b))
    assert link.transfer_time_s(size) == pytest.approx(a + b * size + size * 8 / 4e6)
    # at a fitted bandwidth, its own fit; outside the fits, the nearest one
    assert _link_with(FITS, 1e7).transfer_time_s(size) == pytest.approx(0.01 + 2e-7 * size + size * 8 / 1e7)
    assert _link_with(FITS, 5e5).size_term() == (0.05, 1e-6)
    assert _link_with(FITS, 5e7).size_term() == (0.01, 2e-7)
    # the same link at another bandwidth (dynamic surgery re-evaluates it per bandwidth)
    assert replace(link, bandwidth_bps=1e6).transfer_time_s(size) == pytest.approx(0.05 + 1e-6 * size + 8e-3)
    assert link.transfer_time_s(0) == 0.0  # nothing sent, no first packet


def test_transfer_model_fixed_fit_is_unchanged():
    link = _link_with({"intercept_s": 0.025, "s_per_byte": 1e-8}, 8e6)
    assert link.transfer_time_s(4096) == pytest.approx(0.025 + 1e-8 * 4096 + 4096 * 8 / 8e6)


@pytest.mark.parametrize(
    ("size_term", "needle"),
    [
        ({"by_bandwidth": list(reversed(FITS["by_bandwidth"]))}, "strictly increasing bandwidth_bps"),
        ({"intercept_s": 0.02, **FITS}, "not both"),
        ({"by_bandwidth": [{"bandwidth_bps": 0}]}, "bandwidth_bps"),
    ],
)
def test_transfer_model_bad_fits_name_the_field(size_term, needle):
    with pytest.raises(SpecError) as err:
        _link_with(size_term, 4e6)
    assert "links.up.size_term" in str(err.value) and needle in str(err.value)
