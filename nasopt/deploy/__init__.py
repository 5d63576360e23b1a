"""From a Pareto front to deployment: extract a candidate from its supernet, export it per
device, retrain it, run the exported split.

The names below import torch on first use, so `nasopt serve-part` (onnxruntime only) starts
in a second instead of four."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasopt.deploy._subnet import Subnet, extract, load_subnet, save_subnet, validation_accuracy

__all__ = ["Subnet", "extract", "load_subnet", "save_subnet", "validation_accuracy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("nasopt.deploy._subnet"), name)
    raise AttributeError(f"module 'nasopt.deploy' has no attribute {name!r}")
