"""The analytic hard-constraint check a study hands its sampler, applied before evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nasopt.core.batched import CandidateBatch
from nasopt.core.evaluation import evaluate
from nasopt.errors import SpecError

if TYPE_CHECKING:
    from nasopt.core.batched import BatchEvaluator
    from nasopt.study.objective import NasObjective


class HardConstraintCheck:
    """`params -> bool`: False when the analytic model proves a per-device memory cap, the
    latency threshold or the energy threshold exceeded (SplitNets' hard constraints), so the
    candidate is never trained or scored.

    `many(params_list)` screens a whole list in one batched call (nasopt.core.batched), which
    the samplers use to draw several proposals at once in a tightly constrained space; spaces
    the batched model does not cover are screened one by one with the scalar model."""

    def __init__(
        self, objective: NasObjective, *, memory: bool, latency_ms: float | None, energy_mj: float | None
    ):
        self.objective = objective
        self.memory = memory
        self.latency_ms = latency_ms
        self.energy_mj = energy_mj
        self._batch: BatchEvaluator | None = None
        self._batched = True  # False once the batched model refused this space

    def __call__(self, params: dict[str, Any]) -> bool:
        ev = evaluate(
            self.objective.space.network(self.objective.candidate_of(params)), self.objective.system
        )
        if self.latency_ms is not None and ev.latency_ms > self.latency_ms:
            return False
        if self.energy_mj is not None and ev.energy_j * 1e3 > self.energy_mj:
            return False
        return not (self.memory and ev.memory_violations())

    def many(self, params_list: Sequence[dict[str, Any]]) -> np.ndarray:
        """Feasibility of every parameter set, as a boolean array in the same order."""
        if not params_list:
            return np.zeros(0, dtype=bool)
        evaluator = self._evaluator()
        if evaluator is not None:
            macro = self.objective.space.macro
            batch = CandidateBatch.from_candidates(macro, self.objective.candidates_of(list(params_list)))
            ev = evaluator.evaluate(batch)
            ok = ev.feasible() if self.memory else np.ones(len(batch), dtype=bool)
            if self.latency_ms is not None:
                ok &= ev.latency_ms <= self.latency_ms
            if self.energy_mj is not None:
                ok &= ev.energy_j * 1e3 <= self.energy_mj
            return ok
        return np.array([self(p) for p in params_list], dtype=bool)

    def _evaluator(self) -> BatchEvaluator | None:
        """The batched model of this space and system, or None where only the scalar model
        covers the space (View-Pool, a residual cut, all-on-aggregator, a mesh with a
        bottleneck): those are screened one by one."""
        if self._batched and self._batch is None:
            try:
                self._batch = self.objective.batch_evaluator()
            except SpecError:
                self._batched = False
        return self._batch


def hard_constraint_check(objective: NasObjective) -> HardConstraintCheck | None:
    """The study's analytic hard-constraint check, or None when the objective has no memory
    cap, latency threshold or energy threshold among its constraints."""
    names = objective.constraint_names
    memory = any(name.startswith("memory:") for name in names)
    limits = objective.objective_spec.constraints
    latency_ms = limits.latency_ms if "latency_ms" in names else None
    energy_mj = limits.energy_mj if "energy_mj" in names else None
    if not memory and latency_ms is None and energy_mj is None:
        return None
    return HardConstraintCheck(objective, memory=memory, latency_ms=latency_ms, energy_mj=energy_mj)
