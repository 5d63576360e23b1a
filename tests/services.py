"""Database services for the storage tests, and the small study and CLI helpers those tests share.

`require_service` returns when a TCP connection to the service succeeds. Otherwise the test is
skipped on a developer machine, but fails in CI (`CI=true`), where a missing service is a broken
pipeline, not a reason to silently test less.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def require_service(name: str, host: str, port: int, timeout_s: float = 2.0) -> None:
    """Return if `host:port` accepts a TCP connection; else fail (CI) or skip the test."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide the {name} service", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def mysql_url() -> str:
    require_service("MariaDB/MySQL", "127.0.0.1", 3306)
    return MYSQL_URL


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def unique_name(prefix: str = "t") -> str:
    """A study name no other test (or earlier run) uses: the databases are shared."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ a tiny study on disk

TINY_SPACE = """\
name = "tiny-space"
input = { channels = 3, height = 16, width = 16 }
num_classes = 10
input_bits = 8
activation_bits = 8
weight_bits = 8

[ops]
k3 = { type = "mbconv", kernel = 3, expansion = 3 }
k5 = { type = "mbconv", kernel = 5, expansion = 6 }

[[stages]]
name = "stem"
widths = [8]
layers = [{ op = "conv3", stride = 2 }]

[[stages]]
name = "body"
widths = [8, 16]
layers = [{ choices = ["k3", "k5", "skip"], repeat = 2 }]

[[stages]]
name = "head"
widths = [32]
layers = [{ op = "conv1" }, { op = "gap" }, { op = "classifier" }]

[split]
points = "all"

[bottleneck]
bits = [8]
"""

# A phone -> cloud chain; the phone's memory cap makes some candidates infeasible.
TINY_OBJECTIVE = """\
name = "tiny-chain"

[devices.phone]
memory_bytes = 12_000
compute = { kind = "throughput", macs_per_s = 2e9 }

[devices.cloud]
compute = { kind = "throughput", macs_per_s = 1e12 }

[links.up]
src = "phone"
dst = "cloud"
bandwidth_bps = 20e6

[topology]
kind = "chain"
devices = ["phone", "cloud"]

[[objectives]]
name = "error"
direction = "minimize"

[[objectives]]
name = "latency_ms"
direction = "minimize"

[constraints]
memory = true
"""


def write_tiny_study(
    folder: Path, n_trials: int = 12, sampler: str = "random", accuracy: str = 'estimator = "analytic-proxy"'
) -> Path:
    """study.toml, space.toml and objective.toml in `folder`; returns the study file. `accuracy`
    is the body of the study's [accuracy] table."""
    (folder / "space.toml").write_text(TINY_SPACE)
    (folder / "objective.toml").write_text(TINY_OBJECTIVE)
    study = folder / "study.toml"
    study.write_text(
        f'name = "tiny"\nspace = "space.toml"\nobjective = "objective.toml"\nn_trials = {n_trials}\n\n'
        f'[sampler]\nname = "{sampler}"\nseed = 0\n\n[accuracy]\n{accuracy}\n'
    )
    return study


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: ours without NASOPT_* overrides, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NASOPT_")}
    env.update(extra)
    return env


def nasopt(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m nasopt ARGS` in `cwd`, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "nasopt", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def nasopt_concurrently(
    *commands: list[str], cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> list[subprocess.CompletedProcess[str]]:
    """Several independent `nasopt` commands at once (each spends ~1 s importing Optuna)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: nasopt(*args, cwd=cwd, env=env, timeout_s=timeout_s), commands))


def check_ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc
