"""Markdown notes for optuna-dashboard: a study summary and one note per Pareto-optimal trial."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from nasopt.spec import ResolvedStudy
from nasopt.study.pareto import front, is_feasible, metric_names
from nasopt.views.arch_strip import arch_layers
from nasopt.views.fields import complete_trials, fmt, sampler_label

if TYPE_CHECKING:
    pass


def summary_sections(study: optuna.Study, resolved: ResolvedStudy) -> list[tuple[str, list[str]]]:
    """(heading, lines) describing the study, its system, search space and constraints."""
    from nasopt.core.system import build_system
    from nasopt.space import SearchSpace

    trials = study.get_trials(deepcopy=False)
    complete = complete_trials(study)
    feasible = [t for t in complete if is_feasible(t)]
    best = front(study, feasible_only=True)
    obj, space = resolved.objective, resolved.space
    directions = [
        f"{'minimise' if d == optuna.study.StudyDirection.MINIMIZE else 'maximise'} {n}"
        for n, d in zip(metric_names(study), study.directions, strict=True)
    ]
    head = [
        f"objectives: {', '.join(directions)}",
        f"sampler: {sampler_label(study, resolved)}; accuracy estimator: "
        f"{study.user_attrs.get('nasopt:accuracy_estimator', '?')}",
        f"trials: {len(trials)} ({len(complete)} complete, {len(feasible)} feasible, "
        f"{len(best)} on the feasible Pareto front)",
    ]
    if not best:
        head.append("no feasible trial yet: every trial violates a constraint")
    system = [f"{obj.name} ({obj.topology.kind}): {obj.description}".rstrip(": ")]
    for name, dev in obj.devices.items():
        c = dev.compute
        speed = f"{c.macs_per_s:.3g} MAC/s" if c.macs_per_s else c.kind
        cap = f", memory cap {dev.memory_bytes:,} B" if dev.memory_bytes else ""
        count = f" ×{dev.count}" if dev.count > 1 else ""
        system.append(f"device {name}{count}: {speed}{cap}")
    for name, link in obj.links.items():
        bw = f"{link.bandwidth_bps / 1e6:.4g} Mbit/s" if link.bandwidth_bps else f"medium {link.medium}"
        system.append(f"link {name}: {link.src} → {link.dst}, {bw}")
    sys_obj = build_system(obj)
    ss = SearchSpace(space, sys_obj)
    params = ss.params()
    size = ss.size()  # distinct candidates: cut orderings counted once
    space_lines = [
        f"{space.name}: {space.description}".rstrip(": "),
        f"input {space.input.channels}×{space.input.height}×{space.input.width}, "
        f"{space.num_classes} classes, {len(ss.macro.layers)} layers in {len(ss.macro.stages)} stages",
        f"{len(params)} parameters, {size:.3g} candidates: "
        + ", ".join(f"{p.name} ({len(p.choices)})" for p in params[:12])
        + (" …" if len(params) > 12 else ""),
    ]
    limits = obj.constraints
    constraints = []
    if limits.memory:
        caps = [n for n, d in obj.devices.items() if d.memory_bytes]
        constraints.append(f"peak memory within each device's cap ({', '.join(caps) or 'no device has one'})")
    if limits.latency_ms is not None:
        constraints.append(f"latency ≤ {limits.latency_ms:g} ms")
    if limits.energy_mj is not None:
        constraints.append(f"energy ≤ {limits.energy_mj:g} mJ")
    if limits.accuracy_min is not None:
        constraints.append(f"accuracy ≥ {limits.accuracy_min:g}")
    if not constraints:
        constraints.append("none")
    return [
        (f"Study {study.study_name}", head),
        ("System", system),
        ("Search space", space_lines),
        ("Constraints", constraints),
    ]


def summary_markdown(study: optuna.Study, resolved: ResolvedStudy) -> str:
    parts = []
    for heading, lines in summary_sections(study, resolved):
        parts.append(f"## {heading}\n\n" + "\n".join(f"- {line}" for line in lines))
    parts.append(
        "Figures (nasopt): Pareto front with feasible/infeasible marked, latency breakdown, "
        "threshold sweep, architecture strip and hypervolume history — see *Plotly graph objects* below."
    )
    return "\n\n".join(parts) + "\n"


def trial_note(resolved: ResolvedStudy, trial: FrozenTrial) -> str:
    """Markdown for one trial: metrics, latency breakdown and the architecture strip as a table."""
    layers, network, _ = arch_layers(resolved, trial)
    a = trial.user_attrs
    lines = [
        f"## Trial {trial.number}: accuracy {float(a['accuracy']):.4f}, "
        f"latency {float(a['latency_ms']):.4g} ms",
        "",
        f"`{a.get('arch', '')}`",
        "",
        f"Split: {a.get('split', '')}",
        "",
        "Breakdown: "
        + ", ".join(
            f"{k.split(':', 1)[0].replace('_ms', '')} {k.split(':', 1)[1]} {float(v):.4g} ms"
            for k, v in a.items()
            if k.startswith(("compute_ms:", "transfer_ms:"))
        ),
        "",
        "| # | layer | op | type | kernel | expansion | width | stride | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cuts = set(network.cut_after)
    if -1 in cuts:
        lines.append("| | **— cut: the input is sent —** | | | | | | | |")
    for layer in layers:
        lines.append(
            f"| {layer.index} | {layer.name} | {layer.op} | {layer.op_type} | {fmt(layer.kernel) or '-'} | "
            f"{fmt(layer.expansion) or '-'} | {layer.width} | {layer.stride} | {layer.device} |"
        )
        if layer.index in cuts:
            lines.append("| | **— cut —** | | | | | | | |")
        if network.fuse_after == layer.index:
            lines.append("| | **— fusion (View-Fuse) —** | | | | | | | |")
    return "\n".join(lines) + "\n"


def save_trial_note(study: optuna.Study, trial: FrozenTrial, body: str) -> None:
    """optuna_dashboard.save_note needs a live Trial; finished trials go through its storage helper."""
    from optuna_dashboard._note import note_ver_key, save_note_with_version

    storage = study._storage
    attrs = storage.get_study_system_attrs(study._study_id)
    version = attrs.get(note_ver_key(trial._trial_id), 0) + 1
    save_note_with_version(storage, study._study_id, trial._trial_id, version, body)
