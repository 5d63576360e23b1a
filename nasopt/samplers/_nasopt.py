"""nasopt glue: the analytic hard-constraint check a sampler can apply before evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasopt.latency import evaluate

if TYPE_CHECKING:
    from nasopt.objective import NasObjective
    from nasopt.samplers._base import Feasibility


def hard_constraint_check(objective: NasObjective) -> Feasibility | None:
    """`params -> bool`: False when the analytic model proves a per-device memory cap exceeded
    (SplitNets' hard constraints). None when the objective has no memory cap to check."""
    if not any(name.startswith("memory:") for name in objective.constraint_names):
        return None
    space, system = objective.space, objective.system

    def feasible(params: dict[str, Any]) -> bool:
        ev = evaluate(space.network(space.candidate(params)), system)
        return not ev.memory_violations()

    return feasible
