"""The op catalogue: analytic cost (shapes, MACs, params, live activations) of one layer.

MAC conventions reproduce the published figures (MobileNetV2-1.0 at 224: 300.8 M MACs, 3,504,872
params): batch norm and activations cost no MACs but BN has two params per channel; the 1x1
expansion conv of an MBConv exists only when expansion != 1 (unless `always_expand`); the
depthwise conv is counted at its output resolution; squeeze-excitation is two FC layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from nasopt.spec import OP_TYPES, OpSpec

Shape = tuple[int, int, int]  # channels, height, width

BUILTIN_OPS: dict[str, OpSpec] = {
    "skip": OpSpec(type="skip"),
    "gap": OpSpec(type="gap"),
    "classifier": OpSpec(type="classifier"),
    "fc": OpSpec(type="fc"),
    "maxpool": OpSpec(type="maxpool", kernel=2),
    "conv3": OpSpec(type="conv", kernel=3),
    "conv1": OpSpec(type="conv", kernel=1),
}


@dataclass(slots=True, eq=False)
class LayerCost:
    """Analytic cost of one layer; identity-hashed so per-device timings can be cached on it."""

    name: str
    op: str
    op_type: str
    in_shape: Shape
    out_shape: Shape
    macs: int
    params: int
    peak_live_elems: int
    macs_by_kernel: tuple[tuple[str, int], ...]
    primitive_count: int
    # the largest single tensor the layer reads, holds inside or writes (the SplitNets memory model)
    peak_tensor_elems: int
    lookup_key: str | None = None
    # a residual block cut inside (after its depthwise tap): the block input that the residual
    # sum needs, which travels across the cut with this layer's output
    skip_elems: int = 0

    @property
    def out_elems(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    @property
    def in_elems(self) -> int:
        c, h, w = self.in_shape
        return c * h * w


VIEW_FUSION_TYPES = frozenset({"view_fuse", "view_max", "view_mean"})
"""Op types that fuse the views of a multi-view network (the first layer run once)."""


def shape_elems(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


def tap_costs(
    name: str, op_name: str, op: OpSpec, shape: Shape, out_c: int, stride: int, num_classes: int
) -> tuple[LayerCost, LayerCost]:
    """An MBConv cut right after its depthwise conv (NASC's extended blocks): head and tail.

    A residual block cut there sends its input along (`head.skip_elems`): the tail adds it to the
    projection, so the tail's device holds it too."""
    whole = layer_cost(name, op_name, op, shape, out_c, stride, num_classes)
    hidden = _hidden(shape[0], op)
    h, w = _out_hw(shape, stride)
    skip = shape_elems(shape) if is_residual(op, shape[0], out_c, stride) else 0
    project_macs = hidden * out_c // op.groups * h * w
    project_params = hidden * out_c // op.groups + 2 * out_c
    head = LayerCost(
        name=f"{name}.head",
        op=op_name,
        op_type="mbconv_head",
        in_shape=shape,
        out_shape=(hidden, h, w),
        macs=whole.macs - project_macs,
        params=whole.params - project_params,
        peak_live_elems=whole.peak_live_elems,
        macs_by_kernel=_sub_kernel(whole.macs_by_kernel, "conv1", project_macs),
        primitive_count=whole.primitive_count - 1,
        peak_tensor_elems=max(shape_elems(shape), hidden * shape[1] * shape[2], hidden * h * w),
        skip_elems=skip,
    )
    tail = LayerCost(
        name=f"{name}.tail",
        op=op_name,
        op_type="conv",
        in_shape=(hidden, h, w),
        out_shape=(out_c, h, w),
        macs=project_macs,
        params=project_params,
        peak_live_elems=(hidden + out_c) * h * w + skip,
        macs_by_kernel=(("conv1", project_macs),),
        primitive_count=1,
        peak_tensor_elems=max(hidden, out_c) * h * w,
    )
    return head, tail


def is_residual(op: OpSpec, in_c: int, out_c: int, stride: int) -> bool:
    """Whether an MBConv adds its input to its output (same shape in and out, shortcut on)."""
    return op.shortcut and stride == 1 and in_c == out_c and op.expansion >= 1


def _sub_kernel(pairs: tuple[tuple[str, int], ...], key: str, macs: int) -> tuple[tuple[str, int], ...]:
    out = []
    for k, m in pairs:
        if k == key:
            m -= macs
        if m:
            out.append((k, m))
    return tuple(out)


def merge_cost(merge: str, outs: list[Shape], name: str) -> LayerCost:
    h, w = outs[0][1], outs[0][2]
    if any((o[1], o[2]) != (h, w) for o in outs):
        raise ValueError(f"{name}: parallel branches end with different spatial sizes {outs}")
    if merge == "sum":
        if any(o[0] != outs[0][0] for o in outs):
            raise ValueError(f"{name}: 'sum' needs equal branch widths, got {outs}")
        out: Shape = outs[0]
    else:
        out = (sum(o[0] for o in outs), h, w)
    in_elems = sum(shape_elems(o) for o in outs)
    largest = max(shape_elems(out), *(shape_elems(o) for o in outs))
    return LayerCost(
        name,
        merge,
        "merge",
        (in_elems // (h * w), h, w),
        out,
        0,
        0,
        in_elems + shape_elems(out),
        (),
        0,
        peak_tensor_elems=largest,
    )


def _out_hw(shape: Shape, stride: int) -> tuple[int, int]:
    return -(-shape[1] // stride), -(-shape[2] // stride)


def _hidden(in_c: int, op: OpSpec) -> int:
    return max(1, round(in_c * op.expansion))


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(slots=True)
class _Layer:
    """What one op kind's cost function sees, plus `conv`, which records MACs per kernel size."""

    name: str
    op_name: str
    op: OpSpec
    shape: Shape
    out_c: int
    stride: int
    num_classes: int
    kernel: list[tuple[str, int]]

    @property
    def out_hw(self) -> tuple[int, int]:
        return _out_hw(self.shape, self.stride)

    def conv(self, cin: int, cout: int, k: int, groups: int, hh: int, ww: int) -> tuple[int, int]:
        """MACs and params (weights plus two batch-norm params per output channel) of one conv."""
        if cin % groups or cout % groups:
            raise ValueError(f"{self.name}: {cin}->{cout} channels not divisible by groups={groups}")
        macs = k * k * (cin // groups) * cout * hh * ww
        self.kernel.append((f"conv{k}", macs))
        return macs, k * k * (cin // groups) * cout + 2 * cout

    def cost(
        self,
        out: Shape,
        macs: int,
        params: int,
        live: int,
        prims: int,
        key: str | None = None,
        *,
        tensor: int = 0,
    ) -> LayerCost:
        """The layer's cost; `tensor`: its largest inner tensor, if larger than input and output."""
        return LayerCost(
            name=self.name,
            op=self.op_name,
            op_type=self.op.type,
            in_shape=self.shape,
            out_shape=out,
            macs=macs,
            params=params,
            peak_live_elems=live,
            macs_by_kernel=tuple(self.kernel),
            primitive_count=prims,
            peak_tensor_elems=max(shape_elems(self.shape), shape_elems(out), tensor),
            lookup_key=key,
        )


def _conv_cost(x: _Layer) -> LayerCost:
    (c, h, w), op = x.shape, x.op
    oh, ow = x.out_hw
    macs, params = x.conv(c, x.out_c, op.kernel, op.groups, oh, ow)
    out = (x.out_c, oh, ow)
    key = f"ConvNorm_H{h}_W{w}_Cin{c}_Cout{x.out_c}_kernel{op.kernel}_stride{x.stride}_group{op.groups}"
    return x.cost(out, macs, params, shape_elems(x.shape) + shape_elems(out), 1, key)


def _dwconv_cost(x: _Layer) -> LayerCost:
    c = x.shape[0]
    oh, ow = x.out_hw
    macs, params = x.conv(c, c, x.op.kernel, c, oh, ow)
    out = (c, oh, ow)
    return x.cost(out, macs, params, shape_elems(x.shape) + shape_elems(out), 1)


def _dwsep_cost(x: _Layer) -> LayerCost:
    c = x.shape[0]
    oh, ow = x.out_hw
    m1, p1 = x.conv(c, c, x.op.kernel, c, oh, ow)
    m2, p2 = x.conv(c, x.out_c, 1, x.op.groups, oh, ow)
    out = (x.out_c, oh, ow)
    live = max(shape_elems(x.shape) + c * oh * ow, c * oh * ow + shape_elems(out))
    return x.cost(out, m1 + m2, p1 + p2, live, 2, tensor=c * oh * ow)


def _mbconv_cost(x: _Layer) -> LayerCost:
    shape, op, out_c, stride = x.shape, x.op, x.out_c, x.stride
    c, h, w = shape
    oh, ow = x.out_hw
    hidden = _hidden(c, op)
    macs = params = live = prims = 0
    held = shape_elems(shape) if is_residual(op, c, out_c, stride) else 0
    cur = shape
    if op.expansion != 1 or op.always_expand:
        m, p = x.conv(c, hidden, 1, op.groups, h, w)
        macs, params = macs + m, params + p
        live = max(live, shape_elems(cur) + hidden * h * w)
        cur = (hidden, h, w)
        prims += 1
    m, p = x.conv(cur[0], cur[0], op.kernel, cur[0], oh, ow)
    macs, params = macs + m, params + p
    live = max(live, shape_elems(cur) + cur[0] * oh * ow + (held if cur is not shape else 0))
    cur = (cur[0], oh, ow)
    prims += 1
    if op.se_ratio > 0:
        se = max(1, int(c * op.se_ratio))
        se_macs = 2 * cur[0] * se
        x.kernel.append(("fc", se_macs))
        macs += se_macs
        params += cur[0] * se + se + se * cur[0] + cur[0]
        prims += 2
    m, p = x.conv(cur[0], out_c, 1, op.groups, oh, ow)
    macs, params = macs + m, params + p
    out = (out_c, oh, ow)
    live = max(live, shape_elems(cur) + shape_elems(out) + held)
    prims += 1
    e = _fmt_num(op.expansion)
    key = f"ConvBlock_H{h}_W{w}_Cin{c}_Cout{out_c}_exp{e}_kernel{op.kernel}_stride{stride}_group{op.groups}"
    return x.cost(out, macs, params, live, prims, key, tensor=max(shape_elems(cur), hidden * h * w))


def _skip_cost(x: _Layer) -> LayerCost:
    c, h, w = x.shape
    key = f"Skip_H{h}_W{w}_Cin{c}_Cout{x.out_c}_stride{x.stride}"
    if c == x.out_c and x.stride == 1:
        return x.cost(x.shape, 0, 0, shape_elems(x.shape), 0, key)
    oh, ow = x.out_hw
    macs, params = x.conv(c, x.out_c, 1, 1, oh, ow)
    out = (x.out_c, oh, ow)
    return x.cost(out, macs, params, shape_elems(x.shape) + shape_elems(out), 1, key)


def _fire_cost(x: _Layer) -> LayerCost:
    c, out_c = x.shape[0], x.out_c
    oh, ow = x.out_hw
    squeeze = max(1, round(out_c * x.op.squeeze_ratio))
    e1 = out_c // 2
    m1, p1 = x.conv(c, squeeze, 1, 1, oh, ow)
    m2, p2 = x.conv(squeeze, e1, 1, 1, oh, ow)
    m3, p3 = x.conv(squeeze, out_c - e1, 3, 1, oh, ow)
    out = (out_c, oh, ow)
    live = max(shape_elems(x.shape) + squeeze * oh * ow, squeeze * oh * ow + shape_elems(out))
    return x.cost(out, m1 + m2 + m3, p1 + p2 + p3, live, 3, tensor=squeeze * oh * ow)


def _fc_cost(x: _Layer) -> LayerCost:
    n_in = shape_elems(x.shape)
    n_out = x.num_classes if x.op.type == "classifier" else x.out_c
    macs = n_in * n_out
    x.kernel.append(("fc", macs))
    return x.cost((n_out, 1, 1), macs, n_in * n_out + n_out, n_in + n_out, 1, f"FC_Cin{n_in}_Cout{n_out}")


def _svd_fc_cost(x: _Layer) -> LayerCost:
    n_in, n_out = shape_elems(x.shape), x.out_c
    rank = x.op.rank or max(1, min(n_in, n_out) // 8)
    macs = n_in * rank + rank * n_out
    x.kernel.append(("fc", macs))
    return x.cost((n_out, 1, 1), macs, macs + n_out, n_in + n_out, 2)


def _gap_cost(x: _Layer) -> LayerCost:
    c, h, w = x.shape
    key = f"AvgP_H{h}_W{w}_Cin{c}_Cout{c}_kernel{h}_stride1"
    return x.cost((c, 1, 1), 0, 0, shape_elems(x.shape) + c, 1, key)


def _maxpool_cost(x: _Layer) -> LayerCost:
    c, h, w = x.shape
    k = x.op.kernel
    out = (c, max(1, h // k), max(1, w // k))
    return x.cost(out, 0, 0, shape_elems(x.shape) + shape_elems(out), 1)


def _view_fuse_cost(x: _Layer) -> LayerCost:
    """View-Fuse: the V views' features (input: one view's) concatenated to `out_c` channels."""
    out = (x.out_c, x.shape[1], x.shape[2])
    return x.cost(out, 0, 0, 2 * shape_elems(out), 0)


def _view_pool_cost(x: _Layer) -> LayerCost:
    """View-Pool (max or mean over views): input the V views stacked (V*c channels), output one
    view's c = `out_c` channels; no MACs, like the other poolings."""
    c, h, w = x.shape
    if c % x.out_c:
        raise ValueError(f"{x.name}: {c} stacked channels are not a whole number of {x.out_c}-channel views")
    out = (x.out_c, h, w)
    return x.cost(out, 0, 0, shape_elems(x.shape) + shape_elems(out), 0)


OpCost = Callable[[_Layer], LayerCost]

OP_COSTS: dict[str, OpCost] = {
    "conv": _conv_cost,
    "conv_reduce": _conv_cost,
    "conv_recover": _conv_cost,
    "dwconv": _dwconv_cost,
    "dwsep": _dwsep_cost,
    "mbconv": _mbconv_cost,
    "skip": _skip_cost,
    "fire": _fire_cost,
    "fc": _fc_cost,
    "classifier": _fc_cost,
    "svd_fc": _svd_fc_cost,
    "gap": _gap_cost,
    "maxpool": _maxpool_cost,
    "view_fuse": _view_fuse_cost,
    "view_max": _view_pool_cost,
    "view_mean": _view_pool_cost,
}
"""The cost function of every op kind (`OpSpec.type`); one entry per kind of `OP_TYPES`."""


@lru_cache(maxsize=65536)
def layer_cost(
    name: str, op_name: str, op: OpSpec, shape: Shape, out_c: int, stride: int, num_classes: int
) -> LayerCost:
    """Costs of op `op` on input `shape`; cached: every sample of a space reuses these objects."""
    fn = OP_COSTS.get(op.type)
    if fn is None:  # pragma: no cover - guarded by the OpType literal and test_op_registry
        raise ValueError(f"{name}: unknown op type {op.type!r}; allowed: {', '.join(OP_TYPES)}")
    return fn(_Layer(name, op_name, op, shape, out_c, stride, num_classes, []))
