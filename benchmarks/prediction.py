"""Latency prediction on this machine: a lookup table built by `nasopt profile` and the fitted
throughput and linear models against the measured end-to-end latency of random candidates.

For each preset: `nasopt profile --space P --backend B --check --candidates N --calibrate K`
(profile the ops into a table, then measure N random candidates whole, plus K other candidates
that fit the per-candidate overhead of "lookup+overhead"). Records `lscpu`'s model and the load
average before and after each run, and writes benchmarks/prediction.json.

    python benchmarks/prediction.py                      # both presets, onnxruntime, N=50, K=10
    python benchmarks/prediction.py --presets mbconv-quick --candidates 5 --calibrate 2
    python benchmarks/prediction.py --render             # the markdown tables of prediction.json
    python benchmarks/prediction.py --noise fbnet-nasc   # re-measure 5 candidates 4 times each
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="mbconv-quick,fbnet-nasc")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--calibrate", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--statistic", default="min", help="min | median of the timed runs")
    ap.add_argument(
        "--rounds", type=int, default=100, help="round-robin passes the timed runs are split into"
    )
    ap.add_argument("-o", "--output", default=str(HERE / "prediction.json"))
    ap.add_argument("--render", action="store_true", help="print the tables of --output, run nothing")
    ap.add_argument("--noise", default=None, help="a preset: measurement repeatability only")
    args = ap.parse_args()
    if args.noise:
        return noise(args.noise, 5, 4, args.warmup, args.repeats, args.statistic, args.rounds)
    if args.render:
        print(render(json.loads(Path(args.output).read_text())))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            table = Path(tmp) / f"{preset}-{args.backend}.json"
            check = Path(tmp) / f"{preset}-{args.backend}-check.json"
            cmd = [
                sys.executable, "-m", "nasopt", "profile", "--space", preset, "--backend", args.backend,
                "-o", str(table), "--check", "--candidates", str(args.candidates),
                "--calibrate", str(args.calibrate), "--warmup", str(args.warmup),
                "--repeats", str(args.repeats), "--statistic", args.statistic, "--rounds", str(args.rounds),
                "--check-output", str(check), "--no-progress",
            ]  # fmt: skip
            load_before = os.getloadavg()
            t0 = time.time()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            seconds = time.time() - t0
            print(proc.stdout, end="")
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            doc = json.loads(check.read_text())
            doc["table_meta"] = json.loads(table.with_name(table.stem + ".meta.json").read_text())
            runs.append(
                {
                    "preset": preset,
                    "command": " ".join(["nasopt", *cmd[3:]]).replace(tmp, "OUT"),
                    "seconds": round(seconds, 1),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "check": doc,
                }
            )
    out = {"cpu": cpu_model(), "cores": os.cpu_count(), "runs": runs}
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(render(out))
    return 0


def noise(
    preset: str, n: int, measurements: int, warmup: int, repeats: int, statistic: str, rounds: int
) -> int:
    """The same `n` candidates (seed 0, as --check draws them), each exported once and measured
    `measurements` times as --check measures (`statistic` of `repeats` runs in `rounds` round-robin
    passes over the `n`): how much the measurement of one model moves on this machine."""
    import random

    import torch

    from nasopt.accuracy.supernet import Supernet
    from nasopt.deploy._onnx import ort_session
    from nasopt.deploy._subnet import calibrated_subnet
    from nasopt.deploy.profile_check import _input
    from nasopt.deploy.profile_ops import export_onnx, onnx_call, time_calls, using_clock
    from nasopt.presets import load_space
    from nasopt.space import SearchSpace

    spec = load_space(preset)
    space = SearchSpace(spec)
    rng = random.Random(0)
    cands = [space.sample(rng) for _ in range(n)]
    torch.manual_seed(0)
    net = Supernet(spec).eval()
    runs = []
    for cand in cands:
        x = _input(spec, cand, 1, net.views)
        sub = calibrated_subnet(net, cand, [_input(spec, cand, 2, net.views)], var_floor=1e-3)
        runs.append(
            onnx_call(ort_session(export_onnx(sub, (x,), ["input"], ["logits"])), {"input": x.numpy()})
        )
    times: list[list[float]] = [[] for _ in cands]
    print(f"load average before: {os.getloadavg()}")
    print(f"{statistic} of {repeats} runs after {warmup} warm-ups, in {rounds} round-robin passes")
    with using_clock("cpu", statistic):
        for _ in range(measurements):
            for i, t in enumerate(time_calls(runs, warmup, repeats, rounds)):
                times[i].append(t * 1e3)
    print(f"load average after: {os.getloadavg()}")
    for i, t in enumerate(times):
        lo, hi = min(t), max(t)
        print(f"candidate {i}: " + ", ".join(f"{v:.3f}" for v in t) + f" ms; max/min {hi / lo:.2f}")
    return 0


def render(out: dict) -> str:
    """Markdown: per run the settings and one row per compute model."""
    lines = []
    for run in out["runs"]:
        c = run["check"]
        fits = c["models"]
        meas = sorted(r["measured_ms"] for r in c["rows"])
        cal = c.get("calibration") or {}
        meta = c.get("table_meta") or {}
        in_graph = meta.get("in_graph_ops")
        how = (
            f"{in_graph} ops timed without their end conversions"
            if in_graph is not None
            else "ops timed as is"
        )
        lines += [
            f"### {run['preset']} ({c['backend']}, {c['candidates']} candidates)",
            "",
            f"- command: `{run['command']}` ({run['seconds']} s)",
            f"- load average (1, 5, 15 min): {run['load_average_before']} before, "
            f"{run['load_average_after']} after",
            f"- table: {c['table_meta']['keys'] if c.get('table_meta') else '?'} op keys; measured latency "
            f"{meas[0]:.3f} to {meas[-1]:.3f} ms (median {meas[len(meas) // 2]:.3f} ms)",
            "- the table's ops and the candidates timed "
            + ("together, in the same passes" if c.get("timed_with_table") else "one after the other"),
            f"- {how}; empty-run cost {meta.get('call_overhead_ms', 0):.4f} ms; run overhead "
            f"{meta['run_overhead_ms']:.4f} ms, added once per candidate"
            " (`run_overhead_s`) by every model",
            f"- fitted throughput {fits['throughput']['macs_per_s']:.4g} MAC/s ({fits['throughput']['fit']})",
            f"- calibration: {cal.get('candidates', 0)} other candidates, median excess over the table "
            f"{cal.get('offset_ms', 0):+.4f} ms (in the table's run overhead)",
            "",
            "| model | within ±10 % | median \\|error\\| | median error | max \\|error\\| |",
            "|---|---|---|---|---|",
        ]
        for name, s in c["summary"].items():
            lines.append(
                f"| {name} | {s['within_10pct']:.2f} | {100 * s['median_abs_error']:.1f} % |"
                f" {100 * s['median_error']:+.1f} % | {100 * s['max_abs_error']:.1f} % |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
