"""The per-user persona memory: frozen, update (a switching filter, closed form) and oracle priors,
ranker views that never write the shared ranker, and the evidence read from a finished conversation.

The hand-built ranker (aspect attention off, so every score is a dot product):
personas of both users p_0 = (1, 0), p_1 = (0, 1); items e_0 = (2, 0), e_1 = (0, 2), e_2 = (1, 1),
e_3 = (0, 0); so persona_item_logits(u, [0, 1]) = [[2, 0], [0, 2]].
Prototypes (1, 0), (0, 1) with one-hot mixtures give q_k = p_k; aspects a_0 = (1, 0), a_1 = (0, 1), so
q_k·e_a is the identity and the relative affinity c_{k,a} = q_k·e_a − mean_k is [[.5, −.5], [−.5, .5]].
"""

from __future__ import annotations

import dataclasses
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
    ASPECT_RATE,
    DEFAULT_RULE,
    MEMORY_MODES,
    MEMORY_UPDATES,
    ORACLE_MASS,
    PersonaMemory,
    PersonaMemoryError,
    SessionEvidence,
    UpdateRule,
    rule_of,
)
from policies.pretrain.ranker import PersonaRanker
from policies.rules import make_rule_policy
from simulators import make_persona_world

EMPTY = np.zeros(0, dtype=np.int64)
ITEM_ONLY = UpdateRule(
    switch_rate=0.2, dominance=0.8, aspect_weight=0.0, item_weight=1.0, rejected_item_weight=0
)
NO_HOME = dataclasses.replace(DEFAULT_RULE, home_rate=0.0)
"""The default rule's filter without a home state."""


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


def random_ranker(k: int = 3, users: int = 4, seed: int = 0) -> PersonaRanker:
    """A small ranker with `k` personas per user and random weights (aspect attention on)."""
    rng = np.random.default_rng(seed)
    d, n_items, n_aspects, p = 8, 30, 6, 4
    weights = {
        "user": rng.normal(size=(users, d)),
        "item": rng.normal(size=(n_items, d)),
        "aspect": rng.normal(size=(n_aspects, d)),
        "personas": rng.normal(size=(users, k, d)),
        "log_prior": np.log(rng.dirichlet(np.ones(k), size=users)),
        "mixtures": rng.dirichlet(np.ones(p), size=(users, k)),
        "prototypes": rng.normal(size=(p, d)),
    }
    item_aspects = sp.csr_matrix(rng.random((n_items, n_aspects)) < 0.3)
    return PersonaRanker(weights, item_aspects, "attention")


def filter_step(d: np.ndarray, log_likelihood: np.ndarray, rule: UpdateRule) -> tuple[np.ndarray, ...]:
    """The filter by hand, with explicit sums: (responsibilities, the next dominant belief, the prior)."""
    k = d.shape[0]
    E = np.array(
        [[rule.dominance if a == b else (1 - rule.dominance) / (k - 1) for b in range(k)] for a in range(k)]
    )
    T = np.array(
        [[1 - rule.switch_rate if a == b else rule.switch_rate / (k - 1) for b in range(k)] for a in range(k)]
    )
    L = np.exp(log_likelihood)
    post = np.array([d[i] * sum(E[i, a] * L[a] for a in range(k)) for i in range(k)])
    post /= post.sum()
    resp = np.array([sum(d[i] * E[i, a] for i in range(k)) * L[a] for a in range(k)])
    following = np.array([sum(post[i] * T[i, j] for i in range(k)) for j in range(k)])
    prior = np.array([sum(following[i] * E[i, a] for i in range(k)) for a in range(k)])
    return resp / resp.sum(), following, prior


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


def test_update_is_one_filter_step_from_the_accepted_item() -> None:
    memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", ITEM_ONLY)
    update = memory.update(evidence(accepted_item=0))
    np.testing.assert_allclose(update.log_likelihood, [0.0, -2.0])  # item 0's logits (2, 0), max shifted to 0
    np.testing.assert_allclose(update.before, [0.7, 0.3])  # a never-updated user's prior is the ranker's
    # d = (.7, .3); E = [[.8, .2], [.2, .8]]; L = (1, e⁻²) = (1, .1353)
    # d_post ∝ (.7 (.8 + .2 · .1353), .3 (.2 + .8 · .1353)) = (.5789, .0925) → (.8622, .1378)
    # d' = d_post T = (.8622 · .8 + .1378 · .2, ...) = (.7173, .2827); prior = d' E = (.6304, .3696)
    resp, following, prior = filter_step(np.array([0.7, 0.3]), np.array([0.0, -2.0]), ITEM_ONLY)
    np.testing.assert_allclose(following, [0.71733, 0.28267], atol=1e-4)
    np.testing.assert_allclose(prior, [0.63040, 0.36960], atol=1e-4)
    # responsibilities ∝ (d E) ⊙ L = (.62, .38) ⊙ (1, .1353)
    np.testing.assert_allclose(resp, np.array([0.62, 0.38 * np.exp(-2)]) / (0.62 + 0.38 * np.exp(-2)))
    np.testing.assert_allclose(update.responsibilities, resp, rtol=1e-12)
    np.testing.assert_allclose(update.after, prior, rtol=1e-12)
    np.testing.assert_allclose(memory.prior(0), update.after)
    assert memory.most_likely(0) == 0
    # the second step starts from d', not from the prior d' E
    second = memory.update(evidence(accepted_item=1))
    resp, _, prior = filter_step(following, np.array([-2.0, 0.0]), ITEM_ONLY)
    np.testing.assert_allclose(second.responsibilities, resp, rtol=1e-12)
    np.testing.assert_allclose(second.after, prior, rtol=1e-12)


def test_one_update_is_the_hand_filter_step_with_three_personas() -> None:
    ranker = random_ranker(k=3)
    rule = UpdateRule(
        switch_rate=0.25, dominance=0.7, aspect_weight=1.5, item_weight=0.5, rejected_item_weight=0.5
    )
    memory = PersonaMemory(ranker, "update", rule)
    session = evidence(
        user=2, accepted=np.array([1, 4]), rejected=np.array([0]), rejected_items=np.array([3, 7, 11]),
        accepted_item=5,
    )  # fmt: skip
    update = memory.update(session)
    # ℓ by hand for user 2, whose prior is not user 0's: the aspect term is log β − log π of user 2
    log_prior = ranker.log_prior[2] - np.log(np.exp(ranker.log_prior[2]).sum())
    assert not np.allclose(log_prior, ranker.log_prior[0] - np.log(np.exp(ranker.log_prior[0]).sum()))
    aspects = np.log(ranker.persona_posterior(session.facts)) - log_prior
    rejected = ranker.persona_item_logits(2, np.array([3, 7, 11]))
    by_hand = (
        1.5 * aspects
        + 0.5 * ranker.persona_item_logits(2, np.array([5]))[:, 0]
        + 0.5 * (rejected - rejected.mean(axis=0)).mean(axis=1)
    )
    np.testing.assert_allclose(update.log_likelihood, by_hand - by_hand.max(), rtol=1e-10, atol=1e-12)
    d = np.exp(ranker.log_prior[2]) / np.exp(ranker.log_prior[2]).sum()
    resp, following, prior = filter_step(d, update.log_likelihood, rule)
    np.testing.assert_allclose(update.responsibilities, resp, rtol=1e-12)
    np.testing.assert_allclose(update.after, prior, rtol=1e-12)
    np.testing.assert_allclose(following @ rule.emission(3), prior, rtol=1e-12)
    c = (1 - rule.dominance) / 2
    assert update.after.min() >= c - 1e-15  # every persona keeps at least (1 − m)/(K − 1)


def test_aspect_evidence_is_the_rankers_relative_affinity() -> None:
    rule = UpdateRule(aspect_weight=1.0, item_weight=0.0, rejected_item_weight=0.0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    # accepted a_0 and rejected a_1: ℓ = c[:, 0] − c[:, 1] = (.5, −.5) − (−.5, .5) = (1, −1)
    update = memory.update(evidence(accepted=np.array([0]), rejected=np.array([1])))
    np.testing.assert_allclose(update.log_likelihood, [0.0, -2.0])
    # from the uniform prior d E is uniform: the responsibilities are softmax((1, −1)) = (e, e⁻¹)/(e + e⁻¹)
    np.testing.assert_allclose(update.responsibilities, np.array([np.e, 1 / np.e]) / (np.e + 1 / np.e))
    assert memory.most_likely(0) == 0


def test_rejected_slates_count_for_the_personas_that_score_them_high() -> None:
    """The ranker served the rejected slates from the session's belief, which the answers had moved
    towards the active persona: their items are evidence for the personas that score them high."""
    rule = UpdateRule(aspect_weight=0.0, item_weight=0.0, rejected_item_weight=1.0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    # rejected items 0 and 2: logits (2, 0) and (1, 1), centred (1, −1) and (0, 0), mean (.5, −.5)
    update = memory.update(evidence(rejected_items=np.array([0, 2])))
    np.testing.assert_allclose(update.log_likelihood, [0.0, -1.0])
    assert update.responsibilities[0] > 0.5 and update.after[0] > 0.5
    assert memory.most_likely(0) == 0
    # weight 0: the rejected items say nothing
    silent = PersonaMemory(
        tiny_ranker(), "update", UpdateRule(aspect_weight=0, item_weight=0, rejected_item_weight=0)
    )
    np.testing.assert_allclose(silent.update(evidence(rejected_items=np.array([0, 2]))).after, [0.5, 0.5])


def test_sessions_naming_a_persona_are_followed_within_two_sessions_and_back() -> None:
    memory = PersonaMemory(tiny_ranker((0.8, 0.2)), "update", NO_HOME)
    persona_1 = evidence(accepted=np.array([1]), accepted_item=1)
    persona_0 = evidence(accepted=np.array([0]), accepted_item=0)
    believed = []
    for _ in range(8):
        memory.update(persona_1)
        believed.append(memory.most_likely(0))
    assert believed[1:] == [1] * 7
    # the transition keeps the old persona recoverable: no floor needed, d E >= (1 − m)/(K − 1) always
    assert memory.prior(0)[0] >= 1 - DEFAULT_RULE.dominance - 1e-15
    believed = []
    for _ in range(2):
        memory.update(persona_0)
        believed.append(memory.most_likely(0))
    assert believed[-1] == 0
    # a session with no evidence only lets the belief drift towards uniform by the switch rate
    before = memory.prior(0)
    after = memory.update(evidence()).after
    assert abs(after[0] - 0.5) < abs(before[0] - 0.5) and memory.most_likely(0) == 0


def test_restoring_the_prior_continues_the_filter_exactly() -> None:
    """With the default rule (a home state): the prior and the chance of being home, as a file keeps them."""
    for ranker, user in ((tiny_ranker((0.6, 0.4)), 1), (random_ranker(k=3), 3)):
        sessions = [
            evidence(user=user, accepted=np.array([1]), accepted_item=2),
            evidence(user=user, accepted=np.array([0]), rejected_items=np.array([0, 1]), accepted_item=1),
            evidence(user=user, accepted_item=0),
        ]
        one = PersonaMemory(ranker, "update")
        home = one.update(sessions[0]).home
        stored = [float(p) for p in one.prior(user)]  # what a memory file keeps
        other = PersonaMemory(ranker, "update")
        other.restore(user, stored, home)
        np.testing.assert_array_equal(other.prior(user), np.array(stored) / np.sum(stored))
        np.testing.assert_allclose(other.prior(user), one.prior(user), rtol=0, atol=1e-15)
        for session in sessions[1:]:
            a, b = one.update(session), other.update(session)
            np.testing.assert_allclose(b.responsibilities, a.responsibilities, rtol=0, atol=1e-14)
            np.testing.assert_allclose(b.after, a.after, rtol=0, atol=1e-14)
        assert other.remembered_users() == (user,)


def test_a_never_updated_users_view_is_the_ranker_bit_for_bit() -> None:
    for ranker in (tiny_ranker((0.7, 0.3)), random_ranker(k=3)):
        memory = PersonaMemory(ranker, "update")
        np.testing.assert_array_equal(memory.ranker_for(0).log_prior, ranker.log_prior)
        np.testing.assert_allclose(memory.prior(1), np.exp(ranker.log_prior[1]), rtol=1e-12)
        memory.update(evidence(user=1, accepted_item=1))
        np.testing.assert_array_equal(memory.ranker_for(0).log_prior[0], ranker.log_prior[0])
        memory.forget(1)
        np.testing.assert_array_equal(memory.ranker_for(1).log_prior, ranker.log_prior)


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
    rule = UpdateRule(switch_rate=0.01, dominance=1.0, item_weight=50.0)
    memory = PersonaMemory(ranker, "update", rule)
    memory.update(evidence(accepted_item=1))  # the memory now believes persona 1 (0.99)
    view = memory.ranker_for(0)
    none = DialogueFacts(0, EMPTY, EMPTY, EMPTY)
    np.testing.assert_allclose(view.persona_posterior(none), memory.prior(0))
    np.testing.assert_allclose(ranker.persona_posterior(none), [0.5, 0.5])  # the shared one is as it was
    # item 1 (persona 1's) now outscores item 0 (persona 0's); with the shared prior they tie
    assert view.item_scores(none, np.array([0, 1])) @ [-1, 1] > 1.0
    assert ranker.item_scores(none, np.array([0, 1])) @ [-1, 1] == pytest.approx(0.0)


def test_a_view_holds_the_memorys_prior_raised_to_view_power() -> None:
    """Without a home state the view's row is prior^p renormalised for a user the memory updated: more
    mass on the believed persona, the same argmax; p = 1 hands the prior over bit for bit."""
    sessions = [evidence(accepted=np.array([1]), accepted_item=1)] * 2
    rows = {}
    for power in (1.0, 2.0, 3.0):
        rule = dataclasses.replace(NO_HOME, view_power=power)
        memory = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", rule)
        for session in sessions:
            memory.update(session)
        prior = memory.prior(0)
        rows[power] = np.exp(memory.ranker_for(0).log_prior[0])
        np.testing.assert_allclose(rows[power], prior**power / (prior**power).sum(), rtol=1e-12)
        np.testing.assert_allclose(memory.view_prior(0), rows[power], rtol=1e-12)
        if power == 1.0:
            np.testing.assert_array_equal(memory.view_prior(0), prior)
        assert int(np.argmax(rows[power])) == memory.most_likely(0) == 1
    assert rows[1.0][1] < rows[2.0][1] < rows[3.0][1]


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
        (lambda: UpdateRule(switch_rate=0.0), "switch_rate=0.0 must lie in"),
        (lambda: UpdateRule(switch_rate=1.0), "switch_rate=1.0 must lie in"),
        (lambda: UpdateRule(dominance=0.0), "dominance=0.0 must lie in"),
        (lambda: UpdateRule(dominance=1.5), "dominance=1.5 must lie in"),
        (lambda: UpdateRule(item_weight=-1.0), "item_weight=-1.0"),
        (lambda: UpdateRule(rejected_item_weight=float("nan")), "rejected_item_weight=nan"),
        (lambda: PersonaMemory(tiny_ranker(), "update", UpdateRule(dominance=0.5)), "exceed 1/K = 0.5"),
        (
            lambda: PersonaMemory(random_ranker(k=3), "update", UpdateRule(dominance=0.3)),
            "exceed 1/K = 0.3333",
        ),
        (lambda: UpdateRule(aspect_rate=-0.5), "aspect_rate=-0.5 must be finite and >= 0"),
        (lambda: UpdateRule(aspect_rate=float("inf")), "aspect_rate=inf must be finite"),
        (lambda: UpdateRule(update_prior=False), "update_prior=False with aspect_rate=0 updates nothing"),
        (lambda: UpdateRule(view_power=0.0), "view_power=0.0 must be finite and > 0"),
        (lambda: UpdateRule(view_power=float("nan")), "view_power=nan must be finite"),
        (lambda: UpdateRule(home_rate=1.0), r"home_rate=1.0 must lie in \[0, 1\)"),
        (lambda: UpdateRule(home_rate=-0.1), r"home_rate=-0.1 must lie in \[0, 1\)"),
        (lambda: PersonaMemory(tiny_ranker()).restore(0, [0.5, 0.5], 1.5), r"home 1.5 of user 0 must lie"),
        (lambda: rule_of("everything"), "unknown memory update 'everything'"),  # type: ignore[arg-type]
        (
            lambda: PersonaMemory(tiny_ranker(), "update", rule_of("aspects")).restore(0, [0.5, 0.5]),
            "keeps the ranker's prior",
        ),
        (
            lambda: PersonaMemory(
                tiny_ranker(), "update", dataclasses.replace(rule_of("both"), aspect_weight=0.0)
            ).update(evidence(accepted=np.array([2]))),
            r"aspects \[2\] outside \[0, 2\)",
        ),
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


def test_the_default_rule_follows_a_switch_within_two_sessions_where_a_slow_one_does_not() -> None:
    """DEFAULT_RULE (chosen on valid, its docstring): a user whose prior favours persona 0 at 0.8, who
    shows persona 0 in six sessions (accepting aspect 0 and item 0), then switches to persona 1 (aspect 1,
    item 1), is believed to be persona 1 within two sessions of it (here after the first: h = 0.3 keeps
    the belief in the old persona from hardening); a slow, EM-like rule (switch rate 0.01: the
    dominant persona hardly ever changes, otherwise the same constants) still believes persona 0 after
    three."""
    slow = UpdateRule(
        switch_rate=0.01,
        dominance=DEFAULT_RULE.dominance,
        aspect_weight=DEFAULT_RULE.aspect_weight,
        item_weight=DEFAULT_RULE.item_weight,
        rejected_item_weight=DEFAULT_RULE.rejected_item_weight,
    )
    for rule, believed in ((DEFAULT_RULE, [1, 1, 1]), (slow, [0, 0, 0])):
        memory = PersonaMemory(tiny_ranker((0.8, 0.2)), "update", rule)
        for _ in range(6):
            memory.update(evidence(accepted=np.array([0]), accepted_item=0))
        assert memory.most_likely(0) == 0
        after_switch = []
        for _ in range(3):
            memory.update(evidence(accepted=np.array([1]), accepted_item=1))
            after_switch.append(memory.most_likely(0))
        assert after_switch == believed, (rule, after_switch)


# ------------------------------------------------------------------- learned per-persona aspect weights
ASPECT_ITEMS = UpdateRule(
    switch_rate=0.2,
    dominance=0.8,
    aspect_weight=0.0,
    item_weight=1.0,
    rejected_item_weight=0,
    aspect_rate=1.0,
)
"""The item alone names the active persona; the accepted and rejected aspects only move W."""


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    out: np.ndarray = z / z.sum()
    return out


def test_the_variants_are_the_default_rule_with_or_without_prior_and_aspects() -> None:
    assert MEMORY_UPDATES == ("prior", "aspects", "both")
    prior, aspects, both = (rule_of(v) for v in MEMORY_UPDATES)
    assert (prior.variant, aspects.variant, both.variant) == MEMORY_UPDATES
    assert prior.aspect_rate == 0.0 and prior.update_prior
    assert not aspects.update_prior and aspects.aspect_rate == both.aspect_rate > 0.0 and both.update_prior
    rate = DEFAULT_RULE.aspect_rate or ASPECT_RATE
    assert both.aspect_rate == rate
    for rule in (prior, aspects, both):  # the filter's own constants are the default rule's
        for name in ("switch_rate", "dominance", "aspect_weight", "item_weight", "rejected_item_weight"):
            assert getattr(rule, name) == getattr(DEFAULT_RULE, name)
    assert rule_of("both", UpdateRule(aspect_rate=2.0)).aspect_rate == 2.0


def sessions_of(user: int) -> list[SessionEvidence]:
    return [
        evidence(user=user, accepted=np.array([1, 4]), rejected=np.array([0]), accepted_item=5),
        evidence(user=user, accepted=np.array([2]), rejected_items=np.array([3, 7, 11]), accepted_item=2),
        evidence(user=user, accepted=np.array([4, 4]), rejected=np.array([3, 5]), accepted_item=None),
        evidence(user=user, accepted_item=9),
    ]


def test_prior_only_is_the_prior_update_bit_for_bit_and_both_moves_the_same_prior() -> None:
    """rule_of("prior") is the plain update, whose views score as before; "both" moves the prior exactly
    as "prior" does (its evidence is read without W) and only adds W; "aspects" keeps the prior."""
    ranker = random_ranker(k=3)
    plain = PersonaMemory(
        ranker, "update", DEFAULT_RULE if DEFAULT_RULE.variant == "prior" else rule_of("prior")
    )
    memories = {
        variant: PersonaMemory(random_ranker(k=3), "update", rule_of(variant)) for variant in MEMORY_UPDATES
    }
    for session in sessions_of(2):
        reference = plain.update(session)
        for variant, memory in memories.items():
            update = memory.update(session)
            np.testing.assert_array_equal(update.log_likelihood, reference.log_likelihood)
            if variant == "aspects":  # the filter's belief stays the ranker's prior: d = π every session
                np.testing.assert_array_equal(update.after, update.before)
                np.testing.assert_allclose(memory.prior(2), softmax(ranker.log_prior[2]), rtol=1e-12)
            else:
                np.testing.assert_array_equal(update.responsibilities, reference.responsibilities)
                np.testing.assert_array_equal(update.after, reference.after)
    assert memories["prior"].aspect_weights(2) is None and plain.aspect_weights(2) is None
    assert (
        memories["both"].aspect_weights(2) is not None and memories["aspects"].aspect_weights(2) is not None
    )
    # aspects only: the prior and the view's prior table are the ranker's, bit for bit
    aspects = memories["aspects"]
    np.testing.assert_array_equal(aspects.ranker_for(2).log_prior, ranker.log_prior)
    np.testing.assert_allclose(aspects.prior(2), softmax(ranker.log_prior[2]), rtol=1e-12)
    assert aspects.remembered_users() == ()
    # prior only: the view is the plain one (log_prior row replaced, nothing else)
    view = plain.ranker_for(2)
    facts = DialogueFacts(2, np.array([1]), np.array([0]), EMPTY)
    reference_ranker = random_ranker(k=3)
    reference_ranker.log_prior = np.array(view.log_prior)
    items = np.arange(30)
    np.testing.assert_array_equal(view.item_scores(facts, items), reference_ranker.item_scores(facts, items))
    np.testing.assert_array_equal(view.persona_posterior(facts), reference_ranker.persona_posterior(facts))


def test_aspect_weights_move_by_the_responsibilities_for_the_evidences_user_only() -> None:
    memory = PersonaMemory(tiny_ranker(), "update", ASPECT_ITEMS)
    first = memory.update(
        evidence(user=1, accepted=np.array([0, 0]), rejected=np.array([1]), accepted_item=1)
    )
    weights = memory.aspect_weights(1)
    assert weights is not None and weights.shape == (2, 2) and not weights.flags.writeable
    r = first.responsibilities
    assert r[1] > 0.5  # item 1 is persona 1's
    np.testing.assert_array_equal(weights, np.stack([r, -r], axis=1))  # each aspect once per session
    assert memory.aspect_weights(0) is None
    second = memory.update(evidence(user=1, accepted=np.array([0]), accepted_item=0))
    expected = np.stack([r + second.responsibilities, -r], axis=1)
    for _ in range(2):
        weights = memory.aspect_weights(1)
        assert weights is not None
        np.testing.assert_allclose(weights, expected)
        memory.update(evidence(user=1))  # no aspects: W stays
    memory.forget(1)
    assert memory.aspect_weights(1) is None
    np.testing.assert_array_equal(memory.ranker_for(1).log_prior, tiny_ranker().log_prior)


def test_a_view_applies_w_to_its_user_as_the_posterior_evidence_and_the_item_terms() -> None:
    """W from sessions of persona 1 (item 1) that accepted aspect 0: when aspect 0 is accepted again, the
    view's posterior gives persona 1 more than the ranker's relative affinity c[:, 0] = (.5, −.5) does;
    each persona's item term gains the mean of W_k over the item's aspects."""
    ranker = tiny_ranker()
    memory = PersonaMemory(ranker, "update", dataclasses.replace(ASPECT_ITEMS, update_prior=False))
    for _ in range(2):
        memory.update(evidence(accepted=np.array([0]), accepted_item=1))
    weights = memory.aspect_weights(0)
    assert weights is not None and weights[1, 0] > weights[0, 0] > 0.0 and (weights[:, 1] == 0).all()
    view = memory.ranker_for(0)
    np.testing.assert_array_equal(view.log_prior, ranker.log_prior)  # aspects only: the prior is the ranker's
    accepted = DialogueFacts(0, np.array([0]), EMPTY, EMPTY)
    c = np.array([[0.5, -0.5], [-0.5, 0.5]])
    shifted = c[:, 0] + weights[:, 0] - weights[:, 0].mean()
    np.testing.assert_allclose(view.persona_posterior(accepted), softmax(np.log([0.5, 0.5]) + shifted))
    np.testing.assert_allclose(ranker.persona_posterior(accepted), softmax(c[:, 0]))
    assert view.persona_posterior(accepted)[1] > ranker.persona_posterior(accepted)[1]
    # item terms: items 0 (aspect 0), 1 (aspect 1), 2 (aspects 0 and 1), 3 (none: +0)
    items = np.arange(4)
    gain = np.stack([weights[:, 0], weights[:, 1], weights.mean(axis=1), np.zeros(2)], axis=1)
    assert isinstance(view, PersonaRanker)
    np.testing.assert_allclose(
        view.persona_item_logits(0, items), ranker.persona_item_logits(0, items) + gain, rtol=0, atol=1e-15
    )


def test_w_never_changes_the_shared_ranker_nor_another_users_scores() -> None:
    """The plain ranker and a view with W share the per-user and per-dialogue caches: scoring through
    one must never hand the other its values (same user, same facts, same prior row)."""
    ranker = random_ranker(k=3, users=4)
    memory = PersonaMemory(ranker, "update", rule_of("aspects"))  # the prior row stays the ranker's
    items, aspects = np.arange(30), np.arange(6)
    facts = {user: DialogueFacts(user, np.array([1]), np.array([0]), np.array([3])) for user in (1, 2)}

    def scores(r: Any, user: int) -> tuple[np.ndarray, ...]:
        f = facts[user]
        return (
            np.array(r.item_scores(f, items)),
            np.array(r.aspect_scores(f, aspects)),
            np.array(r.persona_posterior(f)),
            np.array(r.persona_item_logits(user, items)),
            np.array(r.signature_aspects(user, 0, 3)),
        )

    before = {user: scores(ranker, user) for user in (1, 2)}  # fills the shared caches first
    for session in sessions_of(2):
        memory.update(session)
    view = memory.ranker_for(2)
    np.testing.assert_array_equal(view.log_prior, ranker.log_prior)
    with_w = scores(view, 2)
    assert not np.allclose(with_w[0], before[2][0]) and not np.allclose(with_w[2], before[2][2])
    for user in (1, 2):  # the shared ranker, after the view scored
        for got, want in zip(scores(ranker, user), before[user], strict=True):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(scores(view, 1), before[1], strict=True):  # another user in the same view
        np.testing.assert_array_equal(got, want)
    for got, want in zip(scores(memory.ranker_for(1), 1), before[1], strict=True):  # another user's view
        np.testing.assert_array_equal(got, want)
    for got, want in zip(scores(view, 2), with_w, strict=True):  # the view again, from the caches
        np.testing.assert_array_equal(got, want)
    learned = memory.aspect_weights(2)
    assert learned is not None
    fresh = random_ranker(k=3, users=4).with_aspect_weights(2, learned)  # cold caches
    for got, want in zip(scores(fresh, 2), with_w, strict=True):
        np.testing.assert_array_equal(got, want)
    # zero weights: a view that scores as the ranker, bit for bit
    zero = ranker.with_aspect_weights(2, np.zeros((3, 6)))
    for got, want in zip(scores(zero, 2), before[2], strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------ home state
HOME = UpdateRule(switch_rate=0.25, dominance=0.7, aspect_weight=1.0, item_weight=1.0, home_rate=0.3)


def home_filter_step(
    b: np.ndarray, log_likelihood: np.ndarray, rule: UpdateRule, pi: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The filter with a home state by hand, explicit sums over K + 1 states (the last is home, whose
    active persona is drawn from the ranker's prior `pi`): (responsibilities, next belief, prior)."""
    k = pi.shape[0]
    m, h, h0 = rule.dominance, rule.switch_rate, rule.home_rate
    E = [[m if a == d else (1 - m) / (k - 1) for a in range(k)] for d in range(k)] + [list(pi)]
    T = [[(1 - h if d == e else h / (k - 1)) if d < k else h0 / k for e in range(k)] for d in range(k + 1)]
    for d in range(k + 1):
        T[d].append(1 - h0 if d == k else 0.0)
    L = np.exp(log_likelihood)
    post = np.array([b[d] * sum(E[d][a] * L[a] for a in range(k)) for d in range(k + 1)])
    post /= post.sum()
    resp = np.array([sum(b[d] * E[d][a] for d in range(k + 1)) * L[a] for a in range(k)])
    following = np.array([sum(post[d] * T[d][e] for d in range(k + 1)) for e in range(k + 1)])
    prior = np.array([sum(following[d] * E[d][a] for d in range(k + 1)) for a in range(k)])
    return resp / resp.sum(), following, prior


def test_a_home_state_filter_starts_home_and_is_the_hand_computation() -> None:
    """With home_rate h₀ > 0 a user starts in their pre-trained mixture (home, emission = the ranker's
    prior): the first session's responsibilities are π ⊙ L, and each step is the (K + 1)-state filter."""
    ranker = random_ranker(k=3)
    memory = PersonaMemory(ranker, "update", HOME)
    pi = np.exp(ranker.log_prior[1]) / np.exp(ranker.log_prior[1]).sum()
    assert memory.home(1) == 1.0 and PersonaMemory(ranker, "update", NO_HOME).home(1) == 0.0
    b = np.array([0.0, 0.0, 0.0, 1.0])
    sessions = [
        evidence(user=1, accepted=np.array([2]), accepted_item=4),
        evidence(user=1, accepted=np.array([2, 5]), rejected_items=np.array([1, 8]), accepted_item=9),
        evidence(user=1),
    ]
    for n, session in enumerate(sessions):
        update = memory.update(session)
        resp, b, prior = home_filter_step(b, update.log_likelihood, HOME, pi)
        if n == 0:
            likelihood = np.exp(update.log_likelihood)
            np.testing.assert_allclose(resp, pi * likelihood / (pi @ likelihood))
        np.testing.assert_allclose(update.responsibilities, resp, rtol=1e-12)
        np.testing.assert_allclose(update.after, prior, rtol=1e-12)
        assert update.home == pytest.approx(b[-1], rel=1e-12) == memory.home(1)
    assert 0.0 < memory.home(1) < (1 - HOME.home_rate) ** 2  # two sessions away from π lowered it
    # the first session is had at home for sure: whatever it said, the next prior is (1 − h₀)π + h₀/K
    for said in (sessions[0], evidence(user=1)):
        update = PersonaMemory(ranker, "update", HOME).update(said)
        assert update.home == pytest.approx(1 - HOME.home_rate)
        np.testing.assert_allclose(update.after, (1 - HOME.home_rate) * pi + HOME.home_rate / 3, rtol=1e-12)


def test_a_home_user_keeps_the_pretrained_view_and_a_departed_one_gets_it_sharpened() -> None:
    """The view raises the prior to 1 + (p − 1)(1 − home): while the user is surely home it is the
    memory's prior as it is (no sharper than the ranker's own), once they surely left it is prior^p."""
    rule = dataclasses.replace(HOME, view_power=3.0, dominance=0.9)
    memory = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", rule)
    for _ in range(3):
        memory.update(evidence(accepted=np.array([1]), accepted_item=1))
    home, prior = memory.home(0), memory.prior(0)
    assert 0.0 < home < 0.5 and memory.most_likely(0) == 1
    power = 1 + 2 * (1 - home)
    np.testing.assert_allclose(memory.view_prior(0), prior**power / (prior**power).sum(), rtol=1e-12)
    np.testing.assert_allclose(rule.view_of(prior, home=1.0), prior, rtol=0, atol=0)
    np.testing.assert_allclose(rule.view_of(prior, home=0.0), prior**3 / (prior**3).sum(), rtol=1e-12)
    assert prior[1] < memory.view_prior(0)[1] < rule.view_of(prior)[1]


def test_restoring_prior_and_home_continues_a_home_filter_exactly() -> None:
    ranker, user = random_ranker(k=3), 2
    sessions = [
        evidence(user=user, accepted=np.array([1]), accepted_item=2),
        evidence(user=user, accepted=np.array([0]), rejected_items=np.array([0, 1]), accepted_item=1),
        evidence(user=user, accepted_item=0),
    ]
    one = PersonaMemory(ranker, "update", HOME)
    first = one.update(sessions[0])
    assert first.home is not None and 0.0 < first.home < 1.0
    other = PersonaMemory(ranker, "update", HOME)
    other.restore(user, [float(p) for p in first.after], first.home)
    assert other.home(user) == pytest.approx(first.home, rel=1e-12)
    np.testing.assert_allclose(other.view_prior(user), one.view_prior(user), rtol=0, atol=1e-14)
    for session in sessions[1:]:
        a, b = one.update(session), other.update(session)
        np.testing.assert_allclose(b.after, a.after, rtol=0, atol=1e-12)
        assert b.home == pytest.approx(a.home, abs=1e-12)
    # without its home the same prior is read as a user who surely left: another next step
    lost, exact = PersonaMemory(ranker, "update", HOME), PersonaMemory(ranker, "update", HOME)
    lost.restore(user, first.after)
    exact.update(sessions[0])
    assert lost.home(user) == 0.0
    assert not np.allclose(lost.update(sessions[1]).after, exact.update(sessions[1]).after, atol=1e-6)


def test_a_session_of_rejections_only_still_moves_the_belief_by_its_aspects() -> None:
    """Guards against aspect evidence read only when the session accepted an aspect: a session whose
    every answer was "no" says as much about the personas (ℓ = −c[:, a] for a rejected a)."""
    rule = UpdateRule(aspect_weight=1.0, item_weight=0.0, rejected_item_weight=0.0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    # rejected a_0 alone: ℓ = −c[:, 0] = (−.5, .5), shifted to a max of 0: (−1, 0)
    update = memory.update(evidence(rejected=np.array([0])))
    np.testing.assert_allclose(update.log_likelihood, [-1.0, 0.0])
    np.testing.assert_allclose(update.responsibilities, np.array([1 / np.e, 1.0]) / (1 / np.e + 1.0))
    assert memory.most_likely(0) == 1


def test_inverting_the_emission_never_gives_a_negative_belief() -> None:
    """Guards against `dominant_of` without its clip at 0: a stored prior below what any belief d E can
    give, c = (1 − m)/(K − 1), must not turn into negative beliefs, which no later update can repair."""
    rule = UpdateRule(switch_rate=0.3, dominance=0.8)
    # K = 3, c = 0.1: (0.98, 0.01, 0.01) is below c twice; the nearest belief is surely persona 0
    np.testing.assert_allclose(rule.dominant_of(np.array([0.98, 0.01, 0.01])), [1.0, 0.0, 0.0], atol=1e-15)
    # a prior made by d E is inverted exactly
    d = np.array([0.2, 0.5, 0.3])
    np.testing.assert_allclose(rule.dominant_of(d @ rule.emission(3)), d, atol=1e-12)
    memory = PersonaMemory(random_ranker(k=3), "update", dataclasses.replace(NO_HOME, view_power=1.0))
    memory.restore(1, [0.98, 0.01, 0.01])
    after = memory.update(evidence(user=1, accepted_item=3)).after
    assert (after >= 0).all() and after.sum() == pytest.approx(1.0)


def test_aspects_outside_the_ranker_are_refused_wherever_they_sit_in_the_session() -> None:
    """Guards against the range check reading only the first and last aspect as given (unsorted): an
    aspect −1 between two valid ones would otherwise become a weight of the last aspect."""
    rule = dataclasses.replace(rule_of("both"), aspect_weight=0.0)  # the learning step alone reads them
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    with pytest.raises(PersonaMemoryError, match="outside"):
        memory.update(evidence(accepted=np.array([1, -1, 1])))
    with pytest.raises(PersonaMemoryError, match="outside"):
        memory.update(evidence(rejected=np.array([0, 2, 0])))
    assert memory.aspect_weights(0) is None


def test_a_forgotten_user_starts_again_from_the_rankers_prior() -> None:
    """Guards against `forget` keeping the filter's belief over the dominant persona: the next session
    of a forgotten user must move them as it moves a user the memory never met."""
    for rule in (NO_HOME, DEFAULT_RULE):
        sessions = [evidence(accepted=np.array([1]), accepted_item=1)] * 3
        memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", rule)
        for session in sessions:
            memory.update(session)
        memory.forget(0)
        assert memory.home(0) == (1.0 if rule.home_rate else 0.0)
        again = memory.update(evidence(accepted=np.array([0]), accepted_item=0))
        fresh = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", rule).update(
            evidence(accepted=np.array([0]), accepted_item=0)
        )
        np.testing.assert_array_equal(again.after, fresh.after)
        np.testing.assert_array_equal(again.responsibilities, fresh.responsibilities)


def test_a_restored_prior_is_kept_normalised() -> None:
    """Guards against `restore` keeping the weights as given: (3, 1) is the prior (0.75, 0.25)."""
    memory = PersonaMemory(tiny_ranker(), "update", NO_HOME)
    memory.restore(0, [3.0, 1.0])
    np.testing.assert_allclose(memory.prior(0), [0.75, 0.25], rtol=0, atol=1e-15)
    assert memory.most_likely(0) == 0


def test_a_never_updated_users_view_prior_is_not_sharpened_without_a_home_state() -> None:
    """Guards against `view_prior` sharpening the ranker's own prior (view_power 4, no home state) for a
    user no session has updated: the memory then knows nothing beyond the ranker."""
    rule = dataclasses.replace(NO_HOME, view_power=4.0)
    memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", rule)
    np.testing.assert_allclose(memory.view_prior(0), [0.7, 0.3], rtol=1e-12)
    memory.update(evidence(user=1, accepted_item=1))
    np.testing.assert_allclose(memory.view_prior(0), [0.7, 0.3], rtol=1e-12)
    moved = memory.prior(1)
    np.testing.assert_allclose(memory.view_prior(1), moved**4 / (moved**4).sum(), rtol=1e-12)
