"""docs/formats.md is generated from the preset models: every field documented, never stale."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "formats_doc.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("formats_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_model_field_is_described() -> None:
    assert _module().missing_descriptions() == []


def test_committed_doc_is_current() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_doc_covers_every_format_field_and_allowed_value() -> None:
    from nasopt.study.lifecycle import NASOPT_SAMPLERS, OPTUNA_SAMPLERS
    from nasopt.study.objective import METRICS

    mod = _module()
    text = (ROOT / "docs" / "formats.md").read_text()
    for _, _, root in mod.formats():
        for model in mod.models(root):
            assert f"### {model.__name__}" in text
            for name in model.model_fields:
                assert f"| `{name}` |" in text
    for metric in list(METRICS) + list(NASOPT_SAMPLERS) + list(OPTUNA_SAMPLERS):
        assert f"| `{metric}` |" in text
    assert '"throughput" \\| "linear" \\| "lookup"' in text  # a Literal's allowed values


def test_a_field_without_description_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _module()
    text = mod.FIELDS.read_text()
    line = next(x for x in text.splitlines() if x.startswith("loss_rate = "))  # LinkSpec's
    fake = tmp_path / "fields.toml"
    fake.write_text(text.replace(line + "\n", 'no_such_field = "x"\n'))
    monkeypatch.setattr(mod, "FIELDS", fake)
    assert mod.missing_descriptions() == [
        f"LinkSpec.loss_rate: no description in {fake.name}",
        f"LinkSpec.no_such_field: described in {fake.name} but not a field",
    ]
