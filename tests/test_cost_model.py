"""The analytic cost model by hand: the op registry, the memory models, residual cuts, View-Pool,
all-on-aggregator multi-view placement and the transfer model."""

from __future__ import annotations

from nasopt.core.ops import OP_COSTS
from nasopt.spec import OP_TYPES


def test_every_op_kind_has_one_cost_function():
    assert set(OP_COSTS) == set(OP_TYPES)
