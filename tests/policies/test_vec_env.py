"""Training envs in SubprocVecEnv worker processes behave exactly like in-process envs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from envs import make_env
from policies.baseline_rankers import PopularityRanker
from policies.rl import RLConfig, build_model, make_vec_env
from simulators.datasets import load_catalog

WORLD = {"n_users": 40, "n_items": 300, "n_groups": 4, "aspects_per_group": 5, "interactions_per_user": 12}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("persona_world", seed=0, **WORLD)


def vec_env(catalog, subprocess: bool, **overrides):
    config = RLConfig(n_envs=2, n_steps=32, batch_size=32, n_epochs=1, subprocess=subprocess, **overrides)
    ranker = PopularityRanker(catalog)
    vec = make_vec_env(lambda: make_env(catalog=catalog, split="valid"), ranker, config, seed=3)
    return vec, ranker, config


def masked_random_actions(
    masks: np.ndarray, choices: int, slate: int, rng: np.random.Generator
) -> np.ndarray:
    """One valid MultiDiscrete action per env: an allowed choice, then distinct allowed slate slots."""
    actions = []
    for mask in masks:
        choice = rng.choice(np.flatnonzero(mask[:choices]))
        slots = rng.choice(np.flatnonzero(mask[choices:]), size=slate, replace=False)
        actions.append([choice, *slots])
    return np.array(actions)


@pytest.mark.slow
def test_subprocess_envs_give_the_same_observations_masks_and_rewards(catalog) -> None:
    inner, _, _ = vec_env(catalog, subprocess=False)
    outer, _, _ = vec_env(catalog, subprocess=True)
    try:
        assert isinstance(inner, DummyVecEnv) and isinstance(outer, SubprocVecEnv)
        sizes = inner.get_attr("sizes")[0]
        assert outer.get_attr("sizes")[0] == sizes
        choices = inner.action_space.nvec[0]
        slate = len(inner.action_space.nvec) - 1
        obs_a, obs_b = inner.reset(), outer.reset()
        rng = np.random.default_rng(0)
        finished = 0
        for _ in range(60):
            masks = get_action_masks(inner)
            # the mask crosses the process boundary intact, and the observation carries the same one
            np.testing.assert_array_equal(masks, get_action_masks(outer))
            assert masks[:, :choices].any(axis=1).all()
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
            actions = masked_random_actions(masks, choices, slate, rng)
            obs_a, rewards_a, dones_a, _ = inner.step(actions)
            obs_b, rewards_b, dones_b, _ = outer.step(actions)
            # DummyVecEnv buffers rewards as float32, SubprocVecEnv stacks the float64 values
            np.testing.assert_array_equal(rewards_a, rewards_b.astype(np.float32))
            np.testing.assert_array_equal(dones_a, dones_b)
            finished += int(dones_a.sum())
        assert finished >= 2  # episodes ended and auto-reset on both sides
    finally:
        inner.close()
        outer.close()


@pytest.mark.slow
def test_training_with_subprocess_envs_matches_in_process_training(catalog) -> None:
    parameters = []
    for subprocess in (False, True):
        vec, ranker, config = vec_env(catalog, subprocess=subprocess)
        try:
            model = build_model(vec, ranker, config, seed=5)
            model.learn(128)  # two PPO updates of 2 envs x 32 steps
            assert model.num_timesteps == 128
            parameters.append([p.detach().clone() for p in model.policy.parameters()])
        finally:
            vec.close()
    inner, outer = parameters
    assert any(not torch.equal(p, q) for p, q in zip(inner, build_fresh(catalog), strict=True))
    for p, q in zip(inner, outer, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def build_fresh(catalog) -> list[torch.Tensor]:
    """The untrained parameters for the same seed (to show that training changed them)."""
    vec, ranker, config = vec_env(catalog, subprocess=False)
    try:
        return [p.detach().clone() for p in build_model(vec, ranker, config, seed=5).policy.parameters()]
    finally:
        vec.close()


def test_training_envs_of_neighbouring_seeds_draw_their_own_conversations(catalog) -> None:
    """SB3 seeds env k with seed + k, so env 1 of seed 0 and env 0 of seed 1 replayed the same
    training conversations on real data. Every (seed, env) now resets from a seed of its own, also
    after `build_model` re-seeds the envs, and seed 0's envs keep seeds 0, 1, 2."""
    config = RLConfig(n_envs=3, n_steps=32, batch_size=32, n_epochs=1, subprocess=False)
    ranker = PopularityRanker(catalog)
    seen: dict[int, list[int]] = {}
    for seed in (0, 1, 2):
        vec = make_vec_env(lambda: make_env(catalog=catalog, split="valid"), ranker, config, seed=seed)
        build_model(vec, ranker, config, seed=seed)
        vec.reset()
        seen[seed] = [int(s) for s in vec.get_attr("np_random_seed")]
        vec.close()
    assert seen[0] == [0, 1, 2]
    everything = [s for seeds in seen.values() for s in seeds]
    assert len(set(everything)) == len(everything), seen
    assert seen[1] == [2**32, 2**32 + 1, 2**32 + 2]
