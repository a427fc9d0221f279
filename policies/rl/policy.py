"""`SlatePolicy`: sb3-contrib's MaskableActorCriticPolicy with the persona × aspect encoder and a
Plackett–Luce slate distribution.

The features extractor (`PersonaAspectEncoder`) already outputs every action's logit and the value's
hidden state, so the "MLP extractor" only splits its output (`SplitLatent`), the action head is the
identity and the value head a linear layer. `_build` lets the parent build the stock networks, then
installs the `SlateDistribution` and rebuilds the optimizer over the trainable parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from policies.rl.distribution import SlateDistribution
from policies.rl.encoder import PersonaAspectEncoder
from simulators.errors import CRSError


class SplitLatent(nn.Module):
    """Splits the encoder output (B, n_logits + H) into (logits (B, n_logits), value hidden (B, H))."""

    def __init__(self, features_dim: int, n_logits: int) -> None:
        super().__init__()
        self.n_logits = n_logits
        self.latent_dim_pi = n_logits
        self.latent_dim_vf = features_dim - n_logits

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.n_logits]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(features[:, self.n_logits :])


class SlatePolicy(MaskableActorCriticPolicy):
    """Actor-critic over [choice, slot_1..slot_k] actions (the SB3 wrapper's layout).

    Args:
        observation_space: The wrapper's Dict observation space.
        action_space: ``MultiDiscrete([n_choices] + [n_items] * k)``.
        lr_schedule: Learning-rate schedule.
        slate_entropy_scale: Weight of the slate entropy (default 1/k).
        learn_slate_order: The policy orders the slate (True) or shows the ranker's top k (False).
        **kwargs: Passed to `MaskableActorCriticPolicy` (``features_extractor_kwargs`` carries the
            encoder's sizes and ablation switches).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.MultiDiscrete,
        lr_schedule: Schedule,
        slate_entropy_scale: float | None = None,
        learn_slate_order: bool = True,
        **kwargs: Any,
    ) -> None:
        nvec = [int(n) for n in getattr(action_space, "nvec", [])]
        if len(nvec) < 2 or len(set(nvec[1:])) != 1:
            raise CRSError(
                "SlatePolicy needs a MultiDiscrete([n_choices] + [n_items] * k) action space, "
                f"got {action_space}"
            )
        self.n_choices, self.n_items, self.slate_size = nvec[0], nvec[1], len(nvec) - 1
        self.slate_entropy_scale = slate_entropy_scale
        self.learn_slate_order = learn_slate_order
        kwargs.setdefault("features_extractor_class", PersonaAspectEncoder)
        kwargs.setdefault("ortho_init", False)
        kwargs.setdefault("net_arch", [])
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        latent = SplitLatent(self.features_dim, self.n_choices + self.n_items)
        self.mlp_extractor = latent  # type: ignore[assignment]  # SB3 wants an MlpExtractor; same interface

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        self.action_dist = SlateDistribution(
            self.n_choices, self.n_items, self.slate_size, self.slate_entropy_scale, self.learn_slate_order
        )
        self.action_net = nn.Identity()
        trainable = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_class(  # SB3's own _build makes the same call
            trainable,
            lr=lr_schedule(1),  # type: ignore[call-arg]  # SB3 types optimizer_class as type[Optimizer]
            **self.optimizer_kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["slate_entropy_scale"] = self.slate_entropy_scale
        data["learn_slate_order"] = self.learn_slate_order
        return data
