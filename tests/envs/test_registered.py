"""The registered envs pass Gymnasium's checker and replay identically under one seed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.registry import REGISTERED
from policies.rules import RandomPolicy

REAL_IDS = [env_id for env_id, kwargs in REGISTERED.items() if kwargs["dataset"] != "persona_world"]


def trajectory(env: gym.Env, seed: int, episodes: int = 3) -> list[tuple]:
    """(obs arrays, reward, terminated, truncated, answer) for every step of a seeded random policy."""
    policy = RandomPolicy()
    rng = np.random.default_rng(seed)
    steps = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        policy.reset(rng)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.act(env.unwrapped))
            steps.append(
                (
                    tuple(np.asarray(v).tobytes() for v in obs.values()),
                    reward,
                    terminated,
                    truncated,
                    info["answer"],
                    info["accepted_item"],
                )
            )
            done = terminated or truncated
    return steps


def test_persona_world_env_passes_check_env() -> None:
    env = gym.make("crs/PersonaWorld-v0")
    check_env(env.unwrapped)


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("env_id", REAL_IDS)
def test_real_data_envs_pass_check_env(env_id: str, real_data_dir) -> None:
    env = gym.make(env_id, data_dir=real_data_dir)
    check_env(env.unwrapped)


def test_same_seed_same_trajectory() -> None:
    first = trajectory(gym.make("crs/PersonaWorld-v0"), seed=7)
    second = trajectory(gym.make("crs/PersonaWorld-v0"), seed=7)
    other = trajectory(gym.make("crs/PersonaWorld-v0"), seed=8)
    assert first == second
    assert first != other


def test_sequential_order_walks_a_seeded_permutation() -> None:
    env = envs.make_env("persona_world", split="test", episode_order="sequential")
    env.reset(seed=3)
    walked = [env._goal_index] + [env.reset()[1]["goal_index"] for _ in range(4)]
    expected = np.random.default_rng(3).permutation(env.goals.n_goals)[:5].tolist()
    assert walked == expected


@pytest.mark.real_data
def test_yelp_star_is_binary_as_unicorn_runs_it_and_yelp_is_the_enumerated_setting(real_data_dir) -> None:
    """UNICORN runs YELP_STAR in its binary env (590 fine aspects, one per question) and only YELP in
    the enumerated one (RL_model.py / evaluate.py of dengyang17/unicorn)."""
    star = gym.make("crs/YelpStar-v0", data_dir=real_data_dir).unwrapped
    _, info = star.reset(seed=0)
    assert star.setting == "binary" and "category" not in star.action_space.spaces
    assert len(info["answer"]) == 1 and star.state.history[0].asked == ()
    yelp = gym.make("crs/Yelp-v0", data_dir=real_data_dir).unwrapped
    _, info = yelp.reset(seed=0)
    assert yelp.setting == "enumerated" and yelp.action_space["category"].n == 29
    (category,) = yelp.state.history[0].asked
    assert yelp.state.asked_categories[category] and info["answer"]
    taxonomy = yelp.catalog.taxonomy
    assert set(info["answer"]) <= set(taxonomy.children(category).tolist())


def test_an_env_made_with_a_catalogue_keeps_its_spec_and_copies_and_pickles() -> None:
    import copy
    import pickle
    import warnings

    from simulators.datasets import load_catalog

    catalog = load_catalog("persona_world")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium warns, and drops the spec, when it cannot copy it
        env = gym.make("crs/PersonaWorld-v0", catalog=catalog)
        assert env.spec is not None and env.spec.kwargs["catalog"] is catalog
    assert copy.deepcopy(env.unwrapped).catalog is catalog  # immutable: shared, not copied
    again = pickle.loads(pickle.dumps(env))
    restored = again.unwrapped.catalog
    assert restored.n_users == catalog.n_users and restored.splits.keys() == catalog.splits.keys()
    assert np.array_equal(restored.split("test").items, catalog.split("test").items)
    assert trajectory(again, 3, episodes=1) == trajectory(gym.make("crs/PersonaWorld-v0"), 3, episodes=1)
