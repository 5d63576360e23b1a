"""The `AccuracyEstimator` protocol and the factory that picks a study's estimator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nasopt.core.candidate import Candidate
from nasopt.core.network import Network
from nasopt.errors import SpecError
from nasopt.spec import StudySpec

if TYPE_CHECKING:
    from nasopt.space import SearchSpace


@runtime_checkable
class AccuracyEstimator(Protocol):
    """Top-1 accuracy in [0, 1] of a candidate, given its network and the link loss rate."""

    name: str

    def accuracy(self, candidate: Candidate, network: Network, loss_rate: float) -> float: ...


def make_estimator(study: StudySpec, space: SearchSpace) -> AccuracyEstimator:
    """The accuracy estimator a study spec asks for (`[accuracy] estimator = ...`)."""
    options = dict(study.accuracy)
    kind = options.pop("estimator", "analytic-proxy")
    if kind == "analytic-proxy":
        allowed = {"floor", "ceiling", "loss_penalty"}
        unknown = set(options) - allowed
        if unknown:
            raise SpecError(
                "unknown accuracy option", field=f"accuracy.{sorted(unknown)[0]}", allowed=sorted(allowed)
            )
        from nasopt.accuracy.proxy import ProxyAccuracy

        return ProxyAccuracy(space, **{k: float(v) for k, v in options.items()})
    if kind == "supernet":  # lazy: torch is imported, and the checkpoint loaded, on first use
        from nasopt.accuracy.supernet import SupernetAccuracy

        return SupernetAccuracy(space, study.accuracy)
    raise SpecError(
        "unknown accuracy estimator",
        field="accuracy.estimator",
        value=kind,
        allowed=["analytic-proxy", "supernet"],
    )
