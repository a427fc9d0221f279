"""`crs train` and what its user gives it: the run folder never holds the run's inputs, --resume
refuses what it cannot apply, a failed start leaves nothing behind, a run name stays inside
--runs-dir, and the commands the errors name work as typed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from crs.app.settings import make_settings, recorded_settings
from crs.app.training import (
    ResumeStepsError,
    RunNameError,
    check_run_name,
    run_options,
    run_training,
)
from crs.claims import LOCK_FILE
from crs.cli import app
from crs.common import TerminatedError, terminate_as_interrupt
from policies.atomic import atomic_path
from policies.rl import callbacks
from policies.rl.callbacks import TrainingCallback
from policies.rl.model_file import read_model_data
from simulators.errors import CRSError
from tests.crs.test_train_cmd import TINY, tiny_settings

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny_config(path: Path, **overrides: object) -> Path:
    path.write_text(yaml.safe_dump({**TINY, "steps": 64, **overrides}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run of 64 steps (checkpoint at 64)."""
    runs = tmp_path_factory.mktemp("runs")
    run_training(tiny_settings(steps=64), name="done", runs_dir=runs, show=False)
    return runs / "done"


# defect 1: --overwrite never deletes the run's own inputs
@pytest.mark.parametrize("input_kind", ["ranker", "data"])
def test_overwrite_refuses_a_run_folder_that_holds_an_input_before_deleting_anything(
    tmp_path, input_kind
) -> None:
    run = tmp_path / "runs" / "x"
    (run / "ranker").mkdir(parents=True)
    (run / "ranker" / "config.json").write_text("{}")
    (run / "data" / "lastfm").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    before = snapshot(run)
    args = ["train", "--overwrite", "--name", "x", "--runs-dir", str(tmp_path / "runs")]
    if input_kind == "ranker":
        args += ["--ranker", str(run / "ranker")]
    else:
        args += ["--dataset", "lastfm", "--data-dir", str(run / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = flat(result.output)
    assert f"holds the {'--ranker artifact' if input_kind == 'ranker' else 'data folder'}" in message
    assert "Traceback" not in result.output
    assert snapshot(run) == before  # nothing deleted


# defect 2: --resume --steps N needs N above the steps the run has
@pytest.mark.parametrize("steps", [32, 64])
def test_resume_to_steps_the_run_already_has_is_refused_and_changes_nothing(trained, steps) -> None:
    before = snapshot(trained)
    args = ["train", "--name", trained.name, "--runs-dir", str(trained.parent), "--resume"]
    result = runner.invoke(app, [*args, "--steps", str(steps)])
    assert result.exit_code == 2, result.output
    message = flat(result.output)
    assert "has trained 64 steps" in message and f"--steps {steps} must be above 64" in message
    assert snapshot(trained) == before
    with pytest.raises(ResumeStepsError, match="must be above 64"):
        run_training(None, name=trained.name, runs_dir=trained.parent, resume=True, steps=steps, show=False)
    assert snapshot(trained) == before


# defect 3: --resume refuses the options it cannot apply, naming them
@pytest.mark.parametrize(
    ("option", "shown"),
    [
        (["--seed", "1"], "--seed 1 (the run recorded seed: 0)"),
        (["--config", "CONFIG"], "--config"),
        (["--dataset", "lastfm"], "--dataset"),
        (["-d", "lastfm"], "--dataset"),
        (["--ranker", "bpr"], "--ranker"),
        (["--setting", "binary"], "--setting"),
        (["--envs", "3"], "--envs 3 (the run recorded envs: 2)"),
        (["--no-persona-attention"], "--no-persona-attention"),
        (["--policy-only-ablation"], "--policy-only-ablation"),
        (["--plan-depth", "2"], "--plan-depth"),
        (["--fit-plan-temperature"], "--fit-plan-temperature"),
        (["--print-config"], "--print-config"),
    ],
)
def test_resume_refuses_an_option_it_cannot_apply(trained, tmp_path, option, shown) -> None:
    config = tiny_config(tmp_path / "c.yaml")
    option = [str(config) if part == "CONFIG" else part for part in option]
    before = snapshot(trained)
    args = ["train", "--name", trained.name, "--runs-dir", str(trained.parent), "--resume"]
    result = runner.invoke(app, [*args, "--steps", "128", *option])
    assert result.exit_code == 2, result.output
    message = flat(result.output)
    assert f"--resume cannot apply {shown}" in message
    assert "keeps the settings its config.yaml recorded" in message
    assert "--steps, --learning-rate, --ent-coef, --in-process, --workers" in message
    assert snapshot(trained) == before


def test_resume_applies_the_options_it_accepts(trained, tmp_path) -> None:
    runs = tmp_path / "runs"
    run = runs / "copy"
    run.mkdir(parents=True)
    for path, data in snapshot(trained).items():
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        (run / path).write_bytes(data)
    args = ["train", "--name", "copy", "--runs-dir", str(runs), "--resume", "--steps", "128"]
    # the first command again with --resume: options that repeat what the run recorded change nothing
    same = ["--seed", "0", "-d", "persona_world", "--ranker", "popularity", "--envs", "2"]
    result = runner.invoke(app, [*args, "--ent-coef", "0.003", "--in-process", *same])
    assert result.exit_code == 0, result.output
    said = f"resuming {run} from its checkpoint: steps 64 to 128 with ppo.ent_coef 0.003 (was 0.001)"
    assert "".join(result.output.split()).startswith("".join(said.split()))  # a long path wraps anywhere
    assert read_model_data(run / "checkpoint.zip")["num_timesteps"] == 128
    settings = yaml.safe_load((run / "config.yaml").read_text())["settings"]
    assert settings["steps"] == 128 and settings["ppo"]["ent_coef"] == 0.003
    # --data-dir is for real data that moved: a persona world run reads none
    before = snapshot(run)
    result = runner.invoke(app, [*args[:-1], "256", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "trains on the persona world, which reads no data folder" in flat(
        result.output
    )
    assert snapshot(run) == before


# defect 4: a start that fails before training leaves no run folder
@pytest.mark.parametrize(
    "bad",
    [
        ["--ranker", "bogus"],
        ["--dataset", "bogus"],
        ["--dataset", "lastfm", "--data-dir", "MISSING"],
        ["--setting", "enumerated"],  # the persona world has no categories: refused before pre-training
    ],
)
def test_a_failed_start_leaves_no_run_folder_and_the_corrected_command_runs(tmp_path, bad) -> None:
    config = tiny_config(tmp_path / "c.yaml")
    bad = [str(tmp_path / "missing") if part == "MISSING" else part for part in bad]
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--name", "x2"]
    result = runner.invoke(app, [*args, *bad])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "runs" / "x2").exists()
    if bad[0] in ("--ranker", "--setting"):
        corrected = runner.invoke(app, args)
        assert corrected.exit_code == 0, corrected.output
        assert (tmp_path / "runs" / "x2" / "summary.json").is_file()


# defect 5: a run name is one plain folder name
@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "a\\b", "", ".", ".."])
def test_a_run_name_that_is_not_a_plain_folder_name_is_refused(tmp_path, name) -> None:
    config = tiny_config(tmp_path / "c.yaml")
    runs = tmp_path / "area" / "runs"
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(runs), "--name", name])
    assert result.exit_code == 2, result.output
    message = flat(result.output)
    assert "not a plain folder name" in message and "--runs-dir" in message
    assert not (tmp_path / "area").exists()  # nothing written, inside --runs-dir or out of it
    resumed = runner.invoke(app, ["train", "--runs-dir", str(runs), "--name", name, "--resume"])
    assert resumed.exit_code == 2 and "not a plain folder name" in flat(resumed.output)
    with pytest.raises(RunNameError):
        check_run_name(name)


# defect 6: the commands the errors name carry a --runs-dir that is not the default
def test_the_continue_hint_names_a_runs_dir_that_is_not_the_default(tmp_path) -> None:
    (tmp_path / "rc1").mkdir()
    (tmp_path / "rc1" / "config.yaml").write_text("{")  # an earlier run's (a folder without is no run)
    config = tiny_config(tmp_path / "c.yaml")
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "rc1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"crs train --name rc1 --runs-dir {shlex.quote(str(tmp_path))} --resume" in flat(result.output)
    assert run_options("rc1", Path("runs")) == run_options("rc1", Path("./runs")) == "--name rc1"
    assert run_options("rc1", Path(".")) == "--name rc1 --runs-dir ."


def test_a_replayed_config_writes_its_rewards_in_the_same_order() -> None:
    direct = make_settings({})
    replayed = make_settings(direct.model_dump())
    assert replayed.rewards == direct.rewards and list(replayed.rewards) == list(direct.rewards)


def test_a_plain_crs_train_tests_and_validates_on_as_many_conversations_as_the_docs_say() -> None:
    # README: the main job (`crs train`) compares the policies "on the same 600 test conversations";
    # BENCHMARKS.md: its validations use 200 conversations ("1,000 validation conversations instead of 200")
    settings = make_settings({})
    assert (settings.test_episodes, settings.eval_episodes) == (600, 200)


@pytest.mark.parametrize("dataset", ["persona_world", "lastfm_star"])
def test_a_config_that_sets_one_reward_keeps_the_training_default_for_the_others(dataset: str) -> None:
    """A config's ``rewards`` go over `TRAIN_REWARDS` (a user who quits costs -1 in training); they
    used to replace it, so setting any one reward brought back UNICORN's -0.3 unannounced."""
    settings = make_settings({"dataset": dataset, "rewards": {"recommend_fail": -0.2}})
    assert settings.rewards["quit_at_limit"] == -1.0 and settings.rewards["recommend_fail"] == -0.2
    # the value a config gives wins, UNICORN's included
    assert (
        make_settings({"dataset": dataset, "rewards": {"quit_at_limit": -0.3}}).rewards["quit_at_limit"]
        == -0.3
    )


def test_a_run_recorded_before_rewards_went_over_the_default_replays_what_it_trained_with() -> None:
    """A run's config.yaml from before session 40 whose rewards leave ``quit_at_limit`` out trained with
    UNICORN's -0.3: reading it back (resume, replay) must not turn that into -1."""
    recorded = {"dataset": "lastfm_star", "setting": "binary", "rewards": {"ask_rejected": 0.0}}
    assert make_settings(recorded_settings(recorded)).rewards == {"ask_rejected": 0.0, "quit_at_limit": -0.3}
    # a recorded quit_at_limit is kept
    recorded["rewards"] = {"quit_at_limit": -1.0}
    assert make_settings(recorded_settings(recorded)).rewards == {"quit_at_limit": -1.0}


def test_a_settings_error_names_the_bad_value_without_its_whole_block() -> None:
    """A block's own check (``ppo``) names its key and value; the error does not append the block's
    whole mapping cut mid-word, nor pydantic's "Value error" prefix. A long value is cut visibly."""
    with pytest.raises(CRSError) as nan:
        make_settings({"ppo": {"learning_rate": float("nan")}})
    assert str(nan.value) == "bad training settings: ppo: ppo.learning_rate=nan must be a finite number"
    with pytest.raises(CRSError) as long:
        make_settings({"steps": "x" * 60})
    assert str(long.value).endswith(f", got '{'x' * 38}…")


@pytest.mark.parametrize(("make", "said"), [("folder", "is a folder"), ("nothing", "not found")])
def test_a_config_path_that_is_no_file_says_what_it_is(tmp_path: Path, make: str, said: str) -> None:
    """A --config naming a folder says so (not "not found", which sends the user looking for a typo);
    a path with nothing there says "not found"; both exit 2 with the fix, and nothing is trained."""
    config = tmp_path / "train.yaml"
    if make == "folder":
        config.mkdir()
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert f"config file {config} {said}; pass a .yaml, .yml or .toml file" in flat(result.output)
    assert not (tmp_path / "runs").exists()


def test_print_config_refuses_a_ranker_that_training_would_refuse() -> None:
    """--print-config writes a config file: one whose ranker cannot parse would never run, so it is
    refused as training refuses it, naming the bad part (guards against a config file that looks fine)."""
    result = runner.invoke(app, ["train", "--ranker", "uniform+pop:-1", "--print-config"])
    assert result.exit_code == 2, result.output
    assert "bad training settings: ranker: popularity weight '-1' in 'uniform+pop:-1'" in flat(result.output)


def test_ctrl_c_says_how_to_continue_the_run_and_the_command_it_names_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (a KeyboardInterrupt, here raised by the evaluation at step 64) exits 130 with the command
    that continues the run, --runs-dir included; that command, run as printed, finishes the run."""
    run_eval = TrainingCallback.run_eval

    def interrupted(self: TrainingCallback) -> Any:
        if self.model.num_timesteps == 64:
            raise KeyboardInterrupt
        return run_eval(self)

    monkeypatch.setattr(TrainingCallback, "run_eval", interrupted)
    config = tiny_config(tmp_path / "c.yaml", steps=128)
    result = runner.invoke(
        app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k"]
    )
    assert result.exit_code == 130, result.output
    command = f"crs train --name k --runs-dir {shlex.quote(str(tmp_path))} --resume"
    assert f"interrupted: {tmp_path / 'k'} keeps what it checkpointed; continue it with `{command}`" in flat(
        result.output
    )
    monkeypatch.undo()
    resumed = runner.invoke(app, shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "k" / "summary.json").read_text())["timesteps"] == 128


@pytest.mark.slow  # a real process: python and torch start in it
def test_sigterm_stops_a_run_as_ctrl_c_does_leaving_no_lock(tmp_path: Path) -> None:
    """`kill` (or `timeout`) while `crs train` trains: it says what the run keeps, exits 143, and its
    lock goes with it (a stale lock refused every later train or resume)."""
    # no imitation: the recipe copies ask-7 on 8,192 turns (a minute) before the first checkpoint
    config = tiny_config(
        tmp_path / "c.yaml", steps=1_000_000, eval_every=0, checkpoint_every=64, imitation=None
    )
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k"]
    process = subprocess.Popen(
        [sys.executable, "-m", "crs", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    run = tmp_path / "k"
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.zip").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (run / "checkpoint.zip").is_file(), "the run never checkpointed"
    process.terminate()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert f"terminated: {run} keeps what it checkpointed" in " ".join(output.split())
    assert not (run / LOCK_FILE).exists()


def test_sigterm_while_a_checkpoint_is_written_stops_the_run_as_sigterm_does(tmp_path, monkeypatch) -> None:
    """SIGTERM that lands inside the checkpoint's write: torch's zip writer, stopped mid-record, raises
    its own error as the interrupt unwinds it ("unexpected pos ..."). That error once took the
    interrupt's place, so `crs train` crashed with a traceback and exit 1; it must still exit 143,
    say what the run keeps, and leave no lock and no half-written file."""

    def save_stopped_mid_record(model: Any, path: Path) -> None:
        with atomic_path(path) as temporary:
            temporary.write_bytes(b"PK half a zip")
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)  # the handler raises here
            except KeyboardInterrupt:
                # raised by torch's writer as it closes, not on purpose: no `from`
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 26944")  # noqa: B904

    monkeypatch.setattr(callbacks, "atomic_save", save_stopped_mid_record)
    before = signal.getsignal(signal.SIGTERM)
    config = tiny_config(tmp_path / "c.yaml")
    result = runner.invoke(
        app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k"]
    )
    run = tmp_path / "k"
    assert result.exit_code == 143, result.output
    assert f"terminated:{run}keeps" in "".join(result.output.split())
    assert not (run / LOCK_FILE).exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint")]
    assert not (run / "checkpoint.zip").exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_only_an_error_raised_by_accident_while_stopping_gives_way_to_the_interrupt() -> None:
    """A command's own exit after saying it was stopped (`typer.Exit(143)`), or an error that replaces
    the interrupt on purpose (`from None`), leaves the block as raised; an error a cleanup raised by
    accident gives way to the interrupt (guards against every command exiting 130 instead of 143)."""

    def stop_then(replacement: Exception, *, on_purpose: bool) -> None:
        with terminate_as_interrupt():
            try:
                raise TerminatedError
            except KeyboardInterrupt:
                if on_purpose:
                    raise replacement from None
                raise replacement  # noqa: B904 (by accident, as a writer's cleanup does)

    for on_purpose in (True, False):
        with pytest.raises(typer.Exit) as said:
            stop_then(typer.Exit(143), on_purpose=on_purpose)
        assert said.value.exit_code == 143
    with pytest.raises(ValueError, match="replaced"):
        stop_then(ValueError("replaced"), on_purpose=True)
    with pytest.raises(TerminatedError):
        stop_then(RuntimeError("unexpected pos 26944 vs 26864"), on_purpose=False)


def test_a_resume_says_when_state_json_is_damaged_and_goes_on_from_the_checkpoint(trained, tmp_path) -> None:
    """A damaged state.json does not stop a resume (checkpoint.zip and the curve hold what it says),
    but the user is told, naming the file, rather than the damage passing in silence."""
    run = tmp_path / "runs" / "copy"
    for path, data in snapshot(trained).items():
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        (run / path).write_bytes(data)
    (run / "state.json").write_text('{"timesteps": "x", "best_score": [0.5, 0.1]}')
    result = runner.invoke(
        app, ["train", "--name", "copy", "--runs-dir", str(tmp_path / "runs"), "--resume", "--steps", "128"]
    )
    assert result.exit_code == 0, result.output
    assert f"note: {run / 'state.json'}: bad entry" in flat(result.output)
    assert read_model_data(run / "checkpoint.zip")["num_timesteps"] == 128
    assert json.loads((run / "state.json").read_text())["timesteps"] == 128  # rewritten at the checkpoint


def test_more_conversations_than_a_split_has_are_noted(tmp_path) -> None:
    """eval_episodes or test_episodes above the split's conversations use them all, and say so (the
    run's summary records the number used; config.yaml keeps the number asked)."""
    sizes = {"eval_episodes": 50_000, "test_episodes": 100_000}
    config = tiny_config(tmp_path / "big.yaml", **sizes, baselines=["ask-4"])
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "big"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    tested = json.loads((tmp_path / "big" / "summary.json").read_text())["test_episodes"]
    assert tested < 100_000
    text = " ".join(result.output.split())
    used = f"{tested:,} test conversations: all {tested:,} are used"
    assert f"note: test_episodes 100,000 is more than the {used}" in text
    assert "note: eval_episodes 50,000 is more than the" in text and "validation conversations: all" in text
    # the validation figures name their conversations too: all the split's, as the note says
    valid = json.loads((tmp_path / "big" / "summary.json").read_text())["valid_episodes"]
    assert f"note: eval_episodes 50,000 is more than the {valid:,} validation conversations" in text
    card = " ".join((tmp_path / "big" / "MODEL_CARD.md").read_text().split())
    assert f"over {valid:,} validation conversations)" in card
    # the test table's title names its conversations with their seed, like `crs eval`'s
    assert f"persona_world / test: {tested:,} conversations, seed 0 (the same for every policy)" in text


def test_policy_only_ablation_without_an_ablation_is_refused() -> None:
    result = runner.invoke(app, ["train", "--policy-only-ablation", "--print-config"], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "add --no-persona-attention or --no-aspect-attention" in " ".join(result.output.split())


def test_the_progress_runs_to_the_steps_ppo_trains_in_whole_rollouts() -> None:
    """`--envs 3 --steps 100` with 32-step rollouts trains 192 steps: the bar's total (it showed 100/100)."""
    from crs.app.training import steps_trained

    assert steps_trained(0, 100, 3 * 32) == 192
    assert steps_trained(0, 192, 96) == 192 and steps_trained(96, 100, 96) == 192
    assert steps_trained(192, 128, 96) == 192  # a checkpoint past the budget trains no more


def test_a_run_trained_without_show_prints_no_validation_lines(tmp_path, capsys) -> None:
    """A sweep's worker trains with show=False: its "step N: valid SR@15 ..." lines, which name no task,
    were printed anyway and interleaved between two workers."""
    run_training(tiny_settings(steps=64), name="quiet", runs_dir=tmp_path, show=False)
    assert "valid SR@15" not in capsys.readouterr().out
    assert len((tmp_path / "quiet" / "eval.csv").read_text().splitlines()) > 1  # they were still logged


def test_the_verdicts_are_kept_in_the_run_and_match_its_report(trained, tmp_path) -> None:
    """The verdict table (trained policy against the best baseline per metric) was printed only: neither
    summary.json nor MODEL_CARD.md kept it, and the report of the run gave other intervals for the same
    pairs. Both keep it now, with the report's intervals."""
    from crs.app.run_folder import TrainSummary
    from crs.report import build_report

    summary = TrainSummary.read(trained)
    assert [v.metric for v in summary.verdicts] == ["SR@5", "SR@10", "SR@15", "AT", "hDCG"]
    card = (trained / "MODEL_CARD.md").read_text()
    assert "| metric | trained | best baseline | difference [95% CI] | verdict |" in card
    for verdict in summary.verdicts:
        assert "| " + " | ".join(verdict.cells()) + " |" in card
    report = build_report([trained], tmp_path / "r", examples=0, persona=False, figures=False)
    (table,) = report.tables
    assert table.reference == trained.name  # the trained policy minus each baseline, as the verdicts
    diffs = {d.label: d for d in table.diffs}
    for verdict in summary.verdicts:
        assert diffs[verdict.baseline].metrics[verdict.metric] == verdict.difference, verdict
