"""optimal_split: the dynamic program equals brute force over every contiguous placement."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasopt.core.evaluation import evaluate
from nasopt.core.split import optimal_split
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from tests.conftest import chain_system, space_spec


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
)
def test_optimal_split_equals_brute_force(n_devices, seed, rates, bandwidths, caps):
    system = chain_system(rates[:n_devices], bandwidths[: n_devices - 1], caps[:n_devices])
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


def test_optimal_split_rejects_a_bottleneck_candidate():
    system = chain_system([1e9, 1e9], [1e6])
    spec = space_spec(bottleneck={"widths": ["none", 4], "bits": [8]})
    space = SearchSpace(spec, system)
    with pytest.raises(SpecError, match="bottleneck"):
        optimal_split(space.macro, replace(space.largest(), bottleneck_width=4), system)
