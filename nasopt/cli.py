"""Command line: parses, calls the library, prints. Bad input exits 2 with one line, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasopt.errors import SpecError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasopt", description="Split-aware multi-objective NAS.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check preset files (search spaces, objectives, studies)")
    p.add_argument("paths", nargs="+", help="preset files or preset folders")

    p = sub.add_parser("describe", help="one candidate on one system, layer by layer")
    p.add_argument("--space", required=True, help="search space preset name or path")
    p.add_argument("--objective", required=True, help="objective preset name or path")
    p.add_argument(
        "--candidate",
        default="largest",
        help="largest | smallest | random:SEED | JSON object | @file.json (default: largest)",
    )
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("presets", help="list the presets nasopt can find")
    return parser


def _validate(paths: list[str]) -> int:
    from nasopt.specs import detect_kind, load_preset

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(path.glob("*.toml"))
        elif path.is_file():
            files.append(path)
        else:
            raise SpecError("no such file or folder", file=raw)
    if not files:
        raise SpecError("no .toml files found", file=" ".join(paths))
    for path in files:
        kind = detect_kind(path)
        load_preset(kind, str(path))
        print(f"ok  {kind:<9} {path}")
    return 0


def _describe(args: argparse.Namespace) -> int:
    from nasopt.describe import describe, render_table
    from nasopt.specs import load_objective, load_space

    doc = describe(load_space(args.space), load_objective(args.objective), args.candidate)
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(doc))
    return 0


def _presets() -> int:
    from nasopt.specs import KIND_FOLDERS, preset_names

    for kind, folder in KIND_FOLDERS.items():
        print(f"{folder}: {', '.join(preset_names(kind)) or '(none)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "describe":
            return _describe(args)
        return _presets()
    except SpecError as exc:
        print(f"nasopt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
