"""Running a policy through conversations: each conversation resets the policy with its own generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs import ConversationEnv, make_env
from envs.actions import recommend
from envs.rollout import episode_seed, evaluate, run_episode
from tests.envs.conftest import tiny_catalog


class RecordingPolicy:
    """Recommends the first candidates; records the generator of every reset and one draw from it."""

    def __init__(self) -> None:
        self.rngs: list[np.random.Generator] = []
        self.draws: list[float] = []

    def reset(self, rng: np.random.Generator) -> None:
        self.rngs.append(rng)
        self.draws.append(float(rng.random()))

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend(env.state.candidate_items()[: env.slate_size])


def test_run_episode_resets_the_policy_once_with_the_given_generator() -> None:
    env = make_env(catalog=tiny_catalog(), split="test", user="single")
    policy = RecordingPolicy()
    rng = np.random.default_rng(5)
    record = run_episode(env, policy, rng, seed=1)
    assert policy.rngs == [rng]  # the very generator, not a copy
    assert record.success  # the tiny catalogue's candidates fit in one slate


def test_evaluate_seeds_each_conversations_policy_by_its_episode_seed() -> None:
    env = make_env(catalog=tiny_catalog(), split="test", user="single")
    policy = RecordingPolicy()
    records = evaluate(env, policy, np.array([0, 0]), seed=4)
    assert len(records) == len(policy.rngs) == 2
    expected = float(np.random.default_rng(episode_seed(4, 0)).random())
    assert policy.draws == [expected, expected]  # same (seed, goal): the same generator state
