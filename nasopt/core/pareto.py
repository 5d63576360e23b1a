"""Hypervolume of a set of loss vectors (every objective minimised), from moocore's exact C code.

The one hypervolume of nasopt: samplers rank by its improvement, views plot its history.

>>> hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0])
3.0
"""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np


def hypervolume(
    losses: np.ndarray | Sequence[Sequence[float]], reference: np.ndarray | Sequence[float]
) -> float:
    """Volume dominated by `losses` and bounded by `reference`; points not strictly better than
    the reference in every objective add nothing."""
    points = np.asarray(losses, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if points.size == 0:
        return 0.0
    inside = points[np.all(points < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref))


def hypervolume_improvement(front: np.ndarray, point: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume that `point` adds to `front` (both losses) w.r.t. `reference`."""
    if np.any(point >= reference):
        return 0.0
    if len(front) and np.any(np.all(front <= point, axis=1)):
        return 0.0
    stacked = np.vstack([front, point[None]]) if len(front) else point[None]
    return hypervolume(stacked, reference) - hypervolume(front, reference)


def nondominated(losses: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (equal rows are all kept)."""
    points = np.asarray(losses, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, keep_weakly=True))
