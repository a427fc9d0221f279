"""The user–item–aspect graph that pre-training propagates over, and the splits it is trained on.

Node ids are global: users ``[0, U)``, items ``[U, U + I)``, aspects ``[U + I, U + I + A)``.
Edges are directed ``source -> target`` (the target aggregates its sources, as KGAT's head node
aggregates its tails) and typed by relation:

==========  =================  ======================================
relation    direction          meaning
==========  =================  ======================================
0           user -> item       the user interacted with the item
1           item -> user       inverse of 0
2           aspect -> item     the item has the aspect
3           item -> aspect     inverse of 2
==========  =================  ======================================

Only interactions of the pre-training split enter the graph: ``train`` for LastFM / LastFM* and the
persona world, ``valid`` for Yelp* (which has no train split; the artifact config flags it). When
the pre-training split is also the only source of validation (Yelp*), a seeded per-user slice of it
is held out for early stopping and never enters the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError

RELATIONS: tuple[str, ...] = ("user->item", "item->user", "aspect->item", "item->aspect")
N_RELATIONS = len(RELATIONS)


@dataclass(frozen=True)
class PretrainData:
    """The interactions pre-training learns from and validates on.

    Attributes:
        train: Interactions that build the graph and the loss.
        valid: Interactions for per-epoch validation (never in the graph).
        train_split: Name of the catalogue split ``train`` came from ("train", or "valid" for Yelp*).
        valid_source: How ``valid`` was made: "valid" (the catalogue's valid split) or
            "holdout of <split>" (a seeded per-user slice of the pre-training split).
        holdout_fraction: Fraction of each user's pre-training interactions held out (0 if none).
    """

    train: Interactions
    valid: Interactions
    train_split: str
    valid_source: str
    holdout_fraction: float


def pretrain_data(catalog: Catalog, rng: np.random.Generator, holdout_fraction: float = 0.1) -> PretrainData:
    """Choose the pre-training and validation interactions of `catalog`.

    Uses ``catalog.pretrain_split`` for training. Validation is the catalogue's ``valid`` split when
    training uses ``train``; otherwise (Yelp*: train absent) a seeded slice of ``holdout_fraction``
    of each user's pre-training interactions (users with at least 2 of them) is held out.

    Args:
        catalog: The catalogue.
        rng: Randomness for the hold-out slice.
        holdout_fraction: Fraction held out when there is no separate validation split, in (0, 1).

    Returns:
        The chosen interactions.
    """
    split = catalog.pretrain_split
    source = catalog.split(split)
    if len(source) == 0:
        raise CRSError(f"{catalog.name}: pre-training split {split!r} is empty; nothing to learn from")
    if split == "train" and "valid" in catalog.splits:
        return PretrainData(source, catalog.split("valid"), split, "valid", 0.0)
    if not 0.0 < holdout_fraction < 1.0:
        raise CRSError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction}")
    order = rng.permutation(len(source))
    users = source.users[order]
    # Rank of each interaction within its user's (shuffled) list; hold out the first ceil-ish share.
    by_user = np.argsort(users, kind="stable")
    sorted_users = users[by_user]
    starts = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.empty(len(users), dtype=np.int64)
    rank[by_user] = np.arange(len(users)) - starts
    counts = np.bincount(users, minlength=catalog.n_users)
    n_hold = np.floor(counts * holdout_fraction).astype(np.int64)
    n_hold[(counts >= 2) & (n_hold == 0)] = 1
    held = rank < n_hold[users]
    idx_hold, idx_keep = np.sort(order[held]), np.sort(order[~held])

    def take(idx: np.ndarray) -> Interactions:
        personas = None if source.personas is None else source.personas[idx]
        return Interactions(source.users[idx], source.items[idx], personas)

    return PretrainData(take(idx_keep), take(idx_hold), split, f"holdout of {split}", holdout_fraction)


def seeded_split(
    catalog: Catalog, seed: int, holdout_fraction: float
) -> tuple[np.random.Generator, int, PretrainData]:
    """A pre-training run's numpy generator, its torch seed and its split, in the order
    `policies.pretrain.train.pretrain` draws them from `seed`."""
    rng = np.random.default_rng(seed)
    torch_seed = int(rng.integers(2**62))
    return rng, torch_seed, pretrain_data(catalog, rng, holdout_fraction)


def pretrain_split(catalog: Catalog, seed: int, holdout_fraction: float = 0.1) -> PretrainData:
    """The interactions `pretrain` with this seed and hold-out fraction trains and validates on."""
    return seeded_split(catalog, seed, holdout_fraction)[2]


@dataclass(frozen=True)
class PretrainGraph:
    """The typed, directed user–item–aspect graph.

    Attributes:
        n_users: Number of user nodes U.
        n_items: Number of item nodes I.
        n_aspects: Number of aspect nodes A.
        edge_index: Source and target global node ids, shape (2, E), int64.
        edge_type: Relation of each edge (see module docstring), shape (E,), int64.
    """

    n_users: int
    n_items: int
    n_aspects: int
    edge_index: np.ndarray
    edge_type: np.ndarray

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items + self.n_aspects

    @property
    def item_offset(self) -> int:
        return self.n_users

    @property
    def aspect_offset(self) -> int:
        return self.n_users + self.n_items


def build_graph(catalog: Catalog, interactions: Interactions) -> PretrainGraph:
    """Build the graph from `interactions` (the pre-training ones only) and the item–aspect matrix.

    Duplicate (user, item) interactions become one edge.

    Args:
        catalog: The catalogue (sizes and item aspects).
        interactions: The pre-training interactions.

    Returns:
        The graph with 2 * (#distinct user-item pairs + #item-aspect pairs) edges.
    """
    U, I, A = catalog.n_users, catalog.n_items, catalog.n_aspects
    ui = interactions.by_user(U, I).tocoo()
    ia = catalog.item_aspects.tocoo()
    users, items = ui.row.astype(np.int64), ui.col.astype(np.int64) + U
    its, aspects = ia.row.astype(np.int64) + U, ia.col.astype(np.int64) + U + I
    src = np.concatenate([users, items, aspects, its])
    dst = np.concatenate([items, users, its, aspects])
    rel = np.concatenate(
        [
            np.full(users.size, 0, dtype=np.int64),
            np.full(users.size, 1, dtype=np.int64),
            np.full(its.size, 2, dtype=np.int64),
            np.full(its.size, 3, dtype=np.int64),
        ]
    )
    return PretrainGraph(U, I, A, np.stack([src, dst]), rel)


def interaction_matrix(interactions: Interactions, n_users: int, n_items: int) -> sp.csr_matrix:
    """Boolean user x item CSR matrix of `interactions`, shape (n_users, n_items)."""
    return interactions.by_user(n_users, n_items)


def spectral_embedding(
    graph: PretrainGraph, dim: int, rng: np.random.Generator, iterations: int = 8
) -> np.ndarray:
    """Smooth spectral coordinates of every node, to initialise the layer-0 embeddings.

    Subspace iteration on ``M = (I + D^{-1/2} A D^{-1/2}) / 2`` of the undirected graph (the shift
    keeps M's spectrum in [0, 1], so the bipartite graph's negative eigenvalues do not compete);
    the top-`dim` eigenvectors, scaled by their eigenvalues, then to a 0.1 standard deviation.

    Args:
        graph: The pre-training graph.
        dim: Embedding dimension d.
        rng: Randomness for the starting subspace.
        iterations: Subspace iterations.

    Returns:
        Node coordinates, shape (N, d), float32.
    """
    n = graph.n_nodes
    src, dst = graph.edge_index
    adj = sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    norm = sp.diags(inv) @ adj @ sp.diags(inv)
    k = min(dim, n)
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    for _ in range(iterations):
        q, _ = np.linalg.qr(0.5 * (q + norm @ q))
    small = q.T @ (0.5 * (q + norm @ q))
    values, vectors = np.linalg.eigh(0.5 * (small + small.T))
    order = np.argsort(-values)
    coords = (q @ vectors[:, order]) * np.maximum(values[order], 0.0)
    out = np.zeros((n, dim))
    out[:, :k] = coords
    std = out.std()
    return (out * (0.1 / std if std > 0 else 1.0)).astype(np.float32)


def kmeans(points: np.ndarray, n_clusters: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Spherical k-means (cosine) with k-means++ seeding.

    Args:
        points: Shape (n, d).
        n_clusters: c.
        rng: Randomness for the seeding.
        iterations: Lloyd iterations.

    Returns:
        Cluster of each point, shape (n,), int64.
    """
    x = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    n = x.shape[0]
    centers = [x[int(rng.integers(n))]]
    for _ in range(1, n_clusters):
        dist = 1.0 - np.max(x @ np.stack(centers).T, axis=1)
        dist = np.maximum(dist, 0.0)
        total = dist.sum()
        pick = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centers.append(x[pick])
    c = np.stack(centers)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(x @ c.T, axis=1)
        for j in range(n_clusters):
            members = x[labels == j]
            if members.shape[0]:
                mean = members.sum(axis=0)
                c[j] = mean / max(np.linalg.norm(mean), 1e-12)
    return labels
