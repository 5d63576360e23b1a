"""nasopt: split-aware, multi-objective neural architecture search on Optuna.

Public API: presets (`load_space`, `load_objective`, `load_study`), the search space
(`SearchSpace`, `Candidate`), analytic costs (`build_network`, `compile_space`), systems
(`build_system`) and their evaluation (`evaluate`, `optimal_split`), the study objective
(`NasObjective`, `AccuracyEstimator`, `ProxyAccuracy`), storages and studies (`open_storage`,
`create_or_resume`) and the samplers (`ASNGSampler`, `EvolutionSampler`, `ReinforceSampler`).
Names that pull in Optuna are imported on first use, so `nasopt validate` starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from nasopt.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.latency import Evaluation, evaluate
from nasopt.network import LayerCost, Network, build_network, compile_space
from nasopt.specs import load_objective, load_space, load_study
from nasopt.system import System, build_system

_LAZY = {
    "SearchSpace": "nasopt.space",
    "optimal_split": "nasopt.placement",
    "SplitResult": "nasopt.placement",
    "NasObjective": "nasopt.objective",
    "AccuracyEstimator": "nasopt.accuracy",
    "ProxyAccuracy": "nasopt.accuracy",
    "open_storage": "nasopt.storage",
    "create_or_resume": "nasopt.study",
    "ASNGSampler": "nasopt.samplers",
    "EvolutionSampler": "nasopt.samplers",
    "ReinforceSampler": "nasopt.samplers",
}

__all__ = [
    "ASNGSampler",
    "AccuracyEstimator",
    "Candidate",
    "Evaluation",
    "EvolutionSampler",
    "LayerCost",
    "NasObjective",
    "Network",
    "ProxyAccuracy",
    "ReinforceSampler",
    "SearchSpace",
    "SpecError",
    "SplitResult",
    "System",
    "build_network",
    "build_system",
    "compile_space",
    "create_or_resume",
    "evaluate",
    "load_objective",
    "load_space",
    "load_study",
    "open_storage",
    "optimal_split",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasopt' has no attribute {name!r}")
