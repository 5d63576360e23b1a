"""Semantic checks of a search space that pydantic cannot do (known ops, shapes, split points)."""

from __future__ import annotations

from nasopt.core.candidate import Candidate
from nasopt.core.macro import Macro, compile_space, split_point_domain
from nasopt.core.network import build_network
from nasopt.core.ops import BUILTIN_OPS
from nasopt.errors import SpecError
from nasopt.spec import SearchSpaceSpec


def check_space(spec: SearchSpaceSpec) -> Macro:
    """Semantic checks pydantic cannot do; raises SpecError naming the field."""
    known = sorted(set(BUILTIN_OPS) | set(spec.ops))
    for s, stage in enumerate(spec.stages):
        for i, layer in enumerate(stage.layers):
            where = f"stages[{s}].layers[{i}]"
            if (layer.op is None) == (layer.choices is None):
                raise SpecError("give exactly one of 'op' or 'choices'", field=where)
            names = [layer.op] if layer.op is not None else list(layer.choices or [])
            if not names:
                raise SpecError("'choices' must not be empty", field=f"{where}.choices")
            if len(set(names)) != len(names):
                raise SpecError("choices must not repeat", field=f"{where}.choices", value=names)
            for name in names:
                if name not in known:
                    key = "op" if layer.op is not None else "choices"
                    raise SpecError("unknown op", field=f"{where}.{key}", value=name, allowed=known)
    if sum(1 for stage in spec.stages if stage.parallel > 1) > 1:
        raise SpecError("at most one stage may have parallel > 1", field="stages")
    macro = compile_space(spec)
    n = len(macro.layers)
    if spec.split.points != "all":
        valid = set(split_point_domain(macro))
        for i, point in enumerate(spec.split.points):
            if point >= n:
                raise SpecError(
                    f"split point beyond the last layer (the space has {n} layers, 0..{n - 1})",
                    field=f"split.points[{i}]",
                    value=point,
                    allowed=f"-1..{n - 1}",
                )
            if point not in valid:
                raise SpecError(
                    "split point inside a parallel stage",
                    field=f"split.points[{i}]",
                    value=point,
                )
    if spec.fusion is not None:
        if macro.parallel_stage() is not None:
            raise SpecError("multi-view fusion and parallel stages cannot be combined", field="fusion")
        if spec.fusion.points != "all":
            for i, point in enumerate(spec.fusion.points):
                if point >= n - 1:
                    raise SpecError(
                        "fusion point must leave at least one layer after it",
                        field=f"fusion.points[{i}]",
                        value=point,
                        allowed=f"0..{n - 2}",
                    )
    # every choice must produce a valid shape for every width combination's smallest case
    smallest = Candidate(
        ops=tuple(layer.choices[0] for layer in macro.layers),
        widths=tuple(min(stage.widths) for stage in macro.stages),
    )
    try:
        build_network(macro, smallest)
    except ValueError as exc:
        raise SpecError(str(exc), field="stages") from None
    return macro
