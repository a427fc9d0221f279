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
is held out for early stopping and never enters the graph: single interactions, or (`HOLDOUT_UNITS`
"group", MCMIPL's Yelp*) whole target groups of the catalogue's MCMIPL release, so that conversations
about held-out groups are leak-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.mcmipl import find_release

HOLDOUT_UNITS: tuple[str, ...] = ("interaction", "group")
"""What a hold-out slice is made of: single interactions, or whole target groups of an MCMIPL release."""

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
            "holdout of <split>" (a seeded per-user slice of the pre-training split; "holdout of <split>,
            whole target groups" when it is made of groups).
        holdout_fraction: Fraction of each user's pre-training interactions held out (0 if none).
        holdout_unit: What the hold-out is made of (`HOLDOUT_UNITS`).
    """

    train: Interactions
    valid: Interactions
    train_split: str
    valid_source: str
    holdout_fraction: float
    holdout_unit: str = "interaction"


def pretrain_data(
    catalog: Catalog,
    rng: np.random.Generator,
    holdout_fraction: float = 0.1,
    holdout_unit: str = "interaction",
) -> PretrainData:
    """Choose the pre-training and validation interactions of `catalog`.

    Uses ``catalog.pretrain_split`` for training. Validation is the catalogue's ``valid`` split when
    training uses ``train``; otherwise (Yelp*: train absent) a seeded slice of ``holdout_fraction``
    of each user's pre-training interactions (users with at least 2 of them) is held out: single
    interactions, or with ``holdout_unit="group"`` whole target groups of the catalogue's MCMIPL release
    (`held_out_groups`).

    Args:
        catalog: The catalogue.
        rng: Randomness for the hold-out slice.
        holdout_fraction: Fraction held out when there is no separate validation split, in (0, 1).
        holdout_unit: "interaction" or "group" (`HOLDOUT_UNITS`).

    Returns:
        The chosen interactions.

    Raises:
        CRSError: An empty pre-training split, a fraction outside (0, 1), an unknown unit, or "group" for a
            catalogue that holds nothing out or has no MCMIPL release.
    """
    check_holdout_unit(catalog, holdout_unit)
    split = catalog.pretrain_split
    source = catalog.split(split)
    if len(source) == 0:
        raise CRSError(f"{catalog.name}: pre-training split {split!r} is empty; nothing to learn from")
    if split == "train" and "valid" in catalog.splits:
        return PretrainData(source, catalog.split("valid"), split, "valid", 0.0)
    if not 0.0 < holdout_fraction < 1.0:
        raise CRSError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction}")
    counts = np.bincount(source.users, minlength=catalog.n_users)
    n_hold = np.floor(counts * holdout_fraction).astype(np.int64)
    n_hold[(counts >= 2) & (n_hold == 0)] = 1
    if holdout_unit == "group":
        held = held_out_groups(catalog, source, split, n_hold, rng)
        source_name = f"holdout of {split}, whole target groups"
    else:
        order = rng.permutation(len(source))
        users = source.users[order]
        # Rank of each interaction within its user's (shuffled) list; hold out the first ceil-ish share.
        by_user = np.argsort(users, kind="stable")
        sorted_users = users[by_user]
        starts = np.searchsorted(sorted_users, sorted_users, side="left")
        rank = np.empty(len(users), dtype=np.int64)
        rank[by_user] = np.arange(len(users)) - starts
        held = np.zeros(len(source), dtype=np.bool_)
        held[order] = rank < n_hold[users]
        source_name = f"holdout of {split}"
    idx_hold, idx_keep = np.flatnonzero(held), np.flatnonzero(~held)

    def take(idx: np.ndarray) -> Interactions:
        personas = None if source.personas is None else source.personas[idx]
        return Interactions(source.users[idx], source.items[idx], personas)

    return PretrainData(take(idx_keep), take(idx_hold), split, source_name, holdout_fraction, holdout_unit)


def check_holdout_unit(catalog: Catalog, holdout_unit: str) -> None:
    """Refuse a hold-out unit that is unknown, or that `catalog` has no use for (it pre-trains on train
    and validates on its own valid split: nothing is held out).

    Raises:
        CRSError: Named, with the fix.
    """
    if holdout_unit not in HOLDOUT_UNITS:
        raise CRSError(f"holdout unit must be one of {', '.join(HOLDOUT_UNITS)}, got {holdout_unit!r}")
    if catalog.pretrain_split == "train" and "valid" in catalog.splits and holdout_unit != "interaction":
        raise CRSError(
            f"{catalog.name} pre-trains on train and validates on its valid split, so nothing is held "
            f"out: drop the {holdout_unit!r} hold-out unit (it is for Yelp*, which has no train split)"
        )


def held_out_groups(
    catalog: Catalog, source: Interactions, split: str, n_hold: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Which interactions of `source` to hold out, whole MCMIPL target groups at a time.

    The groups of `split` are visited in a seeded random order; a group is held out (every (user, item)
    pair it lists, all copies) while its user has fewer than ``n_hold[user]`` pairs held out and would
    keep at least one item for training. A pair can overshoot a user's share by one interaction.

    Args:
        catalog: A catalogue with an MCMIPL release (`simulators.mcmipl.find_release`).
        source: The pre-training split's interactions, n of them.
        split: Its name.
        n_hold: Interactions to hold out per user, shape (n_users,), int64.
        rng: Randomness for the order of the groups.

    Returns:
        The held-out mask over `source`, bool of shape (n,).
    """
    release = find_release(catalog)
    if release is None:
        raise CRSError(
            f"{catalog.name} has no MCMIPL target groups to hold out whole: use the 'interaction' hold-out "
            "unit (groups are for mcmipl_* datasets)"
        )
    groups = release.groups_of(split)
    n_items = catalog.n_items
    keys = source.users.astype(np.int64) * n_items + source.items
    distinct = np.bincount(np.unique(keys) // n_items, minlength=catalog.n_users)  # distinct items per user
    held_count = np.zeros(catalog.n_users, dtype=np.int64)
    held_keys: set[int] = set()
    for g in rng.permutation(len(groups)).tolist():
        user = int(groups.users[g])
        if held_count[user] >= n_hold[user]:
            continue
        new = {user * n_items + item for item in groups.targets(g)} - held_keys
        if held_count[user] + len(new) > distinct[user] - 1:
            continue
        held_keys |= new
        held_count[user] += len(new)
    return np.isin(keys, np.fromiter(held_keys, dtype=np.int64, count=len(held_keys)))


def seeded_split(
    catalog: Catalog, seed: int, holdout_fraction: float, holdout_unit: str = "interaction"
) -> tuple[np.random.Generator, int, PretrainData]:
    """A pre-training run's numpy generator, its torch seed and its split, in the order
    `policies.pretrain.train.pretrain` draws them from `seed`."""
    rng = np.random.default_rng(seed)
    torch_seed = int(rng.integers(2**62))
    return rng, torch_seed, pretrain_data(catalog, rng, holdout_fraction, holdout_unit)


def pretrain_split(
    catalog: Catalog, seed: int, holdout_fraction: float = 0.1, holdout_unit: str = "interaction"
) -> PretrainData:
    """The interactions `pretrain` with this seed and hold-out fraction and unit trains and validates on."""
    return seeded_split(catalog, seed, holdout_fraction, holdout_unit)[2]


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
