"""The `[accuracy]` table of a study spec for `estimator = "supernet"`, validated here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasopt.accuracy.data import DATASETS
from nasopt.errors import SpecError

SAMPLING = ("sandwich", "uniform")
FORMAT = "nasopt-supernet/2"  # 2: residual MBConvs start as the identity


@dataclass(frozen=True)
class SupernetConfig:
    """Training and evaluation settings (every field is an `[accuracy]` key).

    dataset/path/limit/val_fraction/samples select the data (see `nasopt.data`); `sampling`:
    "sandwich" (largest, smallest and `random_subnets` random subnets per step, the others
    distilled in place from the largest) or "uniform" (one random subnet per step); `loss_rates`:
    packet-loss dropout rates drawn from during training (NASC), after `loss_warmup_epochs` epochs
    without loss; `warmup_epochs`: linear learning-rate warm-up before the cosine decay;
    `label_smoothing`: of the cross-entropy on the labels; `calibration_batches`: training
    batches used to recalibrate BatchNorm per candidate; `val_samples`: validation samples scored
    per candidate (0: all); `max_params`: refuse supernets larger than this.
    """

    dataset: str = "digits"
    path: str | None = None
    limit: int | None = None
    val_fraction: float = 0.2
    samples: int = 1200
    epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    sampling: str = "sandwich"
    random_subnets: int = 2
    loss_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    warmup_epochs: float = 0.0
    loss_warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    checkpoint_dir: str = ".nasopt/checkpoints"
    checkpoint_every: int = 20
    calibration_batches: int = 2
    eval_batch_size: int = 256
    val_samples: int = 0
    max_params: int = 60_000_000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SupernetConfig:
        opts = {k: v for k, v in options.items() if k != "estimator"}
        allowed = sorted(f for f in cls.__dataclass_fields__ if f != "extra")
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise SpecError("unknown accuracy option", field=f"accuracy.{unknown[0]}", allowed=allowed)
        if opts.get("dataset", "digits") not in DATASETS:
            raise SpecError(
                "unknown dataset", field="accuracy.dataset", value=opts["dataset"], allowed=list(DATASETS)
            )
        if opts.get("sampling", "sandwich") not in SAMPLING:
            raise SpecError(
                "unknown sampling rule",
                field="accuracy.sampling",
                value=opts["sampling"],
                allowed=list(SAMPLING),
            )
        ints: tuple[str, ...] = (
            "limit",
            "samples",
            "epochs",
            "batch_size",
            "random_subnets",
            "seed",
            "checkpoint_every",
        )
        ints += ("calibration_batches", "eval_batch_size", "val_samples", "max_params")
        minimum = {"epochs": 1, "batch_size": 2, "checkpoint_every": 1, "calibration_batches": 1}
        minimum |= {"eval_batch_size": 1, "limit": 2, "samples": 20, "max_params": 1}
        for key in ints:
            if key in opts:
                v = opts[key]
                if not isinstance(v, int) or isinstance(v, bool):
                    raise SpecError(
                        "must be an integer",
                        field=f"accuracy.{key}",
                        value=v,
                        allowed=f"an integer >= {minimum.get(key, 0)}",
                    )
                if v < minimum.get(key, 0):
                    raise SpecError(
                        f"must be at least {minimum.get(key, 0)}", field=f"accuracy.{key}", value=v
                    )
        for key in ("lr", "weight_decay", "val_fraction", "warmup_epochs", "loss_warmup_epochs"):
            if key in opts:
                v = opts[key]
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                    raise SpecError("must be a non-negative number", field=f"accuracy.{key}", value=v)
                opts[key] = float(v)
        if "label_smoothing" in opts:
            v = opts["label_smoothing"]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
                raise SpecError("must be in [0, 1)", field="accuracy.label_smoothing", value=v)
            opts["label_smoothing"] = float(v)
        if "val_fraction" in opts and not 0 < opts["val_fraction"] < 1:
            raise SpecError("must be in (0, 1)", field="accuracy.val_fraction", value=opts["val_fraction"])
        if "loss_rates" in opts:
            rates = opts["loss_rates"]
            if (
                not isinstance(rates, list)
                or not rates
                or not all(isinstance(r, (int, float)) and 0 <= r < 1 for r in rates)
            ):
                raise SpecError(
                    "must be a non-empty list of rates",
                    field="accuracy.loss_rates",
                    value=rates,
                    allowed="[0, 1)",
                )
            opts["loss_rates"] = tuple(float(r) for r in rates)
        for key in ("path", "checkpoint_dir"):
            if key in opts and not isinstance(opts[key], str):
                raise SpecError("must be a string", field=f"accuracy.{key}", value=opts[key])
        return cls(**opts)

    def data_options(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "limit": self.limit,
            "val_fraction": self.val_fraction,
            "samples": self.samples,
            "seed": self.seed,
        }

    def training_key(self) -> dict[str, Any]:
        """What the trained weights depend on (not evaluation-only settings)."""
        d = asdict(self)
        for k in ("checkpoint_dir", "checkpoint_every", "calibration_batches", "eval_batch_size"):
            d.pop(k)
        for k in ("val_samples", "max_params", "extra"):
            d.pop(k)
        d["loss_rates"] = list(self.loss_rates)
        if self.path is not None:
            d["path"] = str(Path(self.path).resolve())
        return d


def content_hash(space_doc: dict[str, Any], cut_groups: list[Any], config: SupernetConfig) -> str:
    """SHA-256 of (format, search space, cut domains, dataset and training settings)."""
    doc = {"format": FORMAT, "space": space_doc, "cuts": cut_groups, "training": config.training_key()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
