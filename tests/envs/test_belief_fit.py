"""`fit_temperature` opens the conversations `evaluate` opens, and counts those whose opening excluded the
target (the temperatures' values are checked in test_answer_search.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from envs import ConversationEnv, DialogueFacts, make_env
from envs.actions import recommend
from envs.belief_fit import fit_temperature
from envs.rollout import evaluate
from policies.baseline_rankers import PopularityRanker
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser
from tests.envs.conftest import tiny_catalog

WORLD: dict[str, Any] = {
    "n_users": 20,
    "n_items": 80,
    "n_groups": 4,
    "aspects_per_group": 5,
    "interactions_per_user": 8,
}


def opening(env: ConversationEnv) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """(user, accepted aspects, candidate items) of the env's state."""
    facts = env.state.facts()
    return facts.user, tuple(facts.accepted.tolist()), tuple(env.state.candidate_items().tolist())


class RecordingRanker(PopularityRanker):
    """Popularity scores; records the (user, accepted, candidates) of every item scoring."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.seen: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        self.seen.append((facts.user, tuple(facts.accepted.tolist()), tuple(np.asarray(items).tolist())))
        return super().item_scores(facts, items)


class FirstStates:
    """Records each conversation's first state (while its target is a candidate); recommends the best."""

    def __init__(self) -> None:
        self.first: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []
        self.fresh = False

    def reset(self, rng: np.random.Generator) -> None:
        self.fresh = True

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if self.fresh and env.user.targets[0] in env.state.candidate_items():
            self.first.append(opening(env))
        self.fresh = False
        return recommend(env.state.candidate_items()[: env.slate_size])


def test_fit_opens_the_conversations_evaluate_opens() -> None:
    catalog = load_catalog("persona_world", **WORLD)
    env = make_env(catalog=catalog, split="test", setting="binary", user="single")
    indices = np.arange(8)
    ranker = RecordingRanker(catalog)
    fit = fit_temperature(env, ranker, indices, seed=11, temperatures=(1.0,))
    policy = FirstStates()
    evaluate(env, policy, indices, seed=11)
    assert fit.scored == len(ranker.seen) == len(policy.first) > 1
    assert ranker.seen == policy.first


class FirstOpensOffTarget(SingleTargetUser):
    """Opens every other conversation with aspect 2, which target item 2 of the tiny catalogue lacks."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.openings = 0

    def opening_aspect(self) -> int:
        self.openings += 1
        return 2 if self.openings % 2 else super().opening_aspect()


def test_an_opening_that_excludes_the_target_is_counted_not_scored() -> None:
    catalog = tiny_catalog()  # aspect 2 leaves items {1, 3, 4}: target 2 would sit between them
    user = FirstOpensOffTarget(catalog)
    env = ConversationEnv(catalog, user, PairGoals(catalog, "test"))
    fit = fit_temperature(env, PopularityRanker(catalog), [0, 0], seed=3, temperatures=(1.0,))
    assert (fit.scored, fit.excluded) == (1, 1)
    user.openings = 0  # the next conversation opens off target again
    with pytest.raises(CRSError, match="none of the 1 conversations kept its target"):
        fit_temperature(env, PopularityRanker(catalog), [0], seed=3, temperatures=(1.0,))
