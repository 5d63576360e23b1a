"""Seeded mutation of every shipped preset, run through `nasopt run` and `nasopt validate`.

Each case takes one shipped search space, objective or study, replaces one value somewhere in
it (or deletes a key, or repeats a list entry) with a hostile one (0, -1, inf, nan, 1e308,
1e-320, 2**63, a string, a traversal path, a 300-character name, an empty list...), wraps a
space or objective in a small study with a partner preset it validates with, and runs it
in-process. Asserted: no exception escapes the CLI (a traceback for the user), the exit code is
0 or 2, `validate` and `run` agree (one validation path), exit 2 prints one line and writes
nothing, and exit 0 stores only finite objective values. Studies that train a supernet are
validated only (training is minutes, not milliseconds).

NASOPT_FUZZ_CASES (default 200) and NASOPT_FUZZ_SEED (default 0) size a longer run;
NASOPT_FUZZ_REPORT names a JSON file for its counts (benchmarks/robustness.md).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.test_bad_input import to_toml

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.toml"))
OBJECTIVES = sorted((ROOT / "objectives").glob("*.toml"))
STUDIES = sorted((ROOT / "studies").glob("*.toml"))
N_CASES = int(os.environ.get("NASOPT_FUZZ_CASES", "200"))
SEED = int(os.environ.get("NASOPT_FUZZ_SEED", "0"))
HOSTILE: list[Any] = [
    0,
    -1,
    1,
    2**63,
    math.inf,
    -math.inf,
    math.nan,
    1e308,
    1e-320,
    -0.5,
    0.5,
    "abc",
    "",
    "../../../escaped",
    "x" * 300,
    True,
    [],
    {},
    [0],
]
# partners that make a complete, valid study around a mutated space or objective
SPACE_PARTNER = "jmsnas-chain"
OBJECTIVE_PARTNER = "mbconv-quick"


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path into `node` (dict keys and list indices), containers included."""
    out = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _leaves(value, (*path, i))
    return out


NUMBERS: list[Any] = [0, -1, 2**63, math.inf, -math.inf, math.nan, 1e308, 1e-320, -0.5, 0.5, 1e-6]


def mutate(data: dict[str, Any], rng: random.Random) -> str:
    """Change `data` in place at one random spot; returns what was done. Mostly a scalar leaf,
    mostly a number with a value of the same kind (hostile or merely rescaled), so that many
    mutants are still valid and run."""
    paths = _leaves(data)
    scalars = [p for p in paths if not isinstance(_get(data, p), (dict, list))]
    path = rng.choice(scalars if scalars and rng.random() < 0.85 else paths)
    parent: Any = _get(data, path[:-1])
    last = path[-1]
    old = parent[last]
    op = rng.random()
    if op < 0.1 and isinstance(parent, dict):
        del parent[last]
        return f"del {path}"
    if op < 0.2 and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(old))
        return f"repeat {path}"
    if isinstance(old, (int, float)) and not isinstance(old, bool) and op < 0.85:
        if rng.random() < 0.5:
            value = rng.choice(NUMBERS)
        else:  # the same field, rescaled: often still valid
            value = type(old)(old * rng.choice([2, 0.5, 3, 10, 0.1, 1e6, 1e-6, -1]))
    else:
        value = rng.choice(HOSTILE)
    parent[last] = value
    return f"{path} = {value!r}"[:120]


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _partner(kind: str, source: Path) -> str:
    """A shipped preset of the other kind that makes a valid study with `source` unchanged."""
    if (kind, source) not in _PARTNERS:
        from nasopt.errors import SpecError
        from nasopt.presets import load_objective, load_space
        from nasopt.spec import ResolvedStudy, StudySpec
        from nasopt.study.lifecycle import check_study

        others = OBJECTIVES if kind == "search_spaces" else SPACES
        found = None
        for other in others:
            space, objective = (source, other) if kind == "search_spaces" else (other, source)
            study = StudySpec(name="p", space=space.stem, objective=objective.stem)
            try:
                check_study(ResolvedStudy(study, load_space(str(space)), load_objective(str(objective))))
            except SpecError:
                continue
            found = other.stem
            break
        _PARTNERS[(kind, source)] = found or (SPACE_PARTNER if kind == "search_spaces" else OBJECTIVE_PARTNER)
    return _PARTNERS[(kind, source)]


_PARTNERS: dict[tuple[str, Path], str] = {}


def build_case(i: int, tmp: Path) -> tuple[Path, str, bool]:
    """(study file, description, whether `run` may execute it) for case `i`."""
    rng = random.Random(f"{SEED}-{i}")
    source = rng.choice(SPACES + OBJECTIVES + STUDIES)
    data = _read(source)
    what = mutate(data, rng)
    if rng.random() < 0.2:
        what += "; " + mutate(data, rng)
    folder = tmp / f"case{i:05d}"
    folder.mkdir()
    kind = source.parent.name
    (folder / f"{kind}-{source.stem}.toml").write_text(to_toml(data))
    if kind == "search_spaces":
        partner = _partner(kind, source)
        study = {"name": "fuzz", "space": f"{kind}-{source.stem}.toml", "objective": partner}
    elif kind == "objectives":
        partner = _partner(kind, source)
        study = {"name": "fuzz", "space": partner, "objective": f"{kind}-{source.stem}.toml"}
    else:
        study = data
    study = {**study, "n_trials": 2} if kind != "studies" else study
    if kind != "studies":
        study["sampler"] = {"name": "random", "seed": 0}
    path = folder / "study.toml"
    if kind == "studies":
        path = folder / f"{kind}-{source.stem}.toml"
    else:
        path.write_text(to_toml(study))
    accuracy = study.get("accuracy") if isinstance(study, dict) else None
    proxy = not (isinstance(accuracy, dict) and accuracy.get("estimator") == "supernet")
    return path, f"{source.parent.name}/{source.name}: {what}", proxy


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from nasopt.cli import main

    code = main(args)  # an exception here is a traceback for the user
    return code, capsys.readouterr().err


def test_mutated_presets_exit_0_or_2_and_store_only_finite_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.monotonic()
    counts: Counter[str] = Counter()
    for i in range(N_CASES):
        path, what, runnable = build_case(i, tmp_path)
        folder = path.parent
        monkeypatch.chdir(folder)
        before = _files(folder)
        try:
            v_code, v_err = _main(["validate", path.name], capsys)
            if not runnable:
                counts[f"validate-only exit {v_code}"] += 1
                assert v_code in (0, 2), f"{what}: exit {v_code}\n{v_err}"
                continue
            url = f"sqlite:///{folder / 'fuzz.db'}"
            r_code, r_err = _main(
                ["run", path.name, "--storage", url, "--n-trials", "2", "--no-progress"], capsys
            )
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"case {i} ({what}): traceback {type(exc).__name__}: {exc}")
        counts[f"run exit {r_code}"] += 1
        assert r_code in (0, 2), f"{what}: exit {r_code}\n{r_err}"
        assert v_code == r_code, f"{what}: validate exit {v_code} ({v_err}), run exit {r_code} ({r_err})"
        if r_code == 2:
            assert len(r_err.splitlines()) == 1 and r_err.startswith("nasopt: error: "), f"{what}\n{r_err}"
            assert _files(folder) == before, f"{what}: exit 2 wrote {_files(folder) - before}"
            continue
        study = optuna.load_study(study_name=_study_name(path), storage=url)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        assert complete, f"{what}: no completed trial"
        for t in complete:
            assert all(math.isfinite(v) for v in t.values), f"{what}: trial {t.number} stored {t.values}"
        counts["finite values checked"] += len(complete)
    elapsed = time.monotonic() - start
    report = os.environ.get("NASOPT_FUZZ_REPORT")
    if report:
        doc = {"cases": N_CASES, "seed": SEED, "seconds": round(elapsed, 1), **counts}
        Path(report).write_text(json.dumps(doc, indent=2))
    # both outcomes occur: the mutations are neither all harmless nor all rejected
    assert counts["run exit 0"] and counts["run exit 2"], counts


def _study_name(path: Path) -> str:
    return str(_read(path)["name"])
