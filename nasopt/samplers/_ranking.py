"""Constrained multi-objective ordering, read the way Optuna's constrained samplers read it.

Feasible beats infeasible; among infeasible trials the smaller total violation wins; among
feasible trials the lower non-dominated rank wins, then the larger crowding distance. All values
are turned into losses first (maximised objectives negated), so everything here minimises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import moocore
import numpy as np
from optuna.study import StudyDirection

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

LEGACY_CONSTRAINTS = "constraints"  # the list form written by constraints_func and by nasopt
CONSTRAINT_PREFIX = "constraints:"  # Optuna 5's trial.set_constraint form


def violation(trial: FrozenTrial) -> float:
    """Total violation sum(max(0, c)) over both constraint forms; 0.0 when there are none."""
    attrs = trial.system_attrs
    values: list[float] = list(attrs.get(LEGACY_CONSTRAINTS) or [])
    values += [v for k, v in attrs.items() if k.startswith(CONSTRAINT_PREFIX)]
    return float(sum(max(0.0, float(v)) for v in values))


def losses(trial: FrozenTrial, directions: Sequence[StudyDirection]) -> np.ndarray:
    """The trial's values as losses (maximised objectives negated)."""
    assert trial.values is not None
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    return sign * np.asarray(trial.values, dtype=float)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def nondominated_ranks(F: np.ndarray) -> np.ndarray:
    """Rank 0 for the Pareto front, 1 for the front after removing it, ... (minimisation;
    equal rows share a rank), from moocore's C code (benchmarks/pareto_libs.md: ~3,000x the
    pairwise numpy version at 1,000 points)."""
    if len(F) == 0:
        return np.full(0, -1, dtype=int)
    return np.asarray(moocore.pareto_rank(np.asarray(F, dtype=float)), dtype=int)


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front (boundary points: infinity)."""
    n, m = F.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(F[:, k], kind="stable")
        lo, hi = F[order[0], k], F[order[-1], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi > lo:
            dist[order[1:-1]] += (F[order[2:], k] - F[order[:-2], k]) / (hi - lo)
    return dist


def constrained_order(F: np.ndarray, viol: np.ndarray) -> np.ndarray:
    """Indices sorted best first: feasible by (rank, -crowding), then infeasible by violation."""
    n = len(F)
    feasible = viol <= 0
    key_rank = np.zeros(n)
    key_crowd = np.zeros(n)
    if feasible.any():
        idx = np.flatnonzero(feasible)
        ranks = nondominated_ranks(F[idx])
        key_rank[idx] = ranks
        for r in np.unique(ranks):
            members = idx[ranks == r]
            key_crowd[members] = -crowding_distance(F[members])
    # lexsort: last key is primary
    return np.lexsort((np.arange(n), key_crowd, key_rank, viol, ~feasible))


def pareto_front(F: np.ndarray) -> np.ndarray:
    """The non-dominated rows of F (duplicates kept once)."""
    if len(F) == 0:
        return F
    F = np.unique(F, axis=0)
    return F[nondominated_ranks(F) == 0]
