"""The preset formats as pydantic models, preset discovery and the resolved study.

Models only: nothing here calls into `nasopt.core`; `nasopt.presets` parses, then checks.
"""

from __future__ import annotations

from nasopt.spec._base import SAFE_NAME_PATTERN
from nasopt.spec.accuracy import (
    DATASET_NAMES,
    ESTIMATORS,
    SAMPLING_RULES,
    AccuracySpec,
    ProxyAccuracySpec,
    SupernetSpec,
)
from nasopt.spec.dashboard import (
    ArchStripView,
    BreakdownView,
    DashboardSpec,
    HypervolumeView,
    ModelTreeView,
    ParetoView,
    SweepView,
)
from nasopt.spec.files import (
    KIND_FOLDERS,
    detect_kind,
    format_loc,
    parse_spec,
    preset_dirs,
    preset_names,
    read_toml,
    resolve_preset,
)
from nasopt.spec.objective import (
    ComputeSpec,
    ConstraintsSpec,
    ContextStateSpec,
    DeviceSpec,
    LinkContextsSpec,
    LinkSpec,
    MediumSpec,
    MetricSpec,
    ObjectiveSpec,
    RobustSpec,
    SizeTermPointSpec,
    SizeTermSpec,
    TopologySpec,
)
from nasopt.spec.resolved import ResolvedStudy
from nasopt.spec.search_space import (
    OP_TYPES,
    BottleneckSpec,
    FusionSpec,
    InputSpec,
    LayerSpec,
    OpSpec,
    OpType,
    SearchSpaceSpec,
    SplitSpec,
    StageSpec,
)
from nasopt.spec.study import ModelTreeSpec, RetrainSpec, SamplerSpec, StudySpec

__all__ = [
    "DATASET_NAMES",
    "ESTIMATORS",
    "KIND_FOLDERS",
    "OP_TYPES",
    "SAFE_NAME_PATTERN",
    "SAMPLING_RULES",
    "AccuracySpec",
    "ArchStripView",
    "BottleneckSpec",
    "BreakdownView",
    "ComputeSpec",
    "ConstraintsSpec",
    "ContextStateSpec",
    "DashboardSpec",
    "DeviceSpec",
    "FusionSpec",
    "HypervolumeView",
    "InputSpec",
    "LayerSpec",
    "LinkContextsSpec",
    "LinkSpec",
    "MediumSpec",
    "MetricSpec",
    "ModelTreeSpec",
    "ModelTreeView",
    "ObjectiveSpec",
    "OpSpec",
    "OpType",
    "ParetoView",
    "ProxyAccuracySpec",
    "ResolvedStudy",
    "RetrainSpec",
    "RobustSpec",
    "SamplerSpec",
    "SearchSpaceSpec",
    "SizeTermPointSpec",
    "SizeTermSpec",
    "SplitSpec",
    "StageSpec",
    "StudySpec",
    "SupernetSpec",
    "SweepView",
    "TopologySpec",
    "detect_kind",
    "format_loc",
    "parse_spec",
    "preset_dirs",
    "preset_names",
    "read_toml",
    "resolve_preset",
]
