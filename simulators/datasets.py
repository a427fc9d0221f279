"""The dataset registry: one name per catalogue, one function that loads any of them.

``persona_world`` is the embedded synthetic default (no files); ``lastfm``, ``lastfm_star`` and
``yelp_star`` are the SCPR/UNICORN benchmarks, ``mcmipl_lastfm_star`` and ``mcmipl_movie`` MCMIPL's
multi-interest release (``mcmipl/``; its target groups and attribute types:
`simulators.mcmipl.release_for`), and ``mcmipl_yelp_star`` Yelp* in MCMIPL's setting, built from
``yelp_star/`` with MCMIPL's rule (its Yelp* groups were not released); all read from a data directory
given as an argument or through ``$CRS_DATA_DIR``.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators import mcmipl
from simulators.catalog import SPLITS, Catalog, Interactions
from simulators.errors import CRSError, DatasetError, EmptySplitError, MissingSplitError
from simulators.mcmipl import load_mcmipl_lastfm_star, load_mcmipl_movie, load_mcmipl_yelp_star
from simulators.persona_world import make_persona_world
from simulators.scpr import load_lastfm, load_lastfm_star, load_yelp_star

DATASET_NAMES: tuple[str, ...] = (
    "persona_world",
    "lastfm",
    "lastfm_star",
    "yelp_star",
    "mcmipl_lastfm_star",
    "mcmipl_movie",
    "mcmipl_yelp_star",
)
REAL_DATASETS: tuple[str, ...] = DATASET_NAMES[1:]
TAXONOMY_DATASETS: tuple[str, ...] = ("yelp_star", "mcmipl_yelp_star")
"""The datasets whose catalogue has a first-layer taxonomy, which the enumerated setting asks."""


def check_taxonomy(dataset: str, setting: str) -> None:
    """Refuse, by names alone, the enumerated setting on a dataset without a taxonomy (`TAXONOMY_DATASETS`).

    Raises:
        CRSError: Naming the dataset, those that have one and the settings it has.
    """
    if setting == "enumerated" and dataset not in TAXONOMY_DATASETS:
        raise CRSError(
            f"enumerated asks a taxonomy's categories, and {dataset} has none (only "
            f"{', '.join(TAXONOMY_DATASETS)} do): use binary or multiple_choice"
        )


DATA_DIR_ENV = "CRS_DATA_DIR"
# How to name the data folder, for Python callers (make_env, gym.make, load_catalog) and the CLI alike.
DATA_DIR_HINT = f"pass --data-dir PATH (data_dir=PATH from Python) or set {DATA_DIR_ENV}=PATH"

_LOADERS: dict[str, Callable[[Path], Catalog]] = {
    "lastfm": load_lastfm,
    "lastfm_star": load_lastfm_star,
    "yelp_star": load_yelp_star,
    "mcmipl_lastfm_star": load_mcmipl_lastfm_star,
    "mcmipl_movie": load_mcmipl_movie,
    "mcmipl_yelp_star": load_mcmipl_yelp_star,
}
# The folder under the data directory that holds each real dataset (for messages).
_FOLDERS: dict[str, str] = {
    **{name: name for name in ("lastfm", "lastfm_star", "yelp_star")},
    **{name: f"{mcmipl.MCMIPL}/{sub}" for name, sub in mcmipl.FOLDERS.items()},
    **mcmipl.BUILT_FROM,  # built from an SCPR folder, not read from mcmipl/
}


def check_dataset_name(name: str) -> str:
    """Return `name` if it is a known dataset; raise CRSError listing the valid names otherwise."""
    if name not in DATASET_NAMES:
        typed = name.lower().replace("*", "_star").replace("-", "_")  # "LastFM*" is lastfm_star
        close = difflib.get_close_matches(typed, DATASET_NAMES, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CRSError(f"unknown dataset {name!r}; {hint}valid names: {', '.join(DATASET_NAMES)}")
    return name


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The real-data directory: `data_dir` if given, else ``$CRS_DATA_DIR``.

    Raises:
        DatasetError: Neither is set.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    raise DatasetError(
        "data_dir",
        "",
        "the folder of the real datasets (lastfm/, lastfm_star/, yelp_star/)",
        f"none given: {DATA_DIR_HINT}",
    )


PERSONA_WORLD = "persona_world"


@dataclass(frozen=True)
class DatasetSpec:
    """Which catalogue: a dataset, where its files are (real data) and the persona world's arguments.

    Attributes:
        name: One of `DATASET_NAMES`.
        data_dir: Directory holding the SCPR/UNICORN folders (real data; default ``$CRS_DATA_DIR``).
        world_seed: Seed of the persona world (ignored for real data).
        world: Other `make_persona_world` arguments (sizes; persona world only).
    """

    name: str = PERSONA_WORLD
    data_dir: str | None = None
    world_seed: int = 0
    world: tuple[tuple[str, int], ...] = ()

    @property
    def is_world(self) -> bool:
        """Whether this is the synthetic persona world (seeded, with ground truth)."""
        return self.name == PERSONA_WORLD

    def world_kwargs(self) -> dict[str, int]:
        """`make_persona_world` arguments (empty for real data)."""
        return {"seed": self.world_seed, **dict(self.world)} if self.is_world else {}

    def data_folder(self) -> str | None:
        """The real-data folder this reads (`data_dir`, else ``$CRS_DATA_DIR``), absolute, as a summary
        records it; None on the persona world or when neither is set."""
        if self.is_world:
            return None
        try:
            return str(resolve_data_dir(self.data_dir).resolve())
        except DatasetError:  # neither is set
            return None

    def load(self) -> Catalog:
        """The catalogue (see `load_catalog`)."""
        return load_catalog(self.name, self.data_dir, **self.world_kwargs())


def load_catalog(name: str, data_dir: str | Path | None = None, **world_kwargs: int) -> Catalog:
    """Load the catalogue `name`.

    Args:
        name: One of `DATASET_NAMES`.
        data_dir: Directory holding the SCPR/UNICORN folders (real datasets only; default
            ``$CRS_DATA_DIR``).
        **world_kwargs: Arguments of `simulators.persona_world.make_persona_world` (persona world only,
            e.g. ``n_users``, ``n_items``, ``personas_per_user``, ``seed``).

    Returns:
        The catalogue. Real catalogues are cached per (name, resolved directory): they are immutable.

    Raises:
        CRSError: Unknown name, or world arguments given for a real dataset.
        DatasetError: Missing data directory or malformed files.
    """
    check_dataset_name(name)
    if name == "persona_world":
        return make_persona_world(**world_kwargs)
    if world_kwargs:
        raise CRSError(
            f"{name} is read from files and takes no generator arguments; got {sorted(world_kwargs)}"
        )
    folder = resolve_data_dir(data_dir).resolve()
    try:
        return _load_real(name, folder)
    except DatasetError as error:
        if not error.found.startswith("no such directory"):
            raise
        # The loaders' hint names only the CLI flag: say it for Python callers and the CLI alike.
        found = f"no such directory: {DATA_DIR_HINT} (the folder that holds {_FOLDERS[name]}/)"
        raise DatasetError(error.path, error.field, error.expected, found) from None


@functools.lru_cache(maxsize=8)
def _load_real(name: str, data_dir: Path) -> Catalog:
    return _LOADERS[name](data_dir)


def clear_cache() -> None:
    """Forget cached real catalogues (e.g. after the files changed on disk)."""
    _load_real.cache_clear()
    mcmipl.clear_cache()


@dataclass(frozen=True)
class Check:
    """One consistency check of a catalogue.

    Attributes:
        name: What was checked.
        status: "ok", "warn" (unusual but usable) or "fail" (the env cannot run on it).
        detail: The figures behind the verdict.
    """

    name: str
    status: str
    detail: str


def _pair_keys(catalog: Catalog, interactions: Interactions) -> np.ndarray:
    """One int64 key per (user, item) pair of `interactions`."""
    keys: np.ndarray = np.asarray(interactions.users, dtype=np.int64) * catalog.n_items + interactions.items
    return keys


def pretrain_overlap(catalog: Catalog) -> dict[str, int]:
    """Per held-out split (every split but the one pre-training reads), how many of its distinct
    (user, item) pairs the pre-training split holds too: pairs a pre-trained model has seen, whose
    evaluation then measures memory. 0 everywhere for the benchmarks' own releases."""
    source = np.unique(_pair_keys(catalog, catalog.split(catalog.pretrain_split)))
    return {
        name: int(np.intersect1d(source, np.unique(_pair_keys(catalog, split)), assume_unique=True).size)
        for name, split in catalog.splits.items()
        if name != catalog.pretrain_split
    }


def check_catalog(catalog: Catalog) -> tuple[Check, ...]:
    """Consistency checks beyond what loading validates, for ``crs data validate``.

    Checks: every item has an aspect (a conversation opens with one of the target's aspects); every
    aspect is held by an item; no (user, item) pair repeats within a split or appears in two splits
    (a pair in train and test leaks the answer); the valid and test splits are present and not
    empty (`Catalog.conversation_split`); users of the evaluation splits have pre-training history;
    the taxonomy covers the aspects.

    Returns:
        The checks, in a fixed order.
    """
    checks: list[Check] = []
    per_item = np.diff(catalog.item_aspects.indptr)
    empty_items = int((per_item == 0).sum())
    checks.append(
        Check(
            "every item has an aspect",
            "fail" if empty_items else "ok",
            f"{empty_items} of {catalog.n_items} items have none"
            if empty_items
            else f"{catalog.n_items} items",
        )
    )
    per_aspect = np.diff(catalog.aspect_items.indptr)
    unused = int((per_aspect == 0).sum())
    checks.append(
        Check(
            "every aspect is held by an item",
            "warn" if unused else "ok",
            f"{unused} of {catalog.n_aspects} aspects are held by no item"
            if unused
            else f"{catalog.n_aspects} aspects",
        )
    )
    for split in ("valid", "test"):
        try:
            detail, status = f"{len(catalog.conversation_split(split))} pairs", "ok"
        except (MissingSplitError, EmptySplitError) as error:
            detail, status = str(error), "fail"
        checks.append(Check(f"{split} split present and not empty", status, detail))
    keys = {}
    for split, inter in catalog.splits.items():
        pair = _pair_keys(catalog, inter)
        unique = np.unique(pair)
        repeats = len(pair) - unique.size
        keys[split] = unique
        checks.append(
            Check(
                f"no repeated (user, item) pair in {split}",
                "warn" if repeats else "ok",
                f"{repeats} repeats" if repeats else f"{len(pair)} pairs",
            )
        )
    present = [s for s in SPLITS if s in keys]
    for i, first in enumerate(present):
        for second in present[i + 1 :]:
            shared = int(np.intersect1d(keys[first], keys[second], assume_unique=True).size)
            checks.append(
                Check(
                    f"{first} and {second} share no pair",
                    "warn" if shared else "ok",
                    f"{shared} shared pairs" if shared else "disjoint",
                )
            )
    pretrain = catalog.pretrain_split
    if pretrain in catalog.splits and "test" in catalog.splits:
        known = np.unique(catalog.splits[pretrain].users)
        tested = np.unique(catalog.splits["test"].users)
        cold = np.setdiff1d(tested, known)
        detail = f"{cold.size} test users without {pretrain} interactions" if cold.size else "all have"
        if cold.size * 2 > tested.size:  # most users unknown: e.g. another dataset's file in this folder
            detail = (
                f"{cold.size:,} of {tested.size:,} test users without {pretrain} interactions: is the "
                f"{pretrain} file this dataset's?"
            )
        checks.append(Check(f"test users have {pretrain} history", "warn" if cold.size else "ok", detail))
    if catalog.taxonomy is not None:
        members = catalog.taxonomy.members
        assert members is not None  # set in Taxonomy.__post_init__
        orphans = int((catalog.taxonomy.parent_of < 0).sum())
        empty = int((np.diff(members.indptr) == 0).sum())
        detail = (
            f"{catalog.taxonomy.n_parents} categories; {orphans} aspects under none; {empty} empty categories"
        )
        checks.append(Check("taxonomy covers the aspects", "warn" if orphans or empty else "ok", detail))
    return tuple(checks)
