"""Simulated users: behaviours the other user tests left open (mutation audit, area U).

Each test names the bug it guards against: the enumerated opening drawn among the categories of the
targets' shared aspects, goals and arguments just outside their ranges refused with a typed error,
the failed-slate count starting afresh each conversation, drift after a failed slate and among all the
new persona's items, and (envs/belief_fit.py) the temperature fit over openings that keep or exclude
the target.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from envs import ConversationEnv, DialogueFacts
from envs.belief_fit import fit_temperature
from policies.baseline_rankers import PopularityRanker
from simulators import Catalog, CRSError, Goal, Interactions, MultiInterestUser, PersonaUser, SingleTargetUser
from simulators.catalog import Taxonomy
from simulators.goals import PairGoals
from tests.envs.conftest import tiny_catalog
from tests.simulators.test_users import aspects_of, persona_goals, toy_catalog, world


def toy_with_taxonomy() -> Catalog:
    """The toy catalogue of test_users (item 0: {0, 1}; item 1: {1, 2}; item 2: {0}; item 3: {2}) with
    one category per aspect: category c lists aspect c only."""
    taxonomy = Taxonomy(parent_of=np.array([0, 1, 2]), parent_names=("cx", "cy", "cz"))
    return replace(toy_catalog(), taxonomy=taxonomy)


def test_the_enumerated_opening_names_a_category_of_an_aspect_every_target_shares() -> None:
    """Guards against drawing the opening category from one target's aspects instead of the shared ones.

    Targets 0 ({0, 1}) and 1 ({1, 2}) share only aspect 1, so category 1 is the only honest opening;
    one target alone would also allow category 0 or 2.
    """
    catalog = toy_with_taxonomy()
    user = MultiInterestUser(catalog)
    openings = set()
    for seed in range(30):
        user.reset(Goal(user=0, targets=(0, 1)), np.random.default_rng(seed))
        openings.add(user.opening_category())
    assert openings == {1}
    # One target: every category listing one of its aspects ({1, 2} -> categories 1 and 2) comes up.
    single = SingleTargetUser(catalog)
    drawn = set()
    for seed in range(30):
        single.reset(Goal(user=0, targets=(1,)), np.random.default_rng(seed))
        drawn.add(single.opening_category())
    assert drawn == {1, 2}


def test_an_enumerated_opening_needs_a_taxonomy() -> None:
    """Guards against opening a category on a catalogue that has none (a typed error, not a crash)."""
    user = SingleTargetUser(toy_catalog())
    user.reset(Goal(user=0, targets=(0,)), np.random.default_rng(0))
    with pytest.raises(CRSError, match="no category taxonomy"):
        user.opening_category()


def test_a_target_one_past_the_last_item_is_refused() -> None:
    """Guards against an off-by-one range check that lets target id n_items through to an IndexError."""
    catalog = toy_catalog()  # 4 items: ids 0..3
    with pytest.raises(CRSError, match="outside \\[0, 4\\)"):
        MultiInterestUser(catalog).reset(Goal(user=0, targets=(4,)), np.random.default_rng(0))
    with pytest.raises(CRSError, match=f"outside \\[0, {world().n_items}\\)"):
        PersonaUser(world()).reset(Goal(user=0, targets=(world().n_items,)), np.random.default_rng(0))


@pytest.mark.parametrize(("kwargs", "match"), [({"noise": -0.1}, "noise"), ({"drift": 1.5}, "drift")])
def test_persona_user_rejects_probabilities_on_the_other_side(kwargs: dict[str, float], match: str) -> None:
    """Guards against a range check that keeps only one bound of noise's or drift's [0, 1]."""
    with pytest.raises(CRSError, match=match):
        PersonaUser(world(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise": "0.1"}, "PersonaUser noise='0.1' must be a number"),
        ({"drift": None}, "PersonaUser drift=None must be a number"),
        ({"patience": 2.5}, "PersonaUser patience=2.5 must be an integer or None"),
        ({"patience": True}, "PersonaUser patience=True must be an integer or None"),
    ],
)
def test_persona_user_refuses_arguments_of_another_type_by_name(kwargs: dict, message: str) -> None:
    """user_kwargs={"noise": "0.1"} failed with Python's own comparison TypeError."""
    with pytest.raises(CRSError, match=re.escape(message)):
        PersonaUser(world(), **kwargs)


def test_persona_user_rejects_users_outside_the_range_and_a_negative_slot() -> None:
    """Guards against user checks that let n_users or -1 through, and a slot check that lets -1 pick
    the last persona."""
    catalog = world()
    user = PersonaUser(catalog)
    target = persona_goals().goal(0, np.random.default_rng(0)).targets
    with pytest.raises(CRSError, match=f"goal user {catalog.n_users} outside"):
        user.reset(Goal(user=catalog.n_users, targets=target), np.random.default_rng(0))
    with pytest.raises(CRSError, match="goal user -1 outside"):
        user.reset(Goal(user=-1, targets=target), np.random.default_rng(0))
    with pytest.raises(CRSError, match="persona slot -1"):
        user.reset(Goal(user=0, targets=target, persona=-1), np.random.default_rng(0))


def test_patience_counts_the_failed_slates_of_this_conversation_only() -> None:
    """Guards against a failed-slate count that carries over to the next conversation (the env reuses
    one user object): with patience 2, one failed slate in each of two conversations is no leave."""
    catalog = world()
    user = PersonaUser(catalog, patience=2)
    for index in (0, 1):
        user.reset(persona_goals().goal(index, np.random.default_rng(index)), np.random.default_rng(index))
        assert user.failed_slates == 0
        slate = [i for i in range(catalog.n_items) if i not in user.targets][:10]
        reaction = user.react(slate)
        assert reaction.accepted is None and not reaction.leaves
        assert user.failed_slates == 1


def test_a_failed_slate_drifts_like_an_answer() -> None:
    """Guards against drift after answers only: with drift 1, a failed slate that does not end the
    conversation changes the active persona and the target."""
    catalog = world()
    user = PersonaUser(catalog, drift=1.0)
    for index in range(5):
        goal = persona_goals().goal(index, np.random.default_rng(index))
        user.reset(goal, np.random.default_rng(index))
        slate = [i for i in range(catalog.n_items) if i not in user.targets][:10]
        assert not user.react(slate).leaves
        assert user.active_persona != goal.persona
        assert user.targets != goal.targets


def test_the_best_slot_weighs_an_aspect_by_how_many_targets_have_it() -> None:
    """Guards against counting a shared aspect once: targets 0 ({0, 1}) and 1 ({1, 2}) both have aspect
    1, so the persona of aspect 1 (slot 1, overlap 2) beats the persona of aspect 0 (slot 0, overlap 1)."""
    catalog = toy_catalog()
    personas = {"user_personas": np.array([[0, 1], [0, 1]]), "persona_aspects": np.eye(2, 3, dtype=bool)}
    user = PersonaUser(catalog, **personas)
    user.reset(Goal(user=0, targets=(0, 1)), np.random.default_rng(0))
    assert user.active_persona == 1


def test_a_user_of_one_persona_never_drifts() -> None:
    """Guards against drifting with K = 1 (no other persona to switch to: a crash, not a drift)."""
    catalog = toy_catalog()
    personas = {"user_personas": np.array([[0], [0]]), "persona_aspects": np.array([[True, False, False]])}
    user = PersonaUser(catalog, drift=1.0, **personas)
    user.reset(Goal(user=0, targets=(0,)), np.random.default_rng(0))
    for _ in range(5):
        assert user.answer([0, 2]) == {0}
        assert user.react([3]).accepted is None
    assert (user.targets, user.active_persona) == ((0,), 0)


def test_a_drift_keeps_out_only_this_users_items_of_other_splits() -> None:
    """Guards against keeping every user's train items out of a drift's fallback pool, not only this
    user's: persona 1's items are those with aspect 0 ({0, 2}); user 0 trained on item 0, user 1 on
    item 2, so user 0's test conversation drifts to item 2 (and never to item 0)."""
    catalog = replace(
        toy_catalog(),
        splits={
            "train": Interactions(users=np.array([0, 1]), items=np.array([0, 2])),
            "test": Interactions(users=np.array([0]), items=np.array([1])),
        },
    )
    signatures = np.array([[False, True, False], [True, False, False]])  # persona 1: aspect 0
    personas = {"user_personas": np.array([[0, 1], [0, 1]]), "persona_aspects": signatures}
    for seed in range(10):
        user = PersonaUser(catalog, drift=1.0, split="test", **personas)
        user.reset(Goal(user=0, targets=(1,), persona=0), np.random.default_rng(seed))
        user.answer([0])
        assert (user.active_persona, user.targets) == (1, (2,))


@pytest.mark.parametrize(
    ("user_personas", "persona_aspects", "match"),
    [
        (np.array([[0, 2], [0, 1]]), np.eye(2, 3, dtype=bool), "ids must lie in \\[0, 2\\)"),
        (np.array([[0, -1], [0, 1]]), np.eye(2, 3, dtype=bool), "ids must lie in \\[0, 2\\)"),
        (np.array([[0, 1], [0, 1]]), np.eye(2, 4, dtype=bool), "persona_aspects must have shape"),
    ],
)
def test_given_personas_that_do_not_fit_the_catalogue_are_refused(
    user_personas: np.ndarray, persona_aspects: np.ndarray, match: str
) -> None:
    """Guards against an off-by-one check of persona ids against the rows of `persona_aspects`, a
    negative id (which would index the last persona), and `persona_aspects` of another catalogue's
    aspect count (4 columns for 3 aspects)."""
    with pytest.raises(CRSError, match=match):
        PersonaUser(toy_catalog(), user_personas=user_personas, persona_aspects=persona_aspects)


def test_persona_user_refuses_targets_that_share_no_aspect() -> None:
    """Guards against a persona goal whose targets share no aspect (items 2: {0} and 3: {2}): its
    opening would have no aspect to state."""
    personas = {"user_personas": np.array([[0, 1], [0, 1]]), "persona_aspects": np.eye(2, 3, dtype=bool)}
    user = PersonaUser(toy_catalog(), **personas)
    with pytest.raises(CRSError, match="share no aspect"):
        user.reset(Goal(user=0, targets=(2, 3)), np.random.default_rng(0))


def test_a_drift_draws_the_new_target_among_all_the_users_items_of_the_new_persona() -> None:
    """Guards against always taking the first labelled item: user 0's test items 1, 2 and 3 are all
    labelled persona 1, so drifts from item 0 (persona 0) land on each of them across seeds."""
    labelled = Interactions(
        users=np.array([0, 0, 0]), items=np.array([1, 2, 3]), personas=np.array([1, 1, 1])
    )
    catalog = replace(toy_catalog(), splits={"test": labelled})
    personas = {"user_personas": np.array([[0, 1], [0, 1]]), "persona_aspects": np.eye(2, 3, dtype=bool)}
    drawn = set()
    for seed in range(40):
        user = PersonaUser(catalog, drift=1.0, split="test", **personas)
        user.reset(Goal(user=0, targets=(0,), persona=0), np.random.default_rng(seed))
        user.answer([0])
        drawn.add(user.targets)
    assert drawn == {(1,), (2,), (3,)}


def test_a_hit_is_not_a_failed_slate() -> None:
    """Guards against counting the accepted slate among the failed ones: one miss, then a hit, is one
    failed slate."""
    catalog = world()
    user = PersonaUser(catalog, patience=3)
    goal = persona_goals().goal(0, np.random.default_rng(0))
    user.reset(goal, np.random.default_rng(0))
    user.react([i for i in range(catalog.n_items) if i not in goal.targets][:10])
    assert user.react([goal.targets[0]]).accepted == goal.targets[0]
    assert user.failed_slates == 1


def test_noise_flips_each_asked_aspect_independently() -> None:
    """Guards against one coin flipping every aspect of a question together: at noise 0.5 over all 48
    aspects, some answers flip some aspects and keep others (all or none together has chance 2^-47)."""
    catalog = world()
    goal = persona_goals().goal(0, np.random.default_rng(0))
    user = PersonaUser(catalog, noise=0.5)
    user.reset(goal, np.random.default_rng(0))
    truth = aspects_of(catalog, goal.targets)
    everything = list(range(catalog.n_aspects))
    flipped = [len(user.answer(everything) ^ truth) for _ in range(20)]
    assert all(0 < n < catalog.n_aspects for n in flipped)


def test_the_best_slot_reads_the_goals_own_users_personas() -> None:
    """Guards against reading another user's personas: user 1 holds persona 1 (aspect 2) in slot 0, so
    target 3 ({2}) picks slot 0 for user 1 (slot 1 for user 0, whose slots are the other way round)."""
    signatures = np.array([[True, False, False], [False, False, True]])  # persona 0: aspect 0; 1: aspect 2
    personas = {"user_personas": np.array([[0, 1], [1, 0]]), "persona_aspects": signatures}
    user = PersonaUser(toy_catalog(), **personas)
    user.reset(Goal(user=1, targets=(3,)), np.random.default_rng(0))
    assert (user.active_persona, user.active_persona_id) == (0, 1)
    user.reset(Goal(user=0, targets=(3,)), np.random.default_rng(0))
    assert (user.active_persona, user.active_persona_id) == (1, 1)


def test_a_drift_reaches_every_other_persona_of_the_user() -> None:
    """Guards against always drifting to the same slot: from slot s, drifts over many seeds land on
    each of the other K - 1 = 3 slots, never on s."""
    catalog = world()
    goal = persona_goals().goal(0, np.random.default_rng(0))
    landed = set()
    for seed in range(40):
        user = PersonaUser(catalog, drift=1.0)
        user.reset(goal, np.random.default_rng(seed))
        user.answer([])
        landed.add(user.active_persona)
    assert landed == set(range(4)) - {goal.persona}


# --- the belief fit over the users' openings (envs/belief_fit.py) --------------------------------


class ScriptedOpenings(SingleTargetUser):
    """Opens each conversation with the next aspect of `script`, whether or not the target has it."""

    def __init__(self, catalog: Catalog, script: list[int]) -> None:
        super().__init__(catalog)
        self.script = list(script)

    def opening_aspect(self) -> int:
        return self.script.pop(0)


class TargetFirst(PopularityRanker):
    """Scores item 5 one, every other item zero."""

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return (np.asarray(items) == 5).astype(np.float64)


def test_the_fit_averages_the_targets_log_likelihood_over_the_openings_that_kept_it() -> None:
    """Guards against scoring the first candidate instead of the target, keeping only the last
    conversation, dividing by the excluded ones too, or an IndexError when the target lies beyond every
    candidate.

    Tiny catalogue, user 0 wants item 5 ({0, 3}): opening aspect 1 leaves {0, 2, 3}, all below 5
    (excluded); aspect 0 leaves {0, 1, 2, 5} and aspect 3 leaves {2, 4, 5}. With item 5 scored 1 and
    the rest 0, at T = 1 the target's log-likelihood over n candidates is 1 - log(e + n - 1).
    """
    wants_5 = Interactions(users=np.array([0]), items=np.array([5]))
    catalog = replace(tiny_catalog(), splits={"train": wants_5, "test": wants_5})
    user = ScriptedOpenings(catalog, [1, 0, 3])
    env = ConversationEnv(catalog, user, PairGoals(catalog, "test"))
    fit = fit_temperature(env, TargetFirst(catalog), [0, 0, 0], seed=3, temperatures=(1.0, 0.5))
    assert (fit.scored, fit.excluded) == (1 + 1, 1)

    def log_likelihood(n: int, t: float) -> float:
        return float(1 / t - np.log(np.exp(1 / t) + n - 1))

    expected = [(log_likelihood(4, t) + log_likelihood(3, t)) / 2 for t in (1.0, 0.5)]
    assert fit.log_likelihoods == pytest.approx(expected)
    assert fit.best == 0.5
