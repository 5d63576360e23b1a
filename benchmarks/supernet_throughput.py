"""Supernet training throughput: images/s of a sandwich step vs a plain step of the largest
subnet (same batch), 1 vs 2 processes (the `--nproc` path), with and without a competing
CPU-bound process.

    python benchmarks/supernet_throughput.py                     # the matrix, markdown to stdout
    python benchmarks/supernet_throughput.py --one sandwich      # one configuration, JSON
    python benchmarks/supernet_throughput.py --profile           # torch.profiler's top ops

Each configuration runs in a fresh process (thread settings are read when PyTorch starts) on
the quickstart study's supernet and data (`studies/quickstart.toml`: mbconv-quick, digits at
32x32, batch 32, sandwich of 4 subnets). Configurations:

- plain: the largest subnet pulled out of the supernet (`nasopt.deploy._subnet.Subnet`, copies
  of its weight slices, what `nasopt retrain` trains) - forward, cross-entropy, backward, AdamW;
- largest: the same subnet run inside the supernet (elastic ops slicing the widest weights);
- sandwich: `nasopt.accuracy.supernet._train.train_step` (largest + smallest + 2 random, in-place
  distillation, packet loss);
- ddp2: the sandwich step in 2 gloo processes, each on 16 rows of the global batch of 32 (synced
  BatchNorm, one gradient all-reduce), timed on rank 0; ddp2-nosync: the same without synced
  BatchNorm (to isolate its cost; not what nasopt trains with).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(threads: str) -> tuple[Any, Any, Any, Any]:
    import torch

    from nasopt.accuracy.supernet import SupernetAccuracy
    from nasopt.accuracy.supernet._threads import use_free_cores
    from nasopt.core.system import build_system
    from nasopt.presets import resolve
    from nasopt.space import SearchSpace

    r = resolve(os.path.join(ROOT, "studies/quickstart.toml"))
    est = SupernetAccuracy(SearchSpace(r.space, build_system(r.objective)), r.study.accuracy)
    net = est.build()
    if threads == "nasopt":
        use_free_cores()
    else:
        torch.set_num_threads(int(threads))
    batches = est.data.batches(est.config.batch_size, torch.Generator().manual_seed(0))
    return est, net, batches, torch


def _time(step: Any, batches: list[Any], steps: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        t = time.perf_counter()
        step(i, x, y)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def one(kind: str, steps: int, warmup: int, threads: str) -> dict[str, Any]:
    if kind.startswith("ddp2"):
        return _ddp(kind, steps, warmup, threads)
    est, net, batches, torch = _setup(threads)
    import torch.nn.functional as F

    from nasopt.accuracy.supernet._ops import RunContext
    from nasopt.accuracy.supernet._train import train_step

    cfg, space = est.config, est.space
    largest = space.largest()
    if kind == "plain":
        from nasopt.deploy._subnet import Subnet

        model = Subnet(net, largest)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

        def step(i: int, x: Any, y: Any) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()

    elif kind == "largest":
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)

        def step(i: int, x: Any, y: Any) -> None:
            opt.zero_grad(set_to_none=True)
            logits = net(x, largest, RunContext())
            F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()

    elif kind == "sandwich":
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)

        def step(i: int, x: Any, y: Any) -> None:
            train_step(net, space, cfg, x, y, i, True, opt)

    else:
        raise SystemExit(f"unknown configuration {kind!r}")
    times = _time(step, batches, steps, warmup)
    return _summary(times, cfg.batch_size, torch.get_num_threads())


def _summary(times: list[float], batch: int, threads: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {"median_s": med, "max_s": max(times), "images_per_s": batch / med, "threads": threads}


def _ddp_rank(rank: int, port: int, kind: str, steps: int, warmup: int, threads: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    from nasopt.accuracy.supernet import _dist

    _dist.init_from_env()
    est, net, batches, torch = _setup(threads)
    from nasopt.accuracy.supernet import _train
    from nasopt.accuracy.supernet._ops import RunContext

    if kind == "ddp2-nosync":
        real = RunContext.__init__

        def no_sync(self: Any, *a: Any, **kw: Any) -> None:
            real(self, *a, **kw)
            self.sync_bn = False

        RunContext.__init__ = no_sync  # type: ignore[method-assign]
    opt = torch.optim.AdamW(net.parameters(), lr=est.config.lr)

    def step(i: int, x: Any, y: Any) -> None:
        _train.train_step(net, est.space, est.config, x, y, i, True, opt)

    times = _time(step, batches, steps, warmup)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(_summary(times, est.config.batch_size, torch.get_num_threads()), fh)
    _dist.shutdown()


def _ddp(kind: str, steps: int, warmup: int, threads: str) -> dict[str, Any]:
    import tempfile

    import torch.multiprocessing as mp

    from nasopt.accuracy.supernet._launch import free_port

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.json")
        mp.spawn(_ddp_rank, args=(free_port(), kind, steps, warmup, threads, out), nprocs=2)
        with open(out) as fh:
            return dict(json.load(fh))


def profile(threads: str, steps: int) -> None:
    est, net, batches, torch = _setup(threads)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from nasopt.accuracy.supernet._train import train_step

    opt = torch.optim.AdamW(net.parameters(), lr=est.config.lr)
    for i in range(2):
        train_step(net, est.space, est.config, *batches[i], i, True, opt)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            train_step(net, est.space, est.config, *batches[i], i, True, opt)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    rng = random.Random(0)
    print("sandwich members (MACs per image):")
    for c in [est.space.largest(), est.space.smallest(), est.space.sample(rng), est.space.sample(rng)]:
        print(f"  {est.space.network(c).macs / 1e6:.2f} M")


CONFIGS = [
    ("plain", "nasopt"),
    ("largest", "nasopt"),
    ("sandwich", "nasopt"),
    ("sandwich", "1"),
    ("sandwich", "2"),
    ("ddp2", "nasopt"),
    ("ddp2-nosync", "nasopt"),
]


def matrix(steps: int, warmup: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print(
        "| competing process | configuration | threads/rank | median step s | max step s | images/s "
        "| load avg |"
    )
    print("|---|---|---|---|---|---|---|")
    for load in ("none", "1 busy loop"):
        hog = None
        if load != "none":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1)
        try:
            for kind, threads in CONFIGS:
                cmd = [sys.executable, __file__, "--one", kind, "--steps", str(steps)]
                cmd += ["--warmup", str(warmup), "--threads", threads]
                run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                res = json.loads(run.stdout.strip().splitlines()[-1])
                label = threads if threads != "nasopt" else f"nasopt ({res['threads']})"
                print(
                    f"| {load} | {kind} | {label} | {res['median_s']:.3f} | {res['max_s']:.3f} | "
                    f"{res['images_per_s']:.0f} | {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", default=None, help="time one configuration in this process")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of sandwich steps")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", default="nasopt", help="N, or nasopt: nasopt's own choice")
    args = ap.parse_args()
    if args.profile:
        profile(args.threads, args.steps)
    elif args.one:
        print(json.dumps(one(args.one, args.steps, args.warmup, args.threads)))
    else:
        matrix(args.steps, args.warmup)


if __name__ == "__main__":
    main()
