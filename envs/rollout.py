"""Running a policy through conversations and turning them into `EpisodeRecord`s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord
from simulators.errors import CRSError


class ConversationPolicy(Protocol):
    """Anything that picks the next action from the env's dialogue state."""

    def reset(self, rng: np.random.Generator) -> None:
        """Start a conversation; `rng` is the only source of randomness."""
        ...

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        """The next action for ``env.state`` (an action dict, see `envs.actions`)."""
        ...


def _record(env: ConversationEnv, info: dict[str, Any], total: float, kinds: list[str]) -> EpisodeRecord:
    """The record of the conversation that just ended in `env` (its last `info`)."""
    return EpisodeRecord(
        goal_index=int(info["goal_index"]),
        user=env.state.user,
        targets=tuple(info["targets"]),
        success=bool(info["success"]),
        agent_actions=int(info["agent_actions"]),
        rank=info["rank"] or None,  # info: 0 = no hit; records: None
        total_reward=total,
        kinds=tuple(kinds),
    )


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
    total, kinds = 0.0, []
    info: dict[str, Any] = {}
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy.act(env))
        total += reward
        kinds.append(info["kind"])
        done = terminated or truncated
    return _record(env, info, total, kinds)


def evaluation_indices(n_goals: int, episodes: int, seed: int) -> np.ndarray:
    """The goals an evaluation walks: the first `episodes` of a seeded permutation of the split.

    The same (n_goals, episodes, seed) gives the same conversations for every policy, so their
    records can be compared pairwise.

    Raises:
        CRSError: `episodes` is below 1 (a slice by it would walk almost the whole split).
    """
    if episodes < 1:
        raise CRSError(f"episodes must be at least 1, got {episodes}; ask for 1 or more conversations")
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


class BatchPolicy(ConversationPolicy, Protocol):
    """A policy that acts for several conversations in one call (e.g. one network forward pass)."""

    def act_batch(self, envs: Sequence[ConversationEnv]) -> list[dict[str, Any]]:
        """The next action of each env, in order."""
        ...


def evaluate_batched(
    env_factory: Callable[[], ConversationEnv],
    policy: ConversationPolicy,
    indices: np.ndarray,
    seed: int,
    *,
    batch: int = 32,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """Like `evaluate`, with up to `batch` conversations running side by side.

    Every conversation is reset exactly as `evaluate` resets it, so the records are the same; a
    policy with ``act_batch`` acts for all running conversations in one call, any other policy acts
    env by env. Records come back in `indices` order.

    Args:
        env_factory: Builds one env over the evaluation split (called up to `batch` times).
        policy: A `ConversationPolicy`, ideally a `BatchPolicy`.
        indices: Goal indices of the split (see `evaluation_indices`).
        seed: Base seed.
        batch: Conversations run side by side.
        on_episode: Called with each finished record.

    Raises:
        CRSError: `batch` is below 1 (no env would play the conversations).
    """
    if batch < 1:
        raise CRSError(f"batch must be at least 1, got {batch}; run 1 or more conversations side by side")
    queue = [(position, int(index)) for position, index in enumerate(np.asarray(indices).reshape(-1))]
    queue.reverse()  # pop() from the end walks indices in order
    envs = [env_factory() for _ in range(min(batch, len(queue)))]
    running: list[tuple[int, float, list[str]] | None] = [None] * len(envs)
    records: dict[int, EpisodeRecord] = {}

    def start(slot: int) -> None:
        if not queue:
            running[slot] = None
            return
        position, index = queue.pop()
        conversation_seed = episode_seed(seed, index)
        envs[slot].reset(seed=conversation_seed, options={"goal_index": index})
        policy.reset(np.random.default_rng(conversation_seed))
        running[slot] = (position, 0.0, [])

    for slot in range(len(envs)):
        start(slot)
    act_batch = getattr(policy, "act_batch", None)
    while any(entry is not None for entry in running):
        active = [slot for slot, entry in enumerate(running) if entry is not None]
        batch_envs = [envs[slot] for slot in active]
        actions = act_batch(batch_envs) if act_batch else [policy.act(env) for env in batch_envs]
        for slot, action in zip(active, actions, strict=True):
            entry = running[slot]
            assert entry is not None  # `active` holds the slots whose entry is set
            position, total, kinds = entry
            _, reward, terminated, truncated, info = envs[slot].step(action)
            kinds.append(info["kind"])
            running[slot] = (position, total + reward, kinds)
            if terminated or truncated:
                record = _record(envs[slot], info, total + reward, kinds)
                records[position] = record
                if on_episode is not None:
                    on_episode(record)
                start(slot)
    return [records[position] for position in range(len(records))]
