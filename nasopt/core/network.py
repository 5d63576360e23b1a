"""A candidate's network: its layers' costs in execution order, and where cuts and fusion fall.

No torch here: a candidate becomes a flat list of `LayerCost`s (see `nasopt.core.ops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, MacroLayer
from nasopt.core.ops import LayerCost, OpSpec, Shape, layer_cost, merge_cost, shape_elems, tap_costs


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
        reduce = layer_cost(
            "split.reduce", "conv_reduce", OpSpec(type="conv_reduce", kernel=k), shape, d, 1, spec.num_classes
        )
        add(reduce)
        if candidate.fuse_after is None:
            recover = layer_cost(
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
        fused = layer_cost(
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
                merged = cache[merge_key] = merge_cost(stage.merge, outs, f"{stage.name}.merge")
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
                pair = cache[tap_key] = _tap_costs_for(macro, layer, op_name, shape, width)
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
            elems = shape_elems(input_shape)
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
