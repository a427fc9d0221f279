"""The opening's likelihood as an item prior (`policies.opening_prior`) and the ranker name's ``+open``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from policies.baseline_rankers import uniform_ranker
from policies.opening_prior import OPENING_WEIGHT, opening_prior
from policies.popularity_prior import popularity_prior
from policies.pretrain.ranker import PersonaRanker
from policies.rankers import RankerSpec
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.users import Goal, SingleTargetUser


def counted_catalog() -> Catalog:
    """5 items x 4 aspects holding 1, 2, 4, 0 and 2 aspects; all but item 3 hold aspect 0."""
    rows = [0, 1, 1, 2, 2, 2, 2, 4, 4]
    cols = [0, 0, 1, 0, 1, 2, 3, 0, 3]
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(5, 4))
    split = Interactions(users=np.array([0, 0]), items=np.array([2, 2]))
    return Catalog(
        name="tiny-counted",
        item_aspects=matrix,
        item_names=tuple(f"item{i}" for i in range(5)),
        aspect_names=("a0", "a1", "a2", "a3"),
        n_users=1,
        splits={"train": split, "valid": split, "test": split},
    )


def test_the_prior_is_minus_the_weighted_log_aspect_count_worked_by_hand() -> None:
    prior = opening_prior(counted_catalog(), weight=2.0)
    np.testing.assert_allclose(prior, -2.0 * np.log([1, 2, 4, 1, 2]), atol=1e-12)  # no aspects: 0
    np.testing.assert_allclose(opening_prior(counted_catalog()), OPENING_WEIGHT / 2.0 * prior)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(CRSError, match="opening weight"):
            opening_prior(counted_catalog(), weight=bad)


def test_at_weight_one_it_is_the_simulated_openings_posterior() -> None:
    """Targets drawn uniformly, each opening drawn by the simulated user: which target a stated aspect
    points to follows softmax(prior) over the items holding it, as the module claims."""
    catalog = counted_catalog()
    user = SingleTargetUser(catalog)
    rng = np.random.default_rng(0)
    openings = np.zeros((5, 4))
    for _ in range(40_000):
        target = int(rng.choice([0, 1, 2, 4]))  # item 3 holds no aspect: it cannot open a conversation
        user.reset(Goal(user=0, targets=(target,)), rng)
        openings[target, user.opening_aspect()] += 1
    holders = np.array([0, 1, 2, 4])  # the items holding aspect 0
    prior = opening_prior(catalog, weight=1.0)[holders]
    expected = np.exp(prior) / np.exp(prior).sum()  # ∝ 1/n_v: 1, 1/2, 1/4, 1/2
    observed = openings[holders, 0] / openings[:, 0].sum()
    np.testing.assert_allclose(observed, expected, atol=0.01)
    assert observed[0] > 3 * observed[2]  # one aspect against four: the sign matters


def test_an_opening_view_prefers_the_item_with_fewer_aspects_the_dialogue_leaves_tied() -> None:
    catalog = counted_catalog()
    plain = uniform_ranker(catalog)
    spec = RankerSpec.parse("uniform+open:0.5")
    view = spec.build(catalog)
    assert isinstance(view, PersonaRanker)
    facts = DialogueFacts(user=0, accepted=np.array([0]), rejected=np.array([]), rejected_items=np.array([]))
    items = np.array([0, 1, 2, 4])
    before = plain.item_scores(facts, items).copy()
    scored = view.item_scores(facts, items)
    np.testing.assert_allclose(scored - before, opening_prior(catalog, 0.5)[items], atol=1e-12)
    assert len(set(before.tolist())) == 1 and np.argmax(scored) == 0 and np.argmin(scored) == 2
    both = RankerSpec.parse("uniform+pop:0.3+open:0.5").build(catalog)  # the priors add up
    np.testing.assert_allclose(
        both.item_scores(facts, items) - before,
        (popularity_prior(catalog, 0.3) + opening_prior(catalog, 0.5))[items],
        atol=1e-12,
    )


def test_the_ranker_name_adds_the_opening_to_persona_rankers_only() -> None:
    spec = RankerSpec.parse("uniform+profile+pop+open+split@2")
    assert spec.opening_weight == OPENING_WEIGHT and spec.popularity_weight and spec.questions == "split"
    assert spec.name == "uniform+profile+pop+open+split@2" and RankerSpec.parse(spec.entry) == spec
    assert RankerSpec.parse("uniform+open+pop+profile+split@2") == spec  # written back in one order
    assert RankerSpec.parse(f"uniform+open:{OPENING_WEIGHT}") == RankerSpec.parse("uniform+open")
    heavy = RankerSpec.parse("uniform+open:0.02")
    assert heavy.name == "uniform+open:0.02" and heavy.opening_weight == 0.02
    assert heavy.identity() != RankerSpec.parse("uniform+open").identity() != RankerSpec("uniform").identity()
    with pytest.raises(CRSError, match="only a persona ranker"):
        RankerSpec.parse("popularity+open")
    for bad in ("0", "-1", "inf"):
        with pytest.raises(CRSError, match="opening weight"):
            RankerSpec.parse(f"uniform+open:{bad}")
