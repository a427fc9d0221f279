"""The item popularity prior (`policies.popularity_prior`) and a persona ranker that adds it (`+pop`)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.ranker import DialogueFacts
from policies.baseline_rankers import uniform_ranker
from policies.popularity_prior import POPULARITY_WEIGHT, popularity_prior
from policies.pretrain.ranker import PersonaRanker
from policies.rankers import RankerSpec
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from tests.envs.conftest import tiny_catalog


def chosen_catalog() -> Catalog:
    """The tiny catalogue's 6 items x 4 aspects, one user; train chose item 2 three times, item 5 once."""
    tiny = tiny_catalog()
    train = Interactions(users=np.zeros(4, dtype=np.int64), items=np.array([2, 2, 5, 2]))
    test = Interactions(users=np.array([0]), items=np.array([0]))
    return Catalog(
        name="tiny-pop",
        item_aspects=tiny.item_aspects,
        item_names=tiny.item_names,
        aspect_names=tiny.aspect_names,
        n_users=1,
        splits={"train": train, "valid": test, "test": test},
    )


def test_the_prior_is_the_weighted_log_count_worked_by_hand() -> None:
    prior = popularity_prior(chosen_catalog(), weight=2.0)
    np.testing.assert_allclose(prior, 2.0 * np.log([1, 1, 4, 1, 1, 2]), atol=1e-12)
    np.testing.assert_allclose(popularity_prior(chosen_catalog()), POPULARITY_WEIGHT / 2.0 * prior)
    for bad in (-1.0, float("nan")):
        with pytest.raises(CRSError, match="popularity weight"):
            popularity_prior(chosen_catalog(), weight=bad)


def test_a_popularity_view_orders_the_items_the_dialogue_leaves_tied() -> None:
    catalog = chosen_catalog()
    plain = uniform_ranker(catalog)
    prior = popularity_prior(catalog)
    view = plain.with_item_prior(prior)
    items = np.arange(6)
    # items 0, 1, 2 and 5 hold aspect 0; the rejected aspect 2 is held by items 1, 4 and 5
    facts = DialogueFacts(user=0, accepted=np.array([0]), rejected=np.array([2]), rejected_items=np.array([]))
    before = plain.item_scores(facts, items).copy()
    scored = view.item_scores(facts, items)
    np.testing.assert_allclose(scored - before, prior, atol=1e-12)  # the rules are untouched
    np.testing.assert_array_equal(plain.item_scores(facts, items), before)  # the plain ranker's cache too
    assert before[0] == before[2] and scored[2] > scored[0]  # tied by the dialogue, the chosen one first
    np.testing.assert_allclose(
        view.full_scores(np.array([0]))[0], plain.full_scores(np.array([0]))[0] + prior
    )
    tempered = view.with_temperature(4.0)  # divided by T like every preference; the rules are not
    np.testing.assert_allclose(tempered.item_scores(facts, items) - before, prior / 4.0, atol=1e-12)
    with pytest.raises(CRSError, match="one finite number per item"):
        plain.with_item_prior(prior[:3])


def test_the_ranker_name_adds_a_prior_to_persona_rankers_only() -> None:
    spec = RankerSpec.parse("uniform+profile+pop+split@2")
    assert spec.profile and spec.popularity_weight == POPULARITY_WEIGHT and spec.questions == "split"
    assert spec.name == "uniform+profile+pop+split@2" and RankerSpec.parse(spec.entry) == spec
    assert RankerSpec.parse("uniform+pop+profile+split@2") == spec  # written back in one order
    assert RankerSpec.parse(f"uniform+pop:{POPULARITY_WEIGHT}") == RankerSpec.parse("uniform+pop")
    heavy = RankerSpec.parse("uniform+pop:0.5")
    assert heavy.name == "uniform+pop:0.5" and heavy.identity() != RankerSpec.parse("uniform+pop").identity()
    assert RankerSpec.parse("uniform").identity() != RankerSpec.parse("uniform+pop").identity()
    catalog = chosen_catalog()
    ranker = heavy.build(catalog)
    assert isinstance(ranker, PersonaRanker)
    facts = DialogueFacts(user=0, accepted=np.array([0]), rejected=np.array([]), rejected_items=np.array([]))
    plain = uniform_ranker(catalog).item_scores(facts, np.arange(6))
    np.testing.assert_allclose(
        ranker.item_scores(facts, np.arange(6)) - plain, popularity_prior(catalog, 0.5)
    )
    with pytest.raises(CRSError, match="only a persona ranker"):
        RankerSpec.parse("popularity+pop")
    for bad in ("0", "-1", "inf"):
        with pytest.raises(CRSError, match="popularity weight"):
            RankerSpec.parse(f"uniform+pop:{bad}")
