"""Accuracy of a candidate: the estimator protocol, the analytic proxy, data and the supernet.

`nasopt.accuracy.supernet` (PyTorch) is imported only by the estimators that need it.
"""

from __future__ import annotations

from nasopt.accuracy.estimator import AccuracyEstimator, make_estimator
from nasopt.accuracy.proxy import ProxyAccuracy

__all__ = ["AccuracyEstimator", "ProxyAccuracy", "make_estimator"]
