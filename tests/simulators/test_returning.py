"""Returning users: the four regimes' mixtures, ground-truth goals, leak-free targets, determinism."""

from __future__ import annotations

import dataclasses
from functools import cache, lru_cache

import numpy as np
import pytest

from simulators import Catalog, CRSError, make_persona_world
from simulators.persona_world import persona_utilities
from simulators.returning import (
    NEW_PERSONA_SHARE,
    REGIMES,
    SWITCH_SHARE,
    Regime,
    ReturningSequence,
    SessionGoals,
    _draw_target,
    returning_sequences,
    session_user_personas,
)
from simulators.users import PersonaUser

SESSIONS = 6
N_SEQUENCES = 40


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=60, n_items=400, interactions_per_user=20, seed=0)


@cache
def sequences(regime: Regime, seed: int = 0) -> tuple[ReturningSequence, ...]:
    return tuple(returning_sequences(world(), N_SEQUENCES, SESSIONS, regime, np.random.default_rng(seed)))


def same(a: ReturningSequence, b: ReturningSequence) -> bool:
    return (
        a.user == b.user
        and a.goals == b.goals
        and a.change_session == b.change_session
        and np.array_equal(a.mixtures, b.mixtures)
        and np.array_equal(a.active, b.active)
        and np.array_equal(a.personas, b.personas)
    )


@cache
def seen_items(user: int) -> set[int]:
    """The user's train and valid items: what pre-training and RL training saw."""
    seen: set[int] = set()
    for name in ("train", "valid"):
        split = world().split(name)
        seen.update(split.items[split.users == user].tolist())
    return seen


@cache
def labelled_items(persona: int, split: str = "test") -> set[int]:
    """Items of a split's interactions that the world labels with `persona` (any user's)."""
    interactions = world().split(split)
    assert interactions.personas is not None
    return set(interactions.items[interactions.personas == persona].tolist())


@pytest.mark.parametrize("regime", REGIMES)
def test_same_seed_same_sequences_other_seed_others(regime: Regime) -> None:
    again = returning_sequences(world(), N_SEQUENCES, SESSIONS, regime, np.random.default_rng(0))
    assert all(same(a, b) for a, b in zip(sequences(regime), again, strict=True))
    other = sequences(regime, seed=1)
    assert not all(same(a, b) for a, b in zip(sequences(regime), other, strict=True))


@pytest.mark.parametrize("regime", REGIMES)
def test_shapes_goals_follow_active_and_users_differ(regime: Regime) -> None:
    truth = world().truth
    assert truth is not None
    k = truth.personas_per_user
    drawn = sequences(regime)
    assert len(drawn) == N_SEQUENCES
    assert len({seq.user for seq in drawn}) == N_SEQUENCES  # 60 users: drawn without replacement
    for seq in drawn:
        k_slots = k + 1 if regime == "new" else k
        assert seq.mixtures.shape == (SESSIONS, k_slots) and seq.mixtures.dtype == np.float64
        assert seq.active.shape == (SESSIONS,) and seq.active.dtype == np.int64
        assert seq.personas.shape == (k_slots,) and seq.personas.dtype == np.int64
        np.testing.assert_array_equal(seq.personas[:k], truth.user_personas[seq.user])
        assert [goal.persona for goal in seq.goals] == seq.active.tolist()
        assert all(goal.user == seq.user and len(goal.targets) == 1 for goal in seq.goals)
        assert seq.mixtures[np.arange(SESSIONS), seq.active].min() > 0  # never an impossible slot


@pytest.mark.parametrize("regime", REGIMES)
def test_targets_never_seen_in_train_or_valid_and_not_repeated(regime: Regime) -> None:
    for seq in sequences(regime):
        assert not set(seq.targets) & seen_items(seq.user), (seq.user, seq.targets)
        assert len(set(seq.targets)) == SESSIONS


@pytest.mark.parametrize("regime", REGIMES)
def test_targets_are_items_the_active_persona_generated_in_the_split(regime: Regime) -> None:
    """From the test split's interactions labelled with the active persona; from every split's only
    when none of those is left (the fallback, rare even in this small world)."""
    wider = 0
    for seq in sequences(regime):
        for session, target in enumerate(seq.targets):
            persona = int(seq.personas[seq.active[session]])
            if target in labelled_items(persona):
                continue
            wider += 1
            assert target in labelled_items(persona, "train") | labelled_items(persona, "valid")
            left = labelled_items(persona) - seen_items(seq.user) - set(seq.targets[:session])
            assert not left, (seq.user, session, target, persona)
    assert wider < 0.1 * N_SEQUENCES * SESSIONS


def test_targets_are_drawn_by_how_often_the_persona_generated_them() -> None:
    """Uniform over the labelled interactions (repeats kept), so over items by count; seen and used
    items excluded; the wider pool only when the first has nothing left."""
    rng = np.random.default_rng(0)
    pool = np.array([1, 1, 1, 1, 2, 3, 3, 3], dtype=np.int64)
    wide = np.array([9, 9], dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    draws = np.array([_draw_target((pool, wide), none, [], rng, 0, "test") for _ in range(4000)])
    np.testing.assert_allclose([np.mean(draws == i) for i in (1, 2, 3)], [0.5, 0.125, 0.375], atol=0.03)
    assert {_draw_target((pool, wide), np.array([1, 3]), [], rng, 0, "test") for _ in range(20)} == {2}
    assert {_draw_target((pool, wide), np.array([1]), [2, 3], rng, 0, "test") for _ in range(20)} == {9}
    with pytest.raises(CRSError, match="persona 4 has no interaction left"):
        _draw_target((pool, wide), np.array([1, 2, 3]), [9], rng, 4, "test")


def test_targets_are_equally_hard_in_every_session() -> None:
    """The rule does not depend on the session: the true persona's utility of the target, and the
    share of targets that are the user's own test items, are the same in the last session as in the
    first. (The old rule took the user's ~3 test items first, then any item with a signature aspect:
    here the utility fell from 6.5 in the first half of the sessions to 5.2 in the second, and the
    share of own items from 0.80 in session 0 to 0.15 in the last.)"""
    truth = world().truth
    assert truth is not None
    utility = persona_utilities(
        world().item_aspects, truth.aspect_group, truth.persona_groups, truth.persona_aspects
    )
    test = world().split("test")
    drawn = returning_sequences(world(), 600, SESSIONS, "stable", np.random.default_rng(11))
    values = np.array(
        [[utility[seq.personas[seq.active[s]], seq.targets[s]] for s in range(SESSIONS)] for seq in drawn]
    )
    own = np.array(
        [[t in set(test.items[test.users == seq.user].tolist()) for t in seq.targets] for seq in drawn]
    )
    first, last = values[:, : SESSIONS // 2].mean(), values[:, SESSIONS // 2 :].mean()
    assert abs(first - last) < 0.3, (first, last)
    assert abs(own[:, 0].mean() - own[:, -1].mean()) < 0.15  # the old rule: about 1 vs 0


def test_a_persona_without_targets_left_is_named() -> None:
    tiny = make_persona_world(n_users=3, n_items=60, interactions_per_user=10, seed=0)
    with pytest.raises(CRSError, match="no interaction left"):
        returning_sequences(tiny, 1, 20, "stable", np.random.default_rng(0))


def test_valid_targets_avoid_the_users_train_and_test_items() -> None:
    """With split "valid" (choosing constants) the pool is the valid split's and the user's train and
    test items are excluded, so test targets stay untouched."""
    valid = world().split("valid")
    assert valid.personas is not None
    for seq in returning_sequences(world(), 40, SESSIONS, "switch", np.random.default_rng(2), "valid"):
        others: set[int] = set()
        for name in ("train", "test"):
            split = world().split(name)
            others.update(split.items[split.users == seq.user].tolist())
        for session, target in enumerate(seq.targets):
            persona = int(seq.personas[seq.active[session]])
            assert target not in others
            assert target in labelled_items(persona, "valid") | labelled_items(persona, "train")


def test_stable_keeps_the_users_weights() -> None:
    truth = world().truth
    assert truth is not None
    for seq in sequences("stable"):
        assert seq.change_session is None
        np.testing.assert_array_equal(seq.mixtures, np.tile(truth.user_weights[seq.user], (SESSIONS, 1)))


def test_drift_walks_on_the_simplex_from_the_users_weights() -> None:
    truth = world().truth
    assert truth is not None
    for seq in sequences("drift"):
        assert seq.change_session is None
        np.testing.assert_array_equal(seq.mixtures[0], truth.user_weights[seq.user])
        assert seq.mixtures.min() >= 0.0
        np.testing.assert_allclose(seq.mixtures.sum(axis=1), 1.0)
        steps = np.abs(np.diff(seq.mixtures, axis=0)).sum(axis=1)
        assert steps.min() > 0.0  # every session moves
    # a walk spreads: the distance from the start grows with the sessions (about doubles by session
    # 5 here), where draws around the start would stay at the session-1 distance
    away = np.array([np.abs(seq.mixtures - seq.mixtures[0]).sum(axis=1) for seq in sequences("drift")])
    assert away[:, -1].mean() > 1.5 * away[:, 1].mean()


def test_switch_makes_the_minor_persona_dominant_from_change_session_on() -> None:
    truth = world().truth
    assert truth is not None
    changes = set()
    for seq in sequences("switch"):
        weights = truth.user_weights[seq.user]
        top, minor = int(np.argmax(weights)), int(np.argmin(weights))
        change = seq.change_session
        assert change is not None and 1 <= change <= SESSIONS - 1
        changes.add(change)
        dominant = np.argmax(seq.mixtures, axis=1)
        assert (dominant[:change] == top).all()
        assert (dominant[change:] == minor).all()
        np.testing.assert_array_equal(seq.mixtures[:change], np.tile(weights, (change, 1)))
        after = seq.mixtures[change]
        assert after[minor] == SWITCH_SHARE
        np.testing.assert_allclose(after.sum(), 1.0)
        others = np.arange(weights.size) != minor
        # the others keep their old proportions in the remaining mass
        np.testing.assert_allclose(
            after[others], (1 - SWITCH_SHARE) * weights[others] / weights[others].sum()
        )
        np.testing.assert_array_equal(seq.mixtures[change:], np.tile(after, (SESSIONS - change, 1)))
    assert len(changes) > 1  # the change session is drawn, not fixed


def test_switch_makes_tracking_reachable() -> None:
    """After the switch the active persona is the mixture's largest in about SWITCH_SHARE of the
    sessions: a memory that follows the dominant persona can reach >= 80% tracking."""
    drawn = returning_sequences(world(), 300, SESSIONS, "switch", np.random.default_rng(4))
    hits = [
        seq.active[s] == np.argmax(seq.mixtures[s])
        for seq in drawn
        for s in range(seq.change_session or SESSIONS, SESSIONS)
    ]
    assert len(hits) > 500 and 0.85 < np.mean(hits) < 0.95


def test_new_persona_is_unseen_dominates_from_change_session_and_gets_its_items() -> None:
    truth = world().truth
    assert truth is not None
    k = truth.personas_per_user
    new_sessions = 0
    for seq in sequences("new"):
        new = int(seq.personas[k])
        assert new not in truth.user_personas[seq.user].tolist()
        change = seq.change_session
        assert change is not None and 1 <= change <= SESSIONS - 1
        assert (seq.mixtures[:change, k] == 0).all()
        assert (seq.mixtures[change:, k] == NEW_PERSONA_SHARE).all()
        assert (np.argmax(seq.mixtures[change:], axis=1) == k).all()
        np.testing.assert_allclose(seq.mixtures.sum(axis=1), 1.0)
        assert (seq.active[:change] < k).all()
        for session in np.flatnonzero(seq.active == k).tolist():
            new_sessions += 1
            generated = labelled_items(new) | labelled_items(new, "train") | labelled_items(new, "valid")
            assert seq.targets[session] in generated  # an item the new persona generated
    assert new_sessions > 0


def test_users_repeat_only_when_there_are_fewer_users_than_sequences() -> None:
    drawn = returning_sequences(world(), 100, 2, "stable", np.random.default_rng(3))
    assert len(drawn) == 100 and len({seq.user for seq in drawn}) <= world().n_users


def test_sequence_is_frozen() -> None:
    seq = sequences("stable")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seq.user = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        seq.mixtures[0, 0] = 0.5


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sessions": 1}, "sessions=1 must be >= 2"),
        ({"n_sequences": 0}, "n_sequences=0 must be >= 1"),
        ({"regime": "sudden"}, "unknown regime 'sudden'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {"n_sequences": 2, "sessions": 3, "regime": "stable"}
    arguments.update(kwargs)
    with pytest.raises(CRSError, match=fragment):
        returning_sequences(world(), rng=np.random.default_rng(0), **arguments)  # type: ignore[arg-type]


def test_catalogue_without_truth_is_refused() -> None:
    bare = dataclasses.replace(world(), truth=None)
    with pytest.raises(CRSError, match="make_persona_world"):
        returning_sequences(bare, 2, 3, "stable", np.random.default_rng(0))


def test_new_needs_an_unseen_persona() -> None:
    full = make_persona_world(n_users=10, n_items=60, n_personas=3, personas_per_user=3, seed=0)
    with pytest.raises(CRSError, match="personas_per_user < n_personas"):
        returning_sequences(full, 2, 3, "new", np.random.default_rng(0))
    assert len(returning_sequences(full, 2, 3, "switch", np.random.default_rng(0))) == 2


def test_switch_needs_two_personas() -> None:
    single = make_persona_world(n_users=10, n_items=60, personas_per_user=1, seed=0)
    with pytest.raises(CRSError, match="personas_per_user >= 2"):
        returning_sequences(single, 2, 3, "switch", np.random.default_rng(0))


def test_session_goals_are_the_sequences_sessions() -> None:
    seq = sequences("switch")[0]
    goals = SessionGoals(world(), "test", seq)
    assert goals.n_goals == SESSIONS
    rng = np.random.default_rng(0)
    assert [goals.goal(s, rng) for s in range(SESSIONS)] == list(seq.goals)
    assert goals.interactions.users.tolist() == [seq.user] * SESSIONS
    assert goals.interactions.items.tolist() == list(seq.targets)
    with pytest.raises(CRSError, match="outside"):
        goals.goal(SESSIONS, rng)


def test_session_user_personas_adds_the_new_persona_for_this_user_only() -> None:
    truth = world().truth
    assert truth is not None
    k = truth.personas_per_user
    stable = sequences("stable")[0]
    assert session_user_personas(world(), stable) is truth.user_personas  # K' = K: the truth as it is
    seq = sequences("new")[0]
    grown = session_user_personas(world(), seq)
    assert grown.shape == (world().n_users, k + 1)
    np.testing.assert_array_equal(grown[:, :k], truth.user_personas)
    np.testing.assert_array_equal(grown[seq.user], seq.personas)
    others = np.arange(world().n_users) != seq.user
    np.testing.assert_array_equal(grown[others, k], truth.user_personas[others, 0])
    # the gap it closes: a PersonaUser over the truth refuses slot K, over these columns it plays it
    session = int(np.flatnonzero(seq.active == k)[0])
    with pytest.raises(CRSError, match="outside"):
        PersonaUser(world()).reset(seq.goals[session], np.random.default_rng(0))
    user = PersonaUser(world(), user_personas=grown, persona_aspects=truth.persona_aspects)
    user.reset(seq.goals[session], np.random.default_rng(0))
    assert user.active_persona == k and user.active_persona_id == seq.personas[k]


def test_session_user_personas_refuses_a_foreign_sequence() -> None:
    other = make_persona_world(n_users=60, n_items=400, interactions_per_user=20, seed=1)
    truth = world().truth
    assert truth is not None
    foreign = [
        seq
        for seq in returning_sequences(other, 10, 2, "stable", np.random.default_rng(0))
        if not np.array_equal(seq.personas, truth.user_personas[seq.user])
    ]
    with pytest.raises(CRSError, match="was not drawn from"):
        session_user_personas(world(), foreign[0])
    with pytest.raises(CRSError, match="make_persona_world"):
        session_user_personas(dataclasses.replace(world(), truth=None), foreign[0])
