"""Searching Wang et al.'s context-aware model tree with Optuna samplers, and its baselines
replayed on the same contexts: dynamic DNN surgery (the base network's optimal cut per
context), optimal branch (one network searched per fixed context, switched whole at the start)
and the best single network for the expected context.

Parameters have readable names: `block03.ctx2.action` (edge | offload before block 3 when
context 2 is observed there) and `layer04.ctx2.op` (layer 4's op in context 2's branch).
Accuracy is the estimator's accuracy of each branch taken, weighted by how often it is taken."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna

from nasopt.accuracy import AccuracyEstimator
from nasopt.core.candidate import Candidate
from nasopt.core.macro import split_point_domain
from nasopt.core.model_tree import (
    Draws,
    ModelTree,
    TreeLayout,
    TreeReplay,
    branch_candidate,
    context_draws,
    replay_switched,
    replay_tree,
    tree_costs,
    tree_layout,
)
from nasopt.core.robust import robust_summary, with_contexts
from nasopt.core.split import optimal_split
from nasopt.core.system import System
from nasopt.space import SearchSpace

ACTIONS = ("edge", "offload")


def wang_reward(accuracy: float, latency_ms: float) -> float:
    """Wang et al. eq. 7: R = 100 N1(A) + 300 N2(T), accuracy normalised over [50 %, 100 %] and
    latency over [0, 500] ms (Sec. VII), each clipped to [0, 1]."""
    n1 = min(1.0, max(0.0, (accuracy - 0.5) / 0.5))
    n2 = min(1.0, max(0.0, 1.0 - latency_ms / 500.0))
    return 100.0 * n1 + 300.0 * n2


@dataclass(frozen=True)
class TreeScore:
    """A tree's (or a switched baseline's) replayed latency, branch-weighted accuracy, reward."""

    latency: dict[str, float]  # latency_mean_ms, latency_p95_ms, latency_worst_ms, deadline_miss
    accuracy: float
    reward: float
    replay: TreeReplay
    candidates: tuple[tuple[Candidate, float], ...]  # distinct networks taken, with their shares


class TreeProblem:
    """A model tree over a space and an edge -> cloud system with the same replayed draws for
    every tree (common random numbers, so trees compare on the same inferences)."""

    def __init__(
        self,
        space: SearchSpace,
        system: System,
        estimator: AccuracyEstimator,
        *,
        samples: int = 2000,
        seed: int = 0,
        deadline_ms: float | None = None,
        loss_rate: float | None = None,
        accuracy_floor: float | None = None,
        cloud_base: bool = False,
    ) -> None:
        self.space = space
        self.system = system
        self.estimator = estimator
        self.layout: TreeLayout = tree_layout(space.macro, system, space.largest())
        self.draws: Draws = context_draws(self.layout, samples=samples, seed=seed)
        self.deadline_ms = deadline_ms
        self.loss_rate = self.layout.link.loss_rate if loss_rate is None else loss_rate
        # None: maximise Wang's reward; a floor: minimise the mean latency at accuracy >= floor
        self.accuracy_floor = accuracy_floor
        self.cloud_base = cloud_base  # the cloud runs the base network after an offload (Wang)
        self._accuracy: dict[Candidate, float] = {}

    # -- parameters ------------------------------------------------------------------------
    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every parameter of the tree and its choices (the first is the base network's)."""
        out: dict[str, tuple[Any, ...]] = {}
        macro = self.space.macro
        base = self.layout.base
        for k in range(len(self.layout.contexts)):
            for j, block in enumerate(self.layout.blocks):
                out[f"block{j:02d}.ctx{k}.action"] = ACTIONS
                for i in block.searched:
                    layer = macro.layers[i]
                    rest = [c for c in layer.choices if c != base.ops[i]]
                    out[f"{layer.name}.ctx{k}.op"] = (base.ops[i], *rest)
        return out

    def distributions(self) -> dict[str, optuna.distributions.CategoricalDistribution]:
        return {n: optuna.distributions.CategoricalDistribution(c) for n, c in self.choices().items()}

    def tree(self, params: dict[str, Any]) -> ModelTree:
        """The tree of a trial's parameters (missing ones: edge, the base op)."""
        macro = self.space.macro
        k_count = len(self.layout.contexts)
        offload = tuple(
            tuple(params.get(f"block{j:02d}.ctx{k}.action", "edge") == "offload" for k in range(k_count))
            for j in range(len(self.layout.blocks))
        )
        ops = []
        for k in range(k_count):
            row = list(self.layout.base.ops)
            for block in self.layout.blocks:
                for i in block.searched:
                    row[i] = params.get(f"{macro.layers[i].name}.ctx{k}.op", row[i])
            ops.append(tuple(row))
        return ModelTree(offload, tuple(ops), self.cloud_base)

    def params_of(self, tree: ModelTree) -> dict[str, Any]:
        macro = self.space.macro
        out: dict[str, Any] = {}
        for k in range(len(self.layout.contexts)):
            for j, block in enumerate(self.layout.blocks):
                out[f"block{j:02d}.ctx{k}.action"] = ACTIONS[int(tree.offload[j][k])]
                for i in block.searched:
                    out[f"{macro.layers[i].name}.ctx{k}.op"] = tree.ops[k][i]
        return out

    def suggest(self, trial: optuna.Trial) -> ModelTree:
        return self.tree({n: trial.suggest_categorical(n, c) for n, c in self.choices().items()})

    # -- scoring ---------------------------------------------------------------------------
    def accuracy_of(self, candidate: Candidate) -> float:
        if candidate not in self._accuracy:
            net = self.space.network(candidate)
            self._accuracy[candidate] = self.estimator.accuracy(candidate, net, self.loss_rate)
        return self._accuracy[candidate]

    def score(self, tree: ModelTree) -> TreeScore:
        costs = tree_costs(self.space.macro, self.system, self.layout, tree)
        rep = replay_tree(self.layout, tree, costs, self.draws)
        taken: dict[Candidate, float] = {}
        for branch, share in rep.branches:
            cand = branch_candidate(self.layout, tree, branch)
            taken[cand] = taken.get(cand, 0.0) + share
        return self._score(rep, taken)

    def score_switched(self, candidates: Sequence[Candidate]) -> TreeScore:
        """Whole networks switched by the context at the start (one: always that one)."""
        rep = replay_switched(self.space.macro, self.system, self.layout, candidates, self.draws)
        taken: dict[Candidate, float] = {}
        for (k,), share in rep.branches:
            taken[candidates[k]] = taken.get(candidates[k], 0.0) + share
        return self._score(rep, taken)

    def _score(self, rep: TreeReplay, taken: dict[Candidate, float]) -> TreeScore:
        latency = robust_summary(rep.latency_s, rep.weights, self.deadline_ms)
        accuracy = float(sum(share * self.accuracy_of(c) for c, share in taken.items()))
        reward = wang_reward(accuracy, latency["latency_mean_ms"])
        return TreeScore(latency, accuracy, reward, rep, tuple(taken.items()))

    # -- search ----------------------------------------------------------------------------
    def goal(self, s: TreeScore) -> float:
        """What the search maximises: Wang's reward, or minus the mean latency (ms) less a
        penalty of 1e4 ms per unit of accuracy under the floor."""
        return self.goal_of(s.accuracy, s.latency["latency_mean_ms"])

    def goal_of(self, accuracy: float, latency_mean_ms: float) -> float:
        if self.accuracy_floor is None:
            return wang_reward(accuracy, latency_mean_ms)
        return -latency_mean_ms - 1e4 * max(0.0, self.accuracy_floor - accuracy)

    def search(
        self,
        n_trials: int,
        *,
        sampler: optuna.samplers.BaseSampler | None = None,
        seed: int = 0,
        boost: Sequence[ModelTree] = (),
    ) -> tuple[ModelTree, TreeScore, optuna.Study]:
        """Maximise `goal` over trees; `boost` trees are evaluated first (optimal-branch
        boosting, Sec. VII-A). Returns the best tree, its score and the study."""
        study = optuna.create_study(
            direction="maximize", sampler=sampler or optuna.samplers.TPESampler(seed=seed)
        )
        for tree in boost:
            study.enqueue_trial(self.params_of(tree))
        scores: dict[int, TreeScore] = {}

        def objective(trial: optuna.Trial) -> float:
            tree = self.suggest(trial)
            s = self.score(tree)
            scores[trial.number] = s
            trial.set_user_attr("accuracy", s.accuracy)
            for name, value in s.latency.items():
                trial.set_user_attr(name, value)
            return self.goal(s)

        study.optimize(objective, n_trials=n_trials + len(boost))
        best = study.best_trial
        return self.tree(best.params), scores[best.number], study


def uniform_trees(problem: TreeProblem) -> list[ModelTree]:
    """Trees that ignore the context: offload before block j (or never) with the base ops or
    the smallest candidate's ops everywhere; starting points for every search."""
    layout = problem.layout
    n, k = len(layout.blocks), len(layout.contexts)
    out = []
    for ops in (layout.base.ops, problem.space.smallest().ops):
        for j in range(n + 1):
            offload = tuple((i == j,) * k for i in range(n))
            out.append(ModelTree(offload, (ops,) * k, problem.cloud_base))
    return out


def with_tree(layout: TreeLayout, per_context: Sequence[ModelTree]) -> ModelTree:
    """The tree whose context k follows the one-context tree `per_context[k]`."""
    n = len(layout.blocks)
    offload = tuple(tuple(t.offload[j][0] for t in per_context) for j in range(n))
    return ModelTree(offload, tuple(t.ops[0] for t in per_context), per_context[0].cloud_base)


def fixed_context_problems(problem: TreeProblem) -> tuple[list[TreeProblem], TreeProblem]:
    """One-context problems at each context's fixed bandwidth, and at the expected context."""
    link = problem.layout.link
    var = link.variation
    fixed = {**problem.system.links, link.name: replace(link, variation=None)}
    nominal_system = replace(problem.system, links=fixed)
    contexts = var.contexts if var is not None else ()
    per = []
    for ctx in contexts:
        sys_k = with_contexts(nominal_system, {link.name: ctx})
        per.append(_sub_problem(problem, sys_k))
    return per, _sub_problem(problem, nominal_system)


def _sub_problem(problem: TreeProblem, system: System) -> TreeProblem:
    space = SearchSpace(problem.space.spec, system)
    return TreeProblem(
        space,
        system,
        problem.estimator,
        samples=16,
        deadline_ms=problem.deadline_ms,
        loss_rate=problem.loss_rate,
        accuracy_floor=problem.accuracy_floor,
        cloud_base=problem.cloud_base,
    )


def dynamic_surgery(problem: TreeProblem) -> list[Candidate]:
    """The base network at its latency-optimal cut (any layer) for each context's bandwidth."""
    per, nominal = fixed_context_problems(problem)
    per = per or [nominal]  # a fixed link: one context
    base = problem.layout.base
    points = tuple(split_point_domain(problem.space.macro))
    out = []
    for sub in per:
        best = optimal_split(sub.space.macro, base, sub.system, points=points)
        out.append(replace(base, cuts=best.cuts))
    return out


@dataclass(frozen=True)
class Comparison:
    """Model tree vs its baselines on the same replayed inferences."""

    scores: dict[str, TreeScore]
    tree: ModelTree
    branches: list[ModelTree]  # optimal branch per context
    switched: dict[str, list[Candidate]]  # the baselines' networks, one per context (or one)
    alg3_tree: ModelTree | None = None  # the tree Alg. 3's REINFORCE found (if run)


def compare(
    problem: TreeProblem,
    n_trials: int,
    *,
    seed: int = 0,
    branch_trials: int | None = None,
    alg3_episodes: int = 0,
) -> Comparison:
    """Search the optimal branch per context and for the expected context (`branch_trials`
    each), then the model tree (`n_trials` of TPE, boosted by the optimal branches; and, with
    `alg3_episodes`, Alg. 3's REINFORCE boosted the same way), and score all of them and
    dynamic surgery on the problem's replayed inferences."""
    per, nominal = fixed_context_problems(problem)
    m = branch_trials or n_trials
    branches = [sub.search(m, seed=seed + 1 + k, boost=uniform_trees(sub))[0] for k, sub in enumerate(per)]
    single = nominal.search(m, seed=seed, boost=uniform_trees(nominal))[0]
    # optimal-branch boosting: the branches as one tree, each branch and the best single one
    # for every context, and the context-blind starting points
    k_count = len(problem.layout.contexts)
    boost = [with_tree(problem.layout, branches)] if branches else []
    boost += [with_tree(problem.layout, [b] * k_count) for b in [*branches, single]]
    boost += uniform_trees(problem)
    tree, tree_score, _ = problem.search(n_trials, seed=seed, boost=boost)

    def whole(t: ModelTree, sub: TreeProblem) -> Candidate:
        ((branch, _),) = sub.score(t).replay.branches[:1]
        return branch_candidate(sub.layout, t, branch)

    switched = {
        "dynamic surgery": dynamic_surgery(problem),
        "best single (expected context)": [whole(single, nominal)],
        # a fixed link has one context: its optimal branch is the best single network
        "optimal branch": [whole(b, sub) for b, sub in zip(branches, per, strict=True)]
        or [whole(single, nominal)],
    }
    scores = {name: problem.score_switched(cands) for name, cands in switched.items()}
    scores["model tree"] = tree_score
    alg3 = None
    if alg3_episodes:
        alg3 = reinforce_tree(problem, alg3_episodes, seed=seed, boost=boost[:1]).tree
        scores["model tree (Alg. 3)"] = problem.score(alg3)
    return Comparison(scores, tree, branches, switched, alg3)


def latency_array(score: TreeScore) -> np.ndarray:
    return np.asarray(score.replay.latency_s) * 1e3


@dataclass
class TreeSearchResult:
    """Alg. 3's outcome: the best tree seen, its score, and the reward of every episode."""

    tree: ModelTree
    score: TreeScore
    rewards: list[float]
    trees: list[ModelTree]  # every episode's tree


def reinforce_tree(
    problem: TreeProblem,
    episodes: int,
    *,
    seed: int = 0,
    learning_rate: float = 0.1,
    baseline_decay: float = 0.9,
    fair_alpha: float = 1.0,
    fair_episodes: int = 50,
    boost: Sequence[ModelTree] = (),
    boost_logit: float = 2.0,
) -> TreeSearchResult:
    """Wang et al.'s Alg. 3 on the (block, context) tree: a softmax policy per node for the
    offload action and per node and layer for the op. Forward generation: sample every node
    (BFS order), the partition first; with probability alpha * (N - n) / N a node at depth n is
    forced not to offload (fair exploration, alpha decaying to 0 over `fair_episodes`). The
    tree is replayed; each branch's reward (`problem.goal` of that branch's latency and
    accuracy) is assigned to its leaf. Backward estimation: a node's reward is the
    share-weighted mean of the branches through it; each node's choices take a REINFORCE step
    with that reward minus an EMA baseline. `boost` trees (optimal-branch boosting) raise the
    logits of their choices by `boost_logit` before the first episode."""
    rng = np.random.default_rng(seed)
    choices = problem.choices()
    names = list(choices)
    logits = {n: np.zeros(len(choices[n])) for n in names}
    for tree in boost:
        for n, v in problem.params_of(tree).items():
            logits[n][choices[n].index(v)] += boost_logit
    layout = problem.layout
    n_blocks = len(layout.blocks)
    macro = problem.space.macro
    node_of: dict[str, tuple[int, int]] = {}
    for k in range(len(layout.contexts)):
        for j, block in enumerate(layout.blocks):
            node_of[f"block{j:02d}.ctx{k}.action"] = (j, k)
            for i in block.searched:
                node_of[f"{macro.layers[i].name}.ctx{k}.op"] = (j, k)
    baseline: float | None = None
    best: tuple[float, ModelTree, TreeScore] | None = None
    rewards: list[float] = []
    trees: list[ModelTree] = []
    for t in range(episodes):
        alpha = fair_alpha * max(0.0, 1.0 - t / max(1, fair_episodes))
        params: dict[str, Any] = {}
        for n in names:  # BFS: blocks in order, the action before the ops
            z = logits[n]
            p = np.exp(z - z.max())
            p /= p.sum()
            if n.endswith(".action") and rng.random() < alpha * (n_blocks - node_of[n][0]) / n_blocks:
                params[n] = "edge"
            else:
                params[n] = choices[n][int(rng.choice(len(p), p=p))]
        tree = problem.tree(params)
        score = problem.score(tree)
        total = problem.goal(score)
        rewards.append(total)
        trees.append(tree)
        if best is None or total > best[0]:
            best = (total, tree, score)
        # leaf rewards per branch, then node rewards as share-weighted means over branches
        branch_reward = []
        for b, (path, _share) in enumerate(score.replay.branches):
            mask = score.replay.branch_index == b
            w = score.replay.weights[mask]
            lat_ms = float(np.dot(w, score.replay.latency_s[mask]) / w.sum()) * 1e3
            cand = branch_candidate(layout, tree, path)
            branch_reward.append(problem.goal_of(problem.accuracy_of(cand), lat_ms))
        node_sum: dict[tuple[int, int], float] = {}
        node_w: dict[tuple[int, int], float] = {}
        for (path, share), r in zip(score.replay.branches, branch_reward, strict=True):
            for j, k in enumerate(path):
                node_sum[(j, k)] = node_sum.get((j, k), 0.0) + share * r
                node_w[(j, k)] = node_w.get((j, k), 0.0) + share
        if baseline is None:
            baseline = total
        for n in names:
            node = node_of[n]
            if node not in node_w:  # not visited by any inference: no reward for it
                continue
            advantage = node_sum[node] / node_w[node] - baseline
            z = logits[n]
            p = np.exp(z - z.max())
            p /= p.sum()
            onehot = np.zeros(len(p))
            onehot[choices[n].index(params[n])] = 1.0
            logits[n] = z + learning_rate * advantage * (onehot - p) / max(1.0, abs(baseline))
        baseline = baseline_decay * baseline + (1 - baseline_decay) * total
    assert best is not None
    return TreeSearchResult(best[1], best[2], rewards, trees)
