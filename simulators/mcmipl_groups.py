"""MCMIPL's rule for a multi-interest target group, for building the groups of a dataset it did not release.

MCMIPL (Zhang et al., WWW 2022; code ZYM6-6/MCMIPL) converses about fixed target groups ``[i, j]``,
one per interaction of a split (``UI_data/{train,test}.pkl``); the script that wrote them is not
published. Measured on its LastFM* release (docs/protocols/mcmipl.md, "Building target groups for a
dataset MCMIPL did not release"), every one of its 23,783 groups obeys:

- ``i`` is the interaction's item; ``j`` is an item of the same user's list in the same split, other
  than ``i``, that shares at least `MIN_SHARED` = 3 attributes with ``i`` (counted over all of the
  item's attributes, typed or not: MCMIPL's ``kg.G['item'][i]['belong_to']``). The count is the
  multiplicity of ``j`` in the list MCMIPL's env builds in ``get_sameatt_items`` (for each attribute
  of ``i``, the user's items having it, concatenated).
- ``j`` is drawn uniformly among those items (no preference for the larger overlap or the list
  position: measured);
- the group is ``[i, i]`` exactly when no such item exists.

`partner_candidates` computes those items for every interaction; `draw_partners` draws ``j`` from a
numpy `Generator`. `simulators.mcmipl.build_target_groups` turns them into `TargetGroups`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from simulators.errors import CRSError
from simulators.frozen import ReadOnlyWhenUnpickled, read_only_array

# Shared attributes a partner needs (measured on MCMIPL's LastFM* release: no exception in 23,783 groups).
MIN_SHARED = 3
# Pairs whose overlap is counted at once (bounds the row products' memory: ~ pairs x attributes per item).
_PAIR_CHUNK = 1 << 20


@dataclass(frozen=True)
class PartnerCandidates(ReadOnlyWhenUnpickled):
    """For each interaction of a split, the items that may complete its target group.

    Attributes:
        offsets: Interaction n's candidates are ``items[offsets[n]:offsets[n + 1]]``; shape (n + 1,), int64.
        items: Candidate items of all interactions, each interaction's in the order of the user's list
            in the split; shape (offsets[-1],), int64.
        shared: Attributes each candidate shares with its interaction's item, aligned with `items`;
            shape (offsets[-1],), int64.
    """

    offsets: np.ndarray
    items: np.ndarray
    shared: np.ndarray

    def __post_init__(self) -> None:
        for name in ("offsets", "items", "shared"):
            object.__setattr__(self, name, read_only_array(getattr(self, name), np.int64))
        if (
            self.offsets.ndim != 1
            or self.offsets.size == 0
            or self.offsets[0] != 0
            or np.any(np.diff(self.offsets) < 0)
            or self.items.shape != (int(self.offsets[-1]),)
            or self.shared.shape != self.items.shape
        ):
            raise CRSError(
                "PartnerCandidates: need offsets (n + 1,) from 0, non-decreasing, and items and shared of "
                f"shape (offsets[-1],); got {self.offsets.shape}, {self.items.shape}, {self.shared.shape}"
            )

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def counts(self) -> np.ndarray:
        """Candidates per interaction, shape (n,), int64 (0: the group will be ``[i, i]``)."""
        return np.diff(self.offsets)

    def of(self, index: int) -> np.ndarray:
        """Candidate items of interaction `index`, in list order, shape (k,), int64."""
        items: np.ndarray = self.items[self.offsets[index] : self.offsets[index + 1]]
        return items


def partner_candidates(
    item_aspects: sp.csr_matrix, users: np.ndarray, items: np.ndarray, *, min_shared: int = MIN_SHARED
) -> PartnerCandidates:
    """Per interaction, the items of its user's list sharing at least `min_shared` attributes with its item.

    Args:
        item_aspects: Item x attribute boolean CSR matrix, shape (n_items, n_attributes).
        users: User of each interaction of one split, shape (n,), int64.
        items: Item of each interaction, shape (n,), int64. A user's list is the user's interactions in
            this order.
        min_shared: Attributes a candidate must share (MCMIPL's release: `MIN_SHARED`).

    Returns:
        Per interaction, in the given order, the candidates in the order of the user's list. The
        interaction's own item is never a candidate (nor a repeat of it in the list).

    Raises:
        CRSError: `users` and `items` differ in shape, an item is outside `item_aspects`, or
            `min_shared` < 1.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.ndim != 1 or users.shape != items.shape:
        raise CRSError(f"partner_candidates: users {users.shape} and items {items.shape} must be 1-D, equal")
    if items.size and (items.min() < 0 or items.max() >= item_aspects.shape[0]):
        raise CRSError(
            f"partner_candidates: item ids must lie in [0, {item_aspects.shape[0]}) (the rows of "
            f"item_aspects); got {int(items.min())}..{int(items.max())}"
        )
    if min_shared < 1:
        raise CRSError(f"partner_candidates: min_shared must be at least 1, got {min_shared}")
    n = items.size
    order = np.argsort(users, kind="stable")  # each user's interactions together, in list order
    sorted_items = items[order]
    _, block_start, block_size = np.unique(users[order], return_index=True, return_counts=True)
    size = np.repeat(block_size, block_size)  # block size of every sorted position
    start = np.repeat(block_start, block_size)
    # Every ordered pair (p, q) of positions in one block: p repeated size[p] times, q over the block.
    left = np.repeat(np.arange(n, dtype=np.int64), size)
    right = np.arange(left.size, dtype=np.int64) - np.repeat(np.cumsum(size) - size, size) + start[left]
    keep = sorted_items[left] != sorted_items[right]
    left, right = left[keep], right[keep]
    counts_matrix = sp.csr_matrix(item_aspects, dtype=np.int32)
    shared = _shared_counts(counts_matrix, sorted_items[left], sorted_items[right])
    keep = shared >= min_shared
    left, right, shared = left[keep], right[keep], shared[keep]
    # Back to the caller's order: interaction order[p] owns the candidates of sorted position p.
    owner = order[left]
    regroup = np.argsort(owner, kind="stable")  # keeps each owner's candidates in list order
    counts = np.bincount(owner, minlength=n)
    return PartnerCandidates(
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        items=sorted_items[right[regroup]],
        shared=shared[regroup],
    )


def draw_partners(candidates: PartnerCandidates, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw each interaction's partner uniformly among its candidates; the item itself when there is none.

    One uniform number per interaction is drawn, in interaction order (``rng.random(n)``), whether or
    not it has candidates, so a given generator state always gives the same partners.

    Args:
        candidates: `partner_candidates` of the interactions.
        items: Item of each interaction, shape (n,), int64 (the fallback partner).
        rng: The generator (seeded by the caller).

    Returns:
        The partner j of each interaction, shape (n,), int64.

    Raises:
        CRSError: `items` does not have one entry per interaction of `candidates`.
    """
    items = np.asarray(items, dtype=np.int64)
    if items.shape != (len(candidates),):
        raise CRSError(
            f"draw_partners: items has shape {items.shape}; pass one item per interaction of the "
            f"candidates ({len(candidates)})"
        )
    counts = candidates.counts()
    draws = rng.random(items.size)
    has = counts > 0
    pick = candidates.offsets[:-1][has] + np.floor(draws[has] * counts[has]).astype(np.int64)
    partners = items.copy()
    partners[has] = candidates.items[pick]
    return partners


def _shared_counts(item_aspects: sp.csr_matrix, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Attributes items `first[k]` and `second[k]` have in common, shape (n_pairs,), int64."""
    out = np.empty(first.size, dtype=np.int64)
    for begin in range(0, first.size, _PAIR_CHUNK):
        end = min(begin + _PAIR_CHUNK, first.size)
        product = item_aspects[first[begin:end]].multiply(item_aspects[second[begin:end]])
        out[begin:end] = np.asarray(product.sum(axis=1)).ravel()
    return out
