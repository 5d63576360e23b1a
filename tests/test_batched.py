"""The batched analytic evaluation is the scalar model over arrays: same numbers, every preset."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from nasopt.core.batched import BatchEvaluation, BatchEvaluator, CandidateBatch
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, preset_dirs
from tests.conftest import chain_system, space_spec


def _preset_names(kind: str) -> list[str]:
    return sorted({p.stem for d in preset_dirs(kind) for p in d.glob("*.toml")})


REFUSED: dict[tuple[str, str], str] = {}  # pairs only the scalar path covers -> the error


def _pairs() -> list[tuple[str, str]]:
    """Every shipped (space, objective) pair the scalar model accepts and the batched one does
    not refuse (the refused ones are checked by test_batched_refuses_only_scalar_only_features)."""
    pairs = []
    for space_name in _preset_names("space"):
        for objective_name in _preset_names("objective"):
            system = build_system(load_objective(objective_name))
            try:
                space = SearchSpace(load_space(space_name), system)
                evaluate(space.network(space.sample(random.Random(0))), system)
            except SpecError:
                continue
            try:
                BatchEvaluator(space.macro, system)
            except SpecError as exc:
                REFUSED[(space_name, objective_name)] = str(exc)
                continue
            pairs.append((space_name, objective_name))
    return pairs


def assert_same(result: BatchEvaluation, j: int, ev: Evaluation, space: SearchSpace, candidate: Any) -> None:
    net = space.network(candidate)
    where = f"candidate {j}: {candidate}"
    assert result.latency_s[j] == pytest.approx(ev.latency_s, rel=1e-9), where
    assert result.energy_j[j] == pytest.approx(ev.energy_j, rel=1e-9, abs=1e-15), where
    assert set(result.memory_bytes) == set(ev.memory_bytes), where
    assert {d: int(v[j]) for d, v in result.memory_bytes.items()} == ev.memory_bytes, where
    assert {d: int(v[j]) for d, v in result.weight_bytes.items()} == ev.weight_bytes, where
    assert {d: int(v[j]) for d, v in result.macs.items()} == ev.macs, where
    for dev, t in ev.compute_s.items():
        assert result.compute_s[dev][j] == pytest.approx(t, rel=1e-9, abs=1e-15), (where, dev)
    for link, t in ev.transfer_s.items():
        assert result.transfer_s[link][j] == pytest.approx(t, rel=1e-12, abs=1e-18), (where, link)
        assert result.sent_bytes[link][j] == ev.sent_bytes[link], (where, link)
    assert tuple(int(e) for e in result.sent_elems[:, j]) == net.sent_elems, where
    assert tuple(int(b) for b in result.sent_bits[:, j]) == net.sent_bits, where
    pixels = tuple(
        net.layers[flat].out_shape[1] * net.layers[flat].out_shape[2] if flat >= 0 else 0
        for flat in net.cut_after
    )
    assert tuple(int(p) for p in result.cut_pixels[:, j]) == pixels, where
    assert int(result.network_macs[j]) == net.macs, where
    assert int(result.network_params[j]) == net.params, where
    assert bool(result.feasible()[j]) == (not ev.memory_violations()), where


def check_batch(space: SearchSpace, system: System, candidates: list[Any]) -> None:
    batch = CandidateBatch.from_candidates(space.macro, candidates)
    result = BatchEvaluator(space.macro, system).evaluate(batch)
    for j, candidate in enumerate(candidates):
        assert batch.candidate(space.macro, j) == candidate
        assert_same(result, j, evaluate(space.network(candidate), system), space, candidate)


def with_run_overhead(objective: ObjectiveSpec, run_overhead_s: float) -> ObjectiveSpec:
    """The objective with every device paying `run_overhead_s` once per inference."""
    devices = {
        name: dev.model_copy(
            update={"compute": dev.compute.model_copy(update={"run_overhead_s": run_overhead_s})}
        )
        for name, dev in objective.devices.items()
    }
    return objective.model_copy(update={"devices": devices})


@pytest.mark.parametrize("run_overhead_s", [0.0, 3e-4])
@pytest.mark.parametrize(("space_name", "objective_name"), _pairs())
def test_batched_equals_scalar_on_every_preset(
    space_name: str, objective_name: str, run_overhead_s: float
) -> None:
    system = build_system(with_run_overhead(load_objective(objective_name), run_overhead_s))
    space = SearchSpace(load_space(space_name), system)
    rng = random.Random(f"{space_name}/{objective_name}")
    candidates = [space.sample(rng) for _ in range(40)] + [space.largest(), space.smallest()]
    check_batch(space, system, candidates)


def test_batched_refuses_only_scalar_only_features():
    """The batched path refuses, with the field named, exactly the pairs that use what only the
    scalar path models: View-Pool and all-on-aggregator placement (SplitNets' memory model it
    covers: the SplitNets objectives are compared above)."""
    assert REFUSED, "no pair is refused: drop this test and the refusal"
    for (space_name, objective_name), message in REFUSED.items():
        view_pool = space_name.endswith("-multiview") and not space_name.startswith("splitnets")
        assert view_pool, (space_name, objective_name, message)
        assert "fusion." in message, message
    assert any(objective_name.startswith("splitnets-") for _, objective_name in _pairs())


@pytest.mark.parametrize("n_devices", [1, 2, 3])
def test_batched_equals_scalar_with_taps_bottlenecks_equal_and_edge_cuts(n_devices: int) -> None:
    """The small space splits MBConvs at their depthwise conv; bottlenecks at the input, at a
    tap, at the last layer, and equal cuts (relaying devices, which pay no run overhead) are
    all compared."""
    spec = space_spec(bottleneck={"widths": ["none", 4, 8], "bits": [4, 8]})
    system = chain_system(
        [1e9 * (i + 1) for i in range(n_devices)],
        [1e6] * (n_devices - 1),
        latency_s=1e-3,
        run_overhead_s=2e-4,
    )
    space = SearchSpace(spec, system)
    rng = random.Random(n_devices)
    candidates = [space.sample(rng) for _ in range(300)]
    if n_devices > 1:
        base = space.sample(rng)
        last = len(space.macro.layers) - 1
        for cuts in ([-1] * (n_devices - 1), [last] * (n_devices - 1)):
            for width in (0, 8):
                candidates.append(
                    space.candidate(
                        {**space.values(base), **_cut_values(space, cuts), "bottleneck.width": width}
                    )
                )
    check_batch(space, system, candidates)


def _cut_values(space: SearchSpace, cuts: list[int]) -> dict[str, int]:
    names = ["split.after"] + [f"split{k}.after" for k in range(2, len(cuts) + 1)]
    return dict(zip(names, cuts, strict=True))


def test_enumerated_batches_hold_every_candidate_once() -> None:
    spec = space_spec(bottleneck={"widths": ["none", 4], "bits": [4, 8]})
    system = chain_system([1e9, 2e9, 3e9], [1e6, 1e6])
    space = SearchSpace(spec, system)
    from_batches = [c for batch in space.enumerate_batches(chunk=97) for c in batch.candidates(space.macro)]
    assert len(from_batches) == space.size()
    assert set(from_batches) == set(space.enumerate())


def test_sampled_batches_stay_in_the_domain_and_keep_cuts_sorted() -> None:
    system = chain_system([1e9, 2e9, 3e9], [1e6, 1e6])
    space = SearchSpace(space_spec(), system)
    batch = space.sample_batch(np.random.default_rng(3), 2_000)
    assert np.all(np.diff(batch.cuts, axis=0) >= 0)
    for candidate in list(batch.candidates(space.macro))[:200]:
        assert space.validate(candidate) is candidate
    # every parameter value is drawn (uniform draws over 2,000 candidates)
    seen = {p.name: set() for p in space.params()}
    for candidate in batch.candidates(space.macro):
        for name, value in space.values(candidate).items():
            seen[name].add(value)
    assert all(seen[p.name] == set(p.choices) for p in space.params())


def test_a_mesh_with_a_bottleneck_is_refused_with_a_clear_error() -> None:
    data = load_space("mbconv-jmsnas-mesh-32").model_dump()
    data["bottleneck"]["widths"] = ["none", 8]
    from nasopt.spec import SearchSpaceSpec, parse_spec

    spec = parse_spec(SearchSpaceSpec, data, "mesh-with-bottleneck")
    system = build_system(load_objective("jmsnas-mesh"))
    with pytest.raises(SpecError, match="mesh needs a space without bottleneck"):
        BatchEvaluator(SearchSpace(spec, system).macro, system)


def test_a_cut_after_a_parallel_merge_sends_the_merged_feature_without_bottleneck() -> None:
    data = load_space("mbconv-jmsnas-mesh-32").model_dump()
    data["bottleneck"]["widths"] = ["none", 8]
    from nasopt.spec import SearchSpaceSpec, parse_spec

    spec = parse_spec(SearchSpaceSpec, data, "mesh-with-bottleneck")
    system = chain_system([1e9, 2e9], [1e6])
    space = SearchSpace(spec, system)
    last = space.macro.stages[space.macro.parallel_stage()].layers[-1]
    candidate = space.candidate(
        {**space.values(space.sample(random.Random(1))), "split.after": last, "bottleneck.width": 8}
    )
    net = space.network(candidate)
    merge = next(layer for layer in net.layers if layer.op_type == "merge")
    assert net.sent_elems == (merge.out_elems,)
    assert not any(layer.op_type == "conv_reduce" for layer in net.layers)
    check_batch(space, system, [candidate, *(space.sample(random.Random(k)) for k in range(50))])


def test_a_missing_lookup_entry_raises_the_scalar_error() -> None:
    objective = load_objective("nasc-raspi-edgegpu-measured").model_dump()
    for dev in objective["devices"].values():
        dev["compute"]["fallback"] = "error"
    from nasopt.spec import ObjectiveSpec, parse_spec

    system = build_system(parse_spec(ObjectiveSpec, objective, "no-fallback"))
    space = SearchSpace(space_spec(), system)
    batch = space.sample_batch(np.random.default_rng(0), 10)
    with pytest.raises(SpecError, match="no measured latency"):
        BatchEvaluator(space.macro, system).evaluate(batch)
