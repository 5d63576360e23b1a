"""Studies on Optuna: the objective, storages, lifecycle and budgets, sweeps and Pareto fronts."""
