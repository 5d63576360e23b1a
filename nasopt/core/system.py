"""Devices, links and topologies of a target system, built and checked from an objective spec.

Links carry `bandwidth_bps` of their own or a fair share of a medium; chain, mesh and tree
topologies are resolved into the roles the evaluation needs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from nasopt.core.compute import ComputeModel
from nasopt.core.contexts import LinkVariation, build_variation
from nasopt.errors import SpecError
from nasopt.spec import LinkSpec, ObjectiveSpec


@dataclass
class Device:
    name: str
    memory_bytes: int | None
    compute: ComputeModel
    energy_j_per_mac: float = 0.0
    memory_model: str = "liveness"  # a key of nasopt.core.memory.MEMORY_MODELS


@dataclass
class Link:
    name: str
    src: str
    dst: str
    bandwidth_bps: float
    latency_s: float = 0.0
    size_intercept_s: float = 0.0
    size_s_per_byte: float = 0.0
    loss_rate: float = 0.0
    energy_j_per_bit: float = 0.0
    medium: str | None = None

    # f(S|W) fitted at several bandwidths: (bandwidth_bps, intercept_s, s_per_byte), increasing
    size_by_bandwidth: tuple[tuple[float, float, float], ...] = ()
    # a varying bandwidth (contexts, Markov chain or trace); bandwidth_bps, latency_s and
    # loss_rate then hold its expected context (nasopt.core.robust evaluates the rest)
    variation: LinkVariation | None = None

    def size_term(self) -> tuple[float, float]:
        """(intercept_s, s_per_byte) of f(S|W) at this link's bandwidth W: the fixed fit, or the
        fits at neighbouring bandwidths interpolated linearly in W (the nearest outside them)."""
        points = self.size_by_bandwidth
        if not points:
            return self.size_intercept_s, self.size_s_per_byte
        w = self.bandwidth_bps
        if w <= points[0][0]:
            return points[0][1], points[0][2]
        for (w0, a0, b0), (w1, a1, b1) in itertools.pairwise(points):
            if w <= w1:
                t = (w - w0) / (w1 - w0)
                return a0 + t * (a1 - a0), b0 + t * (b1 - b0)
        return points[-1][1], points[-1][2]

    def transfer_time_s(self, payload_bytes: float) -> float:
        """Wang et al. eq. 6: T = f(S|W) + S/W, plus a fixed propagation latency."""
        if payload_bytes <= 0:
            return 0.0
        if self.size_by_bandwidth:
            intercept_s, s_per_byte = self.size_term()
        else:
            intercept_s, s_per_byte = self.size_intercept_s, self.size_s_per_byte
        transmission_s = 8.0 * payload_bytes / self.bandwidth_bps
        return self.latency_s + intercept_s + s_per_byte * payload_bytes + transmission_s


@dataclass
class System:
    """A checked system: devices, links by (src, dst), and the topology's roles."""

    name: str
    kind: str
    devices: dict[str, Device]
    links: dict[str, Link]
    chain: list[str] = field(default_factory=list)  # chain: all; mesh: before + root
    root: str | None = None
    branches: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)
    parent: dict[str, str] = field(default_factory=dict)

    def link(self, src: str, dst: str) -> Link:
        return self._by_pair[(src, dst)]

    def __post_init__(self) -> None:
        self._by_pair = {(link.src, link.dst): link for link in self.links.values()}
        self.memory_caps = {name: dev.memory_bytes for name, dev in self.devices.items()}
        pairs = zip(self.chain, self.chain[1:], strict=False)
        self.chain_links = [self._by_pair[p] for p in pairs] if self.kind == "chain" else []

    @property
    def cut_count(self) -> int:
        """How many cut points a candidate needs on this system."""
        if self.kind == "chain":
            return len(self.chain) - 1
        if self.kind == "mesh":
            return len(self.chain) - 1 + len(self.after) - 1
        return 1

    @property
    def trunk_cuts(self) -> int:
        """Mesh: cuts before the parallel branches (the rest fall after the merge)."""
        return len(self.chain) - 1 if self.kind == "mesh" else self.cut_count


def _expand(name: str, groups: dict[str, list[str]]) -> list[str]:
    return groups.get(name, [name])


def build_system(spec: ObjectiveSpec) -> System:
    """Check an objective's system and resolve groups, media shares and the topology."""
    groups: dict[str, list[str]] = {}
    devices: dict[str, Device] = {}
    for name, dev in spec.devices.items():
        names = [name] if dev.count == 1 else [f"{name}{i}" for i in range(dev.count)]
        groups[name] = names
        model = ComputeModel(dev.compute, f"devices.{name}.compute")
        for n in names:
            devices[n] = Device(n, dev.memory_bytes, model, dev.energy_j_per_mac, dev.memory_model)
    known_devices = sorted(set(devices) | set(groups))

    expanded: list[tuple[str, str, str, LinkSpec]] = []
    for lname, link in spec.links.items():
        for end in ("src", "dst"):
            value = getattr(link, end)
            if value not in groups and value not in devices:
                raise SpecError(
                    "unknown device in a link",
                    field=f"links.{lname}.{end}",
                    value=value,
                    allowed=known_devices,
                )
        given = [k for k in ("bandwidth_bps", "medium", "contexts") if getattr(link, k) is not None]
        if len(given) != 1:
            raise SpecError(
                "give exactly one of bandwidth_bps, medium or contexts",
                field=f"links.{lname}",
                value=given or None,
                allowed=["bandwidth_bps", "medium", "contexts"],
            )
        if link.medium is not None and link.medium not in spec.media:
            raise SpecError(
                "unknown medium",
                field=f"links.{lname}.medium",
                value=link.medium,
                allowed=sorted(spec.media) or "(no [media] declared)",
            )
        srcs, dsts = _expand(link.src, groups), _expand(link.dst, groups)
        if len(srcs) > 1 and len(dsts) > 1 and len(srcs) != len(dsts):
            raise SpecError("grouped src and dst must have the same count", field=f"links.{lname}")
        pairs = (
            list(zip(srcs, dsts, strict=True))
            if len(srcs) == len(dsts)
            else [(s, d) for s in srcs for d in dsts]
        )
        for i, (s, d) in enumerate(pairs):
            if s == d:
                raise SpecError("a link cannot connect a device to itself", field=f"links.{lname}", value=s)
            expanded.append((lname if len(pairs) == 1 else f"{lname}{i}", s, d, link))

    per_medium: dict[str, int] = {}
    for _, _, _, link in expanded:
        if link.medium is not None:
            per_medium[link.medium] = per_medium.get(link.medium, 0) + 1
    links: dict[str, Link] = {}
    seen_pairs: set[tuple[str, str]] = set()
    variations: dict[int, LinkVariation] = {}  # one per spec link (a trace is read once)
    for name, s, d, ls in expanded:
        if (s, d) in seen_pairs:
            raise SpecError("two links join the same devices", field=f"links.{name}", value=f"{s}->{d}")
        seen_pairs.add((s, d))
        if ls.medium is not None:
            medium = spec.media[ls.medium]
            sharers = medium.sharers or per_medium[ls.medium]
            bandwidth = medium.bandwidth_bps / sharers
        elif ls.contexts is not None:
            variation = variations.get(id(ls))
            if variation is None:
                variation = build_variation(
                    ls.contexts,
                    latency_s=ls.latency_s,
                    loss_rate=ls.loss_rate,
                    field=f"links.{name}.contexts",
                )
                variations[id(ls)] = variation
            bandwidth = variation.nominal()[0]
        else:
            assert ls.bandwidth_bps is not None  # exactly one of the two, checked above
            bandwidth = ls.bandwidth_bps
        size = ls.size_term
        variation = variations.get(id(ls))
        latency_s, loss_rate = (ls.latency_s, ls.loss_rate) if variation is None else variation.nominal()[1:]
        links[name] = Link(
            name=name,
            src=s,
            dst=d,
            bandwidth_bps=bandwidth,
            latency_s=latency_s,
            size_intercept_s=size.intercept_s if size else 0.0,
            size_s_per_byte=size.s_per_byte if size else 0.0,
            size_by_bandwidth=tuple(
                (p.bandwidth_bps, p.intercept_s, p.s_per_byte) for p in (size.by_bandwidth if size else [])
            ),
            loss_rate=loss_rate,
            energy_j_per_bit=ls.energy_j_per_bit,
            medium=ls.medium,
            variation=variation,
        )
    return _topology(spec, devices, links, groups)


def _topology(
    spec: ObjectiveSpec, devices: dict[str, Device], links: dict[str, Link], groups: dict[str, list[str]]
) -> System:
    topo = spec.topology
    pairs = {(link.src, link.dst) for link in links.values()}
    allowed = sorted(set(devices) | set(groups))

    def resolve(names: list[str], key: str) -> list[str]:
        out: list[str] = []
        for i, n in enumerate(names):
            if n not in devices and n not in groups:
                raise SpecError("unknown device", field=f"topology.{key}[{i}]", value=n, allowed=allowed)
            out.extend(_expand(n, groups))
        return out

    def need_link(src: str, dst: str, key: str) -> None:
        if (src, dst) not in pairs:
            raise SpecError(
                f"no link from {src} to {dst}", field=f"topology.{key}", allowed="declare it in [links]"
            )

    def no_repeats(names: list[str], key: str | list[str]) -> None:
        seen: set[str] = set()
        keys = [key] * len(names) if isinstance(key, str) else key
        for n, k in zip(names, keys, strict=True):
            if n in seen:
                raise SpecError(
                    "cycle in the topology: a device appears twice", field=f"topology.{k}", value=n
                )
            seen.add(n)

    name = spec.name
    if topo.kind == "chain":
        chain = resolve(topo.devices, "devices")
        if not chain:
            raise SpecError("a chain needs at least one device", field="topology.devices")
        no_repeats(chain, "devices")
        for a, b in itertools.pairwise(chain):
            need_link(a, b, "devices")
        return System(name, "chain", devices, links, chain=chain)
    if topo.kind == "mesh":
        if topo.root is None:
            raise SpecError("a mesh needs a root device", field="topology.root")
        before = resolve(topo.before, "before")
        root = resolve([topo.root], "root")[0]
        branches = resolve(topo.branches, "branches")
        after = resolve(topo.after, "after")
        if len(branches) < 2:
            raise SpecError(
                "a mesh needs at least two branch devices", field="topology.branches", value=branches
            )
        if not after:
            raise SpecError("a mesh needs a device after the branches", field="topology.after")
        no_repeats(
            [*before, root, *branches, *after],
            ["before"] * len(before) + ["root"] + ["branches"] * len(branches) + ["after"] * len(after),
        )
        chain = [*before, root]
        for a, b in itertools.pairwise(chain):
            need_link(a, b, "before")
        for b in branches:
            need_link(root, b, "branches")
            need_link(b, after[0], "branches")
        for a, b in itertools.pairwise(after):
            need_link(a, b, "after")
        return System(name, "mesh", devices, links, chain=chain, root=root, branches=branches, after=after)
    # tree: leaves send toward the root, following their single outgoing link
    if topo.root is None:
        raise SpecError("a tree needs a root device", field="topology.root")
    root = resolve([topo.root], "root")[0]
    leaves = resolve(topo.leaves, "leaves")
    if not leaves:
        raise SpecError("a tree needs leaves", field="topology.leaves")
    no_repeats(leaves, "leaves")
    parent: dict[str, str] = {}
    uplink: dict[str, str] = {}
    for link in links.values():
        if link.src in parent:
            raise SpecError(
                f"a tree device may have only one uplink ({link.src} already sends over {uplink[link.src]})",
                field=f"links.{link.name}",
                value=f"{link.src}->{link.dst}",
            )
        parent[link.src] = link.dst
        uplink[link.src] = link.name
    for leaf in leaves:
        node, path = leaf, [leaf]
        while node != root:
            if node not in parent:
                raise SpecError(
                    f"no path from {leaf} to the root {root}", field="topology.leaves", value=leaf
                )
            closing = uplink[node]
            node = parent[node]
            if node in path:
                raise SpecError(
                    "cycle in the topology", field=f"links.{closing}", value=" -> ".join([*path, node])
                )
            path.append(node)
    return System(name, "tree", devices, links, root=root, leaves=leaves, parent=parent)
