"""The search's belief: softmax(scores / temperature), the temperature's checks, and its fit; the
search's values and plans, worked out by hand on a catalogue of eight items."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs.answer_search import AnswerSearch, Plan, log_belief
from envs.belief_fit import FIT_TEMPERATURES, fit_temperature
from envs.ranker import DialogueFacts
from envs.registry import make_env
from envs.rollout import episode_seed
from policies.rankers import build_ranker
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from tests.envs.conftest import tiny_catalog


def test_the_belief_is_the_softmax_of_the_scores_over_the_temperature() -> None:
    scores = np.array([0.3, 0.1, 0.0, 0.3])
    for temperature in (1.0, 0.1, 0.01):
        belief = np.exp(log_belief(scores, temperature))
        expected = np.exp(scores / temperature) / np.exp(scores / temperature).sum()
        np.testing.assert_allclose(belief, expected, rtol=1e-12)
    top = [float(np.exp(log_belief(scores, t))[0]) for t in (10.0, 1.0, 0.1, 0.01)]
    assert top == sorted(top) and top[-1] == pytest.approx(0.5)  # sharper; the two best tie
    huge = np.array([1e6, 0.0])  # no overflow: scores are shifted by their maximum first
    assert np.exp(log_belief(huge, 0.01)).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf"), True, "0.1"])
def test_a_temperature_must_be_a_finite_number_above_zero(bad: object) -> None:
    with pytest.raises(CRSError, match="must be a finite number > 0"):
        log_belief(np.zeros(3), bad)  # type: ignore[arg-type]


def test_fitting_the_temperature_trusts_a_ranker_that_puts_the_target_first() -> None:
    """On the tiny catalogue user 0 chose item 2 in train and wants it in test: the tag profile ranks it
    first, so the sharpest belief is the likeliest; with no preferences every candidate ties and every
    temperature gives the target 1 / (candidates) exactly."""
    catalog = tiny_catalog()
    env = make_env(catalog=catalog, split="test", setting="binary")
    profile = fit_temperature(env, build_ranker("uniform+profile", catalog), [0], seed=3)
    assert profile.scored == 1 and profile.excluded == 0
    assert list(profile.log_likelihoods) == sorted(profile.log_likelihoods)  # FIT_TEMPERATURES descend
    assert profile.best == min(FIT_TEMPERATURES) and profile.log_likelihoods[-1] > -0.05
    flat = fit_temperature(env, build_ranker("uniform", catalog), [0], seed=3, temperatures=(1.0, 0.01))
    env.reset(seed=episode_seed(3, 0), options={"goal_index": 0})
    expected = -np.log(env.state.n_candidates)
    assert flat.log_likelihoods == pytest.approx((expected, expected)) and flat.best == 1.0
    with pytest.raises(CRSError, match="at least one temperature"):
        fit_temperature(env, build_ranker("uniform", catalog), [0], seed=3, temperatures=())
    with pytest.raises(CRSError, match="must be a finite number > 0"):
        fit_temperature(env, build_ranker("uniform", catalog), [0], seed=3, temperatures=(0.0,))


# ---------------------------------------------------------------------------------- the search by hand
# item -> aspects: the three aspects split the eight items in halves, a0 = {0,1,2,3}, a1 = {0,1,4,5},
# a2 = {0,2,4,6}; item i has belief weight (8 - i) / 36 (8 + 7 + ... + 1 = 36).
CODE_ITEMS = {0: [0, 1, 2], 1: [0, 1], 2: [0, 2], 3: [0], 4: [1, 2], 5: [1], 6: [2], 7: []}
WEIGHTS = np.arange(8, 0, -1, dtype=np.float64)


def code_catalog() -> Catalog:
    rows = [i for i, aspects in CODE_ITEMS.items() for _ in aspects]
    cols = [a for aspects in CODE_ITEMS.values() for a in aspects]
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(8, 3))
    split = Interactions(users=np.array([0]), items=np.array([0]))
    return Catalog(
        name="code",
        item_aspects=matrix,
        item_names=tuple(f"item{i}" for i in range(8)),
        aspect_names=("a0", "a1", "a2"),
        n_users=1,
        splits={"train": split, "valid": split, "test": split},
    )


class WeightRanker:
    """Item scores log(weight), minus 10 per rejected aspect the item holds (so an answer's ranking puts
    the items it leaves possible first); aspect scores a0 > a1 > a2."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        held = self.catalog.item_aspects[items][:, facts.rejected].toarray().sum(axis=1)
        return np.log(WEIGHTS[items]) - 10.0 * held

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return -aspects.astype(np.float64)


def code_plan(
    turns_left: int, depth: int = 1, slate_size: int = 1, options: tuple[int, ...] = (0, 1, 2)
) -> Plan:
    """The plan at the start of a dialogue with every item a candidate (the belief is WEIGHTS / 36)."""
    catalog = code_catalog()
    none = np.zeros(0, dtype=np.int64)
    search = AnswerSearch(
        catalog, WeightRanker(catalog), slate_size, depth, DialogueFacts(0, none, none, none), np.arange(8)
    )
    return search.plan(np.array(options, dtype=np.int64), turns_left)


def in_36ths(plan: Plan) -> tuple[float, list[float]]:
    return round(plan.recommend_value * 36, 9), [round(v * 36, 9) for v in plan.ask_values]


def test_recommending_finds_the_mass_of_the_first_k_times_r_items() -> None:
    # k = 1, r = 2: items 0, 1 -> 8 + 7 = 15; k = 2, r = 2 or k = 1, r = 4: items 0..3 -> 26
    assert in_36ths(code_plan(2, options=())) == (15, [])
    assert in_36ths(code_plan(2, slate_size=2, options=())) == (26, [])
    assert in_36ths(code_plan(4, options=())) == (26, [])
    assert code_plan(2, options=()).ask is None


def test_one_question_deep_the_answers_share_the_turns_left() -> None:
    """k = 1, r = 4, depth 1: recommending shows items 0..3 (26). Asking a leaves 3 slates per answer:
    yes shows a's three heaviest holders, no the three heaviest others (ranked first by WeightRanker).
    a0: {0,1,2} 21 + {4,5,6} 9 = 30; a1: {0,1,4} 19 + {2,3,6} 13 = 32; a2: {0,2,4} 18 + {1,3,5} 15 = 33."""
    plan = code_plan(4, depth=1)
    assert in_36ths(plan) == (26, [30, 32, 33]) and plan.ask == 2


def test_two_questions_deep_each_answer_asks_again() -> None:
    """k = 1, r = 4, depth 2: after a0's yes (items 0..3, 3 turns) recommending finds 8 + 7 + 6 = 21,
    asking a1 finds {0,1} 15 + {2,3} 11 = 26, everything; after a0's no (items 4..7) likewise
    {4,5} 7 + {6,7} 3 = 10. So a0 finds 26 + 10 = 36, and so do a1 and a2 (by the same halving):
    three options worth 1, and the search asks the first of them."""
    plan = code_plan(4, depth=2)
    assert in_36ths(plan) == (26, [36, 36, 36]) and plan.ask == 0


def test_the_first_of_equally_valued_options_is_asked() -> None:
    """k = 1, r = 3, depth 1: recommending finds 8 + 7 + 6 = 21; two slates per answer:
    a0: {0,1} 15 + {4,5} 7 = 22; a1: {0,1} 15 + {2,3} 11 = 26; a2: {0,2} 14 + {1,3} 12 = 26."""
    plan = code_plan(3, depth=1)
    assert in_36ths(plan) == (21, [22, 26, 26]) and plan.ask == 1


def test_asking_as_much_as_recommending_asks_while_the_slates_miss_some_mass() -> None:
    """k = 1, r = 2: recommending finds 8 + 7 = 15; one slate per answer: a0: 8 + 4 = 12,
    a1: 8 + 6 = 14, a2: 8 + 7 = 15, a tie below 1: the search asks a2. With r = 8 recommending finds
    everything (36): every option ties with it at 1 and the search recommends."""
    plan = code_plan(2, depth=1)
    assert in_36ths(plan) == (15, [12, 14, 15]) and plan.ask == 2
    plan = code_plan(8, depth=1)
    assert in_36ths(plan) == (36, [36, 36, 36]) and plan.ask is None
