"""A search space as Optuna parameters with stable, readable names, and back into a Candidate.

Parameter names: `layer07.op`, `<stage>.width`, `split.after`, `split2.after`, ...,
`bottleneck.width`, `bottleneck.bits`, `fuse.after`, `fuse.placement`. Only real choices become
parameters.
Every sampled point is valid: the k cut parameters share one domain and the candidate takes
them in sorted order (equal cuts leave a device empty; it relays), so nothing is rejected.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasopt.core.batched import CandidateBatch
from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, compile_space, cut_domain, fuse_domain
from nasopt.core.network import Network, build_network
from nasopt.errors import SpecError
from nasopt.spec import SearchSpaceSpec

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from nasopt.core.system import System


_MISSING = object()


@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple[Any, ...]


class SearchSpace:
    """The Optuna view of a search space for a given number of cuts (set by the system)."""

    def __init__(
        self,
        spec: SearchSpaceSpec,
        system: System | None = None,
        *,
        cuts: int | None = None,
        split_params: bool = True,
    ) -> None:
        """`split_params=False`: the architecture only, no bottleneck (width 0) and the widest
        feature bits, for a search on one device (the NAS-then-split baseline); a multi-view
        space keeps its fusion point (where the views merge is architecture there) with every
        view run on the aggregator."""
        self.spec = spec
        self.macro: Macro = compile_space(spec)
        self.system = system
        if spec.fusion is not None:
            n_cuts = 1
        elif cuts is not None:
            n_cuts = cuts
        elif system is not None:
            n_cuts = system.cut_count
        else:
            n_cuts = 1
        self.n_cuts = n_cuts
        self._layer_params: list[tuple[int, Param]] = []
        self._width_params: list[tuple[int, Param]] = []
        for layer in self.macro.layers:
            if len(layer.choices) > 1:
                self._layer_params.append((layer.index, Param(f"{layer.name}.op", layer.choices)))
        for s, stage in enumerate(self.macro.stages):
            if len(stage.widths) > 1:
                self._width_params.append((s, Param(f"{stage.name}.width", stage.widths)))
        self._cut_groups = self._cut_domains(system)
        widths = tuple(0 if w == "none" else int(w) for w in spec.bottleneck.widths)
        bits = tuple(spec.bottleneck.bits)
        if not split_params:
            widths, bits = (0,), (max(bits),)
        self._bottleneck = Param("bottleneck.width", widths)
        self._bits = Param("bottleneck.bits", bits)
        self._fuse: Param | None = None
        self._placement: Param | None = None
        if spec.fusion is not None:
            self._fuse = Param("fuse.after", fuse_domain(self.macro))
            placements = tuple(spec.fusion.placement) if split_params else ("aggregator",)
            self._placement = Param("fuse.placement", placements)
        self._params = self._collect_params()
        layer_or_width = {p.name for _, p in self._layer_params} | {p.name for _, p in self._width_params}
        self._rest_params = tuple(p for p in self._params if p.name not in layer_or_width)
        self._layer_draws = tuple((i, p.choices, len(p.choices)) for i, p in self._layer_params)
        self._default_ops = tuple(layer.choices[0] for layer in self.macro.layers)
        self._default_widths = tuple(stage.widths[0] for stage in self.macro.stages)

    # ------------------------------------------------------------- parameters

    def _cut_domains(self, system: System | None) -> list[tuple[list[str], tuple[int, ...]]]:
        """Groups of exchangeable cut parameters with their shared domain."""
        if self.spec.fusion is not None or self.n_cuts == 0:
            return []
        domain = cut_domain(self.macro)
        names = ["split.after"] + [f"split{k}.after" for k in range(2, self.n_cuts + 1)]
        if system is not None and system.kind == "mesh":
            p = self.macro.parallel_stage()
            if p is None:
                raise SpecError(
                    f"the mesh topology of {system.name} needs a space with a parallel stage",
                    field="stages",
                    allowed="a stage with parallel = number of branch devices",
                )
            first = self.macro.stages[p].layers[0]
            last = self.macro.stages[p].layers[-1]
            trunk = tuple(d for d in domain if d < first)
            tail = tuple(d for d in domain if d >= last)
            k = system.trunk_cuts
            groups = []
            if k:
                groups.append((names[:k], trunk))
            if names[k:]:
                groups.append((names[k:], tail))
            for _, dom in groups:
                if not dom:
                    raise SpecError("no split point available for the mesh", field="split.points")
            return groups
        if not domain:
            raise SpecError("no split point available", field="split.points")
        return [(names, tuple(domain))]

    @property
    def searched_layers(self) -> tuple[int, ...]:
        """Indices of the layers whose op is a search parameter."""
        return tuple(i for i, _ in self._layer_params)

    @property
    def searched_stages(self) -> tuple[int, ...]:
        """Indices of the stages whose width is a search parameter."""
        return tuple(s for s, _ in self._width_params)

    def cut_groups(self) -> list[tuple[list[str], tuple[int, ...]]]:
        """The cut parameters in groups that share a domain (a mesh has one group before its
        parallel stage and one after), with that domain; empty for multi-view spaces."""
        return [(list(names), domain) for names, domain in self._cut_groups]

    def cut_domain(self) -> tuple[int, ...]:
        """Layer indices a cut may follow (chain systems; -1 is the input)."""
        if len(self._cut_groups) != 1:
            raise SpecError("this space has no single cut domain (multi-view or mesh)", field="split")
        return self._cut_groups[0][1]

    def params(self) -> list[Param]:
        """Every parameter with more than one choice, in a stable order."""
        return list(self._params)

    def _collect_params(self) -> tuple[Param, ...]:
        out = [p for _, p in self._layer_params] + [p for _, p in self._width_params]
        for names, domain in self._cut_groups:
            if len(domain) > 1:
                out += [Param(n, domain) for n in names]
        for p in (self._fuse, self._placement):
            if p is not None and len(p.choices) > 1:
                out.append(p)
        for p in (self._bottleneck, self._bits):
            if len(p.choices) > 1:
                out.append(p)
        return tuple(out)

    def distributions(self) -> dict[str, CategoricalDistribution]:
        from optuna.distributions import CategoricalDistribution

        return {p.name: CategoricalDistribution(list(p.choices)) for p in self.params()}

    def suggest(self, trial: optuna.trial.BaseTrial, *, skip: tuple[str, ...] = ()) -> Candidate:
        """Ask the trial for every parameter and return the candidate; parameters in `skip` are
        not asked and take their first choice (the caller sets them, e.g. an optimal placement)."""
        values = {
            p.name: p.choices[0] if p.name in skip else trial.suggest_categorical(p.name, list(p.choices))
            for p in self.params()
        }
        return self.candidate(values)

    def candidate(self, values: dict[str, Any]) -> Candidate:
        """The candidate for parameter `values` (e.g. `trial.params`); fixed choices filled in."""
        ops = list(self._default_ops)
        for index, p in self._layer_params:
            v = values.get(p.name, _MISSING)
            ops[index] = v if v in p.choices else self._value(values, p)
        widths = list(self._default_widths)
        for s, p in self._width_params:
            v = values.get(p.name, _MISSING)
            widths[s] = v if v in p.choices else self._value(values, p)
        return self._finish(tuple(ops), tuple(widths), values)

    def _finish(self, ops: tuple[str, ...], widths: tuple[int, ...], values: dict[str, Any]) -> Candidate:
        """Cuts, fusion and bottleneck from `values`, around already chosen ops and widths."""
        cuts: list[int] = []
        for names, domain in self._cut_groups:
            group = [self._value(values, Param(n, domain)) if len(domain) > 1 else domain[0] for n in names]
            cuts += sorted(group)
        fuse = None
        if self._fuse is not None:
            fuse = self._value(values, self._fuse) if len(self._fuse.choices) > 1 else self._fuse.choices[0]
            assert self._placement is not None
            on_aggregator = self._value(values, self._placement) == "aggregator"
            cuts = [-1 if on_aggregator else fuse]  # aggregator: every sensor sends its raw view
        return Candidate(
            ops=ops,
            widths=widths,
            cuts=tuple(cuts),
            bottleneck_width=self._value(values, self._bottleneck),
            bits=self._value(values, self._bits),
            fuse_after=fuse,
        )

    @staticmethod
    def _value(values: dict[str, Any], p: Param) -> Any:
        if len(p.choices) == 1:
            return values.get(p.name, p.choices[0])
        if p.name not in values:
            raise SpecError("missing parameter", field=p.name, allowed=list(p.choices))
        v = values[p.name]
        if v not in p.choices:
            raise SpecError("value not among the choices", field=p.name, value=v, allowed=list(p.choices))
        return v

    def values(self, candidate: Candidate) -> dict[str, Any]:
        """Parameter values that give back `candidate` (inverse of `candidate`)."""
        out: dict[str, Any] = {}
        for index, p in self._layer_params:
            out[p.name] = candidate.ops[index]
        for s, p in self._width_params:
            out[p.name] = candidate.widths[s]
        pos = 0
        for names, domain in self._cut_groups:
            for n in names:
                if len(domain) > 1:
                    out[n] = candidate.cuts[pos]
                pos += 1
        if self._fuse is not None and len(self._fuse.choices) > 1:
            out[self._fuse.name] = candidate.fuse_after
        if self._placement is not None and len(self._placement.choices) > 1:
            out[self._placement.name] = "aggregator" if candidate.cuts == (-1,) else "sensors"
        for p, v in ((self._bottleneck, candidate.bottleneck_width), (self._bits, candidate.bits)):
            if len(p.choices) > 1:
                out[p.name] = v
        return out

    def validate(self, candidate: Candidate) -> Candidate:
        """Check a hand-written candidate against the space; returns it unchanged."""
        layers, stages = self.macro.layers, self.macro.stages
        if len(candidate.ops) != len(layers):
            raise SpecError(f"candidate needs {len(layers)} ops", field="ops", value=len(candidate.ops))
        if len(candidate.widths) != len(stages):
            raise SpecError(
                f"candidate needs {len(stages)} widths", field="widths", value=len(candidate.widths)
            )
        n_cuts = 1 if self._fuse is not None else sum(len(names) for names, _ in self._cut_groups)
        if len(candidate.cuts) != n_cuts:
            raise SpecError(f"candidate needs {n_cuts} cut(s)", field="cuts", value=list(candidate.cuts))
        checks: list[tuple[str, str | int, tuple[str | int, ...]]] = [
            (f"{layer.name}.op", op, layer.choices) for layer, op in zip(layers, candidate.ops, strict=True)
        ]
        checks += [(f"{st.name}.width", w, st.widths) for st, w in zip(stages, candidate.widths, strict=True)]
        for field, value, allowed in checks:
            if value not in allowed:
                raise SpecError(
                    "value not among the choices", field=field, value=value, allowed=list(allowed)
                )
        if self._fuse is not None and self._placement is not None:
            allowed_cuts = {
                "sensors": (candidate.fuse_after,),
                "aggregator": (-1,),
            }
            if candidate.cuts not in [allowed_cuts[p] for p in self._placement.choices]:
                raise SpecError(
                    "a multi-view candidate's cut is its fusion point (placement 'sensors') or -1 "
                    "(placement 'aggregator')",
                    field="cuts",
                    value=list(candidate.cuts),
                    allowed=list(self._placement.choices),
                )
        if self.candidate(self.values(candidate)) != candidate:
            raise SpecError("cuts must be sorted", field="cuts", value=list(candidate.cuts))
        return candidate

    # ------------------------------------------------------------- whole-space views

    def _axes(self) -> list[Sequence[Any]]:
        return [p.choices for _, p in self._layer_params] + [p.choices for _, p in self._width_params]

    def size(self) -> int:
        """Number of distinct candidates (cut orderings counted once)."""
        total = math.prod(len(a) for a in self._axes())
        for names, domain in self._cut_groups:
            total *= math.comb(len(domain) + len(names) - 1, len(names))
        if self._fuse is not None and self._placement is not None:
            total *= len(self._fuse.choices) * len(self._placement.choices)
        return total * len(self._bottleneck.choices) * len(self._bits.choices)

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Candidate]:
        """Every distinct candidate; refuses spaces larger than `limit`."""
        n = self.size()
        if n > limit:
            raise SpecError(
                f"space has {n:.3g} candidates, more than the enumeration limit {limit}",
                field="enumerate",
            )
        op_axes = [p.choices for _, p in self._layer_params]
        width_axes = [p.choices for _, p in self._width_params]
        cut_axes = [
            list(itertools.combinations_with_replacement(domain, len(names)))
            for names, domain in self._cut_groups
        ]
        fuse_axis = list(self._fuse.choices) if self._fuse is not None else [None]
        placement_axis = list(self._placement.choices) if self._placement is not None else [None]
        for combo in itertools.product(
            itertools.product(*op_axes),
            itertools.product(*width_axes),
            itertools.product(*cut_axes),
            fuse_axis,
            placement_axis,
            self._bottleneck.choices,
            self._bits.choices,
        ):
            ops_v, widths_v, cuts_v, fuse, placement, bw, bits = combo
            values: dict[str, Any] = {p.name: v for (_, p), v in zip(self._layer_params, ops_v, strict=True)}
            values.update({p.name: v for (_, p), v in zip(self._width_params, widths_v, strict=True)})
            for (names, _), group in zip(self._cut_groups, cuts_v, strict=True):
                values.update(dict(zip(names, group, strict=True)))
            if self._fuse is not None and self._placement is not None:
                values[self._fuse.name] = fuse
                values[self._placement.name] = placement
            values[self._bottleneck.name] = bw
            values[self._bits.name] = bits
            yield self.candidate(values)

    def sample(self, rng: random.Random) -> Candidate:
        """A uniformly random parameter assignment (no Optuna needed)."""
        draw = rng.random
        ops = list(self._default_ops)
        for index, choices, n in self._layer_draws:
            ops[index] = choices[int(draw() * n)]
        widths = list(self._default_widths)
        for s, p in self._width_params:
            widths[s] = p.choices[int(draw() * len(p.choices))]
        rest = {p.name: p.choices[int(draw() * len(p.choices))] for p in self._rest_params}
        return self._finish(tuple(ops), tuple(widths), rest)

    # ------------------------------------------------------------- populations (batched)

    def sample_batch(self, rng: np.random.Generator, n: int) -> CandidateBatch:
        """`n` candidates drawn as `sample` draws one (each parameter uniform, cuts sorted)."""
        self._batchable()
        ops = np.zeros((len(self.macro.layers), n), dtype=np.intp)
        for index, p in self._layer_params:
            ops[index] = rng.integers(len(p.choices), size=n)
        widths = np.zeros((len(self.macro.stages), n), dtype=np.intp)
        for s, p in self._width_params:
            widths[s] = rng.integers(len(p.choices), size=n)
        rows = []
        for names, domain in self._cut_groups:
            values = np.asarray(domain, dtype=np.int64)
            rows.append(np.sort(values[rng.integers(len(domain), size=(len(names), n))], axis=0))
        fuse = None
        if self._fuse is not None:
            fuse = np.asarray(self._fuse.choices, dtype=np.int64)[
                rng.integers(len(self._fuse.choices), size=n)
            ]
            rows = [fuse[None, :]]

        def pick(p: Param) -> np.ndarray:
            return np.asarray(p.choices, dtype=np.int64)[rng.integers(len(p.choices), size=n)]

        return CandidateBatch(
            ops=ops,
            widths=widths,
            cuts=np.vstack(rows) if rows else np.zeros((0, n), dtype=np.int64),
            bottleneck_width=pick(self._bottleneck),
            bits=pick(self._bits),
            fuse_after=fuse,
        )

    def _batchable(self) -> None:
        if self._placement is not None and "aggregator" in self._placement.choices:
            raise SpecError(
                "populations of an all-on-aggregator multi-view space are not built yet (the"
                " scalar path covers it)",
                field="fusion.placement",
                value=list(self._placement.choices),
                allowed="['sensors']",
            )

    def placement_names(self) -> tuple[str, ...]:
        """The parameters that place a candidate on the devices: its cuts (or fusion point and placement)."""
        names = [p.name for p in self.params() if p.name.startswith(("split", "fuse."))]
        return tuple(names)

    def placements(self, candidate: Candidate) -> CandidateBatch:
        """Every placement of `candidate`'s architecture: all cut combinations (or fusion
        points), ops, widths, bottleneck and bits kept."""
        self._batchable()
        if self._fuse is not None:
            rows = np.asarray(self._fuse.choices, dtype=np.int64)[None, :]
            fuse: np.ndarray | None = rows[0]
        else:
            groups = [
                list(itertools.combinations_with_replacement(domain, len(names)))
                for names, domain in self._cut_groups
            ]
            combos = [sum(parts, ()) for parts in itertools.product(*groups)]
            rows = np.asarray(combos, dtype=np.int64).reshape(len(combos), -1).T
            fuse = None
        n = rows.shape[1]
        one = CandidateBatch.from_candidates(self.macro, [candidate])
        return CandidateBatch(
            ops=np.repeat(one.ops, n, axis=1),
            widths=np.repeat(one.widths, n, axis=1),
            cuts=rows,
            bottleneck_width=np.full(n, candidate.bottleneck_width, dtype=np.int64),
            bits=np.full(n, candidate.bits, dtype=np.int64),
            fuse_after=fuse,
        )

    def enumerate_batches(self, chunk: int = 200_000) -> Iterator[CandidateBatch]:
        """Every distinct candidate (the set `enumerate` yields), `chunk` at a time, in the
        mixed-radix order of its axes: no limit, the caller bounds the time."""
        self._batchable()
        axes: list[tuple[str, Any, np.ndarray]] = []
        for index, p in self._layer_params:
            axes.append(("op", index, np.arange(len(p.choices))))
        for s, p in self._width_params:
            axes.append(("width", s, np.arange(len(p.choices))))
        for g, (names, domain) in enumerate(self._cut_groups):
            combos = list(itertools.combinations_with_replacement(domain, len(names)))
            axes.append(("cuts", g, np.asarray(combos, dtype=np.int64).reshape(len(combos), len(names))))
        if self._fuse is not None:
            axes.append(("fuse", 0, np.asarray(self._fuse.choices, dtype=np.int64)))
        axes.append(("bottleneck", 0, np.asarray(self._bottleneck.choices, dtype=np.int64)))
        axes.append(("bits", 0, np.asarray(self._bits.choices, dtype=np.int64)))
        total = self.size()
        n_layers, n_stages = len(self.macro.layers), len(self.macro.stages)
        for start in range(0, total, chunk):
            ids = np.arange(start, min(start + chunk, total), dtype=np.int64)
            n = len(ids)
            ops = np.zeros((n_layers, n), dtype=np.intp)
            widths = np.zeros((n_stages, n), dtype=np.intp)
            cut_rows: dict[int, np.ndarray] = {}
            fuse = None
            extra: dict[str, np.ndarray] = {}
            rest = ids
            for kind, where, values in reversed(axes):
                rest, digit = np.divmod(rest, len(values))
                if kind == "op":
                    ops[where] = digit
                elif kind == "width":
                    widths[where] = digit
                elif kind == "cuts":
                    cut_rows[where] = values[digit].T
                elif kind == "fuse":
                    fuse = values[digit]
                else:
                    extra[kind] = values[digit]
            rows = [cut_rows[g] for g in sorted(cut_rows)]
            if fuse is not None:
                rows = [fuse[None, :]]
            yield CandidateBatch(
                ops=ops,
                widths=widths,
                cuts=np.vstack(rows) if rows else np.zeros((0, n), dtype=np.int64),
                bottleneck_width=extra["bottleneck"],
                bits=extra["bits"],
                fuse_after=fuse,
            )

    def largest(self) -> Candidate:
        """Most MACs per layer choice and the widest widths; cuts at the last allowed point."""
        return self._extreme(max)

    def smallest(self) -> Candidate:
        return self._extreme(min)

    def _extreme(self, pick: Any) -> Candidate:
        values: dict[str, Any] = {}
        for _, p in self._width_params:
            values[p.name] = pick(p.choices)
        base = self.candidate({**self._first_values(), **values})
        for index, p in self._layer_params:
            costs = {}
            for choice in p.choices:
                trial_ops = list(base.ops)
                trial_ops[index] = choice
                net = build_network(self.macro, Candidate(tuple(trial_ops), base.widths))
                costs[choice] = net.macs
            values[p.name] = pick(p.choices, key=lambda c, costs=costs: costs[c])
        for p in self.params():
            values.setdefault(p.name, p.choices[-1] if pick is max else p.choices[0])
        return self.candidate(values)

    def _first_values(self) -> dict[str, Any]:
        return {p.name: p.choices[0] for p in self.params()}

    def network(self, candidate: Candidate) -> Network:
        return build_network(self.macro, candidate)
