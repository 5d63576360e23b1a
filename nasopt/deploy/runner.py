"""Run an exported split for real: one `nasopt serve-part` process per device, connected by
TCP (loopback, or the HOST:PORT a device was started on), the split features travelling as
the bytes the manifest says; measure end-to-end latency, compute per part and bytes and time
per link, and compare them with the manifest's predictions (`SplitReport`).

`SplitRunner` is the session (start, `infer`, `stats`, close: every process it started is
stopped on exit, error or Ctrl-C); `run_split` warms up, times N inferences and reports.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, Any

import numpy as np

from nasopt.deploy.manifest import Manifest, input_value, read_manifest
from nasopt.deploy.serve_part import PARENT_ENV, runner_inputs
from nasopt.deploy.serve_protocol import (
    RunSplitError,
    WireError,
    decode_tensors,
    encode_tensors,
    recv_frame,
    send_frame,
    verify_file,
)

# the columns of a predicted-versus-measured table (shared with `nasopt profile --check`)
COMPARISON_COLUMNS = ("item", "kind", "predicted_ms", "measured_ms", "error_pct")
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LinkPace:
    """How a link is emulated: its bandwidth (None: as fast as TCP) and a latency added per message."""

    bandwidth_bps: float | None = None
    latency_ms: float = 0.0


def link_paces(
    manifest: Manifest,
    *,
    from_objective: bool = False,
    bandwidth_bps: dict[str, float] | None = None,
    latency_ms: dict[str, float] | None = None,
) -> dict[str, LinkPace]:
    """Each link's pace: the objective's bandwidth and latency (`from_objective`, recorded in the
    manifest), overridden per link by `bandwidth_bps` / `latency_ms` (keys: link names)."""
    names = sorted({link.name for link in manifest.links})
    for flag, given in (("--link", bandwidth_bps or {}), ("--latency", latency_ms or {})):
        for name, value in given.items():
            if name not in names:
                raise RunSplitError(
                    "no such link in the export", field=flag, value=name, allowed=names or "none"
                )
            if value < 0 or (flag == "--link" and value == 0):
                raise RunSplitError("must be positive", field=f"{flag} {name}", value=value)
    paces = {}
    for link in manifest.links:
        bps = link.bandwidth_bps if from_objective else None
        lat = (link.latency_ms or 0.0) if from_objective else 0.0
        if from_objective and link.bandwidth_bps is None:
            raise RunSplitError(
                "the manifest records no link bandwidth (exported before nasopt recorded it); "
                "export again or give --link NAME=BPS",
                field=f"links.{link.name}.bandwidth_bps",
            )
        bps = (bandwidth_bps or {}).get(link.name, bps)
        lat = (latency_ms or {}).get(link.name, lat)
        paces[link.name] = LinkPace(bps, lat)
    return paces


@dataclass
class _Server:
    device: str
    host: str
    port: int
    process: subprocess.Popen[str] | None = None
    stderr: IO[str] | None = None
    control: socket.socket | None = None

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0)
            lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
            return lines[-1] if lines else ""
        return ""


@dataclass
class SplitRunner:
    """The processes of one exported split and their connections; use as a context manager."""

    export_dir: Path
    paces: dict[str, LinkPace] = field(default_factory=dict)
    remote: dict[str, tuple[str, int]] = field(default_factory=dict)  # devices already served elsewhere
    bind_host: str = "127.0.0.1"
    timeout_s: float = START_TIMEOUT_S
    latency_ms: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.export_dir = Path(self.export_dir)
        file = str(self.export_dir / "manifest.json")
        self.manifest = read_manifest(self.export_dir / "manifest.json")
        self.parts = {p.device: p for p in self.manifest.parts if p.role != "idle"}
        for device in self.remote:
            if device not in self.parts:
                raise RunSplitError(
                    "no such device in the export",
                    file=file,
                    field="--device",
                    value=device,
                    allowed=sorted(self.parts),
                )
        self.servers: dict[str, _Server] = {}
        self._inbox: queue.Queue[tuple[str, dict[str, Any] | None, bytes]] = queue.Queue()
        self._next_id = 0

    @property
    def processes(self) -> dict[str, subprocess.Popen[str]]:
        return {d: s.process for d, s in self.servers.items() if s.process is not None}

    def __enter__(self) -> SplitRunner:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -------------------------------------------------------------- start

    def start(self) -> None:
        for part in self.parts.values():  # refuse a changed file before starting anything
            if part.onnx is not None:
                verify_file(self.export_dir, part.onnx)
        for device in self.manifest.execution_order:
            if device in self.remote:
                host, port = self.remote[device]
                self.servers[device] = _Server(device, host, port)
            else:
                self.servers[device] = self._spawn(device)
        for server in self.servers.values():
            if server.process is not None:
                self._await_listening(server)
        for server in self.servers.values():
            self._connect(server)
        for server in self.servers.values():
            assert server.control is not None
            routes = [
                {
                    "link": link.name,
                    "dst": link.dst,
                    "host": self.servers[link.dst].host,
                    "port": self.servers[link.dst].port,
                    "tensors": link.tensors,
                    "bits": link.bits,
                    "bandwidth_bps": self.paces.get(link.name, LinkPace()).bandwidth_bps,
                    "latency_ms": self.paces.get(link.name, LinkPace()).latency_ms,
                }
                for link in self.manifest.links
                if link.src == server.device
            ]
            sink = server.device == self.manifest.output_device
            send_frame(server.control, {"kind": "setup", "routes": routes, "sink": sink})
        ready: set[str] = set()
        while ready != set(self.servers):
            device, header, _ = self._next_message(self.timeout_s)
            if header.get("kind") != "ready":
                raise WireError(f"{device}: expected ready, got {header.get('kind')!r}")
            ready.add(device)

    def _spawn(self, device: str) -> _Server:
        cmd = [sys.executable, "-m", "nasopt", "serve-part", str(self.export_dir), "--device", device]
        cmd += ["--listen", f"{self.bind_host}:0"]
        env = {**os.environ, PARENT_ENV: str(os.getpid()), "OMP_NUM_THREADS": "1"}
        stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, env=env
        )
        return _Server(device, self.bind_host, 0, proc, stderr)

    def _await_listening(self, server: _Server) -> None:
        proc = server.process
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self.timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunSplitError(
                        f"serve-part {server.device} did not start within {self.timeout_s:.0f} s"
                    )
                if sel.select(min(left, 0.5)):
                    line = proc.stdout.readline()
                    if not line:  # exited before it listened
                        proc.wait(timeout=10)
                        raise RunSplitError(
                            f"serve-part {server.device} failed: {server.stderr_tail() or 'no message'}"
                        )
                    server.port = int(line.rsplit(":", 1)[1])
                    return
                if proc.poll() is not None:
                    raise RunSplitError(
                        f"serve-part {server.device} failed: {server.stderr_tail() or 'no message'}"
                    )

    def _connect(self, server: _Server) -> None:
        try:
            sock = socket.create_connection((server.host, server.port), timeout=self.timeout_s)
        except OSError as exc:
            raise RunSplitError(
                f"cannot connect to {server.device} at {server.host}:{server.port} ({exc})"
            ) from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.control = sock
        threading.Thread(target=self._read_forever, args=(server.device, sock), daemon=True).start()

    def _read_forever(self, device: str, sock: socket.socket) -> None:
        while True:
            try:
                got = recv_frame(sock)
            except (OSError, WireError) as exc:
                self._inbox.put((device, {"kind": "broken", "message": str(exc)}, b""))
                return
            if got is None:
                self._inbox.put((device, None, b""))
                return
            self._inbox.put((device, got[0], got[1]))

    def _next_message(self, timeout_s: float) -> tuple[str, dict[str, Any], bytes]:
        try:
            device, header, payload = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            raise RunSplitError(f"no answer from the parts within {timeout_s:.0f} s") from None
        if header is None or header.get("kind") == "broken":
            server = self.servers[device]
            if server.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(timeout=5)
            why = server.stderr_tail() or (header or {}).get("message") or "connection closed"
            raise RunSplitError(f"serve-part {device} went away: {why}")
        if header.get("kind") == "error":
            raise RunSplitError(f"serve-part {device}: {header.get('message')}")
        return device, header, payload

    # -------------------------------------------------------------- use

    def infer(self, x: np.ndarray, timeout_s: float = 120.0) -> np.ndarray:
        """The logits of one batch run through the split; its end-to-end time in `latency_ms`."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = self._next_id
        self._next_id += 1
        start = time.perf_counter()
        for device, part in self.parts.items():
            names = runner_inputs(self.manifest, part)
            if not names:
                continue
            values = {name: np.ascontiguousarray(input_value(name, {"input": x})) for name in names}
            specs, pieces = encode_tensors(values, names, 32)
            control = self.servers[device].control
            assert control is not None
            send_frame(control, {"kind": "data", "id": n, "src": None, "tensors": specs}, pieces)
        while True:
            _, header, payload = self._next_message(timeout_s)
            if header.get("kind") == "result" and header.get("id") == n:
                break
        self.latency_ms[n] = (time.perf_counter() - start) * 1e3
        return decode_tensors(header["tensors"], payload)["logits"]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each server's counters: compute ms per inference, per link bytes and send ms."""
        for server in self.servers.values():
            assert server.control is not None
            send_frame(server.control, {"kind": "stats"})
        out: dict[str, dict[str, Any]] = {}
        while len(out) < len(self.servers):
            device, header, _ = self._next_message(self.timeout_s)
            if header.get("kind") == "stats":
                out[device] = header
        return out

    def close(self) -> None:
        """Stop every server: a stop frame, then SIGTERM, then SIGKILL for those that linger."""
        for server in self.servers.values():
            if server.control is not None:
                with contextlib.suppress(OSError):
                    send_frame(server.control, {"kind": "stop"})
        deadline = time.monotonic() + 3.0
        for server in self.servers.values():
            proc = server.process
            if proc is None:
                continue
            for stop in (None, proc.terminate, proc.kill):
                if stop is not None:
                    with contextlib.suppress(OSError):
                        stop()
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()) if stop is None else 3.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.stdout is not None:
                proc.stdout.close()
        for server in self.servers.values():
            if server.control is not None:
                with contextlib.suppress(OSError):
                    server.control.close()
            if server.stderr is not None:
                server.stderr.close()


# ------------------------------------------------------------------ measure and compare


def _error_pct(predicted: float, measured: float) -> float | None:
    return None if predicted <= 0 else 100.0 * (measured - predicted) / predicted


@dataclass
class SplitReport:
    """Measured against predicted: `timing` rows (COMPARISON_COLUMNS) per part, per link and
    end to end; `bytes` rows per link (the manifest's and the measured bytes per sample)."""

    export_dir: str
    runs: int
    warmup: int
    batch: int
    latencies_ms: list[float]
    timing: list[dict[str, Any]]
    bytes: list[dict[str, Any]]
    paces: dict[str, dict[str, float | None]]
    max_abs_error: float | None = None

    @property
    def median_latency_ms(self) -> float:
        return float(median(self.latencies_ms))

    def to_dict(self) -> dict[str, Any]:
        return {
            "export_dir": self.export_dir,
            "runs": self.runs,
            "warmup": self.warmup,
            "batch": self.batch,
            "median_latency_ms": self.median_latency_ms,
            "latencies_ms": self.latencies_ms,
            "timing": self.timing,
            "bytes": self.bytes,
            "links": self.paces,
            "max_abs_error": self.max_abs_error,
        }

    def format(self) -> str:
        shown = [
            {
                "item": r["item"],
                "kind": r["kind"],
                "predicted ms": f"{r['predicted_ms']:.3f}",
                "measured ms": f"{r['measured_ms']:.3f}",
                "error %": "" if r["error_pct"] is None else f"{r['error_pct']:+.1f}",
            }
            for r in self.timing
        ]
        lines = [_table(shown)]
        if self.bytes:
            rows = [
                {
                    "link": r["link"],
                    "pace": r["pace"],
                    "manifest B/sample": f"{r['manifest_bytes_per_sample']:g}",
                    "measured B/sample": f"{r['measured_bytes_per_sample']:g}",
                    "framing B": r["framing_bytes"],
                }
                for r in self.bytes
            ]
            lines += ["", _table(rows)]
        lines.append(
            f"\nmedian end-to-end latency {self.median_latency_ms:.3f} ms over {self.runs} inferences "
            f"of batch {self.batch} after {self.warmup} warm-up (predicted: the objective's devices "
            "and links; measured: this machine, one process per device, TCP on the given hosts)"
        )
        return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _pace_text(pace: LinkPace) -> str:
    bw = "unlimited" if pace.bandwidth_bps is None else f"{pace.bandwidth_bps:.3g} bps"
    return bw + (f" +{pace.latency_ms:g} ms" if pace.latency_ms else "")


def report(
    runner: SplitRunner, stats: dict[str, dict[str, Any]], ids: list[int], batch: int, warmup: int
) -> SplitReport:
    """Compare the measured inferences `ids` with the manifest's predictions."""
    m = runner.manifest
    keys = [str(n) for n in ids]
    timing: list[dict[str, Any]] = []
    for part in m.parts:
        if part.role != "compute":
            continue
        measured = float(median(stats[part.device]["compute_ms"][k] for k in keys))
        timing.append(
            {
                "item": part.device,
                "kind": "compute",
                "predicted_ms": part.predicted_compute_ms,
                "measured_ms": measured,
                "error_pct": _error_pct(part.predicted_compute_ms, measured),
            }
        )
    rows_bytes: list[dict[str, Any]] = []
    for link in m.links:
        got = stats[link.src]["links"][link.name]
        measured = float(median(got["send_ms"][k] for k in keys))
        timing.append(
            {
                "item": f"{link.name} ({link.src}->{link.dst})",
                "kind": "transfer",
                "predicted_ms": link.predicted_transfer_ms,
                "measured_ms": measured,
                "error_pct": _error_pct(link.predicted_transfer_ms, measured),
            }
        )
        payload = [got["payload_bytes"][k] for k in keys]
        framing = [got["frame_bytes"][k] - got["payload_bytes"][k] for k in keys]
        rows_bytes.append(
            {
                "link": f"{link.name} ({link.src}->{link.dst})",
                "pace": _pace_text(runner.paces.get(link.name, LinkPace())),
                "manifest_bytes_per_sample": link.bytes_per_sample,
                "measured_bytes_per_sample": float(median(payload)) / batch,
                "framing_bytes": int(median(framing)),
            }
        )
    latencies = [runner.latency_ms[n] for n in ids]
    e2e = float(median(latencies))
    timing.append(
        {
            "item": "end to end",
            "kind": "latency",
            "predicted_ms": m.predicted_latency_ms,
            "measured_ms": e2e,
            "error_pct": _error_pct(m.predicted_latency_ms, e2e),
        }
    )
    paces = {
        name: {"bandwidth_bps": p.bandwidth_bps, "latency_ms": p.latency_ms}
        for name, p in runner.paces.items()
    }
    return SplitReport(str(runner.export_dir), len(ids), warmup, batch, latencies, timing, rows_bytes, paces)


def sample_input(manifest: Manifest, batch: int, seed: int = 0) -> np.ndarray:
    """A random float32 batch of the model input's shape."""
    shape = [batch, *(int(s) for s in manifest.input.shape[1:])]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_split(
    export_dir: Path,
    *,
    runs: int = 20,
    warmup: int = 3,
    batch: int = 1,
    x: np.ndarray | None = None,
    paces: dict[str, LinkPace] | None = None,
    remote: dict[str, tuple[str, int]] | None = None,
    bind_host: str = "127.0.0.1",
) -> SplitReport:
    """Start the split, run `warmup` then `runs` inferences one after another and report."""
    if runs < 1 or warmup < 0 or batch < 1:
        raise RunSplitError(
            "runs and batch must be at least 1, warmup at least 0", value=(runs, warmup, batch)
        )
    with SplitRunner(Path(export_dir), paces or {}, remote or {}, bind_host) as runner:
        inputs = x if x is not None else sample_input(runner.manifest, batch)
        for _ in range(warmup + runs):
            runner.infer(inputs)
        stats = runner.stats()
        return report(runner, stats, list(range(warmup, warmup + runs)), int(inputs.shape[0]), warmup)
