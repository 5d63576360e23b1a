"""Varying links: contexts, Markov chains and traces in the objective, and the robust latency
metrics (exact on discrete contexts, replayed otherwise)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nasopt.core.contexts import Timeline
from nasopt.core.evaluation import evaluate
from nasopt.core.robust import latency_distribution, robust_summary
from nasopt.core.system import build_system
from nasopt.describe import describe, render_table
from nasopt.errors import SpecError
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, StudySpec, parse_spec
from nasopt.study.objective import NasObjective
from tests.conftest import space_spec


def _objective(contexts: dict[str, Any] | None, **extra: Any) -> ObjectiveSpec:
    link: dict[str, Any] = {"src": "edge", "dst": "cloud", "latency_s": 0.002}
    link.update({"contexts": contexts} if contexts is not None else {"bandwidth_bps": 1e6})
    data = {
        "name": "two-context",
        "devices": {
            "edge": {"compute": {"kind": "throughput", "macs_per_s": 1e9}},
            "cloud": {"compute": {"kind": "throughput", "macs_per_s": 1e11}},
        },
        "links": {"up": link},
        "topology": {"kind": "chain", "devices": ["edge", "cloud"]},
        **extra,
    }
    return parse_spec(ObjectiveSpec, data, "two-context.toml")


TWO = {
    "kind": "discrete",
    "states": [
        {"name": "good", "bandwidth_bps": 8e6, "probability": 0.8},
        {"name": "bad", "bandwidth_bps": 1e6, "probability": 0.2, "latency_s": 0.01},
    ],
}


def _network(system: Any) -> tuple[SearchSpace, Any]:
    space = SearchSpace(space_spec(), system)
    candidate = space.sample(random.Random(3))
    return space, space.network(candidate)


def test_robust_metrics_equal_their_closed_forms_on_a_two_context_link() -> None:
    system = build_system(_objective(TWO))
    _, net = _network(system)
    ev = evaluate(net, system)
    compute = sum(ev.compute_s.values())
    sent = ev.sent_bytes["up"]
    assert sent > 0
    good = compute + 0.002 + 8 * sent / 8e6
    bad = compute + 0.010 + 8 * sent / 1e6
    dist = latency_distribution(net, system)
    assert dist.exact
    m = dist.summary(deadline_ms=1e3 * (good + bad) / 2)
    assert m["latency_mean_ms"] == pytest.approx(1e3 * (0.8 * good + 0.2 * bad), rel=1e-12)
    assert m["latency_p95_ms"] == pytest.approx(1e3 * bad, rel=1e-12)  # P(L <= good) = 0.8 < 0.95
    assert m["latency_worst_ms"] == pytest.approx(1e3 * bad, rel=1e-12)
    assert m["deadline_miss"] == pytest.approx(0.2)
    # the expected context: mean bandwidth and latency; latency_ms is evaluated there
    assert system.links["up"].bandwidth_bps == pytest.approx(0.8 * 8e6 + 0.2 * 1e6)
    assert system.links["up"].latency_s == pytest.approx(0.8 * 0.002 + 0.2 * 0.01)

    # the replay draws a context per inference; it converges to the exact values
    sim = latency_distribution(net, system, samples=200_000, seed=1, simulate=True)
    assert not sim.exact
    s = sim.summary(deadline_ms=1e3 * (good + bad) / 2)
    assert s["latency_mean_ms"] == pytest.approx(m["latency_mean_ms"], rel=5e-3)
    assert s["latency_p95_ms"] == pytest.approx(m["latency_p95_ms"], rel=1e-12)
    assert s["latency_worst_ms"] == pytest.approx(m["latency_worst_ms"], rel=1e-12)
    assert s["deadline_miss"] == pytest.approx(0.2, abs=5e-3)
    errors = [
        abs(
            latency_distribution(net, system, samples=n, seed=2, simulate=True).summary(None)[
                "latency_mean_ms"
            ]
            - m["latency_mean_ms"]
        )
        for n in (100, 100_000)
    ]
    assert errors[1] < errors[0] or errors[1] < 1e-3 * m["latency_mean_ms"]


def test_the_weighted_quantile_is_the_inverse_cdf() -> None:
    lat = np.array([3.0, 1.0, 2.0])
    assert robust_summary(lat, np.array([0.02, 0.9, 0.08]), None)["latency_p95_ms"] == 2e3
    assert robust_summary(lat, np.array([0.1, 0.85, 0.05]), None)["latency_p95_ms"] == 3e3
    assert robust_summary(lat, np.array([0.0, 0.5, 0.5]), None)["latency_worst_ms"] == 2e3


def test_one_context_equals_a_fixed_link() -> None:
    one = {"kind": "discrete", "states": [{"name": "only", "bandwidth_bps": 1e6, "probability": 1.0}]}
    varying, fixed = build_system(_objective(one)), build_system(_objective(None))
    _, net = _network(fixed)
    plain = evaluate(net, fixed).latency_s
    assert evaluate(net, varying).latency_s == pytest.approx(plain, rel=1e-15)
    m = latency_distribution(net, varying).summary(None)
    assert m["latency_mean_ms"] == m["latency_p95_ms"] == m["latency_worst_ms"] == pytest.approx(1e3 * plain)


def test_a_transfer_integrates_the_varying_bandwidth_exactly() -> None:
    tl = Timeline(np.array([0.0, 1.0, 2.0]), np.array([1e6, 4e6]), np.array([0, 1]), np.zeros(2))
    # 2 Mbit from t = 0.5 s: 0.5 Mbit in the first second, 1.5 Mbit at 4 Mb/s (0.375 s)
    assert tl.finish_s(np.array([0.5]), np.array([2e6]))[0] == pytest.approx(1.375)
    # the timeline repeats: the same transfer one period later ends one period later
    assert tl.finish_s(np.array([2.5]), np.array([2e6]))[0] == pytest.approx(3.375)
    # longer than a period: 5 Mbit per period
    assert tl.finish_s(np.array([0.0]), np.array([10e6]))[0] == pytest.approx(4.0)


def test_a_constant_trace_replays_to_the_static_latency(tmp_path: Path) -> None:
    csv = tmp_path / "flat.csv"
    csv.write_text("# flat\ntime_s,bandwidth_bps\n0,1000000\n0.5,1000000\n1.0,1000000\n")
    system = build_system(_objective({"kind": "trace", "trace": str(csv)}))
    fixed = build_system(_objective(None))
    _, net = _network(fixed)
    m = latency_distribution(net, system, samples=500).summary(None)
    assert m["latency_worst_ms"] == pytest.approx(evaluate(net, fixed).latency_ms, rel=1e-9)
    assert m["latency_mean_ms"] == pytest.approx(evaluate(net, fixed).latency_ms, rel=1e-9)


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("time_s,bandwidth_bps\n0,1e6\n0.1,fast\n", "bandwidth_bps", 3),
        ("time_s,bandwidth_bps\n0,1e6\n0.2,1e6\n0.1,1e6\n", "time_s", 4),
        ("time_s,bandwidth_bps\n0,1e6\n0.1,-5\n", "bandwidth_bps", 3),
        ("# c\ntime_s,bandwidth_bps\n0,1e6\n0.1,1e6,7\n", None, 4),
        ("time,bw\n0,1e6\n", None, 1),
    ],
)
def test_trace_files_with_bad_rows_give_a_clear_error(
    tmp_path: Path, body: str, field: str | None, line: int
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    objective = tmp_path / "o.toml"
    objective.write_text(
        f"""name = "o"
[devices.a]
compute = {{ kind = "throughput", macs_per_s = 1e9 }}
[devices.b]
compute = {{ kind = "throughput", macs_per_s = 1e9 }}
[links.up]
src = "a"
dst = "b"
contexts = {{ kind = "trace", trace = "{csv}" }}
[topology]
kind = "chain"
devices = ["a", "b"]
"""
    )
    with pytest.raises(SpecError) as err:
        load_objective(str(objective))
    text = str(err.value)
    assert str(csv) in text and f"line {line}:" in text, text
    if field:
        assert field in text, text


def test_context_specs_are_validated_with_the_field_named() -> None:
    bad_sum = {"kind": "discrete", "states": [{"name": "a", "bandwidth_bps": 1e6, "probability": 0.5}]}
    with pytest.raises(SpecError, match=r"links\.up\.contexts.*sum to 1"):
        _objective(bad_sum)
    with pytest.raises(SpecError, match="step_s"):
        _objective({"kind": "markov", "states": [{"name": "a", "bandwidth_bps": 1e6}], "transition": [[1.0]]})
    with pytest.raises(SpecError, match="2x2"):
        _objective(
            {
                "kind": "markov",
                "step_s": 1.0,
                "states": [{"name": "a", "bandwidth_bps": 1e6}, {"name": "b", "bandwidth_bps": 2e6}],
                "transition": [[1.0]],
            }
        )
    with pytest.raises(SpecError, match=r"unknown bundled trace.*4g-fast"):
        build_system(_objective({"kind": "trace", "trace": "5g-teleport"}))
    both = _objective(TWO).model_dump()
    both["links"]["up"]["bandwidth_bps"] = 1e6
    with pytest.raises(SpecError, match=r"links\.up.*exactly one of bandwidth_bps, medium or contexts"):
        build_system(parse_spec(ObjectiveSpec, both, "both.toml"))


def test_a_markov_link_has_its_stationary_shares_and_replays_to_them() -> None:
    markov = {
        "kind": "markov",
        "step_s": 1000.0,  # contexts dwell far longer than an inference: each sees one context
        "states": [{"name": "good", "bandwidth_bps": 8e6}, {"name": "bad", "bandwidth_bps": 1e6}],
        "transition": [[0.9, 0.1], [0.3, 0.7]],
    }
    system = build_system(_objective(markov))
    var = system.links["up"].variation
    assert var is not None
    np.testing.assert_allclose(var.probabilities, [0.75, 0.25], atol=1e-12)
    exact = dict(TWO)
    exact["states"] = [{**TWO["states"][0], "probability": 0.75}, {**TWO["states"][1], "probability": 0.25}]
    exact["states"][1].pop("latency_s")
    _, net = _network(system)
    want = latency_distribution(net, build_system(_objective(exact))).summary(None)
    got = latency_distribution(net, system, samples=50_000, seed=0).summary(None)
    assert got["latency_mean_ms"] == pytest.approx(want["latency_mean_ms"], rel=0.03)
    assert got["latency_worst_ms"] == pytest.approx(want["latency_worst_ms"], rel=1e-5)  # float time


def test_robust_metrics_are_objectives_constraints_and_in_describe() -> None:
    objective = _objective(
        TWO,
        objectives=[
            {"name": "latency_p95_ms", "direction": "minimize"},
            {"name": "deadline_miss", "direction": "minimize"},
        ],
        robust={"deadline_ms": 5.0},
        constraints={"latency_mean_ms": 4.0, "deadline_miss": 0.1},
    )
    study = StudySpec(name="s", space="x", objective="two-context", accuracy={"estimator": "analytic-proxy"})
    obj = NasObjective(study, space_spec(), objective)
    result = obj.evaluate(obj.space.sample(random.Random(3)))
    assert {"latency_mean_ms", "deadline_miss"} <= set(obj.constraint_names)
    dist = latency_distribution(result.network, obj.system).summary(5.0)
    for name in ("latency_mean_ms", "latency_p95_ms", "latency_worst_ms", "deadline_miss"):
        assert result.metrics[name] == dist[name]
    i = obj.constraint_names.index("latency_mean_ms")
    assert result.constraints[i] == pytest.approx((dist["latency_mean_ms"] - 4.0) / 4.0)
    assert result.constraints[obj.constraint_names.index("deadline_miss")] == pytest.approx(
        dist["deadline_miss"] - 0.1
    )
    batch = obj.space.sample_batch(np.random.default_rng(0), 4)
    with pytest.raises(SpecError, match="expected context only"):
        obj.evaluate_batch(batch)
    no_deadline = _objective(TWO, objectives=[{"name": "deadline_miss", "direction": "minimize"}])
    with pytest.raises(SpecError, match=r"robust\.deadline_ms"):
        NasObjective(study, space_spec(), no_deadline)


def test_describe_shows_the_contexts_and_the_robust_latency() -> None:
    doc = describe(load_space("vgg11-compress"), load_objective("edge-cloud-4g-fast"), '{"split.after": 6}')
    rob = doc["robust"]
    assert rob["links"]["uplink"]["kind"] == "trace"
    assert [c["name"] for c in rob["links"]["uplink"]["contexts"]] == ["weak", "normal", "good"]
    assert rob["latency_worst_ms"] >= rob["latency_p95_ms"] >= 0 < rob["latency_mean_ms"]
    assert "latency mean" in render_table(doc)
    exact = describe(space_spec(), _objective(TWO), "largest")
    assert [c["contexts"] for c in exact["robust"]["combinations"]] == ["up=good", "up=bad"]
    assert exact["robust"]["deadline_miss"] is None  # no deadline: null, not NaN, in JSON
    json.loads(json.dumps(exact, allow_nan=False))


@pytest.mark.parametrize("name", ["edge-cloud-4g-static", "edge-cloud-wifi-fast", "jmsnas-chain-fluctuating"])
def test_varying_presets_load_and_replay(name: str) -> None:
    system = build_system(load_objective(name))
    space_name = "mbconv-jmsnas" if name.startswith("jmsnas") else "vgg11-compress"
    space = SearchSpace(load_space(space_name), system)
    net = space.network(space.sample(random.Random(0)))
    m = latency_distribution(net, system, samples=300).summary(None)
    assert m["latency_worst_ms"] >= m["latency_p95_ms"] >= evaluate(net, system).latency_ms * 0.2


def test_baselines_run_on_a_discrete_context_objective() -> None:
    """Baselines placed on other systems (one device alone, the input's path) score their robust
    metrics on those systems, not on the study's (whose cut count they do not have)."""
    from nasopt.study.baselines import fixed_network_baselines

    objective = _objective(TWO, objectives=[{"name": "latency_mean_ms", "direction": "minimize"}])
    study = StudySpec(name="s", space="x", objective="two-context", accuracy={"estimator": "analytic-proxy"})
    obj = NasObjective(study, space_spec(), objective)
    points, _ = fixed_network_baselines(obj, obj.space.largest(), (0.5, 1.0))
    by_name = {p.baseline: p for p in points}
    assert {"all-on-first", "all-on-last", "neurosurgeon", "dynamic-surgery"} <= set(by_name)
    alone = by_name["all-on-first"].fields
    assert alone["latency_ms"] > 0  # one device alone: no link, the latency is every context's


def test_robust_thresholds_are_hard_constraints_for_nasopt_samplers() -> None:
    from nasopt.study.feasibility import hard_constraint_check

    objective = _objective(TWO, constraints={"latency_worst_ms": 1e9, "memory": False})
    study = StudySpec(name="s", space="x", objective="two-context", accuracy={"estimator": "analytic-proxy"})
    loose = NasObjective(study, space_spec(), objective)
    check = hard_constraint_check(loose)
    assert check is not None
    params = loose.space.values(loose.space.largest())
    assert check(params)
    worst = loose.evaluate(loose.space.largest()).metrics["latency_worst_ms"]
    tight = NasObjective(
        study, space_spec(), _objective(TWO, constraints={"latency_worst_ms": 0.5 * worst, "memory": False})
    )
    check = hard_constraint_check(tight)
    assert check is not None and not check(params)
