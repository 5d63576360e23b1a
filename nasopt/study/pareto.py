"""Pareto fronts of a study as rows, tables, CSV and JSON.

Feasibility comes from the trials' constraint values (all <= 0). The feasible front is
`study.best_trials`; with `feasible_only=False` the front is taken over every completed trial
and infeasible points are marked.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasopt.core.pareto import nondominated
from nasopt.spec import StudySpec


def is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def front(study: optuna.Study, *, feasible_only: bool = True) -> list[FrozenTrial]:
    """Pareto-optimal completed trials, sorted by the first objective."""
    if feasible_only:
        trials = list(study.best_trials)
    else:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        losses = [min_form(study, t.values) for t in complete]
        trials = [t for t, keep in zip(complete, nondominated(losses), strict=True) if keep]
    return sorted(trials, key=lambda t: (tuple(t.values), t.number))


def min_form(study: optuna.Study, values: list[float]) -> list[float]:
    """A trial's objective values as losses: maximised objectives negated."""
    return [
        v if d == optuna.study.StudyDirection.MINIMIZE else -v
        for v, d in zip(values, study.directions, strict=True)
    ]


def metric_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    return list(names) if names else [f"value{i}" for i in range(len(study.directions))]


ESTIMATOR_ATTR = "nasopt:accuracy_estimator"


def estimator_name(study_spec: StudySpec) -> str:
    """The accuracy estimator a study spec asks for (`[accuracy] estimator`)."""
    return study_spec.accuracy.estimator


def study_estimator(study: optuna.Study) -> str:
    """The accuracy estimator a stored nasopt study was created with."""
    return str(study.user_attrs.get(ESTIMATOR_ATTR, "unknown"))


def accuracy_note(estimator: str) -> str:
    """One line naming where the accuracies come from; the proxy is never a measured accuracy."""
    if estimator == "analytic-proxy":
        return (
            "accuracy: analytic proxy (a deterministic estimate from the architecture's size, "
            "NOT a measured accuracy)"
        )
    if estimator == "supernet":
        return (
            "accuracy: supernet (weight-sharing subnet scored on held-out data; "
            "rank with it, then retrain the finalists)"
        )
    return f"accuracy: {estimator}"


def retrained_accuracies(study: optuna.Study) -> dict[int, float]:
    """Trial number -> accuracy after `nasopt retrain` (study user attrs `retrained:<trial>`)."""
    out = {}
    for key, record in study.user_attrs.items():
        if key.startswith("retrained:") and isinstance(record, dict) and "accuracy" in record:
            number = key.split(":", 1)[1]
            if number.isdigit():
                out[int(number)] = float(record["accuracy"])
    return out


def rows(study: optuna.Study, trials: list[FrozenTrial], *, detail: bool = False) -> list[dict[str, Any]]:
    """One row per trial: objectives, accuracy/latency/MACs, feasibility, split and arch; with
    `detail` also the accuracy estimator, every parameter (`params`) and the candidate."""
    names = metric_names(study)
    retrained_accuracy = retrained_accuracies(study)
    retrained = any(t.number in retrained_accuracy for t in trials)
    estimator = study_estimator(study)
    out = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.number}
        row.update(dict(zip(names, t.values, strict=True)))
        for extra in ("accuracy", "latency_ms", "macs"):
            if extra not in row and extra in t.user_attrs:
                row[extra] = t.user_attrs[extra]
        if retrained:
            row["accuracy:retrained"] = retrained_accuracy.get(t.number, "")
        row["feasible"] = is_feasible(t)
        row["split"] = t.user_attrs.get("split", "")
        row["arch"] = t.user_attrs.get("arch", "")
        if detail:
            row["accuracy_estimator"] = estimator
            row["params"] = dict(t.params)
            row["candidate"] = t.user_attrs.get("candidate", {})
        out.append(row)
    return out


def _flat(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV rows: `params` spread into one `param:NAME` column each, the candidate as JSON."""
    out = []
    for row in data:
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if key == "params" and isinstance(value, dict):
                flat.update({f"param:{k}": v for k, v in value.items()})
            elif isinstance(value, (dict, list)):
                flat[key] = json.dumps(value, separators=(",", ":"))
            else:
                flat[key] = value
        out.append(flat)
    return out


def render(data: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if not data:
        return ""
    if fmt == "csv":
        flat = _flat(data)
        columns = list(dict.fromkeys(k for row in flat for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
        return buf.getvalue().rstrip("\n")
    return table(data, list(data[0]))


ARCH_COLUMN_CHARS = 60


def short_arch(arch: str, limit: int = ARCH_COLUMN_CHARS) -> str:
    """The table's `arch` cell: repeated ops run-length coded (`k3_e6 x3`), cut to `limit`
    characters with an ellipsis (CSV and JSON keep the full line).

    >>> short_arch("skip skip skip k3_e6 | w=8 | cut@2 | 8b")
    'skip x3 k3_e6 | w=8 | cut@2 | 8b'
    """
    ops, sep, rest = arch.partition(" | ")
    words = ops.split()
    runs: list[str] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and words[j] == words[i]:
            j += 1
        runs.append(words[i] if j - i == 1 else f"{words[i]} x{j - i}")
        i = j
    text = " ".join(runs) + sep + rest
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(data: list[dict[str, Any]], columns: list[str]) -> str:
    """A fixed-width text table; the long `split` column is left out and `arch` shortened (see
    the JSON/CSV forms)."""
    columns = [c for c in columns if c not in ("split", "params", "candidate")]
    cells = [
        [short_arch(str(row.get(c, ""))) if c == "arch" else _cell(row.get(c, "")) for c in columns]
        for row in data
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
