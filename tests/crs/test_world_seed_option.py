"""`--world-seed` is one option, the same in every command that builds a catalogue: it seeds the persona
world and is refused with real data (it was accepted and silently ignored there), before anything is read
or written; `crs train` takes it too (it was a config key only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "-n", "5", "-o", "OUT"],
        ["pretrain", "--epochs", "1", "--out", "OUT"],
        ["chat"],
        ["train", "--name", "OUT", "--runs-dir", "."],
    ],
)
def test_a_world_seed_with_real_data_is_refused_before_anything_is_read(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [*command, "--dataset", "lastfm", "--data-dir", str(tmp_path / "no-data"), "--world-seed", "3"]
    result = runner.invoke(app, args, input="quit\n")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (
        "--world-seed 3 seeds the persona world, and lastfm is real data, which has no seed: leave it out"
        in text
    )
    assert list(tmp_path.iterdir()) == []  # no output folder; the (missing) data folder was not read


def test_crs_train_takes_the_world_seed() -> None:
    result = runner.invoke(app, ["train", "--world-seed", "2", "--print-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["world_seed"] == 2


@pytest.mark.parametrize(
    "command",
    [["eval", "-p", "ask-2", "-n", "2", "-o", "OUT"], ["chat", "-p", "ask-2", "--simulate"]],
)
def test_a_data_dir_the_persona_world_does_not_read_is_noted(tmp_path: Path, command: list[str]) -> None:
    """`--data-dir` without a real dataset went unread without a word (the likely slip: `-d` left out)."""
    args = [arg.replace("OUT", str(tmp_path / "out")) for arg in command]
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps at its own width
    assert "note: --data-dir is not read: persona_world is embedded (name a real dataset with -d" in said
    quiet = runner.invoke(app, [arg.replace("OUT", str(tmp_path / "quiet")) for arg in command])
    assert quiet.exit_code == 0 and "--data-dir is not read" not in quiet.output
