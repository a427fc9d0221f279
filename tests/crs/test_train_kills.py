"""`crs train` killed at the moments around an evaluation, then resumed: nothing is lost, the run is the
one training straight through makes (a resume at step 0 continues exactly), and its files agree; the
commands a run's model card prints work as pasted; a run resumed with changed settings says so."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.run_folder import (
    TEST_DIR,
    TRAINED_TEST,
    CurveFile,
    EvalSummary,
    RunPhase,
    RunRecord,
    read_episodes,
    write_episodes,
    write_test_folders,
)
from crs.app.training import next_commands, run_training
from crs.cli import app
from envs import evaluation_indices, make_env
from policies.rl.model_file import read_model_data
from simulators.datasets import DATA_DIR_ENV
from tests.crs.test_train_cmd import TINY, tiny_settings

runner = CliRunner()
# a copy of ask-2 at step 0, then evaluations at 64 and 128 (the final one)
COPY = {"rule": "ask-2", "steps": 64, "epochs": 2, "learning_rate": 0.003}
KILLED = {"imitation": COPY, "baselines": ["ask-4"]}


class KillError(Exception):
    """Stands for a `kill -9` at that moment: the files written so far stay as they are."""


def flat(text: str) -> str:
    """Output or a card with line wrapping undone."""
    return " ".join(text.split())


def curve(run: Path) -> list[tuple[str, ...]]:
    """eval.csv without the wall-clock column."""
    rows = csv.DictReader((run / "eval.csv").open())
    return [(r["timesteps"], r["SR@15"], r["AT"], r["hDCG"], r["best"]) for r in rows]


def best_steps(run: Path) -> int:
    return int(read_model_data(run / "best_model.zip")["num_timesteps"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run trained straight through, without a kill."""
    runs = tmp_path_factory.mktemp("runs")
    run_training(tiny_settings(**KILLED), name="straight", runs_dir=runs, show=False)
    return runs / "straight"


def kill_at(monkeypatch: pytest.MonkeyPatch, moment: str, steps: int) -> None:
    """Make the evaluation at `steps` raise `KillError` at `moment`: as it starts (before anything is
    written), as its curve row is about to be written, or just after it is."""
    from crs.app.run_folder import CurveFile
    from policies.rl.callbacks import TrainingCallback

    run_eval, add = TrainingCallback.run_eval, CurveFile.add

    def dying_eval(self: TrainingCallback) -> Any:
        if self.model.num_timesteps == steps:
            raise KillError(moment)
        return run_eval(self)

    def dying_add(self: CurveFile, point: Any) -> None:
        if point.timesteps == steps and moment == "before_row":
            raise KillError(moment)
        add(self, point)
        if point.timesteps == steps and moment == "after_row":
            raise KillError(moment)

    if moment == "in_eval":
        monkeypatch.setattr(TrainingCallback, "run_eval", dying_eval)
    else:
        monkeypatch.setattr(CurveFile, "add", dying_add)


@pytest.mark.parametrize("moment", ["in_eval", "before_row", "after_row"])
def test_a_kill_around_the_step_0_evaluation_loses_nothing_and_resumes_into_the_straight_run(
    straight, tmp_path, monkeypatch, moment
) -> None:
    kill_at(monkeypatch, moment, 0)
    with pytest.raises(KillError):
        run_training(tiny_settings(**KILLED), name="k", runs_dir=tmp_path, show=False)
    monkeypatch.undo()
    run = tmp_path / "k"
    assert read_model_data(run / "checkpoint.zip")["num_timesteps"] == 0  # the copy was checkpointed
    summary = run_training(None, name="k", runs_dir=tmp_path, resume=True, show=False)
    # the copy's evaluation is there (evaluated on resume where the kill lost it), and so the best
    # model is never worse on validation than the copy
    assert curve(run)[0][0] == "0" and curve(run) == curve(straight)
    copy_score = float(curve(run)[0][1])
    assert summary.best_valid["SR@15"] >= copy_score
    assert best_steps(run) == best_steps(straight)
    assert (run / "best_model.zip").is_file() and [r[0] for r in curve(run) if r[4] == "True"][-1] == str(
        best_steps(run)
    )  # the last row flagged best is the tested model's
    trained = Path(TEST_DIR) / TRAINED_TEST
    assert read_episodes(run / trained) == read_episodes(straight / trained)
    assert json.loads((run / "state.json").read_text())["pending_eval"] is None


def test_a_kill_during_a_later_evaluation_evaluates_the_checkpoint_first_on_resume(
    tmp_path, monkeypatch
) -> None:
    kill_at(monkeypatch, "in_eval", 64)
    with pytest.raises(KillError):
        run_training(tiny_settings(**KILLED), name="k", runs_dir=tmp_path, show=False)
    monkeypatch.undo()
    marked = json.loads((tmp_path / "k" / "state.json").read_text()).get("pending_eval")
    run_training(None, name="k", runs_dir=tmp_path, resume=True, show=False)
    assert [row[0] for row in curve(tmp_path / "k")] == ["0", "64", "128"]
    assert marked == 64  # state.json said the checkpoint's evaluation was due


# ------------------------------------------------------------------- the best score a resume trusts
ROW = {"seconds": 1.0, "SR@5": 0.1, "SR@10": 0.2, "AT": 9.0}


def write_curve(run: Path, rows: list[tuple[int, float, bool]]) -> CurveFile:
    """eval.csv and eval.jsonl with rows (timesteps, SR@15 = hDCG, best)."""
    file = CurveFile(run)
    file._write([{**ROW, "timesteps": t, "SR@15": sr, "hDCG": sr, "best": best} for t, sr, best in rows])
    return file


def test_without_best_model_zip_a_resume_has_no_score_to_beat(tmp_path) -> None:
    # a row flagged best whose model was never saved (a kill between them) is no score to beat
    file = write_curve(tmp_path, [(0, 0.75, True), (64, 0.5, False)])
    assert file.resume_at(64, None) == ((-1.0, -1.0), 64)
    assert [row["best"] for row in file.rows()] == [False, False]  # the flag without a model is cleared


def test_a_row_flagged_best_newer_than_best_model_zip_is_not_trusted(tmp_path) -> None:
    file = write_curve(tmp_path, [(0, 0.5, True), (64, 0.6, False), (128, 0.9, True)])
    assert file.resume_at(128, 0) == ((0.5, 0.5), 128)
    assert [row["best"] for row in file.rows()] == [True, False, False]
    # the best model's own row missing (a kill between saving it and writing its row): the rows flagged
    # best before it, a lower bound
    file = write_curve(tmp_path, [(0, 0.5, True), (64, 0.6, False)])
    assert file.resume_at(128, 128) == ((0.5, 0.5), 64)


def test_without_the_best_model_s_row_the_score_to_beat_is_the_highest_flagged_best(tmp_path) -> None:
    # each row flagged best beat the ones before it: the last, highest is the saved model's lower bound
    file = write_curve(tmp_path, [(0, 0.5, True), (64, 0.7, True)])
    assert file.resume_at(128, 128) == ((0.7, 0.7), 64)


# ------------------------------------------------------------------------ the test of the best model
def test_the_test_evaluates_best_model_zip_where_a_later_model_scored_worse(tmp_path, monkeypatch) -> None:
    from policies.rl import evaluate_policy, load_trained_policy
    from policies.rl.callbacks import TrainingCallback

    run_eval = TrainingCallback.run_eval

    def falling(self: TrainingCallback) -> Any:
        measure = self.evaluate_fn

        def scores(model: Any) -> dict[str, float]:  # every evaluation scores lower than the one before
            return {**measure(model), "SR@15": 1 - model.num_timesteps / 1000, "hDCG": 0.5}

        self.evaluate_fn = scores
        try:
            return run_eval(self)
        finally:
            self.evaluate_fn = measure

    monkeypatch.setattr(TrainingCallback, "run_eval", falling)
    # a large learning rate and 60 conversations: the final model acts otherwise than the best (step 0's)
    # in 17 of them (learning rate 0.01 and 12 conversations: none, with this session's library versions)
    settings = tiny_settings(baselines=["ask-4"], test_episodes=60, ppo={**TINY["ppo"], "learning_rate": 0.1})
    run_training(settings, name="b", runs_dir=tmp_path, show=False)
    monkeypatch.undo()
    run = tmp_path / "b"
    assert best_steps(run) < 128 == read_model_data(run / "model.zip")["num_timesteps"]
    catalog = settings.dataset_spec().load()

    def test_env() -> Any:
        return make_env(catalog=catalog, split="test", **settings.env_options())

    indices = evaluation_indices(test_env().goals.n_goals, settings.test_episodes, settings.seed)

    def records(folder: Path) -> list[Any]:  # as `crs eval --policy RUN`: best_model.zip, else model.zip
        return evaluate_policy(test_env, load_trained_policy(folder, catalog), indices, settings.seed)

    tested = list(read_episodes(run / TEST_DIR / TRAINED_TEST))
    assert tested == records(run)
    shutil.copytree(run, tmp_path / "final")
    (tmp_path / "final" / "best_model.zip").unlink()
    assert tested != records(tmp_path / "final")  # the final model would have been another test


# --------------------------------------------------------------- records replaced only when whole
def test_episodes_jsonl_is_replaced_in_one_rename(tmp_path, straight, monkeypatch) -> None:
    old = read_episodes(straight / TEST_DIR / TRAINED_TEST)
    write_episodes(tmp_path, old)

    def killed(source: Any, target: Any) -> None:  # stands for a kill before the rename
        raise KillError(f"{source} -> {target}")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KillError):
        write_episodes(tmp_path, old[:2])
    monkeypatch.undo()
    assert read_episodes(tmp_path) == old  # the old file, whole


def copied_test(tmp_path: Path, straight: Path) -> tuple[Path, tuple[Any, ...], EvalSummary]:
    """A run holding a copy of `straight`'s test, the trained policy's records and its summary."""
    run = tmp_path / "run"
    shutil.copytree(straight / TEST_DIR, run / TEST_DIR)
    return run, read_episodes(run / TEST_DIR / TRAINED_TEST), EvalSummary.read(run / TEST_DIR / TRAINED_TEST)


def fail_the_swap(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the new test's rename into place raise `error` (the other renames go through)."""
    replace = os.replace

    def failing(source: Any, target: Any) -> None:
        if Path(source).name == f".{TEST_DIR}.partial":
            raise error
        replace(source, target)

    monkeypatch.setattr(os, "replace", failing)


def test_a_test_whose_swap_fails_keeps_the_old_tests_records(tmp_path, straight, monkeypatch) -> None:
    run, old, summary = copied_test(tmp_path, straight)
    fail_the_swap(monkeypatch, KillError("the new test's rename into place"))
    with pytest.raises(KillError):
        write_test_folders(run, [(TRAINED_TEST, summary, old[:2])])
    monkeypatch.undo()
    kept = [folder / TRAINED_TEST for folder in run.iterdir() if (folder / TRAINED_TEST).is_dir()]
    assert old in [read_episodes(folder) for folder in kept]  # still on disk, to be put back

    # the next test, killed while writing, first puts the old one back (it deleted it before)
    def killed(*_: object) -> None:
        raise KillError("while writing the new test's records")

    monkeypatch.setattr("crs.app.run_folder.write_episodes", killed)
    with pytest.raises(KillError):
        write_test_folders(run, [(TRAINED_TEST, summary, old[:2])])
    assert read_episodes(run / TEST_DIR / TRAINED_TEST) == old


def test_a_test_whose_rename_fails_puts_the_old_test_back(tmp_path, straight, monkeypatch) -> None:
    run, old, summary = copied_test(tmp_path, straight)
    fail_the_swap(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        write_test_folders(run, [(TRAINED_TEST, summary, old[:2])])
    assert read_episodes(run / TEST_DIR / TRAINED_TEST) == old  # where `crs report` reads it


# ------------------------------------------------------------------ the commands a run's card prints
@pytest.fixture(scope="module")
def other_world(tmp_path_factory) -> Path:
    """A tiny run on the default-size persona world of world seed 1 (`crs eval` can build it)."""
    runs = tmp_path_factory.mktemp("runs")
    settings = {k: v for k, v in TINY.items() if k != "world"}
    settings.update(steps=64, eval_every=0, imitation=None, baselines=["ask-4"], world_seed=1)
    config = runs / "ws.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(runs), "--name", "ws"])
    assert result.exit_code == 0, result.output
    return runs / "ws"


def card_command(run: Path) -> str:
    card = flat((run / "MODEL_CARD.md").read_text())
    return card.split("Evaluate it again on the same conversations: `")[1].split("`")[0]


def test_the_card_s_evaluation_of_another_world_seed_replays_the_test_as_pasted(
    other_world, tmp_path
) -> None:
    command = card_command(other_world)
    assert "--world-seed 1" in command
    assert command in next_commands(other_world)  # `crs train` prints the same command
    assert f"crs chat --policy {other_world} --world-seed 1" in next_commands(other_world)
    args = shlex.split(command)
    assert args[:2] == ["crs", "eval"]
    result = runner.invoke(app, [*args[1:], "-o", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert read_episodes(tmp_path / "again") == read_episodes(other_world / TEST_DIR / TRAINED_TEST)


def test_a_run_of_another_world_is_evaluated_and_chatted_with_on_its_world_unnamed(
    other_world, tmp_path
) -> None:
    """`crs eval -p RUN` and `crs chat -p RUN` take the run's dataset and world seed when none is given
    (they built the default world, and refused the run as trained on another catalogue); a world seed
    given is kept, and still refused when it is not the run's."""
    args = shlex.split(card_command(other_world))[1:]
    at = args.index("--world-seed")
    del args[at : at + 2]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "bare")])
    assert result.exit_code == 0, result.output
    assert read_episodes(tmp_path / "bare") == read_episodes(other_world / TEST_DIR / TRAINED_TEST)
    assert EvalSummary.read(tmp_path / "bare").world_seed == 1
    chat = runner.invoke(app, ["chat", "--policy", str(other_world), "--simulate", "--seed", "0"])
    assert chat.exit_code == 0, chat.output
    named = runner.invoke(app, [*args, "--world-seed", "0", "-o", str(tmp_path / "named")])
    assert named.exit_code != 0 and "(--world-seed 1)" in flat(named.output), named.output
    # naming the run's own dataset keeps its world; naming another is refused at once
    own = runner.invoke(app, [*args, "-d", "persona_world", "-o", str(tmp_path / "own")])
    assert own.exit_code == 0, own.output
    assert read_episodes(tmp_path / "own") == read_episodes(tmp_path / "bare")
    other = runner.invoke(app, [*args, "-d", "lastfm", "-o", str(tmp_path / "other")])
    said = flat(other.output)
    assert other.exit_code == 2 and f"run {other_world} was trained on persona_world, not lastfm" in said


def test_the_card_s_evaluation_of_real_data_replays_the_test_as_pasted(
    real_data_dir, tmp_path, monkeypatch
) -> None:
    settings = {k: v for k, v in TINY.items() if k != "world"}
    monkeypatch.chdir(tmp_path)  # the run is started with a data folder relative to here
    settings.update(
        dataset="lastfm_star",
        data_dir=os.path.relpath(real_data_dir, tmp_path),
        ranker="uniform+profile",
        steps=64,
        eval_every=0,
        baselines=["ask-4"],
    )
    config = tmp_path / "lfs.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = runner.invoke(
        app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "l"]
    )
    assert result.exit_code == 0, result.output
    command = card_command(tmp_path / "l")
    assert f"--dataset lastfm_star --data-dir {real_data_dir.resolve()}" in command
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the pasted command works from another folder
    result = runner.invoke(app, [*shlex.split(command)[1:], "-o", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert read_episodes(tmp_path / "again") == read_episodes(tmp_path / "l" / TEST_DIR / TRAINED_TEST)
    # without --dataset and --data-dir: the run's own (it evaluated the persona world, and refused the run)
    bare = shlex.split(command)[1:]
    for option in ("--dataset", "--data-dir"):
        at = bare.index(option)
        del bare[at : at + 2]
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    result = runner.invoke(app, [*bare, "-o", str(tmp_path / "bare")])
    assert result.exit_code == 0, result.output
    assert read_episodes(tmp_path / "bare") == read_episodes(tmp_path / "l" / TEST_DIR / TRAINED_TEST)
    named = runner.invoke(app, [*bare, "-d", "lastfm_star", "-o", str(tmp_path / "named")])  # its own
    assert named.exit_code == 0, named.output
    assert read_episodes(tmp_path / "named") == read_episodes(tmp_path / "bare")
    # the run's config.yaml records the data folder absolute, and the card's replay names it absolute,
    # so both replay from here
    assert RunRecord.read(tmp_path / "l").settings.data_dir == str(real_data_dir.resolve())
    card = flat((tmp_path / "l" / "MODEL_CARD.md").read_text())
    assert f"crs train --config {tmp_path / 'l' / 'config.yaml'} --name" in card


def test_a_world_of_custom_sizes_is_said_to_be_beyond_crs_eval_instead_of_a_failing_command(tmp_path) -> None:
    run_training(tiny_settings(steps=64, baselines=["ask-4"]), name="c", runs_dir=tmp_path, show=False)
    card = flat((tmp_path / "c" / "MODEL_CARD.md").read_text())
    assert "crs eval --policy" not in card
    assert "`crs eval` cannot evaluate it again: it was trained on a persona world of custom sizes" in card
    assert not [command for command in next_commands(tmp_path / "c") if command.startswith("crs eval")]


# ------------------------------------------------------------------ a resume with changed settings
def test_a_run_resumed_with_changed_settings_records_its_phases_and_says_replaying_differs(tmp_path) -> None:
    run_training(tiny_settings(steps=64, baselines=["ask-4"]), name="f", runs_dir=tmp_path, show=False)
    ppo = {"learning_rate": 3e-4}
    run_training(None, name="f", runs_dir=tmp_path, resume=True, steps=128, ppo=ppo, show=False)
    run = tmp_path / "f"
    record = RunRecord.read(run)
    assert [(p.start, p.steps, p.changed) for p in record.phases] == [
        (0, 64, {}),
        (64, 128, {"ppo.learning_rate": [2e-4, 3e-4]}),  # 2e-4: the persona world's recipe
    ]
    card = flat((run / "MODEL_CARD.md").read_text())
    assert "Train it again with the same settings" not in card
    assert "1. steps 0 to 64; 2. steps 64 to 128 with ppo.learning_rate 0.0003 (was 0.0002)" in card
    assert "does not reproduce this run" in card
    # a plain resume adds a phase without changes; a replayed config.yaml starts a run of one phase
    run_training(None, name="f", runs_dir=tmp_path, resume=True, steps=192, show=False)
    assert [(p.start, p.changed) for p in RunRecord.read(run).phases][-1] == (128, {})
    replay = ["train", "--config", str(run / "config.yaml"), "--runs-dir", str(tmp_path), "--name", "g"]
    result = runner.invoke(app, [*replay, "--steps", "64"])
    assert result.exit_code == 0, result.output
    assert "resumed with changed settings" in flat(result.output)  # the replay says it differs
    assert [(p.start, p.steps, p.changed) for p in RunRecord.read(tmp_path / "g").phases] == [(0, 64, {})]


def test_where_the_envs_run_is_no_change_of_settings() -> None:
    from crs.app.run_folder import changed_settings
    from crs.app.settings import make_settings

    before = make_settings({"ppo": {"subprocess": False}})
    after = make_settings({"ppo": {"subprocess": True, "learning_rate": 3e-4}})  # `--in-process` undone
    assert changed_settings(before, after) == {"ppo.learning_rate": [2e-4, 3e-4]}


def test_a_finished_run_resumed_without_steps_is_refused_and_one_stopped_while_testing_is_tested(
    tmp_path,
) -> None:
    """A plain --resume of a run that trained its budget and was tested has nothing to do: refused,
    every file as it was (it re-tested, zeroed the summary's speed and added a phase "128 to 128"). One
    stopped while testing (no summary.json) is tested and gains no phase."""
    run_training(tiny_settings(steps=64, baselines=["ask-4"]), name="f", runs_dir=tmp_path, show=False)
    run = tmp_path / "f"
    before = {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}
    result = runner.invoke(app, ["train", "--name", "f", "--runs-dir", str(tmp_path), "--resume"])
    assert result.exit_code == 2, result.output
    assert (
        "has finished: it trained its 64 steps and was tested (summary.json); to train more, resume with "
        "--steps above 64 (e.g. --steps 128)" in flat(result.output)
    )
    assert {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()} == before

    (run / "summary.json").unlink()  # as a kill while testing leaves it
    run_training(None, name="f", runs_dir=tmp_path, resume=True, show=False)
    assert (run / "summary.json").is_file()
    assert [(p.start, p.steps) for p in RunRecord.read(run).phases] == [(0, 64)]


def test_the_card_says_where_an_interrupted_session_stopped() -> None:
    from crs.app.run_folder import _phases_text

    record = RunRecord(
        settings=tiny_settings(steps=256),
        name="i",
        versions={},
        written="",
        phases=(RunPhase(0, 256, {}), RunPhase(64, 256, {})),
    )
    text = flat(_phases_text(record, 256))
    assert "1. steps 0 to 64 (stopped; its budget was 256); 2. steps 64 to 256." in text


def test_a_run_on_the_data_folder_of_crs_data_dir_records_it_and_resumes_where_the_data_lies(
    real_data_dir, tmp_path, monkeypatch
) -> None:
    """A run given its data by $CRS_DATA_DIR records that folder (it resumed only with the variable set,
    and --data-dir was refused with --resume); --resume --data-dir finds data that moved, and refuses
    data other than the run's (policy.json's catalogue fingerprint)."""
    from crs.app.settings import make_settings

    settings = {k: v for k, v in TINY.items() if k != "world"}
    settings.update(dataset="lastfm_star", ranker="popularity", steps=64, eval_every=0, baselines=["ask-4"])
    monkeypatch.setenv(DATA_DIR_ENV, str(real_data_dir))
    printed = runner.invoke(app, ["train", "--dataset", "lastfm_star", "--print-config"])
    assert printed.exit_code == 0, printed.output  # what the run records, not data_dir: null
    assert yaml.safe_load(printed.output)["data_dir"] == str(real_data_dir.resolve())
    run_training(make_settings(settings), name="e", runs_dir=tmp_path, show=False)
    run = tmp_path / "e"
    assert RunRecord.read(run).settings.data_dir == str(real_data_dir.resolve())
    assert f"--data-dir {real_data_dir.resolve()}" in card_command(run)

    monkeypatch.delenv(DATA_DIR_ENV)
    moved = tmp_path / "moved"
    shutil.copytree(real_data_dir / "lastfm_star", moved / "lastfm_star")
    resume = ["train", "--name", "e", "--runs-dir", str(tmp_path), "--resume", "--steps", "128"]
    monkeypatch.chdir(tmp_path)  # a relative --data-dir is recorded absolute, as a new run records it
    result = runner.invoke(app, [*resume, "--data-dir", "moved"])
    assert result.exit_code == 0, result.output
    record = RunRecord.read(run)
    assert record.settings.data_dir == str(moved) and record.phases[-1].changed == {}  # no change of settings

    meta = json.loads((run / "policy.json").read_text())
    (run / "policy.json").write_text(json.dumps({**meta, "fingerprint": "0" * len(meta["fingerprint"])}))
    result = runner.invoke(app, [*resume[:-1], "192"])
    assert result.exit_code == 2, result.output
    assert "trained on other lastfm_star data than" in flat(result.output)
    assert "resume with --data-dir naming the data it trained on" in flat(result.output)
