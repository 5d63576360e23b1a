"""The supernet of a search space: the widest weights of every layer, run for any Candidate.

Allocation and the forward pass consume the same walk as `nasopt.core.network.build_network`
(`nasopt.core.walk`: same layers, parallel branches and merge, split taps, Conv-Reduce /
Conv-Recover at the first cut, View-Fuse after the fusion layer), so the executed subnet's MACs
equal the analytic `Network.macs` (tested layer by layer for random candidates of every preset).
Multi-view input is (batch, views, C, H, W): one sensor trunk runs on every view, View-Fuse
concatenates the views' channels (View-Pool: their element-wise max or mean), the aggregator
trunk follows. At every cut the sent feature is fake-quantised to the candidate's bits (not the
raw input, already `input_bits`) and suffers packet-loss dropout at `RunContext.loss_rate` once
per link it crosses; nothing is sent after the last layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from nasopt.accuracy.supernet._ops import (
    ElasticConv,
    ElasticFire,
    ElasticLinear,
    ElasticMBConv,
    RunContext,
    hidden_channels,
    packet_loss,
    quantise,
)
from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, MacroLayer, compile_space
from nasopt.core.ops import layer_cost
from nasopt.core.walk import CutStep, LayerStep, ParallelStep, walk
from nasopt.spec import SearchSpaceSpec

if TYPE_CHECKING:
    from nasopt.spec import OpSpec

_CONV_TYPES = ("conv", "dwconv", "dwsep", "skip")


class _LayerBlock(nn.Module):
    """All choices of one macro layer; ops of one type share their weights."""

    def __init__(
        self,
        macro: Macro,
        layer: MacroLayer,
        in_max: int,
        out_max: int,
        hw_in: int,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.num_classes = macro.spec.num_classes
        key = layer.name
        ops = {name: macro.ops[name] for name in layer.choices}
        types = {op.type for op in ops.values()}
        mb = [op for op in ops.values() if op.type == "mbconv"]
        if mb:
            residual = (
                layer.stride == 1
                and in_max == out_max
                and all(op.shortcut and op.expansion >= 1 for op in mb)
            )
            self.mbconv = ElasticMBConv(in_max, out_max, mb, f"{key}.mbconv", residual, kernel_transform)
        k_max = max([op.kernel for op in ops.values() if op.type in _CONV_TYPES] or [1])

        def kernels(*of: str) -> tuple[int, ...]:
            return tuple(op.kernel for op in ops.values() if op.type in of)

        if "conv" in types:
            self.conv = ElasticConv(
                in_max,
                out_max,
                k_max,
                f"{key}.conv",
                kernels=kernels("conv"),
                kernel_transform=kernel_transform,
            )
        if "dwconv" in types or "dwsep" in types:
            self.dw = ElasticConv(
                in_max,
                in_max,
                k_max,
                f"{key}.dw",
                depthwise=True,
                kernels=kernels("dwconv", "dwsep"),
                kernel_transform=kernel_transform,
            )
        if "dwsep" in types:
            self.pw = ElasticConv(in_max, out_max, 1, f"{key}.pw")
        if "skip" in types:
            self.proj = ElasticConv(in_max, out_max, 1, f"{key}.proj")
        fire = [op for op in ops.values() if op.type == "fire"]
        if fire:
            self.fire = ElasticFire(in_max, out_max, fire[0], f"{key}.fire")
        n_in = in_max * hw_in
        if "fc" in types:
            self.fc = ElasticLinear(n_in, out_max)
        if "classifier" in types:
            self.classifier = ElasticLinear(n_in, self.num_classes)
        svd = [op for op in ops.values() if op.type == "svd_fc"]
        if svd:
            rank = max(op.rank or max(1, min(n_in, out_max) // 8) for op in svd)
            self.svd_u = ElasticLinear(n_in, rank, bias=False)
            self.svd_v = ElasticLinear(rank, out_max)

    def forward(
        self,
        x: torch.Tensor,
        ctx: RunContext,
        op: OpSpec,
        width: int,
        tap: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        layer = self.layer
        cout = layer.width if layer.width is not None else width
        s = layer.stride
        t = op.type
        c = x.shape[1]
        if t == "mbconv":
            return self.mbconv(x, ctx, op, cout, s, tap, skip)
        if t == "conv":
            return self.conv(x, ctx, cout, op.kernel, s, op.groups)
        if t == "dwconv":
            return self.dw(x, ctx, c, op.kernel, s)
        if t == "dwsep":
            return self.pw(self.dw(x, ctx, c, op.kernel, s), ctx, cout, 1, 1, op.groups)
        if t == "skip":
            if c == cout and s == 1:
                return x
            return self.proj(x, ctx, cout, 1, s, act=False)
        if t == "fire":
            return self.fire(x, ctx, op, cout, s)
        if t == "gap":
            return x.mean(dim=(2, 3), keepdim=True)
        if t == "maxpool":
            h, w = x.shape[2], x.shape[3]
            return F.adaptive_max_pool2d(x, (max(1, h // op.kernel), max(1, w // op.kernel)))
        flat = x.flatten(1)
        if t == "fc":
            return F.relu(self.fc(flat, ctx, cout))[:, :, None, None]
        if t == "classifier":
            return self.classifier(flat, ctx, self.num_classes)[:, :, None, None]
        if t == "svd_fc":
            n_in = flat.shape[1]
            rank = op.rank or max(1, min(n_in, cout) // 8)
            return self.svd_v(self.svd_u(flat, ctx, rank), ctx, cout)[:, :, None, None]
        raise ValueError(f"{layer.name}: op type {t!r} has no supernet module")


class _Bottleneck(nn.Module):
    """SplitNets' splitting module at one cut position: Conv-Reduce to the widest bottleneck
    (sliced to the searched width) and, single-view, Conv-Recover back to the feature width;
    geometric-mean initialisation (SplitNets Sec. 3.3)."""

    def __init__(self, channels: int, d_max: int, kernel: int, key: str, recover: bool) -> None:
        super().__init__()
        self.reduce = ElasticConv(channels, d_max, kernel, f"{key}.reduce", init="geometric")
        self.recover = (
            ElasticConv(d_max, channels, kernel, f"{key}.recover", init="geometric") if recover else None
        )


class Supernet(nn.Module):
    """Shared weights of every candidate of `spec`; `forward(x, candidate, ctx)` runs one subnet.

    >>> from nasopt.presets import load_space
    >>> from nasopt.space import SearchSpace
    >>> space = SearchSpace(load_space("mbconv-jmsnas-32"))
    >>> net = Supernet(space.spec)
    >>> logits = net(torch.zeros(2, 3, 32, 32), space.largest())
    >>> tuple(logits.shape)
    (2, 10)
    """

    def __init__(self, spec: SearchSpaceSpec, kernel_transform: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.kernel_transform = kernel_transform
        self.macro = macro = compile_space(spec)
        self.views = macro.views
        self.fusion_merge = spec.fusion.merge if spec.fusion is not None else "concat"
        widths = [w for w in spec.bottleneck.widths if w != "none"]
        self.d_max = max(widths) if widths else 0
        self._plan(macro)

    def _plan(self, macro: Macro) -> None:
        """Allocate every layer at its widest input and output along the space's plan (the walk
        with every choice), tracing shapes with the analytic `layer_cost` so both agree; the
        bottleneck modules sit at every possible first cut."""
        spec = macro.spec
        v = self.views
        blocks: dict[str, nn.Module] = {}
        necks: dict[str, nn.Module] = {}
        k = spec.bottleneck.kernel
        recover = spec.fusion is None

        def neck(key: str, channels: int) -> None:
            if self.d_max:
                necks[key] = _Bottleneck(channels, self.d_max, k, f"neck.{key}", recover)

        shape = (spec.input.channels, spec.input.height, spec.input.width)
        for step in walk(macro, None):
            if isinstance(step, CutStep):
                neck("input", shape[0])
                continue
            if isinstance(step, ParallelStep):
                stage = step.stage
                outs = []
                for branch in step.branches:
                    s = shape
                    for ls in branch:
                        s = self._add_block(blocks, macro, ls.layer, s, stage.widths)
                    outs.append(s)
                c = sum(o[0] for o in outs) if stage.merge == "concat" else max(o[0] for o in outs)
                shape = (c, outs[0][1], outs[0][2])
                continue
            layer = step.layer
            in_shape = shape
            shape = self._add_block(blocks, macro, layer, shape, macro.stages[layer.stage].widths)
            if step.cut is not None:
                neck(str(layer.index), shape[0])
                if step.cut.tap:
                    taps = [macro.ops[o] for o in layer.choices if macro.ops[o].split_tap == "depthwise"]
                    neck(f"{layer.index}_tap", max(hidden_channels(in_shape[0], op) for op in taps))
            if step.fuse:
                c = max(shape[0], self.d_max)
                shape = (v * c if self.fusion_merge == "concat" else c, shape[1], shape[2])
        self.blocks = nn.ModuleDict(blocks)
        self.necks = nn.ModuleDict(necks)

    def _add_block(
        self, blocks: dict[str, nn.Module], macro: Macro, layer: MacroLayer, shape: tuple, widths: tuple
    ) -> tuple[int, int, int]:
        out_max = layer.width if layer.width is not None else max(widths)
        outs = [
            layer_cost(
                layer.name, o, macro.ops[o], shape, out_max, layer.stride, macro.spec.num_classes
            ).out_shape
            for o in layer.choices
        ]
        blocks[layer.name] = _LayerBlock(
            macro, layer, shape[0], out_max, shape[1] * shape[2], self.kernel_transform
        )
        return (max(o[0] for o in outs), max(o[1] for o in outs), max(o[2] for o in outs))

    # ------------------------------------------------------------------ running a subnet

    def forward(self, x: torch.Tensor, candidate: Candidate, ctx: RunContext | None = None) -> torch.Tensor:
        """Logits (batch, num_classes) of `candidate`; x is (B, C, H, W), or (B, V, C, H, W)
        for a multi-view space."""
        ctx = ctx if ctx is not None else RunContext()
        macro = self.macro
        batch = x.shape[0]
        fuse_after = candidate.fuse_after
        if x.dim() == 5:
            if fuse_after is None:
                raise ValueError("multi-view input needs a candidate with a fusion point")
            x = x.flatten(0, 1)
        last = len(macro.layers) - 1

        def send(cut: CutStep, key: str, h: torch.Tensor) -> torch.Tensor:
            neck = cast(_Bottleneck, self.necks[key]) if cut.bottleneck else None
            d = candidate.bottleneck_width
            c = h.shape[1]
            if neck is not None:
                h = neck.reduce(h, ctx, d, neck.reduce.weight.shape[-1], act=False)
                if cut.copies == 0:  # no cut here: the aggregator runs the Conv-Reduce itself
                    return h
            elif cut.point == last:
                return h  # the final result stays where it was computed: nothing is sent
            if cut.point >= 0:
                h = quantise(h, candidate.bits)
            for _ in range(cut.copies):
                h = packet_loss(h, ctx.loss_rate, ctx.generator, ctx.shard)
            if ctx.keep_sent:
                ctx.sent.append(h)
            if neck is not None and neck.recover is not None:
                h = neck.recover(h, ctx, c, neck.recover.weight.shape[-1])
            return h

        def carry(cut: CutStep, h: torch.Tensor) -> torch.Tensor:
            """A residual's skip tensor crossing a cut inside its block: quantised and lossy like
            the feature, never reduced."""
            h = quantise(h, candidate.bits)
            for _ in range(cut.copies):
                h = packet_loss(h, ctx.loss_rate, ctx.generator, ctx.shard)
            if ctx.keep_sent:
                ctx.sent.append(h)
            return h

        merge = self.fusion_merge

        def fuse(h: torch.Tensor) -> torch.Tensor:
            if merge == "concat":  # View-Fuse: concat the views' channels
                return h.reshape(batch, -1, h.shape[2], h.shape[3])
            views = h.reshape(batch, -1, *h.shape[1:])  # View-Pool over the views
            return views.amax(dim=1) if merge == "max" else views.mean(dim=1)

        if x.dim() == 4:  # oneDNN's convolutions, depthwise above all, are faster channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        ops = macro.ops
        blocks = self.blocks
        for step in walk(macro, candidate):
            if isinstance(step, LayerStep):
                layer = step.layer
                i = layer.index
                op = ops[candidate.ops[i]]
                width = candidate.widths[layer.stage]
                block = blocks[layer.name]
                cut = step.cut
                if cut is not None and cut.tap:
                    x = block(
                        x,
                        ctx,
                        op,
                        width,
                        tap=lambda h, cut=cut, i=i: send(cut, f"{i}_tap", h),
                        skip=lambda h, cut=cut: carry(cut, h),
                    )
                else:
                    x_in, x = x, block(x, ctx, op, width)
                    if ctx.blocks is not None:
                        ctx.blocks.append((layer, x_in, x))
                    if cut is not None:
                        x = send(cut, str(i), x)
                if step.fuse:
                    x = fuse(x)
            elif isinstance(step, ParallelStep):
                stage_in = x
                outs = []
                for branch in step.branches:
                    x = stage_in
                    for ls in branch:
                        li = ls.layer
                        x = blocks[li.name](x, ctx, ops[candidate.ops[li.index]], candidate.widths[li.stage])
                    outs.append(x)
                x = torch.cat(outs, dim=1) if step.stage.merge == "concat" else torch.stack(outs).sum(0)
                if step.cut is not None:  # after the merge; no bottleneck here
                    x = send(step.cut, str(step.cut.point), x)
            else:  # the input itself is sent
                x = send(step, "input", x)
        return x.flatten(1)

    def subnet_macs(self, candidate: Candidate, x: torch.Tensor | None = None) -> int:
        """Per-sample MACs of the executed subnet, counted from the tensors it used."""
        spec = self.spec
        if x is None:
            shape: tuple[int, ...] = (1, spec.input.channels, spec.input.height, spec.input.width)
            if candidate.fuse_after is not None:
                shape = (1, self.views, *shape[1:])
            x = torch.zeros(shape)
        ctx = RunContext()
        with torch.no_grad():
            self(x, candidate, ctx)
        return ctx.macs // x.shape[0]

    def subnet_parameters(self, candidate: Candidate) -> dict[str, torch.Tensor]:
        """The slices of the supernet's parameters that `candidate` uses, recorded during a
        forward pass: each is a view sharing storage with its supernet parameter, except a
        kernel with a learned transform (`kernel_transform`), which is the transformed kernel."""
        spec = self.spec
        shape: tuple[int, ...] = (1, spec.input.channels, spec.input.height, spec.input.width)
        if candidate.fuse_after is not None:
            shape = (1, self.views, *shape[1:])
        ctx = RunContext(used={})
        with torch.no_grad():
            self(torch.zeros(shape), candidate, ctx)
        names = {id(p): n for n, p in self.named_parameters()}
        assert ctx.used is not None
        return {names[id(base)]: view for base, view in ctx.used.values()}
