"""The model tree as a study (`[model_tree]` in a study spec): the sharing figure draws the
tree's branch sharing, and `nasopt run` stores, resumes and reports a tree study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from nasopt.cli import main
from nasopt.core.model_tree import ModelTree, shared_blocks, tree_layout
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ModelTreeView, SearchSpaceSpec, parse_spec
from nasopt.study.lifecycle import load
from nasopt.study.storage import open_storage
from nasopt.study.tree_objective import TREE_ATTR, best_tree_trial
from nasopt.views.tree_figure import OFFLOAD_COLOUR, sharing_plot
from tests.conftest import THREE_BLOCKS, edge_cloud_system

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "studies" / "model-tree-4g-slow.toml"


def _three_contexts_layout() -> Any:
    states = [
        {"name": "X", "bandwidth_bps": 8e6, "probability": 0.5},
        {"name": "Y", "bandwidth_bps": 2e6, "probability": 0.3},
        {"name": "Z", "bandwidth_bps": 0.5e6, "probability": 0.2},
    ]
    system = edge_cloud_system({"contexts": {"kind": "discrete", "states": states}})
    space = SearchSpace(parse_spec(SearchSpaceSpec, THREE_BLOCKS, "three-blocks.toml"), system)
    return space, tree_layout(space.macro, system, space.largest())


def test_the_sharing_figure_draws_the_trees_shared_and_offloading_nodes() -> None:
    space, layout = _three_contexts_layout()
    base = space.largest().ops
    # b0: X and Z run the same ops (c3), Y another (c5): X and Z share a node, not neighbours;
    # b1: X and Y offload (one offloading node), Z runs dw; b2: all three run dw (one node)
    x = ("c3", "c3", "dw", *base[3:])
    y = ("c5", "dw", "dw", *base[3:])
    z = ("c3", "dw", "dw", *base[3:])
    tree = ModelTree(
        offload=((False, False, False), (True, True, False), (False, False, False)), ops=(x, y, z)
    )
    fig = sharing_plot(layout, tree)
    nodes = [t.meta for t in fig.data]
    assert nodes == [
        {"block": "b0", "node": "A1", "contexts": ["X", "Z"], "offload": False},
        {"block": "b0", "node": "A2", "contexts": ["Y"], "offload": False},
        {"block": "b1", "node": "B1", "contexts": ["X", "Y"], "offload": True},
        {"block": "b1", "node": "B2", "contexts": ["Z"], "offload": False},
        {"block": "b2", "node": "C1", "contexts": ["X", "Y", "Z"], "offload": False},
    ]
    # the same structure as the core's sharing, block by block
    per_block = [[n["contexts"] for n in nodes if n["block"] == b.name] for b in layout.blocks]
    assert per_block == shared_blocks(layout, tree)
    # one cell per run of neighbouring contexts: X | Y | Z at b0, X-Y | Z at b1, X-Y-Z at b2
    cells = [
        (s.x0 + 0.45, s.x1 - 0.45, s.y0 + 0.38, s.line.color == OFFLOAD_COLOUR) for s in fig.layout.shapes
    ]
    assert [(round(a), round(b), round(c), red) for a, b, c, red in cells] == [
        (0, 0, 0, False),
        (2, 2, 0, False),
        (1, 1, 0, False),
        (0, 1, 1, True),
        (2, 2, 1, False),
        (0, 2, 2, False),
    ]
    assert list(fig.layout.xaxis.ticktext) == ["X", "Y", "Z"]
    assert list(fig.layout.yaxis.ticktext) == ["b0", "b1", "b2"]


def _study_file(tmp_path: Path, **changes: str) -> Path:
    text = PRESET.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "tree.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_tree_study_runs_resumes_and_reports_from_the_cli(tmp_path: Path, capsys: Any) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    spec = str(PRESET)
    common = ["--storage", url, "--no-progress"]
    assert main(["run", spec, *common, "--n-trials", "3"]) == 0
    first = capsys.readouterr().out
    assert "Best model tree: trial" in first and "sharing (one row per block" in first
    assert main(["run", spec, *common, "--n-trials", "2"]) == 0  # resumes the same study
    storage = open_storage(url, must_exist=True)
    study, resolved = load(storage, "model-tree-4g-slow")
    assert resolved.study.model_tree is not None
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 5
    assert "block00.ctx2.action" in trials[0].params
    assert any(name.endswith(".ctx1.op") for name in trials[0].params)
    assert study.metric_names == ["goal"]
    top = best_tree_trial(study)
    assert top is not None and top.number == study.best_trial.number
    assert max(t.value for t in trials if t.value is not None) == pytest.approx(top.value)
    best = {"trial": top.number, **top.user_attrs[TREE_ATTR]}
    assert best["contexts"] == ["weak", "normal", "good"]
    # the report's default view for a tree study draws the best tree's sharing
    out = tmp_path / "r.html"
    assert main(["report", "--study-name", study.study_name, *common, "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "data-kind='model_tree'" in html and f"Model tree of trial {best['trial']}" in html
    # and so does the dashboard's registration
    from nasopt.views.dashboard import register

    assert "nasopt-model_tree-0" in register(storage, study.study_name)
    # threshold sweeps compare single networks: refused by name, from the study or the preset
    capsys.readouterr()
    sweep = ["sweep", "--threshold", "latency_ms=50", *common]
    assert main([*sweep, "--from-front", "--study-name", study.study_name]) == 2
    assert "model_tree" in capsys.readouterr().err
    assert main([*sweep, spec]) == 2
    assert "model_tree" in capsys.readouterr().err
    assert len(study.get_trials()) == 5 and len(open_storage(url).get_all_studies()) == 1


def test_a_tree_study_refuses_a_system_it_cannot_fork_on(tmp_path: Path, capsys: Any) -> None:
    path = _study_file(
        tmp_path, **{'"edge-cloud-4g-slow"': '"jmsnas-chain"', '"vgg11-compress"': '"mbconv-jmsnas-32"'}
    )
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    assert main(["run", str(path), "--storage", url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "topology.devices" in err and "edge -> cloud" in err
    assert not (tmp_path / "bad.db").exists()


def test_a_bad_model_tree_table_names_the_field(tmp_path: Path, capsys: Any) -> None:
    path = _study_file(tmp_path, **{"accuracy_floor = 0.9101": "accuracy_floor = 0.9101\nsampels = 3"})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model_tree.sampels" in err and "cloud_base" in err


def test_a_model_tree_view_needs_a_tree_study() -> None:
    from nasopt.presets import resolve
    from nasopt.views.tree_figure import study_layout

    resolved = resolve("quickstart-proxy")
    with pytest.raises(SpecError, match="model-tree study"):
        study_layout(resolved)
    assert ModelTreeView().trial == "best"
