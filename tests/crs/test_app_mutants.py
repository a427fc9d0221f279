"""Returning-user evaluation, `crs eval` and `crs train` checked against rules recomputed by hand: what
the tracking compares (the matched active and dominant personas), frozen memory's tracking, the pairing
and hashing of the sessions played, and the refusals of a run that does not fit."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from crs.app.run_folder import EvalSummary
from crs.app.sessions import (
    SessionPolicyError,
    conversations_of,
    evaluate_returning,
    match_personas,
    paired_after_change,
    run_session_evaluation,
    users_note,
)
from crs.cli import app
from envs.metrics import bootstrap_ci
from policies.rl import RLConfig
from policies.rl.run_files import PolicyMeta
from simulators.errors import CRSError
from simulators.returning import returning_sequences
from tests.crs.test_sessions_eval import SESSIONS, ranker, run, runner, session_record, world


def test_tracking_names_the_matched_active_and_dominant_persona_of_each_session() -> None:
    """Guards against tracking the wrong truth: the active slot is the ranker's match of the session's
    drawn persona, the dominant slot the match of the mixture's largest persona, and
    ``active_is_dominant`` whether the two true personas are the same."""
    result = run("update")
    matched = match_personas(ranker(), world())
    flags = []
    for t in result.tracking:
        sequence = result.sequences[t.sequence]
        user, mixture = sequence.user, sequence.mixtures[t.session]
        largest = max(range(len(mixture)), key=lambda k: mixture[k])
        true_active = int(sequence.active[t.session])
        assert t.active == matched[user, true_active]
        assert t.dominant == matched[user, largest]
        assert t.active_is_dominant == (true_active == largest)
        flags.append(t.active_is_dominant)
    assert any(flags) and not all(flags)  # both cases occur, so a flipped rule would show
    for row in result.summary.rows:
        mine = [flag for t, flag in zip(result.tracking, flags, strict=True) if t.session == row.session]
        assert row.active_is_dominant == pytest.approx(sum(mine) / len(mine))


def test_frozen_memory_reports_the_tracking_of_the_rankers_prior() -> None:
    """Guards against dropping the tracking of memory "frozen" (only the oracle, handed the truth, has
    none): frozen is the prior-only baseline the update's tracking is read against."""
    result = run("frozen")
    matched = match_personas(ranker(), world())
    assert len(result.summary.rows) == SESSIONS
    for row in result.summary.rows:
        hits = []
        for sequence in result.sequences:
            user = sequence.user
            believed = int(np.argmax(ranker().log_prior[user]))
            hits.append(believed == matched[user, int(sequence.active[row.session])])
        assert row.tracking is not None and row.dominant_tracking is not None
        assert row.tracking.mean == pytest.approx(sum(hits) / len(hits))
    assert result.summary.tracking_after_change is not None


def test_paired_after_change_refuses_runs_with_other_targets_in_the_same_sessions() -> None:
    """Guards against pairing two runs by (sequence, session) alone: runs of other targets (another seed
    or split) played other conversations and must not be differenced."""
    a = [session_record(0, s, True, 1) for s in range(3)]
    b = [dataclasses.replace(session_record(1, s, True, 1), sequence=0) for s in range(3)]  # targets 10 + s
    assert [(r.sequence, r.session) for r in a] == [(r.sequence, r.session) for r in b]
    with pytest.raises(CRSError, match="different sessions"):
        paired_after_change(a, b)
    difference, n = paired_after_change(a, a)
    assert n == 1 and difference.mean == 0.0


def test_the_conversations_hash_names_the_split_regime_and_seed() -> None:
    """Guards against a hash that leaves out the split, regime or seed: runs that differ in any of
    them are not the same sessions, and a report must not pair them."""
    sequences = run("update").sequences
    same = conversations_of(sequences, "test", "switch", 2)
    others = [
        conversations_of(sequences, "valid", "switch", 2),
        conversations_of(sequences, "test", "stable", 2),
        conversations_of(sequences, "test", "switch", 3),
    ]
    assert len({same, *others}) == 4


def test_a_run_of_another_world_seed_is_refused_with_sessions(tmp_path: Path) -> None:
    """Guards against playing a run trained on another persona world: its users and items are other
    ones, so `crs eval --sessions` given another world seed refuses it before the output folder is
    claimed, naming the run's (without --world-seed it plays the run's world)."""
    run_dir = tmp_path / "world-run"
    run_dir.mkdir()
    PolicyMeta(catalog="persona_world", ranker="popularity", rl=RLConfig(), world_seed=5).write(run_dir)
    args = ["eval", "-p", str(run_dir), "--world-seed", "0", "--sessions", "3", "--regime", "switch"]
    args += ["--memory", "update"]
    result = runner.invoke(app, [*args, "-n", "2", "-o", str(tmp_path / "x")])
    message = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "pass --world-seed 5" in message, result.output
    assert not (tmp_path / "x").exists()


def test_the_summary_counts_sequences_not_distinct_users() -> None:
    """Guards against counting distinct users as the sequences played: a user drawn twice plays two
    sequences, and the per-session rows hold one session of each."""
    result = evaluate_returning(
        world(), ranker(), "ask-2", regime="stable", sessions=2, sequences=50, memory="frozen", seed=1
    )  # 50 sequences over 40 users: some user is drawn twice
    assert len({s.user for s in result.sequences}) < 50
    assert result.summary.sequences == 50
    assert [row.episodes for row in result.summary.rows] == [50, 50]


def test_one_user_drawn_twice_is_noted() -> None:
    """Guards against an off-by-one in the repeated-user note: one repeat among the sequences is already
    a user who plays two independent histories."""
    drawn = returning_sequences(world(), 60, 2, "stable", np.random.default_rng(0))
    distinct = list({sequence.user: sequence for sequence in drawn}.values())[:5]
    (note,) = users_note([*distinct, distinct[0]], 6, 2, "test")
    assert "6 returning-user sequences drew 5 distinct users" in note


def test_seed_0_is_a_run_seed_and_a_negative_one_is_refused() -> None:
    """Guards against refusing seed 0 (SessionSpec and `crs eval` take 0): a run with seed 0 gets past
    the seed check to the next one (here: no persona ranker), a negative seed does not."""
    options = {"policy": "ask-2", "ranker": None, "regime": "switch", "sessions": 3, "sequences": 2}
    with pytest.raises(SessionPolicyError, match="needs a persona ranker"):
        run_session_evaluation(**options, memory="update", seed=0, show_progress=False)
    with pytest.raises(CRSError, match="--seed -1 must lie in 0-"):
        run_session_evaluation(**options, memory="update", seed=-1, show_progress=False)


@pytest.mark.parametrize("regime", ["drift", "new"])
def test_real_data_refuses_a_regime_that_needs_the_worlds_truth(tmp_path: Path, regime: str) -> None:
    """Guards against playing a regime on real data that only the persona world's generative truth can
    build: it is refused, naming the regimes real data has, before any data is read."""
    with pytest.raises(CRSError, match=f"--regime {regime} needs the persona world's generative truth"):
        run_session_evaluation(
            policy="ask-2", ranker=None, regime=regime, sessions=3, sequences=2, memory="update", seed=1,
            dataset="lastfm_star", data_dir=str(tmp_path), out=tmp_path / "out", show_progress=False,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_sessions_of_the_valid_split_draw_their_targets_from_it() -> None:
    """Guards against drawing the sequences from the test split whatever ``split`` says: a valid-split
    evaluation plays the documented valid draw of its seed, and each session's conversation is about
    its sequence's target."""
    result = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=SESSIONS, sequences=12, memory="frozen", seed=2,
        split="valid",
    )  # fmt: skip
    valid = returning_sequences(world(), 12, SESSIONS, "switch", np.random.default_rng(2), "valid")
    test = returning_sequences(world(), 12, SESSIONS, "switch", np.random.default_rng(2), "test")
    assert [s.goals for s in result.sequences] == [s.goals for s in valid] != [s.goals for s in test]
    for record in result.records:
        assert record.episode.targets == result.sequences[record.sequence].goals[record.session].targets


def test_last_time_and_dominant_tracking_after_the_change_resample_whole_users() -> None:
    """Guards against a bootstrap over sessions where one user's several sessions after the change are
    correlated: the intervals of ``last_time`` and ``dominant_tracking`` after the change resample
    sequences, as the tracking's does."""
    result = run("update")
    active = {(t.sequence, t.session): t.active for t in result.tracking}
    changes = {(r.sequence, r.session): r.change_session for r in result.records}
    after = [t for t in result.tracking if t.session > (changes[(t.sequence, t.session)] or SESSIONS)]
    users = [t.sequence for t in after]
    assert len(set(users)) < len(users)  # some user has several sessions after the change
    last = [t.believed == active[(t.sequence, t.session - 1)] for t in after]
    dominant = [t.believed == t.dominant for t in after]
    block = result.summary
    assert block.last_time_after_change == bootstrap_ci(np.array(last, dtype=np.float64), 2, clusters=users)
    assert block.dominant_tracking_after_change == bootstrap_ci(
        np.array(dominant, dtype=np.float64), 2, clusters=users
    )


def test_the_switch_note_only_when_more_users_had_the_items_than_played() -> None:
    """Guards against blaming infeasible switches when every user with the held-out items played: the
    plain "fewer users have the items" note is given then."""
    drawn = returning_sequences(world(), 60, 2, "stable", np.random.default_rng(0))
    distinct = list({sequence.user: sequence for sequence in drawn}.values())[:10]
    (note,) = users_note(distinct, 2000, 12, "test", with_items=10)
    assert note == (
        "2000 returning users were asked for, but only 10 users have 12 held-out 'test' items: 10 were played"
    )


# ------------------------------------------------------------------------------ `crs eval` of a run
@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of the default persona world with seed 3 (not the default 0), one rule baseline, warm
    started by imitating ask-2 so that its validation points succeed sometimes."""
    from crs.app.settings import make_settings
    from crs.app.training import run_training

    settings = {"ranker": "popularity", "steps": 32, "envs": 1, "eval_every": 0, "test_episodes": 6}
    settings |= {"seed": 3, "eval_episodes": 20, "baselines": ["ask-4"]}
    settings |= {"imitation": {"rule": "ask-2", "steps": 64, "epochs": 2, "learning_rate": 0.003}}
    ppo = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "subprocess": False}
    runs = tmp_path_factory.mktemp("runs")
    run_training(make_settings({**settings, "ppo": ppo}), name="seeded", runs_dir=runs, show=False)
    return runs / "seeded"


@pytest.mark.slow  # trains a tiny run (~10 s on a shared 2-core machine)
def test_crs_eval_of_a_run_replays_its_own_test_with_the_runs_seed(seeded_run: Path, tmp_path: Path) -> None:
    """Guards against a trained policy's evaluation that ignores ``--seed`` for the conversations'
    randomness: `crs eval` of a run with its seed and test size replays the run's own test records."""
    from crs.app.evaluation import run_evaluation
    from crs.app.run_folder import TEST_DIR, TRAINED_TEST, read_episodes

    tested = seeded_run / TEST_DIR / TRAINED_TEST
    result = run_evaluation(str(seeded_run), episodes=6, seed=3, out=tmp_path / "e", show_progress=False)
    assert tuple(result.records) == read_episodes(tested)
    assert result.summary.conversations == EvalSummary.read(tested).conversations


@pytest.mark.slow  # the tiny run above
def test_the_summary_names_the_best_validation_point(seeded_run: Path) -> None:
    """Guards against a summary whose ``best_valid`` is not the curve's best point (by SR@15, then
    hDCG) or has its two scores swapped."""
    from crs.app.run_folder import TrainSummary

    rows = list(csv.DictReader((seeded_run / "eval.csv").open()))
    best = max(rows, key=lambda row: (float(row["SR@15"]), float(row["hDCG"])))
    assert float(best["SR@15"]) != float(best["hDCG"])  # a swap would show
    summary = TrainSummary.read(seeded_run)
    assert summary.best_valid["SR@15"] == pytest.approx(float(best["SR@15"]), abs=1e-9)
    assert summary.best_valid["hDCG"] == pytest.approx(float(best["hDCG"]), abs=1e-9)


@pytest.mark.slow  # the tiny run above
def test_crs_eval_never_writes_into_the_run_it_evaluates(seeded_run: Path) -> None:
    """Guards against `crs eval -p RUN -o RUN --overwrite` replacing the run's own summary.json with an
    evaluation's: the run is the policy's input, refused as the output folder."""
    from crs.app.evaluation import run_evaluation
    from crs.claims import OutputOverInputError

    before = (seeded_run / "summary.json").read_bytes()
    with pytest.raises(OutputOverInputError):
        run_evaluation(str(seeded_run), episodes=2, out=seeded_run, overwrite=True, show_progress=False)
    assert (seeded_run / "summary.json").read_bytes() == before
    assert not (seeded_run / "episodes.jsonl").exists()


def test_an_evaluation_refuses_zero_workers_and_settings_beside_a_spec(tmp_path: Path) -> None:
    """Guards against accepting ``workers=0`` (no process would run a conversation) and silently dropping
    keyword settings passed beside an `EvalSpec`."""
    from crs.app.evaluation import EvalSpec, run_evaluation

    with pytest.raises(CRSError, match="--workers must be >= 1, got 0"):
        run_evaluation("ask-2", episodes=2, workers=0, out=tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()  # refused before the output folder is claimed
    with pytest.raises(CRSError, match=r"pass settings \['episodes'\] inside the EvalSpec"):
        run_evaluation(EvalSpec(policy="ask-2"), episodes=2, out=tmp_path / "x", show_progress=False)


def test_a_thousand_sessions_is_the_largest_count_taken() -> None:
    """Guards against an off-by-one at the documented upper bound of ``--sessions`` (2-1000)."""
    from crs.app.sessions import check_session_options

    options: dict = {"regime": "switch", "memory": "update", "given": {}}
    check_session_options(sessions=1000, **options)
    check_session_options(sessions=2, **options)
    for sessions in (1, 1001):
        with pytest.raises(CRSError, match=f"--sessions {sessions} must lie in 2-1000"):
            check_session_options(sessions=sessions, **options)


def test_the_summary_records_the_user_kind_the_evaluation_ran(tmp_path: Path) -> None:
    """Guards against summary.json naming the default user kind ("auto") whatever ``--user`` ran."""
    from crs.app.evaluation import run_evaluation

    result = run_evaluation("ask-2", episodes=3, user="single", out=tmp_path / "e", show_progress=False)
    assert result.summary.user == "single" == EvalSummary.read(tmp_path / "e").user


@pytest.mark.slow  # trains a tiny run (~6 s on a shared 2-core machine)
def test_policy_json_records_the_world_seed_the_run_trained_on(tmp_path: Path) -> None:
    """Guards against policy.json (and the ranker the run pre-trained) recording world seed 0 (None) for a
    run of another persona world: `crs eval --sessions` names that seed in its refusal of another
    ``--world-seed``."""
    from crs.app.training import run_training
    from tests.crs.test_train_cmd import tiny_settings

    settings = tiny_settings(world_seed=2, steps=64, ranker="pretrain", pretrain_epochs=1)
    run_training(settings, name="w2", runs_dir=tmp_path, show=False)
    assert PolicyMeta.read(tmp_path / "w2").world_seed == 2
    # so does the ranker it pre-trained, whose refusal on another world names the seed (it recorded None)
    assert json.loads((tmp_path / "w2" / "ranker" / "config.json").read_text())["world_seed"] == 2
