"""Latency prediction on this machine: a lookup table built by `nasopt profile` and the fitted
throughput and linear models against the measured end-to-end latency of random candidates.

For each preset: `nasopt profile --space P --backend B --check --candidates N --calibrate K`
(profile the ops into a table, then measure N random candidates whole, plus K other candidates
that fit the per-candidate overhead of "lookup+overhead"). Records `lscpu`'s model and the load
average before and after each run, and writes benchmarks/prediction.json.

    python benchmarks/prediction.py                      # both presets, onnxruntime, N=50, K=10
    python benchmarks/prediction.py --presets mbconv-quick --candidates 5 --calibrate 2
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
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("-o", "--output", default=str(HERE / "prediction.json"))
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            table = Path(tmp) / f"{preset}-{args.backend}.json"
            check = Path(tmp) / f"{preset}-{args.backend}-check.json"
            cmd = [
                "nasopt", "profile", "--space", preset, "--backend", args.backend,
                "-o", str(table), "--check", "--candidates", str(args.candidates),
                "--calibrate", str(args.calibrate), "--warmup", str(args.warmup),
                "--repeats", str(args.repeats), "--check-output", str(check), "--no-progress",
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
                    "command": " ".join(cmd).replace(tmp, "OUT"),
                    "seconds": round(seconds, 1),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "check": doc,
                }
            )
    out = {"cpu": cpu_model(), "cores": os.cpu_count(), "runs": runs}
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for run in runs:
        load = f"load {run['load_average_before']} -> {run['load_average_after']}"
        print(f"\n{run['preset']} ({run['seconds']} s, {load})")
        for name, s in run["check"]["summary"].items():
            print(
                f"| {name} | {s['within_10pct']:.2f} | {100 * s['median_abs_error']:.1f} % |"
                f" {100 * s['median_error']:+.1f} % | {100 * s['max_abs_error']:.1f} % |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
