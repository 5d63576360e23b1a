"""`SupernetAccuracy`: the AccuracyEstimator backed by a trained weight-sharing supernet.

Per candidate: BatchNorm statistics recalibrated on `calibration_batches` fixed training batches,
then top-1 accuracy on the held-out validation split (never the training split) with packet-loss
dropout at the objective's loss rate on every sent feature (a seeded draw: one sample of the
expected accuracy per validation image). Results are cached per (candidate, loss rate).
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch

from nasopt.accuracy.data import Dataset, load_dataset
from nasopt.accuracy.supernet import _dist
from nasopt.accuracy.supernet._config import SupernetConfig, content_hash
from nasopt.accuracy.supernet._net import Supernet
from nasopt.accuracy.supernet._ops import RunContext, bn_statistics
from nasopt.accuracy.supernet._threads import use_free_cores
from nasopt.accuracy.supernet._train import CheckpointError, TrainResult, load_checkpoint, train_supernet
from nasopt.core.candidate import Candidate
from nasopt.core.network import Network
from nasopt.space import SearchSpace
from nasopt.spec import SupernetSpec


def use_available_cores() -> None:
    """PyTorch's intra-op threads: one per free core (`nasopt.accuracy.supernet._threads`)."""
    use_free_cores()


def checkpoint_file(root: Path, name: str) -> Path:
    """`root/name`, refused unless it lies inside `root` (the name comes from a spec)."""
    path = (root / name).resolve()
    if path.parent != root.resolve():
        raise CheckpointError(
            "checkpoint file name would leave the checkpoint folder", field="space.name", value=name
        )
    return path


@contextlib.contextmanager
def training_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`.lock for as long as the block runs: the first process trains,
    any other blocks here until the checkpoint exists. The lock is released when its holder
    exits, killed or not (flock), so a dead trainer does not block the next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with lock.open("a") as fh:
        if not _try_lock(fh):
            print(f"supernet: another process is training {path.name}; waiting for it", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _try_lock(fh: IO[str]) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SupernetAccuracy:
    """Accuracy of a candidate as a subnet of the study's trained supernet.

    >>> est = SupernetAccuracy(space, {"estimator": "supernet", "epochs": 1})  # doctest: +SKIP
    >>> est.ensure_trained()                                                    # doctest: +SKIP
    >>> est.accuracy(cand, space.network(cand), loss_rate=0.1)                  # doctest: +SKIP
    """

    name = "supernet"

    def __init__(
        self, space: SearchSpace, options: SupernetSpec | dict, *, base_dir: Path | None = None
    ) -> None:
        self.space = space
        self.config = SupernetConfig.from_options(options)
        spec = space.spec
        groups = [[list(names), list(domain)] for names, domain in space._cut_groups]
        if space._fuse is not None:
            groups.append([space._fuse.name, list(space._fuse.choices)])
        self.hash = content_hash(spec.model_dump(mode="json"), groups, self.config)
        root = Path(self.config.checkpoint_dir)
        if not root.is_absolute():
            root = (base_dir or Path.cwd()) / root
        self.path = checkpoint_file(root, f"{spec.name}-{self.hash[:16]}.pt")
        self._net: Supernet | None = None
        self._net_loaded = False  # the checkpoint's weights are in self._net
        self._data: Dataset | None = None
        self._calibration: list[torch.Tensor] | None = None
        self._cache: dict[tuple[Candidate, float], float] = {}

    # ------------------------------------------------------------ lazy pieces

    def build(self) -> Supernet:
        if self._net is None:
            use_available_cores()
            with torch.device("meta"):
                n = sum(
                    p.numel() for p in Supernet(self.space.spec, self.config.kernel_transform).parameters()
                )
            if n > self.config.max_params:
                raise CheckpointError(
                    f"the supernet of {self.space.spec.name} would have {n / 1e6:.0f} M parameters "
                    "(multi-view fusion early in the network multiplies the aggregator's input "
                    "channels by the number of views); restrict fusion.points or raise it",
                    field="accuracy.max_params",
                    value=self.config.max_params,
                )
            torch.manual_seed(self.config.train_seed)
            self._net = Supernet(self.space.spec, self.config.kernel_transform)
        return self._net

    @property
    def data(self) -> Dataset:
        if self._data is None:
            inp = self.space.spec.input
            self._data = load_dataset(
                self.config.data_options(),
                channels=inp.channels,
                height=inp.height,
                width=inp.width,
                views=self.space.macro.views,
            )
            if self._data.num_classes > self.space.spec.num_classes:
                raise CheckpointError(
                    f"dataset {self._data.name} has {self._data.num_classes} classes, the space's "
                    f"classifier {self.space.spec.num_classes}",
                    field="accuracy.dataset",
                )
        return self._data

    def is_trained(self) -> bool:
        return self.path.is_file()

    def ensure_trained(self, *, progress: bool = True, retrain: bool = False) -> TrainResult:
        """Train the supernet unless a valid checkpoint exists (a broken one is an error)."""
        net = self.build()
        main = _dist.is_main()  # distributed: rank 0 decides, deletes and holds the lock
        if retrain and main:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name.replace(".pt", ".partial.pt")).unlink(missing_ok=True)
        if _dist.agree(self.path.is_file()):
            return self._reuse(net)
        # concurrent runs: one trains, the others wait and reuse
        with training_lock(self.path) if main else contextlib.nullcontext():
            if _dist.agree(self.path.is_file()):
                return self._reuse(net)
            result = train_supernet(
                net, self.space, self.data, self.config, self.path, self.hash, progress=progress
            )
        net.eval()
        return result

    def _reuse(self, net: Supernet) -> TrainResult:
        payload = load_checkpoint(self.path, self.hash, net)
        return TrainResult(self.path, False, float(payload["seconds"]), int(payload["epoch"]), [])

    def _loaded(self) -> Supernet:
        net = self.build()
        if not self._net_loaded:
            if not self.path.is_file():
                raise CheckpointError(
                    "no trained supernet for this study; run `nasopt train-supernet STUDY` "
                    "(or `nasopt run`, which trains first)",
                    file=str(self.path),
                )
            load_checkpoint(self.path, self.hash, net)
            self._net_loaded = True
            net.eval()
        return net

    # ------------------------------------------------------------ evaluation

    def calibration_batches(self) -> list[torch.Tensor]:
        if self._calibration is None:
            gen = torch.Generator().manual_seed(self.config.seed + 17)
            bs = self.config.batch_size
            batches = self.data.batches(bs, gen)[: self.config.calibration_batches]
            self._calibration = [x for x, _ in batches]
        return self._calibration

    def bn_statistics(self, candidate: Candidate) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """BatchNorm recalibration: mean and variance of every BN input over the calibration
        batches, for this subnet (the supernet itself is not modified)."""
        net = self._loaded()
        collect: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for x in self.calibration_batches():
                net(x, candidate, RunContext(bn_collect=collect))
        return bn_statistics(collect)

    def evaluate(self, candidate: Candidate, loss_rate: float = 0.0) -> float:
        """Top-1 accuracy on the validation split under packet loss at `loss_rate`."""
        key = (candidate, float(loss_rate))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        net = self._loaded()
        stats = self.bn_statistics(candidate)
        gen = torch.Generator().manual_seed(self.config.seed + 29)
        correct = seen = 0
        n = self.config.val_samples or len(self.data.val_y)
        with torch.no_grad():
            for x, y in self.data.batches(self.config.eval_batch_size, gen, train=False):
                if seen >= n:
                    break
                x, y = x[: n - seen], y[: n - seen]
                ctx = RunContext(loss_rate=loss_rate, generator=gen, bn_fixed=stats)
                correct += int((net(x, candidate, ctx).argmax(1) == y).sum())
                seen += len(y)
        acc = correct / max(seen, 1)
        self._cache[key] = acc
        return acc

    def accuracy(self, candidate: Candidate, network: Network, loss_rate: float) -> float:
        return self.evaluate(candidate, loss_rate)

    def timed_evaluate(self, candidate: Candidate, loss_rate: float = 0.0) -> tuple[float, float]:
        t = time.perf_counter()
        acc = self.evaluate(candidate, loss_rate)
        return acc, time.perf_counter() - t
