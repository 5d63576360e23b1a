"""nasopt's Optuna samplers: ASNG, constrained evolution and REINFORCE.

Each is a plain `optuna.samplers.BaseSampler`: use it in any Optuna study. State is derived from
the study in the storage (replayed updates, per-trial seeds), so several workers on one storage,
or a resumed study, behave as one run.
"""

from nasopt.samplers._asng import ASNGSampler
from nasopt.samplers._evolution import EvolutionSampler
from nasopt.samplers._reinforce import ReinforceSampler

__all__ = ["ASNGSampler", "EvolutionSampler", "ReinforceSampler"]
