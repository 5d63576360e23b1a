"""Retraining a chosen candidate: an interrupted run resumes to the weights and accuracy of an
uninterrupted one, checkpoints are keyed by content and loaded weights-only, and the command
line goes from a stored study to extract, export, retrain and a Pareto table that shows the
retrained accuracy beside the supernet's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasopt.accuracy.supernet import SupernetAccuracy
from nasopt.deploy.retrain import retrain
from nasopt.errors import SpecError
from nasopt.spec import RetrainSpec, StudySpec
from tests.conftest import space_spec, trained_estimator


def _estimator(tmp_path: Path) -> SupernetAccuracy:
    return trained_estimator(space_spec(), 1, tmp_path / "ck")


def test_interrupted_retrain_resumes_to_the_same_result(tmp_path: Path) -> None:
    est = _estimator(tmp_path)
    cand = est.space.largest()
    config = RetrainSpec(epochs=2, batch_size=32, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=3)
    full = retrain(est, cand, config, loss_rate=0.1, progress=False)
    assert full.trained and full.path.is_file()
    assert 0.0 <= full.accuracy <= 1.0
    assert len(full.history) == 2
    b = config.model_copy(update={"checkpoint_dir": str(tmp_path / "b")})
    cut = retrain(est, cand, b, loss_rate=0.1, progress=False, stop_after_steps=5)  # "killed" mid-epoch
    assert cut.path.name.endswith(".partial.pt")
    assert not cut.path.with_name(cut.path.name.replace(".partial", "")).exists()
    resumed = retrain(est, cand, b, loss_rate=0.1, progress=False)
    assert resumed.trained and not cut.path.exists()
    assert resumed.accuracy == full.accuracy
    a_state = torch.load(full.path, weights_only=True)["state"]
    b_state = torch.load(resumed.path, weights_only=True)["state"]
    assert a_state.keys() == b_state.keys()
    assert all(torch.allclose(a_state[k], b_state[k], atol=1e-5) for k in a_state)
    # a finished run is reused; another setting is another run (another file)
    again = retrain(est, cand, config, loss_rate=0.1, progress=False)
    assert not again.trained and again.accuracy == full.accuracy
    other = retrain(
        est, cand, config.model_copy(update={"lr": 2e-3, "epochs": 1}), loss_rate=0.1, progress=False
    )
    assert other.path != full.path
    # a corrupted checkpoint is refused, not used
    full.path.write_bytes(full.path.read_bytes()[:100])
    with pytest.raises(SpecError, match="corrupted"):
        retrain(est, cand, config, loss_rate=0.1, progress=False)


def test_retrain_table_is_validated_and_left_out_of_old_fingerprints() -> None:
    base = {"name": "s", "space": "x", "objective": "y"}
    assert "retrain" not in StudySpec(**base).model_dump(mode="json")  # stored specs unchanged
    spec = StudySpec(**base, retrain={"mode": "scratch", "epochs": 2})
    assert spec.retrain is not None and spec.retrain.mode == "scratch"
    with pytest.raises(ValueError, match="mode"):
        StudySpec(**base, retrain={"mode": "warm"})
    with pytest.raises(ValueError, match="epoch"):
        StudySpec(**base, retrain={"epoch": 2})


def test_cli_extract_export_retrain_and_pareto(tmp_path: Path) -> None:
    from tests.services import check_ok, nasopt, write_tiny_study

    accuracy = 'estimator = "supernet"\nepochs = 1\nlimit = 240\nbatch_size = 16\ncalibration_batches = 1'
    study_file = write_tiny_study(tmp_path, n_trials=3, accuracy=accuracy)
    study_file.write_text(
        study_file.read_text() + "\n[retrain]\nepochs = 1\nbatch_size = 16\ncheckpoint_every = 5\n"
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    check_ok(nasopt("run", "study.toml", "--storage", url, "--no-progress", cwd=tmp_path, timeout_s=300))
    rows = json.loads(
        check_ok(
            nasopt("pareto", "--study-name", "tiny", "--storage", url, "--format", "json", cwd=tmp_path)
        ).stdout
    )
    trial = rows[0]["trial"]
    common = ["--study-name", "tiny", "--storage", url, "--trial", str(trial)]
    out = check_ok(nasopt("extract", *common, "-o", "sub.pt", cwd=tmp_path, timeout_s=300)).stdout
    assert (tmp_path / "sub.pt").is_file() and (tmp_path / "sub.json").is_file()
    line = next(x for x in out.splitlines() if x.startswith("validation accuracy"))
    extracted, supernet = line.split(": ")[1].split(" ")[0], line.rsplit(": ", 1)[1].rstrip(")")
    assert extracted == supernet
    out = check_ok(
        nasopt("export", *common, "-o", "exp", "--samples", "4", cwd=tmp_path, timeout_s=600)
    ).stdout
    assert "verified" in out
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["trial"] == trial and manifest["verification"]["passed"]
    bad = nasopt("export", "--study-name", "tiny", "--storage", url, "--trial", "99", "-o", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "--trial" in bad.stderr
    retrain_args = [
        "retrain",
        "--study-name",
        "tiny",
        "--storage",
        url,
        "--trials",
        str(trial),
        "--no-progress",
    ]
    out = check_ok(nasopt(*retrain_args, cwd=tmp_path, timeout_s=600)).stdout
    assert "accuracy:retrained" in out
    rows = json.loads(
        check_ok(
            nasopt("pareto", "--study-name", "tiny", "--storage", url, "--format", "json", cwd=tmp_path)
        ).stdout
    )
    shown = {r["trial"]: r["accuracy:retrained"] for r in rows}
    assert isinstance(shown[trial], float) and 0.0 <= shown[trial] <= 1.0
    assert "accuracy" in rows[0]  # the supernet estimate beside it
