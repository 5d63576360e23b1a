"""An op's ONNX graph as it runs inside a whole model, for `nasopt profile`.

onnxruntime's NCHWc layout pass (CPU, full optimisation) runs convolutions on channel-blocked
tensors and converts at the edges of each blocked region: `ReorderInput` before the first conv,
`ReorderOutput` after the last. An op timed on its own is a region by itself and pays both
conversions; inside a model, layer after layer stay blocked and pay them once. `inner_graph`
optimises an op's graph as a session would, removes the conversions at its two ends (keeping
any inside it, where the op itself leaves the blocked layout), and returns the graph with its
blocked input shape, to be run without further optimisation.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

NCHWC = "com.microsoft.nchwc"


@dataclass(frozen=True)
class InnerGraph:
    """A serialised, already optimised graph and the shape of its one (float32) input."""

    model: bytes
    input_shape: tuple[int, ...]
    stripped: tuple[str, ...]  # "input", "output": the ends whose conversion was removed


def optimized_graph(model: bytes) -> bytes:
    """`model` after onnxruntime's CPU optimisations, as a session would run it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    fd, path = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    try:
        opts.optimized_model_filepath = path
        ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.remove(path)


def inner_graph(model: bytes) -> InnerGraph | None:
    """The op graph `model` (one input, one output) without the NCHWc conversions at its ends;
    None when the optimised graph has none there (no conv, or convs on 1x1 maps run as Gemm)."""
    import onnx
    from onnx import helper

    m = onnx.load_from_string(optimized_graph(model))
    g = m.graph
    if len(g.input) != 1 or len(g.output) != 1:
        return None
    x, y = g.input[0].name, g.output[0].name
    shape = tuple(d.dim_value for d in g.input[0].type.tensor_type.shape.dim)
    users = [n for n in g.node if x in n.input]
    producer = next(n for n in g.node if y in n.output)
    residual = producer if producer.op_type == "Add" and x in producer.input else None
    reorder_in = [n for n in users if n.op_type == "ReorderInput" and n.domain == NCHWC]
    others = [n for n in users if n not in reorder_in]
    new_in, new_out, in_shape = x, y, shape
    stripped: list[str] = []
    if len(reorder_in) == 1 and others in ([], [residual]):
        blocked = _blocked_shape(g, reorder_in[0].output[0], shape)
        if blocked is not None:
            new_in, in_shape = reorder_in[0].output[0], blocked
            g.node.remove(reorder_in[0])
            stripped.append("input")
    reorder_out = [
        n
        for n in g.node
        if n.op_type == "ReorderOutput"
        and n.domain == NCHWC
        and (n is producer if residual is None else n.output[0] in residual.input)
    ]
    # a residual add stays, on blocked tensors, only when its skip input is blocked too
    if len(reorder_out) == 1 and (residual is None or new_in != x):
        ro = reorder_out[0]
        if sum(ro.output[0] in n.input for n in g.node) <= 1:
            g.node.remove(ro)
            stripped.append("output")
            if residual is None:
                new_out = ro.input[0]
            else:
                renamed = {ro.output[0]: ro.input[0], x: new_in}
                residual.input[:] = [renamed.get(i, i) for i in residual.input]
    if not stripped:
        return None
    if residual is not None and stripped == ["input"]:
        return None  # the skip input would be blocked and the branch not: they cannot be added
    del g.input[:]
    del g.output[:]
    g.input.append(helper.make_tensor_value_info(new_in, onnx.TensorProto.FLOAT, list(in_shape)))
    g.output.append(helper.make_tensor_value_info(new_out, onnx.TensorProto.FLOAT, None))
    return InnerGraph(m.SerializeToString(), in_shape, tuple(stripped))


def _blocked_shape(graph: Any, blocked: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The blocked tensor's shape: channels padded to the block, read off the first blocked
    conv's weights (channels per group x groups)."""
    from onnx import helper

    convs = [n for n in graph.node if blocked in n.input and n.op_type == "Conv" and n.domain == NCHWC]
    if not convs or len(shape) != 4:
        return None
    weights = {t.name: t for t in graph.initializer}
    w = weights.get(convs[0].input[1])
    if w is None:
        return None
    group = next((helper.get_attribute_value(a) for a in convs[0].attribute if a.name == "group"), 1)
    return (shape[0], int(w.dims[1]) * int(group), shape[2], shape[3])
