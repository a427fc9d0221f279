"""`SlateDistribution`: a choice (ask / probe / recommend) and, for "recommend", a Plackett–Luce slate.

Actions are ``[choice, slot_1 .. slot_k]`` (the SB3 wrapper's MultiDiscrete layout). The choice is
categorical over the masked choice logits; the slate is a Plackett–Luce draw of k distinct items from
the masked item logits, sampled exactly by Gumbel-top-k. The log-probability is
``log p(choice) + [choice = recommend] · log PL(slate)``; deterministic actions are the arg-max choice
and the top-k items. Masked logits are set to -1e8 (not -inf, which yields NaNs); slate positions that
hold a masked item (fewer than k valid items) are padding and add nothing to the log-probability.

With ``learn_order=False`` the slate is the first k item slots (the wrapper fills them in the
ranker's order, best first) and only the choice is random: its log-probability and entropy are the
choice's alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from torch import nn

MASKED_LOGIT = -1e8


class SlateDistribution(MaskableDistribution):
    """Categorical choice × Plackett–Luce slate, with action masks.

    Args:
        n_choices: Number of choices C (the recommend choice is the last).
        n_items: Candidate items N the slate is drawn from.
        slate_size: k.
        slate_entropy_scale: Weight of the slate's entropy term (default 1/k, so the slate's ≈ k·log N
            entropy does not swamp the choice's).
        learn_order: Draw the slate from the item logits (True) or show the first k slots (False).
    """

    def __init__(
        self,
        n_choices: int,
        n_items: int,
        slate_size: int,
        slate_entropy_scale: float | None = None,
        learn_order: bool = True,
    ):
        super().__init__()
        self.n_choices = n_choices
        self.n_items = n_items
        self.slate_size = slate_size
        self.recommend = n_choices - 1
        self.slate_entropy_scale = 1.0 / slate_size if slate_entropy_scale is None else slate_entropy_scale
        self.learn_order = learn_order
        self.choice_logits: torch.Tensor | None = None
        self.item_logits: torch.Tensor | None = None
        self.choice_mask: torch.Tensor | None = None
        self.item_mask: torch.Tensor | None = None

    # ------------------------------------------------------------------------------- construction
    def proba_distribution_net(self, *args: Any, **kwargs: Any) -> nn.Module:
        """The encoder already outputs the logits: an identity head."""
        return nn.Identity()

    def proba_distribution(self, action_logits: torch.Tensor) -> SlateDistribution:
        """Set the logits, shape (B, C + N): choice logits then item logits."""
        self.choice_logits = action_logits[:, : self.n_choices]
        self.item_logits = action_logits[:, self.n_choices : self.n_choices + self.n_items]
        self.choice_mask = None
        self.item_mask = None
        return self

    def apply_masking(self, masks: np.ndarray | torch.Tensor | None) -> None:
        """Masks of shape (B, C + k·N) (bool numpy in rollouts, float tensor in training), or None."""
        if masks is None:
            self.choice_mask = None
            self.item_mask = None
            return
        assert self.choice_logits is not None
        device = self.choice_logits.device
        mask = torch.as_tensor(masks, device=device).reshape(self.choice_logits.shape[0], -1) > 0.5
        self.choice_mask = mask[:, : self.n_choices]
        self.item_mask = mask[:, self.n_choices : self.n_choices + self.n_items]

    def _masked(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.choice_logits is not None and self.item_logits is not None
        choice, items = self.choice_logits, self.item_logits
        if self.choice_mask is not None:
            choice = torch.where(self.choice_mask, choice, torch.full_like(choice, MASKED_LOGIT))
        if self.item_mask is not None:
            items = torch.where(self.item_mask, items, torch.full_like(items, MASKED_LOGIT))
        return choice, items

    # ------------------------------------------------------------------------------------ actions
    def sample(self) -> torch.Tensor:
        choice_logits, item_logits = self._masked()
        choice = torch.distributions.Categorical(logits=choice_logits).sample()
        if not self.learn_order:
            return torch.cat([choice[:, None], self._first_slots(choice)], dim=1)
        uniform = torch.rand_like(item_logits).clamp_(1e-10, 1.0 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform))
        slate = torch.topk(item_logits + gumbel, self.slate_size, dim=1).indices
        return torch.cat([choice[:, None], slate], dim=1).long()

    def mode(self) -> torch.Tensor:
        choice_logits, item_logits = self._masked()
        choice = choice_logits.argmax(dim=1)
        if not self.learn_order:
            return torch.cat([choice[:, None], self._first_slots(choice)], dim=1)
        slate = torch.topk(item_logits, self.slate_size, dim=1).indices
        return torch.cat([choice[:, None], slate], dim=1).long()

    def _first_slots(self, choice: torch.Tensor) -> torch.Tensor:
        """Slots 0..k-1 for every row, shape (B, k): the ranker's top k (masked slots the wrapper drops)."""
        return torch.arange(self.slate_size, device=choice.device).expand(choice.shape[0], -1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log p(choice) + [recommend] · Σ_j (l[s_j] − logsumexp(l over items not in s_<j)), shape (B,)."""
        choice_logits, item_logits = self._masked()
        actions = actions.long()
        choice = actions[:, 0]
        slate = actions[:, 1 : 1 + self.slate_size]
        choice_lp = torch.log_softmax(choice_logits, dim=1).gather(1, choice[:, None]).squeeze(1)
        if not self.learn_order:
            return choice_lp
        return choice_lp + (choice == self.recommend).float() * self._slate_log_prob(item_logits, slate)

    def _slate_log_prob(self, item_logits: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
        B, k = slate.shape
        picked = torch.zeros(B, k, self.n_items, device=item_logits.device, dtype=torch.bool)
        picked.scatter_(2, slate[:, :, None], True)
        # taken[b, j, n]: item n was placed before position j
        taken = torch.cumsum(picked.int(), dim=1) - picked.int()
        remaining = item_logits[:, None, :].masked_fill(taken > 0, float("-inf"))
        lse = torch.logsumexp(remaining, dim=2)  # (B, k)
        chosen = item_logits.gather(1, slate)  # (B, k)
        valid = torch.ones_like(chosen, dtype=torch.bool)
        if self.item_mask is not None:
            valid = self.item_mask.gather(1, slate)
        return ((chosen - lse) * valid.float()).sum(dim=1)

    def entropy(self) -> torch.Tensor:
        """Choice entropy + p(recommend) · scale · k · H(first slate position), shape (B,)."""
        choice_logits, item_logits = self._masked()
        choice_lp = torch.log_softmax(choice_logits, dim=1)
        choice_entropy = -(choice_lp.exp() * choice_lp).sum(dim=1)
        if not self.learn_order:
            return choice_entropy
        item_lp = torch.log_softmax(item_logits, dim=1)
        item_entropy = -(item_lp.exp() * item_lp).sum(dim=1)
        p_recommend = choice_lp[:, self.recommend].exp()
        return choice_entropy + p_recommend * self.slate_entropy_scale * self.slate_size * item_entropy

    def actions_from_params(self, action_logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)
