"""The study objective: metrics, constraints, dashboard attributes, bulk attribute writes."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from nasopt.spec import ObjectiveSpec, StudySpec, parse_spec
from nasopt.study.objective import CONSTRAINTS_KEY, NasObjective
from nasopt.study.pareto import front, render, rows
from nasopt.study.storage import open_storage, write_trial_attrs
from tests.conftest import space_spec

OBJECTIVE = {
    "name": "two-devices",
    "devices": {
        "edge": {"memory_bytes": 40_000, "compute": {"kind": "throughput", "macs_per_s": 1e8}},
        "cloud": {"compute": {"kind": "throughput", "macs_per_s": 1e11}},
    },
    "links": {"up": {"src": "edge", "dst": "cloud", "bandwidth_bps": 2e6, "latency_s": 0.001}},
    "topology": {"kind": "chain", "devices": ["edge", "cloud"]},
    "constraints": {"latency_ms": 5.0},
}


def make_objective(**constraints: object) -> NasObjective:
    data = json.loads(json.dumps(OBJECTIVE))
    data["constraints"].update(constraints)
    objective = parse_spec(ObjectiveSpec, data, "test")
    study = parse_spec(StudySpec, {"name": "t", "space": "x", "objective": "y"}, "test")
    return NasObjective(study, space_spec(), objective)


def run_study(objective: NasObjective, n: int = 30, storage: object = None) -> optuna.Study:
    study = optuna.create_study(
        storage=storage, directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.set_metric_names(objective.metric_names)
    study.optimize(objective, n_trials=n)
    return study


def test_constraints_are_relative_violations_of_memory_and_latency():
    objective = make_objective()
    assert objective.constraint_names == ["memory:edge", "latency_ms"]
    result = objective.evaluate(objective.space.largest())
    edge_peak = result.evaluation.memory_bytes["edge"]
    assert result.constraints[0] == pytest.approx((edge_peak - 40_000) / 40_000)
    assert result.constraints[1] == pytest.approx((result.metrics["latency_ms"] - 5.0) / 5.0)
    assert result.metrics["error"] == pytest.approx(1 - result.accuracy)


def test_trials_carry_constraints_and_a_consistent_breakdown():
    objective = make_objective()
    study = run_study(objective)
    for trial in study.trials:
        assert trial.system_attrs[CONSTRAINTS_KEY] == list(trial.constraints.values())
        attrs = trial.user_attrs
        parts = [v for k, v in attrs.items() if k.startswith(("compute_ms:", "transfer_ms:"))]
        assert sum(parts) == pytest.approx(attrs["latency_ms"])  # chain: eq. 1
        assert trial.values[1] == pytest.approx(attrs["latency_ms"])
        assert attrs["accuracy_estimator"] == "analytic-proxy"
        assert attrs["feasible"] == all(v <= 0 for v in trial.constraints.values())
    # best_trials honours the constraints written by the objective
    assert all(all(v <= 0 for v in t.constraints.values()) for t in study.best_trials)


def test_pareto_rows_are_the_feasible_front():
    study = run_study(make_objective(latency_ms=50.0), n=40)
    trials = front(study)
    assert {t.number for t in trials} == {t.number for t in study.best_trials}
    data = rows(study, trials)
    assert [r["trial"] for r in data] == [t.number for t in trials]
    assert json.loads(render(data, "json")) == json.loads(json.dumps(data))
    assert render(data, "csv").splitlines()[0].startswith("trial,error,latency_ms")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "journal"])
def test_bulk_attribute_write_matches_the_public_api(kind: str, tmp_path: Path):
    storage = None
    if kind == "sqlite":
        storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    elif kind == "journal":
        storage = open_storage(f"journal:{tmp_path / 'a.log'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    user = {"a": 1.5, "b": "text", "c": {"nested": [1, 2]}}
    system = {CONSTRAINTS_KEY: [0.5, -1.0]}
    write_trial_attrs(study._storage, trial._trial_id, user, system)
    study.tell(trial, 1.0)
    frozen = study.trials[0]
    assert frozen.user_attrs == user
    assert frozen.system_attrs[CONSTRAINTS_KEY] == [0.5, -1.0]
    assert frozen.constraints == {"0": 0.5, "1": -1.0}


def test_proxy_cut_after_the_last_layer_cuts_nothing() -> None:
    """The largest candidate of mbconv-quick puts every cut after the last layer (0 elements
    sent): the proxy scores it at its ceiling, not at its floor (it used to zero the bottleneck)."""
    from nasopt.accuracy.proxy import ProxyAccuracy
    from nasopt.core.system import build_system
    from nasopt.presets import load_objective, load_space
    from nasopt.space import SearchSpace

    space = SearchSpace(load_space("mbconv-quick"), build_system(load_objective("jmsnas-chain")))
    candidate = space.largest()
    network = space.network(candidate)
    assert set(network.cut_after) == {len(network.layers) - 1} and set(network.sent_elems) == {0}
    assert ProxyAccuracy(space).accuracy(candidate, network, 0.0) == pytest.approx(0.95)
