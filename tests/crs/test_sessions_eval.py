"""Returning-user evaluation (#16): per-session metrics and persona tracking recomputed from the records,
paired runs across memory modes, the persona matching, and `crs eval --sessions` end to end."""

from __future__ import annotations

import dataclasses
import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.app.run_folder import EvalSummary, read_episodes
from crs.app.sessions import (
    ReturningResult,
    SessionSpec,
    check_memory_update,
    check_session_split,
    conversations_of,
    evaluate_returning,
    match_personas,
    paired_after_change,
    split_note,
    users_note,
)
from crs.cli import app
from envs.metrics import EpisodeRecord, bootstrap_ci, per_episode_metrics, summarize
from envs.sessions import SessionRecord
from policies.memory import DEFAULT_RULE, MemoryMode, rule_of
from policies.pretrain.ranker import PersonaRanker
from simulators import Catalog, make_persona_world
from simulators.errors import CRSError
from simulators.returning import Regime, returning_sequences
from tests.crs.test_eval_cmd import interrupt_at_step
from tests.crs.tiny_runs import pretrain_tiny

runner = CliRunner()
SESSIONS = 4


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=40, n_items=300, interactions_per_user=20, seed=0)


@lru_cache(maxsize=1)
def ranker() -> PersonaRanker:
    """Seeded random persona weights over the small world (K = 3, as the world's users)."""
    rng = np.random.default_rng(7)
    users, k, p, d = world().n_users, 3, 4, 6
    weights = {
        "user": rng.normal(size=(users, d)),
        "item": rng.normal(size=(world().n_items, d)),
        "aspect": rng.normal(size=(world().n_aspects, d)),
        "personas": rng.normal(size=(users, k, d)),
        "log_prior": np.log(rng.dirichlet(np.ones(k), size=users)),
        "mixtures": rng.dirichlet(np.ones(p), size=(users, k)),
        "prototypes": rng.normal(size=(p, d)),
    }
    return PersonaRanker(weights, world().item_aspects, "attention")


@cache
def run(memory: MemoryMode, regime: Regime = "switch", seed: int = 2) -> ReturningResult:
    return evaluate_returning(
        world(),
        ranker(),
        "ask-2",
        regime=regime,
        sessions=SESSIONS,
        sequences=12,
        memory=memory,
        seed=seed,
    )


def test_per_session_rows_are_the_sessions_records_and_tracking_flags() -> None:
    result = run("update")
    block = result.summary
    assert block.sessions == SESSIONS and block.sequences == 12 and len(block.rows) == SESSIONS
    assert block.rule["switch_rate"] > 0  # the update's constants are recorded
    for row in block.rows:
        mine = [r.episode for r in result.records if r.session == row.session]
        assert row.episodes == 12 == len(mine)
        assert row.metrics["SR@15"] == summarize(mine)["SR@15"]
        seen = [t for t in result.tracking if t.session == row.session]
        assert row.tracking is not None and row.dominant_tracking is not None
        assert row.tracking.mean == pytest.approx(np.mean([t.believed == t.active for t in seen]))
        assert row.dominant_tracking.mean == pytest.approx(np.mean([t.believed == t.dominant for t in seen]))
        assert row.active_is_dominant == pytest.approx(np.mean([t.active_is_dominant for t in seen]))
    after = [r.episode for r in result.records if r.session >= (r.change_session or SESSIONS)]
    assert block.after_change_episodes == len(after) > 0
    # tracking after the change: sessions whose memory saw at least one session of the new mixture
    changes = {(r.sequence, r.session): r.change_session for r in result.records}
    seen = [t for t in result.tracking if t.session > (changes[(t.sequence, t.session)] or SESSIONS)]
    assert seen and block.tracking_after_change is not None
    assert block.tracking_after_change.mean == pytest.approx(np.mean([t.believed == t.active for t in seen]))
    assert block.after_change["SR@15"].mean == pytest.approx(per_episode_metrics(after)["SR@15"].mean())
    # one user's sessions are correlated: the intervals over several sessions per user resample users
    users = [r.sequence for r in result.records if r.session >= (r.change_session or SESSIONS)]
    assert block.after_change == summarize(after, seed=2, clusters=users)
    assert block.tracking_after_change == bootstrap_ci(
        np.array([t.believed == t.active for t in seen], dtype=np.float64),
        seed=2,
        clusters=[t.sequence for t in seen],
    )


def test_last_time_compares_the_belief_with_the_previous_sessions_active_persona() -> None:
    result = run("update")
    active = {(t.sequence, t.session): t.active for t in result.tracking}
    hits = {t.session: [] for t in result.tracking}
    for t in result.tracking:
        if t.session > 0:
            hits[t.session].append(t.believed == active[(t.sequence, t.session - 1)])
    assert result.summary.rows[0].last_time is None  # nothing was seen before the first session
    for row in result.summary.rows[1:]:
        assert row.last_time is not None
        assert row.last_time.mean == pytest.approx(np.mean(hits[row.session]))
    # not the same measure as tracking: the active persona changes between sessions
    assert any(row.last_time != row.tracking for row in result.summary.rows[1:])
    changes = {(r.sequence, r.session): r.change_session for r in result.records}
    after = [
        t.believed == active[(t.sequence, t.session - 1)]
        for t in result.tracking
        if t.session > (changes[(t.sequence, t.session)] or SESSIONS)
    ]
    assert result.summary.last_time_after_change is not None
    assert result.summary.last_time_after_change.mean == pytest.approx(np.mean(after))
    assert run("oracle").summary.last_time_after_change is None  # the oracle is handed the truth


def test_modes_play_the_same_sessions_and_frozen_believes_the_prior() -> None:
    frozen, update, oracle = run("frozen"), run("update"), run("oracle")
    key = [(r.sequence, r.session, r.user, r.episode.targets, r.active) for r in frozen.records]
    assert key == [(r.sequence, r.session, r.user, r.episode.targets, r.active) for r in update.records]
    assert key == [(r.sequence, r.session, r.user, r.episode.targets, r.active) for r in oracle.records]
    for t in frozen.tracking:
        user = frozen.sequences[t.sequence].user
        assert t.believed == int(np.argmax(ranker().log_prior[user]))
    # the update moved some belief within a sequence; each sequence starts from the ranker's prior
    assert any(
        t.session > 0 and t.believed != f.believed
        for t, f in zip(update.tracking, frozen.tracking, strict=True)
    )
    assert all(
        t.believed == f.believed
        for t, f in zip(update.tracking, frozen.tracking, strict=True)
        if t.session == 0
    )
    assert oracle.summary.rows[0].tracking is None and oracle.summary.rule == {}
    assert oracle.summary.tracking_after_change is None
    assert run("frozen", "stable").summary.tracking_after_change is None  # no change in "stable"


def test_the_same_seed_replays_and_another_seed_draws_other_users() -> None:
    again = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=SESSIONS, sequences=12, memory="update", seed=2
    )
    assert again.records == run("update").records and again.tracking == run("update").tracking
    other = run("update", seed=3)
    assert [s.user for s in other.sequences] != [s.user for s in run("update").sequences]


def test_the_sequences_are_the_documented_draw_of_the_run_seed() -> None:
    result = run("update")
    drawn = returning_sequences(world(), 12, SESSIONS, "switch", np.random.default_rng(2), "test")
    assert [s.user for s in result.sequences] == [s.user for s in drawn]
    for got, expected in zip(result.sequences, drawn, strict=True):
        assert got.goals == expected.goals and got.change_session == expected.change_session
        assert np.array_equal(got.active, expected.active)
        assert np.array_equal(got.mixtures, expected.mixtures)


def test_a_user_drawn_twice_starts_each_sequence_from_the_prior() -> None:
    result = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=2, sequences=60, memory="update", seed=2
    )  # 60 sequences over 40 users: some users return in a second sequence
    users = [s.user for s in result.sequences]
    repeated = {u for u in users if users.count(u) > 1}
    assert repeated
    for t in result.tracking:  # not the belief the user's earlier sequence left in the memory
        if t.session == 0:
            assert t.believed == int(np.argmax(ranker().log_prior[users[t.sequence]]))


def test_the_conversations_hash_names_the_active_personas() -> None:
    sequences = run("update").sequences
    same = conversations_of(sequences, "test", "switch", 2)
    assert same == conversations_of(list(sequences), "test", "switch", 2)
    first = sequences[0]
    other = dataclasses.replace(first, active=(first.active + 1) % 3)
    assert conversations_of([other, *sequences[1:]], "test", "switch", 2) != same


class ShiftedRanker:
    """Not the thing under test: a persona ranker whose persona k is the truth's slot (k - 1) mod K, for
    every item of the world (its persona_of reads the ground truth)."""

    def __init__(self, catalog: Catalog) -> None:
        truth = catalog.truth
        assert truth is not None
        self.k = truth.personas_per_user
        self.truth, self.log_prior = truth, np.zeros((catalog.n_users, self.k))
        labels: dict[tuple[int, int], int] = {}
        for name in catalog.splits:
            split = catalog.split(name)
            assert split.personas is not None
            for user, item, persona in zip(split.users, split.items, split.personas, strict=True):
                labels[(int(user), int(item))] = int(persona)
        self.labels = labels

    def persona_of(self, user: int, items: np.ndarray) -> np.ndarray:
        slots = [list(self.truth.user_personas[user]).index(self.labels[(user, int(i))]) for i in items]
        return (np.asarray(slots) + 1) % self.k


def test_match_personas_pairs_each_true_slot_with_the_rankers() -> None:
    shifted = ShiftedRanker(world())
    k = shifted.k
    matched = match_personas(shifted, world())  # type: ignore[arg-type]
    assert k > 2 and matched.shape == (world().n_users, k)
    # true slot j is the ranker's persona j + 1 (mod K) for users with train items of all K
    full = [u for u in range(world().n_users) if (matched[u] >= 0).all()]
    assert full
    for user in full:
        assert matched[user].tolist() == [*range(1, k), 0]


def session_record(sequence: int, session: int, success: bool, change: int | None) -> SessionRecord:
    episode = EpisodeRecord(session, 0, (sequence * 10 + session,), success, 3 if success else 15, 1, 0.0)
    return SessionRecord(sequence, session, 0, 0, change, episode)


def test_paired_after_change_averages_per_sequence_then_over_sequences() -> None:
    # sequence 0 changes at 1: sessions 1, 2 differ by +1, 0 -> mean +0.5; sequence 1 changes at 2:
    # session 2 differs by -1 -> mean -1; over the two sequences: (0.5 - 1) / 2 = -0.25
    a = [session_record(0, s, ok, 1) for s, ok in enumerate([True, True, False])]
    a += [session_record(1, s, ok, 2) for s, ok in enumerate([False, False, False])]
    b = [session_record(0, s, ok, 1) for s, ok in enumerate([False, False, False])]
    b += [session_record(1, s, ok, 2) for s, ok in enumerate([True, True, True])]
    difference, n = paired_after_change(a, b)
    assert n == 2 and difference.mean == pytest.approx(-0.25)
    with pytest.raises(Exception, match="different sessions"):
        paired_after_change(a, b[:-1])


# ------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def artifact(tmp_path_factory: Any) -> Path:
    """A tiny `crs pretrain` artifact of the default persona world."""
    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "art")


@pytest.mark.slow  # the tiny `crs pretrain` artifact takes ~20 s on a shared 2-core machine
def test_crs_eval_sessions_writes_per_session_results(tmp_path: Path, artifact: Path) -> None:
    out = tmp_path / "sessions"
    args = ["eval", "-p", "ask-2", "--ranker", str(artifact), "--sessions", "3", "--regime", "switch"]
    result = runner.invoke(app, [*args, "--memory", "update", "-n", "5", "--seed", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "tracking" in result.output and "returning users" in result.output
    title = " ".join(result.output.split())  # the table says what it measured, as a plain eval's does
    assert "persona_world / test: ask-2" in title and "multiple_choice setting" in title, title
    summary = EvalSummary.read(out)
    assert summary.sessions is not None and summary.episodes == 15
    assert [row.session for row in summary.sessions.rows] == [0, 1, 2]
    assert summary.sessions.memory == "update" and summary.sessions.regime == "switch"
    # the regime's point, the figures from the change on, is printed, not only written to summary.json
    after = summary.sessions.after_change["SR@15"]
    said = f"From the change on ({summary.sessions.after_change_episodes} sessions): SR@15 {after.mean:.3f} ["
    joined = "".join(result.output.split())
    assert "".join(said.split()) in joined and f"crsreport{out}OTHER_FOLDER" in joined, result.output
    lines = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(line["goal_index"] for line in lines) == list(range(15))  # sequence * 3 + session
    assert all(line["goal_index"] == line["sequence"] * 3 + line["session"] for line in lines)
    rows = summary.sessions.rows
    for session, row in enumerate(rows):  # the lines carry the memory's belief the tracking counts
        mine = [line for line in lines if line["session"] == session]
        assert row.tracking is not None
        assert row.tracking.mean == pytest.approx(np.mean([x["believed"] == x["active_slot"] for x in mine]))
    records = read_episodes(out)  # the report's reader takes them as episode records
    assert summary.metrics["SR@15"].mean == pytest.approx(per_episode_metrics(records)["SR@15"].mean())
    for row in summary.sessions.rows:
        mine = [r for r, line in zip(records, lines, strict=True) if line["session"] == row.session]
        assert row.metrics["SR@15"].mean == pytest.approx(per_episode_metrics(mine)["SR@15"].mean())
    # a run with --overwrite that fails (a split the world lacks) leaves the earlier results as they were
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    again = [*args, "--memory", "update", "-n", "5", "--split", "tset", "-o", str(out), "--overwrite"]
    failed = runner.invoke(app, again)
    assert failed.exit_code == 2 and "tset" in failed.output, failed.output
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    # so does one interrupted by Ctrl-C (at the env's 30th step), which says that nothing was recorded
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupt_at_step(monkeypatch, 30)
        interrupted = runner.invoke(
            app, [*args, "--memory", "update", "-n", "5", "-o", str(out), "--overwrite"]
        )
    assert interrupted.exit_code == 130, interrupted.output
    assert "interrupted: no conversation was recorded" in " ".join(interrupted.output.split())
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


@pytest.mark.slow  # the tiny `crs pretrain` artifact (shared with the test above)
def test_crs_eval_sessions_memory_update_picks_the_variant(tmp_path: Path, artifact: Path) -> None:
    args = ["eval", "-p", "ask-2", "--ranker", str(artifact), "--sessions", "3", "--regime", "switch"]
    args += ["--memory", "update", "-n", "4", "--seed", "4"]
    rules = {}
    for variant in ("prior", "both", None):
        out = tmp_path / str(variant)
        extra = [] if variant is None else ["--memory-update", variant]
        result = runner.invoke(app, [*args, *extra, "-o", str(out)])
        assert result.exit_code == 0, result.output
        summary = EvalSummary.read(out)
        assert summary.sessions is not None
        rules[variant] = summary.sessions.rule
        assert summary.policy == (
            "ask-2 (memory update)" if variant is None else f"ask-2 (memory update: {variant})"
        )
        if variant is not None:
            written = json.loads((out / "summary.json").read_text())["sessions"]["rule"]
            assert written["aspect_rate"] == rule_of(variant).aspect_rate and written["update_prior"] is True
    assert rules["both"]["aspect_rate"] > 0.0 and rules["prior"]["aspect_rate"] == 0.0
    assert rules[None]["aspect_rate"] == DEFAULT_RULE.aspect_rate


def test_a_rule_the_sessions_setting_does_not_suit_is_refused_without_a_setting_to_pass(
    tmp_path: Path, artifact: Path
) -> None:
    """lookahead-D needs the binary setting; returning users of the persona world play multiple choice,
    and --sessions takes no --setting: the refusal says so, before the output folder is written."""
    out = tmp_path / "sessions"
    args = ["eval", "-p", "lookahead-2", "--ranker", str(artifact), "--sessions", "2", "--regime", "switch"]
    result = runner.invoke(app, [*args, "--memory", "update", "-n", "3", "-o", str(out)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (
        "lookahead-2 plans yes/no questions: it needs the binary setting, not 'multiple_choice'; returning "
        "users play persona_world in its own setting, which --sessions does not change: use a rule of every "
        "setting (random, always-recommend, ask-N, ask-until-K, max-entropy, abs-greedy)"
    ) in text
    assert "pass --setting" not in text and not out.exists()


def test_memory_update_variants_pick_the_rule_and_refuse_other_memories() -> None:
    assert check_memory_update("update", None) is DEFAULT_RULE
    for variant in ("prior", "aspects", "both"):
        assert check_memory_update("update", variant) == rule_of(variant)
    both = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=SESSIONS, sequences=12, memory="update", seed=2,
        rule=rule_of("both"),
    )  # fmt: skip
    block = both.summary
    assert block.rule["aspect_rate"] == rule_of("both").aspect_rate > 0 and block.rule["update_prior"]
    key = [(r.sequence, r.session, r.episode.targets) for r in both.records]  # paired with the others
    assert key == [(r.sequence, r.session, r.episode.targets) for r in run("update").records]
    aspects = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=SESSIONS, sequences=12, memory="update", seed=2,
        rule=rule_of("aspects"),
    )  # fmt: skip
    for t in aspects.tracking:  # the prior stays the ranker's: the belief is the pre-trained one
        user = aspects.sequences[t.sequence].user
        assert t.believed == int(np.argmax(ranker().log_prior[user]))
    with pytest.raises(CRSError, match="--memory-update aspects only goes with --memory update"):
        check_memory_update("oracle", "aspects")
    spec = SessionSpec(memory="update", memory_update="both")
    assert spec.model_dump()["memory_update"] == "both" and SessionSpec().memory_update is None
    with pytest.raises(ValueError, match="memory_update: both only goes with memory: update"):
        SessionSpec(memory="frozen", memory_update="both")


def test_the_summary_notes_repeated_or_missing_users() -> None:
    drawn = returning_sequences(world(), 60, 3, "stable", np.random.default_rng(0))  # 40 users
    users = len({sequence.user for sequence in drawn})
    assert users < 60
    (note,) = users_note(drawn, 60, 3, "test")
    assert f"60 returning-user sequences drew {users} distinct users" in note
    distinct = list({sequence.user: sequence for sequence in drawn}.values())[:10]
    assert users_note(distinct, 10, 3, "test") == ()  # as many distinct users as asked: nothing to say
    (fewer,) = users_note(distinct, 2000, 12, "test")
    assert "2000 returning users were asked for, but only 10 users have 12 held-out 'test' items" in fewer
    (switch,) = users_note(distinct, 2000, 12, "test", with_items=25)  # 15 had no feasible switch
    assert "only 10 users have 12 held-out 'test' items and a feasible switch (25 have 12 items" in switch
    assert "for the other 15, no persona's items fit a change session" in switch


def test_sessions_never_draw_the_pre_training_split() -> None:
    with pytest.raises(ValueError, match="--split train with --sessions: pre-training reads train"):
        SessionSpec(split="train")
    with pytest.raises(CRSError, match=r"pre-training reads valid: Yelp\* has no train split"):
        check_session_split("valid", "valid")
    assert SessionSpec(split="valid").split == "valid"
    assert split_note("valid") and split_note("test") == ()


def test_a_summary_without_sessions_reads_as_before(tmp_path: Path) -> None:
    data = {"policy": "ask-4", "dataset": "persona_world", "split": "test", "episodes": 3, "seed": 1}
    data |= {"max_turns": 15, "metrics": {"SR@15": {"mean": 0.5, "low": 0.1, "high": 0.9}}}
    (tmp_path / "summary.json").write_text(json.dumps(data))
    summary = EvalSummary.read(tmp_path)
    assert summary.sessions is None and "sessions" not in summary.to_dict()


@pytest.mark.slow  # the tiny artifact
def test_sessions_take_the_setting_they_play_and_refuse_another(tmp_path: Path, artifact: Path) -> None:
    """--setting with --sessions was refused even when it named the setting the sessions play."""
    args = ["eval", "-p", "ask-2", "--ranker", str(artifact), "--sessions", "2", "--regime", "switch"]
    args += ["--memory", "frozen", "-n", "3"]
    named = runner.invoke(app, [*args, "--setting", "multiple_choice", "-o", str(tmp_path / "named")])
    assert named.exit_code == 0, named.output
    plain = runner.invoke(app, [*args, "-o", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert read_episodes(tmp_path / "named") == read_episodes(tmp_path / "plain")
    other = runner.invoke(app, [*args, "--setting", "binary", "-o", str(tmp_path / "other")])
    flat = " ".join(other.output.replace("│", " ").split())
    assert other.exit_code == 2 and not (tmp_path / "other").exists(), other.output
    assert "--setting binary: returning users play persona_world in the multiple_choice setting" in flat
    assert "leave out --setting, or give --setting multiple_choice" in flat


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--regime", "switch"], "--regime only goes with --sessions"),
        (["--sessions", "1", "--regime", "switch", "--memory", "update"], "--sessions 1 must lie in 2-1000"),
        (["--sessions", "10000000000", "--regime", "switch", "--memory", "update"], "must lie in 2-1000"),
        (
            [
                "--sessions",
                "3",
                "--regime",
                "stable",
                "--memory",
                "update",
                "-d",
                "lastfm",
                "--user",
                "persona",
            ],
            "does not take --user",
        ),
        (["--sessions", "3", "--memory", "update"], "--sessions needs --regime"),
        (["--sessions", "3", "--regime", "sudden", "--memory", "update"], "--regime 'sudden' is not one of"),
        (["--sessions", "3", "--regime", "switch", "--memory", "sticky"], "--memory 'sticky' is not one of"),
        (
            ["--sessions", "3", "--regime", "stable", "--memory", "update", "-w", "2"],
            "does not take --workers",
        ),
        (
            ["--sessions", "3", "--regime", "stable", "--memory", "update", "--split", "train"],
            "--split train with --sessions: pre-training reads train, or valid on Yelp*",
        ),
        (
            ["--sessions", "3", "--regime", "stable", "--memory", "update", "-d", "mcmipl_lastfm_star"],
            "MCMIPL's releases have multi-item target groups",
        ),
        (["--memory-update", "both"], "--memory-update only goes with --sessions"),
        (
            ["--sessions", "3", "--regime", "switch", "--memory", "frozen", "--memory-update", "both"],
            "--memory-update both only goes with --memory update (memory frozen keeps no learned state); "
            "drop --memory-update or use --memory update",
        ),
        (
            ["--sessions", "3", "--regime", "switch", "--memory", "update", "--memory-update", "all"],
            "--memory-update 'all' is not one of prior, aspects, both",
        ),
        (["--sessions", "3", "--regime", "stable", "--memory", "update"], "needs a persona ranker"),
        (
            ["--sessions", "3", "--regime", "stable", "--memory", "update", "--ranker", "popularity"],
            "models no personas",
        ),
        (
            ["--sessions", "3", "--regime", "switch", "--memory", "update", "--ranker", "uniform"],
            "models one persona per user, so there is no persona to track",
        ),
    ],
)
def test_bad_session_options_are_one_line_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", *extra, "-n", "2", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert message in flat and "Traceback" not in result.output


def test_a_folder_that_is_not_a_run_is_named_with_sessions(tmp_path: Path) -> None:
    run_dir = tmp_path / "my-run"  # a trained run plays too (tests/crs/test_sessions_rl.py); this is none
    run_dir.mkdir()
    args = ["eval", "-p", str(run_dir), "--sessions", "3", "--regime", "stable", "--memory", "frozen"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x")])
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "is not a trained run directory" in flat, result.output


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (
            ["--sessions", "3", "--regime", "switch", "--memory", "frozen"],
            "`crs pretrain -d persona_world --out",
        ),
        (["--setting", "multiple_choice", "-p", "probe-2-ask-5"], "`crs pretrain -d DATASET --out"),
    ],
)
def test_a_missing_persona_ranker_is_told_to_pre_train_one_on_the_dataset_evaluated(
    tmp_path: Path, args: list[str], command: str
) -> None:
    """The example said `crs pretrain --out runs/pw-ranker`, which pre-trains the persona world's ranker:
    on real data that ranker is then refused for its dataset."""
    result = CliRunner().invoke(app, ["eval", *args, "-n", "3", "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and command in " ".join(result.output.split()), result.output


def test_the_report_gives_one_runs_figures_the_intervals_its_summary_holds(
    tmp_path: Path, artifact: Path
) -> None:
    """A walkthrough found summary.json's SR@15 from the change on [0.6388, 0.7359] and the report's
    [0.639, 0.740]: two bootstraps of one quantity with other seeds. A series of one run now resamples
    as `crs eval --sessions` did."""
    from crs.report import load_inputs
    from crs.report.sessions import session_comparisons

    out = tmp_path / "one"
    args = ["eval", "-p", "ask-2", "--ranker", str(artifact), "--sessions", "3", "--regime", "switch"]
    result = runner.invoke(app, [*args, "--memory", "update", "-n", "12", "--seed", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    block = EvalSummary.read(out).sessions
    assert block is not None
    (comparison,) = session_comparisons(load_inputs([out]).evals)
    (series,) = comparison.series
    assert series.after_change == block.after_change["SR@15"]
    assert series.tracking_after_change == block.tracking_after_change
    # the sessions the tracking counts: after each change session (the change session left out)
    after = [x for x in series.lines if x.offset is not None and x.offset > 0]
    assert block.tracked_after_change_sessions == len(after) < block.after_change_episodes
    assert series.by_session == tuple(row.metrics["SR@15"] for row in block.rows)
