"""nasopt: split-aware, multi-objective neural architecture search on Optuna.

Public API: presets (`load_space`, `load_objective`, `load_study`, `resolve`) and their models,
the search space (`SearchSpace`, `Candidate`), analytic costs (`compile_space`, `build_network`),
systems (`build_system`) and their evaluation (`evaluate`, `optimal_split`), accuracy
(`AccuracyEstimator`, `ProxyAccuracy`), the study objective (`NasObjective`), storages and
studies (`open_storage`, `create_or_resume`), the seeds' baselines of a study
(`compute_baselines`, `ensure_baselines`, `store_baselines`, `load_baselines`), the samplers
(`ASNGSampler`, `EvolutionSampler`, `ReinforceSampler`) and deployment (`extract`, `Subnet`,
`export_parts`, `retrain`, `run_split`, `SplitRunner`, and on-device measurement:
`profile_space`, `write_table`, `check_predictions`, `profile_and_check`, `time_export`); varying links
(`latency_distribution`) and Wang et al.'s model tree (`ModelTree`, `tree_layout`, `compose`,
`TreeProblem`).

Names that pull in Optuna are imported on first use, so `nasopt validate` and the analytic core
start fast; torch is imported only by the supernet estimator.
"""

from __future__ import annotations

import importlib
from typing import Any

from nasopt.accuracy import AccuracyEstimator, ProxyAccuracy
from nasopt.core import (
    Candidate,
    Evaluation,
    LayerCost,
    Macro,
    Network,
    System,
    build_network,
    build_system,
    compile_space,
    evaluate,
)
from nasopt.core.model_tree import ModelTree, compose, tree_layout
from nasopt.core.robust import LatencyDistribution, latency_distribution
from nasopt.core.split import SplitResult, optimal_split
from nasopt.errors import SpecError
from nasopt.presets import load_dashboard, load_objective, load_space, load_study, resolve
from nasopt.space import SearchSpace
from nasopt.spec import DashboardSpec, ObjectiveSpec, ResolvedStudy, SamplerSpec, SearchSpaceSpec, StudySpec

_LAZY = {  # these import optuna (and nasopt.deploy torch)
    "Subnet": "nasopt.deploy",
    "extract": "nasopt.deploy",
    "export_parts": "nasopt.deploy.export",
    "retrain": "nasopt.deploy.retrain",
    "profile_space": "nasopt.deploy.profile",
    "write_table": "nasopt.deploy.profile",
    "check_predictions": "nasopt.deploy.profile_check",
    "profile_and_check": "nasopt.deploy.profile_check",
    "time_export": "nasopt.deploy.profile_check",
    "NasObjective": "nasopt.study.objective",
    "open_storage": "nasopt.study.storage",
    "create_or_resume": "nasopt.study.lifecycle",
    "ASNGSampler": "nasopt.samplers",
    "EvolutionSampler": "nasopt.samplers",
    "ReinforceSampler": "nasopt.samplers",
    "BaselineSet": "nasopt.study.baselines",
    "compute_baselines": "nasopt.study.baselines",
    "ensure_baselines": "nasopt.study.baselines",
    "load_baselines": "nasopt.study.baselines",
    "store_baselines": "nasopt.study.baselines",
    "SplitRunner": "nasopt.deploy.runner",
    "run_split": "nasopt.deploy.runner",
    "TreeProblem": "nasopt.study.model_tree",
}

__all__ = [
    "ASNGSampler",
    "AccuracyEstimator",
    "BaselineSet",
    "Candidate",
    "DashboardSpec",
    "Evaluation",
    "EvolutionSampler",
    "LatencyDistribution",
    "LayerCost",
    "Macro",
    "ModelTree",
    "NasObjective",
    "Network",
    "ObjectiveSpec",
    "ProxyAccuracy",
    "ReinforceSampler",
    "ResolvedStudy",
    "SamplerSpec",
    "SearchSpace",
    "SearchSpaceSpec",
    "SpecError",
    "SplitResult",
    "SplitRunner",
    "StudySpec",
    "Subnet",
    "System",
    "TreeProblem",
    "build_network",
    "build_system",
    "check_predictions",
    "compile_space",
    "compose",
    "compute_baselines",
    "create_or_resume",
    "ensure_baselines",
    "evaluate",
    "export_parts",
    "extract",
    "latency_distribution",
    "load_baselines",
    "load_dashboard",
    "load_objective",
    "load_space",
    "load_study",
    "open_storage",
    "optimal_split",
    "profile_and_check",
    "profile_space",
    "resolve",
    "retrain",
    "run_split",
    "store_baselines",
    "time_export",
    "tree_layout",
    "write_table",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasopt' has no attribute {name!r}")
