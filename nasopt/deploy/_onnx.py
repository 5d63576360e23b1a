"""ONNX in one place: how a module becomes an ONNX graph (torch.export, then torch.onnx's dynamo
exporter at `OPSET`) and how an onnxruntime session is opened, for the export's parts, the
split runner's servers and the profiler's timed ops alike, so all of them run the same graphs.
Torch is imported only to export: a `serve-part` process opens sessions without it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

OPSET = 18


def to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    in_names: list[str],
    out_names: list[str],
    *,
    free_batch: bool = False,
) -> tuple[torch.export.ExportedProgram, Any]:
    """The exported program of `module` on `args` and its ONNX program (`free_batch`: the first
    axis of every input may take any size). torch.export keeps shapes as ints, which the elastic
    ops compute with; torch.jit.trace would turn them into tensors."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        shapes = None
        if free_batch:
            batch = torch.export.Dim("batch", min=1)
            shapes = (tuple({0: batch} for _ in args),)  # forward(*inputs): one entry, the tuple
        program = torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
        onnx_program = torch.onnx.export(
            program,
            args,
            input_names=in_names,
            output_names=out_names,
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    assert onnx_program is not None
    return program, onnx_program


def ort_session(model: bytes | str, threads: int = 1, *, optimize: bool = True) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads, sequential execution
    (`optimize=False`: for a graph onnxruntime has already optimised)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
