"""A user's tag profile: how much an item's aspects look like those of the items the user already chose.

For each item v, x_v is its row of the item x aspect matrix with each aspect a weighted by its inverse
document frequency, log((I + 1) / (n_a + 1)) (n_a: the items holding a), then L2-normalised. A user's
profile is the sum of x_v over their pre-training items (below), L2-normalised, and

    profile score(u, v) = weight · cos(profile_u, x_v)       in [0, weight]

(0 for a user without pre-training items or an item without aspects). No training and no labels: the
catalogue alone, built in well under a second on LastFM* and Yelp*.

The user's items are those `crs pretrain` learns from with the same seed (`pretrain_split`): the
``train`` split where there is one (LastFM, LastFM*, the persona world), else (Yelp*) ``valid`` minus
the seeded hold-out that pre-training validates on. So the hold-out stays unseen by the profile as by
the ranker, and `crs train` converses only about it there (`profile_holdout`).

It is the content half of a recommender, and it knows what a learned embedding does not: the items
never seen in pre-training (38% of LastFM* test targets), which it scores through their aspects like
any other. Offline it ranks far better than the pre-trained persona ranker on LastFM* (test Recall@10
0.053 against 0.018, cold-item Recall@10 0.042 against 0.0004; BENCHMARKS.md, "Tag profiles"). In a
conversation it enters a persona ranker's item score as a small per-user term
(`PersonaRanker.with_profile`, a ranker name's ``+profile``): with the default `PROFILE_WEIGHT` it
orders the items that the dialogue rules leave tied, so the slates and the splitting questions favour
what looks like the user's history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from policies.pretrain.config import TrainConfig
from policies.pretrain.graph import pretrain_split
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError

DEFAULT_SPLIT = TrainConfig()
"""Whose pre-training split a profile follows by default: `crs pretrain`'s default seed and hold-out."""

PROFILE_WEIGHT: float = 0.1
"""The profile score's weight in a persona ranker's item score (`PersonaRanker.with_profile`).

Chosen on LastFM*'s valid split with ask-7 over ``uniform+profile+split`` (1,000 conversations;
BENCHMARKS.md, "Tag profiles"): weights 0.01, 0.03 and 0.1 tie, each +0.011 SR@15 over no profile
(measured with an earlier scratch normalisation; this one gives 0.997 at 0.1 there).
(Yelp*'s valid split cannot choose it: its profiles hold the valid targets.) Larger weights hurt: the
profile then outweighs the dialogue, and the softmax that the splitting questions read concentrates on
a few items (weight 1 on LastFM* test: −0.18)."""


@dataclass(frozen=True, eq=False)
class ContentProfile:
    """Every user's tag profile over one catalogue (module docstring).

    Attributes:
        users: Each user's profile, L2-normalised rows (zero: no pre-training items), CSR of shape (U, A).
        items: Each item's IDF-weighted aspects, L2-normalised, transposed: CSR of shape (A, I).
        weight: What the cosine is multiplied by, >= 0.
    """

    users: sp.csr_matrix
    items: sp.csr_matrix
    weight: float = PROFILE_WEIGHT

    def __post_init__(self) -> None:
        if not (np.isfinite(self.weight) and self.weight >= 0.0):
            raise CRSError(
                f"profile weight {self.weight!r} must be a finite number >= 0, e.g. {PROFILE_WEIGHT}"
            )
        if self.users.shape[1] != self.items.shape[0]:
            raise CRSError(
                f"profile users {self.users.shape} and items {self.items.shape} disagree on the aspects"
            )

    @classmethod
    def of(
        cls,
        catalog: Catalog,
        weight: float = PROFILE_WEIGHT,
        seed: int = DEFAULT_SPLIT.seed,
        holdout_fraction: float = DEFAULT_SPLIT.holdout_fraction,
        holdout_unit: str = DEFAULT_SPLIT.holdout_unit,
    ) -> ContentProfile:
        """The profiles of `catalog`'s users from the interactions `crs pretrain` with `seed`,
        `holdout_fraction` and `holdout_unit` learns from (module docstring)."""
        n_items = catalog.n_items
        holds = sp.csr_matrix(catalog.item_aspects, dtype=np.float64)
        holds.data[:] = 1.0
        holders = np.diff(catalog.aspect_items.indptr)  # items per aspect
        idf = np.log((n_items + 1.0) / (holders + 1.0))
        items = _normalised_rows(holds @ sp.diags(idf))
        chosen = pretrain_split(catalog, seed, holdout_fraction, holdout_unit).train.by_user(
            catalog.n_users, n_items
        )
        chosen.data[:] = 1.0
        users = _normalised_rows(chosen @ items)
        return cls(users, sp.csr_matrix(items.T), float(weight))

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    def scores(self, users: np.ndarray) -> np.ndarray:
        """weight · cos(profile_u, x_v) of every item for each of `users` (shape (b,), int64), float64 of
        shape (b, I).

        Raises:
            CRSError: A user outside the profiles.
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if users.size and not (users.min() >= 0 and users.max() < self.n_users):
            raise CRSError(f"users {users.tolist()} outside [0, {self.n_users}) of the profiles")
        out: np.ndarray = (self.users[users] @ self.items).toarray()
        out *= self.weight
        return out


def profile_holdout(
    catalog: Catalog, seed: int = DEFAULT_SPLIT.seed, holdout_fraction: float = DEFAULT_SPLIT.holdout_fraction
) -> Interactions | None:
    """The ``valid`` interactions a profile of `catalog` (`ContentProfile.of`, same seed and fraction)
    does not hold, when it is built from ``valid`` (Yelp*); None when it is built from ``train``, so
    that all of ``valid`` is unseen."""
    split = pretrain_split(catalog, seed, holdout_fraction)
    return split.valid if split.train_split == "valid" else None


def _normalised_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """`matrix` (CSR) with every nonzero row scaled to unit L2 norm."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)
