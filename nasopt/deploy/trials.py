"""A stored study's trial as what deployment starts from: its candidate, the study's trained
supernet estimator and its system."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from nasopt.accuracy.supernet import SupernetAccuracy
from nasopt.core.candidate import Candidate
from nasopt.core.system import System, build_system
from nasopt.deploy._subnet import Subnet, extract
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ResolvedStudy, SupernetSpec
from nasopt.study.lifecycle import load


@dataclass
class StudyTrial:
    study_name: str
    trial: FrozenTrial
    candidate: Candidate
    resolved: ResolvedStudy
    space: SearchSpace
    system: System

    def estimator(self, base_dir: Path | None = None) -> SupernetAccuracy:
        """The study's supernet estimator (its checkpoint found relative to `base_dir`, as
        `nasopt run` wrote it); a study without one is refused."""
        accuracy = self.resolved.study.accuracy
        if not isinstance(accuracy, SupernetSpec):
            raise SpecError(
                "this study has no supernet to take weights from",
                field="accuracy.estimator",
                value=accuracy.estimator,
                allowed="supernet",
            )
        return SupernetAccuracy(self.space, accuracy, base_dir=base_dir)

    def extract(self, base_dir: Path | None = None) -> tuple[Subnet, SupernetAccuracy]:
        est = self.estimator(base_dir)
        return extract(est, self.candidate), est


def completed_trials(storage: BaseStorage, study_name: str) -> list[FrozenTrial]:
    study, _ = load(storage, study_name)
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def study_trial(storage: BaseStorage, study_name: str, number: int) -> StudyTrial:
    """Trial `number` of a stored nasopt study (it must have completed)."""
    study, resolved = load(storage, study_name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    trial = trials.get(number)
    if trial is None or trial.state != TrialState.COMPLETE:
        done = sorted(n for n, t in trials.items() if t.state == TrialState.COMPLETE)
        shown = ", ".join(map(str, done[:20])) + (" ..." if len(done) > 20 else "")
        raise SpecError(
            "no completed trial with this number", field="--trial", value=number, allowed=shown or "(none)"
        )
    raw = trial.user_attrs.get("candidate")
    if not isinstance(raw, dict):
        raise SpecError("trial has no stored candidate", field="--trial", value=number)
    system = build_system(resolved.objective)
    space = SearchSpace(resolved.space, system)
    return StudyTrial(study_name, trial, Candidate.from_dict(raw), resolved, space, system)
