"""Optuna's own generic sampler tests (`optuna.testing.pytest_samplers`, imported from the
installed optuna package, not copied) run against nasopt's samplers, the way Optuna's
tests/samplers_tests and OptunaHub's sampler packages use that module: one test class per
sampler mixing in the test-case classes, with a `sampler` fixture.

Configurations: BasicSamplerTestCase and RelativeSamplerTestCase are single-objective,
MultiObjectiveSamplerTestCase multi-objective; ASNG also runs with its scalar utility and
without re-draws. ASNG and evolution model integer and float parameters themselves, REINFORCE
leaves them to its independent sampler, so both paths are exercised. No test is excluded.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)

from nasopt.samplers import ASNGSampler, EvolutionSampler, ReinforceSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestASNGSampler(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ASNGSampler(seed=0)


class TestASNGSamplerScalarUtility(BasicSamplerTestCase, RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ASNGSampler(seed=0, utility="scalar", redraw=0)


class TestEvolutionSampler(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: EvolutionSampler(seed=0, population_size=2)


class TestReinforceSampler(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ReinforceSampler(seed=0)
