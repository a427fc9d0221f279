"""Tests written from a mutation audit of `policies.memory` (the persona memory's core): each guards
against a plausible bug the other tests let through. Expected values are worked out by hand with Bayes'
rule on the hand-built ranker of `tests.policies.test_memory` (item 0's persona logits (2, 0), item 1's
(0, 2); two aspects)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from envs.state import TurnRecord
from policies.memory import (
    ASPECT_RATE,
    DEFAULT_RULE,
    ORACLE_MASS,
    PersonaMemory,
    PersonaMemoryError,
    RuleBeliefPolicy,
    SessionEvidence,
    UpdateRule,
    accepted_item,
    rule_of,
)
from tests.policies.test_memory import NO_HOME, evidence, random_ranker, tiny_ranker

ASPECTS_ONLY = UpdateRule(
    switch_rate=0.2,
    dominance=0.8,
    aspect_weight=0.0,
    item_weight=1.0,
    rejected_item_weight=0.0,
    aspect_rate=0.5,
    update_prior=False,
)
"""The accepted item alone names the active persona; the prior stays the ranker's, W moves by η = 0.5."""


def bayes(prior: np.ndarray, log_likelihood: np.ndarray) -> np.ndarray:
    """P(active persona | evidence) ∝ prior ⊙ exp(ℓ), written out."""
    joint = prior * np.exp(log_likelihood)
    out: np.ndarray = joint / joint.sum()
    return out


# ------------------------------------------------------------------------------------ rules and constants
def test_the_default_constants_are_the_documented_ones() -> None:
    """The constants chosen on valid (their docstrings): a silent change alters every reported figure."""
    documented = UpdateRule(
        switch_rate=0.3,
        dominance=0.8,
        aspect_weight=1.0,
        item_weight=1.0,
        rejected_item_weight=0.25,
        aspect_rate=0.0,
        update_prior=True,
        view_power=4.0,
        home_rate=0.3,
    )
    assert documented == DEFAULT_RULE
    assert ORACLE_MASS == 0.95 and ASPECT_RATE == 0.25


def test_the_prior_variant_of_an_aspect_learning_rule_learns_nothing_and_moves_the_prior() -> None:
    """Guards against "prior" keeping the base rule's aspect rate or its update_prior False: it is the
    prior update alone whatever rule it starts from."""
    for base in (UpdateRule(aspect_rate=2.0), UpdateRule(aspect_rate=2.0, update_prior=False)):
        prior = rule_of("prior", base)
        assert prior.aspect_rate == 0.0 and prior.update_prior and prior.variant == "prior"
        assert prior.view_power == base.view_power and prior.switch_rate == base.switch_rate
        both = rule_of("both", base)
        assert both.aspect_rate == 2.0 and both.update_prior and both.variant == "both"


def test_a_negative_aspect_weight_is_refused() -> None:
    """Every evidence weight is checked, the aspects' too, not only the items'."""
    with pytest.raises(PersonaMemoryError, match=r"aspect_weight=-1.0 must be >= 0"):
        UpdateRule(aspect_weight=-1.0)


def test_a_memory_that_does_not_update_takes_a_rule_it_never_uses() -> None:
    """The dominance check (above 1/K) is for mode "update" only: "frozen" and "oracle" never filter."""
    weak = UpdateRule(dominance=0.4)
    for mode in ("frozen", "oracle"):
        memory = PersonaMemory(tiny_ranker((0.7, 0.3)), mode, weak)  # type: ignore[arg-type]
        np.testing.assert_allclose(memory.prior(0), [0.7, 0.3])
    with pytest.raises(PersonaMemoryError, match="exceed 1/K"):
        PersonaMemory(tiny_ranker(), "update", weak)


# ---------------------------------------------------------------------------------------- the evidence
def test_an_accepted_item_0_is_read_from_the_turns() -> None:
    """Item 0 is an item like any other: a session that accepted it is a success with evidence, not a
    failed one (a truthiness test would drop it)."""
    turns = [TurnRecord(1, "open", accepted=(1,)), TurnRecord(2, "recommend", slate=(0, 3), accepted_item=0)]
    assert accepted_item(turns) == 0
    assert accepted_item(turns[:1]) is None


def test_the_evidence_keeps_its_own_read_only_int64_copies() -> None:
    """Each of the session's arrays is copied and frozen: the caller's later edits do not reach it, and
    plain lists are taken."""
    items = np.array([0, 2])
    session = SessionEvidence(user=0, accepted=[1], rejected=[0], rejected_items=items)  # type: ignore[arg-type]
    items[0] = 3
    np.testing.assert_array_equal(session.rejected_items, [0, 2])
    for array in (session.accepted, session.rejected, session.rejected_items):
        assert array.dtype == np.int64 and not array.flags.writeable


# ------------------------------------------------------------------------------------------ the update
def test_a_memory_that_does_not_update_reports_its_prior_as_the_responsibilities() -> None:
    """Modes "frozen" and "oracle": the responsibilities are the prior before (as documented), ℓ zeros."""
    for mode in ("frozen", "oracle"):
        memory = PersonaMemory(tiny_ranker((0.7, 0.3)), mode)  # type: ignore[arg-type]
        update = memory.update(evidence(accepted=np.array([1]), accepted_item=1))
        np.testing.assert_allclose(update.responsibilities, [0.7, 0.3])
        np.testing.assert_array_equal(update.log_likelihood, [0.0, 0.0])
        np.testing.assert_allclose(update.after, [0.7, 0.3])


def test_what_the_memory_hands_out_is_read_only() -> None:
    """A caller that writes into a prior or an update's arrays must not change the memory's belief."""
    memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", NO_HOME)
    update = memory.update(evidence(accepted=np.array([1]), accepted_item=1))
    arrays = (update.before, update.after, update.log_likelihood, update.responsibilities, memory.prior(0))
    for array in arrays:
        assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        memory.prior(0)[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        memory.prior(1)[0] = 1.0  # a user the memory never updated: the ranker's row, as a copy


def test_most_likely_is_the_first_of_tied_personas() -> None:
    memory = PersonaMemory(random_ranker(k=3), "update", NO_HOME)
    memory.restore(1, [0.2, 0.4, 0.4])
    assert memory.most_likely(1) == 1
    assert PersonaMemory(tiny_ranker(), "update").most_likely(0) == 0


# ----------------------------------------------------------------------------- learned aspect weights
def test_aspect_weights_step_by_the_aspect_rate_times_the_responsibilities() -> None:
    """W[:, a] = ±η·r, with r by Bayes' rule: from the uniform prior and item 1 (ℓ = (−2, 0)),
    r = (e⁻², 1)/(1 + e⁻²); η = 0.5, accepted aspect 0 (+), rejected aspect 1 (−)."""
    memory = PersonaMemory(tiny_ranker(), "update", ASPECTS_ONLY)
    memory.update(evidence(accepted=np.array([0]), rejected=np.array([1]), accepted_item=1))
    r = bayes(np.array([0.5, 0.5]), np.array([-2.0, 0.0]))
    np.testing.assert_allclose(memory.aspect_weights(0), np.stack([0.5 * r, -0.5 * r], axis=1), rtol=1e-12)


def test_aspect_weights_stay_in_their_aspects_columns_as_more_are_touched() -> None:
    """Guards against W's columns read or kept by position: a first session touches aspect 1 only, a
    second aspect 0; each aspect's weights stay its own. With the prior kept (aspects only) each
    session's responsibilities are Bayes' rule from the ranker's uniform prior."""
    memory = PersonaMemory(tiny_ranker(), "update", ASPECTS_ONLY)
    memory.update(evidence(accepted=np.array([1]), accepted_item=1))
    r1 = bayes(np.array([0.5, 0.5]), np.array([-2.0, 0.0]))
    np.testing.assert_allclose(memory.aspect_weights(0), np.stack([np.zeros(2), 0.5 * r1], axis=1))
    memory.update(evidence(accepted=np.array([0]), accepted_item=0))
    r2 = bayes(np.array([0.5, 0.5]), np.array([0.0, -2.0]))
    np.testing.assert_allclose(memory.aspect_weights(0), np.stack([0.5 * r2, 0.5 * r1], axis=1), rtol=1e-12)
    # six aspects: a session that touched aspect 4 alone moves column 4 alone
    ranker = random_ranker(k=3)
    memory = PersonaMemory(ranker, "update", rule_of("aspects"))
    update = memory.update(evidence(user=1, accepted=np.array([4])))
    weights = memory.aspect_weights(1)
    assert weights is not None and weights.shape == (3, 6)
    expected = np.zeros((3, 6))
    expected[:, 4] = ASPECT_RATE * update.responsibilities
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_a_session_without_aspects_learns_no_weights() -> None:
    """A user whose sessions answered no aspect has no weights (None), as one never met."""
    memory = PersonaMemory(tiny_ranker(), "update", rule_of("both"))
    memory.update(evidence(accepted_item=1))
    assert memory.aspect_weights(0) is None
    memory.update(evidence(accepted=np.array([0]), accepted_item=1))
    assert memory.aspect_weights(0) is not None


def test_restoring_a_prior_keeps_the_learned_aspect_weights() -> None:
    """A memory file holds no weights: restoring the prior leaves the user's W as it was (documented)."""
    memory = PersonaMemory(tiny_ranker(), "update", dataclasses.replace(rule_of("both"), home_rate=0.0))
    memory.update(evidence(accepted=np.array([0]), rejected=np.array([1]), accepted_item=1))
    learned = memory.aspect_weights(0)
    assert learned is not None and np.abs(learned).sum() > 0
    memory.restore(0, [0.3, 0.7])
    np.testing.assert_array_equal(memory.aspect_weights(0), learned)
    np.testing.assert_allclose(memory.prior(0), [0.3, 0.7])


# ------------------------------------------------------------------------------ oracle, restore, forget
def test_a_negative_oracle_slot_is_refused() -> None:
    """Slot −1 (a persona the ranker lacks) is no slot: it must not put the oracle's mass on the last."""
    memory = PersonaMemory(tiny_ranker(), "oracle")
    with pytest.raises(PersonaMemoryError, match=r"oracle slot -1 outside \[0, 2\)"):
        memory.oracle_prior(-1)
    with pytest.raises(PersonaMemoryError, match="outside"):
        memory.ranker_for(0, active=-1)


@pytest.mark.parametrize("bad", [[float("nan"), 1.0], [float("inf"), 1.0], [0.5, 0.3, 0.2]])
def test_restore_refuses_a_prior_that_is_no_distribution(bad: list[float]) -> None:
    """A NaN or infinite weight (or the wrong length) is refused, and the user stays unremembered."""
    memory = PersonaMemory(tiny_ranker(), "update", NO_HOME)
    with pytest.raises(PersonaMemoryError, match="must be 2 finite weights >= 0"):
        memory.restore(0, bad)
    assert memory.remembered_users() == ()


def test_restore_refuses_a_home_outside_0_1_under_any_rule() -> None:
    """The home check holds for a rule without a home state too (the documented refusal)."""
    memory = PersonaMemory(tiny_ranker(), "update", NO_HOME)
    with pytest.raises(PersonaMemoryError, match=r"home 1.5 of user 0 must lie in \[0, 1\]"):
        memory.restore(0, [0.5, 0.5], home=1.5)
    assert memory.remembered_users() == ()


def test_forgetting_a_user_outside_the_ranker_is_refused() -> None:
    """`forget` names a bad id as every other reading of the memory does, rather than doing nothing."""
    memory = PersonaMemory(tiny_ranker(), "update")
    for user in (2, -1):
        with pytest.raises(PersonaMemoryError, match=f"user {user} outside"):
            memory.forget(user)


def test_a_rule_belief_policy_plays_its_own_rule_over_the_sessions_view() -> None:
    """Each session is played by the named rule (not another) built over the memory's view."""
    memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", NO_HOME)
    memory.update(evidence(accepted=np.array([1]), accepted_item=1))
    view = memory.ranker_for(0)
    for name in ("ask-2", "max-entropy"):
        policy = RuleBeliefPolicy(name).for_session(view, 0)
        assert policy.name == name and policy.ranker is view  # type: ignore[attr-defined]
