"""Loader for MCMIPL's multi-interest (MIMCR) release: LastFM* and MovieLens as MCMIPL publishes them,
and Yelp* built here with MCMIPL's rule (its Yelp* target groups were not released).

MCMIPL (Zhang et al., WWW 2022; code ZYM6-6/MCMIPL) ships its own layout (see
``../shared/data/README.md``, section ``mcmipl/``)::

    <data_dir>/mcmipl/
        lastfm_star/
            Graph_generate_data/   fea_large.pkl  {tag id: (attribute-type ids, ...)}
                                   item_fea.pkl   {item id: (tag ids, ...)}
                                   user_like.pkl, user_friends.pkl (graph only; not read here)
            UI_Interaction_data/   review_dict_{train,valid,test}.json: {user id: [item ids]}
            UI_data/               train.pkl, test.pkl: {user id: [[item, item], ...]}
        movie/
            fea_item/              item_feature.pkl {item id: [attribute ids]},
                                   small_to_large.pkl {attribute id: {attribute-type ids}}
            UI_Interaction_data/   review_dict_{train,valid,test}.json
            UI_data/               train.pkl, test.pkl

`data_dir` may be the folder holding ``mcmipl/``, ``mcmipl/`` itself, or the dataset folder.

``mcmipl_yelp_star`` is not read from ``mcmipl/``: it is built from SCPR's ``yelp_star/`` release
(`simulators.scpr.load_yelp_star`; `data_dir` is then the folder holding ``yelp_star/``, or that
folder) with the rule MCMIPL's LastFM* groups obey (`simulators.mcmipl_groups`,
`build_target_groups`), drawn with the fixed seed `BUILD_SEED`; its attribute types are Yelp*'s 29
first-layer categories (`BUILT_FROM`, `load_mcmipl_yelp_star`).

What this module returns, per dataset, is a `MultiInterestRelease`:

- ``catalog``: a `Catalog` (items, attributes as aspects, the three interaction splits). Attribute ids
  are MCMIPL's: its graph builders (``Graph_generate/lastfm_graph.py`` and ``movie_graph.py``) number
  attributes by the key order of ``fea_large.pkl`` / ``small_to_large.pkl``, whose keys are 0..n-1 in
  order here, so the numbering is the identity (the loader refuses any other key order).
- ``groups``: the multi-interest target groups, one conversation each, per conversation split:
  ``groups["valid"]`` is read from ``UI_data/train.pkl`` (MCMIPL's RL training draws a user of
  ``review_dict_valid.json`` and one of that user's groups in ``train.pkl``), ``groups["test"]`` from
  ``UI_data/test.pkl`` (evaluation walks every group of it, shuffled with the seed).
- ``attribute_types``: each attribute's types (the "large" features a multiple-choice question is
  asked over) and its primary type, the one MCMIPL's env uses (``link_to_feature[0]``).

`load_catalog("mcmipl_lastfm_star", data_dir)` (`simulators.datasets`) returns the release's catalogue;
`release_for(catalog)` gives back the whole release of a catalogue loaded either way, so an env can be
built on the very `Catalog` instance the user model and goal sampler share.

The pickles are a third party's: they are read only through the project's restricted reader
(`simulators.safe_pickle`), which admits builtin containers and scalars and numpy's numeric scalars,
dtypes and arrays, nothing else; a pickle naming any other global raises `UnsafePickleError` (a
`DatasetError`) before that global is touched. Every other problem raises one `DatasetError` naming
the file and the field.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.sparse as sp

from simulators import safe_pickle
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError, DatasetError
from simulators.frozen import ReadOnlyWhenUnpickled, read_only_array, read_only_csr
from simulators.mcmipl_groups import MIN_SHARED, draw_partners, partner_candidates
from simulators.scpr import (
    GRAPH,
    ID_MAP,
    _artist_names,
    _hetrec_tag_names,
    _lastfm_aspect_names,
    _read_json,
    _read_splits,
    _vocabulary_size,
    load_yelp_star,
    parse_id,
)

_LOG = logging.getLogger(__name__)

MCMIPL = "mcmipl"
# Dataset name (as `simulators.datasets` registers it) -> folder under mcmipl/.
FOLDERS: Mapping[str, str] = MappingProxyType({"mcmipl_lastfm_star": "lastfm_star", "mcmipl_movie": "movie"})
# Datasets MCMIPL did not release, built here with its rule -> the SCPR folder they are built from.
BUILT_FROM: Mapping[str, str] = MappingProxyType({"mcmipl_yelp_star": "yelp_star"})
# Every dataset of MCMIPL's setting (read or built): `load_release` takes each.
DATASETS: tuple[str, ...] = (*FOLDERS, *BUILT_FROM)
# Those whose figures compare with MCMIPL's published ones: movie's release is degenerate (its notes say
# how) and Yelp*'s target groups are built here, not MCMIPL's.
PUBLISHED_COMPARABLE: tuple[str, ...] = ("mcmipl_lastfm_star",)


def setting_of(dataset: str) -> str | None:
    """The dataset of MCMIPL's setting built on UNICORN's `dataset` ("mcmipl_lastfm_star" for
    "lastfm_star"), or None."""
    own = f"mcmipl_{dataset}"
    return own if own in DATASETS else None


# The seed the built datasets' partners are drawn with (MCMIPL's default seed); recorded in their notes.
BUILD_SEED = 1
UI_DATA = "UI_data"
FEA_ITEM = "fea_item"
# Conversation split -> the UI_data pickle its target groups come from (MCMIPL's
# RL/env_multi_choice_question.py, __load_rl_data__: mode 'train' reads review_dict_valid.json and
# UI_data/train.pkl, mode 'test' reads review_dict_test.json and UI_data/test.pkl).
GROUP_FILES: Mapping[str, str] = MappingProxyType({"valid": "train.pkl", "test": "test.pkl"})
# The file that tells each dataset's folder apart (and its attribute-type map).
_TYPE_FILES: Mapping[str, str] = MappingProxyType(
    {"mcmipl_lastfm_star": f"{GRAPH}/fea_large.pkl", "mcmipl_movie": f"{FEA_ITEM}/small_to_large.pkl"}
)
# Conversations MCMIPL's evaluation runs (evaluate.py, default --eval_num 0): the first 4,000 of its
# seeded order on LastFM*, 2,500 on every other dataset (`simulators.goals.GroupGoals.protocol_order`).
EVALUATION_CONVERSATIONS: Mapping[str, int] = MappingProxyType(
    {"mcmipl_lastfm_star": 4000, "mcmipl_movie": 2500, "mcmipl_yelp_star": 2500}
)
_MAX_ID = 2**63 - 1
# Attribute-type ids must be dense like user ids: below 2 x (distinct types) + this slack.
_TYPE_ID_SLACK = 1000


# ----------------------------------------------------------------------------------------------
# Shared types
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetGroups(ReadOnlyWhenUnpickled):
    """The multi-interest target groups of one conversation split: one conversation per group.

    Groups keep the file's order (users in key order, each user's groups in list order): MCMIPL's
    evaluation lists them in this order and then shuffles them with its seed
    (``__test_tuple_generate__``). A group keeps its items as listed, repeats included: LastFM*'s test
    file names one item twice in 2,812 of its 11,892 groups, a conversation with a single target.

    Attributes:
        source: The pickle the groups were read from.
        users: User of each group, shape (n_groups,), int64.
        offsets: Group g's items are ``items[offsets[g]:offsets[g + 1]]``, shape (n_groups + 1,), int64.
        items: Items of all groups, concatenated, shape (offsets[-1],), int64.
    """

    source: str
    users: np.ndarray
    offsets: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        for name in ("users", "offsets", "items"):
            object.__setattr__(self, name, read_only_array(getattr(self, name), np.int64))
        n = self.users.shape[0]
        if (
            self.users.ndim != 1
            or self.offsets.shape != (n + 1,)
            or self.offsets[0] != 0
            or np.any(np.diff(self.offsets) < 1)
            or self.items.shape != (int(self.offsets[-1]),)
        ):
            raise CRSError(
                f"TargetGroups from {self.source}: need users (n,), offsets (n + 1,) starting at 0 and "
                f"increasing (every group has an item), items (offsets[-1],); got {self.users.shape}, "
                f"{self.offsets.shape}, {self.items.shape}"
            )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_groups(self) -> int:
        """Number of groups (conversations)."""
        return len(self)

    def targets(self, index: int) -> tuple[int, ...]:
        """Items of group `index` as listed, repeats kept (MCMIPL's ``target_item`` list).

        MCMIPL reports the slate rank of the first *listed* target found in the slate
        (``_recommend_update``), so the order matters for hDCG.
        """
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return tuple(int(i) for i in self.items[start:stop])

    def within(self, interactions: Interactions) -> TargetGroups:
        """The groups every target of which is one of `interactions` (that user, that item), in order.

        Training keeps only such groups when the ranker learned from part of the split (Yelp*: no train
        split), so that no training conversation is about an interaction the ranker was fitted to.
        """
        sizes = np.diff(self.offsets)
        group_of = np.repeat(np.arange(len(self)), sizes)  # (offsets[-1],)
        n_items = max(int(self.items.max(initial=0)), int(interactions.items.max(initial=0))) + 1
        allowed = np.unique(interactions.users * n_items + interactions.items)
        held = np.isin(self.users[group_of] * n_items + self.items, allowed)
        keep = np.bincount(group_of, weights=~held, minlength=len(self)) == 0  # (n_groups,)
        return TargetGroups(
            source=f"{self.source}, the groups within {interactions.users.size:,} interactions",
            users=self.users[keep],
            offsets=np.concatenate([[0], np.cumsum(sizes[keep])]),
            items=self.items[keep[group_of]],
        )

    def distinct_targets(self, index: int) -> tuple[int, ...]:
        """Items of group `index` without repeats, in first-listed order."""
        return tuple(dict.fromkeys(self.targets(index)))

    def sizes(self) -> np.ndarray:
        """Items listed per group, shape (n_groups,), int64."""
        return np.diff(self.offsets)

    def distinct_sizes(self) -> np.ndarray:
        """Distinct items per group, shape (n_groups,), int64."""
        counts = np.ones(len(self), dtype=np.int64)
        for index in np.flatnonzero(self.sizes() > 1).tolist():
            counts[index] = len(set(self.targets(index)))
        return counts


@dataclass(frozen=True)
class AttributeTypes(ReadOnlyWhenUnpickled):
    """Which attribute types ("large" features) each attribute belongs to.

    A multiple-choice question of MCMIPL is asked over one type: the env groups the candidate
    attributes by their *primary* type (``small_feature_to_large[a] = link_to_feature[0]``, the first
    type the file lists for `a`, in ``MultiChoiceRecommendEnv.get_feature_dict``) and lists attributes
    of one type. An attribute with no type goes to MCMIPL's extra "other" type (id 43 there,
    ``large_feature_length + 1``); `question_type` numbers it `n_types` here.

    Attributes:
        members: Type x attribute boolean CSR matrix, shape (n_types, n_attributes): every listed type.
        primary: First listed type of each attribute, or -1 when none is listed; shape
            (n_attributes,), int64.
        names: Display name of each type.
    """

    members: sp.csr_matrix
    primary: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", read_only_csr(self.members))
        object.__setattr__(self, "primary", read_only_array(self.primary, np.int64))
        object.__setattr__(self, "names", tuple(self.names))
        n_types, n_attributes = self.members.shape
        if self.primary.shape != (n_attributes,) or len(self.names) != n_types:
            raise CRSError(
                f"AttributeTypes: members {self.members.shape} needs primary ({n_attributes},) and "
                f"{n_types} names; got {self.primary.shape} and {len(self.names)}"
            )
        typed = np.flatnonzero(self.primary >= 0)
        if self.primary.size and (self.primary.min() < -1 or self.primary.max() >= n_types):
            raise CRSError(f"AttributeTypes.primary must lie in [-1, {n_types})")
        if typed.size and not np.asarray(self.members[self.primary[typed], typed]).all():
            raise CRSError("AttributeTypes.primary names a type that `members` does not list")

    @property
    def n_types(self) -> int:
        return int(self.members.shape[0])

    @property
    def n_attributes(self) -> int:
        return int(self.members.shape[1])

    @property
    def question_type(self) -> np.ndarray:
        """The type a question groups each attribute under: `primary`, or `n_types` ("other") for an
        attribute without a type; shape (n_attributes,), int64."""
        out = np.where(self.primary >= 0, self.primary, self.n_types).astype(np.int64)
        out.setflags(write=False)
        return out

    def attributes_of(self, type_id: int) -> np.ndarray:
        """Attributes listing `type_id` among their types, shape (n,), sorted."""
        indices: np.ndarray = self.members.indices  # scipy is untyped: name the array type
        return indices[self.members.indptr[type_id] : self.members.indptr[type_id + 1]]

    def types_of(self, attribute: int) -> np.ndarray:
        """Every type listed for `attribute`, shape (n,), sorted."""
        column = self.members[:, [attribute]].tocsc()
        return np.sort(np.asarray(column.indices, dtype=np.int64))


@dataclass(frozen=True)
class MultiInterestRelease:
    """One dataset of MCMIPL's release: the catalogue plus what the multi-interest setting needs.

    Attributes:
        catalog: Items, attributes (aspects) and the train/valid/test interaction splits.
        groups: Target groups per conversation split: "valid" (from ``UI_data/train.pkl``, RL training)
            and "test" (from ``UI_data/test.pkl``, evaluation).
        attribute_types: The attribute -> attribute-type relation questions are asked over.
    """

    catalog: Catalog
    groups: Mapping[str, TargetGroups]
    attribute_types: AttributeTypes

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))
        if self.attribute_types.n_attributes != self.catalog.n_aspects:
            raise CRSError(
                f"{self.catalog.name}: attribute types cover {self.attribute_types.n_attributes} "
                f"attributes, the catalogue has {self.catalog.n_aspects}"
            )
        for split, groups in self.groups.items():
            if split not in self.catalog.splits:
                raise CRSError(f"{self.catalog.name}: groups for {split!r}, a split the catalogue lacks")
            if len(groups) and (groups.users.max() >= self.catalog.n_users or groups.users.min() < 0):
                raise CRSError(f"{self.catalog.name}: {split} groups name users outside the catalogue")
            if groups.items.size and (groups.items.max() >= self.catalog.n_items or groups.items.min() < 0):
                raise CRSError(f"{self.catalog.name}: {split} groups name items outside the catalogue")

    def groups_of(self, split: str) -> TargetGroups:
        """The target groups of `split`; raises CRSError naming the splits that have groups."""
        if split not in self.groups:
            raise CRSError(
                f"{self.catalog.name} has no multi-interest target groups for split {split!r}; "
                f"available: {sorted(self.groups)}"
            )
        return self.groups[split]


# ----------------------------------------------------------------------------------------------
# Public loaders
# ----------------------------------------------------------------------------------------------


def load_release(name: str, data_dir: Path | str) -> MultiInterestRelease:
    """Load one dataset of MCMIPL's release, or build one it did not release; cached per (name, directory).

    Args:
        name: "mcmipl_lastfm_star" or "mcmipl_movie" (read from ``mcmipl/``), or "mcmipl_yelp_star"
            (built from SCPR's ``yelp_star/`` with MCMIPL's rule: `load_mcmipl_yelp_star`).
        data_dir: The folder holding ``mcmipl/``, ``mcmipl/`` itself, or the dataset folder; for a built
            dataset the folder holding its SCPR folder (``yelp_star/``), or that folder.

    Returns:
        The release (immutable; the same instance, and so the same `Catalog`, on every call).

    Raises:
        CRSError: Unknown name.
        DatasetError: A missing folder or file, a malformed file, or an unsafe pickle
            (`UnsafePickleError`).
    """
    if name not in DATASETS:
        raise CRSError(f"unknown MCMIPL dataset {name!r}; valid names: {', '.join(DATASETS)}")
    release = _cached_release(name, Path(data_dir).expanduser().resolve())
    _BY_CATALOG[id(release.catalog)] = release
    return release


def find_release(catalog: Catalog) -> MultiInterestRelease | None:
    """The release `catalog` was loaded from in this process, or None for any other catalogue."""
    release = _BY_CATALOG.get(id(catalog))
    return release if release is not None and release.catalog is catalog else None


def release_for(catalog: Catalog) -> MultiInterestRelease:
    """The release a catalogue of ``load_catalog("mcmipl_*", ...)`` (or `load_release`) belongs to.

    Raises:
        CRSError: `catalog` was not loaded from MCMIPL's release in this process.
    """
    release = find_release(catalog)
    if release is None:
        raise CRSError(
            f"catalogue {catalog.name!r} was not loaded from MCMIPL's release; load it with "
            f"load_catalog(name, data_dir) for name in {', '.join(DATASETS)}"
        )
    return release


def load_mcmipl_lastfm_star(data_dir: Path | str) -> Catalog:
    """The catalogue of MCMIPL's LastFM*: 1,801 users, 7,432 items, 8,438 tags (33 types)."""
    return load_release("mcmipl_lastfm_star", data_dir).catalog


def load_mcmipl_movie(data_dir: Path | str) -> Catalog:
    """The catalogue of MCMIPL's MovieLens: 20,892 users, 16,482 items, 1,498 attributes (24 types)."""
    return load_release("mcmipl_movie", data_dir).catalog


def load_mcmipl_yelp_star(data_dir: Path | str) -> Catalog:
    """The catalogue of Yelp* in MCMIPL's setting, built from SCPR's ``yelp_star/`` (see `load_release`).

    27,675 users, 70,311 items, 590 attributes; questions over its 29 first-layer categories plus
    "other"; target groups for the valid (RL training) and test splits, 211,319 each.
    """
    return load_release("mcmipl_yelp_star", data_dir).catalog


def clear_cache() -> None:
    """Forget the cached releases (e.g. after the files changed on disk)."""
    _cached_release.cache_clear()
    _BY_CATALOG.clear()


_BY_CATALOG: dict[int, MultiInterestRelease] = {}


@functools.lru_cache(maxsize=4)
def _cached_release(name: str, data_dir: Path) -> MultiInterestRelease:
    if name in BUILT_FROM:
        return _BUILDERS[name](data_dir)
    folder = _release_folder(data_dir, name)
    return _READERS[name](folder)


# ----------------------------------------------------------------------------------------------
# The two datasets
# ----------------------------------------------------------------------------------------------


def _read_lastfm_star(folder: Path) -> MultiInterestRelease:
    types_path = folder / GRAPH / "fea_large.pkl"
    members, primary = _read_attribute_types(types_path)
    n_attributes = members.shape[1]
    item_aspects = _read_item_attributes(folder / GRAPH / "item_fea.pkl", n_attributes, drop_unknown=False)
    n_items = item_aspects.shape[0]
    splits, n_users = _read_splits(folder, n_items, required=("train", "valid", "test"))
    groups = _read_all_groups(folder, n_users, n_items)
    root = _root_of(folder)
    item_names, aspect_names = _lastfm_star_names(root, n_items, n_attributes)
    type_names = _lastfm_type_names(root, members.shape[0])
    types = AttributeTypes(members=members, primary=primary, names=type_names)
    test = groups["test"]
    repeats = int((test.distinct_sizes() < test.sizes()).sum())
    notes = (
        f"MCMIPL's multi-interest (MIMCR) release: {len(test):,} test target groups, {repeats:,} of them "
        "one item named twice; RL training groups (UI_data/train.pkl) pair the valid split",
        f"multiple-choice questions are asked over {types.n_types} attribute types (LastFM's coarse "
        f"attributes); {int((primary < 0).sum())} tags have none (MCMIPL's 'other' type)",
    )
    catalog = Catalog(
        name="mcmipl_lastfm_star",
        item_aspects=item_aspects,
        item_names=tuple(item_names),
        aspect_names=tuple(aspect_names),
        n_users=n_users,
        splits=splits,
        notes=notes,
    )
    return MultiInterestRelease(catalog=catalog, groups=groups, attribute_types=types)


def _read_movie(folder: Path) -> MultiInterestRelease:
    members, primary = _read_attribute_types(folder / FEA_ITEM / "small_to_large.pkl")
    n_attributes = members.shape[1]
    item_aspects = _read_item_attributes(
        folder / FEA_ITEM / "item_feature.pkl", n_attributes, drop_unknown=True
    )
    n_items = item_aspects.shape[0]
    splits, n_users = _read_splits(folder, n_items, required=("train", "valid", "test"))
    groups = _read_all_groups(folder, n_users, n_items)
    types = AttributeTypes(
        members=members, primary=primary, names=tuple(f"type {t}" for t in range(members.shape[0]))
    )
    test, train = splits["test"], splits["train"]
    seen = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    in_train = sum((u, i) in seen for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True))
    notes = (
        f"degenerate: the test split names {np.unique(test.items).size} distinct items and "
        f"{in_train:,} of its {len(test):,} interactions are also in that user's train list; use it to "
        "test the loader, not to support claims",
        f"MCMIPL's multi-interest (MIMCR) release: {len(groups['test']):,} test target groups; "
        f"multiple-choice questions are asked over {types.n_types} attribute types",
    )
    catalog = Catalog(
        name="mcmipl_movie",
        item_aspects=item_aspects,
        item_names=tuple(f"item {i}" for i in range(n_items)),
        aspect_names=tuple(f"aspect {a}" for a in range(n_attributes)),
        n_users=n_users,
        splits=splits,
        notes=notes,
    )
    return MultiInterestRelease(catalog=catalog, groups=groups, attribute_types=types)


_READERS: dict[str, Callable[[Path], MultiInterestRelease]] = {
    "mcmipl_lastfm_star": _read_lastfm_star,
    "mcmipl_movie": _read_movie,
}


# ----------------------------------------------------------------------------------------------
# Datasets MCMIPL did not release: built with its rule
# ----------------------------------------------------------------------------------------------


def build_target_groups(
    item_aspects: sp.csr_matrix,
    interactions: Interactions,
    rng: np.random.Generator,
    *,
    source: str,
    min_shared: int = MIN_SHARED,
) -> TargetGroups:
    """The target groups MCMIPL's rule gives a split: one group ``[i, j]`` per interaction, in its order.

    ``i`` is the interaction's item; ``j`` is drawn uniformly among the other items of the same user's
    list in this split sharing at least `min_shared` attributes with ``i``, or is ``i`` when there is
    none (`simulators.mcmipl_groups`; measured on MCMIPL's LastFM* release, docs/protocols/mcmipl.md).

    Args:
        item_aspects: Item x attribute boolean CSR matrix, shape (n_items, n_attributes).
        interactions: The split; a user's list is the user's interactions in this order.
        rng: The generator the partners are drawn with (one ``rng.random(n)`` call).
        source: What the groups were built from, for messages (`TargetGroups.source`).
        min_shared: Attributes a partner must share (MCMIPL's release: 3).

    Returns:
        The groups: group g is interaction g's, ``targets(g) == (items[g], j)``.

    Raises:
        CRSError: An item outside `item_aspects`, an empty split or `min_shared` < 1.
    """
    if len(interactions) == 0:
        raise CRSError(f"build_target_groups: {source} has no interaction to build a group from")
    items = interactions.items
    candidates = partner_candidates(item_aspects, interactions.users, items, min_shared=min_shared)
    partners = draw_partners(candidates, items, rng)
    return TargetGroups(
        source=source,
        users=interactions.users,
        offsets=np.arange(0, 2 * items.size + 1, 2, dtype=np.int64),
        items=np.column_stack([items, partners]).ravel(),
    )


def _build_yelp_star(data_dir: Path) -> MultiInterestRelease:
    """Yelp* in MCMIPL's setting: SCPR's catalogue, groups by MCMIPL's rule, categories as types.

    An attribute's types are the first-layer categories listing it in ``2-layer taxonomy.json``
    (`Taxonomy.members`) and its question type the lowest of them (`Taxonomy.parent_of`), as MCMIPL's
    env does with UNICORN's Yelp graph (``link_to_feature`` sorted, first element); the 73 attributes
    under no category form MCMIPL's extra "other" type (`AttributeTypes.question_type`).
    """
    scpr = load_yelp_star(data_dir)
    taxonomy = scpr.taxonomy
    assert taxonomy is not None and taxonomy.members is not None  # load_yelp_star reads the taxonomy
    types = AttributeTypes(members=taxonomy.members, primary=taxonomy.parent_of, names=taxonomy.parent_names)
    streams = np.random.SeedSequence(BUILD_SEED).spawn(len(GROUP_FILES))
    groups = {
        split: build_target_groups(
            scpr.item_aspects,
            scpr.splits[split],
            np.random.default_rng(stream),
            source=f"yelp_star {split} split, MCMIPL's rule (>= {MIN_SHARED} shared), seed {BUILD_SEED}",
        )
        for split, stream in zip(GROUP_FILES, streams, strict=True)
    }
    test = groups["test"]
    repeats = int(np.count_nonzero(test.items[0::2] == test.items[1::2]))  # every group is [i, j]
    notes = (
        *scpr.notes,
        f"MCMIPL did not release Yelp*'s target groups: built here with the rule its LastFM* groups obey "
        f"(j drawn uniformly among the user's other items of the split sharing >= {MIN_SHARED} attributes "
        f"with i, else i itself), seed {BUILD_SEED}: {len(test):,} test groups, {repeats:,} of them (i, i)",
        f"multiple-choice questions are asked over {types.n_types} first-layer categories; "
        f"{int((types.primary < 0).sum())} attributes have none (MCMIPL's 'other' type)",
    )
    catalog = dataclasses.replace(scpr, name="mcmipl_yelp_star", notes=notes)
    return MultiInterestRelease(catalog=catalog, groups=groups, attribute_types=types)


_BUILDERS: dict[str, Callable[[Path], MultiInterestRelease]] = {"mcmipl_yelp_star": _build_yelp_star}


def _release_folder(data_dir: Path, name: str) -> Path:
    """The dataset folder of `name` under `data_dir`, ``data_dir/mcmipl`` or `data_dir` itself."""
    if not data_dir.is_dir():
        found = "a file, not a directory" if data_dir.exists() else "no such directory"
        raise DatasetError(data_dir, "", f"a directory holding {MCMIPL}/ (MCMIPL's data release)", found)
    sub, marker = FOLDERS[name], _TYPE_FILES[name]
    for folder in (data_dir / MCMIPL / sub, data_dir / sub, data_dir):
        if (folder / marker).is_file():
            return folder
    for folder in (data_dir / MCMIPL / sub, data_dir):
        if folder.is_dir() and (folder / UI_DATA).is_dir():
            raise DatasetError(folder / marker, "", f"a required file of MCMIPL's {sub} release", "missing")
    raise DatasetError(
        data_dir / MCMIPL / sub,
        "",
        f"the {MCMIPL}/{sub} folder of MCMIPL's release (with {marker} and {UI_DATA}/)",
        f"no such directory: pass --data-dir the folder that contains {MCMIPL}/",
    )


def _root_of(folder: Path) -> Path:
    """The folder that holds the SCPR datasets beside ``mcmipl/`` (names only)."""
    return folder.parent.parent if folder.parent.name == MCMIPL else folder.parent


def _lastfm_star_names(root: Path, n_items: int, n_attributes: int) -> tuple[list[str], list[str]]:
    """Artist and tag names of LastFM*, through the SCPR release beside ``mcmipl/`` (names only).

    MCMIPL's ``item_fea.pkl`` equals SCPR's ``lastfm_star/Graph_generate_data/item_dict.json`` item
    for item, so the SCPR id maps name the same items and tags.
    """
    scpr = root / "lastfm_star"
    tag_map_path = scpr / GRAPH / "original_tag_map.json"
    items = [f"item {i}" for i in range(n_items)]
    aspects = [f"aspect {a}" for a in range(n_attributes)]
    if not tag_map_path.is_file():
        _LOG.warning("%s not found: items and tags of MCMIPL's LastFM* are numbered", tag_map_path)
        return items, aspects
    tag_map = _read_json(tag_map_path)
    if _vocabulary_size(tag_map, tag_map_path) != n_attributes:
        _LOG.warning("%s names another tag vocabulary: tags are numbered", tag_map_path)
    else:
        assert isinstance(tag_map, dict)  # _vocabulary_size checked it
        aspects = _hetrec_tag_names(scpr, tag_map, n_attributes)
    try:
        return _artist_names(scpr, n_items), aspects
    except DatasetError as error:  # a file that only names things does not stop the release from loading
        _LOG.warning("%s: items are numbered", error)
        return items, aspects


def _lastfm_type_names(root: Path, n_types: int) -> tuple[str, ...]:
    """Names of LastFM*'s attribute types: LastFM's 33 coarse attributes (ids 0..32).

    Measured on the release: for each of the 33 HetRec tags of LastFM's ``merged_tag_map.json``, the
    types ``fea_large.pkl`` lists for that tag include the tag's coarse id (e.g. "alternative metal"
    -> alternative, metal).
    """
    try:
        names = _lastfm_aspect_names(root / "lastfm" / ID_MAP / "tag_reverse_map.json", n_types)
    except DatasetError as error:  # a file that only names things does not stop the release from loading
        _LOG.warning("%s: attribute types are numbered", error)
        return tuple(f"type {t}" for t in range(n_types))
    return tuple(f"type {t}" if name == f"aspect {t}" else name for t, name in enumerate(names))


def read_pickle(path: Path | str) -> object:
    """Read one pickle of MCMIPL's release through the restricted reader (`simulators.safe_pickle`).

    Raises:
        UnsafePickleError: The pickle names a refused global or builds a refused value.
        DatasetError: The file is missing, unreadable, truncated or otherwise not a pickle.
    """
    return safe_pickle.read_pickle(path, "a required file of MCMIPL's release")


# ----------------------------------------------------------------------------------------------
# Pickle contents
# ----------------------------------------------------------------------------------------------


_REPR = reprlib.Repr()  # attributes set below (Python 3.10 and 3.11 take no keyword arguments)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = 40


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"a {type(value).__name__} of {len(value)} elements"
    return f"a {type(value).__name__} {_short(value)}"


def _short(value: object) -> str:
    """`repr(value)` cut to about 40 characters, built without the whole text (a pickle can describe a
    value whose full repr takes gigabytes: shared sub-lists nested 40 deep, or a long byte string)."""
    return _REPR.repr(value)


def _as_id(value: object) -> int | None:
    """`value` as a non-negative id below 2**63 (a Python or numpy integer, not a bool), else None."""
    if type(value) is int or isinstance(value, np.integer):
        number = int(value)
        return number if 0 <= number <= _MAX_ID else None
    return None


def _key_id(key: object) -> int | None:
    """A dict key as an id: an integer, or a canonical decimal string (`parse_id`)."""
    return parse_id(key) if isinstance(key, str) else _as_id(key)


def _require_mapping(obj: object, path: Path, expected: str) -> dict[Any, Any]:
    if type(obj) is not dict:
        raise DatasetError(path, "", expected, _describe(obj))
    if not obj:
        raise DatasetError(path, "", expected, "an empty dict")
    return obj


def _id_sequence(value: object, path: Path, field: str, what: str) -> list[int]:
    """A pickled list/tuple/set of ids, in iteration order (a set iterates as Python rebuilt it)."""
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DatasetError(path, field, f"a list, tuple or set of {what} ids", _describe(value))
    ids: list[int] = []
    for element in value:
        number = _as_id(element)
        if number is None:
            raise DatasetError(path, field, f"{what} ids (integers from 0)", f"element {_short(element)}")
        ids.append(number)
    return ids


def _dense_keys(obj: dict[Any, Any], path: Path, what: str, *, in_order: bool) -> None:
    """Keys must be the ids 0..n-1 (in that order when `in_order`)."""
    keys: list[int] = []
    for key in obj:
        number = _key_id(key)
        if number is None:
            raise DatasetError(path, "keys", f"{what} ids (integers from 0)", f"key {_short(key)}")
        keys.append(number)
    if in_order and keys != list(range(len(keys))):
        first = next(i for i, number in enumerate(keys) if number != i)
        raise DatasetError(
            path,
            "keys",
            f"{what} ids 0..{len(keys) - 1} in this order (MCMIPL numbers {what}s by key order)",
            f"key {keys[first]} at position {first}",
        )
    if not in_order and sorted(keys) != list(range(len(keys))):
        missing = sorted(set(range(len(keys))).difference(keys))
        raise DatasetError(
            path,
            "keys",
            f"{what} ids 0..{len(keys) - 1}, each once",
            f"ids up to {max(keys)}" + (f", first missing {missing[0]}" if missing else ""),
        )


def _read_attribute_types(path: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """Read ``{attribute id: (type ids, ...)}`` (fea_large.pkl, small_to_large.pkl).

    Returns:
        members: type x attribute boolean CSR matrix, shape (n_types, n_attributes), n_types = the
            largest type id + 1; primary: first listed type per attribute, -1 when none, shape
            (n_attributes,).
    """
    obj = _require_mapping(read_pickle(path), path, "a dict {attribute id: (attribute-type ids)}")
    _dense_keys(obj, path, "attribute", in_order=True)
    primary = np.full(len(obj), -1, dtype=np.int64)
    rows: list[int] = []
    columns: list[int] = []
    for attribute, value in enumerate(obj.values()):
        types = _id_sequence(value, path, str(attribute), "attribute-type")
        if types:
            primary[attribute] = types[0]
        rows.extend(types)
        columns.extend([attribute] * len(types))
    if not rows:
        raise DatasetError(path, "values", "at least one attribute with a type", "no type at all")
    n_distinct = len(set(rows))
    bound = 2 * n_distinct + _TYPE_ID_SLACK
    if max(rows) >= bound:
        owner = columns[rows.index(max(rows))]
        raise DatasetError(
            path,
            str(owner),
            f"attribute-type ids below {bound:,} (dense: {n_distinct} distinct types)",
            f"type id {max(rows):,}",
        )
    n_types = max(rows) + 1
    ones = np.ones(len(rows), dtype=np.bool_)
    members = sp.csr_matrix((ones, (rows, columns)), shape=(n_types, len(obj)), dtype=np.bool_)
    return members, primary


def _read_item_attributes(path: Path, n_attributes: int, *, drop_unknown: bool) -> sp.csr_matrix:
    """Read ``{item id: [attribute ids]}`` into an item x attribute boolean CSR matrix.

    Args:
        path: item_fea.pkl (LastFM*) or item_feature.pkl (MovieLens).
        n_attributes: Size of the attribute vocabulary (the attribute-type file's keys).
        drop_unknown: Drop attribute ids outside the vocabulary, as MCMIPL's ``movie_graph.py`` does
            (``if feature not in small_to_large: continue``); else refuse them (``lastfm_graph.py``
            would fail on them).
    """
    obj = _require_mapping(read_pickle(path), path, "a dict {item id: [attribute ids]}")
    _dense_keys(obj, path, "item", in_order=False)
    rows: list[int] = []
    columns: list[int] = []
    dropped = 0
    for key, value in obj.items():
        item = _key_id(key)
        assert item is not None  # _dense_keys checked every key
        for attribute in _id_sequence(value, path, str(key), "attribute"):
            if attribute >= n_attributes:
                if drop_unknown:
                    dropped += 1
                    continue
                raise DatasetError(
                    path, str(key), f"attribute ids in [0, {n_attributes})", f"attribute id {attribute}"
                )
            rows.append(item)
            columns.append(attribute)
    if dropped:
        _LOG.warning("%s: dropped %d attribute ids outside the vocabulary, as MCMIPL does", path, dropped)
    ones = np.ones(len(rows), dtype=np.bool_)
    return sp.csr_matrix((ones, (rows, columns)), shape=(len(obj), n_attributes), dtype=np.bool_)


def _read_all_groups(folder: Path, n_users: int, n_items: int) -> dict[str, TargetGroups]:
    return {
        split: _read_groups(folder / UI_DATA / file, n_users, n_items) for split, file in GROUP_FILES.items()
    }


def _read_groups(path: Path, n_users: int, n_items: int) -> TargetGroups:
    """Read ``{user id: [[item, item, ...], ...]}`` (UI_data/*.pkl) into `TargetGroups`."""
    obj = _require_mapping(read_pickle(path), path, "a dict {user id: [[target items], ...]}")
    users: list[int] = []
    sizes: list[int] = []
    items: list[int] = []
    seen: set[int] = set()
    for key, groups in obj.items():
        user = _key_id(key)
        if user is None or user >= n_users:
            raise DatasetError(
                path, "keys", f"user ids in [0, {n_users}) (the users of the splits)", f"key {_short(key)}"
            )
        if user in seen:
            raise DatasetError(path, str(key), "each user once", f"user {user} twice (as {_short(key)})")
        seen.add(user)
        if type(groups) is not list:
            raise DatasetError(path, str(key), "a list of target groups", _describe(groups))
        for index, group in enumerate(groups):
            field = f"{key}[{index}]"
            if not isinstance(group, (list, tuple)):
                raise DatasetError(path, field, "a list of target item ids", _describe(group))
            targets = _id_sequence(group, path, field, "item")
            if not targets:
                raise DatasetError(path, field, "at least one target item", "an empty group")
            bad = next((t for t in targets if t >= n_items), None)
            if bad is not None:
                raise DatasetError(path, field, f"item ids in [0, {n_items})", f"item id {bad}")
            users.append(user)
            sizes.append(len(targets))
            items.extend(targets)
    if not users:
        raise DatasetError(path, "", "at least one target group", f"{len(obj)} users without a group")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return TargetGroups(
        source=str(path),
        users=np.array(users, dtype=np.int64),
        offsets=offsets,
        items=np.array(items, dtype=np.int64),
    )
