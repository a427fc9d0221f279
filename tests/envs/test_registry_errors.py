"""Errors met through the Python API say how to fix them in Python (``data_dir=``, ``CRS_DATA_DIR``), and
name the bad argument with the valid ones."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # registers the crs/* ids
from envs import make_env
from simulators.datasets import DATA_DIR_ENV
from simulators.errors import CRSError


def test_gym_make_without_data_names_data_dir_and_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))  # an empty folder: no lastfm_star/ in it
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFMStar-v0")
    message = str(info.value)
    assert "data_dir=" in message and "CRS_DATA_DIR" in message and "--data-dir" in message
    assert "lastfm_star" in message


def test_gym_make_with_no_data_folder_at_all_names_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFMStar-v0")
    message = str(info.value)
    assert "data_dir=" in message and "CRS_DATA_DIR" in message and "--data-dir" in message


def test_a_missing_data_dir_argument_names_data_dir(tmp_path: Path) -> None:
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFM-v0", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "data_dir=" in message and "CRS_DATA_DIR" in message


# ------------------------------------------------------------------------------ constructor arguments
SMALL_WORLD = {"n_users": 10, "n_items": 60, "interactions_per_user": 6}


def test_an_unknown_argument_is_named_and_the_valid_ones_listed() -> None:
    with pytest.raises(CRSError) as info:
        gym.make("crs/PersonaWorld-v0", world_kwargs=SMALL_WORLD, bad_kwarg=1)
    message = str(info.value)
    assert "unknown argument ['bad_kwarg']" in message
    for valid in ("data_dir", "world_kwargs", "user_kwargs", "setting", "max_turns", "slate_size", "rewards"):
        assert valid in message


def test_unknown_world_and_user_arguments_are_named_with_the_valid_ones() -> None:
    with pytest.raises(
        CRSError, match=r"world_kwargs .*unknown argument \['n_user'\]; valid arguments: n_users"
    ):
        gym.make("crs/PersonaWorld-v0", world_kwargs={"n_user": 10})
    with pytest.raises(CRSError, match=r"user_kwargs .*unknown argument \['nosie'\]; valid arguments: noise"):
        make_env("persona_world", world_kwargs=SMALL_WORLD, user_kwargs={"nosie": 0.1})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_turns", "15"),
        ("max_turns", 2.5),
        ("max_turns", 15.0),
        ("max_turns", True),
        ("max_turns", 1),
        ("max_turns", None),
        ("max_turns", 101),
        ("slate_size", 0),
        ("slate_size", 10.0),
        ("max_choices", "5"),
        ("n_personas", False),
    ],
)
def test_integer_env_arguments_must_be_integers_in_range(name: str, value: object) -> None:
    with pytest.raises(CRSError, match=rf"{name}={value!r} must be an integer (>= \d|between 2 and 100)"):
        gym.make("crs/PersonaWorld-v0", world_kwargs=SMALL_WORLD, **{name: value})


def test_numpy_integer_arguments_are_accepted() -> None:
    env = make_env("persona_world", world_kwargs=SMALL_WORLD, max_turns=np.int64(5), slate_size=np.int32(3))
    assert env.max_turns == 5 and type(env.max_turns) is int and env.slate_size == 3
    assert env.observation_space["turn"].high.item() == 5


@pytest.mark.parametrize("user", ["single", "multi"])
def test_user_arguments_for_a_user_that_takes_none_are_refused_not_ignored(user: str) -> None:
    with pytest.raises(CRSError, match=rf"user_kwargs \['patience'\]: the {user} user takes no arguments"):
        make_env("persona_world", world_kwargs=SMALL_WORLD, user=user, user_kwargs={"patience": 2})


def test_rewards_as_a_mapping_change_those_entries_and_bad_ones_are_named() -> None:
    """`gym.make(..., rewards={...})`, as a `crs train` config writes them: the entries given change, the
    rest stay UNICORN's; an unknown entry or a value that is no finite number is refused when the env is
    made (it was an AttributeError at the first step)."""
    env = gym.make("crs/PersonaWorld-v0", rewards={"ask_rejected": -0.5})
    assert env.unwrapped.rewards == envs.Rewards(ask_rejected=-0.5)
    env.reset(seed=0)
    rewards = {env.step(envs.ask(aspect))[1] for aspect in range(6)}
    assert rewards <= {-0.5, envs.Rewards().ask_accepted} and -0.5 in rewards
    for bad, message in (
        ({"ask_rejectd": -0.5}, "unknown entry 'ask_rejectd'; the entries are recommend_success"),
        ({"ask_rejected": float("nan")}, "rewards['ask_rejected'] must be a finite number"),
        ({"ask_rejected": "low"}, "rewards['ask_rejected'] must be a finite number"),
        ([-0.5], "rewards must be a Rewards or a mapping of its entries"),
    ):
        with pytest.raises(CRSError, match=re.escape(message)):
            gym.make("crs/PersonaWorld-v0", rewards=bad)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("data_dir", 5, "data_dir must be a folder path or None, got int 5"),
        ("catalog", "persona_world", "catalog must be a loaded catalogue (simulators.load_catalog)"),
        ("goals", "x", "goals must be a GoalSampler over the catalogue (simulators.goals) or None, got str"),
        ("user_kwargs", ["noise"], "user_kwargs must be a dict of the user model's arguments"),
        ("world_kwargs", 3, "world_kwargs must be a dict of make_persona_world's arguments"),
        ("goal_interactions", [1, 2], "goal_interactions must be a split's Interactions"),
    ],
)
def test_an_argument_of_the_wrong_type_is_named(name: str, value: object, said: str) -> None:
    """Each failed deep inside without its name (TypeError: expected str, bytes or os.PathLike object,
    not int; AttributeError: 'str' object has no attribute 'catalog')."""
    with pytest.raises(CRSError, match=re.escape(f"make_env / gym.make: {said}")):
        gym.make("crs/PersonaWorld-v0", **{name: value})


def test_a_wrapper_over_a_ranker_name_instead_of_a_ranker_says_how_to_build_one() -> None:
    from envs.sb3_wrapper import SlateActionWrapper, WrapperError

    with pytest.raises(WrapperError, match=r"got str 'popularity': build one from its name, e\.g\. "):
        SlateActionWrapper(gym.make("crs/PersonaWorld-v0"), "popularity")  # type: ignore[arg-type]
