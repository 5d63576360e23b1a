"""Pydantic models and the TOML loader for the declarative presets.

Presets live in `search_spaces/`, `objectives/`, `studies/` and `dashboards/`; a preset is found
by file stem (first in the working directory's folder of that name, then among the presets shipped
with nasopt) or by path. Unknown keys are errors, and every error names file, field and value.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nasopt.errors import SpecError

OpType = Literal[
    "conv",
    "dwconv",
    "dwsep",
    "mbconv",
    "skip",
    "fire",
    "fc",
    "svd_fc",
    "gap",
    "maxpool",
    "conv_reduce",
    "conv_recover",
    "view_fuse",
    "classifier",
]
OP_TYPES: tuple[str, ...] = OpType.__args__  # type: ignore[attr-defined]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- search spaces


class OpSpec(_Spec):
    """One entry of a search space's op catalogue."""

    type: OpType
    kernel: PositiveInt = 3
    expansion: PositiveFloat = 1.0
    groups: PositiveInt = 1
    shortcut: bool = True
    always_expand: bool = False
    se_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    squeeze_ratio: Annotated[float, Field(gt=0, le=1)] = 0.125
    rank: PositiveInt | None = None
    split_tap: Literal["output", "depthwise"] = "output"


class LayerSpec(_Spec):
    """A layer of a stage: a fixed op or a choice among catalogue ops."""

    op: str | None = None
    choices: list[str] | None = None
    stride: PositiveInt = 1
    repeat: PositiveInt = 1
    width: PositiveInt | None = None


class StageSpec(_Spec):
    """Consecutive layers sharing an output width; `parallel` > 1 makes parallel branches."""

    name: str
    widths: list[PositiveInt] = Field(min_length=1)
    layers: list[LayerSpec] = Field(min_length=1)
    parallel: PositiveInt = 1
    merge: Literal["concat", "sum"] = "concat"


class InputSpec(_Spec):
    channels: PositiveInt
    height: PositiveInt
    width: PositiveInt


SplitPoints = list[Annotated[int, Field(ge=-1)]] | Literal["all"]


class SplitSpec(_Spec):
    """Where cuts may fall: after layer k (-1 means before the first layer: send the input)."""

    points: SplitPoints = "all"


class BottleneckSpec(_Spec):
    """Conv-Reduce/Conv-Recover widths at the first cut and bit widths of every sent feature."""

    widths: list[PositiveInt | Literal["none"]] = Field(default=["none"], min_length=1)
    bits: list[Annotated[int, Field(ge=1, le=64)]] = Field(default=[32], min_length=1)
    kernel: PositiveInt = 1

    @field_validator("widths")
    @classmethod
    def _no_duplicates(cls, widths: list[int | str]) -> list[int | str]:
        if len(set(widths)) != len(widths):
            raise ValueError("widths must not repeat")
        return widths


class FusionSpec(_Spec):
    """Multi-view: V views run the head, View-Fuse concatenates after a searched layer."""

    views: Annotated[int, Field(ge=2)]
    points: list[Annotated[int, Field(ge=0)]] | Literal["all"] = "all"


class SearchSpaceSpec(_Spec):
    name: str
    description: str = ""
    input: InputSpec
    num_classes: PositiveInt
    input_bits: Annotated[int, Field(ge=1, le=64)] = 8
    activation_bits: Annotated[int, Field(ge=1, le=64)] = 32
    weight_bits: Annotated[int, Field(ge=1, le=64)] = 32
    ops: dict[str, OpSpec] = {}
    stages: list[StageSpec] = Field(min_length=1)
    split: SplitSpec = SplitSpec()
    bottleneck: BottleneckSpec = BottleneckSpec()
    fusion: FusionSpec | None = None


# ---------------------------------------------------------------- objectives (systems)


class ComputeSpec(_Spec):
    """How a device turns MACs into seconds."""

    kind: Literal["throughput", "linear", "lookup"]
    macs_per_s: PositiveFloat | None = None
    conv_s_per_mac: dict[str, NonNegFloat] = {}
    fc_s_per_mac: NonNegFloat | None = None
    default_s_per_mac: NonNegFloat | None = None
    overhead_s: NonNegFloat = 0.0
    table: str | None = None
    table_unit: Literal["s", "ms", "us"] = "ms"
    fallback: Literal["throughput", "error"] = "error"


class DeviceSpec(_Spec):
    memory_bytes: PositiveInt | None = None
    compute: ComputeSpec
    count: PositiveInt = 1
    energy_j_per_mac: NonNegFloat = 0.0


class SizeTermSpec(_Spec):
    """Wang et al.'s f(S|W): a first-packet delay linear in the payload size."""

    intercept_s: NonNegFloat = 0.0
    s_per_byte: NonNegFloat = 0.0


class LinkSpec(_Spec):
    src: str
    dst: str
    bandwidth_bps: PositiveFloat | None = None
    medium: str | None = None
    latency_s: NonNegFloat = 0.0
    size_term: SizeTermSpec | None = None
    loss_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    energy_j_per_bit: NonNegFloat = 0.0


class MediumSpec(_Spec):
    """A shared channel (a bus, a cell); each of `sharers` gets an equal share of it."""

    bandwidth_bps: PositiveFloat
    sharers: PositiveInt | None = None


class TopologySpec(_Spec):
    kind: Literal["chain", "mesh", "tree"]
    devices: list[str] = []
    before: list[str] = []
    root: str | None = None
    branches: list[str] = []
    after: list[str] = []
    leaves: list[str] = []


class MetricSpec(_Spec):
    name: str
    direction: Literal["minimize", "maximize"]


class ConstraintsSpec(_Spec):
    latency_ms: PositiveFloat | None = None
    energy_mj: PositiveFloat | None = None
    accuracy_min: Annotated[float, Field(ge=0, le=1)] | None = None
    memory: bool = True


class ObjectiveSpec(_Spec):
    name: str
    description: str = ""
    devices: dict[str, DeviceSpec] = Field(min_length=1)
    links: dict[str, LinkSpec] = {}
    media: dict[str, MediumSpec] = {}
    topology: TopologySpec
    objectives: list[MetricSpec] = Field(
        default=[
            MetricSpec(name="error", direction="minimize"),
            MetricSpec(name="latency_ms", direction="minimize"),
        ],
        min_length=1,
    )
    constraints: ConstraintsSpec = ConstraintsSpec()


# ---------------------------------------------------------------- studies


class SamplerSpec(_Spec):
    name: str = "tpe"
    seed: int | None = None
    options: dict[str, Any] = {}


class StudySpec(_Spec):
    name: str
    description: str = ""
    space: str
    objective: str
    sampler: SamplerSpec = SamplerSpec()
    n_trials: PositiveInt = 100
    accuracy: dict[str, Any] = {}


# ---------------------------------------------------------------- dashboards (views)

GroupBy = Literal["sampler", "system", "study"]


class ParetoView(_Spec):
    """Any two metrics against each other; the study's feasible front highlighted."""

    title: str = ""
    x: str = "latency_ms"
    y: str = "accuracy"
    color: str | None = "cut"
    hover: list[str] = ["arch", "split"]
    log_x: bool = False
    log_y: bool = False


class BreakdownView(_Spec):
    """Stacked compute/transfer bars per Pareto-optimal trial, a metric on a second axis."""

    title: str = ""
    y2: str | None = "accuracy"
    max_trials: PositiveInt = 40
    hover: list[str] = ["arch"]


class SweepView(_Spec):
    """Best accuracy versus a latency (or energy) threshold, one line per group of studies."""

    title: str = ""
    metric: str = "latency_ms"
    thresholds: list[PositiveFloat] | Literal["auto"] = "auto"
    points: Annotated[int, Field(ge=2, le=200)] = 16
    group_by: GroupBy = "sampler"
    studies: list[str] | Literal["all"] = "all"


class ArchStripView(_Spec):
    """Per layer: op, kernel, expansion, width; split and fusion positions marked."""

    title: str = ""
    trials: list[Annotated[int, Field(ge=0)]] | Literal["front"] = "front"
    max_trials: PositiveInt = 6


class HypervolumeView(_Spec):
    """Hypervolume of the feasible front after each trial, one line per group of studies."""

    title: str = ""
    group_by: GroupBy = "sampler"
    studies: list[str] | Literal["all"] = "all"
    reference: dict[str, float] | Literal["auto"] = "auto"


class DashboardSpec(_Spec):
    """A dashboard view file: which figures to draw, in this order of kinds."""

    name: str
    description: str = ""
    pareto: list[ParetoView] = []
    latency_breakdown: list[BreakdownView] = []
    threshold_sweep: list[SweepView] = []
    arch_strip: list[ArchStripView] = []
    hypervolume: list[HypervolumeView] = []


# ---------------------------------------------------------------- loading

KIND_FOLDERS: dict[str, str] = {
    "space": "search_spaces",
    "objective": "objectives",
    "study": "studies",
    "dashboard": "dashboards",
}
_MODELS: dict[str, type[_Spec]] = {
    "space": SearchSpaceSpec,
    "objective": ObjectiveSpec,
    "study": StudySpec,
    "dashboard": DashboardSpec,
}
SpecT = TypeVar("SpecT", bound=_Spec)


def preset_dirs(kind: str) -> list[Path]:
    """Folders searched for presets of `kind`: the working directory's, then the bundled ones."""
    folder = KIND_FOLDERS[kind]
    bundled = Path(__file__).parent / "_presets" / folder
    source_tree = Path(__file__).resolve().parent.parent / folder
    dirs = [Path.cwd() / folder, bundled, source_tree]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def preset_names(kind: str) -> list[str]:
    names: set[str] = set()
    for d in preset_dirs(kind):
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def resolve_preset(kind: str, name_or_path: str) -> Path:
    """A preset's file: an existing path as given, else `<folder>/<name>.toml`."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path or candidate.exists():
        if candidate.is_file():
            return candidate
        raise SpecError(f"no such {kind} file", file=str(candidate))
    for d in preset_dirs(kind):
        path = d / f"{name_or_path}.toml"
        if path.is_file():
            return path
    raise SpecError(
        f"unknown {kind} preset",
        field=kind,
        value=name_or_path,
        allowed=preset_names(kind) or f"a path to a .toml file in {KIND_FOLDERS[kind]}/",
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"invalid TOML: not UTF-8 text (byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=str(path)) from None


def parse_spec(model: type[SpecT], data: dict[str, Any], file: str) -> SpecT:
    """Validate `data` against `model`; the first error becomes a SpecError naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        raise _to_spec_error(model, err, loc, file) from None


def load_preset(kind: str, name_or_path: str) -> Any:
    """Load and fully validate a preset of `kind` ('space', 'objective', 'study')."""
    path = resolve_preset(kind, name_or_path)
    data = read_toml(path)
    spec = parse_spec(_MODELS[kind], data, str(path))
    if kind == "space":
        from nasopt.network import check_space

        try:
            check_space(spec)
        except SpecError as exc:
            raise exc.in_file(str(path)) from None
    elif kind == "objective":
        from nasopt.system import build_system

        try:
            build_system(spec)
        except SpecError as exc:
            raise exc.in_file(str(path)) from None
    return spec


def load_space(name_or_path: str) -> SearchSpaceSpec:
    return load_preset("space", name_or_path)


def load_objective(name_or_path: str) -> ObjectiveSpec:
    return load_preset("objective", name_or_path)


def load_study(name_or_path: str) -> StudySpec:
    return load_preset("study", name_or_path)


def load_dashboard(name_or_path: str) -> DashboardSpec:
    return load_preset("dashboard", name_or_path)


def detect_kind(path: Path) -> str:
    """The preset kind of a file, from its folder name or, failing that, its keys."""
    for kind, folder in KIND_FOLDERS.items():
        if path.parent.name == folder:
            return kind
    data = read_toml(path)
    if "stages" in data:
        return "space"
    if "devices" in data or "topology" in data:
        return "objective"
    if "space" in data and "objective" in data:
        return "study"
    if any(key in data for key in ("pareto", "latency_breakdown", "threshold_sweep", "arch_strip")):
        return "dashboard"
    raise SpecError(
        "cannot tell what kind of preset this is",
        file=str(path),
        allowed="a file in search_spaces/, objectives/, studies/ or dashboards/",
    )


def _to_spec_error(model: type[BaseModel], err: dict[str, Any], loc: tuple, file: str) -> SpecError:
    field = format_loc(loc)
    if err["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else None
        return SpecError("unknown key", file=file, field=field, allowed=allowed)
    if err["type"] == "missing":
        return SpecError("required field is missing", file=file, field=field)
    return SpecError(err["msg"], file=file, field=field, value=err.get("input"), has_value=True)


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at `loc`, if one does."""
    current: type[BaseModel] | None = model
    skip_index = False
    for part in loc:
        if skip_index:
            skip_index = False
            continue
        if current is None or part not in current.model_fields:
            return None
        current, skip_index = _unwrap(current.model_fields[part].annotation)
    return current


def _unwrap(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model inside `annotation`, whether a list index or dict key comes before it)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        inner, nested = _unwrap(arg)
        if inner is not None:
            return inner, nested or origin in (list, dict)
    return None, False
