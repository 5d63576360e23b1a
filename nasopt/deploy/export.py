"""Export a `Subnet` per device: one ONNX and one TorchScript file per computing device of the
candidate's placement, and `manifest.json` (see `nasopt.deploy.manifest`, docs/deploy.md).

The export verifies itself before it writes the manifest: the parts run in execution order
with onnxruntime (the quantisation of every sent feature included, as uint8 levels plus scale)
and with TorchScript must reproduce the whole model's logits within `TOLERANCE` (relative to
the largest logit); otherwise `ExportError` is raised and no manifest is written.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasopt.core.evaluation import evaluate
from nasopt.core.network import build_network
from nasopt.core.system import System
from nasopt.deploy._onnx import ort_session, to_onnx
from nasopt.deploy._parts import Part
from nasopt.deploy._plan import PartPlan, plan_parts
from nasopt.deploy._subnet import Subnet
from nasopt.deploy.manifest import (
    MANIFEST_FORMAT,
    FileInfo,
    LinkInfo,
    Manifest,
    PartInfo,
    TensorInfo,
    Verification,
    input_value,
    read_manifest,
)
from nasopt.errors import SpecError

# max |parts - whole| over the logits, as a fraction of max(1, max |whole logit|). Float links
# agree to ~1e-6; a quantised link can round one level differently where onnxruntime's sums
# differ from PyTorch's in the last bit, which moves the logits by about one quantisation step.
TOLERANCE = 1e-3
_DTYPES = {torch.float32: "float32", torch.uint8: "uint8", torch.int32: "int32"}


class ExportError(SpecError):
    """An export that does not reproduce its model, or exported files that were changed."""


def _suffixes(n: int) -> list[str]:
    return ["q", "lo", "scale"] if n == 3 else ["feature"]


def _tensor_info(name: str, t: torch.Tensor, source: str | None = None) -> TensorInfo:
    return TensorInfo(name=name, dtype=_DTYPES[t.dtype], shape=["batch", *t.shape[1:]], source=source)  # type: ignore[arg-type]


def _file_info(path: Path, root: Path) -> FileInfo:
    data = path.read_bytes()
    return FileInfo(
        path=str(path.relative_to(root)), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
    )


def _wire_bytes(names: list[str], tensors: dict[str, torch.Tensor], bits: int) -> float:
    total = 0.0
    for name in names:
        t = tensors[name][0]
        total += t.numel() * bits / 8.0 if name.endswith(".q") else t.numel() * 4.0
    return total


def export_parts(
    sub: Subnet,
    system: System,
    out_dir: Path,
    sample: torch.Tensor,
    *,
    study: str | None = None,
    trial: int | None = None,
    tolerance: float = TOLERANCE,
) -> Manifest:
    """Write every device's part of `sub` on `system` to `out_dir` and a verified manifest;
    `sample`: a batch of inputs the verification runs (B, C, H, W) or (B, V, C, H, W)."""
    sub.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_parts(sub, system)
    network = build_network(sub.macro, sub.candidate)
    ev = evaluate(network, system)
    tensors: dict[str, torch.Tensor] = {"input": sample}
    payload: dict[str, list[str]] = {}  # device -> names of the tensors it sends
    inputs_of: dict[str, list[str]] = {}
    modules: dict[str, Part] = {}
    with torch.no_grad():
        whole = sub(sample)
        for p in plans:
            if p.role == "idle":
                continue
            names = _input_names(p, payload, system)
            inputs_of[p.device] = names
            if p.role == "relay":
                payload[p.device] = names
                continue
            part = Part(sub, p.start, p.stop, p.branch, p.views)
            args = _args(p, names, tensors)
            outs = part(*args)
            own = ["logits"] if p.stop.kind == "output" else [f"{p.device}.{s}" for s in _suffixes(len(outs))]
            tensors.update(zip(own, outs, strict=True))
            payload[p.device] = own
            modules[p.device] = part
    output_device = next(d for d, names in payload.items() if names == ["logits"])
    infos = _write_files(plans, modules, inputs_of, payload, tensors, out_dir)
    verification = _verify(plans, infos, out_dir, tensors, whole, tolerance)
    if not verification.passed:
        raise ExportError(
            "the exported parts do not reproduce the model: max |error| "
            f"{verification.max_abs_error:.3g} (TorchScript {verification.torchscript_max_abs_error:.3g})"
            f" > tolerance {verification.tolerance:.3g}",
            file=str(out_dir),
        )
    parts = _part_infos(plans, infos, inputs_of, payload, tensors, network, ev, system)
    links = _link_infos(plans, payload, tensors, sub.candidate.bits, ev, system)
    inp = _tensor_info("input", sample)
    manifest = Manifest(
        format=MANIFEST_FORMAT,  # type: ignore[arg-type]
        space=sub.spec.name,
        topology=system.kind,  # type: ignore[arg-type]
        candidate=sub.candidate.to_dict(),
        study=study,
        trial=trial,
        input=inp,
        output=_tensor_info("logits", tensors["logits"], output_device),
        output_device=output_device,
        execution_order=[p.device for p in plans if p.role != "idle"],
        parts=parts,
        links=links,
        predicted_latency_ms=ev.latency_ms,
        verification=verification,
    )
    (out_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def _input_names(p: PartPlan, payload: dict[str, list[str]], system: System) -> list[str]:
    if p.start.kind == "input" and p.role == "compute":
        return ["input"]
    if system.kind == "tree" and p.role == "compute":  # the root: every view's payload, in view order
        return [n for leaf in system.leaves for n in payload[leaf]]
    return [n for s in p.sources for n in payload[s]]


def _args(p: PartPlan, names: list[str], tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    if names == ["input"] and p.view is not None:
        return [tensors["input"][:, p.view]]
    return [tensors[n] for n in names]


def _onnx_inputs(p: PartPlan, names: list[str]) -> list[str]:
    return [f"input.view{p.view}" if n == "input" and p.view is not None else n for n in names]


def _write_files(
    plans: list[PartPlan],
    modules: dict[str, Part],
    inputs_of: dict[str, list[str]],
    payload: dict[str, list[str]],
    tensors: dict[str, torch.Tensor],
    out_dir: Path,
) -> dict[str, tuple[FileInfo, FileInfo]]:
    infos: dict[str, tuple[FileInfo, FileInfo]] = {}
    for p in plans:
        part = modules.get(p.device)
        if part is None:
            continue
        args = tuple(_args(p, inputs_of[p.device], tensors))
        in_names = _onnx_inputs(p, inputs_of[p.device])
        out_names = payload[p.device]
        onnx_path = out_dir / f"{p.device}.onnx"
        program, onnx_program = to_onnx(part, args, in_names, out_names, free_batch=True)
        onnx_program.save(str(onnx_path))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(program.module(), args, check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            ts_path = out_dir / f"{p.device}.pt"
            torch.jit.save(frozen, str(ts_path))
        infos[p.device] = (_file_info(onnx_path, out_dir), _file_info(ts_path, out_dir))
    return infos


def _verify(
    plans: list[PartPlan],
    infos: dict[str, tuple[FileInfo, FileInfo]],
    out_dir: Path,
    tensors: dict[str, torch.Tensor],
    whole: torch.Tensor,
    tolerance: float,
) -> Verification:
    sample = tensors["input"]
    ort_out = run_onnx_parts(out_dir, plans, infos, sample)
    ts_out = run_torchscript_parts(out_dir, plans, infos, sample)
    ref = whole.numpy()
    bound = tolerance * max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(ort_out - ref).max())
    ts_err = float(np.abs(ts_out - ref).max())
    return Verification(
        runtime="onnxruntime",
        samples=int(sample.shape[0]),
        max_abs_error=err,
        tolerance=bound,
        torchscript_max_abs_error=ts_err,
        passed=err <= bound and ts_err <= bound,
    )


def run_onnx_parts(
    out_dir: Path, plans: list[PartPlan], infos: dict[str, tuple[FileInfo, FileInfo]], sample: torch.Tensor
) -> np.ndarray:
    """The logits of the exported ONNX parts run in order with onnxruntime, each part fed the
    tensors its sources sent (relays pass them on unchanged)."""
    values: dict[str, Any] = {"input": sample.numpy()}
    for p in plans:
        if p.device not in infos:
            continue
        sess = ort_session(str(out_dir / infos[p.device][0].path))
        names = [i.name for i in sess.get_inputs()]
        outs = sess.run(None, {n: input_value(n, values) for n in names})
        values.update(zip([o.name for o in sess.get_outputs()], outs, strict=True))
    return np.asarray(values["logits"])


def run_torchscript_parts(
    out_dir: Path, plans: list[PartPlan], infos: dict[str, tuple[FileInfo, FileInfo]], sample: torch.Tensor
) -> np.ndarray:
    values: dict[str, torch.Tensor] = {"input": sample}
    order: dict[str, list[str]] = {}
    for p in plans:
        if p.device not in infos:
            continue
        sess = ort_session(str(out_dir / infos[p.device][0].path))  # the ONNX file names the part's tensors
        in_names = [i.name for i in sess.get_inputs()]
        out_names = [o.name for o in sess.get_outputs()]
        order[p.device] = in_names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is asked for, deprecated or not
            module = torch.jit.load(str(out_dir / infos[p.device][1].path))
        args = [input_value(n, values) for n in in_names]
        with torch.no_grad():
            outs = module(*args)
        values.update(zip(out_names, outs, strict=True))
    return values["logits"].numpy()


def _part_infos(
    plans: list[PartPlan],
    infos: dict[str, tuple[FileInfo, FileInfo]],
    inputs_of: dict[str, list[str]],
    payload: dict[str, list[str]],
    tensors: dict[str, torch.Tensor],
    network: Any,
    ev: Any,
    system: System,
) -> list[PartInfo]:
    source_of: dict[str, str | None] = {"input": None}
    for p in plans:
        if p.role == "compute":
            for n in payload.get(p.device, []):
                source_of[n] = p.device
    out = []
    for p in plans:
        place = system.leaves[0] if p.view is not None else p.device
        layers = [layer.name for layer, d in zip(network.layers, ev.placement, strict=True) if d == place]
        if p.role != "compute":
            layers = []
        names = inputs_of.get(p.device, [])
        in_names = _onnx_inputs(p, names)
        inputs = [
            _tensor_info(
                shown,
                tensors["input"][:, 0] if shown.startswith("input.view") else tensors[n],
                source_of.get(n),
            )
            for n, shown in zip(names, in_names, strict=True)
        ]
        outputs = (
            [_tensor_info(n, tensors[n]) for n in payload.get(p.device, [])] if p.role == "compute" else []
        )
        files = infos.get(p.device)
        out.append(
            PartInfo(
                device=p.device,
                role=p.role,  # type: ignore[arg-type]
                layers=layers,
                inputs=inputs,
                outputs=outputs,
                onnx=files[0] if files else None,
                torchscript=files[1] if files else None,
                predicted_compute_ms=ev.compute_s.get(p.device, 0.0) * 1e3,
                predicted_macs=int(ev.macs.get(p.device, 0)),
            )
        )
    return out


def _link_infos(
    plans: list[PartPlan],
    payload: dict[str, list[str]],
    tensors: dict[str, torch.Tensor],
    bits: int,
    ev: Any,
    system: System,
) -> list[LinkInfo]:
    out = []
    for p in plans:
        if p.role == "idle":
            continue
        for s in p.sources:
            link = system.link(s, p.device)
            names = payload[s]
            quantised = any(n.endswith(".q") for n in names)
            out.append(
                LinkInfo(
                    name=link.name,
                    src=s,
                    dst=p.device,
                    tensors=names,
                    bits=bits if quantised else 32,
                    bytes_per_sample=_wire_bytes(names, tensors, bits),
                    predicted_bytes=float(ev.sent_bytes.get(link.name, 0.0)),
                    predicted_transfer_ms=float(ev.transfer_s.get(link.name, 0.0)) * 1e3,
                    bandwidth_bps=float(link.bandwidth_bps),
                    latency_ms=float(link.latency_s) * 1e3,
                )
            )
    return out


def check_export(out_dir: Path) -> Manifest:
    """The manifest of an export folder, with every file it names present and unchanged
    (SHA-256); refuses anything else with an `ExportError` naming the file."""
    manifest = read_manifest(out_dir / "manifest.json")
    for part in manifest.parts:
        for info in (part.onnx, part.torchscript):
            if info is None:
                continue
            path = out_dir / info.path
            if not path.is_file():
                raise ExportError("exported file missing", file=str(path))
            if hashlib.sha256(path.read_bytes()).hexdigest() != info.sha256:
                raise ExportError(
                    "exported file changed since export (SHA-256 differs from the manifest)", file=str(path)
                )
    return manifest


def run_export(out_dir: Path, sample: torch.Tensor) -> np.ndarray:
    """Logits of an export folder's ONNX parts run in the manifest's order (after `check_export`)."""
    manifest = check_export(out_dir)
    values: dict[str, Any] = {"input": sample.numpy()}
    for part in manifest.parts:
        if part.onnx is None:
            continue
        sess = ort_session(str(out_dir / part.onnx.path))
        outs = sess.run(None, {i.name: input_value(i.name, values) for i in part.inputs})
        values.update(zip([o.name for o in part.outputs], outs, strict=True))
    return np.asarray(values["logits"])


def manifest_json_schema() -> dict[str, Any]:
    return Manifest.model_json_schema()
