"""Shared fixtures: small inline search spaces and systems built from dicts."""

from __future__ import annotations

from typing import Any

import pytest

from nasopt.core.system import System, build_system
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, parse_spec

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


def chain_system(
    macs_per_s: list[float],
    bandwidth_bps: list[float],
    memory_bytes: list[int | None] | None = None,
    latency_s: float = 0.0,
) -> System:
    """A chain d0 -> d1 -> ... with throughput devices and plain links."""
    n = len(macs_per_s)
    caps = memory_bytes or [None] * n
    devices = {}
    for i in range(n):
        dev: dict[str, Any] = {"compute": {"kind": "throughput", "macs_per_s": macs_per_s[i]}}
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
