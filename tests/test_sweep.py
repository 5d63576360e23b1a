"""Threshold sweeps answered from an existing study, and their input checks."""

from __future__ import annotations

import optuna
import pytest

from nasopt.errors import SpecError
from nasopt.spec import ResolvedStudy, StudySpec, parse_spec
from nasopt.study.sweep import apply_sets, parse_threshold, sweep_from_study
from tests.conftest import space_spec
from tests.test_objective import make_objective, run_study


def resolved_for(objective) -> ResolvedStudy:
    study = parse_spec(StudySpec, {"name": "t", "space": "x", "objective": "y"}, "test")
    return ResolvedStudy(study, space_spec(), objective.objective_spec)


def test_parse_threshold_accepts_lists_and_rejects_unknown_keys():
    assert parse_threshold("latency_ms=5,10,20") == ("latency_ms", [5.0, 10.0, 20.0])
    with pytest.raises(SpecError, match=r"unknown threshold key.*allowed: latency_ms"):
        parse_threshold("throughput=3")
    with pytest.raises(SpecError, match="must be numbers"):
        parse_threshold("latency_ms=fast")


def test_apply_sets_changes_a_link_and_names_unknown_keys():
    resolved = resolved_for(make_objective())
    changed = apply_sets(resolved, ["objective.links.up.bandwidth_bps=1e5"])
    assert changed.objective.links["up"].bandwidth_bps == 1e5
    with pytest.raises(SpecError, match=r"--set objective.links.down.*allowed: up"):
        apply_sets(resolved, ["objective.links.down.bandwidth_bps=1"])
    with pytest.raises(SpecError, match="--set"):
        apply_sets(resolved, ["objective.links.up.bandwidth_bps=-5"])


def test_sweep_from_study_matches_a_direct_scan_and_is_monotone():
    objective = make_objective(latency_ms=1000.0)
    study = run_study(objective, n=40)
    resolved = resolved_for(objective)
    values = [2.0, 5.0, 20.0, 1000.0]
    points = sweep_from_study(study, resolved, "latency_ms", values, reevaluate=False)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    for point, limit in zip(points, values, strict=True):
        ok = [
            t
            for t in complete
            if t.user_attrs["latency_ms"] <= limit and t.user_attrs["violation:memory:edge"] <= 0
        ]
        expected = max((t.user_attrs["accuracy"] for t in ok), default=None)
        assert point.accuracy == expected
    found = [p.accuracy for p in points if p.accuracy is not None]
    assert found == sorted(found)  # a looser threshold never lowers the best accuracy


def test_sweep_reevaluates_stored_candidates_after_a_bandwidth_change():
    objective = make_objective(latency_ms=1000.0)
    study = run_study(objective, n=25)
    resolved = resolved_for(objective)
    slow = apply_sets(resolved, ["objective.links.up.bandwidth_bps=1e4"])
    fast = sweep_from_study(study, resolved, "latency_ms", [1000.0], reevaluate=True)[0]
    slowed = sweep_from_study(study, slow, "latency_ms", [1000.0], reevaluate=True)[0]
    assert fast.latency_ms is not None
    # with a 200x slower link the same stored candidates can only get slower or infeasible
    assert slowed.accuracy is None or slowed.accuracy <= fast.accuracy


def test_sweep_cli_runs_one_study_per_threshold_and_refuses_unknown_keys(tmp_path):
    from tests.services import check_ok, nasopt, write_tiny_study

    study = write_tiny_study(tmp_path, n_trials=6)
    bad = nasopt(
        "sweep", str(study), "--threshold", "throughput=1,2", "--storage", "sqlite:///s.db", cwd=tmp_path
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown threshold key" in bad.stderr
    assert not (tmp_path / "s.db").exists()  # nothing written

    out = check_ok(
        nasopt(
            "sweep",
            str(study),
            "--threshold",
            "latency_ms=1,1000",
            "--storage",
            "sqlite:///s.db",
            "--no-progress",
            cwd=tmp_path,
        )
    ).stdout
    lines = out.splitlines()
    assert lines[0].startswith("accuracy: ")  # the estimator is named
    table = lines[lines.index("best accuracy vs latency_ms:") + 3 :]
    studies = {line.split()[-1] for line in table if line.split() and line.split()[0] in ("1", "1000")}
    assert studies == {"tiny.latency_ms=1", "tiny.latency_ms=1000"}
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["tiny.latency_ms=1", "tiny.latency_ms=1000"]
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 6
