"""Evidence: each seed's claim that split-aware search beats its baseline, rerun with nasopt.

Run:  python benchmarks/evidence.py [--trials 300] [--supernet-trials 300] [--seed 0]
          [--sections nasc,splitnets] [--markdown benchmarks/evidence.md]

Every study here but the nasc-supernet section's uses the `analytic-proxy` accuracy
(nasopt/accuracy/proxy.py: a monotone function of MACs, parameters and the bits crossing each
cut; NOT a trained accuracy), in-memory storages, and the baselines of `nasopt.study.baselines`
with the same estimator, sampler and number of trials as the joint search. So the sections test
what the cost model and the search can show (latency at equal proxy accuracy, feasibility under
the seeds' thresholds and caps); they cannot reproduce the seeds' accuracy numbers. The nasc-
supernet section trains a small weight-sharing supernet (29 min measured on 2 shared CPU cores,
cached in .nasopt/checkpoints) and scores every candidate with it, packet-loss dropout at the
cut included.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytic import machine
from model_tree_evidence import model_tree

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import evaluate
from nasopt.core.network import build_network
from nasopt.presets import load_objective, load_space
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, ResolvedStudy, SamplerSpec, SearchSpaceSpec, StudySpec
from nasopt.study.baselines import (
    BaselinePoint,
    fixed_network_baselines,
    nas_then_split,
    reference_candidate,
)
from nasopt.study.lifecycle import create_or_resume, make_sampler
from nasopt.study.objective import NasObjective
from nasopt.study.pareto import is_feasible

PROXY = {"estimator": "analytic-proxy"}

# NASC with a trained supernet, sized for 2 shared CPU cores: the fbnet-nasc space unchanged but
# for a 16x16 input and 10 classes, trained on the bundled synthetic `shapes` set (half held out)
# with NASC's packet-loss dropout at the cut (rates 0-0.5). At 16x16 every MAC count and every
# feature size is a quarter of the 32x32 one, so NASC's T_th = 30 ms becomes 7.5 ms.
NASC_SUPERNET_PX = 16
NASC_SUPERNET_TTH_MS = 30.0 * (NASC_SUPERNET_PX / 32) ** 2
NASC_SUPERNET_SAMPLERS = ("evolution", "asng")  # nasopt's best sampler, and NASC's own
NASC_SUPERNET = {
    "estimator": "supernet",
    "dataset": "shapes",
    "samples": 12000,
    "val_fraction": 0.5,
    "sampling": "sandwich",
    "random_subnets": 2,
    "epochs": 6,
    "batch_size": 32,
    "lr": 0.003,
    "warmup_epochs": 0.5,
    "loss_warmup_epochs": 2,
    "label_smoothing": 0.1,
    "loss_rates": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
    "calibration_batches": 4,
    "val_samples": 512,
}


def _resolved(
    space: str | SearchSpaceSpec,
    objective: ObjectiveSpec | str,
    sampler: str,
    n: int,
    seed: int,
    *,
    split: str = "searched",
    accuracy: dict[str, Any] | None = None,
) -> ResolvedStudy:
    obj = load_objective(objective) if isinstance(objective, str) else objective
    space_spec = load_space(space) if isinstance(space, str) else space
    spec = StudySpec(
        name=f"evidence-{space_spec.name}-{obj.name}" + ("-optimal" if split == "optimal" else ""),
        space=space_spec.name,
        objective=obj.name,
        sampler=SamplerSpec(name=sampler, seed=seed),
        n_trials=n,
        accuracy=accuracy or PROXY,
        split=split,
    )
    return ResolvedStudy(spec, space_spec, obj)


def _run(resolved: ResolvedStudy, estimator: Any = None) -> tuple[optuna.Study, NasObjective]:
    objective = NasObjective(resolved.study, resolved.space, resolved.objective, estimator=estimator)
    study = create_or_resume(resolved, optuna.storages.InMemoryStorage())
    study.sampler = make_sampler(resolved.study.sampler, objective=objective)
    study.optimize(objective, n_trials=resolved.study.n_trials)
    return study, objective


def _trials(study: optuna.Study) -> list[tuple[float, float, bool]]:
    """(accuracy, latency_ms, feasible) of every completed trial."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        out.append((t.user_attrs["accuracy"], t.user_attrs["latency_ms"], is_feasible(t)))
    return out


def _best_at(trials: list[tuple[float, float, bool]], accuracy: float) -> float | None:
    lat = [lat for acc, lat, ok in trials if ok and acc >= accuracy - 1e-12]
    return min(lat) if lat else None


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ NASC


def _reduction(
    joint: list[tuple[float, float, bool]], acc: float, lat: float
) -> tuple[float | None, float | None]:
    """The joint search's least feasible latency at >= `acc`, and its reduction against `lat`."""
    best = _best_at(joint, acc)
    return best, None if best is None else 1 - best / lat


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _joint_summary(label: str, joint: list[tuple[float, float, bool]], seconds: float) -> str:
    feasible = [t for t in joint if t[2]]
    most = max(feasible, default=None)
    text = f"{label} ({seconds:.0f} s): {len(feasible)} of {len(joint)} trials feasible"
    if most is not None:
        text += f", most accurate feasible {most[0]:.4f} at {most[1]:.3g} ms"
    return text


def _versus_nas_then_split(
    points: list[BaselinePoint], joints: dict[str, list[tuple[float, float, bool]]]
) -> tuple[list[list[str]], dict[str, list[float]]]:
    """One row per NAS-then-split network: its accuracy and latency, and each joint search's least
    feasible latency at equal or better accuracy with the reduction; the reductions per search."""
    rows = []
    reductions: dict[str, list[float]] = {name: [] for name in joints}
    for p in sorted(points, key=lambda p: -p.fields["accuracy"]):
        acc, lat = p.fields["accuracy"], p.fields["latency_ms"]
        row = [f"{acc:.4f}", f"{lat:.3g}", "yes" if p.feasible else "NO"]
        for name, joint in joints.items():
            best, red = _reduction(joint, acc, lat)
            if red is not None:
                reductions[name].append(red)
            row += [_ms(best), _pct(red)]
        rows.append(row)
    return rows, reductions


JOINTS = ("split searched", "split = optimal")


def nasc(n: int, seed: int) -> str:
    """Joint search (split searched, and split solved per candidate) vs NAS-then-split (HWNAS)
    on FBNet at NASC's thresholds, analytic proxy accuracy."""
    parts = []
    medians: dict[str, list[float]] = {name: [] for name in JOINTS}
    ok_fractions: list[float] = []
    for space, objective, tth, sampler in (
        ("fbnet-nasc", "nasc-raspi-edgegpu", 30, "asng"),
        ("fbnet-nasc", "nasc-raspi-edgegpu", 30, "evolution"),
        ("fbnet-nasc-extended", "nasc-raspi-edgegpu-extended", 15, "asng"),
        ("fbnet-nasc-extended", "nasc-raspi-edgegpu-extended", 15, "evolution"),
    ):
        joints, summaries = {}, []
        for name, split in zip(JOINTS, ("searched", "optimal"), strict=True):
            resolved = _resolved(space, objective, sampler, n, seed, split=split)
            t0 = time.perf_counter()
            study, obj = _run(resolved)
            joints[name] = _trials(study)
            summaries.append(_joint_summary(f"joint, {name}", joints[name], time.perf_counter() - t0))
        resolved = _resolved(space, objective, sampler, n, seed)
        obj = NasObjective(resolved.study, resolved.space, resolved.objective)
        t0 = time.perf_counter()
        points = nas_then_split(resolved, obj, n_trials=n)
        seconds = time.perf_counter() - t0
        rows, reductions = _versus_nas_then_split(points, joints)
        n_ok = sum(p.feasible for p in points)
        ok_fractions.append(n_ok / max(len(points), 1))
        for name in JOINTS:
            if reductions[name]:
                medians[name].append(statistics.median(reductions[name]))
        parts.append(
            f"**{space} on {objective} (T_th = {tth} ms), {sampler}, {n} trials each.** "
            + "; ".join(summaries)
            + f". NAS-then-split ({seconds:.0f} s): {len(points)} networks on its front, {n_ok} meet "
            "T_th once placed optimally. Median latency reduction at equal or better proxy accuracy: "
            + ", ".join(f"{name} {_pct(_median(reductions[name]))}" for name in JOINTS)
            + ".\n\n"
        )
        parts.append(
            _table(
                [
                    "NAS-then-split accuracy (proxy)",
                    "its latency (ms, optimal cut)",
                    "≤ T_th",
                    "joint, split searched: least ms at ≥ accuracy",
                    "reduction",
                    "joint, split = optimal: least ms at ≥ accuracy",
                    "reduction",
                ],
                rows,
            )
            + "\n\n"
        )
    every = [m for name in JOINTS for m in medians[name]]
    lo, hi = min(every, default=0.0), max(every, default=0.0)
    if every and lo >= 0.4:
        verdict = "**Reproduced**"
    elif every and hi > 0.1:
        verdict = "**Partly reproduced**"
    else:
        verdict = "**Not reproduced**"
    ranges = "; ".join(
        f"{name}: {_pct(min(medians[name], default=None))} to {_pct(max(medians[name], default=None))}"
        for name in JOINTS
    )
    parts.append(
        f"{verdict}: the paper reports 40-60 % lower latency at slightly lower accuracy; here the "
        f"joint search's median latency reduction at equal or better proxy accuracy over the four "
        f"runs is {ranges}, and {100 * min(ok_fractions):.0f}-{100 * max(ok_fractions):.0f} % of the "
        "NAS-then-split networks already meet T_th once placed at their optimal cut (the paper: "
        "almost none). Why: the baseline here places each network at its latency-optimal cut, so it "
        "pays only for communication it cannot avoid, and the proxy's accuracy does not depend on "
        "where the network is cut except through the bits crossing it; with the split solved per "
        "candidate the joint search and NAS-then-split differ only in what the sampler is steered "
        "by (the threshold). NASC's HWNAS chose its cut by the same loss-plus-penalty objective "
        "with a trained, packet-loss-sensitive accuracy: the nasc-supernet section tests that.\n\n"
    )
    return "".join(parts)


# ------------------------------------------------------------------ NASC, supernet estimator


def nasc_supernet_space() -> SearchSpaceSpec:
    """fbnet-nasc with a NASC_SUPERNET_PX input and 10 classes (the `shapes` set), else unchanged."""
    spec = load_space("fbnet-nasc")
    px = NASC_SUPERNET_PX
    return spec.model_copy(
        update={
            "name": f"fbnet-nasc-{px}px",
            "input": spec.input.model_copy(update={"height": px, "width": px}),
            "num_classes": 10,
        }
    )


def nasc_supernet_objective() -> ObjectiveSpec:
    """nasc-raspi-edgegpu with T_th scaled to the smaller input (NASC_SUPERNET_TTH_MS)."""
    spec = load_objective("nasc-raspi-edgegpu")
    constraints = spec.constraints.model_copy(update={"latency_ms": NASC_SUPERNET_TTH_MS})
    return spec.model_copy(update={"name": f"{spec.name}-{NASC_SUPERNET_PX}px", "constraints": constraints})


def _all_on_first_ms(space: SearchSpaceSpec, which: str) -> float:
    resolved = _resolved(space, "nasc-raspi-edgegpu", "random", 1, 0)
    obj = NasObjective(resolved.study, resolved.space, resolved.objective)
    cand = reference_candidate(obj, which)
    (first,) = [p for p in fixed_network_baselines(obj, cand, ())[0] if p.baseline == "all-on-first"]
    return float(first.fields["latency_ms"])


def nasc_supernet(n: int, seed: int) -> str:
    """NASC's claim with a trained supernet (packet-loss dropout at the cut): joint search (split
    searched / solved) vs NAS-then-split on the FBNet space at a 16x16 input."""
    from nasopt.accuracy import make_estimator

    space = nasc_supernet_space()
    objective = nasc_supernet_objective()
    scale = {
        which: _all_on_first_ms(space, which) / _all_on_first_ms(load_space("fbnet-nasc"), which)
        for which in ("largest", "smallest")
    }
    base = _resolved(space, objective, "evolution", n, seed, accuracy=NASC_SUPERNET)
    estimator = make_estimator(base.study, SearchSpace(space))
    t0 = time.perf_counter()
    trained = estimator.ensure_trained(progress=False)  # type: ignore[attr-defined]
    load_s = time.perf_counter() - t0
    history = trained.history[-1] if trained.history else {}
    parts = [
        f"fbnet-nasc (22 layers x 9 blocks, 23 split points) at a {NASC_SUPERNET_PX}x{NASC_SUPERNET_PX} "
        "input with 10 classes, trained as a weight-sharing supernet on the bundled synthetic "
        f"`shapes` set ({NASC_SUPERNET['samples']} images, half held out; sandwich sampling, "
        f"{NASC_SUPERNET['epochs']} epochs, NASC's packet-loss dropout at the cut at rates 0-0.5 "
        f"after {NASC_SUPERNET['loss_warmup_epochs']} epochs), every candidate scored on "
        f"{NASC_SUPERNET['val_samples']} held-out images with dropout at the link's p = 0.2 on the "
        f"sent feature. Objective: nasc-raspi-edgegpu with T_th = {NASC_SUPERNET_TTH_MS:g} ms: at "
        f"{NASC_SUPERNET_PX} px every MAC count and feature size is (32/{NASC_SUPERNET_PX})^2 times "
        f"smaller; measured, the all-on-Raspi latency of the largest / smallest network is "
        f"{scale['largest']:.3f} / {scale['smallest']:.3f} times its 32 px value, so NASC's 30 ms "
        f"becomes {NASC_SUPERNET_TTH_MS:g} ms. Supernet training: {trained.seconds:.0f} s "
        + ("(trained in this run)" if trained.trained else f"(checkpoint reused, loaded in {load_s:.0f} s)")
        + (f", last epoch's training accuracy {history['train_acc']:.3f}" if "train_acc" in history else "")
        + ".\n\n"
    ]
    medians: dict[str, list[float]] = {name: [] for name in JOINTS}
    whys, counts = [], []
    for sampler in NASC_SUPERNET_SAMPLERS:
        text, run_medians, why, n_ok, n_points = _nasc_supernet_run(
            sampler, n, seed, space, objective, estimator
        )
        parts.append(text)
        whys.append(f"{sampler}: {why}")
        counts.append(f"{n_ok} of {n_points} ({sampler})")
        for name, m in run_medians.items():
            if m is not None:
                medians[name].append(m)
    got = [m for ms in medians.values() for m in ms]
    if got and min(got) >= 0.4:
        verdict = "**Reproduced**"
    elif got and max(got) > 0.1:
        verdict = "**Partly reproduced**"
    else:
        verdict = "**Not reproduced**"
    ranges = "; ".join(
        f"{name}: {_pct(min(medians[name], default=None))} to {_pct(max(medians[name], default=None))}"
        for name in JOINTS
    )
    parts.append(
        f"{verdict} (at this scale): NASC reports 40-60 % lower latency for the joint search at "
        "slightly lower accuracy than HWNAS; here the median reduction at equal or better supernet "
        f"accuracy over the {len(NASC_SUPERNET_SAMPLERS)} samplers is {ranges}, and "
        + ", ".join(counts)
        + " NAS-then-split networks meet T_th once placed optimally. Measured why: "
        + " ".join(whys)
        + " What differs from the paper: a 16 px input on synthetic shapes (not CIFAR-100 at 32 px), "
        f"{NASC_SUPERNET['epochs']} supernet epochs, {n} trials per search (NASC: ASNG one-shot "
        "training of the architecture distribution), accuracy of the weight-sharing subnet without "
        "retraining (NASC retrains HWNAS's networks after splitting), and a NAS-then-split that "
        "places each network at its latency-optimal cut (NASC's HWNAS chose its cut by the "
        "penalised objective).\n\n"
    )
    return "".join(parts)


def _nasc_supernet_run(
    sampler: str, n: int, seed: int, space: SearchSpaceSpec, objective: ObjectiveSpec, estimator: Any
) -> tuple[str, dict[str, float | None], str, int, int]:
    """One sampler's joint searches and NAS-then-split with the shared supernet estimator: the
    text block, the median reductions, the measured reason, and how many NAS-then-split networks
    meet T_th of how many."""
    joints, summaries = {}, []
    for name, split in zip(JOINTS, ("searched", "optimal"), strict=True):
        resolved = _resolved(space, objective, sampler, n, seed, split=split, accuracy=NASC_SUPERNET)
        t0 = time.perf_counter()
        study, obj = _run(resolved, estimator)
        joints[name] = _trials(study)
        summaries.append(_joint_summary(f"joint, {name}", joints[name], time.perf_counter() - t0))
    base = _resolved(space, objective, sampler, n, seed, accuracy=NASC_SUPERNET)
    obj = NasObjective(base.study, space, objective, estimator=estimator)
    t0 = time.perf_counter()
    points = nas_then_split(base, obj, n_trials=n)
    two_step_s = time.perf_counter() - t0
    rows, reductions = _versus_nas_then_split(points, joints)
    # what the placement cost each NAS-then-split network: its accuracy on the Raspi alone (as
    # searched, no link, no loss) against the one at its optimal cut with p = 0.2 dropout
    drops = []
    for p, row in zip(sorted(points, key=lambda p: -p.fields["accuracy"]), rows, strict=True):
        cand = replace(Candidate.from_dict(p.candidate), cuts=())
        alone = estimator.accuracy(cand, obj.space.network(cand), 0.0)
        drops.append(alone - p.fields["accuracy"])
        row.insert(1, f"{alone:.4f}")
        row.insert(3, "cut@" + ",".join(str(c) for c in p.candidate["cuts"]))
    n_ok = sum(p.feasible for p in points)
    medians = {name: _median(reductions[name]) for name in JOINTS}
    text = (
        f"**{sampler}, {n} trials each (seed {seed}).** "
        + "; ".join(summaries)
        + f". NAS-then-split ({two_step_s:.0f} s): the architecture searched on the Raspi alone "
        f"(no link, no loss), its front ({len(points)} networks) placed at the latency-optimal "
        f"split point, {n_ok} meet T_th. Median latency reduction at equal or better supernet "
        "accuracy: "
        + ", ".join(f"{name} {_pct(medians[name])}" for name in JOINTS)
        + f". Accuracy the placement (p = 0.2 dropout at the cut) costs the NAS-then-split "
        f"networks: median {_median(drops) or 0.0:.3f}, max {max(drops, default=0.0):.3f}.\n\n"
        + _table(
            [
                "NAS-then-split accuracy (supernet, placed)",
                "on the Raspi alone",
                "its latency (ms)",
                "cut",
                "≤ T_th",
                "joint, split searched: least ms at ≥ accuracy",
                "reduction",
                "joint, split = optimal: least ms at ≥ accuracy",
                "reduction",
            ],
            rows,
        )
        + "\n\n"
    )
    joint_best = max((t[0] for trials in joints.values() for t in trials if t[2]), default=None)
    two_step_best = max((p.fields["accuracy"] for p in points if p.feasible), default=None)
    why = (
        f"placed at its latency-optimal cut, packet loss costs a NAS-then-split network a median "
        f"{_median(drops) or 0.0:.3f} of accuracy, so a cut-aware search has little to win"
    )
    if joint_best is not None and two_step_best is not None and two_step_best > joint_best:
        why += (
            f", and the NAS-then-split search (no split parameters, no threshold) found more accurate "
            f"networks ({two_step_best:.4f} placed, within T_th) than either joint search ({joint_best:.4f}) "
            "in the same number of trials"
        )
    return text, medians, why + ".", n_ok, len(points)


# ------------------------------------------------------------------ SplitNets


# SplitNets Table 4 (single view, 4 sensors) and Table 6 (12 views): (peak MB, sensor ms, comm ms,
# total ms) of the fixed backbones; nasopt presets of the same name are compared where they exist
SPLITNETS_TABLE4 = {
    "mobilenetv2": {
        "all-on-first": (5.90, 2.46, 0.0, 2.46),
        "all-on-last": (0.0, 0.0, 4.01, 4.25),
        "neurosurgeon": (0.0, 0.0, 4.01, 4.25),
    },
    "mnasnet-1.0": {
        "all-on-first": (5.59, 2.52, 0.0, 2.52),
        "all-on-last": (0.0, 0.0, 4.01, 4.26),
        "neurosurgeon": (1.29, 0.83, 0.84, 1.82),
    },
    "efficientnet-b0": {
        "all-on-first": (7.70, 3.09, 0.0, 3.09),
        "all-on-last": (0.0, 0.0, 4.01, 4.32),
        "neurosurgeon": (0.0, 0.0, 4.01, 4.32),
    },
}
SPLITNETS_TABLE6 = {  # fuse.placement: "aggregator" = All-on-agg., "sensors" = Split at fusion
    "mnasnet-0.5-multiview": {"aggregator": (0.0, 0.0, 12.0, 13.0), "sensors": (1.54, 0.83, 5.03, 5.83)},
    "efficientnet-b0-multiview": {"aggregator": (0.0, 0.0, 12.0, 15.8), "sensors": (6.42, 3.08, 5.03, 8.03)},
}


def _load_space_or_none(name: str) -> Any:
    from nasopt.errors import SpecError

    try:
        return load_space(name)
    except SpecError:
        return None


def _paper(row: tuple[float, float, float, float]) -> list[str]:
    return [f"{row[0]:.2f} MB", f"{row[1]:.3g}", f"{row[2]:.3g}", f"{row[3]:.3g}"]


def _within(a: float, b: float, rel: float = 0.05) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-9) or (b == 0 and abs(a) < 0.2)


def _row(p: BaselinePoint, sensor: str, link: str) -> list[str]:
    f = p.fields
    peak = f.get(f"memory_bytes:{sensor}", 0) / 1e6
    return [
        f"{peak:.2f} MB",
        f"{f.get(f'compute_ms:{sensor}', 0.0):.3g}",
        f"{f.get(f'transfer_ms:{link}', 0.0):.3g}",
        f"{f['latency_ms']:.3g}",
        "yes" if p.feasible else "NO",
    ]


def _acc_of(points: list[BaselinePoint], baseline: str) -> float:
    return float(next(p.fields["accuracy"] for p in points if p.baseline == baseline))


def splitnets(n: int, seed: int) -> str:
    out = []
    rows = []
    checks: list[tuple[str, str, bool, bool]] = []  # (network, baseline, peak agrees, total agrees)
    for name, paper_rows in SPLITNETS_TABLE4.items():
        spec = _load_space_or_none(name)
        if spec is None:
            rows.append([name, "—", *["—"] * 4, "no such preset here", *[""] * 4])
            continue
        resolved = ResolvedStudy(
            _resolved("mobilenetv2", "splitnets-hmd-4", "evolution", 1, seed).study,
            spec,
            load_objective("splitnets-hmd-4"),
        )
        obj = NasObjective(resolved.study, resolved.space, resolved.objective)
        points, _ = fixed_network_baselines(obj, reference_candidate(obj, "largest"), ())
        for p in points:
            paper = paper_rows[p.baseline]
            mine = _row(p, "sensor", "uplink")
            peak = p.fields.get("memory_bytes:sensor", 0) / 1e6 if p.baseline != "all-on-last" else 0.0
            checks.append(
                (name, p.baseline, _within(peak, paper[0]), _within(p.fields["latency_ms"], paper[3]))
            )
            rows.append([name, p.baseline, *_paper(paper), *mine, p.label])
    out.append(
        "**Fixed backbones on splitnets-hmd-4 (sensor 125 GOP/s, 2 MB; 37.5 MB/s), Table 4 beside "
        "nasopt's analytic model** (nasopt's peak is the sensor's peak memory under the objective's "
        "memory model; the paper lists 0 for a sensor that only sends the raw image):\n\n"
        + _table(
            [
                "network",
                "baseline",
                "paper peak",
                "paper sensor ms",
                "paper comm ms",
                "paper total ms",
                "nasopt peak",
                "nasopt sensor ms",
                "nasopt comm ms",
                "nasopt total ms",
                "within 2 MB",
                "nasopt placement",
            ],
            rows,
        )
        + "\n\n"
    )
    rows6 = []
    for name, paper_rows in SPLITNETS_TABLE6.items():
        spec = _load_space_or_none(name)
        if spec is None:
            rows6.append([name, "—", *["—"] * 4, "no such preset here", "", "", "", ""])
            continue
        resolved = ResolvedStudy(
            _resolved("mobilenetv2", "splitnets-hmd-12", "evolution", 1, seed).study,
            spec,
            load_objective("splitnets-hmd-12"),
        )
        obj = NasObjective(resolved.study, resolved.space, resolved.objective)
        ends, _ = fixed_network_baselines(obj, reference_candidate(obj, "largest"), ())
        for p in ends:
            placement = {"all-on-first": "sensors", "all-on-last": "aggregator"}.get(p.baseline)
            if placement is None:
                continue
            paper = paper_rows[placement]
            f = p.fields
            peak = f.get("memory_bytes:sensor0", 0) / 1e6 if placement == "sensors" else 0.0
            checks.append((name, placement, _within(peak, paper[0]), _within(f["latency_ms"], paper[3])))
            rows6.append(
                [
                    name,
                    "All-on-agg." if placement == "aggregator" else "Split at fusion",
                    *_paper(paper),
                    f"{peak:.2f} MB",
                    f"{f.get('compute_ms:sensor0', 0.0):.3g}",
                    f"{f.get('transfer_ms:uplink0', 0.0):.3g}",
                    f"{f['latency_ms']:.3g}",
                    f"{p.baseline}: {p.label}",
                ]
            )
    out.append(
        "**Fixed multi-view backbones on splitnets-hmd-12 (12 sensors, 12.5 MB/s each), Table 6 "
        "beside nasopt:**\n\n"
        + _table(
            [
                "network",
                "row",
                "paper peak",
                "paper sensor ms",
                "paper comm ms",
                "paper total ms",
                "nasopt peak",
                "nasopt sensor ms",
                "nasopt comm ms",
                "nasopt total ms",
                "nasopt baseline",
            ],
            rows6,
        )
        + "\n\n"
    )
    joints, summaries = {}, []
    for name, split in zip(JOINTS, ("searched", "optimal"), strict=True):
        resolved = _resolved("splitnets-single", "splitnets-hmd-4", "evolution", n, seed, split=split)
        t0 = time.perf_counter()
        study, obj = _run(resolved)
        joints[name] = _trials(study)
        summaries.append(_joint_summary(f"joint, {name}", joints[name], time.perf_counter() - t0))
    resolved = _resolved("splitnets-single", "splitnets-hmd-4", "evolution", n, seed)
    obj = NasObjective(resolved.study, resolved.space, resolved.objective)
    t0 = time.perf_counter()
    two_step = nas_then_split(resolved, obj, n_trials=n)
    two_step_s = time.perf_counter() - t0
    nts_rows, nts_red = _versus_nas_then_split(two_step, joints)
    joint = joints["split searched"]
    feasible = [t for t in joint if t[2]]
    ref = reference_candidate(obj, "largest")
    base, _ = fixed_network_baselines(obj, ref, ())
    lines = []
    for p in base:
        lines.append(
            [
                p.baseline,
                p.label,
                f"{p.fields['accuracy']:.4f}",
                f"{p.fields['latency_ms']:.3g}",
                "yes" if p.feasible else "NO",
            ]
        )
    search_rows = []
    for name, trials in joints.items():
        ok = [t for t in trials if t[2]]
        fast, most_acc = min(ok, key=lambda t: t[1], default=None), max(ok, default=None)
        search_rows.append(
            [
                f"joint, {name}",
                f"{len(ok)} of {len(trials)}",
                "—" if fast is None else f"{fast[1]:.3g} ({fast[0]:.4f})",
                "—" if most_acc is None else f"{most_acc[0]:.4f} at {most_acc[1]:.3g} ms",
                _pct(_median(nts_red[name])),
            ]
        )
    ok_points = [p for p in two_step if p.feasible]
    fast_p = min(ok_points, key=lambda p: p.fields["latency_ms"], default=None)
    most_p = max(ok_points, key=lambda p: p.fields["accuracy"], default=None)
    search_rows.append(
        [
            "NAS-then-split (front, placed optimally)",
            f"{len(ok_points)} of {len(two_step)} front networks",
            "—" if fast_p is None else f"{fast_p.fields['latency_ms']:.3g} ({fast_p.fields['accuracy']:.4f})",
            "—"
            if most_p is None
            else f"{most_p.fields['accuracy']:.4f} at {most_p.fields['latency_ms']:.3g} ms",
            "",
        ]
    )
    most = max(feasible, default=None)
    single_best = {p.baseline: p for p in base}
    single_feasible, single_trials = len(feasible), len(joint)
    out.append(
        f"**Searched splitnets-single on splitnets-hmd-4, evolution, {n} trials each.** "
        + "; ".join(summaries)
        + f"; NAS-then-split ({two_step_s:.0f} s, the search on the sensor alone without its cap). "
        "Paper's searched A-F: 0.88-3.59 ms.\n\n"
        + _table(
            [
                "search",
                "within the 2 MB cap",
                "fastest feasible ms (proxy accuracy)",
                "most accurate feasible",
                "median latency reduction vs NAS-then-split at ≥ accuracy",
            ],
            search_rows,
        )
        + "\n\nEvery NAS-then-split front network against the two joint searches:\n\n"
        + _table(
            [
                "NAS-then-split accuracy (proxy)",
                "its latency (ms, optimal cut)",
                "within 2 MB",
                "joint, split searched: least ms at ≥ accuracy",
                "reduction",
                "joint, split = optimal: least ms at ≥ accuracy",
                "reduction",
            ],
            nts_rows,
        )
        + "\n\nThe space's largest network under the three fixed-network baselines:\n\n"
        + _table(["baseline", "placement", "accuracy (proxy)", "latency ms", "within 2 MB"], lines)
        + "\n\n"
    )
    mv_joints, mv_summaries = {}, []
    for name, split in zip(JOINTS, ("searched", "optimal"), strict=True):
        resolved = _resolved("splitnets-multiview", "splitnets-hmd-12", "evolution", n, seed, split=split)
        t0 = time.perf_counter()
        study, obj = _run(resolved)
        mv_joints[name] = _trials(study)
        mv_summaries.append(_joint_summary(f"joint, {name}", mv_joints[name], time.perf_counter() - t0))
    resolved = _resolved("splitnets-multiview", "splitnets-hmd-12", "evolution", n, seed)
    obj = NasObjective(resolved.study, resolved.space, resolved.objective)
    t0 = time.perf_counter()
    mv_two_step = nas_then_split(resolved, obj, n_trials=n)
    mv_two_step_s = time.perf_counter() - t0
    mv_nts_rows, mv_nts_red = _versus_nas_then_split([p for p in mv_two_step if p.feasible], mv_joints)
    over = [p for p in mv_two_step if not p.feasible]
    if over:
        accs = [p.fields["accuracy"] for p in over]
        lats = [p.fields["latency_ms"] for p in over]
        mv_nts_rows.append(
            [
                f"{len(over)} networks over the caps: {min(accs):.4f}-{max(accs):.4f}",
                f"{min(lats):.3g}-{max(lats):.3g}",
                "NO",
            ]
            + ["", ""] * len(mv_joints)
        )
    ref = reference_candidate(obj, "largest")
    mv_base = fixed_network_baselines(obj, ref, ())[0]
    mv_rows = []
    for p in mv_base:
        acc, lat = p.fields["accuracy"], p.fields["latency_ms"]
        row = [p.baseline, p.label, f"{acc:.4f}", f"{lat:.3g}", "yes" if p.feasible else "NO"]
        for trials in mv_joints.values():
            best, red = _reduction(trials, acc, lat)
            row += [_ms(best), _pct(red)]
        mv_rows.append(row)
    out.append(
        f"**Multi-view: searched splitnets-multiview on splitnets-hmd-12 (12 sensors, 12.5 MB/s), "
        f"evolution, {n} trials each.** "
        + "; ".join(mv_summaries)
        + ". With split = optimal the sampler searches the architecture and each candidate's "
        "fusion point (its placement on the tree) is the latency-optimal one. "
        f"NAS-then-split ({mv_two_step_s:.0f} s): the architecture and its fusion point searched "
        "with every view on the aggregator and no cap, then each front network split at its fusion "
        f"point or left on the aggregator, whichever is faster within the caps; "
        f"{sum(p.feasible for p in mv_two_step)} of {len(mv_two_step)} front networks within the "
        "caps. Every NAS-then-split front network within the caps against the two joint searches "
        "(those over the caps in one row):\n\n"
        + _table(
            [
                "NAS-then-split accuracy (proxy)",
                "its latency (ms, best placement)",
                "within the caps",
                "joint, split searched: least ms at ≥ accuracy",
                "reduction",
                "joint, split = optimal: least ms at ≥ accuracy",
                "reduction",
            ],
            mv_nts_rows,
        )
        + "\n\nThe space's largest network under the fixed-network baselines, beside each "
        "search's least feasible latency at that accuracy or better:\n\n"
        + _table(
            [
                "baseline",
                "placement",
                "accuracy (proxy)",
                "latency ms",
                "within the cap",
                "joint, split searched: least ms at ≥ accuracy",
                "reduction",
                "joint, split = optimal: least ms at ≥ accuracy",
                "reduction",
            ],
            mv_rows,
        )
        + "\n\n"
    )
    mv_ok = [p for p in mv_base if p.feasible]
    mv_best = {name: max((t for t in trials if t[2]), default=None) for name, trials in mv_joints.items()}
    beaten = [
        p.baseline
        for p in mv_ok
        if all(_best_at(t, p.fields["accuracy"]) is not None for t in mv_joints.values())
        and all(_best_at(t, p.fields["accuracy"]) < p.fields["latency_ms"] for t in mv_joints.values())  # type: ignore[operator]
    ]
    unreached = [p.baseline for p in mv_ok if p.baseline not in beaten]
    mv_verdict = (
        ("both searches beat " + ", ".join(beaten) + " at equal or better proxy accuracy" if beaten else "")
        + ("; " if beaten and unreached else "")
        + (
            "no searched trial reaches the proxy accuracy of "
            + ", ".join(f"{b} ({_acc_of(mv_ok, b):.4f})" for b in unreached)
            + " (most accurate feasible: "
            + ", ".join(
                f"{name} {best[0]:.4f} at {best[1]:.3g} ms"
                for name, best in mv_best.items()
                if best is not None
            )
            + "), so that comparison is not won"
            if unreached
            else ""
        )
        + ". The paper's Table 6 trend (searched fusion beats every fixed backbone at higher accuracy) "
        + (
            "holds in proxy terms."
            if not unreached
            else f"holds against {', '.join(beaten) or 'none of them'} only (proxy terms)."
        )
    )
    bad_total = [f"{n} {b}" for n, b, _, ok in checks if not ok]
    bad_peak = [f"{n} {b}" for n, b, ok, _ in checks if not ok]
    searched_wins = most is not None and most[1] < min(
        p.fields["latency_ms"] for p in single_best.values() if p.feasible
    )
    out.append(
        "**Partly reproduced.** Fixed backbones ("
        + f"{len(checks)} rows of Tables 4 and 6): total latency within 5 % of the paper "
        + ("in every row" if not bad_total else f"except {', '.join(bad_total)}")
        + "; sensor peak memory within 5 % "
        + ("in every row" if not bad_peak else f"except {', '.join(bad_peak)}")
        + "."
        + f" Searched single-view: {single_feasible} of {single_trials} searched trials respect "
        "the 2 MB cap and "
        + (
            "the most accurate feasible one is faster than the space's largest network under every "
            "feasible baseline"
            if searched_wins
            else "the most accurate feasible one is NOT faster than the best feasible baseline"
        )
        + ", the paper's trend; the proxy accuracy is not comparable to Table 4's ImageNet top-1, so "
        "the seeds' 'at equal accuracy' holds only in proxy terms: against NAS-then-split at equal "
        "or better proxy accuracy the median latency reduction is "
        + ", ".join(f"{name} {_pct(_median(nts_red[name]))}" for name in JOINTS)
        + ". Multi-view: against NAS-then-split at equal or better proxy accuracy the median "
        "latency reduction is "
        + ", ".join(f"{name} {_pct(_median(mv_nts_red[name]))}" for name in JOINTS)
        + (
            " (the seeds' two-step gap does not reproduce on this space: its only placement choice is"
            " the fusion point, which the one-device search already trades against compute)"
            if all((_median(mv_nts_red[name]) or 0.0) < 0.1 for name in JOINTS)
            else ""
        )
        + "; "
        + mv_verdict
        + " Backbones without a nasopt preset (MobileNet-v3, ResNet, RegNet, VGG) have no row; "
        "a row marked 'no such preset here' was run on a nasopt without that preset.\n\n"
    )
    return "".join(out)


# ------------------------------------------------------------------ JMSNAS


def jmsnas(n: int, seed: int) -> str:
    rows = []
    fronts = {}
    for space, objective in (("mbconv-jmsnas-32", "jmsnas-chain"), ("mbconv-jmsnas-mesh-32", "jmsnas-mesh")):
        resolved = _resolved(space, objective, "evolution", n, seed)
        t0 = time.perf_counter()
        study, obj = _run(resolved)
        seconds = time.perf_counter() - t0
        joint = _trials(study)
        fronts[objective] = joint
        devices = len(obj.system.devices)
        feasible = [t for t in joint if t[2]]
        rows.append(
            [
                f"{space} on {objective}",
                devices,
                len(feasible),
                f"{min(t[1] for t in feasible):.3g}" if feasible else "—",
                f"{max(feasible)[0]:.4f} at {max(feasible)[1]:.3g} ms" if feasible else "—",
                f"{seconds:.0f} s",
            ]
        )
    levels = sorted({math.floor(100 * a) / 100 for a, _, ok in fronts["jmsnas-chain"] if ok})[-4:]
    level_rows = [
        [f"≥ {lv:.2f}", _ms(_best_at(fronts["jmsnas-chain"], lv)), _ms(_best_at(fronts["jmsnas-mesh"], lv))]
        for lv in levels
    ]
    pairs = [(_best_at(fronts["jmsnas-chain"], lv), _best_at(fronts["jmsnas-mesh"], lv)) for lv in levels]
    mesh_wins = [m is not None and (c is None or m < c) for c, m in pairs]
    if all(mesh_wins):
        verdict = "**Reproduced**: the mesh reaches every accuracy level at lower latency than the chain."
    elif any(mesh_wins):
        verdict = "**Partly reproduced**: the mesh is faster at some accuracy levels only."
    else:
        verdict = "**Not reproduced**: the chain reaches every accuracy level at lower latency than the mesh."
    verdict += (
        " JMSNAS' Fig. 5 shows the mesh ahead. The systems differ beyond the topology: the mesh has "
        "six devices (three MBSs, each forced to run one parallel branch at an ASSUMED 1.7e10 MAC/s), "
        "the chain four, and the mesh space (mbconv-jmsnas-mesh-32) is not the chain space, so "
        "'equal devices' does not hold. The device speeds are assumptions "
        "(objectives/jmsnas-*.toml), and they decide this comparison"
    )
    if not all(mesh_wins):
        verdict += (
            ": in nasopt's cost model the chain can send the input to the fast cloud early, while "
            "the mesh must run its branches on the MBSs"
        )
    verdict += ".\n\n"
    return (
        f"Evolution, {n} trials each, error vs latency, no latency threshold (JMSNAS' T_Const "
        "levels are not published).\n\n"
        + _table(
            ["study", "devices", "feasible trials", "least latency ms", "most accurate"],
            [r[:5] for r in rows],
        )
        + "\n\nLeast latency at a proxy accuracy level (the chain's four highest, rounded):\n\n"
        + _table(["accuracy", "chain ms", "mesh ms"], level_rows)
        + "\n\n"
        + verdict
    )


# ------------------------------------------------------------------ Wang


def wang(n: int, seed: int) -> str:
    base = load_objective("edge-cloud-4g")
    rows = []
    gains: list[float] = []
    for scale in (0.125, 0.5, 1.0, 4.0):
        links = {
            k: v.model_copy(update={"bandwidth_bps": v.bandwidth_bps * scale}) for k, v in base.links.items()
        }
        spec = base.model_copy(update={"links": links, "name": f"edge-cloud-4g-x{scale:g}"})
        resolved = _resolved("vgg11-compress", spec, "evolution", n, seed)
        study, obj = _run(resolved)
        ref = reference_candidate(obj, "largest")
        (surgery,) = [p for p in fixed_network_baselines(obj, ref, ())[0] if p.baseline == "neurosurgeon"]
        joint = _trials(study)
        acc, lat = surgery.fields["accuracy"], surgery.fields["latency_ms"]
        tol = [_best_at(joint, acc - d) for d in (0.0, 0.01, 0.02)]
        gains.append(0.0 if tol[1] is None else 1 - tol[1] / lat)
        # a check that the baseline's system is the scaled one
        check = evaluate(
            build_network(obj.space.macro, replace(ref, cuts=tuple(surgery.candidate["cuts"]))), obj.system
        )
        assert abs(check.latency_ms - lat) < 1e-9 * max(1.0, lat)
        rows.append(
            [
                f"{8 * scale:g} Mb/s",
                f"{lat:.4g} ({surgery.label.replace('optimal ', '')})",
                f"{acc:.4f}",
                *("—" if t is None else f"{t:.4g} ({100 * (1 - t / lat):.0f} % less)" for t in tol),
            ]
        )
    return (
        f"vgg11-compress on edge-cloud-4g with the uplink at four bandwidths; dynamic surgery = the "
        f"uncompressed VGG11 (the space's largest network) at its optimal cut for that bandwidth; "
        f"optimal branch = a joint search (evolution, {n} trials) of compression and cut at that "
        "bandwidth. The model tree itself (one network per bandwidth context, chosen at run time) "
        "is measured in the wang-tree section below.\n\n"
        + _table(
            [
                "uplink",
                "dynamic surgery ms (cut)",
                "its accuracy (proxy)",
                "optimal branch ms at ≥ same accuracy",
                "at ≥ accuracy − 0.01",
                "at ≥ accuracy − 0.02",
            ],
            rows,
        )
        + "\n\n"
        + (
            "**Reproduced**"
            if min(gains) >= 0.2
            else "**Partly reproduced**"
            if max(gains) >= 0.05
            else "**Not reproduced**"
        )
        + f": with at most 1 point of proxy accuracy given up, the optimal branch is "
        f"{100 * min(gains):.0f}-{100 * max(gains):.0f} % faster than dynamic surgery over the four "
        "bandwidths (the paper, VGG11: the optimal branch beats surgery on reward, the model tree "
        "trades 1.35 % accuracy for 28 % latency). Why not here: at 32x32 the raw input is 3 KB, so "
        "from 4 Mb/s up the optimal cut sends the input and the cloud computes the uncompressed "
        "network in a few ms; the 25 ms first-packet term f(S|W) (ASSUMED in edge-cloud-4g) is paid "
        "by any transfer, and compressing layers the cloud runs saves almost nothing, while the "
        "proxy charges every compression action capacity (accuracy).\n\n"
    )


def _nasopt_version() -> str:
    """The git commit of the nasopt that ran (and whether its tree had changes)."""
    import subprocess

    import nasopt

    folder = Path(nasopt.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "version unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes in nasopt/" if dirty else "")


SECTIONS = {
    "nasc": nasc,
    "nasc-supernet": nasc_supernet,
    "splitnets": splitnets,
    "jmsnas": jmsnas,
    "wang": wang,
    "wang-tree": model_tree,
}


SECTION_MARK = re.compile(r"^<!-- ([a-z][a-z0-9-]*): [^>]*-->$", re.MULTILINE)


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """A written evidence.md as (header, {section name: its text from its marker on})."""
    marks = list(SECTION_MARK.finditer(text))
    header = text[: marks[0].start()] if marks else text
    sections = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        sections[m.group(1)] = text[m.start() : nxt.start() if nxt else len(text)].rstrip("\n") + "\n"
    return header, sections


def merge_sections(old: str, new: dict[str, str]) -> str:
    """`old` with the sections in `new` replaced (or inserted in SECTIONS' order), the others
    and the header kept as they are."""
    header, sections = split_sections(old)
    order = list(sections)
    for name in new:
        if name in order:
            continue
        later = (
            [s for s in list(SECTIONS)[list(SECTIONS).index(name) + 1 :] if s in order]
            if name in SECTIONS
            else []
        )
        order.insert(order.index(later[0]) if later else len(order), name)
    merged = {**sections, **new}
    return header + "\n".join(merged[name] for name in order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--supernet-trials", type=int, default=300, help="trials of the nasc-supernet runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {','.join(SECTIONS)}")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="write here; an existing file keeps its header and the sections not run",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    names = args.sections.split(",")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)} (allowed: {', '.join(SECTIONS)})")
    intro = __doc__.split("\n\n", 2)[2].strip()
    header = (
        "# Evidence: the seeds' claims rerun with nasopt\n\n" + intro + "\n\n"
        "Each section: what ran, the numbers of that run, and a verdict computed from them "
        "(thresholds in the code: NASC reproduced at >= 40 % median reduction; Wang at >= 20 % "
        "with 1 point of accuracy given up; partly at lower positive gains). Sections rerun on "
        "their own (`--sections`) say below their title which nasopt, machine and command ran them.\n\n"
        f"nasopt: {_nasopt_version()}. Machine: {machine()}. Command: "
        f"`python benchmarks/evidence.py --trials {args.trials} --seed {args.seed}`.\n"
    )
    bodies = {}
    for name in names:
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        trials = args.supernet_trials if name == "nasc-supernet" else args.trials
        body = SECTIONS[name](trials, args.seed)
        seconds = time.perf_counter() - t0
        flag = "--supernet-trials" if name == "nasc-supernet" else "--trials"
        run = (
            f"Run: `python benchmarks/evidence.py --sections {name} {flag} {trials}"
            f" --seed {args.seed}` ({seconds:.0f} s), nasopt {_nasopt_version()}, "
            f"{machine()}, load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
            "(the 2 cores are shared with other jobs: timings are not idle-machine timings).\n\n"
        )
        bodies[name] = f"<!-- {name}: {seconds:.0f} s -->\n## {name}\n\n{run}{body}"
        print(bodies[name], flush=True)
    if args.markdown:
        if args.markdown.is_file() and set(names) != set(SECTIONS):
            text = merge_sections(args.markdown.read_text(encoding="utf-8"), bodies)
        else:
            text = header + "\n".join(bodies[n] for n in names)
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
