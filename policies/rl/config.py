"""The hyper-parameters of the graph RL policy and of MaskablePPO, each declared once.

`PPOConfig` is the ``ppo`` block of a training config (`crs.app.settings.TrainSettings` embeds it);
`RLConfig` adds what the run's other settings fix (envs, attention switches, wrapper sizes) and is
stored flat in policy.json. Both check themselves; importing this module does not load torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from envs.sb3_wrapper import WrapperConfig
from policies.rules import make_rule_policy
from simulators.errors import CRSError
from simulators.field_types import check_field_types

ROLLOUT_STEPS = 512  # steps per PPO update when n_steps is not given: n_steps = ROLLOUT_STEPS // envs
MIN_ROLLOUT_STEPS_PER_ENV = 32
# Worker processes by default only above this many cores: on 2 cores the main process (policy forward
# passes) is the bottleneck and in-process envs train 1.04-1.45x faster than SubprocVecEnv workers.
MIN_CORES_FOR_WORKERS = 3

# (name, lowest allowed, whether the lowest is allowed) of every number of `PPOConfig`
_LOWER_BOUNDS: tuple[tuple[str, float, bool], ...] = (
    ("n_steps", 1, True),
    ("batch_size", 2, True),
    ("n_epochs", 1, True),
    ("learning_rate", 0.0, False),
    ("gamma", 0.0, False),
    ("gae_lambda", 0.0, False),
    ("clip_range", 0.0, False),
    ("ent_coef", 0.0, True),
    ("vf_coef", 0.0, True),
    ("hidden", 4, True),
    ("embed_dim", 2, True),
    ("slate_entropy_scale", 0.0, True),
    ("target_kl", 0.0, False),
)


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO and encoder hyper-parameters.

    Attributes:
        n_steps: Rollout steps per env between updates; None = max(512 // envs, 32).
        batch_size: PPO minibatch size.
        n_epochs: PPO epochs per update (10: the default 4 under-trained, BENCHMARKS.md).
        learning_rate: Adam learning rate.
        gamma: Discount, in (0, 1].
        gae_lambda: GAE λ, in (0, 1].
        clip_range: PPO clip range.
        ent_coef: Entropy bonus.
        vf_coef: Value loss weight.
        hidden: Encoder width.
        embed_dim: Embedding width when no pre-trained embeddings are given.
        train_embeddings: Fine-tune the embedding tables.
        slate_entropy_scale: Weight of the slate entropy (None = 1/k).
        target_kl: Stop an update's epochs early once the approximate KL between the old and new
            policy exceeds 1.5x this (SB3's ``target_kl``); None = never. Updates move the policy by
            an approximate KL of 0.25-1.0 without it; 0.02 helped the showcase world's main job (SR@15
            0.813 / AT 4.71 / hDCG 0.486 against 0.798 / 5.29 / 0.421) but stopped the learning tests'
            small worlds from learning in 12k-20k steps, so it is not the default (BENCHMARKS.md).
        learn_slate_order: The policy orders the slate by its item logits, a Plackett-Luce draw (True),
            or recommends the ranker's top k as ranked, so that PPO learns only the choice among
            asking, probing and recommending (False; the slate then adds nothing to PPO's ratio).
        subprocess: Run each env in its own SubprocVecEnv worker process; None = when the machine has
            more than 2 cores.

    Raises:
        CRSError: A value of another type or out of its range (named).
    """

    n_steps: int | None = None
    batch_size: int = 256
    n_epochs: int = 10
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    hidden: int = 64
    embed_dim: int = 32
    train_embeddings: bool = False
    slate_entropy_scale: float | None = None
    target_kl: float | None = None
    learn_slate_order: bool = True
    subprocess: bool | None = None

    def __post_init__(self) -> None:
        check_field_types(self)  # a library caller's 2.0 or "32" is named here, not deep in training
        for name, *_ in _LOWER_BOUNDS:  # policy.json's 1e999 read as inf passed every bound
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise CRSError(f"{type(self).__name__}.{name}={value} must be a finite number")
        for name, lowest, inclusive in _LOWER_BOUNDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not (value >= lowest if inclusive else value > lowest):
                raise CRSError(f"{name}={value} must be {'>=' if inclusive else '>'} {lowest}")
        for name in ("gamma", "gae_lambda"):
            if getattr(self, name) > 1:
                raise CRSError(f"{name}={getattr(self, name)} must be <= 1")

    def resolved(self, n_envs: int) -> dict[str, Any]:
        """The machine-dependent defaults for `n_envs` envs: n_steps and subprocess when None."""
        return {
            "n_steps": self.n_steps or max(ROLLOUT_STEPS // n_envs, MIN_ROLLOUT_STEPS_PER_ENV),
            "subprocess": (os.cpu_count() or 1) >= MIN_CORES_FOR_WORKERS
            if self.subprocess is None
            else self.subprocess,
        }


@dataclass(frozen=True)
class RLConfig(PPOConfig):
    """Everything that shapes the policy and its training (stored flat in policy.json's ``rl``).

    Attributes (besides `PPOConfig`'s; its None defaults are resolved for `n_envs`):
        n_envs: Parallel training envs.
        persona_attention: Persona attention switch (ablation).
        aspect_attention: Aspect attention switch (ablation).
        wrapper: Candidate-set sizes of the SB3 wrapper.
    """

    n_envs: int = 8
    persona_attention: bool = True
    aspect_attention: bool = True
    wrapper: WrapperConfig = field(default_factory=WrapperConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_envs < 1:
            raise CRSError(f"n_envs={self.n_envs} must be >= 1")
        for name, value in self.resolved(self.n_envs).items():
            object.__setattr__(self, name, value)  # frozen: resolve the None defaults once

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        data = dict(data)
        wrapper = WrapperConfig(**data.pop("wrapper", {}))
        return cls(**data, wrapper=wrapper)


@dataclass(frozen=True)
class ImitationConfig:
    """The ``imitation`` block of a training config: which rule to copy and how much.

    Attributes:
        rule: A rule policy name (`policies.rules.make_rule_policy`), run with the training ranker.
        steps: Demonstration turns collected from the rule (whole conversations, at least this many).
        epochs: Passes over the demonstrations (20: on the showcase world 8,192 turns of ask-7 then give
            92% agreement and the rule's test SR@15, BENCHMARKS.md).
        batch_size: Minibatch size.
        learning_rate: The optimizer's step size while copying; None: PPO's learning rate. A small PPO
            rate (2e-4, kept gentle after a copy) leaves the copy far from its rule: on MCMIPL Yelp*
            ask-7's copy agreed on 65% of held-out turns at 2e-4 and 82% at 3e-3 (BENCHMARKS.md).

    Raises:
        CRSError: An unknown rule, a number below 1, or a learning rate outside (0, 1) (named).
    """

    rule: str = "ask-7"
    steps: int = 8192
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        make_rule_policy(self.rule, None)  # CRSError names an unknown rule and the choices
        for name in ("steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CRSError(f"imitation.{name}={value!r} must be an integer >= 1")
        rate = self.learning_rate
        is_number = isinstance(rate, (int, float)) and not isinstance(rate, bool)
        if rate is not None and not (is_number and 0 < rate < 1):
            raise CRSError(
                f"imitation.learning_rate={rate!r} must be a number between 0 and 1 (e.g. 0.003), "
                "or left out to use PPO's learning rate"
            )
