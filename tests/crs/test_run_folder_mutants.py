"""The run folder's files, the training settings and the safe YAML reader checked against rules worked
out by hand: summaries and their sessions block read back field by field, the bounds of every recorded
integer, the test's swap after a stop, a config.yaml without settings, phases and the model card, each
settings range and default, and the alias limit at its edge."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.run_folder import (
    EPISODES_FILE,
    RUN_CONFIG,
    SUMMARY_FILE,
    TEST_DIR,
    CurveFile,
    EvalSummary,
    RunPhase,
    RunRecord,
    SessionRow,
    SessionsSummary,
    TrainSummary,
    eval_blocker,
    eval_command,
    read_episodes,
    write_model_card,
    write_test_folders,
)
from crs.app.settings import MAX_SEED, MIN_DEFAULT_ENVS, make_settings, recorded_settings
from crs.cli import app
from crs.yaml_safe import MAX_VALUES, safe_load_unique
from envs.metrics import EpisodeRecord, MetricSummary
from policies.pretrain.config import ARTIFACT_VERSION, CONFIG_FILE
from policies.rankers import PRETRAIN_DIR
from simulators.errors import CRSError

RECORD = EpisodeRecord(
    goal_index=0, user=3, targets=(7,), success=True, agent_actions=2, rank=1, total_reward=1.0
)
BASE = {
    "policy": "ask-4",
    "dataset": "persona_world",
    "split": "test",
    "episodes": 1,
    "seed": 0,
    "max_turns": 15,
}


def metric(mean: float, low: float, high: float) -> MetricSummary:
    return MetricSummary(mean, low, high)


def sessions_block(sessions: int = 3) -> dict[str, Any]:
    """A `crs eval --sessions` block of `sessions` sessions, every summary distinct from the others."""
    rows = [
        SessionRow(
            session=s,
            episodes=4,
            metrics={"SR@15": metric(0.5 + s / 100, 0.25 + s / 100, 0.75 + s / 100)},
            tracking=metric(0.6 + s / 100, 0.4, 0.8),
            dominant_tracking=metric(0.3 + s / 100, 0.1, 0.5),
            active_is_dominant=0.25 * s,
            last_time=None if s == 0 else metric(0.2 + s / 100, 0.05, 0.45),
        )
        for s in range(sessions)
    ]
    block = SessionsSummary(
        regime="switch",
        sessions=sessions,
        sequences=4,
        memory="update",
        rule={"step": 0.5},
        rows=tuple(rows),
        after_change={"SR@15": metric(0.45, 0.35, 0.55)},
        after_change_episodes=6,
        tracking_after_change=metric(0.71, 0.61, 0.81),
        dominant_tracking_after_change=metric(0.52, 0.42, 0.62),
        last_time_after_change=metric(0.33, 0.23, 0.43),
    )
    return block.to_dict()


def eval_folder(folder: Path, summary: dict[str, Any], lines: list[dict[str, Any]] | None = None) -> Path:
    """A `crs eval` folder holding `summary` and `lines` (one `RECORD` when None) as episodes.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_FILE).write_text(json.dumps(summary))
    lines = [RECORD.to_dict()] if lines is None else lines
    (folder / EPISODES_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


# ---------------------------------------------------------------------------------- summaries


def test_a_sessions_summary_reads_back_field_by_field(tmp_path: Path) -> None:
    """Guards against a field of the sessions block or of a summary read from another key or dropped:
    low and high swapped, a row's last_time read as its tracking, the dominant tracking after the change
    read as the tracking, the sessions after the change counted as 0."""
    summary = EvalSummary.from_dict({**BASE, "episodes": 12, "sessions": sessions_block(3)})
    summary = EvalSummary(**{**vars(summary), "metrics": {"SR@15": metric(0.5, 0.4, 0.6)}})
    summary.write(tmp_path)
    again = EvalSummary.read(tmp_path)
    assert again == summary
    assert again.metrics["SR@15"].low == 0.4 and again.metrics["SR@15"].high == 0.6
    block = again.sessions
    assert block is not None and block.after_change_episodes == 6
    assert block.rows[0].last_time is None and block.rows[2].last_time == metric(0.22, 0.05, 0.45)
    assert block.rows[1].tracking == metric(0.61, 0.4, 0.8)
    assert block.tracking_after_change == metric(0.71, 0.61, 0.81)
    assert block.dominant_tracking_after_change == metric(0.52, 0.42, 0.62)


def test_a_summary_of_an_older_version_gets_the_documented_defaults(tmp_path: Path) -> None:
    """Guards against wrong defaults for keys older files lack: the policy spec is the policy, the order
    "seeded", the ranker label the ranker alone; a trained policy's label names its run's ranker."""
    old = EvalSummary.from_dict(dict(BASE))
    assert old.policy_spec == "ask-4" and old.order == "seeded" and old.sessions is None
    assert old.ranker_label == ""
    trained = EvalSummary.from_dict({**BASE, "ranker": "run", "run_ranker": "uniform+pop"})
    assert trained.ranker_label == "run (uniform+pop)"


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [("max_turns", 2, True), ("max_turns", 1, False), ("max_turns", 100, True), ("max_turns", 101, False)],
)
def test_a_summary_s_turn_limit_is_read_within_the_turn_limits_crs_eval_takes(
    key: str, value: int, ok: bool
) -> None:
    """Guards against an off-by-one at either end of the turn limits `crs eval --max-turns` takes (2 to
    100): a summary of T = 2 or T = 100 is one crs eval wrote."""
    data = {**BASE, key: value}
    if ok:
        assert EvalSummary.from_dict(data).max_turns == value
    else:
        with pytest.raises(CRSError, match=rf"\[{key}\] = {value} must be an integer between 2 and 100"):
            EvalSummary.from_dict(data)


def test_a_sessions_block_of_no_session_is_refused() -> None:
    """Guards against reading ``sessions: 0`` (no session was played: not a file crs eval writes)."""
    with pytest.raises(CRSError, match=r"\[sessions\] \[sessions\] = 0 must be an integer >= 1"):
        EvalSummary.from_dict({**BASE, "sessions": {**sessions_block(1), "sessions": 0}})
    assert EvalSummary.from_dict({**BASE, "sessions": sessions_block(1)}).sessions.sessions == 1


def train_summary_data(**changes: Any) -> dict[str, Any]:
    """A run's summary.json of a finished run, as a mapping."""
    summary = TrainSummary(
        name="r",
        dataset="persona_world",
        ranker="popularity",
        timesteps=128,
        train_seconds_this_session=3.0,
        steps_per_second=40.0,
        envs=2,
        env_processes=0,
        test_episodes=10,
        best_valid={"SR@15": 0.5, "hDCG": 0.25},
        test={"RL (r)": {"SR@15": metric(0.5, 0.3, 0.7), "AT": metric(9.0, 8.0, 10.0)}},
        conversations_per_second={"RL (r)": 100.0},
        setting="binary",
    )
    return {**summary.to_dict(), **changes}


def test_a_train_summary_of_an_older_run_without_its_setting_reads(tmp_path: Path) -> None:
    """Guards against requiring the keys that have defaults: runs from before the setting was recorded
    have no ``setting``, which reads as ""."""
    data = train_summary_data()
    del data["setting"]
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(data))
    summary = TrainSummary.read(tmp_path)
    assert summary.setting == "" and summary.test["RL (r)"]["AT"] == metric(9.0, 8.0, 10.0)


def test_a_train_summary_whose_test_is_no_mapping_is_refused_by_name(tmp_path: Path) -> None:
    """Guards against dropping the check of ``test``: a list there raised a bare AttributeError."""
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(train_summary_data(test=[1, 2])))
    with pytest.raises(CRSError, match=r"\[test\] is corrupt: expected label -> metrics"):
        TrainSummary.read(tmp_path)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"timesteps": "lots"}, r"\[timesteps\] = 'lots' must be an integer >= 0"),
        ({"timesteps": 128.5}, r"\[timesteps\] = 128.5 must be an integer >= 0"),
        ({"envs": True}, r"\[envs\] = True must be an integer >= 0"),
        ({"test_episodes": -1}, r"\[test_episodes\] = -1 must be an integer >= 0"),
        ({"best_valid": None}, r"is corrupt \(AttributeError"),
        ({"steps_per_second": "fast"}, r"is corrupt \(ValueError"),
        ({"conversations_per_second": {"RL (r)": [1]}}, r"is corrupt \(TypeError"),
    ],
    ids=["text-steps", "fraction-steps", "true-envs", "negative-episodes", "null-valid", "text-rate", "list"],
)
def test_a_train_summary_of_values_of_the_wrong_type_is_refused_by_name(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    """A summary.json whose values are not what `crs train` writes is refused when read, naming the file
    and the key (guards against passing the values through unread: ``"timesteps": "lots"`` then failed
    later as a bare TypeError in `crs sweep --extend`'s step comparison or the report's ``{:,}``)."""
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(train_summary_data(**changes)))
    with pytest.raises(CRSError, match=named) as raised:
        TrainSummary.read(tmp_path)
    assert str(tmp_path / SUMMARY_FILE) in str(raised.value)
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(train_summary_data()))
    assert TrainSummary.read(tmp_path).timesteps == 128


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_turns", 14.9), ("max_turns", "5"), ("seed", True)],
    ids=["fraction", "text", "true"],
)
def test_a_count_that_is_no_integer_is_refused_not_truncated(key: str, value: object) -> None:
    """A summary's turn limit of 14.9 or "5", or a seed of true, is refused as no integer (guards against
    reading it as int(value): 14, 5 and 1 were taken, though the message says "must be an integer")."""
    with pytest.raises(CRSError, match=rf"\[{key}\] = .* must be an integer"):
        EvalSummary.from_dict({**BASE, key: value})


# ---------------------------------------------------------------------------------- episodes


@pytest.mark.parametrize(
    ("change", "bad"),
    [
        ({"agent_actions": 14}, None),
        ({"agent_actions": 15}, "agent_actions"),
        ({"rank": 1}, None),
        ({"rank": 0}, "rank"),
        ({"goal_index": 0}, None),
        ({"goal_index": -1}, "goal_index"),
    ],
)
def test_a_record_is_read_only_within_what_a_conversation_ends_with(
    tmp_path: Path, change: dict[str, int], bad: str | None
) -> None:
    """Guards against off-by-ones in the record checks: at T = 15 the agent acts 1 to 14 times (the
    opening is turn 1), a slate rank is 1-based, a goal index is >= 0."""
    folder = eval_folder(tmp_path / "e", BASE, [{**RECORD.to_dict(), **change}])
    summary = EvalSummary.read(folder)
    if bad is None:
        (record,) = read_episodes(folder, summary)
        key = next(iter(change))
        assert getattr(record, key) == change[key]
    else:
        with pytest.raises(CRSError, match=rf"line 1 \[{bad}\] = {change[bad]} must be an integer"):
            read_episodes(folder, summary)


def test_blank_lines_of_episodes_jsonl_are_skipped(tmp_path: Path) -> None:
    """Guards against reading a blank line (one an editor leaves) as a corrupt record."""
    second = {**RECORD.to_dict(), "goal_index": 1}
    folder = eval_folder(tmp_path / "e", BASE)
    (folder / EPISODES_FILE).write_text(json.dumps(RECORD.to_dict()) + "\n\n  \n" + json.dumps(second) + "\n")
    assert [r.goal_index for r in read_episodes(folder, EvalSummary.read(folder))] == [0, 1]


def session_lines(last: int, **extra: Any) -> list[dict[str, Any]]:
    """One record per session 0..`last`, each carrying its session index and `extra`."""
    return [{**RECORD.to_dict(), "goal_index": s, "session": s, **extra} for s in range(last + 1)]


def test_the_session_indices_of_records_must_end_at_the_summary_s_last_session(tmp_path: Path) -> None:
    """Guards against the session checks: with S = 3 sessions the records carry sessions 0..2, ending at
    2; a record of session 3, or records that stop at session 1, do not belong with the summary; the
    change session runs from 0 to S (S: no change)."""
    summary = {**BASE, "episodes": 3, "sessions": sessions_block(3)}
    good = eval_folder(tmp_path / "good", summary, session_lines(2, change_session=3))
    assert len(read_episodes(good, EvalSummary.read(good))) == 3
    past = eval_folder(tmp_path / "past", summary, session_lines(3))
    with pytest.raises(CRSError, match=r"line 4 \[session\] = 3 must be an integer between 0 and 2"):
        read_episodes(past, EvalSummary.read(past))
    short = eval_folder(tmp_path / "short", summary, session_lines(1))
    with pytest.raises(CRSError, match=r"= 3 but the last session of .* is 1 \(the files do not belong"):
        read_episodes(short, EvalSummary.read(short))
    change = eval_folder(tmp_path / "change", summary, session_lines(2, change_session=4))
    with pytest.raises(CRSError, match=r"\[change_session\] = 4 must be an integer between 0 and 3"):
        read_episodes(change, EvalSummary.read(change))


def test_a_session_index_too_large_for_an_integer_is_refused_by_name(tmp_path: Path) -> None:
    """Guards against letting int()'s OverflowError out of the session check (JSON's ``1e999`` reads as
    infinity): it is named as a bad session index, as the other fields' are."""
    summary = {**BASE, "episodes": 1, "sessions": sessions_block(1)}
    folder = eval_folder(tmp_path / "e", summary, [])
    (folder / EPISODES_FILE).write_text(json.dumps(RECORD.to_dict())[:-1] + ', "session": 1e999}\n')
    with pytest.raises(CRSError, match=r"\[session\] = inf must be an integer between 0 and 0"):
        read_episodes(folder, EvalSummary.read(folder))


# ---------------------------------------------------------------------------------- the test's swap


def one_policy(label: str) -> list[tuple[str, EvalSummary, list[EpisodeRecord]]]:
    """A test comparison of one policy, in folder `label`."""
    return [(label, EvalSummary.from_dict(dict(BASE)), [RECORD])]


def test_a_swap_that_stopped_after_its_renames_is_finished_by_the_next_write(tmp_path: Path) -> None:
    """Guards against the next write failing (or keeping leftovers) after a write killed once both renames
    were done but the old test not yet deleted: ``.tested.old`` is deleted and the new test is swapped in;
    a finished write leaves neither ``.tested.old`` nor ``.tested.partial``."""
    write_test_folders(tmp_path, one_policy("first"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEST_DIR]
    (tmp_path / f".{TEST_DIR}.old" / "ask-4").mkdir(parents=True)  # the killed write's old test
    (tmp_path / f".{TEST_DIR}.old" / "ask-4" / SUMMARY_FILE).write_text("{}")
    write_test_folders(tmp_path, one_policy("second"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEST_DIR]
    assert sorted(p.name for p in (tmp_path / TEST_DIR).iterdir()) == ["second"]


# ---------------------------------------------------------------------------------- config.yaml


def test_a_config_yaml_without_a_settings_mapping_is_refused_by_name(tmp_path: Path) -> None:
    """Guards against reading config.yaml whose ``settings`` is missing or no mapping (a bare TypeError
    came out of the settings): the message names the file and the command that starts the run again."""
    run = tmp_path / "r"
    run.mkdir()
    for text in ("name: r\n", "settings: 3\n", "settings: [1]\n"):
        (run / RUN_CONFIG).write_text(text)
        with pytest.raises(
            CRSError,
            match=r"holds no 'settings' mapping; restore it from a copy .* start the run again with `crs",
        ):
            RunRecord.read(run)


def test_a_damaged_config_yaml_or_phase_entry_is_refused_by_name(tmp_path: Path) -> None:
    """Guards against a bare UnicodeDecodeError from a config.yaml that is not UTF-8, and a bare
    AttributeError from a ``phases`` entry that is no mapping."""
    run = tmp_path / "r"
    run.mkdir()
    (run / RUN_CONFIG).write_bytes(b"settings: {}\nname: \xff\xfe\n")
    with pytest.raises(CRSError, match=r"config\.yaml is damaged \(UnicodeDecodeError\); restore it"):
        RunRecord.read(run)
    # the advice keeps the run first: --overwrite alone, as it was, deletes what the run trained
    (run / RUN_CONFIG).write_text("settings: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(CRSError) as caught:
        RunRecord.read(run)
    said = str(caught.value)
    assert "is damaged (ConstructorError); restore it from a copy to keep the run, or start" in said
    assert said.endswith("--overwrite` (which deletes what it trained)")
    # settings out of range (a shared run's world of 2e9 items): the error named no file
    (run / RUN_CONFIG).write_text("settings: {world: {n_items: 2000000000}}\n")
    with pytest.raises(CRSError, match=r"config\.yaml: bad training settings: world\.n_items: .* restore it"):
        RunRecord.read(run)
    (run / RUN_CONFIG).write_text("settings: {}\nphases: [3]\n")
    with pytest.raises(CRSError, match=r"config\.yaml: bad 'phases' entry"):
        RunRecord.read(run)


def record_of(phases: tuple[RunPhase, ...], name: str = "alpha", **settings: Any) -> RunRecord:
    return RunRecord(
        make_settings({"steps": 128, **settings}), name, {"persona_crs": "9.9"}, "2026-01-01", phases
    )


def test_phases_read_back_in_order_and_say_what_a_resume_changed(tmp_path: Path) -> None:
    """Guards against phases read back with a change's before and after swapped, described the other way
    round, or a run with one changed session not counted as changed; the recorded name is the run's."""
    change = RunPhase(64, 128, {"ppo.learning_rate": [0.001, 0.0003]})
    record = record_of((RunPhase(0, 64, {}), change))
    record.write(tmp_path)
    again = RunRecord.read(tmp_path)
    assert again.phases == record.phases and again.name == "alpha"
    assert again.phases[1].changed == {"ppo.learning_rate": [0.001, 0.0003]}
    assert again.phases[1].describe() == "steps 64 to 128 with ppo.learning_rate 0.0003 (was 0.001)"
    assert again.resumed_with_changes
    assert not record_of((RunPhase(0, 64, {}), RunPhase(64, 128, {}))).resumed_with_changes


def train_summary(ranker: str = "popularity") -> TrainSummary:
    return TrainSummary(
        **{
            **train_summary_data(ranker=ranker),
            "test": {
                "RL (r)": {
                    "SR@15": metric(0.5, 0.3, 0.7),
                    "AT": metric(9.0, 8.0, 10.0),
                    "hDCG": metric(0.2, 0.1, 0.3),
                }
            },
        }
    )


def card(run: Path, record: RunRecord, ranker: str = "popularity", tested_step: int | None = None) -> str:
    run.mkdir(parents=True, exist_ok=True)
    write_model_card(run, record, train_summary(ranker), "the train split", tested_step)
    return " ".join((run / "MODEL_CARD.md").read_text().split())


def test_the_model_card_lists_sessions_only_for_a_resumed_run(tmp_path: Path) -> None:
    """Guards against the card telling of "1 sessions" for a run trained in one, and against the planned
    features said on when no search was asked for."""
    one = card(tmp_path / "one", record_of((RunPhase(0, 128, {}),)))
    assert "sessions (`phases`" not in one and "planned features off" in one
    two = card(tmp_path / "two", record_of((RunPhase(0, 64, {}), RunPhase(64, 128, {}))))
    assert (
        "It was trained in 2 sessions (`phases` in `config.yaml`): 1. steps 0 to 64; 2. steps 64 to 128. "
        "Replaying" in two
    )


def test_the_model_card_says_the_step_of_the_tested_model_and_steps_past_a_budget(tmp_path: Path) -> None:
    """The card said "Tested model: best_model.zip" where the console said "from step 0" (the imitated
    rule, no PPO step kept), and "1. steps 0 to 60; 2. steps 64 to 128": a budget of 60 trained to 64."""
    record = record_of((RunPhase(0, 60, {}), RunPhase(64, 120, {})))  # the summary trained 128 steps
    text = card(tmp_path / "a", record, tested_step=0)
    assert "Tested model: `best_model.zip` from step 0, the copy of `ask-7` before any PPO step (" in text
    assert (
        "1. steps 0 to 64 (its budget of 60 rounded up to whole rollouts); 2. steps 64 to 128 (its budget of "
        "120 rounded up to whole rollouts)."
    ) in text
    later = card(tmp_path / "b", record_of((RunPhase(0, 128, {}),)), tested_step=96)
    assert "Tested model: `best_model.zip` from step 96 (validation" in later


def artifact_config(folder: Path, personas: int, aspect_mode: str) -> Path:
    """A ranker artifact's config.json as `crs pretrain` writes it (what the model card reads of it)."""
    folder.mkdir(parents=True)
    model = {"dim": 8, "personas": personas, "aspect_mode": aspect_mode}
    config = {"kind": "persona_pretrain", "artifact_version": ARTIFACT_VERSION, "model": model, "split": {}}
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "seed": 0}))
    return folder


def test_the_model_card_names_who_pre_trained_the_ranker_and_its_aspect_mode(tmp_path: Path) -> None:
    """Guards against the card calling any ranker artifact the run's own, or every aspect mode
    attention: an artifact outside the run was pre-trained "as", the run's ``ranker/`` by this run."""
    record = record_of((RunPhase(0, 128, {}),))
    artifact = artifact_config(tmp_path / "art", 3, "uniform")
    text = card(tmp_path / "run", record, ranker=str(artifact))
    assert ", pre-trained as: K = 3 personas per user, aspects uniform." in text
    artifact_config(tmp_path / "own" / PRETRAIN_DIR, 2, "attention")
    text = card(tmp_path / "own", record, ranker=str(tmp_path / "own" / PRETRAIN_DIR))
    assert ", pre-trained by this run: K = 2 personas per user, aspect attention." in text


def test_the_evaluation_command_names_the_run_s_user_and_a_setting_other_than_the_default() -> None:
    """Guards against the card's `crs eval` command leaving out ``--user`` (another kind of simulated
    user than the run's) or naming the dataset's own setting and not another one; default user options
    do not stop crs eval from replaying the test."""
    run = Path("/runs/r")
    plain = make_settings({})
    assert eval_blocker(plain) is None
    assert eval_command(run, plain, 10) == "crs eval --policy /runs/r --seed 0 -n 10"
    other = make_settings({"user": "single", "setting": "multiple_choice"})
    assert eval_blocker(other) is None
    assert eval_command(run, other, 10).endswith("-n 10 --setting multiple_choice --user single")
    own = make_settings({"user": "single", "setting": "binary"})  # a single user's own setting
    assert eval_command(run, own, 10).endswith("-n 10 --user single")


# ---------------------------------------------------------------------------------- curve


def test_a_resume_drops_rows_past_the_checkpoint_and_clears_untrusted_flags_on_disk(tmp_path: Path) -> None:
    """Guards against a resume that reports the last evaluated step of a row it dropped (the run would
    skip its next evaluation), or clears the best flag of a row newer than best_model.zip only in memory
    (eval.csv must lose it too, or the next resume and the report trust it again)."""
    fields = ",".join(CurveFile.FIELDS)
    rows = [
        "64,1.0,0.1,0.2,0.3,9.0,0.1,True",
        "128,2.0,0.1,0.2,0.6,8.0,0.2,True",
        "192,3.0,0.1,0.2,0.9,7.0,0.3,True",
    ]
    (tmp_path / "eval.csv").write_text(fields + "\n" + "\n".join(rows) + "\n")
    best, last = CurveFile(tmp_path).resume_at(128, 64)
    assert best == (0.3, 0.1) and last == 128
    kept = CurveFile(tmp_path).rows()
    assert [(row["timesteps"], row["best"]) for row in kept] == [(64.0, True), (128.0, False)]
    jsonl = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [(row["timesteps"], row["best"]) for row in jsonl] == [(64, True), (128, False)]


def test_a_curve_row_cut_short_by_a_kill_is_named(tmp_path: Path) -> None:
    """Guards against a bare TypeError from eval.csv whose last row a kill cut short (its missing
    columns read as None): the message names the file and says how to resume without it."""
    fields = ",".join(CurveFile.FIELDS)
    (tmp_path / "eval.csv").write_text(fields + "\n64,1.0,0.1,0.2,0.3,9.0,0.1,True\n128,2.0,0.1\n")
    with pytest.raises(
        CRSError, match=r"eval\.csv is damaged .*; delete it to resume without the earlier curve"
    ):
        CurveFile(tmp_path).rows()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            ",".join(CurveFile.FIELDS) + "\n64,1.0,0.1,0.2,0.3,9.0,0.1,True,zz\n",
            "line 2 has another number of fields than the header",
        ),
        ("timesteps,sec\n1,2\n", "its header has no seconds, SR@5, SR@10, SR@15, AT, hDCG, best"),
        (",".join(CurveFile.FIELDS) + "\n64,1.0,0.1,0.2,zz,9.0,0.1,True\n", "could not convert string"),
    ],
)
def test_a_damaged_curve_is_named_in_a_report_with_the_reports_own_fix(
    tmp_path: Path, text: str, reason: str
) -> None:
    """`crs report` of a run whose eval.csv is damaged names the file and the fault in words, and a fix
    for the report (it showed a KeyError traceback for a header without the metrics, Python internals for
    an extra field, and the resume's fix, "delete it to resume")."""
    run = tmp_path / "run"
    run.mkdir()
    RunRecord(settings=make_settings({}), name="run", versions={}, written="").write(run)
    (run / "eval.csv").write_text(text)
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"eval.csv is damaged ({reason}" in message
    assert "move it out of the run to report the run without its learning curve" in message


# ---------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "data",
    [
        {"user_kwargs": {"noise": 0.0, "patience": 1, "drift": 1.0}},
        {"seed": MAX_SEED, "world_seed": MAX_SEED},
        {"eval_every": 0},
        {"ppo": {"gamma": 1}},  # an int where a float goes, as YAML writes 1
    ],
)
def test_settings_at_the_ends_of_their_documented_ranges_are_taken(data: dict[str, Any]) -> None:
    """Guards against an off-by-one at a range's inclusive end (noise and drift in [0, 1], patience >= 1,
    seeds up to 2**32 - 1, eval_every 0 = only the final evaluation) and against refusing an integer for
    a float."""
    settings = make_settings(data)
    for block, value in data.items():
        got = getattr(settings, block)
        if isinstance(value, dict):
            for key, inner in value.items():
                assert (got[key] if isinstance(got, dict) else getattr(got, key)) == inner
        else:
            assert got == value
    assert isinstance(settings.ppo.gamma, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"world": {"n_users": 0}}, r"world\.n_users: Input should be greater than or equal to 1"),
        ({"seed": MAX_SEED + 1}, r"seed: Input should be less than or equal to 4294967295"),
        ({"ppo": {"ent_coef": float("inf")}}, r"ppo\.ent_coef=inf must be a finite number"),
        ({"rewards": {"quit_at_limt": -1.0}}, r"unknown reward\(s\) quit_at_limt"),
    ],
)
def test_settings_out_of_range_are_refused(data: dict[str, Any], message: str) -> None:
    """Guards against a range check, the finite-number check or the reward names dropped."""
    with pytest.raises(CRSError, match=message):
        make_settings(data)


def test_a_block_s_unknown_key_a_search_outside_yes_no_and_imitation_null() -> None:
    """Guards against a misspelt ``ppo`` key passing as a bare TypeError (or at all), a search over
    yes/no answers trained in another setting, ``imitation: null`` not turning the recipe's imitation
    off (it trains from scratch), and a temperature fit asked for without the search it fits."""
    with pytest.raises(CRSError, match=r"ppo: unknown key\(s\) n_epoch; known: n_steps"):
        make_settings({"ppo": {"n_epoch": 3}})
    with pytest.raises(
        CRSError, match=r"plan_depth=2 searches yes/no answers, but persona_world trains in the "
    ):
        make_settings({"wrapper": {"plan_depth": 2}})
    assert make_settings({"wrapper": {"plan_depth": 2}, "setting": "binary"}).wrapper.plan_depth == 2
    assert make_settings({"imitation": None}).imitation is None
    with pytest.raises(
        CRSError, match=r"fit_plan_temperature fits the belief of the search that wrapper\.plan_depth"
    ):
        make_settings({"fit_plan_temperature": True, "setting": "binary"})


def test_a_relative_data_dir_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against recording ``data_dir`` as given: a run's config.yaml must replay from any folder."""
    monkeypatch.chdir(tmp_path)
    settings = make_settings({"dataset": "lastfm", "data_dir": "data"})
    assert settings.data_dir == str(tmp_path.resolve() / "data")


def test_the_world_recipe_applies_without_a_dataset_key_and_caps_imitation_at_the_steps() -> None:
    """Guards against the world recipe skipped when ``dataset`` is left out (the persona world is the
    default), its rewards block dropped, and its imitation not capped at the run's steps (a short run
    would be all copying); a given imitation step count wins over the cap."""
    settings = make_settings({"steps": 100})
    assert settings.imitation is not None and settings.imitation.steps == 100
    assert settings.rewards == {"ask_rejected": 0.0, "quit_at_limit": -1.0}
    assert settings.ppo.gamma == 1.0 and settings.wrapper.n_questions == 1
    assert make_settings({"steps": 100, "imitation": {"steps": 500}}).imitation.steps == 500


def test_machine_defaults_give_at_least_eight_envs_and_no_slate_cap_on_real_data() -> None:
    """Guards against fewer than eight default envs on a small machine, the RL config ignoring the
    settings' envs, and real data's users (who never leave) getting the world's slate cap."""
    settings = make_settings({})
    assert settings.envs == max(os.cpu_count() or 1, MIN_DEFAULT_ENVS)
    assert settings.wrapper.max_slates_in_a_row == settings.user_kwargs.patience
    assert make_settings({"envs": 3}).rl_config().n_envs == 3
    assert make_settings({"dataset": "lastfm"}).wrapper.max_slates_in_a_row is None


def test_the_ranker_ablation_follows_each_switch() -> None:
    """Guards against the pre-trained ranker's switches or the variant check reading one attention for
    the other."""
    no_persona = make_settings({"persona_attention": False})
    assert no_persona.ranker_switches() == {"personas": 1}
    assert no_persona.ranker_matches_variant((False, True)) and not no_persona.ranker_matches_variant(
        (True, False)
    )
    assert make_settings({"aspect_attention": False}).ranker_switches() == {"aspect_mode": "uniform"}


def test_a_recorded_run_keeps_its_recorded_ablate_ranker() -> None:
    """Guards against old runs' default (``ablate_ranker: false``) overriding a value the run recorded."""
    assert recorded_settings({"ablate_ranker": True, "setting": "binary"})["ablate_ranker"] is True
    assert recorded_settings({"setting": "binary"})["ablate_ranker"] is False


# ---------------------------------------------------------------------------------- yaml


def aliased_document(pad: int, extra: int) -> tuple[str, int]:
    """A document that aliases expand to a known number of values, with its count worked out by hand:
    the document 1, key ``a`` 1, its list 1 + 999, key ``b`` 1, its list 1 + `extra` scalars + 998
    aliases of ``a``'s 1000 values, 2 per padding entry."""
    text = "a: &a [" + ", ".join(["x"] * 999) + "]\n"
    text += "b: [" + ", ".join(["*a"] * 998 + ["y"] * extra) + "]\n"
    text += "".join(f"p{i}: 0\n" for i in range(pad))
    return text, 1 + 1 + 1000 + 1 + 1 + extra + 998 * 1000 + 2 * pad


def test_a_document_of_exactly_the_value_limit_reads() -> None:
    """Guards against refusing a document at the limit: only one beyond MAX_VALUES is refused."""
    text, size = aliased_document(pad=498, extra=0)
    assert size == MAX_VALUES
    loaded = safe_load_unique(text)
    assert len(loaded["b"]) == 998 and len(loaded) == 500
    text, size = aliased_document(pad=498, extra=1)
    assert size == MAX_VALUES + 1
    with pytest.raises(yaml.YAMLError, match=f"expands to {MAX_VALUES + 1:,} values"):
        safe_load_unique(text)
