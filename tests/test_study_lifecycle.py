"""Study lifecycle through the command line: resume, a killed worker's trial retried, bad input.

Every command runs as `python -m nasopt` in a subprocess, in a temporary folder holding a tiny
study (tests/services.py): a 16x16 MBConv space on a phone -> cloud chain with a memory cap.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasopt.study.storage import open_storage
from tests.services import check_ok, cli_env, nasopt, write_tiny_study

# ------------------------------------------------------------------ (a) resume


def test_run_twice_resumes_one_study(tmp_path: Path) -> None:
    write_tiny_study(tmp_path, n_trials=12)
    url = "sqlite:///study.db"
    for _ in range(2):
        check_ok(
            nasopt("run", "study.toml", "--storage", url, "--n-trials", "10", "--no-progress", cwd=tmp_path)
        )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["tiny"]
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert [t.number for t in trials] == list(range(20))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # the resumed run's sampler is seeded apart from the first run's: no replayed sequence
    assert [t.params for t in trials[:10]] != [t.params for t in trials[10:]]

    # the spec's budget (12) is spent: a run without --n-trials adds nothing
    again = check_ok(nasopt("run", "study.toml", "--storage", url, "--no-progress", cwd=tmp_path))
    assert "already has its 12 trials" in again.stdout
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 20


# ------------------------------------------------------------------ (b) a worker killed mid-trial

# A worker that runs the study's own objective but sleeps 60 s inside its 2nd trial, after the
# parameters were suggested (so the retry can be checked to carry them).
SLOW_WORKER = """
import sys, time, optuna
from nasopt.study.objective import NasObjective
from nasopt.study.storage import open_storage
from nasopt.study.lifecycle import load

url, name = sys.argv[1], sys.argv[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)
study, resolved = load(open_storage(url, must_exist=True), name)
objective = NasObjective(resolved.study, resolved.space, resolved.objective)
calls = 0

def slow(trial):
    global calls
    calls += 1
    values = objective(trial)
    if calls == 2:
        time.sleep(60)
    return values

study.optimize(slow, n_trials=5)
"""
BEAT_ENV = {"NASOPT_HEARTBEAT_S": "1", "NASOPT_GRACE_S": "2"}
GRACE_S = 2
SPEC_TRIALS = 6
FIRST_TRIALS = 3


def read_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, must_exist=True)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_killed_worker_trial_is_retried(kind: str, tmp_path: Path) -> None:
    write_tiny_study(tmp_path, n_trials=SPEC_TRIALS)
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'study.log'}"
    env = cli_env(**BEAT_ENV)
    run = ["run", "study.toml", "--storage", url, "--study-name", "crash", "--no-progress"]
    check_ok(nasopt(*run, "--n-trials", str(FIRST_TRIALS), cwd=tmp_path, env=env))

    worker = subprocess.Popen(
        [sys.executable, "-c", SLOW_WORKER, url, "crash"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # wait for the worker's 2nd trial: one more COMPLETE trial and one RUNNING, asleep
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            trials = read_trials(url, "crash")
            running = [t for t in trials if t.state == TrialState.RUNNING]
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            # the objective has written its attributes: every parameter is suggested, it sleeps
            if running and "arch" in running[0].user_attrs and len(complete) == FIRST_TRIALS + 1:
                break
            assert time.monotonic() < deadline, [t.state for t in trials]
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stderr:
            worker.stderr.close()

    assert len(running) == 1
    killed = running[0]
    before = {t.number: t.values for t in read_trials(url, "crash") if t.state == TrialState.COMPLETE}
    assert len(before) == FIRST_TRIALS + 1
    time.sleep(GRACE_S + 1.5)  # the killed trial's last heartbeat is now older than the grace period

    check_ok(nasopt(*run, cwd=tmp_path, env=env))  # no --n-trials: the rest of the spec's budget

    trials = {t.number: t for t in read_trials(url, "crash")}
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs.get("failed_trial")) for t in retries]
    assert retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    states = [t.state for t in trials.values()]
    assert states.count(TrialState.COMPLETE) == SPEC_TRIALS
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert len(trials) == SPEC_TRIALS + 1  # the budget counts the retry, not the killed trial
    for number, values in before.items():
        assert trials[number].state == TrialState.COMPLETE
        assert trials[number].values == values


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_journal_retry_is_not_stale_before_its_first_heartbeat(tmp_path: Path) -> None:
    """The queued retry inherits the dead trial's system attrs, its old heartbeat included. Once
    a worker has popped it (RUNNING) and before that worker's first beat, another worker's
    stale check must not take the inherited beat for the retry's own and fail it again (the
    RDB storages keep beats per trial id and never do)."""
    storage = open_storage(f"journal:{tmp_path / 'study.log'}", heartbeat_interval_s=1, grace_period_s=1)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask()  # a worker beats once, then dies
    storage.record_heartbeat(dead._trial_id)
    time.sleep(1.2)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]

    retry = study.ask()  # another worker pops the retry; its heartbeat thread has not run yet
    assert retry.number == 1
    assert storage._get_stale_trial_ids(study._study_id) == []
    optuna.storages.fail_stale_trials(study)  # a third worker checks at that moment
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING]

    # the retry's own beats count as usual: silent for longer than the grace period, it is stale
    storage.record_heartbeat(retry._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(1.2)
    assert storage._get_stale_trial_ids(study._study_id) == [retry._trial_id]


# ------------------------------------------------------------------ (c) bad input

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/test"


@dataclass
class BadCase:
    args: list[str]
    expect: list[str]  # substrings of the error line
    prepare: Callable[[Path], None] | None = None
    absent: list[str] = field(default_factory=list)  # files that must not be created


def _edit(file: str, old: str, new: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        path = folder / file
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return prepare


DB = "sqlite:///study.db"
RUN = ["run", "study.toml", "--no-progress"]
BAD_CASES: dict[str, BadCase] = {
    "worker-unknown-study": BadCase(
        ["worker", "--study-name", "nope", "--storage", DB], ["unknown study", "'nope'", "tiny"]
    ),
    "pareto-unknown-study": BadCase(
        ["pareto", "--study-name", "nope", "--storage", DB], ["unknown study", "'nope'", "tiny"]
    ),
    "worker-missing-sqlite-file": BadCase(
        ["worker", "--study-name", "tiny", "--storage", "sqlite:///missing.db"],
        ["no such storage file"],
        absent=["missing.db"],
    ),
    "pareto-missing-journal-file": BadCase(
        ["pareto", "--study-name", "tiny", "--storage", "journal:missing.log"],
        ["no such storage file"],
        absent=["missing.log"],
    ),
    "run-changed-space": BadCase(
        [*RUN, "--storage", DB, "--study-name", "tiny", "--n-trials", "1"],
        ["fingerprint", "--study-name"],
        prepare=_edit("space.toml", "widths = [8, 16]", "widths = [8, 24]"),
    ),
    "run-changed-objective": BadCase(
        [*RUN, "--storage", DB],  # the study name defaults to the spec's, "tiny"
        ["fingerprint", "--study-name"],
        prepare=_edit("objective.toml", "memory_bytes = 12_000", "memory_bytes = 13_000"),
    ),
    "run-malformed-url": BadCase([*RUN, "--storage", "foo://x"], ["malformed storage URL", "foo://x"]),
    "worker-malformed-url": BadCase(
        ["worker", "--study-name", "tiny", "--storage", "foo://x"], ["malformed storage URL"]
    ),
    "studies-malformed-url": BadCase(["studies", "--storage", "foo://x"], ["malformed storage URL"]),
    "run-unreachable-storage": BadCase([*RUN, "--storage", UNREACHABLE], ["cannot open storage"]),
    "worker-unreachable-storage": BadCase(
        ["worker", "--study-name", "tiny", "--storage", UNREACHABLE], ["cannot open storage"]
    ),
    "pareto-unreachable-storage": BadCase(
        ["pareto", "--study-name", "tiny", "--storage", UNREACHABLE], ["cannot open storage"]
    ),
    "run-unknown-sampler-new-storage": BadCase(
        [*RUN, "--storage", "sqlite:///new.db", "--sampler", "bogus"],
        ["unknown sampler", "bogus", "nsga2"],
        absent=["new.db"],
    ),
    "run-unknown-sampler-existing-study": BadCase(
        [*RUN, "--storage", DB, "--n-trials", "1", "--sampler", "bogus"], ["unknown sampler", "bogus"]
    ),
    # what `validate` accepted and `run` rejected only after creating an empty study
    "run-spec-sampler-bogus-new-storage": BadCase(
        [*RUN, "--storage", "sqlite:///new.db"],
        ["unknown sampler", "bogus", "sampler.name"],
        prepare=_edit("study.toml", 'name = "random"', 'name = "bogus"'),
        absent=["new.db"],
    ),
    "run-population-size-0-new-storage": BadCase(
        [*RUN, "--storage", "sqlite:///new.db"],
        ["bad sampler option", "sampler.options"],
        prepare=_edit(
            "study.toml", 'name = "random"', 'name = "evolution"\noptions = { population_size = 0 }'
        ),
        absent=["new.db"],
    ),
    "run-population-size-inf-new-storage": BadCase(
        [*RUN, "--storage", "sqlite:///new.db"],
        ["study.toml", "sampler.options", "finite"],
        prepare=_edit(
            "study.toml", 'name = "random"', 'name = "evolution"\noptions = { population_size = inf }'
        ),
        absent=["new.db"],
    ),
    "run-sampler-option-infinity-json": BadCase(
        [*RUN, "--storage", "sqlite:///new.db", "--sampler", 'evolution:{"population_size": Infinity}'],
        ["--sampler", "finite"],
        absent=["new.db"],
    ),
    "worker-tampered-spec": BadCase(
        ["worker", "--study-name", "tiny", "--storage", DB, "--n-trials", "1"],
        ["does not match its fingerprint", "tiny"],
        prepare=lambda folder: tamper_stored_spec(folder / "study.db"),
    ),
    "pareto-corrupted-journal": BadCase(
        ["pareto", "--study-name", "tiny", "--storage", "journal:bad.log"],
        ["corrupted journal", "bad.log"],
        prepare=lambda folder: (folder / "bad.log").write_text('{"worker_id": "w"}\n'),
    ),
    "run-preset-name-300-chars": BadCase([*RUN[:1], "x" * 300, "--storage", DB], ["unknown study preset"]),
}


def tamper_stored_spec(db: Path) -> None:
    """What a hostile user with write access to the shared database does: point the stored
    spec's checkpoint folder elsewhere and rename the space, keeping the fingerprint."""
    import json

    from nasopt.study.lifecycle import SPEC_ATTR, _decode, _encode

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    doc = json.loads(_decode(study.user_attrs[SPEC_ATTR]))
    doc["space"]["name"] = "escaped"
    doc["study"]["accuracy"] = {"estimator": "supernet", "checkpoint_dir": "/tmp/elsewhere"}
    study.set_user_attr(SPEC_ATTR, _encode(json.dumps(doc, sort_keys=True, separators=(",", ":"))))


@dataclass
class BadRun:
    folder: Path
    before: dict[str, str]
    proc: subprocess.CompletedProcess[str]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file in the folder with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadRun]:
    """Every bad-input case, run concurrently (each costs ~1 s of Optuna import) in its own copy
    of a folder holding the tiny study "tiny" with 2 trials in study.db."""
    base = tmp_path_factory.mktemp("base")
    write_tiny_study(base)
    check_ok(nasopt(*RUN, "--storage", DB, "--n-trials", "2", cwd=base))
    root = tmp_path_factory.mktemp("bad")

    def run(case_id: str) -> BadRun:
        folder = root / case_id
        shutil.copytree(base, folder)
        case = BAD_CASES[case_id]
        if case.prepare:
            case.prepare(folder)
        before = snapshot(folder)
        return BadRun(folder, before, nasopt(*case.args, cwd=folder))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(BAD_CASES, pool.map(run, BAD_CASES), strict=True))


@pytest.mark.parametrize("case_id", list(BAD_CASES))
def test_bad_input_exits_2_and_writes_nothing(case_id: str, bad_runs: dict[str, BadRun]) -> None:
    case, folder, proc = BAD_CASES[case_id], bad_runs[case_id].folder, bad_runs[case_id].proc
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nasopt: error:"), lines[0]
    for text in case.expect:
        assert text in lines[0], (text, lines[0])
    assert snapshot(folder) == bad_runs[case_id].before  # no file created, the study database untouched
    for name in case.absent:
        assert not (folder / name).exists()
    db = f"sqlite:///{folder / 'study.db'}"
    assert [s.study_name for s in optuna.get_all_study_summaries(db)] == ["tiny"]
    assert len(optuna.load_study(study_name="tiny", storage=db).trials) == 2


# ------------------------------------------------------------------ (d) hardening: creation, names


def test_kill_during_creation_then_rerun_succeeds(tmp_path: Path) -> None:
    """A `nasopt run` killed (-9) while creating its study leaves the study without fingerprint
    (3 of 3 tries used to make the name unusable: 'study exists but was not created by nasopt').
    A real kill at a random moment of creation, then the exact state a kill between the Optuna
    create and the fingerprint leaves: the rerun takes the name over and runs."""
    write_tiny_study(tmp_path, n_trials=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    env = cli_env(NASOPT_CREATION_WAIT_S="0.5")
    run = [sys.executable, "-m", "nasopt", *RUN, "--storage", url]
    proc = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "study.db").exists():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check_ok(nasopt(*RUN, "--storage", url, env=env, cwd=tmp_path))
    # the state between optuna.create_study and the fingerprint, written by hand
    from nasopt.presets import resolve
    from nasopt.study.lifecycle import SPEC_ATTR, _encode

    resolved = resolve(str(tmp_path / "study.toml"))
    half = optuna.create_study(study_name="half", storage=url, directions=["minimize", "minimize"])
    half.set_user_attr(SPEC_ATTR, _encode(resolved.to_json()))
    rerun = check_ok(nasopt(*RUN, "--storage", url, "--study-name", "half", env=env, cwd=tmp_path))
    assert "Pareto front of half" in rerun.stdout or "No feasible trial" in rerun.stdout
    study = optuna.load_study(study_name="half", storage=url)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3
    # a foreign study (not nasopt's, with trials) is never taken over
    other = optuna.create_study(study_name="foreign", storage=url)
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    refused = nasopt(*RUN, "--storage", url, "--study-name", "foreign", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "not created by nasopt" in refused.stderr, refused.stderr


def test_failed_run_leaves_the_name_reusable(tmp_path: Path) -> None:
    """A spec `run` rejects (population_size = 0) creates nothing, so the corrected spec then
    runs under the same name (it used to find an empty study 'with a different spec')."""
    study_file = write_tiny_study(tmp_path, n_trials=2, sampler="evolution")
    text = study_file.read_text()
    study_file.write_text(text.replace("seed = 0\n", "seed = 0\noptions = { population_size = 0 }\n", 1))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    bad = nasopt(*RUN, "--storage", url, cwd=tmp_path)
    validate = nasopt("validate", "study.toml", cwd=tmp_path)
    for proc in (bad, validate):
        assert proc.returncode == 2, proc.stderr
        assert "study.toml: sampler.options: bad sampler option" in proc.stderr, proc.stderr
        assert "population_size" in proc.stderr
    assert not (tmp_path / "study.db").exists()  # nothing written
    study_file.write_text(text.replace("seed = 0\n", "seed = 0\noptions = { population_size = 2 }\n", 1))
    check_ok(nasopt(*RUN, "--storage", url, cwd=tmp_path))
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2


def test_sampler_change_is_announced_recorded_and_in_the_resume_hint(tmp_path: Path) -> None:
    """`--sampler` on a resumed study: one line on stderr says so, the study records it, and the
    printed resume command repeats it, shell-quoted (as are a study name and a path with spaces)."""
    import shlex

    folder = tmp_path / "my studies"
    folder.mkdir()
    write_tiny_study(folder, n_trials=3, sampler="random")
    url = f"sqlite:///{folder / 's.db'}"
    name = "tiny (1)"
    check_ok(nasopt(*RUN, "--storage", url, "--study-name", name, "--n-trials", "1", cwd=folder))
    sampler = 'evolution:{"population_size": 2}'
    out = check_ok(
        nasopt(
            *RUN, "--storage", url, "--study-name", name, "--n-trials", "2", "--sampler", sampler, cwd=folder
        )
    )
    assert "sampler: running with evolution" in out.stderr and "instead of" in out.stderr, out.stderr
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs["nasopt:sampler"] == "random+evolution"
    changes = study.user_attrs["nasopt:sampler_changes"]
    assert changes == [
        {"sampler": "evolution", "options": {"population_size": 2}, "seed": 0, "from_trial": 1}
    ]
    hint = next(ln for ln in out.stdout.splitlines() if ln.startswith("Resume or extend:"))
    argv = shlex.split(hint.removeprefix("Resume or extend:"))
    assert argv == [
        "nasopt", "run", "study.toml", "--storage", url, "--study-name", name,
        "--sampler", sampler, "--n-trials", "N",
    ]  # fmt: skip
    # following the hint keeps the sampler: nothing new is recorded
    check_ok(nasopt(*argv[1:-2], "--n-trials", "1", cwd=folder))
    assert optuna.load_study(study_name=name, storage=url).user_attrs["nasopt:sampler_changes"] == changes


def test_traversal_names_are_refused(tmp_path: Path) -> None:
    """A space named `../../../escaped` never reaches a file name: refused by `validate` and
    `run`; a checkpoint path is kept inside its folder whatever the name."""
    from nasopt.accuracy.supernet._estimator import checkpoint_file
    from nasopt.errors import SpecError

    write_tiny_study(tmp_path)
    space = tmp_path / "space.toml"
    space.write_text(space.read_text().replace('name = "tiny-space"', 'name = "../../../escaped"'))
    for args in (["validate", "study.toml"], [*RUN, "--storage", "sqlite:///s.db"]):
        proc = nasopt(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "space.toml: name: not a safe name" in proc.stderr, proc.stderr
    assert not (tmp_path / "s.db").exists()
    assert not list(tmp_path.parent.glob("escaped*"))
    with pytest.raises(SpecError, match="leave the checkpoint folder"):
        checkpoint_file(tmp_path, "../escaped-0123.pt")
    assert checkpoint_file(tmp_path, "ok-0123.pt") == (tmp_path / "ok-0123.pt").resolve()
