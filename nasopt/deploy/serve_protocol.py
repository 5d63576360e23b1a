"""The wire format between `nasopt run-split` and its `nasopt serve-part` processes.

A frame is `NSP1`, the header's length (uint32, big-endian), the header (UTF-8 JSON) and the
payload (raw bytes); the header carries the payload's length and CRC-32, checked on receipt.
Tensors travel as the manifest says: float32 and uint8/int32 as their raw bytes (C order),
quantised levels (`*.q`) packed at the link's bits when those are fewer than the dtype holds.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasopt.deploy.manifest import FileInfo
from nasopt.errors import SpecError

MAGIC = b"NSP1"
_PREFIX = struct.Struct(">4sI")
MAX_HEADER_BYTES = 1 << 20
_DTYPES = {"float32": np.float32, "uint8": np.uint8, "int32": np.int32}


class RunSplitError(SpecError):
    """A part that cannot be served or a run that went wrong; the CLI prints one line, exit 2."""


class WireError(RunSplitError):
    """A frame that is not one: bad magic, a header that is not JSON, a wrong checksum."""


# ------------------------------------------------------------------ frames


def frame(header: dict[str, Any], payload: Sequence[bytes | memoryview] = ()) -> list[bytes | memoryview]:
    """The pieces of one frame: prefix and header, then the payload pieces as they are."""
    crc = 0
    size = 0
    for piece in payload:
        crc = zlib.crc32(piece, crc)
        size += len(piece)
    head = json.dumps({**header, "payload_bytes": size, "crc32": crc}, separators=(",", ":")).encode()
    return [_PREFIX.pack(MAGIC, len(head)) + head, *payload]


def frame_bytes(pieces: Iterable[bytes | memoryview]) -> int:
    return sum(len(p) for p in pieces)


def send_frame(
    sock: socket.socket, header: dict[str, Any], payload: Sequence[bytes | memoryview] = ()
) -> int:
    """Send one frame unpaced (control messages); returns the bytes sent."""
    pieces = frame(header, payload)
    for piece in pieces:
        sock.sendall(piece)
    return frame_bytes(pieces)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            if got == 0:
                return None
            raise WireError(f"connection closed inside a frame ({got} of {n} bytes)")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next frame's header and payload; None when the peer closed between frames."""
    prefix = _recv_exact(sock, _PREFIX.size)
    if prefix is None:
        return None
    magic, head_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise WireError(f"not a nasopt frame (magic {magic!r}, expected {MAGIC!r})")
    if head_len > MAX_HEADER_BYTES:
        raise WireError(f"frame header of {head_len} bytes (at most {MAX_HEADER_BYTES})")
    head = _recv_exact(sock, head_len)
    if head is None:
        raise WireError("connection closed inside a frame header")
    try:
        header = json.loads(head)
        size = int(header["payload_bytes"])
        crc = int(header["crc32"])
    except (ValueError, KeyError, TypeError):
        raise WireError("frame header is not JSON with payload_bytes and crc32") from None
    payload = _recv_exact(sock, size) if size else b""
    if payload is None:
        raise WireError("connection closed before a frame's payload")
    if zlib.crc32(payload) != crc:
        raise WireError(f"frame payload checksum mismatch (CRC-32 {zlib.crc32(payload)} != {crc})")
    return header, payload


# ------------------------------------------------------------------ tensors


def pack_levels(levels: np.ndarray, bits: int) -> bytes:
    """Integer levels in [0, 2**bits) packed at `bits` bits each (big-endian bit order)."""
    flat = levels.reshape(-1)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise WireError(f"quantised levels outside [0, {1 << bits}) cannot travel at {bits} bits")
    as_bits = np.unpackbits(flat.astype(">u4").view(np.uint8)).reshape(-1, 32)[:, 32 - bits :]
    return np.packbits(as_bits.reshape(-1)).tobytes()


def unpack_levels(data: bytes, bits: int, count: int, dtype: str) -> np.ndarray:
    as_bits = np.unpackbits(np.frombuffer(data, np.uint8))[: count * bits].reshape(count, bits)
    full = np.zeros((count, 32), np.uint8)
    full[:, 32 - bits :] = as_bits
    return np.packbits(full, axis=1).view(">u4").reshape(-1).astype(_DTYPES[dtype])


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def encode_tensors(
    values: dict[str, np.ndarray], names: Sequence[str], bits: int
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Header entries and payload pieces for `names`; `*.q` levels packed at `bits` when below
    their dtype's width (uint8 at 8 bits travels as it is)."""
    specs: list[dict[str, Any]] = []
    pieces: list[bytes] = []
    for name in names:
        arr = np.ascontiguousarray(values[name])
        dtype = str(arr.dtype)
        if dtype not in _DTYPES:
            raise WireError(f"tensor {name} has dtype {dtype}; allowed: {', '.join(_DTYPES)}")
        spec: dict[str, Any] = {"name": name, "dtype": dtype, "shape": list(arr.shape)}
        if name.endswith(".q") and bits < 8 * arr.dtype.itemsize:
            data = pack_levels(arr, bits)
            spec["bits"] = bits
        else:
            data = arr.tobytes()
        spec["nbytes"] = len(data)
        specs.append(spec)
        pieces.append(data)
    return specs, pieces


def decode_tensors(specs: Sequence[dict[str, Any]], payload: bytes) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        n = int(spec["nbytes"])
        data = payload[offset : offset + n]
        offset += n
        shape = tuple(int(s) for s in spec["shape"])
        count = int(np.prod(shape)) if shape else 1
        if "bits" in spec:
            arr = unpack_levels(data, int(spec["bits"]), count, spec["dtype"])
        else:
            arr = np.frombuffer(data, _DTYPES[spec["dtype"]])
        if arr.size != count:
            raise WireError(f"tensor {spec['name']}: {arr.size} values for shape {list(shape)}")
        out[spec["name"]] = arr.reshape(shape)
    if offset != len(payload):
        raise WireError(f"frame payload of {len(payload)} bytes, its tensors take {offset}")
    return out


# ------------------------------------------------------------------ exported files


def verify_file(export_dir: Path, info: FileInfo) -> Path:
    """The exported file `info` names, refused unless present with the manifest's SHA-256."""
    path = export_dir / info.path
    try:
        data = path.read_bytes()
    except OSError:
        raise RunSplitError("exported file missing or unreadable", file=str(path)) from None
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise RunSplitError(
            "exported file changed since export (SHA-256 differs from the manifest); export again",
            file=str(path),
        )
    return path
