"""A `tc`-free rate limiter on the sending side: paced writes that emulate a link's bandwidth
(and a fixed latency) on loopback or any TCP connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

# one paced write covers about this long at the link's rate: small enough to keep the pace
# even, large enough that a busy machine's sleep granularity does not dominate
_CHUNK_S = 0.002
_MIN_CHUNK = 256
_MAX_CHUNK = 1 << 18


class PacedSender:
    """Sends byte pieces over `sock` no faster than `bandwidth_bps`: byte k leaves no earlier
    than k·8/bandwidth after the message started (so a message of S bytes takes at least
    S·8/bandwidth), after sleeping `latency_s`. `bandwidth_bps=None`: as fast as TCP goes."""

    def __init__(
        self, sock: socket.socket, bandwidth_bps: float | None = None, latency_s: float = 0.0
    ) -> None:
        if bandwidth_bps is not None and bandwidth_bps <= 0:
            raise ValueError(f"bandwidth_bps must be positive, got {bandwidth_bps}")
        if latency_s < 0:
            raise ValueError(f"latency_s must be non-negative, got {latency_s}")
        self.sock = sock
        self.bandwidth_bps = bandwidth_bps
        self.latency_s = latency_s
        bytes_per_s = (bandwidth_bps or 0.0) / 8.0
        self.chunk_bytes = int(min(_MAX_CHUNK, max(_MIN_CHUNK, bytes_per_s * _CHUNK_S)))

    def send(self, pieces: Sequence[bytes | memoryview]) -> float:
        """Send the pieces as one message; the seconds it took (latency and pacing included)."""
        start = time.perf_counter()
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.bandwidth_bps is None:
            for piece in pieces:
                self.sock.sendall(piece)
            return time.perf_counter() - start
        t0 = time.perf_counter()
        s_per_byte = 8.0 / self.bandwidth_bps
        sent = 0
        for piece in pieces:
            view = memoryview(piece).cast("B")
            for off in range(0, len(view), self.chunk_bytes):
                chunk = view[off : off + self.chunk_bytes]
                self.sock.sendall(chunk)
                sent += len(chunk)
                wait = t0 + sent * s_per_byte - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
        return time.perf_counter() - start
