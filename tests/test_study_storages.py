"""`nasopt run/worker/studies/pareto` end to end on every storage kind, with 4 worker processes.

One test per storage: SQLite file, journal file, PostgreSQL, MariaDB, Redis. The servers are the
local ones of tests/services.py (skipped when down, failed in CI); each test uses a study name
of its own since the databases are shared between runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasopt.presets import resolve
from nasopt.study.lifecycle import FINGERPRINT_ATTR, SPEC_ATTR, _decode
from nasopt.study.pareto import front
from nasopt.study.storage import open_storage, study_names
from tests.services import (  # noqa: F401  (fixtures, used through request.getfixturevalue)
    check_ok,
    mysql_url,
    nasopt,
    nasopt_concurrently,
    postgres_url,
    redis_url,
    unique_name,
    write_tiny_study,
)

N_TRIALS = 14
WORKER_TRIALS = 3


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'study.log'}"


def load_study(url: str, name: str) -> optuna.Study:
    """The study as a user would open it: Optuna directly for SQLAlchemy URLs, nasopt's
    `open_storage` for journal files and Redis (Optuna cannot take those as a URL string)."""
    if url.startswith(("journal:", "redis://")):
        return optuna.load_study(study_name=name, storage=open_storage(url, must_exist=True))
    return optuna.load_study(study_name=name, storage=url)


def delete_study(url: str, name: str) -> None:
    storage = open_storage(url)
    if name in study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)


def check_trials(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert len(trials) == n, states
    assert all(s in (TrialState.COMPLETE, TrialState.FAIL) for s in states), states
    failed = {t.number: t.system_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    assert not failed, f"the objective never fails on this space: {failed}"
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(n)), numbers  # unique, no gaps
    return trials


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres", "mysql", "redis"])
def test_run_worker_studies_pareto(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    name = unique_name(kind)
    if kind in ("postgres", "mysql", "redis"):  # shared databases: leave them as found
        request.addfinalizer(lambda: delete_study(url, name))
    study_file = write_tiny_study(tmp_path)

    run = nasopt(
        "run", "study.toml", "--storage", url, "--study-name", name,
        "--n-trials", str(N_TRIALS), "--workers", "4", "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    check_ok(run)
    assert f"Pareto front of {name}" in run.stdout or "No feasible trial" in run.stdout

    study = load_study(url, name)
    check_trials(study, N_TRIALS)
    resolved = resolve(str(study_file))
    attrs = study.user_attrs
    assert attrs[FINGERPRINT_ATTR] == resolved.fingerprint
    assert _decode(attrs[SPEC_ATTR]) == resolved.to_json()
    assert attrs["nasopt:space"] == "tiny-space"
    assert attrs["nasopt:objective"] == "tiny-chain"
    assert attrs["nasopt:constraints"] == ["memory:phone"]
    assert study.metric_names == ["error", "latency_ms"]

    # a worker joins knowing only the name and the storage
    worker = nasopt(
        "worker", "--study-name", name, "--storage", url, "--n-trials", str(WORKER_TRIALS), "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    check_ok(worker)
    assert f"has {N_TRIALS + WORKER_TRIALS} trials" in worker.stdout
    study = load_study(url, name)
    trials = check_trials(study, N_TRIALS + WORKER_TRIALS)

    studies, feasible, every, unknown = nasopt_concurrently(
        ["studies", "--storage", url],
        ["pareto", "--study-name", name, "--storage", url, "--format", "json", "--feasible-only"],
        ["pareto", "--study-name", name, "--storage", url, "--format", "json"],
        ["worker", "--study-name", f"{name}-nope", "--storage", url, "--n-trials", "1"],
        cwd=tmp_path,
    )
    for proc in (studies, feasible, every):
        check_ok(proc)
    # a worker for an unknown study: one error line, and no study is created
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.count("\n") == 1 and unknown.stderr.startswith("nasopt: error:"), unknown.stderr
    assert f"unknown study (got '{name}-nope')" in unknown.stderr
    assert f"{name}-nope" not in study_names(open_storage(url))
    line = next(ln for ln in studies.stdout.splitlines() if ln.split()[:1] == [name])
    assert "min error, min latency_ms" in line
    assert str(N_TRIALS + WORKER_TRIALS) in line.split()

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = sorted(study.best_trials, key=lambda t: t.number)
    assert best, "the memory cap leaves feasible candidates: the feasible front is not empty"
    assert all(all(v <= 0 for v in t.system_attrs["constraints"]) for t in best)

    rows = json.loads(feasible.stdout)
    assert sorted(r["trial"] for r in rows) == [t.number for t in best]
    by_number = {t.number: t for t in best}
    for row in rows:
        t = by_number[row["trial"]]
        assert [row["error"], row["latency_ms"]] == pytest.approx(t.values, rel=1e-12)
        assert row["feasible"] is True
        assert row["arch"] == t.user_attrs["arch"]

    # without --feasible-only: the front over every completed trial, infeasible ones marked
    rows = json.loads(every.stdout)
    expected = [t.number for t in complete if not any(dominates(o.values, t.values) for o in complete)]
    assert sorted(r["trial"] for r in rows) == sorted(expected)
    assert sorted(r["trial"] for r in rows) == sorted(t.number for t in front(study, feasible_only=False))
    numbered = {t.number: t for t in complete}
    for row in rows:
        t = numbered[row["trial"]]
        assert row["feasible"] == all(v <= 0 for v in t.system_attrs["constraints"])


def dominates(a: list[float], b: list[float]) -> bool:
    """`a` Pareto-dominates `b` (both minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


BUDGET = 16
N_WORKERS = 8


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_eight_workers_end_with_exactly_the_budget(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`nasopt run --n-trials 1`, then 8 `nasopt worker` processes at once without --n-trials:
    the study ends with exactly its budget of counted trials (each worker used to take the whole
    remaining budget: 377 trials on a 48-trial study), every one of them COMPLETE; a trial a
    worker started over the budget is PRUNED, marked, and does not count."""
    from nasopt.study.lifecycle import OVER_BUDGET_ATTR, counted_trials

    url = request.getfixturevalue(f"{kind}_url")
    name = unique_name(f"budget-{kind}")
    request.addfinalizer(lambda: delete_study(url, name))
    write_tiny_study(tmp_path, n_trials=BUDGET)
    check_ok(
        nasopt(
            "run", "study.toml", "--storage", url, "--study-name", name, "--n-trials", "1", "--no-progress",
            cwd=tmp_path,
        )
    )  # fmt: skip
    workers = nasopt_concurrently(
        *[["worker", "--study-name", name, "--storage", url, "--no-progress"] for _ in range(N_WORKERS)],
        cwd=tmp_path,
        timeout_s=600,  # 8 processes importing Optuna on a shared 2-core machine
    )
    for proc in workers:
        check_ok(proc)
    trials = load_study(url, name).get_trials(deepcopy=False)
    counted = counted_trials(trials)
    assert len(counted) == BUDGET, [t.state for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in counted), [t.state for t in counted]
    refused = [t for t in trials if t not in counted]
    assert all(t.state == TrialState.PRUNED and t.system_attrs[OVER_BUDGET_ATTR] for t in refused)
    assert len(refused) < N_WORKERS  # at most one surplus start per worker, usually none
    # the budget is spent: one more worker runs nothing
    late = check_ok(nasopt("worker", "--study-name", name, "--storage", url, "--no-progress", cwd=tmp_path))
    assert len(load_study(url, name).get_trials(deepcopy=False)) == len(trials), late.stdout
