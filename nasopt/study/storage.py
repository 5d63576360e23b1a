"""Opening Optuna storages from a URL, with heartbeats so a killed worker's trial is retried.

Accepted: `sqlite:///path.db` (the default, `sqlite:///nasopt.db`), any SQLAlchemy URL
(`postgresql+psycopg://...`, `mysql+pymysql://...`), `journal:PATH` or a path ending in
`.log`/`.jsonl` (Optuna's journal file), `redis://host:port/db` (journal in Redis), and
`grpc://host:port` (Optuna's gRPC storage proxy, `nasopt storage-proxy`, in front of one RDB).
Every storage but the proxy gets heartbeats: RDB storages natively, journal storages through
`HeartbeatJournalStorage`, which keeps each running trial's last beat in its system attrs.
Optuna's `GrpcStorageProxy` has no heartbeats: a trial whose worker died stays RUNNING (nasopt's
samplers do not wait for it, see docs/samplers.md) and is not retried.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalRedisBackend
from optuna.trial import TrialState

from nasopt.errors import SpecError

DEFAULT_STORAGE = "sqlite:///nasopt.db"
# Heartbeat every 5 s; a trial silent for 20 s is stale (its worker died) and is retried.
# NASOPT_HEARTBEAT_S / NASOPT_GRACE_S override them (tests use short periods).
HEARTBEAT_INTERVAL_S = int(os.environ.get("NASOPT_HEARTBEAT_S", "5"))
GRACE_PERIOD_S = int(os.environ.get("NASOPT_GRACE_S", "20"))
MAX_RETRY = 3
_BEAT_KEY = "nasopt:heartbeat"
_FORMS = (
    "sqlite:///PATH.db, postgresql+psycopg://USER@HOST/DB, mysql+pymysql://USER@HOST/DB, "
    "journal:PATH, PATH.log, redis://HOST:PORT/DB, grpc://HOST:PORT"
)
PROXY_READY_TIMEOUT_S = 10.0


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus heartbeats, so stale RUNNING trials are failed and retried."""

    def __init__(
        self,
        backend: BaseJournalBackend,
        *,
        heartbeat_interval: int,
        grace_period: int,
        heartbeat_stale_trial_callback: Any = None,
    ) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_callback = heartbeat_stale_trial_callback
        self._beat_lock = threading.Lock()

    def record_heartbeat(self, trial_id: int) -> None:
        now = datetime.datetime.now(datetime.UTC).timestamp()
        with self._beat_lock:
            self.set_trial_system_attr(trial_id, _BEAT_KEY, now)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = datetime.datetime.now(datetime.UTC).timestamp()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(_BEAT_KEY)
            # A retry inherits the stale trial's system attrs, its last beat included: a beat
            # older than this trial's start is not its own (its first beat is still coming).
            started = trial.datetime_start.timestamp() if trial.datetime_start else None
            if beat is None or (started is not None and float(beat) < started):
                continue
            if now - float(beat) > self._grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._stale_callback


def storage_kind(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', 'journal', 'redis' or 'grpc'; SpecError for anything else."""
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgresql+")):
        return "postgresql"
    if url.startswith(("mysql://", "mysql+", "mariadb+")):
        return "mysql"
    if url.startswith(("redis://", "rediss://")):
        return "redis"
    if url.startswith("grpc://"):
        return "grpc"
    if url.startswith("journal:") or url.endswith((".log", ".jsonl", ".journal")):
        return "journal"
    raise SpecError("malformed storage URL", field="--storage", value=url, allowed=_FORMS)


def open_storage(
    url: str | None,
    *,
    must_exist: bool = False,
    heartbeat_interval_s: int | None = None,
    grace_period_s: int | None = None,
) -> BaseStorage:
    """An Optuna storage for `url`; `must_exist` refuses to create a new SQLite/journal file."""
    with warnings.catch_warnings():  # heartbeats and the retry callback are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(url or DEFAULT_STORAGE, must_exist, heartbeat_interval_s, grace_period_s)


def _open(
    url: str, must_exist: bool, heartbeat_interval_s: int | None, grace_period_s: int | None
) -> BaseStorage:
    kind = storage_kind(url)
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    interval = heartbeat_interval_s or HEARTBEAT_INTERVAL_S
    grace = grace_period_s or GRACE_PERIOD_S
    if kind in ("sqlite", "journal"):
        path = Path(url[len("sqlite:///") :] if kind == "sqlite" else url.removeprefix("journal:"))
        if must_exist and not path.is_file():
            raise SpecError("no such storage file", field="--storage", value=url)
        if not path.parent.is_dir():
            raise SpecError("the storage file's folder does not exist", field="--storage", value=url)
    try:
        if kind == "grpc":
            return _open_proxy(url)
        if kind == "journal":
            return HeartbeatJournalStorage(
                JournalFileBackend(str(path)),
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=retry,
            )
        if kind == "redis":
            redis_backend = JournalRedisBackend(url)
            redis_backend._redis.ping()
            return HeartbeatJournalStorage(
                redis_backend,
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=retry,
            )
        engine_kwargs: dict[str, Any] = {}
        if kind == "sqlite":
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        for attempt in range(3):
            try:
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=retry,
                )
            except optuna.exceptions.StorageInternalError:
                # workers starting at once race on Optuna's schema/version rows; the loser's
                # commit fails, and the next attempt finds them written
                if attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")
    except SpecError:
        raise
    except ImportError as exc:
        extra = {"postgresql": "postgres", "mysql": "mysql", "redis": "redis", "grpc": "grpc"}.get(kind, kind)
        raise SpecError(
            f"missing database driver ({exc.name or exc}); install nasopt[{extra}]",
            field="--storage",
            value=url,
        ) from None
    except Exception as exc:  # sqlalchemy / redis connection errors, unreadable journals
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if kind in ("journal", "redis") and isinstance(exc, (KeyError, ValueError, TypeError, IndexError)):
            raise SpecError(
                f"corrupted journal: a log entry is not a valid Optuna journal operation "
                f"({type(exc).__name__}: {first[:80]}); restore it from a backup or use a new file",
                field="--storage",
                value=url,
            ) from None
        raise SpecError(f"cannot open storage: {first}", field="--storage", value=url) from None


def proxy_address(url: str) -> tuple[str, int]:
    """(host, port) of a `grpc://HOST:PORT` URL; SpecError when it is not one."""
    rest = url.removeprefix("grpc://").rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise SpecError(
            "malformed storage proxy URL", field="--storage", value=url, allowed=["grpc://HOST:PORT"]
        )
    return host.strip("[]"), int(port)


def _open_proxy(url: str) -> BaseStorage:
    from optuna.storages import GrpcStorageProxy

    host, port = proxy_address(url)
    proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=PROXY_READY_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise SpecError(
            f"no storage proxy answers within {PROXY_READY_TIMEOUT_S:g} s (start one with "
            "`nasopt storage-proxy --storage URL`)",
            field="--storage",
            value=url,
        ) from None
    return proxy


def proxy_server(url: str, *, host: str = "127.0.0.1", port: int = 13000, threads: int = 16) -> Any:
    """A started gRPC storage proxy (Optuna's servicer) for the RDB storage at `url`, listening
    on host:port; `.stop(grace)` ends it. The storage is opened with nasopt's options (heartbeat
    settings, pool pre-ping) and wrapped in Optuna's trial cache, as `optuna.storages.get_storage`
    does for the proxy."""
    kind = storage_kind(url)
    if kind not in ("sqlite", "postgresql", "mysql"):
        raise SpecError(
            "the storage proxy serves an RDB storage only (Optuna's proxy has no journal support)",
            field="--storage",
            value=url,
            allowed=["postgresql+psycopg://...", "mysql+pymysql://...", "sqlite:///PATH.db"],
        )
    from concurrent.futures import ThreadPoolExecutor

    from optuna.storages._grpc.server import make_server

    storage = optuna.storages.get_storage(open_storage(url))
    try:
        server = make_server(storage, host, port, ThreadPoolExecutor(max_workers=threads))
        server.start()
    except ImportError as exc:
        raise SpecError(
            f"missing gRPC ({exc.name or exc}); install nasopt[grpc]", field="--storage"
        ) from None
    except RuntimeError as exc:  # grpc: the port could not be bound
        raise SpecError(f"cannot listen on {host}:{port}: {exc}", field="--port", value=port) from None
    return server


def creation_order(trial: Any) -> int:
    """A trial's place in the order trials were created in the storage (its storage id, which
    every storage assigns in order; the trial number may repeat between racing RDB workers)."""
    return int(trial._trial_id)


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage=storage, include_best_trial=False)]


def write_trial_attrs(
    storage: BaseStorage, trial_id: int, user_attrs: dict[str, Any], system_attrs: dict[str, Any]
) -> None:
    """Write many trial attributes in one transaction (RDB) or one journal append.

    A trial carries some twenty dashboard attributes; written one by one they would cost a
    commit or a locked file append each and dominate an analytic-only study. Falls back to the
    public per-attribute API for any other storage."""
    from optuna.storages._cached_storage import _CachedStorage

    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    if isinstance(backend, RDBStorage):
        _write_rdb_attrs(backend, trial_id, user_attrs, system_attrs)
        return
    if isinstance(backend, JournalStorage):
        from optuna.storages.journal._storage import JournalOperation

        worker_id = backend._replay_result.worker_id
        logs = [
            {
                "op_code": JournalOperation.SET_TRIAL_USER_ATTR,
                "worker_id": worker_id,
                "trial_id": trial_id,
                "user_attr": {key: value},
            }
            for key, value in user_attrs.items()
        ] + [
            {
                "op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR,
                "worker_id": worker_id,
                "trial_id": trial_id,
                "system_attr": {key: value},
            }
            for key, value in system_attrs.items()
        ]
        with backend._thread_lock:
            backend._backend.append_logs(logs)
            backend._sync_with_backend()
        return
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for key, value in system_attrs.items():
        storage.set_trial_system_attr(trial_id, key, value)


def _write_rdb_attrs(
    backend: RDBStorage, trial_id: int, user_attrs: dict[str, Any], system_attrs: dict[str, Any]
) -> None:
    """One transaction: the trial is checked once, then one multi-row upsert per attribute table
    (Optuna's own per-attribute path re-reads the trial for every attribute)."""
    import json
    import sqlite3

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy.dialects import mysql, postgresql
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    dialect = backend.engine.name
    with _create_scoped_session(backend.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, cast(TrialState, trial.state))
        for model, attrs in (
            (models.TrialUserAttributeModel, user_attrs),
            (models.TrialSystemAttributeModel, system_attrs),
        ):
            if not attrs:
                continue
            rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
            if dialect == "mysql":
                insert = mysql.insert(model).values(rows)
                session.execute(insert.on_duplicate_key_update(value_json=insert.inserted.value_json))
            elif dialect == "postgresql" or (
                dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0)
            ):
                insert = (
                    (postgresql if dialect == "postgresql" else sqlite_dialect).insert(model).values(rows)
                )
                session.execute(
                    insert.on_conflict_do_update(
                        index_elements=[model.trial_id, model.key],
                        set_={"value_json": insert.excluded.value_json},
                    )
                )
            else:
                for key, value in attrs.items():
                    backend._set_trial_attr_without_commit(session, model, trial_id, key, value)
