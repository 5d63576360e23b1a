"""Network contexts of a varying link: discrete contexts, a Markov chain over them, or a trace,
and the timeline an inference replays (bandwidth, context and fixed latency over time).

A transfer of S bytes started at t pays the fixed part (latency_s + f(S|W)) at the bandwidth
W(t) it starts under, then sends 8S bits through the time-varying bandwidth: it ends where the
cumulative capacity has grown by 8S (exact for a piecewise-constant bandwidth)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nasopt.core.traces import load_trace
from nasopt.errors import SpecError
from nasopt.spec import LinkContextsSpec

MARKOV_STEPS = 20_000  # length of a replayed Markov path (it then repeats)


@dataclass(frozen=True)
class Context:
    name: str
    bandwidth_bps: float
    latency_s: float
    loss_rate: float


@dataclass(frozen=True)
class Timeline:
    """Piecewise-constant link state over one period (it repeats): segment i holds from
    edges_s[i] to edges_s[i + 1] with bandwidth_bps[i], context index state[i] (-1: none
    named) and fixed latency latency_s[i]."""

    edges_s: np.ndarray
    bandwidth_bps: np.ndarray
    state: np.ndarray
    latency_s: np.ndarray

    def __post_init__(self) -> None:
        cum = np.concatenate([[0.0], np.cumsum(self.bandwidth_bps * np.diff(self.edges_s))])
        object.__setattr__(self, "_cum", cum)

    @property
    def period_s(self) -> float:
        return float(self.edges_s[-1])

    def segment(self, t_s: np.ndarray) -> np.ndarray:
        """Segment index of every time (the period repeats)."""
        local = np.mod(t_s, self.period_s)
        idx = np.searchsorted(self.edges_s, local, side="right") - 1
        return np.clip(idx, 0, len(self.bandwidth_bps) - 1)

    def finish_s(self, t_s: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """When sending `bits` started at `t_s` ends (vectorised)."""
        cum: np.ndarray = self._cum  # type: ignore[attr-defined]
        total = cum[-1]
        period = self.period_s
        k = np.floor(t_s / period)
        start = k * total + np.interp(t_s - k * period, self.edges_s, cum)
        target = start + bits
        k2 = np.floor(target / total)
        return np.asarray(k2 * period + np.interp(target - k2 * total, cum, self.edges_s))


@dataclass(frozen=True)
class LinkVariation:
    """A link's varying bandwidth, checked; `probabilities` are the contexts' long-run shares
    (discrete: as given; markov: stationary; trace: share of time nearest each named level)."""

    kind: str
    contexts: tuple[Context, ...]
    probabilities: np.ndarray
    transition: np.ndarray | None = None
    step_s: float = 0.0
    trace_edges_s: np.ndarray | None = None
    trace_bandwidth_bps: np.ndarray | None = None
    base_latency_s: float = 0.0
    _paths: dict[int, Timeline] = field(default_factory=dict, compare=False, repr=False)

    def nominal(self) -> tuple[float, float, float]:
        """(bandwidth_bps, latency_s, loss_rate) of the expected context: the long-run mean
        (a trace's time-weighted mean bandwidth)."""
        if self.kind == "trace":
            assert self.trace_edges_s is not None and self.trace_bandwidth_bps is not None
            dt = np.diff(self.trace_edges_s)
            bw = float(np.sum(self.trace_bandwidth_bps * dt) / np.sum(dt))
            if not self.contexts:
                return bw, self.base_latency_s, 0.0
        p = self.probabilities
        lat = float(sum(pi * c.latency_s for pi, c in zip(p, self.contexts, strict=True)))
        loss = float(sum(pi * c.loss_rate for pi, c in zip(p, self.contexts, strict=True)))
        if self.kind != "trace":
            bw = float(sum(pi * c.bandwidth_bps for pi, c in zip(p, self.contexts, strict=True)))
        return bw, lat, loss

    def nearest_context(self, bandwidth_bps: np.ndarray) -> np.ndarray:
        """Index of the named context nearest in log-bandwidth (Alg. 2: match the measured
        bandwidth to a branch)."""
        levels = np.log(np.array([c.bandwidth_bps for c in self.contexts]))
        return np.asarray(np.argmin(np.abs(np.log(bandwidth_bps)[:, None] - levels[None, :]), axis=1))

    def timeline(self, seed: int) -> Timeline:
        """The state over time: the trace itself, or a Markov path of MARKOV_STEPS steps drawn
        with `seed` from the stationary distribution (kept: the same seed, the same path).
        Discrete contexts have none."""
        if self.kind == "trace":
            assert self.trace_edges_s is not None and self.trace_bandwidth_bps is not None
            edges = self.trace_edges_s - self.trace_edges_s[0]
            bw = self.trace_bandwidth_bps
            state = self.nearest_context(bw) if self.contexts else np.full(len(bw), -1)
            lat = (
                np.array([self.contexts[s].latency_s for s in state])
                if self.contexts
                else np.full(len(bw), self.base_latency_s)
            )
            return Timeline(edges, bw, state, lat)
        if self.kind == "markov":
            assert self.transition is not None
            if seed in self._paths:
                return self._paths[seed]
            n = MARKOV_STEPS
            rng = np.random.default_rng(seed)
            cdf = np.cumsum(self.transition, axis=1)
            u = rng.random(n)
            states = np.empty(n, dtype=int)
            states[0] = int(np.searchsorted(np.cumsum(self.probabilities), u[0], side="right"))
            prev = int(states[0])
            for i in range(1, n):
                prev = int((u[i] > cdf[prev]).sum())
                states[i] = prev
            states = np.minimum(states, len(self.contexts) - 1)
            bw = np.array([c.bandwidth_bps for c in self.contexts])[states]
            lat = np.array([c.latency_s for c in self.contexts])[states]
            self._paths[seed] = Timeline(np.arange(n + 1) * self.step_s, bw, states, lat)
            return self._paths[seed]
        raise ValueError("discrete contexts hold for a whole inference: no timeline")


def stationary(transition: np.ndarray) -> np.ndarray:
    """The stationary distribution of a row-stochastic matrix (the eigenvector of eigenvalue 1;
    uniform over the chain's states when it is not unique)."""
    k = len(transition)
    a = np.vstack([transition.T - np.eye(k), np.ones(k)])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    p, *_ = np.linalg.lstsq(a, b, rcond=None)
    p = np.clip(p, 0.0, None)
    return p / p.sum()


def build_variation(
    spec: LinkContextsSpec, *, latency_s: float, loss_rate: float, field: str
) -> LinkVariation:
    """Check a link's `contexts` table (and read its trace) into a LinkVariation."""
    contexts = tuple(
        Context(
            s.name,
            s.bandwidth_bps,
            latency_s if s.latency_s is None else s.latency_s,
            loss_rate if s.loss_rate is None else s.loss_rate,
        )
        for s in spec.states
    )
    if spec.kind == "discrete":
        probs = np.array([s.probability or 0.0 for s in spec.states])
        return LinkVariation("discrete", contexts, probs / probs.sum(), base_latency_s=latency_s)
    if spec.kind == "markov":
        transition = np.array(spec.transition, dtype=float)
        transition /= transition.sum(axis=1, keepdims=True)
        assert spec.step_s is not None  # checked by the spec
        return LinkVariation(
            "markov", contexts, stationary(transition), transition, spec.step_s, base_latency_s=latency_s
        )
    assert spec.trace is not None
    try:
        trace = load_trace(spec.trace, field=f"{field}.trace")
    except SpecError as exc:
        if exc.file:
            raise SpecError(
                exc.detail,
                file=exc.file,
                field=exc.field or f"{field}.trace",
                value=exc.value,
                allowed=exc.allowed,
                has_value=exc.has_value,
            ) from None
        raise
    edges = trace.edges_s
    variation = LinkVariation(
        "trace",
        contexts,
        np.zeros(len(contexts)),
        trace_edges_s=edges,
        trace_bandwidth_bps=trace.bandwidth_bps,
        base_latency_s=latency_s,
    )
    if contexts:
        share = np.zeros(len(contexts))
        np.add.at(share, variation.nearest_context(trace.bandwidth_bps), np.diff(edges))
        variation = LinkVariation(
            "trace",
            contexts,
            share / share.sum(),
            trace_edges_s=edges,
            trace_bandwidth_bps=trace.bandwidth_bps,
            base_latency_s=latency_s,
        )
    return variation
