"""A candidate: one architecture with its placement choices, frozen so it can key caches."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    """Architecture and split choices of one trial.

    `ops` holds the chosen op name of every layer (in layer order), `widths` the output width of
    every stage, `cuts` the sorted layer indices after which the network moves to the next device
    (-1: before the first layer, the input itself is sent), `bottleneck_width` the Conv-Reduce
    width at the first cut (0: no bottleneck), `bits` the bit width of every transmitted feature
    and `fuse_after` the layer after which multi-view features are fused (None: single view).
    """

    ops: tuple[str, ...]
    widths: tuple[int, ...]
    cuts: tuple[int, ...] = ()
    bottleneck_width: int = 0
    bits: int = 32
    fuse_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ops"] = list(self.ops)
        data["widths"] = list(self.widths)
        data["cuts"] = list(self.cuts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        allowed = {"ops", "widths", "cuts", "bottleneck_width", "bits", "fuse_after"}
        unknown = set(data) - allowed
        if unknown:
            from nasopt.errors import SpecError

            raise SpecError("unknown candidate key", field=sorted(unknown)[0], allowed=sorted(allowed))
        from nasopt.errors import SpecError

        def ints(key: str) -> tuple[int, ...]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise SpecError("must be a list of integers", field=key, value=value)
            return tuple(value)

        def integer(key: str, default: int | None) -> int | None:
            value = data.get(key, default)
            if value is None and default is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpecError("must be an integer", field=key, value=value)
            return value

        ops = data.get("ops", [])
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise SpecError("must be a list of op names", field="ops", value=ops)
        return cls(
            ops=tuple(ops),
            widths=ints("widths"),
            cuts=ints("cuts"),
            bottleneck_width=integer("bottleneck_width", 0) or 0,
            bits=integer("bits", 32) or 32,
            fuse_after=integer("fuse_after", None),
        )
