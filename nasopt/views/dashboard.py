"""optuna-dashboard: store nasopt's figures and notes in the studies, and serve them.

`register` stores the view's figures in the study (custom plotly figures), a study note
summarising system, search space and constraints, and a note per Pareto-optimal trial with its
architecture strip; `serve` runs optuna-dashboard on loopback. The same figures go into the
self-contained HTML report (`nasopt.views.report`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from nasopt.spec import DashboardSpec
from nasopt.study.lifecycle import SPEC_ATTR
from nasopt.study.pareto import front
from nasopt.study.tree_objective import best_tree_summary, best_tree_trial
from nasopt.views.fields import complete_trials
from nasopt.views.figures import build
from nasopt.views.notes import save_trial_note, summary_markdown, trial_note

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


NOTED_TRIALS = 50  # Pareto-optimal trials that get a note each


def register(
    storage: BaseStorage, study_name: str, view: str | DashboardSpec = "default", *, bar: Any = None
) -> list[str]:
    """Store the view's figures, the study note and per-trial notes for optuna-dashboard.
    `bar` (a tqdm bar) advances once per figure and once per note."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    def step(_: str = "") -> None:
        if bar is not None:
            bar.update(1)

    figures, study, resolved = build(storage, study_name, view, on_figure=step)
    ids = []
    for f in figures:
        f.figure.update_layout(width=1100)  # the dashboard's card would otherwise stretch it off-screen
        ids.append(save_plotly_graph_object(study, f.figure, graph_object_id=f.id))
    save_note(study, summary_markdown(study, resolved))
    step()
    if resolved.study.model_tree is not None:  # trials are trees: a note for the best one
        summary, best = best_tree_summary(study), best_tree_trial(study)
        if summary is not None and best is not None:
            save_trial_note(study, best, f"```\n{summary}\n```\n")
        step()
        return ids
    for trial in front(study, feasible_only=True)[:NOTED_TRIALS]:
        save_trial_note(study, trial, trial_note(resolved, trial))
        step()
    return ids


def register_all(
    storage: BaseStorage, view: str | DashboardSpec = "default", *, progress: bool = False
) -> list[str]:
    """Register the view for every nasopt study with completed trials; returns their names.
    With `progress`, a bar on stderr counts figures and notes over all studies, with an ETA."""
    from tqdm import tqdm

    from nasopt.study.storage import study_names
    from nasopt.views.figures import figure_count

    todo = []
    for name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        if SPEC_ATTR in study.user_attrs and complete_trials(study):
            todo.append((name, len(front(study, feasible_only=True)[:NOTED_TRIALS])))
    per_study = figure_count(view) + 1  # the figures and the study note
    total = sum(per_study + notes for _, notes in todo)
    with tqdm(total=total, desc="registering figures", unit="item", disable=not progress) as bar:
        for i, (name, _) in enumerate(todo, start=1):
            bar.set_description(f"registering figures: study {i}/{len(todo)} {name}")
            register(storage, name, view, bar=bar)
    return [name for name, _ in todo]


# ------------------------------------------------------------------ the HTML report


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, ready: Any = None) -> None:
    """optuna-dashboard on the storage, served by wsgiref until interrupted."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    from nasopt.study.storage import open_storage

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class _Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    app = wsgi(open_storage(storage_url, must_exist=True))
    with make_server(host, port, app, server_class=_Threaded, handler_class=_Quiet) as server:
        if ready is not None:
            ready(server.server_address[1])
        server.serve_forever()
