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


# ------------------------------------------------------------------ multi-view by hand


# two 3x8x8 views, 8 bit: per view a 3x3 conv 3 -> 4 and a 1x1 conv 4 -> 4, fused after the 1x1
# conv, then pooling and a 10-class classifier; two sensors (1 GMAC/s) on 1 Mb/s uplinks to an
# aggregator (10 GMAC/s)
def _views_space(merge: str, placement: list[str]) -> SearchSpaceSpec:
    data = {
        "name": "two-views",
        "input": {"channels": 3, "height": 8, "width": 8},
        "num_classes": 10,
        "input_bits": 8,
        "activation_bits": 8,
        "weight_bits": 8,
        "stages": [
            {"name": "a", "widths": [4], "layers": [{"op": "conv3"}, {"op": "conv1"}]},
            {"name": "head", "widths": [4], "layers": [{"op": "gap"}, {"op": "classifier"}]},
        ],
        "bottleneck": {"bits": [8]},
        "fusion": {"views": 2, "points": [1], "merge": merge, "placement": placement},
    }
    return parse_spec(SearchSpaceSpec, data, "inline")


def _tree() -> System:
    data = {
        "name": "tree",
        "devices": {
            "sensor": {"count": 2, "compute": {"kind": "throughput", "macs_per_s": 1e9}},
            "agg": {"compute": {"kind": "throughput", "macs_per_s": 1e10}},
        },
        "links": {"up": {"src": "sensor", "dst": "agg", "bandwidth_bps": 1e6}},
        "topology": {"kind": "tree", "root": "agg", "leaves": ["sensor"]},
    }
    return build_system(parse_spec(ObjectiveSpec, data, "inline"))


VIEW_MACS = 3 * 3 * 3 * 4 * 64 + 4 * 4 * 64  # per view: 3x3 conv 3 -> 4, 1x1 conv 4 -> 4 at 8x8
VIEW_PARAMS = (3 * 3 * 3 * 4 + 2 * 4) + (4 * 4 + 2 * 4)


@pytest.mark.parametrize("merge", ["max", "mean"])
def test_view_pool_costs_by_hand(merge):
    """View-Pool keeps one view's 4 channels (concat: 2 x 4): the classifier sees 4 inputs; the
    pool reads both views (2 x 256) and writes 256 elements, no MACs."""
    tree = _tree()
    space = SearchSpace(_views_space(merge, ["sensors"]), tree)
    net = space.network(space.candidate({}))
    pool = net.layers[2]
    assert (pool.op_type, pool.in_shape, pool.out_shape) == (f"view_{merge}", (8, 8, 8), (4, 8, 8))
    assert (pool.macs, pool.params, pool.peak_live_elems, pool.peak_tensor_elems) == (0, 0, 512 + 256, 512)
    assert net.layers[-1].in_shape == (4, 1, 1)
    assert net.macs == 2 * VIEW_MACS + 4 * 10
    assert net.params == VIEW_PARAMS + 4 * 10 + 10
    ev = evaluate(net, tree)
    sent = 4 * 64  # each sensor sends its 4 x 8 x 8 feature, 1 byte per value
    for leaf in ("sensor0", "sensor1"):
        assert ev.sent_bytes[f"up{leaf[-1]}"] == sent
        assert ev.macs[leaf] == VIEW_MACS
    assert ev.macs["agg"] == 4 * 10
    # aggregator: classifier weights + the pool's inputs and output (> the 512 received bytes)
    assert ev.memory_bytes["agg"] == (4 * 10 + 10) + 768
    assert ev.latency_s == pytest.approx(VIEW_MACS / 1e9 + sent * 8 / 1e6 + 40 / 1e10)


def test_view_fuse_concat_by_hand():
    space = SearchSpace(_views_space("concat", ["sensors"]), _tree())
    net = space.network(space.candidate({}))
    assert (net.layers[2].op_type, net.layers[2].out_shape) == ("view_fuse", (8, 8, 8))
    assert net.macs == 2 * VIEW_MACS + 8 * 10


def test_all_on_aggregator_by_hand():
    """The sensors send their raw 3 x 8 x 8 views (8 bit); the aggregator runs both views' layers
    (twice the MACs, the weights once), pools and classifies."""
    tree = _tree()
    space = SearchSpace(_views_space("max", ["sensors", "aggregator"]), tree)
    assert [p.name for p in space.params()] == ["fuse.placement"]
    cand = space.candidate({"fuse.placement": "aggregator"})
    assert (cand.cuts, cand.fuse_after) == ((-1,), 1)
    assert space.values(cand) == {"fuse.placement": "aggregator"}
    assert space.validate(cand) is cand
    assert space.size() == 2
    net = space.network(cand)
    ev = evaluate(net, tree)
    raw = 3 * 64
    for i in range(2):
        assert ev.sent_bytes[f"up{i}"] == raw
        assert ev.compute_s.get(f"sensor{i}", 0.0) == 0.0
        assert ev.memory_bytes[f"sensor{i}"] == raw  # the view it holds while sending
    assert ev.macs["agg"] == 2 * VIEW_MACS + 40 == net.macs
    assert ev.compute_s["agg"] == pytest.approx((2 * VIEW_MACS + 40) / 1e10)
    assert ev.weight_bytes["agg"] == VIEW_PARAMS + 50
    assert ev.memory_bytes["agg"] == VIEW_PARAMS + 50 + 768  # the pool's 768 > 2 x 192 received
    assert ev.latency_s == pytest.approx(raw * 8 / 1e6 + (2 * VIEW_MACS + 40) / 1e10)
    assert set(ev.placement) == {"agg"}


def test_fusion_placement_must_not_repeat():
    with pytest.raises(SpecError) as err:
        _views_space("max", ["sensors", "sensors"])
    assert "fusion.placement" in str(err.value)
    with pytest.raises(SpecError) as err:
        _views_space("sum", ["sensors"])
    assert "fusion.merge" in str(err.value) and "'concat'" in str(err.value)


# ------------------------------------------------------------------ a cut inside a residual block


def _residual_space(shortcut: bool, neck: list[Any] | None = None) -> SearchSpaceSpec:
    """3x8x8, 8 bit: a 3x3 conv 3 -> 8, then an MBConv 8 -> 8 (expansion 2, stride 1) that a cut
    after it splits right after its depthwise conv, then pooling and a 10-class classifier."""
    data = {
        "name": "residual-cut",
        "input": {"channels": 3, "height": 8, "width": 8},
        "num_classes": 10,
        "input_bits": 8,
        "activation_bits": 8,
        "weight_bits": 8,
        "ops": {"mb": {"type": "mbconv", "expansion": 2, "shortcut": shortcut, "split_tap": "depthwise"}},
        "stages": [
            {"name": "stem", "widths": [8], "layers": [{"op": "conv3"}]},
            {"name": "body", "widths": [8], "layers": [{"op": "mb"}]},
            {"name": "head", "widths": [8], "layers": [{"op": "gap"}, {"op": "classifier"}]},
        ],
        "bottleneck": {"bits": [8], "widths": neck or ["none"]},
    }
    return parse_spec(SearchSpaceSpec, data, "inline")


def test_residual_cut_sends_the_skip_tensor_by_hand():
    """Cut after the depthwise conv of a residual MBConv: the 16 x 8 x 8 depthwise output and the
    block's 8 x 8 x 8 input (the residual sum is on the far side) cross the link; the far device
    holds the skip tensor until the sum."""
    system = _two_devices("liveness")
    space = SearchSpace(_residual_space(True), system)
    net = space.network(space.candidate({"split.after": 1}))
    head, tail = net.layers[1], net.layers[2]
    assert (head.name, tail.name) == ("layer01.head", "layer01.tail")
    assert head.skip_elems == 8 * HW
    sent = 16 * HW + 8 * HW  # 1 byte each
    assert net.sent_elems == (sent,)
    ev = evaluate(net, system)
    assert ev.sent_bytes["up"] == sent
    assert ev.transfer_s["up"] == pytest.approx(sent * 8 / 1e6)
    sensor_weights = (3 * 9 * 8 + 2 * 8) + (8 * 16 + 2 * 16) + (9 * 16 + 2 * 16)  # stem, expand, dw
    agg_weights = (16 * 8 + 2 * 8) + (8 * 10 + 10)  # project, classifier
    # sensor: the depthwise conv's input and output plus the held block input (2,560 > 1,536 sent)
    assert ev.memory_bytes["sensor"] == sensor_weights + (16 + 16 + 8) * HW
    # aggregator: the projection's input and output plus the skip tensor it adds
    assert tail.peak_live_elems == (16 + 8 + 8) * HW
    assert ev.memory_bytes["agg"] == agg_weights + (16 + 8 + 8) * HW
    sensor_macs = 3 * 9 * 8 * HW + 8 * 16 * HW + 9 * 16 * HW
    agg_macs = 16 * 8 * HW + 8 * 10
    assert (ev.macs["sensor"], ev.macs["agg"]) == (sensor_macs, agg_macs)
    assert ev.latency_s == pytest.approx(sensor_macs / 1e9 + sent * 8 / 1e6 + agg_macs / 1e10)


def test_cut_in_a_block_without_residual_sends_only_the_feature():
    space = SearchSpace(_residual_space(False), cuts=1)
    net = space.network(space.candidate({"split.after": 1}))
    assert net.layers[1].skip_elems == 0
    assert net.sent_elems == (16 * HW,)
    assert net.layers[2].peak_live_elems == (16 + 8) * HW


def test_residual_cut_with_a_bottleneck_reduces_only_the_feature():
    """Conv-Reduce to 4 channels at the tap: 4 x 8 x 8 plus the unreduced 8 x 8 x 8 skip tensor."""
    space = SearchSpace(_residual_space(True, [4]), cuts=1)
    net = space.network(space.candidate({"split.after": 1}))
    assert [layer.op_type for layer in net.layers[1:5]] == [
        "mbconv_head",
        "conv_reduce",
        "conv_recover",
        "conv",
    ]
    assert net.cut_after == (2,)
    assert net.sent_elems == (4 * HW + 8 * HW,)
