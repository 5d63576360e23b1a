"""Supernet training-step time vs intra-op threads, OpenMP wait policy and a competing process.

    python benchmarks/threads.py                       # the matrix, written to stdout as markdown
    python benchmarks/threads.py --one --steps 10      # one configuration (as set by the env)

The matrix runs each configuration in a fresh process (thread settings and OpenMP's wait policy
are read when PyTorch starts), once on an otherwise idle machine and once beside one busy-loop
process (`python -c 'while True: pass'`). Each timed step is `nasopt.accuracy.supernet._train
.train_step` on the quickstart study's supernet and data (sandwich rule: 4 subnets forward and
backward per step, batch 32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def one(steps: int, warmup: int, threads: int | None) -> dict[str, float | int | str]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from nasopt.accuracy.supernet import SupernetAccuracy
    from nasopt.accuracy.supernet._train import train_step
    from nasopt.core.system import build_system
    from nasopt.presets import resolve
    from nasopt.space import SearchSpace

    r = resolve("studies/quickstart.toml")
    est = SupernetAccuracy(SearchSpace(r.space, build_system(r.objective)), r.study.accuracy)
    net = est.build()
    if threads is not None:  # build() applies nasopt's default unless told otherwise
        torch.set_num_threads(threads)
    cfg = est.config
    data = est.data
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    batches = data.batches(cfg.batch_size, torch.Generator().manual_seed(0))
    times = []
    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        t = time.perf_counter()
        train_step(net, est.space, cfg, x, y, i, True, opt)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return {
        "threads": torch.get_num_threads(),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "steps": steps,
    }


def matrix(steps: int, rounds: int) -> None:
    configs = [
        ("2 threads", {}, "2"),
        ("2 threads, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}, "2"),
        ("1 thread", {}, "1"),
        ("nasopt default (use_available_cores)", {}, "nasopt"),
    ]
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print("| round | configuration | competing process | threads | median step s | max step s | load avg |")
    print("|---|---|---|---|---|---|---|")
    for r in range(1, rounds + 1):
        for load in ("none", "1 busy loop"):
            run_configs(r, load, configs, base, steps)


def run_configs(r: int, load: str, configs: list, base: dict[str, str], steps: int) -> None:
    hog = None
    if load != "none":
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1)
    try:
        for label, env, threads in configs:
            cmd = [sys.executable, __file__, "--one", "--steps", str(steps), "--threads", threads]
            out = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, check=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            print(
                f"| {r} | {label} | {load} | {res['threads']} | {res['median_s']:.3f} | "
                f"{res['max_s']:.3f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", action="store_true", help="time one configuration in this process")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--rounds", type=int, default=1, help="repetitions of the whole matrix")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument(
        "--threads",
        default="nasopt",
        help="N: torch.set_num_threads(N); none: PyTorch's own default; nasopt: nasopt's default",
    )
    args = ap.parse_args()
    if args.one:
        if args.threads == "none":
            import nasopt.accuracy.supernet._estimator as est_mod

            est_mod.use_available_cores = lambda: None  # type: ignore[assignment]
            threads = None
        elif args.threads == "nasopt":
            threads = None
        else:
            threads = int(args.threads)
        print(json.dumps(one(args.steps, args.warmup, threads)))
    else:
        matrix(args.steps, args.rounds)


if __name__ == "__main__":
    main()
