"""`nasopt serve-part`: one device of an exported split as a process.

It checks its ONNX file against the manifest's SHA-256, loads it with onnxruntime (one
intra-op thread), listens on TCP and waits for a runner (`nasopt.deploy.runner`) to connect
and send the routes: where each of its outgoing links goes and at what bandwidth and latency.
Then, per inference, it waits for every tensor the manifest says it receives (from the
runner for the model input, from its source devices otherwise), runs its part (a relay passes
the tensors on), sends each link's tensors onward, paced, and, on the output device, returns
the logits to the runner. It exits when the runner says stop or goes away.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasopt.deploy._onnx import ort_session
from nasopt.deploy.manifest import Manifest, PartInfo, read_manifest
from nasopt.deploy.serve_pacing import PacedSender
from nasopt.deploy.serve_protocol import (
    RunSplitError,
    WireError,
    decode_tensors,
    encode_tensors,
    frame,
    frame_bytes,
    recv_frame,
    send_frame,
    verify_file,
)

PARENT_ENV = "NASOPT_SERVE_PARENT"  # set by the runner: the server dies with it (Linux)
SETUP_TIMEOUT_S = 120.0


def parse_address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT (PORT 0: any free port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise RunSplitError("expected HOST:PORT, e.g. 127.0.0.1:7000", field=what, value=text)
    return host, int(port)


def find_part(manifest: Manifest, device: str, file: str) -> PartInfo:
    parts = {p.device: p for p in manifest.parts if p.role != "idle"}
    if device not in parts:
        raise RunSplitError(
            "no such device in the export", file=file, field="--device", value=device, allowed=sorted(parts)
        )
    return parts[device]


def runner_inputs(manifest: Manifest, part: PartInfo) -> list[str]:
    """The model-input tensors (`input`, `input.viewV`) the runner sends this part itself: those
    no link into it carries (a relay before it may forward the raw input)."""
    carried = {n for link in manifest.links if link.dst == part.device for n in link.tensors}
    return [i.name for i in part.inputs if i.source is None and i.name not in carried]


@dataclass
class _Route:
    """One outgoing link: a socket to the destination's server and its own sender thread."""

    link: str
    dst: str
    tensors: list[str]
    bits: int
    sender: PacedSender
    jobs: queue.Queue[tuple[int, dict[str, np.ndarray]] | None] = field(default_factory=queue.Queue)
    payload_bytes: dict[int, int] = field(default_factory=dict)
    frame_bytes: dict[int, int] = field(default_factory=dict)
    send_ms: dict[int, float] = field(default_factory=dict)
    error: str | None = None


def _die_with_parent() -> None:
    """Under the runner, leave Ctrl-C to it (it stops every part itself, and a part that quit
    first would turn the interrupt into a 'went away' error) and exit when it dies, even if
    killed (Linux: PR_SET_PDEATHSIG)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # it died before the line above
        raise SystemExit(1)


class PartServer:
    """The server of one device; `serve()` runs it until the runner stops it or goes away."""

    def __init__(self, export_dir: Path, device: str, host: str = "127.0.0.1", port: int = 0) -> None:
        file = str(export_dir / "manifest.json")
        self.manifest = read_manifest(export_dir / "manifest.json")
        self.part = find_part(self.manifest, device, file)
        self.device = device
        self.session = None
        if self.part.onnx is not None:
            self.session = ort_session(str(verify_file(export_dir, self.part.onnx)))
        # who sends to it: its links' sources (a tensor's `source` is the device that computed
        # it, which a relay in between is not), and the runner (None) for the model input
        self.expected: set[str | None] = {link.src for link in self.manifest.links if link.dst == device}
        if runner_inputs(self.manifest, self.part):
            self.expected.add(None)
        self.listener = socket.create_server((host, port))
        self.address = self.listener.getsockname()[:2]
        self.inbox: queue.Queue[tuple[socket.socket, dict[str, Any] | None, bytes]] = queue.Queue()
        self.control: socket.socket | None = None
        self.routes: list[_Route] = []
        self.sink = False
        self.compute_ms: dict[int, float] = {}
        self._conns: list[socket.socket] = []

    # -------------------------------------------------------------- connections

    def _accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            threading.Thread(target=self._read_forever, args=(conn,), daemon=True).start()

    def _read_forever(self, conn: socket.socket) -> None:
        while True:
            try:
                got = recv_frame(conn)
            except (OSError, WireError) as exc:
                self.inbox.put((conn, {"kind": "broken", "message": str(exc)}, b""))
                return
            if got is None:
                self.inbox.put((conn, None, b""))
                return
            self.inbox.put((conn, got[0], got[1]))

    def _send_forever(self, route: _Route) -> None:
        while True:
            job = route.jobs.get()
            try:
                if job is None:
                    return
                n, values = job
                specs, pieces = encode_tensors(values, route.tensors, route.bits)
                header = {"kind": "data", "id": n, "src": self.device, "link": route.link, "tensors": specs}
                msg = frame(header, pieces)
                route.send_ms[n] = route.sender.send(msg) * 1e3
                route.payload_bytes[n] = frame_bytes(pieces)
                route.frame_bytes[n] = frame_bytes(msg)
            except (OSError, RunSplitError) as exc:
                route.error = f"link {route.link} to {route.dst}: {exc}"
            finally:
                route.jobs.task_done()

    def _setup(self, conn: socket.socket, header: dict[str, Any]) -> None:
        self.control = conn
        self.sink = bool(header.get("sink"))
        for r in header.get("routes", []):
            sock = socket.create_connection((r["host"], int(r["port"])), timeout=30)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_frame(sock, {"kind": "hello", "src": self.device, "link": r["link"]})
            bps = r.get("bandwidth_bps")
            sender = PacedSender(sock, float(bps) if bps else None, float(r.get("latency_ms") or 0.0) / 1e3)
            route = _Route(r["link"], r["dst"], list(r["tensors"]), int(r["bits"]), sender)
            threading.Thread(target=self._send_forever, args=(route,), daemon=True).start()
            self.routes.append(route)
        send_frame(conn, {"kind": "ready", "device": self.device})

    # -------------------------------------------------------------- inference

    def _run(self, n: int, values: dict[str, np.ndarray]) -> None:
        outputs = values
        if self.session is not None:
            feeds = {i.name: values[i.name] for i in self.part.inputs}
            t = time.perf_counter()
            outs = self.session.run(None, feeds)
            self.compute_ms[n] = (time.perf_counter() - t) * 1e3
            outputs = {o.name: np.asarray(v) for o, v in zip(self.part.outputs, outs, strict=True)}
        for route in self.routes:
            if route.error:
                raise RunSplitError(route.error)
            route.jobs.put((n, outputs))
        if self.sink and self.control is not None:
            specs, pieces = encode_tensors(outputs, ["logits"], 32)
            send_frame(
                self.control, {"kind": "result", "id": n, "device": self.device, "tensors": specs}, pieces
            )

    def _stats(self) -> dict[str, Any]:
        for route in self.routes:
            route.jobs.join()
        return {
            "kind": "stats",
            "device": self.device,
            "compute_ms": {str(k): v for k, v in self.compute_ms.items()},
            "links": {
                r.link: {
                    "dst": r.dst,
                    "payload_bytes": {str(k): v for k, v in r.payload_bytes.items()},
                    "frame_bytes": {str(k): v for k, v in r.frame_bytes.items()},
                    "send_ms": {str(k): v for k, v in r.send_ms.items()},
                    "error": r.error,
                }
                for r in self.routes
            },
        }

    def serve(self, announce: Callable[[str], None] | None = None) -> None:
        host, port = self.address
        threading.Thread(target=self._accept_forever, daemon=True).start()
        if announce is not None:
            announce(f"nasopt serve-part: {self.device} listening on {host}:{port}")
        pending: dict[int, dict[str, np.ndarray]] = {}
        arrived: dict[int, set[str | None]] = {}
        try:
            while True:
                timeout = SETUP_TIMEOUT_S if self.control is None else None
                try:
                    conn, header, payload = self.inbox.get(timeout=timeout)
                except queue.Empty:
                    raise RunSplitError(f"no runner connected within {SETUP_TIMEOUT_S:.0f} s") from None
                if header is None or header.get("kind") == "broken":
                    if conn is self.control:
                        return  # the runner went away
                    if header is not None:
                        raise RunSplitError(f"{self.device}: {header['message']}")
                    continue
                kind = header.get("kind")
                if kind == "setup":
                    self._setup(conn, header)
                elif kind == "hello":
                    continue
                elif kind == "stop":
                    return
                elif kind == "stats":
                    send_frame(conn, self._stats())
                elif kind == "data":
                    n = int(header["id"])
                    pending.setdefault(n, {}).update(decode_tensors(header["tensors"], payload))
                    arrived.setdefault(n, set()).add(header.get("src"))
                    if arrived[n] >= self.expected:
                        self._run(n, pending.pop(n))
                        del arrived[n]
                else:
                    raise WireError(f"unknown frame kind {kind!r}")
        except Exception as exc:
            if self.control is not None:
                with contextlib.suppress(OSError):
                    send_frame(self.control, {"kind": "error", "device": self.device, "message": str(exc)})
            raise
        finally:
            self.close()

    def close(self) -> None:
        for route in self.routes:
            route.jobs.put(None)
            with contextlib.suppress(OSError):
                route.sender.sock.close()
        with contextlib.suppress(OSError):
            self.listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def serve_part(export_dir: Path, device: str, listen: str = "127.0.0.1:0") -> None:
    """Serve `device` of the export in `export_dir` (CLI: `nasopt serve-part`)."""
    _die_with_parent()
    host, port = parse_address(listen, "--listen")
    server = PartServer(export_dir, device, host, port)
    server.serve(announce=lambda line: print(line, flush=True))
