"""`RLConfig`: the hyper-parameters of the graph RL policy and of MaskablePPO (stored in policy.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from envs.sb3_wrapper import WrapperConfig


@dataclass(frozen=True)
class RLConfig:
    """Hyper-parameters of the policy and of MaskablePPO.

    Attributes:
        n_envs: Parallel training envs.
        n_steps: Rollout steps per env between updates.
        batch_size: PPO minibatch size.
        n_epochs: PPO epochs per update.
        learning_rate: Adam learning rate.
        gamma: Discount.
        gae_lambda: GAE λ.
        clip_range: PPO clip range.
        ent_coef: Entropy bonus.
        vf_coef: Value loss weight.
        hidden: Encoder width.
        embed_dim: Embedding width when no pre-trained embeddings are given.
        persona_attention: Persona attention switch (ablation).
        aspect_attention: Aspect attention switch (ablation).
        train_embeddings: Fine-tune the embedding tables.
        slate_entropy_scale: Weight of the slate entropy (None = 1/k).
        subprocess: Run the envs in worker processes (SubprocVecEnv) instead of in-process.
        wrapper: Candidate-set sizes of the SB3 wrapper.
    """

    n_envs: int = 8
    n_steps: int = 64
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    hidden: int = 64
    embed_dim: int = 32
    persona_attention: bool = True
    aspect_attention: bool = True
    train_embeddings: bool = False
    slate_entropy_scale: float | None = None
    subprocess: bool = False
    wrapper: WrapperConfig = field(default_factory=WrapperConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        data = dict(data)
        wrapper = WrapperConfig(**data.pop("wrapper", {}))
        return cls(**data, wrapper=wrapper)
