"""Exact fronts by batched enumeration equal the brute-force front of the scalar objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nasopt.errors import SpecError
from nasopt.spec import ObjectiveSpec, StudySpec, parse_spec
from nasopt.study.exact_front import ExactFront, exact_front
from nasopt.study.objective import NasObjective
from tests.conftest import space_spec


def objective_spec(metrics: list[tuple[str, str]], constraints: dict[str, Any]) -> ObjectiveSpec:
    devices = {
        "sensor": {"compute": {"kind": "throughput", "macs_per_s": 2e8}, "memory_bytes": 40_000},
        "hub": {"compute": {"kind": "throughput", "macs_per_s": 1e9}, "energy_j_per_mac": 1e-9},
        "cloud": {"compute": {"kind": "throughput", "macs_per_s": 1e10}},
    }
    links = {
        "a": {"src": "sensor", "dst": "hub", "bandwidth_bps": 2e6, "energy_j_per_bit": 1e-8},
        "b": {"src": "hub", "dst": "cloud", "bandwidth_bps": 1e6, "latency_s": 2e-3},
    }
    return parse_spec(
        ObjectiveSpec,
        {
            "name": "exact-test",
            "devices": devices,
            "links": links,
            "topology": {"kind": "chain", "devices": ["sensor", "hub", "cloud"]},
            "objectives": [{"name": n, "direction": d} for n, d in metrics],
            "constraints": constraints,
        },
        "test-objective",
    )


def brute_force(objective: NasObjective) -> tuple[set[Any], int, np.ndarray]:
    """Feasible candidates no other feasible candidate dominates, by pairwise comparison, their
    count and the feasible values (for the per-metric bounds)."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in objective.directions])
    rows = []
    for candidate in objective.space.enumerate():
        result = objective.evaluate(candidate)
        if all(v <= 0 for v in result.constraints):
            rows.append((candidate, np.array([result.metrics[m] for m in objective.metric_names]) * sign))
    losses = np.array([loss for _, loss in rows])
    # dominated[i]: some j is no worse everywhere and better somewhere (pairwise, no library)
    no_worse = np.all(losses[:, None, :] <= losses[None, :, :], axis=2)
    better = np.any(losses[:, None, :] < losses[None, :, :], axis=2)
    dominated = np.any(no_worse & better, axis=0)
    front = {c for (c, _), d in zip(rows, dominated, strict=True) if not d}
    return front, len(rows), losses * sign


CASES = [
    ([("error", "minimize"), ("latency_ms", "minimize")], {}),
    ([("accuracy", "maximize"), ("energy_mj", "minimize"), ("sent_bytes", "minimize")], {"latency_ms": 4.0}),
    ([("error", "minimize"), ("memory_bytes", "minimize")], {"accuracy_min": 0.3, "memory": True}),
]


@pytest.mark.parametrize(("metrics", "constraints"), CASES)
def test_exact_front_equals_brute_force(metrics: list[tuple[str, str]], constraints: dict[str, Any]) -> None:
    space = space_spec(bottleneck={"widths": ["none", 4], "bits": [4, 8]})
    study = parse_spec(StudySpec, {"name": "t", "space": "small", "objective": "exact-test"}, "test-study")
    objective = NasObjective(study, space, objective_spec(metrics, constraints))
    result = exact_front(objective, chunk=257)
    expected, n_feasible, feasible_values = brute_force(objective)
    assert result.n_candidates == objective.space.size()
    assert result.n_feasible == n_feasible
    assert result.feasible_min == pytest.approx(feasible_values.min(axis=0).tolist(), rel=1e-9)
    assert result.feasible_max == pytest.approx(feasible_values.max(axis=0).tolist(), rel=1e-9)
    assert len(result) > 0 and set(result.candidates) == expected
    for candidate, values in zip(result.candidates, result.values, strict=True):
        scalar = objective.evaluate(candidate).metrics
        assert values == pytest.approx([scalar[m] for m, _ in metrics], rel=1e-9)


def test_an_exact_front_round_trips_through_its_json_file(tmp_path: Path) -> None:
    study = parse_spec(StudySpec, {"name": "t", "space": "small", "objective": "exact-test"}, "test-study")
    objective = NasObjective(study, space_spec(), objective_spec(*CASES[0]))
    result = exact_front(objective)
    path = tmp_path / "front.json"
    result.save(path)
    loaded = ExactFront.load(path)
    assert set(loaded.candidates) == set(result.candidates)
    assert np.allclose(np.sort(loaded.values, axis=0), np.sort(result.values, axis=0), rtol=1e-12)
    assert loaded.feasible_min == result.feasible_min and loaded.feasible_max == result.feasible_max
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SpecError, match="cannot read the exact front"):
        ExactFront.load(path)


def test_an_exact_front_refuses_a_space_over_the_limit_and_a_supernet() -> None:
    study = parse_spec(StudySpec, {"name": "t", "space": "small", "objective": "exact-test"}, "test-study")
    objective = NasObjective(study, space_spec(), objective_spec(*CASES[0]))
    with pytest.raises(SpecError, match="more than --max-candidates"):
        exact_front(objective, max_candidates=10)
    supernet = parse_spec(
        StudySpec,
        {"name": "t", "space": "small", "objective": "exact-test", "accuracy": {"estimator": "supernet"}},
        "test-study",
    )
    with pytest.raises(SpecError, match="one candidate at a time"):
        exact_front(NasObjective(supernet, space_spec(), objective_spec(*CASES[0])))
