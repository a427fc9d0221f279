"""`crs sweep --extend OLD --steps N`: a training sweep's runs continued to a longer budget in a new sweep
folder, each exactly as `crs train --resume --steps N` continues its run, with OLD left as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.run_folder import TrainSummary
from crs.app.sweep import DONE_MARKER, TASK_FILE, read_metrics, read_task, task_dir
from crs.cli import app
from tests.crs.test_train_cmd import WORLD

TASK = "persona_world-rl-default-s0"
TRAIN = {
    "world": WORLD,
    "steps": 64,
    "envs": 2,
    "ranker": "popularity",
    "eval_every": 0,
    "eval_episodes": 8,
    "test_episodes": 12,
    "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
}
runner = CliRunner()


def write_config(path: Path, **train: object) -> Path:
    path.write_text(yaml.safe_dump({"kind": "train", "seeds": [0], "train": {**TRAIN, **train}}))
    return path


def sweep(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["sweep", *map(str, args)], env={"COLUMNS": "250"})
    return result.exit_code, " ".join(result.output.split())  # one line, however the console wrapped it


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_an_extended_sweep_resumes_each_run_and_leaves_the_old_sweep_as_it_was(tmp_path) -> None:
    config = write_config(tmp_path / "train.yaml")
    old, new = tmp_path / "old", tmp_path / "new"
    assert sweep(config, "--out", old, "--backend", "serial")[0] == 0
    before = files_of(old)

    code, output = sweep(
        config, "--out", new, "--extend", old, "--steps", 128, "--backend", "process", "--workers", 1
    )
    assert code == 0, output
    assert f"1 tasks, continuing the runs of {old}" in output

    assert files_of(old) == before  # only read
    folder = task_dir(new, TASK)
    task = read_task(folder)
    assert task["extends"] == str(task_dir(old, TASK)) and task["settings"]["steps"] == 128
    assert TrainSummary.read(folder).timesteps == 128

    # the reference: `crs train --resume --steps 128` on a copy of the old run
    reference = tmp_path / "reference"
    shutil.copytree(
        task_dir(old, TASK), reference / TASK, ignore=shutil.ignore_patterns(TASK_FILE, DONE_MARKER)
    )
    from crs.app.training import run_training

    resumed = run_training(None, name=TASK, runs_dir=reference, resume=True, steps=128, show=False)
    assert read_metrics(folder) == resumed.test[resumed.trained_label]
    # no file names the old folder or the worker's scratch folder any more (task.json says what it extends)
    texts = {p: p.read_text() for p in folder.rglob("*") if p.suffix in (".json", ".jsonl", ".md", ".yaml")}
    stale = [
        p for p, text in texts.items() if p.name != TASK_FILE and (str(old) in text or "crs-task-" in text)
    ]
    assert not stale and str(folder) in texts[folder / "MODEL_CARD.md"]

    code, output = sweep(config, "--out", new, "--extend", old, "--steps", 128, "--backend", "serial")
    assert code == 0 and "1 already finished" in output and "(0 run now, 1 skipped as finished)" in output

    # rerun without --extend: refused with the options that made the folder (it said "delete that folder",
    # which would lose the finished work), and those options work
    code, output = sweep(config, "--out", new, "--steps", 128, "--seeds", "0-1", "--backend", "serial")
    assert code == 2 and f"pass the options that made it again: --extend {old} --steps 128" in output, output
    # another seed needs it in the old sweep first: the fix names the seed (it gave the command without it)
    more = ("--extend", old, "--steps", 128, "--seeds", "0-1", "--backend", "serial")
    code, output = sweep(config, "--out", new, *more)
    assert code == 2 and f"finish that sweep first (`crs sweep CONFIG --out {old} --seeds 1`)" in output, (
        output
    )
    assert sweep(config, "--out", old, "--seeds", 1, "--backend", "serial")[0] == 0
    code, output = sweep(config, "--out", new, *more)
    assert code == 0 and "2/2 tasks finished (1 run now, 1 skipped as finished)" in output, output


@pytest.mark.slow
def test_extend_refuses_what_would_not_continue_the_same_runs(tmp_path) -> None:
    config = write_config(tmp_path / "train.yaml")
    old = tmp_path / "old"
    assert sweep(config, "--out", old, "--backend", "serial")[0] == 0
    before = files_of(old)
    cases = {
        "the same folder as --out": (config, "--out", old, "--extend", old, "--steps", 128),
        "was trained to 64 steps, this config asks for 64": (
            config,
            "--out",
            tmp_path / "a",
            "--extend",
            old,
        ),
        "differs from task persona_world-rl-default-s0 in test_episodes": (
            write_config(tmp_path / "other.yaml", test_episodes=20),
            *("--out", tmp_path / "b", "--extend", old, "--steps", 128),
        ),
        "is not a sweep directory": (config, "--out", tmp_path / "c", "--extend", tmp_path, "--steps", 128),
    }
    for message, args in cases.items():
        code, output = sweep(*args)
        assert code == 2 and message in output, (message, output)
    assert files_of(old) == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_steps_is_for_training_sweeps_only(tmp_path) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text("seeds: [1]\npolicies: [ask-4]\neval: {episodes: 5}\n")
    code, output = sweep(config, "--out", tmp_path / "out", "--steps", 128)
    assert code == 2 and "--steps sets train.steps: the config's kind must be 'train', not 'eval'" in output
