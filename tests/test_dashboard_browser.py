"""Real headless Chromium opens the HTML report (file://) and the running dashboard (127.0.0.1),
waits for plotly to render, checks the plot elements, and saves screenshots as test artifacts
under test-artifacts/browser/ (override with NASOPT_ARTIFACTS).

Chromium comes from Debian's package (scripts/install-chromium.sh, run by `make test`). Without
it the tests skip on a developer machine and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasopt.presets import resolve
from nasopt.study.lifecycle import create_or_resume, optimize
from nasopt.study.storage import open_storage
from nasopt.views.report import report_html
from tests.services import cli_env, write_tiny_study

ARTIFACTS = Path(
    os.environ.get("NASOPT_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")
)
KINDS = ("pareto", "latency_breakdown", "threshold_sweep", "arch_strip", "hypervolume")


def require_chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = "chromium is not installed (scripts/install-chromium.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


def chromium(url: str, tmp: Path, *, screenshot: Path | None = None, budget_ms: int = 10000) -> str:
    """The DOM after `budget_ms` of virtual time (network fetches pause the clock), or a screenshot."""
    args = [
        require_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={tmp / f'profile-{time.monotonic_ns()}'}",
        f"--virtual-time-budget={budget_ms}",
        "--window-size=1400,2400",
        "--hide-scrollbars",
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    require_chromium()
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'b.db'}"
    resolved = resolve(str(write_tiny_study(folder, n_trials=8)))
    create_or_resume(resolved, open_storage(url))
    optimize(url, "tiny", 8)
    return url, folder


def _artifacts() -> Path:
    out = ARTIFACTS / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_report_renders_in_chromium(study_db: tuple[str, Path]) -> None:
    url, folder = study_db
    report = folder / "report.html"
    report.write_text(report_html(open_storage(url), "tiny"))  # the CLI form is tested in test_dashboard
    dom = chromium(report.as_uri(), folder)
    for kind in KINDS:
        block = re.search(rf'id="nasopt-{kind}-0".*?</section>', dom, re.S)
        assert block, f"{kind}: plot div missing"
        assert 'class="main-svg"' in block.group(0), f"{kind}: plotly did not render"
    assert dom.count('class="point"') > 10  # scatter markers of the Pareto plot
    assert 'class="trace bars"' in dom  # stacked breakdown bars
    shot = _artifacts() / "report.png"
    chromium(report.as_uri(), folder, screenshot=shot)
    assert shot.stat().st_size > 10_000


def test_dashboard_serves_figures_on_loopback(study_db: tuple[str, Path]) -> None:
    url, folder = study_db
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasopt", "dashboard", "--storage", url, "--port", "0"],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        lines = []
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            port = int(match.group(1)) if match else None
        assert port is not None, "".join(lines)
        page = f"http://127.0.0.1:{port}/dashboard/studies/1"
        dom = chromium(page, folder, budget_ms=8000)
        for kind in KINDS:
            block = re.search(rf'id="user-defined-plot:nasopt-{kind}-0".*?class="main-svg"', dom, re.S)
            assert block, f"{kind}: the dashboard did not render nasopt's figure"
        chromium(page, folder, screenshot=_artifacts() / "dashboard.png", budget_ms=8000)
        assert (_artifacts() / "dashboard.png").stat().st_size > 10_000
    finally:
        proc.terminate()
        proc.wait(timeout=10)
