"""Generate docs/formats.md from the pydantic preset models (and the study's accuracy options).

    python scripts/formats_doc.py            # rewrite docs/formats.md
    python scripts/formats_doc.py --check    # exit 1 if docs/formats.md is stale

Types, defaults, bounds and allowed values come from the models; the prose of each field from
docs/formats-fields.toml. tests/test_formats_doc.py runs the check and fails on a model field
without a description.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "formats.md"
FIELDS = ROOT / "docs" / "formats-fields.toml"


def formats() -> list[tuple[str, str, type[BaseModel]]]:
    from nasopt.spec import DashboardSpec, ObjectiveSpec, SearchSpaceSpec, StudySpec

    return [
        ("Search space", "search_spaces/*.toml", SearchSpaceSpec),
        ("Objective", "objectives/*.toml", ObjectiveSpec),
        ("Study", "studies/*.toml", StudySpec),
        ("Dashboard view", "dashboards/*.toml", DashboardSpec),
    ]


def models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """`root` and every model nested in its fields, in first-use order."""
    out: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in out:
                out.append(annotation)
                for f in annotation.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return out


def _bounds(metadata: list[Any]) -> list[str]:
    out = []
    for m in metadata:
        if isinstance(m, FieldInfo):  # Annotated[..., Field(gt=0)] inside a union or list
            out += _bounds(list(m.metadata))
            continue
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, (annotated_types.BaseMetadata, annotated_types.Interval)):
                out.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
        if isinstance(m, annotated_types.MinLen) and m.min_length:
            out.append(f"at least {m.min_length} item{'s' * (m.min_length > 1)}")
    return out


def type_text(annotation: Any) -> str:
    """A reader's name for a type: integer, number, string, list of ..., table of ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = type_text(args[0])
        bounds = [b for a in args[1:] for b in _bounds([a])]
        return f"{base} ({', '.join(bounds)})" if bounds else base
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is tuple:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_text(args[1])}" if args else "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"table ([{annotation.__name__}](#{annotation.__name__.lower()}))"
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    if annotation is Any:
        return "any"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
        if isinstance(value, dict) and not value:
            return "`{}`"
    if value is None:
        return "none"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json") for v in value]
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def field_rows(model: type[BaseModel], prose: dict[str, str]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        t = type_text(f.annotation)
        bounds = _bounds(list(f.metadata))
        if bounds:
            t += f" ({', '.join(bounds)})"
        rows.append(f"| `{name}` | {t} | {default_text(f)} | {prose.get(name, '')} |")
    return rows


def missing_descriptions() -> list[str]:
    """`Model.field` without prose, and prose naming no field (both make the check fail)."""
    prose = tomllib.loads(FIELDS.read_text(encoding="utf-8"))
    out = []
    seen_models = set()
    for _, _, root in formats():
        for m in models(root):
            seen_models.add(m.__name__)
            for name in m.model_fields:
                if not prose.get(m.__name__, {}).get(name, "").strip():
                    out.append(f"{m.__name__}.{name}: no description in {FIELDS.name}")
            for name in prose.get(m.__name__, {}):
                if name not in m.model_fields:
                    out.append(f"{m.__name__}.{name}: described in {FIELDS.name} but not a field")
    for section in prose:
        if section not in seen_models:
            out.append(f"[{section}] in {FIELDS.name} is no model")
    return out


def render() -> str:
    from nasopt.study.lifecycle import NASOPT_SAMPLERS, OPTUNA_SAMPLERS, sampler_options
    from nasopt.study.objective import METRICS

    prose = tomllib.loads(FIELDS.read_text(encoding="utf-8"))
    lines = [
        "# Preset formats (generated)",
        "",
        "<!-- generated by `python scripts/formats_doc.py` from the pydantic models in nasopt/spec/",
        "and docs/formats-fields.toml; do not edit by hand (tests/test_formats_doc.py checks it) -->",
        "",
        "Every preset is a TOML file. Unknown keys are errors; every error names the file, the field,",
        "the bad value and what is allowed (`nasopt validate PATH...`). Units are in the key names:",
        "`_bps` bits per second, `_bytes` bytes, `_s` seconds, `_ms` milliseconds, `_mj` millijoules,",
        "`_j_per_mac` / `_j_per_bit` joules, `macs_per_s` multiply-accumulates per second. Examples with",
        "comments: [presets.md](presets.md) and the shipped presets.",
        "",
    ]
    for title, where, root in formats():
        lines += [f"## {title} (`{where}`)", ""]
        for m in models(root):
            doc = (m.__doc__ or "").strip().splitlines()
            first = doc[0] if doc and not doc[0].startswith("!!!") else ""
            lines += [f"### {m.__name__}", ""]
            if first and "A base class" not in first and "Usage docs" not in first:
                lines += [first, ""]
            lines += [*field_rows(m, prose.get(m.__name__, {})), ""]
    lines += ["## Objective metrics (`[[objectives]] name`)", ""]
    lines += ["| name | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in METRICS.items()] + [""]
    lines += [
        "## Samplers (`[sampler] name` and `options`)",
        "",
        "| name | options |",
        "|---|---|",
    ]
    for name in list(NASOPT_SAMPLERS) + list(OPTUNA_SAMPLERS):
        opts = sampler_options(name)
        lines.append(f"| `{name}` | {', '.join(f'`{o}`' for o in opts) or '(none besides seed)'} |")
    lines += [
        "",
        "nasopt's samplers (asng, evolution, reinforce) are described in the README; Optuna's take",
        "the keyword arguments of their Optuna classes.",
        "",
        "The `[accuracy]` table of a study is a ProxyAccuracySpec or a SupernetSpec (above), chosen",
        'by its `estimator` key ("analytic-proxy", the default, or "supernet").',
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/formats.md is stale")
    args = ap.parse_args()
    problems = missing_descriptions()
    for p in problems:
        print(p, file=sys.stderr)
    text = render()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text(encoding="utf-8") != text
        if stale:
            print(f"{DOC} is stale: run python scripts/formats_doc.py", file=sys.stderr)
        return 1 if stale or problems else 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
