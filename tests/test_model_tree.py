"""Wang et al.'s context-aware model tree: Alg. 2 composition, replay over contexts, the
one-context tree as the plain candidate, search with Optuna and nasopt samplers, baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import optuna
import pytest

from nasopt.accuracy.proxy import ProxyAccuracy
from nasopt.core.evaluation import evaluate
from nasopt.core.model_tree import ModelTree, compose, replay, shared_blocks, tree_layout
from nasopt.core.robust import latency_distribution, with_contexts
from nasopt.core.split import optimal_split
from nasopt.core.system import build_system
from nasopt.errors import SpecError
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import SearchSpaceSpec, parse_spec
from nasopt.study.model_tree import TreeProblem, compare, dynamic_surgery
from tests.conftest import THREE_BLOCKS, edge_cloud_system

TWO_CONTEXTS = {
    "kind": "discrete",
    "states": [
        {"name": "A", "bandwidth_bps": 4e6, "probability": 0.7},
        {"name": "B", "bandwidth_bps": 0.5e6, "probability": 0.3},
    ],
}


def _system(contexts: dict[str, Any] | None) -> Any:
    link: dict[str, Any] = {"latency_s": 0.001}
    link.update({"contexts": contexts} if contexts else {"bandwidth_bps": 2e6})
    return edge_cloud_system(link)


def _space(system: Any) -> SearchSpace:
    return SearchSpace(parse_spec(SearchSpaceSpec, THREE_BLOCKS, "three-blocks.toml"), system)


def _hand_tree(space: SearchSpace) -> ModelTree:
    """Block 0 never offloads; block 1 offloads under B; block 2 offloads under A.
    Context A's branch: c3, dw, dw; context B's: c5, c3, c3."""
    base = space.largest().ops
    a = ("c3", "dw", "dw", *base[3:])
    b = ("c5", "c3", "c3", *base[3:])
    return ModelTree(offload=((False, False), (False, True), (True, False)), ops=(a, b))


def test_the_tree_composition_follows_alg2_on_a_three_block_two_context_tree() -> None:
    system = _system(TWO_CONTEXTS)
    space = _space(system)
    layout = tree_layout(space.macro, system, space.largest())
    assert [b.name for b in layout.blocks] == ["b0", "b1", "b2"]
    assert layout.contexts == ("A", "B")
    tree = _hand_tree(space)
    base = space.largest().ops
    assert base[:3] == ("c5", "c3", "c3")
    A, B = 0, 1
    cases = {
        # observed contexts before each block -> (ops, cut, path); the cloud runs the rest of
        # the branch of the context that offloaded
        (A, A, A): (("c3", "dw", "dw"), 1, (A, A, A)),  # A at block 2 offloads: cut after b1
        (B, B, A): (("c5", "c3", "c3"), 0, (B, B)),  # B at block 1 offloads: cut after b0
        (A, B, B): (("c3", "c3", "c3"), 0, (A, B)),
        (B, A, B): (("c5", "dw", "c3"), 4, (B, A, B)),  # nobody offloads: all on the edge
        (A, A, B): (("c3", "dw", "c3"), 4, (A, A, B)),
    }
    for observed, (ops, cut, taken) in cases.items():
        candidate, got = compose(layout, tree, observed)
        assert candidate.ops[:3] == ops, observed
        assert candidate.ops[3:] == base[3:]
        assert candidate.cuts == (cut,), observed
        assert got == taken, observed
    # replayed exactly: context A all along with p = 0.7, B with 0.3; each latency is the
    # composed network's on the system fixed to that context
    rep = replay(space.macro, system, layout, tree)
    assert rep.exact
    assert dict(rep.branches) == pytest.approx({(A, A, A): 0.7, (B, B): 0.3})
    link = system.links["up"]
    assert link.variation is not None
    for k in (A, B):
        candidate, _ = compose(layout, tree, [k] * 3)
        fixed = with_contexts(system, {"up": link.variation.contexts[k]})
        want = evaluate(space.network(candidate), fixed).latency_s
        assert rep.latency_s[k] == pytest.approx(want, rel=1e-12)
    assert shared_blocks(layout, tree) == [[["A"], ["B"]], [["A"], ["B"]], [["A"], ["B"]]]


def test_a_tree_with_one_context_equals_the_plain_candidate() -> None:
    system = _system(None)
    space = _space(system)
    layout = tree_layout(space.macro, system, space.largest())
    assert layout.contexts == ("nominal",)
    estimator = ProxyAccuracy(space)
    problem = TreeProblem(space, system, estimator)
    for ops in (("c3", "dw", "dw"), ("c5", "c3", "c3")):
        for j in range(len(layout.blocks) + 1):
            candidate = replace(
                space.largest(), ops=(*ops, *space.largest().ops[3:]), cuts=(layout.position_cut(j),)
            )
            tree = ModelTree.of_candidate(layout, candidate)
            rep = replay(space.macro, system, layout, tree)
            net = space.network(candidate)
            assert rep.latency_s[0] == pytest.approx(evaluate(net, system).latency_s, rel=1e-12)
            score = problem.score(tree)
            assert score.accuracy == pytest.approx(estimator.accuracy(candidate, net, 0.0), rel=1e-12)
            assert [c for c, _ in score.candidates] == [candidate]
    with pytest.raises(SpecError, match="block boundaries"):
        ModelTree.of_candidate(layout, replace(space.largest(), cuts=(3,)))


def test_a_context_blind_tree_replays_like_its_candidate_on_a_trace() -> None:
    system = build_system(load_objective("edge-cloud-4g-fast"))
    space = SearchSpace(load_space("vgg11-compress"), system)
    layout = tree_layout(space.macro, system, space.largest())
    candidate = replace(space.largest(), cuts=(layout.position_cut(2),))
    tree = ModelTree.of_candidate(layout, candidate)
    rep = replay(space.macro, system, layout, tree, samples=500, seed=3)
    dist = latency_distribution(space.network(candidate), system, samples=500, seed=3)
    np.testing.assert_allclose(rep.latency_s, dist.latency_s, rtol=1e-12)
    # the trace changes context between blocks: more than one path through the contexts
    assert len(rep.branches) > 1 and sum(s for _, s in rep.branches) == pytest.approx(1.0)


def test_tree_parameters_are_readable_and_searchable_by_optuna_and_nasopt_samplers() -> None:
    from nasopt.samplers import ReinforceSampler

    system = _system(TWO_CONTEXTS)
    space = _space(system)
    problem = TreeProblem(space, system, ProxyAccuracy(space), samples=64)
    names = set(problem.choices())
    assert {"block00.ctx0.action", "block02.ctx1.action", "layer00.ctx1.op", "layer02.ctx0.op"} <= names
    tree = _hand_tree(space)
    assert problem.tree(problem.params_of(tree)) == tree
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in (optuna.samplers.RandomSampler(seed=0), ReinforceSampler(seed=0)):
        best, score, study = problem.search(6, sampler=sampler, boost=[tree])
        assert len(study.trials) == 7
        assert study.trials[0].params == problem.params_of(tree)  # the boosted tree first
        assert score.reward == pytest.approx(max(t.value for t in study.trials))
        assert problem.score(best).reward == pytest.approx(score.reward)


def test_dynamic_surgery_takes_the_optimal_cut_of_each_context() -> None:
    system = _system(TWO_CONTEXTS)
    space = _space(system)
    problem = TreeProblem(space, system, ProxyAccuracy(space))
    cuts = dynamic_surgery(problem)
    link = system.links["up"]
    assert link.variation is not None
    for cand, ctx in zip(cuts, link.variation.contexts, strict=True):
        fixed = with_contexts(replace(system, links={"up": replace(link, variation=None)}), {"up": ctx})
        best = optimal_split(
            space.macro, space.largest(), fixed, points=tuple(range(-1, len(space.macro.layers)))
        )
        assert cand.cuts == best.cuts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = compare(problem, 10, branch_trials=10)
    assert set(result.scores) == {
        "dynamic surgery",
        "best single (expected context)",
        "optimal branch",
        "model tree",
    }
    surgery = result.scores["dynamic surgery"]
    assert surgery.accuracy == pytest.approx(problem.accuracy_of(replace(space.largest(), cuts=cuts[0].cuts)))


def test_a_model_tree_refuses_systems_it_cannot_fork_on() -> None:
    system = build_system(load_objective("jmsnas-chain"))
    space = SearchSpace(load_space("mbconv-jmsnas"), system)
    with pytest.raises(SpecError, match="two devices"):
        tree_layout(space.macro, system, space.largest())


def test_with_cloud_base_the_cloud_runs_the_uncompressed_rest() -> None:
    """Wang et al.'s rule: after an offload the cloud runs the base network's layers."""
    system = _system(TWO_CONTEXTS)
    space = _space(system)
    layout = tree_layout(space.macro, system, space.largest())
    tree = replace(_hand_tree(space), cloud_base=True)
    base = space.largest().ops
    candidate, path = compose(layout, tree, (0, 0, 0))
    assert candidate.ops[:3] == ("c3", "dw", base[2]) and candidate.cuts == (1,) and path == (0, 0, 0)
    candidate, path = compose(layout, tree, (1, 1, 0))
    assert candidate.ops[:3] == ("c5", base[1], base[2]) and candidate.cuts == (0,) and path == (1, 1)
    rep = replay(space.macro, system, layout, tree)
    link = system.links["up"]
    assert link.variation is not None
    for k in (0, 1):
        candidate, _ = compose(layout, tree, [k] * 3)
        fixed = with_contexts(system, {"up": link.variation.contexts[k]})
        assert rep.latency_s[k] == pytest.approx(
            evaluate(space.network(candidate), fixed).latency_s, rel=1e-12
        )


def test_alg3_reinforce_explores_fairly_boosts_and_keeps_the_best_tree() -> None:
    from nasopt.study.model_tree import reinforce_tree

    system = _system(TWO_CONTEXTS)
    space = _space(system)
    problem = TreeProblem(space, system, ProxyAccuracy(space), samples=64)
    # fair exploration at full strength: a block at depth n is kept on the edge with
    # probability (N - n) / N, so block 0 never offloads
    fair = reinforce_tree(problem, 12, seed=1, fair_alpha=1.0, fair_episodes=10**6)
    assert all(not any(t.offload[0]) for t in fair.trees)
    assert len(fair.rewards) == 12
    assert fair.score.reward == pytest.approx(max(fair.rewards))
    assert problem.score(fair.tree).reward == pytest.approx(fair.score.reward)
    # optimal-branch boosting: the boosted tree's choices dominate the first episode's draws
    boosted = _hand_tree(space)
    run = reinforce_tree(problem, 30, seed=2, fair_alpha=0.0, boost=[boosted], boost_logit=8.0)
    want = problem.params_of(boosted)
    got = problem.params_of(run.trees[0])
    assert sum(want[n] == got[n] for n in want) >= len(want) - 1
    assert run.score.reward == pytest.approx(max(run.rewards))


def test_replay_on_a_trace_matches_the_scalar_model_of_each_mixed_branch() -> None:
    """On a fast-mobility trace the context changes between blocks; every replayed inference's
    latency equals the scalar evaluation of the branch it composed (edge compute, then the
    transfer through the trace from that moment, then the cloud's compute), and the contexts of
    its path are those observed at each block's start."""
    from nasopt.core.model_tree import branch_candidate, context_draws, tree_costs
    from nasopt.core.robust import LinkReplay

    system = build_system(load_objective("edge-cloud-4g-fast"))
    space = SearchSpace(load_space("vgg11-compress"), system)
    layout = tree_layout(space.macro, system, space.largest())
    small = space.smallest().ops
    base = space.largest().ops
    # weak: all compressed on the phone; normal: offload before block 3; good: offload at once
    tree = ModelTree(
        offload=tuple((False, j == 3, j == 0) for j in range(len(layout.blocks))),
        ops=(small, base, base),
        cloud_base=True,
    )
    draws = context_draws(layout, samples=300, seed=5)
    rep = replay(space.macro, system, layout, tree, samples=300, seed=5)
    costs = tree_costs(space.macro, system, layout, tree)
    assert draws.link is not None
    mixed = 0
    for i in range(300):
        path, _ = rep.branches[rep.branch_index[i]]
        mixed += len(set(path)) > 1
        cand = branch_candidate(layout, tree, path)
        one = LinkReplay(draws.link.link, draws.link.timeline, draws.link.start_s[i : i + 1])
        ev = evaluate(space.network(cand), system)
        clock = 0.0
        for j, k in enumerate(path):  # the context each block saw at its start
            seen = int(
                type(draws.link)(
                    draws.link.link, draws.link.timeline, draws.link.start_s[i : i + 1]
                ).context_at(np.array([clock]))[0]
            )
            assert seen == k, (i, j)
            if not tree.offload[j][k]:
                clock += costs.edge_block_s[j, k]
        edge = ev.compute_s.get("phone", 0.0)
        assert clock == pytest.approx(edge, rel=1e-9, abs=1e-12)
        sent = ev.sent_bytes.get("uplink", 0.0)
        want = float(one.finish(np.array([edge]), sent)[0]) + ev.compute_s.get("cloud", 0.0)
        assert rep.latency_s[i] == pytest.approx(want, rel=1e-9), i
    assert mixed > 0  # some inferences did change context between blocks


def test_compare_on_a_fixed_link_has_one_context_everywhere() -> None:
    system = _system(None)
    space = _space(system)
    problem = TreeProblem(space, system, ProxyAccuracy(space))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = compare(problem, 5, branch_trials=5)
    assert result.branches == []
    assert result.switched["optimal branch"] == result.switched["best single (expected context)"]
    for score in result.scores.values():
        assert score.replay.exact and len(score.replay.latency_s) == 1
