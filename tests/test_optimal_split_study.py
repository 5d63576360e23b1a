"""`split = "optimal"`: the sampler searches the architecture, the objective places it best."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest

from nasopt.core.split import optimal_split
from nasopt.errors import SpecError
from nasopt.presets import load_objective, load_space
from nasopt.spec import ResolvedStudy, StudySpec
from nasopt.study.lifecycle import create_or_resume, optimize
from nasopt.study.objective import NasObjective
from nasopt.study.storage import open_storage


def resolved(
    space: str, objective: str, sampler: str = "random", metric: str = "latency_ms"
) -> ResolvedStudy:
    study = StudySpec(
        name=f"optimal-{space}-{objective}-{sampler}",
        space=space,
        objective=objective,
        n_trials=12,
        split="optimal",
        split_metric=metric,
        sampler={"name": sampler, "seed": 3},
    )
    return ResolvedStudy(study, load_space(space), load_objective(objective))


@pytest.mark.parametrize(
    ("space", "objective", "sampler"),
    [
        ("mbconv-quick", "nasc-raspi-edgegpu", "random"),
        ("mbconv-jmsnas-32", "jmsnas-chain", "evolution"),
    ],
)
def test_optimal_split_equals_optimal_split_trial_by_trial(
    space: str, objective: str, sampler: str, tmp_path: Path
) -> None:
    spec = resolved(space, objective, sampler)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    create_or_resume(spec, open_storage(url))
    assert optimize(url, spec.study.name, 6) == 6
    study = optuna.load_study(study_name=spec.study.name, storage=url)
    nas = NasObjective(spec.study, spec.space, spec.objective)
    placement = set(nas.space.placement_names())
    assert placement  # the space does have cut parameters, which the sampler never sees
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert not placement & set(trial.params), trial.params
        candidate = nas.space.validate(nas.candidate_of(trial.params))
        assert trial.user_attrs["candidate"] == candidate.to_dict()
        best = optimal_split(nas.space.macro, candidate, nas.system)
        assert trial.user_attrs["latency_ms"] == pytest.approx(best.latency_ms, rel=1e-9)
        assert trial.user_attrs["split_solved"] == "latency_ms"


def test_energy_optimal_placement_minimises_energy_over_every_placement() -> None:
    spec = resolved("mbconv-quick", "nasc-raspi-edgegpu", metric="energy_mj")
    nas = NasObjective(spec.study, spec.space, spec.objective)
    arch = nas.space.sample(random.Random(5))
    placed = nas.place(arch)
    energies = [
        nas.evaluate(c).metrics["energy_mj"] for c in nas.space.placements(arch).candidates(nas.space.macro)
    ]
    assert nas.evaluate(placed).metrics["energy_mj"] == pytest.approx(min(energies), rel=1e-12)


def test_placing_many_at_once_equals_placing_each_and_the_screening_agrees() -> None:
    """One batched call places a list of architectures as `place` does one by one, and the
    batched hard-constraint check of an optimal-split study equals its scalar check."""
    from nasopt.study.feasibility import hard_constraint_check

    spec = resolved("splitnets-single-32", "splitnets-hmd-4")
    nas = NasObjective(spec.study, spec.space, spec.objective)
    rng = random.Random(7)
    archs = [nas.space.sample(rng) for _ in range(40)]
    assert nas.place_many(archs) == [nas.place(a) for a in archs]
    fbnet = resolved("fbnet-nasc", "nasc-raspi-edgegpu")
    limits = fbnet.objective.constraints.model_copy(update={"latency_ms": 24.0})
    tight = NasObjective(fbnet.study, fbnet.space, fbnet.objective.model_copy(update={"constraints": limits}))
    check = hard_constraint_check(tight)
    assert check is not None
    dists = tight.distributions()
    params_list = [{n: rng.choice(d.choices) for n, d in dists.items()} for _ in range(200)]
    ok = check.many(params_list)
    assert 0 < ok.sum() < len(ok)
    assert ok.tolist() == [check(p) for p in params_list]


def test_optimal_split_on_a_mesh_with_a_bottleneck_is_refused() -> None:
    data = load_space("mbconv-jmsnas-mesh-32").model_dump()
    data["bottleneck"]["widths"] = ["none", 8]
    from nasopt.spec import SearchSpaceSpec, parse_spec

    spec = StudySpec(name="m", space="m", objective="jmsnas-mesh", split="optimal")
    with pytest.raises(SpecError, match="mesh needs a space without bottleneck"):
        NasObjective(spec, parse_spec(SearchSpaceSpec, data, "m"), load_objective("jmsnas-mesh"))
