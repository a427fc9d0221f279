"""Mutation-audit tests for the persona world's ground truth and the goal samplers (area G).

Each test guards one behaviour a user relies on that the other simulator tests left unchecked: the
recorded ground truth matches how interactions were drawn, the documented shapes of personas, items
and splits, goals drawn from the asked interactions only, and typed errors at the boundaries.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

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
from simulators.goals import GroupGoals
from tests.envs.test_mcmipl_env import target_groups


def toy_catalog(test_users: list[int] | None = None, test_items: list[int] | None = None) -> Catalog:
    """6 items x 3 aspects, 2 users; the test split defaults to (0, 5) and (1, 4)."""
    rows, cols = [0, 1, 2, 3, 4, 4, 5], [0, 0, 0, 0, 1, 2, 2]
    matrix = sp.csr_matrix((np.ones(7, dtype=bool), (rows, cols)), shape=(6, 3))
    users = [0, 1] if test_users is None else test_users
    items = [5, 4] if test_items is None else test_items
    return Catalog(
        name="toy",
        item_aspects=matrix,
        item_names=tuple("abcdef"),
        aspect_names=("x", "y", "z"),
        n_users=2,
        splits={
            "train": Interactions(users=np.array([0, 0]), items=np.array([0, 1])),
            "test": Interactions(
                users=np.array(users, dtype=np.int64), items=np.array(items, dtype=np.int64)
            ),
            "valid": Interactions(users=np.array([0]), items=np.array([0])),
        },
    )


# ------------------------------------------------------------------------------- persona world


def test_interaction_slots_follow_the_recorded_user_weights() -> None:
    """Guards against `truth.user_weights` not being the weights that drew the persona slots
    (e.g. weights shuffled across users). Dirichlet(2) weights of 4 slots vary with sd ~0.14 and
    30 draws estimate a share with sd <= 0.09, so the true correlation is ~0.85; unrelated ~0."""
    catalog = make_persona_world(n_users=300, n_items=400, seed=3)
    truth = catalog.truth
    assert truth is not None
    counts = np.zeros_like(truth.user_weights)
    for split in ("train", "valid", "test"):
        inter = catalog.split(split)
        slots = np.argmax(truth.user_personas[inter.users] == inter.personas[:, None], axis=1)
        np.add.at(counts, (inter.users, slots), 1)
    shares = counts / counts.sum(axis=1, keepdims=True)
    correlation = np.corrcoef(shares.ravel(), truth.user_weights.ravel())[0, 1]
    assert correlation > 0.6, correlation


def test_second_group_personas_have_one_signature_there() -> None:
    """Guards against personas never getting a second group, or its signature landing in the main
    group: a persona with a second group (weight 0.9 * [0.25, 0.45] + spread > 0.2, while an unchosen
    group gets at most the 0.1 spread) has exactly one signature there, the rest in its main group."""
    with_second = without_second = 0
    for seed in range(8):
        truth = make_persona_world(n_users=3, n_items=20, interactions_per_user=5, seed=seed).truth
        assert truth is not None
        for p in range(truth.n_personas):
            weights = truth.persona_groups[p]
            main, second = np.argsort(-weights)[:2]
            sig_groups = truth.aspect_group[truth.persona_aspects[p]]
            if weights[second] > 0.2:
                with_second += 1
                assert (sig_groups == second).sum() == 1
                assert (sig_groups == main).sum() == sig_groups.size - 1 >= 1
            else:
                without_second += 1
                assert (sig_groups == main).all()
    # Each persona has a second group with probability 1/2: 64 personas, both kinds must occur.
    assert with_second >= 10 and without_second >= 10, (with_second, without_second)


def test_items_reach_seven_aspects_with_two_aspect_secondary_groups() -> None:
    """Guards against secondary groups always getting a single aspect (items of 4-5 aspects instead
    of the documented 4-7): a 7-aspect item (probability 1/8) occurs among 400 items."""
    catalog = make_persona_world(n_users=3, n_items=400, interactions_per_user=5, seed=4)
    per_item = np.diff(catalog.item_aspects.indptr)
    assert per_item.min() == 4 and per_item.max() == 7
    group = catalog.truth.aspect_group
    secondary_sizes: set[int] = set()
    for item in range(catalog.n_items):
        sizes = np.bincount(group[catalog.aspects_of(item)])
        sizes = sizes[sizes > 0]
        assert (sizes == 3).sum() >= 1  # the primary group
        secondary_sizes |= set(np.sort(sizes)[:-1].tolist())
    assert secondary_sizes == {1, 2}


@pytest.mark.parametrize(
    ("per_user", "expected"),
    # 15% rounded half to even: 10 -> 1.5 -> 2; 70 -> 10.5 -> 10; 50 -> 7.5 -> 8.
    [(10, (6, 2, 2)), (70, (50, 10, 10)), (50, (34, 8, 8))],
)
def test_split_sizes_round_fifteen_percent_half_to_even(
    per_user: int, expected: tuple[int, int, int]
) -> None:
    """Guards against truncating (or rounding half up) the 15% valid and test shares."""
    catalog = make_persona_world(n_users=3, n_items=200, interactions_per_user=per_user, seed=1)
    for split, count in zip(("train", "valid", "test"), expected, strict=True):
        np.testing.assert_array_equal(np.bincount(catalog.split(split).users, minlength=3), count)


def test_upper_bounds_of_the_arguments_are_inclusive() -> None:
    """Guards against rejecting K == n_personas or interactions_per_user == n_items, both allowed."""
    catalog = make_persona_world(
        n_users=3, n_items=6, n_personas=3, personas_per_user=3, interactions_per_user=6, seed=0
    )
    truth = catalog.truth
    assert truth is not None
    np.testing.assert_array_equal(np.sort(truth.user_personas, axis=1), np.tile([0, 1, 2], (3, 1)))
    taken = np.zeros((3, 6), dtype=np.int64)
    for split in ("train", "valid", "test"):
        inter = catalog.split(split)
        np.add.at(taken, (inter.users, inter.items), 1)
    np.testing.assert_array_equal(taken, 1)  # every user took every item exactly once


# ------------------------------------------------------------------------------------- goals


def test_an_empty_split_is_a_typed_error() -> None:
    """Guards against accepting an empty split, which would only fail later at the first draw."""
    with pytest.raises(CRSError, match="'test' is empty"):
        PairGoals(toy_catalog(test_users=[], test_items=[]), "test")


def test_goals_come_from_the_given_interactions_only() -> None:
    """Guards against ignoring the `interactions` argument and drawing from the whole split."""
    part = Interactions(users=np.array([1]), items=np.array([4]))
    goals = PairGoals(toy_catalog(), "test", interactions=part)
    assert goals.n_goals == 1
    assert goals.goal(0, np.random.default_rng(0)) == Goal(user=1, targets=(4,))


def test_training_draws_reach_every_goal_uniformly() -> None:
    """Guards against an off-by-one that never draws the last goal: 2 goals, 2,000 draws, each
    about 1/2 (±0.05 is over 4 standard deviations)."""
    goals = PairGoals(toy_catalog(), "test")
    rng = np.random.default_rng(0)
    shares = np.bincount([goals.sample_index(rng) for _ in range(2000)], minlength=2) / 2000
    assert shares.shape == (2,)
    assert shares == pytest.approx([0.5, 0.5], abs=0.05)


def test_protocol_order_is_the_legacy_seeded_shuffle() -> None:
    """Guards against a different generator than UNICORN's ``np.random.shuffle`` after seeding:
    the order must be the rows of a legacy RandomState(seed) shuffle of the goal list."""
    goals = PairGoals(make_persona_world(n_users=20, n_items=60, interactions_per_user=10, seed=2), "test")
    for seed in (1, 7):
        rows = list(range(goals.n_goals))
        np.random.RandomState(seed).shuffle(rows)
        assert goals.protocol_order(seed).tolist() == rows
        assert goals.protocol_order(seed, size=5).tolist() == rows[:5]


def test_multi_target_goals_draw_every_count_of_the_range() -> None:
    """Guards against an exclusive upper end of `n_targets`: with (2, 3) and plenty of items per
    aspect, both 2 and 3 targets occur over 60 seeds (each about half the time)."""
    catalog = make_persona_world(n_users=40, n_items=120, interactions_per_user=10, seed=5)
    goals = MultiTargetGoals(catalog, "test", n_targets=(2, 3))
    sizes = [len(goals.goal(0, np.random.default_rng(seed)).targets) for seed in range(60)]
    assert set(sizes) == {2, 3}
    assert 15 <= sizes.count(3) <= 45


def test_persona_goals_reject_a_split_without_persona_labels() -> None:
    """Guards against accepting a catalogue with ground truth whose split lacks persona labels
    (it must be the typed error, not a crash on ``None``)."""
    catalog = make_persona_world(n_users=5, n_items=20, interactions_per_user=5, seed=0)
    test = catalog.split("test")
    unlabelled = dataclasses.replace(
        catalog, splits={**catalog.splits, "test": Interactions(users=test.users, items=test.items)}
    )
    with pytest.raises(CRSError, match="PersonaGoals needs persona labels"):
        PersonaGoals(unlabelled, "test")


def test_group_goals_reject_a_user_just_past_the_catalogue() -> None:
    """Guards against an off-by-one in the range check: user id == n_users is outside."""
    with pytest.raises(CRSError, match="outside toy"):
        GroupGoals(toy_catalog(), "test", target_groups([[0, 1]], users=[2]))
    with pytest.raises(CRSError, match="outside toy"):
        GroupGoals(toy_catalog(), "test", target_groups([[0, 6]], users=[0]))


def test_group_goals_draw_users_uniformly_when_groups_are_not_sorted_by_user() -> None:
    """Guards against mapping a (user, within) draw to a goal index without the by-user order:
    users [1, 0, 0] give goal 0 (user 1's only group) 1/2, goals 1 and 2 1/4 each."""
    goals = GroupGoals(toy_catalog(), "test", target_groups([[4], [0, 1], [2, 3]], users=[1, 0, 0]))
    rng = np.random.default_rng(0)
    shares = np.bincount([goals.sample_index(rng) for _ in range(4000)], minlength=3) / 4000
    assert shares == pytest.approx([0.5, 0.25, 0.25], abs=0.04)
    for _ in range(50):
        index = goals.sample_index(rng)
        assert goals.goal(index, rng).user == (1 if index == 0 else 0)


def test_a_negative_goal_index_is_a_typed_error() -> None:
    """Guards against accepting negative indices (Python's from-the-end indexing) as goals."""
    goals = PairGoals(toy_catalog(), "test")
    with pytest.raises(CRSError, match="goal index -1 outside"):
        goals.goal(-1, np.random.default_rng(0))


def test_multi_target_goals_try_the_items_aspects_in_random_order() -> None:
    """Guards against always pivoting on the item's first aspect: over 40 seeds the targets of one
    goal must sometimes not all share it (the pivot is another of its 4-7 aspects ~3/4 of the time)."""
    catalog = make_persona_world(n_users=40, n_items=120, interactions_per_user=10, seed=5)
    goals = MultiTargetGoals(catalog, "test", n_targets=3)
    item = int(goals.interactions.items[0])
    first = int(catalog.aspects_of(item)[0])
    shares_first = []
    for seed in range(40):
        targets = goals.goal(0, np.random.default_rng(seed)).targets
        assert len(targets) == 3
        shares_first.append(all(first in catalog.aspects_of(t).tolist() for t in targets))
    assert not all(shares_first)


def test_group_goals_list_each_groups_user_and_first_item() -> None:
    """Guards against listing another item of a group (e.g. its last) as the goal's interaction: the
    first items of a user's groups are the user's interactions of the paired split."""
    goals = GroupGoals(toy_catalog(), "test", target_groups([[4, 5], [0, 1], [2, 3, 1]], users=[1, 0, 0]))
    assert goals.interactions.users.tolist() == [1, 0, 0]
    assert goals.interactions.items.tolist() == [4, 0, 2]
    assert goals.goal(2, np.random.default_rng(0)) == Goal(user=0, targets=(2, 3, 1))
