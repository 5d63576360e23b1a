"""How many intra-op threads PyTorch gets for supernet training and scoring.

PyTorch starts one OpenMP thread per core and every operator of a small network (a 32x32
MBConv subnet, batch 32) is a parallel region ending in a barrier. When another process keeps
one of the cores busy, the thread that lost its core holds every barrier until the scheduler
runs it again, so each of the thousands of operators per step waits a time slice: on 2 cores,
one busy-loop process made steps 6-20x slower instead of about 2x (benchmarks/threads.md).
With one thread per *free* core there is no such wait.

So nasopt uses the cores this process may run on, divided between `nasopt run --workers N`'s
local workers, and less the cores other processes keep busy (the 1-minute load average minus
this process's own threads), re-checked at every epoch. A distributed run's local ranks
(`LOCAL_WORLD_SIZE`, set by torchrun and `nasopt train-supernet --nproc`) count as workers.
`OMP_NUM_THREADS` (or `NASOPT_THREADS`) set by the user always wins.
"""

from __future__ import annotations

import math
import os

import torch


def usable_cores() -> int:
    """Cores this process may run on (containers often allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_elsewhere(own_threads: int) -> float:
    """Cores kept busy by other processes: the 1-minute load average less this process's own
    running threads (0 where the load average is unknown)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return max(0.0, load - own_threads)


def choose_threads(cores: int, workers: int, busy: float) -> int:
    """One thread per core that is free for this worker, at least one.

    >>> choose_threads(2, 1, 0.1)   # idle 2-core machine
    2
    >>> choose_threads(2, 1, 1.0)   # one other CPU-bound process
    1
    >>> choose_threads(16, 4, 2.0)  # 14 free cores over 4 local workers
    3
    """
    share = max(1, cores // max(1, workers))
    free = cores - round(busy)
    return max(1, min(share, free // max(1, workers)))


def configured_threads() -> int | None:
    """The user's own setting (NASOPT_THREADS, else OMP_NUM_THREADS), or None."""
    for var in ("NASOPT_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    return None


def local_workers() -> int:
    """Processes on this machine that share its cores: `nasopt run --workers N`'s workers times
    a distributed run's local ranks."""
    counts = [os.environ.get(v, "").strip() for v in ("NASOPT_LOCAL_WORKERS", "LOCAL_WORLD_SIZE")]
    return max(1, math.prod(int(c) for c in counts if c.isdigit() and int(c) > 0))


def use_free_cores(*, running: bool = False) -> int:
    """Set PyTorch's intra-op threads (see the module docstring) and return the count.
    `running`: this process is already computing with its current threads, so they count in
    the load average and are not someone else's."""
    fixed = configured_threads()
    if fixed is not None:
        n = fixed
    else:
        workers = local_workers()
        own = torch.get_num_threads() if running else 0
        n = choose_threads(usable_cores(), workers, busy_elsewhere(own))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
