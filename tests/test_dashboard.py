"""Dashboards and reports built from a small real study (SQLite): every view, checked on its data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest

from nasopt.errors import SpecError
from nasopt.presets import load_dashboard, resolve
from nasopt.spec import SamplerSpec
from nasopt.study.lifecycle import create_or_resume, load, optimize
from nasopt.study.pareto import is_feasible
from nasopt.study.storage import open_storage
from nasopt.views import arch_strip, dashboard, fields, sweep_figure
from nasopt.views import figures as view_figures
from tests.services import check_ok, nasopt, write_tiny_study


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Two studies of the tiny space in one SQLite file: random (16 trials) and TPE (8)."""
    folder = tmp_path_factory.mktemp("dash")
    study_file = write_tiny_study(folder, n_trials=16, sampler="random")
    url = f"sqlite:///{folder / 'tiny.db'}"
    resolved = resolve(str(study_file))
    storage = open_storage(url)
    create_or_resume(resolved, storage)
    create_or_resume(resolved, storage, "tiny-tpe")
    optimize(url, "tiny", 16)
    optimize(url, "tiny-tpe", 8, sampler=SamplerSpec(name="tpe", seed=1))
    return url, folder


@pytest.fixture(scope="module")
def built(tiny_db: tuple[str, Path]) -> tuple[dict[str, view_figures.BuiltFigure], optuna.Study]:
    url, _ = tiny_db
    figures, study, _ = view_figures.build(open_storage(url), "tiny", "default")
    return {f.kind: f for f in figures}, study


def test_every_view_is_built(built: tuple[dict, optuna.Study]) -> None:
    figures, study = built
    assert set(figures) == {"pareto", "latency_breakdown", "threshold_sweep", "arch_strip", "hypervolume"}
    assert any(not is_feasible(t) for t in study.trials), "the tiny study must have infeasible trials"


def test_pareto_points_are_best_trials_and_infeasible_marked(built: tuple[dict, optuna.Study]) -> None:
    figures, study = built
    traces = {t.name: t for t in figures["pareto"].figure.data}
    front_numbers = [row[0] for row in traces[fields.FRONT_LABEL].customdata]
    assert sorted(front_numbers) == sorted(t.number for t in study.best_trials)
    infeasible = sorted(t.number for t in study.trials if not is_feasible(t))
    assert sorted(row[0] for row in traces[fields.INFEASIBLE_LABEL].customdata) == infeasible
    assert traces[fields.INFEASIBLE_LABEL].marker.symbol == "x"
    shown = [row[0] for tr in traces.values() for row in tr.customdata]
    assert sorted(shown) == sorted(t.number for t in study.trials)  # every completed trial, once
    by_number = {t.number: t for t in study.trials}
    tr = traces[fields.FRONT_LABEL]
    for n, x, y in zip(front_numbers, tr.x, tr.y, strict=True):
        assert x == by_number[n].user_attrs["latency_ms"] and y == by_number[n].user_attrs["accuracy"]
    assert "arch" in tr.hovertemplate and "transfer_ms:up" in tr.hovertemplate


def test_breakdown_bars_sum_to_latency(built: tuple[dict, optuna.Study]) -> None:
    figures, study = built
    fig = figures["latency_breakdown"].figure
    bars = [t for t in fig.data if t.type == "bar"]
    assert {b.meta["segment"] for b in bars} <= {"compute_ms:phone", "compute_ms:cloud", "transfer_ms:up"}
    best = sorted(study.best_trials, key=lambda t: t.user_attrs["latency_ms"])
    labels = list(bars[0].x)
    assert labels == [f"#{t.number}" for t in best]
    for i, t in enumerate(best):
        total = sum(b.y[i] for b in bars)
        assert math.isclose(total, t.user_attrs["latency_ms"], rel_tol=1e-9, abs_tol=1e-12)
    acc = next(t for t in fig.data if t.name == "accuracy (top-1)")
    assert acc.yaxis == "y2" and list(acc.y) == [t.user_attrs["accuracy"] for t in best]


def test_threshold_sweep_one_line_per_sampler(tiny_db: tuple[str, Path]) -> None:
    url, _ = tiny_db
    storage = open_storage(url)
    study = optuna.load_study(study_name="tiny", storage=storage)
    spec = load_dashboard("default").threshold_sweep[0]
    fig, lines = sweep_figure.sweep_figure(study, storage, spec)
    assert set(lines) == {"random", "tpe"}  # from the study user attr nasopt:sampler
    assert {t.name for t in fig.data} == {"random", "tpe"}
    feasible = [t for t in study.trials if is_feasible(t)]
    for threshold, acc in lines["random"]:
        ok = [t.user_attrs["accuracy"] for t in feasible if t.user_attrs["latency_ms"] <= threshold]
        assert acc == (max(ok) if ok else None)


def test_arch_strip_marks_layers_and_cuts(
    built: tuple[dict, optuna.Study], tiny_db: tuple[str, Path]
) -> None:
    figures, study = built
    fig = figures["arch_strip"].figure
    url, _ = tiny_db
    _, resolved = load(open_storage(url), "tiny")
    shown = sorted(study.best_trials, key=lambda t: t.user_attrs["latency_ms"])[:4]
    for trial in shown:
        layers, network, _ = arch_strip.arch_layers(resolved, trial)
        bars = [t for t in fig.data if t.meta and t.meta.get("trial") == trial.number]
        assert sum(len(b.x) for b in bars) == len(layers) == len(network.layers)
        assert all(b.width == 0.8 for b in bars)  # one layer wide, however far apart a group's layers are
        widths = {layer.width for layer in layers}
        axis = next(
            getattr(fig.layout, k)
            for k in fig.layout
            if k.startswith("yaxis")
            and getattr(fig.layout, k).tickvals
            and set(getattr(fig.layout, k).tickvals) <= widths
        )
        assert axis.type == "log" and list(axis.ticktext) == [str(v) for v in axis.tickvals]
    # one dashed line (and one label) per distinct cut position: coinciding cuts share it
    cut_lines = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert len(cut_lines) == sum(len(set(arch_strip.arch_layers(resolved, t)[1].cut_after)) for t in shown)
    bands = [s for s in fig.layout.shapes if s.type == "rect"]
    assert bands and all(s.opacity >= 0.4 and s.fillcolor in arch_strip.BAND_COLORS for s in bands)
    texts = [a.text for a in fig.layout.annotations]
    assert not [t for t in texts if t.startswith("trial ") and re.search(r"accuracy 0\.\d{4}", t)]


def test_threshold_sweep_marks_binding_thresholds(tiny_db: tuple[str, Path]) -> None:
    url, _ = tiny_db
    storage = open_storage(url)
    study = optuna.load_study(study_name="tiny", storage=storage)
    spec = load_dashboard("default").threshold_sweep[0]
    fig, lines = sweep_figure.sweep_figure(study, storage, spec)
    for trace in fig.data:
        accs = [a for a in trace.y if a is not None]
        assert accs == sorted(accs)  # monotone by construction
        best = max(accs)
        for (threshold, acc), symbol in zip(lines[trace.name], trace.marker.symbol, strict=True):
            # open marker: the threshold does not bind, the best accuracy is already reached
            assert (symbol == "circle-open") == (acc == best), (threshold, acc, symbol)
    assert any("binds" in a.text for a in fig.layout.annotations)


def test_hypervolume_history_per_sampler(built: tuple[dict, optuna.Study]) -> None:
    figures, _ = built
    traces = figures["hypervolume"].figure.data
    assert {t.name for t in traces} == {"random", "tpe"}
    for t in traces:
        assert list(t.y) == sorted(t.y) and t.y[-1] > 0


def test_hypervolume_view_draws_the_exact_front_the_studies_approach(
    tiny_db: tuple[str, Path], tmp_path: Path
) -> None:
    """`exact_front` (a `nasopt front --exact -o` file): a line at the true front's hypervolume
    above every study's history, each history's hover giving its fraction of it; a front of
    other objectives is refused naming the field."""
    from nasopt.study.exact_front import ExactFront

    url, folder = tiny_db
    check_ok(
        nasopt(
            "front", "--exact", "study.toml", "-o", str(tmp_path / "front.json"), "--no-progress", cwd=folder
        )
    )
    exact = ExactFront.load(tmp_path / "front.json")
    view = tmp_path / "hv.toml"
    view.write_text(f'name = "hv"\n[[hypervolume]]\nexact_front = "{tmp_path / "front.json"}"\n')
    figures, _, _ = view_figures.build(open_storage(url), "tiny", str(view))
    fig = figures[0].figure
    (line,) = [s for s in fig.layout.shapes if s.type == "line"]
    traces = fig.data
    assert {t.name for t in traces} == {"random", "tpe"}
    assert line.y0 == line.y1 > 0
    assert any(f"{exact.n_candidates:,} candidates" in a.text for a in fig.layout.annotations)
    for t in traces:  # the exact front dominates every feasible trial of the analytic study
        assert 0 < t.y[-1] <= line.y0 * (1 + 1e-9)
        assert list(t.customdata) == pytest.approx([y / line.y0 for y in t.y])
    other = exact.to_json() | {"metrics": ["error", "energy_mj"]}
    (tmp_path / "other.json").write_text(json.dumps(other))
    view.write_text(f'name = "hv"\n[[hypervolume]]\nexact_front = "{tmp_path / "other.json"}"\n')
    with pytest.raises(SpecError, match="exact front has objectives") as info:
        view_figures.build(open_storage(url), "tiny", str(view))
    assert info.value.field == "hypervolume.exact_front"


def test_pareto_figure_shows_retrained_accuracy_beside_the_estimate(tmp_path: Path) -> None:
    """A trial `nasopt retrain` recorded (`retrained:<n>`) gets a star at its retrained
    accuracy, joined to its estimated point, in the Pareto figure the report and dashboard use."""
    study_file = write_tiny_study(tmp_path, n_trials=6)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    create_or_resume(resolve(str(study_file)), open_storage(url))
    optimize(url, "tiny", 6)
    study = optuna.load_study(study_name="tiny", storage=url)
    trial = study.trials[2]
    study.set_user_attr(f"retrained:{trial.number}", {"accuracy": 0.25, "mode": "finetune"})
    figures, _, _ = view_figures.build(open_storage(url), "tiny", "default")
    pareto = next(f.figure for f in figures if f.kind == "pareto")
    (stars,) = [t for t in pareto.data if t.name == "retrained (nasopt retrain)"]
    assert list(stars.y) == [0.25] and list(stars.x) == [trial.user_attrs["latency_ms"]]
    assert stars.customdata[0][0] == trial.number
    (segment,) = [t for t in pareto.data if t.mode == "lines" and t.name is None]
    assert list(segment.y)[:2] == [trial.user_attrs["accuracy"], 0.25]


def test_register_stores_figures_and_notes(tiny_db: tuple[str, Path]) -> None:
    from optuna_dashboard._custom_plot_data import list_graph_object_ids

    url, _ = tiny_db
    storage = open_storage(url)
    ids = dashboard.register(storage, "tiny")
    study = optuna.load_study(study_name="tiny", storage=storage)
    attrs = storage.get_study_system_attrs(study._study_id)
    assert sorted(list_graph_object_ids(attrs)) == sorted(ids)
    note = "".join(v for k, v in sorted(attrs.items()) if k.startswith("dashboard:note_str:"))
    assert "## System" in note and "## Constraints" in note and "phone" in note
    for t in study.best_trials:
        assert f"dashboard:{t._trial_id}:note_ver" in attrs or any(
            f":{t._trial_id}:" in k for k in attrs if k.startswith("dashboard:")
        )


def _external_resources(text: str) -> list[str]:
    """src/href of every <script>, <link>, <img> tag (script bodies are not parsed as HTML)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for key, value in attrs:
                if tag in ("script", "link", "img", "iframe") and key in ("src", "href") and value:
                    found.append(value)

    Parser().feed(text)
    return found


def test_report_is_self_contained(tiny_db: tuple[str, Path]) -> None:
    url, folder = tiny_db
    out = folder / "report.html"
    check_ok(nasopt("report", "--study-name", "tiny", "--storage", url, "-o", str(out), cwd=folder))
    text = out.read_text()
    external = _external_resources(text)
    assert external == [], f"the report loads {external}: it must work offline"
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js itself is inlined
    for kind in ("pareto", "latency_breakdown", "threshold_sweep", "arch_strip", "hypervolume"):
        assert f'id="nasopt-{kind}-0"' in text


def test_view_with_unknown_metric_names_file_field_and_metrics(
    tiny_db: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = tiny_db
    view = tmp_path / "dashboards" / "bad.toml"
    view.parent.mkdir()
    view.write_text('name = "bad"\n\n[[pareto]]\nx = "throughput_fps"\ny = "accuracy"\n')
    with pytest.raises(SpecError) as err:
        view_figures.build(open_storage(url), "tiny", str(view))
    message = str(err.value)
    assert str(view) in message and "pareto[0].x" in message and "throughput_fps" in message
    assert "latency_ms" in message and "accuracy" in message  # the available metrics
    proc = nasopt("report", "--study-name", "tiny", "--storage", url, "--view", str(view), cwd=folder)
    assert proc.returncode == 2 and "pareto[0].x" in proc.stderr and "Traceback" not in proc.stderr


def test_view_files_validate_like_presets(tmp_path: Path) -> None:
    bad = tmp_path / "dashboards" / "typo.toml"
    bad.parent.mkdir()
    bad.write_text('name = "typo"\n\n[[pareto]]\ncolour = "bits"\n')
    with pytest.raises(SpecError, match=r"pareto\[0\]\.colour: unknown key; allowed: .*color"):
        load_dashboard(str(bad))
    repo = Path(__file__).resolve().parent.parent
    check_ok(nasopt("validate", str(repo / "dashboards"), cwd=tmp_path))
    assert load_dashboard("default").name == "default"
