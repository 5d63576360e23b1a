"""The Optuna objective of a study: candidate -> metrics, constraints and dashboard attributes.

Constraints reach Optuna as the legacy `"constraints"` list system attribute, written once by
the objective itself (no `constraints_func`, so nothing is counted twice): Optuna's samplers and
`study.best_trials` read it, and so does optuna-dashboard 0.21, which ignores the newer
`constraints:<key>` form. Values are relative violations (<= 0 is feasible) so that bytes,
milliseconds and accuracy add up on one scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasopt.accuracy import AccuracyEstimator, make_estimator
from nasopt.core.batched import BatchEvaluator, CandidateBatch
from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.network import Network
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec, StudySpec
from nasopt.study.storage import write_trial_attrs

if TYPE_CHECKING:
    import optuna

METRICS: dict[str, str] = {
    "error": "1 - top-1 accuracy",
    "accuracy": "top-1 accuracy",
    "latency_ms": "end-to-end latency",
    "energy_mj": "energy of compute and transfers",
    "macs": "multiply-accumulates of the whole network",
    "params": "parameters of the whole network",
    "sent_bytes": "bytes sent over all links",
    "memory_bytes": "largest per-device peak memory",
}
CONSTRAINTS_KEY = "constraints"  # Optuna's legacy list form, read by samplers and the dashboard


def check_metrics(objective: ObjectiveSpec) -> None:
    """Every `[[objectives]] name` is a metric nasopt computes (`nasopt validate` checks an
    objective file on its own with this, so it does not first fail inside a study)."""
    for i, metric in enumerate(objective.objectives):
        if metric.name not in METRICS:
            raise SpecError(
                "unknown metric", field=f"objectives[{i}].name", value=metric.name, allowed=list(METRICS)
            )


@dataclass
class TrialResult:
    """Everything the objective computed for one candidate."""

    candidate: Candidate
    network: Network
    evaluation: Evaluation
    accuracy: float
    metrics: dict[str, float]
    constraints: list[float]


class NasObjective:
    """Callable Optuna objective built from a study's resolved specs."""

    def __init__(
        self,
        study: StudySpec,
        space: SearchSpaceSpec,
        objective: ObjectiveSpec,
        *,
        estimator: AccuracyEstimator | None = None,
        split_params: bool = True,
    ) -> None:
        self.study_spec = study
        self.objective_spec = objective
        self.system: System = build_system(objective)
        self.space = SearchSpace(space, self.system, split_params=split_params)
        self.estimator = estimator or make_estimator(study, self.space)
        self._batch_evaluator: BatchEvaluator | None = None
        if self.optimal_split:
            self.batch_evaluator()  # a system the batched model cannot place is refused here, not mid-study
        check_metrics(objective)
        self.metric_names = [m.name for m in objective.objectives]
        self.directions = [m.direction for m in objective.objectives]
        self.loss_rate = max((link.loss_rate for link in self.system.links.values()), default=0.0)
        c = objective.constraints
        self.constraint_names: list[str] = []
        if c.memory:
            self.constraint_names += [
                f"memory:{name}" for name, dev in self.system.devices.items() if dev.memory_bytes is not None
            ]
        if c.latency_ms is not None:
            self.constraint_names.append("latency_ms")
        if c.energy_mj is not None:
            self.constraint_names.append("energy_mj")
        if c.accuracy_min is not None:
            self.constraint_names.append("accuracy_min")

    def evaluate(self, candidate: Candidate) -> TrialResult:
        network = self.space.network(candidate)
        return self.score(candidate, network, evaluate(network, self.system))

    def score(
        self, candidate: Candidate, network: Network, ev: Evaluation, *, loss_rate: float | None = None
    ) -> TrialResult:
        """Accuracy, metrics and constraints of `candidate` placed as `ev` (which may come from
        another system than the study's, e.g. one device alone for a baseline)."""
        loss = self.loss_rate if loss_rate is None else loss_rate
        acc = self.estimator.accuracy(candidate, network, loss)
        metrics = {
            "error": 1.0 - acc,
            "accuracy": acc,
            "latency_ms": ev.latency_ms,
            "energy_mj": ev.energy_j * 1e3,
            "macs": float(network.macs),
            "params": float(network.params),
            "sent_bytes": float(sum(ev.sent_bytes.values())),
            "memory_bytes": float(max(ev.memory_bytes.values(), default=0)),
        }
        constraints = self._constraint_values(metrics, ev.memory_bytes)
        return TrialResult(candidate, network, ev, acc, metrics, constraints)

    @property
    def optimal_split(self) -> bool:
        """True when the study places every candidate at its best cuts (`split = "optimal"`)."""
        return self.study_spec.split == "optimal"

    def distributions(self) -> dict[str, Any]:
        """The parameters the sampler searches: all of them, or the architecture only when the
        split is solved inside the objective."""
        dists = self.space.distributions()
        if self.optimal_split:
            for name in self.space.placement_names():
                dists.pop(name, None)
        return dists

    def candidate_of(self, params: dict[str, Any]) -> Candidate:
        """The candidate a trial's parameters stand for (placed optimally when the study says so)."""
        return self.candidates_of([params])[0]

    def candidates_of(self, params_list: list[dict[str, Any]]) -> list[Candidate]:
        """`candidate_of` of each parameter set; optimal placements found in one batched call."""
        if not self.optimal_split:
            return [self.space.candidate(params) for params in params_list]
        placement = self.space.placement_names()
        first = {p.name: p.choices[0] for p in self.space.params() if p.name in placement}
        return self.place_many([self.space.candidate({**first, **params}) for params in params_list])

    def place(self, candidate: Candidate) -> Candidate:
        """`candidate` at its best placement by `split_metric` among those meeting every memory
        cap (all placements if none does), scored with the batched analytic model."""
        return self.place_many([candidate])[0]

    def place_many(self, candidates: list[Candidate]) -> list[Candidate]:
        """`place` of each candidate, every placement of all of them scored in one batched call."""
        batches = [self.space.placements(c) for c in candidates]
        ev = self.batch_evaluator().evaluate(CandidateBatch.concat(batches))
        metric = ev.latency_s if self.study_spec.split_metric == "latency_ms" else ev.energy_j
        ok = ev.feasible()
        placed, start = [], 0
        for batch in batches:
            end = start + len(batch)
            fits = np.flatnonzero(ok[start:end])
            pool = fits if len(fits) else np.arange(len(batch))
            placed.append(batch.candidate(self.space.macro, int(pool[np.argmin(metric[start:end][pool])])))
            start = end
        return placed

    def batch_evaluator(self) -> BatchEvaluator:
        """The batched analytic model of this space on this system (tables built once, on first
        use); SpecError where only the scalar model covers the space."""
        if self._batch_evaluator is None:
            self._batch_evaluator = BatchEvaluator(self.space.macro, self.system)
        return self._batch_evaluator

    def evaluate_batch(self, batch: CandidateBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`evaluate` over a population: every metric as an array, and the constraint values
        as rows (same order and meaning as `constraint_names`). Needs an estimator with a
        batched form (the analytic proxy); a supernet scores one candidate at a time."""
        accuracy_batch = getattr(self.estimator, "accuracy_batch", None)
        if accuracy_batch is None:
            raise SpecError(
                f"the {self.estimator.name} estimator scores one candidate at a time; batched and"
                " exact evaluation need an analytic accuracy",
                field="accuracy.estimator",
                value=self.estimator.name,
                allowed="analytic-proxy",
            )
        ev = self.batch_evaluator().evaluate(batch)
        acc = accuracy_batch(ev, self.loss_rate)
        zero = np.zeros(len(batch))
        metrics = {
            "error": 1.0 - acc,
            "accuracy": acc,
            "latency_ms": ev.latency_ms,
            "energy_mj": ev.energy_j * 1e3,
            "macs": ev.network_macs.astype(float),
            "params": ev.network_params.astype(float),
            "sent_bytes": sum(ev.sent_bytes.values(), zero),
            "memory_bytes": np.max(np.vstack(list(ev.memory_bytes.values())), axis=0).astype(float),
        }
        rows = self._constraint_values(metrics, ev.memory_bytes)
        return metrics, np.vstack(rows) if rows else np.zeros((0, len(batch)))

    def _constraint_values(self, metrics: dict[str, Any], memory_bytes: dict[str, Any]) -> list[Any]:
        """Relative violations (<= 0: feasible) in `constraint_names` order; the metrics may be
        numbers (one candidate) or arrays (a population)."""
        c = self.objective_spec.constraints
        out: list[Any] = []
        for name in self.constraint_names:
            if name.startswith("memory:"):
                dev = name.split(":", 1)[1]
                cap = self.system.devices[dev].memory_bytes
                assert cap is not None
                out.append((memory_bytes.get(dev, 0) - cap) / cap)
            elif name == "latency_ms":
                out.append((metrics["latency_ms"] - c.latency_ms) / c.latency_ms)
            elif name == "energy_mj":
                out.append((metrics["energy_mj"] - c.energy_mj) / c.energy_mj)
            else:
                out.append(c.accuracy_min - metrics["accuracy"])
        return out

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, ...]:
        if self.optimal_split:
            candidate = self.place(self.space.suggest(trial, skip=self.space.placement_names()))
        else:
            candidate = self.space.suggest(trial)
        result = self.evaluate(candidate)
        for name in self.metric_names:
            if not math.isfinite(result.metrics[name]):
                raise SpecError(
                    f"objective {name} is not finite ({result.metrics[name]}) for {candidate.to_dict()}; "
                    "the objective's numbers overflow",
                    field="objectives",
                )
        write_trial_attrs(
            trial.study._storage,
            trial._trial_id,
            self.user_attrs(result),
            {CONSTRAINTS_KEY: result.constraints},
        )
        return tuple(result.metrics[name] for name in self.metric_names)

    def user_attrs(self, result: TrialResult) -> dict[str, Any]:
        """What a person needs in optuna-dashboard: breakdowns, memory, the architecture."""
        ev = result.evaluation
        attrs: dict[str, Any] = {
            "accuracy": result.accuracy,
            "accuracy_estimator": self.estimator.name,
            "latency_ms": ev.latency_ms,
            "energy_mj": result.metrics["energy_mj"],
            "macs": int(result.network.macs),
            "params": int(result.network.params),
            "feasible": all(v <= 0 for v in result.constraints),
            "split": split_description(result.network, ev),
            "arch": arch_string(self.space, result.candidate),
            "candidate": result.candidate.to_dict(),
        }
        if self.optimal_split:
            attrs["split_solved"] = self.study_spec.split_metric  # cuts chosen by the objective
        for dev, t in ev.compute_s.items():
            attrs[f"compute_ms:{dev}"] = t * 1e3
        for link, t in ev.transfer_s.items():
            attrs[f"transfer_ms:{link}"] = t * 1e3
            attrs[f"sent_bytes:{link}"] = ev.sent_bytes[link]
        for dev, used in ev.memory_bytes.items():
            attrs[f"memory_bytes:{dev}"] = used
        for name, value in zip(self.constraint_names, result.constraints, strict=True):
            attrs[f"violation:{name}"] = value
        return attrs


def split_description(network: Network, ev: Evaluation) -> str:
    """e.g. `sensor[layer00..layer05] -> 25,088 B -> aggregator[layer06..layer20]`."""
    parts: list[str] = []
    current: str | None = None
    first = last = ""
    for layer, device in zip(network.layers, ev.placement, strict=True):
        if device != current:
            if current is not None:
                parts.append(f"{current}[{first}..{last}]")
            current, first = device, layer.name
        last = layer.name
    if current is not None:
        parts.append(f"{current}[{first}..{last}]")
    sent = ", ".join(f"{name} {b:,.0f} B" for name, b in ev.sent_bytes.items())
    return " | ".join(parts) + (f" ; sent: {sent}" if sent else "")


def arch_string(space: SearchSpace, candidate: Candidate) -> str:
    """One line: searched ops, widths, cuts, bottleneck and bits."""
    ops = [candidate.ops[i] for i in space.searched_layers]
    text = " ".join(ops) if ops else "fixed"
    if space.searched_stages:
        text += " | w=" + ",".join(str(candidate.widths[s]) for s in space.searched_stages)
    if candidate.cuts:
        text += " | cut@" + ",".join(str(c) for c in candidate.cuts)
    if candidate.fuse_after is not None:
        text += f" | fuse@{candidate.fuse_after}"
    if candidate.bottleneck_width:
        text += f" | d={candidate.bottleneck_width}"
    return text + f" | {candidate.bits}b"
