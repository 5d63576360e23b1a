"""nasopt: split-aware, multi-objective neural architecture search on Optuna.

Public API: presets (`load_space`, `load_objective`, `load_study`), the search space
(`SearchSpace`, `Candidate`), analytic costs (`build_network`, `compile_space`), systems
(`build_system`) and their evaluation (`evaluate`, `optimal_split`).
"""

from nasopt.candidate import Candidate
from nasopt.errors import SpecError
from nasopt.latency import Evaluation, evaluate
from nasopt.network import LayerCost, Network, build_network, compile_space
from nasopt.space import SearchSpace
from nasopt.specs import load_objective, load_space, load_study
from nasopt.system import System, build_system

__all__ = [
    "Candidate",
    "Evaluation",
    "LayerCost",
    "Network",
    "SearchSpace",
    "SpecError",
    "System",
    "build_network",
    "build_system",
    "compile_space",
    "evaluate",
    "load_objective",
    "load_space",
    "load_study",
]
__version__ = "0.1.0"
