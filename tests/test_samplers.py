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

from nasopt.presets import load_objective, load_space
from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler
from nasopt.samplers._asng import RECORD_ATTR, ASNGState, ranking_utility, utility_schedule
from nasopt.samplers._ranking import constrained_order, crowding_distance, nondominated_ranks
from nasopt.spec import SamplerSpec, StudySpec
from nasopt.study.lifecycle import OVER_BUDGET_ATTR, make_sampler
from nasopt.study.objective import NasObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
SAMPLERS = {
    "asng": lambda seed, **kw: ASNGSampler(seed=seed, **kw),
    "evolution": lambda seed, **kw: EvolutionSampler(seed=seed, population_size=6, **kw),
    "reinforce": lambda seed, **kw: ReinforceSampler(seed=seed, **kw),
}
CHOICES = [0, 1, 2, 3]


def _record(trial: optuna.trial.FrozenTrial, attr: str = RECORD_ATTR) -> dict[str, Any]:
    """What a nasopt sampler wrote on the trial, once (ASNG's by default)."""
    return dict(trial.system_attrs.get(attr, {}))


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


def _two_threads(samplers: list[ASNGSampler], n_trials: int) -> optuna.Study:
    """Two workers (threads) optimising one in-memory study, each with its own sampler."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="w", storage=storage, directions=["minimize", "minimize"])

    def work(sampler: ASNGSampler) -> None:
        study = optuna.load_study(study_name="w", storage=storage, sampler=sampler)
        study.optimize(multi, n_trials=n_trials)

    threads = [threading.Thread(target=work, args=(s,)) for s in samplers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return optuna.load_study(study_name="w", storage=storage)


def test_two_workers_on_one_storage_share_one_update_sequence() -> None:
    samplers = [ASNGSampler(seed=3), ASNGSampler(seed=3)]
    study = _two_threads(samplers, 30)
    fresh = ASNGSampler(seed=3)
    states = [s.state(study) for s in [*samplers, fresh]]
    # every worker ends with the same θ as a fresh replay: no update applied twice or skipped
    for st in states[1:]:
        assert st.t == states[0].t
        assert all(np.array_equal(a, b) for a, b in zip(st.theta, states[0].theta, strict=True))
    # λ = 2 samples per update; a sample is a trial or a re-drawn repeat the trial records
    samples = len(study.trials) + sum(len(_record(t).get("reused", [])) for t in study.trials)
    assert states[0].t <= samples // 2
    # each trial records the θ-version it was drawn from (trial 0 has no space yet: none)
    versions = [_record(t).get("t", 0) for t in study.trials]
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
@pytest.mark.parametrize(
    ("space_name", "objective_name", "constraint"),
    [
        ("splitnets-single-32", "splitnets-hmd-4", "memory:"),
        ("fbnet-nasc", "nasc-raspi-edgegpu", "latency_ms"),
    ],
)
def test_feasibility_filter_never_runs_a_trial_the_analytic_model_rejects(
    name: str, space_name: str, objective_name: str, constraint: str
) -> None:
    """Hard constraints (a memory cap, a latency threshold) are checked before evaluation."""
    space, objective_spec = load_space(space_name), load_objective(objective_name)
    objective = NasObjective(
        StudySpec(name="t", space=space.name, objective=objective_spec.name), space, objective_spec
    )
    hard = [i for i, c in enumerate(objective.constraint_names) if c.startswith(constraint)]
    assert hard
    options: dict[str, Any] = {"population_size": 4} if name == "evolution" else {}
    sampler = make_sampler(SamplerSpec(name=name, seed=0, options=options), objective=objective)
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=12)
    for t in study.trials:
        assert all(t.system_attrs["constraints"][i] <= 0 for i in hard)
    # without the filter the same space does produce violations
    unfiltered = make_sampler(
        SamplerSpec(name=name, seed=0, options={**options, "hard_constraints": False}), objective=objective
    )
    study = optuna.create_study(directions=objective.directions, sampler=unfiltered)
    study.optimize(objective, n_trials=12)
    assert any(t.system_attrs["constraints"][i] > 0 for t in study.trials for i in hard)


def test_make_sampler_names_and_bad_options() -> None:
    from nasopt.errors import SpecError

    for name in ["asng", "evolution", "reinforce", "tpe", "nsga2", "nsga3", "random"]:
        assert isinstance(make_sampler(SamplerSpec(name=name, seed=0)), optuna.samplers.BaseSampler)
    with pytest.raises(SpecError, match="unknown option of sampler"):
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
    # the budget holds across the two workers: a trial one of them starts once the other has
    # filled it is refused (PRUNED, marked over budget, not counted)
    over = [t for t in study.trials if OVER_BUDGET_ATTR in t.system_attrs]
    assert len(over) <= 1 and all(t.state == optuna.trial.TrialState.PRUNED for t in over)
    states = [t.state for t in study.trials if t not in over]
    assert len(states) == 16 and all(s == optuna.trial.TrialState.COMPLETE for s in states)
    if name == "asng":
        replay = ASNGSampler(seed=0).state(study)
        versions = [_record(t).get("t", 0) for t in study.trials]
        reused = sum(len(_record(t).get("reused", [])) for t in study.trials)
        assert replay.t <= (len(study.trials) + reused) // 2  # λ = 2 samples per update, none twice
        assert max(versions) <= replay.t
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) > 1


# ---------------------------------------------------------------- re-draws and the rotating utility


def _reused(study: optuna.Study, attr: str) -> list[list[int]]:
    return [list(t.system_attrs.get(attr, {}).get("reused", [])) for t in study.trials]


@pytest.mark.parametrize("name", ["asng", "reinforce"])
def test_redraw_spends_trials_on_new_candidates_only(name: str) -> None:
    """A converging learner re-draws candidates the study already evaluated instead of running
    them again; each re-draw names an earlier COMPLETE trial and counts as a sample."""
    from nasopt.samplers._reinforce import RECORD_ATTR as REINFORCE_RECORD

    attr = RECORD_ATTR if name == "asng" else REINFORCE_RECORD
    kw = {"learning_rate": 0.2} if name == "reinforce" else {}
    func, directions = (multi, ["minimize"] * 2) if name == "asng" else (single, ["minimize"])
    repeats = optuna.create_study(directions=directions, sampler=SAMPLERS[name](0, redraw=0, **kw))
    repeats.optimize(func, n_trials=80)
    assert len({tuple(t.params.values()) for t in repeats.trials}) < 70  # it does converge
    assert not any(_reused(repeats, attr))

    study = optuna.create_study(directions=directions, sampler=SAMPLERS[name](0, redraw=50, **kw))
    study.optimize(func, n_trials=80)
    assert len({tuple(t.params.values()) for t in study.trials}) == 80
    reused = _reused(study, attr)
    assert sum(map(len, reused)) > 20
    for t, numbers in zip(study.trials, reused, strict=True):
        assert all(n < t.number for n in numbers)
    if name == "reinforce":
        assert study.best_value == 0.0


def test_asng_stops_redrawing_once_theta_has_converged() -> None:
    """Past convergence (every θ_d at its margin's cap) ASNG-NAS would stop; the sampler goes
    on sampling but takes no more free updates from re-draws, so θ stays put."""
    st = ASNGState([3, 3])
    for _ in range(60):
        st.update([[0, 0], [2, 1]], np.array([1.0, -1.0]))
    assert st.converged() and st.argmax() == [0, 0]
    assert not ASNGState([3, 3]).converged()

    def objective(trial: optuna.Trial) -> float:
        return float(sum(trial.suggest_categorical(f"x{i}", [0, 1, 2]) for i in range(4)))

    sampler = ASNGSampler(seed=0)  # 81 candidates, 200 trials: the space runs out
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=200)
    assert sampler.argmax(study) == {f"x{i}": 0 for i in range(4)}
    assert sum(map(len, _reused(study, RECORD_ATTR))) > 100
    while not sampler.state(study).converged():
        study.optimize(objective, n_trials=1)
    study.ask().suggest_categorical("x0", [0, 1, 2])  # from a converged θ: no re-draw
    running = study.trials[-1]
    assert running.state == optuna.trial.TrialState.RUNNING
    assert _record(running)["reused"] == []
    assert _record(running)["t"] == sampler.state(study).t


def test_asng_redraws_are_samples_of_the_replayed_update_sequence() -> None:
    """Every re-drawn repeat enters the replay as one sample of λ = 2: a study's θ-version is
    the number of generations of (trials + re-draws) whose utilities differ."""
    study = optuna.create_study(sampler=ASNGSampler(seed=2, redraw=50))
    study.optimize(single, n_trials=60)
    samples = 60 + sum(map(len, _reused(study, RECORD_ATTR)))
    state = ASNGSampler(seed=2, redraw=50).state(study)
    assert samples // 2 - 15 <= state.t <= samples // 2  # ties (equal values) give no update
    # the version each trial records is the θ it was drawn from, re-draws before it included
    versions = [_record(t)["t"] for t in study.trials[1:]]
    assert versions == sorted(versions) and versions[-1] <= state.t


@pytest.mark.parametrize("name", ["asng", "reinforce"])
def test_resumed_study_with_redraws_continues_the_same_sequence(name: str, tmp_path: Path) -> None:
    """Long enough for re-draws (and, for ASNG, several phases of the rotating utility)."""
    kw: dict[str, Any] = {"redraw": 30}
    if name == "asng":
        kw.update(sweep_generations=4, focus_generations=3)
    n = 60
    straight = optuna.create_study(directions=["minimize"] * 2, sampler=SAMPLERS[name](5, **kw))
    straight.optimize(constrained(multi), n_trials=n)
    attr = RECORD_ATTR if name == "asng" else "nasopt:reinforce"
    assert sum(map(len, _reused(straight, attr))) > 0

    url = f"sqlite:///{tmp_path / 'resume.db'}"
    first = optuna.create_study(
        study_name="s", storage=url, directions=["minimize"] * 2, sampler=SAMPLERS[name](5, **kw)
    )
    first.optimize(constrained(multi), n_trials=23)
    del first
    resumed = optuna.load_study(study_name="s", storage=url, sampler=SAMPLERS[name](5, **kw))
    resumed.optimize(constrained(multi), n_trials=n - 23)
    assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]
    assert _reused(resumed, attr) == _reused(straight, attr)


def test_two_workers_with_redraws_replay_each_sample_once() -> None:
    """Two threads on one storage: every worker and a fresh replay agree on θ; each trial's
    re-draws name earlier COMPLETE trials, so no sample is counted twice or skipped."""
    samplers = [ASNGSampler(seed=4, sweep_generations=3, focus_generations=2) for _ in range(2)]
    study = _two_threads(samplers, 40)
    complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    reused = _reused(study, RECORD_ATTR)
    for t, numbers in zip(study.trials, reused, strict=True):
        assert all(n < t.number and n in complete for n in numbers)
    states = [
        s.state(study) for s in [*samplers, ASNGSampler(seed=4, sweep_generations=3, focus_generations=2)]
    ]
    for st in states[1:]:
        assert st.t == states[0].t
        assert all(np.array_equal(a, b) for a, b in zip(st.theta, states[0].theta, strict=True))
    assert states[0].t <= (len(study.trials) + sum(map(len, reused))) // 2


def test_utility_schedule_walks_through_each_objective() -> None:
    steps = [utility_schedule(t, 2, 2, 1) for t in range(7)]
    assert all(s is not None for s in steps)
    w = [s[0].tolist() for s in steps if s is not None]
    focus = [s[1] for s in steps if s is not None]
    # leg toward objective 0, focus on it, leg toward objective 1, focus on it, repeat
    assert focus == [False, False, True, False, False, True, False]
    assert w[0] == [0.25, 0.75] and w[1] == [0.75, 0.25] and w[2] == [1.0, 0.0]
    assert w[3] == [0.75, 0.25] and w[5] == [0.0, 1.0] and w[6] == w[0]
    three = [utility_schedule(t, 3, 0, 1) for t in range(3)]
    assert [s[0].tolist() for s in three if s is not None] == np.eye(3).tolist()
    assert utility_schedule(5, 2, 0, 0) is None and utility_schedule(5, 1, 2, 1) is None


def test_asng_focus_generations_reach_each_objective_extreme() -> None:
    """With the rotation on, the archive holds both single-objective optima of `multi`
    (sum(x) = 0 and x0 = x1 = 3), which one Pareto-ranked θ alone tends to miss."""
    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=ASNGSampler(seed=0, sweep_generations=10, focus_generations=10),
    )
    study.optimize(multi, n_trials=120)
    values = {tuple(t.values) for t in study.trials}
    assert (0.0, 6.0) in values and min(v[1] for v in values) == 0.0


def test_new_options_are_validated() -> None:
    from nasopt.errors import SpecError

    for name, options in [
        ("asng", {"redraw": -1}),
        ("asng", {"focus_generations": -2}),
        ("reinforce", {"redraw": -1}),
    ]:
        with pytest.raises(SpecError, match="bad sampler option"):
            make_sampler(SamplerSpec(name=name, options=options))
    sampler = make_sampler(SamplerSpec(name="asng", seed=0, options={"redraw": 0, "sweep_generations": 0}))
    assert isinstance(sampler, ASNGSampler) and sampler.redraw == 0


def _tight_fbnet() -> NasObjective:
    """fbnet-nasc with a latency threshold about 1 % of uniform draws meet."""
    space, objective_spec = load_space("fbnet-nasc"), load_objective("nasc-raspi-edgegpu")
    limits = objective_spec.constraints.model_copy(update={"latency_ms": 26.0})
    tight = objective_spec.model_copy(update={"constraints": limits})
    return NasObjective(StudySpec(name="t", space=space.name, objective=tight.name), space, tight)


def _screened_runs(name: str, objective: NasObjective, feasibility: Any) -> list[tuple[Any, int]]:
    sampler = SAMPLERS[name](
        0, search_space=objective.distributions(), feasibility=feasibility, max_retries=200
    )
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=8)
    at = objective.constraint_names.index("latency_ms")
    out = []
    for t in study.trials:
        rejected = t.system_attrs.get(sampler.record_attr, {}).get("rejected_infeasible", 0)
        out.append((t.params, rejected, t.system_attrs["constraints"][at] <= 0))
    return out


class _Counted:
    """The study's check, counting scalar and batched calls (`many` only when `batched`)."""

    def __init__(self, check: Any, batched: bool) -> None:
        self.check, self.calls = check, {"one": 0, "many": 0}
        if batched:
            self.many = self._many

    def __call__(self, params: dict[str, Any]) -> bool:
        self.calls["one"] += 1
        return bool(self.check(params))

    def _many(self, params_list: list[dict[str, Any]]) -> np.ndarray:
        self.calls["many"] += 1
        return self.check.many(params_list)


def test_batched_screening_chooses_what_one_by_one_screening_chooses() -> None:
    """Evolution proposes one by one (no `_propose_many`): with a tight latency threshold the
    batched check (a few calls per trial) picks exactly what the scalar check picks."""
    from nasopt.study.feasibility import hard_constraint_check

    objective = _tight_fbnet()
    check = hard_constraint_check(objective)
    batched, scalar = _Counted(check, batched=True), _Counted(check, batched=False)
    runs = {
        "batched": _screened_runs("evolution", objective, batched),
        "scalar": _screened_runs("evolution", objective, scalar),
    }
    assert runs["batched"] == runs["scalar"]
    rejected = sum(r for _, r, _ in runs["scalar"])
    assert rejected > 8 * 5  # the threshold does reject most proposals
    assert batched.calls["many"] <= 3 * 8 and batched.calls["one"] <= 8 * 5  # 4 retries one by one


@pytest.mark.parametrize("name", ["asng", "reinforce"])
def test_vectorised_proposals_find_feasible_candidates_in_few_batched_calls(name: str) -> None:
    """ASNG and REINFORCE draw the screening's retries as one population per call: every trial
    that found a feasible proposal is feasible, at least as often as one-by-one screening
    finds one, with at most three batched calls per trial."""
    from nasopt.study.feasibility import hard_constraint_check

    objective = _tight_fbnet()
    check = hard_constraint_check(objective)
    batched, scalar = _Counted(check, batched=True), _Counted(check, batched=False)
    vectorised, one_by_one = _screened_runs(name, objective, batched), _screened_runs(name, objective, scalar)
    assert sum(r for _, r, _ in one_by_one) > 8 * 5
    assert all(ok or r >= 199 for _, r, ok in vectorised)  # none found only after every retry
    assert sum(ok for *_, ok in vectorised) >= sum(ok for *_, ok in one_by_one) - 1
    assert batched.calls["many"] <= 3 * 8 and batched.calls["one"] == 8
    assert scalar.calls["one"] > 8 * 5


def test_hard_constraint_check_batched_equals_scalar_on_random_candidates() -> None:
    """`many` and the one-by-one check agree on a memory-capped space (the batched model)."""
    from nasopt.study.feasibility import hard_constraint_check

    space, objective_spec = load_space("splitnets-single-32"), load_objective("splitnets-hmd-4")
    objective = NasObjective(
        StudySpec(name="t", space=space.name, objective=objective_spec.name), space, objective_spec
    )
    check = hard_constraint_check(objective)
    assert check is not None
    rng = np.random.default_rng(0)
    dists = objective.distributions()
    params_list = [{n: d.choices[rng.integers(len(d.choices))] for n, d in dists.items()} for _ in range(200)]
    ok = check.many(params_list)
    assert ok.dtype == bool and 0 < ok.sum() < len(ok)
    assert ok.tolist() == [check(p) for p in params_list]
