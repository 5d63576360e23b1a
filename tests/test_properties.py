"""Properties of the analytic core, checked with hypothesis on every preset and fixture system.

(a) latency never decreases when one link's (or medium's) bandwidth decreases (chain, mesh, tree);
(b) on a chain whose links are free, latency is the sum of the devices' compute times;
(c) every device's peak memory is at least the bytes of the weights it holds;
(d) every candidate sampled from every preset space, on every objective it fits, is valid (by
    `SearchSpace.sample` and through a small Optuna study);
(e) `SearchSpace.size()` counts exactly the distinct candidates `enumerate()` yields.

Spaces and objectives are globbed from search_spaces/, objectives/ (and studies/ when present)
plus tests/fixtures/; a space with [fusion] or a parallel stage that no objective fits gets a
synthetic tree or mesh objective with the right number of leaves or branches.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.macro import compile_space, split_point_domain
from nasopt.core.network import build_network
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.presets import load_objective, load_space, load_study
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# no shrinking: candidates come from seeds, which do not shrink usefully, and a failing run
# must stay fast; the falsifying example is printed as found
PROPERTY = settings(
    max_examples=15,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ------------------------------------------------------------------ catalogue


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@functools.cache
def base_space_specs() -> dict[str, SearchSpaceSpec]:
    paths = sorted((ROOT / "search_spaces").glob("*.toml")) + sorted(FIXTURES.glob("*_space.toml"))
    return {_label(p): load_space(str(p)) for p in paths}


def _fixture_data(name: str) -> dict[str, Any]:
    with (FIXTURES / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


@functools.cache
def space_specs() -> dict[str, SearchSpaceSpec]:
    """Preset and fixture spaces, plus a multi-view (or parallel) fixture space re-sized for
    every tree (or mesh) objective that none of them fits."""
    specs = dict(base_space_specs())
    for label, system in systems().items():
        if label.startswith("synthetic/") or any(fits(spec, system) for spec in specs.values()):
            continue
        if system.kind == "tree":
            data = _fixture_data("mv_space")
            data["fusion"]["views"] = len(system.leaves)
            specs[f"synthetic/mv-{len(system.leaves)}"] = parse_spec(SearchSpaceSpec, data, "synthetic")
        elif system.kind == "mesh":
            data = _fixture_data("mesh_space")
            for stage in data["stages"]:
                if stage.get("parallel", 1) > 1:
                    stage["parallel"] = len(system.branches)
            specs[f"synthetic/mesh-{len(system.branches)}"] = parse_spec(SearchSpaceSpec, data, "synthetic")
    return specs


def _tree_data(views: int) -> dict[str, Any]:
    return {
        "name": f"synthetic-tree-{views}",
        "devices": {
            "cam": {"count": views, "compute": {"kind": "throughput", "macs_per_s": 5e10}},
            "agg": {"compute": {"kind": "throughput", "macs_per_s": 1e12}},
        },
        "links": {"up": {"src": "cam", "dst": "agg", "medium": "bus"}},
        "media": {"bus": {"bandwidth_bps": 1e9}},
        "topology": {"kind": "tree", "root": "agg", "leaves": ["cam"]},
    }


def _mesh_data(branches: int) -> dict[str, Any]:
    return {
        "name": f"synthetic-mesh-{branches}",
        "devices": {
            "ue": {"compute": {"kind": "throughput", "macs_per_s": 1e9}},
            "root": {"compute": {"kind": "throughput", "macs_per_s": 1e10}},
            "br": {"count": branches, "compute": {"kind": "throughput", "macs_per_s": 5e10}},
            "agg": {"compute": {"kind": "throughput", "macs_per_s": 2e11}},
            "cloud": {"compute": {"kind": "throughput", "macs_per_s": 1e12}},
        },
        "links": {
            "ue_root": {"src": "ue", "dst": "root", "bandwidth_bps": 25e6, "latency_s": 1e-3},
            "fan_out": {"src": "root", "dst": "br", "bandwidth_bps": 50e6},
            "fan_in": {"src": "br", "dst": "agg", "medium": "air"},
            "up": {"src": "agg", "dst": "cloud", "bandwidth_bps": 200e6},
        },
        "media": {"air": {"bandwidth_bps": 300e6}},
        "topology": {
            "kind": "mesh",
            "before": ["ue"],
            "root": "root",
            "branches": ["br"],
            "after": ["agg", "cloud"],
        },
    }


@functools.cache
def objective_data() -> dict[str, dict[str, Any]]:
    """Raw data of every objective (presets, fixtures, synthetic), to be varied and re-parsed."""
    paths = sorted((ROOT / "objectives").glob("*.toml")) + sorted(FIXTURES.glob("*_obj.toml"))
    out: dict[str, dict[str, Any]] = {}
    for p in paths:
        with p.open("rb") as fh:
            out[_label(p)] = tomllib.load(fh)
    systems = {label: build_system(parse_spec(ObjectiveSpec, d, label)) for label, d in out.items()}
    views = {s.fusion.views for s in base_space_specs().values() if s.fusion is not None}
    leaves = {len(s.leaves) for s in systems.values() if s.kind == "tree"}
    for v in sorted(views - leaves):
        out[f"synthetic/tree-{v}"] = _tree_data(v)
    parallel = set()
    for s in base_space_specs().values():
        macro = compile_space(s)
        p = macro.parallel_stage()
        if p is not None:
            parallel.add(macro.stages[p].parallel)
    branches = {len(s.branches) for s in systems.values() if s.kind == "mesh"}
    for b in sorted(parallel - branches):
        out[f"synthetic/mesh-{b}"] = _mesh_data(b)
    return out


@functools.cache
def objective_specs() -> dict[str, ObjectiveSpec]:
    specs: dict[str, ObjectiveSpec] = {}
    for label, data in objective_data().items():
        if label.startswith("objectives/"):
            specs[label] = load_objective(str(ROOT / f"{label}.toml"))
        else:
            specs[label] = parse_spec(ObjectiveSpec, data, label)
    return specs


@functools.cache
def systems() -> dict[str, System]:
    return {label: build_system(spec) for label, spec in objective_specs().items()}


def fits(spec: SearchSpaceSpec, system: System) -> bool:
    """Whether a space can run on a system: multi-view on a tree with one leaf per view,
    a parallel stage on a chain or on a mesh with one branch device per branch."""
    if spec.fusion is not None:
        return system.kind == "tree" and len(system.leaves) == spec.fusion.views
    if system.kind == "tree":
        return False
    if system.kind == "mesh":
        macro = compile_space(spec)
        p = macro.parallel_stage()
        return p is not None and macro.stages[p].parallel == len(system.branches)
    return True


def _lookup_mismatch(spec: SearchSpaceSpec, system: System) -> bool:
    """A measured table made for another space ('lookup' with fallback 'error') does not fit."""
    strict = any(
        d.compute.spec.kind == "lookup" and d.compute.spec.fallback == "error"
        for d in system.devices.values()
    )
    if not strict:
        return False
    try:
        space = SearchSpace(spec, system)
        for cand in (space.smallest(), space.largest()):
            evaluate(space.network(cand), system)
    except SpecError as exc:
        return bool(exc.field and exc.field.endswith(".table"))
    return False


@functools.cache
def study_pairs() -> tuple[tuple[str, str], ...]:
    """(space, objective) named by the study presets: these must fit."""
    folder = ROOT / "studies"
    pairs = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        study = load_study(str(path))
        space = next((k for k in space_specs() if k.split("/", 1)[1] == Path(study.space).stem), None)
        obj = next((k for k in objective_specs() if k.split("/", 1)[1] == Path(study.objective).stem), None)
        if space is not None and obj is not None:
            pairs.append((space, obj))
    return tuple(pairs)


@functools.cache
def pairs() -> tuple[tuple[str, str], ...]:
    """Every (space, objective) that fits, plus the pairs the studies name."""
    out = list(study_pairs())
    for s_label, spec in space_specs().items():
        for o_label, system in systems().items():
            if (s_label, o_label) in out or not fits(spec, system):
                continue
            if _lookup_mismatch(spec, system):
                continue
            out.append((s_label, o_label))
    return tuple(out)


@functools.cache
def search_space(s_label: str, o_label: str) -> SearchSpace:
    return SearchSpace(space_specs()[s_label], systems()[o_label])


def _richness(o_label: str) -> tuple[int, int]:
    system = systems()[o_label]
    return system.cut_count, len(system.devices)


@functools.cache
def core_pairs() -> tuple[tuple[str, str], ...]:
    """Fewer pairs for the costlier tests, still covering every space on every topology kind it
    fits and every objective: the study pairs, then per space and topology kind the objective
    with the most cuts (most devices), then per objective left over its first space."""
    out = list(study_pairs())
    for s_label in space_specs():
        kinds = {systems()[o].kind for s, o in out if s == s_label}
        best: dict[str, str] = {}
        for s, o in pairs():
            kind = systems()[o].kind
            if s != s_label or kind in kinds:
                continue
            if kind not in best or _richness(o) > _richness(best[kind]):
                best[kind] = o
        out += [(s_label, o) for o in best.values()]
    covered = {o for _, o in out}
    for s, o in pairs():
        if o not in covered:
            out.append((s, o))
            covered.add(o)
    return tuple(out)


PAIRS = [f"{s}@{o}" for s, o in pairs()]
CORE_PAIRS = [f"{s}@{o}" for s, o in core_pairs()]


def _pair(pair_id: str) -> tuple[SearchSpace, System]:
    s_label, o_label = pair_id.split("@")
    return search_space(s_label, o_label), systems()[o_label]


def test_every_space_has_a_system() -> None:
    """Each space (presets and fixtures) pairs with at least one objective, and each
    objective with at least one space, so (c) and (d) cover all of them."""
    spaces_paired = {s for s, _ in pairs()}
    objectives_paired = {o for _, o in pairs()}
    assert set(space_specs()) == spaces_paired
    missing = set(objective_specs()) - objectives_paired
    assert not missing, f"objectives no space fits: {sorted(missing)}"
    assert "search_spaces/mobilenetv2" in spaces_paired
    assert "objectives/splitnets-hmd-4" in objectives_paired
    kinds = {systems()[o].kind for o in objectives_paired}
    assert kinds == {"chain", "mesh", "tree"}


# ------------------------------------------------------------------ (a) bandwidth monotonicity


def _knobs(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every bandwidth that can be varied: ('links', name) or ('media', name)."""
    out = [("links", n) for n, link in data.get("links", {}).items() if "bandwidth_bps" in link]
    return out + [("media", n) for n in data.get("media", {})]


def _with_bandwidth(data: dict[str, Any], knob: tuple[str, str], bandwidth: float) -> System:
    table, name = knob
    changed = {**data, table: {**data[table], name: {**data[table][name], "bandwidth_bps": bandwidth}}}
    return build_system(parse_spec(ObjectiveSpec, changed, "test"))


MONOTONE_OBJECTIVES = sorted(o for o in {o for _, o in pairs()} if _knobs(objective_data()[o]))


def test_monotonicity_covers_every_topology() -> None:
    assert {systems()[o].kind for o in MONOTONE_OBJECTIVES} == {"chain", "mesh", "tree"}


@pytest.mark.parametrize("o_label", MONOTONE_OBJECTIVES)
@PROPERTY
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), base=st.floats(1e4, 1e12), factor=st.floats(1e-4, 1.0))
def test_latency_never_decreases_when_bandwidth_decreases(
    o_label: str, data: st.DataObject, seed: int, base: float, factor: float
) -> None:
    raw = objective_data()[o_label]
    s_label = data.draw(st.sampled_from([s for s, o in pairs() if o == o_label]), label="space")
    knob = data.draw(st.sampled_from(_knobs(raw)), label="knob")
    space = search_space(s_label, o_label)
    network = space.network(space.sample(random.Random(seed)))
    fast = evaluate(network, _with_bandwidth(raw, knob, base))
    slow = evaluate(network, _with_bandwidth(raw, knob, base * factor))
    assert slow.latency_s >= fast.latency_s, (knob, base, factor, fast.latency_s, slow.latency_s)
    assert slow.compute_s == fast.compute_s
    for link, t in fast.transfer_s.items():
        assert slow.transfer_s[link] >= t


# ------------------------------------------------------------------ (b) free links


CHAIN_SPACES = sorted(s for s, spec in space_specs().items() if spec.fusion is None)

compute_models = st.one_of(
    st.builds(lambda r: {"kind": "throughput", "macs_per_s": r}, st.floats(1e7, 1e13)),
    st.builds(
        lambda c1, c3, d, o: {
            "kind": "linear",
            "conv_s_per_mac": {"1": c1, "3": c3},
            "default_s_per_mac": d,
            "overhead_s": o,
        },
        st.floats(1e-13, 1e-8),
        st.floats(1e-13, 1e-8),
        st.floats(1e-13, 1e-8),
        st.floats(0, 1e-4),
    ),
)


@PROPERTY
@given(
    s_label=st.sampled_from(CHAIN_SPACES),
    models=st.lists(compute_models, min_size=1, max_size=4),
    bandwidth=st.sampled_from([1e18]),  # the largest a spec accepts: transfers of at most ~1e-10 s
    seed=st.integers(0, 2**32 - 1),
)
def test_free_chain_latency_is_total_compute(
    s_label: str, models: list[dict[str, Any]], bandwidth: float, seed: int
) -> None:
    n = len(models)
    names = [f"d{i}" for i in range(n)]
    spec = parse_spec(
        ObjectiveSpec,
        {
            "name": "free-chain",
            "devices": {name: {"compute": m} for name, m in zip(names, models, strict=True)},
            "links": {
                f"l{i}": {"src": names[i], "dst": names[i + 1], "bandwidth_bps": bandwidth, "latency_s": 0.0}
                for i in range(n - 1)
            },
            "topology": {"kind": "chain", "devices": names},
        },
        "test",
    )
    system = build_system(spec)
    space = SearchSpace(space_specs()[s_label], system)
    network = space.network(space.sample(random.Random(seed)))
    ev = evaluate(network, system)
    by_layer = sum(
        system.devices[dev].compute.layer_time_s(layer)
        for dev, layer in zip(ev.placement, network.layers, strict=True)
    )
    assert ev.latency_s == pytest.approx(sum(ev.compute_s.values()), rel=1e-9, abs=1e-10)
    assert ev.latency_s == pytest.approx(by_layer, rel=1e-9, abs=1e-10)
    assert all(t == pytest.approx(0.0, abs=1e-10) for t in ev.transfer_s.values())
    # layers run on the chain's devices in order, switching device exactly at the cuts
    order = [names.index(dev) for dev in ev.placement]
    assert order == sorted(order)
    for k, cut in enumerate(network.cut_after):
        assert all(d <= k for d in order[: cut + 1])
        assert all(d > k for d in order[cut + 1 :])
    assert sum(ev.macs.values()) == network.macs


@pytest.mark.parametrize("cut", [-1, 1, 3])
def test_equal_cuts_at_the_bottleneck_run_the_reduce_once(cut: int) -> None:
    """Two equal cuts at the bottleneck: the middle device relays the reduced feature and the
    Conv-Reduce runs once, on the first device (space.py: "equal cuts leave a device empty")."""
    spec = parse_spec(SearchSpaceSpec, {**SMALL_FIXED_SPACE, "bottleneck": {"widths": [2], "bits": [8]}}, "t")
    names = ["d0", "d1", "d2"]
    system = build_system(
        parse_spec(
            ObjectiveSpec,
            {
                "name": "chain3",
                "devices": {d: {"compute": {"kind": "throughput", "macs_per_s": 1e9}} for d in names},
                "links": {
                    "a": {"src": "d0", "dst": "d1", "bandwidth_bps": 1e6},
                    "b": {"src": "d1", "dst": "d2", "bandwidth_bps": 1e6},
                },
                "topology": {"kind": "chain", "devices": names},
            },
            "t",
        )
    )
    space = SearchSpace(spec, system)
    cand = space.candidate({**space.values(space.smallest()), "split.after": cut, "split2.after": cut})
    assert cand.cuts == (cut, cut) and cand.bottleneck_width == 2
    network = space.network(cand)
    ev = evaluate(network, system)
    reduce = next(i for i, layer in enumerate(network.layers) if layer.op_type == "conv_reduce")
    assert ev.placement[reduce] == "d0"
    assert ev.compute_s["d1"] == 0.0
    assert network.sent_elems[1] == network.sent_elems[0] == network.layers[reduce].out_elems
    assert sum(ev.macs.values()) == network.macs
    assert list(network.cut_after) == sorted(network.cut_after)


# ------------------------------------------------------------------ (c) memory and weights


@pytest.mark.parametrize("pair_id", CORE_PAIRS)
@settings(PROPERTY, max_examples=8)
@given(seed=st.integers(0, 2**32 - 1))
def test_peak_memory_holds_the_weights(pair_id: str, seed: int) -> None:
    space, system = _pair(pair_id)
    network = space.network(space.sample(random.Random(seed)))
    ev = evaluate(network, system)
    assert set(ev.weight_bytes) <= set(ev.memory_bytes)
    for dev, weights in ev.weight_bytes.items():
        assert weights >= 0
        assert ev.memory_bytes[dev] >= weights, (dev, ev.memory_bytes[dev], weights)
    if system.kind == "chain":
        # every weight lives on exactly one device (up to per-device rounding to whole bytes)
        total = network.params * network.weight_bits / 8
        assert total - len(system.chain) <= sum(ev.weight_bytes.values()) <= total


# ------------------------------------------------------------------ (d) sampled candidates are valid


def check_candidate(space: SearchSpace, system: System, cand: Candidate) -> Evaluation:
    macro = space.macro
    assert len(cand.ops) == len(macro.layers)
    for layer, op in zip(macro.layers, cand.ops, strict=True):
        assert op in layer.choices, (layer.name, op)
    assert len(cand.widths) == len(macro.stages)
    for stage, width in zip(macro.stages, cand.widths, strict=True):
        assert width in stage.widths, (stage.name, width)
    assert list(cand.cuts) == sorted(cand.cuts)
    values = space.values(cand)
    for p in space.params():
        assert values[p.name] in p.choices, (p.name, values[p.name])
    assert space.candidate(values) == cand
    widths = [0 if w == "none" else w for w in space.spec.bottleneck.widths]
    assert cand.bottleneck_width in widths
    assert cand.bits in space.spec.bottleneck.bits
    if space.spec.fusion is not None:
        assert cand.fuse_after is not None
        # on the sensors the cut is the fusion point; all on the aggregator the raw views are sent
        cuts = {"sensors": (cand.fuse_after,), "aggregator": (-1,)}
        assert cand.cuts in [cuts[p] for p in space.spec.fusion.placement]
    else:
        assert cand.fuse_after is None
        assert len(cand.cuts) == system.cut_count
        domain = set(split_point_domain(macro))
        assert all(c in domain for c in cand.cuts)
        if system.kind == "mesh":
            trunk = cand.cuts[: system.trunk_cuts]
            tail = cand.cuts[system.trunk_cuts :]
            assert list(trunk) == sorted(trunk) and list(tail) == sorted(tail)
            parallel = macro.stages[macro.parallel_stage()].layers
            assert all(c < parallel[0] for c in trunk) and all(c >= parallel[-1] for c in tail)
    network = build_network(macro, cand)
    assert list(network.cut_after) == sorted(network.cut_after), (cand.cuts, network.cut_after)
    ev = evaluate(network, system)
    assert math.isfinite(ev.latency_s) and ev.latency_s >= 0
    assert all(dev in system.devices for dev in ev.placement)
    if system.kind in ("chain", "tree"):  # tree: every view's per-view layers run once, somewhere
        assert sum(ev.macs.values()) == network.macs, "a layer ran on two devices (or none)"
    return ev


@pytest.mark.parametrize("pair_id", PAIRS)
@settings(PROPERTY, max_examples=6)
@given(seed=st.integers(0, 2**32 - 1))
def test_sampled_candidates_are_valid(pair_id: str, seed: int) -> None:
    space, system = _pair(pair_id)
    check_candidate(space, system, space.sample(random.Random(seed)))


@pytest.mark.parametrize("pair_id", CORE_PAIRS)
def test_extreme_candidates_are_valid(pair_id: str) -> None:
    space, system = _pair(pair_id)
    smallest = check_candidate(space, system, space.smallest())
    largest = check_candidate(space, system, space.largest())
    assert sum(smallest.macs.values()) <= sum(largest.macs.values())


@pytest.mark.parametrize("pair_id", CORE_PAIRS)
def test_optuna_random_study_has_no_failures(pair_id: str) -> None:
    space, system = _pair(pair_id)

    def objective(trial: optuna.trial.Trial) -> float:
        cand = space.suggest(trial)
        assert space.candidate(trial.params) == cand
        assert set(trial.params) == {p.name for p in space.params()}
        return check_candidate(space, system, cand).latency_s

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(objective, n_trials=10, catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 10


# ------------------------------------------------------------------ (e) size and enumerate


@dataclass
class SmallSpace:
    spec: SearchSpaceSpec
    cuts: int


OPS = ["conv3", "conv1", "skip", "k3"]


@st.composite
def small_spaces(draw: st.DrawFn) -> SmallSpace:
    """A small random space: a few searched layers and widths, optional fusion, few cuts."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        choices = draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3, unique=True))
        layer: dict[str, Any] = {"op": choices[0]} if len(choices) == 1 else {"choices": choices}
        layer["repeat"] = draw(st.integers(1, 2))
        layers.append(layer)
    widths = draw(st.lists(st.sampled_from([4, 8, 12]), min_size=1, max_size=2, unique=True))
    n_layers = 1 + sum(layer["repeat"] for layer in layers) + 2  # stem, body, gap + classifier
    data: dict[str, Any] = {
        "name": "small",
        "input": {"channels": 3, "height": 8, "width": 8},
        "num_classes": 5,
        "ops": {"k3": {"type": "mbconv", "kernel": 3, "expansion": 2}},
        "stages": [
            {"name": "stem", "widths": [8], "layers": [{"op": "conv3", "stride": 2}]},
            {"name": "body", "widths": widths, "layers": layers},
            {"name": "head", "widths": [4], "layers": [{"op": "gap"}, {"op": "classifier"}]},
        ],
        "bottleneck": {
            "widths": draw(st.lists(st.sampled_from(["none", 2, 4]), min_size=1, max_size=2, unique=True)),
            "bits": draw(st.lists(st.sampled_from([4, 8, 32]), min_size=1, max_size=2, unique=True)),
        },
    }
    if draw(st.booleans()):
        points = draw(st.lists(st.integers(-1, n_layers - 1), min_size=1, max_size=4, unique=True))
        data["split"] = {"points": sorted(points)}
    if draw(st.booleans()):
        data["fusion"] = {"views": draw(st.integers(2, 3))}
        if draw(st.booleans()):
            fuse = draw(st.lists(st.integers(0, n_layers - 2), min_size=1, max_size=3, unique=True))
            data["fusion"]["points"] = sorted(fuse)
    return SmallSpace(parse_spec(SearchSpaceSpec, data, "small"), draw(st.integers(0, 3)))


def _check_enumeration(space: SearchSpace, system: System | None) -> None:
    n = space.size()
    everything = list(space.enumerate())
    assert len(everything) == n
    distinct = set(everything)
    assert len(distinct) == n, "enumerate() yielded a candidate twice"
    step = max(1, n // 500)  # build and evaluate about 500 of them
    for i, cand in enumerate(everything):
        assert space.candidate(space.values(cand)) == cand
        if i % step == 0:
            network = space.network(cand)
            if system is not None:
                evaluate(network, system)
    rng = random.Random(n)
    for _ in range(20):
        assert space.sample(rng) in distinct


@PROPERTY
@given(small=small_spaces())
def test_size_counts_enumerate(small: SmallSpace) -> None:
    space = SearchSpace(small.spec, cuts=small.cuts)
    assume(space.size() <= 3000)
    _check_enumeration(space, None)


SMALL_FIXED_SPACE = {
    "name": "small-fixed",
    "input": {"channels": 3, "height": 8, "width": 8},
    "num_classes": 5,
    "stages": [
        {"name": "stem", "widths": [8], "layers": [{"op": "conv3", "stride": 2}]},
        {"name": "body", "widths": [4, 8], "layers": [{"choices": ["conv3", "skip"], "repeat": 2}]},
        {"name": "head", "widths": [4], "layers": [{"op": "gap"}, {"op": "classifier"}]},
    ],
    "bottleneck": {"widths": ["none", 2], "bits": [8, 32]},
}


@pytest.mark.parametrize("n_devices", [1, 2, 3, 4])
def test_size_counts_enumerate_on_a_chain(n_devices: int) -> None:
    """2 ops x 2 ops x 2 widths x C(6 + k - 1, k) cut multisets x 2 bottlenecks x 2 bit widths."""
    names = [f"d{i}" for i in range(n_devices)]
    system = build_system(
        parse_spec(
            ObjectiveSpec,
            {
                "name": "chain",
                "devices": {d: {"compute": {"kind": "throughput", "macs_per_s": 1e9}} for d in names},
                "links": {
                    f"l{i}": {"src": a, "dst": b, "bandwidth_bps": 1e6}
                    for i, (a, b) in enumerate(itertools.pairwise(names))
                },
                "topology": {"kind": "chain", "devices": names},
            },
            "test",
        )
    )
    space = SearchSpace(parse_spec(SearchSpaceSpec, SMALL_FIXED_SPACE, "small"), system)
    k = n_devices - 1
    assert space.size() == 2 * 2 * 2 * math.comb(6 + k - 1, k) * 2 * 2
    _check_enumeration(space, system)


@pytest.mark.parametrize(
    ("space_file", "objective_file"),
    [
        ("mesh_space", "mesh_obj"),
        ("mesh_space", "mesh2_obj"),
        ("mv_space", "tree_obj"),
        ("mv_space", "tree_hub_obj"),
    ],
)
def test_size_counts_enumerate_on_mesh_and_tree(space_file: str, objective_file: str) -> None:
    space, system = _pair(f"fixtures/{space_file}@fixtures/{objective_file}")
    assert space.size() <= 20_000
    _check_enumeration(space, system)
