"""One device's share of a `Subnet`: the steps of the candidate's walk between two boundaries,
as a module whose inputs and outputs are what crosses the links.

A boundary is the model input, a cut (its ordinal in walk order; a cut with `copies` > 1 gives
that many ordinals, the devices between relay), the fork of a mesh's parallel stage (the root
sends the stage input to every branch device), the join (the branch outputs meet on the first
device after the branches) or the logits. At a cut the sender applies the Conv-Reduce (at the
bottleneck) and quantises to the candidate's bits: what travels is `q` (uint8 for up to 8
bits, int32 above: the integer levels), and per sample `lo` and `scale` (float32), so that the
receiver's `q * scale + lo` is the supernet's fake-quantised feature; features of 16 bits or
more, and the raw input, travel as float32 (the supernet does not quantise the raw input, which
the cost model counts at `input_bits`: a sent raw input is 32 / input_bits times its
estimate). The receiver dequantises and applies the Conv-Recover. The steps are those of
`Supernet.forward` (same walk, same block modules, the same View-Fuse or View-Pool); the
export's verification checks that the parts compose to the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from nasopt.accuracy.supernet._ops import RunContext
from nasopt.core.walk import CutStep, LayerStep, ParallelStep, Step, walk
from nasopt.deploy._subnet import Subnet
from nasopt.errors import SpecError


@dataclass(frozen=True)
class Boundary:
    kind: str  # "input" | "cut" | "fork" | "join" | "output"
    index: int = 0  # the cut ordinal (kind "cut")


@dataclass(frozen=True)
class CutEvent:
    """One cut of the walk: its ordinals, the step and the neck key."""

    first: int
    cut: CutStep
    key: str
    sends: bool  # False: after the last layer without bottleneck, or a reduce-only step (copies 0)
    quantised: bool


def cut_events(sub: Subnet) -> list[CutEvent]:
    last = len(sub.macro.layers) - 1
    bits = sub.candidate.bits
    out: list[CutEvent] = []
    k = 0

    def add(cut: CutStep, key: str) -> None:
        nonlocal k
        # copies 0: no cut, only the Conv-Reduce the aggregator runs before the View-Fuse
        sends = cut.copies > 0 and (cut.bottleneck or cut.point != last)
        out.append(CutEvent(k, cut, key, sends, sends and cut.point >= 0 and bits < 16))
        k += cut.copies

    for step in walk(sub.macro, sub.candidate):
        if isinstance(step, CutStep):
            add(step, "input")
        elif isinstance(step, LayerStep) and step.cut is not None:
            add(step.cut, f"{step.layer.index}_tap" if step.cut.tap else str(step.layer.index))
        elif isinstance(step, ParallelStep) and step.cut is not None:
            add(step.cut, str(step.cut.point))
    return out


def quantise_wire(h: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The integer levels and per-sample offset and step of `quantise(h, bits)`."""
    levels = 2**bits - 1
    flat = h.flatten(1)
    ones = [1] * (h.dim() - 1)
    lo = flat.min(dim=1).values.view(-1, *ones)
    hi = flat.max(dim=1).values.view(-1, *ones)
    scale = (hi - lo).clamp_min(1e-8) / levels
    q = torch.round((h - lo) / scale)
    return q.to(torch.uint8 if bits <= 8 else torch.int32), lo, scale


def dequantise(q: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(torch.float32) * scale + lo


class Part(nn.Module):
    """Steps of `sub` from `start` to `stop` (`branch`: the mesh branch a fork part runs).
    `views` > 1: the part receives that many payloads at `start` (a tree's root)."""

    def __init__(self, sub: Subnet, start: Boundary, stop: Boundary, branch: int = 0, views: int = 1) -> None:
        super().__init__()
        self.sub = sub
        self.start = start
        self.stop = stop
        self.branch = branch
        self.views = views
        self.events = cut_events(sub)

    def _receive(self, event: CutEvent, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if event.quantised:
            parts = [dequantise(*inputs[3 * v : 3 * v + 3]) for v in range(self.views)]
        else:
            parts = list(inputs[: self.views])
        return parts[0] if self.views == 1 else torch.stack(parts, dim=1).flatten(0, 1)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """No exceptions for control flow here: torch.export loses track of the module stack
        when one unwinds through a module call. A stop is recorded, and the walk returns after
        the step that reached it (work after an MBConv's tap is dead code, dropped on export)."""
        sub = self.sub
        macro = sub.macro
        cand = sub.candidate
        ctx = sub.context()
        ops = macro.ops
        blocks = sub.blocks
        start, stop = self.start, self.stop
        events = {id(e.cut): e for e in self.events}
        active = start.kind == "input"
        x = inputs[0]
        if active and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)

        def neck_of(event: CutEvent) -> nn.Module | None:
            return sub.necks[event.key] if event.cut.bottleneck else None

        def at(event: CutEvent, boundary: Boundary) -> bool:
            return boundary.kind == "cut" and event.first <= boundary.index < event.first + event.cut.copies

        stopped: list[tuple[torch.Tensor, ...]] = []

        def reduce(event: CutEvent, h: torch.Tensor) -> torch.Tensor:
            """The Conv-Reduce of a cut with a bottleneck (identity without)."""
            neck = neck_of(event)
            if neck is None:
                return h
            conv = cast(nn.Module, neck.reduce)
            kernel = cast(torch.Tensor, conv.weight).shape[-1]
            return cast(torch.Tensor, conv(h, ctx, cand.bottleneck_width, kernel, act=False))

        def send(event: CutEvent, h: torch.Tensor) -> None:
            """The sender's half of a cut: always this part's stop."""
            if not at(event, stop):
                raise RuntimeError(f"part {start}->{stop} ran into cut {event.first}")
            h = reduce(event, h)
            stopped.append(quantise_wire(h, cand.bits) if event.quantised else (h,))

        def receive(event: CutEvent, c: int) -> torch.Tensor:
            h = self._receive(event, inputs)
            neck = neck_of(event)
            if neck is not None and neck.recover is not None:
                recover = cast(nn.Module, neck.recover)
                h = recover(h, ctx, c, cast(torch.Tensor, recover.weight).shape[-1])
            return h

        views = sub.views
        merge = sub.fusion_merge

        def fuse(h: torch.Tensor) -> torch.Tensor:
            """`Supernet.forward`'s fusion with the batch axis left free (-1) for the traced graph:
            View-Fuse concatenates the views' channels, View-Pool takes their max or mean."""
            if merge == "concat":
                return h.reshape(-1, views * h.shape[1], h.shape[2], h.shape[3])
            per_view = h.reshape(-1, views, h.shape[1], h.shape[2], h.shape[3])
            return per_view.amax(dim=1) if merge == "max" else per_view.mean(dim=1)

        def run_layer(step: LayerStep, h: torch.Tensor) -> torch.Tensor:
            layer = step.layer
            return blocks[layer.name](h, ctx, ops[cand.ops[layer.index]], cand.widths[layer.stage])

        steps: list[Step] = walk(macro, cand)
        for step in steps:
            if isinstance(step, CutStep):
                input_cut = events[id(step)]
                if active and input_cut.sends:
                    send(input_cut, x)
                    return stopped[0]
                if at(input_cut, start):
                    x, active = receive(input_cut, cast(int, macro.spec.input.channels)), True
            elif isinstance(step, LayerStep):
                cut = step.cut
                event: CutEvent | None = events[id(cut)] if cut is not None else None
                if active:
                    if cut is not None and cut.tap:
                        assert event is not None

                        def tap(h: torch.Tensor, event: CutEvent = event) -> torch.Tensor:
                            send(event, h)
                            return h

                        x = self._run_tapped(step, x, ctx, tap)
                    else:
                        x = run_layer(step, x)
                        if event is not None and event.sends:
                            send(event, x)
                        elif event is not None and event.cut.copies == 0:
                            x = reduce(event, x)  # all on the aggregator: reduce, then fuse
                elif event is not None and at(event, start):
                    if cut is not None and cut.tap:
                        x = self._tap_tail(step, receive(event, self._tap_channels(step)), ctx)
                    else:
                        x = receive(event, self._out_channels(step))
                    active = True
                if stopped:
                    return stopped[0]
                if active and step.fuse:
                    x = fuse(x)
            else:
                x, active, done = self._parallel(step, x, active, ctx, inputs)
                if done:
                    return (x,)
                if step.cut is not None:
                    merge_cut = events[id(step.cut)]
                    if active and merge_cut.sends:
                        send(merge_cut, x)
                        return stopped[0]
                    if at(merge_cut, start):
                        x, active = receive(merge_cut, self._merged_channels(step)), True
        if stop.kind != "output":
            raise RuntimeError(f"part {start}->{stop} never reached its stop")
        return (x.flatten(1),)

    # -------------------------------------------------------------- the pieces

    def _parallel(
        self,
        step: ParallelStep,
        x: torch.Tensor,
        active: bool,
        ctx: RunContext,
        inputs: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, bool, bool]:
        """The parallel stage: (feature, active, done); done: this part stops with the feature."""
        sub = self.sub
        cand = sub.candidate
        ops = sub.macro.ops

        def branch(b: int, h: torch.Tensor) -> torch.Tensor:
            for ls in step.branches[b]:
                li = ls.layer
                h = sub.blocks[li.name](h, ctx, ops[cand.ops[li.index]], cand.widths[li.stage])
            return h

        def merge(outs: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(outs, dim=1) if step.stage.merge == "concat" else torch.stack(outs).sum(0)

        if self.start.kind == "fork":  # a branch device
            return branch(self.branch - 1, inputs[0]), True, True
        if active:
            if self.stop.kind == "fork":
                return x, True, True
            return merge([branch(b, x) for b in range(len(step.branches))]), True, False
        if self.start.kind == "join":
            return merge(list(inputs[: len(step.branches)])), True, False
        return x, False, False

    def _run_tapped(self, step: LayerStep, x: torch.Tensor, ctx: RunContext, tap: object) -> torch.Tensor:
        layer = step.layer
        cand = self.sub.candidate
        block = self.sub.blocks[layer.name]
        return cast(
            torch.Tensor,
            block(x, ctx, self.sub.macro.ops[cand.ops[layer.index]], cand.widths[layer.stage], tap=tap),
        )

    def _tap_tail(self, step: LayerStep, h: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        """What an MBConv computes after its depthwise tap: the projection (a residual MBConv
        cannot be cut at its tap: its shortcut would need the sender's input)."""
        layer = step.layer
        cand = self.sub.candidate
        op = self.sub.macro.ops[cand.ops[layer.index]]
        cout = layer.width if layer.width is not None else cand.widths[layer.stage]
        cin = feature_shapes(self.sub)[("in", layer.index)][0]
        if op.shortcut and layer.stride == 1 and cin == cout and op.expansion >= 1:
            raise SpecError(
                f"{layer.name}: a residual MBConv cannot be cut at its depthwise tap for export "
                "(its shortcut needs the sender's input)",
                field="cuts",
                value=cand.cuts,
            )
        mb = cast(nn.Module, self.sub.blocks[layer.name].mbconv)
        project = cast(nn.Module, mb.project)
        return cast(torch.Tensor, project(h, ctx, cout, 1, groups=op.groups, act=False))

    def _tap_channels(self, step: LayerStep) -> int:
        return int(self._shapes()[("tap", step.layer.index)][0])

    def _out_channels(self, step: LayerStep) -> int:
        return int(self._shapes()[("out", step.layer.index)][0])

    def _merged_channels(self, step: ParallelStep) -> int:
        return int(self._shapes()[("out", step.stage.layers[-1])][0])

    def _shapes(self) -> dict[tuple[str, int], tuple[int, ...]]:
        """Per-view feature shapes where the cuts fall, from the cost model's network."""
        return feature_shapes(self.sub)


def feature_shapes(sub: Subnet) -> dict[tuple[str, int], tuple[int, ...]]:
    """("out", macro layer) -> output shape (C, H, W), ("tap", layer) -> its MBConv's hidden
    shape after the depthwise conv, from the analytic network (no bottleneck applied)."""
    from nasopt.core.network import build_network

    net = build_network(sub.macro, sub.candidate)
    out: dict[tuple[str, int], tuple[int, ...]] = {}
    for layer in net.layers:
        name = layer.name
        if not name.startswith("layer"):
            continue
        idx = int(name[5:].split(".")[0])
        if name.endswith(".head"):
            out[("tap", idx)] = tuple(layer.out_shape)
            out[("in", idx)] = tuple(layer.in_shape)
        else:
            out[("out", idx)] = tuple(layer.out_shape)
    for stage in sub.macro.stages:
        if stage.parallel > 1:
            merged = next(layer for layer in net.layers if layer.name == f"{stage.name}.merge")
            out[("out", stage.layers[-1])] = tuple(merged.out_shape)
    return out
