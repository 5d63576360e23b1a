"""The op catalogue and a candidate's analytic costs: shapes, MACs, params, activation sizes.

No torch here: a candidate becomes a flat list of `LayerCost`s in execution order. MAC
conventions reproduce the published figures (MobileNetV2-1.0 at 224: 300.8 M MACs, 3,504,872
params): batch norm and activations cost no MACs but BN has two params per channel; the 1x1
expansion conv of an MBConv exists only when expansion != 1 (unless `always_expand`); the
depthwise conv is counted at its output resolution; squeeze-excitation is two FC layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nasopt.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.specs import OP_TYPES, OpSpec, SearchSpaceSpec

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


@dataclass(frozen=True, slots=True)
class MacroLayer:
    index: int
    name: str
    stage: int
    branch: int  # 0: trunk; b >= 1: branch b of a parallel stage
    choices: tuple[str, ...]
    stride: int
    width: int | None


@dataclass(frozen=True, slots=True)
class StageInfo:
    name: str
    widths: tuple[int, ...]
    parallel: int
    merge: str
    layers: tuple[int, ...]  # layer indices of the stage, all branches


@dataclass(frozen=True)
class Macro:
    """A search space compiled for fast cost evaluation."""

    spec: SearchSpaceSpec
    layers: tuple[MacroLayer, ...]
    stages: tuple[StageInfo, ...]
    ops: dict[str, OpSpec]
    parallel_start: int = -2  # first layer index of the parallel stage; -2: none
    # (layer index, op name, input shape, width) -> LayerCost; filled as candidates are built
    cost_cache: dict[tuple, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def views(self) -> int:
        return self.spec.fusion.views if self.spec.fusion else 1

    def parallel_stage(self) -> int | None:
        """Index of the stage with parallel branches, if any."""
        return next((i for i, stage in enumerate(self.stages) if stage.parallel > 1), None)


@dataclass(eq=False)
class Network:
    """A candidate's layers in execution order plus where its cuts and fusion fall."""

    layers: list[LayerCost]
    branch: list[int]
    cut_after: tuple[int, ...]  # flat index of the last layer before each cut (-1: input)
    sent_elems: tuple[int, ...]  # elements crossing each cut (per view when multi-view)
    sent_bits: tuple[int, ...]
    feature_bits: int  # bit width of transmitted features (not the raw input)
    views: int
    fuse_after: int | None  # flat index of the last per-view layer (None: single view)
    activation_bits: int
    weight_bits: int
    input_shape: Shape
    branch_spans: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(layer.macs * self._multiplicity(i) for i, layer in enumerate(self.layers))

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def _multiplicity(self, i: int) -> int:
        return self.views if self.fuse_after is not None and i <= self.fuse_after else 1


# ------------------------------------------------------------------ compile and check


_COMPILED: dict[int, tuple[SearchSpaceSpec, Macro]] = {}


def compile_space(spec: SearchSpaceSpec) -> Macro:
    """The compiled form of `spec`, cached per spec object (specs are frozen)."""
    hit = _COMPILED.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    macro = _compile(spec)
    _COMPILED[id(spec)] = (spec, macro)
    return macro


def _compile(spec: SearchSpaceSpec) -> Macro:
    ops = dict(BUILTIN_OPS)
    ops.update(spec.ops)
    layers: list[MacroLayer] = []
    stages: list[StageInfo] = []
    for s, stage in enumerate(spec.stages):
        start = len(layers)
        for b in range(stage.parallel):
            for layer in stage.layers:
                choices = (layer.op,) if layer.op is not None else tuple(layer.choices or ())
                for r in range(layer.repeat):
                    idx = len(layers)
                    layers.append(
                        MacroLayer(
                            index=idx,
                            name=f"layer{idx:02d}",
                            stage=s,
                            branch=b + 1 if stage.parallel > 1 else 0,
                            choices=choices,
                            stride=layer.stride if r == 0 else 1,
                            width=layer.width,
                        )
                    )
        stages.append(
            StageInfo(
                name=stage.name,
                widths=tuple(stage.widths),
                parallel=stage.parallel,
                merge=stage.merge,
                layers=tuple(range(start, len(layers))),
            )
        )
    p_start = next((st.layers[0] for st in stages if st.parallel > 1), -2)
    return Macro(spec=spec, layers=tuple(layers), stages=tuple(stages), ops=ops, parallel_start=p_start)


def check_space(spec: SearchSpaceSpec) -> Macro:
    """Semantic checks pydantic cannot do; raises SpecError naming the field."""
    known = sorted(set(BUILTIN_OPS) | set(spec.ops))
    for s, stage in enumerate(spec.stages):
        for i, layer in enumerate(stage.layers):
            where = f"stages[{s}].layers[{i}]"
            if (layer.op is None) == (layer.choices is None):
                raise SpecError("give exactly one of 'op' or 'choices'", field=where)
            names = [layer.op] if layer.op is not None else list(layer.choices or [])
            if not names:
                raise SpecError("'choices' must not be empty", field=f"{where}.choices")
            if len(set(names)) != len(names):
                raise SpecError("choices must not repeat", field=f"{where}.choices", value=names)
            for name in names:
                if name not in known:
                    key = "op" if layer.op is not None else "choices"
                    raise SpecError("unknown op", field=f"{where}.{key}", value=name, allowed=known)
    if sum(1 for stage in spec.stages if stage.parallel > 1) > 1:
        raise SpecError("at most one stage may have parallel > 1", field="stages")
    macro = compile_space(spec)
    n = len(macro.layers)
    if spec.split.points != "all":
        valid = set(split_point_domain(macro))
        for i, point in enumerate(spec.split.points):
            if point >= n:
                raise SpecError(
                    f"split point beyond the last layer (the space has {n} layers, 0..{n - 1})",
                    field=f"split.points[{i}]",
                    value=point,
                    allowed=f"-1..{n - 1}",
                )
            if point not in valid:
                raise SpecError(
                    "split point inside a parallel stage",
                    field=f"split.points[{i}]",
                    value=point,
                )
    if spec.fusion is not None:
        if macro.parallel_stage() is not None:
            raise SpecError("multi-view fusion and parallel stages cannot be combined", field="fusion")
        if spec.fusion.points != "all":
            for i, point in enumerate(spec.fusion.points):
                if point >= n - 1:
                    raise SpecError(
                        "fusion point must leave at least one layer after it",
                        field=f"fusion.points[{i}]",
                        value=point,
                        allowed=f"0..{n - 2}",
                    )
    # every choice must produce a valid shape for every width combination's smallest case
    smallest = Candidate(
        ops=tuple(layer.choices[0] for layer in macro.layers),
        widths=tuple(min(stage.widths) for stage in macro.stages),
    )
    try:
        build_network(macro, smallest)
    except ValueError as exc:
        raise SpecError(str(exc), field="stages") from None
    return macro


def split_point_domain(macro: Macro) -> list[int]:
    """Layer indices after which a cut can fall: -1 and every layer outside parallel branches
    except the last layer of each branch but the last one (the merged output is after it)."""
    points = [-1]
    p = macro.parallel_stage()
    inside = set(macro.stages[p].layers[:-1]) if p is not None else set()
    points += [layer.index for layer in macro.layers if layer.index not in inside]
    return points


# ------------------------------------------------------------------ building a network


def build_network(macro: Macro, candidate: Candidate) -> Network:
    """The candidate's layers with costs, and where its cuts, bottleneck and fusion fall."""
    spec = macro.spec
    if len(candidate.ops) != len(macro.layers):
        raise ValueError(f"candidate has {len(candidate.ops)} ops, space has {len(macro.layers)} layers")
    if len(candidate.widths) != len(macro.stages):
        raise ValueError(
            f"candidate has {len(candidate.widths)} widths, space has {len(macro.stages)} stages"
        )
    views = macro.views if candidate.fuse_after is not None else 1
    shape: Shape = (spec.input.channels, spec.input.height, spec.input.width)
    input_shape = shape
    layers: list[LayerCost] = []
    flat_of: dict[int, int] = {}
    cut_set = set(candidate.cuts)
    first_cut = candidate.cuts[0] if candidate.cuts else None
    tap_cut: dict[int, int] = {}  # macro layer index -> flat index of its head part
    branch_spans: dict[int, tuple[int, int]] = {}

    def add(cost: LayerCost, b: int = 0) -> None:
        layers.append(cost)

    def add_bottleneck(after: int, shape: Shape) -> Shape:
        if candidate.bottleneck_width <= 0 or after != first_cut:
            return shape
        d = candidate.bottleneck_width
        k = spec.bottleneck.kernel
        reduce = _layer(
            "split.reduce", "conv_reduce", OpSpec(type="conv_reduce", kernel=k), shape, d, 1, spec.num_classes
        )
        add(reduce)
        if candidate.fuse_after is None:
            recover = _layer(
                "split.recover",
                "conv_recover",
                OpSpec(type="conv_recover", kernel=k),
                reduce.out_shape,
                shape[0],
                1,
                spec.num_classes,
            )
            add(recover)
            return recover.out_shape
        return reduce.out_shape

    def fuse(shape: Shape) -> Shape:
        fused = _layer(
            "view_fuse", "view_fuse", OpSpec(type="view_fuse"), shape, shape[0] * views, 1, spec.num_classes
        )
        add(fused)
        return fused.out_shape

    if first_cut == -1:
        shape = add_bottleneck(-1, shape)
    cache = macro.cost_cache
    fuse_after = candidate.fuse_after
    p_start = macro.parallel_start
    macro_layers = macro.layers
    n_layers = len(macro_layers)
    ops = candidate.ops
    widths = candidate.widths
    append = layers.append
    i = 0
    while i < n_layers:
        layer = macro_layers[i]
        width = widths[layer.stage]
        if i == p_start:
            stage = macro.stages[layer.stage]
            # parallel stage: each branch runs from the same input, then merge
            stage_in = shape
            outs: list[Shape] = []
            for b in range(1, stage.parallel + 1):
                start = len(layers)
                shape = stage_in
                for li in stage.layers:
                    ml = macro.layers[li]
                    if ml.branch != b:
                        continue
                    key = (li, candidate.ops[li], shape, width)
                    cost = cache.get(key)
                    if cost is None:
                        cost = cache[key] = _layer_for(macro, ml, candidate.ops[li], shape, width)
                    add(cost, b)
                    flat_of[li] = len(layers) - 1
                    shape = cost.out_shape
                outs.append(shape)
                branch_spans[b] = (start, len(layers) - 1)
            merge_key = ("merge", stage.name, tuple(outs))
            merged = cache.get(merge_key)
            if merged is None:
                merged = cache[merge_key] = _merge(stage.merge, outs, f"{stage.name}.merge")
            add(merged)
            flat_of[stage.layers[-1]] = len(layers) - 1
            shape = merged.out_shape
            i = stage.layers[-1] + 1
            continue
        op_name = ops[i]
        if i not in cut_set:
            key = (i, op_name, shape, width)
            cost = cache.get(key)
            if cost is None:
                cost = cache[key] = _layer_for(macro, layer, op_name, shape, width)
            append(cost)
            shape = cost.out_shape
            if fuse_after == i:
                shape = fuse(shape)
            i += 1
            continue
        op = macro.ops[op_name]
        if op.split_tap == "depthwise":
            tap_key = ("tap", i, op_name, shape, width)
            pair = cache.get(tap_key)
            if pair is None:
                pair = cache[tap_key] = _split_tap_layers(macro, layer, op_name, shape, width)
            head, tail = pair
            add(head)
            tap_cut[i] = len(layers) - 1
            shape = add_bottleneck(i, head.out_shape)
            add(tail)
            flat_of[i] = len(layers) - 1
            shape = tail.out_shape
        else:
            key = (i, op_name, shape, width)
            cost = cache.get(key)
            if cost is None:
                cost = cache[key] = _layer_for(macro, layer, op_name, shape, width)
            add(cost)
            flat_of[i] = len(layers) - 1
            shape = add_bottleneck(i, cost.out_shape)
        if candidate.fuse_after is not None and i == candidate.fuse_after:
            shape = fuse(shape)
        i += 1

    cut_after: list[int] = []
    sent_elems: list[int] = []
    sent_bits: list[int] = []
    reduced = candidate.bottleneck_width > 0
    last = len(layers) - 1
    for cut in candidate.cuts:
        # every cut at the bottleneck's position falls after the Conv-Reduce: devices between
        # equal cuts relay the reduced feature, the Conv-Recover runs on the next busy device
        at_bottleneck = reduced and cut == first_cut
        if cut == -1:
            flat = 0 if at_bottleneck else -1
        elif cut in tap_cut:
            flat = tap_cut[cut] + (1 if at_bottleneck else 0)
        else:
            flat = flat_of[cut] + (1 if at_bottleneck else 0)
        cut_after.append(flat)
        if flat == last:
            elems = 0  # the final result stays where it was computed (Wang et al.; SplitNets)
        elif flat >= 0:
            elems = layers[flat].out_elems
        else:
            elems = _elems(input_shape)
        sent_elems.append(elems)
        sent_bits.append(spec.input_bits if flat == -1 else candidate.bits)
    branch = [0] * len(layers)
    for b, (lo, hi) in branch_spans.items():
        branch[lo : hi + 1] = [b] * (hi - lo + 1)
    fuse_flat = None
    if candidate.fuse_after is not None:
        fuse_flat = next(j for j, layer in enumerate(layers) if layer.op_type == "view_fuse") - 1
    return Network(
        layers=layers,
        branch=branch,
        cut_after=tuple(cut_after),
        sent_elems=tuple(sent_elems),
        sent_bits=tuple(sent_bits),
        feature_bits=candidate.bits,
        views=views,
        fuse_after=fuse_flat,
        activation_bits=spec.activation_bits,
        weight_bits=spec.weight_bits,
        input_shape=input_shape,
        branch_spans=branch_spans,
    )


def _elems(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


def _layer_for(macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int) -> LayerCost:
    out_c = layer.width if layer.width is not None else width
    return _layer(layer.name, op_name, macro.ops[op_name], shape, out_c, layer.stride, macro.spec.num_classes)


def _split_tap_layers(
    macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int
) -> tuple[LayerCost, LayerCost]:
    """An MBConv cut right after its depthwise conv (NASC's extended blocks): head and tail."""
    op = macro.ops[op_name]
    out_c = layer.width if layer.width is not None else width
    whole = _layer(layer.name, op_name, op, shape, out_c, layer.stride, macro.spec.num_classes)
    hidden = _hidden(shape[0], op)
    h, w = _out_hw(shape, layer.stride)
    project_macs = hidden * out_c // op.groups * h * w
    project_params = hidden * out_c // op.groups + 2 * out_c
    head = LayerCost(
        name=f"{layer.name}.head",
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
        name=f"{layer.name}.tail",
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


def _merge(merge: str, outs: list[Shape], name: str) -> LayerCost:
    h, w = outs[0][1], outs[0][2]
    if any((o[1], o[2]) != (h, w) for o in outs):
        raise ValueError(f"{name}: parallel branches end with different spatial sizes {outs}")
    if merge == "sum":
        if any(o[0] != outs[0][0] for o in outs):
            raise ValueError(f"{name}: 'sum' needs equal branch widths, got {outs}")
        out: Shape = outs[0]
    else:
        out = (sum(o[0] for o in outs), h, w)
    in_elems = sum(_elems(o) for o in outs)
    return LayerCost(
        name, merge, "merge", (in_elems // (h * w), h, w), out, 0, 0, in_elems + _elems(out), (), 0
    )


def _out_hw(shape: Shape, stride: int) -> tuple[int, int]:
    return -(-shape[1] // stride), -(-shape[2] // stride)


def _hidden(in_c: int, op: OpSpec) -> int:
    return max(1, round(in_c * op.expansion))


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@lru_cache(maxsize=65536)
def _layer(
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
        live = _elems(shape) + _elems(out)
        prims = 1
        key = f"ConvNorm_H{h}_W{w}_Cin{c}_Cout{out_c}_kernel{op.kernel}_stride{stride}_group{op.groups}"
    elif t == "dwconv":
        macs, params = conv(c, c, op.kernel, c, oh, ow)
        out = (c, oh, ow)
        live = _elems(shape) + _elems(out)
        prims = 1
    elif t == "dwsep":
        m1, p1 = conv(c, c, op.kernel, c, oh, ow)
        m2, p2 = conv(c, out_c, 1, op.groups, oh, ow)
        macs, params = m1 + m2, p1 + p2
        out = (out_c, oh, ow)
        live = max(_elems(shape) + c * oh * ow, c * oh * ow + _elems(out))
        prims = 2
    elif t == "mbconv":
        hidden = _hidden(c, op)
        macs = params = 0
        live = 0
        residual = op.shortcut and stride == 1 and c == out_c and op.expansion >= 1
        held = _elems(shape) if residual else 0
        prims = 0
        cur = shape
        if op.expansion != 1 or op.always_expand:
            m, p = conv(c, hidden, 1, op.groups, h, w)
            macs, params = macs + m, params + p
            live = max(live, _elems(cur) + hidden * h * w)
            cur = (hidden, h, w)
            prims += 1
        m, p = conv(cur[0], cur[0], op.kernel, cur[0], oh, ow)
        macs, params = macs + m, params + p
        live = max(live, _elems(cur) + cur[0] * oh * ow + (held if cur is not shape else 0))
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
        live = max(live, _elems(cur) + _elems(out) + held)
        prims += 1
        e = _fmt_num(op.expansion)
        key = (
            f"ConvBlock_H{h}_W{w}_Cin{c}_Cout{out_c}_exp{e}_kernel{op.kernel}_stride{stride}_group{op.groups}"
        )
    elif t == "skip":
        if c == out_c and stride == 1:
            macs = params = 0
            out = shape
            live = _elems(shape)
            prims = 0
        else:
            macs, params = conv(c, out_c, 1, 1, oh, ow)
            out = (out_c, oh, ow)
            live = _elems(shape) + _elems(out)
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
        live = max(_elems(shape) + squeeze * oh * ow, squeeze * oh * ow + _elems(out))
        prims = 3
    elif t in ("fc", "classifier", "svd_fc"):
        n_in = _elems(shape)
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
        live = _elems(shape) + c
        prims = 1
        key = f"AvgP_H{h}_W{w}_Cin{c}_Cout{c}_kernel{h}_stride1"
    elif t == "maxpool":
        macs = params = 0
        ph, pw = max(1, h // op.kernel), max(1, w // op.kernel)
        out = (c, ph, pw)
        live = _elems(shape) + _elems(out)
        prims = 1
    elif t == "view_fuse":
        macs = params = 0
        out = (out_c, h, w)
        live = 2 * _elems(out)
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
