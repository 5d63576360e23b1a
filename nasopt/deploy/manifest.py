"""The export manifest (`manifest.json`): what each device runs, what it receives and sends,
and what the cost model predicted. Documented in docs/deploy.md; `Manifest.model_json_schema()`
is its JSON Schema and `read_manifest` validates a file against it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nasopt.errors import SpecError

MANIFEST_FORMAT = "nasopt-export/1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorInfo(_Model):
    name: str
    dtype: Literal["float32", "uint8", "int32"]
    shape: list[int | str]  # "batch" for the batch axis
    source: str | None = None  # inputs: the device whose output this is (None: the model input)


class FileInfo(_Model):
    path: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int


class PartInfo(_Model):
    device: str
    role: Literal["compute", "relay", "idle"]
    layers: list[str]  # macro layers (or parts of them) this device runs
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    onnx: FileInfo | None
    torchscript: FileInfo | None
    predicted_compute_ms: float
    predicted_macs: int


class LinkInfo(_Model):
    name: str
    src: str
    dst: str
    tensors: list[str]
    bits: int  # bits per value of the feature on the wire (32: float32)
    bytes_per_sample: float  # payload as sent: the levels packed at `bits`, plus lo and scale
    predicted_bytes: float  # the cost model's bytes on this link
    predicted_transfer_ms: float
    # the system's link as the objective gives it (None in manifests written before they were
    # recorded): what `nasopt run-split --bandwidth-from-objective` paces the link at
    bandwidth_bps: float | None = None
    latency_ms: float | None = None


class Verification(_Model):
    runtime: str
    samples: int
    max_abs_error: float
    tolerance: float
    torchscript_max_abs_error: float
    passed: bool


class Manifest(_Model):
    format: Literal["nasopt-export/1"]
    space: str
    topology: Literal["chain", "mesh", "tree"]
    candidate: dict[str, object]
    study: str | None = None
    trial: int | None = None
    input: TensorInfo
    output: TensorInfo
    output_device: str
    execution_order: list[str]
    parts: list[PartInfo]
    links: list[LinkInfo]
    predicted_latency_ms: float
    verification: Verification


def read_manifest(path: Path) -> Manifest:
    """A manifest file, validated; one clear `SpecError` if it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"cannot read manifest ({type(exc).__name__})", file=str(path)) from None
    try:
        return Manifest.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SpecError(f"bad manifest: {err['msg']}", file=str(path), field=where) from None


def input_value(name: str, values: Mapping[str, Any]) -> Any:
    """The value of a part's input tensor `name` among `values` by name: `input.viewV` is view
    V (axis 1) of the model input `input`, what a multi-view leaf receives."""
    if name.startswith("input.view"):
        return values["input"][:, int(name.removeprefix("input.view"))]
    return values[name]
