"""The two formulas every placement must agree on: bytes of a sent feature, and a device's
peak memory (weights plus the larger of its live activations and the payloads it buffers)."""

from __future__ import annotations


def payload_bytes(elements: int, bits: int) -> float:
    """Bytes of `elements` values sent at `bits` each (fractional bytes kept: 3-bit features)."""
    return elements * bits / 8.0


def peak_memory_bytes(
    params: int, peak_live_elements: int, buffered_bytes: float, *, weight_bits: int, activation_bits: int
) -> int:
    """A device's peak memory: its layers' weights plus the larger of the most live activations
    of any one layer and the payloads it holds while receiving or sending."""
    return weight_bytes(params, weight_bits) + int(
        max(peak_live_elements * activation_bits / 8.0, buffered_bytes)
    )


def weight_bytes(params: int, weight_bits: int) -> int:
    """Bytes of `params` weights stored at `weight_bits` each."""
    return int(params * weight_bits / 8.0)
