"""`PersonaRanker` paths the first audit's tests left open, worked by hand on small random weights: the
views' argument checks, the per-dialogue cache's key, splitting questions' tie-break, explanations
under a dialogue, and the checks of the weights it is built from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from policies.content_profile import ContentProfile
from policies.pretrain.ranker import PersonaRanker
from simulators.errors import CRSError
from tests.policies.test_ranker_mutants import (
    ASPECTS,
    ITEMS,
    USERS,
    K,
    hand_affinity,
    hand_item_score,
    item_aspects,
    prototype_sims,
    ranker,
    softmax,
    weights,
)


def facts_of(user: int, accepted: list[int], rejected: list[int], rejected_items: list[int]) -> DialogueFacts:
    """A dialogue of `user` from plain lists of ids."""
    return DialogueFacts(user, *(np.array(x, dtype=np.int64) for x in (accepted, rejected, rejected_items)))


@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), 0.0, -1.0])
def test_a_temperature_that_is_not_a_finite_number_above_zero_is_refused(temperature: float) -> None:
    """Guards against an infinite temperature accepted by `with_temperature` or `with_questions`: it
    divides every preference to 0 (a ranker that silently knows nothing) or every split mass to even."""
    r = ranker()
    with pytest.raises(CRSError, match="finite number above 0"):
        r.with_temperature(temperature)
    with pytest.raises(CRSError, match="finite number above 0"):
        r.with_questions("split", temperature)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_a_question_temperature_other_than_one_is_refused_for_likely_questions(temperature: float) -> None:
    """Guards against a question temperature above 1 accepted with "likely" questions, which never read
    it (the ranker would claim a setting it does not apply); at 1 it is the plain rule."""
    r = ranker()
    with pytest.raises(CRSError, match="weighs splitting questions only"):
        r.with_questions("likely", temperature)
    assert r.with_questions("likely", 1.0).questions == "likely"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (([1], [], []), ([], [1], [])),  # the same aspect accepted, then rejected
        (([1, 2], [], []), ([1], [2], [])),  # the same ids, split otherwise between the two
    ],
)
def test_dialogues_that_differ_only_in_which_aspects_were_accepted_never_share_cached_scores(
    first: tuple[list[int], list[int], list[int]], second: tuple[list[int], list[int], list[int]]
) -> None:
    """Guards against a per-dialogue cache key that runs the accepted and rejected ids together: a
    rejected aspect must not be served the scores of the same aspect accepted a moment before."""
    user, items, aspects = 1, np.arange(ITEMS), np.arange(ASPECTS)
    shared = ranker()
    a, b = facts_of(user, *first), facts_of(user, *second)
    shared.item_scores(a, items)  # cached first
    shared.aspect_scores(a, aspects)
    fresh = PersonaRanker(weights(), item_aspects(), facts_cache_size=0)
    np.testing.assert_array_equal(shared.item_scores(b, items), fresh.item_scores(b, items))
    np.testing.assert_array_equal(shared.aspect_scores(b, aspects), fresh.aspect_scores(b, aspects))
    np.testing.assert_array_equal(shared.persona_posterior(b), fresh.persona_posterior(b))
    assert not np.allclose(shared.item_scores(a, items), shared.item_scores(b, items))


@pytest.mark.parametrize(
    ("accepted", "rejected", "rejected_items"), [([], [], []), ([], [1], [4]), ([3], [5], [1])]
)
def test_splitting_questions_break_ties_by_the_affinity_in_its_own_direction(
    accepted: list[int], rejected: list[int], rejected_items: list[int]
) -> None:
    """Guards against the split rule's tie-break of the wrong sign: two questions that split the items
    alike must be ordered by the affinity, the more liked first, as "likely" questions are. Each score is
    the binary entropy of the consistent mass plus 1e-6 × the affinity, by hand."""
    w = weights()
    r = PersonaRanker(w, item_aspects(), "none").with_questions("split")
    facts = facts_of(0, accepted, rejected, rejected_items)
    consistent = r.consistent_items(facts).tolist()
    p = softmax(np.array([hand_item_score(w, facts, v) for v in consistent]))
    dense = item_aspects().toarray()
    affinity = hand_affinity(w, facts)
    got = r.aspect_scores(facts, np.arange(ASPECTS))
    for a in range(ASPECTS):
        m = sum(p[i] for i, v in enumerate(consistent) if dense[v, a])
        m = min(max(m, 1e-300), 1.0)
        rest = max(1.0 - m, 1e-300)
        entropy = -(m * np.log(m) + rest * np.log(rest))
        assert (got[a] - entropy) / 1e-6 == pytest.approx(affinity[a], abs=1e-3), a


def test_explanations_name_the_persona_the_dialogue_makes_likely() -> None:
    """Guards against `explain` choosing each item's persona from the prior alone: under a dialogue the
    persona is argmax_k (log β_k + the persona's item logit), with β the posterior given the accepted
    and rejected aspects (what the chat's "because" line says), worked by hand."""
    w = weights()
    r = PersonaRanker(w, item_aspects(), "none")
    dense, items = item_aspects().toarray(), np.arange(ITEMS)
    changed = 0
    for user in range(USERS):
        sims = prototype_sims(w, user)
        relative = sims - sims.mean(axis=0, keepdims=True)
        for k in range(
            K
        ):  # a dialogue accepting persona k's most and rejecting its least distinctive aspects
            accepted = [int(a) for a in np.argsort(-relative[k])[:2]]
            rejected = [int(np.argmin(relative[k]))]
            facts = facts_of(user, accepted, rejected, [])
            log_beta = (
                w["log_prior"][user] + relative[:, accepted].sum(axis=1) - relative[:, rejected].sum(axis=1)
            )
            expected, before = [], []
            for v in items.tolist():
                logits = np.array([float(w["personas"][user, j] @ w["item"][v]) for j in range(K)])
                best = int(np.argmax(log_beta + logits))
                held = np.flatnonzero(dense[v])
                expected.append((best, int(held[np.argmax(sims[best, held])]) if held.size else -1))
                before.append(int(np.argmax(w["log_prior"][user] + logits)))
            assert r.explain(facts, items) == expected
            changed += sum(b != e[0] for b, e in zip(before, expected, strict=True))
    assert changed > 0  # the dialogue moves some item's persona away from its prior choice


@pytest.mark.parametrize("damage", ["log_prior_personas", "log_prior_users"])
def test_a_persona_prior_of_another_shape_than_the_personas_is_refused(damage: str) -> None:
    """Guards against a prior of another number of personas or users accepted when built: the posterior
    would broadcast or index a row of another user's prior, or fail later in numpy."""
    w = weights()
    w["log_prior"] = np.zeros((USERS, K + 1)) if damage == "log_prior_personas" else np.zeros((USERS + 1, K))
    with pytest.raises(CRSError, match="do not match"):
        PersonaRanker(w, item_aspects())


def test_an_unknown_aspect_mode_is_refused_naming_the_modes() -> None:
    """Guards against a misspelt aspect mode read as "attention" (the fallback branch): a ranker must be
    built with the aspect terms it was trained with, or refused."""
    with pytest.raises(CRSError, match="aspect_mode must be one of"):
        PersonaRanker(weights(), item_aspects(), "uniforms")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_learned_aspect_weights_that_are_not_finite_are_refused(bad: float) -> None:
    """Guards against a damaged memory's NaN or infinite aspect weight accepted into a view: it would
    turn that user's posterior and every item score into NaN (slates of arbitrary items), not an error."""
    W = np.zeros((K, ASPECTS))
    W[1, 2] = bad
    with pytest.raises(CRSError, match="finite array of shape"):
        ranker().with_aspect_weights(0, W)


@pytest.mark.parametrize("kept", [("aspect", "shared"), ("aspect", "mixtures", "prototypes")])
def test_preferences_held_only_through_aspect_terms_are_preferences(kept: tuple[str, ...]) -> None:
    """Guards against `has_preferences` reading only the user, item and persona embeddings: a model
    whose item scores differ only through the aspect terms (the shared persona's, or the personas'
    prototype part) prefers some items, and must not be taken for the uniform ranker."""
    w = {key: (value if key in kept else np.zeros_like(value)) for key, value in weights().items()}
    r = PersonaRanker(w, item_aspects(), "uniform")
    scores = r.item_scores(facts_of(0, [], [], []), np.arange(ITEMS))
    assert np.ptp(scores) > 1e-3  # items do score apart
    assert r.has_preferences
    if kept == ("aspect", "shared"):  # the shared persona's uniform aspect term, by hand
        dense = item_aspects().toarray()
        sims = w["aspect"] @ w["shared"]
        expected = [sims[dense[v]].mean() if dense[v].any() else 0.0 for v in range(ITEMS)]
        np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_offline_scores_ignore_the_temperature() -> None:
    """Guards against `full_scores` (offline Recall/NDCG) divided by a tempered view's temperature: the
    documented offline figures of a ``@T`` ranker are those of the ranker as trained, while its dialogue
    scores are divided by T."""
    plain, users = ranker(), np.arange(USERS)
    tempered = plain.with_temperature(4.0)
    np.testing.assert_array_equal(tempered.full_scores(users), plain.full_scores(users))
    facts = facts_of(1, [], [], [])
    np.testing.assert_allclose(
        tempered.item_scores(facts, np.arange(ITEMS)), plain.item_scores(facts, np.arange(ITEMS)) / 4.0
    )


def test_a_view_keeps_the_aspect_weights_it_was_given_and_leaves_the_callers_array_alone() -> None:
    """Guards against a view that holds the caller's own weight array: a persona memory updating its
    weights in place afterwards must neither fail (the array made read-only under it) nor change what a
    view made before the update scores."""
    W = np.random.default_rng(5).normal(size=(K, ASPECTS))
    given = W.copy()
    user, items = 2, np.arange(ITEMS)
    facts = facts_of(user, [1], [3], [])
    view = ranker().with_aspect_weights(user, W)
    W[:, :] = 0.0  # the caller's next update, in place, before the view first scores
    same = ranker().with_aspect_weights(user, given)
    np.testing.assert_array_equal(
        view.persona_item_logits(user, items), same.persona_item_logits(user, items)
    )
    np.testing.assert_array_equal(view.item_scores(facts, items), same.item_scores(facts, items))
    assert not np.array_equal(view.item_scores(facts, items), ranker().item_scores(facts, items))


def test_a_tag_profile_alone_is_a_preference() -> None:
    """Guards against `has_preferences` overlooking a tag profile: a uniform ranker with ``+profile``
    orders items by the profile's cosine (worked by hand), so it must not be read as the dialogue logic
    alone, whose aspect scores are mere counts."""
    zero = {key: np.zeros_like(value) for key, value in weights().items()}
    plain = PersonaRanker(zero, item_aspects(), "attention")
    holds = item_aspects().toarray().astype(float)  # (I, A)
    norms = np.linalg.norm(holds, axis=1, keepdims=True)
    items = np.divide(holds, norms, out=np.zeros_like(holds), where=norms > 0)
    users = np.zeros((USERS, ASPECTS))
    users[:, 0], users[:, 3] = 0.6, 0.8  # unit rows
    view = plain.with_profile(ContentProfile(sp.csr_matrix(users), sp.csr_matrix(items.T), weight=2.0))
    assert not plain.has_preferences and view.has_preferences
    expected = [2.0 * float(users[0] @ items[v]) for v in range(ITEMS)]
    np.testing.assert_allclose(
        view.item_scores(facts_of(0, [], [], []), np.arange(ITEMS)), expected, atol=1e-12
    )


def test_a_memory_views_explanations_and_item_personas_read_its_learned_weights() -> None:
    """Guards against `explain` or `persona_of` reading the plain ranker's arrays under a persona
    memory's view: persona k's logit for an item gains the mean of W_k over the item's aspects, and the
    view's explanations must name the persona that the view itself scores the item by (by hand)."""
    w, user = weights(), 1
    W = np.zeros((K, ASPECTS))
    W[2, [0, 2, 4]] = 6.0  # persona 2 learned to like aspects 0, 2 and 4
    plain = PersonaRanker(w, item_aspects(), "none")
    view = plain.with_aspect_weights(user, W)
    dense, items = item_aspects().toarray(), np.arange(ITEMS)
    sims = prototype_sims(w, user)
    expected, personas = [], []
    for v in items.tolist():
        held = np.flatnonzero(dense[v])
        gained = W[:, held].mean(axis=1) if held.size else np.zeros(K)
        logits = np.array([float(w["personas"][user, k] @ w["item"][v]) for k in range(K)]) + gained
        best = int(np.argmax(w["log_prior"][user] + logits))
        personas.append(best)
        expected.append((best, int(held[np.argmax(sims[best, held])]) if held.size else -1))
    assert view.explain(facts_of(user, [], [], []), items) == expected
    assert view.persona_of(user, items).tolist() == personas
    assert plain.persona_of(user, items).tolist() != personas  # the weights do move some item's persona


@pytest.mark.parametrize("temperature", [0.25, 0.5])
def test_a_temperature_below_one_sharpens_the_preferences_but_not_the_rules(temperature: float) -> None:
    """Guards against a temperature applied only when it flattens (T > 1): a sharper view (T < 1)
    divides the preference part by T too, the rejection rules staying as they are (by hand)."""
    w = weights()
    r = PersonaRanker(w, item_aspects(), "none").with_temperature(temperature)
    for facts in (facts_of(0, [], [], []), facts_of(2, [4], [0, 2], [3])):
        expected = [hand_item_score(w, facts, v, temperature) for v in range(ITEMS)]
        np.testing.assert_allclose(r.item_scores(facts, np.arange(ITEMS)), expected, rtol=1e-10, atol=1e-8)


def test_users_with_the_same_persona_prior_never_share_cached_scores() -> None:
    """Guards against a per-dialogue cache key that names the user only by their prior row: users whose
    priors are equal (an even prior, as an untrained or uniform memory gives) must each get their own
    scores, not those of the user asked about first."""
    w = weights()
    w["log_prior"] = np.full((USERS, K), -np.log(K))
    shared = PersonaRanker(w, item_aspects())
    fresh = PersonaRanker(w, item_aspects(), facts_cache_size=0)
    items, aspects = np.arange(ITEMS), np.arange(ASPECTS)
    for user in range(USERS):  # the same dialogue for every user, asked in turn
        facts = facts_of(user, [2], [], [])
        np.testing.assert_array_equal(shared.item_scores(facts, items), fresh.item_scores(facts, items))
        np.testing.assert_array_equal(
            shared.aspect_scores(facts, aspects), fresh.aspect_scores(facts, aspects)
        )
    first, second = (fresh.item_scores(facts_of(u, [2], [], []), items) for u in (0, 1))
    assert not np.allclose(first, second)


@pytest.mark.parametrize("user", [-1, USERS])
def test_prototypes_and_offline_scores_refuse_a_user_outside_the_ranker(user: int) -> None:
    """`prototype_of` and `full_scores` name a user the ranker lacks, as every other entry point does
    (guards against numpy reading -1 as the last user's row, and a bare IndexError past the end)."""
    plain = ranker()
    with pytest.raises(CRSError, match=f"user {user} outside \\[0, {USERS}\\)"):
        plain.prototype_of(user)
    with pytest.raises(CRSError, match=f"user {user} outside \\[0, {USERS}\\)"):
        plain.full_scores(np.array([0, user]))
    assert plain.full_scores(np.arange(USERS)).shape == (USERS, ITEMS)
    assert plain.prototype_of(USERS - 1).shape == (K,)
