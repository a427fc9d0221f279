"""Top-k ranking metrics over all items, with the user's training items excluded.

Recall@k = |top-k ∩ held-out| / |held-out|; NDCG@k = DCG@k / IDCG@k with binary gains,
DCG = Σ_{r=1..k} hit_r / log2(r + 1) and IDCG the DCG of min(|held-out|, k) hits at the top.
Both are averaged over the users that have at least one held-out item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps user ids (shape (b,)) to scores of every item (shape (b, I)); higher is better."""


@dataclass(frozen=True)
class RankingMetrics:
    """Averages over evaluated users.

    Attributes:
        recall: Mean Recall@k.
        ndcg: Mean NDCG@k.
        k: Cut-off.
        n_users: Users evaluated.
    """

    recall: float
    ndcg: float
    k: int
    n_users: int


def evaluation_users(
    truth: sp.csr_matrix, max_users: int | None, rng: np.random.Generator | None
) -> np.ndarray:
    """Users with held-out items, optionally a seeded sample of `max_users` of them (sorted)."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if max_users is not None and users.size > max_users:
        if rng is None:
            raise ValueError("sampling evaluation users needs an rng")
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return users


def rank_metrics(
    score_fn: ScoreFn,
    exclude: sp.csr_matrix,
    truth: sp.csr_matrix,
    users: np.ndarray,
    k: int = 10,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> RankingMetrics:
    """Recall@k and NDCG@k over all items.

    Args:
        score_fn: Scores of every item for a batch of users.
        exclude: User x item matrix of items never ranked for that user (training items),
            shape (U, I).
        truth: User x item matrix of held-out items, shape (U, I).
        users: Users to evaluate, shape (n,); each must have a held-out item.
        k: Cut-off.
        batch_size: Users scored at once.
        on_batch: Called with the number of users scored so far after each batch (progress).

    Returns:
        The averaged metrics.
    """
    exclude = sp.csr_matrix(exclude)
    truth = sp.csr_matrix(truth)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    recall_sum = ndcg_sum = 0.0
    for lo in range(0, users.size, batch_size):
        batch = users[lo : lo + batch_size]
        scores = np.array(score_fn(batch), dtype=np.float64, copy=True)
        ex = exclude[batch].tocoo()
        scores[ex.row, ex.col] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)  # (b, k) best first
        t = truth[batch]
        hits = np.asarray(t[np.arange(batch.size)[:, None], top].todense(), dtype=bool)
        n_true = np.diff(t.indptr)
        recall_sum += float((hits.sum(axis=1) / n_true).sum())
        dcg = (hits * discounts).sum(axis=1)
        ndcg_sum += float((dcg / ideal[np.minimum(n_true, k) - 1]).sum())
        if on_batch is not None:
            on_batch(lo + batch.size)
    n = max(int(users.size), 1)
    return RankingMetrics(recall_sum / n, ndcg_sum / n, k, int(users.size))
