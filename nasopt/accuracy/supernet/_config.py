"""The training settings of a supernet, from the `[accuracy]` table (`nasopt.spec.SupernetSpec`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasopt.errors import SpecError
from nasopt.spec import SupernetSpec, parse_spec

FORMAT = "nasopt-supernet/2"  # 2: residual MBConvs start as the identity

# Options added after checkpoints existed: at these values they are off and left out of the
# content hash, so every earlier checkpoint keeps its hash (OFF_FLAGS: the yes/no ones).
OFF_VALUES = {
    "block_distill": 0.0,
    "kd_weight": 1.0,
    "largest_epochs": 0.0,
    "shrink_epochs": 0.0,
    "ema_decay": 0.0,
}
OFF_FLAGS = {"train_smallest": True, "kernel_transform": False}
SANDWICH_ONLY = ("block_distill", "kd_weight", "largest_epochs", "shrink_epochs", "train_smallest")


@dataclass(frozen=True)
class SupernetConfig:
    """Training and evaluation settings (every field is an `[accuracy]` key).

    dataset/path/limit/val_fraction/samples select the data (see `nasopt.data`); `sampling`:
    "sandwich" (largest, smallest and `random_subnets` random subnets per step, the others distilled
    in place from the largest) or "uniform" (one random subnet per step); `loss_rates`: packet-loss
    dropout rates drawn from during training (NASC), after `loss_warmup_epochs` epochs without loss;
    `warmup_epochs`: linear learning-rate warm-up before the cosine decay; `label_smoothing`: of the
    cross-entropy on the labels; `block_distill` (sandwich): weight of the block-wise feature loss
    (`_train.block_loss`); `kd_weight` (sandwich): share of the in-place distillation in the other
    subnets' loss (the rest: the labels); `largest_epochs` (sandwich): epochs at the start training
    the largest subnet alone; `train_smallest` (sandwich): false replaces the smallest subnet of
    every step by one more random subnet; `shrink_epochs` (sandwich): epochs of each of progressive
    shrinking's two phases after largest_epochs (`_train.phase_of`); `kernel_transform`: smaller
    kernels are the larger ones' centres through learned matrices (`_ops.ElasticConv`); `ema_decay`:
    the final checkpoint holds an exponential moving average of the weights (0: off); `init_seed`:
    seed of the initial weights, batch order and subnet draws (None: `seed`, which also makes the
    data); `calibration_batches`: training batches used to recalibrate BatchNorm per candidate;
    `val_samples`: validation samples scored per candidate (0: all); `max_params`: refuse supernets
    larger than this.
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
    block_distill: float = 0.0
    kd_weight: float = 1.0
    largest_epochs: float = 0.0
    shrink_epochs: float = 0.0
    train_smallest: bool = True
    kernel_transform: bool = False
    ema_decay: float = 0.0
    seed: int = 0
    init_seed: int | None = None
    checkpoint_dir: str = ".nasopt/checkpoints"
    checkpoint_every: int = 20
    calibration_batches: int = 2
    eval_batch_size: int = 256
    val_samples: int = 0
    max_params: int = 60_000_000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: SupernetSpec | dict[str, Any]) -> SupernetConfig:
        """The config of an `[accuracy]` table (a validated `SupernetSpec`, or its TOML dict)."""
        if isinstance(options, dict):
            try:
                spec = parse_spec(SupernetSpec, {"estimator": "supernet", **options}, "")
            except SpecError as exc:
                raise SpecError(
                    exc.detail,
                    field=f"accuracy.{exc.field}",
                    value=exc.value,
                    allowed=exc.allowed,
                    has_value=exc.has_value,
                ) from None
        else:
            spec = options
        values = spec.model_dump(exclude={"estimator"})
        values["loss_rates"] = tuple(float(r) for r in spec.loss_rates)
        for key in ("val_fraction", "lr", "weight_decay", "warmup_epochs", "loss_warmup_epochs"):
            values[key] = float(values[key])
        values["label_smoothing"] = float(values["label_smoothing"])
        for key in OFF_VALUES:
            values[key] = float(values[key])
        if values["init_seed"] == values["seed"]:  # the default, and its content hash
            values["init_seed"] = None
        off_values: dict[str, Any] = {**OFF_VALUES, **OFF_FLAGS}
        for key in SANDWICH_ONLY:
            if values[key] != off_values[key] and values["sampling"] != "sandwich":
                off = str(off_values[key]).lower() if key in OFF_FLAGS else f"{off_values[key]:g}"
                raise SpecError(
                    f"{key} needs the sandwich's largest subnet",
                    field=f"accuracy.{key}",
                    value=values[key],
                    allowed=f'{off} with sampling = "uniform", or sampling = "sandwich"',
                )
        if values["largest_epochs"] >= values["epochs"]:
            raise SpecError(
                "largest_epochs leaves no epoch for the other subnets",
                field="accuracy.largest_epochs",
                value=values["largest_epochs"],
                allowed=f"0 <= largest_epochs < epochs ({values['epochs']})",
            )
        if values["largest_epochs"] + 2 * values["shrink_epochs"] >= values["epochs"]:
            raise SpecError(
                "shrink_epochs leaves no epoch in which every choice varies",
                field="accuracy.shrink_epochs",
                value=values["shrink_epochs"],
                allowed=f"0 <= largest_epochs + 2 * shrink_epochs < epochs ({values['epochs']})",
            )
        return cls(**values)

    @property
    def train_seed(self) -> int:
        """The seed of the initial weights, batch order and subnet draws."""
        return self.seed if self.init_seed is None else self.init_seed

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
        for key, off in {**OFF_VALUES, **OFF_FLAGS, "init_seed": None}.items():  # off: the hash as before
            if d[key] == off:
                d.pop(key)
        if self.path is not None:
            d["path"] = str(Path(self.path).resolve())
        return d


def content_hash(space_doc: dict[str, Any], cut_groups: list[Any], config: SupernetConfig) -> str:
    """SHA-256 of (format, search space, cut domains, dataset and training settings)."""
    doc = {"format": FORMAT, "space": space_doc, "cuts": cut_groups, "training": config.training_key()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
