"""Regularised (aging) evolution and SplitNets' constrained top-k evolution as one sampler.

Real, Aggarwal, Huang, Le, "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019; SplitNets (Dong et al., seed 004, Sec. 3.4): children are mutated and crossed over
from the current population, hard constraints (peak memory) filter children before evaluation,
and the top-k by the soft objectives populate the next generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nasopt.samplers._base import LearningSampler, Space, candidate_key, genes, params_of
from nasopt.samplers._ranking import constrained_order, losses, violation

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

SELECTIONS = ("aging", "topk")


class EvolutionSampler(LearningSampler):
    """Steady-state evolution over categorical, integer and float parameters with constrained
    Pareto selection.

    The population is replayed from the study's COMPLETE trials in its learning order (see
    `nasopt.samplers._base`: each trial lists the trials finished when it started), and trial
    n's randomness comes from (seed, n), so a resumed study repeats an uninterrupted one,
    workers on one storage and threads sharing this instance share one population, and a trial
    left RUNNING or WAITING holds nothing up. Policy for trials that never finish: they never
    join the population; a trial that finishes late joins it when the next trial starts.

    * the first `population_size` trials are uniform random;
    * the population is either the `population_size` most recent trials (`selection="aging"`,
      regularised evolution: the oldest dies) or the best `population_size` of all trials
      (`selection="topk"`, SplitNets' top-k, elitist);
    * a parent is the best of `tournament_size` population members drawn at random, by
      Optuna's constrained order: feasible first, smaller violation, lower non-dominated rank,
      larger crowding distance;
    * with probability `crossover_prob` a second parent is drawn and the child takes each
      parameter from either parent (uniform crossover); each parameter then mutates to another
      choice with probability `mutation_prob` (default 1 / number of parameters); a numeric
      parameter mutates by a Gaussian step of `mutation_sigma` (0.1) in unit coordinates
      (log-scaled for log distributions, rounded to its grid); a child
      that repeats an evaluated candidate is mutated again (bounded);
    * `feasibility(params)` rejects children the analytic model proves infeasible before they are
      evaluated (SplitNets' hard constraints), with at most `max_retries` tries.

    Example:
        .. testcode::

            import optuna
            from nasopt.samplers import EvolutionSampler

            def objective(trial):
                x = [trial.suggest_categorical(f"x{i}", [0, 1, 2, 3]) for i in range(5)]
                return sum(x), sum(3 - v for v in x[:2])

            sampler = EvolutionSampler(population_size=16, seed=0)
            study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
            study.optimize(objective, n_trials=100)
    """

    _salt = 2
    numeric = True
    record_attr = "nasopt:evolution"

    def __init__(
        self,
        *,
        seed: int | None = None,
        population_size: int = 20,
        tournament_size: int = 5,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.5,
        selection: str = "topk",
        mutation_sigma: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if population_size < 2 or tournament_size < 1:
            raise ValueError("population_size must be >= 2 and tournament_size >= 1")
        if not 0.0 <= crossover_prob <= 1.0 or (
            mutation_prob is not None and not 0.0 <= mutation_prob <= 1.0
        ):
            raise ValueError("probabilities must lie in [0, 1]")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob
        self.selection = selection
        if not mutation_sigma > 0:
            raise ValueError("mutation_sigma must be > 0")
        self.mutation_sigma = float(mutation_sigma)

    def _initial(self, study: Study, space: Space) -> dict[str, Any]:
        return {"pop": [], "seen": set(), "count": 0}

    def _observe(self, st: dict[str, Any], trial: FrozenTrial, study: Study, space: Space) -> None:
        """One learned trial joins the population (replayed one trial at a time, so the result
        does not depend on how often a process looked): aging keeps the last
        `population_size` trials, top-k the best `population_size` of the population plus it."""
        g = genes(trial, space)
        if g is None:
            return
        st["seen"].add(candidate_key(trial.params, space))
        st["count"] += 1
        pop = st["pop"] + [(g, losses(trial, study.directions), violation(trial))]
        if len(pop) > self.population_size:
            if self.selection == "aging":
                pop = pop[1:]
            else:
                order = constrained_order(np.array([f for _, f, _ in pop]), np.array([v for _, _, v in pop]))
                pop = [pop[i] for i in sorted(order[: self.population_size])]
        st["pop"] = pop

    def _fork(self, st: dict[str, Any]) -> dict[str, Any]:
        return {"pop": list(st["pop"]), "seen": set(st["seen"]), "count": st["count"]}

    def population(self, study: Study) -> list[dict[str, Any]]:
        """The current population's parameters, after replaying the study."""
        space = self.space(study)
        return [params_of(g, space) for g, _, _ in self.replayed(study, space)["pop"]]

    def _propose(
        self, study: Study, trial: FrozenTrial, space: Space, st: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        dims = space.dims
        if st["count"] < self.population_size:
            first = [rng.random() if d.choices is None else int(rng.integers(len(d.choices))) for d in dims]
            return params_of(first, space), None
        pop = st["pop"]
        order = constrained_order(np.array([f for _, f, _ in pop]), np.array([v for _, _, v in pop]))
        position = np.empty(len(pop), dtype=int)
        position[order] = np.arange(len(pop))  # smaller = better
        seen = st["seen"]
        p_mut = self.mutation_prob if self.mutation_prob is not None else 1.0 / len(dims)

        def tournament() -> list[Any]:
            picks = rng.choice(len(pop), size=min(self.tournament_size, len(pop)), replace=False)
            return list(pop[min(picks, key=lambda i: position[i])][0])

        child = tournament()
        if rng.random() < self.crossover_prob:
            other = tournament()
            child = [c if rng.random() < 0.5 else o for c, o in zip(child, other, strict=True)]
        for attempt in range(20):
            mutated = list(child)
            forced = int(rng.integers(len(dims))) if attempt else -1  # a repeat: change one more
            for i, d in enumerate(dims):
                if i == forced or rng.random() < p_mut:
                    if d.choices is None:  # numeric: a Gaussian step in unit coordinates
                        step = self.mutation_sigma * rng.standard_normal()
                        mutated[i] = float(np.clip(child[i] + step, 0.0, 1.0))
                    else:
                        k = len(d.choices)
                        mutated[i] = int((child[i] + 1 + rng.integers(k - 1)) % k)
            params = params_of(mutated, space)
            if candidate_key(params, space) not in seen:
                break
        return params, None
