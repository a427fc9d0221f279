"""Gymnasium's vector envs run every registered env: `info` keeps one type per key.

SyncVectorEnv and AsyncVectorEnv stack each info key into an array typed by the first value they see
in a step (an int array for an int), so a key that is an int in one env and None in another
(``rank`` of a hit beside a miss) used to raise TypeError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 (registers the crs/* ids)
from envs import ConversationEnv, make_env, recommend
from envs.registry import REGISTERED

# the documented info keys and their types (ConversationEnv's docstring, "Info")
INFO_TYPES: dict[str, type] = {
    "success": bool,
    "rank": int,
    "accepted_item": int,
    "turn": int,
    "agent_actions": int,
    "kind": str,
    "answer": tuple,
    "rejected": tuple,
    "n_candidates": int,
    "goal_index": int,
    "targets": tuple,
}
# 40 items and slates of 10: a random slate hits often, so hits and misses meet in one vector step
SMALL_WORLD = {"n_users": 20, "n_items": 40, "interactions_per_user": 6}
VECTOR_STEPS = 300
N_ENVS = 3
VECTORS = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}


def builder(env_id: str, request: pytest.FixtureRequest) -> Callable[[], gym.Env]:
    """A builder of the registered env `env_id` (real data from the `real_data_dir` fixture)."""
    if REGISTERED[env_id]["dataset"] == "persona_world":
        return lambda: gym.make(env_id)
    data_dir: Path = request.getfixturevalue("real_data_dir")
    return lambda: gym.make(env_id, data_dir=data_dir)


def registered_params() -> list[Any]:
    return [
        pytest.param(
            env_id,
            marks=[] if kwargs["dataset"] == "persona_world" else [pytest.mark.real_data],
            id=env_id,
        )
        for env_id, kwargs in REGISTERED.items()
    ]


def check_info(info: dict[str, Any], ended: bool) -> None:
    """`info` has exactly the documented keys, each of its documented type, with the documented codes."""
    assert set(info) == set(INFO_TYPES)
    for key, kind in INFO_TYPES.items():
        assert type(info[key]) is kind, f"info[{key!r}] = {info[key]!r} is not a {kind.__name__}"
    for key in ("answer", "rejected", "targets"):
        assert all(type(value) is int for value in info[key])
    hit = info["success"]
    assert (info["rank"] >= 1) == hit and (info["accepted_item"] >= 0) == hit
    assert (info["rank"] == 0) != hit and (info["accepted_item"] == -1) != hit
    assert (len(info["targets"]) > 0) == ended


def test_the_docstring_documents_every_info_key_and_its_type() -> None:
    section = ConversationEnv.__doc__.split("## Info")[1].split("## Arguments")[0]  # type: ignore[union-attr]
    documented = dict(re.findall(r"``(\w+)`` \((\w+)", section))
    assert documented == {key: kind.__name__ for key, kind in INFO_TYPES.items()}


@pytest.mark.parametrize("env_id", registered_params())
def test_info_keeps_one_type_per_key_across_reset_hits_and_misses(
    env_id: str, request: pytest.FixtureRequest
) -> None:
    env = builder(env_id, request)()
    base: ConversationEnv = env.unwrapped  # type: ignore[assignment]
    env.action_space.seed(0)
    rng = np.random.default_rng(0)
    hits = misses = 0
    for episode in range(30):
        _, info = env.reset(seed=episode)
        check_info(info, ended=False)
        done = False
        while not done:
            # random actions, and now and then the target itself so that some conversations succeed
            if rng.random() < 0.2:
                action: dict[str, Any] = recommend(list(base.user.targets)[: base.slate_size])
            else:
                action = env.action_space.sample()
            _, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            check_info(info, ended=done)
            if info["kind"] == "recommend":
                hits += info["success"]
                misses += not info["success"]
    assert hits > 0 and misses > 0


@pytest.mark.parametrize("vector", list(VECTORS), ids=list(VECTORS))
def test_vector_env_stacks_hits_beside_misses(vector: str) -> None:
    """The attack of the issue: a rank (int) in one env beside no rank in another, in one step."""
    env = VECTORS[vector]([lambda: make_env("persona_world", world_kwargs=SMALL_WORLD)] * N_ENVS)
    try:
        env.action_space.seed(0)
        env.reset(seed=0)
        mixed = 0
        for _ in range(VECTOR_STEPS):
            *_, infos = env.step(env.action_space.sample())
            ranks = infos["rank"]
            assert ranks.dtype.kind == "i" and infos["_rank"].all()
            mixed += bool((ranks > 0).any() and (ranks == 0).any())
        assert mixed > 10
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("vector", list(VECTORS), ids=list(VECTORS))
@pytest.mark.parametrize("env_id", registered_params())
def test_vector_envs_run_every_registered_env(
    env_id: str, vector: str, request: pytest.FixtureRequest
) -> None:
    make = builder(env_id, request)
    make()  # loads a real catalogue once, here: AsyncVectorEnv's forked workers inherit the cache
    env = VECTORS[vector]([make] * N_ENVS)
    try:
        env.action_space.seed(1)
        obs, infos = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        ended = 0
        for _ in range(VECTOR_STEPS):
            obs, rewards, terminated, truncated, infos = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert rewards.shape == (N_ENVS,)
            # every key is there for every env, stacked into an array of its type
            assert {key for key in infos if not key.startswith("_")} == set(INFO_TYPES)
            assert all(infos[f"_{key}"].all() for key in INFO_TYPES)
            assert infos["success"].dtype == np.bool_ and infos["rank"].dtype.kind == "i"
            assert infos["accepted_item"].dtype.kind == "i" and infos["turn"].dtype.kind == "i"
            ended += int((terminated | truncated).sum())
        assert ended > N_ENVS  # episodes ended, and the envs were reset automatically
    finally:
        env.close()
