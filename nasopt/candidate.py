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
        return cls(
            ops=tuple(data.get("ops", ())),
            widths=tuple(int(w) for w in data.get("widths", ())),
            cuts=tuple(sorted(int(c) for c in data.get("cuts", ()))),
            bottleneck_width=int(data.get("bottleneck_width", 0)),
            bits=int(data.get("bits", 32)),
            fuse_after=None if data.get("fuse_after") is None else int(data["fuse_after"]),
        )
