"""The seeds' baselines of a study, computed with the study's own estimator and cost model,
stored with the study and read back by `nasopt pareto --with-baselines`, the report and the
dashboard.

- `all-on-first` / `all-on-last`: a fixed reference network entirely on the first device (the
  sensor, the UE) or on the last one (the aggregator, the cloud; the raw input travels there);
  on a multi-view tree, all on the sensors (each runs the per-view layers up to the fusion
  point, SplitNets' "split at fusion"; the fused rest needs every view and runs on the root) or
  all on the aggregator (the raw views sent, the root runs the per-view layers once per view);
- `neurosurgeon`: the latency-optimal cut(s) of the same network under the memory caps, a cut
  allowed after any layer whatever the space's `split.points` (Neurosurgeon / DNN surgery,
  `nasopt.core.split.optimal_split`; on a tree the fusion point, from the fusion domain, split
  there or with everything on the aggregator);
- `nas-then-split`: NASC's "HWNAS" and SplitNets' two-step baseline: the architecture searched
  for the first device alone (no split parameters, no memory cap, same sampler, estimator and
  number of trials), then every member of that search's front placed optimally on the system
  at the space's split points (those the joint search may take), the placed networks left
  non-dominated kept; on a multi-view tree the one device is the aggregator running every view
  (the fusion point searched as architecture: where the views merge), each front network then
  placed at the best of the space's `fusion.placement` options at its own fusion point;
- `dynamic-surgery`: Wang et al.'s baseline: the reference network's optimal cut re-chosen at
  each of several bandwidths (every link scaled); only the point at scale 1 is on the study's
  system, the others say at which bandwidth they were computed.

All points live in one study user attr (`nasopt:baselines`, compressed JSON) with the options
that produced them, so views read them without recomputing.
"""

from __future__ import annotations

import base64
import json
import warnings
import zlib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna

from nasopt.core.baseline_systems import (
    first_device,
    input_path_system,
    last_device,
    scaled_bandwidth_system,
    single_device_system,
)
from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import evaluate
from nasopt.core.macro import Macro, fuse_domain, split_point_domain
from nasopt.core.network import build_network
from nasopt.core.pareto import nondominated
from nasopt.core.split import optimal_split
from nasopt.core.system import System
from nasopt.errors import SpecError
from nasopt.spec import ConstraintsSpec, ObjectiveSpec, ResolvedStudy, TopologySpec
from nasopt.study.objective import NasObjective, TrialResult
from nasopt.study.pareto import front, is_feasible

BASELINES_ATTR = "nasopt:baselines"
BASELINES: dict[str, str] = {
    "all-on-first": "the reference network entirely on the first device (multi-view: the per-view"
    " layers on the sensors)",
    "all-on-last": "the reference network entirely on the last device (the input is sent there)",
    "neurosurgeon": "the reference network at its latency-optimal cut(s) under the memory caps",
    "nas-then-split": "architecture searched for the first device alone (multi-view: the aggregator"
    " running every view), then placed optimally",
    "dynamic-surgery": "the reference network's optimal cut re-chosen at each bandwidth",
}
DEFAULT_BANDWIDTH_SCALES = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class BaselinePoint:
    """One baseline's network and placement, with the study's metrics for it."""

    baseline: str  # a key of BASELINES
    label: str
    candidate: dict[str, Any]
    values: dict[str, float]  # the study's objectives, by metric name
    fields: dict[str, Any]  # what a trial's user attrs hold (accuracy, latency_ms, split, arch, ...)
    feasible: bool
    bandwidth_scale: float = 1.0
    bandwidth_bps: float | None = None  # dynamic surgery: the slowest link's, after scaling

    @property
    def nominal(self) -> bool:
        """Evaluated on the study's own system (dynamic surgery at other bandwidths is not)."""
        return self.bandwidth_scale == 1.0


@dataclass
class BaselineSet:
    """Every baseline point of a study, the options that made them and what was left out."""

    reference: str
    options: dict[str, Any]
    points: list[BaselinePoint]
    skipped: dict[str, str] = field(default_factory=dict)  # baseline -> why it does not apply
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BaselineSet:
        doc = json.loads(text)
        points = [BaselinePoint(**p) for p in doc.pop("points")]
        return cls(points=points, **doc)


# ------------------------------------------------------------------ storage


def store_baselines(study: optuna.Study, baselines: BaselineSet) -> None:
    blob = base64.b64encode(zlib.compress(baselines.to_json().encode(), 9)).decode()
    study.set_user_attr(BASELINES_ATTR, blob)


def load_baselines(study: optuna.Study) -> BaselineSet | None:
    """The stored baselines of `study`, None if `nasopt baselines` has not run on it."""
    blob = study.user_attrs.get(BASELINES_ATTR)
    if blob is None:
        return None
    return BaselineSet.from_json(zlib.decompress(base64.b64decode(blob)).decode())


# ------------------------------------------------------------------ the reference network


def reference_candidate(
    objective: NasObjective, reference: str, study: optuna.Study | None = None
) -> Candidate:
    """`largest`, `smallest`, `trial:N` (a trial of `study`), a JSON candidate or `@file.json`;
    without bottleneck (a fixed network is placed, not compressed)."""
    space = objective.space
    if reference == "largest":
        cand = space.largest()
    elif reference == "smallest":
        cand = space.smallest()
    elif reference.startswith("trial:"):
        number = reference.split(":", 1)[1]
        trials = {} if study is None else {str(t.number): t for t in study.get_trials(deepcopy=False)}
        if number not in trials or "candidate" not in trials[number].user_attrs:
            raise SpecError(
                "no completed trial with that number", field="--reference", value=reference, allowed="trial:N"
            )
        cand = Candidate.from_dict(trials[number].user_attrs["candidate"])
    else:
        text = reference
        if reference.startswith("@"):
            path = Path(reference[1:])
            if not path.is_file():
                raise SpecError("no such file", file=reference[1:], field="--reference")
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise SpecError(
                "not a reference",
                field="--reference",
                value=reference,
                allowed="largest, smallest, trial:N, a JSON candidate, @file.json",
            ) from None
        if not isinstance(data, dict):
            raise SpecError("a JSON candidate must be an object", field="--reference", value=reference)
        data.setdefault("cuts", [])
        cand = Candidate.from_dict(data)
        if len(cand.ops) != len(space.macro.layers) or len(cand.widths) != len(space.macro.stages):
            raise SpecError(
                f"the candidate needs {len(space.macro.layers)} ops and {len(space.macro.stages)} widths",
                field="--reference",
            )
    return replace(cand, bottleneck_width=0)


# ------------------------------------------------------------------ the baselines


def _point(
    objective: NasObjective,
    baseline: str,
    label: str,
    result: TrialResult,
    *,
    scale: float = 1.0,
    system: System | None = None,
) -> BaselinePoint:
    attrs = objective.user_attrs(result)
    cand = attrs.pop("candidate")
    values = {name: result.metrics[name] for name in objective.metric_names}
    feasible = all(v <= 0 for v in result.constraints)
    fields: dict[str, Any] = {**attrs, **values, "feasible": feasible, "baseline": baseline}
    if result.candidate.cuts:
        fields["cut"] = result.candidate.cuts[0]
    sys_ = system or objective.system
    slowest = min((link.bandwidth_bps for link in sys_.links.values()), default=None)
    return BaselinePoint(
        baseline=baseline,
        label=label,
        candidate=cand,
        values=values,
        fields=fields,
        feasible=feasible,
        bandwidth_scale=scale,
        bandwidth_bps=slowest if baseline == "dynamic-surgery" else None,
    )


def _placed(
    objective: NasObjective, cand: Candidate, system: System, *, every_point: bool
) -> tuple[Candidate, TrialResult]:
    """`cand` at its optimal placement on `system`, scored by the study's objective; with
    `every_point` a cut may follow any layer (Neurosurgeon), else only the space's split points."""
    macro = objective.space.macro
    if system.kind == "tree" and every_point:
        placed = _tree_surgery(macro, cand, system)
    else:
        points = tuple(split_point_domain(macro)) if every_point else None
        split = optimal_split(macro, cand, system, points=points)
        placed = replace(cand, cuts=split.cuts, fuse_after=split.fuse_after)
    network = build_network(macro, placed)
    return placed, objective.score(placed, network, evaluate(network, system), system=system)


def _tree_surgery(macro: Macro, cand: Candidate, system: System) -> Candidate:
    """Neurosurgeon on a multi-view tree: the least-latency placement within every memory cap
    (the least-latency one if none is) over every fusion point, each either split at the fusion
    (the sensors run the per-view layers) or all on the aggregator (the raw views sent), whatever
    placements the space lets the search take; `optimal_split` covers only the former."""
    return _fastest(
        macro,
        system,
        [replace(cand, fuse_after=f, cuts=cuts) for f in fuse_domain(macro) for cuts in ((f,), (-1,))],
    )


def _fastest(macro: Macro, system: System, placements: list[Candidate]) -> Candidate:
    """The least-latency of `placements` within every memory cap (the least-latency one if none is)."""
    best: tuple[bool, float, Candidate] | None = None
    for placed in placements:
        ev = evaluate(build_network(macro, placed), system)
        key = (bool(ev.memory_violations()), ev.latency_s, placed)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None, "no placement to choose from"
    return best[2]


def _cuts_text(cand: Candidate) -> str:
    if cand.fuse_after is not None:
        return f"all on agg, fuse@{cand.fuse_after}" if cand.cuts == (-1,) else f"fuse@{cand.fuse_after}"
    return "cut@" + ",".join(str(c) for c in cand.cuts) if cand.cuts else "no cut"


def fixed_network_baselines(
    objective: NasObjective, cand: Candidate, bandwidth_scales: tuple[float, ...] = DEFAULT_BANDWIDTH_SCALES
) -> tuple[list[BaselinePoint], dict[str, str]]:
    """all-on-first, all-on-last, neurosurgeon and dynamic surgery of the fixed network `cand`."""
    system = objective.system
    macro = objective.space.macro
    points: list[BaselinePoint] = []
    skipped: dict[str, str] = {}
    single = replace(cand, cuts=(), fuse_after=None)
    if system.kind == "tree":
        points += _tree_ends(objective, cand)
    else:
        first = first_device(system)
        alone = single_device_system(system, first)
        net = build_network(macro, single)
        result = objective.score(single, net, evaluate(net, alone), loss_rate=0.0, system=alone)
        points.append(_point(objective, "all-on-first", f"all on {first}", result, system=alone))
        path = input_path_system(system)
        last = last_device(system)
        sent = replace(single, cuts=(-1,) * (len(path.chain) - 1))
        net = build_network(macro, sent)
        result = objective.score(sent, net, evaluate(net, path), system=path)
        points.append(_point(objective, "all-on-last", f"all on {last}", result, system=path))
    placed, result = _placed(objective, cand, system, every_point=True)
    points.append(_point(objective, "neurosurgeon", f"optimal {_cuts_text(placed)}", result))
    for scale in bandwidth_scales:
        scaled = scaled_bandwidth_system(system, scale)
        placed, result = _placed(objective, cand, scaled, every_point=True)
        points.append(
            _point(
                objective,
                "dynamic-surgery",
                f"x{scale:g} bandwidth: {_cuts_text(placed)}",
                result,
                scale=scale,
                system=scaled,
            )
        )
    return points, skipped


def _tree_ends(objective: NasObjective, cand: Candidate) -> list[BaselinePoint]:
    """A multi-view network's two ends (SplitNets Table 6): all on the sensors (each runs the
    per-view layers up to the fusion point on its own view; the fused rest needs every view, so
    only the root can run it) and all on the aggregator (every sensor sends its raw view, the
    root runs the per-view layers once per view, then the rest). Same network, same fusion point:
    the reference's (a reference without one fuses at the space's last fusion point)."""
    system = objective.system
    macro = objective.space.macro
    fuse = cand.fuse_after if cand.fuse_after is not None else fuse_domain(macro)[-1]
    root = last_device(system)
    n = len(system.leaves)
    points = []
    for baseline, cuts, label in (
        ("all-on-first", (fuse,), f"all on sensors: per-view layers to fuse@{fuse} on the {n} sensors"),
        ("all-on-last", (-1,), f"all on {root}: {n} raw views sent, per-view layers run there"),
    ):
        placed = replace(cand, fuse_after=fuse, cuts=cuts)
        net = build_network(macro, placed)
        points.append(_point(objective, baseline, label, objective.score(placed, net, evaluate(net, system))))
    return points


def one_device_objective(spec: ObjectiveSpec, device: str) -> ObjectiveSpec:
    """`spec` with `device` alone (a one-device chain) and no memory, latency or energy
    constraint: the first step of NAS-then-split searches the architecture only."""
    group = device if device in spec.devices else None
    if group is None:
        for name, dev in spec.devices.items():
            if dev.count > 1 and device in {f"{name}{i}" for i in range(dev.count)}:
                group = name
    if group is None:
        raise SpecError("unknown device", field="--nas-device", value=device, allowed=sorted(spec.devices))
    return spec.model_copy(
        update={
            "name": f"{spec.name}:{device}-only",
            "devices": {device: spec.devices[group].model_copy(update={"count": 1})},
            "links": {},
            "media": {},
            "topology": TopologySpec(kind="chain", devices=[device]),
            "constraints": ConstraintsSpec(memory=False, accuracy_min=spec.constraints.accuracy_min),
        }
    )


def aggregator_only_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """A multi-view `spec` without memory, latency or energy constraint: the first step of
    NAS-then-split on a tree, every view run on the aggregator (the raw views' transfer is the
    same for every architecture, so it ranks as the aggregator alone)."""
    return spec.model_copy(
        update={
            "name": f"{spec.name}:aggregator-only",
            "constraints": ConstraintsSpec(memory=False, accuracy_min=spec.constraints.accuracy_min),
        }
    )


def _tree_placed(objective: NasObjective, cand: Candidate) -> tuple[Candidate, TrialResult]:
    """A multi-view `cand` at its own fusion point, placed at the least-latency option of the
    space's `fusion.placement` (split at the fusion, or all on the aggregator) within every
    memory cap (the least-latency one if none is)."""
    macro = objective.space.macro
    fusion = objective.space.spec.fusion
    assert fusion is not None and cand.fuse_after is not None  # a tree's space fuses its views
    options = [
        replace(cand, cuts=(-1,) if where == "aggregator" else (cand.fuse_after,))
        for where in fusion.placement
    ]
    placed = _fastest(macro, objective.system, options)
    network = build_network(macro, placed)
    return placed, objective.score(placed, network, evaluate(network, objective.system))


def nas_then_split(
    resolved: ResolvedStudy, objective: NasObjective, *, n_trials: int, device: str | None = None
) -> list[BaselinePoint]:
    """Search the architecture on one device (in memory, same sampler spec, estimator and
    objectives), place every member of its feasible front optimally on the real system, and keep
    those left non-dominated there (among all placed networks, or among the feasible ones)."""
    from nasopt.study.lifecycle import make_sampler

    system = objective.system
    tree = system.kind == "tree"
    if tree:
        root = last_device(system)
        if device not in (None, root):
            raise SpecError(
                "on a multi-view tree the NAS-then-split search runs on the aggregator",
                field="--nas-device",
                value=device,
                allowed=[root],
            )
        device, stage1_spec = root, aggregator_only_objective(resolved.objective)
    else:
        device = device or first_device(system)
        stage1_spec = one_device_objective(resolved.objective, device)
    stage1 = NasObjective(
        resolved.study.model_copy(update={"split": "searched"}),
        resolved.space,
        stage1_spec,
        estimator=objective.estimator,
        split_params=False,
    )
    search = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=stage1.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        search.set_metric_names(stage1.metric_names)
    search.sampler = make_sampler(resolved.study.sampler, objective=stage1)
    search.optimize(stage1, n_trials=n_trials)
    seen: set[Candidate] = set()
    placed_all: list[tuple[int, Candidate, TrialResult]] = []
    for trial in front(search, feasible_only=True):
        cand = replace(Candidate.from_dict(trial.user_attrs["candidate"]), cuts=(), bottleneck_width=0)
        if cand in seen:
            continue
        seen.add(cand)
        if tree:
            placed, result = _tree_placed(objective, cand)
        else:
            placed, result = _placed(objective, cand, system, every_point=False)
        placed_all.append((trial.number, placed, result))
    # the baseline's front: the placed networks left non-dominated among all of them, and those
    # left non-dominated among the feasible ones (an infeasible network is kept when nothing
    # dominates it: the seeds count how many of the baseline's models violate the constraints)
    signs = [1.0 if d == "minimize" else -1.0 for d in objective.directions]

    def loss(result: TrialResult) -> list[float]:
        return [s * result.metrics[m] for s, m in zip(signs, objective.metric_names, strict=True)]

    def front_of(group: list[tuple[int, Candidate, TrialResult]]) -> list[tuple[int, Candidate, TrialResult]]:
        if not group:
            return []
        return [
            p for p, keep in zip(group, nondominated([loss(r) for _, _, r in group]), strict=True) if keep
        ]

    feasible = [p for p in placed_all if all(v <= 0 for v in p[2].constraints)]
    kept_ids = {id(p) for p in front_of(placed_all)} | {id(p) for p in front_of(feasible)}
    kept = sorted((p for p in placed_all if id(p) in kept_ids), key=lambda p: loss(p[2]))
    points = []
    for i, (number, placed, result) in enumerate(kept):
        label = f"front #{i} (search trial {number} on {device}): {_cuts_text(placed)}"
        points.append(_point(objective, "nas-then-split", label, result))
    return points


def compute_baselines(
    study: optuna.Study,
    resolved: ResolvedStudy,
    *,
    reference: str = "largest",
    bandwidth_scales: tuple[float, ...] = DEFAULT_BANDWIDTH_SCALES,
    nas_trials: int | None = None,
    nas_device: str | None = None,
    with_nas_then_split: bool = True,
) -> BaselineSet:
    """Every baseline of `study` (not stored: see `store_baselines`)."""
    objective = NasObjective(resolved.study, resolved.space, resolved.objective)
    cand = reference_candidate(objective, reference, study)
    points, skipped = fixed_network_baselines(objective, cand, bandwidth_scales)
    n = nas_trials if nas_trials is not None else resolved.study.n_trials
    options: dict[str, Any] = {
        "reference": reference,
        "bandwidth_scales": list(bandwidth_scales),
        "nas_trials": n if with_nas_then_split else 0,
        "nas_device": nas_device,
    }
    if not with_nas_then_split:
        skipped["nas-then-split"] = "not asked for (--no-nas-then-split)"
    else:
        points += nas_then_split(resolved, objective, n_trials=n, device=nas_device)
    return BaselineSet(
        reference=f"{reference}: {_arch(objective, replace(cand, cuts=()))}",
        options=options,
        points=points,
        skipped=skipped,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _arch(objective: NasObjective, cand: Candidate) -> str:
    from nasopt.study.objective import arch_string

    return arch_string(objective.space, cand)


# ------------------------------------------------------------------ rows and comparisons


def baseline_rows(
    study: optuna.Study, baselines: BaselineSet, *, nominal_only: bool = False
) -> list[dict[str, Any]]:
    """Rows shaped like `nasopt.study.pareto.rows`, with `baseline` and `label` first."""
    from nasopt.study.pareto import metric_names

    names = metric_names(study)
    out = []
    for p in baselines.points:
        if nominal_only and not p.nominal:
            continue
        row: dict[str, Any] = {"baseline": p.baseline, "label": p.label, "trial": ""}
        row.update({n: p.values.get(n, p.fields.get(n)) for n in names})
        for extra in ("accuracy", "latency_ms", "macs"):
            if extra not in row and extra in p.fields:
                row[extra] = p.fields[extra]
        row["feasible"] = p.feasible
        row["split"] = p.fields.get("split", "")
        row["arch"] = p.fields.get("arch", "")
        out.append(row)
    return out


def best_trial_latency_at(study: optuna.Study, accuracy: float) -> float | None:
    """The least latency among the study's feasible trials at least as accurate as `accuracy`."""
    best = None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        acc, lat = t.user_attrs.get("accuracy"), t.user_attrs.get("latency_ms")
        if acc is None or lat is None or not is_feasible(t) or acc < accuracy - 1e-12:
            continue
        best = lat if best is None else min(best, lat)
    return best


def ensure_baselines(
    study: optuna.Study,
    resolved: ResolvedStudy,
    *,
    recompute: bool = False,
    reference: str = "largest",
    bandwidth_scales: tuple[float, ...] = DEFAULT_BANDWIDTH_SCALES,
    nas_trials: int | None = None,
    nas_device: str | None = None,
    with_nas_then_split: bool = True,
) -> tuple[BaselineSet, bool]:
    """The stored baselines if they were made with these options, else computed and stored;
    also says whether they were computed now."""
    n = nas_trials if nas_trials is not None else resolved.study.n_trials
    wanted = {
        "reference": reference,
        "bandwidth_scales": list(bandwidth_scales),
        "nas_trials": n if with_nas_then_split else 0,
        "nas_device": nas_device,
    }
    stored = load_baselines(study)
    if stored is not None and not recompute and stored.options == wanted:
        return stored, False
    baselines = compute_baselines(
        study,
        resolved,
        reference=reference,
        bandwidth_scales=bandwidth_scales,
        nas_trials=n,
        nas_device=nas_device,
        with_nas_then_split=with_nas_then_split,
    )
    store_baselines(study, baselines)
    return baselines, True


def baseline_table(
    study: optuna.Study, baselines: BaselineSet, *, arch_chars: int | None = 60
) -> list[dict[str, Any]]:
    """`nasopt baselines`' rows: each baseline point, its bandwidth (dynamic surgery: the slowest
    link's), and the study's best latency at the same or better accuracy (what split-aware
    search gains over the baseline); `arch` cut to `arch_chars` (None: whole)."""
    out = []
    for p, row in zip(baselines.points, baseline_rows(study, baselines), strict=True):
        row.pop("trial")
        acc = p.fields.get("accuracy")
        best = best_trial_latency_at(study, acc) if isinstance(acc, float) and p.nominal else None
        row["study_best_ms"] = "" if best is None else best
        row["bandwidth_bps"] = "" if p.bandwidth_bps is None else p.bandwidth_bps
        arch = str(row.pop("arch"))
        if arch_chars is not None and len(arch) > arch_chars:
            arch = arch[: arch_chars - 3] + "..."
        row["arch"] = arch
        out.append(row)
    return out


def baseline_sweep(
    baselines: BaselineSet, metric: str, thresholds: list[float]
) -> dict[str, list[tuple[float, float | None]]]:
    """Per baseline, its best accuracy with `metric` at most each threshold, among its points on
    the study's own system that meet every other constraint (None: none does)."""
    skip = f"violation:{metric}"
    out: dict[str, list[tuple[float, float | None]]] = {}
    for p in baselines.points:
        if not p.nominal:
            continue
        value, acc = p.fields.get(metric), p.fields.get("accuracy")
        if not isinstance(value, int | float) or not isinstance(acc, int | float):
            continue
        others_met = all(v <= 0 for k, v in p.fields.items() if k.startswith("violation:") and k != skip)
        line = out.setdefault(p.baseline, [(th, None) for th in thresholds])
        if not others_met:
            continue
        for i, th in enumerate(thresholds):
            best = line[i][1]
            if value <= th and (best is None or acc > best):
                line[i] = (th, float(acc))
    return out
