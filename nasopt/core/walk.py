"""The one walk of a compiled space: the order in which a candidate's layers run, where its cuts,
bottleneck and View-Fuse fall. The cost model (`build_network`), the supernet's allocation and
its forward pass all consume it, so they cannot disagree.

`walk(macro, candidate)` gives the steps of one candidate (the candidate itself gives each
layer's op and width); `walk(macro, None)` the plan of the whole space: every layer with all its
choices at the widest width, a possible cut at every split
point (with a bottleneck where the space has one) and a possible View-Fuse at every fusion point,
which is what the supernet allocates weights for.

>>> from nasopt.presets import load_space
>>> from nasopt.space import SearchSpace
>>> space = SearchSpace(load_space("mbconv-jmsnas-32"))
>>> steps = walk(space.macro, space.largest())
>>> sum(isinstance(s, LayerStep) for s in steps) == len(space.macro.layers)
True
"""

from __future__ import annotations

from dataclasses import dataclass

from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, MacroLayer, StageInfo, cut_domain, fuse_domain


@dataclass(frozen=True, slots=True)
class CutStep:
    """A cut after layer `point` (-1: before the first layer, the input is sent)."""

    point: int
    # cuts at this point: the devices between equal cuts relay the feature; 0: no cut, only the
    # multi-view Conv-Reduce before the fusion (the per-view layers run on the aggregator)
    copies: int
    bottleneck: bool  # Conv-Reduce here (and Conv-Recover on the next device, single-view)
    tap: bool  # inside the layer's MBConv, right after its depthwise conv (NASC's extension)


@dataclass(frozen=True, slots=True, eq=False)
class LayerStep:
    """One layer; the candidate gives its op (`candidate.ops[layer.index]`) and stage width
    (`candidate.widths[layer.stage]`), the plan runs every choice at the widest width."""

    layer: MacroLayer
    cut: CutStep | None = None
    fuse: bool = False  # View-Fuse right after this layer (and its cut)


@dataclass(frozen=True, slots=True, eq=False)
class ParallelStep:
    """A parallel stage: every branch runs from the same input, then the branches merge."""

    stage: StageInfo
    branches: tuple[tuple[LayerStep, ...], ...]
    cut: CutStep | None = None  # after the merge; never a bottleneck there


Step = CutStep | LayerStep | ParallelStep
_CACHE_LIMIT = 100_000  # walks kept per space; a walk is a list of shared step objects


def walk(macro: Macro, candidate: Candidate | None) -> list[Step]:
    """The steps of `candidate` in execution order, or the plan of the whole space (None).

    A walk depends only on the candidate's structure (cuts, fusion point, whether it has a
    bottleneck, whether each cut layer's op splits at its depthwise tap), so walks are cached
    per structure and share their uncut steps: the cost model calls this for every candidate."""
    if candidate is None:
        return _plan(macro)
    cuts = candidate.cuts
    op_of = macro.ops
    ops = candidate.ops
    taps = tuple(c >= 0 and op_of[ops[c]].split_tap == "depthwise" for c in cuts)
    key = (cuts, candidate.fuse_after, candidate.bottleneck_width > 0, taps)
    cache = macro.walk_cache
    steps = cache.get(key)
    if steps is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        steps = cache[key] = _walk(
            macro, cuts, candidate.fuse_after, key[2], dict(zip(cuts, taps, strict=True))
        )
    return steps


def _walk(
    macro: Macro, cuts: tuple[int, ...], fuse_after: int | None, neck: bool, tap_at: dict[int, bool]
) -> list[Step]:
    first = cuts[0] if cuts else None
    # the bottleneck: at the first cut; multi-view at the fusion point, wherever the cut is
    neck_at = fuse_after if fuse_after is not None else first
    plain = _plain_steps(macro)
    steps: list[Step] = []
    if first == -1:
        steps.append(CutStep(-1, cuts.count(-1), neck and neck_at == -1, False))
    layers = macro.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        if i == macro.parallel_start:
            stage = macro.stages[layer.stage]
            last = stage.layers[-1]
            cut = CutStep(last, cuts.count(last), False, False) if last in cuts else None
            steps.append(ParallelStep(stage, _branches(macro, stage), cut))
            i = last + 1
            continue
        if i in cuts:
            cut = CutStep(i, cuts.count(i), neck and i == neck_at, tap_at[i])
            steps.append(LayerStep(layer, cut, fuse_after == i))
        elif fuse_after == i:
            steps.append(LayerStep(layer, CutStep(i, 0, True, False) if neck else None, True))
        else:
            steps.append(plain[i])
        i += 1
    return steps


def _plain_steps(macro: Macro) -> tuple[LayerStep, ...]:
    """One uncut, unfused step per layer, shared by every walk of the space."""
    plain = macro.walk_cache.get("plain")
    if plain is None:
        plain = macro.walk_cache["plain"] = tuple(LayerStep(layer) for layer in macro.layers)
    return plain


def _branches(macro: Macro, stage: StageInfo) -> tuple[tuple[LayerStep, ...], ...]:
    """The plain steps of each branch of a parallel stage, in branch order."""
    plain = _plain_steps(macro)
    return tuple(
        tuple(plain[li] for li in stage.layers if macro.layers[li].branch == b)
        for b in range(1, stage.parallel + 1)
    )


def _plan(macro: Macro) -> list[Step]:
    spec = macro.spec
    neck = any(w != "none" for w in spec.bottleneck.widths)
    fusion = set(fuse_domain(macro))
    points = set(fusion) if spec.fusion is not None else set(cut_domain(macro))
    steps: list[Step] = []
    if -1 in points:
        steps.append(CutStep(-1, 1, neck, False))
    layers = macro.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        if i == macro.parallel_start:
            stage = macro.stages[layer.stage]
            steps.append(ParallelStep(stage, _branches(macro, stage)))
            i = stage.layers[-1] + 1
            continue
        cut = None
        if i in points:
            tap = any(macro.ops[o].split_tap == "depthwise" for o in layer.choices)
            cut = CutStep(i, 1, neck, tap)
        steps.append(LayerStep(layer, cut, i in fusion))
        i += 1
    return steps
