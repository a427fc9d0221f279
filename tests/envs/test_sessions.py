"""The multi-session runner: one conversation per session of a returning sequence, in order, with the
session's goal and active persona, seeded by one run seed."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pytest

from envs.actions import recommend
from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord
from envs.sessions import SessionRecord, run_sequence, run_sequences, sequence_env, session_seed
from policies.baseline_rankers import PopularityRanker
from policies.rules import make_rule_policy
from simulators import Catalog, CRSError, make_persona_world
from simulators.returning import Regime, ReturningSequence, returning_sequences

SESSIONS = 4


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=60, n_items=400, interactions_per_user=20, seed=0)


def sequences(regime: Regime, n: int = 6, seed: int = 0) -> list[ReturningSequence]:
    return returning_sequences(world(), n, SESSIONS, regime, np.random.default_rng(seed))


def ask_4(*_: Any) -> Any:
    return make_rule_policy("ask-4", PopularityRanker(world()))


def random_policy(*_: Any) -> Any:
    return make_rule_policy("random", None)


def test_each_session_is_the_sessions_goal_with_its_true_persona() -> None:
    drawn = sequences("switch")
    seen: list[tuple[int, int, int, int]] = []

    def look(index: int, sequence: ReturningSequence, session: int, env: ConversationEnv, _: Any) -> None:
        # the env's user played the session's goal with the session's persona active (no drift)
        assert env.done and env.state.user == sequence.user
        assert env.user.targets == sequence.goals[session].targets
        persona = env.user.active_persona_id  # type: ignore[attr-defined]
        seen.append((index, session, persona, int(sequence.personas[sequence.active[session]])))

    records = run_sequences(world(), drawn, ask_4, seed=3, after_session=look)
    assert [(r.sequence, r.session) for r in records] == [(n, s) for n in range(6) for s in range(SESSIONS)]
    assert [(n, s) for n, s, _, _ in seen] == [(r.sequence, r.session) for r in records]
    assert all(persona == truth for _, _, persona, truth in seen)
    for record in records:
        sequence = drawn[record.sequence]
        assert record.user == sequence.user
        assert record.episode.targets == (sequence.targets[record.session],)
        assert record.episode.goal_index == record.session
        assert record.active == sequence.active[record.session]
        assert record.persona == sequence.personas[record.active]
        assert record.change_session == sequence.change_session


def test_new_persona_sessions_run_with_slot_k_active() -> None:
    drawn = sequences("new")
    k = world().truth.personas_per_user  # type: ignore[union-attr]
    active: list[int] = []

    def look(_: int, sequence: ReturningSequence, session: int, env: ConversationEnv, __: Any) -> None:
        active.append(env.user.active_persona_id)  # type: ignore[attr-defined]

    records = run_sequences(world(), drawn, ask_4, seed=0, after_session=look)
    new_sessions = [r for r in records if r.active == k]
    assert new_sessions, "regime 'new' puts NEW_PERSONA_SHARE = 0.7 on slot K after the change session"
    for record, persona in zip(records, active, strict=True):
        assert persona == record.persona
        if record.active == k:  # the new persona is none of the user's K
            assert persona not in world().truth.user_personas[record.user]  # type: ignore[union-attr]


def test_one_seed_replays_everything_and_sequences_are_independent() -> None:
    drawn = sequences("drift")
    # the random policy draws from the generator each session hands it: a replay needs the same seeds
    first = run_sequences(world(), drawn, random_policy, seed=5)
    again = run_sequences(world(), drawn, random_policy, seed=5)
    assert first == again
    other = run_sequences(world(), drawn, random_policy, seed=6)
    assert [r.episode for r in first] != [r.episode for r in other]
    # sequence 3 alone, with its index, replays its part of the run
    alone = run_sequence(world(), drawn[3], random_policy, seed=5, index=3)
    assert alone == [r for r in first if r.sequence == 3]


def test_session_seeds_differ_by_sequence_and_session() -> None:
    seeds = {session_seed(0, n, s) for n in range(20) for s in range(8)}
    assert len(seeds) == 160
    assert session_seed(0, 1, 2) == session_seed(0, 1, 2) != session_seed(1, 1, 2)


def test_the_policy_of_each_session_is_asked_in_order() -> None:
    drawn = sequences("stable", n=2)
    asked: list[tuple[int, int]] = []

    def policy_for(index: int, sequence: ReturningSequence, session: int) -> Any:
        assert sequence is drawn[index]
        asked.append((index, session))
        return ask_4()

    run_sequences(world(), drawn, policy_for, seed=0)
    assert asked == [(n, s) for n in range(2) for s in range(SESSIONS)]


def test_session_record_round_trips_through_a_dict() -> None:
    episode = EpisodeRecord(2, 7, (11,), True, 3, 1, 0.8, ("ask", "ask", "recommend"))
    record = SessionRecord(sequence=4, session=2, active=1, persona=5, change_session=None, episode=episode)
    assert SessionRecord.from_dict(record.to_dict()) == record
    switched = SessionRecord(4, 2, 1, 5, 1, episode)
    assert SessionRecord.from_dict(switched.to_dict()) == switched


def test_sequence_env_refuses_what_the_sequence_decides_and_foreign_sequences() -> None:
    sequence = sequences("stable", n=1)[0]
    with pytest.raises(CRSError, match="user_personas"):
        sequence_env(world(), sequence, user_kwargs={"user_personas": np.zeros((60, 3), dtype=np.int64)})
    truth = world().truth
    assert truth is not None
    with pytest.raises(CRSError, match=r"\['persona_aspects'\] come from the sequence"):
        sequence_env(world(), sequence, user_kwargs={"persona_aspects": truth.persona_aspects})
    other = make_persona_world(n_users=60, n_items=400, interactions_per_user=20, seed=1)
    foreign = returning_sequences(other, 5, SESSIONS, "stable", np.random.default_rng(0))
    mismatched = [s for s in foreign if not np.array_equal(s.personas, world().truth.user_personas[s.user])]  # type: ignore[union-attr]
    assert mismatched
    with pytest.raises(CRSError, match="was not drawn from"):
        sequence_env(world(), mismatched[0])


class DrawingPolicy:
    """Records one draw from the generator each conversation hands it; recommends the first 10
    candidates until the conversation ends."""

    def __init__(self, draws: list[int]) -> None:
        self.draws = draws

    def reset(self, rng: np.random.Generator) -> None:
        self.draws.append(int(rng.integers(2**62)))

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend(env.state.candidate_items()[:10])


def test_each_sessions_policy_generator_is_seeded_by_the_session_seed() -> None:
    sequence = sequences("stable", n=1)[0]
    draws: list[int] = []
    run_sequence(world(), sequence, lambda *_: DrawingPolicy(draws), seed=5, index=2)
    expected = [int(np.random.default_rng(session_seed(5, 2, s)).integers(2**62)) for s in range(SESSIONS)]
    assert draws == expected and len(set(draws)) == SESSIONS  # a fresh generator per session
