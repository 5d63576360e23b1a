"""From a Pareto front to deployment: extract a candidate from its supernet, export it per
device, retrain it."""

from __future__ import annotations

from nasopt.deploy._subnet import Subnet, extract, load_subnet, save_subnet, validation_accuracy

__all__ = ["Subnet", "extract", "load_subnet", "save_subnet", "validation_accuracy"]
