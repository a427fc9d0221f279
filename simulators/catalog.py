"""The catalogue: items, aspects, users and their interaction splits, immutable once built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.sparse as sp

from simulators.errors import CRSError, EmptySplitError, MissingSplitError
from simulators.frozen import ReadOnlyWhenUnpickled, read_only_array, read_only_csr

SPLITS: tuple[str, ...] = ("train", "valid", "test")


def compressed_entries(
    matrix: sp.csr_matrix | sp.csc_matrix, majors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The stored entries of rows (CSR) or columns (CSC) `majors`, without building a sliced matrix.

    Args:
        matrix: A CSR or CSC matrix (e.g. `Catalog.item_aspects` or `Catalog.aspect_items`).
        majors: Row (CSR) or column (CSC) ids, int64, shape (n,); repeats allowed.

    Returns:
        (position, minor): for every entry its position in `majors` and its column (CSR) or row (CSC)
        id, both int64 of shape (nnz of those rows or columns,), in storage order.
    """
    starts = matrix.indptr[majors]
    lengths = matrix.indptr[majors + 1] - starts
    position = np.repeat(np.arange(majors.size), lengths)
    offsets = np.arange(position.size) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[position]
    return position, matrix.indices[offsets].astype(np.int64)


@dataclass(frozen=True)
class Interactions(ReadOnlyWhenUnpickled):
    """One split of (user, item) interactions.

    Attributes:
        users: User ids, shape (n,), int64.
        items: Item ids, shape (n,), int64.
        personas: Ground-truth persona id that produced each interaction, shape (n,), int64, or None
            when unknown (real data).
    """

    users: np.ndarray
    items: np.ndarray
    personas: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", read_only_array(self.users, np.int64))
        object.__setattr__(self, "items", read_only_array(self.items, np.int64))
        if self.personas is not None:
            object.__setattr__(self, "personas", read_only_array(self.personas, np.int64))
        if self.users.shape != self.items.shape or self.users.ndim != 1:
            raise CRSError(
                f"Interactions need 1-D users and items of equal length, got {self.users.shape} "
                f"and {self.items.shape}"
            )
        if self.personas is not None and self.personas.shape != self.users.shape:
            raise CRSError(f"personas must have shape {self.users.shape}, got {self.personas.shape}")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def by_user(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """The split as a user x item boolean CSR matrix, shape (n_users, n_items)."""
        ones = np.ones(len(self), dtype=np.bool_)
        matrix = sp.csr_matrix((ones, (self.users, self.items)), shape=(n_users, n_items), dtype=np.bool_)
        matrix.sum_duplicates()
        return matrix


@dataclass(frozen=True)
class Taxonomy(ReadOnlyWhenUnpickled):
    """A two-level aspect taxonomy: fine aspects grouped under parent categories.

    In the simple case every fine aspect has exactly one parent and `parent_of` says it all. Real
    taxonomies need more: Yelp*'s 2-layer taxonomy lists some fine aspects under several categories
    and some under none. Then `members` holds the full category -> aspect membership (what an
    enumerated question about a category lists), and `parent_of` holds each aspect's primary parent
    (the lowest-numbered category that lists it), or -1 when no category lists it.

    Attributes:
        parent_of: Primary parent category of each aspect, shape (n_aspects,), int64 in [0, n_parents),
            or -1 for an aspect no category lists (only when `members` is given).
        parent_names: Display name of each parent category.
        members: Category x aspect boolean CSR matrix, shape (n_parents, n_aspects). Derived from
            `parent_of` when not given.
    """

    parent_of: np.ndarray
    parent_names: tuple[str, ...]
    members: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parent_of", read_only_array(self.parent_of, np.int64))
        object.__setattr__(self, "parent_names", tuple(self.parent_names))
        n_parents, n_aspects = len(self.parent_names), self.parent_of.shape[0]
        lowest = -1 if self.members is not None else 0
        if self.parent_of.size and (self.parent_of.min() < lowest or self.parent_of.max() >= n_parents):
            raise CRSError(
                f"Taxonomy.parent_of must lie in [{lowest}, {n_parents}), got values outside it "
                "(-1, 'no parent', is allowed only with an explicit `members` matrix)"
            )
        if self.members is None:
            has_parent = np.flatnonzero(self.parent_of >= 0)
            ones = np.ones(has_parent.size, dtype=np.bool_)
            members = sp.csr_matrix(
                (ones, (self.parent_of[has_parent], has_parent)), shape=(n_parents, n_aspects)
            )
        else:
            members = self.members
        members = read_only_csr(members)
        if members.shape != (n_parents, n_aspects):
            raise CRSError(
                f"Taxonomy.members must have shape (n_parents, n_aspects) = {(n_parents, n_aspects)}, "
                f"got {members.shape}"
            )
        object.__setattr__(self, "members", members)

    @property
    def n_parents(self) -> int:
        return len(self.parent_names)

    def children(self, parent: int) -> np.ndarray:
        """Fine aspects under `parent`, shape (n_children,), sorted."""
        members = self.members
        assert members is not None  # set in __post_init__
        indices: np.ndarray = members.indices  # scipy is untyped: name the array type
        return indices[members.indptr[parent] : members.indptr[parent + 1]]

    def parents_of(self, aspects: np.ndarray) -> np.ndarray:
        """Every category listing at least one of `aspects`, shape (n,), sorted (never -1)."""
        members = self.members
        assert members is not None  # set in __post_init__
        listed = members[:, np.asarray(aspects, dtype=np.int64)]
        return np.flatnonzero(np.diff(listed.tocsr().indptr))


@dataclass(frozen=True)
class PersonaTruth(ReadOnlyWhenUnpickled):
    """Ground truth of the synthetic persona world.

    Personas are shared prototypes: persona p means the same taste for every user who has it.

    Attributes:
        aspect_group: Group of each aspect, shape (n_aspects,), int64.
        persona_groups: Each persona's distribution over aspect groups, shape (n_personas, n_groups).
        persona_aspects: Each persona's signature aspects (the few specific aspects it cares about),
            as a boolean matrix of shape (n_personas, n_aspects).
        user_personas: The K persona ids of each user, shape (n_users, K), int64.
        user_weights: Mixture weight of each of a user's K personas, shape (n_users, K), rows sum to 1.
        group_names: Display name of each aspect group.
        persona_names: Display name of each persona.
    """

    aspect_group: np.ndarray
    persona_groups: np.ndarray
    persona_aspects: np.ndarray
    user_personas: np.ndarray
    user_weights: np.ndarray
    group_names: tuple[str, ...]
    persona_names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "aspect_group", read_only_array(self.aspect_group, np.int64))
        object.__setattr__(self, "persona_groups", read_only_array(self.persona_groups, np.float64))
        object.__setattr__(self, "persona_aspects", read_only_array(self.persona_aspects, np.bool_))
        object.__setattr__(self, "user_personas", read_only_array(self.user_personas, np.int64))
        object.__setattr__(self, "user_weights", read_only_array(self.user_weights, np.float64))

    @property
    def n_personas(self) -> int:
        return int(self.persona_groups.shape[0])

    @property
    def personas_per_user(self) -> int:
        return int(self.user_personas.shape[1])


@dataclass(frozen=True)
class CatalogSummary:
    """Counts and shape facts about a catalogue, for `crs data info` and logs."""

    name: str
    n_users: int
    n_items: int
    n_aspects: int
    n_parents: int
    aspects_per_item_mean: float
    aspects_per_item_min: int
    aspects_per_item_max: int
    split_sizes: Mapping[str, int]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Catalog(ReadOnlyWhenUnpickled):
    """Items, aspects, users and interaction splits. Immutable and validated when built.

    Attributes:
        name: Dataset name (e.g. "lastfm_star", "persona_world").
        item_aspects: Item x aspect boolean CSR matrix, shape (n_items, n_aspects).
        item_names: Display name of each item.
        aspect_names: Display name of each aspect.
        n_users: Number of users; user ids are 0..n_users-1.
        splits: Interactions per split name ("train", "valid", "test"); a dataset may lack some.
        taxonomy: Optional two-level aspect taxonomy (Yelp*: 29 first-layer categories).
        notes: Facts a user must know when reading results (e.g. "no train split").
        truth: Ground truth personas (persona world only).
        aspect_items: Aspect x item boolean CSR matrix, shape (n_aspects, n_items) (derived).
    """

    name: str
    item_aspects: sp.csr_matrix
    item_names: tuple[str, ...]
    aspect_names: tuple[str, ...]
    n_users: int
    splits: Mapping[str, Interactions]
    taxonomy: Taxonomy | None = None
    notes: tuple[str, ...] = ()
    truth: PersonaTruth | None = None
    aspect_items: sp.csr_matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        item_aspects = read_only_csr(self.item_aspects)
        object.__setattr__(self, "item_aspects", item_aspects)
        object.__setattr__(self, "aspect_items", read_only_csr(item_aspects.T.tocsr()))
        object.__setattr__(self, "item_names", tuple(self.item_names))
        object.__setattr__(self, "aspect_names", tuple(self.aspect_names))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "splits", MappingProxyType(dict(self.splits)))
        self._validate()

    def __deepcopy__(self, memo: dict[int, Any]) -> Catalog:
        """The catalogue itself: it is immutable (Gymnasium deep-copies an env's spec, whose kwargs may
        hold the catalogue: `gymnasium.make(id, catalog=...)`)."""
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickling state: `splits` as a plain dict (a read-only view does not pickle)."""
        return {**self.__dict__, "splits": dict(self.splits)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "splits", MappingProxyType(dict(self.splits)))

    def _validate(self) -> None:
        n_items, n_aspects = self.item_aspects.shape
        if len(self.item_names) != n_items:
            raise CRSError(f"{self.name}: {len(self.item_names)} item names for {n_items} items")
        if len(self.aspect_names) != n_aspects:
            raise CRSError(f"{self.name}: {len(self.aspect_names)} aspect names for {n_aspects} aspects")
        for split, inter in self.splits.items():
            if split not in SPLITS:
                raise CRSError(f"{self.name}: unknown split {split!r}; expected one of {SPLITS}")
            if len(inter) and (inter.users.min() < 0 or inter.users.max() >= self.n_users):
                raise CRSError(f"{self.name}: split {split!r} has user ids outside [0, {self.n_users})")
            if len(inter) and (inter.items.min() < 0 or inter.items.max() >= n_items):
                raise CRSError(f"{self.name}: split {split!r} has item ids outside [0, {n_items})")
        if self.taxonomy is not None and self.taxonomy.parent_of.shape != (n_aspects,):
            raise CRSError(
                f"{self.name}: taxonomy covers {self.taxonomy.parent_of.shape[0]} aspects, "
                f"catalogue has {n_aspects}"
            )

    @property
    def n_items(self) -> int:
        return int(self.item_aspects.shape[0])

    @property
    def n_aspects(self) -> int:
        return int(self.item_aspects.shape[1])

    def aspects_of(self, item: int) -> np.ndarray:
        """Aspect ids of `item`, shape (n,), sorted."""
        ia = self.item_aspects
        indices: np.ndarray = ia.indices  # scipy is untyped: name the array type
        return indices[ia.indptr[item] : ia.indptr[item + 1]]

    def items_with(self, aspect: int) -> np.ndarray:
        """Item ids having `aspect`, shape (n,), sorted."""
        ai = self.aspect_items
        indices: np.ndarray = ai.indices  # scipy is untyped: name the array type
        return indices[ai.indptr[aspect] : ai.indptr[aspect + 1]]

    def split(self, name: str) -> Interactions:
        """The interactions of split `name`; raises MissingSplitError naming the splits present."""
        if name not in self.splits:
            raise MissingSplitError(f"{self.name} has no {name!r} split; available: {sorted(self.splits)}")
        return self.splits[name]

    def conversation_split(self, name: str) -> Interactions:
        """The interactions of split `name`, checked to give at least one conversation.

        The one rule for "conversations can be drawn from this split": ``crs data validate`` applies it
        to the valid and test splits (`simulators.datasets.check_catalog`); a goal sampler refuses the
        same (an empty split) before drawing.

        Raises:
            MissingSplitError: The catalogue has no such split.
            EmptySplitError: The split holds no interaction.
        """
        interactions = self.split(name)
        if len(interactions) == 0:
            raise EmptySplitError(f"{self.name}: split {name!r} is empty; no conversation can be drawn")
        return interactions

    @property
    def pretrain_split(self) -> str:
        """The split embeddings are pre-trained on: train, or valid where train is absent (Yelp*)."""
        return "train" if "train" in self.splits else "valid"

    def describe(self) -> CatalogSummary:
        """Summary counts for display."""
        per_item = np.diff(self.item_aspects.indptr)
        return CatalogSummary(
            name=self.name,
            n_users=self.n_users,
            n_items=self.n_items,
            n_aspects=self.n_aspects,
            n_parents=self.taxonomy.n_parents if self.taxonomy else 0,
            aspects_per_item_mean=float(per_item.mean()) if per_item.size else 0.0,
            aspects_per_item_min=int(per_item.min()) if per_item.size else 0,
            aspects_per_item_max=int(per_item.max()) if per_item.size else 0,
            split_sizes={s: len(self.splits[s]) for s in SPLITS if s in self.splits},
            notes=self.notes,
        )
