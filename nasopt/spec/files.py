"""Preset files: discovery by name or path, TOML reading, validation errors that name the field.

A preset is found by file stem (first in the working directory's folder of that name, then among
the presets shipped with nasopt) or by path. Unknown keys are errors, and every error names file,
field and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nasopt.errors import SpecError
from nasopt.spec._base import _Spec
from nasopt.spec.dashboard import DashboardSpec
from nasopt.spec.objective import ObjectiveSpec
from nasopt.spec.search_space import SearchSpaceSpec
from nasopt.spec.study import StudySpec

KIND_FOLDERS: dict[str, str] = {
    "space": "search_spaces",
    "objective": "objectives",
    "study": "studies",
    "dashboard": "dashboards",
}
MODELS: dict[str, type[_Spec]] = {
    "space": SearchSpaceSpec,
    "objective": ObjectiveSpec,
    "study": StudySpec,
    "dashboard": DashboardSpec,
}
SpecT = TypeVar("SpecT", bound=_Spec)


def preset_dirs(kind: str) -> list[Path]:
    """Folders searched for presets of `kind`: the working directory's, then the bundled ones."""
    folder = KIND_FOLDERS[kind]
    package = Path(__file__).resolve().parent.parent
    bundled = package / "_presets" / folder
    source_tree = package.parent / folder
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


def _to_spec_error(model: type[BaseModel], err: ErrorDetails, loc: tuple, file: str) -> SpecError:
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
