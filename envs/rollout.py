"""Running a policy through conversations and turning them into `EpisodeRecord`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord


class ConversationPolicy(Protocol):
    """Anything that picks the next action from the env's dialogue state."""

    def reset(self, rng: np.random.Generator) -> None:
        """Start a conversation; `rng` is the only source of randomness."""
        ...

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        """The next action for ``env.state`` (an action dict, see `envs.actions`)."""
        ...


def run_episode(
    env: ConversationEnv,
    policy: ConversationPolicy,
    rng: np.random.Generator,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> EpisodeRecord:
    """Play one conversation to its end and return its record."""
    env.reset(seed=seed, options=options)
    policy.reset(rng)
    total, kinds, info = 0.0, [], {}
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy.act(env))
        total += reward
        kinds.append(info["kind"])
        done = terminated or truncated
    return EpisodeRecord(
        goal_index=int(info["goal_index"]),
        user=env.state.user,
        targets=tuple(info["targets"]),
        success=bool(info["success"]),
        agent_actions=int(info["agent_actions"]),
        rank=info["rank"],
        total_reward=total,
        kinds=tuple(kinds),
    )


def evaluation_indices(n_goals: int, episodes: int, seed: int) -> np.ndarray:
    """The goals an evaluation walks: the first `episodes` of a seeded permutation of the split.

    The same (n_goals, episodes, seed) gives the same conversations for every policy, so their
    records can be compared pairwise.
    """
    order = np.random.default_rng(seed).permutation(n_goals)
    return order[: min(episodes, n_goals)]


def episode_seed(seed: int, goal_index: int) -> int:
    """The env seed of one evaluation conversation: fixed by (run seed, goal index) alone, so a
    conversation replays identically whatever order or worker runs it."""
    return int(np.random.SeedSequence([seed, goal_index]).generate_state(1)[0])


def evaluate(
    env: ConversationEnv,
    policy: ConversationPolicy,
    indices: np.ndarray,
    seed: int,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """Run `policy` on the goals `indices` of the env's split; each conversation seeded by
    `episode_seed(seed, index)`. `on_episode` is called after each (e.g. to advance a progress bar)."""
    records = []
    for index in indices:
        index = int(index)
        conversation_seed = episode_seed(seed, index)
        record = run_episode(
            env,
            policy,
            np.random.default_rng(conversation_seed),
            seed=conversation_seed,
            options={"goal_index": index},
        )
        records.append(record)
        if on_episode is not None:
            on_episode(record)
    return records
