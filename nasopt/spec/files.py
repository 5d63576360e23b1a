"""Preset files: discovery by name or path, TOML reading, validation errors that name the field.

A preset is found by file stem (first in the working directory's folder of that name, then among
the presets shipped with nasopt) or by path. Unknown keys are errors, and every error names file,
field and value."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nasopt.errors import SpecError
from nasopt.spec._base import SAFE_NAME_PATTERN, _Spec
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
    try:
        if candidate.suffix == ".toml" or "/" in name_or_path or _exists(candidate):
            if candidate.is_file():
                return candidate
            raise SpecError(f"no such {kind} file", file=str(candidate))
        if re.fullmatch(SAFE_NAME_PATTERN, name_or_path):
            for d in preset_dirs(kind):
                path = d / f"{name_or_path}.toml"
                if path.is_file():
                    return path
    except OSError as exc:  # a name too long for the file system, say
        raise SpecError(f"cannot read: {exc.strerror}", file=name_or_path[:200]) from None
    raise SpecError(
        f"unknown {kind} preset",
        field=kind,
        value=name_or_path,
        allowed=preset_names(kind) or f"a path to a .toml file in {KIND_FOLDERS[kind]}/",
    )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system is no file
        return False


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
    loc, parent, info = _walk(model, loc)
    field = format_loc(loc)
    if err["type"] == "extra_forbidden":
        keys = sorted(parent.model_fields) if parent is not None else None
        return SpecError("unknown key", file=file, field=field, allowed=keys)
    if err["type"] == "missing":
        return SpecError("required field is missing", file=file, field=field)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "finite_number":
        message = "must be a finite number"
    if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == SAFE_NAME_PATTERN:
        return SpecError(
            "not a safe name (it becomes part of file and study names)",
            file=file,
            field=field,
            value=err.get("input"),
            allowed="1-128 letters, digits and . _ + = -, starting with a letter or digit",
        )
    allowed = _range(info) if err["type"] in _NUMBER_ERRORS else None
    return SpecError(message, file=file, field=field, value=err.get("input"), has_value=True, allowed=allowed)


_NUMBER_ERRORS = {
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "int_parsing",
    "int_type",
    "int_from_float",
    "float_parsing",
    "float_type",
}


def _range(info: Any) -> str | None:
    """'0 < x <= 1'-style text for the numeric bounds of a field (None when it has none)."""
    if info is None:
        return None
    lower = upper = ""
    for meta in _metadata(info):
        for attr, text in (("gt", "{} <"), ("ge", "{} <=")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                lower = text.format(bound)
        for attr, text in (("lt", "< {}"), ("le", "<= {}")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                upper = text.format(bound)
    if not lower and not upper:
        return "a finite number"
    return " ".join(part for part in (lower, "x", upper) if part)


def _metadata(info: Any) -> list[Any]:
    """Constraint objects of a FieldInfo, including those inside `Annotated[...] | None`."""
    import typing

    out = list(getattr(info, "metadata", []))
    stack: list[Any] = [getattr(info, "annotation", None)]
    while stack:
        ann = stack.pop()
        if typing.get_origin(ann) is typing.Annotated:
            for meta in ann.__metadata__:
                out.extend(getattr(meta, "metadata", [meta]))
        stack.extend(a for a in typing.get_args(ann) if a is not type(None))
    return out


def _walk(model: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel] | None, Any]:
    """(loc without union tags, the model holding the last field, that field's FieldInfo).

    A discriminated union (the `[accuracy]` table) puts its tag in pydantic's error location;
    it is dropped here so the field reads `accuracy.floor`."""

    clean: list[Any] = []
    current: type[BaseModel] | None = model
    holder: type[BaseModel] | None = model
    info: Any = None
    annotation: Any = None
    last_was_field = False
    for part in loc:
        last_was_field = False
        if current is not None and isinstance(part, str) and part in current.model_fields:
            holder, info = current, current.model_fields[part]
            annotation = info.annotation
            current, _ = _unwrap(annotation)
            clean.append(part)
            last_was_field = True
            continue
        tagged = _tagged(annotation, part) if isinstance(part, str) else None
        if tagged is not None:
            current = tagged
            continue
        clean.append(part)  # a list index, a dict key or an unknown key
    parent = holder if last_was_field else current
    return tuple(clean), parent, info


def _tagged(annotation: Any, tag: str) -> type[BaseModel] | None:
    """The union member of `annotation` tagged `tag`, if `annotation` is a tagged union."""
    import typing

    from pydantic import Tag

    stack = [annotation]
    while stack:
        ann = stack.pop()
        if typing.get_origin(ann) is typing.Annotated and any(
            isinstance(m, Tag) and m.tag == tag for m in ann.__metadata__
        ):
            inner, _ = _unwrap(ann.__origin__)
            return inner
        stack.extend(typing.get_args(ann))
    return None


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


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
