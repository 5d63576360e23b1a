"""Batched analytic evaluation: a population of candidates as integer arrays, scored with numpy.

The same model as `build_network` + `evaluate`, not a second one: every per-layer number is read
from the scalar path's own `LayerCost` objects (and each device's `ComputeModel` timing of them),
tabulated once per reachable (input shape, op, width) and gathered for the whole population; the
placement formulas are those of `nasopt.core.evaluation` written over arrays, with the payload and
peak-memory formulas of `nasopt.core.memory`. Chain, mesh and tree systems; a mesh whose space
has a bottleneck or depthwise-split ops is refused with a clear error (the scalar path covers it).

>>> from nasopt.presets import load_objective, load_space
>>> from nasopt.core.system import build_system
>>> from nasopt.space import SearchSpace
>>> import numpy as np
>>> space = SearchSpace(load_space("fbnet-nasc"), build_system(load_objective("nasc-raspi-edgegpu")))
>>> batch = space.sample_batch(np.random.default_rng(0), 1000)
>>> result = BatchEvaluator(space.macro, space.system).evaluate(batch)
>>> result.latency_s.shape
(1000,)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasopt.core.candidate import Candidate
from nasopt.core.compute import ComputeModel
from nasopt.core.macro import Macro, fuse_domain
from nasopt.core.memory import activation_elements
from nasopt.core.network import build_network, layer_of, tap_layers_of
from nasopt.core.ops import LayerCost, OpSpec, Shape, layer_cost, merge_cost, shape_elems
from nasopt.core.system import Link, System
from nasopt.errors import SpecError

_IntArray = np.ndarray
_FloatArray = np.ndarray


@dataclass
class CandidateBatch:
    """`n` candidates of one compiled space as arrays (one column per candidate).

    `ops[i]` is the index of layer i's op in `macro.layers[i].choices`, `widths[s]` the index of
    stage s's width in `macro.stages[s].widths`, `cuts[k]` the k-th sorted cut (a layer index,
    -1: the input), `bottleneck_width` and `bits` values as in `Candidate`, `fuse_after` the
    fusion layer of a multi-view space (None: single view)."""

    ops: _IntArray  # [n_layers, n]
    widths: _IntArray  # [n_stages, n]
    cuts: _IntArray  # [n_cuts, n]
    bottleneck_width: _IntArray  # [n]
    bits: _IntArray  # [n]
    fuse_after: _IntArray | None = None  # [n]

    def __len__(self) -> int:
        return int(self.bits.shape[0])

    def candidate(self, macro: Macro, j: int) -> Candidate:
        """Column `j` as a `Candidate`."""
        return Candidate(
            ops=tuple(layer.choices[int(o)] for layer, o in zip(macro.layers, self.ops[:, j], strict=True)),
            widths=tuple(st.widths[int(w)] for st, w in zip(macro.stages, self.widths[:, j], strict=True)),
            cuts=tuple(int(c) for c in self.cuts[:, j]),
            bottleneck_width=int(self.bottleneck_width[j]),
            bits=int(self.bits[j]),
            fuse_after=None if self.fuse_after is None else int(self.fuse_after[j]),
        )

    def candidates(self, macro: Macro) -> Iterator[Candidate]:
        for j in range(len(self)):
            yield self.candidate(macro, j)

    def take(self, index: _IntArray) -> CandidateBatch:
        """The candidates at `index` (an integer or boolean array)."""
        return CandidateBatch(
            ops=self.ops[:, index],
            widths=self.widths[:, index],
            cuts=self.cuts[:, index],
            bottleneck_width=self.bottleneck_width[index],
            bits=self.bits[index],
            fuse_after=None if self.fuse_after is None else self.fuse_after[index],
        )

    @classmethod
    def concat(cls, batches: list[CandidateBatch]) -> CandidateBatch:
        """The batches' candidates in order as one batch (of one space)."""
        fuse = [b.fuse_after for b in batches]
        return cls(
            ops=np.concatenate([b.ops for b in batches], axis=1),
            widths=np.concatenate([b.widths for b in batches], axis=1),
            cuts=np.concatenate([b.cuts for b in batches], axis=1),
            bottleneck_width=np.concatenate([b.bottleneck_width for b in batches]),
            bits=np.concatenate([b.bits for b in batches]),
            fuse_after=None if any(f is None for f in fuse) else np.concatenate(fuse),  # type: ignore[arg-type]
        )

    @classmethod
    def from_candidates(cls, macro: Macro, candidates: list[Candidate]) -> CandidateBatch:
        """Candidates (e.g. trials' or hand-written ones) as a batch."""
        if not candidates:
            raise ValueError("an empty batch has no shape; give at least one candidate")
        choice = [{c: k for k, c in enumerate(layer.choices)} for layer in macro.layers]
        width = [{w: k for k, w in enumerate(st.widths)} for st in macro.stages]
        multi = candidates[0].fuse_after is not None
        return cls(
            ops=np.array([[choice[i][c.ops[i]] for c in candidates] for i in range(len(macro.layers))]),
            widths=np.array([[width[s][c.widths[s]] for c in candidates] for s in range(len(macro.stages))]),
            cuts=np.array([c.cuts for c in candidates], dtype=np.int64).T.reshape(-1, len(candidates)),
            bottleneck_width=np.array([c.bottleneck_width for c in candidates], dtype=np.int64),
            bits=np.array([c.bits for c in candidates], dtype=np.int64),
            fuse_after=np.array([c.fuse_after for c in candidates], dtype=np.int64) if multi else None,
        )


@dataclass
class BatchEvaluation:
    """Per-candidate arrays of what `Evaluation` holds for one (dicts keyed like its fields)."""

    latency_s: _FloatArray
    compute_s: dict[str, _FloatArray]
    transfer_s: dict[str, _FloatArray]
    sent_bytes: dict[str, _FloatArray]
    memory_bytes: dict[str, _IntArray]
    weight_bytes: dict[str, _IntArray]
    macs: dict[str, _IntArray]
    energy_j: _FloatArray
    network_macs: _IntArray  # Network.macs (per-view layers counted once per view)
    network_params: _IntArray
    sent_elems: _IntArray  # [n_cuts, n] elements crossing each cut (per view when multi-view)
    sent_bits: _IntArray  # [n_cuts, n]
    cut_pixels: _IntArray  # [n_cuts, n] height x width of what crosses a cut; 0: the raw input
    memory_caps: dict[str, int | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.latency_s.shape[0])

    @property
    def latency_ms(self) -> _FloatArray:
        return self.latency_s * 1e3

    def feasible(self) -> np.ndarray:
        """True where every device's peak memory is within its cap."""
        ok = np.ones(len(self), dtype=bool)
        for dev, used in self.memory_bytes.items():
            cap = self.memory_caps.get(dev)
            if cap is not None:
                ok &= used <= cap
        return ok


class _Table:
    """Columns of numbers per table entry, one array per field, filled from LayerCosts."""

    def __init__(self, n_models: int, memory_models: tuple[str, ...]) -> None:
        self.times: list[list[float]] = [[] for _ in range(n_models)]
        self.memory_models = memory_models
        self.params: list[int] = []
        self.macs: list[int] = []
        # the activation term of the layer under each memory model (memory.activation_elements)
        self.live: list[list[int]] = [[] for _ in memory_models]
        self.out_elems: list[int] = []
        self.out_pixels: list[int] = []
        self.out_gid: list[int] = []

    def add(self, cost: LayerCost | None, models: list[ComputeModel], gid: int) -> None:
        for k, model in enumerate(models):
            self.times[k].append(_time_s(model, cost))
        self.params.append(cost.params if cost else 0)
        self.macs.append(cost.macs if cost else 0)
        for k, memory_model in enumerate(self.memory_models):
            term = (
                activation_elements(memory_model, cost.peak_live_elems, cost.peak_tensor_elems) if cost else 0
            )
            self.live[k].append(term)
        self.out_elems.append(cost.out_elems if cost else 0)
        self.out_pixels.append(cost.out_shape[1] * cost.out_shape[2] if cost else 0)
        self.out_gid.append(gid)

    def add_invalid(self) -> None:
        for column in self.times:
            column.append(np.nan)
        for col in (self.params, self.macs, *self.live, self.out_elems, self.out_pixels):
            col.append(0)
        self.out_gid.append(0)

    def freeze(self) -> _Frozen:
        return _Frozen(
            times=[np.asarray(t, dtype=np.float64) for t in self.times],
            params=np.asarray(self.params, dtype=np.int64),
            macs=np.asarray(self.macs, dtype=np.int64),
            live=[np.asarray(v, dtype=np.int64) for v in self.live],
            out_elems=np.asarray(self.out_elems, dtype=np.int64),
            out_pixels=np.asarray(self.out_pixels, dtype=np.int64),
            out_gid=np.asarray(self.out_gid, dtype=np.intp),
        )


def _refuse_scalar_only(macro: Macro, system: System) -> None:
    """What only the scalar path models yet: a clear error naming the field (the scalar
    `build_network` + `evaluate` cover all of these)."""
    fusion = macro.spec.fusion
    if fusion is not None and fusion.merge != "concat":
        raise SpecError(
            "batched evaluation fuses views by concatenation only (the scalar path covers View-Pool)",
            field="fusion.merge",
            value=fusion.merge,
            allowed="concat",
        )
    if fusion is not None and "aggregator" in fusion.placement:
        raise SpecError(
            "batched evaluation runs the per-view layers on the sensors only (the scalar path covers"
            " all-on-aggregator)",
            field="fusion.placement",
            value=list(fusion.placement),
            allowed="['sensors']",
        )
    for name, op in macro.ops.items():
        if op.split_tap == "depthwise" and op.shortcut and op.expansion >= 1:
            raise SpecError(
                "batched evaluation does not send a residual's skip tensor across a cut inside its"
                " block (the scalar path does)",
                field=f"ops.{name}.split_tap",
                value="depthwise",
                allowed="shortcut = false or split_tap = 'output'",
            )


def _time_s(model: ComputeModel, cost: LayerCost | None) -> float:
    """The model's time for a layer; NaN where it raises (a lookup table without the layer and
    no fallback), so that only a candidate that really runs the layer gets the scalar's error."""
    if cost is None:
        return 0.0
    try:
        return model.layer_time_s(cost)
    except SpecError:
        return float("nan")


@dataclass
class _Frozen:
    times: list[np.ndarray]
    params: np.ndarray
    macs: np.ndarray
    live: list[np.ndarray]  # per memory model
    out_elems: np.ndarray
    out_pixels: np.ndarray
    out_gid: np.ndarray


class BatchEvaluator:
    """Evaluates `CandidateBatch`es of one space on one system; tables are built on first use
    and kept (a table has one entry per reachable input shape x op x width of every layer)."""

    def __init__(self, macro: Macro, system: System) -> None:
        _refuse_scalar_only(macro, system)
        if system.kind == "mesh":
            spec = macro.spec
            taps = sorted(name for name, op in macro.ops.items() if op.split_tap == "depthwise")
            if any(w != "none" for w in spec.bottleneck.widths) or taps:
                raise SpecError(
                    "batched evaluation of a mesh needs a space without bottleneck and without ops"
                    " split at their depthwise conv (the scalar path covers those)",
                    field="bottleneck.widths" if not taps else f"ops.{taps[0]}.split_tap",
                    allowed="bottleneck widths ['none'], split_tap 'output'",
                )
        self.macro = macro
        self.system = system
        if system.kind == "chain":
            devices = system.chain
        elif system.kind == "mesh":
            devices = [*system.chain, *system.branches, *system.after]
        else:
            assert system.root is not None  # build_system gives every tree a root
            devices = [*system.leaves, system.root]
        models: list[ComputeModel] = []
        self._model_of: dict[str, int] = {}
        for name in devices:
            assert name is not None
            model = system.devices[name].compute
            if model not in models:
                models.append(model)
            self._model_of[name] = models.index(model)
        self._models = models
        memory_models = sorted({system.devices[name].memory_model for name in devices if name is not None})
        self._memory_models = tuple(memory_models)
        self._mem_of = {
            name: memory_models.index(system.devices[name].memory_model)
            for name in devices
            if name is not None
        }
        self._built = False

    def _run_overhead_s(self, device: str) -> float:
        """What `device` pays once per inference of its part (its compute model's spec)."""
        return self.system.devices[device].compute.spec.run_overhead_s

    # ------------------------------------------------------------------ tables

    def _build(self) -> None:
        macro, models = self.macro, self._models
        spec = macro.spec
        n_models = len(models)
        shapes: list[Shape] = []
        gid_of: dict[Shape, int] = {}

        def gid(shape: Shape) -> int:
            if shape not in gid_of:
                gid_of[shape] = len(shapes)
                shapes.append(shape)
            return gid_of[shape]

        input_shape: Shape = (spec.input.channels, spec.input.height, spec.input.width)
        self._input_gid = gid(input_shape)
        self._input_elems = shape_elems(input_shape)
        necks = sorted({0 if w == "none" else int(w) for w in spec.bottleneck.widths})
        self._neck_widths = np.asarray(necks, dtype=np.int64)
        views = macro.views
        fusable = set()
        if spec.fusion is not None:
            fusable = set(fuse_domain(macro))
        # reachable input shapes of every layer (a superset: widths are treated as independent)
        current = {self._input_gid}
        per_layer: list[dict[tuple[int, int, int], LayerCost | Exception]] = []
        fused_of: dict[tuple[int, int], tuple[int, LayerCost | None, LayerCost]] = {}
        par = self._parallel = _parallel_layout(macro)
        stage_in: set[int] = set()
        branch_out: list[set[int]] = []
        merges: dict[tuple[int, ...], LayerCost] = {}
        for layer in macro.layers:
            if par is not None and layer.index == par.start:
                stage_in, branch_out = set(current), []
            if par is not None and layer.index in par.branch_first:
                current = set(stage_in)
            stage = macro.stages[layer.stage]
            costs: dict[tuple[int, int, int], LayerCost | Exception] = {}
            nxt: set[int] = set()
            for g in sorted(current):
                for o, op_name in enumerate(layer.choices):
                    for w, width in enumerate(stage.widths):
                        try:
                            cost = layer_of(macro, layer, op_name, shapes[g], width)
                        except (SpecError, ValueError) as exc:
                            costs[(g, o, w)] = exc
                            continue
                        costs[(g, o, w)] = cost
                        out = gid(cost.out_shape)
                        nxt.add(out)
                        if layer.index in fusable:
                            for d_idx, d in enumerate(necks):
                                key = (out, d_idx)
                                if key not in fused_of:
                                    fused_of[key] = self._fuse_costs(cost.out_shape, d, views, gid)
                                nxt.add(fused_of[key][0])
            per_layer.append(costs)
            current = nxt
            if par is not None and layer.index in par.branch_last:
                branch_out.append(nxt)
            if par is not None and layer.index == par.last:
                current = set()
                for outs in itertools.product(*(sorted(o) for o in branch_out)):
                    merged = merge_cost(par.merge, [shapes[g] for g in outs], f"{par.name}.merge")
                    merges[outs] = merged
                    current.add(gid(merged.out_shape))
        n_shapes = self._radix = len(shapes)  # shape ids flowing between layers are below this
        # one concatenated table: layer i's entry for (gid, op, width) at
        # offset[i] + (gid * n_ops + op) * n_widths + width
        main, head, tail = (
            _Table(n_models, self._memory_models),
            _Table(n_models, self._memory_models),
            _Table(n_models, self._memory_models),
        )
        tap_flag: list[bool] = []
        offsets = []
        strides = []
        for layer, costs in zip(macro.layers, per_layer, strict=True):
            stage = macro.stages[layer.stage]
            n_o, n_w = len(layer.choices), len(stage.widths)
            offsets.append(len(main.params))
            strides.append((n_o, n_w))
            for g in range(n_shapes):
                for o, op_name in enumerate(layer.choices):
                    taps = macro.ops[op_name].split_tap == "depthwise"
                    for w, width in enumerate(stage.widths):
                        entry = costs.get((g, o, w))
                        if not isinstance(entry, LayerCost):  # unreachable, or the scalar path raises
                            main.add_invalid()
                            head.add_invalid()
                            tail.add_invalid()
                            tap_flag.append(False)
                            continue
                        main.add(entry, models, gid_of[entry.out_shape])
                        if taps and layer.index >= 0:
                            h_cost, t_cost = tap_layers_of(macro, layer, op_name, shapes[g], width)
                            head.add(h_cost, models, gid(h_cost.out_shape))
                            tail.add(t_cost, models, gid(t_cost.out_shape))
                        else:
                            head.add(None, models, 0)
                            tail.add(None, models, 0)
                        tap_flag.append(taps)
        self._offsets = np.asarray(offsets, dtype=np.intp)
        self._strides = strides
        self._main, self._head, self._tail = main.freeze(), head.freeze(), tail.freeze()
        self._tap = np.asarray(tap_flag, dtype=bool)
        # bottleneck tables by (shape at the cut, neck width index): Conv-Reduce, Conv-Recover
        n_shapes = len(shapes)  # head shapes may have added some
        self._pixels = np.asarray([h * w for _, h, w in shapes], dtype=np.int64)
        reduce_t, recover_t = _Table(n_models, self._memory_models), _Table(n_models, self._memory_models)
        num_classes = spec.num_classes
        k = spec.bottleneck.kernel
        multi = spec.fusion is not None
        for g in range(n_shapes):
            for d in necks:
                if d == 0:
                    reduce_t.add(None, models, g)
                    recover_t.add(None, models, g)
                    continue
                reduce = layer_cost(
                    "split.reduce",
                    "conv_reduce",
                    OpSpec(type="conv_reduce", kernel=k),
                    shapes[g],
                    d,
                    1,
                    num_classes,
                )
                reduce_t.add(reduce, models, gid(reduce.out_shape))
                if multi:
                    recover_t.add(None, models, g)
                    continue
                recover = layer_cost(
                    "split.recover",
                    "conv_recover",
                    OpSpec(type="conv_recover", kernel=k),
                    reduce.out_shape,
                    shapes[g][0],
                    1,
                    num_classes,
                )
                recover_t.add(recover, models, gid(recover.out_shape))
        self._n_necks = len(necks)
        self._reduce, self._recover = reduce_t.freeze(), recover_t.freeze()
        # View-Fuse by (shape of the layer's output, neck width index): fused shape and its cost
        fuse_gid = np.zeros(n_shapes * len(necks), dtype=np.intp)
        fuse_live = np.zeros((len(self._memory_models), n_shapes * len(necks)), dtype=np.int64)
        for (g, d_idx), (out, _, fused) in fused_of.items():
            fuse_gid[g * len(necks) + d_idx] = out
            for k, memory_model in enumerate(self._memory_models):
                fuse_live[k, g * len(necks) + d_idx] = activation_elements(
                    memory_model, fused.peak_live_elems, fused.peak_tensor_elems
                )
        self._fuse_gid, self._fuse_live = fuse_gid, fuse_live
        # merge of a parallel stage by its branches' output shapes (mixed radix over shape ids)
        merge_t = _Table(n_models, self._memory_models)
        radix = self._radix
        merge_index = np.zeros(radix ** len(par.branch_last) if par else 0, dtype=np.intp)
        for outs, merged in merges.items():
            merge_index[sum(g * radix**b for b, g in enumerate(outs))] = len(merge_t.params)
            merge_t.add(merged, models, gid_of[merged.out_shape])
        self._merge, self._merge_index = merge_t.freeze(), merge_index
        self._built = True

    def _fuse_costs(
        self, shape: Shape, d: int, views: int, gid: object
    ) -> tuple[int, LayerCost | None, LayerCost]:
        spec = self.macro.spec
        reduce = None
        if d:
            reduce = layer_cost(
                "split.reduce",
                "conv_reduce",
                OpSpec(type="conv_reduce", kernel=spec.bottleneck.kernel),
                shape,
                d,
                1,
                spec.num_classes,
            )
            shape = reduce.out_shape
        fused = layer_cost(
            "view_fuse", "view_fuse", OpSpec(type="view_fuse"), shape, shape[0] * views, 1, spec.num_classes
        )
        return gid(fused.out_shape), reduce, fused  # type: ignore[operator]

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, batch: CandidateBatch) -> BatchEvaluation:
        """Latency breakdown, per-device peak memory and energy of every candidate in `batch`."""
        if not self._built:
            self._build()
        n = len(batch)
        macro = self.macro
        n_layers = len(macro.layers)
        neck_idx = np.searchsorted(self._neck_widths, batch.bottleneck_width)
        if np.any(
            self._neck_widths[np.minimum(neck_idx, len(self._neck_widths) - 1)] != batch.bottleneck_width
        ):
            raise SpecError("bottleneck width not among the space's choices", field="bottleneck.width")
        keys = np.empty((n_layers, n), dtype=np.intp)
        # a layer's key is one number while its input shape is the same for the whole batch and
        # it has no choice (most fixed layers): its values are then scalars, nothing is gathered
        const_key: list[int | None] = [None] * n_layers
        gid: Any = self._input_gid
        fuse = batch.fuse_after
        main = self._main
        fuse_key = None
        par = self._parallel
        merge_entry = None
        stage_in = gid
        outs: list[Any] = []
        for i, layer in enumerate(macro.layers):
            if par is not None and i in par.branch_first:
                if i == par.start:
                    stage_in, outs = gid, []
                gid = stage_in
            n_o, n_w = self._strides[i]
            key = gid * (n_o * n_w) + self._offsets[i]
            if n_o > 1:
                key = key + batch.ops[i] * n_w
            if n_w > 1:
                key = key + batch.widths[layer.stage]
            if isinstance(key, np.ndarray):
                keys[i] = key
                gid = main.out_gid[key]
                if gid.min() == gid.max():
                    gid = int(gid[0])
            else:
                keys[i] = key
                const_key[i] = int(key)
                gid = int(main.out_gid[key])
            if par is not None and i in par.branch_last:
                outs.append(gid)
                if i == par.last:
                    mk = sum(g * self._radix**b for b, g in enumerate(outs))
                    merge_entry = np.broadcast_to(self._merge_index[mk], (n,))
                    gid = self._merge.out_gid[merge_entry]
            if fuse is not None:
                at = fuse == i
                if at.any():
                    gid = np.array(np.broadcast_to(gid, (n,)), dtype=np.intp)
                    fk = gid[at] * self._n_necks + neck_idx[at]
                    gid[at] = self._fuse_gid[fk]
                    if fuse_key is None:
                        fuse_key = np.zeros(n, dtype=np.intp)
                    fuse_key[at] = fk
        if self.system.kind == "tree":
            result = self._tree(batch, keys, neck_idx, fuse_key, merge_entry, const_key)
        elif self.system.kind == "mesh":
            result = self._mesh(batch, keys, merge_entry, const_key)
        else:
            result = self._chain(batch, keys, neck_idx, merge_entry, const_key)
        if np.isnan(result.latency_s).any():
            self._raise_scalar_error(batch, int(np.flatnonzero(np.isnan(result.latency_s))[0]))
        return result

    def _raise_scalar_error(self, batch: CandidateBatch, j: int) -> None:
        """Rerun the scalar model on the first candidate the tables could not cost (so the
        error is the scalar path's own)."""
        from nasopt.core.evaluation import evaluate

        candidate = batch.candidate(self.macro, j)
        evaluate(build_network(self.macro, candidate), self.system)
        raise SpecError(f"candidate {j} could not be costed", field="candidate", value=candidate.to_dict())

    def _layer_sums(
        self, keys: np.ndarray, merge_entry: np.ndarray | None, const_key: list[int | None]
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray]]:
        """Prefix sums over layers (leading zero row) of each model's time, params and MACs,
        and the per-layer live activations; a parallel stage's merge counts with its last layer
        (it runs right after it, on the same device)."""
        main = self._main
        n_layers, n = keys.shape
        times = [np.zeros((n_layers + 1, n)) for _ in main.times]
        params = np.zeros((n_layers + 1, n), dtype=np.int64)
        macs = np.zeros((n_layers + 1, n), dtype=np.int64)
        live = [np.empty((n_layers, n), dtype=np.int64) for _ in self._memory_models]
        row = np.empty(n)
        last = self._parallel.last if merge_entry is not None else -1  # type: ignore[union-attr]
        # row by row: contiguous adds over the population are several times faster than a
        # cumsum along the layer axis
        for i in range(n_layers):
            k = const_key[i]
            if k is not None and i != last:
                for table, prefix in zip(main.times, times, strict=True):
                    np.add(prefix[i], table[k], out=prefix[i + 1])
                np.add(params[i], main.params[k], out=params[i + 1])
                np.add(macs[i], main.macs[k], out=macs[i + 1])
                for lv, table in zip(live, main.live, strict=True):
                    lv[i] = table[k]
                continue
            key = keys[i]
            for m, (table, prefix) in enumerate(zip(main.times, times, strict=True)):
                np.take(table, key, out=row)
                if i == last:
                    row += self._merge.times[m][merge_entry]
                np.add(prefix[i], row, out=prefix[i + 1])
            np.add(params[i], np.take(main.params, key), out=params[i + 1])
            np.add(macs[i], np.take(main.macs, key), out=macs[i + 1])
            for lv, table, merged in zip(live, main.live, self._merge.live, strict=True):
                np.take(table, key, out=lv[i])
                if i == last:
                    np.maximum(lv[i], merged[merge_entry], out=lv[i])
        return times, params, macs, live

    def _chain(
        self,
        batch: CandidateBatch,
        keys: np.ndarray,
        neck_idx: np.ndarray,
        merge_entry: np.ndarray | None,
        const_key: list[int | None],
    ) -> BatchEvaluation:
        system, macro = self.system, self.macro
        spec = macro.spec
        chain = system.chain
        n = len(batch)
        n_layers = len(macro.layers)
        cuts = batch.cuts
        n_cuts = cuts.shape[0]
        if n_cuts != len(chain) - 1:
            raise SpecError(
                f"the chain topology of {system.name} needs {len(chain) - 1} cut(s), the batch has {n_cuts}",
                field="cuts",
            )
        times, params_sum, macs_sum, live = self._layer_sums(keys, merge_entry, const_key)
        cols = np.arange(n)
        bounds = np.vstack([np.full((1, n), -1), cuts, np.full((1, n), n_layers - 1)]) + 1  # [M+1, n]
        n_dev = len(chain)
        compute = [
            times[self._model_of[d]][bounds[m + 1], cols] - times[self._model_of[d]][bounds[m], cols]
            for m, d in enumerate(chain)
        ]
        ran = [bounds[m + 1] > bounds[m] for m in range(n_dev)]  # the device runs a layer
        params = [params_sum[bounds[m + 1], cols] - params_sum[bounds[m], cols] for m in range(n_dev)]
        macs = [macs_sum[bounds[m + 1], cols] - macs_sum[bounds[m], cols] for m in range(n_dev)]
        layer_index = np.arange(n_layers)[:, None]
        peak = [
            _range_max(live[self._mem_of[d]], bounds[m], bounds[m + 1], layer_index)
            for m, d in enumerate(chain)
        ]
        # extras at the cut layers: an MBConv split at its depthwise conv, the bottleneck
        has_neck = batch.bottleneck_width > 0
        first = cuts[0] if n_cuts else None
        sent_elems = np.zeros((n_cuts, n), dtype=np.int64)
        sent_bits = np.broadcast_to(batch.bits, (n_cuts, n)).copy()
        cut_shape = np.zeros((n_cuts, n), dtype=np.intp)
        cut_pixels = np.zeros((n_cuts, n), dtype=np.int64)
        head, tail, main = self._head, self._tail, self._main
        merged_at = self._parallel.last if self._parallel is not None else -2
        neck_first = np.zeros(n, dtype=bool)  # the bottleneck really sits at the first cut

        def add(dev: np.ndarray, table: _Frozen, idx: np.ndarray, where: np.ndarray, sign: int = 1) -> None:
            for m, d in enumerate(chain):
                sel = where & (dev == m)
                if not sel.any():
                    continue
                t = table.times[self._model_of[d]][idx]
                compute[m] = compute[m] + sign * np.where(sel, t, 0.0)
                params[m] = params[m] + sign * np.where(sel, table.params[idx], 0)
                macs[m] = macs[m] + sign * np.where(sel, table.macs[idx], 0)
                if sign > 0:
                    peak[m] = np.maximum(peak[m], np.where(sel, table.live[self._mem_of[d]][idx], 0))
                    ran[m] = ran[m] | sel

        for k in range(n_cuts):
            c = cuts[k]
            at_input = c < 0
            key_at = keys[np.maximum(c, 0), cols]
            tapped = self._tap[key_at] & ~at_input
            after_merge = c == merged_at  # a cut after a parallel stage sends the merged feature
            distinct = np.ones(n, dtype=bool) if k == 0 else c != cuts[k - 1]
            owner = (cuts < c).sum(axis=0)  # the device the cut layer runs on
            after = (cuts <= c).sum(axis=0)
            swap = tapped & distinct
            if swap.any():
                add(owner, head, key_at, swap)
                add(owner, main, key_at, swap, sign=-1)
                add(after, tail, key_at, swap)
            shape = np.where(tapped, head.out_gid[key_at], main.out_gid[key_at])
            elems = np.where(tapped, head.out_elems[key_at], main.out_elems[key_at])
            if merge_entry is not None and after_merge.any():
                shape = np.where(after_merge, self._merge.out_gid[merge_entry], shape)
                elems = np.where(after_merge, self._merge.out_elems[merge_entry], elems)
            shape = np.where(at_input, self._input_gid, shape)
            cut_shape[k] = shape
            elems = np.where(at_input, self._input_elems, elems)
            elems = np.where(~tapped & (c == n_layers - 1), 0, elems)
            at_neck = has_neck & (c == first) & ~after_merge  # never a bottleneck after a merge
            if at_neck.any():
                nk = shape * self._n_necks + neck_idx
                elems = np.where(at_neck, self._reduce.out_elems[nk], elems)
                if k == 0:
                    neck_first = at_neck
                    add(owner, self._reduce, nk, at_neck)
                    add(after, self._recover, nk, at_neck)
            sent_elems[k] = elems
            raw = at_input & ~at_neck
            sent_bits[k] = np.where(raw, spec.input_bits, sent_bits[k])
            cut_pixels[k] = np.where(raw, 0, self._pixels[shape])
        for m, d in enumerate(chain):
            compute[m] = compute[m] + np.where(ran[m], self._run_overhead_s(d), 0.0)
        payload = sent_elems * sent_bits / 8.0  # memory.payload_bytes over arrays
        links = system.chain_links
        transfer = [_transfer_s(link, payload[m]) for m, link in enumerate(links)]
        zero = np.zeros(n)
        memory: dict[str, np.ndarray] = {}
        weights: dict[str, np.ndarray] = {}
        energy = np.zeros(n)
        for m, d in enumerate(chain):
            received = payload[m - 1] if m > 0 else zero
            sent = payload[m] if m < n_cuts else zero
            w, mem = _peak_memory(params[m], peak[m], np.maximum(received, sent), spec)
            weights[d], memory[d] = w, mem
            energy = energy + macs[m] * system.devices[d].energy_j_per_mac
        for m, link in enumerate(links):
            energy = energy + payload[m] * 8.0 * link.energy_j_per_bit
        latency = sum(compute) + sum(transfer) if transfer else sum(compute)
        net_params = params_sum[-1] + self._neck_params(
            neck_idx, cut_shape[0] if n_cuts else None, neck_first
        )
        net_macs = macs_sum[-1] + self._neck_macs(neck_idx, cut_shape[0] if n_cuts else None, neck_first)
        return BatchEvaluation(
            latency_s=np.asarray(latency, dtype=np.float64),
            compute_s=dict(zip(chain, compute, strict=True)),
            transfer_s={link.name: t for link, t in zip(links, transfer, strict=True)},
            sent_bytes={link.name: payload[m] for m, link in enumerate(links)},
            memory_bytes=memory,
            weight_bytes=weights,
            macs=dict(zip(chain, macs, strict=True)),
            energy_j=energy,
            network_macs=net_macs,
            network_params=net_params,
            sent_elems=sent_elems,
            sent_bits=sent_bits,
            cut_pixels=cut_pixels,
            memory_caps=dict(system.memory_caps),
        )

    def _mesh(
        self,
        batch: CandidateBatch,
        keys: np.ndarray,
        merge_entry: np.ndarray | None,
        const_key: list[int | None],
    ) -> BatchEvaluation:
        """JMSNAS eq. 2 over arrays: the chain up to the root, the slowest root -> branch ->
        aggregator path, then the merge and the tail along the `after` chain (as `_evaluate_mesh`)."""
        system, macro = self.system, self.macro
        spec = macro.spec
        par = self._parallel
        if par is None or merge_entry is None:
            raise SpecError(
                f"the mesh topology of {system.name} needs a space with a parallel stage",
                field="stages",
                allowed="a stage with parallel = number of branch devices",
            )
        if len(par.branch_last) != len(system.branches):
            raise SpecError(
                f"the mesh of {system.name} has {len(system.branches)} branch devices, "
                f"the network has {len(par.branch_last)} parallel branches",
                field="topology.branches",
            )
        n = len(batch)
        cols = np.arange(n)
        n_layers = len(macro.layers)
        if batch.cuts.shape[0] != system.cut_count:
            raise SpecError(
                f"the mesh topology of {system.name} needs {system.cut_count} cut(s), "
                f"the batch has {batch.cuts.shape[0]}",
                field="cuts",
            )
        times, params_sum, macs_sum, live = self._layer_sums(keys, None, const_key)
        main, merge = self._main, self._merge
        layer_index = np.arange(n_layers)[:, None]
        bits = batch.bits
        compute: dict[str, np.ndarray] = {}
        params: dict[str, np.ndarray] = {}
        peak: dict[str, np.ndarray] = {}
        macs: dict[str, np.ndarray] = {}
        buffered: dict[str, np.ndarray] = {}
        transfer: dict[str, np.ndarray] = {}
        sent: dict[str, np.ndarray] = {}
        zero = np.zeros(n)

        def run(
            device: str, start: np.ndarray, end: np.ndarray, received: np.ndarray, merges: bool = False
        ) -> np.ndarray:
            t_all = times[self._model_of[device]]
            ran = (end > start) | merges  # the aggregator runs the merge, if nothing else
            compute[device] = t_all[end, cols] - t_all[start, cols]
            compute[device] = compute[device] + np.where(ran, self._run_overhead_s(device), 0.0)
            params[device] = params_sum[end, cols] - params_sum[start, cols]
            macs[device] = macs_sum[end, cols] - macs_sum[start, cols]
            peak[device] = _range_max(live[self._mem_of[device]], start, end, layer_index)
            buffered[device] = received
            return compute[device]

        def send(src: str, dst: str, payload: np.ndarray) -> np.ndarray:
            link = system.link(src, dst)
            t = _transfer_s(link, payload)
            transfer[link.name], sent[link.name] = t, payload
            return t

        cut_arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def cut_payload(c: np.ndarray) -> np.ndarray:
            key_at = keys[np.maximum(c, 0), cols]
            at_merge = c == par.last
            elems = np.where(at_merge, merge.out_elems[merge_entry], main.out_elems[key_at])
            elems = np.where(c == n_layers - 1, 0, elems)
            elems = np.where(c < 0, self._input_elems, elems)
            pixels = np.where(at_merge, merge.out_pixels[merge_entry], main.out_pixels[key_at])
            cut_bits = np.where(c < 0, spec.input_bits, bits)
            cut_arrays.append((elems, cut_bits, np.where(c < 0, 0, pixels)))
            return elems * cut_bits / 8.0

        k_trunk = system.trunk_cuts
        trunk, tail = batch.cuts[:k_trunk], batch.cuts[k_trunk:]
        full = np.full(n, 0, dtype=np.int64)
        bounds = [full, *(trunk + 1), full + par.start]
        total = zero
        received = zero
        for m, device in enumerate(system.chain):
            t = run(device, bounds[m], bounds[m + 1], received)
            if device != system.root:
                payload = cut_payload(trunk[m])
                total = total + t + send(device, system.chain[m + 1], payload)
                received = payload
        root = system.root
        assert root is not None
        root_out = main.out_elems[keys[par.start - 1]] if par.start > 0 else np.full(n, self._input_elems)
        # a parallel first stage: the root forwards the raw input at the input's bit width
        root_bytes = root_out * (bits if par.start > 0 else spec.input_bits) / 8.0
        slowest = zero
        starts = sorted(par.branch_first)
        for b, device in enumerate(system.branches):
            lo = np.full(n, starts[b])
            hi = np.full(n, par.branch_last[b] + 1)
            t = compute[root] + send(root, device, root_bytes)
            t = t + run(device, lo, hi, root_bytes)
            out_bytes = main.out_elems[keys[par.branch_last[b]]] * bits / 8.0
            t = t + send(device, system.after[0], out_bytes)
            slowest = np.maximum(slowest, t)
        total = total + slowest
        ends = [*(tail + 1), np.full(n, n_layers)]
        start = np.full(n, par.last + 1)
        for m, device in enumerate(system.after):
            total = total + run(device, start, ends[m], zero, merges=m == 0)
            if m == 0:  # the merge runs first on the aggregator
                mt = merge.times[self._model_of[device]][merge_entry]
                compute[device] = compute[device] + mt
                total = total + mt
                peak[device] = np.maximum(peak[device], merge.live[self._mem_of[device]][merge_entry])
            if m < len(system.after) - 1:
                total = total + send(device, system.after[m + 1], cut_payload(tail[m]))
            start = ends[m]
        memory: dict[str, np.ndarray] = {}
        weights: dict[str, np.ndarray] = {}
        energy = zero
        for device in compute:
            weights[device], memory[device] = _peak_memory(
                params[device], peak[device], buffered[device], spec
            )
            energy = energy + macs[device] * system.devices[device].energy_j_per_mac
        for name, payload in sent.items():
            energy = energy + payload * 8.0 * system.links[name].energy_j_per_bit
        return BatchEvaluation(
            latency_s=total,
            compute_s=compute,
            transfer_s=transfer,
            sent_bytes=sent,
            memory_bytes=memory,
            weight_bytes=weights,
            macs=macs,
            energy_j=energy,
            network_macs=macs_sum[-1],
            network_params=params_sum[-1],
            sent_elems=np.array([e for e, _, _ in cut_arrays]).reshape(len(cut_arrays), n),
            sent_bits=np.array([b for _, b, _ in cut_arrays]).reshape(len(cut_arrays), n),
            cut_pixels=np.array([p for _, _, p in cut_arrays]).reshape(len(cut_arrays), n),
            memory_caps=dict(system.memory_caps),
        )

    def _neck_params(self, neck_idx: np.ndarray, shape: np.ndarray | None, has: np.ndarray) -> np.ndarray:
        if shape is None:
            return np.zeros_like(neck_idx)
        nk = shape * self._n_necks + neck_idx
        return np.where(has, self._reduce.params[nk] + self._recover.params[nk], 0)

    def _neck_macs(self, neck_idx: np.ndarray, shape: np.ndarray | None, has: np.ndarray) -> np.ndarray:
        if shape is None:
            return np.zeros_like(neck_idx)
        nk = shape * self._n_necks + neck_idx
        return np.where(has, self._reduce.macs[nk] + self._recover.macs[nk], 0)

    def _tree(
        self,
        batch: CandidateBatch,
        keys: np.ndarray,
        neck_idx: np.ndarray,
        fuse_key: np.ndarray | None,
        merge_entry: np.ndarray | None,
        const_key: list[int | None],
    ) -> BatchEvaluation:
        system, macro = self.system, self.macro
        spec = macro.spec
        if batch.fuse_after is None or fuse_key is None:
            raise SpecError(
                f"the tree topology of {system.name} needs a multi-view space ([fusion])",
                field="topology.kind",
                allowed="chain or mesh for single-view spaces",
            )
        n = len(batch)
        cols = np.arange(n)
        f = batch.fuse_after
        if np.any(self._tap[keys[f, cols]]):
            raise SpecError(
                "batched evaluation of a tree does not split an MBConv at its depthwise conv",
                field="ops",
                allowed="ops with split_tap = 'output' at the fusion point",
            )
        times, params_sum, macs_sum, live = self._layer_sums(keys, merge_entry, const_key)
        views = macro.views
        if views != len(system.leaves):
            raise SpecError(
                f"the space fuses {views} views but the tree has {len(system.leaves)} leaves",
                field="topology.leaves",
            )
        has_neck = batch.bottleneck_width > 0
        key_at = keys[f, cols]
        shape = self._main.out_gid[key_at]
        nk = shape * self._n_necks + neck_idx
        reduce = self._reduce
        layer_index = np.arange(len(macro.layers))[:, None]
        head_mask = layer_index <= f

        def head_live(k: int) -> np.ndarray:  # the per-view part under memory model k
            return np.maximum(
                np.where(head_mask, live[k], 0).max(axis=0), np.where(has_neck, reduce.live[k][nk], 0)
            )

        def tail_live(k: int) -> np.ndarray:
            return np.maximum(np.where(head_mask, 0, live[k]).max(axis=0), self._fuse_live[k][fuse_key])

        head_params = params_sum[f + 1, cols] + np.where(has_neck, reduce.params[nk], 0)
        tail_params = params_sum[-1] - params_sum[f + 1, cols]
        head_macs = macs_sum[f + 1, cols] + np.where(has_neck, reduce.macs[nk], 0)
        tail_macs = macs_sum[-1] - macs_sum[f + 1, cols]
        elems = np.where(has_neck, reduce.out_elems[nk], self._main.out_elems[key_at])
        payload = elems * batch.bits / 8.0
        compute: dict[str, np.ndarray] = {}
        memory: dict[str, np.ndarray] = {}
        weights: dict[str, np.ndarray] = {}
        macs: dict[str, np.ndarray] = {}
        transfer: dict[str, np.ndarray] = {}
        sent: dict[str, np.ndarray] = {}
        energy = np.zeros(n)
        zero = np.zeros(n)
        ready: dict[str, np.ndarray] = {}
        carried: dict[str, np.ndarray] = {}
        for leaf in system.leaves:
            mi = self._model_of[leaf]
            t = times[mi][f + 1, cols] + np.where(has_neck, reduce.times[mi][nk], 0.0)
            t = t + np.where((f >= 0) | has_neck, self._run_overhead_s(leaf), 0.0)
            compute[leaf] = t
            weights[leaf], memory[leaf] = _peak_memory(head_params, head_live(self._mem_of[leaf]), zero, spec)
            macs[leaf] = head_macs
            energy = energy + head_macs * system.devices[leaf].energy_j_per_mac
            ready[leaf], carried[leaf] = t, payload
        # hubs forward once everything below them arrived; the root starts when all is in
        order = _bottom_up(system)
        for node in order:
            parent = system.parent[node]
            link = system.link(node, parent)
            t_send = _transfer_s(link, carried[node])
            transfer[link.name] = transfer.get(link.name, zero) + t_send
            sent[link.name] = sent.get(link.name, zero) + carried[node]
            energy = energy + carried[node] * 8.0 * link.energy_j_per_bit
            arrived = ready[node] + t_send
            ready[parent] = np.maximum(ready[parent], arrived) if parent in ready else arrived
            carried[parent] = carried[parent] + carried[node] if parent in carried else carried[node]
        none = np.zeros(n, dtype=np.int64)
        for hub in order:
            if hub not in system.leaves:  # a hub only buffers and forwards what it received
                compute[hub], macs[hub] = zero, none
                weights[hub], memory[hub] = _peak_memory(none, none, carried[hub], spec)
        root = system.root
        assert root is not None
        mi = self._model_of[root]
        root_t = times[mi][-1] - times[mi][f + 1, cols]
        root_t = root_t + np.where(f + 1 < len(macro.layers), self._run_overhead_s(root), 0.0)
        compute[root] = root_t
        macs[root] = tail_macs
        weights[root], memory[root] = _peak_memory(
            tail_params, tail_live(self._mem_of[root]), carried[root], spec
        )
        energy = energy + tail_macs * system.devices[root].energy_j_per_mac
        net_macs = head_macs * views + tail_macs
        net_params = params_sum[-1] + np.where(has_neck, reduce.params[nk], 0)
        return BatchEvaluation(
            latency_s=ready[root] + root_t,
            compute_s=compute,
            transfer_s=transfer,
            sent_bytes=sent,
            memory_bytes=memory,
            weight_bytes=weights,
            macs=macs,
            energy_j=energy,
            network_macs=net_macs,
            network_params=net_params,
            sent_elems=elems[None, :],
            sent_bits=np.asarray(batch.bits)[None, :],
            cut_pixels=self._main.out_pixels[key_at][None, :],
            memory_caps=dict(system.memory_caps),
        )


def _range_max(live: np.ndarray, start: np.ndarray, end: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
    """Per column, the largest of `live[start:end]` (0 for an empty range)."""
    n_layers, n = live.shape
    if np.all(start == 0) or np.all(end == n_layers):
        # a prefix or a suffix: running maxima row by row, then one gather per column
        running = np.zeros((n_layers + 1, n), dtype=live.dtype)
        if np.all(start == 0):
            for i in range(n_layers):
                np.maximum(running[i], live[i], out=running[i + 1])
            return running[end, np.arange(n)]
        for i in range(n_layers - 1, -1, -1):
            np.maximum(running[i + 1], live[i], out=running[i])
        return running[start, np.arange(n)]
    inside = (layer_index >= start) & (layer_index < end)
    return np.where(inside, live, 0).max(axis=0)


@dataclass(frozen=True)
class _ParallelLayout:
    """Where the parallel stage of a space starts and ends and how it merges."""

    name: str
    merge: str
    start: int
    last: int
    branch_first: frozenset[int]
    branch_last: tuple[int, ...]  # in branch order


def _parallel_layout(macro: Macro) -> _ParallelLayout | None:
    p = macro.parallel_stage()
    if p is None:
        return None
    stage = macro.stages[p]
    by_branch: dict[int, list[int]] = {}
    for li in stage.layers:
        by_branch.setdefault(macro.layers[li].branch, []).append(li)
    branches = [by_branch[b] for b in sorted(by_branch)]
    return _ParallelLayout(
        name=stage.name,
        merge=stage.merge,
        start=stage.layers[0],
        last=stage.layers[-1],
        branch_first=frozenset(b[0] for b in branches),
        branch_last=tuple(b[-1] for b in branches),
    )


def _bottom_up(system: System) -> list[str]:
    """Tree nodes that send, deepest first: a node's children all come before it."""
    depth: dict[str, int] = {}
    for leaf in system.leaves:
        cur = leaf
        path = []
        while cur != system.root:
            path.append(cur)
            cur = system.parent[cur]
        for k, node in enumerate(reversed(path)):
            depth[node] = max(depth.get(node, 0), k)
    return sorted(depth, key=lambda node: (-depth[node], node))


def _transfer_s(link: Link, payload_bytes: np.ndarray) -> np.ndarray:
    """`Link.transfer_time_s` over an array of payloads."""
    intercept_s, s_per_byte = link.size_term()  # f(S|W) at the link's bandwidth
    t = link.latency_s + intercept_s + s_per_byte * payload_bytes + 8.0 * payload_bytes / link.bandwidth_bps
    return np.where(payload_bytes > 0, t, 0.0)


def _peak_memory(
    params: np.ndarray, live: np.ndarray, buffered: np.ndarray, spec: object
) -> tuple[np.ndarray, np.ndarray]:
    """`memory.weight_bytes` and `memory.peak_memory_bytes` over arrays."""
    weight_bits = spec.weight_bits  # type: ignore[attr-defined]
    activation_bits = spec.activation_bits  # type: ignore[attr-defined]
    weights = np.floor(params * weight_bits / 8.0).astype(np.int64)
    return weights, weights + np.floor(np.maximum(live * activation_bits / 8.0, buffered)).astype(np.int64)


__all__ = ["BatchEvaluation", "BatchEvaluator", "CandidateBatch"]
