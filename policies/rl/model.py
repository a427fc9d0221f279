"""Building a MaskablePPO model of the graph RL policy: vectorised training envs, the encoder's
arguments and pre-trained embeddings from the fixed ranker, and the model's logger.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from threadpoolctl import threadpool_limits

from envs.env import ConversationEnv
from envs.ranker import ExplainablePersonaRanker, PreferenceRanker
from envs.sb3_wrapper import SlateActionWrapper
from policies.baseline_rankers import TransERanker
from policies.rl.config import RLConfig
from policies.rl.encoder import PersonaAspectEncoder
from policies.rl.policy import SlatePolicy


def pretrained_arrays(ranker: PreferenceRanker) -> dict[str, np.ndarray] | None:
    """The embeddings a ranker carries, keyed as `PersonaAspectEncoder.load_pretrained` reads them.

    A persona ranker gives "item", "aspect", "personas" (U, K, d), "log_prior" (U, K); a TransE ranker
    gives its user vectors as one persona each. Other rankers give None (random initialisation).
    """
    if isinstance(ranker, ExplainablePersonaRanker):
        return {
            "item": np.asarray(ranker.item),
            "aspect": np.asarray(ranker.aspect),
            "personas": np.asarray(ranker.personas),
            "log_prior": np.asarray(ranker.log_prior),
        }
    if isinstance(ranker, TransERanker):
        user = np.asarray(ranker.user_emb)
        return {
            "item": np.asarray(ranker.item_emb),
            "aspect": np.asarray(ranker.aspect_emb),
            "personas": user[:, None, :],
            "log_prior": np.zeros((user.shape[0], 1)),
        }
    return None


def encoder_kwargs(sizes: dict[str, int], ranker: PreferenceRanker, config: RLConfig) -> dict[str, Any]:
    """The `PersonaAspectEncoder` arguments for a wrapped env's `SlateActionWrapper.sizes`."""
    arrays = pretrained_arrays(ranker)
    n_personas = int(arrays["personas"].shape[1]) if arrays else max(sizes["n_probes"], 1)
    embed_dim = int(arrays["item"].shape[1]) if arrays else config.embed_dim
    return {
        "n_users": sizes["n_users"],
        "n_items": sizes["n_items"],
        "n_aspects": sizes["n_aspects"],
        "n_categories": sizes["n_categories"],
        "n_personas": n_personas,
        "embed_dim": embed_dim,
        "hidden": config.hidden,
        "persona_attention": config.persona_attention,
        "aspect_attention": config.aspect_attention,
        "train_embeddings": config.train_embeddings or arrays is None,
    }


def training_env_seed(seed: int, index: int) -> int:
    """The reset seed of training env `index` of a run seeded `seed`: ``seed * 2**32 + index``.

    SB3 seeds env k with seed + k (`VecEnv.seed`, also on `MaskablePPO` creation and load), so env k
    of seed s and env k - 1 of seed s + 1 walked the same training conversations wherever goal draws
    do not depend on the policy (real data): runs of neighbouring seeds were not independent. This
    map is one-to-one over (seed, index) for index < 2**32, and leaves seed 0's envs as they were.
    """
    return seed * 2**32 + index


class _OwnSeed(gym.Wrapper):
    """Resets training env `index` with `training_env_seed` of the base seed SB3 passes as base + index."""

    def __init__(self, env: gym.Env, index: int) -> None:
        super().__init__(env)
        self.index = index

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            seed = training_env_seed(seed - self.index, self.index)
        return self.env.reset(seed=seed, options=options)


def make_vec_env(
    env_factory: Callable[[], ConversationEnv],
    ranker: PreferenceRanker,
    config: RLConfig,
    seed: int,
) -> VecEnv:
    """`config.n_envs` wrapped training envs (Monitor-ed), env k reset with `training_env_seed(seed, k)`.

    With ``config.subprocess`` every env runs in its own `SubprocVecEnv` worker process (the
    factory and the ranker are pickled to it once); otherwise all run in this process
    (`DummyVecEnv`). Both give the same observations, masks and rewards for the same seed.

    Args:
        env_factory: Builds one `ConversationEnv` over the training split (called once per env).
        ranker: The fixed preference ranker.
        config: RL config (n_envs, wrapper sizes, subprocess).
        seed: Base seed of the envs.
    """

    def build(index: int) -> Monitor:
        if config.subprocess:
            # one worker per core: BLAS or torch threads inside a worker would only fight the others
            threadpool_limits(1)
            torch.set_num_threads(1)
        return Monitor(_OwnSeed(SlateActionWrapper(env_factory(), ranker, config.wrapper), index))

    builders: list[Callable[[], gym.Env]] = [partial(build, index) for index in range(config.n_envs)]
    vec: VecEnv = SubprocVecEnv(builders) if config.subprocess else DummyVecEnv(builders)
    vec.seed(seed)
    return vec


def build_model(
    vec_env: VecEnv,
    ranker: PreferenceRanker,
    config: RLConfig,
    seed: int,
    tensorboard_log: str | None = None,
) -> MaskablePPO:
    """A fresh MaskablePPO model with the `SlatePolicy`, its encoder initialised from the ranker."""
    torch.set_num_threads(1)
    sizes = vec_env.get_attr("sizes", indices=[0])[0]
    assert config.n_steps is not None  # RLConfig.__post_init__ resolves it
    model = MaskablePPO(
        SlatePolicy,
        vec_env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        target_kl=config.target_kl,
        policy_kwargs={
            "features_extractor_kwargs": encoder_kwargs(sizes, ranker, config),
            "slate_entropy_scale": config.slate_entropy_scale,
            "learn_slate_order": config.learn_slate_order,
        },
        tensorboard_log=tensorboard_log,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    arrays = pretrained_arrays(ranker)
    if arrays is not None:
        encoder = cast(PersonaAspectEncoder, model.policy.features_extractor)  # SlatePolicy's extractor class
        encoder.load_pretrained(arrays)
    set_logger(model, tensorboard_log)
    return model


def set_logger(model: MaskablePPO, tensorboard_dir: str | Path | None) -> None:
    """Log to TensorBoard files in `tensorboard_dir` (continued across resumes), or nowhere.

    Setting the logger explicitly also stops SB3 from creating an empty SB3-<date> folder in the
    temporary directory on every `learn` call.
    """
    if tensorboard_dir is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    else:
        model.set_logger(configure_logger(str(tensorboard_dir), ["tensorboard"]))
