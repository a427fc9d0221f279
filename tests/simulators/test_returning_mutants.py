"""Returning users: behaviours the other returning-user tests left open (mutation audit, area R).

Each test names the bug it guards against: users drawn among those with held-out items and without
repeats when there are just enough, the change session reaching S - 1, the drift floor, the new
persona drawn among the unseen ones, the fallback target pool of every split, the held-out orders
drawn at random, typed errors for bad arguments, and the session runner's seeds and callbacks.
"""

from __future__ import annotations

import dataclasses
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from envs.registry import make_env
from envs.rollout import run_episode
from envs.sessions import SessionRecord, run_sequence, run_sequences, sequence_env, session_seed
from policies.rules import make_rule_policy
from simulators import Catalog, CRSError, Interactions, make_persona_world
from simulators.returning import (
    Regime,
    ReturningSequence,
    SessionGoals,
    held_out_sequences,
    returning_sequences,
    session_user_personas,
    users_with_held_out,
)

SESSIONS = 4


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=60, n_items=400, interactions_per_user=20, seed=0)


def labelled(catalog: Catalog, split: str, persona: int) -> set[int]:
    """Items of `split`'s interactions that the world labels with `persona`."""
    interactions = catalog.split(split)
    assert interactions.personas is not None
    return set(interactions.items[interactions.personas == persona].tolist())


def own_items(catalog: Catalog, split: str, user: int) -> set[int]:
    interactions = catalog.split(split)
    return set(interactions.items[interactions.users == user].tolist())


def without_test_users(catalog: Catalog, dropped: range) -> Catalog:
    """`catalog` with the test interactions of the `dropped` users removed."""
    test = catalog.split("test")
    keep = ~np.isin(test.users, np.array(list(dropped)))
    assert test.personas is not None
    kept = Interactions(users=test.users[keep], items=test.items[keep], personas=test.personas[keep])
    return dataclasses.replace(catalog, splits={**catalog.splits, "test": kept})


# --- returning_sequences: users, change sessions, drift, new persona, fallback pool ------------------


def test_users_are_drawn_only_among_users_with_held_out_items_and_never_repeat_when_just_enough() -> None:
    """Guards against drawing users among all users (a user with no test item has no test history to
    be evaluated on) and against drawing with replacement when `n_sequences` equals the number of
    eligible users (a user would come back twice while another is never evaluated)."""
    catalog = without_test_users(world(), range(30))
    for seed in range(3):
        drawn = returning_sequences(catalog, 30, 2, "stable", np.random.default_rng(seed))
        assert sorted(seq.user for seq in drawn) == list(range(30, 60))


@pytest.mark.parametrize("regime", ["switch", "new"])
def test_change_session_is_uniform_over_one_to_s_minus_one(regime: Regime) -> None:
    """Guards against an off-by-one that never puts the change at the last session S - 1 (and, with
    S = 2, leaves no change session at all): with S = 2 it is always 1, with S = 4 all of 1, 2, 3
    occur."""
    two = returning_sequences(world(), 20, 2, regime, np.random.default_rng(0))
    assert [seq.change_session for seq in two] == [1] * 20
    four = returning_sequences(world(), 60, 4, regime, np.random.default_rng(0))
    counts = np.bincount([seq.change_session or 0 for seq in four], minlength=4)
    assert counts[0] == 0 and (counts[1:] >= 10).all(), counts  # 60 draws: each of 3 about 20


def test_drift_floor_lets_a_faded_persona_come_back() -> None:
    """Guards against dropping `DRIFT_FLOOR`: a persona whose weight is 0 must get mass again in the
    next session (Dirichlet parameter 0.1 > 0), where without the floor it stays at 0 forever."""
    base = world()
    truth = base.truth
    assert truth is not None
    weights = np.zeros_like(truth.user_weights)
    weights[:, 0] = 1.0
    faded = dataclasses.replace(base, truth=dataclasses.replace(truth, user_weights=weights))
    for seq in returning_sequences(faded, 20, SESSIONS, "drift", np.random.default_rng(0)):
        np.testing.assert_array_equal(seq.mixtures[0], [1.0, 0.0, 0.0, 0.0])
        assert (seq.mixtures[1:] > 0).all(), seq.mixtures
        np.testing.assert_allclose(seq.mixtures.sum(axis=1), 1.0)


def test_drift_steps_have_the_documented_size() -> None:
    """Guards against a wrong `DRIFT_CONCENTRATION` (a walk ten times too slow or too fast): a weight m
    moves by about sqrt(m (1 - m) / (c + 1)) per session with c = 20, so the squared steps summed over
    sessions and slots match the sum of m (1 - m) / 21 within a third."""
    drawn = returning_sequences(world(), 60, 6, "drift", np.random.default_rng(0))
    mixtures = np.stack([seq.mixtures for seq in drawn])
    before = mixtures[:, :-1]
    ratio = (np.diff(mixtures, axis=1) ** 2).sum() / (before * (1 - before) / 21).sum()
    assert 0.7 < ratio < 1.4, ratio


def test_new_persona_is_drawn_among_all_the_unseen_personas() -> None:
    """Guards against always taking the same unseen persona (e.g. the lowest id): one user's new
    persona, over many draws, covers all the world's personas the user does not have."""
    truth = world().truth
    assert truth is not None
    user = 7
    unseen = set(range(truth.n_personas)) - set(truth.user_personas[user].tolist())
    news = set()
    for seed in range(40):
        for seq in returning_sequences(world(), 60, 2, "new", np.random.default_rng(seed)):
            if seq.user == user:
                news.add(int(seq.personas[-1]))
    assert news == unseen


def test_fallback_targets_come_from_the_personas_items_of_every_split() -> None:
    """Guards against a fallback pool of the held-out split only (a small world raises instead of
    widening) or of the first split only: when the test items of the active persona are used up,
    the target is one of the persona's train or valid items, valid ones included, and never one the
    user has in another split or an earlier target."""
    small = make_persona_world(n_users=12, n_items=150, interactions_per_user=20, seed=0)
    wider, valid_only = 0, 0
    for seq in returning_sequences(small, 12, 8, "stable", np.random.default_rng(0)):
        seen = own_items(small, "train", seq.user) | own_items(small, "valid", seq.user)
        for session, target in enumerate(seq.targets):
            persona = int(seq.personas[seq.active[session]])
            assert target not in seen and target not in seq.targets[:session]
            if target in labelled(small, "test", persona):
                continue
            wider += 1
            assert not labelled(small, "test", persona) - seen - set(seq.targets[:session])
            assert target in labelled(small, "train", persona) | labelled(small, "valid", persona)
            valid_only += target not in labelled(small, "train", persona)
    assert wider > 5 and valid_only > 0, (wider, valid_only)


def test_a_split_without_persona_labels_is_refused() -> None:
    """Guards against drawing targets from other splits when the held-out split has no labels."""
    test = world().split("test")
    bare = dataclasses.replace(
        world(), splits={**world().splits, "test": Interactions(users=test.users, items=test.items)}
    )
    with pytest.raises(CRSError, match="has no persona labels"):
        returning_sequences(bare, 2, 3, "stable", np.random.default_rng(0))


def test_sequence_with_mixtures_of_the_wrong_shape_is_refused() -> None:
    """Guards against the shape check of `ReturningSequence` losing its mixtures part: a mixture
    row per session and a column per slot, or a typed error."""
    seq = returning_sequences(world(), 1, 3, "stable", np.random.default_rng(0))[0]
    with pytest.raises(CRSError, match="need mixtures of shape"):
        dataclasses.replace(seq, mixtures=seq.mixtures[:2])
    with pytest.raises(CRSError, match="need mixtures of shape"):
        dataclasses.replace(seq, mixtures=seq.mixtures[:, :2])


def test_session_user_personas_refuses_slots_in_another_order() -> None:
    """Guards against comparing slot personas as sets: goals name slots, so a sequence whose slots
    are the user's personas in another order would play the wrong persona."""
    seq = returning_sequences(world(), 1, 3, "stable", np.random.default_rng(0))[0]
    swapped = dataclasses.replace(seq, personas=seq.personas[::-1].copy())
    with pytest.raises(CRSError, match="was not drawn from"):
        session_user_personas(world(), swapped)


@pytest.mark.parametrize("regime", ["stable", "drift", "switch", "new"])
def test_each_sequence_records_its_regime(regime: Regime) -> None:
    """Guards against recording the wrong regime: reports group sessions by `ReturningSequence.regime`."""
    drawn = returning_sequences(world(), 3, 3, regime, np.random.default_rng(0))
    assert [seq.regime for seq in drawn] == [regime] * 3


def test_session_user_personas_refuses_a_user_outside_the_catalogue() -> None:
    """Guards against the user range check: a sequence of user n_users is refused with a typed error,
    not an IndexError."""
    seq = returning_sequences(world(), 1, 3, "stable", np.random.default_rng(0))[0]
    with pytest.raises(CRSError, match="was not drawn from"):
        session_user_personas(world(), dataclasses.replace(seq, user=world().n_users))


# --- held_out_sequences ------------------------------------------------------------------------------


def held_out_catalog(n_users: int = 1) -> Catalog:
    """`n_users` users, each with test items 0..7 of 8 items and nothing in train or valid."""
    users = np.repeat(np.arange(n_users, dtype=np.int64), 8)
    items = np.tile(np.arange(8, dtype=np.int64), n_users)
    empty = Interactions(users=np.zeros(0, dtype=np.int64), items=np.zeros(0, dtype=np.int64))
    return Catalog(
        name="held out",
        item_aspects=sp.csr_matrix(np.ones((8, 1), dtype=bool)),
        item_names=tuple(f"item {i}" for i in range(8)),
        aspect_names=("a",),
        n_users=n_users,
        splits={"train": empty, "valid": empty, "test": Interactions(users=users, items=items)},
    )


def one_user_catalog() -> Catalog:
    """One user whose test items are 0..7 of 8 items, nothing in train or valid."""
    return held_out_catalog(1)


def halves(user: int, items: np.ndarray) -> np.ndarray:
    """Items 0..3 are the model's persona 0, items 4..7 its persona 1."""
    return (np.asarray(items, dtype=np.int64) >= 4).astype(np.int64)


PRIOR = np.log([[0.2, 0.8]])  # persona 0 is the least-prior one: the switched-to persona


def test_stable_held_out_sessions_are_random_items_in_random_order_with_the_users_shares() -> None:
    """Guards against taking the first S items in id order (every run the same 3 of 8 items) and
    against mixtures from the S picked items instead of all the user's held-out items (4 of each
    persona here: 0.5 and 0.5, which 3 picked items can never give)."""
    picked: set[int] = set()
    firsts: set[int] = set()
    for seed in range(30):
        (seq,) = held_out_sequences(
            one_user_catalog(), halves, PRIOR, 1, 3, "stable", np.random.default_rng(seed)
        )
        picked.update(seq.targets)
        firsts.add(seq.targets[0])
        np.testing.assert_array_equal(seq.mixtures, np.full((3, 2), 0.5))
    assert picked == set(range(8)) and len(firsts) > 3


def test_switch_falls_back_to_the_next_least_prior_persona_that_fits() -> None:
    """Guards against trying only the least-prior persona: here it is persona 2, of which the user has
    no item (no switch to it fits), so the switch goes to the next least-prior one, persona 0."""
    prior = np.log([[0.3, 0.6, 0.1]])
    for seed in range(5):
        (seq,) = held_out_sequences(
            one_user_catalog(), halves, prior, 1, 4, "switch", np.random.default_rng(seed)
        )
        change = seq.change_session
        assert change is not None
        assert seq.active[change:].tolist() == [0] * (4 - change)
        assert seq.active[:change].tolist() == [1] * change


def test_switch_held_out_parts_are_drawn_in_random_order() -> None:
    """Guards against the two parts of a switch keeping item order: the sessions before the change are
    any of the other persona's items (4..7), those from it any of the switched-to persona's (0..3)."""
    before: set[int] = set()
    after: set[int] = set()
    for seed in range(40):
        (seq,) = held_out_sequences(
            one_user_catalog(), halves, PRIOR, 1, 4, "switch", np.random.default_rng(seed)
        )
        change = seq.change_session
        assert change is not None
        before.update(seq.targets[:change])
        after.update(seq.targets[change:])
    assert before == {4, 5, 6, 7} and after == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("k", "n_sequences", "regime", "fragment"),
    [
        (3, 0, "stable", "n_sequences=0 must be >= 1"),
        (1, 1, "switch", "needs a ranker with >= 2 personas"),
    ],
)
def test_held_out_bad_arguments_are_named(k: int, n_sequences: int, regime: Regime, fragment: str) -> None:
    """Guards against n_sequences = 0 returning every eligible user (instead of an error), and against a
    one-persona ranker's switch failing with a misleading "no user has enough items"."""

    def one_persona(user: int, items: np.ndarray) -> np.ndarray:
        return np.zeros(len(items), dtype=np.int64)

    prior = np.log(np.full((1, k), 1.0 / k))
    with pytest.raises(CRSError) as error:
        held_out_sequences(
            one_user_catalog(),
            one_persona,
            prior,
            n_sequences,
            3,
            regime,
            np.random.default_rng(0),
        )
    assert fragment in str(error.value)


def test_a_user_without_a_feasible_switch_is_skipped_not_the_end() -> None:
    """Guards against stopping at the first user whose items allow no switch: user 0's items are all
    one persona (no switch fits), user 1's are half and half; whichever comes first in the drawn
    order, user 1 plays the one switch sequence."""

    def user_0_single(user: int, items: np.ndarray) -> np.ndarray:
        return halves(user, items) if user == 1 else np.zeros(len(items), dtype=np.int64)

    prior = np.log([[0.2, 0.8], [0.2, 0.8]])
    for seed in range(10):
        drawn = held_out_sequences(
            held_out_catalog(2), user_0_single, prior, 2, 4, "switch", np.random.default_rng(seed)
        )
        assert [seq.user for seq in drawn] == [1]


def test_held_out_sequences_of_another_split_use_that_splits_items() -> None:
    """Guards against reading the test split whatever `split` says: with split "valid" the targets are
    the user's valid items not in test or train, and `users_with_held_out` counts those."""
    empty = Interactions(users=np.zeros(0, dtype=np.int64), items=np.zeros(0, dtype=np.int64))

    def one(items: list[int]) -> Interactions:
        return Interactions(users=np.zeros(len(items), dtype=np.int64), items=np.array(items))

    catalog = dataclasses.replace(
        one_user_catalog(), splits={"train": empty, "valid": one([2, 3, 4, 5, 6, 7]), "test": one([0, 1, 2])}
    )
    assert users_with_held_out(catalog, 5, "valid") == 1 and users_with_held_out(catalog, 6, "valid") == 0
    assert users_with_held_out(catalog, 3) == 0  # test items 0, 1 (item 2 is also a valid item)
    for seed in range(5):
        (seq,) = held_out_sequences(
            catalog, halves, PRIOR, 1, 5, "stable", np.random.default_rng(seed), split="valid"
        )
        assert sorted(seq.targets) == [3, 4, 5, 6, 7]


# --- envs.sessions ----------------------------------------------------------------------------------


@cache
def switch_sequences() -> tuple[ReturningSequence, ...]:
    return tuple(returning_sequences(world(), 3, SESSIONS, "switch", np.random.default_rng(0)))


def random_policy(*_: Any) -> Any:
    return make_rule_policy("random", None)


def test_each_session_replays_alone_with_its_own_session_seed() -> None:
    """Guards against resetting every session's env with the run seed instead of the session's seed:
    session s of sequence n is exactly the conversation of a fresh env reset with
    `session_seed(seed, n, s)` (a noisy persona user and a random policy, so the seed shows)."""
    seq = switch_sequences()[1]
    user_kwargs = {"noise": 0.3}
    records = run_sequence(world(), seq, random_policy, seed=9, index=1, user_kwargs=user_kwargs)
    truth = world().truth
    assert truth is not None
    for session, record in enumerate(records):
        env = make_env(
            catalog=world(),
            split="test",
            user="persona",
            user_kwargs={
                **user_kwargs,
                "user_personas": truth.user_personas,
                "persona_aspects": truth.persona_aspects,
            },
            goals=SessionGoals(world(), "test", seq),
        )
        conversation_seed = session_seed(9, 1, session)
        alone = run_episode(
            env,
            random_policy(),
            np.random.default_rng(conversation_seed),
            seed=conversation_seed,
            options={"goal_index": session},
        )
        assert record.episode == alone, session


def test_on_sequence_gets_each_finished_sequences_records_only() -> None:
    """Guards against handing `on_sequence` the records of all sequences so far (a progress bar would
    advance by 1, 2, 3... sessions' worth)."""
    finished: list[list[SessionRecord]] = []
    records = run_sequences(world(), switch_sequences(), random_policy, seed=0, on_sequence=finished.append)
    assert [[(r.sequence, r.session) for r in part] for part in finished] == [
        [(n, s) for s in range(SESSIONS)] for n in range(3)
    ]
    assert [r for part in finished for r in part] == records


def test_sequence_env_keeps_the_callers_user_kwargs_and_split() -> None:
    """Guards against dropping the caller's `PersonaUser` arguments (noise, patience) when the
    sequence's persona columns are added, and against the env and its goals using the test split
    when the sequence was drawn from another (a drift would then land on test items)."""
    seq = returning_sequences(world(), 1, 3, "stable", np.random.default_rng(0), "valid")[0]
    env = sequence_env(world(), seq, split="valid", user_kwargs={"noise": 0.25, "patience": 2})
    assert env.user.noise == 0.25 and env.user.patience == 2  # type: ignore[attr-defined]
    assert env.user._split == "valid"  # type: ignore[attr-defined]
    assert env.goals.split_name == "valid"


def test_real_data_sessions_play_the_sequences_targets_with_the_datasets_user() -> None:
    """Guards against the real-data branch of `sequence_env`: a catalogue without persona truth plays
    each session's own held-out target with the dataset's user (no persona columns to build), and
    refuses `PersonaUser` arguments that user cannot take instead of silently dropping them."""
    catalog = one_user_catalog()
    (seq,) = held_out_sequences(catalog, halves, PRIOR, 1, 4, "switch", np.random.default_rng(0))
    records = run_sequence(catalog, seq, random_policy, seed=0)
    assert [r.episode.targets for r in records] == [(t,) for t in seq.targets]
    assert [r.active for r in records] == seq.active.tolist()
    assert all(r.change_session == seq.change_session for r in records)
    with pytest.raises(CRSError, match="takes no arguments"):
        sequence_env(catalog, seq, user_kwargs={"noise": 0.3})


def test_run_sequences_passes_the_split_user_and_env_arguments_to_every_session() -> None:
    """Guards against `run_sequences` / `run_sequence` dropping `split`, `user_kwargs` or the env
    arguments: every session's env plays the valid split with the caller's noise and turn limit."""
    drawn = returning_sequences(world(), 2, 3, "stable", np.random.default_rng(0), "valid")
    envs: list[tuple[str, str, float]] = []

    def look(_: int, __: ReturningSequence, ___: int, env: Any, record: Any) -> None:
        envs.append((env.user._split, env.goals.split_name, env.user.noise))

    records = run_sequences(
        world(),
        drawn,
        random_policy,
        seed=0,
        after_session=look,
        split="valid",
        user_kwargs={"noise": 0.25},
        max_turns=2,
    )
    assert envs == [("valid", "valid", 0.25)] * 6
    assert max(r.episode.agent_actions for r in records) <= 2  # a random policy runs longer without
