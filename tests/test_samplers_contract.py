"""nasopt's samplers under the parts of Optuna's sampler contract its generic suite does not
reach: one instance shared by threads, trials that never finish, hooks forwarded to a custom
independent sampler, one state write per trial, and numeric parameters learned (ASNG's Gaussian,
evolution's mutation)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler
from nasopt.samplers._base import LEARNED_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)
SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "asng": lambda seed, **kw: ASNGSampler(seed=seed, **kw),
    "evolution": lambda seed, **kw: EvolutionSampler(seed=seed, population_size=8, **kw),
    "reinforce": lambda seed, **kw: ReinforceSampler(seed=seed, learning_rate=0.3, **kw),
}
CHOICES = [0, 1, 2, 3, 4]


def bowl(trial: optuna.Trial) -> float:
    """Categorical bowl, optimum 0 at x_i = 2; a random trial averages 2 per parameter (10)."""
    return float(sum((trial.suggest_categorical(f"x{i}", CHOICES) - 2) ** 2 for i in range(5)))


def _state(name: str, sampler: Any, study: optuna.Study) -> Any:
    """What the sampler has learned, in comparable form."""
    space = sampler.space(study)
    st = sampler.replayed(study, space)
    if name == "asng":
        a = st.asng
        return (a.t, [th.tolist() for th in a.theta], a.Delta, a.s.tolist(), len(st.values))
    if name == "evolution":
        return (st["count"], [(list(g), f.tolist()) for g, f, _ in st["pop"]], sorted(st["seen"]))
    return (st["t"], [z.tolist() for z in st["logits"]], st["b"], len(st["values"]))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_one_instance_under_four_threads_ends_with_a_fresh_replays_state(name: str) -> None:
    sampler = SAMPLERS[name](0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(bowl, n_trials=200, n_jobs=4)
    assert len(study.trials) == 200 and all(t.state == TrialState.COMPLETE for t in study.trials)
    learned = [n for t in study.trials for n in t.system_attrs[LEARNED_ATTR]]
    assert len(learned) == len(set(learned))  # the learning order lists each trial once
    fresh = SAMPLERS[name](0)
    assert _state(name, sampler, study) == _state(name, fresh, study)
    # a trial is listed when a later one starts: the last few to finish under 4 threads may be
    # unlisted yet, so a count lies between the listed trials and all of them, never above
    assert 200 - 4 <= len(learned) <= 200
    if name == "evolution":  # every finished trial counted at most once
        assert len(learned) <= _state(name, sampler, study)[0] <= 200
    elif name == "reinforce":
        reused = sum(len(t.system_attrs.get("nasopt:reinforce", {}).get("reused", [])) for t in study.trials)
        assert len(learned) + reused <= _state(name, sampler, study)[0] <= 200 + reused


def _late_mean(study: optuna.Study, n: int = 50) -> float:
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    return float(np.mean(values[-n:]))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_trials_that_never_finish_do_not_stop_learning(name: str) -> None:
    """A `study.ask()` never told, and a trial a dead worker created before its sampler ran,
    stay RUNNING for the whole study; the sampler still learns from every finished trial."""
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(bowl, n_trials=150)
    sampler = SAMPLERS[name](0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(bowl, n_trials=5)
    orphan = study.ask()
    orphan.suggest_categorical("x0", CHOICES)
    study._storage.create_new_trial(study._study_id)  # RUNNING, never seen by any sampler
    study.optimize(bowl, n_trials=145)
    assert [t.state for t in study.trials].count(TrialState.RUNNING) == 2
    # a frozen learner is random search: its late mean would be about the random one (±6%)
    assert _late_mean(study) < 0.75 * _late_mean(random), (_late_mean(study), _late_mean(random))
    # what was learned is what a fresh replay of the storage learns
    assert _state(name, sampler, study) == _state(name, SAMPLERS[name](0), study)


class _Recording(optuna.samplers.RandomSampler):
    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: Counter[str] = Counter()

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.calls["before"] += 1

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.calls["after"] += 1


def _numeric(trial: optuna.Trial) -> float:
    return trial.suggest_float("lr", 1e-5, 1e-1, log=True) + trial.suggest_categorical("x0", CHOICES)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_hooks_reach_a_custom_independent_sampler(name: str) -> None:
    recording = _Recording()
    study = optuna.create_study(sampler=SAMPLERS[name](0, independent_sampler=recording))
    study.optimize(_numeric, n_trials=6)
    assert recording.calls == Counter(before=6, after=6)
    # TPE's constraints_func is applied in its after_trial: the constraints are stored
    with pytest.warns(FutureWarning):
        tpe = optuna.samplers.TPESampler(seed=0, constraints_func=lambda t: [t.params["x0"] - 1.5])
    study = optuna.create_study(sampler=SAMPLERS[name](0, independent_sampler=tpe))
    study.optimize(_numeric, n_trials=6)
    assert all(list(t.system_attrs["constraints"]) == [t.params["x0"] - 1.5] for t in study.trials)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_one_state_write_per_trial_whatever_the_feasibility_retries(name: str) -> None:
    study = optuna.create_study(sampler=SAMPLERS[name](0, feasibility=lambda p: p["x0"] == 4, max_retries=50))
    writes: Counter[tuple[int, str]] = Counter()
    storage = study._storage
    original = storage.set_trial_system_attr

    def counting(trial_id: int, key: str, value: Any) -> None:
        writes[(trial_id, key)] += 1
        original(trial_id, key, value)

    storage.set_trial_system_attr = counting  # type: ignore[method-assign]
    study.optimize(bowl, n_trials=20)
    record = f"nasopt:{name}"
    rejected = [t.system_attrs.get(record, {}).get("rejected_infeasible", 0) for t in study.trials]
    assert sum(rejected) > 20  # the filter did make the sampler retry, many times
    assert set(writes.values()) == {1}  # no key written twice on a trial
    for t in study.trials[1:]:  # trial 0 has no relative space yet: only its learned list
        keys = {k for (i, k) in writes if i == t._trial_id}
        assert LEARNED_ATTR in keys and (record in keys or rejected[t.number] == 0)
        assert keys <= {LEARNED_ATTR, record}


def mixed(trial: optuna.Trial) -> float:
    """A categorical, a log-float (a learning rate: best at 1e-3) and an integer parameter."""
    arch = trial.suggest_categorical("arch", ["a", "b", "c", "d"])
    lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
    depth = trial.suggest_int("depth", 1, 64)
    return (arch != "c") * 2.0 + (math.log10(lr) + 3.0) ** 2 + ((depth - 20) / 10.0) ** 2


@pytest.mark.parametrize("name", ["asng", "evolution"])
def test_numeric_parameters_are_learned_on_a_mixed_problem(name: str) -> None:
    n = 200
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(mixed, n_trials=n)
    sampler = SAMPLERS[name](0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixed, n_trials=n)
    assert _late_mean(study) < 0.3 * _late_mean(random), (_late_mean(study), _late_mean(random))
    assert study.best_value < random.best_value
    late = study.trials[-50:]
    assert np.median([abs(math.log10(t.params["lr"]) + 3) for t in late]) < 0.5
    assert all(isinstance(t.params["depth"], int) and 1 <= t.params["depth"] <= 64 for t in study.trials)
    if name == "asng":  # the Gaussians concentrate near the optimum
        g = sampler.gaussian(study)  # type: ignore[attr-defined]
        assert abs(math.log10(g["lr"][0]) + 3) < 0.5 and abs(g["depth"][0] - 20) <= 8
        assert sampler.argmax(study)["arch"] == "c"  # type: ignore[attr-defined]
