"""Goal samplers: pairs, multi-target goals sharing an aspect, and persona-labelled goals."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators import (
    Catalog,
    CRSError,
    Goal,
    Interactions,
    MultiTargetGoals,
    PairGoals,
    PersonaGoals,
    make_persona_world,
)


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=40, n_items=120, interactions_per_user=10, seed=5)


def toy_catalog() -> Catalog:
    """6 items x 3 aspects; user 0 has items 0 and 1 (train) and 5 (test), user 1 has item 4.

    Aspect 0 is held by items 0, 1, 2, 3; aspect 1 by item 4; aspect 2 by items 4 and 5.
    """
    rows, cols = [0, 1, 2, 3, 4, 4, 5], [0, 0, 0, 0, 1, 2, 2]
    matrix = sp.csr_matrix((np.ones(7, dtype=bool), (rows, cols)), shape=(6, 3))
    return Catalog(
        name="toy",
        item_aspects=matrix,
        item_names=tuple("abcdef"),
        aspect_names=("x", "y", "z"),
        n_users=2,
        splits={
            "train": Interactions(users=np.array([0, 0]), items=np.array([0, 1])),
            "test": Interactions(users=np.array([0, 1]), items=np.array([5, 4])),
            "valid": Interactions(users=np.array([0]), items=np.array([0])),
        },
    )


def test_pair_goals_are_the_interactions() -> None:
    goals = PairGoals(toy_catalog(), "test")
    assert goals.n_goals == 2
    assert goals.goal(1, np.random.default_rng(0)) == Goal(user=1, targets=(4,))
    with pytest.raises(CRSError, match="goal index 2 outside"):
        goals.goal(2, np.random.default_rng(0))


def test_multi_target_goals_prefer_the_users_own_items_of_the_split() -> None:
    # The same items, but user 0 holds items 0 and 1 in valid and item 3 in train: valid goal 0 is
    # (user 0, item 0), and with 2 targets it is always (0, 1), the user's other valid item with aspect 0.
    toy = toy_catalog()
    catalog = Catalog(
        name="toy",
        item_aspects=toy.item_aspects,
        item_names=toy.item_names,
        aspect_names=toy.aspect_names,
        n_users=2,
        splits={
            "train": Interactions(users=np.array([0]), items=np.array([3])),
            "valid": Interactions(users=np.array([0, 0]), items=np.array([0, 1])),
            "test": Interactions(users=np.array([1]), items=np.array([4])),
        },
    )
    goals = MultiTargetGoals(catalog, "valid", n_targets=2)
    for seed in range(20):
        assert goals.goal(0, np.random.default_rng(seed)).targets == (0, 1)
    # 3 targets: the third is the catalogue's item 2, never the user's train item 3
    goals = MultiTargetGoals(catalog, "valid", n_targets=3)
    assert {goals.goal(0, np.random.default_rng(seed)).targets for seed in range(20)} == {(0, 1, 2)}


def test_multi_target_goals_never_target_the_users_items_of_another_split() -> None:
    # Valid goal 0 is (user 0, item 0); the user's items 0 and 1 are in train: item 1 is never a
    # target (the recommender trained on it); the catalogue's items 2 and 3 top the goal up.
    goals = MultiTargetGoals(toy_catalog(), "valid", n_targets=2)
    seconds = {goals.goal(0, np.random.default_rng(seed)).targets[1] for seed in range(30)}
    assert seconds == {2, 3}
    # 6 targets asked, but only 3 items with aspect 0 may be targets: the goal has those 3.
    goals = MultiTargetGoals(toy_catalog(), "valid", n_targets=6)
    assert sorted(goals.goal(0, np.random.default_rng(0)).targets) == [0, 2, 3]


def test_multi_target_goals_use_the_pivot_with_enough_items() -> None:
    # Test goal 1 is (user 1, item 4) with aspects {1, 2}. Aspect 1 is only item 4's; aspect 2 is
    # also item 5's, so the 2-target goal is (4, 5) whichever pivot is tried first.
    goals = MultiTargetGoals(toy_catalog(), "test", n_targets=2)
    for seed in range(10):
        assert goals.goal(1, np.random.default_rng(seed)).targets == (4, 5)


@settings(max_examples=50, deadline=None)
@given(index=st.integers(0, 79), seed=st.integers(0, 2**32 - 1))
def test_multi_target_goals_are_distinct_and_share_an_aspect(index: int, seed: int) -> None:
    catalog = world()
    goals = MultiTargetGoals(catalog, "test", n_targets=(2, 3))
    goal = goals.goal(index, np.random.default_rng(seed))
    assert goal.user == goals.interactions.users[index]
    assert goal.targets[0] == goals.interactions.items[index]
    assert 2 <= len(goal.targets) <= 3  # every aspect is held by many of the 120 items
    assert len(set(goal.targets)) == len(goal.targets)
    shared = set(catalog.aspects_of(goal.targets[0]).tolist())
    for target in goal.targets[1:]:
        shared &= set(catalog.aspects_of(target).tolist())
    assert shared
    assert goal == goals.goal(index, np.random.default_rng(seed))  # seeded: same goal


@pytest.mark.parametrize("n_targets", [0, (3, 2), (0, 2)])
def test_multi_target_goals_reject_bad_counts(n_targets: int | tuple[int, int]) -> None:
    with pytest.raises(CRSError, match="n_targets"):
        MultiTargetGoals(toy_catalog(), "test", n_targets=n_targets)


def test_persona_goals_carry_the_slot_of_the_interactions_persona() -> None:
    catalog = world()
    truth = catalog.truth
    for split in ("train", "valid", "test"):
        goals = PersonaGoals(catalog, split)
        inter = goals.interactions
        for index in range(goals.n_goals):
            goal = goals.goal(index, np.random.default_rng(0))
            assert goal.targets == (inter.items[index],)
            assert truth.user_personas[goal.user, goal.persona] == inter.personas[index]


def test_persona_goals_need_persona_labels() -> None:
    with pytest.raises(CRSError, match="PersonaGoals needs persona labels"):
        PersonaGoals(toy_catalog(), "test")


def test_missing_split_is_named() -> None:
    catalog = make_persona_world(n_users=5, n_items=20, interactions_per_user=5, seed=0)
    catalog = Catalog(
        name="no_test",
        item_aspects=catalog.item_aspects,
        item_names=catalog.item_names,
        aspect_names=catalog.aspect_names,
        n_users=catalog.n_users,
        splits={"train": catalog.split("train")},
        truth=catalog.truth,
    )
    with pytest.raises(CRSError, match="no 'test' split"):
        PersonaGoals(catalog, "test")


def test_persona_goals_reject_a_persona_the_user_lacks() -> None:
    catalog = world()
    inter = catalog.split("test")
    user0 = set(catalog.truth.user_personas[0].tolist())
    foreign = next(p for p in range(catalog.truth.n_personas) if p not in user0)
    personas = inter.personas.copy()
    personas[np.flatnonzero(inter.users == 0)[0]] = foreign
    broken = Catalog(
        name="broken",
        item_aspects=catalog.item_aspects,
        item_names=catalog.item_names,
        aspect_names=catalog.aspect_names,
        n_users=catalog.n_users,
        splits={"test": Interactions(users=inter.users, items=inter.items, personas=personas)},
        truth=catalog.truth,
    )
    with pytest.raises(CRSError, match=f"has persona {foreign}, not one of user 0's personas"):
        PersonaGoals(broken, "test")
