"""Mutation-audit tests for the rankers' content half and the fixed rankers: the tag profiles
(`policies.content_profile`), the item priors (`policies.opening_prior`, `policies.popularity_prior`), the
baseline rankers (`policies.baseline_rankers`) and the dialogue range checks (`envs.ranker`).

Each test guards against one kind of bug a hand-made mutant showed the older tests let through; the
expected values are worked by hand from small catalogues, not read off the code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from policies.baseline_rankers import PopularityRanker, TransERanker, uniform_ranker
from policies.content_profile import ContentProfile, profile_holdout
from policies.opening_prior import opening_prior
from policies.popularity_prior import popularity_prior
from policies.pretrain.ranker import REJECTED_ASPECT_PENALTY
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from tests.envs.conftest import TINY_ITEMS, tiny_catalog

EMPTY = np.zeros(0, dtype=np.int64)

# user 0 chose items 0-3 in valid, user 1 items 4 and 5; the test split names items 6 and 7 only
VALID_ITEMS = {0: [0, 1, 2, 3], 1: [4, 5]}


def one_aspect_catalog(train: bool = False) -> Catalog:
    """8 items x 8 aspects, item v holding aspect v alone, 2 users.

    Every aspect has one holder, so every IDF is the same and item v's profile row is the unit vector
    e_v: a profile built from k items is 1/sqrt(k) on exactly those items, which shows which
    interactions it was built from. Without `train` it is Yelp*-like (pre-training on valid, minus a
    seeded hold-out); with it, train holds user 0's items 0 and 1 and user 1's item 4.
    """
    matrix = sp.csr_matrix(np.eye(8, dtype=bool))
    users = [u for u, items in VALID_ITEMS.items() for _ in items]
    valid = Interactions(np.array(users), np.array([v for items in VALID_ITEMS.values() for v in items]))
    test = Interactions(np.array([0, 1]), np.array([6, 7]))
    splits = {"valid": valid, "test": test}
    if train:
        splits["train"] = Interactions(np.array([0, 0, 1]), np.array([0, 1, 4]))
    return Catalog(
        name="one-aspect",
        item_aspects=matrix,
        item_names=tuple(f"item{i}" for i in range(8)),
        aspect_names=tuple(f"a{i}" for i in range(8)),
        n_users=2,
        splits=splits,
    )


def held_out(catalog: Catalog, seed: int, fraction: float) -> set[tuple[int, int]]:
    """The (user, item) pairs of ``valid`` the profile of this seed and fraction must not hold."""
    holdout = profile_holdout(catalog, seed, fraction)
    assert holdout is not None
    return set(zip(holdout.users.tolist(), holdout.items.tolist(), strict=True))


def test_a_yelp_like_profile_holds_the_users_own_valid_items_minus_the_seeded_holdout() -> None:
    """Guards against a profile that ignores its seed or hold-out fraction, counts the hold-out or the
    test split, reads another user's items, or is left unnormalised (a score above the weight)."""
    catalog = one_aspect_catalog()
    seen: set[frozenset[tuple[int, int]]] = set()
    for seed in range(6):
        for fraction, n_held in ((0.5, (2, 1)), (0.25, (1, 1))):  # floor(n·f), at least 1 from 2 on
            held = held_out(catalog, seed, fraction)
            assert [sum(u == user for u, _ in held) for user in (0, 1)] == list(n_held)
            seen.add(frozenset(held))
            scores = ContentProfile.of(catalog, weight=3.0, seed=seed, holdout_fraction=fraction).scores(
                np.array([0, 1])
            )
            for user, items in VALID_ITEMS.items():
                kept = [v for v in items if (user, v) not in held]
                expected = np.zeros(8)
                expected[kept] = 3.0 / np.sqrt(len(kept))
                np.testing.assert_allclose(scores[user], expected, atol=1e-12)
    assert len(seen) > 2  # the seed chooses the hold-out: the profiles above followed it


def test_the_holdout_is_none_with_a_train_split_and_all_of_valid_is_then_unseen() -> None:
    """Guards against `profile_holdout` answering for the wrong kind of catalogue, or with the kept
    interactions instead of the held-out ones."""
    assert profile_holdout(one_aspect_catalog(train=True)) is None
    catalog = one_aspect_catalog()
    for seed in (0, 1, 2):
        held = held_out(catalog, seed, 0.5)
        valid = {(u, v) for u, items in VALID_ITEMS.items() for v in items}
        assert held < valid and len(held) == 3  # a strict part of valid: 2 of user 0's 4, 1 of user 1's 2


def test_a_profile_with_a_train_split_reads_train_alone() -> None:
    """Guards against valid or test interactions leaking into the profile when a train split exists."""
    scores = ContentProfile.of(one_aspect_catalog(train=True), weight=1.0).scores(np.array([0, 1]))
    expected = np.zeros((2, 8))
    expected[0, [0, 1]] = 1.0 / np.sqrt(2.0)
    expected[1, 4] = 1.0
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_a_profile_of_overlapping_items_is_the_cosine_with_their_normalised_sum() -> None:
    """Guards against the user's rows normalised before summing the items (not after): two items that
    share aspects then give a profile longer than 1 and scores above the weight."""
    tiny = tiny_catalog()
    train = Interactions(np.array([0, 0]), np.array([0, 2]))  # items 0 {0, 1} and 2 {0, 1, 3}
    catalog = Catalog(
        name="tiny-overlap",
        item_aspects=tiny.item_aspects,
        item_names=tiny.item_names,
        aspect_names=tiny.aspect_names,
        n_users=1,
        splits={"train": train, "valid": train, "test": train},
    )
    idf = np.log(7.0 / (np.array([4, 3, 3, 3]) + 1.0))  # holders per aspect, worked from TINY_ITEMS
    x = np.zeros((6, 4))
    for item, aspects in TINY_ITEMS.items():
        x[item, aspects] = idf[aspects]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    profile = x[0] + x[2]
    profile /= np.linalg.norm(profile)
    scores = ContentProfile.of(catalog, weight=1.0).scores(np.array([0]))[0]
    np.testing.assert_allclose(scores, x @ profile, atol=1e-12)
    assert scores.max() <= 1.0 + 1e-12


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -0.5])
def test_a_profile_weight_that_is_not_a_finite_number_above_or_at_zero_is_refused(weight: float) -> None:
    """Guards against a NaN or infinite profile weight accepted (every score NaN or infinite)."""
    with pytest.raises(CRSError, match="profile weight"):
        ContentProfile.of(one_aspect_catalog(train=True), weight=weight)


def test_a_zero_weight_turns_each_term_off_rather_than_being_refused() -> None:
    """Guards against a check of weight > 0 where the documented range is >= 0."""
    catalog = one_aspect_catalog(train=True)
    np.testing.assert_array_equal(
        ContentProfile.of(catalog, weight=0.0).scores(np.array([0])), np.zeros((1, 8))
    )
    np.testing.assert_array_equal(opening_prior(catalog, weight=0.0), np.zeros(8))
    np.testing.assert_array_equal(popularity_prior(catalog, weight=0.0), np.zeros(8))


@pytest.mark.parametrize("users", [[-1], [0, -2], [2]])
def test_profile_scores_of_a_user_outside_the_profiles_are_refused_not_wrapped(users: list[int]) -> None:
    """Guards against user -1 read as the last user's profile."""
    profile = ContentProfile.of(one_aspect_catalog(train=True))
    with pytest.raises(CRSError, match="outside"):
        profile.scores(np.array(users))


def test_profiles_and_items_that_disagree_on_the_aspects_are_refused() -> None:
    """Guards against a profile built from another catalogue's aspects accepted."""
    with pytest.raises(CRSError, match="disagree on the aspects"):
        ContentProfile(sp.csr_matrix((2, 4)), sp.csr_matrix((5, 8)))


# ------------------------------------------------------------------------------------------ priors


def test_the_popularity_prior_counts_the_kept_valid_interactions_of_its_seed_and_fraction() -> None:
    """Guards against a popularity prior that ignores its seed or fraction, counts the hold-out or test
    interactions, or loses the catalogue's last items when nobody chose them."""
    catalog = one_aspect_catalog()
    for seed in range(4):
        for fraction in (0.5, 0.25):
            held = held_out(catalog, seed, fraction)
            counts = np.zeros(8)
            for user, items in VALID_ITEMS.items():
                for v in items:
                    counts[v] += (user, v) not in held
            prior = popularity_prior(catalog, weight=2.0, seed=seed, holdout_fraction=fraction)
            np.testing.assert_allclose(prior, 2.0 * np.log(1.0 + counts), atol=1e-12)


def test_the_popularity_prior_with_a_train_split_counts_train_alone() -> None:
    """Guards against valid or test interactions counted, and a prior too short when the last items
    (6 and 7, in the test split only) were never chosen in train."""
    prior = popularity_prior(one_aspect_catalog(train=True), weight=1.0)
    np.testing.assert_allclose(prior, np.log([2, 2, 1, 1, 2, 1, 1, 1]), atol=1e-12)


@pytest.mark.parametrize("weight", [float("inf"), -float("inf")])
def test_an_infinite_prior_weight_is_refused(weight: float) -> None:
    """Guards against an infinite weight accepted (every prior infinite or NaN)."""
    catalog = one_aspect_catalog(train=True)
    with pytest.raises(CRSError, match="popularity weight"):
        popularity_prior(catalog, weight=weight)
    with pytest.raises(CRSError, match="opening weight"):
        opening_prior(catalog, weight=weight)


# ---------------------------------------------------------------------------------- fixed rankers


def popularity_catalog() -> Catalog:
    """The tiny catalogue's 6 items x 4 aspects with 2 users: train chose item 1 three times and item 2
    once, valid and test chose items 0 and 5 (never the last item in train)."""
    tiny = tiny_catalog()
    train = Interactions(np.array([0, 1, 1, 0]), np.array([1, 1, 2, 1]))
    other = Interactions(np.array([0, 1, 1]), np.array([0, 5, 5]))
    return Catalog(
        name="tiny-popular",
        item_aspects=tiny.item_aspects,
        item_names=tiny.item_names,
        aspect_names=tiny.aspect_names,
        n_users=2,
        splits={"train": train, "valid": other, "test": other},
    )


def test_the_popularity_ranker_counts_train_items_and_items_per_aspect() -> None:
    """Guards against the popularity ranker counting the test split, a count vector too short for the
    last items, or aspects scored by something other than how many items hold them."""
    ranker = PopularityRanker(popularity_catalog())
    facts = DialogueFacts(0, EMPTY, EMPTY, EMPTY)
    items = np.array([5, 2, 1, 0])
    np.testing.assert_array_equal(ranker.item_scores(facts, items), [0.0, 1.0, 3.0, 0.0])
    holders = np.bincount([a for aspects in TINY_ITEMS.values() for a in aspects], minlength=4)
    np.testing.assert_array_equal(holders, [4, 3, 3, 3])  # worked by hand from TINY_ITEMS
    np.testing.assert_array_equal(ranker.aspect_scores(facts, np.array([3, 0])), [3.0, 4.0])


def test_the_uniform_ranker_penalises_each_rejected_aspect_and_sinks_rejected_items() -> None:
    """Guards against the uniform ranker's dialogue rules: −5 per rejected aspect an item holds, a
    rejected item below every other, and nothing else (no preference)."""
    ranker = uniform_ranker(popularity_catalog())
    items = np.arange(6)
    assert np.ptp(ranker.item_scores(DialogueFacts(1, EMPTY, EMPTY, EMPTY), items)) == 0.0
    facts = DialogueFacts(1, np.array([0]), np.array([1, 3]), np.array([4]))
    scores = ranker.item_scores(facts, items)
    rejected_held = np.array([1, 0, 2, 1, 1, 1])  # |A(v) ∩ {1, 3}| from TINY_ITEMS
    others = np.array([0, 1, 2, 3, 5])
    np.testing.assert_allclose(
        scores[others] - scores[1], -REJECTED_ASPECT_PENALTY * rejected_held[others], atol=1e-9
    )
    assert scores[4] < scores[others].min() - 100.0  # the rejected item goes to the bottom


@pytest.mark.parametrize("questions", ["likely", "split"])
def test_the_uniform_rankers_question_score_is_the_share_of_consistent_items_holding_the_aspect(
    questions: str,
) -> None:
    """Guards against questions scored over the wrong items (inconsistent or rejected ones counted) or
    by weights the uniform ranker must not have; "split" scores the share's binary entropy."""
    ranker = uniform_ranker(popularity_catalog()).with_questions(questions)
    # accepted 0: items 0, 1, 2, 5 are consistent; item 2 rejected leaves 0 {0, 1}, 1 {0, 2}, 5 {0, 3}
    facts = DialogueFacts(0, np.array([0]), EMPTY, np.array([2]))
    share = np.array([1.0, 1 / 3, 1 / 3, 1 / 3])
    scores = ranker.aspect_scores(facts, np.arange(4))
    if questions == "likely":
        np.testing.assert_allclose(np.exp(scores), share, atol=1e-9)
    else:
        entropy = -(share * np.log(share) + (1 - share) * np.log(np.maximum(1 - share, 1e-300)))
        np.testing.assert_allclose(scores, entropy, atol=1e-9)


def transe_file(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A TransE pickle for `popularity_catalog` (2 users, 6 items, 4 aspects) with distinct rows."""
    rng = np.random.default_rng(7)
    ui, aspects = rng.normal(size=(8, 3)), rng.normal(size=(4, 3))
    path = tmp_path / "transe.pkl"
    path.write_bytes(pickle.dumps({"ui_emb": ui, "feature_emb": aspects}))
    return path, ui, aspects


def test_transe_reads_users_first_then_items_from_the_file(tmp_path: Path) -> None:
    """Guards against users and items swapped or shifted by one row in ``ui_emb``."""
    path, ui, aspects = transe_file(tmp_path)
    ranker = TransERanker.from_file(path, popularity_catalog())
    np.testing.assert_array_equal(ranker.user_emb, ui[:2])
    np.testing.assert_array_equal(ranker.item_emb, ui[2:])
    np.testing.assert_array_equal(ranker.aspect_emb, aspects)
    facts = DialogueFacts(1, EMPTY, EMPTY, EMPTY)
    np.testing.assert_allclose(ranker.item_scores(facts, np.array([4])), [ui[1] @ ui[6]], atol=1e-12)


def test_transe_sums_every_accepted_aspect_and_scores_any_item_subset_alike(tmp_path: Path) -> None:
    """Guards against accepted aspects averaged instead of summed, a rejected aspect left unpenalised
    after the first, and scores of a shuffled item subset that are not the full scores gathered in
    that order."""
    path, ui, e_a = transe_file(tmp_path)
    ranker = TransERanker.from_file(path, popularity_catalog())
    facts = DialogueFacts(0, np.array([0, 2]), np.array([1, 3]), EMPTY)
    e_u, e_v = ui[0], ui[2:]
    expected = e_v @ (e_u + e_a[0] + e_a[2])
    for aspect in (1, 3):  # items 0, 2, 3 hold aspect 1 and items 2, 4, 5 aspect 3 (TINY_ITEMS)
        holds = np.array([aspect in TINY_ITEMS[v] for v in range(6)])
        expected -= holds / (1.0 + np.exp(-(e_v @ e_a[aspect])))
    subset = np.array([5, 0, 4, 2])
    np.testing.assert_allclose(ranker.item_scores(facts, subset), expected[subset], atol=1e-12)
    np.testing.assert_allclose(ranker.item_scores(facts, np.arange(6)), expected, atol=1e-12)
    np.testing.assert_allclose(
        ranker.aspect_scores(facts, np.array([1, 3])), e_a[[1, 3]] @ (e_u + e_a[0] + e_a[2]), atol=1e-12
    )


@pytest.mark.parametrize(
    ("rejected", "rejected_items", "message"),
    [([4], [], r"rejected aspect ids \[4\] outside \[0, 4\)"), ([], [6], r"rejected item ids \[6\] outside")],
)
def test_transe_refuses_a_rejected_aspect_or_item_just_past_its_embeddings(
    tmp_path: Path, rejected: list[int], rejected_items: list[int], message: str
) -> None:
    """Guards against aspects checked against the item count (aspect 4 of 4 then crashes in numpy)."""
    ranker = TransERanker.from_file(transe_file(tmp_path)[0], popularity_catalog())
    facts = DialogueFacts(
        0, EMPTY, np.array(rejected, dtype=np.int64), np.array(rejected_items, dtype=np.int64)
    )
    with pytest.raises(CRSError, match=message):
        ranker.item_scores(facts, np.arange(6))


def test_transe_refuses_aspect_embeddings_of_another_dataset() -> None:
    """Guards against the aspect count left out of the embeddings' size check."""
    with pytest.raises(CRSError, match="use the embedding file of this dataset"):
        TransERanker(np.ones((2, 3)), np.ones((6, 3)), np.ones((5, 3)), popularity_catalog())
