"""An analytic accuracy proxy for studies that run before (or without) a trained supernet.

The proxy is NOT a measured accuracy: it is a deterministic, monotone function of a candidate's
capacity (MACs and parameters relative to the space's smallest and largest networks), of the
information its cuts let through, and of the link loss rate. It exists so studies run end to end
before the supernet estimator is trained; every output that uses it says `analytic-proxy`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from nasopt.core.batched import BatchEvaluation
from nasopt.core.candidate import Candidate
from nasopt.core.network import Network

if TYPE_CHECKING:
    from nasopt.space import SearchSpace


class ProxyAccuracy:
    """Analytic stand-in for a trained estimator (clearly named `analytic-proxy` in outputs).

    acc = floor + (ceiling - floor) * capacity^0.5 * bottleneck * (1 - loss_penalty * loss_rate)
    where capacity in [0, 1] is the mean of log-MACs and log-params normalised between the space's
    smallest and largest candidate, and bottleneck = min over cuts inside the network (a cut after
    the last layer cuts nothing) of a saturating function of the bits sent per output pixel of
    the cut layer.
    """

    name = "analytic-proxy"

    def __init__(
        self,
        space: SearchSpace,
        *,
        floor: float = 0.1,
        ceiling: float = 0.95,
        loss_penalty: float = 0.3,
    ) -> None:
        if not 0.0 <= floor < ceiling <= 1.0:
            raise ValueError(f"need 0 <= floor < ceiling <= 1, got {floor}, {ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self.loss_penalty = loss_penalty
        small = space.network(space.smallest())
        large = space.network(space.largest())
        self._lo = (math.log(max(small.macs, 1)), math.log(max(small.params, 1)))
        self._hi = (math.log(max(large.macs, 2)), math.log(max(large.params, 2)))

    def _norm(self, value: int, k: int) -> float:
        lo, hi = self._lo[k], self._hi[k]
        if hi <= lo:
            return 1.0
        return min(1.0, max(0.0, (math.log(max(value, 1)) - lo) / (hi - lo)))

    def accuracy(self, candidate: Candidate, network: Network, loss_rate: float) -> float:
        capacity = 0.5 * (self._norm(network.macs, 0) + self._norm(network.params, 1))
        bottleneck = 1.0
        for k, flat in enumerate(network.cut_after):
            if flat < 0 or network.sent_elems[k] == 0:
                continue  # sending the raw input loses nothing; nor does a cut after the last
                # layer, where nothing is sent (the result stays on the device that made it)
            _, h, w = network.layers[flat].out_shape
            bits_per_pixel = network.sent_elems[k] * network.sent_bits[k] / max(h * w, 1)
            bottleneck = min(bottleneck, 1.0 - math.exp(-bits_per_pixel / 64.0))
        score = math.sqrt(capacity) * bottleneck * (1.0 - self.loss_penalty * loss_rate)
        return self.floor + (self.ceiling - self.floor) * score

    def accuracy_batch(self, result: BatchEvaluation, loss_rate: float) -> np.ndarray:
        """`accuracy` of every candidate of a batched evaluation (the same formula over arrays)."""
        capacity = 0.5 * (
            self._norm_array(result.network_macs, 0) + self._norm_array(result.network_params, 1)
        )
        bottleneck = np.ones(len(result))
        for elems, bits, pixels in zip(result.sent_elems, result.sent_bits, result.cut_pixels, strict=True):
            bits_per_pixel = elems * bits / np.maximum(pixels, 1)
            # no term for the raw input (pixels 0) nor after the last layer (nothing is sent)
            term = np.where((pixels > 0) & (elems > 0), 1.0 - np.exp(-bits_per_pixel / 64.0), 1.0)
            bottleneck = np.minimum(bottleneck, term)
        score = np.sqrt(capacity) * bottleneck * (1.0 - self.loss_penalty * loss_rate)
        return self.floor + (self.ceiling - self.floor) * score

    def _norm_array(self, values: np.ndarray, k: int) -> np.ndarray:
        lo, hi = self._lo[k], self._hi[k]
        if hi <= lo:
            return np.ones(len(values))
        return np.clip((np.log(np.maximum(values, 1)) - lo) / (hi - lo), 0.0, 1.0)
