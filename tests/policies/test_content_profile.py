"""The users' tag profiles (`policies.content_profile`) and a persona ranker that adds them (`+profile`)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.ranker import DialogueFacts
from policies.baseline_rankers import uniform_ranker
from policies.content_profile import PROFILE_WEIGHT, ContentProfile
from policies.pretrain.ranker import PersonaRanker
from policies.rankers import RankerSpec
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from tests.envs.conftest import TINY_ITEMS, tiny_catalog


def two_user_catalog() -> Catalog:
    """The tiny catalogue's 6 items x 4 aspects; user 0 chose item 2 {0, 1, 3} in train, user 1 nothing."""
    tiny = tiny_catalog()
    train = Interactions(users=np.array([0]), items=np.array([2]))
    test = Interactions(users=np.array([0, 1]), items=np.array([0, 4]))
    return Catalog(
        name="tiny2",
        item_aspects=tiny.item_aspects,
        item_names=tiny.item_names,
        aspect_names=tiny.aspect_names,
        n_users=2,
        splits={"train": train, "valid": test, "test": test},
    )


def test_profile_scores_are_the_idf_weighted_cosine_worked_by_hand() -> None:
    catalog = two_user_catalog()
    profile = ContentProfile.of(catalog, weight=2.0)
    holders = np.bincount([a for aspects in TINY_ITEMS.values() for a in aspects], minlength=4)
    idf = np.log(7.0 / (holders + 1.0))
    x = np.zeros((6, 4))
    for item, aspects in TINY_ITEMS.items():
        x[item, aspects] = idf[aspects]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = 2.0 * (x @ x[2])  # user 0's profile is item 2's row, already of unit norm
    np.testing.assert_allclose(profile.scores(np.array([0]))[0], expected, atol=1e-12)
    assert profile.scores(np.array([0]))[0].argmax() == 2  # the user's own item looks most like itself
    np.testing.assert_array_equal(profile.scores(np.array([1])), np.zeros((1, 6)))  # no items: no profile


def test_an_item_never_chosen_is_scored_by_its_aspects() -> None:
    profile = ContentProfile.of(two_user_catalog())
    scores = profile.scores(np.array([0]))[0]
    # item 0 {0, 1} shares two aspects with item 2 {0, 1, 3}, item 4 {2, 3} one, nobody chose either
    assert scores[0] > scores[4] > 0.0
    assert scores.max() <= PROFILE_WEIGHT + 1e-12


def test_bad_profiles_and_users_are_refused() -> None:
    catalog = two_user_catalog()
    with pytest.raises(CRSError, match="weight"):
        ContentProfile.of(catalog, weight=-1.0)
    with pytest.raises(CRSError, match="outside"):
        ContentProfile.of(catalog).scores(np.array([2]))
    ranker = uniform_ranker(tiny_catalog())  # one user
    with pytest.raises(CRSError, match="does not fit"):
        ranker.with_profile(ContentProfile.of(catalog))


def test_a_profile_view_orders_the_items_the_dialogue_leaves_tied() -> None:
    catalog = two_user_catalog()
    plain = uniform_ranker(catalog)
    view = plain.with_profile(ContentProfile.of(catalog))
    items = np.arange(6)
    facts = DialogueFacts(user=0, accepted=np.array([0]), rejected=np.array([2]), rejected_items=np.array([]))
    before = plain.item_scores(facts, items).copy()
    scored = view.item_scores(facts, items)
    profile = ContentProfile.of(catalog).scores(np.array([0]))[0]
    np.testing.assert_allclose(scored - before, profile, atol=1e-12)  # the rules are untouched
    np.testing.assert_array_equal(plain.item_scores(facts, items), before)  # the plain ranker's cache is not
    offline = view.full_scores(np.array([0, 1]))[0]
    np.testing.assert_allclose(offline, plain.full_scores(np.array([0]))[0] + profile)
    tempered = view.with_temperature(2.0)  # a view of the view keeps the profile
    assert isinstance(tempered, PersonaRanker) and tempered.profile is view.profile


def test_the_ranker_name_adds_a_profile_to_persona_rankers_only() -> None:
    spec = RankerSpec.parse("uniform+profile+split")
    assert spec.profile and spec.questions == "split" and spec.name == "uniform+profile+split"
    assert RankerSpec.parse("uniform+split+profile") == spec  # written back in one order
    assert RankerSpec.parse(spec.entry) == spec
    assert spec.identity() != RankerSpec.parse("uniform+split").identity()
    ranker = spec.build(two_user_catalog())
    assert isinstance(ranker, PersonaRanker) and ranker.profile is not None and ranker.questions == "split"
    assert RankerSpec.parse("uniform+split").build(two_user_catalog()).profile is None  # type: ignore[union-attr]
    with pytest.raises(CRSError, match="only a persona ranker"):
        RankerSpec.parse("popularity+profile")


def test_the_ranker_name_sets_the_profile_weight() -> None:
    spec = RankerSpec.parse("uniform+profile:2.5+split@5")
    assert spec.profile and spec.profile_weight == 2.5 and spec.temperature == 5.0
    assert spec.name == "uniform+profile:2.5+split@5" and RankerSpec.parse(spec.entry) == spec
    assert RankerSpec.parse(f"uniform+profile:{PROFILE_WEIGHT}") == RankerSpec.parse("uniform+profile")
    assert spec.identity() != RankerSpec.parse("uniform+profile+split@5").identity()
    catalog = two_user_catalog()
    heavy = RankerSpec.parse("uniform+profile:2.5").build(catalog)
    assert isinstance(heavy, PersonaRanker) and heavy.profile is not None
    users = np.array([0, 1])
    np.testing.assert_allclose(  # the weight scales the profile's scores, nothing else
        heavy.profile.scores(users), ContentProfile.of(catalog).scores(users) * 2.5 / PROFILE_WEIGHT
    )
    for bad in ("0", "-1", "inf"):
        with pytest.raises(CRSError, match="profile weight"):
            RankerSpec.parse(f"uniform+profile:{bad}")
