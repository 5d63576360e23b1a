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

from collections.abc import Iterable

from nasopt.core.ops import LayerCost

MEMORY_MODELS: tuple[str, ...] = ("liveness", "splitnets")
"""The memory models a device may name (`devices.X.memory_model`)."""


def activation_elements(model: str, peak_live_elems: int, peak_tensor_elems: int) -> int:
    """The activation term, in elements, of a device under memory `model`, from the largest
    `LayerCost.peak_live_elems` and the largest `LayerCost.peak_tensor_elems` of its layers
    (the evaluation's hot loop tracks both maxima, then asks this once)."""
    if model == "liveness":
        return peak_live_elems
    if model == "splitnets":
        return 2 * peak_tensor_elems
    raise ValueError(f"unknown memory model {model!r}; allowed: {', '.join(MEMORY_MODELS)}")


def live_elements(layers: Iterable[LayerCost], model: str) -> int:
    """The activation term, in elements, of a device running `layers` under memory `model`."""
    live = tensor = 0
    for layer in layers:
        live = max(live, layer.peak_live_elems)
        tensor = max(tensor, layer.peak_tensor_elems)
    return activation_elements(model, live, tensor)


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
