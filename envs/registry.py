"""Building envs by dataset name, and the ids registered with Gymnasium.

``gymnasium.make("crs/LastFMStar-v0", data_dir=...)`` works after ``import envs``; the data
directory may also come from the ``CRS_DATA_DIR`` environment variable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, cast

import gymnasium as gym

from envs.env import ConversationEnv
from envs.question_types import QuestionTypes
from envs.setting import Setting, check_setting, default_setting
from simulators.catalog import Catalog, Interactions
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from simulators.goals import GoalSampler, GroupGoals, MultiTargetGoals, PairGoals, PersonaGoals
from simulators.mcmipl import find_release
from simulators.persona_world import WORLD_USER, make_persona_world
from simulators.users import MCMIPLUser, MultiInterestUser, PersonaUser, SingleTargetUser, UserModel

UserKind = Literal["auto", "single", "multi", "persona"]
USER_KINDS: tuple[str, ...] = ("auto", "single", "multi", "persona")

REGISTERED: dict[str, dict[str, str]] = {
    "crs/PersonaWorld-v0": {"dataset": "persona_world"},
    "crs/LastFM-v0": {"dataset": "lastfm"},
    "crs/LastFMStar-v0": {"dataset": "lastfm_star"},
    "crs/YelpStar-v0": {"dataset": "yelp_star"},
    "crs/Yelp-v0": {"dataset": "yelp_star", "setting": "enumerated"},
    "crs/LastFMStarMulti-v0": {"dataset": "lastfm_star", "user": "multi"},
    # MCMIPL's MIMCR protocol on its own release (docs/protocols/mcmipl.md); MovieLens is degenerate
    # (23 distinct test items): for loader and env checks, not for claims.
    "crs/MCMIPLLastFMStar-v0": {"dataset": "mcmipl_lastfm_star"},
    "crs/MCMIPLMovie-v0": {"dataset": "mcmipl_movie"},
    # Yelp* in MCMIPL's setting, its groups built with MCMIPL's rule (simulators.mcmipl_groups)
    "crs/MCMIPLYelpStar-v0": {"dataset": "mcmipl_yelp_star"},
}
# MCMIPL's values per question in evaluation (its env's default choice_num; its training passes 4)
MCMIPL_MAX_CHOICES = 2
# ConversationEnv arguments make_env supplies itself (the rest pass through its **env_kwargs)
_ENV_SUPPLIED = ("catalog", "user", "goals", "setting")


def argument_names(target: Callable[..., Any], exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The named arguments `target` accepts by keyword (``self`` and `exclude` left out), in order."""
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        name
        for name, parameter in inspect.signature(target).parameters.items()
        if parameter.kind in keyword and name != "self" and name not in exclude
    )


def check_arguments(what: str, given: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    """Raise CRSError naming the keys of `given` outside `valid`, and listing `valid`."""
    unknown = [key for key in given if key not in valid]
    if unknown:
        raise CRSError(
            f"{what}: unknown argument{'s' if len(unknown) > 1 else ''} {unknown!r}; valid arguments: "
            f"{', '.join(valid)}"
        )


def make_env_arguments() -> tuple[str, ...]:
    """Every keyword `make_env` (and ``gym.make("crs/...")``) accepts: its own, then `ConversationEnv`'s."""
    own = argument_names(make_env)
    return own + argument_names(ConversationEnv.__init__, exclude=(*_ENV_SUPPLIED, *own))


def build_user(
    catalog: Catalog,
    split: str,
    user: UserKind,
    goal_interactions: Interactions | None = None,
    **user_kwargs: Any,
) -> tuple[UserModel, GoalSampler]:
    """The user model and goal sampler of a kind ("auto": persona on the persona world, else single;
    `make_env` resolves "auto" by the setting).

    ``goal_interactions`` restricts the goals to those interactions of the split (default: all).
    "multi" on a catalogue of MCMIPL's release is MCMIPL's own user over the release's target groups
    (`MCMIPLUser`, `GroupGoals`; with ``goal_interactions``, the groups all of whose targets are among
    them: `TargetGroups.within`), elsewhere `MultiInterestUser` with drawn targets (`MultiTargetGoals`).

    Raises:
        CRSError: An unknown kind, an unknown `PersonaUser` argument in `user_kwargs` (the message lists
            the valid ones), `user_kwargs` for a user that takes none, or `goal_interactions` that leave
            none of MCMIPL's groups.
    """
    if user not in USER_KINDS:
        raise CRSError(f"user={user!r} is not one of {USER_KINDS}")
    if user == "auto":
        user = "persona" if catalog.truth is not None else "single"
    if user != "persona" and user_kwargs:
        raise CRSError(
            f"user_kwargs {sorted(user_kwargs)}: the {user} user takes no arguments (it answers by its "
            "targets' aspects); only user='persona' does: leave them out or pass user='persona'"
        )
    if user == "single":
        return SingleTargetUser(catalog), PairGoals(catalog, split, goal_interactions)
    release = find_release(catalog)
    if user == "multi" and release is not None:
        groups = release.groups_of(split)
        if goal_interactions is not None:
            groups = groups.within(goal_interactions)
            if not len(groups):
                raise CRSError(
                    f"{catalog.name}: no {split} target group has all its targets among the "
                    f"{goal_interactions.users.size:,} goal interactions; pass more, or None for all groups"
                )
        return MCMIPLUser(catalog), GroupGoals(catalog, split, groups)
    if user == "multi":
        return MultiInterestUser(catalog), MultiTargetGoals(catalog, split, interactions=goal_interactions)
    check_arguments(
        "user_kwargs (PersonaUser)", user_kwargs, argument_names(PersonaUser.__init__, ("catalog",))
    )
    if catalog.truth is not None:  # the persona world's users: its defaults, then the caller's
        user_kwargs = {**asdict(WORLD_USER), **user_kwargs}
    # a drift draws its new target from the conversation's split, never from the user's other items
    user_kwargs = {"split": split, **user_kwargs}
    return PersonaUser(catalog, **user_kwargs), PersonaGoals(catalog, split, goal_interactions)


def resolve_user_and_setting(
    user: UserKind | str, setting: Setting | str | None, *, world: bool, mcmipl: bool = False
) -> tuple[UserKind, Setting]:
    """The user kind and setting an env gets when "auto" or None is asked for.

    Args:
        user: A `USER_KINDS` entry; "auto" is the persona user on the persona world and, on real data,
            MCMIPL's multi-interest user in the multiple-choice setting (on MCMIPL's release also when
            no setting is named), else UNICORN's single user.
        setting: A setting, or None: binary for a single-target user, else multiple choice.
        world: The catalogue is the persona world.
        mcmipl: The catalogue is one of MCMIPL's multi-interest releases (``mcmipl_*``).

    Raises:
        CRSError: An unknown user kind or setting.
    """
    if user not in USER_KINDS:
        raise CRSError(f"user={user!r} is not one of {USER_KINDS}")
    if setting is not None:
        setting = check_setting(setting)
    if user == "auto":
        multi = setting == "multiple_choice" or (mcmipl and setting is None)
        user = "persona" if world else ("multi" if multi else "single")
    return cast(UserKind, user), setting or default_setting(single_target=user == "single")


def make_env(
    dataset: str = "persona_world",
    *,
    data_dir: str | Path | None = None,
    catalog: Catalog | None = None,
    split: str = "valid",
    user: UserKind = "auto",
    user_kwargs: dict[str, Any] | None = None,
    world_kwargs: dict[str, Any] | None = None,
    setting: Setting | None = None,
    goal_interactions: Interactions | None = None,
    goals: GoalSampler | None = None,
    **env_kwargs: Any,
) -> ConversationEnv:
    """A `ConversationEnv` for a dataset with the field's defaults.

    On MCMIPL's release (``mcmipl_lastfm_star``, ``mcmipl_movie``, and ``mcmipl_yelp_star``, built with
    its rule) the default user ("auto") is MCMIPL's
    multi-interest user over the release's target groups in the multiple-choice setting, with MCMIPL's
    rules (docs/protocols/mcmipl.md): ``candidate_rule="mcmipl"``, asks typed by the release's question
    types, ``max_choices=2`` (its evaluation value; pass ``max_choices=4`` for its training value).

    Args:
        dataset: "persona_world", "lastfm", "lastfm_star", "yelp_star", "mcmipl_lastfm_star",
            "mcmipl_movie" or "mcmipl_yelp_star".
        data_dir: Folder holding the SCPR/UNICORN data (real datasets; else $CRS_DATA_DIR).
        catalog: An already-loaded catalogue (skips loading; `dataset` is then ignored).
        split: Split the conversations come from ("valid" for training, "test" for evaluation).
        user: "single" (UNICORN), "multi" (MCMIPL), "persona", or "auto" (persona on the persona
            world; on real data multi in the multiple-choice setting, else single).
        user_kwargs: Arguments of the user model (PersonaUser: noise, patience, drift; on the persona
            world each one not given is the world's, `simulators.persona_world.WORLD_USER`).
        world_kwargs: Arguments of `make_persona_world` (persona world only).
        setting: "binary", "enumerated" or "multiple_choice" (`envs.setting`; default: multiple
            choice for the persona world and multi-interest users, binary otherwise, as UNICORN runs
            LastFM, LastFM* and Yelp*). "enumerated" is UNICORN's YELP setting (``crs/Yelp-v0``).
        goal_interactions: Converse only about these interactions of `split` (default: all of it).
        goals: The conversations' goal sampler, over `catalog` (default: the user kind's sampler of
            `split`), e.g. one returning user's sessions (`simulators.returning.SessionGoals`).
        **env_kwargs: Passed to `ConversationEnv`.

    Raises:
        DatasetError: A real dataset with no data folder (neither ``data_dir=`` nor ``$CRS_DATA_DIR``),
            a folder without the dataset, or malformed files; the message says which and how to fix it.
        CRSError: An unknown dataset, setting or user kind, an unknown argument (of make_env, in
            `world_kwargs` or in a persona user's `user_kwargs`; the message lists the valid ones), an
            integer argument of `ConversationEnv` that is not an int in range, or world arguments
            given for a real dataset.
    """
    check_arguments("make_env / gym.make", env_kwargs, make_env_arguments())
    _check_types(
        data_dir=(data_dir, (str, Path), "a folder path"),
        catalog=(catalog, Catalog, "a loaded catalogue (simulators.load_catalog)"),
        user_kwargs=(user_kwargs, dict, "a dict of the user model's arguments"),
        world_kwargs=(world_kwargs, dict, "a dict of make_persona_world's arguments"),
        goal_interactions=(goal_interactions, Interactions, "a split's Interactions"),
        goals=(goals, GoalSampler, "a GoalSampler over the catalogue (simulators.goals)"),
    )
    if catalog is None and dataset == "persona_world" and world_kwargs:
        check_arguments("world_kwargs (make_persona_world)", world_kwargs, argument_names(make_persona_world))
    if catalog is None:
        catalog = load_catalog(dataset, data_dir, **(world_kwargs or {}))
    release = find_release(catalog)
    user, setting = resolve_user_and_setting(
        user, setting, world=catalog.truth is not None, mcmipl=release is not None
    )
    model, split_goals = build_user(catalog, split, user, goal_interactions, **(user_kwargs or {}))
    goals = split_goals if goals is None else goals
    if release is not None and isinstance(model, MCMIPLUser) and setting == "multiple_choice":
        env_kwargs.setdefault("candidate_rule", "mcmipl")
        env_kwargs.setdefault("question_types", QuestionTypes.from_attribute_types(release.attribute_types))
        env_kwargs.setdefault("max_choices", MCMIPL_MAX_CHOICES)
    elif isinstance(model, MultiInterestUser):
        env_kwargs.setdefault("candidate_rule", "any")
    return ConversationEnv(catalog, model, goals, setting=setting, **env_kwargs)


def _check_types(**arguments: tuple[Any, type | tuple[type, ...], str]) -> None:
    """Raise CRSError naming each argument (value, expected type, what it should be) that is neither
    None nor of its type: a wrong one failed later, deep inside, without its name."""
    for name, (value, kind, what) in arguments.items():
        if value is not None and not isinstance(value, kind):
            raise CRSError(
                f"make_env / gym.make: {name} must be {what} or None, got {type(value).__name__} {value!r}"
            )


def register_envs() -> None:
    """Register the crs/* ids with Gymnasium (idempotent)."""
    for env_id, kwargs in REGISTERED.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="envs.registry:make_env", kwargs=dict(kwargs))
