"""Elastic ops: one set of the widest weights per layer, run at any sub-configuration.

Every op takes the candidate's choice explicitly (no active-subnet state on the modules, unlike
once-for-all's `DynamicConv2d`): channels are the first N of the widest weight, smaller kernels
the centre crop of the largest (OFA's elastic kernel without its learned transform), groups a
slice of the ungrouped weight. Op semantics and MAC conventions follow `nasopt.network` exactly:
batch norm after every conv (free), the MBConv expansion conv only when expansion != 1 or
`always_expand`, the depthwise conv strided, squeeze-excitation as two FC layers, a 1x1
projection for a `skip` that changes shape. MACs are counted from the tensors actually used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasopt.accuracy.supernet._dist import sync_sums, world_size
from nasopt.core.ops import is_residual
from nasopt.spec import OpSpec

_EPS = 1e-5


@dataclass
class RunContext:
    """Per-forward settings, passed explicitly through every op.

    `bn_collect`: gather per-BN batch statistics (BatchNorm recalibration); `bn_fixed`: normalise
    with these statistics (evaluation); neither: batch statistics (training). `macs` accumulates
    multiply-accumulates over all rows of the batch; divide by the batch size for per-sample MACs.
    `sync_bn`: training batch statistics are summed over the ranks of a distributed run;
    `shard`: (this rank, ranks) when the batch is this rank's rows of a global batch, so random
    packet loss draws the global batch's mask and keeps these rows (same result as one process).
    `blocks`: collect every layer's input and output (block-wise distillation).
    """

    loss_rate: float = 0.0
    generator: torch.Generator | None = None
    bn_collect: dict[str, list[torch.Tensor]] | None = None
    bn_fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    macs: int = 0
    sent: list[torch.Tensor] = field(default_factory=list)  # features after quantisation and loss
    keep_sent: bool = False
    used: dict[int, tuple[nn.Parameter, torch.Tensor]] | None = None  # param id -> (param, slice)
    sync_bn: bool = False
    shard: tuple[int, int] | None = None
    blocks: list[tuple[Any, torch.Tensor, torch.Tensor]] | None = None  # (MacroLayer, input, output)

    def use(self, param: nn.Parameter, view: torch.Tensor) -> torch.Tensor:
        if self.used is not None:
            self.used[id(param)] = (param, view)
        return view


class ElasticBN(nn.Module):
    """BatchNorm over the first C channels of the widest affine parameters; no running buffers:
    statistics come from the batch (training) or from recalibration (`RunContext.bn_fixed`)."""

    def __init__(self, channels: int, key: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.key = key

    def forward(self, x: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        c = x.shape[1]
        w, b = ctx.use(self.weight, self.weight[:c]), ctx.use(self.bias, self.bias[:c])
        if ctx.bn_fixed is not None:
            mean, var = ctx.bn_fixed[self.key]
            return F.batch_norm(x, mean, var, w, b, False, 0.0, _EPS)
        if ctx.bn_collect is not None:
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3))
                sq = (x * x).mean(dim=(0, 2, 3))
            ctx.bn_collect.setdefault(self.key, []).append(torch.stack([mean, sq]))
        if ctx.sync_bn:
            return _synced_batch_norm(x, w, b)
        if x.numel() == c:  # one value per channel (a single 1x1 sample): nothing to normalise over
            return F.batch_norm(x, torch.zeros_like(w), torch.ones_like(w), w, b, False, 0.0, _EPS)
        return F.batch_norm(x, None, None, w, b, True, 0.0, _EPS)


def bn_statistics(
    collect: dict[str, list[torch.Tensor]], var_floor: float = 0.0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and variance per BatchNorm key from what `RunContext.bn_collect` gathered (each
    batch's mean and mean square, averaged over the batches); variances at least `var_floor`."""
    out = {}
    for key, rows in collect.items():
        mean, sq = torch.stack(rows).mean(0)
        out[key] = (mean, (sq - mean * mean).clamp_min(var_floor))
    return out


def _synced_batch_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Training BatchNorm over the global batch of a distributed run: per-channel sums of
    values and squares all-reduced (differentiably) across ranks, whose rows are equally many."""
    c = x.shape[1]
    n = x.numel() // c * world_size()
    if n <= 1:  # one value per channel: nothing to normalise over
        return F.batch_norm(x, torch.zeros_like(w), torch.ones_like(w), w, b, False, 0.0, _EPS)
    sums = sync_sums(torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))]))
    mean = sums[:c] / n
    var = (sums[c:] / n - mean * mean).clamp_min(0)
    scale = w * torch.rsqrt(var + _EPS)
    return x * scale[None, :, None, None] + (b - mean * scale)[None, :, None, None]


class ElasticConv(nn.Module):
    """A conv with the widest weight (out_max, in_max, k_max, k_max) and a BatchNorm."""

    def __init__(
        self,
        in_max: int,
        out_max: int,
        k_max: int,
        key: str,
        *,
        depthwise: bool = False,
        bn: bool = True,
        init: str = "kaiming",
        kernels: tuple[int, ...] = (),
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.depthwise = depthwise
        shape = (out_max, 1 if depthwise else in_max, k_max, k_max)
        self.weight = nn.Parameter(torch.empty(shape))
        if init == "geometric":  # SplitNets: fan = k^2 * sqrt(c_in * c_out)
            std = math.sqrt(2.0 / (k_max * k_max * math.sqrt(in_max * out_max)))
            nn.init.normal_(self.weight, 0.0, std)
        else:
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = ElasticBN(out_max, f"{key}.bn") if bn else None
        # once-for-all's elastic-kernel transform: each smaller odd kernel is the centre of the
        # next larger one times a learned (k*k, k*k) matrix shared by the channels, from identity
        self.transformed: tuple[int, ...] = ()
        if kernel_transform and k_max % 2:
            self.transformed = tuple(sorted({k for k in kernels if k < k_max and k % 2}, reverse=True))
        for k in self.transformed:
            self.register_parameter(f"kernel_transform_{k}", nn.Parameter(torch.eye(k * k)))

    def kernel(self, cin: int, cout: int, k: int, groups: int) -> torch.Tensor:
        """The weight a (cin, cout, k, groups) conv uses: the first channels and, for a smaller
        kernel, the centre crop, transformed through every larger kernel's step if learned."""
        w = self.weight[:cin] if self.depthwise else self.weight[:cout, : cin // groups]
        if w.shape[-1] == k:  # the largest kernel, or an extracted subnet's own
            return w
        steps = [s for s in self.transformed if s >= k] if k in self.transformed else [k]
        for s in steps:
            o = (w.shape[-1] - s) // 2
            w = w[:, :, o : o + s, o : o + s]
            if s in self.transformed:
                m = getattr(self, f"kernel_transform_{s}")
                w = (w.reshape(-1, s * s) @ m.T).reshape(*w.shape)
        return w

    def forward(
        self,
        x: torch.Tensor,
        ctx: RunContext,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> torch.Tensor:
        cin = x.shape[1]
        if self.depthwise:
            cout, groups = cin, cin
        if cin % groups or cout % groups:
            raise ValueError(f"{cin}->{cout} channels not divisible by groups={groups}")
        w = ctx.use(self.weight, self.kernel(cin, cout, k, groups))
        y = _conv(x, w, stride, groups)
        ctx.macs += w.numel() * y.shape[2] * y.shape[3] * x.shape[0]
        if self.bn is not None:
            y = self.bn(y, ctx)
        return F.relu6(y) if act else y


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """`F.conv2d` with zero padding k // 2 ("same" at stride 1), computed without the kernel taps
    that only ever meet padding: on an H x W input a tap more than H - 1 rows (W - 1 columns) off
    centre never touches the image, so the kernel is centre-cropped to at most (2H - 1) x (2W - 1)
    and the padding shrunk to match. The result is exactly the full kernel's (same sums, same
    output size and alignment); on the late 2x2 and 1x1 feature maps this turns a 7x7 depthwise
    conv, which oneDNN runs very slowly there, into a 3x3 or a plain product. A 1x1 map runs as a
    matrix product or an element-wise scale. MACs are still counted for the full kernel."""
    kh, kw = w.shape[-2], w.shape[-1]
    if kh % 2 == 0 or kw % 2 == 0:  # even kernels keep PyTorch's asymmetric "same" padding
        return F.conv2d(x, w, None, stride, "same" if stride == 1 else kh // 2, 1, groups)
    h, wd = x.shape[2], x.shape[3]
    ph, pw = min(kh // 2, h - 1), min(kw // 2, wd - 1)
    oh, ow = kh // 2 - ph, kw // 2 - pw
    if oh or ow:
        w = w[:, :, oh : kh - oh, ow : kw - ow]
    depthwise = groups > 1 and groups == x.shape[1] and w.shape[0] == groups
    if h == 1 and wd == 1:
        if groups == 1:
            return F.linear(x.flatten(1), w[:, :, 0, 0])[:, :, None, None]
        if depthwise:
            return x * w[:, 0, 0, 0][None, :, None, None]
    if depthwise and h * wd <= _SMALL_MAP and torch.is_grad_enabled():  # oneDNN's backward is slow
        return _depthwise_small(x, w, stride, ph, pw)
    return F.conv2d(x, w, None, stride, (ph, pw), 1, groups)


_SMALL_MAP = 16  # up to 4x4: a depthwise conv as one batched matrix product per channel


@functools.lru_cache(maxsize=256)
def _tap_index(
    h: int, w: int, kh: int, kw: int, stride: int, ph: int, pw: int
) -> tuple[torch.Tensor, int, int]:
    """For every (output pixel, input pixel) the kernel tap joining them, or kh * kw (a zero
    appended to the kernel) where none does."""
    oh, ow = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
    idx = torch.full((oh * ow, h * w), kh * kw, dtype=torch.long)
    for oi in range(oh):
        for oj in range(ow):
            for a in range(kh):
                i = oi * stride + a - ph
                if not 0 <= i < h:
                    continue
                for b in range(kw):
                    j = oj * stride + b - pw
                    if 0 <= j < w:
                        idx[oi * ow + oj, i * w + j] = a * kw + b
    return idx, oh, ow


def _depthwise_small(x: torch.Tensor, w: torch.Tensor, stride: int, ph: int, pw: int) -> torch.Tensor:
    """Depthwise conv on a small map as (C, out pixels, in pixels) @ (C, in pixels, batch): the
    same sums as `F.conv2d`, several times faster on CPU for maps of 4x4 and below."""
    b, c, h, wd = x.shape
    kh, kw = w.shape[-2], w.shape[-1]
    idx, oh, ow = _tap_index(h, wd, kh, kw, stride, ph, pw)
    taps = torch.cat([w.reshape(c, kh * kw), w.new_zeros(c, 1)], dim=1)
    y = torch.bmm(taps[:, idx], x.reshape(b, c, h * wd).permute(1, 2, 0))
    return y.permute(2, 0, 1).reshape(b, c, oh, ow)


class ElasticLinear(nn.Module):
    def __init__(self, in_max: int, out_max: int, *, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_max, in_max))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_max)) if bias else None

    def forward(self, x: torch.Tensor, ctx: RunContext, cout: int) -> torch.Tensor:
        w = ctx.use(self.weight, self.weight[:cout, : x.shape[1]])
        ctx.macs += w.numel() * x.shape[0]
        b = None if self.bias is None else ctx.use(self.bias, self.bias[:cout])
        return F.linear(x, w, b)


def hidden_channels(cin: int, op: OpSpec) -> int:
    return max(1, round(cin * op.expansion))


def expands(op: OpSpec) -> bool:
    return op.expansion != 1 or op.always_expand


class ElasticMBConv(nn.Module):
    """Every MBConv choice of one layer: expansion by channel slicing of the widest hidden
    width, kernel by centre crop of the largest, optional group conv and squeeze-excitation.

    A `residual` block (every choice has the shortcut) starts as the identity, its last
    BatchNorm's scale zero-initialised as in BigNAS: without it deep subnets, and the supernet's
    deep paths, train far slower than shallow ones in a short budget (see
    benchmarks/supernet_ranking.md)."""

    def __init__(
        self,
        in_max: int,
        out_max: int,
        ops: list[OpSpec],
        key: str,
        residual: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        k_max = max(op.kernel for op in ops)
        hid_max = max([in_max] + [hidden_channels(in_max, op) for op in ops])
        self.expand = (
            ElasticConv(in_max, hid_max, 1, f"{key}.expand") if any(expands(op) for op in ops) else None
        )
        kernels = tuple(op.kernel for op in ops)
        self.dw = ElasticConv(
            hid_max,
            hid_max,
            k_max,
            f"{key}.dw",
            depthwise=True,
            kernels=kernels,
            kernel_transform=kernel_transform,
        )
        se_max = max([max(1, int(in_max * op.se_ratio)) for op in ops if op.se_ratio > 0] or [0])
        if se_max:
            self.se_reduce = ElasticLinear(hid_max, se_max)
            self.se_expand = ElasticLinear(se_max, hid_max)
        self.project = ElasticConv(hid_max, out_max, 1, f"{key}.project")
        if residual:
            assert self.project.bn is not None
            nn.init.zeros_(self.project.bn.weight)

    def forward(
        self,
        x: torch.Tensor,
        ctx: RunContext,
        op: OpSpec,
        cout: int,
        stride: int,
        tap: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`tap`: what the cut after the depthwise conv does to the feature; `skip`: what it does
        to the block input when the residual sum is on the far side of that cut."""
        cin = x.shape[1]
        residual = is_residual(op, cin, cout, stride)
        h = x
        if expands(op):
            assert self.expand is not None
            h = self.expand(h, ctx, hidden_channels(cin, op), 1, groups=op.groups)
        h = self.dw(h, ctx, h.shape[1], op.kernel, stride)
        if op.se_ratio > 0:
            se = max(1, int(cin * op.se_ratio))
            s = h.mean(dim=(2, 3))
            s = F.relu(self.se_reduce(s, ctx, se))
            s = torch.sigmoid(self.se_expand(s, ctx, h.shape[1]))
            h = h * s[:, :, None, None]
        if tap is not None:  # NASC's extended blocks: the cut falls after the depthwise conv
            h = tap(h)
            if residual and skip is not None:  # the skip tensor crosses the cut too
                x = skip(x)
        y = self.project(h, ctx, cout, 1, groups=op.groups, act=False)
        return y + x if residual else y


class ElasticFire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, in_max: int, out_max: int, op: OpSpec, key: str) -> None:
        super().__init__()
        sq_max = max(1, round(out_max * op.squeeze_ratio))
        self.squeeze = ElasticConv(in_max, sq_max, 1, f"{key}.squeeze")
        self.e1 = ElasticConv(sq_max, out_max // 2, 1, f"{key}.e1")
        self.e3 = ElasticConv(sq_max, out_max - out_max // 2, 3, f"{key}.e3")

    def forward(self, x: torch.Tensor, ctx: RunContext, op: OpSpec, cout: int, stride: int) -> torch.Tensor:
        s = self.squeeze(x, ctx, max(1, round(cout * op.squeeze_ratio)), 1, stride)
        return torch.cat([self.e1(s, ctx, cout // 2, 1), self.e3(s, ctx, cout - cout // 2, 3)], dim=1)


def quantise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform fake quantisation to `bits` over each sample's [min, max], straight-through
    gradient; 16 bits or more are sent as floats (identity)."""
    if bits >= 16:
        return x
    levels = 2**bits - 1
    flat = x.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    scale = (hi - lo).clamp_min(1e-8) / levels
    q = torch.round((x - lo) / scale) * scale + lo
    return x + (q - x).detach()


def packet_loss(
    x: torch.Tensor,
    rate: float,
    generator: torch.Generator | None,
    shard: tuple[int, int] | None = None,
) -> torch.Tensor:
    """NASC's packet-loss dropout: each sent element is lost (zeroed) with probability `rate`;
    the receiver rescales the rest by 1 / (1 - rate), as dropout does. `shard` = (i, n): `x` is
    the i-th of n equal row blocks of a global batch; the mask is drawn for the global batch."""
    if rate <= 0.0:
        return x
    if shard is None or shard[1] == 1:
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    else:
        i, n = shard
        rows = x.shape[0]
        full = torch.rand((rows * n, *x.shape[1:]), generator=generator, device=x.device)
        keep = full[i * rows : (i + 1) * rows] >= rate
    return x * keep / (1.0 - rate)
