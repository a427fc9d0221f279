"""The README's "Using the env from your own RL code" section runs as written.

The section's Python blocks are run in order, as one script, in a fresh interpreter in a temporary
working directory. Its last block loads the run of the `crs train` command the section names; the
test writes that run first with the same command plus a settings file that shrinks it to seconds
(CLI options win over the file, so the README's own options are kept).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.cli import app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Using the env from your own RL code"
# `crs train` settings for a run of a few seconds: a fixed ranker (no pre-training), 64 steps.
TINY_TRAIN = {
    "ranker": "popularity",
    "steps": 64,
    "envs": 2,
    "eval_every": 0,
    "eval_episodes": 8,
    "test_episodes": 4,
    "baselines": [],
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "subprocess": False},
}


def readme_section() -> str:
    """The README text from `HEADING` up to the next level-2 heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert HEADING in text, f"README.md has no {HEADING!r} section"
    section = text.split(HEADING, 1)[1]
    return section.split("\n## ", 1)[0]


def code_blocks(section: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in `section`, in order."""
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def train_command(section: str) -> list[str]:
    """The arguments of the `crs train ...` command the section names (after `crs`)."""
    match = re.search(r"`crs (train [^`]*)`", section)
    assert match, "the section no longer names the `crs train` command its last block loads"
    return shlex.split(match.group(1))


def test_readme_rl_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = readme_section()
    blocks = code_blocks(section, "python")
    assert len(blocks) >= 3, "expected the random-agent, MaskablePPO and trained-run blocks"
    monkeypatch.chdir(tmp_path)
    settings = tmp_path / "tiny.yaml"
    settings.write_text(yaml.safe_dump(TINY_TRAIN))
    result = CliRunner().invoke(app, [*train_command(section), "--config", str(settings)])
    assert result.exit_code == 0, result.output

    script = tmp_path / "readme_example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    # the repository on the path, as after `pip install -e .`; one torch thread: on a busy 2-core
    # machine torch's default thread pool made these tiny batches ~8x slower (46 s against 5.5 s); the
    # temporary directory here: plain MaskablePPO's `learn` makes an empty SB3-<date> folder in it
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    env.pop("CRS_DATA_DIR", None)  # the example runs on the embedded persona world
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"README example failed:\n{done.stdout}\n{done.stderr}"
    assert "success:" in done.stdout
