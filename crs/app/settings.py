"""The settings of a training run: one pydantic model per block of the config file, read from
YAML/TOML (`crs train --config`), the CLI, sweep grids and a run's config.yaml alike.

Every model refuses unknown keys and non-finite numbers, and `make_settings` resolves the
machine-dependent defaults (recorded in the run's config.yaml).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from envs.env import Rewards
from envs.registry import resolve_user_and_setting
from envs.sb3_wrapper import WrapperConfig
from envs.setting import LEGACY_SETTINGS, Setting
from policies.rankers import RankerSpec
from policies.rl.config import ImitationConfig, PPOConfig, RLConfig
from policies.rules import make_rule_policy
from simulators.datasets import PERSONA_WORLD, DatasetSpec, check_dataset_name, check_taxonomy
from simulators.errors import CRSError
from simulators.field_types import field_types, is_of
from simulators.mcmipl import DATASETS as MCMIPL_DATASETS
from simulators.persona_world import WORLD_SIZE_LIMITS, WORLD_USER

DEFAULT_STEPS = 40_000
# Default envs: one per core, but at least 8 so that the policy's forward pass during collection is
# batched over 8 conversations (on 2 cores 8 envs train 1.3-1.7x faster than 2; BENCHMARKS.md).
MIN_DEFAULT_ENVS = 8
RULE_BASELINES = ("always-recommend", "ask-4", "ask-7", "max-entropy")
TRAIN_REWARDS = {"quit_at_limit": -1.0}
"""Training reward overrides by default, under any the settings give: a user who quits (turn limit,
patience) costs -1, not UNICORN's -0.3, so that a policy does not learn to spend slates on users who
leave (the test keeps UNICORN's). ``quit_at_limit: -0.3`` trains with UNICORN's."""
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which SB3 calls, takes seeds below 2**32

WORLD_RECIPE: dict[str, dict[str, Any]] = {
    "rewards": {"ask_rejected": 0.0},
    "ppo": {
        "gamma": 1.0,
        "target_kl": 0.02,
        "learn_slate_order": False,
        "learning_rate": 2e-4,
        "ent_coef": 0.001,
    },
    "wrapper": {"n_questions": 1},
    "imitation": {"rule": "ask-7", "steps": 8192, "epochs": 30},
}
"""How `crs train` trains on the persona world unless told otherwise (the README's main job, #15):
copy ask-7 first (`imitation`, on at most as many turns as PPO then trains), then let PPO learn only
*when* to stop asking: one question slot (the ranker's best aspect, the one ask-N asks), the ranker's
top 10 as the slate (``learn_slate_order: false``), a return that counts what SR@15 counts (``gamma``
1, a rejected question costs nothing; a user who leaves costs `TRAIN_REWARDS`' -1), and small steps
that keep the copy (``target_kl`` 0.02, learning rate 2e-4, entropy 0.001). Measured on the main job's
600 test conversations (BENCHMARKS.md, the showcase world, session 28): SR@15 0.827 against ask-7's
0.797, paired +0.030 [+0.007, +0.052], in fewer turns than any rule; every earlier recipe (from
scratch, imitation with ten question slots) tied ask-7 or lost to it. A key a config or command line
sets wins over the recipe's, key by key inside ``rewards``, ``ppo`` and ``wrapper``; ``imitation:
null`` trains from scratch."""


# Every settings model refuses unknown keys, non-finite numbers (NaN, inf) and values of another type
# (``true`` for a count, ``"0.1"`` for a rate, ``1`` for a switch) when it is read.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def plain_block(block: str, kind: type[Any], data: Any) -> Any:
    """The ``ppo``, ``wrapper`` or ``imitation`` block `data` (a mapping from the config) as a `kind`
    dataclass, each value checked against its field's type first: pydantic's strict mode takes only
    instances of a dataclass, and its lax one would coerce ``true`` to 1 or ``"yes"`` to True.

    Raises:
        ValueError: An unknown key, a value of another type (named with its block, key and the type it
            needs) or a non-finite number.
        CRSError: A value out of its range (the dataclass's own check).
    """
    if not isinstance(data, dict):
        return data  # an instance already, or pydantic names what it is
    types_of = field_types(kind)
    unknown = sorted(str(key) for key in data if key not in types_of)
    if unknown:
        raise ValueError(f"{block}: unknown key(s) {', '.join(unknown)}; known: {', '.join(types_of)}")
    values = {}
    for key, value in data.items():
        types, optional = types_of[key]
        if value is not None or not optional:  # None: an optional left out
            if not is_of(value, types):
                need = " or ".join(t.__name__ for t in types)
                raise ValueError(f"{block}.{key}={value!r} must be of type {need}")
            if float in types and isinstance(value, int | float):
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{block}.{key}={value} must be a finite number")
        values[key] = value
    return kind(**values)


class UserSettings(BaseModel):
    """Arguments of the persona world's simulated user (`simulators.users.PersonaUser`); the defaults are
    the world's (`simulators.persona_world.WORLD_USER`)."""

    model_config = STRICT
    noise: float = Field(WORLD_USER.noise, ge=0, le=1, description="probability of a flipped answer")
    patience: int | None = Field(
        WORLD_USER.patience, ge=1, description="rejected slates before leaving; None = never"
    )
    drift: float = Field(
        WORLD_USER.drift, ge=0, le=1, description="per-turn probability that the active persona changes"
    )


class WorldSettings(BaseModel):
    """Sizes of the persona world (`simulators.persona_world.make_persona_world`); None = its default."""

    model_config = STRICT
    n_users: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["n_users"])
    n_items: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["n_items"])
    n_groups: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["n_groups"])
    aspects_per_group: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["aspects_per_group"])
    n_personas: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["n_personas"])
    personas_per_user: int | None = Field(None, ge=1)
    interactions_per_user: int | None = Field(None, ge=1, le=WORLD_SIZE_LIMITS["interactions_per_user"])


class TrainSettings(BaseModel):
    """Everything a training run depends on; read from --config (YAML/TOML), then CLI options."""

    model_config = STRICT
    dataset: str = "persona_world"
    data_dir: str | None = None
    ranker: str | None = Field(
        None,
        description='"popularity", "uniform", "transe", "pretrain", an artifact path (uniform, pretrain '
        'and artifacts may end in "+profile" or "+profile:W": the users\' tag profiles, weight W, then '
        '"+pop" or "+pop:W": an item popularity prior, then "+split": splitting questions, then "@T": '
        "preferences divided by T); "
        "None = the dataset default",
    )
    steps: int = Field(DEFAULT_STEPS, ge=1, strict=True)
    envs: int | None = Field(
        None, ge=1, description="simulated-user envs; None = one per core, at least 8", strict=True
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, strict=True)
    world_seed: int = Field(0, ge=0, le=MAX_SEED, strict=True)
    world: WorldSettings = Field(default_factory=WorldSettings, description="persona world sizes")
    persona_attention: bool = True
    aspect_attention: bool = True
    ablate_ranker: bool = Field(
        True,
        description="a ranker the run pre-trains has the switched-off attentions switched off too: one "
        "persona per user (K = 1) without persona attention, uniform aspect weights without aspect "
        "attention; false: only the policy's encoder is ablated",
    )
    setting: Setting | None = Field(
        None, description="binary, enumerated or multiple_choice (envs.setting); None = the dataset's own"
    )
    user: Literal["auto", "single", "multi", "persona"] = "auto"
    user_kwargs: UserSettings = Field(default_factory=UserSettings)
    rewards: dict[str, float] = Field(
        default_factory=lambda: dict(TRAIN_REWARDS),
        description="training reward table overrides (envs.env.Rewards fields), over TRAIN_REWARDS; the "
        "test uses UNICORN's",
    )
    eval_every: int = Field(10_000, ge=0, strict=True)
    eval_episodes: int = Field(200, ge=1, strict=True)
    test_episodes: int = Field(600, ge=1, strict=True)
    checkpoint_every: int = Field(5_000, ge=1, strict=True)
    pretrain_epochs: int = Field(10, ge=1, strict=True)
    baselines: list[str] = Field(default_factory=lambda: list(RULE_BASELINES))
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    wrapper: WrapperConfig = Field(default_factory=WrapperConfig)
    fit_plan_temperature: bool = Field(
        False,
        description="fit wrapper.plan_temperature to the training conversations' targets before training, "
        "in place of any given (envs.belief_fit); needs wrapper.plan_depth",
    )
    imitation: ImitationConfig | None = Field(
        None, description="warm start: copy this rule before PPO (policies.rl.imitation); None = from scratch"
    )

    @field_validator("ppo", "wrapper", "imitation", mode="before")
    @classmethod
    def _plain_blocks(cls, data: Any, info: ValidationInfo) -> Any:
        kinds = {"ppo": PPOConfig, "wrapper": WrapperConfig, "imitation": ImitationConfig}
        return plain_block(str(info.field_name), kinds[str(info.field_name)], data)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, data_dir: str | None) -> str | None:
        # absolute, so that the run's config.yaml replays from any folder
        return str(Path(data_dir).expanduser().resolve()) if data_dir else data_dir

    @field_validator("rewards", mode="before")
    @classmethod
    def _over_train_rewards(cls, rewards: Any) -> Any:
        # sorted, as `with_world_recipe` writes its blocks
        return dict(sorted({**TRAIN_REWARDS, **rewards}.items())) if isinstance(rewards, dict) else rewards

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, rewards: dict[str, float]) -> dict[str, float]:
        known = set(Rewards.__dataclass_fields__)
        unknown = sorted(set(rewards) - known)
        if unknown:
            raise ValueError(f"unknown reward(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return rewards

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, baselines: list[str]) -> list[str]:
        seen: dict[str, str] = {}  # the rule's own name (ask-04 is ask-4) -> as listed
        for name in baselines:
            rule = make_rule_policy(name, None).name  # CRSError names the unknown policy and the choices
            if rule in seen:
                raise ValueError(f"{seen[rule]} and {name} are one rule ({rule}); list each baseline once")
            seen[rule] = name
        return baselines

    def dataset_spec(self) -> DatasetSpec:
        """The catalogue these settings train on."""
        sizes = tuple(sorted(self.world.model_dump(exclude_none=True).items()))
        return DatasetSpec(self.dataset, self.data_dir, self.world_seed, sizes)

    def env_options(self) -> dict[str, Any]:
        """`envs.registry.make_env` user and setting options (as recorded in policy.json)."""
        return {
            "user": self.user,
            "setting": self.setting,
            "user_kwargs": self.user_kwargs.model_dump(exclude_defaults=True),
        }

    def ranker_switches(self) -> dict[str, Any]:
        """The `policies.pretrain.config.ModelShape` switches of a ranker this run pre-trains: the
        ablation's when `ablate_ranker`, else none (the full persona × aspect model)."""
        if not self.ablate_ranker:
            return {}
        return {
            **({} if self.persona_attention else {"personas": 1}),
            **({} if self.aspect_attention else {"aspect_mode": "uniform"}),
        }

    def ranker_matches_variant(self, attentions: tuple[bool, bool] | None) -> bool:
        """Whether a ranker pre-trained with these attentions (`policies.rankers.RankerSpec.attentions`;
        None: not a persona model) belongs to this run's ablation variant, so the variant is ablated
        whole: its own pre-trained ranker, or one `crs pretrain` wrote with the same switches."""
        return attentions == (self.persona_attention, self.aspect_attention)

    def rl_config(self) -> RLConfig:
        """The `RLConfig` of the policy these settings train."""
        return RLConfig(
            n_envs=self.envs or MIN_DEFAULT_ENVS,
            persona_attention=self.persona_attention,
            aspect_attention=self.aspect_attention,
            wrapper=self.wrapper,
            **asdict(self.ppo),
        )


def recorded_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The settings mapping of a run's config.yaml; runs written before a key was recorded get what they
    ran with: the setting of `envs.setting.LEGACY_SETTINGS`, a ranker pre-trained whole whatever the
    ablation (``ablate_ranker: false``), and, where their rewards leave ``quit_at_limit`` out, UNICORN's
    (before session 40 a config's rewards replaced `TRAIN_REWARDS` instead of going over it)."""
    data = {"ablate_ranker": False, **data}
    rewards = data.get("rewards")
    if isinstance(rewards, dict) and "quit_at_limit" not in rewards:
        data["rewards"] = {"quit_at_limit": Rewards.quit_at_limit, **rewards}
    if "setting" in data:
        return data
    return {**data, "setting": LEGACY_SETTINGS.get(str(data.get("dataset", "")))}


def check_world_seed(world_seed: int | None, dataset: str, name: str = "--world-seed") -> int:
    """The persona world's seed that `name` (an option or a setting) gives, 0 when left out.

    Raises:
        CRSError: A seed given with a real dataset, which has none (it was silently ignored).
    """
    if world_seed is not None and dataset != PERSONA_WORLD:
        raise CRSError(
            f"{name} {world_seed} seeds the persona world, and {dataset} is real data, which has no seed: "
            "leave it out"
        )
    return world_seed or 0


def _block_model(path: tuple[str | int, ...]) -> type[BaseModel]:
    """The settings model of the block at `path` in `TrainSettings` (``("world",)``: `WorldSettings`)."""
    model: type[BaseModel] = TrainSettings
    for part in path:
        field = model.model_fields.get(str(part))
        block = None if field is None else field.annotation
        if not (isinstance(block, type) and issubclass(block, BaseModel)):
            break
        model = block
    return model


def with_world_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with `WORLD_RECIPE` under it: each recipe key the data leaves out, and inside ``rewards``,
    ``ppo``, ``wrapper`` and ``imitation`` each recipe entry the data's mapping leaves out; the
    recipe's imitation copies the rule on at most ``steps`` turns (a short run is not all copying)."""
    out = dict(data)
    for key in ("rewards", "ppo", "wrapper"):
        given = out.get(key)
        if given is None or isinstance(given, dict):
            # sorted: the same settings are written in the same order whether given or from the recipe
            out[key] = dict(sorted({**WORLD_RECIPE[key], **(given or {})}.items()))
    given = out.get("imitation", {})
    if isinstance(given, dict):  # None turns the imitation off
        steps = out.get("steps", DEFAULT_STEPS)
        cap = (
            steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 else DEFAULT_STEPS
        )
        out["imitation"] = {
            **WORLD_RECIPE["imitation"],
            "steps": min(WORLD_RECIPE["imitation"]["steps"], cap),
            **given,
        }
    return out


def _got(value: Any) -> str:
    """ ", got VALUE" for a settings error, a long value cut visibly."""
    text = repr(value)
    return f", got {text if len(text) <= 40 else text[:39] + '…'}"


def make_settings(data: dict[str, Any]) -> TrainSettings:
    """Validate settings and resolve the defaults that depend on the machine or the dataset (recorded
    in config.yaml): ``setting`` = the dataset's own (`envs.registry.resolve_user_and_setting`),
    ``envs`` = one per core but at least 8, ``ppo.n_steps`` = max(512 // envs, 32), ``ppo.subprocess``
    = whether the machine has more than 2 cores, ``wrapper.max_slates_in_a_row`` = the persona
    world's user patience when not given (real data's users never leave: no cap); on the persona
    world, `WORLD_RECIPE` under what `data` sets (`with_world_recipe`). Errors name the key and the
    problem.
    """
    if data.get("dataset", PERSONA_WORLD) == PERSONA_WORLD:
        data = with_world_recipe(data)
    try:
        settings = TrainSettings(**data)
    except CRSError as error:
        raise CRSError(f"bad training settings: {error}") from None
    except ValidationError as error:
        parts = []
        for e in error.errors():
            if e["type"] == "extra_forbidden":  # the keys of the block it is in (world, user_kwargs, ...)
                detail = f" (known keys: {', '.join(_block_model(e['loc'][:-1]).model_fields)})"
            else:  # a block's own check names its key and value: its whole mapping would say nothing more
                detail = "" if isinstance(e["input"], dict) else _got(e["input"])
            location = ".".join(str(p) for p in e["loc"])
            message = e["msg"].removeprefix("Value error, ").removeprefix(f"{location}: ")  # named once
            parts.append(f"{location}: {message}{detail}")
        raise CRSError(f"bad training settings: {'; '.join(parts)}") from None
    check_dataset_name(settings.dataset)
    if settings.ranker is not None:  # its syntax (a file or folder it names is read when training)
        try:
            RankerSpec.parse(settings.ranker).check_dataset(settings.dataset)
        except CRSError as error:
            raise CRSError(f"bad training settings: ranker: {error}") from None
    world, mcmipl = settings.dataset_spec().is_world, settings.dataset in MCMIPL_DATASETS
    try:
        check_world_seed(settings.world_seed or None, settings.dataset, "world_seed")  # 0: the default
    except CRSError as error:
        raise CRSError(f"bad training settings: {error}") from None
    _, setting = resolve_user_and_setting(settings.user, settings.setting, world=world, mcmipl=mcmipl)
    rules = [("baselines", rule) for rule in settings.baselines]
    rules += [("imitation.rule", settings.imitation.rule)] if settings.imitation is not None else []
    for key, rule in rules:  # (the ranker they need is checked once it is built: `crs.app.training`)
        try:
            make_rule_policy(rule, None).check_setting(setting)
        except CRSError as error:
            raise CRSError(f"bad training settings: {key}: {error}") from None
    try:
        check_taxonomy(settings.dataset, setting)
    except CRSError as error:
        raise CRSError(f"bad training settings: setting {error}") from None
    if settings.wrapper.plan_depth is not None and setting != "binary":
        raise CRSError(
            f"bad training settings: wrapper.plan_depth={settings.wrapper.plan_depth} searches yes/no "
            f"answers, but {settings.dataset} trains in the {setting} setting: add setting: binary (or "
            f"--setting binary), or drop plan_depth"
        )
    if settings.fit_plan_temperature and settings.wrapper.plan_depth is None:
        raise CRSError(
            "bad training settings: fit_plan_temperature fits the belief of the search that "
            "wrapper.plan_depth turns on: add plan_depth (or --plan-depth D), or drop it"
        )
    envs = settings.envs or max(os.cpu_count() or 1, MIN_DEFAULT_ENVS)
    ppo = replace(settings.ppo, **settings.ppo.resolved(envs))
    wrapper = settings.wrapper
    if world and wrapper.max_slates_in_a_row is None:
        wrapper = replace(wrapper, max_slates_in_a_row=settings.user_kwargs.patience)
    return settings.model_copy(update={"setting": setting, "envs": envs, "ppo": ppo, "wrapper": wrapper})
