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


def rows(study: optuna.Study, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    names = metric_names(study)
    attrs = study.user_attrs
    retrained = any(f"retrained:{t.number}" in attrs for t in trials)  # written by `nasopt retrain`
    out = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.number}
        row.update(dict(zip(names, t.values, strict=True)))
        for extra in ("accuracy", "latency_ms", "macs"):
            if extra not in row and extra in t.user_attrs:
                row[extra] = t.user_attrs[extra]
        if retrained:
            record = attrs.get(f"retrained:{t.number}")
            row["accuracy:retrained"] = record["accuracy"] if isinstance(record, dict) else ""
        row["feasible"] = is_feasible(t)
        row["split"] = t.user_attrs.get("split", "")
        row["arch"] = t.user_attrs.get("arch", "")
        out.append(row)
    return out


def render(data: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if not data:
        return ""
    columns = list(data[0])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(data)
        return buf.getvalue().rstrip("\n")
    return table(data, columns)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(data: list[dict[str, Any]], columns: list[str]) -> str:
    """A fixed-width text table; the long `split` column is left out (see the JSON/CSV forms)."""
    columns = [c for c in columns if c != "split"]
    cells = [[_cell(row.get(c, "")) for c in columns] for row in data]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
