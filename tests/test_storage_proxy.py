"""`grpc://HOST:PORT` storage URLs through Optuna's gRPC storage proxy (`nasopt storage-proxy`):
workers that reach PostgreSQL only through a proxy run one study, with nasopt's learning
samplers, and every trial lands exactly once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasopt.errors import SpecError
from nasopt.study import storage as storage_module
from nasopt.study.storage import open_storage, proxy_address, proxy_server, storage_kind
from tests.services import (  # noqa: F401  (fixture)
    check_ok,
    cli_env,
    nasopt,
    postgres_url,
    unique_name,
    write_tiny_study,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(postgres_url: str, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """`nasopt storage-proxy` in front of the test PostgreSQL, as a separate process."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasopt", "storage-proxy", "--storage", postgres_url, "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"on grpc://127.0.0.1:{port}" in line, line
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("sampler", ["asng"])
def test_two_workers_through_the_proxy_run_one_study(
    sampler: str,
    proxy: str,
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    study_file = write_tiny_study(tmp_path, n_trials=16, sampler=sampler)
    name = unique_name("proxy")
    text = study_file.read_text().replace('name = "tiny"', f'name = "{name}"')
    study_file.write_text(text)
    check_ok(
        nasopt("run", str(study_file), "--storage", proxy, "--workers", "2", "--no-progress", cwd=tmp_path)
    )
    direct = optuna.load_study(study_name=name, storage=postgres_url)  # the same rows, read directly
    trials = direct.trials
    assert sorted(t.number for t in trials) == list(range(16))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # two processes may list one trial at once (the replay learns it at its first listing)
    learned = {n for t in trials for n in t.system_attrs["nasopt:learned"]}
    assert learned <= set(range(16)) and len(learned) >= 14  # the last ones: no later trial
    # the sampler's state replayed through the proxy equals the one replayed from PostgreSQL
    from nasopt.samplers import ASNGSampler, EvolutionSampler

    make = {"asng": lambda: ASNGSampler(seed=0), "evolution": lambda: EvolutionSampler(seed=0)}[sampler]
    via = optuna.load_study(study_name=name, storage=open_storage(proxy))
    a, b = make(), make()
    sa, sb = a.replayed(via, a.space(via)), b.replayed(direct, b.space(direct))
    if sampler == "asng":
        assert sa.asng.t == sb.asng.t and all(
            (x == y).all() for x, y in zip(sa.asng.theta, sb.asng.theta, strict=True)
        )
    else:
        assert sa["count"] == sb["count"] == 16


def test_bad_proxy_urls_and_storages_fail_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert storage_kind("grpc://127.0.0.1:13000") == "grpc"
    assert proxy_address("grpc://10.0.0.5:13000") == ("10.0.0.5", 13000)
    for bad in ["grpc://nohost", "grpc://:13000", "grpc://h:99999", "grpc://h:1/db"]:
        with pytest.raises(SpecError, match="malformed storage proxy URL"):
            proxy_address(bad)
    monkeypatch.setattr(storage_module, "PROXY_READY_TIMEOUT_S", 0.3)
    start = time.monotonic()
    with pytest.raises(SpecError, match="no storage proxy answers"):
        open_storage(f"grpc://127.0.0.1:{_free_port()}")
    assert time.monotonic() - start < 5
    with pytest.raises(SpecError, match="RDB storage only"):
        proxy_server(f"journal:{tmp_path / 'j.log'}")
    proc = nasopt("storage-proxy", "--storage", "redis://127.0.0.1:6379/0", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "RDB storage only" in proc.stderr


def test_proxy_over_sqlite_in_process(tmp_path: Path) -> None:
    """The library path: proxy_server() in this process, GrpcStorageProxy through open_storage."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    optuna.create_study(study_name="s", storage=open_storage(url))
    port = _free_port()
    server = proxy_server(url, port=port)
    try:
        via = optuna.load_study(study_name="s", storage=open_storage(f"grpc://127.0.0.1:{port}"))
        from nasopt.samplers import EvolutionSampler

        via.sampler = sampler = EvolutionSampler(seed=0, population_size=4)
        via.optimize(lambda t: float(t.suggest_categorical("x", [0, 1, 2])), n_trials=10, n_jobs=2)
        assert sampler.replayed(via, sampler.space(via))["count"] == 10
    finally:
        server.stop(grace=1)
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert sorted(t.number for t in trials) == list(range(10))
    assert all(t.state == TrialState.COMPLETE for t in trials)
