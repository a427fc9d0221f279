"""The search's belief: softmax(scores / temperature), and the temperature's checks."""

from __future__ import annotations

import numpy as np
import pytest

from envs.answer_search import log_belief
from simulators.errors import CRSError


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
