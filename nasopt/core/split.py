"""Latency-optimal placement of a fixed network on a chain, mesh or tree, under memory caps.

Chain: dynamic programming over the cut points (Neurosurgeon / DNN-surgery generalised to M
devices): best[m][j] is the least latency with devices 0..m-1 done and cut m after split point
j. The segment cost uses exactly the formulas of `nasopt.core.evaluation` (compute per layer,
Wang's transfer model, peak memory = weights + max(live activations, buffered payload)).

Mesh: the cuts before the parallel stage (on the `before` + root chain) and those after the merge
(on the `after` chain) act on disjoint devices and add disjoint terms to JMSNAS eq. 2 (the
branches' term does not depend on them), so each group is chosen on its own by evaluating every
sorted tuple of its domain with `evaluate`, the other group held fixed.

Tree: a multi-view network's cut is its fusion point (the leaves run the per-view head), so the
placement is the fusion point; every one the space allows is evaluated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.macro import Macro, cut_domain, fuse_domain
from nasopt.core.memory import live_elements, payload_bytes, peak_memory_bytes
from nasopt.core.network import build_network
from nasopt.core.system import System
from nasopt.errors import SpecError


@dataclass(frozen=True)
class SplitResult:
    """Best cuts (layer indices, -1 = send the input) and the latency they give; on a tree,
    `fuse_after` is the chosen fusion point (and the one cut)."""

    cuts: tuple[int, ...]
    latency_s: float
    feasible: bool
    fuse_after: int | None = None

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3


def optimal_split(
    macro: Macro,
    candidate: Candidate,
    system: System,
    *,
    respect_memory: bool = True,
    points: tuple[int, ...] | None = None,
) -> SplitResult:
    """The latency-optimal cuts of `candidate`'s architecture on the chain, mesh or tree `system`.

    `points`: the split points a cut may take (default: the space's cut domain; Neurosurgeon
    takes every one, `split_point_domain`). A tree's placement is its fusion point, from the
    space's fusion domain.

    Returns `feasible=False` (and the least-latency placement ignoring memory) when no
    placement meets every device's memory cap. On a tree the candidate's fusion point is the
    placement and is chosen too.
    """
    if candidate.bottleneck_width:
        raise SpecError(
            "optimal_split places a fixed network: use a candidate without bottleneck",
            field="candidate.bottleneck_width",
            value=candidate.bottleneck_width,
            allowed=0,
        )
    if system.kind == "tree":
        return _solve_tree(macro, candidate, system, respect_memory=respect_memory)
    if candidate.fuse_after is not None:
        raise SpecError(
            "a multi-view candidate needs a tree topology", field="topology.kind", value=system.kind
        )
    if system.kind == "mesh":
        return _solve_mesh(macro, candidate, system, respect_memory=respect_memory, points=points)
    n_cuts = len(system.chain) - 1
    domain = tuple(sorted(cut_domain(macro) if points is None else set(points)))
    if n_cuts == 0:
        ev = evaluate(build_network(macro, replace(candidate, cuts=())), system)
        return SplitResult((), ev.latency_s, not ev.memory_violations())
    if respect_memory:
        best = _solve(macro, candidate, system, domain, check_memory=True)
        if best is not None:
            return best
    result = _solve(macro, candidate, system, domain, check_memory=False)
    assert result is not None
    return SplitResult(result.cuts, result.latency_s, feasible=not respect_memory)


def _solve(
    macro: Macro, candidate: Candidate, system: System, domain: tuple[int, ...], *, check_memory: bool
) -> SplitResult | None:
    net = build_network(macro, replace(candidate, cuts=domain))
    layers = net.layers
    n = len(layers)
    flat = list(net.cut_after)
    payload = [payload_bytes(e, b) for e, b in zip(net.sent_elems, net.sent_bits, strict=True)]
    bits = {"weight_bits": net.weight_bits, "activation_bits": net.activation_bits}
    chain = system.chain
    m_dev = len(chain)
    P = len(domain)
    START, END = -1, P  # virtual points: before everything, after everything

    def flat_of(j: int) -> int:
        if j == START:
            return -1
        if j == END:
            return n - 1
        return flat[j]

    def pay(j: int) -> float:
        return 0.0 if j in (START, END) else payload[j]

    def segment_costs(device_index: int, a: int, candidates: range) -> dict[int, float]:
        """Compute time of device `device_index` from point a to each b (inf when over memory);
        a device that runs any layer pays its `run_overhead_s` once."""
        dev = system.devices[chain[device_index]]
        time_of = dev.compute.layer_time_s
        run_overhead_s = dev.compute.spec.run_overhead_s
        model = dev.memory_model
        out: dict[int, float] = {}
        t = 0.0
        params = 0
        live = 0
        pos = flat_of(a) + 1
        for b in candidates:
            end = flat_of(b) + 1
            for i in range(pos, end):
                layer = layers[i]
                t += time_of(layer)
                params += layer.params
                live = max(live, live_elements((layer,), model))
            pos = max(pos, end)
            if check_memory and dev.memory_bytes is not None:
                mem = peak_memory_bytes(params, live, max(pay(a), pay(b)), **bits)
                if mem > dev.memory_bytes:
                    out[b] = math.inf
                    continue
            out[b] = t + run_overhead_s if end > flat_of(a) + 1 else t
        return out

    # best[j] after device m: least latency with cut m at point j, and its back-pointer
    best = {START: 0.0}
    back: list[dict[int, int]] = []
    for m in range(m_dev):
        nxt: dict[int, float] = {}
        ptr: dict[int, int] = {}
        last = m == m_dev - 1
        targets = [END] if last else list(range(P))
        for a, base in best.items():
            if math.isinf(base):
                continue
            first = 0 if a == START else a
            rng = range(END, END + 1) if last else range(first, P)
            costs = segment_costs(m, a, rng)
            for b in targets:
                if b not in costs or math.isinf(costs[b]):
                    continue
                total = base + costs[b]
                if not last:
                    total += system.link(chain[m], chain[m + 1]).transfer_time_s(pay(b))
                if total < nxt.get(b, math.inf):
                    nxt[b] = total
                    ptr[b] = a
        if not nxt:
            return None
        best = nxt
        back.append(ptr)
    # walk back the pointers
    cuts: list[int] = []
    j = END
    for m in range(m_dev - 1, 0, -1):
        j = back[m][j]
        cuts.append(domain[j])
    return SplitResult(tuple(reversed(cuts)), best[END], True)


_ENUMERATION_LIMIT = 200_000


def _over(ev: Evaluation, devices: set[str]) -> bool:
    return any(dev in devices for dev in ev.memory_violations())


def mesh_cut_domains(
    macro: Macro, points: tuple[int, ...] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The split points (default: the space's cut domain) before the parallel stage and those
    after its merge."""
    p = macro.parallel_stage()
    if p is None:
        raise SpecError(
            "a mesh topology needs a space with a parallel stage",
            field="stages",
            allowed="a stage with parallel = number of branch devices",
        )
    first, last = macro.stages[p].layers[0], macro.stages[p].layers[-1]
    domain = sorted(cut_domain(macro) if points is None else set(points))
    return tuple(d for d in domain if d < first), tuple(d for d in domain if d >= last)


def _solve_mesh(
    macro: Macro,
    candidate: Candidate,
    system: System,
    *,
    respect_memory: bool,
    points: tuple[int, ...] | None,
) -> SplitResult:
    trunk, tail = mesh_cut_domains(macro, points)
    k = system.trunk_cuts
    u = system.cut_count - k
    for dom, count in ((trunk, k), (tail, u)):
        if count and not dom:
            raise SpecError("no split point available for the mesh", field="split.points")
    trunk_tuples = list(itertools.combinations_with_replacement(trunk, k))
    tail_tuples = list(itertools.combinations_with_replacement(tail, u))
    if len(trunk_tuples) + len(tail_tuples) > _ENUMERATION_LIMIT:
        raise SpecError(
            f"the mesh placement has more than {_ENUMERATION_LIMIT} cut tuples per group",
            field="split.points",
        )

    def run(cuts: tuple[int, ...]) -> Evaluation:
        return evaluate(build_network(macro, replace(candidate, cuts=cuts)), system)

    def best(
        tuples: list[tuple[int, ...]], make: Callable[[tuple[int, ...]], tuple[int, ...]], devices: set[str]
    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(least-latency tuple ignoring memory, least-latency tuple within the caps of `devices`)."""
        any_best: tuple[float, tuple[int, ...]] = (math.inf, tuples[0])
        ok_best: tuple[float, tuple[int, ...]] | None = None
        for t in tuples:
            ev = run(make(t))
            if ev.latency_s < any_best[0]:
                any_best = (ev.latency_s, t)
            if not _over(ev, devices) and (ok_best is None or ev.latency_s < ok_best[0]):
                ok_best = (ev.latency_s, t)
        return any_best[1], None if ok_best is None else ok_best[1]

    tail0 = tail_tuples[0]
    trunk_any, trunk_ok = best(trunk_tuples, lambda t: t + tail0, set(system.chain))
    trunk_pick = trunk_ok if respect_memory and trunk_ok is not None else trunk_any
    tail_any, tail_ok = best(tail_tuples, lambda t: trunk_pick + t, set(system.after))
    tail_pick = tail_ok if respect_memory and tail_ok is not None else tail_any
    cuts = trunk_pick + tail_pick
    ev = run(cuts)
    if respect_memory and ev.memory_violations():
        # no placement meets every cap (a group has none, or the branch devices are over):
        # the least latency ignoring memory, as on a chain
        cuts = trunk_any + best(tail_tuples, lambda t: trunk_any + t, set())[0]
        ev = run(cuts)
    return SplitResult(cuts, ev.latency_s, not ev.memory_violations())


def _solve_tree(macro: Macro, candidate: Candidate, system: System, *, respect_memory: bool) -> SplitResult:
    points = fuse_domain(macro)
    if not points:
        raise SpecError("a tree topology needs a multi-view space ([fusion])", field="fusion")
    any_best: tuple[float, int] | None = None
    ok_best: tuple[float, int] | None = None
    within_caps: set[int] = set()
    for f in points:
        ev = evaluate(build_network(macro, replace(candidate, fuse_after=f, cuts=(f,))), system)
        if any_best is None or ev.latency_s < any_best[0]:
            any_best = (ev.latency_s, f)
        if not ev.memory_violations():
            within_caps.add(f)
            if ok_best is None or ev.latency_s < ok_best[0]:
                ok_best = (ev.latency_s, f)
    assert any_best is not None
    latency_s, fuse = ok_best if respect_memory and ok_best is not None else any_best
    return SplitResult((fuse,), latency_s, fuse in within_caps, fuse_after=fuse)
