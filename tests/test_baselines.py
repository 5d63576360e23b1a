"""Baselines: each one against a computation made independently of it, their storage with the
study, and `nasopt baselines` / `pareto --with-baselines` / the report on every shipped objective."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from nasopt.cli import main
from nasopt.core.evaluation import evaluate
from nasopt.core.macro import fuse_domain, split_point_domain
from nasopt.core.network import build_network
from nasopt.core.split import optimal_split
from nasopt.core.system import System
from nasopt.presets import load_objective, load_space
from nasopt.spec import ObjectiveSpec, ResolvedStudy, SamplerSpec, SearchSpaceSpec, StudySpec, parse_spec
from nasopt.study.baselines import (
    BaselineSet,
    compute_baselines,
    fixed_network_baselines,
    load_baselines,
    nas_then_split,
    reference_candidate,
    store_baselines,
)
from nasopt.study.lifecycle import create_or_resume
from nasopt.study.objective import NasObjective
from nasopt.study.storage import open_storage
from tests.conftest import SMALL_SPACE

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _chain_objective(rates: list[float], bandwidths: list[float], caps: list[int | None]) -> ObjectiveSpec:
    devices: dict[str, Any] = {}
    for i, (rate, cap) in enumerate(zip(rates, caps, strict=True)):
        devices[f"d{i}"] = {"compute": {"kind": "throughput", "macs_per_s": rate}}
        if cap is not None:
            devices[f"d{i}"]["memory_bytes"] = cap
    links = {
        f"l{i}": {"src": f"d{i}", "dst": f"d{i + 1}", "bandwidth_bps": bw} for i, bw in enumerate(bandwidths)
    }
    data = {
        "name": "chain3",
        "devices": devices,
        "links": links,
        "topology": {"kind": "chain", "devices": list(devices)},
    }
    return parse_spec(ObjectiveSpec, data, "test")


def _resolved(space: SearchSpaceSpec, objective: ObjectiveSpec, n_trials: int = 6) -> ResolvedStudy:
    study = StudySpec(
        name=f"b-{objective.name}",
        space=space.name,
        objective=objective.name,
        sampler=SamplerSpec(name="random", seed=0),
        n_trials=n_trials,
        accuracy={"estimator": "analytic-proxy"},
    )
    return ResolvedStudy(study, space, objective)


def _objective(resolved: ResolvedStudy) -> NasObjective:
    return NasObjective(resolved.study, resolved.space, resolved.objective)


def _small_space() -> SearchSpaceSpec:
    return parse_spec(SearchSpaceSpec, SMALL_SPACE, "small")


def _by(points: list[Any], name: str) -> list[Any]:
    return [p for p in points if p.baseline == name]


def _brute_force_latency_ms(objective: NasObjective, cand: Any, system: System) -> float:
    """Least latency over every sorted tuple of split points within every cap (inf: none)."""
    best = math.inf
    domain = split_point_domain(objective.space.macro)
    for cuts in itertools.combinations_with_replacement(domain, len(system.chain) - 1):
        ev = evaluate(build_network(objective.space.macro, replace(cand, cuts=cuts)), system)
        if not ev.memory_violations():
            best = min(best, ev.latency_ms)
    return best


# ------------------------------------------------------------------ the fixed network


def test_proxy_accuracy_is_not_lowered_by_a_cut_after_the_last_layer():
    """A cut after the classifier sends nothing; it used to score as a zero-bit bottleneck."""
    obj = _objective(_resolved(_small_space(), _chain_objective([1e9, 1e10], [1e7], [None, None])))
    cand = replace(obj.space.largest(), bottleneck_width=0)
    last = len(obj.space.macro.layers) - 1
    alone = obj.evaluate(replace(cand, cuts=(last,)))
    sent = obj.evaluate(replace(cand, cuts=(-1,)))
    assert alone.accuracy == pytest.approx(sent.accuracy) == pytest.approx(obj.estimator.ceiling)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_network_baselines_on_a_chain_match_hand_computations(seed: int):
    rng = random.Random(seed)
    rates = [rng.uniform(1e8, 1e11) for _ in range(3)]
    bandwidths = [rng.uniform(1e5, 1e9) for _ in range(2)]
    caps = [rng.choice([None, 20_000, 60_000]), None, None]
    obj = _objective(_resolved(_small_space(), _chain_objective(rates, bandwidths, caps)))
    cand = replace(obj.space.sample(rng), bottleneck_width=0)
    points, skipped = fixed_network_baselines(obj, cand, (0.1, 1.0, 10.0))
    assert not skipped
    net = build_network(obj.space.macro, replace(cand, cuts=()))
    (first,) = _by(points, "all-on-first")
    hand = sum(layer.macs for layer in net.layers) / rates[0] * 1e3  # throughput model: MACs / rate
    assert first.fields["latency_ms"] == pytest.approx(hand, rel=1e-9)
    assert not [k for k in first.fields if k.startswith("sent_bytes:")]  # one device sends nothing
    (last,) = _by(points, "all-on-last")
    in_bytes = 3 * 16 * 16 * 8 / 8  # the input at input_bits = 8, relayed over both links
    hand = sum(layer.macs for layer in net.layers) / rates[2] * 1e3
    hand += sum(8 * in_bytes / bw for bw in bandwidths) * 1e3
    assert last.fields["latency_ms"] == pytest.approx(hand, rel=1e-9)
    (surgery,) = _by(points, "neurosurgeon")
    best = _brute_force_latency_ms(obj, cand, obj.system)
    if math.isinf(best):
        assert not surgery.feasible
    else:
        assert surgery.feasible
        assert surgery.fields["latency_ms"] == pytest.approx(best, rel=1e-9)
        for p in (first, last):
            if p.feasible:
                assert surgery.fields["latency_ms"] <= p.fields["latency_ms"] * (1 + 1e-12)


def test_dynamic_surgery_re_chooses_the_cut_per_bandwidth():
    obj = _objective(_resolved(_small_space(), _chain_objective([2e9, 2e11], [2e6], [None, None])))
    cand = replace(obj.space.largest(), bottleneck_width=0)
    scales = (0.001, 0.01, 1.0, 100.0)
    points = _by(fixed_network_baselines(obj, cand, scales)[0], "dynamic-surgery")
    assert [p.bandwidth_scale for p in points] == list(scales)
    from nasopt.core.baseline_systems import scaled_bandwidth_system

    for p in points:
        system = scaled_bandwidth_system(obj.system, p.bandwidth_scale)
        assert p.bandwidth_bps == pytest.approx(2e6 * p.bandwidth_scale)
        assert p.fields["latency_ms"] == pytest.approx(_brute_force_latency_ms(obj, cand, system), rel=1e-9)
        assert p.nominal == (p.bandwidth_scale == 1.0)
    latencies = [p.fields["latency_ms"] for p in points]
    assert latencies == sorted(latencies, reverse=True)  # more bandwidth never hurts the optimum
    cuts = [p.candidate["cuts"][0] for p in points]
    assert cuts[0] > cuts[-1]  # slow link: compute more on d0; fast link: send early
    (surgery,) = _by(fixed_network_baselines(obj, cand, ())[0], "neurosurgeon")
    assert points[2].fields["latency_ms"] == pytest.approx(surgery.fields["latency_ms"])


def _fixture_space(name: str) -> SearchSpaceSpec:
    return load_space(str(FIXTURES / f"{name}.toml"))


def test_fixed_network_baselines_on_a_mesh():
    obj = _objective(_resolved(_fixture_space("mesh_space"), load_objective(str(FIXTURES / "mesh_obj.toml"))))
    cand = replace(obj.space.largest(), bottleneck_width=0)
    points, skipped = fixed_network_baselines(obj, cand, ())
    assert not skipped
    net = build_network(obj.space.macro, replace(cand, cuts=()))
    macs = sum(layer.macs for layer in net.layers)
    (first,) = _by(points, "all-on-first")
    assert first.label == "all on ue"
    assert first.fields["latency_ms"] == pytest.approx(macs / 1e9 * 1e3, rel=1e-9)
    assert first.feasible == (first.fields["memory_bytes:ue"] <= 1_000_000)  # the UE's cap
    (last,) = _by(points, "all-on-last")
    in_bytes = 3 * 32 * 32 * 8 / 8
    hand = macs / 1e12 + sum(8 * in_bytes / bw for bw in (25e6, 50e6, 200e6))
    assert last.label == "all on cloud"
    assert last.fields["latency_ms"] == pytest.approx(hand * 1e3, rel=1e-9)
    (surgery,) = _by(points, "neurosurgeon")
    split = optimal_split(obj.space.macro, cand, obj.system)
    assert surgery.candidate["cuts"] == list(split.cuts)
    assert surgery.fields["latency_ms"] == pytest.approx(split.latency_ms)


@pytest.mark.parametrize("fuse", [None, 1, 2, 5])
def test_tree_all_on_sensors_and_all_on_aggregator_match_hand_computations(fuse: int | None):
    """Four sensors (125 GMAC/s) on a 1.2 Gb/s shared bus (0.3 Gb/s each) to one 1.25 TMAC/s
    aggregator (tests/fixtures/tree_obj.toml): the two ends of a fixed multi-view network."""
    obj = _objective(_resolved(_fixture_space("mv_space"), load_objective(str(FIXTURES / "tree_obj.toml"))))
    cand = reference_candidate(obj, "largest")
    if fuse is not None:
        cand = replace(cand, fuse_after=fuse, cuts=(fuse,))
    f = cand.fuse_after
    assert f is not None
    points, skipped = fixed_network_baselines(obj, cand, (1.0,))
    assert "all-on-first" not in skipped and "all-on-last" not in skipped
    net = build_network(obj.space.macro, cand)
    head = sum(layer.macs for layer in net.layers[: f + 1])  # per view
    tail = sum(layer.macs for layer in net.layers[f + 1 :])  # once, on the fused views
    (sensors,) = _by(points, "all-on-first")
    feature_bytes = net.layers[f].out_elems * 8 / 8  # 8-bit features (bits = [8])
    hand_s = head / 125e9 + 8 * feature_bytes / 0.3e9 + tail / 1.25e12
    assert sensors.fields["latency_ms"] == pytest.approx(hand_s * 1e3, rel=1e-9)
    assert sensors.candidate["cuts"] == [f] and sensors.candidate["fuse_after"] == f
    for i in range(4):
        assert sensors.fields[f"compute_ms:sensor{i}"] == pytest.approx(head / 125e9 * 1e3, rel=1e-9)
    (agg,) = _by(points, "all-on-last")
    raw_bytes = 3 * 32 * 32 * 8 / 8  # each raw 3x32x32 view at input_bits = 8
    hand_s = 8 * raw_bytes / 0.3e9 + (4 * head + tail) / 1.25e12  # the root runs every view's head
    assert agg.fields["latency_ms"] == pytest.approx(hand_s * 1e3, rel=1e-9)
    assert agg.candidate["cuts"] == [-1] and agg.candidate["fuse_after"] == f
    assert not any(k.startswith("compute_ms:sensor") and v for k, v in agg.fields.items())
    # brute force over the fusion points: Neurosurgeon is no slower than a feasible end
    (surgery,) = _by(points, "neurosurgeon")
    for p in (sensors, agg):
        if p.feasible:
            assert surgery.fields["latency_ms"] <= p.fields["latency_ms"] * (1 + 1e-12)


def test_tree_ends_under_a_sensor_memory_cap():
    """A sensor cap below the per-view head's peak makes all-on-sensors infeasible and leaves
    all-on-aggregator (the sensors only buffer their raw view) within it."""
    spec = load_objective(str(FIXTURES / "tree_obj.toml"))
    sensor = spec.devices["sensor"].model_copy(update={"memory_bytes": 20_000})
    spec = spec.model_copy(update={"devices": {**spec.devices, "sensor": sensor}})
    obj = _objective(_resolved(_fixture_space("mv_space"), spec))
    points, _ = fixed_network_baselines(obj, reference_candidate(obj, "largest"), ())
    (sensors,) = _by(points, "all-on-first")
    (agg,) = _by(points, "all-on-last")
    assert sensors.fields["memory_bytes:sensor0"] > 20_000 and not sensors.feasible
    assert agg.fields["memory_bytes:sensor0"] == 3 * 32 * 32 and agg.feasible


def test_fixed_network_baselines_on_a_tree_choose_the_fusion_point():
    obj = _objective(_resolved(_fixture_space("mv_space"), load_objective(str(FIXTURES / "tree_obj.toml"))))
    cand = replace(obj.space.largest(), bottleneck_width=0)
    points, skipped = fixed_network_baselines(obj, cand, (0.5, 1.0))
    assert not skipped
    (surgery,) = _by(points, "neurosurgeon")
    assert surgery.fields["latency_ms"] == pytest.approx(_tree_brute_force_ms(obj, cand))


def _tree_brute_force_ms(obj: NasObjective, cand: Any) -> float:
    """Least latency within every cap over every fusion point, split there or all on the root."""
    latencies = []
    for f in fuse_domain(obj.space.macro):
        for cuts in ((f,), (-1,)):
            ev = evaluate(build_network(obj.space.macro, replace(cand, fuse_after=f, cuts=cuts)), obj.system)
            if not ev.memory_violations():
                latencies.append(ev.latency_ms)
    return min(latencies)


@pytest.mark.parametrize("cap", [2_000_000, 20_000, 4_000])
def test_tree_neurosurgeon_also_weighs_all_on_the_aggregator(cap: int):
    """Under a tight sensor cap (or a slow bus) sending the raw views can be the fastest
    placement; Neurosurgeon on a tree must find it like a brute force does."""
    spec = load_objective(str(FIXTURES / "tree_obj.toml"))
    sensor = spec.devices["sensor"].model_copy(update={"memory_bytes": cap})
    spec = spec.model_copy(update={"devices": {**spec.devices, "sensor": sensor}})
    obj = _objective(_resolved(_fixture_space("mv_space"), spec))
    cand = reference_candidate(obj, "largest")
    points, _ = fixed_network_baselines(obj, cand, ())
    (surgery,) = _by(points, "neurosurgeon")
    assert surgery.feasible
    assert surgery.fields["latency_ms"] == pytest.approx(_tree_brute_force_ms(obj, cand))
    if cap == 4_000:  # a sensor can only buffer its raw 3,072-byte view: all on the aggregator
        assert surgery.candidate["cuts"] == [-1] and "all on agg" in surgery.label
    for p in _by(points, "all-on-first") + _by(points, "all-on-last"):
        if p.feasible:
            assert surgery.fields["latency_ms"] <= p.fields["latency_ms"] * (1 + 1e-12)


def test_nas_then_split_searches_one_device_then_places_its_front():
    resolved = _resolved(_small_space(), _chain_objective([1e9, 1e11], [5e6], [40_000, None]), n_trials=8)
    obj = _objective(resolved)
    points = nas_then_split(resolved, obj, n_trials=8)
    assert points
    for p in points:
        assert p.baseline == "nas-then-split"
        assert p.candidate["bottleneck_width"] == 0
        cand = replace(reference_candidate(obj, "largest"), ops=tuple(p.candidate["ops"]))
        cand = replace(cand, widths=tuple(p.candidate["widths"]), bits=p.candidate["bits"])
        split = optimal_split(obj.space.macro, cand, obj.system)
        assert p.candidate["cuts"] == list(split.cuts)
        assert p.fields["latency_ms"] == pytest.approx(split.latency_ms)
        assert p.feasible == split.feasible
    # the baseline's own front: no point dominated by another of its kind (an infeasible point
    # may dominate a feasible one; both are kept)
    for a in points:
        for b in points:
            if a.feasible and not b.feasible:
                continue
            better_or_equal = (
                b.values["error"] <= a.values["error"] and b.values["latency_ms"] <= a.values["latency_ms"]
            )
            assert a is b or not (better_or_equal and b.values != a.values)
    # one point per distinct network of the search's front
    assert len({tuple(p.candidate["ops"]) + tuple(p.candidate["widths"]) for p in points}) == len(points)


@pytest.mark.parametrize("placement", [["sensors"], ["sensors", "aggregator"]])
def test_nas_then_split_on_a_tree_searches_the_aggregator_alone_then_places_at_the_fusion(
    placement: list[str],
):
    """Multi-view NAS-then-split: stage 1 runs every view on the aggregator with no cap (the
    fusion point searched as architecture); each front network then keeps its fusion point and
    takes the least-latency feasible option of the space's `fusion.placement`, by brute force."""
    space = _fixture_space("mv_space")
    space = space.model_copy(update={"fusion": space.fusion.model_copy(update={"placement": placement})})
    spec = load_objective(str(FIXTURES / "tree_obj.toml"))
    sensor = spec.devices["sensor"].model_copy(update={"memory_bytes": 20_000})
    spec = spec.model_copy(update={"devices": {**spec.devices, "sensor": sensor}})
    resolved = _resolved(space, spec, n_trials=10)
    obj = _objective(resolved)
    points = nas_then_split(resolved, obj, n_trials=10)
    assert points and {p.baseline for p in points} == {"nas-then-split"}
    for p in points:
        cand = replace(reference_candidate(obj, "largest"), ops=tuple(p.candidate["ops"]))
        cand = replace(cand, widths=tuple(p.candidate["widths"]), fuse_after=p.candidate["fuse_after"])
        f = cand.fuse_after
        options = []
        for cuts in [(f,)] + ([(-1,)] if "aggregator" in placement else []):
            ev = evaluate(build_network(obj.space.macro, replace(cand, cuts=cuts)), obj.system)
            options.append((bool(ev.memory_violations()), ev.latency_ms, list(cuts)))
        best = min(options)
        assert p.candidate["cuts"] == best[2]
        assert p.fields["latency_ms"] == pytest.approx(best[1])
        assert p.feasible == (not best[0])
        assert p.candidate["bottleneck_width"] == 0
    if placement == ["sensors"]:  # the per-view head exceeds a 20 kB sensor: nothing fits
        assert not any(p.feasible for p in points)
    else:
        assert all(p.candidate["cuts"] == [-1] and p.feasible for p in points)
    with pytest.raises(Exception, match="--nas-device"):
        nas_then_split(resolved, obj, n_trials=2, device="sensor0")


def test_nas_then_split_keeps_networks_that_violate_a_threshold():
    """Under an unreachable latency threshold every placed network is infeasible; the baseline's
    front is then still there (and says so), as NASC counts its baseline's violating models."""
    spec = _chain_objective([1e9, 1e11], [5e6], [None, None])
    spec = spec.model_copy(update={"constraints": spec.constraints.model_copy(update={"latency_ms": 1e-6})})
    resolved = _resolved(_small_space(), spec, n_trials=8)
    points = nas_then_split(resolved, _objective(resolved), n_trials=8)
    assert points and not any(p.feasible for p in points)
    assert all(p.fields["violation:latency_ms"] > 0 for p in points)


def test_reference_candidate_forms_and_bad_input():
    resolved = _resolved(_small_space(), _chain_objective([1e9, 1e11], [5e6], [None, None]))
    obj = _objective(resolved)
    largest = reference_candidate(obj, "largest")
    assert largest.bottleneck_width == 0
    assert reference_candidate(obj, json.dumps(largest.to_dict())) == replace(largest, cuts=largest.cuts)
    assert reference_candidate(obj, json.dumps({**largest.to_dict(), "cuts": []})).cuts == ()
    with pytest.raises(Exception, match="--reference"):
        reference_candidate(obj, "biggest")
    with pytest.raises(Exception, match="--reference"):
        reference_candidate(obj, "trial:99")


# ------------------------------------------------------------------ storage and CLI


def _run_study(resolved: ResolvedStudy, url: str, n: int = 4) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_or_resume(resolved, open_storage(url))
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    study.optimize(_objective(resolved), n_trials=n)
    return study


def test_baselines_are_stored_with_the_study_and_read_back(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    resolved = _resolved(_small_space(), _chain_objective([1e9, 1e11], [5e6], [40_000, None]))
    study = _run_study(resolved, url)
    made = compute_baselines(study, resolved, nas_trials=4, bandwidth_scales=(0.5, 1.0))
    store_baselines(study, made)
    again = load_baselines(optuna.load_study(study_name=study.study_name, storage=open_storage(url)))
    assert isinstance(again, BaselineSet)
    assert again.to_json() == made.to_json()
    names = {p.baseline for p in again.points}
    assert names == {"all-on-first", "all-on-last", "neurosurgeon", "dynamic-surgery", "nas-then-split"}


@functools.cache
def _shipped_pairs() -> list[tuple[str, str]]:
    """Every shipped objective with the smallest shipped space that runs on it."""
    from tests.test_properties import _lookup_mismatch, fits

    spaces = {p.stem: load_space(str(p)) for p in sorted((ROOT / "search_spaces").glob("*.toml"))}

    def size(spec: SearchSpaceSpec) -> int:
        from nasopt.space import SearchSpace

        space = SearchSpace(spec)
        return (
            build_network(space.macro, replace(space.largest(), cuts=())).macs if spec.fusion is None else 0
        )

    out = []
    for path in sorted((ROOT / "objectives").glob("*.toml")):
        from nasopt.core.system import build_system

        system = build_system(load_objective(str(path)))
        ok = [n for n, s in spaces.items() if fits(s, system) and not _lookup_mismatch(s, system)]
        assert ok, f"no shipped space runs on {path.stem}"
        out.append((path.stem, min(ok, key=lambda n: (size(spaces[n]), n))))
    return out


@pytest.mark.parametrize("pair", _shipped_pairs(), ids=lambda p: p[0])
def test_nasopt_baselines_runs_on_every_shipped_objective(pair, tmp_path: Path, capsys):
    objective_name, space_name = pair
    url = f"sqlite:///{tmp_path / 'b.db'}"
    resolved = _resolved(load_space(space_name), load_objective(objective_name), n_trials=3)
    study = _run_study(resolved, url, n=3)
    args = [
        "baselines",
        study.study_name,
        "--storage",
        url,
        "--nas-trials",
        "3",
        "--bandwidth-scales",
        "0.5,1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Baselines of {study.study_name} (computed and stored" in out
    assert "neurosurgeon" in out and "dynamic-surgery" in out
    kind = _objective(resolved).system.kind
    assert "all-on-first" in out and "all-on-last" in out
    if kind == "tree":
        assert "all on sensors" in out and "raw views sent" in out
    assert "nas-then-split" in out and "nas-then-split: not applicable here" not in out
    assert main(args) == 0  # the second time reads what was stored
    assert "--recompute to rebuild" in capsys.readouterr().out
    assert main(["pareto", "--study-name", study.study_name, "--storage", url, "--with-baselines"]) == 0
    pareto = capsys.readouterr().out
    assert "neurosurgeon" in pareto and "x0.5 bandwidth" not in pareto  # other systems left out


def test_baselines_cli_bad_input_exits_2(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    resolved = _resolved(_small_space(), _chain_objective([1e9, 1e11], [5e6], [None, None]))
    study = _run_study(resolved, url, n=2)
    assert main(["baselines", "nope", "--storage", url]) == 2
    assert "unknown study" in capsys.readouterr().err
    assert main(["baselines", study.study_name, "--storage", url, "--bandwidth-scales", "0,1"]) == 2
    assert "--bandwidth-scales" in capsys.readouterr().err
    assert main(["baselines", study.study_name, "--storage", url, "--reference", "huge"]) == 2
    assert "--reference" in capsys.readouterr().err
    assert main(["pareto", "--study-name", study.study_name, "--storage", url, "--with-baselines"]) == 0
    assert "no baselines stored" in capsys.readouterr().err
    args = ["baselines", study.study_name, "--storage", url, "--no-nas-then-split", "--format", "json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["baseline"] for r in rows} == {"all-on-first", "all-on-last", "neurosurgeon", "dynamic-surgery"}
    assert all(not r["arch"].endswith("...") for r in rows)  # machine formats keep the whole arch
    surgery_bps = [r["bandwidth_bps"] for r in rows if r["baseline"] == "dynamic-surgery"]
    assert surgery_bps == pytest.approx([0.5e6, 1.5e6, 5e6, 1.5e7, 5e7])  # 5 Mb/s x default scales


def test_report_marks_the_baselines_on_the_pareto_figure(tmp_path: Path):
    from nasopt.views.figures import build
    from nasopt.views.report import report_html

    url = f"sqlite:///{tmp_path / 'b.db'}"
    resolved = _resolved(_small_space(), _chain_objective([1e9, 1e11], [5e6], [None, None]))
    study = _run_study(resolved, url, n=4)
    storage = open_storage(url)
    figures, _, _ = build(storage, study.study_name)
    pareto = next(f for f in figures if f.kind == "pareto")
    assert not [t for t in pareto.figure.data if t.name.startswith("baseline:")]
    store_baselines(study, compute_baselines(study, resolved, nas_trials=3, bandwidth_scales=(0.5, 1.0)))
    figures, _, _ = build(storage, study.study_name)
    pareto = next(f for f in figures if f.kind == "pareto")
    marked = {t.name: t for t in pareto.figure.data if t.name.startswith("baseline:")}
    assert set(marked) == {
        "baseline: all-on-first",
        "baseline: all-on-last",
        "baseline: neurosurgeon",
        "baseline: nas-then-split",
    }
    stored = load_baselines(study)
    assert stored is not None
    (surgery,) = [p for p in stored.points if p.baseline == "neurosurgeon"]
    trace = marked["baseline: neurosurgeon"]
    # the default view: accuracy vs latency
    assert list(trace.x) == [surgery.fields["latency_ms"]]
    assert list(trace.y) == [surgery.fields["accuracy"]]
    sweep = next(f for f in figures if f.kind == "threshold_sweep")
    lines = {t.name: t for t in sweep.figure.data if t.name.startswith("baseline:")}
    assert "baseline: neurosurgeon" in lines and "baseline: dynamic-surgery" not in lines
    line = lines["baseline: neurosurgeon"]
    for x, y in zip(line.x, line.y, strict=True):  # the point counts from its latency on
        assert y == (surgery.fields["accuracy"] if x >= surgery.fields["latency_ms"] else None)
    page = report_html(storage, study.study_name)
    assert "<h2>Baselines</h2>" in page and "optimal cut@" in page


def test_nasopt_baselines_on_a_supernet_study_uses_its_checkpoint(tmp_path: Path):
    """The baselines are scored by the study's own trained supernet (same estimator), the
    NAS-then-split candidates (no cut) included."""
    from tests.services import check_ok, nasopt, write_tiny_study

    accuracy = 'estimator = "supernet"\nepochs = 1\nlimit = 240\nbatch_size = 16\ncalibration_batches = 1'
    write_tiny_study(tmp_path, n_trials=3, accuracy=accuracy)
    url = f"sqlite:///{tmp_path / 's.db'}"
    check_ok(nasopt("run", "study.toml", "--storage", url, "--no-progress", cwd=tmp_path, timeout_s=300))
    out = check_ok(
        nasopt("baselines", "tiny", "--storage", url, "--nas-trials", "3", cwd=tmp_path, timeout_s=300)
    )
    assert "accuracy: supernet" in out.stdout
    assert "supernet: reusing" in out.stderr  # the run's checkpoint, not a new training
    stored = load_baselines(optuna.load_study(study_name="tiny", storage=url))
    assert stored is not None
    assert {p.fields["accuracy_estimator"] for p in stored.points} == {"supernet"}
    assert {"nas-then-split", "neurosurgeon"} <= {p.baseline for p in stored.points}


# ------------------------------------------------------------------ benchmarks/evidence.py


def _evidence() -> Any:
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("evidence")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_evidence_rerun_of_some_sections_keeps_the_others():
    ev = _evidence()
    old = "# Evidence\n\nheader\n\n<!-- nasc: 1 s -->\n## nasc\n\nold nasc\n\n"
    old += "<!-- wang: 2 s -->\n## wang\n\nkept\n"
    new = {
        "nasc": "<!-- nasc: 9 s -->\n## nasc\n\nnew nasc\n",
        "nasc-supernet": "<!-- nasc-supernet: 5 s -->\n## nasc-supernet\n\nsn\n",
    }
    merged = ev.merge_sections(old, new)
    header, sections = ev.split_sections(merged)
    assert header == "# Evidence\n\nheader\n\n"
    assert list(sections) == ["nasc", "nasc-supernet", "wang"]  # inserted in SECTIONS' order
    assert "new nasc" in sections["nasc"] and "old nasc" not in merged
    assert sections["wang"] == "<!-- wang: 2 s -->\n## wang\n\nkept\n"


def test_evidence_nasc_supernet_section_runs_on_a_tiny_budget(tmp_path: Path, monkeypatch):
    """The code path of the nasc-supernet section: 1 epoch on 60 images, 3 trials per search."""
    ev = _evidence()
    monkeypatch.chdir(tmp_path)  # the checkpoint goes to ./.nasopt/checkpoints
    tiny = {**ev.NASC_SUPERNET, "samples": 60, "epochs": 1, "val_samples": 16, "calibration_batches": 1}
    tiny["batch_size"] = 8
    tiny.update({"loss_warmup_epochs": 0, "warmup_epochs": 0})
    monkeypatch.setattr(ev, "NASC_SUPERNET", tiny)
    text = ev.nasc_supernet(3, 0)
    assert "T_th = 7.5 ms" in text and "joint, split = optimal" in text
    assert "Supernet training:" in text and "(trained in this run)" in text
    assert any(v in text for v in ("**Reproduced**", "**Partly reproduced**", "**Not reproduced**"))
    space, objective = ev.nasc_supernet_space(), ev.nasc_supernet_objective()
    assert (space.input.height, space.num_classes) == (16, 10)
    assert objective.constraints.latency_ms == 7.5
