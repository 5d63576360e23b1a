"""Shared fixtures: small inline search spaces and systems built from dicts, the fixture files,
and the calibrated subnets the deployment tests export."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nasopt.core.system import System, build_system
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, parse_spec

if TYPE_CHECKING:
    import torch

    from nasopt.accuracy.supernet import Supernet, SupernetAccuracy
    from nasopt.core.candidate import Candidate
    from nasopt.deploy import Subnet

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MV_OPS = ("conv3", "k3", "skip", "k3", "conv1", "gap", "classifier")  # a candidate of mv_space.toml

SMALL_SPACE: dict[str, Any] = {
    "name": "small",
    "input": {"channels": 3, "height": 16, "width": 16},
    "num_classes": 10,
    "input_bits": 8,
    "activation_bits": 8,
    "weight_bits": 8,
    "ops": {
        "k3": {"type": "mbconv", "kernel": 3, "expansion": 3},
        "k5": {"type": "mbconv", "kernel": 5, "expansion": 6},
        "tap": {"type": "mbconv", "kernel": 3, "expansion": 0.5, "shortcut": False, "split_tap": "depthwise"},
    },
    "stages": [
        {"name": "stem", "widths": [8], "layers": [{"op": "conv3", "stride": 2}]},
        {"name": "body", "widths": [8, 16], "layers": [{"choices": ["k3", "k5", "skip"], "repeat": 2}]},
        {"name": "down", "widths": [24], "layers": [{"choices": ["k3", "tap"], "stride": 2}]},
        {"name": "head", "widths": [32], "layers": [{"op": "conv1"}, {"op": "gap"}, {"op": "classifier"}]},
    ],
    "bottleneck": {"bits": [8]},
}


def space_spec(**overrides: Any) -> SearchSpaceSpec:
    data = {**SMALL_SPACE, **overrides}
    return parse_spec(SearchSpaceSpec, data, "test-space")


def neck_space_spec() -> SearchSpaceSpec:
    """The small space with a bottleneck choice (none or 4 channels) and 8-bit features."""
    return space_spec(bottleneck={"widths": ["none", 4], "bits": [8]})


def fixture_space(name: str, **tables: dict[str, Any]) -> SearchSpaceSpec:
    """A space of tests/fixtures at 16x16 input; `tables` update its tables (fusion={...})."""
    data = tomllib.loads((FIXTURES / name).read_text())
    data["input"] = {**data["input"], "height": 16, "width": 16}
    for key, table in tables.items():
        data[key] = {**data.get(key, {}), **table}
    return parse_spec(SearchSpaceSpec, data, name)


def trained_estimator(spec: SearchSpaceSpec, cuts: int, checkpoint_dir: Path) -> SupernetAccuracy:
    """A supernet estimator of `spec` trained for one quick epoch on 320 samples."""
    from nasopt.accuracy.supernet import SupernetAccuracy
    from nasopt.space import SearchSpace

    options = {
        "estimator": "supernet",
        "limit": 320,
        "epochs": 1,
        "batch_size": 32,
        "checkpoint_dir": str(checkpoint_dir),
        "val_samples": 64,
    }
    est = SupernetAccuracy(SearchSpace(spec, cuts=cuts), options)
    est.ensure_trained(progress=False)
    return est


def calibrated(net: Supernet, cand: Candidate, x: torch.Tensor) -> Subnet:
    """The candidate with the BatchNorm statistics of one batch (an untrained supernet's)."""
    from nasopt.deploy._subnet import calibrated_subnet

    return calibrated_subnet(net, cand, [x])


def tree_subnet(
    merge: str = "concat", cuts: tuple[int, ...] = (2,), bottleneck_width: int = 4
) -> tuple[Subnet, System]:
    """A four-view candidate of mv_space.toml fused after layer 2 (`merge`: concat, max or
    mean; `cuts` (2,): on the sensors, (-1,): all on the aggregator), on the tree with a hub.
    An untrained residual MBConv's last BatchNorm scale is zero, which silences a View-Pool
    network: those scales start at one here, so the logits compared are not all zero."""
    import torch

    from nasopt.accuracy.supernet import Supernet
    from nasopt.core.candidate import Candidate
    from nasopt.presets import load_objective

    spec = fixture_space("mv_space.toml", fusion={"merge": merge})
    system = build_system(load_objective(str(FIXTURES / "tree_hub_obj.toml")))
    torch.manual_seed(3)
    net = Supernet(spec)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bn.weight") and not p.any():
                p.fill_(1.0)
    cand = Candidate(MV_OPS, (16, 24, 64), cuts=cuts, bottleneck_width=bottleneck_width, bits=8, fuse_after=2)
    return calibrated(net, cand, torch.randn(8, 4, 3, 16, 16)), system


# Three blocks of one layer each, the model-tree tests' network: small enough to enumerate.
THREE_BLOCKS: dict[str, Any] = {
    "name": "three-blocks",
    "input": {"channels": 3, "height": 8, "width": 8},
    "num_classes": 10,
    "input_bits": 8,
    "activation_bits": 32,
    "weight_bits": 32,
    "ops": {
        "c3": {"type": "conv", "kernel": 3},
        "c5": {"type": "conv", "kernel": 5},
        "dw": {"type": "dwsep", "kernel": 3},
    },
    "stages": [
        {"name": "b0", "widths": [8], "layers": [{"choices": ["c5", "c3"]}]},
        {"name": "b1", "widths": [8], "layers": [{"choices": ["c3", "dw"]}]},
        {
            "name": "b2",
            "widths": [8],
            "layers": [{"choices": ["c3", "dw"]}, {"op": "gap"}, {"op": "classifier"}],
        },
    ],
    "split": {"points": "all"},
}


def edge_cloud_system(link: dict[str, Any]) -> System:
    """Wang et al.'s two devices (a slow edge, a fast cloud) joined by the link `up` (`link`:
    its bandwidth or contexts and latency)."""
    spec = parse_spec(
        ObjectiveSpec,
        {
            "name": "edge-cloud",
            "devices": {
                "edge": {"compute": {"kind": "throughput", "macs_per_s": 2e7}},
                "cloud": {"compute": {"kind": "throughput", "macs_per_s": 1e10}},
            },
            "links": {"up": {"src": "edge", "dst": "cloud", **link}},
            "topology": {"kind": "chain", "devices": ["edge", "cloud"]},
        },
        "edge-cloud.toml",
    )
    return build_system(spec)


def chain_system(
    macs_per_s: list[float],
    bandwidth_bps: list[float],
    memory_bytes: list[int | None] | None = None,
    latency_s: float = 0.0,
    run_overhead_s: float = 0.0,
) -> System:
    """A chain d0 -> d1 -> ... with throughput devices and plain links."""
    n = len(macs_per_s)
    caps = memory_bytes or [None] * n
    devices = {}
    for i in range(n):
        compute = {"kind": "throughput", "macs_per_s": macs_per_s[i], "run_overhead_s": run_overhead_s}
        dev: dict[str, Any] = {"compute": compute}
        if caps[i] is not None:
            dev["memory_bytes"] = caps[i]
        devices[f"d{i}"] = dev
    links = {
        f"l{i}": {
            "src": f"d{i}",
            "dst": f"d{i + 1}",
            "bandwidth_bps": bandwidth_bps[i],
            "latency_s": latency_s,
        }
        for i in range(n - 1)
    }
    spec = parse_spec(
        ObjectiveSpec,
        {
            "name": "chain-test",
            "devices": devices,
            "links": links,
            "topology": {"kind": "chain", "devices": [f"d{i}" for i in range(n)]},
        },
        "test-objective",
    )
    return build_system(spec)


@pytest.fixture
def small_spec() -> SearchSpaceSpec:
    return space_spec()
