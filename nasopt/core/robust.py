"""Robust latency over a system's network contexts: mean, 95th percentile, worst case and the
fraction of inferences over a deadline.

Exact when every varying link has discrete contexts (each combination of contexts is one
evaluation, weighted by its probability; links vary independently); otherwise the inference is
replayed, vectorised, from `samples` seeded start times along the links' timelines (Markov
paths, traces), where the bandwidth may change during a transfer. Replay covers chains."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from nasopt.core.contexts import Context, Timeline
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.network import Network
from nasopt.core.system import Link, System
from nasopt.errors import SpecError

ROBUST_METRICS: dict[str, str] = {
    "latency_mean_ms": "expected latency over the network contexts",
    "latency_p95_ms": "95th-percentile latency over the network contexts",
    "latency_worst_ms": "worst-case latency over the network contexts",
    "deadline_miss": "fraction of inferences over robust.deadline_ms",
}
QUANTILE = 0.95
MAX_COMBINATIONS = 4096  # discrete context combinations evaluated exactly; beyond: simulated


@dataclass(frozen=True)
class LatencyDistribution:
    """Latencies (s) with their probabilities; `exact` when enumerated, not simulated;
    `labels` name each combination of contexts (exact only)."""

    latency_s: np.ndarray
    weights: np.ndarray
    exact: bool
    labels: tuple[str, ...] = ()

    def summary(self, deadline_ms: float | None) -> dict[str, float]:
        """The robust metrics (ms; deadline_miss a fraction, NaN without a deadline)."""
        return robust_summary(self.latency_s, self.weights, deadline_ms)


def robust_summary(latency_s: np.ndarray, weights: np.ndarray, deadline_ms: float | None) -> dict[str, float]:
    """Weighted mean, 95th percentile (the smallest latency with P(L <= x) >= 0.95), worst case
    (largest latency of positive probability) and P(L > deadline)."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    lat = np.asarray(latency_s, dtype=float)
    order = np.argsort(lat, kind="stable")
    cdf = np.cumsum(w[order])
    q_idx = int(np.searchsorted(cdf, QUANTILE - 1e-12, side="left"))
    q = lat[order][min(q_idx, len(lat) - 1)]
    out = {
        "latency_mean_ms": float(np.dot(w, lat)) * 1e3,
        "latency_p95_ms": float(q) * 1e3,
        "latency_worst_ms": float(lat[w > 0].max()) * 1e3,
        "deadline_miss": float("nan"),
    }
    if deadline_ms is not None:
        out["deadline_miss"] = min(1.0, float(w[lat * 1e3 > deadline_ms].sum()))
    return out


def varying_links(system: System) -> list[Link]:
    return [link for link in system.links.values() if link.variation is not None]


def with_contexts(system: System, chosen: dict[str, Context]) -> System:
    """The same system with each named link fixed to one context."""
    links = dict(system.links)
    for name, ctx in chosen.items():
        links[name] = replace(
            links[name], bandwidth_bps=ctx.bandwidth_bps, latency_s=ctx.latency_s, loss_rate=ctx.loss_rate
        )
    return replace(system, links=links)


def latency_distribution(
    network: Network,
    system: System,
    *,
    samples: int = 2000,
    seed: int = 0,
    simulate: bool = False,
    ev: Evaluation | None = None,
) -> LatencyDistribution:
    """The latency of `network` on `system` over its links' contexts (see the module doc);
    `simulate` replays discrete contexts too (drawn per inference), to check the exact form."""
    varying = varying_links(system)
    if not varying:
        ev = ev or evaluate(network, system)
        return LatencyDistribution(np.array([ev.latency_s]), np.ones(1), True, ("nominal",))
    discrete = all(link.variation is not None and link.variation.kind == "discrete" for link in varying)
    combos = 1
    for link in varying:
        assert link.variation is not None
        combos *= len(link.variation.contexts)
    if discrete and not simulate and combos <= MAX_COMBINATIONS:
        return _exact(network, system, varying)
    return _replay(network, system, varying, samples, seed, ev)


def _exact(network: Network, system: System, varying: list[Link]) -> LatencyDistribution:
    lat, weights, labels = [], [], []
    per_link = []
    for link in varying:
        assert link.variation is not None
        per_link.append(list(zip(link.variation.contexts, link.variation.probabilities, strict=True)))
    for combo in itertools.product(*per_link):
        chosen = {link.name: ctx for link, (ctx, _) in zip(varying, combo, strict=True)}
        p = float(np.prod([pi for _, pi in combo]))
        lat.append(evaluate(network, with_contexts(system, chosen)).latency_s)
        weights.append(p)
        labels.append(",".join(f"{name}={ctx.name}" for name, ctx in chosen.items()))
    return LatencyDistribution(np.array(lat), np.array(weights), True, tuple(labels))


@dataclass(frozen=True)
class LinkReplay:
    """One varying link as `samples` inferences see it: along a timeline from each sample's
    start time (Markov, trace), or in one context drawn per inference (discrete)."""

    link: Link
    timeline: Timeline | None
    start_s: np.ndarray
    state: np.ndarray | None = None  # discrete: the context of each inference

    def context_at(self, clock_s: np.ndarray) -> np.ndarray:
        """The context index each sample observes at `clock_s` after its start (-1: unnamed)."""
        if self.timeline is None:
            assert self.state is not None
            return self.state
        return np.asarray(self.timeline.state[self.timeline.segment(self.start_s + clock_s)])

    def finish(self, clock_s: np.ndarray, payload_bytes: float | np.ndarray) -> np.ndarray:
        """The clock when sending `payload_bytes` (one or one per sample) from `clock_s` ends:
        the fixed part (latency, f(S|W)) at the bandwidth it starts under, then the bits."""
        payload = np.broadcast_to(np.asarray(payload_bytes, dtype=float), clock_s.shape)
        if self.timeline is None:
            assert self.link.variation is not None and self.state is not None
            ctx = self.link.variation.contexts
            w = np.array([c.bandwidth_bps for c in ctx])[self.state]
            lat = np.array([c.latency_s for c in ctx])[self.state]
            intercept, slope = size_terms(self.link, w)
            t = lat + intercept + slope * payload + 8.0 * payload / w
            return np.asarray(clock_s + np.where(payload > 0, t, 0.0))
        tl = self.timeline
        t0 = self.start_s + clock_s
        seg = tl.segment(t0)
        intercept, slope = size_terms(self.link, tl.bandwidth_bps[seg])
        fixed = tl.latency_s[seg] + intercept + slope * payload
        end = tl.finish_s(t0 + fixed, 8.0 * payload) - self.start_s
        return np.asarray(np.where(payload > 0, end, clock_s))


def size_terms(link: Link, bandwidth_bps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(S|W)'s (intercept_s, s_per_byte) at each bandwidth, as `Link.size_term` computes it."""
    points = link.size_by_bandwidth
    if not points:
        n = len(bandwidth_bps)
        return np.full(n, link.size_intercept_s), np.full(n, link.size_s_per_byte)
    ws = [p[0] for p in points]
    return np.interp(bandwidth_bps, ws, [p[1] for p in points]), np.interp(
        bandwidth_bps, ws, [p[2] for p in points]
    )


def link_replays(varying: list[Link], samples: int, seed: int) -> dict[str, LinkReplay]:
    """Every varying link as `samples` seeded inferences see it; links other than discrete
    share one start time per sample (their timelines are aligned in time)."""
    rng = np.random.default_rng(seed)
    shared = rng.random(samples)
    out: dict[str, LinkReplay] = {}
    for link in varying:
        var = link.variation
        assert var is not None
        if var.kind == "discrete":
            state = rng.choice(len(var.contexts), size=samples, p=var.probabilities)
            out[link.name] = LinkReplay(link, None, np.zeros(samples), state)
        else:
            tl = var.timeline(seed)
            out[link.name] = LinkReplay(link, tl, shared * tl.period_s)
    return out


def _replay(
    network: Network, system: System, varying: list[Link], samples: int, seed: int, ev: Evaluation | None
) -> LatencyDistribution:
    if system.kind != "chain":
        name = varying[0].name
        raise SpecError(
            f"replaying a varying bandwidth covers chain topologies, {system.name} is a {system.kind}",
            field=f"links.{name}.contexts.kind",
            allowed="discrete contexts on mesh and tree topologies",
        )
    ev = ev or evaluate(network, system)
    replays = link_replays(varying, samples, seed)
    clock = np.zeros(samples)  # seconds since each sampled inference started
    for m, device in enumerate(system.chain):
        clock = clock + ev.compute_s.get(device, 0.0)
        if m == len(system.chain_links):
            break
        link = system.chain_links[m]
        payload = ev.sent_bytes.get(link.name, 0.0)
        if link.name in replays:
            clock = replays[link.name].finish(clock, payload)
        else:
            clock = clock + link.transfer_time_s(payload)
    return LatencyDistribution(clock, np.ones(samples), False)
