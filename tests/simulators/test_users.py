"""Simulated users: truthful answers, replay, multiple choice, patience and drift (property tests)."""

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
    MultiInterestUser,
    MultiTargetGoals,
    PersonaGoals,
    PersonaUser,
    SingleTargetUser,
    SlateReaction,
    make_persona_world,
)

SETTINGS = settings(max_examples=50, deadline=None)


@lru_cache(maxsize=1)
def world() -> Catalog:
    return make_persona_world(n_users=40, n_items=120, interactions_per_user=10, seed=3)


@lru_cache(maxsize=1)
def persona_goals() -> PersonaGoals:
    return PersonaGoals(world(), "test")


@lru_cache(maxsize=1)
def multi_goals() -> MultiTargetGoals:
    return MultiTargetGoals(world(), "test", n_targets=(2, 3))


def toy_catalog() -> Catalog:
    """4 items x 3 aspects, no persona truth.

    item 0: {0, 1}; item 1: {1, 2}; item 2: {0}; item 3: {2}.
    """
    rows, cols = [0, 0, 1, 1, 2, 3], [0, 1, 1, 2, 0, 2]
    matrix = sp.csr_matrix((np.ones(6, dtype=bool), (rows, cols)), shape=(4, 3))
    inter = Interactions(users=np.array([0, 0, 1]), items=np.array([0, 1, 3]))
    return Catalog(
        name="toy",
        item_aspects=matrix,
        item_names=("a", "b", "c", "d"),
        aspect_names=("x", "y", "z"),
        n_users=2,
        splits={"test": inter},
    )


def aspects_of(catalog: Catalog, items: tuple[int, ...]) -> set[int]:
    owned: set[int] = set()
    for item in items:
        owned.update(catalog.aspects_of(item).tolist())
    return owned


# The world: 40 users x 10 interactions; test = round(10 * 0.15) = 2 per user -> 80 test goals.
goal_indices = st.integers(0, 79)
# 8 groups x 6 aspects = 48 aspects.
asked_lists = st.lists(st.integers(0, 47), min_size=0, max_size=8, unique=True)
seeds = st.integers(0, 2**32 - 1)


# --- SingleTargetUser ------------------------------------------------------------------------


@SETTINGS
@given(index=goal_indices, seed=seeds, asked=asked_lists)
def test_single_target_user_answers_truthfully(index: int, seed: int, asked: list[int]) -> None:
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = SingleTargetUser(catalog)
    user.reset(goal, np.random.default_rng(seed))
    target_aspects = set(catalog.aspects_of(goal.targets[0]).tolist())
    assert user.opening_aspect() in target_aspects
    assert user.answer(asked) == set(asked) & target_aspects


def test_single_target_user_accepts_the_target_at_its_rank() -> None:
    user = SingleTargetUser(toy_catalog())
    user.reset(Goal(user=0, targets=(2,)), np.random.default_rng(0))
    assert user.react([3, 1, 2]) == SlateReaction(accepted=2, rank=3)
    assert user.react([0, 1]) == SlateReaction(accepted=None, rank=None)


# --- MultiInterestUser -------------------------------------------------------------------------


@SETTINGS
@given(index=goal_indices, seed=seeds, asked=asked_lists)
def test_multi_interest_answers_are_unions_and_opening_is_shared(
    index: int, seed: int, asked: list[int]
) -> None:
    catalog = world()
    goal = multi_goals().goal(index, np.random.default_rng(seed))
    user = MultiInterestUser(catalog)
    user.reset(goal, np.random.default_rng(seed))
    opening = user.opening_aspect()
    for target in goal.targets:
        assert opening in catalog.aspects_of(target)
    union = aspects_of(catalog, goal.targets)
    assert user.answer(asked) == set(asked) & union
    # The union is what matters: an aspect only one target has is still accepted.
    only_one = union - set.intersection(*(set(catalog.aspects_of(t).tolist()) for t in goal.targets))
    assert user.answer(sorted(only_one)) == only_one


def test_multi_interest_accepts_any_target_at_the_best_rank() -> None:
    # Targets 0 and 1 share aspect 1. Slate [3, 1, 0]: target 1 at rank 2 comes before target 0 at 3.
    user = MultiInterestUser(toy_catalog())
    user.reset(Goal(user=0, targets=(0, 1)), np.random.default_rng(0))
    assert user.opening_aspect() == 1
    assert user.answer([0, 1, 2]) == {0, 1, 2}  # {0, 1} ∪ {1, 2}
    assert user.react([3, 1, 0]) == SlateReaction(accepted=1, rank=2)
    assert user.react([2, 3]).accepted is None


@pytest.mark.parametrize(
    ("targets", "match"),
    [((0, 0), "repeat"), ((2, 3), "share no aspect"), ((), "no target"), ((9,), "outside")],
)
def test_multi_interest_rejects_bad_goals(targets: tuple[int, ...], match: str) -> None:
    user = MultiInterestUser(toy_catalog())
    with pytest.raises(CRSError, match=match):
        user.reset(Goal(user=0, targets=targets), np.random.default_rng(0))


# --- PersonaUser -------------------------------------------------------------------------------


@SETTINGS
@given(index=goal_indices, seed=seeds, asked=st.lists(asked_lists, min_size=1, max_size=5))
def test_persona_user_without_noise_agrees_with_the_target(
    index: int, seed: int, asked: list[list[int]]
) -> None:
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = PersonaUser(catalog, noise=0.0, drift=0.0)
    user.reset(goal, np.random.default_rng(seed))
    target_aspects = aspects_of(catalog, goal.targets)
    assert user.opening_aspect() in target_aspects
    for question in asked:
        assert user.answer(question) == set(question) & target_aspects
    assert user.targets == goal.targets


@SETTINGS
@given(index=goal_indices, seed=seeds, asked=asked_lists)
def test_persona_user_with_noise_one_flips_every_answer(index: int, seed: int, asked: list[int]) -> None:
    # noise = 1: every aspect's truth is flipped, so the answer is asked \ aspects(target).
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = PersonaUser(catalog, noise=1.0)
    user.reset(goal, np.random.default_rng(seed))
    assert user.answer(asked) == set(asked) - aspects_of(catalog, goal.targets)


def test_persona_user_noise_flips_at_the_given_rate() -> None:
    # 200 questions x 48 aspects = 9,600 Bernoulli(0.2) flips: mean 0.2, sd ≈ sqrt(0.16 / 9600) ≈ 0.004.
    catalog = world()
    goal = persona_goals().goal(0, np.random.default_rng(0))
    user = PersonaUser(catalog, noise=0.2)
    user.reset(goal, np.random.default_rng(0))
    truth = aspects_of(catalog, goal.targets)
    everything = list(range(catalog.n_aspects))
    flips = [len(user.answer(everything) ^ truth) for _ in range(200)]
    assert abs(np.sum(flips) / (200 * catalog.n_aspects) - 0.2) < 0.02


def _script(catalog: Catalog, seed: int, n_turns: int) -> list[tuple[str, list[int]]]:
    """A fixed sequence of questions and slates, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    turns = []
    for _ in range(n_turns):
        if rng.random() < 0.6:
            turns.append(("ask", rng.choice(catalog.n_aspects, size=3, replace=False).tolist()))
        else:
            turns.append(("slate", rng.choice(catalog.n_items, size=10, replace=False).tolist()))
    return turns


def _play(user: PersonaUser, goal: Goal, seed: int, script: list[tuple[str, list[int]]]) -> list[object]:
    user.reset(goal, np.random.default_rng(seed))
    trace: list[object] = [user.opening_aspect()]
    for kind, payload in script:
        if kind == "ask":
            trace.append(user.answer(payload))
        else:
            reaction = user.react(payload)
            trace.append(reaction)
            if reaction.accepted is not None or reaction.leaves:
                break
        trace.append((user.targets, user.active_persona))
    return trace


@SETTINGS
@given(index=goal_indices, seed=seeds, script_seed=st.integers(0, 1000))
def test_seeded_persona_user_replays_identically(index: int, seed: int, script_seed: int) -> None:
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    script = _script(catalog, script_seed, n_turns=14)
    first = _play(PersonaUser(catalog, noise=0.3, patience=4, drift=0.4), goal, seed, script)
    second = _play(PersonaUser(catalog, noise=0.3, patience=4, drift=0.4), goal, seed, script)
    assert first == second


def test_different_seeds_give_different_noisy_conversations() -> None:
    catalog = world()
    goal = persona_goals().goal(0, np.random.default_rng(0))
    script = _script(catalog, 0, n_turns=14)
    traces = {repr(_play(PersonaUser(catalog, noise=0.3, drift=0.4), goal, s, script)) for s in range(5)}
    assert len(traces) > 1


@SETTINGS
@given(index=goal_indices, seed=seeds, patience=st.integers(1, 6), drift=st.sampled_from([0.0, 0.5]))
def test_patience_leaves_after_exactly_that_many_failed_slates(
    index: int, seed: int, patience: int, drift: float
) -> None:
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = PersonaUser(catalog, patience=patience, drift=drift)
    user.reset(goal, np.random.default_rng(seed))
    reactions = []
    for _ in range(patience):
        # A slate that never holds a current target fails.
        slate = [i for i in range(catalog.n_items) if i not in user.targets][:10]
        reactions.append(user.react(slate))
    assert all(r.accepted is None for r in reactions)
    assert [r.leaves for r in reactions] == [False] * (patience - 1) + [True]
    assert user.failed_slates == patience


def test_without_patience_the_user_never_leaves() -> None:
    catalog = world()
    user = PersonaUser(catalog)
    user.reset(persona_goals().goal(0, np.random.default_rng(0)), np.random.default_rng(0))
    slate = [i for i in range(catalog.n_items) if i not in user.targets][:10]
    assert not any(user.react(slate).leaves for _ in range(50))


def test_a_hit_is_accepted_even_at_the_last_patience() -> None:
    catalog = world()
    user = PersonaUser(catalog, patience=1)
    goal = persona_goals().goal(0, np.random.default_rng(0))
    user.reset(goal, np.random.default_rng(0))
    assert user.react([goal.targets[0]]) == SlateReaction(accepted=goal.targets[0], rank=1, leaves=False)


@SETTINGS
@given(index=goal_indices, seed=seeds, script_seed=st.integers(0, 1000))
def test_drift_zero_never_changes_the_target(index: int, seed: int, script_seed: int) -> None:
    catalog = world()
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = PersonaUser(catalog, noise=0.2, drift=0.0)
    user.reset(goal, np.random.default_rng(seed))
    for kind, payload in _script(catalog, script_seed, n_turns=14):
        if kind == "ask":
            user.answer(payload)
        elif user.react(payload).accepted is not None:
            break
        assert user.targets == goal.targets
        assert user.active_persona == goal.persona


@SETTINGS
@given(index=goal_indices, seed=seeds, n_turns=st.integers(1, 8))
def test_drift_one_changes_persona_and_target_every_turn(index: int, seed: int, n_turns: int) -> None:
    catalog = world()
    truth = catalog.truth
    goal = persona_goals().goal(index, np.random.default_rng(seed))
    user = PersonaUser(catalog, drift=1.0)
    user.reset(goal, np.random.default_rng(seed))
    labelled: dict[tuple[int, int], set[int]] = {}  # (user, persona) -> the user's items of that persona
    for split in catalog.splits.values():
        for u, i, p in zip(split.users, split.items, split.personas, strict=True):
            labelled.setdefault((int(u), int(p)), set()).add(int(i))
    for _ in range(n_turns):
        before = (user.targets, user.active_persona)
        user.answer([0])
        assert user.active_persona != before[1]
        assert user.targets != before[0] and len(user.targets) == 1
        persona = int(truth.user_personas[goal.user, user.active_persona])
        assert user.active_persona_id == persona
        # The new target is one of the user's own items of the new persona (K = 3, 10 items each,
        # so every (user, persona) pair with weight has some), or else carries a signature aspect.
        own = labelled.get((goal.user, persona), set())
        has_signature = truth.persona_aspects[persona, catalog.aspects_of(user.targets[0])].any()
        assert user.targets[0] in own or (not (own - {before[0][0]}) and has_signature)


def test_a_test_conversations_drift_never_targets_the_users_train_or_valid_items() -> None:
    """With the conversation's split (as `envs.make_env` passes it), no drift lands on an item the
    recommender trained or validated on; without one (all splits), it does."""
    catalog = world()
    goals = persona_goals()

    def drifted(split: str | None) -> tuple[int, int]:
        leaks = total = 0
        for index in range(goals.n_goals):
            goal = goals.goal(index, np.random.default_rng(index))
            user = PersonaUser(catalog, drift=1.0, split=split)
            user.reset(goal, np.random.default_rng(index))
            seen = {
                int(item)
                for name in ("train", "valid")
                for item in catalog.split(name).items[catalog.split(name).users == goal.user]
            }
            for _ in range(6):
                user.answer([0])
                total += 1
                leaks += user.targets[0] in seen
        return leaks, total

    leaks, total = drifted("test")
    assert total >= 200 and leaks == 0
    assert drifted(None)[0] > 0  # the test is able to see a leak


def test_drift_is_visible_to_the_opening_and_answers_of_the_new_target() -> None:
    catalog = world()
    user = PersonaUser(catalog, drift=1.0)
    user.reset(persona_goals().goal(5, np.random.default_rng(0)), np.random.default_rng(1))
    user.answer([])
    new_aspects = aspects_of(catalog, user.targets)
    everything = list(range(catalog.n_aspects))
    # drift = 1 changes the target again after this answer, but the answer is about the current one.
    assert user.answer(everything) == new_aspects


def test_persona_goal_slot_names_the_interactions_persona() -> None:
    catalog = world()
    goals = persona_goals()
    user = PersonaUser(catalog)
    for index in range(goals.n_goals):
        goal = goals.goal(index, np.random.default_rng(index))
        user.reset(goal, np.random.default_rng(index))
        assert user.active_persona_id == goals.interactions.personas[index]


def test_persona_user_needs_personas() -> None:
    with pytest.raises(CRSError, match="no persona ground truth"):
        PersonaUser(toy_catalog())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise": 1.5}, "noise"), ({"drift": -0.1}, "drift"), ({"patience": 0}, "patience")],
)
def test_persona_user_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(CRSError, match=match):
        PersonaUser(world(), **kwargs)


def test_persona_user_on_data_with_given_personas() -> None:
    # Toy: persona 0 cares about aspect 0, persona 1 about aspect 2; both users have personas (0, 1).
    catalog = toy_catalog()
    user_personas = np.array([[0, 1], [0, 1]])
    persona_aspects = np.array([[True, False, False], [False, False, True]])
    user = PersonaUser(catalog, user_personas=user_personas, persona_aspects=persona_aspects, drift=1.0)
    # No persona in the goal: target 3 has aspect 2 -> persona 1 (slot 1) matches best.
    user.reset(Goal(user=1, targets=(3,)), np.random.default_rng(0))
    assert user.active_persona == 1
    assert user.answer([0, 2]) == {2}
    # Drift to slot 0 (persona 0, aspect 0): no labelled interactions, so an item with aspect 0 (0 or 2).
    assert user.active_persona == 0
    assert user.targets[0] in {0, 2}
    with pytest.raises(CRSError, match="user_personas must have shape"):
        PersonaUser(catalog, user_personas=np.zeros((3, 2), dtype=int), persona_aspects=persona_aspects)
    with pytest.raises(CRSError, match="both"):
        PersonaUser(catalog, user_personas=user_personas)


def test_persona_user_rejects_a_slot_outside_the_users_personas() -> None:
    user = PersonaUser(world())
    with pytest.raises(CRSError, match="persona slot 4"):
        user.reset(Goal(user=0, targets=(0,), persona=4), np.random.default_rng(0))


def test_single_target_opening_is_drawn_among_all_the_targets_aspects() -> None:
    catalog = world()
    goal = persona_goals().goal(0, np.random.default_rng(0))
    aspects = set(catalog.aspects_of(goal.targets[0]).tolist())
    assert len(aspects) >= 3  # the world's items have 4 to 7 aspects
    user = SingleTargetUser(catalog)
    openings = set()
    for seed in range(60):
        user.reset(goal, np.random.default_rng(seed))
        openings.add(user.opening_aspect())
    assert openings == aspects


def test_drift_never_redraws_the_current_target_even_when_the_new_persona_labels_it() -> None:
    # User 0's test items 0 and 1 are both labelled persona 1; the goal is item 0 under persona 0 (slot 0).
    # Drift moves to slot 1, whose items are {0, 1}: the new target must be the other one, item 1.
    toy = toy_catalog()
    labelled = Interactions(users=np.array([0, 0]), items=np.array([0, 1]), personas=np.array([1, 1]))
    catalog = Catalog(
        name="toy",
        item_aspects=toy.item_aspects,
        item_names=toy.item_names,
        aspect_names=toy.aspect_names,
        n_users=2,
        splits={"test": labelled},
    )
    personas = {"user_personas": np.array([[0, 1], [0, 1]]), "persona_aspects": np.eye(2, 3, dtype=bool)}
    for seed in range(20):
        user = PersonaUser(catalog, drift=1.0, split="test", **personas)
        user.reset(Goal(user=0, targets=(0,), persona=0), np.random.default_rng(seed))
        user.answer([0])
        assert (user.active_persona, user.targets) == (1, (1,))
