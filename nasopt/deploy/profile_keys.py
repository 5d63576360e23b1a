"""Every op configuration of a search space that the lookup-table compute model asks for: the
layers with a `lookup_key` (ConvNorm_, ConvBlock_, Skip_, AvgP_, FC_) over every reachable input
shape, op and stage width, plus the Conv-Reduce / Conv-Recover of the bottleneck at every cut
point.

Reachable shapes are propagated layer by layer with the stage width each candidate picks once
per stage (so a layer never sees a width combination no candidate has); parallel stages run
every branch at the same stage width and merge. The costs are the cost model's own `LayerCost`
objects (`layer_of`, `tap_layers_of`, `layer_cost`), so the keys are exactly those
`ComputeModel` looks up.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from nasopt.core.macro import Macro, MacroLayer, compile_space, cut_domain, fuse_domain
from nasopt.core.network import layer_of, tap_layers_of
from nasopt.core.ops import LayerCost, OpSpec, Shape, layer_cost, merge_cost
from nasopt.errors import SpecError
from nasopt.spec import SearchSpaceSpec


@dataclass(frozen=True)
class KeyedLayer:
    """One op configuration to time: its lookup key, the cost model's layer and the op it runs."""

    key: str
    layer: LayerCost
    op: OpSpec
    stride: int


# a state between layers: (shape, stage of the last layer, that stage's chosen width, fused)
_State = tuple[Shape, int, int, bool]


class _Collector:
    def __init__(self, macro: Macro) -> None:
        self.macro = macro
        spec = macro.spec
        self.out: dict[str, KeyedLayer] = {}
        self.necks = sorted({int(w) for w in spec.bottleneck.widths if w != "none"})
        self.kernel = spec.bottleneck.kernel
        self.multi = spec.fusion is not None
        self.cut_points = set() if self.multi else set(cut_domain(macro))
        self.fuse_points = set(fuse_domain(macro))
        self.merge = spec.fusion.merge if spec.fusion is not None else "concat"
        self.views = macro.views

    def add(self, cost: LayerCost, op: OpSpec, stride: int) -> None:
        key = cost.lookup_key
        if key is not None and key not in self.out:
            self.out[key] = KeyedLayer(key, cost, op, stride)

    def neck(self, shape: Shape) -> list[Shape]:
        """The Conv-Reduce (and, single-view, the Conv-Recover) at a cut on `shape`; the shapes
        after it (the unchanged shape for width 0)."""
        spec = self.macro.spec
        after = [shape]
        for d in self.necks:
            op = OpSpec(type="conv_reduce", kernel=self.kernel)
            reduce = layer_cost("split.reduce", "conv_reduce", op, shape, d, 1, spec.num_classes)
            self.add(reduce, op, 1)
            if self.multi:
                after.append(reduce.out_shape)
                continue
            rop = OpSpec(type="conv_recover", kernel=self.kernel)
            recover = layer_cost(
                "split.recover", "conv_recover", rop, reduce.out_shape, shape[0], 1, spec.num_classes
            )
            self.add(recover, rop, 1)
        return after

    def run_layer(self, layer: MacroLayer, states: set[_State]) -> set[_State]:
        macro = self.macro
        stage = macro.stages[layer.stage]
        nxt: set[_State] = set()
        for shape, st, w, fused in states:
            widths = (w,) if st == layer.stage else stage.widths
            for width in widths:
                for op_name in layer.choices:
                    op = macro.ops[op_name]
                    try:
                        cost = layer_of(macro, layer, op_name, shape, width)
                    except (SpecError, ValueError):  # a combination the cost model refuses
                        continue
                    self.add(cost, op, layer.stride)
                    out = cost.out_shape
                    if layer.index in self.cut_points:
                        self.neck(out)
                        if op.split_tap == "depthwise":
                            head, _ = tap_layers_of(macro, layer, op_name, shape, width)
                            self.neck(head.out_shape)
                    nxt.add((out, layer.stage, width, fused))
                    if self.multi and not fused and layer.index in self.fuse_points:
                        for s in self.neck(out):
                            c, h, ww = s
                            fused_shape = (c * self.views if self.merge == "concat" else c, h, ww)
                            nxt.add((fused_shape, layer.stage, width, True))
        return nxt

    def run_parallel(self, stage_index: int, states: set[_State]) -> set[_State]:
        macro = self.macro
        stage = macro.stages[stage_index]
        by_branch: dict[int, list[MacroLayer]] = {}
        for li in stage.layers:
            by_branch.setdefault(macro.layers[li].branch, []).append(macro.layers[li])
        nxt: set[_State] = set()
        for shape, _, _, fused in states:
            for width in stage.widths:
                outs: list[set[Shape]] = []
                for b in sorted(by_branch):
                    cur: set[_State] = {(shape, stage_index, width, fused)}
                    for layer in by_branch[b]:
                        cur = self.run_layer(layer, cur)
                    outs.append({s for s, *_ in cur})
                for combo in itertools.product(*(sorted(o) for o in outs)):
                    try:
                        merged = merge_cost(stage.merge, list(combo), f"{stage.name}.merge")
                    except ValueError:
                        continue
                    nxt.add((merged.out_shape, stage_index, width, fused))
        return nxt


def keyed_layers(spec: SearchSpaceSpec) -> dict[str, KeyedLayer]:
    """Every lookup key a candidate of `spec` can ask for, with the layer it stands for."""
    macro = compile_space(spec)
    col = _Collector(macro)
    shape: Shape = (spec.input.channels, spec.input.height, spec.input.width)
    states: set[_State] = {(shape, -1, 0, False)}
    if -1 in col.cut_points:
        col.neck(shape)
    par = macro.parallel_stage()
    done_parallel = False
    for layer in macro.layers:
        if par is not None and layer.stage == par:
            if not done_parallel:
                states = col.run_parallel(par, states)
                done_parallel = True
            continue
        states = col.run_layer(layer, states)
    return dict(sorted(col.out.items()))
