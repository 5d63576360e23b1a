"""Placement of a network on a system and its latency, per-device peak memory and energy.

Chain: JMSNAS eq. 1, T = sum over devices of compute plus the transfer to the next device.
Mesh: JMSNAS eq. 2, the chain part plus the slowest root -> branch -> aggregator path.
Tree: SplitNets multi-view; every leaf runs the per-view head on its view, payloads travel up
(hubs forward what they received), the root starts when the last arrives, fuses, runs the tail.
All-on-aggregator (the cut before the first layer): the leaves send their raw views and the root
runs the per-view layers once per view, then fuses and runs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasopt.core.memory import activation_elements, payload_bytes, peak_memory_bytes, weight_bytes
from nasopt.core.network import Network
from nasopt.core.system import Link, System
from nasopt.errors import SpecError


@dataclass
class Evaluation:
    """Latency breakdown, per-device peak memory and energy of one placed network."""

    latency_s: float
    compute_s: dict[str, float]
    transfer_s: dict[str, float]
    sent_bytes: dict[str, float]
    memory_bytes: dict[str, int]
    weight_bytes: dict[str, int]
    macs: dict[str, int]
    energy_j: float
    placement: list[str]  # device of every layer of the network (first leaf for per-view layers)
    memory_caps: dict[str, int | None] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3

    def memory_violations(self) -> dict[str, int]:
        """Bytes over the cap for each device whose peak memory exceeds its memory_bytes."""
        out = {}
        for dev, used in self.memory_bytes.items():
            cap = self.memory_caps.get(dev)
            if cap is not None and used > cap:
                out[dev] = used - cap
        return out


def evaluate(network: Network, system: System) -> Evaluation:
    """Place `network` on `system` by its cuts and compute the latency, memory and energy."""
    if system.kind == "tree":
        return _evaluate_tree(network, system)
    if network.fuse_after is not None:
        raise SpecError(
            f"a multi-view space needs a tree topology, the objective's is '{system.kind}'",
            field="topology.kind",
            allowed="tree",
        )
    if system.kind == "mesh":
        return _evaluate_mesh(network, system)
    return _evaluate_chain(network, system)


def _segments(cut_after: tuple[int, ...], n_layers: int) -> list[tuple[int, int]]:
    """Half-open flat layer ranges [start, end) per device for sorted cut indices."""
    bounds = [-1, *cut_after, n_layers - 1]
    return [(bounds[i] + 1, bounds[i + 1] + 1) for i in range(len(bounds) - 1)]


class _Acc:
    """Accumulates compute, memory and energy per device."""

    def __init__(self, network: Network, system: System) -> None:
        self.net = network
        self.sys = system
        self.compute_s: dict[str, float] = {}
        self.called: set[str] = set()  # devices that ran a layer (and paid run_overhead_s)
        self.memory: dict[str, int] = {}
        self.weights: dict[str, int] = {}
        self.activation: dict[str, int] = {}
        self.macs: dict[str, int] = {}
        self.transfer_s: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.energy_j = 0.0
        self.placement = [""] * len(network.layers)

    def run(self, device: str, start: int, end: int, buffered_bytes: float = 0.0, repeat: int = 1) -> float:
        """Run layers [start, end) on `device` `repeat` times in a row (one per view: the weights
        are held once, the compute, MACs and energy count every run). The device's first run
        of an inference pays its compute model's `run_overhead_s` (one call of its part)."""
        dev = self.sys.devices[device]
        layers = self.net.layers
        t = 0.0
        params = 0
        macs = 0
        model = dev.compute
        times = model.layer_times_s
        live = tensor = 0
        for layer in layers[start:end]:
            lt = times.get(layer)
            t += lt if lt is not None else model.layer_time_s(layer)
            params += layer.params
            macs += layer.macs
            if layer.peak_live_elems > live:
                live = layer.peak_live_elems
            if layer.peak_tensor_elems > tensor:
                tensor = layer.peak_tensor_elems
        live = activation_elements(dev.memory_model, live, tensor)
        if repeat != 1:
            t *= repeat
            macs *= repeat
        if end > start and device not in self.called:
            self.called.add(device)
            t += model.spec.run_overhead_s
        self.placement[start:end] = [device] * (end - start)
        net = self.net
        weights = weight_bytes(params, net.weight_bits)
        # activations and buffered payloads: the largest over this device's runs, on top of
        # the weights of all of them (a tree's root may run per-view and fused layers)
        act = peak_memory_bytes(
            0, live, buffered_bytes, weight_bits=net.weight_bits, activation_bits=net.activation_bits
        )
        self.compute_s[device] = self.compute_s.get(device, 0.0) + t
        if device in self.weights:  # a second run on this device (a tree's root)
            weights += self.weights[device]
            act = max(act, self.activation[device])
        self.weights[device] = weights
        self.activation[device] = act
        self.memory[device] = weights + act
        self.macs[device] = self.macs.get(device, 0) + macs
        self.energy_j += macs * dev.energy_j_per_mac
        return t

    def send(self, src: str, dst: str, payload_bytes: float) -> float:
        return self.send_over(self.sys.link(src, dst), payload_bytes)

    def send_over(self, link: Link, payload_bytes: float) -> float:
        t = link.transfer_time_s(payload_bytes)
        self.transfer_s[link.name] = self.transfer_s.get(link.name, 0.0) + t
        self.sent[link.name] = self.sent.get(link.name, 0.0) + payload_bytes
        self.energy_j += payload_bytes * 8.0 * link.energy_j_per_bit
        return t

    def result(self, latency_s: float) -> Evaluation:
        caps = self.sys.memory_caps
        return Evaluation(
            latency_s=latency_s,
            compute_s=self.compute_s,
            transfer_s=self.transfer_s,
            sent_bytes=self.sent,
            memory_bytes=self.memory,
            weight_bytes=self.weights,
            macs=self.macs,
            energy_j=self.energy_j,
            placement=self.placement,
            memory_caps=caps,
        )


def _payload_bytes(network: Network, k: int) -> float:
    return payload_bytes(network.sent_elems[k], network.sent_bits[k])


def _check_cuts(network: Network, expected: int, system: System) -> None:
    if len(network.cut_after) != expected:
        raise SpecError(
            f"the {system.kind} topology of {system.name} needs {expected} cut(s), "
            f"the candidate has {len(network.cut_after)}",
            field="cuts",
        )


def _evaluate_chain(network: Network, system: System) -> Evaluation:
    chain = system.chain
    _check_cuts(network, len(chain) - 1, system)
    acc = _Acc(network, system)
    total = 0.0
    payloads = [payload_bytes(e, b) for e, b in zip(network.sent_elems, network.sent_bits, strict=True)]
    payloads.append(0.0)  # the last device sends nothing on
    links = system.chain_links
    received = 0.0
    for m, (start, end) in enumerate(_segments(network.cut_after, len(network.layers))):
        sent = payloads[m]
        total += acc.run(chain[m], start, end, received if received > sent else sent)
        if m < len(links):
            total += acc.send_over(links[m], sent)
        received = sent
    return acc.result(total)


def _evaluate_mesh(network: Network, system: System) -> Evaluation:
    spans = network.branch_spans
    if len(spans) != len(system.branches):
        raise SpecError(
            f"the mesh of {system.name} has {len(system.branches)} branch devices, "
            f"the network has {len(spans)} parallel branches",
            field="topology.branches",
        )
    _check_cuts(network, system.cut_count, system)
    acc = _Acc(network, system)
    first_branch = spans[1][0]
    merge = spans[len(spans)][1] + 1
    trunk_cuts = network.cut_after[: system.trunk_cuts]
    tail_cuts = network.cut_after[system.trunk_cuts :]
    total = 0.0
    # chain part before and including the root
    bounds = [-1, *trunk_cuts, first_branch - 1]
    for m, device in enumerate(system.chain):
        start, end = bounds[m] + 1, bounds[m + 1] + 1
        received = _payload_bytes(network, m - 1) if m > 0 else 0.0
        t = acc.run(device, start, end, received)
        if device != system.root:
            total += t + acc.send(device, system.chain[m + 1], _payload_bytes(network, m))
    root = system.root
    assert root is not None  # build_system gives every mesh a root
    root_t = acc.compute_s.get(root, 0.0)
    bits = network.feature_bits
    if first_branch > 0:
        root_bytes = payload_bytes(network.layers[first_branch - 1].out_elems, bits)
    else:  # the parallel stage comes first: the root forwards the raw input as it received it
        root_bytes = payload_bytes(_input_elems(network), network.input_bits)
    slowest = 0.0
    for b, device in enumerate(system.branches, start=1):
        start, end = spans[b]
        t = root_t + acc.send(root, device, root_bytes)
        t += acc.run(device, start, end + 1, root_bytes)
        out_bytes = payload_bytes(network.layers[end].out_elems, bits)
        t += acc.send(device, system.after[0], out_bytes)
        slowest = max(slowest, t)
    total += slowest
    # after the branches: merge and tail along the `after` chain
    bounds = [merge - 1, *tail_cuts, len(network.layers) - 1]
    for m, device in enumerate(system.after):
        start, end = bounds[m] + 1, bounds[m + 1] + 1
        total += acc.run(device, start, end)
        if m < len(system.after) - 1:
            k = system.trunk_cuts + m
            total += acc.send(device, system.after[m + 1], _payload_bytes(network, k))
    return acc.result(total)


def _input_elems(network: Network) -> int:
    c, h, w = network.input_shape
    return c * h * w


def _evaluate_tree(network: Network, system: System) -> Evaluation:
    if network.fuse_after is None:
        raise SpecError(
            f"the tree topology of {system.name} needs a multi-view space ([fusion])",
            field="topology.kind",
            allowed="chain or mesh for single-view spaces",
        )
    if network.views != len(system.leaves):
        raise SpecError(
            f"the space fuses {network.views} views but the tree has {len(system.leaves)} leaves",
            field="topology.leaves",
        )
    _check_cuts(network, 1, system)
    acc = _Acc(network, system)
    cut = network.cut_after[0]
    payload = _payload_bytes(network, 0)
    # every leaf runs the per-view head; hubs forward the sum of what they received once the
    # last of it has arrived; the root starts when everything is in
    ready = {leaf: acc.run(leaf, 0, cut + 1, payload) for leaf in system.leaves}
    carried = dict.fromkeys(system.leaves, payload)
    senders = _senders(system)
    pending = list(system.leaves)
    hub_in: dict[str, list[tuple[float, float]]] = {}
    while pending:
        node = pending.pop()
        parent = system.parent[node]
        t_send = acc.send(node, parent, carried[node])
        hub_in.setdefault(parent, []).append((ready[node] + t_send, carried[node]))
        if parent != system.root and len(hub_in[parent]) == senders[parent]:
            ready[parent] = max(t for t, _ in hub_in[parent])
            carried[parent] = sum(s for _, s in hub_in[parent])
            acc.run(parent, 0, 0, carried[parent])
            pending.append(parent)
    root = system.root
    assert root is not None  # build_system gives every tree a root
    start = max(t for t, _ in hub_in[root])
    received = sum(s for _, s in hub_in[root])
    fused = network.fuse_after + 1  # the first layer that runs once, on all views
    root_t = 0.0
    if cut + 1 < fused:  # the per-view layers the sensors left: once per view
        root_t += acc.run(root, cut + 1, fused, received, repeat=network.views)
    root_t += acc.run(root, max(cut + 1, fused), len(network.layers), received)
    for i in range(cut + 1):
        acc.placement[i] = system.leaves[0]
    return acc.result(start + root_t)


def _senders(system: System) -> dict[str, int]:
    """For every tree node, how many nodes on the leaves' paths send directly to it."""
    edges = set()
    for leaf in system.leaves:
        cur = leaf
        while cur != system.root:
            edges.add((cur, system.parent[cur]))
            cur = system.parent[cur]
    counts: dict[str, int] = {}
    for _, dst in edges:
        counts[dst] = counts.get(dst, 0) + 1
    return counts
