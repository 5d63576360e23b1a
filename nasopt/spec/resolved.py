"""A study spec with its search space and objective loaded: everything a worker needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from nasopt.spec.files import parse_spec
from nasopt.spec.objective import ObjectiveSpec
from nasopt.spec.search_space import SearchSpaceSpec
from nasopt.spec.study import StudySpec


@dataclass(frozen=True)
class ResolvedStudy:
    """A study spec with its search space and objective loaded; stored with the study as JSON."""

    study: StudySpec
    space: SearchSpaceSpec
    objective: ObjectiveSpec

    def to_json(self) -> str:
        doc = {
            "study": self.study.model_dump(mode="json"),
            "space": self.space.model_dump(mode="json"),
            "objective": self.objective.model_dump(mode="json"),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str, source: str = "study") -> ResolvedStudy:
        doc = json.loads(text)
        return cls(
            study=parse_spec(StudySpec, doc["study"], source),
            space=parse_spec(SearchSpaceSpec, doc["space"], source),
            objective=parse_spec(ObjectiveSpec, doc["objective"], source),
        )

    def with_objective(self, objective: ObjectiveSpec) -> ResolvedStudy:
        return ResolvedStudy(self.study, self.space, objective)
