"""Helpers of the benchmark scripts whose numbers land in committed reports."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str) -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_noise_ceiling_follows_greiner_and_spearman_brown():
    ranking = _bench("supernet_ranking")
    # seed b reverses one adjacent pair of seed a: tau = 1 - 2 * 1 / 6 over 4 subnets
    seeds = [[0.1, 0.1], [0.2, 0.3], [0.3, 0.2], [0.4, 0.4]]
    pair_tau, ceiling, needed = ranking.noise_ceiling(seeds)
    assert pair_tau == pytest.approx(2 / 3)
    r = math.sin(math.pi * pair_tau / 2)
    assert ceiling == pytest.approx(2 / math.pi * math.asin(math.sqrt(2 * r / (1 + r))))
    assert needed == 1  # two seeds this consistent already allow 0.6
    noisy = [[0.1, 0.3, 0.2], [0.2, 0.1, 0.3], [0.3, 0.2, 0.1], [0.4, 0.4, 0.4]]
    _, low, more = ranking.noise_ceiling(noisy)
    assert low < ceiling and more > needed
    identical = [[a, a] for a in (0.1, 0.2, 0.3)]
    assert ranking.noise_ceiling(identical)[1] == pytest.approx(1.0)


def test_spaces_merge_keeps_other_rows_with_their_command(tmp_path):
    spaces = _bench("supernet_spaces")
    labels = [r.label for r in spaces.ROWS]
    old = {"command": "python old", "machine": "old box", "rows": [{"label": x, "v": 1} for x in labels[:3]]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(old))
    fresh = {"label": labels[1], "v": 2, "command": "python new", "machine": "new box"}
    rows = spaces.merged(path, [fresh])
    assert [r["label"] for r in rows] == labels[:3]
    assert rows[1] == fresh
    assert rows[0]["command"] == "python old" and rows[0]["machine"] == "old box"
    lines = spaces.by_row(rows, "machine", "Machine")
    assert lines == ["Machines:", f"- old box: {labels[0]}, {labels[2]}", f"- new box: {labels[1]}"]


def test_common_seeds_share_one_seed_per_column_and_references_must_match(tmp_path):
    ranking = _bench("supernet_ranking")
    own = {(i, k): ranking.standalone_seed(0, i, k, False) for i in range(4) for k in range(3)}
    common = {(i, k): ranking.standalone_seed(0, i, k, True) for i in range(4) for k in range(3)}
    assert len(set(own.values())) == 12  # every training its own seed
    assert {common[i, 1] for i in range(4)} == {common[0, 1]}  # one seed per column...
    assert len({common[0, k] for k in range(3)}) == 3  # ...different between columns
    assert common[0, 2] == own[0, 2]  # subnet 0 keeps its seeds, so per-subnet references extend

    from nasopt.core.system import build_system
    from nasopt.presets import resolve
    from nasopt.space import SearchSpace

    r = resolve("quickstart-glyphs")
    cands = ranking.draw_subnets(SearchSpace(r.space, build_system(r.objective)), 2, 0, spread=False)
    old = {  # a reference written before --common-seeds existed: per-subnet seeds
        "candidates": [c.to_dict() for c in cands],
        "standalone_epochs": 12,
        "reference_calibration": 32,
        "standalone_acc": [[0.8], [0.9]],
        "command": "python old",
    }
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(old))
    assert ranking.reused_reference(path, cands, 12, 32, False)[0] == [[0.8], [0.9]]
    with pytest.raises(SystemExit, match="common_seeds"):
        ranking.reused_reference(path, cands, 12, 32, True)
