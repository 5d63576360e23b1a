"""The Optuna objective of a study: candidate -> metrics, constraints and dashboard attributes.

Constraints reach Optuna as the legacy `"constraints"` list system attribute, written once by
the objective itself (no `constraints_func`, so nothing is counted twice): Optuna's samplers and
`study.best_trials` read it, and so does optuna-dashboard 0.21, which ignores the newer
`constraints:<key>` form. Values are relative violations (<= 0 is feasible) so that bytes,
milliseconds and accuracy add up on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasopt.accuracy import AccuracyEstimator, make_estimator
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
    ) -> None:
        self.study_spec = study
        self.objective_spec = objective
        self.system: System = build_system(objective)
        self.space = SearchSpace(space, self.system)
        self.estimator = estimator or make_estimator(study, self.space)
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
        ev = evaluate(network, self.system)
        acc = self.estimator.accuracy(candidate, network, self.loss_rate)
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
        c = self.objective_spec.constraints
        constraints: list[float] = []
        for name in self.constraint_names:
            if name.startswith("memory:"):
                dev = name.split(":", 1)[1]
                cap = self.system.devices[dev].memory_bytes
                assert cap is not None
                constraints.append((ev.memory_bytes.get(dev, 0) - cap) / cap)
            elif name == "latency_ms":
                constraints.append((ev.latency_ms - c.latency_ms) / c.latency_ms)  # type: ignore[operator]
            elif name == "energy_mj":
                constraints.append((metrics["energy_mj"] - c.energy_mj) / c.energy_mj)  # type: ignore[operator]
            else:
                constraints.append(c.accuracy_min - acc)  # type: ignore[operator]
        return TrialResult(candidate, network, ev, acc, metrics, constraints)

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, ...]:
        candidate = self.space.suggest(trial)
        result = self.evaluate(candidate)
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
