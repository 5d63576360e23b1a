"""The `AccuracyEstimator` protocol and the factory that picks a study's estimator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nasopt.core.candidate import Candidate
from nasopt.core.network import Network
from nasopt.spec import ProxyAccuracySpec, StudySpec

if TYPE_CHECKING:
    from nasopt.space import SearchSpace


@runtime_checkable
class AccuracyEstimator(Protocol):
    """Top-1 accuracy in [0, 1] of a candidate, given its network and the link loss rate."""

    name: str

    def accuracy(self, candidate: Candidate, network: Network, loss_rate: float) -> float: ...


def make_estimator(study: StudySpec, space: SearchSpace) -> AccuracyEstimator:
    """The accuracy estimator a study spec asks for (`[accuracy] estimator = ...`); the options
    were validated by the spec model (`nasopt.spec.AccuracySpec`)."""
    spec = study.accuracy
    if isinstance(spec, ProxyAccuracySpec):
        from nasopt.accuracy.proxy import ProxyAccuracy

        return ProxyAccuracy(space, floor=spec.floor, ceiling=spec.ceiling, loss_penalty=spec.loss_penalty)
    # lazy: torch is imported, and the checkpoint loaded, on first use
    from nasopt.accuracy.supernet import SupernetAccuracy

    return SupernetAccuracy(space, spec)
