"""The exact Pareto front of a whole analytic search space, by batched enumeration.

Every candidate is scored with the batched analytic model (`nasopt.core.batched`) and the
analytic accuracy proxy, the infeasible ones (memory caps and the objective's constraints)
dropped, and a running non-dominated set kept chunk by chunk (moocore), so memory stays bounded
whatever the size of the space. The result is the true front that sampled studies approach.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasopt.core.candidate import Candidate
from nasopt.core.pareto import nondominated
from nasopt.errors import SpecError
from nasopt.study.objective import NasObjective

EXACT_FRONT_FORMAT = 1  # version of the JSON reference file


@dataclass
class ExactFront:
    """The feasible non-dominated candidates of a space with the counts behind them."""

    space: str
    objective: str
    metric_names: list[str]
    directions: list[str]
    n_candidates: int
    n_feasible: int
    seconds: float
    candidates: list[Candidate]
    values: np.ndarray  # [front size, objectives], in the metrics' own units and directions
    feasible_min: list[float] | None = None  # per metric, over every feasible candidate
    feasible_max: list[float] | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def losses(self) -> np.ndarray:
        """The front as losses (maximised metrics negated), as hypervolumes take it."""
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])
        return self.values * sign

    def to_json(self) -> dict[str, Any]:
        order = np.lexsort(self.values.T[::-1])
        return {
            "format": EXACT_FRONT_FORMAT,
            "space": self.space,
            "objective": self.objective,
            "metrics": self.metric_names,
            "directions": self.directions,
            "n_candidates": self.n_candidates,
            "n_feasible": self.n_feasible,
            "seconds": round(self.seconds, 3),
            "feasible_min": self.feasible_min,
            "feasible_max": self.feasible_max,
            "front": [
                {"values": [float(v) for v in self.values[i]], "candidate": self.candidates[i].to_dict()}
                for i in order
            ],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ExactFront:
        """A front written by `save`; the file is data only (JSON), never executed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"cannot read the exact front: {exc}", field="front", value=str(path)) from None
        if not isinstance(data, dict) or data.get("format") != EXACT_FRONT_FORMAT:
            raise SpecError(
                "not an exact-front file of this version", field="format", value=str(path), allowed=1
            )
        rows = data["front"]
        return cls(
            space=data["space"],
            objective=data["objective"],
            metric_names=list(data["metrics"]),
            directions=list(data["directions"]),
            n_candidates=int(data["n_candidates"]),
            n_feasible=int(data["n_feasible"]),
            seconds=float(data["seconds"]),
            candidates=[Candidate.from_dict(r["candidate"]) for r in rows],
            values=np.array([r["values"] for r in rows], dtype=float).reshape(
                len(rows), len(data["metrics"])
            ),
            feasible_min=data.get("feasible_min"),
            feasible_max=data.get("feasible_max"),
        )


def exact_front(
    objective: NasObjective,
    *,
    chunk: int = 200_000,
    max_candidates: int = 1_000_000_000,
    progress: bool = False,
) -> ExactFront:
    """Enumerate every candidate of `objective`'s space and return its exact feasible front.

    Refuses spaces over `max_candidates` (the caller states how long it may take)."""
    space = objective.space
    total = space.size()
    if total > max_candidates:
        raise SpecError(
            f"the space has {total:.3g} candidates, more than --max-candidates {max_candidates:.3g}",
            field="max_candidates",
            value=total,
            allowed=f"<= {max_candidates}",
        )
    names, directions = objective.metric_names, objective.directions
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    front_losses = np.zeros((0, len(names)))
    front_batches: list[tuple[Any, np.ndarray]] = []  # (batch, column indices) of the running front
    n_feasible = 0
    lo = np.full(len(names), np.inf)
    hi = np.full(len(names), -np.inf)
    bar = _progress(total, progress)
    start = time.perf_counter()
    for batch in space.enumerate_batches(chunk=chunk):
        metrics, constraints = objective.evaluate_batch(batch)
        feasible = np.all(constraints <= 0, axis=0) if len(constraints) else np.ones(len(batch), dtype=bool)
        n_feasible += int(feasible.sum())
        index = np.flatnonzero(feasible)
        if len(index):
            feasible_values = np.column_stack([metrics[m][index] for m in names])
            lo, hi = np.minimum(lo, feasible_values.min(axis=0)), np.maximum(hi, feasible_values.max(axis=0))
            losses = feasible_values * sign
            keep = nondominated(losses)
            index, losses = index[keep], losses[keep]
            merged = np.vstack([front_losses, losses])
            mask = nondominated(merged)
            old_mask, new_mask = mask[: len(front_losses)], mask[len(front_losses) :]
            front_batches = _filter_front(front_batches, old_mask)
            if new_mask.any():
                front_batches.append((batch.take(index[new_mask]), losses[new_mask]))
            front_losses = merged[mask]
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    candidates: list[Candidate] = []
    values: list[np.ndarray] = []
    for part, losses in front_batches:
        candidates += list(part.candidates(space.macro))
        values.append(losses * sign)
    return ExactFront(
        space=space.spec.name,
        objective=objective.objective_spec.name,
        metric_names=list(names),
        directions=list(directions),
        n_candidates=total,
        n_feasible=n_feasible,
        seconds=seconds,
        candidates=candidates,
        values=np.vstack(values) if values else np.zeros((0, len(names))),
        feasible_min=[float(x) for x in lo] if n_feasible else None,
        feasible_max=[float(x) for x in hi] if n_feasible else None,
    )


def _filter_front(parts: list[tuple[Any, np.ndarray]], keep: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """The running front's parts with the rows `keep` (over all parts, in order) marks."""
    out = []
    pos = 0
    for part, losses in parts:
        mask = keep[pos : pos + len(losses)]
        pos += len(losses)
        if mask.all():
            out.append((part, losses))
        elif mask.any():
            out.append((part.take(np.flatnonzero(mask)), losses[mask]))
    return out


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="cand", unit_scale=True, desc="exact front", dynamic_ncols=True)
