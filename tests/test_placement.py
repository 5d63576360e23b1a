"""optimal_split: the dynamic program equals brute force over every contiguous placement."""

from __future__ import annotations

import itertools
import math
import random
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import evaluate
from nasopt.core.macro import fuse_domain, split_point_domain
from nasopt.core.split import optimal_split
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, parse_spec
from tests.conftest import chain_system, space_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def brute_force(space: SearchSpace, candidate, system) -> tuple[float, float]:
    """(best feasible latency, best latency ignoring memory) over all non-decreasing cuts."""
    best_ok = best_any = math.inf
    n_cuts = len(system.chain) - 1
    for cuts in itertools.combinations_with_replacement(space.cut_domain(), n_cuts):
        ev = evaluate(space.network(replace(candidate, cuts=cuts)), system)
        best_any = min(best_any, ev.latency_s)
        if not ev.memory_violations():
            best_ok = min(best_ok, ev.latency_s)
    return best_ok, best_any


@settings(max_examples=40, deadline=None)
@given(
    n_devices=st.integers(2, 4),
    seed=st.integers(0, 10_000),
    rates=st.lists(st.floats(1e7, 1e11), min_size=4, max_size=4),
    bandwidths=st.lists(st.floats(1e4, 1e9), min_size=3, max_size=3),
    caps=st.lists(st.one_of(st.none(), st.integers(2_000, 200_000)), min_size=4, max_size=4),
    run_overhead_s=st.sampled_from([0.0, 1e-4, 1e-2]),
)
def test_optimal_split_equals_brute_force(n_devices, seed, rates, bandwidths, caps, run_overhead_s):
    system = chain_system(
        rates[:n_devices], bandwidths[: n_devices - 1], caps[:n_devices], run_overhead_s=run_overhead_s
    )
    space = SearchSpace(space_spec(), system)
    candidate = space.sample(random.Random(seed))
    result = optimal_split(space.macro, candidate, system)
    best_ok, best_any = brute_force(space, candidate, system)
    if math.isinf(best_ok):
        assert not result.feasible
        assert result.latency_s == pytest.approx(best_any, rel=1e-9)
    else:
        assert result.feasible
        assert result.latency_s == pytest.approx(best_ok, rel=1e-9)
    # the reported cuts really give the reported latency
    ev = evaluate(space.network(replace(candidate, cuts=result.cuts)), system)
    assert ev.latency_s == pytest.approx(result.latency_s, rel=1e-9)
    assert list(result.cuts) == sorted(result.cuts)


def test_optimal_split_prefers_the_fast_device_when_links_are_free():
    system = chain_system([1e6, 1e12], [1e15])
    space = SearchSpace(space_spec(), system)
    candidate = space.largest()
    result = optimal_split(space.macro, candidate, system)
    assert result.cuts == (-1,)  # send the input, compute everything on the fast device


def test_a_run_overhead_is_paid_once_per_device_that_runs_a_layer():
    """Two equal devices, free links: a split costs one more run overhead, so a large one keeps
    the whole network on one device; the relaying device pays nothing."""
    system = chain_system([1e9, 1e9], [1e15], run_overhead_s=1.0)
    space = SearchSpace(space_spec(), system)
    candidate = space.largest()
    result = optimal_split(space.macro, candidate, system)
    assert result.cuts in {(-1,), (len(space.macro.layers) - 1,)}
    whole = evaluate(space.network(replace(candidate, cuts=result.cuts)), system)
    split = evaluate(space.network(replace(candidate, cuts=(0,))), system)
    assert whole.latency_s == pytest.approx(result.latency_s)
    assert split.latency_s - whole.latency_s == pytest.approx(1.0, rel=1e-6)
    assert sorted(whole.compute_s.values())[0] == 0.0


def test_optimal_split_rejects_a_bottleneck_candidate():
    system = chain_system([1e9, 1e9], [1e6])
    spec = space_spec(bottleneck={"widths": ["none", 4], "bits": [8]})
    space = SearchSpace(spec, system)
    with pytest.raises(SpecError, match="bottleneck"):
        optimal_split(space.macro, replace(space.largest(), bottleneck_width=4), system)


# ------------------------------------------------------------------ mesh and tree


def _fixture_space(name: str, **changes: Any) -> SearchSpaceSpec:
    with (FIXTURES / f"{name}.toml").open("rb") as fh:
        data = tomllib.load(fh)
    data.update(changes)
    return parse_spec(SearchSpaceSpec, data, name)


def _mesh_system(rates: list[float], bandwidths: list[float], caps: list[int | None]) -> System:
    """ue -> sbs (root) -> 3 x mbs -> agg -> cloud: one cut before the branches, one after."""
    names = ["ue", "sbs", "mbs", "agg", "cloud"]
    devices: dict[str, Any] = {}
    for name, rate, cap in zip(names, rates, caps, strict=True):
        devices[name] = {"compute": {"kind": "throughput", "macs_per_s": rate}}
        if cap is not None:
            devices[name]["memory_bytes"] = cap
    devices["mbs"]["count"] = 3
    pairs = [("ue", "sbs"), ("sbs", "mbs"), ("mbs", "agg"), ("agg", "cloud")]
    links = {
        f"{a}_{b}": {"src": a, "dst": b, "bandwidth_bps": bw}
        for (a, b), bw in zip(pairs, bandwidths, strict=True)
    }
    topology = {
        "kind": "mesh",
        "before": ["ue"],
        "root": "sbs",
        "branches": ["mbs"],
        "after": ["agg", "cloud"],
    }
    spec = parse_spec(
        ObjectiveSpec, {"name": "mesh5", "devices": devices, "links": links, "topology": topology}, "t"
    )
    return build_system(spec)


def _brute_force_cuts(space: SearchSpace, candidate: Candidate, system: System) -> tuple[float, float]:
    """(best latency within every cap, best latency ignoring memory) over every cut assignment."""
    best_ok = best_any = math.inf
    axes = [
        itertools.combinations_with_replacement(domain, len(names)) for names, domain in space.cut_groups()
    ]
    for groups in itertools.product(*axes):
        cuts = tuple(c for group in groups for c in group)
        ev = evaluate(space.network(replace(candidate, cuts=cuts)), system)
        best_any = min(best_any, ev.latency_s)
        if not ev.memory_violations():
            best_ok = min(best_ok, ev.latency_s)
    return best_ok, best_any


def _check(result: Any, best_ok: float, best_any: float) -> None:
    if math.isinf(best_ok):
        assert not result.feasible
        assert result.latency_s == pytest.approx(best_any, rel=1e-9)
    else:
        assert result.feasible
        assert result.latency_s == pytest.approx(best_ok, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rates=st.lists(st.floats(1e7, 1e11), min_size=5, max_size=5),
    bandwidths=st.lists(st.floats(1e4, 1e9), min_size=4, max_size=4),
    caps=st.lists(st.one_of(st.none(), st.integers(5_000, 300_000)), min_size=5, max_size=5),
)
def test_optimal_split_on_a_mesh_equals_brute_force(seed, rates, bandwidths, caps):
    system = _mesh_system(rates, bandwidths, caps)
    space = SearchSpace(_fixture_space("mesh_space"), system)
    candidate = replace(space.sample(random.Random(seed)), bottleneck_width=0)
    result = optimal_split(space.macro, candidate, system)
    _check(result, *_brute_force_cuts(space, candidate, system))
    ev = evaluate(space.network(replace(candidate, cuts=result.cuts)), system)
    assert ev.latency_s == pytest.approx(result.latency_s, rel=1e-9)
    assert result.feasible == (not ev.memory_violations())


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    leaf_rate=st.floats(1e8, 1e11),
    bandwidth=st.floats(1e5, 1e9),
    cap=st.one_of(st.none(), st.integers(2_000, 200_000)),
)
def test_optimal_split_on_a_tree_equals_brute_force_over_fusion_points(seed, leaf_rate, bandwidth, cap):
    cam: dict[str, Any] = {"count": 4, "compute": {"kind": "throughput", "macs_per_s": leaf_rate}}
    if cap is not None:
        cam["memory_bytes"] = cap
    data = {
        "name": "tree4",
        "devices": {"cam": cam, "agg": {"compute": {"kind": "throughput", "macs_per_s": 1e12}}},
        "links": {"up": {"src": "cam", "dst": "agg", "bandwidth_bps": bandwidth}},
        "topology": {"kind": "tree", "root": "agg", "leaves": ["cam"]},
    }
    system = build_system(parse_spec(ObjectiveSpec, data, "t"))
    space = SearchSpace(_fixture_space("mv_space"), system)
    candidate = replace(space.sample(random.Random(seed)), bottleneck_width=0)
    result = optimal_split(space.macro, candidate, system)
    best_ok = best_any = math.inf
    for fuse in fuse_domain(space.macro):
        ev = evaluate(space.network(replace(candidate, fuse_after=fuse, cuts=(fuse,))), system)
        best_any = min(best_any, ev.latency_s)
        if not ev.memory_violations():
            best_ok = min(best_ok, ev.latency_s)
    _check(result, best_ok, best_any)
    assert result.cuts == (result.fuse_after,)


def test_optimal_split_on_a_mesh_moves_the_trunk_cut_when_the_ue_is_capped():
    rates, bandwidths = [1e11, 1e9, 1e10, 1e10, 1e12], [1e9, 1e9, 1e9, 1e9]
    space = SearchSpace(_fixture_space("mesh_space"), _mesh_system(rates, bandwidths, [None] * 5))
    candidate = replace(space.largest(), bottleneck_width=0)
    free = optimal_split(space.macro, candidate, _mesh_system(rates, bandwidths, [None] * 5))
    assert free.feasible and free.cuts[0] >= 0  # the fast UE computes the trunk itself
    capped_system = _mesh_system(rates, bandwidths, [1_000, None, None, None, None])
    capped = optimal_split(space.macro, candidate, capped_system)
    assert capped.feasible and capped.cuts[0] == -1  # the UE can hold no layer: it sends the input
    assert capped.latency_s > free.latency_s


def test_optimal_split_over_given_points_ignores_the_spaces_split_points():
    """Neurosurgeon's domain: every layer boundary, even where the space allows no cut."""
    system = chain_system([2e9, 2e11], [4e6], [30_000, None])
    space = SearchSpace(space_spec(split={"points": [3]}), system)
    candidate = replace(space.largest(), bottleneck_width=0)
    every = tuple(split_point_domain(space.macro))
    assert space.cut_domain() == (3,)
    result = optimal_split(space.macro, candidate, system, points=every)
    best = math.inf
    for cut in every:
        ev = evaluate(space.network(replace(candidate, cuts=(cut,))), system)
        if not ev.memory_violations():
            best = min(best, ev.latency_s)
    assert result.feasible and result.latency_s == pytest.approx(best, rel=1e-9)
    restricted = optimal_split(space.macro, candidate, system)
    assert restricted.cuts == (3,) and restricted.latency_s >= result.latency_s
