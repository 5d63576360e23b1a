"""nasopt's samplers (ASNG, evolution, REINFORCE) as plain Optuna samplers: objectives,
constraints, resume, shared storage, ASNG convergence, and the hard-constraint filter."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from nasopt.objective import NasObjective
from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler
from nasopt.samplers._asng import VERSION_ATTR, ASNGState, ranking_utility
from nasopt.samplers._ranking import constrained_order, crowding_distance, nondominated_ranks
from nasopt.specs import SamplerSpec, StudySpec, load_objective, load_space
from nasopt.study import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SAMPLERS = {
    "asng": lambda seed, **kw: ASNGSampler(seed=seed, **kw),
    "evolution": lambda seed, **kw: EvolutionSampler(seed=seed, population_size=6, **kw),
    "reinforce": lambda seed, **kw: ReinforceSampler(seed=seed, **kw),
}
CHOICES = [0, 1, 2, 3]


def _x(trial: optuna.Trial) -> list[int]:
    return [trial.suggest_categorical(f"x{i}", CHOICES) for i in range(4)]


def single(trial: optuna.Trial) -> float:
    return float(sum((v - 2) ** 2 for v in _x(trial)))


def multi(trial: optuna.Trial) -> tuple[float, float]:
    x = _x(trial)
    return float(sum(x)), float(sum(3 - v for v in x[:2]))


def constrained(objective: Any) -> Any:
    def wrapped(trial: optuna.Trial) -> Any:
        values = objective(trial)
        x = [trial.params[f"x{i}"] for i in range(4)]
        trial.study._storage.set_trial_system_attr(trial._trial_id, "constraints", [x[0] - 1.5])
        return values

    return wrapped


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("objectives", [1, 2])
@pytest.mark.parametrize("with_constraints", [False, True])
def test_sampler_in_a_plain_study(name: str, objectives: int, with_constraints: bool) -> None:
    func = single if objectives == 1 else multi
    if with_constraints:
        func = constrained(func)
    study = optuna.create_study(directions=["minimize"] * objectives, sampler=SAMPLERS[name](0))
    study.optimize(func, n_trials=40)
    trials = study.trials
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(set(t.params) == {f"x{i}" for i in range(4)} for t in trials)
    if with_constraints:  # the learner moves toward the feasible side x0 <= 1
        late = [t.params["x0"] <= 1 for t in trials[20:]]
        early = [t.params["x0"] <= 1 for t in trials[:20]]
        assert sum(late) >= sum(early) - 2
    if objectives == 1:
        assert study.best_value <= 2


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_resumed_sqlite_study_continues_the_same_sequence(name: str, tmp_path: Path) -> None:
    n = 16
    straight = optuna.create_study(directions=["minimize"] * 2, sampler=SAMPLERS[name](7))
    straight.optimize(constrained(multi), n_trials=n)

    url = f"sqlite:///{tmp_path / 'resume.db'}"
    first = optuna.create_study(
        study_name="s", storage=url, directions=["minimize"] * 2, sampler=SAMPLERS[name](7)
    )
    first.optimize(constrained(multi), n_trials=n // 2)
    del first  # a new process: fresh sampler, state only in the storage
    resumed = optuna.load_study(study_name="s", storage=url, sampler=SAMPLERS[name](7))
    resumed.optimize(constrained(multi), n_trials=n - n // 2)
    assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]


def test_two_workers_on_one_storage_share_one_update_sequence() -> None:
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="w", storage=storage, directions=["minimize", "minimize"])
    samplers = [ASNGSampler(seed=3), ASNGSampler(seed=3)]

    def work(sampler: ASNGSampler) -> None:
        study = optuna.load_study(study_name="w", storage=storage, sampler=sampler)
        study.optimize(multi, n_trials=30)

    threads = [threading.Thread(target=work, args=(s,)) for s in samplers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    study = optuna.load_study(study_name="w", storage=storage)
    fresh = ASNGSampler(seed=3)
    states = [s.state(study) for s in [*samplers, fresh]]
    # every worker ends with the same θ as a fresh replay: no update applied twice or skipped
    for st in states[1:]:
        assert st.t == states[0].t
        assert all(np.array_equal(a, b) for a, b in zip(st.theta, states[0].theta, strict=True))
    assert states[0].t <= len(study.trials) // 2
    # each trial records the θ-version it was drawn from (trial 0 has no space yet: none)
    versions = [t.system_attrs.get(VERSION_ATTR, 0) for t in study.trials]
    assert max(versions) <= states[0].t and max(versions) > 0
    # each worker's parameters come from (seed, trial number): no two trials share a random stream
    assert len({tuple(t.params.values()) for t in study.trials}) > 1


def test_asng_theta_concentrates_on_the_optimum() -> None:
    target = [2, 0, 3, 1, 2]

    def separable(trial: optuna.Trial) -> float:
        return float(sum(trial.suggest_categorical(f"x{i}", CHOICES) != t for i, t in enumerate(target)))

    sampler = ASNGSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(separable, n_trials=300)
    assert sampler.argmax(study) == {f"x{i}": t for i, t in enumerate(target)}
    theta = sampler.theta(study)
    assert all(theta[f"x{i}"][t] > 0.5 for i, t in enumerate(target))  # the margin caps θ at 0.8
    assert sampler.state(study).convergence() > 0.6


def test_asng_update_keeps_theta_in_its_margin() -> None:
    st = ASNGState([3, 4])
    for _ in range(50):
        st.update([[0, 0], [2, 3]], np.array([1.0, -1.0]))
    for d, th in enumerate(st.theta):
        assert th.sum() == pytest.approx(1.0)
        assert th.min() >= st.theta_min[d] - 1e-12
    assert st.argmax() == [0, 0]
    assert list(ranking_utility([(1,), (0,)])) == [-1.0, 1.0]
    assert list(ranking_utility([(0,), (0,)])) == [0.0, 0.0]


def test_ranking_utilities() -> None:
    F = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.5, 0.5]])
    assert list(nondominated_ranks(F)) == [0, 0, 1, 2, 0]
    assert np.isinf(crowding_distance(F[[0, 1, 4]])[[0, 1]]).all()
    viol = np.array([0.0, 0.0, 0.0, 0.0, 0.3])
    order = list(constrained_order(F, viol))
    assert order[-1] == 4 and order[-2] == 3  # infeasible last, then the worst rank before it


@pytest.mark.parametrize("name", ["asng", "evolution", "reinforce"])
def test_feasibility_filter_never_runs_a_memory_violating_trial(name: str) -> None:
    space, objective_spec = load_space("splitnets-single-32"), load_objective("splitnets-hmd-4")
    objective = NasObjective(
        StudySpec(name="t", space=space.name, objective=objective_spec.name), space, objective_spec
    )
    memory = [i for i, c in enumerate(objective.constraint_names) if c.startswith("memory:")]
    assert memory
    options: dict[str, Any] = {"population_size": 4} if name == "evolution" else {}
    sampler = make_sampler(SamplerSpec(name=name, seed=0, options=options), objective=objective)
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=12)
    for t in study.trials:
        assert all(t.system_attrs["constraints"][i] <= 0 for i in memory)
    # without the filter the same space does produce memory violations
    unfiltered = make_sampler(
        SamplerSpec(name=name, seed=0, options={**options, "hard_constraints": False}), objective=objective
    )
    study = optuna.create_study(directions=objective.directions, sampler=unfiltered)
    study.optimize(objective, n_trials=12)
    assert any(t.system_attrs["constraints"][i] > 0 for t in study.trials for i in memory)


def test_make_sampler_names_and_bad_options() -> None:
    from nasopt.errors import SpecError

    for name in ["asng", "evolution", "reinforce", "tpe", "nsga2", "nsga3", "random"]:
        assert isinstance(make_sampler(SamplerSpec(name=name, seed=0)), optuna.samplers.BaseSampler)
    with pytest.raises(SpecError, match="bad sampler option"):
        make_sampler(SamplerSpec(name="evolution", options={"population": 3}))
    with pytest.raises(SpecError, match="unknown sampler"):
        make_sampler(SamplerSpec(name="cmaes"))


@pytest.mark.parametrize("name", ["asng", "evolution"])
def test_two_worker_processes_on_sqlite_run_one_sequence(name: str, tmp_path: Path) -> None:
    """`nasopt run --workers 2` with a nasopt sampler: every trial is finished, the state replayed
    from the storage is consistent with what each trial recorded, and no update is counted twice."""
    from tests.services import check_ok, nasopt, write_tiny_study

    study_file = write_tiny_study(tmp_path, n_trials=16, sampler=name)
    check_ok(
        nasopt(
            "run",
            str(study_file),
            "--storage",
            "sqlite:///w.db",
            "--workers",
            "2",
            "--no-progress",
            cwd=tmp_path,
        )
    )
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'w.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 16 and all(s == optuna.trial.TrialState.COMPLETE for s in states)
    if name == "asng":
        replay = ASNGSampler(seed=0).state(study)
        versions = [t.system_attrs.get(VERSION_ATTR, 0) for t in study.trials]
        assert replay.t <= len(study.trials) // 2  # λ = 2 trials per update, none reused
        assert max(versions) <= replay.t
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) > 1
