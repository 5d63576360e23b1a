"""`nasopt describe`: one candidate on one system, layer by layer, as a table or stable JSON.

The JSON schema (`"schema": "nasopt.describe/1"`) is documented in docs/describe-json.md;
fields are only ever added, never renamed or removed, within a schema version.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from nasopt.core.candidate import Candidate
from nasopt.core.evaluation import Evaluation, evaluate
from nasopt.core.memory import payload_bytes
from nasopt.core.network import Network
from nasopt.core.robust import latency_distribution, varying_links
from nasopt.core.system import System, build_system
from nasopt.errors import SpecError
from nasopt.space import SearchSpace
from nasopt.spec import ObjectiveSpec, SearchSpaceSpec

SCHEMA = "nasopt.describe/1"


def pick_candidate(space: SearchSpace, how: str) -> Candidate:
    """A candidate from `largest`, `smallest`, `random:SEED`, inline JSON or `@file.json`."""
    if how == "largest":
        return space.largest()
    if how == "smallest":
        return space.smallest()
    if how.startswith("random:"):
        seed_text = how.split(":", 1)[1]
        if not seed_text.lstrip("-").isdigit():
            raise SpecError(
                "random needs an integer seed", field="--candidate", value=how, allowed="random:SEED"
            )
        return space.sample(random.Random(int(seed_text)))
    if how.startswith("@"):
        path = Path(how[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read candidate file: {exc.strerror}", file=str(path)) from None
        source = str(path)
    else:
        text, source = how, "--candidate"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"not valid JSON: {exc.msg}",
            field=source,
            allowed="largest, smallest, random:SEED, a JSON object, or @file.json",
        ) from None
    if not isinstance(data, dict):
        raise SpecError("a candidate must be a JSON object", field=source)
    if "ops" in data or "widths" in data:
        return space.validate(Candidate.from_dict(data))
    # parameter values, e.g. a trial's params; parameters not given take the largest candidate's
    names = {p.name for p in space.params()}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpecError(
            "unknown parameter", field=source, value=unknown[0], allowed=sorted(names) or "(none)"
        )
    return space.candidate({**space.values(space.largest()), **data})


def describe(space_spec: SearchSpaceSpec, objective: ObjectiveSpec, how: str = "largest") -> dict[str, Any]:
    system = build_system(objective)
    space = SearchSpace(space_spec, system)
    candidate = pick_candidate(space, how)
    network = space.network(candidate)
    ev = evaluate(network, system)
    doc = report(space, system, candidate, network, ev)
    if varying_links(system):
        doc["robust"] = robust_report(network, system, ev, objective)
    return doc


def robust_report(
    network: Network, system: System, ev: Evaluation, objective: ObjectiveSpec
) -> dict[str, Any]:
    """The latency over the varying links' contexts: each link's contexts with their shares,
    exact per-combination latencies (discrete contexts) and the robust metrics."""
    r = objective.robust
    dist = latency_distribution(network, system, samples=r.samples, seed=r.seed, ev=ev)
    links = {}
    for link in varying_links(system):
        var = link.variation
        assert var is not None
        links[link.name] = {
            "kind": var.kind,
            "expected_bandwidth_bps": link.bandwidth_bps,
            "contexts": [
                {
                    "name": c.name,
                    "bandwidth_bps": c.bandwidth_bps,
                    "latency_s": c.latency_s,
                    "share": float(p),
                }
                for c, p in zip(var.contexts, var.probabilities, strict=True)
            ],
        }
    summary: dict[str, float | None] = dict(dist.summary(r.deadline_ms))
    if r.deadline_ms is None:
        summary["deadline_miss"] = None  # JSON has no NaN
    combos = []
    if dist.exact:
        for label, lat, w in zip(dist.labels, dist.latency_s, dist.weights, strict=True):
            combos.append({"contexts": label, "probability": float(w), "latency_ms": float(lat) * 1e3})
    return {
        "method": "exact" if dist.exact else f"replay of {r.samples} inferences, seed {r.seed}",
        "deadline_ms": r.deadline_ms,
        "links": links,
        "combinations": combos,
        **summary,
    }


def report(
    space: SearchSpace, system: System, candidate: Candidate, network: Network, ev: Evaluation
) -> dict[str, Any]:
    """The describe document: layers, cuts, devices, links and totals."""
    layers = []
    for layer, device in zip(network.layers, ev.placement, strict=True):
        layers.append(
            {
                "name": layer.name,
                "op": layer.op,
                "type": layer.op_type,
                "in_shape": list(layer.in_shape),
                "out_shape": list(layer.out_shape),
                "macs": layer.macs,
                "params": layer.params,
                "out_bytes": int(payload_bytes(layer.out_elems, network.activation_bits)),
                "device": device,
            }
        )
    devices = {}
    for name, dev in system.devices.items():
        if name not in ev.compute_s and name not in ev.memory_bytes:
            continue
        cap = dev.memory_bytes
        peak = ev.memory_bytes.get(name, 0)
        devices[name] = {
            "compute_ms": ev.compute_s.get(name, 0.0) * 1e3,
            "macs": ev.macs.get(name, 0),
            "weight_bytes": ev.weight_bytes.get(name, 0),
            "peak_memory_bytes": peak,
            "memory_cap_bytes": cap,
            "memory_ok": cap is None or peak <= cap,
        }
    links = {
        name: {
            "src": system.links[name].src,
            "dst": system.links[name].dst,
            "bytes": ev.sent_bytes[name],
            "transfer_ms": ev.transfer_s[name] * 1e3,
            "bandwidth_bps": system.links[name].bandwidth_bps,
        }
        for name in ev.transfer_s
    }
    cuts = []
    for k, flat in enumerate(network.cut_after):
        cuts.append(
            {
                "after": network.layers[flat].name if flat >= 0 else "input",
                "elements": network.sent_elems[k],
                "bits": network.sent_bits[k],
                "bytes": payload_bytes(network.sent_elems[k], network.sent_bits[k]),
            }
        )
    return {
        "schema": SCHEMA,
        "space": space.spec.name,
        "objective": system.name,
        "topology": system.kind,
        "candidate": candidate.to_dict(),
        "params": space.values(candidate),
        "layers": layers,
        "cuts": cuts,
        "devices": devices,
        "links": links,
        "totals": {
            "latency_ms": ev.latency_ms,
            "macs": network.macs,
            "params": network.params,
            "energy_mj": ev.energy_j * 1e3,
            "feasible_memory": not ev.memory_violations(),
        },
    }


def render_table(doc: dict[str, Any]) -> str:
    """A plain-text view of a describe document."""
    lines = [f"space {doc['space']} on {doc['objective']} ({doc['topology']})", ""]
    head = f"{'layer':<16}{'op':<14}{'out shape':<16}{'MACs':>14}{'params':>12}{'out bytes':>12}  device"
    lines += [head, "-" * len(head)]
    for row in doc["layers"]:
        shape = "x".join(str(x) for x in row["out_shape"])
        lines.append(
            f"{row['name']:<16}{row['op']:<14}{shape:<16}{row['macs']:>14,}{row['params']:>12,}"
            f"{row['out_bytes']:>12,}  {row['device']}"
        )
    lines.append("")
    for cut in doc["cuts"]:
        lines.append(
            f"cut after {cut['after']}: {cut['elements']:,} elements x {cut['bits']} bit"
            f" = {cut['bytes']:,.0f} B"
        )
    lines.append("")
    lines.append(f"{'device':<16}{'compute ms':>12}{'MACs':>16}{'peak memory B':>16}{'cap B':>14}")
    for name, d in doc["devices"].items():
        cap = "-" if d["memory_cap_bytes"] is None else f"{d['memory_cap_bytes']:,}"
        flag = "" if d["memory_ok"] else "  OVER CAP"
        lines.append(
            f"{name:<16}{d['compute_ms']:>12.4f}{d['macs']:>16,}{d['peak_memory_bytes']:>16,}{cap:>14}{flag}"
        )
    if doc["links"]:
        lines.append("")
        lines.append(f"{'link':<16}{'route':<26}{'bytes':>14}{'transfer ms':>14}")
        for name, lk in doc["links"].items():
            route = f"{lk['src']}->{lk['dst']}"
            lines.append(f"{name:<16}{route:<26}{lk['bytes']:>14,.0f}{lk['transfer_ms']:>14.4f}")
    t = doc["totals"]
    lines.append("")
    lines.append(
        f"total latency {t['latency_ms']:.4f} ms | {t['macs']:,} MACs | {t['params']:,} params"
        f" | energy {t['energy_mj']:.4g} mJ | memory {'ok' if t['feasible_memory'] else 'OVER CAP'}"
    )
    if "robust" in doc:
        lines += ["", *_robust_lines(doc["robust"])]
    return "\n".join(lines)


def _robust_lines(rob: dict[str, Any]) -> list[str]:
    lines = [f"network contexts ({rob['method']}; latency_ms above is at the expected context)"]
    for name, lk in rob["links"].items():
        ctx = ", ".join(
            f"{c['name']} {c['bandwidth_bps'] / 1e6:.4g} Mb/s ({100 * c['share']:.1f} %)"
            for c in lk["contexts"]
        )
        lines.append(f"  {name}: {lk['kind']}, expected {lk['expected_bandwidth_bps'] / 1e6:.4g} Mb/s; {ctx}")
    for c in rob["combinations"]:
        lines.append(f"  {c['contexts']:<40} p = {c['probability']:.4f}  latency {c['latency_ms']:.4f} ms")
    miss = (
        ""
        if rob["deadline_ms"] is None
        else f" | over {rob['deadline_ms']:g} ms: {100 * rob['deadline_miss']:.2f} %"
    )
    lines.append(
        f"latency mean {rob['latency_mean_ms']:.4f} ms | p95 {rob['latency_p95_ms']:.4f} ms"
        f" | worst {rob['latency_worst_ms']:.4f} ms{miss}"
    )
    return lines
