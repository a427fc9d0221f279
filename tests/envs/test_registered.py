"""The registered envs pass Gymnasium's checker and replay identically under one seed; each id and
`make_env` give the user, setting and arguments they promise (the caller's kept over the defaults)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.registry import MCMIPL_MAX_CHOICES, REGISTERED, build_user, register_envs
from policies.rules import RandomPolicy
from simulators.goals import PersonaGoals
from simulators.persona_world import WORLD_USER
from simulators.users import MultiInterestUser, PersonaUser, SingleTargetUser

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


def _random_agent(env: gym.Env, seed: int) -> list[str]:
    """The README's random agent (`action_space.sample()` after `reset(seed=seed)` and
    `action_space.seed(seed)`): its actions."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions, done = [], False
    while not done:
        action = env.action_space.sample()
        actions.append(repr(action))
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return actions


def test_a_random_agent_repeats_with_its_seeds() -> None:
    """The README's random agent, seeded as it shows (the env and its action space), repeats its
    conversation on the env and on the SB3 wrapper, whose masked samples draw from the space's own
    generator; another seed plays another one (the README seeded only the env, and the agent played
    another conversation on every run)."""
    from envs.sb3_wrapper import SlateActionWrapper
    from policies.baseline_rankers import PopularityRanker

    def wrapped() -> gym.Env:
        env = gym.make("crs/PersonaWorld-v0")
        return SlateActionWrapper(env, PopularityRanker(env.unwrapped.catalog))

    for make in (lambda: gym.make("crs/PersonaWorld-v0"), wrapped):
        runs = [_random_agent(make(), seed) for seed in (3, 3, 4, 5, 6)]
        assert runs[0] == runs[1]
        assert any(run != runs[0] for run in runs[2:])


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


SMALL_WORLD = {"n_users": 10, "n_items": 60, "interactions_per_user": 6}


def test_registering_again_leaves_the_ids_as_they_are() -> None:
    """`register_envs` is idempotent: a second call (a second ``import envs``) re-registers nothing, so
    Gymnasium warns of no overridden id."""
    specs = {env_id: gym.spec(env_id) for env_id in REGISTERED}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_envs()
    assert all(gym.spec(env_id) is spec for env_id, spec in specs.items())
    assert {env_id: gym.spec(env_id).kwargs for env_id in REGISTERED} == REGISTERED


@pytest.mark.real_data
def test_the_multi_interest_id_plays_mcmipl_s_user_rules_on_lastfm_star(real_data_dir) -> None:
    """``crs/LastFMStarMulti-v0`` is LastFM* with the multi-interest user: multiple-choice questions and
    any accepted aspect keeping a candidate (``candidate_rule="any"``), not the single user's rules."""
    env = gym.make("crs/LastFMStarMulti-v0", data_dir=real_data_dir).unwrapped
    assert isinstance(env.user, MultiInterestUser)
    assert (env.setting, env.candidate_rule) == ("multiple_choice", "any")
    single = gym.make("crs/LastFMStar-v0", data_dir=real_data_dir).unwrapped
    assert (single.setting, single.candidate_rule) == ("binary", "all")


@pytest.mark.real_data
def test_mcmipl_s_value_count_is_a_default_the_caller_may_change(real_data_dir) -> None:
    """MCMIPL evaluates with 2 values per question and trains with 4: 2 unless ``max_choices`` says
    otherwise, which is kept."""
    default = envs.make_env("mcmipl_lastfm_star", data_dir=real_data_dir)
    assert default.max_choices == MCMIPL_MAX_CHOICES == 2
    training = envs.make_env("mcmipl_lastfm_star", data_dir=real_data_dir, max_choices=4)
    assert training.max_choices == 4 and training.action_space["aspects"].shape == (4,)


def test_a_persona_user_s_arguments_override_the_world_s_defaults_one_by_one() -> None:
    """On the persona world each `user_kwargs` key replaces the world user's value; the keys not given
    keep the world's (`WORLD_USER`)."""
    env = envs.make_env("persona_world", world_kwargs=SMALL_WORLD, user_kwargs={"patience": 5, "noise": 0.0})
    assert (env.user.patience, env.user.noise, env.user.drift) == (5, 0.0, WORLD_USER.drift)
    default = envs.make_env("persona_world", world_kwargs=SMALL_WORLD)
    assert (default.user.patience, default.user.noise) == (WORLD_USER.patience, WORLD_USER.noise)


def test_a_goal_sampler_given_to_make_env_is_the_one_it_plays() -> None:
    """``goals=`` (e.g. one returning user's sessions) replaces the split's sampler, not the other way."""
    catalog = envs.make_env("persona_world", world_kwargs=SMALL_WORLD).catalog
    goals = PersonaGoals(catalog, "test")
    env = envs.make_env(catalog=catalog, split="valid", goals=goals)
    assert env.goals is goals
    assert envs.make_env(catalog=catalog, split="valid").goals is not goals


def test_the_default_user_and_setting_follow_the_catalogue() -> None:
    """With neither named, the persona world plays its persona user in the multiple-choice setting (as
    `crs train` and `crs eval` run it); a single-target user is asked yes/no questions."""
    world = envs.make_env("persona_world", world_kwargs=SMALL_WORLD)
    assert isinstance(world.user, PersonaUser) and world.setting == "multiple_choice"
    assert world.max_choices > 1
    single = envs.make_env("persona_world", world_kwargs=SMALL_WORLD, user="single")
    assert isinstance(single.user, SingleTargetUser) and single.setting == "binary"
    assert single.max_choices == 1
    # a setting named for the persona world keeps its persona user
    binary = envs.make_env("persona_world", world_kwargs=SMALL_WORLD, setting="binary")
    assert isinstance(binary.user, PersonaUser) and binary.setting == "binary"
    user, _ = build_user(world.catalog, "test", "auto")  # the builder alone resolves "auto" the same
    assert isinstance(user, PersonaUser)


def test_a_drifting_persona_user_draws_new_targets_from_the_conversation_s_split() -> None:
    """A drift draws the user's new target from the split the env converses about: never one of the
    user's items of the other splits (what it trained on, or another split's answer)."""
    env = envs.make_env("persona_world", split="test", user_kwargs={"drift": 1.0})
    catalog = env.catalog
    policy, rng = RandomPolicy(), np.random.default_rng(0)
    drifted = 0
    for episode in range(15):
        env.reset(seed=episode)
        policy.reset(rng)
        user = env.user.goal.user
        held = {
            int(item)
            for name, part in catalog.splits.items()
            if name != "test"
            for item in part.items[part.users == user]
        }
        first, done = env.user.targets, False
        while not done:
            _, _, terminated, truncated, _ = env.step(policy.act(env))
            done = terminated or truncated
            assert not set(env.user.targets) & held, (episode, env.user.targets)
            drifted += env.user.targets != first
    assert drifted > 20  # drift 1.0: the target moves nearly every turn
