"""A trained graph RL policy as a `ConversationPolicy`: acting in envs, and loading one from a run
directory of `crs train` (its policy.json, fixed ranker and model zip).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, per_episode_metrics
from envs.ranker import ExplainablePersonaRanker, PreferenceRanker
from envs.registry import make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from envs.setting import Setting
from policies.pretrain.train import catalog_fingerprint
from policies.rankers import RankerSpec
from policies.rl.encoder import PersonaAspectEncoder
from policies.rl.model import encoder_kwargs
from policies.rl.model_file import ACTING_OVERRIDES, ModelFileError, load_model
from policies.rl.run_files import POLICY_META, PolicyMeta, model_file
from simulators.catalog import Catalog
from simulators.errors import CRSError


def _stack(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(np.stack([o[key] for o in observations])) for key in observations[0]}


class PriorRowError(CRSError):
    """A persona prior row cannot go into a trained policy's encoder (a user or a size it lacks)."""


class RLPolicy:
    """A trained `SlatePolicy` as a `ConversationPolicy` (deterministic: arg-max choice, top-k slate).

    Args:
        policy: The SB3 policy (the `SlatePolicy` of a trained run).
        ranker: The fixed ranker the policy was trained with (or a view of it, `for_session`).
        wrapper_config: The wrapper sizes it was trained with.
        name: Display name.
        setting: The question setting it was trained in; envs of another setting are refused.
        prior: ``(user, log prior row)``: while this policy acts, its encoder's ``log_prior`` row of
            that user holds the row, and the trained row is put back after each forward pass; None:
            the encoder as trained (`for_session` sets it).

    Raises:
        PriorRowError: `prior`'s user or width is outside the encoder's ``log_prior`` table.
    """

    def __init__(
        self,
        policy: MaskableActorCriticPolicy,
        ranker: PreferenceRanker,
        wrapper_config: WrapperConfig,
        name: str = "rl",
        setting: Setting | None = None,
        prior: tuple[int, np.ndarray] | None = None,
    ) -> None:
        self.policy = policy
        self.policy.set_training_mode(False)
        self.ranker = ranker
        self.wrapper_config = wrapper_config
        self.name = name
        self.setting = setting
        self._wrappers: dict[int, SlateActionWrapper] = {}
        self._prior: tuple[int, torch.Tensor] | None = None
        if prior is not None:
            self._prior = self._checked_prior(*prior)

    @property
    def encoder(self) -> PersonaAspectEncoder:
        """The encoder the policy's actions read (SB3's actor features extractor)."""
        encoder = self.policy.pi_features_extractor
        if not isinstance(encoder, PersonaAspectEncoder):
            raise PriorRowError(
                f"policy {self.name} has a {type(encoder).__name__} encoder, not a PersonaAspectEncoder "
                "with persona priors"
            )
        return encoder

    def _checked_prior(self, user: int, row: np.ndarray) -> tuple[int, torch.Tensor]:
        table = self.encoder.log_prior.weight
        values = np.asarray(row, dtype=np.float64).reshape(-1)
        if not 0 <= user < table.shape[0] or values.shape[0] != table.shape[1]:
            raise PriorRowError(
                f"policy {self.name}: a prior row of user {user} with {values.shape[0]} personas does not "
                f"fit its encoder's log_prior table of {table.shape[0]} users x {table.shape[1]} personas; "
                "use the ranker the run was trained with (its ranker/ folder)"
            )
        return int(user), torch.tensor(values, dtype=table.dtype)

    def for_session(self, ranker: ExplainablePersonaRanker, user: int) -> RLPolicy:
        """This policy for one session of `user` with a persona memory (`policies.memory.BeliefPolicy`).

        The returned policy shares the network; its wrappers read `ranker` (the memory's view,
        `policies.memory.PersonaMemory.ranker_for`: scores and posterior features start from the
        memory's prior) and its encoder reads ``ranker.log_prior[user]`` as `user`'s log prior, so the
        policy sees the memory's belief through the features it was trained on. Other users' rows and
        the loaded network stay as trained.

        Raises:
            PriorRowError: `user` or the view's persona count does not fit the encoder.
        """
        log_prior = np.asarray(ranker.log_prior)
        if not 0 <= user < log_prior.shape[0]:
            raise PriorRowError(
                f"policy {self.name}: user {user} outside [0, {log_prior.shape[0]}) of the ranker"
            )
        row = log_prior[user]
        return RLPolicy(self.policy, ranker, self.wrapper_config, self.name, self.setting, (user, row))

    @contextmanager
    def _encoder_prior(self) -> Iterator[None]:
        """The encoder with this policy's prior row written in, put back as trained on exit."""
        if self._prior is None:
            yield
            return
        user, row = self._prior
        weight = self.encoder.log_prior.weight
        with torch.no_grad():
            trained = weight[user].clone()
            weight[user] = row
        try:
            yield
        finally:
            with torch.no_grad():
                weight[user] = trained

    def reset(self, rng: np.random.Generator) -> None:
        """Nothing to reset: the policy is deterministic and reads the whole state every turn."""

    def check_env(self, env: gym.Env) -> None:
        """Raise CRSError when `env` is of another setting than the one the policy trained in (callers
        check before the first conversation; `wrapper_for` checks each env)."""
        setting = getattr(env, "setting", None)
        if self.setting is not None and setting != self.setting:
            raise CRSError(
                f"policy {self.name} was trained in the {self.setting} setting and cannot act in an "
                f"env of the {setting} setting; run it with --setting {self.setting} (in Python: "
                f"make_env(..., setting={self.setting!r}); a single-target user's default is binary)"
            )

    def wrapper_for(self, env: gym.Env) -> SlateActionWrapper:
        """The (cached) SB3 wrapper view of `env` (a `ConversationEnv`, e.g. another env's ``unwrapped``)."""
        key = id(env)
        wrapper = self._wrappers.get(key)
        if wrapper is None or wrapper.env is not env:
            self.check_env(env)
            wrapper = SlateActionWrapper(env, self.ranker, self.wrapper_config)
            self._check_spaces(wrapper)
            self._wrappers[key] = wrapper
        return wrapper

    def _check_spaces(self, wrapper: SlateActionWrapper) -> None:
        """Raise CRSError when `wrapper`'s env offers other actions than the policy learned to choose
        among (another slate size, or other persona slots to probe): its network would fail on them."""
        actions, trained_space, space = (
            self.policy.action_space,
            self.policy.observation_space,
            wrapper.observation_space,
        )
        # SB3 keeps them as plain Spaces; a policy the wrapper trained has these
        assert isinstance(actions, gym.spaces.MultiDiscrete) and isinstance(trained_space, gym.spaces.Dict)
        assert isinstance(space, gym.spaces.Dict)
        slate = len(actions.nvec) - 1  # [choice, slot_1 .. slot_k]
        if wrapper.slate_size != slate:
            raise CRSError(
                f"policy {self.name} was trained with slate size {slate} and cannot act in an env with slate "
                f"size {wrapper.slate_size}: make the env with slate_size={slate}"
            )
        trained = {key: box.shape for key, box in trained_space.spaces.items()}
        here = {key: box.shape for key, box in space.spaces.items()}
        differ = [
            f"{k} {trained.get(k)} → {here.get(k)}"
            for k in sorted(trained | here)
            if trained.get(k) != here.get(k)
        ]
        if differ:
            raise CRSError(
                f"policy {self.name} cannot act in this env, whose observations differ from those it was "
                f"trained on (trained → here: {', '.join(differ)}): make the env with the run's settings "
                "(config.yaml: n_personas, the ranker)"
            )

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return self.act_batch([env])[0]

    def act_batch(self, envs: Sequence[ConversationEnv]) -> list[dict[str, Any]]:
        """Actions for several envs at once (one forward pass)."""
        wrappers = [self.wrapper_for(env.unwrapped) for env in envs]
        observations = [w.observe() for w in wrappers]
        masks = np.stack([w.action_masks() for w in wrappers])
        with torch.no_grad(), self._encoder_prior():
            dist = self.policy.get_distribution(_stack(observations), action_masks=masks)
            actions = dist.mode().numpy()
        return [w.to_env_action(a) for w, a in zip(wrappers, actions, strict=True)]


def mean_metrics(records: Sequence[EpisodeRecord], max_turns: int = 15) -> dict[str, float]:
    """Means of SR@5/10/15, AT and hDCG over records."""
    return {k: float(v.mean()) for k, v in per_episode_metrics(records, max_turns).items()}


def load_trained_policy(
    run_dir: str | Path, catalog: Catalog, ranker: PreferenceRanker | None = None
) -> RLPolicy:
    """Load a trained run as a deterministic `ConversationPolicy`.

    Args:
        run_dir: A ``runs/<name>/`` directory written by `crs train`.
        catalog: The catalogue of the envs it will act in (must match the run's dataset).
        ranker: The fixed ranker; default: rebuilt from the run's ``policy.json`` ranker entry, which must
            still be the ranker the run was trained with (`ranker_from_meta`).

    Raises:
        RankerChangedError: The run's ranker file or folder is gone or holds another ranker.
        CRSError: Not a run directory, no model, or a catalogue of another dataset, sizes or world.
    """
    torch.set_num_threads(1)
    meta = PolicyMeta.read(run_dir)
    if not isinstance(catalog, Catalog):
        raise CRSError(
            f"catalog must be a Catalog, got {type(catalog).__name__} {catalog!r}: load the run's with "
            f"simulators.load_catalog({meta.catalog!r}, data_dir)"
        )
    if meta.catalog != catalog.name:
        raise CRSError(
            f"run {run_dir} was trained on {meta.catalog!r} but the env's catalogue is {catalog.name!r}: "
            f"pass --dataset {meta.catalog} (from Python: simulators.load_catalog({meta.catalog!r}, ...))"
        )
    sizes = (catalog.n_users, catalog.n_items, catalog.n_aspects)
    if meta.sizes and meta.sizes != sizes:
        # the records' folder is crs.app.run_folder's TEST_DIR / TRAINED_TEST (policies cannot import crs)
        fix = (
            "it was trained on a persona world of custom sizes, which `crs eval` and `crs chat` cannot "
            "build (they have no options for them), so it cannot be evaluated again; its test's records "
            f"are in {Path(run_dir) / 'tested' / 'trained'}/"
            if catalog.truth is not None
            else "evaluate it with the data folder it was trained on"
        )
        raise CRSError(
            f"run {run_dir} was trained on a catalogue with (users, items, aspects) sizes "
            f"{list(meta.sizes)}, but this one has {list(sizes)}: {fix}"
        )
    if meta.fingerprint is not None and meta.fingerprint != catalog_fingerprint(catalog):
        raise CRSError(
            f"run {run_dir} was trained on another {catalog.name!r} catalogue of the same sizes (other item "
            f"aspects or interactions): use the one it trained on"
            + (f" (--world-seed {meta.world_seed})" if catalog.truth is not None else "")
        )
    config = meta.rl
    given = ranker is not None
    if ranker is None:
        ranker = ranker_from_meta(meta.ranker, catalog, Path(run_dir), meta.ranker_identity)
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="test", **meta.env), ranker, config.wrapper)
    try:
        model = load_model(
            model_file(run_dir),
            observation_space=wrapper.observation_space,
            action_space=wrapper.action_space,
            clip_range=config.clip_range,
            encoder=encoder_kwargs(wrapper.sizes, ranker, config),
            overrides=ACTING_OVERRIDES,
        )
    except ModelFileError as error:
        if not given:
            raise
        raise CRSError(
            f"{error}; the ranker= given ({type(ranker).__name__}) may not be the run's own ({meta.ranker}), "
            "which its network was trained on: leave ranker= out to rebuild that one"
        ) from None
    setting = wrapper.base.setting
    return RLPolicy(model.policy, ranker, config.wrapper, name=Path(run_dir).name, setting=setting)


def ranker_from_meta(entry: str, catalog: Catalog, run_dir: Path, identity: str | None) -> PreferenceRanker:
    """Rebuild the fixed ranker a run recorded (policy.json's entry: "popularity", "transe:<file>" or
    "artifact:<dir>"; relative paths lie in the run), refused unless it is still the one the run was
    trained with (`policies.rankers.RankerSpec.check_pinned`).

    Args:
        entry: policy.json's ranker entry.
        catalog: The catalogue the ranker scores.
        run_dir: The run folder.
        identity: policy.json's ``ranker_identity`` (None: not recorded; the file or folder is then
            only checked to be there).

    Raises:
        RankerChangedError: The ranker's file or folder is gone, or holds another ranker.
        CRSError: An unknown entry, or a ranker that cannot be built.
    """
    spec = RankerSpec.from_entry(entry, f"run {run_dir} ({POLICY_META})").resolve(run_dir)
    spec.check_pinned(identity, run_dir)
    return spec.build(catalog)
