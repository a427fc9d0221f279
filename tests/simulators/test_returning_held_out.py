"""Returning users from held-out interactions (real data, #16): sessions are the user's own held-out
items, grouped by a model's personas; stable and switch orders, leak-free targets, determinism."""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import pytest
import scipy.sparse as sp

from simulators import Catalog, CRSError, Interactions, make_persona_world
from simulators.returning import (
    HELD_OUT_REGIMES,
    Regime,
    ReturningSequence,
    held_out_sequences,
    users_with_held_out,
)

SESSIONS = 4
K = 3


@lru_cache(maxsize=1)
def world() -> Catalog:
    """A small catalogue; the held-out construction never reads its persona truth."""
    return make_persona_world(n_users=60, n_items=400, interactions_per_user=30, seed=0)


def persona_of(user: int, items: np.ndarray) -> np.ndarray:
    """A model's persona of each item: a fixed function of (user, item), K slots."""
    return (np.asarray(items, dtype=np.int64) * 7 + user) % K


@lru_cache(maxsize=1)
def log_prior() -> np.ndarray:
    return np.log(np.random.default_rng(5).dirichlet(np.ones(K), size=world().n_users))


@cache
def sequences(regime: Regime, seed: int = 0, n: int = 25) -> tuple[ReturningSequence, ...]:
    rng = np.random.default_rng(seed)
    return tuple(held_out_sequences(world(), persona_of, log_prior(), n, SESSIONS, regime, rng))


def user_items(split: str, user: int) -> set[int]:
    interactions = world().split(split)
    return set(interactions.items[interactions.users == user].tolist())


@pytest.mark.parametrize("regime", HELD_OUT_REGIMES)
def test_targets_are_the_users_own_held_out_items_never_seen_elsewhere(regime: Regime) -> None:
    drawn = sequences(regime)
    assert len(drawn) == 25 and len({s.user for s in drawn}) == 25  # eligible users, no repeats
    for sequence in drawn:
        targets = list(sequence.targets)
        assert len(set(targets)) == SESSIONS
        assert set(targets) <= user_items("test", sequence.user)
        assert not set(targets) & (user_items("train", sequence.user) | user_items("valid", sequence.user))
        assert sequence.active.tolist() == persona_of(sequence.user, np.array(targets)).tolist()
        assert [g.persona for g in sequence.goals] == sequence.active.tolist()
        assert sequence.personas.tolist() == list(range(K))
        assert np.allclose(sequence.mixtures.sum(axis=1), 1.0)


def test_stable_mixture_is_the_users_share_of_held_out_items_per_persona() -> None:
    for sequence in sequences("stable"):
        items = np.array(sorted(user_items("test", sequence.user)))
        shares = np.bincount(persona_of(sequence.user, items), minlength=K) / items.size
        assert np.allclose(sequence.mixtures, shares) and sequence.change_session is None


def test_switch_moves_every_session_from_the_change_on_to_the_least_prior_persona_that_fits() -> None:
    for sequence in sequences("switch"):
        change = sequence.change_session
        assert change is not None and 1 <= change <= SESSIONS - 1
        labels = persona_of(sequence.user, np.array(sorted(user_items("test", sequence.user))))
        counts = np.bincount(labels, minlength=K)
        fits = [
            p for p in range(K) if max(1, SESSIONS - counts[p]) <= min(SESSIONS - 1, labels.size - counts[p])
        ]
        new = min(fits, key=lambda p: log_prior()[sequence.user, p])
        assert (sequence.active[change:] == new).all() and (sequence.active[:change] != new).all()
        assert (sequence.mixtures[change:, new] == 1.0).all() and (
            sequence.mixtures[:change, new] == 0.0
        ).all()
    assert len({s.change_session for s in sequences("switch")}) > 1  # drawn, not fixed


def test_same_seed_same_sequences_other_seed_others() -> None:
    again = held_out_sequences(
        world(), persona_of, log_prior(), 25, SESSIONS, "switch", np.random.default_rng(0)
    )
    assert [(s.user, s.goals, s.change_session) for s in again] == [
        (s.user, s.goals, s.change_session) for s in sequences("switch")
    ]
    other = sequences("switch", seed=1)
    assert [s.user for s in other] != [s.user for s in sequences("switch")]


def test_fewer_sequences_when_fewer_users_are_eligible() -> None:
    drawn = held_out_sequences(
        world(), persona_of, log_prior(), 10_000, SESSIONS, "stable", np.random.default_rng(0)
    )
    test = world().split("test")
    eligible = int((np.bincount(test.users, minlength=world().n_users) >= SESSIONS).sum())
    assert len(drawn) == eligible < 10_000


@pytest.mark.parametrize(
    ("regime", "sessions", "fragment"),
    [
        ("drift", SESSIONS, "needs a generative persona truth; on real data use one of ('stable', 'switch')"),
        ("new", SESSIONS, "needs a generative persona truth"),
        ("stable", 1, "sessions=1 must be >= 2"),
        ("stable", 500, "has 500 held-out 'test' items; ask for fewer --sessions"),
    ],
)
def test_bad_arguments_are_named(regime: Regime, sessions: int, fragment: str) -> None:
    with pytest.raises(CRSError, match=None) as error:
        held_out_sequences(world(), persona_of, log_prior(), 5, sessions, regime, np.random.default_rng(0))
    assert fragment in str(error.value)


def one_user_catalog(train: list[int], valid: list[int]) -> Catalog:
    """One user with test items 0..7 of 8 items, and the given train and valid items."""
    lists = {"train": train, "valid": valid, "test": list(range(8))}
    return Catalog(
        name="one user",
        item_aspects=sp.csr_matrix(np.ones((8, 1), dtype=bool)),
        item_names=tuple(f"item {i}" for i in range(8)),
        aspect_names=("a",),
        n_users=1,
        splits={
            name: Interactions(users=np.zeros(len(items), dtype=np.int64), items=np.array(items))
            for name, items in lists.items()
        },
    )


def halves(user: int, items: np.ndarray) -> np.ndarray:
    """Items 0..3 are the model's persona 0, items 4..7 its persona 1."""
    return (np.asarray(items, dtype=np.int64) >= 4).astype(np.int64)


@pytest.mark.parametrize("regime", HELD_OUT_REGIMES)
def test_a_test_item_the_user_also_has_in_train_or_valid_is_never_a_target(regime: Regime) -> None:
    # Items 0 and 5 are also the user's train items, item 6 a valid item: 5 usable test items remain.
    catalog = one_user_catalog(train=[0, 5], valid=[6])
    assert users_with_held_out(catalog, 5) == 1 and users_with_held_out(catalog, 6) == 0
    prior = np.log([[0.2, 0.8]])
    for seed in range(20):
        (sequence,) = held_out_sequences(catalog, halves, prior, 1, 5, regime, np.random.default_rng(seed))
        assert sorted(sequence.targets) == [1, 2, 3, 4, 7]


def test_the_switch_never_starts_at_the_first_session() -> None:
    # 4 items of each persona and S = 4: every change session 1..3 fits (and 0 would, but is no switch).
    catalog = one_user_catalog(train=[], valid=[])
    prior = np.log([[0.2, 0.8]])  # persona 0 is the switched-to one
    changes = set()
    for seed in range(40):
        (sequence,) = held_out_sequences(catalog, halves, prior, 1, 4, "switch", np.random.default_rng(seed))
        changes.add(sequence.change_session)
        assert sequence.active[: sequence.change_session].tolist() == [1] * sequence.change_session
    assert changes == {1, 2, 3}
