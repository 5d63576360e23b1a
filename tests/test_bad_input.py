"""Bad input through the command line: exit code 2, one line on stderr, no traceback, and the line
names the file and the field.

Broken copies of the presets (every file in search_spaces/ and objectives/, plus the fixtures in
tests/fixtures/) are written to a temporary folder. Every case runs through `nasopt.cli.main` in
this process (an exception escaping it is the traceback a user would see); one case of each kind
also runs as `python -m nasopt` in a subprocess, all of those concurrently, once per module (a
subprocess costs half a second, mostly importing optuna, so not every preset gets one).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPACE_PRESETS = sorted((ROOT / "search_spaces").glob("*.toml"))
OBJECTIVE_PRESETS = sorted((ROOT / "objectives").glob("*.toml"))
FIXTURE_OBJECTIVES = sorted(FIXTURES.glob("*_obj.toml"))
FIXTURE_SPACES = sorted(FIXTURES.glob("*_space.toml"))
ALL_SPACES = SPACE_PRESETS + FIXTURE_SPACES
ALL_OBJECTIVES = OBJECTIVE_PRESETS + FIXTURE_OBJECTIVES


# ------------------------------------------------------------------ a minimal TOML writer


def to_toml(data: dict[str, Any]) -> str:
    """`data` as TOML: one `key = value` line per top-level key, nested values inline."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in data.items())


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def label(path: Path) -> str:
    """A preset's name in case ids: folder and stem (a space and an objective may share a stem)."""
    return f"{path.parent.name}/{path.stem}"


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    """A command line and the texts its one error line must contain (or exit 0 when ok)."""

    args: list[str]
    needles: list[str]
    ok: bool = False


Builder = Callable[[Path], Case]
CASES: dict[str, Builder] = {}


def case(case_id: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        assert case_id not in CASES, case_id
        CASES[case_id] = fn
        return fn

    return register


def write(tmp: Path, folder: str, name: str, data: dict[str, Any] | str | bytes) -> Path:
    """A preset file under `tmp/<folder>/` (so `validate` detects its kind from the folder)."""
    path = tmp / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else to_toml(data), encoding="utf-8")
    return path


def _broken_preset(folder: str, case_id: str, source: Path, mutate: Callable[[dict], list[str]]) -> None:
    """Register a `validate` case on a mutated copy of preset `source`; `mutate` returns needles."""

    @case(f"{case_id}[{label(source)}]")
    def build(tmp: Path) -> Case:
        data = copy.deepcopy(load(source))
        needles = mutate(data)
        path = write(tmp, folder, f"{case_id}-{source.stem}.toml", data)
        return Case(["validate", str(path)], [str(path), *needles])


def broken_space(case_id: str, source: Path, mutate: Callable[[dict], list[str]]) -> None:
    _broken_preset("search_spaces", case_id, source, mutate)


def broken_objective(case_id: str, source: Path, mutate: Callable[[dict], list[str]]) -> None:
    _broken_preset("objectives", case_id, source, mutate)


# controls: an unbroken copy written by `to_toml` validates, so the broken copies below fail
# because of what was broken, not because of the writer
for _src in ALL_SPACES:

    @case(f"control[{label(_src)}]")
    def _control_space(tmp: Path, src: Path = _src) -> Case:
        data = load(src)
        assert tomllib.loads(to_toml(data)) == data
        return Case(
            ["validate", str(write(tmp, "search_spaces", f"control-{src.stem}.toml", data))], [], ok=True
        )


for _src in ALL_OBJECTIVES:

    @case(f"control[{label(_src)}]")
    def _control_objective(tmp: Path, src: Path = _src) -> Case:
        data = load(src)
        assert tomllib.loads(to_toml(data)) == data
        return Case(
            ["validate", str(write(tmp, "objectives", f"control-{src.stem}.toml", data))], [], ok=True
        )


# ---- search spaces


def _unknown_op(data: dict) -> list[str]:
    layer = data["stages"][0]["layers"][0]
    first = layer.pop("op", None) or layer.pop("choices")[0]
    layer["choices"] = [first, "no_such_op"]
    return ["stages[0].layers[0].choices", "no_such_op", "unknown op", "allowed:", first]


def _split_beyond(data: dict) -> list[str]:
    data["split"] = {**data.get("split", {}), "points": [-1, 100_000]}
    return ["split.points[1]", "100000", "beyond the last layer"]


def _unknown_top_key_space(data: dict) -> list[str]:
    data["colour"] = "red"
    return ["colour", "unknown key", "allowed:", "stages", "input", "num_classes"]


def _unknown_nested_key_space(data: dict) -> list[str]:
    data["stages"][0]["layers"][0]["colour"] = "red"
    return ["stages[0].layers[0].colour", "unknown key", "allowed: choices, op, repeat, stride, width"]


def _unknown_stage_key_space(data: dict) -> list[str]:
    data["stages"][-1]["colour"] = "red"
    n = len(data["stages"]) - 1
    return [f"stages[{n}].colour", "unknown key", "allowed:", "widths", "layers", "parallel"]


def _missing_name_space(data: dict) -> list[str]:
    del data["name"]
    return ["name", "required field is missing"]


def _missing_nested_space(data: dict) -> list[str]:
    del data["stages"][0]["widths"]
    return ["stages[0].widths", "required field is missing"]


def _negative_width(data: dict) -> list[str]:
    data["stages"][0]["widths"] = [-8]
    return ["stages[0].widths[0]", "-8", "greater than 0"]


def _unknown_fusion_merge(data: dict) -> list[str]:
    data["fusion"]["merge"] = "sum"
    return ["fusion.merge", "'concat'", "'max'", "'mean'", "sum"]


def _unknown_fusion_placement(data: dict) -> list[str]:
    data["fusion"]["placement"] = ["sensors", "cloud"]
    return ["fusion.placement[1]", "'sensors'", "'aggregator'", "cloud"]


for _src in ALL_SPACES:
    if "fusion" in load(_src):
        broken_space("unknown-fusion-merge", _src, _unknown_fusion_merge)
        broken_space("unknown-fusion-placement", _src, _unknown_fusion_placement)
    broken_space("unknown-op", _src, _unknown_op)
    broken_space("split-beyond-last-layer", _src, _split_beyond)
    broken_space("unknown-top-key", _src, _unknown_top_key_space)
    broken_space("unknown-nested-key", _src, _unknown_nested_key_space)
    broken_space("unknown-stage-key", _src, _unknown_stage_key_space)
    broken_space("missing-name", _src, _missing_name_space)
    broken_space("missing-nested", _src, _missing_nested_space)
    broken_space("negative-width", _src, _negative_width)


# ---- objectives


def _negative_bandwidth(data: dict) -> list[str]:
    for name, link in data.get("links", {}).items():
        if "bandwidth_bps" in link:
            link["bandwidth_bps"] = -1e6
            return [f"links.{name}.bandwidth_bps", "greater than 0", "-1000000.0"]
        if link.get("contexts", {}).get("states"):  # a varying link: its first context
            link["contexts"]["states"][0]["bandwidth_bps"] = -1e6
            return [f"links.{name}.contexts.states[0].bandwidth_bps", "greater than 0", "-1000000.0"]
    name, medium = next(iter(data["media"].items()))
    medium["bandwidth_bps"] = -1e6
    return [f"media.{name}.bandwidth_bps", "greater than 0", "-1000000.0"]


def _unknown_link_device(data: dict) -> list[str]:
    name, link = next(iter(data["links"].items()))
    link["dst"] = "no_such_device"
    return [f"links.{name}.dst", "unknown device", "no_such_device", "allowed:", *data["devices"]]


def _unknown_top_key_objective(data: dict) -> list[str]:
    data["colour"] = "red"
    return ["colour", "unknown key", "allowed:", "devices", "links", "topology"]


def _unknown_nested_key_objective(data: dict) -> list[str]:
    name, device = next(iter(data["devices"].items()))
    device["compute"]["colour"] = "red"
    return [f"devices.{name}.compute.colour", "unknown key", "allowed:", "kind", "macs_per_s"]


def _unknown_topology_key(data: dict) -> list[str]:
    data["topology"]["colour"] = "red"
    return ["topology.colour", "unknown key", "allowed:", "kind", "root", "leaves"]


def _missing_compute(data: dict) -> list[str]:
    name, device = next(iter(data["devices"].items()))
    del device["compute"]
    return [f"devices.{name}.compute", "required field is missing"]


def _unknown_memory_model(data: dict) -> list[str]:
    name, device = next(iter(data["devices"].items()))
    device["memory_model"] = "peak"
    return [f"devices.{name}.memory_model", "'liveness'", "'splitnets'"]


def _missing_topology_kind(data: dict) -> list[str]:
    del data["topology"]["kind"]
    return ["topology.kind", "required field is missing"]


def _chain_repeat(data: dict) -> list[str]:
    devices = data["topology"]["devices"]
    devices.append(devices[0])
    return ["topology.devices", "cycle in the topology", "appears twice"]


def _unknown_topology_device(data: dict) -> list[str]:
    topo = data["topology"]
    key = {"chain": "devices", "mesh": "branches", "tree": "leaves"}[topo["kind"]]
    topo[key] = [*topo[key], "no_such_device"]
    return [f"topology.{key}[{len(topo[key]) - 1}]", "unknown device", "no_such_device", "allowed:"]


for _src in ALL_OBJECTIVES:
    _data = load(_src)
    if _data.get("links", {}) or _data.get("media", {}):
        broken_objective("negative-bandwidth", _src, _negative_bandwidth)
    if _data.get("links", {}):
        broken_objective("unknown-link-device", _src, _unknown_link_device)
    if _data["topology"]["kind"] == "chain":
        broken_objective("chain-lists-device-twice", _src, _chain_repeat)
    broken_objective("unknown-top-key", _src, _unknown_top_key_objective)
    broken_objective("unknown-nested-key", _src, _unknown_nested_key_objective)
    broken_objective("unknown-topology-key", _src, _unknown_topology_key)
    broken_objective("missing-compute", _src, _missing_compute)
    broken_objective("unknown-memory-model", _src, _unknown_memory_model)
    broken_objective("missing-topology-kind", _src, _missing_topology_kind)
    broken_objective("unknown-topology-device", _src, _unknown_topology_device)


def _tree(links: dict[str, tuple[str, str]], root: str, leaves: list[str]) -> dict[str, Any]:
    devices = sorted({d for pair in links.values() for d in pair} | {root, *leaves})
    return {
        "name": "tree",
        "devices": {d: {"compute": {"kind": "throughput", "macs_per_s": 1e9}} for d in devices},
        "links": {n: {"src": s, "dst": d, "bandwidth_bps": 1e6} for n, (s, d) in links.items()},
        "topology": {"kind": "tree", "root": root, "leaves": leaves},
    }


@case("tree-cycle-a-b-a")
def _tree_cycle(tmp: Path) -> Case:
    data = _tree({"ab": ("a", "b"), "ba": ("b", "a")}, root="r", leaves=["a"])
    path = write(tmp, "objectives", "tree-cycle.toml", data)
    return Case(["validate", str(path)], [str(path), "links.ba", "cycle in the topology", "a -> b -> a"])


@case("tree-cycle-behind-hub")
def _tree_cycle_hub(tmp: Path) -> Case:
    data = _tree({"lh": ("leaf", "hub"), "hx": ("hub", "x"), "xh": ("x", "hub")}, root="r", leaves=["leaf"])
    path = write(tmp, "objectives", "tree-cycle-hub.toml", data)
    return Case(["validate", str(path)], [str(path), "links.xh", "cycle in the topology", "hub -> x -> hub"])


@case("tree-two-uplinks")
def _tree_two_uplinks(tmp: Path) -> Case:
    data = _tree({"ar": ("a", "r"), "ab": ("a", "b")}, root="r", leaves=["a"])
    path = write(tmp, "objectives", "tree-two-uplinks.toml", data)
    return Case(["validate", str(path)], [str(path), "links.ab", "only one uplink", "a->b"])


@case("tree-leaf-without-path")
def _tree_no_path(tmp: Path) -> Case:
    data = _tree({"ar": ("a", "r")}, root="r", leaves=["a", "b"])
    path = write(tmp, "objectives", "tree-no-path.toml", data)
    return Case(["validate", str(path)], [str(path), "topology.leaves", "no path from b"])


@case("mesh-lists-device-twice")
def _mesh_repeat(tmp: Path) -> Case:
    data = load(FIXTURES / "mesh_obj.toml")
    data["topology"]["after"] = [*data["topology"]["after"], data["topology"]["before"][0]]
    path = write(tmp, "objectives", "mesh-repeat.toml", data)
    return Case(["validate", str(path)], [str(path), "topology.after", "appears twice"])


@case("mesh-missing-link")
def _mesh_missing_link(tmp: Path) -> Case:
    data = load(FIXTURES / "mesh_obj.toml")
    del data["links"]["mbs_cloud"]
    path = write(tmp, "objectives", "mesh-missing-link.toml", data)
    return Case(["validate", str(path)], [str(path), "topology.branches", "no link from mbs0 to cloud"])


@case("unknown-medium")
def _unknown_medium(tmp: Path) -> Case:
    data = load(FIXTURES / "tree_obj.toml")
    data["links"]["up"]["medium"] = "ether"
    path = write(tmp, "objectives", "unknown-medium.toml", data)
    return Case(["validate", str(path)], [str(path), "links.up.medium", "ether", "allowed: bus"])


@case("unknown-hwnasbench-table")
def _unknown_table(tmp: Path) -> Case:
    data = load(FIXTURES / "chain3_obj.toml")
    data["devices"]["phone"]["compute"] = {"kind": "lookup", "table": "hwnasbench:no_such_table"}
    path = write(tmp, "objectives", "unknown-table.toml", data)
    return Case(["validate", str(path)], [str(path), "devices.phone.compute.table", "no_such_table"])


# ---- files that are not TOML


for _src in [*SPACE_PRESETS, *OBJECTIVE_PRESETS]:

    @case(f"invalid-toml[{label(_src)}]")
    def _invalid_toml(tmp: Path, src: Path = _src) -> Case:
        text = src.read_text(encoding="utf-8") + '\n[[stages]\nname = "unclosed\n'
        folder = src.parent.name
        path = write(tmp, folder, f"invalid-{src.stem}.toml", text)
        return Case(["validate", str(path)], [str(path), "invalid TOML", "line"])


@case("not-utf8")
def _not_utf8(tmp: Path) -> Case:
    path = write(tmp, "search_spaces", "latin1.toml", 'name = "caf\xe9"\n'.encode("latin-1"))
    return Case(["validate", str(path)], [str(path), "invalid TOML", "UTF-8"])


@case("validate-missing-file")
def _missing_file(tmp: Path) -> Case:
    path = tmp / "search_spaces" / "does-not-exist.toml"
    return Case(["validate", str(path)], [str(path), "no such file"])


# ---- describe: preset names and candidates


@case("unknown-space-preset")
def _unknown_space(tmp: Path) -> Case:
    names = [p.stem for p in SPACE_PRESETS]
    args = ["describe", "--space", "no_such_space", "--objective", "splitnets-hmd-4"]
    return Case(args, ["space", "unknown space preset", "no_such_space", "allowed:", *names])


@case("unknown-objective-preset")
def _unknown_objective(tmp: Path) -> Case:
    names = [p.stem for p in OBJECTIVE_PRESETS]
    args = ["describe", "--space", "mobilenetv2", "--objective", "no_such_objective"]
    return Case(args, ["objective", "unknown objective preset", "no_such_objective", "allowed:", *names])


@case("describe-broken-space-file")
def _describe_broken_space(tmp: Path) -> Case:
    data = load(ROOT / "search_spaces" / "mobilenetv2.toml")
    data["input"]["channels"] = 0
    path = write(tmp, "elsewhere", "zero-channels.toml", data)
    args = ["describe", "--space", str(path), "--objective", "splitnets-hmd-4"]
    return Case(args, [str(path), "input.channels", "greater than 0"])


def _describe(candidate: str, space: str = "mobilenetv2") -> list[str]:
    return ["describe", "--space", space, "--objective", "splitnets-hmd-4", "--candidate", candidate]


@case("candidate-invalid-json")
def _candidate_json(tmp: Path) -> Case:
    return Case(_describe('{"ops": ['), ["--candidate", "not valid JSON", "allowed:"])


@case("candidate-not-an-object")
def _candidate_list(tmp: Path) -> Case:
    return Case(_describe("[1, 2]"), ["--candidate", "JSON object"])


@case("candidate-file-invalid-json")
def _candidate_file(tmp: Path) -> Case:
    path = tmp / "candidate.json"
    path.write_text("{not json", encoding="utf-8")
    return Case(_describe(f"@{path}"), [str(path), "not valid JSON"])


@case("candidate-file-missing")
def _candidate_file_missing(tmp: Path) -> Case:
    path = tmp / "no-such-candidate.json"
    return Case(_describe(f"@{path}"), [str(path), "cannot read"])


@case("candidate-bad-random-seed")
def _candidate_seed(tmp: Path) -> Case:
    return Case(_describe("random:abc"), ["--candidate", "random:abc", "integer seed"])


@case("candidate-value-not-a-choice")
def _candidate_value(tmp: Path) -> Case:
    return Case(_describe('{"split.after": 100000}'), ["split.after", "100000", "not among the choices"])


@case("candidate-unknown-key")
def _candidate_unknown_key(tmp: Path) -> Case:
    return Case(_describe('{"ops": [], "colour": 1}'), ["colour", "unknown candidate key", "allowed:"])


@case("candidate-wrong-op-count")
def _candidate_op_count(tmp: Path) -> Case:
    return Case(_describe('{"ops": ["conv3"], "widths": [], "cuts": [0]}'), ["ops", "candidate needs"])


def _largest_mobilenetv2() -> dict[str, Any]:
    from nasopt.core.system import build_system
    from nasopt.presets import load_objective, load_space
    from nasopt.space import SearchSpace

    system = build_system(load_objective("splitnets-hmd-4"))
    return SearchSpace(load_space("mobilenetv2"), system).largest().to_dict()


@case("candidate-without-cuts")
def _candidate_no_cuts(tmp: Path) -> Case:
    data = _largest_mobilenetv2()
    del data["cuts"]
    return Case(_describe(json.dumps(data)), ["cuts"])


@case("candidate-too-many-cuts")
def _candidate_many_cuts(tmp: Path) -> Case:
    data = _largest_mobilenetv2()
    data["cuts"] = [0, 1, 2]
    return Case(_describe(json.dumps(data)), ["cuts"])


@case("candidate-width-not-a-number")
def _candidate_width_text(tmp: Path) -> Case:
    return Case(_describe('{"ops": [], "widths": ["wide"]}'), ["widths", "wide"])


@case("candidate-cut-null")
def _candidate_cut_null(tmp: Path) -> Case:
    return Case(_describe('{"ops": [], "widths": [], "cuts": [null]}'), ["cuts"])


# ---- issue 22: numbers out of scale, names, tables, the [accuracy] table (every one exited 1
# with a traceback, or was accepted and stored nonsense)


def _first_op(data: dict[str, Any]) -> dict[str, Any]:
    return next(iter(data["ops"].values()))


for _bad in (math.inf, 1e308):

    @case(f"expansion-{_bad}")
    def _expansion(tmp: Path, bad: float = _bad) -> Case:
        data = load(ROOT / "search_spaces" / "mobilenetv2.toml")
        name = next(iter(data["ops"]))
        data["ops"][name]["expansion"] = bad
        path = write(tmp, "search_spaces", f"expansion-{bad}.toml", data)
        return Case(["validate", str(path)], [str(path), f"ops.{name}.expansion", "0 < x <= 64"])


@case("space-name-traversal")
def _space_traversal(tmp: Path) -> Case:
    data = load(ROOT / "search_spaces" / "mobilenetv2.toml")
    data["name"] = "../../../escaped"
    path = write(tmp, "search_spaces", "traversal.toml", data)
    return Case(["validate", str(path)], [str(path), "name", "not a safe name", "letters, digits"])


@case("preset-name-300-chars")
def _long_preset_name(tmp: Path) -> Case:
    return Case(
        ["describe", "--space", "x" * 300, "--objective", "splitnets-hmd-4"], ["unknown space preset"]
    )


def _link(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return next(iter(data["links"].items()))


@case("s-per-byte-inf")
def _s_per_byte(tmp: Path) -> Case:
    data = load(FIXTURES / "chain3_obj.toml")
    name, link = _link(data)
    link["size_term"] = {"intercept_s": 0.0, "s_per_byte": math.inf}
    path = write(tmp, "objectives", "s-per-byte.toml", data)
    return Case(["validate", str(path)], [str(path), f"links.{name}.size_term.s_per_byte", "finite", "<= 1"])


@case("bandwidth-1e-320")
def _tiny_bandwidth(tmp: Path) -> Case:
    data = load(FIXTURES / "chain3_obj.toml")
    name, link = _link(data)
    link["bandwidth_bps"] = 1e-320
    path = write(tmp, "objectives", "tiny-bandwidth.toml", data)
    return Case(["validate", str(path)], [str(path), f"links.{name}.bandwidth_bps", "at least 1"])


@case("duplicated-objectives")
def _duplicated_objectives(tmp: Path) -> Case:
    data = load(FIXTURES / "chain3_obj.toml")
    data["objectives"] = [{"name": "error", "direction": "minimize"}] * 2
    path = write(tmp, "objectives", "duplicated-objectives.toml", data)
    return Case(["validate", str(path)], [str(path), "objectives", "'error' is listed twice"])


@case("binary-lookup-table")
def _binary_table(tmp: Path) -> Case:
    table = tmp / "objectives" / "table.bin"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_bytes(bytes(range(256)) * 4)
    data = load(FIXTURES / "chain3_obj.toml")
    device = next(iter(data["devices"]))
    data["devices"][device]["compute"] = {"kind": "lookup", "table": str(table)}
    path = write(tmp, "objectives", "binary-table.toml", data)
    return Case(["validate", str(path)], [str(path), f"devices.{device}.compute.table", "not UTF-8"])


def _study_case(tmp: Path, case_id: str, accuracy: dict[str, Any], needles: list[str]) -> Case:
    study = {"name": "s", "space": "mbconv-quick", "objective": "jmsnas-chain", "accuracy": accuracy}
    path = write(tmp, "studies", f"{case_id}.toml", study)
    return Case(["validate", str(path)], [str(path), *needles])


ACCURACY_CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "floor-above-ceiling": (
        {"floor": 0.9, "ceiling": 0.5},
        ["accuracy", "floor (0.9) must be below ceiling (0.5)"],
    ),
    "ceiling-nan": ({"ceiling": math.nan}, ["accuracy.ceiling", "finite", "0 <= x <= 1"]),
    "floor-text": ({"floor": "abc"}, ["accuracy.floor", "'abc'", "0 <= x <= 1"]),
    "loss-penalty-negative": ({"loss_penalty": -5}, ["accuracy.loss_penalty", "-5", "0 <= x <= 1"]),
    "proxy-unknown-option": ({"epochs": 3}, ["accuracy.epochs", "unknown key", "ceiling, estimator, floor"]),
    "unknown-estimator": ({"estimator": "oracle"}, ["accuracy", "unknown accuracy estimator", "supernet"]),
    "warmup-epochs-inf": (
        {"estimator": "supernet", "warmup_epochs": math.inf},
        ["accuracy.warmup_epochs", "finite"],
    ),
    "lr-nan": ({"estimator": "supernet", "lr": math.nan}, ["accuracy.lr", "finite", "0 < x <= 10"]),
    "supernet-unknown-option": (
        {"estimator": "supernet", "floor": 0.2},
        ["accuracy.floor", "unknown key", "epochs"],
    ),
    "unknown-dataset": (
        {"estimator": "supernet", "dataset": "mnist"},
        ["accuracy.dataset", "mnist", "digits", "textures"],
    ),
    "checkpoint-dir-traversal": (
        {"estimator": "supernet", "checkpoint_dir": "../../elsewhere"},
        ["accuracy.checkpoint_dir", "'..'"],
    ),
    "epochs-zero": ({"estimator": "supernet", "epochs": 0}, ["accuracy.epochs", "1 <= x <= 10000"]),
}
for _id, (_accuracy, _needles) in ACCURACY_CASES.items():

    @case(f"accuracy-{_id}")
    def _accuracy_case(tmp: Path, i: str = _id, a: dict = _accuracy, n: list = _needles) -> Case:
        return _study_case(tmp, f"accuracy-{i}", a, n)


@case("sampler-bogus")
def _sampler_bogus(tmp: Path) -> Case:
    study = {"name": "s", "space": "mbconv-quick", "objective": "jmsnas-chain", "sampler": {"name": "bogus"}}
    path = write(tmp, "studies", "sampler-bogus.toml", study)
    return Case(["validate", str(path)], [str(path), "sampler.name", "unknown sampler", "evolution"])


for _size in (0, math.inf):

    @case(f"population-size-{_size}")
    def _population(tmp: Path, size: float = _size) -> Case:
        sampler = {"name": "evolution", "options": {"population_size": size}}
        study = {"name": "s", "space": "mbconv-quick", "objective": "jmsnas-chain", "sampler": sampler}
        path = write(tmp, "studies", f"population-{size}.toml", study)
        return Case(["validate", str(path)], [str(path), "sampler.options", "population_size"])


# ------------------------------------------------------------------ running

# one case of each kind the brief lists, on the two reference presets, also runs as a real
# subprocess (the in-process run above covers every preset and every case)
SUBPROCESS_CASES = [
    "unknown-op[search_spaces/mobilenetv2]",
    "negative-bandwidth[objectives/splitnets-hmd-4]",
    "split-beyond-last-layer[search_spaces/mobilenetv2]",
    "unknown-link-device[objectives/splitnets-hmd-4]",
    "tree-cycle-a-b-a",
    "chain-lists-device-twice[objectives/splitnets-hmd-4]",
    "unknown-top-key[search_spaces/mobilenetv2]",
    "unknown-nested-key[objectives/splitnets-hmd-4]",
    "invalid-toml[search_spaces/mobilenetv2]",
    "unknown-space-preset",
    "missing-compute[objectives/splitnets-hmd-4]",
    "candidate-invalid-json",
    "candidate-without-cuts",
]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "nasopt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case | Exception]:
    """Every case's files and command line; a builder's exception is kept for its own test."""
    tmp = tmp_path_factory.mktemp("bad_input")
    out: dict[str, Case | Exception] = {}
    for case_id, builder in CASES.items():
        try:
            out[case_id] = builder(tmp)
        except Exception as exc:
            out[case_id] = exc
    return out


@pytest.fixture(scope="module")
def launched(built: dict[str, Case | Exception]) -> Iterator[dict[str, Future]]:
    """The subprocess cases, started as soon as the cases are built so that they run on the
    spare cores while this process runs the in-process cases."""
    cases = {k: built[k] for k in SUBPROCESS_CASES if isinstance(built[k], Case)}
    workers = max(1, (os.cpu_count() or 2) - 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield {k: pool.submit(_run, c.args) for k, c in cases.items()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def ran(launched: dict[str, Future]) -> dict[str, subprocess.CompletedProcess[str]]:
    return {k: f.result() for k, f in launched.items()}


def _get(built: dict[str, Case | Exception], case_id: str) -> Case:
    spec = built[case_id]
    if isinstance(spec, Exception):
        raise spec
    return spec


def _check(spec: Case, code: int, stderr: str) -> None:
    command = "nasopt " + " ".join(spec.args)
    if spec.ok:
        assert code == 0, f"{command}\n{stderr}"
        return
    assert "Traceback" not in stderr, f"{command}\n{stderr}"
    assert code == 2, f"{command}: exit {code}\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"{command}: expected one line on stderr, got\n{stderr}"
    line = lines[0]
    assert line.startswith("nasopt: error: "), line
    missing = [n for n in spec.needles if n not in line]
    assert not missing, f"{command}: {missing} not in\n{line}"


@pytest.mark.usefixtures("launched")  # the subprocesses run meanwhile
@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(
    case_id: str,
    built: dict[str, Case | Exception],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nasopt.cli import main

    spec = _get(built, case_id)
    monkeypatch.chdir(ROOT)
    code = main(spec.args)  # an exception here is a traceback for the user
    _check(spec, code, capsys.readouterr().err)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_subprocess(
    case_id: str, built: dict[str, Case | Exception], ran: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    spec = _get(built, case_id)
    proc = ran[case_id]
    _check(spec, proc.returncode, proc.stderr)


def test_cases_cover_every_preset() -> None:
    """Every preset gets broken copies, and the subprocess cases exist."""
    assert (ROOT / "search_spaces" / "mobilenetv2.toml") in SPACE_PRESETS
    assert (ROOT / "objectives" / "splitnets-hmd-4.toml") in OBJECTIVE_PRESETS
    for src in ALL_SPACES + ALL_OBJECTIVES:
        assert f"unknown-top-key[{label(src)}]" in CASES
    assert set(SUBPROCESS_CASES) <= set(CASES)


def test_every_preset_validates() -> None:
    folders = [f for f in ("search_spaces", "objectives", "studies") if (ROOT / f).is_dir()]
    proc = _run(["validate", *folders])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    ok_lines = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == sum(len(list((ROOT / f).glob("*.toml"))) for f in folders)


def test_fixtures_validate(capsys: pytest.CaptureFixture[str]) -> None:
    from nasopt.cli import main

    assert main(["validate", str(FIXTURES)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert len(out.splitlines()) == len(list(FIXTURES.glob("*.toml")))
