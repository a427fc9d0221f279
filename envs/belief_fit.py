"""Fitting the answer search's belief temperature to real targets.

`envs.answer_search` believes the target is softmax(scores / T) over the turn's candidates. A ranker's
scores only have to order items, so T = 1 need not be calibrated. `fit_temperature` opens some
conversations and scores each temperature by the mean log-likelihood of the real target under the
opening turn's belief; the best one is the T for ``lookahead-DxQtT`` and ``WrapperConfig.plan_temperature``
(`crs train --fit-plan-temperature` fits it on its training conversations, never on test). Conversations
whose opening already excluded the target are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.answer_search import log_belief
from envs.env import ConversationEnv
from envs.ranker import PreferenceRanker
from envs.rollout import episode_seed
from simulators.errors import CRSError

FIT_TEMPERATURES: tuple[float, ...] = (
    *(100.0, 30.0, 10.0, 3.0),  # for rankers whose scores are counts or logits (popularity, TransE)
    *(1.0, 0.3, 0.1, 0.05, 0.03, 0.02, 0.015, 0.01, 0.007, 0.005, 0.003),  # 0.01 on Yelp*, 0.015 on LastFM*
)
"""The temperatures tried by default, from the coarsest to the sharpest belief."""


@dataclass(frozen=True)
class TemperatureFit:
    """How well each temperature's opening belief predicts the real targets.

    Attributes:
        temperatures: The temperatures tried, in the order given.
        log_likelihoods: Each one's mean log-likelihood of the target, same order.
        scored: Conversations scored.
        excluded: Conversations left out because the opening excluded the target.
    """

    temperatures: tuple[float, ...]
    log_likelihoods: tuple[float, ...]
    scored: int
    excluded: int

    @property
    def best(self) -> float:
        """The temperature of the highest mean log-likelihood (the first of equals)."""
        return self.temperatures[int(np.argmax(self.log_likelihoods))]


def fit_temperature(
    env: ConversationEnv,
    ranker: PreferenceRanker,
    indices: Sequence[int] | np.ndarray,
    seed: int,
    temperatures: Sequence[float] = FIT_TEMPERATURES,
) -> TemperatureFit:
    """Open the conversations `indices` of `env`'s split (each seeded as `envs.rollout.evaluate` seeds it)
    and score every temperature by the mean log-likelihood of the target under the opening's belief.

    Raises:
        CRSError: No temperature given, a temperature that is not a finite number > 0, or no
            conversation whose opening kept its target.
    """
    if len(temperatures) == 0:
        raise CRSError("fit_temperature needs at least one temperature, e.g. FIT_TEMPERATURES")
    totals = np.zeros(len(temperatures))
    scored = excluded = 0
    for index in indices:
        env.reset(seed=episode_seed(seed, int(index)), options={"goal_index": int(index)})
        candidates = env.state.candidate_items()
        position = int(np.searchsorted(candidates, env.user.targets[0]))
        if position >= candidates.size or candidates[position] != env.user.targets[0]:
            excluded += 1
            continue
        scores = ranker.item_scores(env.state.facts(), candidates)
        totals += [log_belief(scores, t)[position] for t in temperatures]
        scored += 1
    if scored == 0:
        raise CRSError(
            f"none of the {excluded} conversations kept its target after the opening: no temperature "
            f"can be fitted on them"
        )
    means = tuple((totals / scored).tolist())
    return TemperatureFit(tuple(float(t) for t in temperatures), means, scored, excluded)
