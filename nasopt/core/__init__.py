"""The analytic core: candidates, op costs, the compiled space and its walk, compute models,
systems, evaluation (latency, memory, energy) and split optimisation.

No torch and no optuna here (a test checks it): samplers may call it for every proposal.
"""

from __future__ import annotations

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.macro import Macro, compile_space
from nasopt.core.network import Network, build_network
from nasopt.core.ops import LayerCost
from nasopt.core.system import Device, Link, System, build_system

__all__ = [
    "Candidate",
    "Device",
    "Evaluation",
    "LayerCost",
    "Link",
    "Macro",
    "Network",
    "System",
    "build_network",
    "build_system",
    "compile_space",
    "evaluate",
]
