"""The formulas every placement must agree on: bytes of a sent feature, and a device's peak memory
under its memory model (docs/memory-models.md states each model with its formula and numbers).

Both models count the device's weights plus the larger of an activation term and the payloads the
device buffers while receiving or sending; they differ in the activation term:

- `liveness` (the default): the most activation elements alive at once in any one layer, its
  input, output and, inside a block, the intermediate tensors and a residual's held input;
- `splitnets`: two copies of the largest single activation tensor on the device, SplitNets'
  "input and output activations of the largest layer" when batch norm and activation layers are
  counted as layers of their own (their input and output are the same size). It reproduces all
  six of SplitNets' published peak memories of MobileNetV2, MNASNet and EfficientNet-B0 (Tables 4
  and 6) within 0.3 %.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from nasopt.core.ops import LayerCost

MemoryModelName = Literal["liveness", "splitnets"]


def _liveness(layer: LayerCost) -> int:
    return layer.peak_live_elems


def _splitnets(layer: LayerCost) -> int:
    return 2 * layer.peak_tensor_elems


MEMORY_MODELS: dict[str, Callable[[LayerCost], int]] = {"liveness": _liveness, "splitnets": _splitnets}
"""Activation elements one layer needs under each memory model (a device takes the largest)."""


def live_elements(layers: Iterable[LayerCost], model: str) -> int:
    """The activation term, in elements, of a device running `layers` under memory `model`."""
    per_layer = MEMORY_MODELS[model]
    return max((per_layer(layer) for layer in layers), default=0)


def payload_bytes(elements: int, bits: int) -> float:
    """Bytes of `elements` values sent at `bits` each (fractional bytes kept: 3-bit features)."""
    return elements * bits / 8.0


def peak_memory_bytes(
    params: int, peak_live_elements: int, buffered_bytes: float, *, weight_bits: int, activation_bits: int
) -> int:
    """A device's peak memory: its layers' weights plus the larger of its activation term
    (`live_elements` under the device's memory model) and the payloads it holds while
    receiving or sending."""
    return weight_bytes(params, weight_bits) + int(
        max(peak_live_elements * activation_bits / 8.0, buffered_bytes)
    )


def weight_bytes(params: int, weight_bits: int) -> int:
    """Bytes of `params` weights stored at `weight_bits` each."""
    return int(params * weight_bits / 8.0)
