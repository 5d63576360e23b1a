"""Latency-optimal contiguous placement of a fixed network on a chain, under memory caps.

Dynamic programming over the cut points (Neurosurgeon / DNN-surgery generalised to M devices):
best[m][j] is the least latency with devices 0..m-1 done and cut m after split point j. The
segment cost uses exactly the formulas of `nasopt.latency` (compute per layer, Wang's transfer
model, peak memory = weights + max(live activations, buffered payload)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, cut_domain
from nasopt.core.memory import live_elements, payload_bytes, peak_memory_bytes
from nasopt.core.network import build_network
from nasopt.core.system import System
from nasopt.errors import SpecError


@dataclass(frozen=True)
class SplitResult:
    """Best cuts (layer indices, -1 = send the input) and the latency they give."""

    cuts: tuple[int, ...]
    latency_s: float
    feasible: bool

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3


def optimal_split(
    macro: Macro, candidate: Candidate, system: System, *, respect_memory: bool = True
) -> SplitResult:
    """The latency-optimal cuts of `candidate`'s architecture on the chain `system`.

    Returns `feasible=False` (and the least-latency placement ignoring memory) when no
    placement meets every device's memory cap.
    """
    if system.kind != "chain":
        raise SpecError("optimal_split needs a chain topology", field="topology.kind", value=system.kind)
    if candidate.bottleneck_width or candidate.fuse_after is not None:
        raise SpecError(
            "optimal_split places a fixed network: use a candidate without bottleneck or fusion",
            field="candidate",
        )
    n_cuts = len(system.chain) - 1
    domain = tuple(sorted(cut_domain(macro)))
    if n_cuts == 0:
        from nasopt.core.evaluation import evaluate

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
        """Compute time of device `device_index` from point a to each b (inf when over memory)."""
        dev = system.devices[chain[device_index]]
        time_of = dev.compute.layer_time_s
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
            out[b] = t
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
