"""Baseline rankers for the pre-training benchmark: popularity and MF/BPR of the same dimension.

UNICORN's TransE embeddings are read by `policies.baseline_rankers.load_embedding_pickle` (a restricted
unpickler).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from policies.pretrain.metrics import evaluation_users, rank_metrics
from simulators.catalog import Interactions

log = logging.getLogger(__name__)


def popularity_scores(train: Interactions, n_items: int) -> np.ndarray:
    """Training-interaction count of every item, shape (I,), float64."""
    return np.bincount(train.items, minlength=n_items).astype(np.float64)


@dataclass(frozen=True)
class MFResult:
    """A trained MF/BPR model.

    Attributes:
        user: User factors, shape (U, d).
        item: Item factors, shape (I, d).
        epochs: Epochs run (including the patience tail).
        best_epoch: Epoch of the kept weights (1-based).
        seconds: Training wall time.
    """

    user: np.ndarray
    item: np.ndarray
    epochs: int
    best_epoch: int
    seconds: float

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for `users`, shape (b, I)."""
        return self.user[users] @ self.item.T


def train_mf_bpr(
    train: Interactions,
    valid: Interactions,
    n_users: int,
    n_items: int,
    rng: np.random.Generator,
    dim: int = 64,
    epochs: int = 60,
    batch_size: int = 2048,
    lr: float = 5e-3,
    l2: float = 1e-4,
    patience: int = 5,
    max_valid_users: int | None = 2000,
) -> MFResult:
    """Matrix factorisation with the BPR loss (one uniform negative per positive).

    Early-stops on validation NDCG@10 (train items excluded), keeping the best epoch's factors.

    Args:
        train: Training interactions.
        valid: Validation interactions.
        n_users: U.
        n_items: I.
        rng: Randomness for initial weights, shuffling and negatives.
        dim: Factor dimension d.
        epochs: Maximum epochs.
        batch_size: Positives per step.
        lr: Adam learning rate.
        l2: L2 weight on the factors of each batch (per example).
        patience: Epochs without improvement before stopping.
        max_valid_users: Validation users sampled (None = all).

    Returns:
        The best factors.
    """
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    user = nn.Parameter(torch.randn(n_users, dim, generator=gen) * 0.1)
    item = nn.Parameter(torch.randn(n_items, dim, generator=gen) * 0.1)
    opt = torch.optim.Adam([user, item], lr=lr)
    exclude = train.by_user(n_users, n_items)
    truth = valid.by_user(n_users, n_items)
    val_users = evaluation_users(truth, max_valid_users, rng)
    best, best_state, best_epoch, bad, epoch = -1.0, None, 0, 0, 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train))
        for lo in range(0, order.size, batch_size):
            idx = order[lo : lo + batch_size]
            u = torch.as_tensor(train.users[idx])
            pos = torch.as_tensor(train.items[idx])
            neg = torch.as_tensor(rng.integers(0, n_items, size=idx.size))
            eu, ep, en = user[u], item[pos], item[neg]
            diff = (eu * ep).sum(-1) - (eu * en).sum(-1)
            loss = -nn.functional.logsigmoid(diff).mean()
            loss = loss + l2 * (eu.pow(2).sum() + ep.pow(2).sum() + en.pow(2).sum()) / idx.size
            opt.zero_grad()
            loss.backward()
            opt.step()
        U, V = user.detach().numpy(), item.detach().numpy()

        def score(b: np.ndarray, U: np.ndarray = U, V: np.ndarray = V) -> np.ndarray:
            return U[b] @ V.T

        ndcg = rank_metrics(score, exclude, truth, val_users).ndcg
        log.debug("MF epoch %d: valid NDCG@10 %.4f", epoch, ndcg)
        if ndcg > best:
            best, best_epoch, bad = ndcg, epoch, 0
            best_state = (U.copy(), V.copy())
        else:
            bad += 1
            if bad >= patience:
                break
    assert best_state is not None
    return MFResult(best_state[0], best_state[1], epoch, best_epoch, time.perf_counter() - start)
