"""Shared ground of nasopt's samplers: discrete search spaces, per-trial randomness, replay.

* Categorical and integer parameters (and floats with a `step`) become lists of choices; other
  distributions go to an independent sampler (RandomSampler by default).
* Randomness of trial n comes from `numpy.random.default_rng([seed, n, salt])`, never from a
  process RNG, so a restarted or parallel worker does not replay parameters (optuna#3255).
* Samplers that learn a distribution replay their updates from the study: the COMPLETE trials,
  in trial-number order, up to the first trial still RUNNING/WAITING ("the finished prefix").
  That sequence is a function of the stored study only, so a resumed study and several workers
  on one storage agree on every update; each process caches its replay and extends it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

Feasibility = Callable[[dict[str, Any]], bool]
MAX_CHOICES = 1000  # an int/stepped-float parameter with more values goes to the independent sampler
_PENDING = (TrialState.RUNNING, TrialState.WAITING)


def choices_of(dist: BaseDistribution) -> tuple[Any, ...] | None:
    """The finite list of values of a distribution, or None when it is not discrete enough."""
    if isinstance(dist, CategoricalDistribution):
        return tuple(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        n = (dist.high - dist.low) // dist.step + 1
        return tuple(range(dist.low, dist.high + 1, dist.step)) if n <= MAX_CHOICES else None
    if isinstance(dist, FloatDistribution) and dist.step is not None and not dist.log:
        n = round((dist.high - dist.low) / dist.step) + 1
        return tuple(float(dist.low + i * dist.step) for i in range(n)) if n <= MAX_CHOICES else None
    return None


class DiscreteSampler(BaseSampler):
    """Base of nasopt's samplers: discrete relative space, seeded per trial, feasibility filter.

    Subclasses implement `_propose(study, trial, space, rng) -> dict[name, choice index]`.
    """

    _salt = 0  # distinguishes the random streams of different sampler classes

    def __init__(
        self,
        *,
        seed: int | None = None,
        search_space: dict[str, BaseDistribution] | None = None,
        feasibility: Feasibility | None = None,
        max_retries: int = 100,
        independent_sampler: BaseSampler | None = None,
    ) -> None:
        self._seed = int(seed) if seed is not None else secrets.randbits(31)
        self._fixed_space = dict(search_space) if search_space is not None else None
        self._feasibility = feasibility
        self._max_retries = max_retries
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace(include_pruned=True)

    # ------------------------------------------------------------------ Optuna API

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()  # our own randomness is a function of (seed, trial number)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self._fixed_space if self._fixed_space is not None else self._intersection.calculate(study)
        return {name: d for name, d in space.items() if (c := choices_of(d)) is not None and len(c) > 1}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        space = {name: choices_of(d) for name, d in sorted(search_space.items())}
        rng = self.trial_rng(trial.number)
        rejected = 0
        for _ in range(max(1, self._max_retries)):
            index = self._propose(study, trial, space, rng)  # type: ignore[arg-type]
            params = {name: space[name][i] for name, i in index.items()}  # type: ignore[index]
            if self._feasibility is None or self._feasibility(params):
                break
            rejected += 1
        if rejected:
            study._storage.set_trial_system_attr(trial._trial_id, "nasopt:rejected_infeasible", rejected)
        return params

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # ------------------------------------------------------------------ helpers

    def trial_rng(self, number: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, number, self._salt])

    def _propose(
        self, study: Study, trial: FrozenTrial, space: dict[str, tuple[Any, ...]], rng: np.random.Generator
    ) -> dict[str, int]:
        raise NotImplementedError


def encoded(trial: FrozenTrial, space: dict[str, tuple[Any, ...]]) -> list[int] | None:
    """The trial's parameters as choice indices, or None if it lacks one or left the space."""
    out = []
    for name, choices in space.items():
        if name not in trial.params:
            return None
        try:
            out.append(choices.index(trial.params[name]))
        except ValueError:
            return None
    return out


def redraw_repeats(
    draw: Callable[[], list[int]],
    seen: dict[tuple[int, ...], int],
    limit: int,
    feed: Callable[[list[int], int], None],
    stop: Callable[[], bool] = lambda: False,
) -> tuple[list[int], list[int]]:
    """Draw until a candidate the finished prefix has not evaluated comes up, at most `limit`
    re-draws or until `stop()`; each repeat is fed, with the trial that evaluated it, to the
    sampler's update. Returns the candidate and the reused trial numbers in draw order."""
    reused: list[int] = []
    while True:
        a = draw()
        n = seen.get(tuple(a))
        if n is None or len(reused) >= limit or stop():
            return a, reused
        reused.append(n)
        feed(a, n)


class ReplayCache:
    """A per-process replay of updates over a study's finished prefix, extended incrementally.

    `advance(study, observe)` calls `observe(trial)` for every COMPLETE trial of the finished
    prefix not yet seen; FAIL/PRUNED trials are skipped; the first RUNNING/WAITING trial stops.
    """

    def __init__(self, key: Any, state: Any) -> None:
        self.key = key
        self.state = state
        self.next_number = 0

    def advance(self, trials: Sequence[FrozenTrial], observe: Callable[[FrozenTrial], None]) -> None:
        for t in trials[self.next_number :]:
            if t.state in _PENDING:
                break
            if t.state == TrialState.COMPLETE:
                observe(t)
            self.next_number = t.number + 1
