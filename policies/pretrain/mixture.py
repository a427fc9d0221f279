"""A label-free persona mixture fitted by EM: where `persona_init="mixture"` starts the persona slots.

Each of P global personas is a log-linear choice model over the items' aspects, the persona world's
own model family (`simulators.persona_world`: an item's utility is a weighted count of its aspects
plus its popularity):

    P(v | p) = softmax_v(w_p · x_v + b_v)      x_v the item's aspects (0/1, shape (A,)), b shared

and each user a mixture π_u over the P personas. EM on the pre-training interactions (u, v):

- E-step: responsibilities r_(u,v),p ∝ π_u,p P(v | p);
- M-step: π_u ∝ Σ_v r_(u,v) + 0.1, then `ADAM_STEPS` Adam steps on w, b (sampled-free softmax over all
  items; L2 on w).

It reads no persona label. On the persona world it names the persona of a training interaction in
0.94 of the cases, where the k-means clusters of the spectral item coordinates (`graph.kmeans`, the
"kmeans" start) name it in 0.61 (BENCHMARKS.md, "a persona start that knows the aspects").

Determinism: the initial w comes from a torch generator seeded by the caller's numpy generator; torch
runs single-threaded during pre-training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from simulators.catalog import Interactions

ITERATIONS: int = 200
"""EM iterations (the labels of the persona world's training interactions settle by about 150)."""

ADAM_STEPS: int = 10
"""Adam steps on the personas' weights per M-step."""

LEARNING_RATE: float = 0.05
"""Adam's learning rate for w and b."""

WEIGHT_L2: float = 1e-3
"""L2 on the personas' aspect weights w."""

MIXTURE_SMOOTHING: float = 0.1
"""Pseudo-count added to every persona of every user's mixture."""


@dataclass(frozen=True)
class PersonaMixture:
    """A fitted mixture.

    Attributes:
        log_item_probs: log P(v | p), shape (P, n_items), float64.
        user_mixture: π, shape (n_users, P), float64, rows sum to 1.
    """

    log_item_probs: np.ndarray
    user_mixture: np.ndarray

    def persona_of(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The most likely persona of each (user, item) pair, shape (n,), int64."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        joint = np.log(self.user_mixture[users]) + self.log_item_probs[:, items].T  # (n, P)
        return np.argmax(joint, axis=1).astype(np.int64)


def _sparse_tensor(matrix: sp.spmatrix) -> torch.Tensor:
    coo = sp.coo_matrix(matrix, dtype=np.float32)
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.as_tensor(coo.data)
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True).coalesce()


def fit_persona_mixture(
    item_aspects: sp.spmatrix,
    interactions: Interactions,
    n_users: int,
    n_personas: int,
    rng: np.random.Generator,
    iterations: int = ITERATIONS,
) -> PersonaMixture:
    """Fit the mixture (module docstring) by EM on `interactions`.

    Args:
        item_aspects: Item x aspect 0/1 matrix, shape (n_items, n_aspects).
        interactions: The pre-training interactions.
        n_users: Number of users (mixture rows).
        n_personas: P, the global personas.
        rng: Seeds the initial persona weights.
        iterations: EM iterations.

    Returns:
        The fitted `PersonaMixture`.
    """
    x = _sparse_tensor(item_aspects)  # (I, A)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    weights = (0.1 * torch.randn(n_personas, x.shape[1], generator=generator)).requires_grad_()
    bias = torch.zeros(x.shape[0], requires_grad=True)
    users = torch.as_tensor(np.array(interactions.users, dtype=np.int64))
    items = torch.as_tensor(np.array(interactions.items, dtype=np.int64))
    mixture = torch.full((n_users, n_personas), 1.0 / n_personas)
    optimiser = torch.optim.Adam([weights, bias], lr=LEARNING_RATE)

    def log_item_probs() -> torch.Tensor:
        return torch.log_softmax(torch.sparse.mm(x, weights.T).T + bias, dim=1)  # (P, I)

    for _ in range(iterations):
        with torch.no_grad():
            joint = torch.log(mixture[users]) + log_item_probs()[:, items].T  # (n, P)
            responsibilities = torch.softmax(joint, dim=1)
            mixture = torch.zeros_like(mixture).index_add_(0, users, responsibilities) + MIXTURE_SMOOTHING
            mixture = mixture / mixture.sum(dim=1, keepdim=True)
        for _ in range(ADAM_STEPS):
            optimiser.zero_grad()
            fit = (responsibilities * log_item_probs()[:, items].T).sum() / len(items)
            loss = -fit + WEIGHT_L2 * weights.pow(2).sum()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        final = log_item_probs()
    return PersonaMixture(
        log_item_probs=final.numpy().astype(np.float64), user_mixture=mixture.numpy().astype(np.float64)
    )
