"""Compute models: how a device turns a layer's analytic cost into seconds.

`throughput` (MAC/s), `linear` (Wang et al.: one seconds-per-MAC coefficient per conv kernel size
and one for FC, plus a fixed per-layer overhead) and `lookup` (measured per-layer latencies, e.g.
HW-NAS-Bench, with a declared fallback).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from nasopt.core.ops import LayerCost
from nasopt.errors import SpecError
from nasopt.spec import ComputeSpec

_TIME_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
HWNASBENCH_FILE = Path(__file__).parent / "tables" / "hwnasbench_fbnet.json"


class ComputeModel:
    """Seconds a device needs for one layer; results are cached per layer object."""

    def __init__(self, spec: ComputeSpec, field_path: str) -> None:
        self.spec = spec
        self.field_path = field_path
        self.layer_times_s: dict[LayerCost, float] = {}  # seconds per layer object, filled on use
        self._table: dict[str, float] | None = None
        if spec.kind == "throughput" and spec.macs_per_s is None:
            raise SpecError("throughput compute needs macs_per_s", field=f"{field_path}.macs_per_s")
        if spec.kind == "linear" and not (
            spec.conv_s_per_mac or spec.fc_s_per_mac is not None or spec.default_s_per_mac is not None
        ):
            raise SpecError(
                "linear compute needs coefficients",
                field=field_path,
                allowed="conv_s_per_mac, fc_s_per_mac, default_s_per_mac",
            )
        if spec.kind == "lookup":
            if spec.table is None:
                raise SpecError("lookup compute needs a table", field=f"{field_path}.table")
            if spec.fallback == "throughput" and spec.macs_per_s is None:
                raise SpecError("fallback 'throughput' needs macs_per_s", field=f"{field_path}.macs_per_s")
            self._table = load_table(spec.table, field=f"{field_path}.table")
        for k in spec.conv_s_per_mac:
            if not k.isdigit():
                raise SpecError(
                    "conv_s_per_mac keys are kernel sizes",
                    field=f"{field_path}.conv_s_per_mac",
                    value=k,
                    allowed="1, 3, 5, 7, ...",
                )

    def layer_time_s(self, layer: LayerCost) -> float:
        t = self.layer_times_s.get(layer)
        if t is None:
            t = self._time(layer)
            self.layer_times_s[layer] = t
        return t

    def _time(self, layer: LayerCost) -> float:
        spec = self.spec
        if spec.kind == "throughput":
            return layer.macs / spec.macs_per_s  # type: ignore[operator]
        if spec.kind == "linear":
            return self._linear(layer)
        assert self._table is not None
        key = layer.lookup_key
        if key is not None and key in self._table:
            return self._table[key] * _TIME_UNITS_S[spec.table_unit]
        if layer.macs == 0 and layer.primitive_count == 0:
            return 0.0
        if spec.fallback == "throughput":
            return layer.macs / spec.macs_per_s  # type: ignore[operator]
        raise SpecError(
            f"no measured latency for layer {layer.name} ({layer.op}) and fallback is 'error'",
            field=f"{self.field_path}.table",
            value=key,
            allowed="set fallback = 'throughput' with macs_per_s, or extend the table",
        )

    def _linear(self, layer: LayerCost) -> float:
        spec = self.spec
        total = spec.overhead_s if layer.primitive_count else 0.0
        for kind, macs in layer.macs_by_kernel:
            if kind == "fc":
                coef = spec.fc_s_per_mac if spec.fc_s_per_mac is not None else spec.default_s_per_mac
            else:
                coef = spec.conv_s_per_mac.get(kind[4:], spec.default_s_per_mac)
            if coef is None:
                raise SpecError(
                    f"no coefficient for {kind} (layer {layer.name})",
                    field=f"{self.field_path}.conv_s_per_mac",
                    allowed="add the kernel size or set default_s_per_mac",
                )
            total += coef * macs
        return total


@lru_cache(maxsize=16)
def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_table(ref: str, *, field: str) -> dict[str, float]:
    """A measured latency table: 'hwnasbench:<device>_<metric>' (bundled) or a JSON file path."""
    if ref.startswith("hwnasbench:"):
        name = ref.split(":", 1)[1]
        data = _read_json(str(HWNASBENCH_FILE))
        tables = sorted(k for k, v in data.items() if isinstance(v, dict))
        if name not in data or not isinstance(data[name], dict):
            raise SpecError("unknown HW-NAS-Bench table", field=field, value=ref, allowed=tables)
        return data[name]
    path = Path(ref)
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long for the file system
        raise SpecError(f"cannot read lookup table: {exc.strerror}", field=field, value=ref) from None
    if not found:
        raise SpecError("lookup table file not found", field=field, value=ref)
    try:
        data = _read_json(str(path))
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"cannot read lookup table: not UTF-8 JSON text (byte {exc.start})", field=field, value=ref
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"cannot read lookup table: {exc}", field=field, value=ref) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in data.values()
    ):
        raise SpecError(
            "lookup table must map layer keys to numbers",
            field=field,
            value=ref,
            allowed="finite non-negative times",
        )
    return data
