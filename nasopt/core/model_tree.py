"""Wang et al.'s context-aware model tree (seed 002, Sec. VI): per block of the network and per
network context, a compression choice (the op of every searched layer) and whether to offload
to the cloud before that block. At run time (Alg. 2) the device observes the context before each
block and takes that context's branch: it runs the block as that context says or, if it says
offload, sends the block's input and the cloud runs the rest: of that context's branch, or, with
`cloud_base` (Wang et al.'s rule), of the base network, uncompressed.

The tree here keys each node by (block, context), so branches that see the same context at a
block share that block. Evaluation replays the link's contexts between blocks (discrete: one
context per inference, exactly; Markov and trace: seeded start times along the timeline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import evaluate
from nasopt.core.macro import Macro
from nasopt.core.network import build_network
from nasopt.core.robust import LinkReplay, link_replays
from nasopt.core.system import Link, System
from nasopt.errors import SpecError


@dataclass(frozen=True)
class TreeBlock:
    name: str
    layers: tuple[int, ...]  # layer indices of the block
    searched: tuple[int, ...]  # those with a choice of op


@dataclass(frozen=True)
class TreeLayout:
    """Where a model tree can fork: the blocks (the space's stages), the contexts of the
    edge -> cloud link, and the base network (the uncompressed one the cloud runs)."""

    blocks: tuple[TreeBlock, ...]
    contexts: tuple[str, ...]
    edge: str
    cloud: str
    link: Link
    base: Candidate

    def position_cut(self, j: int) -> int:
        """The cut of offloading before block j (j = number of blocks: everything on the edge)."""
        if j == len(self.blocks):
            return self.blocks[-1].layers[-1]
        return self.blocks[j].layers[0] - 1


@dataclass(frozen=True)
class ModelTree:
    """`offload[j][k]`: offload before block j when context k is observed there; `ops[k]`: the
    op of every layer in the branch of context k (only the blocks run on the edge use it)."""

    offload: tuple[tuple[bool, ...], ...]
    ops: tuple[tuple[str, ...], ...]
    # True: after an offload the cloud runs the base network's ops (Wang et al.: the cloud part
    # is not compressed); False: the rest of the offloading context's branch
    cloud_base: bool = False

    @classmethod
    def of_candidate(cls, layout: TreeLayout, candidate: Candidate) -> ModelTree:
        """The tree whose every context takes `candidate` (cut at a block boundary)."""
        cut = candidate.cuts[0]
        positions = [layout.position_cut(j) for j in range(len(layout.blocks))]
        if cut not in [*positions, layout.position_cut(len(layout.blocks))]:
            raise SpecError(
                "a model tree offloads only at block boundaries",
                field="cuts",
                value=cut,
                allowed=[*positions, layout.position_cut(len(layout.blocks))],
            )
        k = len(layout.contexts)
        offload = tuple((p == cut,) * k for p in positions)
        return cls(offload, (candidate.ops,) * k)


def tree_layout(macro: Macro, system: System, base: Candidate) -> TreeLayout:
    """Check that `system` is an edge -> cloud chain and the space a chain of stages whose op
    choices keep every layer's output shape (so blocks of different branches plug together)."""
    if system.kind != "chain" or len(system.chain) != 2:
        raise SpecError(
            "a model tree needs a chain of two devices (edge -> cloud)",
            field="topology.devices",
            value=system.chain or system.kind,
        )
    if macro.parallel_stage() is not None or macro.views > 1:
        raise SpecError("a model tree needs a single-view space without parallel stages", field="stages")
    edge, cloud = system.chain
    link = system.chain_links[0]
    var = link.variation
    if var is None:
        contexts: tuple[str, ...] = ("nominal",)
    elif not var.contexts:
        raise SpecError(
            "a model tree matches the measured bandwidth to named contexts: give states",
            field=f"links.{link.name}.contexts.states",
        )
    else:
        contexts = tuple(c.name for c in var.contexts)
    blocks = []
    for stage in macro.stages:
        layers = tuple(stage.layers)
        searched = tuple(i for i in layers if len(macro.layers[i].choices) > 1)
        blocks.append(TreeBlock(stage.name, layers, searched))
    base_net = build_network(macro, replace(base, cuts=(blocks[-1].layers[-1],)))
    for i in (i for b in blocks for i in b.searched):
        for choice in macro.layers[i].choices:
            ops = list(base.ops)
            ops[i] = choice
            net = build_network(macro, replace(base, ops=tuple(ops), cuts=base_net.cut_after))
            if [la.out_shape for la in net.layers] != [la.out_shape for la in base_net.layers]:
                raise SpecError(
                    "a model tree needs op choices that keep each layer's output shape",
                    field=f"layers[{i}]",
                    value=choice,
                )
    return TreeLayout(tuple(blocks), contexts, edge, cloud, link, base)


def compose(
    layout: TreeLayout, tree: ModelTree, observed: Sequence[int]
) -> tuple[Candidate, tuple[int, ...]]:
    """Alg. 2: from the root, before each block take the child of the observed context; stop
    at a node that offloads (the cloud runs the rest of that context's branch) or after the
    last block. Returns the composed candidate and the path: the context of every node
    visited (the offloading one included)."""
    ops = list(layout.base.ops)
    path: list[int] = []
    n = len(layout.blocks)
    j = 0
    while j < n:
        k = observed[j]
        path.append(k)
        if tree.offload[j][k]:
            rest = layout.base.ops if tree.cloud_base else tree.ops[k]
            for block in layout.blocks[j:]:
                for i in block.layers:
                    ops[i] = rest[i]
            break
        for i in layout.blocks[j].layers:
            ops[i] = tree.ops[k][i]
        j += 1
    return replace(layout.base, ops=tuple(ops), cuts=(layout.position_cut(j),)), tuple(path)


@dataclass(frozen=True)
class TreeCosts:
    """Per block and context the edge time; per offload position the payload, and per position
    and context the cloud's time for the rest of that context's branch."""

    edge_block_s: np.ndarray  # [block, context]
    payload_bytes: np.ndarray  # [position 0..N]
    cloud_tail_s: np.ndarray  # [position 0..N, context]


def tree_costs(macro: Macro, system: System, layout: TreeLayout, tree: ModelTree) -> TreeCosts:
    """Times from the analytic model: a block's edge time is the difference of the edge times
    of the context's branch cut after and before it (layer costs do not depend on the other
    layers' choices, shapes being kept)."""
    n = len(layout.blocks)
    k = len(layout.contexts)
    edge = np.zeros((n, k))
    payload = np.zeros(n + 1)
    cloud = np.zeros((n + 1, k))
    for c in range(k):
        prefix = []
        for j in range(n + 1):
            branch = replace(layout.base, ops=tree.ops[c], cuts=(layout.position_cut(j),))
            ev = evaluate(build_network(macro, branch), system)
            prefix.append(ev.compute_s.get(layout.edge, 0.0))
            cloud[j, c] = ev.compute_s.get(layout.cloud, 0.0)
            payload[j] = ev.sent_bytes.get(layout.link.name, 0.0)  # shapes kept: the same for all
        edge[:, c] = np.diff(prefix)
    if tree.cloud_base:
        for j in range(n + 1):
            ev = evaluate(build_network(macro, replace(layout.base, cuts=(layout.position_cut(j),))), system)
            cloud[j, :] = ev.compute_s.get(layout.cloud, 0.0)
    return TreeCosts(edge, payload, cloud)


@dataclass(frozen=True)
class TreeReplay:
    """Latency of every replayed inference (with weights), the branches taken (paths: the
    context at every node visited) with their shares, and whether it is exact."""

    latency_s: np.ndarray
    weights: np.ndarray
    branches: tuple[tuple[tuple[int, ...], float], ...]  # (contexts taken, share)
    branch_index: np.ndarray  # per inference, the index of its branch in `branches`
    exact: bool


@dataclass(frozen=True)
class Draws:
    """The inferences a replay runs: how each sees the link (None: a fixed link, one
    inference), their weights, and whether they enumerate the contexts exactly."""

    link: LinkReplay | None
    weights: np.ndarray
    exact: bool

    @property
    def count(self) -> int:
        return len(self.weights)

    def context_at(self, clock_s: np.ndarray) -> np.ndarray:
        return np.zeros(len(clock_s), dtype=int) if self.link is None else self.link.context_at(clock_s)

    def finish(self, layout: TreeLayout, clock_s: np.ndarray, go: np.ndarray, payload: float) -> np.ndarray:
        if self.link is None:
            return np.asarray(clock_s[go] + layout.link.transfer_time_s(payload))
        r = self.link
        sub = LinkReplay(r.link, r.timeline, r.start_s[go], None if r.state is None else r.state[go])
        return sub.finish(clock_s[go], payload)


def context_draws(layout: TreeLayout, *, samples: int, seed: int, exact: bool = True) -> Draws:
    """How inferences see the link: one for a fixed link; every context once (weighted by its
    probability) for discrete contexts when `exact`; else `samples` seeded ones."""
    var = layout.link.variation
    if var is None:
        return Draws(None, np.ones(1), True)
    if var.kind == "discrete" and exact:
        k = len(var.contexts)
        return Draws(LinkReplay(layout.link, None, np.zeros(k), np.arange(k)), var.probabilities.copy(), True)
    return Draws(link_replays([layout.link], samples, seed)[layout.link.name], np.ones(samples), False)


def replay_tree(
    layout: TreeLayout, tree: ModelTree, costs: TreeCosts, draws: Draws, *, decide_at_start: bool = False
) -> TreeReplay:
    """Run Alg. 2 for every inference at once. `decide_at_start`: the context seen before the
    first block picks the whole branch (switching whole networks, not block by block)."""
    m = draws.count
    n = len(layout.blocks)
    clock = np.zeros(m)
    done = np.zeros(m, dtype=bool)
    latency = np.zeros(m)
    taken = np.full((m, n), -1)
    position = np.full(m, n)  # length of each inference's path
    first = draws.context_at(clock)
    offload = np.array(tree.offload, dtype=bool).reshape(n, len(layout.contexts))
    for j in range(n + 1):
        k = first if decide_at_start else draws.context_at(clock)
        go = ~done & offload[j][k] if j < n else ~done
        if go.any():
            sent = float(costs.payload_bytes[j])
            latency[go] = draws.finish(layout, clock, go, sent) + costs.cloud_tail_s[j, k[go]]
            if j < n:
                taken[go, j] = k[go]
                position[go] = j + 1
            done |= go
        if j < n:
            run = ~done
            clock[run] += costs.edge_block_s[j, k[run]]
            taken[run, j] = k[run]
    return TreeReplay(latency, draws.weights, *_shares(taken, position, draws.weights), exact=draws.exact)


def _shares(
    taken: np.ndarray, position: np.ndarray, weights: np.ndarray
) -> tuple[tuple[tuple[tuple[int, ...], float], ...], np.ndarray]:
    """The distinct paths with their shares, and each inference's path index."""
    codes: dict[tuple[int, ...], float] = {}
    index = np.zeros(len(weights), dtype=int)
    order: dict[tuple[int, ...], int] = {}
    for i, (row, pos, w) in enumerate(zip(taken, position, weights, strict=True)):
        key = tuple(int(x) for x in row[:pos])
        codes[key] = codes.get(key, 0.0) + float(w)
        index[i] = order.setdefault(key, len(order))
    total = float(weights.sum())
    return tuple((key, share / total) for key, share in codes.items()), index


def replay(
    macro: Macro,
    system: System,
    layout: TreeLayout,
    tree: ModelTree,
    *,
    samples: int = 2000,
    seed: int = 0,
    exact: bool = True,
    decide_at_start: bool = False,
) -> TreeReplay:
    """The model tree's latency over the link's contexts and the branches it takes."""
    costs = tree_costs(macro, system, layout, tree)
    draws = context_draws(layout, samples=samples, seed=seed, exact=exact)
    return replay_tree(layout, tree, costs, draws, decide_at_start=decide_at_start)


def branch_candidate(layout: TreeLayout, tree: ModelTree, path: Sequence[int]) -> Candidate:
    """The network of a branch, given its path (the context at every node visited)."""
    observed = [*path, *([0] * (len(layout.blocks) - len(path)))]
    candidate, got = compose(layout, tree, observed)
    assert got == tuple(path), (got, path)
    return candidate


def replay_switched(
    macro: Macro, system: System, layout: TreeLayout, candidates: Sequence[Candidate], draws: Draws
) -> TreeReplay:
    """Whole networks switched by the context at the start (dynamic surgery, optimal branch):
    candidate k runs when context k is observed (one candidate: always it); its cut may fall
    anywhere. Branches are keyed by the candidate's index."""
    parts = []
    for cand in candidates:
        ev = evaluate(build_network(macro, cand), system)
        parts.append(
            (
                ev.compute_s.get(layout.edge, 0.0),
                ev.sent_bytes.get(layout.link.name, 0.0),
                ev.compute_s.get(layout.cloud, 0.0),
            )
        )
    m = draws.count
    k0 = draws.context_at(np.zeros(m)) if len(candidates) > 1 else np.zeros(m, dtype=int)
    clock = np.array([p[0] for p in parts])[k0]
    latency = np.zeros(m)
    for c, (_, sent, cloud) in enumerate(parts):
        go = k0 == c
        if go.any():
            latency[go] = draws.finish(layout, clock, go, sent) + cloud
    taken = k0[:, None]
    return TreeReplay(
        latency, draws.weights, *_shares(taken, np.ones(m, dtype=int), draws.weights), exact=draws.exact
    )


def shared_blocks(layout: TreeLayout, tree: ModelTree) -> list[list[list[str]]]:
    """Per block, the groups of contexts whose node there is the same (same offload decision
    and same ops on the block): the branch-sharing structure of the tree."""
    out = []
    for j, block in enumerate(layout.blocks):
        groups: dict[tuple, list[str]] = {}
        for k, name in enumerate(layout.contexts):
            key = (
                tree.offload[j][k],
                tuple(tree.ops[k][i] for i in block.searched) if not tree.offload[j][k] else (),
            )
            groups.setdefault(key, []).append(name)
        out.append(list(groups.values()))
    return out


def sharing_figure(layout: TreeLayout, tree: ModelTree) -> str:
    """A text figure of the tree: one row per block, one column per context, the node each
    context takes there (same label: a shared node; `^` marks a node that offloads)."""
    names = list(layout.contexts)
    width = max(8, *(len(n) + 2 for n in names))
    lines = [f"{'block':<12}" + "".join(f"{n:<{width}}" for n in names)]
    for j, (block, groups) in enumerate(zip(layout.blocks, shared_blocks(layout, tree), strict=True)):
        label = {}
        for g, members in enumerate(groups):
            for name in members:
                label[name] = f"{chr(65 + j % 26)}{g + 1}"
        row = f"{block.name:<12}"
        for k, name in enumerate(names):
            row += f"{label[name] + ('^' if tree.offload[j][k] else ''):<{width}}"
        lines.append(row)
    return "\n".join(lines)
