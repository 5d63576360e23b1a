"""The README walk-through: every shell block runs green, in order, in a temporary folder.

A `<!-- readme-test: ... -->` comment right before a block says how the block is run:
`replace "A" "B"` substitutes a command (a tiny budget for a long one), `serve` starts the
`nasopt dashboard` line, waits until it serves and stops it, `skip (reason)` does not run it.
Blocks without a comment run as written. The folder gets the presets (`nasopt init`) with the
quickstart study shrunk to a tiny budget (1 epoch, 4 trials), which the README's comments say.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.services import check_ok, cli_env, nasopt

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
TINY = {  # studies/quickstart.toml in the walk-through folder
    "epochs = 20 ": "epochs = 1 ",
    "n_trials = 150": "n_trials = 4",
    "loss_warmup_epochs = 2 ": "loss_warmup_epochs = 1 ",
    "val_samples = 256 ": "val_samples = 64 ",
}


@dataclass
class Block:
    line: int
    text: str
    directive: str


def shell_blocks(text: str) -> list[Block]:
    """Every ```sh block with the directive comment on the line before it ('' if none)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            before = lines[i - 1] if i else ""
            m = DIRECTIVE.search(before)
            blocks.append(Block(i + 1, "\n".join(lines[i + 1 : j]), m.group(1) if m else ""))
            i = j
        i += 1
    return blocks


def commands(block: Block) -> list[str]:
    """The block's commands (continuation lines joined), with `replace` applied."""
    text = block.text.replace("\\\n", " ")
    m = re.match(r'replace "([^"]+)" "([^"]+)"', block.directive)
    if m:
        assert m.group(1) in text, f"README line {block.line}: {m.group(1)!r} not in the block"
        text = text.replace(m.group(1), m.group(2))
    return [c for c in text.splitlines() if c.strip()]


def test_every_block_has_a_known_directive() -> None:
    blocks = shell_blocks(README.read_text())
    assert len(blocks) >= 7
    for b in blocks:
        assert b.directive == "" or b.directive.split()[0] in ("replace", "serve", "skip", "tiny"), b
    skipped = [b for b in blocks if b.directive.startswith("skip")]
    assert [b.text.strip() for b in skipped] == ["make test"]  # only the suite itself


def _run(script: list[str], block: Block, cwd: Path, env: dict[str, str]) -> None:
    if not script:
        return
    r = subprocess.run(
        ["bash", "-e", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, f"README line {block.line}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _serve(command: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*shlex.split(command.split("#")[0]), "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 900
    try:
        for line in proc.stdout:
            seen.append(line)
            if "press Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
        assert any("serving" in s for s in seen), "".join(seen)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)  # registration of many studies can outlast the signal on a busy CI machine


def test_readme_walkthrough(tmp_path: Path) -> None:
    check_ok(nasopt("init", str(tmp_path), cwd=tmp_path))
    study = tmp_path / "studies" / "quickstart.toml"
    text = study.read_text()
    for old, new in TINY.items():
        assert old in text, old
        text = text.replace(old, new)
    study.write_text(text)
    venv_bin = Path(sys.executable).parent
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text(f'export PATH="{venv_bin}:$PATH"\n')
    env = cli_env(PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    ran = 0
    for block in shell_blocks(README.read_text()):
        if block.directive.startswith("skip"):
            continue
        script: list[str] = []
        for command in commands(block):
            if block.directive.startswith("serve") and command.startswith("nasopt dashboard"):
                _run(script, block, tmp_path, env)  # the block's commands before it, in order
                script = []
                _serve(command, tmp_path, env)
            else:
                script.append(command)
        _run(script, block, tmp_path, env)
        ran += 1
    assert ran >= 6
    assert (tmp_path / "report.html").is_file()
