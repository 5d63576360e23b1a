"""A candidate's network: its layers' costs in execution order, and where cuts and fusion fall.

No torch here: a candidate becomes a flat list of `LayerCost`s (see `nasopt.core.ops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, MacroLayer
from nasopt.core.ops import (
    VIEW_FUSION_TYPES,
    LayerCost,
    OpSpec,
    Shape,
    layer_cost,
    merge_cost,
    shape_elems,
    tap_costs,
)
from nasopt.core.walk import CutStep, LayerStep, ParallelStep, walk
from nasopt.spec import OpType


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
    input_bits: int  # bit width of the raw input when it is sent
    branch_spans: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(layer.macs * self._multiplicity(i) for i, layer in enumerate(self.layers))

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def _multiplicity(self, i: int) -> int:
        return self.views if self.fuse_after is not None and i <= self.fuse_after else 1


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
    append = layers.append
    flat_of: dict[int, int] = {}  # macro layer index of a cut -> flat index of its last part
    first_cut = candidate.cuts[0] if candidate.cuts else None
    # the Conv-Reduce sits at the first cut, multi-view at the fusion point (wherever the cut is)
    neck_point = candidate.fuse_after if candidate.fuse_after is not None else first_cut
    tap_cut: dict[int, int] = {}  # macro layer index -> flat index of its head part
    branch_spans: dict[int, tuple[int, int]] = {}
    merged_at: set[int] = set()
    cache = macro.cost_cache

    ops, widths = candidate.ops, candidate.widths

    def cost(layer: MacroLayer, shape: Shape) -> LayerCost:
        i = layer.index
        width = widths[layer.stage]
        key = (i, ops[i], shape, width)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = _layer_for(macro, layer, ops[i], shape, width)
        return hit

    def bottleneck(shape: Shape) -> Shape:
        d = candidate.bottleneck_width
        k = spec.bottleneck.kernel
        reduce = layer_cost(
            "split.reduce", "conv_reduce", OpSpec(type="conv_reduce", kernel=k), shape, d, 1, spec.num_classes
        )
        append(reduce)
        if candidate.fuse_after is not None:
            return reduce.out_shape
        recover = layer_cost(
            "split.recover",
            "conv_recover",
            OpSpec(type="conv_recover", kernel=k),
            reduce.out_shape,
            shape[0],
            1,
            spec.num_classes,
        )
        append(recover)
        return recover.out_shape

    merge = spec.fusion.merge if spec.fusion is not None else "concat"

    def fuse(shape: Shape) -> Shape:
        c, h, w = shape
        if merge == "concat":  # View-Fuse: V*c channels
            fused = layer_cost(
                "view_fuse", "view_fuse", OpSpec(type="view_fuse"), shape, c * views, 1, spec.num_classes
            )
        else:  # View-Pool over the V stacked views: c channels
            kind: OpType = "view_max" if merge == "max" else "view_mean"
            stacked = (c * views, h, w)
            fused = layer_cost("view_pool", kind, OpSpec(type=kind), stacked, c, 1, spec.num_classes)
        append(fused)
        return fused.out_shape

    for step in walk(macro, candidate):
        if step.__class__ is LayerStep:
            layer, cut = step.layer, step.cut
            if cut is None:  # the hot path
                c = cost(layer, shape)
                append(c)
                shape = c.out_shape
                if step.fuse:
                    shape = fuse(shape)
                continue
            if cut.tap:
                head, tail = tap_layers_of(macro, layer, ops[layer.index], shape, widths[layer.stage])
                append(head)
                tap_cut[layer.index] = len(layers) - 1
                if cut.bottleneck:
                    bottleneck(head.out_shape)
                append(tail)
                flat_of[layer.index] = len(layers) - 1
                shape = tail.out_shape
            else:
                c = cost(layer, shape)
                append(c)
                flat_of[layer.index] = len(layers) - 1
                shape = bottleneck(c.out_shape) if cut.bottleneck else c.out_shape
            if step.fuse:
                shape = fuse(shape)
        elif step.__class__ is ParallelStep:
            stage_in = shape
            outs: list[Shape] = []
            for b, branch in enumerate(step.branches, start=1):
                start = len(layers)
                shape = stage_in
                for ls in branch:
                    c = cost(ls.layer, shape)
                    append(c)
                    flat_of[ls.layer.index] = len(layers) - 1
                    shape = c.out_shape
                outs.append(shape)
                branch_spans[b] = (start, len(layers) - 1)
            stage = step.stage
            merge_key = ("merge", stage.name, tuple(outs))
            merged = cache.get(merge_key)
            if merged is None:
                merged = cache[merge_key] = merge_cost(stage.merge, outs, f"{stage.name}.merge")
            append(merged)
            flat_of[stage.layers[-1]] = len(layers) - 1
            merged_at.add(stage.layers[-1])  # a cut here sends the merged feature, no bottleneck
            shape = merged.out_shape
        elif isinstance(step, CutStep) and step.bottleneck:  # the input itself is sent
            shape = bottleneck(shape)

    cut_after: list[int] = []
    sent_elems: list[int] = []
    sent_bits: list[int] = []
    reduced = candidate.bottleneck_width > 0
    last = len(layers) - 1
    for point in candidate.cuts:
        # every cut at the bottleneck's position falls after the Conv-Reduce: devices between
        # equal cuts relay the reduced feature, the Conv-Recover runs on the next busy device
        at_bottleneck = reduced and point == neck_point and point not in merged_at
        skip = 0
        if point == -1:
            flat = 0 if at_bottleneck else -1
        elif point in tap_cut:
            flat = tap_cut[point] + (1 if at_bottleneck else 0)
            skip = layers[tap_cut[point]].skip_elems  # a residual's input travels too (unreduced)
        else:
            flat = flat_of[point] + (1 if at_bottleneck else 0)
        cut_after.append(flat)
        if flat == last:
            elems = 0  # the final result stays where it was computed (Wang et al.; SplitNets)
        elif flat >= 0:
            elems = layers[flat].out_elems + skip
        else:
            elems = shape_elems(input_shape)
        sent_elems.append(elems)
        sent_bits.append(spec.input_bits if flat == -1 else candidate.bits)
    branch_of = [0] * len(layers)
    for b, (lo, hi) in branch_spans.items():
        branch_of[lo : hi + 1] = [b] * (hi - lo + 1)
    fuse_flat = None
    if candidate.fuse_after is not None:
        fuse_flat = next(j for j, layer in enumerate(layers) if layer.op_type in VIEW_FUSION_TYPES) - 1
    return Network(
        layers=layers,
        branch=branch_of,
        cut_after=tuple(cut_after),
        sent_elems=tuple(sent_elems),
        sent_bits=tuple(sent_bits),
        feature_bits=candidate.bits,
        views=views,
        fuse_after=fuse_flat,
        activation_bits=spec.activation_bits,
        weight_bits=spec.weight_bits,
        input_shape=input_shape,
        input_bits=spec.input_bits,
        branch_spans=branch_spans,
    )


def layer_of(macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int) -> LayerCost:
    """The cost of `layer` running `op_name` on an input of `shape` at stage width `width`,
    cached per space (the batched evaluation tabulates the very objects `build_network` uses)."""
    key = (layer.index, op_name, shape, width)
    hit = macro.cost_cache.get(key)
    if hit is None:
        hit = macro.cost_cache[key] = _layer_for(macro, layer, op_name, shape, width)
    return hit


def tap_layers_of(
    macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int
) -> tuple[LayerCost, LayerCost]:
    """Head and tail of an MBConv cut at its depthwise conv (NASC's extension), cached per space."""
    key = ("tap", layer.index, op_name, shape, width)
    pair = macro.cost_cache.get(key)
    if pair is None:
        pair = macro.cost_cache[key] = _tap_costs_for(macro, layer, op_name, shape, width)
    return pair


def _layer_for(macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int) -> LayerCost:
    out_c = layer.width if layer.width is not None else width
    return layer_cost(
        layer.name, op_name, macro.ops[op_name], shape, out_c, layer.stride, macro.spec.num_classes
    )


def _tap_costs_for(
    macro: Macro, layer: MacroLayer, op_name: str, shape: Shape, width: int
) -> tuple[LayerCost, LayerCost]:
    out_c = layer.width if layer.width is not None else width
    return tap_costs(
        layer.name, op_name, macro.ops[op_name], shape, out_c, layer.stride, macro.spec.num_classes
    )
