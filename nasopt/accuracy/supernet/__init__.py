"""Shared-weight accuracy estimation: a supernet per search space, trained once per study.

Public: `Supernet` (elastic modules run for an explicit Candidate), `SupernetAccuracy` (the
`AccuracyEstimator`), `SupernetConfig` (the study's `[accuracy]` table), `train_supernet`,
`CheckpointError` and `prepare_study` (train or reuse the checkpoint a study needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasopt.accuracy.supernet._config import SupernetConfig
from nasopt.accuracy.supernet._estimator import SupernetAccuracy
from nasopt.accuracy.supernet._net import Supernet
from nasopt.accuracy.supernet._ops import RunContext, packet_loss, quantise
from nasopt.accuracy.supernet._train import CheckpointError, TrainResult, load_checkpoint, train_supernet

if TYPE_CHECKING:
    from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, StudySpec

__all__ = [
    "CheckpointError",
    "RunContext",
    "Supernet",
    "SupernetAccuracy",
    "SupernetConfig",
    "TrainResult",
    "load_checkpoint",
    "packet_loss",
    "prepare_study",
    "quantise",
    "train_supernet",
]


def prepare_study(
    study: StudySpec,
    space: SearchSpaceSpec,
    objective: ObjectiveSpec,
    *,
    progress: bool = True,
    retrain: bool = False,
) -> TrainResult | None:
    """Train the study's supernet, or check and reuse its cached checkpoint; None when the
    study does not use the supernet estimator."""
    if study.accuracy.estimator != "supernet":
        return None
    from nasopt.core.system import build_system
    from nasopt.space import SearchSpace

    est = SupernetAccuracy(SearchSpace(space, build_system(objective)), study.accuracy)
    return est.ensure_trained(progress=progress, retrain=retrain)
