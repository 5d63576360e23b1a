"""The analytic hard-constraint check a study hands its sampler, applied before evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasopt.core.evaluation import evaluate
from nasopt.core.robust import ROBUST_METRICS

if TYPE_CHECKING:
    from nasopt.samplers._base import Feasibility
    from nasopt.study.objective import NasObjective


def hard_constraint_check(objective: NasObjective) -> Feasibility | None:
    """`params -> bool`: False when the analytic model proves a per-device memory cap, the
    latency threshold, a robust latency threshold or the energy threshold exceeded (SplitNets'
    hard constraints), so the candidate is never trained or scored. None when the objective
    has none of these."""
    names = objective.constraint_names
    memory = any(name.startswith("memory:") for name in names)
    limits = objective.objective_spec.constraints
    latency_ms = limits.latency_ms if "latency_ms" in names else None
    energy_mj = limits.energy_mj if "energy_mj" in names else None
    # robust latency thresholds over the links' contexts (latency_p95_ms, deadline_miss, ...)
    robust = {n: getattr(limits, n) for n in ROBUST_METRICS if n in names}
    if not memory and latency_ms is None and energy_mj is None and not robust:
        return None
    space, system = objective.space, objective.system

    def feasible(params: dict[str, Any]) -> bool:
        network = space.network(objective.candidate_of(params))
        ev = evaluate(network, system)
        if latency_ms is not None and ev.latency_ms > latency_ms:
            return False
        if energy_mj is not None and ev.energy_j * 1e3 > energy_mj:
            return False
        if memory and ev.memory_violations():
            return False
        if robust:
            values = objective.robust_metrics(network, ev)
            return all(values[n] <= limit for n, limit in robust.items())
        return True

    return feasible
