"""A search space compiled for the cost model and the supernet: layers, stages, cut and fusion
domains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasopt.core.ops import BUILTIN_OPS
from nasopt.spec import OpSpec, SearchSpaceSpec


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
    # a candidate's structure -> its walk (see nasopt.core.walk)
    walk_cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def views(self) -> int:
        return self.spec.fusion.views if self.spec.fusion else 1

    def parallel_stage(self) -> int | None:
        """Index of the stage with parallel branches, if any."""
        return next((i for i, stage in enumerate(self.stages) if stage.parallel > 1), None)


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


def split_point_domain(macro: Macro) -> list[int]:
    """Layer indices after which a cut can fall: -1 and every layer outside parallel branches
    except the last layer of each branch but the last one (the merged output is after it)."""
    points = [-1]
    p = macro.parallel_stage()
    inside = set(macro.stages[p].layers[:-1]) if p is not None else set()
    points += [layer.index for layer in macro.layers if layer.index not in inside]
    return points


def cut_domain(macro: Macro) -> tuple[int, ...]:
    """The split points a cut of this space may take: `split_point_domain` less those the
    space's `split.points` leaves out."""
    points = macro.spec.split.points
    domain = split_point_domain(macro)
    if points == "all":
        return tuple(domain)
    allowed = set(points)
    return tuple(p for p in domain if p in allowed)


def fuse_domain(macro: Macro) -> tuple[int, ...]:
    """The layers after which multi-view features may be fused (empty: single view)."""
    fusion = macro.spec.fusion
    if fusion is None:
        return ()
    return tuple(range(len(macro.layers) - 1)) if fusion.points == "all" else tuple(fusion.points)
