"""`inner_graph`: an op without the NCHWc conversions at its ends computes what the op computes
once the conversions are put back around it, and runs on the blocked input it announces."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nasopt.deploy._onnx import ort_session
from nasopt.deploy.profile_graph import NCHWC, inner_graph
from nasopt.deploy.profile_keys import keyed_layers
from nasopt.deploy.profile_ops import OpModule, example_input, export_ops
from nasopt.presets import load_space
from tests.conftest import space_spec


def _reorder(op: str, x: np.ndarray, **attrs: int) -> np.ndarray:
    """Run one NCHWc conversion node (onnxruntime's contrib op) on x."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain=NCHWC, **attrs)],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(NCHWC, 1)]
    )
    return ort_session(model.SerializeToString(), optimize=False).run(None, {"x": x})[0]


def _ops() -> list:
    """MBConvs and convs of the small space on maps larger than 1x1, residual and not."""
    items = [it for it in keyed_layers(space_spec()).values() if not OpModule(it).identity]
    wanted = [it for it in items if it.op.type in ("mbconv", "conv") and it.layer.in_shape[1] > 1]
    # FBNet's grouped MBConvs shuffle channels after the last conv: its conversion is not at the end
    fbnet = keyed_layers(load_space("fbnet-nasc")).values()
    grouped = [it for it in fbnet if it.op.groups > 1 and it.layer.in_shape[0] == 184][:2]
    return wanted[:: max(1, len(wanted) // 8)] + grouped


@pytest.mark.parametrize("item", _ops(), ids=lambda it: it.key)
def test_the_inner_graph_between_conversions_is_the_op(item) -> None:
    x = example_input(item)
    (data,) = export_ops([OpModule(item)], [x])
    inner = inner_graph(data)
    whole = ort_session(data)
    x_np = np.ascontiguousarray(x.numpy())
    expected = whole.run(None, {whole.get_inputs()[0].name: x_np})[0]
    if inner is None:  # nothing blocked at its ends: timed as is
        return
    graph = onnx.load_from_string(inner.model).graph
    assert not any(n.op_type == "ReorderInput" and graph.input[0].name in n.input for n in graph.node)
    x_in = _reorder("ReorderInput", x_np) if "input" in inner.stripped else x_np
    assert x_in.shape == inner.input_shape
    sess = ort_session(inner.model, optimize=False)
    y = sess.run(None, {sess.get_inputs()[0].name: x_in})[0]
    if "output" in inner.stripped:
        y = _reorder("ReorderOutput", y, channels=expected.shape[1])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_most_ops_lose_a_conversion_and_ops_on_1x1_maps_keep_their_graph() -> None:
    items = [it for it in keyed_layers(space_spec()).values() if not OpModule(it).identity]
    convs = [it for it in items if it.op.type in ("mbconv", "conv")]
    models = export_ops([OpModule(it) for it in convs], [example_input(it) for it in convs])
    inner = [inner_graph(m) for m in models]
    assert sum(g is not None for g in inner) >= len(inner) // 2
    # on 1x1 maps the elastic ops run as matrix products: no blocked layout to strip
    quick = keyed_layers(load_space("mbconv-quick")).values()
    flat = [it for it in quick if it.op.type == "mbconv" and it.layer.in_shape[1:] == (1, 1)][:3]
    assert len(flat) == 3
    models = export_ops([OpModule(it) for it in flat], [example_input(it) for it in flat])
    assert all(inner_graph(m) is None for m in models)
