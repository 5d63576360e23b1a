"""Loading presets: parse a file against its `nasopt.spec` model, then check it against the core.

The only module that sees both layers: `nasopt.spec` knows the formats, `nasopt.core` knows
what a space or system must satisfy beyond them (known ops, shapes, links, topology).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasopt.core.checks import check_space
from nasopt.core.system import build_system
from nasopt.errors import SpecError
from nasopt.spec import (
    DashboardSpec,
    ObjectiveSpec,
    ResolvedStudy,
    SearchSpaceSpec,
    StudySpec,
    parse_spec,
    read_toml,
    resolve_preset,
)
from nasopt.spec.files import MODELS


def load_preset(kind: str, name_or_path: str) -> Any:
    """Load and fully validate a preset of `kind` ('space', 'objective', 'study', 'dashboard')."""
    path = resolve_preset(kind, name_or_path)
    data = read_toml(path)
    spec = parse_spec(MODELS[kind], data, str(path))
    try:
        if isinstance(spec, SearchSpaceSpec):
            check_space(spec)
        elif isinstance(spec, ObjectiveSpec):
            build_system(spec)
    except SpecError as exc:
        raise exc.in_file(str(path)) from None
    return spec


def load_space(name_or_path: str) -> SearchSpaceSpec:
    """A checked search space preset (`search_spaces/NAME.toml` or a path)."""
    return load_preset("space", name_or_path)


def load_objective(name_or_path: str) -> ObjectiveSpec:
    """A checked objective preset (`objectives/NAME.toml` or a path)."""
    return load_preset("objective", name_or_path)


def load_study(name_or_path: str) -> StudySpec:
    """A study preset (`studies/NAME.toml` or a path), without the presets it names."""
    return load_preset("study", name_or_path)


def load_dashboard(name_or_path: str) -> DashboardSpec:
    """A dashboard view preset (`dashboards/NAME.toml` or a path)."""
    return load_preset("dashboard", name_or_path)


def resolve(study: str) -> ResolvedStudy:
    """Load a study preset (name or path) and the space and objective presets it names.

    A relative path in the study file is taken relative to the study file's folder."""
    path = resolve_preset("study", study)
    spec = load_study(str(path))
    loaded: dict[str, Any] = {}
    for key, loader in (("space", load_space), ("objective", load_objective)):
        ref = getattr(spec, key)
        beside = path.parent / ref
        if ref.endswith(".toml") and not Path(ref).is_absolute() and beside.is_file():
            ref = str(beside)
        try:
            loaded[key] = loader(ref)
        except SpecError as exc:
            if exc.file:
                raise
            raise SpecError(
                exc.detail, file=str(path), field=key, value=exc.value, allowed=exc.allowed
            ) from None
    return ResolvedStudy(spec, loaded["space"], loaded["objective"])
