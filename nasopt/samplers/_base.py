"""Shared ground of nasopt's samplers: the relative search space, per-trial randomness, replay.

* The relative search space is defined once (`LearningSampler.space`): categorical parameters
  (and, for samplers that model them, integer and float parameters) in name order; every other
  distribution, and any parameter a sampler does not model, goes to the independent sampler
  (RandomSampler by default), also when Optuna hands `sample_relative` a space containing it.
* Randomness of trial n comes from `numpy.random.default_rng([seed, n, salt])`, never from a
  process RNG, so a restarted or parallel worker does not replay parameters (optuna#3255).
* Samplers that learn replay their updates from the study in the *learning order*, which the
  study itself records: when a trial starts (`before_trial`), the sampler writes on it, once,
  the numbers of the finished trials no earlier trial has listed (trial attr `nasopt:learned`).
  The learning order is those lists in trial-number order, a trial learned at its first listing
  (two processes starting trials at once may both list it). It is a function of the stored study
  only, so a resumed study, several workers on one storage and a fresh replay agree on every
  update, and a trial still RUNNING or WAITING holds nothing up: whatever finishes is listed by
  the next trial to start, and learned from.
* Trials that never finish (a `study.ask()` never told, a worker that died on a storage without
  heartbeats) are never learned from and never waited for. A trial that finishes late is learned
  when the next trial starts after it finished, wherever that falls in the order (for ASNG: a
  sample drawn from an older θ, at most about as many versions old as there are workers).
* One lock per sampler instance serialises its replay and sampling, so one instance is safe
  under `study.optimize(..., n_jobs=N)` and ends with the state a fresh replay computes.
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
MAX_CHOICES = 1000  # an int/stepped-float parameter with more values is not a list of choices
LEARNED_ATTR = "nasopt:learned"  # finished trials first listed when this trial started


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


@dataclass(frozen=True)
class Dim:
    """One parameter of the relative space: a list of choices, or a numeric range mapped to the
    unit interval (log-scaled for log distributions) and back (rounded to its grid)."""

    name: str
    dist: BaseDistribution
    choices: tuple[Any, ...] | None  # categorical dimension; None: numeric

    @property
    def numeric(self) -> bool:
        return self.choices is None

    def _bounds(self) -> tuple[float, float, bool]:
        d = self.dist
        assert isinstance(d, (FloatDistribution, IntDistribution))
        if d.log:
            return math.log(d.low), math.log(d.high), True
        return float(d.low), float(d.high), False

    def grid(self) -> float:
        """Spacing of the values in unit coordinates (0.0 for a continuous parameter)."""
        d = self.dist
        assert isinstance(d, (FloatDistribution, IntDistribution))
        if isinstance(d, IntDistribution) and d.log:  # the narrowest gap, at the top of the range
            return math.log(d.high / (d.high - 1)) / (math.log(d.high) - math.log(d.low))
        if d.step is None:
            return 0.0
        return float(d.step) / (float(d.high) - float(d.low))

    def unit(self, value: Any) -> float | None:
        """The value in unit coordinates, or None when it lies outside the range."""
        lo, hi, log = self._bounds()
        if not isinstance(value, (int, float)) or (log and value <= 0):
            return None
        x = math.log(value) if log else float(value)
        if not lo - 1e-9 * (abs(lo) + 1) <= x <= hi + 1e-9 * (abs(hi) + 1):
            return None
        return 0.5 if hi <= lo else min(1.0, max(0.0, (x - lo) / (hi - lo)))

    def value(self, z: float) -> Any:
        """The parameter value at unit coordinate z (clipped to [0, 1], rounded to the grid)."""
        d = self.dist
        assert isinstance(d, (FloatDistribution, IntDistribution))
        lo, hi, log = self._bounds()
        x = lo + min(1.0, max(0.0, float(z))) * (hi - lo)
        if log:
            x = math.exp(x)
        if isinstance(d, IntDistribution):
            v = d.low + round((x - d.low) / d.step) * d.step
            return int(min(d.high, max(d.low, v)))
        if d.step is not None:
            x = d.low + round((x - d.low) / d.step) * d.step
        return float(min(d.high, max(d.low, x)))


class Space:
    """The relative search space as the sampler models it, in name order."""

    def __init__(self, dims: Sequence[Dim]) -> None:
        self.dims = tuple(dims)
        self.names = [d.name for d in self.dims]
        self.cats = [d for d in self.dims if not d.numeric]
        self.nums = [d for d in self.dims if d.numeric]
        self.key = tuple((d.name, repr(d.dist)) for d in self.dims)

    def __len__(self) -> int:
        return len(self.dims)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: d.dist for d in self.dims}


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
    draw: Callable[[], Any],
    seen: dict[tuple[Any, ...], int],
    limit: int,
    feed: Callable[[Any, int], None],
    stop: Callable[[], bool] = lambda: False,
    key: Callable[[Any], tuple[Any, ...]] = tuple,
) -> tuple[Any, list[int]]:
    """Draw until a candidate no learned trial has evaluated comes up, at most `limit` re-draws
    or until `stop()`; each repeat is fed, with the trial that evaluated it, to the sampler's
    update. Returns the candidate and the reused trial numbers in draw order."""
    reused: list[int] = []
    while True:
        a = draw()
        n = seen.get(key(a))
        if n is None or len(reused) >= limit or stop():
            return a, reused
        reused.append(n)
        feed(a, n)


class ReplayCache:
    """A per-process replay of the learning order, extended incrementally.

    It advances over trials in number order while each has its learned list (or is finished
    without one: a trial no nasopt sampler started, listed by a later one), feeding every listed
    trial once; the first unfinished trial without a list (a trial being created, an enqueued
    WAITING trial) stops it. `view` then returns the state with, applied to a copy, the lists of
    later trials and, after them, the finished trials no trial has listed yet (the last trials of
    a study, or those that finished while this one was being sampled) in number order: nothing
    waits for an unlisted trial, and the state a study ends with covers every finished trial.
    """

    def __init__(self, key: Any, state: Any) -> None:
        self.key = key
        self.state = state
        self.next_number = 0
        self.fed: set[int] = set()

    def view(
        self,
        trials: Sequence[FrozenTrial],
        observe: Callable[[Any, FrozenTrial], None],
        fork: Callable[[Any], Any] = copy.deepcopy,
    ) -> Any:
        def feed(state: Any, fed: set[int], numbers: Sequence[int]) -> None:
            for n in numbers:
                n = int(n)
                if n in fed or not 0 <= n < len(trials):
                    continue
                fed.add(n)
                if trials[n].state == TrialState.COMPLETE:
                    observe(state, trials[n])

        while self.next_number < len(trials):
            t = trials[self.next_number]
            numbers = t.system_attrs.get(LEARNED_ATTR)
            if numbers is None and not t.state.is_finished():
                break
            feed(self.state, self.fed, numbers or ())
            self.next_number += 1
        rest = [n for t in trials[self.next_number :] for n in t.system_attrs.get(LEARNED_ATTR) or ()]
        rest += [t.number for t in trials if t.state.is_finished() and t.number not in self.fed]
        rest = [n for n in dict.fromkeys(rest) if n not in self.fed]
        if not rest:
            return self.state
        state, fed = fork(self.state), set(self.fed)
        feed(state, fed, rest)
        return state


class LearningSampler(BaseSampler):
    """Base of nasopt's samplers: the relative space, seeded per trial, feasibility filter,
    the learning order, hooks forwarded to the independent sampler, one lock.

    Subclasses set `numeric` (whether integer/float parameters are modelled or left to the
    independent sampler) and implement `_initial(study, space)`, `_observe(state, trial, study,
    space)` and `_propose(study, trial, space, state, rng) -> (params, record)`; `record` (a
    JSON dict or None) is written once per trial under `record_attr`.
    """

    _salt = 0  # distinguishes the random streams of different sampler classes
    numeric = False  # integer/float parameters modelled (True) or left to the independent sampler
    record_attr = "nasopt:sampler"
    # retries screened one by one before batched screening starts: a batched call costs about
    # as much as 15 scalar checks, worth it where proposals are drawn as a population
    scalar_retries = 4
    screen_chunk = 8  # proposals in the first batched call (x4 each further call)

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
        # over complete trials only: a trial PRUNED as over budget has no parameters
        self._intersection = IntersectionSearchSpace()
        self._lock = threading.RLock()
        self._cache: ReplayCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ the space, defined once

    def dim(self, name: str, dist: BaseDistribution) -> Dim | None:
        """How this sampler models a parameter, or None when it leaves it to the independent one."""
        if isinstance(dist, CategoricalDistribution) or not self.numeric:
            c = choices_of(dist)
            return Dim(name, dist, c) if c is not None and len(c) > 1 else None
        if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.high > dist.low:
            return Dim(name, dist, None)
        return None

    def modelled(self, dists: dict[str, BaseDistribution]) -> Space:
        return Space([d for n, dist in sorted(dists.items()) if (d := self.dim(n, dist)) is not None])

    def space(self, study: Study) -> Space:
        """The relative search space: the fixed one, or the intersection of the study's trials."""
        with self._lock:
            fixed = self._fixed_space
            return self.modelled(fixed if fixed is not None else self._intersection.calculate(study))

    # ------------------------------------------------------------------ Optuna API

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()  # our own randomness is a function of (seed, trial number)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.space(study).distributions()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        with self._lock:
            trials = study.get_trials(deepcopy=False)
            listed: set[int] = set()
            for t in trials:
                listed.update(t.system_attrs.get(LEARNED_ATTR, ()))
            new = [t.number for t in trials if t.state.is_finished() and t.number not in listed]
            study._storage.set_trial_system_attr(trial._trial_id, LEARNED_ATTR, new)
        self._independent.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        space = self.modelled(search_space)
        out: dict[str, Any] = {}
        if len(space):
            with self._lock:
                state = self.replayed(study, space)
                rng = self.trial_rng(trial.number)
                params, record, rejected = self._screened(study, trial, space, state, rng)
                if rejected:
                    record = {**(record or {}), "rejected_infeasible": rejected}
                if record is not None:
                    study._storage.set_trial_system_attr(trial._trial_id, self.record_attr, record)
            out.update(params)
        for name, dist in search_space.items():  # what this sampler does not model
            if name not in out:
                out[name] = self._independent.sample_independent(study, trial, name, dist)
        return out

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def _screened(
        self, study: Study, trial: FrozenTrial, space: Space, state: Any, rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
        """The first feasible of up to `max_retries` proposals (the last one if none is), with
        the number found infeasible before it.

        After the first `scalar_retries` rejections, a check with a batched form (`many`)
        screens proposals drawn together (`_propose_many`) in growing chunks, one batched call
        per chunk, so a tightly constrained space costs a few vectorised draws and calls per
        trial instead of one scalar evaluation per rejected proposal. Where a sampler does not
        override `_propose_many`, the chosen proposal is the one a one-by-one check would
        choose (the proposals do not change the state)."""
        check = self._feasibility
        limit = max(1, self._max_retries)
        params, record = self._propose(study, trial, space, state, rng)
        if check is None or check(params):
            return params, record, 0
        many: Callable[[Sequence[dict[str, Any]]], np.ndarray] | None = getattr(check, "many", None)
        drawn, rejected, chunk = 1, 1, self.screen_chunk
        while drawn < limit:
            if many is None or drawn <= self.scalar_retries:  # one proposal, one check
                params, record = self._propose(study, trial, space, state, rng)
                drawn += 1
                if check(params):
                    return params, record, rejected
                rejected += 1
                continue
            n = min(chunk, limit - drawn)
            proposals = self._propose_many(study, trial, space, state, rng, n)
            drawn += n
            chunk *= 4
            if not proposals:
                continue
            ok = many([p for p, _ in proposals])
            if ok.any():
                first = int(np.argmax(ok))
                params, record = proposals[first]
                return params, record, rejected + first
            params, record = proposals[-1]
            rejected += len(proposals)
        return params, record, rejected

    # ------------------------------------------------------------------ replay

    def replayed(self, study: Study, space: Space) -> Any:
        """The learned state after the study's learning order (see the module docstring)."""
        with self._lock:
            key = (study._study_id, id(study._storage), space.key)
            if self._cache is None or self._cache.key != key:
                self._cache = ReplayCache(key, self._initial(study, space))
            return self._cache.view(
                study.get_trials(deepcopy=False), lambda st, t: self._observe(st, t, study, space), self._fork
            )

    def trial_rng(self, number: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, number, self._salt])

    def _initial(self, study: Study, space: Space) -> Any:
        raise NotImplementedError

    def _observe(self, state: Any, trial: FrozenTrial, study: Study, space: Space) -> None:
        raise NotImplementedError

    def _fork(self, state: Any) -> Any:
        """A copy of the state that `_observe` can move without touching the original."""
        return copy.deepcopy(state)

    def _propose(
        self, study: Study, trial: FrozenTrial, space: Space, state: Any, rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        raise NotImplementedError

    def _propose_many(
        self, study: Study, trial: FrozenTrial, space: Space, state: Any, rng: np.random.Generator, n: int
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Up to `n` proposals for the batched screening (fewer where a sampler drops repeats);
        samplers that can draw a population at once override this loop."""
        return [self._propose(study, trial, space, state, rng) for _ in range(n)]


def genes(trial: FrozenTrial, space: Space) -> list[Any] | None:
    """The trial's parameters as genes (choice index for a categorical dimension, unit
    coordinate for a numeric one), or None if it lacks one or left the space."""
    out: list[Any] = []
    for d in space.dims:
        if d.name not in trial.params:
            return None
        v = trial.params[d.name]
        if d.choices is not None:
            if v not in d.choices:
                return None
            out.append(d.choices.index(v))
        else:
            z = d.unit(v)
            if z is None:
                return None
            out.append(z)
    return out


def params_of(genes_: Sequence[Any], space: Space) -> dict[str, Any]:
    return {
        d.name: (d.choices[int(g)] if d.choices is not None else d.value(g))
        for d, g in zip(space.dims, genes_, strict=True)
    }


def candidate_key(params: dict[str, Any], space: Space) -> tuple[Any, ...]:
    """What makes two candidates the same: their parameter values (numeric ones on their grid)."""
    return tuple(params[n] for n in space.names)
