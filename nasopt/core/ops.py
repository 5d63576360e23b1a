"""The op catalogue: analytic cost (shapes, MACs, params, live activations) of one layer.

MAC conventions reproduce the published figures (MobileNetV2-1.0 at 224: 300.8 M MACs, 3,504,872
params): batch norm and activations cost no MACs but BN has two params per channel; the 1x1
expansion conv of an MBConv exists only when expansion != 1 (unless `always_expand`); the
depthwise conv is counted at its output resolution; squeeze-excitation is two FC layers.
"""

from __future__ import annotations

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
    lookup_key: str | None = None

    @property
    def out_elems(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    @property
    def in_elems(self) -> int:
        c, h, w = self.in_shape
        return c * h * w


def shape_elems(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


def tap_costs(
    name: str, op_name: str, op: OpSpec, shape: Shape, out_c: int, stride: int, num_classes: int
) -> tuple[LayerCost, LayerCost]:
    """An MBConv cut right after its depthwise conv (NASC's extended blocks): head and tail."""
    whole = layer_cost(name, op_name, op, shape, out_c, stride, num_classes)
    hidden = _hidden(shape[0], op)
    h, w = _out_hw(shape, stride)
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
    )
    tail = LayerCost(
        name=f"{name}.tail",
        op=op_name,
        op_type="conv",
        in_shape=(hidden, h, w),
        out_shape=(out_c, h, w),
        macs=project_macs,
        params=project_params,
        peak_live_elems=(hidden + out_c) * h * w,
        macs_by_kernel=(("conv1", project_macs),),
        primitive_count=1,
    )
    return head, tail


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
    return LayerCost(
        name, merge, "merge", (in_elems // (h * w), h, w), out, 0, 0, in_elems + shape_elems(out), (), 0
    )


def _out_hw(shape: Shape, stride: int) -> tuple[int, int]:
    return -(-shape[1] // stride), -(-shape[2] // stride)


def _hidden(in_c: int, op: OpSpec) -> int:
    return max(1, round(in_c * op.expansion))


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@lru_cache(maxsize=65536)
def layer_cost(
    name: str, op_name: str, op: OpSpec, shape: Shape, out_c: int, stride: int, num_classes: int
) -> LayerCost:
    """Costs of op `op` on input `shape`; cached: every sample of a space reuses these objects."""
    c, h, w = shape
    oh, ow = _out_hw(shape, stride)
    t = op.type
    kernel: list[tuple[str, int]] = []
    key: str | None = None

    def conv(cin: int, cout: int, k: int, groups: int, hh: int, ww: int) -> tuple[int, int]:
        if cin % groups or cout % groups:
            raise ValueError(f"{name}: {cin}->{cout} channels not divisible by groups={groups}")
        macs = k * k * (cin // groups) * cout * hh * ww
        kernel.append((f"conv{k}", macs))
        return macs, k * k * (cin // groups) * cout + 2 * cout

    if t in ("conv", "conv_reduce", "conv_recover"):
        macs, params = conv(c, out_c, op.kernel, op.groups, oh, ow)
        out: Shape = (out_c, oh, ow)
        live = shape_elems(shape) + shape_elems(out)
        prims = 1
        key = f"ConvNorm_H{h}_W{w}_Cin{c}_Cout{out_c}_kernel{op.kernel}_stride{stride}_group{op.groups}"
    elif t == "dwconv":
        macs, params = conv(c, c, op.kernel, c, oh, ow)
        out = (c, oh, ow)
        live = shape_elems(shape) + shape_elems(out)
        prims = 1
    elif t == "dwsep":
        m1, p1 = conv(c, c, op.kernel, c, oh, ow)
        m2, p2 = conv(c, out_c, 1, op.groups, oh, ow)
        macs, params = m1 + m2, p1 + p2
        out = (out_c, oh, ow)
        live = max(shape_elems(shape) + c * oh * ow, c * oh * ow + shape_elems(out))
        prims = 2
    elif t == "mbconv":
        hidden = _hidden(c, op)
        macs = params = 0
        live = 0
        residual = op.shortcut and stride == 1 and c == out_c and op.expansion >= 1
        held = shape_elems(shape) if residual else 0
        prims = 0
        cur = shape
        if op.expansion != 1 or op.always_expand:
            m, p = conv(c, hidden, 1, op.groups, h, w)
            macs, params = macs + m, params + p
            live = max(live, shape_elems(cur) + hidden * h * w)
            cur = (hidden, h, w)
            prims += 1
        m, p = conv(cur[0], cur[0], op.kernel, cur[0], oh, ow)
        macs, params = macs + m, params + p
        live = max(live, shape_elems(cur) + cur[0] * oh * ow + (held if cur is not shape else 0))
        cur = (cur[0], oh, ow)
        prims += 1
        if op.se_ratio > 0:
            se = max(1, int(c * op.se_ratio))
            se_macs = 2 * cur[0] * se
            kernel.append(("fc", se_macs))
            macs += se_macs
            params += cur[0] * se + se + se * cur[0] + cur[0]
            prims += 2
        m, p = conv(cur[0], out_c, 1, op.groups, oh, ow)
        macs, params = macs + m, params + p
        out = (out_c, oh, ow)
        live = max(live, shape_elems(cur) + shape_elems(out) + held)
        prims += 1
        e = _fmt_num(op.expansion)
        key = (
            f"ConvBlock_H{h}_W{w}_Cin{c}_Cout{out_c}_exp{e}_kernel{op.kernel}_stride{stride}_group{op.groups}"
        )
    elif t == "skip":
        if c == out_c and stride == 1:
            macs = params = 0
            out = shape
            live = shape_elems(shape)
            prims = 0
        else:
            macs, params = conv(c, out_c, 1, 1, oh, ow)
            out = (out_c, oh, ow)
            live = shape_elems(shape) + shape_elems(out)
            prims = 1
        key = f"Skip_H{h}_W{w}_Cin{c}_Cout{out_c}_stride{stride}"
    elif t == "fire":
        squeeze = max(1, round(out_c * op.squeeze_ratio))
        e1 = out_c // 2
        e3 = out_c - e1
        m1, p1 = conv(c, squeeze, 1, 1, oh, ow)
        m2, p2 = conv(squeeze, e1, 1, 1, oh, ow)
        m3, p3 = conv(squeeze, e3, 3, 1, oh, ow)
        macs, params = m1 + m2 + m3, p1 + p2 + p3
        out = (out_c, oh, ow)
        live = max(shape_elems(shape) + squeeze * oh * ow, squeeze * oh * ow + shape_elems(out))
        prims = 3
    elif t in ("fc", "classifier", "svd_fc"):
        n_in = shape_elems(shape)
        n_out = num_classes if t == "classifier" else out_c
        if t == "svd_fc":
            rank = op.rank or max(1, min(n_in, n_out) // 8)
            macs = n_in * rank + rank * n_out
            params = n_in * rank + rank * n_out + n_out
            prims = 2
        else:
            macs = n_in * n_out
            params = n_in * n_out + n_out
            prims = 1
            key = f"FC_Cin{n_in}_Cout{n_out}"
        kernel.append(("fc", macs))
        out = (n_out, 1, 1)
        live = n_in + n_out
    elif t == "gap":
        macs = params = 0
        out = (c, 1, 1)
        live = shape_elems(shape) + c
        prims = 1
        key = f"AvgP_H{h}_W{w}_Cin{c}_Cout{c}_kernel{h}_stride1"
    elif t == "maxpool":
        macs = params = 0
        ph, pw = max(1, h // op.kernel), max(1, w // op.kernel)
        out = (c, ph, pw)
        live = shape_elems(shape) + shape_elems(out)
        prims = 1
    elif t == "view_fuse":
        macs = params = 0
        out = (out_c, h, w)
        live = 2 * shape_elems(out)
        prims = 0
    else:  # pragma: no cover - guarded by the OpType literal
        raise ValueError(f"{name}: unknown op type {t!r}; allowed: {', '.join(OP_TYPES)}")
    return LayerCost(
        name=name,
        op=op_name,
        op_type=t,
        in_shape=shape,
        out_shape=out,
        macs=macs,
        params=params,
        peak_live_elems=live,
        macs_by_kernel=tuple(kernel),
        primitive_count=prims,
        lookup_key=key,
    )
