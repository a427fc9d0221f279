"""The per-user persona memory: frozen, update (closed-form, with forgetting) and oracle priors, ranker
views that never write the shared ranker, and the evidence read from a finished conversation.

The hand-built ranker (aspect attention off, so every score is a dot product):
personas of both users p_0 = (1, 0), p_1 = (0, 1); items e_0 = (2, 0), e_1 = (0, 2), e_2 = (1, 1),
e_3 = (0, 0); so persona_item_logits(u, [0, 1]) = [[2, 0], [0, 2]].
Prototypes (1, 0), (0, 1) with one-hot mixtures give q_k = p_k; aspects a_0 = (1, 0), a_1 = (0, 1), so
q_k·e_a is the identity and the relative affinity c_{k,a} = q_k·e_a − mean_k is [[.5, −.5], [−.5, .5]].
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from envs.registry import make_env
from envs.rollout import run_episode
from envs.state import DialogueState, TurnRecord
from policies.baseline_rankers import PopularityRanker
from policies.memory import (
    DEFAULT_RULE,
    MEMORY_MODES,
    ORACLE_MASS,
    PersonaMemory,
    PersonaMemoryError,
    SessionEvidence,
    UpdateRule,
)
from policies.pretrain.ranker import PersonaRanker
from policies.rules import make_rule_policy
from simulators import make_persona_world

EMPTY = np.zeros(0, dtype=np.int64)
ITEM_ONLY = UpdateRule(forgetting=0.5, aspect_weight=0.0, item_weight=1.0, floor=0.0)


def tiny_ranker(prior: tuple[float, float] = (0.5, 0.5)) -> PersonaRanker:
    eye = np.eye(2)
    weights = {
        "user": np.zeros((2, 2)),
        "item": np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]),
        "aspect": eye.copy(),
        "personas": np.stack([eye, eye]),
        "log_prior": np.log(np.tile(prior, (2, 1))),
        "mixtures": np.stack([eye, eye]),
        "prototypes": eye.copy(),
    }
    item_aspects = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool))
    return PersonaRanker(weights, item_aspects, aspect_mode="none")


def popularity() -> Any:
    """A ranker without personas."""
    return PopularityRanker(make_persona_world(n_users=5, n_items=60, interactions_per_user=8, seed=0))


def evidence(user: int = 0, **kwargs: object) -> SessionEvidence:
    return SessionEvidence(user=user, **kwargs)  # type: ignore[arg-type]


def test_frozen_keeps_the_rankers_prior_whatever_the_sessions_say() -> None:
    ranker = tiny_ranker((0.8, 0.2))
    memory = PersonaMemory(ranker, "frozen")
    for _ in range(3):
        update = memory.update(evidence(accepted_item=1, accepted=np.array([1])))
        np.testing.assert_allclose(update.after, [0.8, 0.2])
    np.testing.assert_allclose(memory.prior(0), [0.8, 0.2])
    np.testing.assert_allclose(memory.ranker_for(0).log_prior, ranker.log_prior)
    assert memory.remembered_users() == ()


def test_update_is_one_em_step_with_forgetting_from_the_accepted_item() -> None:
    memory = PersonaMemory(tiny_ranker(), "update", ITEM_ONLY)
    update = memory.update(evidence(accepted_item=0))
    # item 0's logits (2, 0): r = softmax(log .5 + (2, 0)) = (e²/(e²+1), 1/(e²+1)) = (0.8808, 0.1192)
    r = np.array([np.e**2, 1.0]) / (np.e**2 + 1.0)
    np.testing.assert_allclose(update.log_likelihood, [0.0, -2.0])  # shifted so the max is 0
    np.testing.assert_allclose(update.responsibilities, r)
    # ρ = 0.5: π = 0.5 · (0.5, 0.5) + 0.5 · r = (0.6904, 0.3096)
    np.testing.assert_allclose(update.after, 0.5 * np.array([0.5, 0.5]) + 0.5 * r)
    np.testing.assert_allclose(memory.prior(0), update.after)
    assert memory.most_likely(0) == 0


def test_aspect_evidence_is_the_rankers_relative_affinity() -> None:
    rule = UpdateRule(forgetting=1.0, aspect_weight=1.0, item_weight=0.0, floor=0.0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    # accepted a_0 and rejected a_1: ℓ = c[:, 0] − c[:, 1] = (.5, −.5) − (−.5, .5) = (1, −1)
    update = memory.update(evidence(accepted=np.array([0]), rejected=np.array([1])))
    np.testing.assert_allclose(update.log_likelihood, [0.0, -2.0])
    # ρ = 1: the prior is the responsibilities, softmax(log .5 + (1, −1)) = (e, e⁻¹) / (e + e⁻¹)
    np.testing.assert_allclose(update.after, np.array([np.e, 1 / np.e]) / (np.e + 1 / np.e))


def test_rejected_slates_count_against_the_personas_that_liked_them() -> None:
    rule = UpdateRule(forgetting=1.0, aspect_weight=0.0, item_weight=0.0, rejected_item_weight=1.0, floor=0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    # rejected items 0 and 2: logits (2, 0) and (1, 1), centred (1, −1) and (0, 0), mean (.5, −.5)
    update = memory.update(evidence(rejected_items=np.array([0, 2])))
    np.testing.assert_allclose(update.log_likelihood, [-1.0, 0.0])


def test_a_switch_is_followed_and_the_floor_keeps_the_old_persona() -> None:
    rule = UpdateRule(forgetting=0.3, aspect_weight=0.0, item_weight=50.0, floor=0.05)
    memory = PersonaMemory(tiny_ranker((0.8, 0.2)), "update", rule)
    # item 1 with weight 50: r ≈ (0, 1). π: (.8, .2) → (.56, .44) → (.392, .608): persona 1 after two
    firsts = []
    for _ in range(12):
        memory.update(evidence(accepted_item=1))
        firsts.append(memory.most_likely(0))
    assert firsts[:2] == [0, 1] and set(firsts[1:]) == {1}
    # 0.8 · 0.7^n falls below the floor 0.05 at n = 8; then the floor, renormalised, holds it at the
    # fixed point of x = 0.05 / (0.05 + 1 − 0.7 x): 0.7 x² − 1.05 x + 0.05 = 0, x = 0.04924
    x = (1.05 - np.sqrt(1.05**2 - 4 * 0.7 * 0.05)) / (2 * 0.7)
    np.testing.assert_allclose(memory.prior(0), [x, 1 - x], atol=1e-6)


def test_a_session_touches_only_its_user_and_never_the_shared_ranker() -> None:
    ranker = tiny_ranker((0.7, 0.3))
    shared = ranker.log_prior.copy()
    memory = PersonaMemory(ranker, "update", ITEM_ONLY)
    memory.update(evidence(user=1, accepted_item=1))
    assert memory.remembered_users() == (1,)
    np.testing.assert_array_equal(ranker.log_prior, shared)
    np.testing.assert_allclose(memory.prior(0), [0.7, 0.3])
    view = memory.ranker_for(1)
    np.testing.assert_array_equal(view.log_prior[0], shared[0])  # user 0's row is the ranker's
    np.testing.assert_allclose(np.exp(view.log_prior[1]), memory.prior(1))
    assert not view.log_prior.flags.writeable
    memory.forget(1)
    np.testing.assert_allclose(memory.prior(1), [0.7, 0.3])


def test_a_view_runs_the_session_with_the_memorys_prior() -> None:
    ranker = tiny_ranker()
    memory = PersonaMemory(ranker, "update", UpdateRule(forgetting=1.0, item_weight=50.0, floor=0.0))
    memory.update(evidence(accepted_item=1))  # the memory now believes persona 1 (≈ 1.0)
    view = memory.ranker_for(0)
    none = DialogueFacts(0, EMPTY, EMPTY, EMPTY)
    np.testing.assert_allclose(view.persona_posterior(none), memory.prior(0))
    np.testing.assert_allclose(ranker.persona_posterior(none), [0.5, 0.5])  # the shared one is as it was
    # item 1 (persona 1's) now outscores item 0 (persona 0's); with the shared prior they tie
    assert view.item_scores(none, np.array([0, 1])) @ [-1, 1] > 1.0
    assert ranker.item_scores(none, np.array([0, 1])) @ [-1, 1] == pytest.approx(0.0)


def test_oracle_concentrates_on_the_active_persona_and_never_learns() -> None:
    memory = PersonaMemory(tiny_ranker((0.9, 0.1)), "oracle")
    view = memory.ranker_for(0, active=1)
    np.testing.assert_allclose(np.exp(view.log_prior[0]), [1 - ORACLE_MASS, ORACLE_MASS])
    np.testing.assert_allclose(np.exp(memory.ranker_for(0, active=None).log_prior[0]), [0.5, 0.5])
    memory.update(evidence(accepted_item=1))
    assert memory.remembered_users() == ()
    with pytest.raises(PersonaMemoryError, match="outside"):
        memory.ranker_for(0, active=2)
    with pytest.raises(PersonaMemoryError, match="mode 'oracle' only"):
        PersonaMemory(tiny_ranker(), "update").ranker_for(0, active=1)


def test_same_evidence_same_priors() -> None:
    steps = [evidence(accepted=np.array([1]), accepted_item=2), evidence(rejected_items=np.array([0, 1]))]
    priors = []
    for _ in range(2):
        memory = PersonaMemory(tiny_ranker(), "update")
        for step in steps:
            memory.update(step)
        priors.append(memory.prior(0))
    np.testing.assert_array_equal(priors[0], priors[1])


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: PersonaMemory(tiny_ranker(), "sticky"), "unknown memory mode 'sticky'"),  # type: ignore[arg-type]
        (lambda: PersonaMemory(popularity(), "frozen"), "needs a persona ranker"),
        (lambda: UpdateRule(forgetting=0.0), "forgetting=0.0"),
        (lambda: UpdateRule(item_weight=-1.0), "item_weight=-1.0"),
        (lambda: UpdateRule(floor=0.5), "floor=0.5"),
        (lambda: PersonaMemory(tiny_ranker()).prior(2), "user 2 outside"),
        (lambda: PersonaMemory(tiny_ranker()).update(evidence(user=-1)), "user -1 outside"),
    ],
)
def test_bad_uses_are_typed_errors(make: object, fragment: str) -> None:
    with pytest.raises(PersonaMemoryError, match=fragment):
        make()  # type: ignore[operator]
    assert set(MEMORY_MODES) == {"frozen", "update", "oracle"}


def test_evidence_of_a_finished_conversation() -> None:
    world = make_persona_world(n_users=30, n_items=200, interactions_per_user=12, seed=0)
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", PopularityRanker(world))
    successes = failures = 0
    for index in range(12):
        record = run_episode(
            env, policy, np.random.default_rng(index), seed=index, options={"goal_index": index}
        )
        seen = SessionEvidence.from_state(env.state)
        facts = env.state.facts()
        assert seen.user == record.user
        np.testing.assert_array_equal(seen.accepted, facts.accepted)
        np.testing.assert_array_equal(seen.rejected, facts.rejected)
        np.testing.assert_array_equal(seen.rejected_items, facts.rejected_items)
        if record.success:
            successes += 1
            assert seen.accepted_item in record.targets
        else:
            failures += 1
            assert seen.accepted_item is None
    assert successes and failures


def test_evidence_reads_the_accepted_item_from_the_turns() -> None:
    world = make_persona_world(n_users=5, n_items=60, interactions_per_user=8, seed=0)
    state = DialogueState(world, 3)
    state.history += [TurnRecord(1, "open", accepted=(2,)), TurnRecord(2, "recommend", slate=(4, 9))]
    assert SessionEvidence.from_state(state).accepted_item is None
    state.history.append(TurnRecord(3, "recommend", slate=(7, 5), accepted_item=5, rank=2))
    assert SessionEvidence.from_state(state).accepted_item == 5


def test_an_update_costs_well_under_50_ms_on_the_persona_world() -> None:
    world = make_persona_world(seed=0)  # 3,000 items, 48 aspects, 600 users: the default world
    rng = np.random.default_rng(7)
    d, k, p = 64, 3, 8
    weights = {
        "user": rng.normal(size=(world.n_users, d)),
        "item": rng.normal(size=(world.n_items, d)),
        "aspect": rng.normal(size=(world.n_aspects, d)),
        "personas": rng.normal(size=(world.n_users, k, d)),
        "log_prior": np.log(rng.dirichlet(np.ones(k), size=world.n_users)),
        "mixtures": rng.dirichlet(np.ones(p), size=(world.n_users, k)),
        "prototypes": rng.normal(size=(p, d)),
    }
    memory = PersonaMemory(PersonaRanker(weights, world.item_aspects, "attention"), "update")
    seconds = []
    for user in range(20):  # a new user each time: the ranker's per-user cache is cold
        session = evidence(
            user=user, accepted=np.array([1, 5, 9]), rejected=np.array([2, 3]), accepted_item=user,
            rejected_items=np.arange(100, 110),
        )  # fmt: skip
        started = time.perf_counter()
        memory.update(session)
        memory.ranker_for(user)
        seconds.append(time.perf_counter() - started)
    assert np.median(seconds) < 0.05, seconds


def test_the_default_rule_follows_a_switch_within_two_sessions_where_the_old_one_did_not() -> None:
    """DEFAULT_RULE (chosen on valid, its docstring): a user whose prior favours persona 0 at 0.8 and
    who then shows persona 1 twice (accepting aspect 1 and item 1) is believed to be persona 1 after
    two sessions; the earlier constants (rho 0.1, w_a 1, w_i 0.1) still believed persona 0."""
    for rule, believed in ((DEFAULT_RULE, 1), (UpdateRule(0.1, 1.0, 0.1, 0.0, 0.05), 0)):
        memory = PersonaMemory(tiny_ranker((0.8, 0.2)), "update", rule)
        for _ in range(2):
            memory.update(evidence(accepted=np.array([1]), accepted_item=1))
        assert memory.most_likely(0) == believed, rule
