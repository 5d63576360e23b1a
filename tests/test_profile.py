"""`nasopt profile`: the table of a tiny space covers every key the lookup model asks for, an
objective naming it evaluates, `--check` writes its JSON, exported parts are timed, bad input
exits 2 with one line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from nasopt.cli import main
from nasopt.core.candidate import Candidate
from nasopt.core.compute import ComputeModel
from nasopt.core.evaluation import evaluate
from nasopt.core.system import build_system
from nasopt.deploy.profile import fit_models, meta_path, objective_snippet, profile_space, write_table
from nasopt.deploy.profile_check import CHECK_FORMAT, read_check
from nasopt.deploy.profile_keys import keyed_layers
from nasopt.presets import load_space
from nasopt.space import SearchSpace
from nasopt.spec import ComputeSpec, ObjectiveSpec, SearchSpaceSpec, parse_spec
from tests.conftest import space_spec

TINY = """
name = "tiny-profile"
input = { channels = 3, height = 8, width = 8 }
num_classes = 4

[ops]
k3 = { type = "mbconv", kernel = 3, expansion = 2 }

[[stages]]
name = "stem"
widths = [4]
layers = [{ op = "conv3", stride = 2 }]

[[stages]]
name = "body"
widths = [4, 8]
layers = [{ choices = ["k3", "skip"] }]

[[stages]]
name = "head"
widths = [8]
layers = [{ op = "gap" }, { op = "classifier" }]

[bottleneck]
widths = ["none", 2]
bits = [8]
"""

FAST = {"warmup": 1, "repeats": 3}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _asked_keys(space: SearchSpace) -> set[str]:
    return {
        layer.lookup_key for c in space.enumerate() for layer in space.network(c).layers if layer.lookup_key
    }


def test_profiled_table_has_every_key_the_lookup_model_asks_for(tmp_path: Path) -> None:
    # MBConvs, a depthwise tap, skips, a bottleneck at every cut, two stage widths
    spec = space_spec(bottleneck={"widths": ["none", 4], "bits": [8]})
    space = SearchSpace(spec)
    result = profile_space(spec, backend="torch", progress=False, **FAST)
    table = write_table(result, tmp_path / "t.json")
    data = json.loads(table.read_text())
    asked = _asked_keys(space)
    assert asked and asked == set(data)  # every key asked for, and nothing no candidate asks for
    assert all(v >= 0 for v in data.values()) and any(v > 0 for v in data.values())
    meta = json.loads(meta_path(table).read_text())
    assert meta["backend"] == "torch" and meta["keys"] == len(data) and meta["repeats"] == 3
    assert meta["fits"]["throughput"]["macs_per_s"] > 0


def test_keys_of_a_preset_match_its_sampled_networks() -> None:
    import random

    spec = load_space("mbconv-quick")
    space = SearchSpace(spec)
    keys = keyed_layers(spec)
    rng = random.Random(0)
    for _ in range(200):
        for layer in space.network(space.sample(rng)).layers:
            assert layer.lookup_key is None or layer.lookup_key in keys


def test_a_lookup_objective_naming_the_table_evaluates(tmp_path: Path) -> None:
    spec = space_spec(bottleneck={"widths": ["none", 4], "bits": [8]})
    result = profile_space(spec, backend="torch", progress=False, **FAST)
    table = write_table(result, tmp_path / "t.json")
    rate = result.fits()["throughput"]["macs_per_s"]
    compute = {
        "kind": "lookup",
        "table": str(table),
        "table_unit": "ms",
        "fallback": "throughput",
        "macs_per_s": rate,
    }
    objective = parse_spec(
        ObjectiveSpec,
        {
            "name": "profiled",
            "devices": {"here": {"compute": compute}, "there": {"compute": compute}},
            "links": {"l": {"src": "here", "dst": "there", "bandwidth_bps": 1e6}},
            "topology": {"kind": "chain", "devices": ["here", "there"]},
        },
        "test",
    )
    system = build_system(objective)
    space = SearchSpace(spec, system)
    model = system.devices["here"].compute
    for cand in [space.largest(), space.smallest()]:
        network = space.network(cand)
        ev = evaluate(network, system)
        assert ev.latency_ms > 0
        for layer in network.layers:
            if layer.lookup_key is not None:
                assert model.layer_time_s(layer) == pytest.approx(result.times_ms[layer.lookup_key] * 1e-3)


def test_fitted_throughput_is_the_least_squares_rate() -> None:
    spec = space_spec()
    layers = keyed_layers(spec)
    rate = 2e9
    times = {k: item.layer.macs / rate * 1e3 for k, item in layers.items()}  # exactly MACs / rate
    fits = fit_models(layers, times)
    assert fits["throughput"]["macs_per_s"] == pytest.approx(rate)
    assert "least squares" in fits["throughput"]["fit"]


def test_check_on_three_candidates_writes_its_json(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    table, check = tmp_path / "table.json", tmp_path / "check.json"
    args = ["profile", "--space", str(tiny), "--backend", "torch", "-o", str(table), "--warmup", "1"]
    args += [
        "--repeats",
        "3",
        "--check",
        "--candidates",
        "3",
        "--calibrate",
        "2",
        "--check-output",
        str(check),
    ]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "within ±10 %" in out and "lookup" in out and "MAC/s" in out
    doc = read_check(check)
    assert doc["format"] == CHECK_FORMAT and doc["candidates"] == 3 and len(doc["rows"]) == 3
    assert set(doc["summary"]) == {"throughput", "linear", "lookup", "lookup (uncalibrated)"}
    assert doc["calibration"]["candidates"] == 2 and doc["timed_with_table"] is True
    for s in doc["summary"].values():
        assert 0 <= s["within_10pct"] <= 1 and s["median_abs_error"] >= 0
    for row in doc["rows"]:
        assert row["measured_ms"] > 0 and set(row["predicted_ms"]) == set(doc["summary"])
        assert row["macs"] > 0
    assert doc["models"]["throughput"]["macs_per_s"] > 0 and "fit" in doc["models"]["linear"]
    assert doc["machine"]["load_average"] and doc["clock"] == "cpu"
    # the same table checked again, without profiling, and the figure and report section
    again = ["profile", "--space", str(tiny), "--backend", "torch", "--table", str(table), "--check"]
    again += ["--candidates", "3", "--check-output", str(check), "--no-progress", "--repeats", "3"]
    assert main(again) == 0
    assert read_check(check)["timed_with_table"] is False
    assert main([*again, "--calibrate", "2"]) == 2  # an existing table keeps its own calibration
    assert "--calibrate" in capsys.readouterr().err
    from nasopt.views.prediction_figure import prediction_scatter, prediction_section_html

    fig = prediction_scatter(read_check(check))
    assert [t.name.split(":")[0] for t in fig.data[:3]] == ["throughput", "linear", "lookup"]
    assert "prediction-scatter" in prediction_section_html(read_check(check))


def test_onnxruntime_profile_and_check(tiny: Path, tmp_path: Path) -> None:
    spec = load_space(str(tiny))
    result = profile_space(spec, backend="onnxruntime", progress=False, **FAST)
    assert set(result.times_ms) == set(keyed_layers(spec)) and result.call_overhead_ms > 0
    assert result.in_graph_ops is not None and result.in_graph_ops > 0
    table = write_table(result, tmp_path / "t.json")
    assert json.loads(meta_path(table).read_text())["in_graph_ops"] == result.in_graph_ops
    from nasopt.deploy.profile_check import check_predictions

    doc = check_predictions(spec, table, backend="onnxruntime", candidates=1, progress=False, **FAST)
    assert doc["backend"] == "onnxruntime" and all(r["measured_ms"] > 0 for r in doc["rows"])
    # the printed compute spec adds back, once per run, the empty-run cost taken off every op
    compute = tomllib.loads(objective_snippet(table, result.fits()))["compute"]
    assert compute["run_overhead_s"] == pytest.approx(result.call_overhead_ms * 1e-3, rel=1e-3)
    model = ComputeModel(parse_spec(ComputeSpec, compute, "snippet"), "compute")
    row = doc["rows"][0]
    network = SearchSpace(spec).network(Candidate.from_dict(row["candidate"]))
    views = [
        network.views if network.fuse_after is not None and i <= network.fuse_after else 1
        for i in range(len(network.layers))
    ]
    layers_ms = (
        sum(model.layer_time_s(layer) * n for layer, n in zip(network.layers, views, strict=True)) * 1e3
    )
    assert row["predicted_ms"]["lookup"] == pytest.approx(layers_ms + result.call_overhead_ms, rel=1e-3)


def test_exported_parts_are_timed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    from nasopt.accuracy.supernet import Supernet
    from nasopt.deploy.export import export_parts
    from nasopt.deploy.profile_check import time_export
    from tests.conftest import calibrated, chain_system

    spec = load_space(str(_write(tmp_path, TINY)))
    system = chain_system([1e9, 1e9], [1e6])
    space = SearchSpace(spec, system)
    cand = space.largest()
    torch.manual_seed(0)
    sub = calibrated(Supernet(spec), cand, torch.randn(2, 3, 8, 8))
    out = tmp_path / "export"
    export_parts(sub, system, out, torch.randn(2, 3, 8, 8))
    doc = time_export(out, **FAST)
    assert [r["device"] for r in doc["parts"]] and all(r["measured_ms"] > 0 for r in doc["parts"])
    assert doc["sequential_ms"] > 0
    assert main(["profile", "--export", str(out), "--backend", "torch", "--repeats", "3"]) == 0
    assert "all parts in order" in capsys.readouterr().out


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--space", "TINY", "--backend", "tensorflow"], "backend"),
        (["--space", "no-such-space"], "no-such-space"),
        ([], "--space"),
        (["--space", "TINY", "--check", "--table", "missing.json"], "missing.json"),
        (["--space", "TINY", "--clock", "sundial"], "clock"),
        (["--space", "TINY", "--statistic", "mean"], "--statistic"),
        (["--export", "no-such-dir"], "no-such-dir"),
        (["--space", "TINY", "-o", "no-such-dir/t.json"], "no-such-dir"),  # refused before timing
        (["--space", "TINY", "--calibrate", "-1"], "--calibrate"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], needle: str, tiny: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [str(tiny) if a == "TINY" else a for a in args]
    assert main(["profile", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nasopt: error:") and needle in err


def test_timed_runs_are_taken_round_robin_and_the_statistic_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """`time_calls`: warm-ups first, then each pass times repeats/rounds runs of every call in
    turn; `min` keeps the fastest run, `median` the middle one (a fake clock ticks per call)."""
    from nasopt.deploy import profile_ops
    from nasopt.errors import SpecError

    order: list[str] = []
    now = [0.0]
    cost = {"a": [5.0, 1.0, 3.0, 2.0, 4.0], "b": [9.0, 8.0, 7.0, 6.0, 5.0]}

    def call(name: str) -> None:
        order.append(name)
        costs = cost[name]
        now[0] += costs[(sum(n == name for n in order) - 1) % len(costs)]

    monkeypatch.setitem(profile_ops.CLOCKS, "cpu", lambda: now[0])
    calls = [lambda: call("a"), lambda: call("b")]
    with profile_ops.using_clock("cpu", "min"):
        fastest = profile_ops.time_calls(calls, warmup=1, repeats=4, rounds=2)
    assert order == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]
    assert fastest == [1.0, 5.0]  # a's timed runs cost 1, 3, 2, 4; b's 8, 7, 6, 5
    order.clear()
    with profile_ops.using_clock("cpu", "median"):
        middle = profile_ops.time_calls(calls, warmup=0, repeats=4, rounds=4)
    assert order == ["a", "b"] * 4
    assert middle == [2.5, 7.5]  # the costs start over with the cleared order: a 5, 1, 3, 2; b 9, 8, 7, 6
    with pytest.raises(SpecError, match="statistic"), profile_ops.using_clock("cpu", "mean"):
        pass


def test_isolated_times_every_op_graph_as_is(tiny: Path, tmp_path: Path) -> None:
    table = tmp_path / "isolated.json"
    args = ["profile", "--space", str(tiny), "--isolated", "-o", str(table), "--warmup", "0"]
    assert main([*args, "--repeats", "1", "--rounds", "1", "--no-progress"]) == 0
    meta = json.loads(meta_path(table).read_text())
    assert meta["backend"] == "onnxruntime" and meta["in_graph_ops"] is None
    assert set(json.loads(table.read_text())) == set(keyed_layers(load_space(str(tiny))))


def test_profile_and_check_times_ops_and_candidates_in_the_same_passes(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nasopt profile` times every op and every candidate in one `time_calls` (so drift hits the
    table and the candidates alike) and splits the times back: each op minus the empty run (timed
    before), then the calibration candidates, whose median excess over the table becomes its run
    overhead, then the tested ones, predicted with it."""
    import statistics

    from nasopt.deploy import profile_ops
    from nasopt.deploy.profile import compute_specs, run_overhead_s
    from nasopt.deploy.profile_check import predicted_s, profile_and_check

    batches: list[int] = []

    def fake_time_calls(calls: list, warmup: int, repeats: int, rounds: int = 1) -> list[float]:
        batches.append(len(calls))
        if len(calls) == 1:  # the empty session.run
            return [0.5e-3]
        return [1e-3 * (i + 1) for i in range(len(calls))]  # call i takes (i + 1) ms

    monkeypatch.setattr(profile_ops, "time_calls", fake_time_calls)
    spec = load_space(str(tiny))
    table = tmp_path / "t.json"
    result, doc = profile_and_check(
        spec, table, backend="onnxruntime", candidates=3, calibrate=2, progress=False, **FAST
    )
    assert doc is not None
    live = [k for k in keyed_layers(spec) if result.times_ms[k] > 0]
    assert batches == [1, len(live) + 2 + 3]
    assert result.call_overhead_ms == pytest.approx(0.5)
    ops_ms = sorted(result.times_ms[k] for k in live)
    assert ops_ms == pytest.approx([i + 0.5 for i in range(len(live))])
    assert json.loads(table.read_text()) == pytest.approx(result.times_ms)
    # calibration: candidates 0-1 of the separate stream took len(live) + 1 and + 2 ms
    fits = fit_models(keyed_layers(spec), result.times_ms)
    plain = ComputeModel(compute_specs(table, fits, calibrated=False)["lookup"], "t")
    space = SearchSpace(spec)
    calib = [Candidate.from_dict(c) for c in _calibration_candidates(spec, 2)]
    excess = [len(live) + 1 + j - predicted_s(space.network(c), plain) * 1e3 for j, c in enumerate(calib)]
    assert result.calibration is not None and result.calibration["candidates"] == 2
    assert result.calibration["offset_ms"] == pytest.approx(statistics.median(excess))
    assert run_overhead_s(table) * 1e3 == pytest.approx(max(0.5 + statistics.median(excess), 0.0))
    assert run_overhead_s(table, calibrated=False) * 1e3 == pytest.approx(0.5)
    # the tested candidates: measured as timed, the lookup predicted with the calibrated overhead
    first_tested_ms = len(live) + 2 + 1.0
    assert [r["measured_ms"] for r in doc["rows"]] == pytest.approx([first_tested_ms + i for i in range(3)])
    for r in doc["rows"]:
        shift = r["predicted_ms"]["lookup"] - r["predicted_ms"]["lookup (uncalibrated)"]
        assert shift == pytest.approx(result.run_overhead_ms - 0.5)
    assert doc["timed_with_table"] is True and doc["calibration"] == result.calibration


def _calibration_candidates(spec: SearchSpaceSpec, n: int) -> list[dict]:
    """The calibration stream `profile_and_check` draws (seed 0)."""
    import random

    from nasopt.deploy.profile_check import _CALIBRATION_SEED

    space = SearchSpace(spec)
    rng = random.Random(_CALIBRATION_SEED)
    return [space.sample(rng).to_dict() for _ in range(n)]
