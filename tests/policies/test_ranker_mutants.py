"""`PersonaRanker` scoring rules worked by hand on small random weights: the posterior's relative aspect
affinities, the aspect ablations' item terms, shape and user checks, and the views (aspect weights,
item priors) that must apply exactly what they were given."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from policies.pretrain.ranker import PersonaRanker
from simulators.errors import CRSError

EMPTY = np.zeros(0, dtype=np.int64)
USERS, K, D, ITEMS, ASPECTS, PROTOTYPES = 3, 3, 5, 12, 6, 4


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random persona-model weights of `USERS` users with `K` personas each (a "shared" persona too)."""
    rng = np.random.default_rng(seed)
    return {
        "user": rng.normal(size=(USERS, D)),
        "item": rng.normal(size=(ITEMS, D)),
        "aspect": rng.normal(size=(ASPECTS, D)),
        "personas": rng.normal(size=(USERS, K, D)),
        "log_prior": np.log(rng.dirichlet(np.ones(K), size=USERS)),
        "mixtures": rng.dirichlet(np.ones(PROTOTYPES), size=(USERS, K)),
        "prototypes": rng.normal(size=(PROTOTYPES, D)),
        "shared": rng.normal(size=D),
    }


def item_aspects() -> sp.csr_matrix:
    """Items 0..10 hold 1 to 3 aspects each; item 11 holds none (a cold item without aspects)."""
    dense = np.zeros((ITEMS, ASPECTS), dtype=bool)
    for item in range(ITEMS - 1):
        for a in range(1 + item % 3):
            dense[item, (item + 2 * a) % ASPECTS] = True
    return sp.csr_matrix(dense)


def ranker(aspect_mode: str = "attention", seed: int = 0) -> PersonaRanker:
    return PersonaRanker(weights(seed), item_aspects(), aspect_mode)


def ranker_of(w: dict[str, np.ndarray]) -> PersonaRanker:
    return PersonaRanker(w, item_aspects(), "attention")


def prototype_sims(w: dict[str, np.ndarray], user: int) -> np.ndarray:
    """q_k·e_a for each persona k of `user` and aspect a, by explicit sums, shape (K, A)."""
    out = np.zeros((K, ASPECTS))
    for k in range(K):
        q = sum(w["mixtures"][user, k, p] * w["prototypes"][p] for p in range(PROTOTYPES))
        for a in range(ASPECTS):
            out[k, a] = float(q @ w["aspect"][a])
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


@pytest.mark.parametrize("damage", ["shared", "item_aspects", "personas"])
def test_weights_of_mismatched_shapes_are_refused_with_a_named_error(damage: str) -> None:
    """Guards against a ranker built from arrays whose shapes disagree (a damaged or foreign artifact):
    it must say so when built, not crash in numpy later or score users with misaligned rows."""
    w, ia = weights(), item_aspects()
    if damage == "shared":
        w["shared"] = np.zeros(D + 1)
    elif damage == "item_aspects":
        ia = sp.csr_matrix(np.ones((ITEMS, ASPECTS + 1), dtype=bool))
    else:  # personas (and their prior and mixtures) of one user more than the user embeddings
        w["personas"] = np.zeros((USERS + 1, K, D))
        w["log_prior"] = np.zeros((USERS + 1, K))
        w["mixtures"] = np.full((USERS + 1, K, PROTOTYPES), 1.0 / PROTOTYPES)
    with pytest.raises(CRSError, match=r"shape|do not match"):
        PersonaRanker(w, ia)


@pytest.mark.parametrize("user", [-1, USERS])
def test_a_user_outside_the_ranker_is_refused_not_wrapped_around(user: int) -> None:
    """Guards against a negative user id read as the last user (numpy's wrap-around) when scoring, and
    aspect weights accepted for a user the ranker has not (applied to nobody, silently)."""
    r = ranker()
    with pytest.raises(CRSError, match="outside"):
        r.persona_posterior(DialogueFacts(user, EMPTY, EMPTY, EMPTY))
    with pytest.raises(CRSError, match="outside"):
        r.persona_item_logits(user, np.arange(3))
    with pytest.raises(CRSError, match="outside"):
        r.with_aspect_weights(user, np.ones((K, ASPECTS)))


@pytest.mark.parametrize("user", [-1, USERS])
def test_scores_and_explanations_of_a_user_outside_the_ranker_are_refused_by_name(user: int) -> None:
    """Item and aspect scores, explanations and consistent items refuse a user outside the ranker with
    its CRSError, as the posterior does (item scores built their cache key from the user's prior row
    first: user n raised a bare IndexError, user -1 read the last user's row)."""
    r = ranker()
    facts = DialogueFacts(user, EMPTY, EMPTY, EMPTY)
    for call in (
        lambda: r.item_scores(facts, np.arange(3)),
        lambda: r.aspect_scores(facts, np.arange(3)),
        lambda: r.explain(facts, np.arange(3)),
        lambda: r.consistent_items(facts),
    ):
        with pytest.raises(CRSError, match=f"user {user} outside"):
            call()


@pytest.mark.parametrize(
    ("field", "ids", "message"),
    [
        ("accepted", [-1], r"accepted aspect ids \[-1\] outside"),
        ("accepted", [0, ASPECTS], rf"accepted aspect ids \[{ASPECTS}\] outside"),
        ("rejected", [-1], r"rejected aspect ids \[-1\] outside"),
        ("rejected_items", [-2, 1], r"rejected item ids \[-2\] outside"),
    ],
)
def test_a_dialogue_naming_an_aspect_or_item_outside_the_ranker_is_refused(
    field: str, ids: list[int], message: str
) -> None:
    """An accepted aspect -1 was read as the last aspect (the same posterior as accepting it), and a
    rejected aspect -1 crashed with numpy's "negative dimensions": every entry point refuses such a
    dialogue by naming the ids, and the same dialogue in range is scored."""
    r = ranker()
    fields = {"accepted": EMPTY, "rejected": EMPTY, "rejected_items": EMPTY, field: np.array(ids)}
    facts = DialogueFacts(0, **fields)
    for call in (
        lambda: r.persona_posterior(facts),
        lambda: r.item_scores(facts, np.arange(3)),
        lambda: r.aspect_scores(facts, np.arange(3)),
        lambda: r.explain(facts, np.arange(3)),
        lambda: r.consistent_items(facts),
    ):
        with pytest.raises(CRSError, match=message):
            call()
    fine = DialogueFacts(0, **{**fields, field: np.array([1])})
    assert np.isfinite(r.item_scores(fine, np.arange(3))).all()


@pytest.mark.parametrize("mode", ["attention", "uniform", "none"])
def test_each_personas_item_logit_is_its_affinity_plus_its_modes_aspect_term(mode: str) -> None:
    """Guards against a wrong aspect term per ablation: "uniform" is the plain mean of q_k·e_a over the
    item's aspects (not a sum, nor a mean over one more), "attention" their softmax-weighted mean,
    "none" nothing; an item without aspects gets no term in any mode."""
    w, user = weights(), 1
    sims = prototype_sims(w, user)
    dense = item_aspects().toarray()
    expected = np.zeros((K, ITEMS))
    for k in range(K):
        for v in range(ITEMS):
            held = np.flatnonzero(dense[v])
            term = 0.0
            if held.size and mode == "uniform":
                term = sum(sims[k, a] for a in held) / held.size
            elif held.size and mode == "attention":
                term = float(softmax(sims[k, held]) @ sims[k, held])
            expected[k, v] = float(w["personas"][user, k] @ w["item"][v]) + term
    got = PersonaRanker(w, item_aspects(), mode).persona_item_logits(user, np.arange(ITEMS))
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_the_posterior_moves_by_each_personas_affinity_relative_to_the_other_personas() -> None:
    """Guards against the aspect evidence c_{k,a} centred over the wrong axis (over aspects rather than
    over the user's personas): log β = log π + Σ_acc c_{k,a} − Σ_rej c_{k,a}, normalised."""
    w, user = weights(), 2
    sims = prototype_sims(w, user)
    relative = np.array(
        [[sims[k, a] - sum(sims[j, a] for j in range(K)) / K for a in range(ASPECTS)] for k in range(K)]
    )
    accepted, rejected = np.array([0, 3]), np.array([4])
    logits = w["log_prior"][user] + relative[:, 0] + relative[:, 3] - relative[:, 4]
    posterior = ranker().persona_posterior(DialogueFacts(user, accepted, rejected, EMPTY))
    np.testing.assert_allclose(posterior, softmax(logits), atol=1e-12)


def test_a_views_probes_rank_aspects_by_weights_relative_to_the_other_personas() -> None:
    """Guards against a view's aspect weights W applied uncentred to c_{k,a}: an aspect every persona
    weighs alike must not climb every persona's signature (probe) aspects; other users keep theirs."""
    w, user = weights(), 0
    W = np.zeros((K, ASPECTS))
    W[:, 5] = 4.0  # all personas alike: centred, it moves nothing
    W[1, 2] = 3.0  # persona 1 alone: it moves persona 1's aspect 2 up by 3 − 3/K
    sims = prototype_sims(w, user)
    adjusted = np.array(
        [
            [
                sims[k, a] - sum(sims[j, a] for j in range(K)) / K + W[k, a] - W[:, a].sum() / K
                for a in range(ASPECTS)
            ]
            for k in range(K)
        ]
    )
    r = ranker()
    view = r.with_aspect_weights(user, W)
    for k in range(K):
        expected = sorted(range(ASPECTS), key=lambda a, k=k: -adjusted[k, a])
        assert view.signature_aspects(user, k, ASPECTS).tolist() == expected
        assert view.signature_aspects(1, k, ASPECTS).tolist() == r.signature_aspects(1, k, ASPECTS).tolist()
    # the all-alike aspect is not first for every persona (it would be, uncentred)
    assert any(view.signature_aspects(user, k, 1)[0] != 5 for k in range(K))


def test_a_view_of_a_view_scores_with_the_new_weights_only() -> None:
    """Guards against a view that keeps its parent's adjusted arrays: `with_aspect_weights` replaces
    the weights a view applies, so a view of a view scores as a fresh view of the new weights."""
    rng = np.random.default_rng(7)
    user, everything = 1, np.arange(ITEMS)
    first_weights, new_weights = rng.normal(size=(K, ASPECTS)), rng.normal(size=(K, ASPECTS))
    facts = DialogueFacts(user, np.array([2]), np.array([1]), EMPTY)
    first = ranker().with_aspect_weights(user, first_weights)
    first.item_scores(facts, everything)  # builds the first view's adjusted arrays
    second = first.with_aspect_weights(user, new_weights)
    fresh = ranker().with_aspect_weights(user, new_weights)
    np.testing.assert_array_equal(second.item_scores(facts, everything), fresh.item_scores(facts, everything))
    np.testing.assert_array_equal(second.persona_posterior(facts), fresh.persona_posterior(facts))
    plain = ranker()
    np.testing.assert_array_equal(
        first.with_aspect_weights(user, np.zeros((K, ASPECTS))).item_scores(facts, everything),
        plain.item_scores(facts, everything),
    )


def test_stacked_item_priors_add_up_and_rebuild_the_same_scores() -> None:
    """Guards against a view that records only its last item prior: a ranker with two priors (``+pop``
    then ``+open``) must report their sum, which rebuilds it (what `crs report` does with a clone)."""
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=ITEMS), rng.normal(size=ITEMS)
    users = np.arange(USERS)
    plain = ranker()
    view = plain.with_item_prior(first).with_item_prior(second)
    np.testing.assert_allclose(view.item_prior, first + second, atol=1e-12)
    gained = view.full_scores(users) - plain.full_scores(users)
    np.testing.assert_allclose(gained, np.tile(first + second, (USERS, 1)), atol=1e-9)
    rebuilt = ranker().with_item_prior(view.item_prior)
    np.testing.assert_allclose(rebuilt.full_scores(users), view.full_scores(users), atol=1e-12)


def test_splitting_questions_of_another_temperature_never_share_cached_scores() -> None:
    """Guards against the per-dialogue cache serving a ``+split:T`` view the scores of another T: each
    view's aspect score is the entropy of the mass of softmax(item scores / T) over the consistent items
    holding the aspect (1e-6 × affinity aside), whichever view asked first."""
    r, user = ranker(), 0
    facts = DialogueFacts(user, EMPTY, np.array([1]), np.array([4]))
    aspects = np.arange(ASPECTS)
    dense = item_aspects().toarray()
    consistent = [v for v in range(ITEMS) if v != 4]
    scores = r.item_scores(facts, np.array(consistent))
    for temperature in (1.0, 0.1, 5.0):
        got = r.with_questions("split", temperature).aspect_scores(facts, aspects)
        p = softmax(scores / temperature)
        for a in aspects:
            m = sum(p[i] for i, v in enumerate(consistent) if dense[v, a])
            entropy = -(m * np.log(m) + (1 - m) * np.log(1 - m)) if 0 < m < 1 else 0.0
            assert got[a] == pytest.approx(entropy, abs=1e-4), (temperature, a)


def hand_item_score(
    w: dict[str, np.ndarray], facts: DialogueFacts, item: int, temperature: float = 1.0
) -> float:
    """The module docstring's item score with aspect attention off ("none": no aspect terms), by hand."""
    user, e_v = facts.user, w["item"][item]
    per_persona = np.array([float(w["personas"][user, k] @ e_v) for k in range(K)])
    log_beta = np.array(w["log_prior"][user], dtype=float)
    for k in range(K):
        sims = prototype_sims(w, user)
        for sign, aspects in ((1.0, facts.accepted), (-1.0, facts.rejected)):
            for a in aspects:
                log_beta[k] += sign * (sims[k, a] - sum(sims[j, a] for j in range(K)) / K)
    alpha = softmax(log_beta + per_persona)
    preference = float(w["user"][user] @ e_v + w["shared"] @ e_v + alpha @ per_persona)
    preference += sum(float(e_v @ w["aspect"][a]) for a in facts.accepted)
    preference -= sum(float(e_v @ w["aspect"][a]) for a in facts.rejected)
    held = set(np.flatnonzero(item_aspects().toarray()[item]).tolist())
    score = preference / temperature - 5.0 * len(held & set(facts.rejected.tolist()))
    return score - (1.0e6 if item in facts.rejected_items.tolist() else 0.0)


@pytest.mark.parametrize(
    "accepted, rejected, rejected_items",
    [([], [], []), ([], [1], []), ([], [0, 2], [3]), ([4], [], []), ([2, 5], [0], [0, 7])],
)
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_item_scores_are_the_documented_formula_worked_by_hand(
    accepted: list[int], rejected: list[int], rejected_items: list[int], temperature: float
) -> None:
    """Guards against a dropped or misplaced term of the item score: the dialogue vector for dialogues
    with rejections only, the rejected-aspect penalty per aspect held (not per item), the temperature
    dividing the preference but not the rejection rules, and rejected items pushed down, not reset."""
    w = weights()
    r = PersonaRanker(w, item_aspects(), "none").with_temperature(temperature)
    as_array = [np.array(x, dtype=np.int64) for x in (accepted, rejected, rejected_items)]
    facts = DialogueFacts(1, *as_array)
    expected = [hand_item_score(w, facts, v, temperature) for v in range(ITEMS)]
    np.testing.assert_allclose(r.item_scores(facts, np.arange(ITEMS)), expected, rtol=1e-10, atol=1e-8)


def hand_affinity(w: dict[str, np.ndarray], facts: DialogueFacts) -> np.ndarray:
    """The aspect tie-break Σ_k β_k q_k·e_a + (g_u + c₀)·e_a + e_a·(Σ_acc e − Σ_rej e), by hand, (A,)."""
    user = facts.user
    sims = prototype_sims(w, user)
    log_beta = np.array(w["log_prior"][user], dtype=float)
    for k in range(K):
        for sign, aspects in ((1.0, facts.accepted), (-1.0, facts.rejected)):
            for a in aspects:
                log_beta[k] += sign * (sims[k, a] - sum(sims[j, a] for j in range(K)) / K)
    beta = softmax(log_beta)
    dialogue = sum((w["aspect"][a] for a in facts.accepted), np.zeros(D))
    dialogue = dialogue - sum((w["aspect"][a] for a in facts.rejected), np.zeros(D))
    return np.array(
        [
            sum(beta[k] * sims[k, a] for k in range(K))
            + float(w["aspect"][a] @ (w["user"][user] + w["shared"] + dialogue))
            for a in range(ASPECTS)
        ]
    )


@pytest.mark.parametrize(
    "accepted, rejected, rejected_items, consistent",
    [
        ([0, 4], [], [4], [2, 8, 10]),  # items holding both accepted aspects, but the rejected one
        ([3], [5], [1], [3, 5, 7, 9]),  # a rejected aspect does not remove its items
        ([], [1], [], list(range(ITEMS))),  # every item, the one without aspects included
        ([0, 3], [], [], []),  # no item holds both: no mass, the affinity alone
    ],
)
def test_aspect_scores_are_the_log_mass_of_consistent_items_then_the_affinity(
    accepted: list[int], rejected: list[int], rejected_items: list[int], consistent: list[int]
) -> None:
    """Guards against consistent items that hold any accepted aspect rather than all, keep rejected
    items, or drop items for a rejected aspect; against a tie-break of the wrong sign or without the
    dialogue; and against an empty consistent set scored other than by the affinity alone."""
    w = weights()
    r = PersonaRanker(w, item_aspects(), "none")
    facts = DialogueFacts(0, *(np.array(x, dtype=np.int64) for x in (accepted, rejected, rejected_items)))
    assert r.consistent_items(facts).tolist() == consistent
    affinity = hand_affinity(w, facts)
    got = r.aspect_scores(facts, np.arange(ASPECTS))
    if not consistent:
        np.testing.assert_allclose(got, affinity, rtol=1e-12, atol=1e-12)
        return
    p = softmax(np.array([hand_item_score(w, facts, v) for v in consistent]))
    dense = item_aspects().toarray()
    for a in range(ASPECTS):
        mass = sum(p[i] for i, v in enumerate(consistent) if dense[v, a])
        if mass > 0:
            assert got[a] == pytest.approx(np.log(mass) + 1e-6 * affinity[a], abs=1e-9)
        else:  # log(1e-300), then ordered by the affinity
            assert (got[a] - np.log(1e-300)) / 1e-6 == pytest.approx(affinity[a], abs=1e-4)


def test_signature_aspects_of_a_single_persona_rank_by_its_own_affinity() -> None:
    """Guards against a one-persona ranker probing by the relative affinity, which is 0 for every aspect
    with K = 1 (so the probe would list aspects in id order): it ranks by q·e_a itself."""
    w = weights()
    one = {
        **w,
        "personas": w["personas"][:, :1],
        "log_prior": np.zeros((USERS, 1)),
        "mixtures": w["mixtures"][:, :1],
    }
    r = PersonaRanker(one, item_aspects(), "attention")
    for user in range(USERS):
        sims = prototype_sims(w, user)[0]  # persona 0's q·e_a, the same mixture row
        expected = sorted(range(ASPECTS), key=lambda a, s=sims: -s[a])
        assert r.signature_aspects(user, 0, ASPECTS).tolist() == expected
        among = np.array([5, 1, 2])
        assert (
            r.signature_aspects(user, 0, 2, among).tolist()
            == sorted(among.tolist(), key=lambda a, s=sims: -s[a])[:2]
        )


@pytest.mark.parametrize("k", [-1, K])
def test_a_persona_outside_the_users_personas_is_refused(k: int) -> None:
    """Guards against persona -1 read as the last persona (numpy's wrap-around) when a probe asks for
    its signature aspects."""
    with pytest.raises(CRSError, match="outside"):
        ranker().signature_aspects(0, k, 2)


def test_explanations_and_item_personas_follow_the_prior_and_the_chosen_persona() -> None:
    """Guards against `persona_of` ignoring the user's persona prior, and `explain` naming the aspect
    that persona 0 (not the explaining persona k*) attends to most."""
    w = weights()
    w["log_prior"] = np.array([[0.0, -40.0, -40.0], [-np.log(3)] * 3, [-40.0, -40.0, 0.0]])  # 1 − 2e-18, ...
    r = ranker_of(w)
    dense = item_aspects().toarray()
    items = np.arange(ITEMS)
    for user in range(USERS):
        sims = prototype_sims(w, user)
        logits = np.array([[float(w["personas"][user, k] @ w["item"][v]) for v in items] for k in range(K)])
        for v in items:
            held = np.flatnonzero(dense[v])
            for k in range(K):
                if held.size:
                    logits[k, v] += float(softmax(sims[k, held]) @ sims[k, held])
        best = [int(np.argmax(w["log_prior"][user] + logits[:, v])) for v in items]
        assert r.persona_of(user, items).tolist() == best
        expected = []
        for v, k in zip(items.tolist(), best, strict=True):
            held = np.flatnonzero(dense[v])
            expected.append((k, int(held[np.argmax(sims[k, held])]) if held.size else -1))
        assert r.explain(DialogueFacts(user, EMPTY, EMPTY, EMPTY), items) == expected
    # the prior decides for the skewed users: persona 0 for user 0, persona 2 for user 2
    assert set(r.persona_of(0, items).tolist()) == {0} and set(r.persona_of(2, items).tolist()) == {2}


def test_an_item_prior_alone_is_a_preference_and_must_be_finite() -> None:
    """Guards against a uniform ranker with a popularity prior reported as having no preferences (its
    aspect scores would then be read as counts), and a non-finite prior accepted into every score."""
    zero = {key: np.zeros_like(value) for key, value in weights().items()}
    plain = PersonaRanker(zero, item_aspects(), "attention")
    assert not plain.has_preferences
    assert plain.with_item_prior(np.linspace(0.0, 1.0, ITEMS)).has_preferences
    for bad in (np.full(ITEMS, np.nan), np.r_[np.zeros(ITEMS - 1), np.inf], np.zeros(ITEMS + 1)):
        with pytest.raises(CRSError, match="one finite number per item"):
            plain.with_item_prior(bad)


def test_a_views_item_terms_gain_the_mean_weight_over_each_items_aspects() -> None:
    """Guards against a view that applies only the aspect weights it finds positive somewhere: an aspect
    only ever rejected (every persona's weight below 0) must lower the items holding it too; an item
    without aspects gains nothing, and another user's terms are the plain ranker's."""
    W = np.zeros((K, ASPECTS))
    W[:, 3] = [-0.5, -0.25, -1.0]  # rejected only
    W[0, 0] = 0.7
    W[1, 4], W[2, 4] = -0.3, 0.2
    user, everything = 2, np.arange(ITEMS)
    plain = ranker()
    view = plain.with_aspect_weights(user, W)
    dense = item_aspects().toarray()
    expected = plain.persona_item_logits(user, everything)
    for k in range(K):
        for v in everything:
            held = np.flatnonzero(dense[v])
            if held.size:
                expected[k, v] += sum(W[k, a] for a in held) / held.size
    np.testing.assert_allclose(view.persona_item_logits(user, everything), expected, atol=1e-12)
    np.testing.assert_array_equal(
        view.persona_item_logits(0, everything), plain.persona_item_logits(0, everything)
    )
