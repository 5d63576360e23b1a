"""The `[accuracy]` table of a study spec: which estimator scores candidates, and its settings.

`estimator = "analytic-proxy"` (the default) takes `floor`, `ceiling` and `loss_penalty`;
`estimator = "supernet"` takes the training and evaluation settings of `SupernetSpec`. An option
of the other estimator is an unknown key, reported with the options this estimator allows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Discriminator, Field, Tag, model_validator

from nasopt.spec._base import SafeDir, _Spec

ESTIMATORS = ("analytic-proxy", "supernet")
DatasetName = Literal["digits", "shapes", "textures", "glyphs", "cifar10", "cifar100", "npz", "folder"]
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
SAMPLING_RULES = ("sandwich", "uniform")


class ProxyAccuracySpec(_Spec):
    """The analytic proxy: floor + (ceiling - floor) * capacity score * (1 - loss_penalty * loss)."""

    estimator: Literal["analytic-proxy"] = "analytic-proxy"
    floor: Annotated[float, Field(ge=0, le=1)] = 0.1
    ceiling: Annotated[float, Field(ge=0, le=1)] = 0.95
    loss_penalty: Annotated[float, Field(ge=0, le=1)] = 0.3

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> ProxyAccuracySpec:
        if not self.floor < self.ceiling:
            raise ValueError(f"floor ({self.floor}) must be below ceiling ({self.ceiling})")
        return self


Epochs = Annotated[float, Field(ge=0, le=10_000)]


class SupernetSpec(_Spec):
    """A weight-sharing supernet trained once per (space, cut domains, data, training settings).

    dataset/path/limit/val_fraction/samples select the data; `sampling`: "sandwich" (largest,
    smallest and `random_subnets` random subnets per step, distilled in place from the largest) or
    "uniform" (one random subnet per step); `loss_rates`: packet-loss dropout rates drawn from
    during training, after `loss_warmup_epochs` epochs without loss; `warmup_epochs`: linear
    learning-rate warm-up before the cosine decay; `block_distill` (sandwich): weight of a
    block-wise feature loss, every layer of the other subnets fed the largest subnet's input to that
    layer and trained to give its output (DNA, Li et al. CVPR 2020), so that ops of different types
    in one layer learn the same features; `kd_weight` (sandwich): share of the in-place distillation
    in the other subnets' loss, the rest being the labels' cross-entropy; `largest_epochs`
    (sandwich): epochs at the start that train the largest subnet alone (once-for-all's first
    phase); `train_smallest` (sandwich): false replaces the smallest subnet of every step by one
    more random subnet, so the steps train what samplers draw; `shrink_epochs` (sandwich):
    once-for-all's progressive shrinking after largest_epochs, `shrink_epochs` epochs varying only
    the ops other than `skip` at the widest widths, as many varying depth too, then every choice;
    `kernel_transform`: each smaller kernel is the centre of the next larger one through a learned
    matrix shared by the channels (once-for-all's elastic kernel), not its plain centre crop;
    `ema_decay`: the checkpoint holds an exponential moving average of the weights (0: the last
    step's weights); `init_seed`: seed of the initial weights, batch order and subnet draws (default
    `seed`, which also generates and splits the data), to train several supernets on the same data;
    `calibration_batches`: training batches used to recalibrate BatchNorm per candidate;
    `val_samples`: validation samples scored per candidate (0: all); `max_params`: refuse supernets
    larger than this; `checkpoint_dir`: a folder relative to the working directory (no `..`), or an
    absolute one.
    """

    estimator: Literal["supernet"]
    dataset: DatasetName = "digits"
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    limit: Annotated[int, Field(ge=2, le=100_000_000)] | None = None
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    samples: Annotated[int, Field(ge=20, le=10_000_000)] = 1200
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 2
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    sampling: Literal["sandwich", "uniform"] = "sandwich"
    random_subnets: Annotated[int, Field(ge=0, le=64)] = 2
    loss_rates: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], min_length=1, max_length=64
    )
    warmup_epochs: Epochs = 0.0
    loss_warmup_epochs: Epochs = 0.0
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    block_distill: Annotated[float, Field(ge=0, le=1000)] = 0.0
    kd_weight: Annotated[float, Field(ge=0, le=1)] = 1.0
    largest_epochs: Epochs = 0.0
    shrink_epochs: Epochs = 0.0
    train_smallest: bool = True
    kernel_transform: bool = False
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    init_seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    checkpoint_dir: SafeDir = ".nasopt/checkpoints"
    checkpoint_every: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    calibration_batches: Annotated[int, Field(ge=1, le=10_000)] = 2
    eval_batch_size: Annotated[int, Field(ge=1, le=65_536)] = 256
    val_samples: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    max_params: Annotated[int, Field(ge=1, le=10_000_000_000)] = 60_000_000


def _estimator_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("estimator", "analytic-proxy"))
    return str(getattr(value, "estimator", "analytic-proxy"))


AccuracySpec = Annotated[
    Annotated[ProxyAccuracySpec, Tag("analytic-proxy")] | Annotated[SupernetSpec, Tag("supernet")],
    Discriminator(
        _estimator_of,
        custom_error_type="unknown_estimator",
        custom_error_message=f"unknown accuracy estimator; allowed: {', '.join(ESTIMATORS)}",
    ),
]
"""The `[accuracy]` table: a `ProxyAccuracySpec` or a `SupernetSpec`, chosen by `estimator`."""
