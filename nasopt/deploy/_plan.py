"""Which part of a `Subnet` each device of a system runs, and what travels over each link.

Chain: device m runs from cut m - 1 (the input for the first) to cut m (the logits for the
last); devices between equal cuts relay what they receive; after a cut at the last layer
(nothing sent) the remaining devices are idle. Mesh: the devices before and the root run the
trunk up to the parallel stage, the root sends the stage input to every branch device, each
branch device runs its branch and sends its output to the first device after the branches,
which merges them and runs on along the `after` chain. Tree: every leaf runs the per-view head
on its own view up to the cut, hubs forward what they receive, the root dequantises the
views' payloads, fuses them (View-Fuse concat, View-Pool max or mean) and runs the tail. All on
the aggregator (cuts (-1,)): every leaf sends its raw view (float32), the root runs the per-view
trunks on all of them (and the Conv-Reduce, with a bottleneck), fuses and runs the tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasopt.core.system import System
from nasopt.deploy._parts import Boundary, CutEvent, cut_events
from nasopt.deploy._subnet import Subnet
from nasopt.errors import SpecError


@dataclass
class PartPlan:
    device: str
    role: str  # "compute" | "relay" | "idle"
    start: Boundary = field(default_factory=lambda: Boundary("input"))
    stop: Boundary = field(default_factory=lambda: Boundary("output"))
    branch: int = 0
    views: int = 1
    view: int | None = None  # tree leaves: which view of the input this device gets
    sources: list[str] = field(default_factory=list)  # devices whose outputs it receives, in order
    event: CutEvent | None = None  # the cut whose payload it sends (None: logits or a fork/branch)


def plan_parts(sub: Subnet, system: System) -> list[PartPlan]:
    """One `PartPlan` per device that takes part, in execution order."""
    events = cut_events(sub)
    by_ordinal: dict[int, CutEvent] = {}
    for e in events:
        for k in range(e.first, e.first + e.cut.copies):
            by_ordinal[k] = e
    n_cuts = sum(e.cut.copies for e in events)
    if system.kind == "chain":
        return _chain(system.chain, by_ordinal, 0, n_cuts, Boundary("input"), [])
    if system.kind == "mesh":
        return _mesh(sub, system, by_ordinal, n_cuts)
    return _tree(sub, system, by_ordinal, n_cuts)


def _chain(
    devices: list[str],
    by_ordinal: dict[int, CutEvent],
    first_cut: int,
    n_cuts: int,
    start: Boundary,
    sources: list[str],
    *,
    ends: bool = True,
) -> list[PartPlan]:
    """Devices in a row from `start`; device m stops at cut `first_cut + m`, the last at the
    logits if `ends` (else at its cut too: a mesh's devices before the root)."""
    plans: list[PartPlan] = []
    idle = False
    prev_event: CutEvent | None = None
    for m, device in enumerate(devices):
        k = first_cut + m
        last = ends and m == len(devices) - 1
        if idle:
            plans.append(PartPlan(device, "idle"))
            continue
        event = by_ordinal.get(k) if not last else None
        if not last and event is None:
            raise SpecError(f"the chain needs a cut for {device}", field="cuts")
        if m > 0 and prev_event is not None and event is prev_event:
            plans.append(PartPlan(device, "relay", sources=sources, event=event))
            sources = [device]
            continue
        stop = Boundary("output") if last or (event is not None and not event.sends) else Boundary("cut", k)
        plans.append(
            PartPlan(
                device,
                "compute",
                start if m == 0 else Boundary("cut", k - 1),
                stop,
                sources=sources,
                event=event if stop.kind == "cut" else None,
            )
        )
        if stop.kind == "output":
            idle = True
        sources = [device]
        prev_event = event
    return plans


def _mesh(sub: Subnet, system: System, by_ordinal: dict[int, CutEvent], n_cuts: int) -> list[PartPlan]:
    trunk = len(system.chain) - 1
    p_start = sub.macro.parallel_start
    events = {id(e): e for e in by_ordinal.values()}.values()
    if sum(e.cut.copies for e in events if e.cut.point < p_start) != trunk:
        raise SpecError(
            f"the mesh needs {trunk} cut(s) before the parallel stage (layer {p_start})", field="cuts"
        )
    plans = _chain(system.chain[:-1], by_ordinal, 0, trunk, Boundary("input"), [], ends=False)
    root = system.chain[-1]
    start = Boundary("input") if trunk == 0 else Boundary("cut", trunk - 1)
    sources = [system.chain[-2]] if trunk else []
    plans.append(PartPlan(root, "compute", start, Boundary("fork"), sources=sources))
    for b, device in enumerate(system.branches, start=1):
        plans.append(
            PartPlan(device, "compute", Boundary("fork"), Boundary("join"), branch=b, sources=[root])
        )
    after = _chain(system.after, by_ordinal, trunk, n_cuts - trunk, Boundary("join"), list(system.branches))
    return plans + after


def _tree(sub: Subnet, system: System, by_ordinal: dict[int, CutEvent], n_cuts: int) -> list[PartPlan]:
    event = by_ordinal[0]
    plans = [
        PartPlan(leaf, "compute", Boundary("input"), Boundary("cut", 0), view=v, event=event)
        for v, leaf in enumerate(system.leaves)
    ]
    # hubs, nearest the leaves first, each forwarding what its children send
    children: dict[str, list[str]] = {}
    for leaf in system.leaves:
        node = leaf
        while node != system.root:
            parent = system.parent[node]
            kids = children.setdefault(parent, [])
            if node not in kids:
                kids.append(node)
            node = parent
    order: list[str] = []
    frontier = list(system.leaves)
    while frontier:
        nxt = []
        for node in frontier:
            up = system.parent.get(node)
            if (
                up is not None
                and up != system.root
                and up not in order
                and all(c in order or c in system.leaves for c in children[up])
            ):
                order.append(up)
                nxt.append(up)
        frontier = nxt
    for hub in order:
        plans.append(PartPlan(hub, "relay", sources=children[hub], event=event))
    root = system.root
    assert root is not None
    plans.append(
        PartPlan(
            root,
            "compute",
            Boundary("cut", 0),
            Boundary("output"),
            views=len(system.leaves),
            sources=children[root],
        )
    )
    return plans
