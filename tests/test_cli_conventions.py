"""Command-line conventions: --version, help on every option, quiet closed pipes, clean Ctrl-C,
allowed options listed, no file left by a failed run, `init`, `studies`, `pareto` details and
the accuracy estimator named in every output."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nasopt.cli import _build_parser, main
from tests.services import check_ok, cli_env, nasopt

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from nasopt import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"nasopt {__version__}"


def test_every_option_has_help() -> None:
    parser = _build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"
    assert set(sub.choices) >= {"init", "run", "worker", "pareto", "sweep", "studies", "report"}


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`nasopt presets | head -0`: the reader is gone before nasopt writes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasopt", "presets"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == "", err


def test_unknown_sampler_option_lists_the_allowed_ones(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    r = nasopt(
        "run", "quickstart-proxy", "--storage", f"sqlite:///{db}", "--sampler", 'evolution:{"popsize": 3}',
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "sampler.options.popsize: unknown option of sampler 'evolution'" in line
    assert "population_size" in line and "tournament_size" in line and "hard_constraints" in line
    assert "Traceback" not in r.stderr
    assert not db.exists()


def test_accuracy_integer_range_message() -> None:
    from nasopt.accuracy.supernet import SupernetConfig
    from nasopt.errors import SpecError

    with pytest.raises(
        SpecError, match=r"accuracy.epochs: .*greater than or equal to 1 \(got 0\); allowed: 1 <= x"
    ):
        SupernetConfig.from_options({"epochs": 0})
    with pytest.raises(SpecError, match=r"accuracy.epochs: .*valid integer.* \(got 2.5\); allowed: 1 <= x"):
        SupernetConfig.from_options({"epochs": 2.5})


def _latency_objective(tmp_path: Path) -> Path:
    text = (ROOT / "objectives" / "jmsnas-chain.toml").read_text()
    assert 'name = "latency_ms"' in text
    path = tmp_path / "bad-objective.toml"
    path.write_text(text.replace('name = "latency_ms"', 'name = "latency"'))
    return path


def test_validate_catches_an_unknown_metric_in_an_objective_alone(tmp_path: Path) -> None:
    path = _latency_objective(tmp_path)
    r = nasopt("validate", str(path), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"nasopt: error: {path}: objectives[1].name: unknown metric (got 'latency'); allowed: "
        "error, accuracy, latency_ms, energy_mj, macs, params, sent_bytes, memory_bytes, "
        "latency_mean_ms, latency_p95_ms, latency_worst_ms, deadline_miss"
    )


def test_failed_run_leaves_no_storage_file(tmp_path: Path) -> None:
    """The storage is opened, then the study is refused (its objective names an unknown
    metric): the new, empty .db is removed again."""
    objective = _latency_objective(tmp_path)
    study = tmp_path / "bad-study.toml"
    study.write_text(
        'name = "bad"\nspace = "mbconv-quick"\n'
        f'objective = "{objective}"\nn_trials = 2\n[accuracy]\nestimator = "analytic-proxy"\n'
    )
    db = tmp_path / "fresh.db"
    r = nasopt("run", str(study), "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "unknown metric" in r.stderr
    assert not db.exists()
    assert not list(tmp_path.glob("*.db*"))


def test_failed_run_keeps_an_existing_storage(tmp_path: Path) -> None:
    from nasopt.cli import no_empty_storage_left

    db = tmp_path / "kept.db"
    db.write_bytes(b"")  # existed before: never removed
    with pytest.raises(RuntimeError), no_empty_storage_left(f"sqlite:///{db}"):
        raise RuntimeError
    assert db.exists()


def test_interrupt_filter_drops_only_the_interrupt_traceback() -> None:
    script = """
import optuna, sys
from nasopt.study.interrupts import drop_interrupt_tracebacks
if sys.argv[1] == "filter":
    drop_interrupt_tracebacks()
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study()
def fails(trial):
    raise ValueError("a real bug")
study.optimize(fails, n_trials=1, catch=(ValueError,))
def interrupted(trial):
    raise KeyboardInterrupt
try:
    study.optimize(interrupted, n_trials=1)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
"""
    runs = {}
    for mode in ("filter", "plain"):
        r = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120, env=cli_env()
        )
        assert r.returncode == 0, r.stderr
        runs[mode] = r.stderr
    assert "KeyboardInterrupt" in runs["plain"] and "Trial 1 failed" in runs["plain"]
    assert "KeyboardInterrupt" not in runs["filter"] and "Trial 1 failed" not in runs["filter"]
    # another failure still shows its traceback
    assert "ValueError: a real bug" in runs["filter"] and "Traceback" in runs["filter"]
    assert runs["filter"].rstrip().endswith("interrupted")


def test_ctrl_c_during_training_says_training_resumes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import nasopt.accuracy.supernet as supernet

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(supernet, "prepare_study", interrupted)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "quickstart", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "before any trial ran (no study was created or changed)" in err
    assert "training resumes from its last checkpoint (written every 20 steps" in err
    assert "marked FAIL" not in err
    assert not (tmp_path / "nasopt.db").exists()


def test_init_copies_presets_that_validate(tmp_path: Path) -> None:
    target = tmp_path / "project"
    r = check_ok(nasopt("init", str(target), cwd=tmp_path))
    for folder in ("search_spaces", "objectives", "studies", "dashboards"):
        names = {p.name for p in (ROOT / folder).glob("*.toml")}
        assert names and names <= {p.name for p in (target / folder).glob("*.toml")}
    assert "copied" in r.stdout
    check_ok(nasopt("validate", "studies", "objectives", "dashboards", cwd=target))
    again = nasopt("init", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    check_ok(nasopt("init", str(target), "--force", cwd=tmp_path))


@pytest.fixture(scope="module")
def proxy_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("proxy")
    url = f"sqlite:///{tmp / 'p.db'}"
    r = check_ok(
        nasopt("run", "quickstart-proxy", "--storage", url, "--n-trials", "12", "--no-progress", cwd=tmp)
    )
    assert "accuracy: analytic proxy" in r.stdout and "NOT a measured accuracy" in r.stdout
    return tmp, url


def test_studies_shows_sampler_estimator_and_spec(proxy_study: tuple[Path, str]) -> None:
    tmp, url = proxy_study
    out = check_ok(nasopt("studies", "--storage", url, cwd=tmp)).stdout
    header, _, row = out.splitlines()[:3]
    for column in ("space", "objective", "sampler", "accuracy"):
        assert column in header.split()
    for value in ("quickstart-proxy", "mbconv-jmsnas-32", "jmsnas-chain", "evolution", "analytic-proxy"):
        assert value in row.split()


def test_pareto_csv_and_json_carry_parameters_and_candidate(proxy_study: tuple[Path, str]) -> None:
    tmp, url = proxy_study
    args = ("pareto", "--study-name", "quickstart-proxy", "--storage", url)
    table = check_ok(nasopt(*args, cwd=tmp))
    assert table.stdout.startswith("accuracy: analytic proxy")
    assert max(len(line) for line in table.stdout.splitlines()) < 200
    as_json = check_ok(nasopt(*args, "--format", "json", cwd=tmp))
    assert "analytic proxy" in as_json.stderr  # the note stays out of the machine-readable form
    rows = json.loads(as_json.stdout)
    assert rows and all(r["accuracy_estimator"] == "analytic-proxy" for r in rows)
    assert rows[0]["params"] and all(isinstance(k, str) for k in rows[0]["params"])
    assert set(rows[0]["candidate"]) >= {"ops", "widths", "cuts"}
    as_csv = check_ok(nasopt(*args, "--format", "csv", cwd=tmp))
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(parsed) == len(rows)
    params = [c for c in parsed[0] if c.startswith("param:")]
    assert sorted(params) == sorted(f"param:{k}" for k in rows[0]["params"])
    assert json.loads(parsed[0]["candidate"]) == rows[0]["candidate"]


def test_short_arch() -> None:
    from nasopt.study.pareto import short_arch

    long = " ".join(["k3_e6"] * 5 + ["skip"] * 3 + ["k5_e3"] * 30) + " | w=8,16 | cut@3,9 | 8b"
    short = short_arch(long)
    assert short.startswith("k3_e6 x5 skip x3 k5_e3 x30 | w=8,16")
    assert len(short) <= 60
    assert short_arch("a b c " * 30).endswith("…")


def test_sweep_from_front_is_monotone_and_says_what_binds(proxy_study: tuple[Path, str]) -> None:
    tmp, url = proxy_study
    r = check_ok(
        nasopt(
            "sweep",
            "--from-front",
            "--study-name",
            "quickstart-proxy",
            "--storage",
            url,
            "--threshold",
            "latency_ms=0.01,1000",
            cwd=tmp,
        )
    )
    assert "accuracy: analytic proxy" in r.stdout
    assert "binding thresholds (latency_ms <=): 0.01" in r.stdout
    r = check_ok(
        nasopt(
            "sweep",
            "--from-front",
            "--study-name",
            "quickstart-proxy",
            "--storage",
            url,
            "--threshold",
            "latency_ms=1000,2000",
            cwd=tmp,
        )
    )
    assert "note: no threshold binds" in r.stdout


def test_sweep_points_monotone_and_disagreement_note() -> None:
    from nasopt.study.sweep import SweepPoint, _point, sweep_notes

    scored = [(0, 0.90, 1.0, 1.0, True), (1, 0.95, 4.0, 4.0, True), (2, 0.99, 9.0, 9.0, False)]
    pts = [_point(scored, v, 3, "s") for v in (0.5, 2, 5, 20)]
    accs = [p.accuracy for p in pts]
    assert accs == [None, 0.90, 0.95, 0.95]  # trial 2 breaks another constraint
    assert [p.binds for p in pts] == [True, True, False, False]
    separate = [
        SweepPoint(5, 0.9844, 1, 1.2, 50, "a", False, 1.2),
        SweepPoint(10, 0.9766, 2, 1.4, 50, "b", False, 1.4),
    ]
    notes = sweep_notes("latency_ms", separate, from_one_study=False)
    assert any("no threshold binds" in n and "1.4" in n for n in notes)
    assert any("separate searches disagree" in n and "<= 10" in n and "0.9766" in n for n in notes)
    assert not any("disagree" in n for n in sweep_notes("latency_ms", pts, from_one_study=True))


def test_quick_variant_is_a_small_separate_study() -> None:
    from nasopt.cli import quick_variant, run_plan
    from nasopt.presets import resolve

    full = resolve("quickstart")
    quick = quick_variant(full)
    assert quick.study.name == "quickstart-quick" and quick.study.n_trials == 30
    assert quick.study.accuracy.epochs == 4 and quick.study.accuracy.loss_warmup_epochs == 1
    assert quick.fingerprint != full.fingerprint and quick.space == full.space
    assert "--quick" in run_plan(full, quick=False) and "--quick" not in run_plan(quick, quick=True)
    proxy = quick_variant(resolve("quickstart-proxy"))
    assert proxy.study.accuracy == resolve("quickstart-proxy").study.accuracy and proxy.study.n_trials == 30
