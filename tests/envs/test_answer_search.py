"""The search's belief: softmax(scores / temperature), the temperature's checks, and its fit."""

from __future__ import annotations

import numpy as np
import pytest

from envs.answer_search import log_belief
from envs.belief_fit import FIT_TEMPERATURES, fit_temperature
from envs.registry import make_env
from envs.rollout import episode_seed
from policies.rankers import build_ranker
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
