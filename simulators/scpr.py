"""Loaders for the SCPR/UNICORN release format: LastFM, LastFM* and Yelp*.

The three datasets share one on-disk layout (see ``../shared/data/README.md``)::

    <data_dir>/
        lastfm/ | lastfm_star/ | yelp_star/
            Graph_generate_data/   item dict (item -> aspect ids), aspect vocabulary, Yelp* taxonomy
            UI_Interaction_data/   review_dict_{train,valid,test}.json: {user id: [item ids]}
            ID_map_info/           HetRec id maps (names only)
        hetrec2011-lastfm-2k/      artists.dat and tags.dat (names only)

`data_dir` may also be a dataset folder itself (``<data_dir>/lastfm_star``). The SCPR files are
required; the files that only give display names may be absent, in which case items and aspects are
called "item 12" / "aspect 5" and a warning is logged.

Every problem with the input raises one `DatasetError` naming the file, the field and what was
expected: a missing folder or file, invalid JSON, a wrong shape, ids out of range, or a folder of
another dataset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.errors import DatasetError

_LOG = logging.getLogger(__name__)

GRAPH = "Graph_generate_data"
UI = "UI_Interaction_data"
ID_MAP = "ID_map_info"
HETREC = "hetrec2011-lastfm-2k"

# A file that only one of the three datasets has: how a folder's dataset is recognised.
_MARKERS: dict[str, str] = {
    "lastfm": f"{GRAPH}/merged_tag_map.json",
    "lastfm_star": f"{GRAPH}/original_tag_map.json",
    "yelp_star": f"{GRAPH}/item_dict-original_tag.json",
}
_ASPECT_KIND = {
    "lastfm": "33 coarse aspects",
    "lastfm_star": "8,438 original HetRec tags",
    "yelp_star": "590 fine aspects under 29 categories",
}


# ----------------------------------------------------------------------------------------------
# Public loaders
# ----------------------------------------------------------------------------------------------


def load_lastfm(data_dir: Path | str) -> Catalog:
    """Load LastFM (EAR/SCPR/UNICORN): 33 coarse aspects, binary questions.

    Aspect names come from ``ID_map_info/tag_reverse_map.json`` (``real_name``); artist names from
    ``ID_map_info/item_map.json`` and HetRec's ``artists.dat``.

    Args:
        data_dir: The folder holding ``lastfm/`` (and ``hetrec2011-lastfm-2k/``), or ``lastfm/`` itself.

    Returns:
        The catalogue: 1,801 users, 7,432 items, 33 aspects, train/valid/test splits.

    Raises:
        DatasetError: A required file is missing or malformed, or the folder holds another dataset.
    """
    folder = _dataset_folder(data_dir, "lastfm")
    tag_map_path = folder / GRAPH / "merged_tag_map.json"
    n_aspects = _vocabulary_size(_read_json(tag_map_path), tag_map_path)
    item_aspects = _read_item_dict(folder / GRAPH / "item_dict.json", n_aspects)
    splits, n_users = _read_splits(folder, item_aspects.shape[0], required=("train", "valid", "test"))
    aspect_names = _lastfm_aspect_names(folder / ID_MAP / "tag_reverse_map.json", n_aspects)
    item_names = _artist_names(folder, item_aspects.shape[0])
    return Catalog(
        name="lastfm",
        item_aspects=item_aspects,
        item_names=item_names,
        aspect_names=aspect_names,
        n_users=n_users,
        splits=splits,
    )


def load_lastfm_star(data_dir: Path | str) -> Catalog:
    """Load LastFM* (SCPR/UNICORN/MCMIPL): the 8,438 original HetRec tags as aspects.

    Aspect names come from HetRec's ``tags.dat`` through ``Graph_generate_data/original_tag_map.json``
    (HetRec tag id -> aspect id); artist names as for LastFM.

    Args:
        data_dir: The folder holding ``lastfm_star/`` (and ``hetrec2011-lastfm-2k/``), or
            ``lastfm_star/`` itself.

    Returns:
        The catalogue: 1,801 users, 7,432 items, 8,438 aspects, train/valid/test splits.

    Raises:
        DatasetError: A required file is missing or malformed, or the folder holds another dataset.
    """
    folder = _dataset_folder(data_dir, "lastfm_star")
    tag_map_path = folder / GRAPH / "original_tag_map.json"
    tag_map = _read_json(tag_map_path)
    n_aspects = _vocabulary_size(tag_map, tag_map_path)
    item_aspects = _read_item_dict(folder / GRAPH / "item_dict.json", n_aspects)
    splits, n_users = _read_splits(folder, item_aspects.shape[0], required=("train", "valid", "test"))
    aspect_names = _hetrec_tag_names(folder, tag_map, n_aspects)
    item_names = _artist_names(folder, item_aspects.shape[0])
    return Catalog(
        name="lastfm_star",
        item_aspects=item_aspects,
        item_names=item_names,
        aspect_names=aspect_names,
        n_users=n_users,
        splits=splits,
    )


def load_yelp_star(data_dir: Path | str) -> Catalog:
    """Load Yelp* (SCPR/UNICORN): 590 fine aspects under 29 first-layer categories.

    Fine aspects come from ``item_dict-original_tag.json``, their names from
    ``second-layer_oringinal_tag_map.json`` (the misspelling is the release's). The taxonomy comes from
    ``2-layer taxonomy.json`` (category name -> fine aspect ids) and ``first-layer_merged_tag_map.json``
    (category name -> category id). As in UNICORN, the taxonomy is a membership relation: some fine
    aspects sit under several categories, some under none (``Taxonomy.members``).

    The release has no train split (it was not recoverable); the catalogue says so in its notes, and
    pre-training uses the valid split (`Catalog.pretrain_split`).

    Args:
        data_dir: The folder holding ``yelp_star/``, or ``yelp_star/`` itself.

    Returns:
        The catalogue: 27,675 users, 70,311 items, 590 aspects (29 parents), valid/test splits.

    Raises:
        DatasetError: A required file is missing or malformed, or the folder holds another dataset.
    """
    folder = _dataset_folder(data_dir, "yelp_star")
    names_path = folder / GRAPH / "second-layer_oringinal_tag_map.json"
    fine_map = _read_json(names_path)
    n_aspects = _vocabulary_size(fine_map, names_path)
    item_aspects = _read_item_dict(folder / GRAPH / "item_dict-original_tag.json", n_aspects)
    has_train = (folder / UI / "review_dict_train.json").is_file()
    required = ("train", "valid", "test") if has_train else ("valid", "test")
    splits, n_users = _read_splits(folder, item_aspects.shape[0], required=required)
    aspect_names = [""] * n_aspects
    for name, index in fine_map.items():
        aspect_names[index] = _yelp_display_name(name)
    taxonomy = _read_yelp_taxonomy(folder, n_aspects)
    n_multi = int((np.diff(taxonomy.members.tocsc().indptr) > 1).sum())
    n_orphans = int((taxonomy.parent_of < 0).sum())
    notes = [
        f"taxonomy: {taxonomy.n_parents} first-layer categories; {n_multi} fine aspects sit under "
        f"several categories and {n_orphans} under none (no enumerated question reaches those)",
    ]
    if not has_train:
        notes.insert(
            0,
            "no train split in the release (Yelp*'s train split was not recoverable): "
            "pre-training uses the valid split",
        )
    return Catalog(
        name="yelp_star",
        item_aspects=item_aspects,
        item_names=tuple(f"item {i}" for i in range(item_aspects.shape[0])),
        aspect_names=aspect_names,
        n_users=n_users,
        splits=splits,
        taxonomy=taxonomy,
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------------------------
# Folders and files
# ----------------------------------------------------------------------------------------------


def detect_dataset(folder: Path) -> str | None:
    """Which SCPR dataset a dataset folder holds, judged by the file only that dataset has."""
    for name, marker in _MARKERS.items():
        if (folder / marker).is_file():
            return name
    return None


def _dataset_folder(data_dir: Path | str, name: str) -> Path:
    """The folder of dataset `name` under `data_dir` (or `data_dir` itself), checked to hold `name`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(
            data_dir,
            "",
            "a directory holding the SCPR/UNICORN data (lastfm/, lastfm_star/, yelp_star/)",
            "no such directory",
        )
    folder = data_dir / name
    if not folder.is_dir():
        if not (data_dir / GRAPH).is_dir():
            raise DatasetError(
                folder,
                "",
                f"the {name} folder of the SCPR/UNICORN release (with {GRAPH}/ and {UI}/)",
                "no such directory: pass --data-dir the folder that contains it",
            )
        folder = data_dir  # a dataset folder was given directly
    marker = _MARKERS[name]
    if not (folder / marker).is_file():
        found = detect_dataset(folder)
        if found is None:
            raise DatasetError(folder / marker, "", f"a required {name} file", "missing")
        raise DatasetError(
            folder,
            "",
            f"a {name} folder ({_ASPECT_KIND[name]}; it has {marker})",
            f"a {found} folder ({_ASPECT_KIND[found]}; it has {_MARKERS[found]}): load it as {found!r}",
        )
    return folder


def _read_json(path: Path) -> object:
    """Parse one JSON file; every failure is a DatasetError naming the file."""
    if not path.is_file():
        raise DatasetError(path, "", "a required file of the SCPR/UNICORN release", "missing")
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(
            path,
            f"line {error.lineno}, column {error.colno}",
            "valid JSON",
            f"{error.msg} (truncated or corrupt file?)",
        ) from None
    except (UnicodeDecodeError, OSError) as error:
        raise DatasetError(path, "", "a readable UTF-8 JSON file", str(error)) from None


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _require_dict(value: object, path: Path, field: str, expected: str) -> dict:
    if not isinstance(value, dict):
        raise DatasetError(path, field, expected, _type_name(value))
    return value


def _int_keys(obj: Mapping[str, object], path: Path, what: str) -> np.ndarray:
    """The keys of a JSON object as non-negative ints, shape (len(obj),)."""
    keys = list(obj.keys())
    try:
        ids = np.array(keys, dtype=np.int64) if keys else np.zeros(0, dtype=np.int64)
    except ValueError:
        bad = next(k for k in keys if not k.strip().lstrip("-").isdigit())
        raise DatasetError(path, "keys", f"{what} ids written as integers", repr(bad)) from None
    if ids.size and ids.min() < 0:
        raise DatasetError(path, "keys", f"non-negative {what} ids", f"id {int(ids.min())}")
    return ids


def _int_lists(
    lists: Sequence[object], keys: Sequence[str], path: Path, field: str
) -> tuple[np.ndarray, ...]:
    """Flatten JSON lists of ints into (lengths, values) arrays; field names the bad entry.

    Args:
        lists: One JSON value per key; each must be a list of ints.
        keys: The JSON key of each value (for messages).
        path: The file (for messages).
        field: Format of the field in messages, with ``{key}`` for the entry's key.

    Returns:
        lengths, shape (len(lists),), int64, and values, shape (sum(lengths),), int64.
    """
    for key, value in zip(keys, lists, strict=True):
        if type(value) is not list:
            raise DatasetError(path, field.format(key=key), "a list of integer ids", _type_name(value))
    if not set(map(type, chain.from_iterable(lists))) <= {int}:  # type: ignore[arg-type]
        for key, value in zip(keys, lists, strict=True):
            for element in value:  # type: ignore[union-attr]
                if type(element) is not int:
                    raise DatasetError(
                        path, field.format(key=key), "a list of integer ids", f"element {element!r}"
                    )
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))  # type: ignore[arg-type]
    values = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum()))  # type: ignore[arg-type]
    return lengths, values


def _vocabulary_size(tag_map: object, path: Path) -> int:
    """Number of aspects of a tag map {name or HetRec id: aspect id}, whose ids must be 0..n-1."""
    tag_map = _require_dict(tag_map, path, "", "a JSON object {tag: aspect id}")
    values = list(tag_map.values())
    bad = next((v for v in values if type(v) is not int), None)
    if bad is not None or not values:
        raise DatasetError(path, "values", "a non-empty object of integer aspect ids", f"value {bad!r}")
    ids = np.array(values, dtype=np.int64)
    n = len(values)
    if not np.array_equal(np.sort(ids), np.arange(n)):
        missing = np.setdiff1d(np.arange(n), ids)
        raise DatasetError(
            path,
            "values",
            f"aspect ids 0..{n - 1}, each once",
            f"ids from {int(ids.min())} to {int(ids.max())}"
            + (f", first missing {int(missing[0])}" if missing.size else ", some repeated"),
        )
    return n


def _read_item_dict(path: Path, n_aspects: int) -> sp.csr_matrix:
    """Read ``{item id: {"feature_index": [aspect ids], ...}}`` into an item x aspect CSR matrix.

    Returns:
        Boolean CSR matrix, shape (n_items, n_aspects); item ids must be 0..n_items-1.
    """
    obj = _require_dict(_read_json(path), path, "", 'a JSON object {item id: {"feature_index": [...]}}')
    keys = list(obj.keys())
    item_ids = _int_keys(obj, path, "item")
    n_items = len(keys)
    if n_items == 0:
        raise DatasetError(path, "", "at least one item", "an empty object")
    if not np.array_equal(np.sort(item_ids), np.arange(n_items)):
        missing = np.setdiff1d(np.arange(n_items), item_ids)
        raise DatasetError(
            path,
            "keys",
            f"item ids 0..{n_items - 1} (one per item, none missing)",
            f"ids up to {int(item_ids.max())}"
            + (f", first missing {int(missing[0])}" if missing.size else ""),
        )
    try:
        lists = [entry["feature_index"] for entry in obj.values()]
    except (KeyError, TypeError):
        for key, entry in obj.items():
            if not isinstance(entry, dict):
                raise DatasetError(path, key, 'an object with "feature_index"', _type_name(entry)) from None
            if "feature_index" not in entry:
                raise DatasetError(
                    path, f"{key}.feature_index", "a list of aspect ids", "no such key"
                ) from None
        raise  # pragma: no cover - the loop above always finds the culprit
    lengths, aspects = _int_lists(lists, keys, path, "{key}.feature_index")
    if aspects.size and (aspects.min() < 0 or aspects.max() >= n_aspects):
        bad_at = int(np.flatnonzero((aspects < 0) | (aspects >= n_aspects))[0])
        owner = keys[int(np.searchsorted(np.cumsum(lengths), bad_at, side="right"))]
        raise DatasetError(
            path,
            f"{owner}.feature_index",
            f"aspect ids in [0, {n_aspects}) (the dataset's aspect vocabulary)",
            f"aspect id {int(aspects[bad_at])}",
        )
    rows = np.repeat(item_ids, lengths)
    ones = np.ones(aspects.size, dtype=np.bool_)
    return sp.csr_matrix((ones, (rows, aspects)), shape=(n_items, n_aspects), dtype=np.bool_)


def _read_splits(
    folder: Path, n_items: int, required: tuple[str, ...]
) -> tuple[dict[str, Interactions], int]:
    """Read ``review_dict_<split>.json`` for each required split.

    Returns:
        The splits and the number of users (largest user id in any split + 1).
    """
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in required:
        path = folder / UI / f"review_dict_{split}.json"
        obj = _require_dict(_read_json(path), path, "", "a JSON object {user id: [item ids]}")
        user_ids = _int_keys(obj, path, "user")
        keys = list(obj.keys())
        lengths, items = _int_lists(list(obj.values()), keys, path, "{key}")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            bad_at = int(np.flatnonzero((items < 0) | (items >= n_items))[0])
            owner = keys[int(np.searchsorted(np.cumsum(lengths), bad_at, side="right"))]
            raise DatasetError(
                path,
                owner,
                f"item ids in [0, {n_items}) (the items of the item dict)",
                f"item id {int(items[bad_at])}",
            )
        raw[split] = (np.repeat(user_ids, lengths), items)
    n_users = 1 + max((int(users.max()) for users, _ in raw.values() if users.size), default=-1)
    splits = {split: Interactions(users=users, items=items) for split, (users, items) in raw.items()}
    return splits, n_users


# ----------------------------------------------------------------------------------------------
# Yelp* taxonomy
# ----------------------------------------------------------------------------------------------


def _read_yelp_taxonomy(folder: Path, n_aspects: int) -> Taxonomy:
    """Read the 2-layer taxonomy: 29 categories, each listing fine aspect ids."""
    map_path = folder / GRAPH / "first-layer_merged_tag_map.json"
    parent_map = _read_json(map_path)
    n_parents = _vocabulary_size(parent_map, map_path)
    assert isinstance(parent_map, dict)
    parent_names = [""] * n_parents
    for name, index in parent_map.items():
        parent_names[index] = name
    tax_path = folder / GRAPH / "2-layer taxonomy.json"
    tax = _require_dict(
        _read_json(tax_path), tax_path, "", "a JSON object {category name: [fine aspect ids]}"
    )
    unknown = next((name for name in tax if name not in parent_map), None)
    if unknown is not None:
        raise DatasetError(tax_path, unknown, f"a category named in {map_path.name}", "an unknown category")
    names = list(tax.keys())
    lengths, aspects = _int_lists(list(tax.values()), names, tax_path, "{key}")
    if aspects.size and (aspects.min() < 0 or aspects.max() >= n_aspects):
        bad_at = int(np.flatnonzero((aspects < 0) | (aspects >= n_aspects))[0])
        owner = names[int(np.searchsorted(np.cumsum(lengths), bad_at, side="right"))]
        raise DatasetError(
            tax_path, owner, f"fine aspect ids in [0, {n_aspects})", f"id {int(aspects[bad_at])}"
        )
    parents = np.repeat(np.array([parent_map[name] for name in names], dtype=np.int64), lengths)
    ones = np.ones(aspects.size, dtype=np.bool_)
    members = sp.csr_matrix((ones, (parents, aspects)), shape=(n_parents, n_aspects), dtype=np.bool_)
    by_aspect = members.tocsc()
    by_aspect.sort_indices()
    counts = np.diff(by_aspect.indptr)
    parent_of = np.full(n_aspects, -1, dtype=np.int64)
    listed = counts > 0
    parent_of[listed] = by_aspect.indices[by_aspect.indptr[:-1][listed]]  # lowest category listing it
    return Taxonomy(parent_of=parent_of, parent_names=tuple(parent_names), members=members)


def _yelp_display_name(name: str) -> str:
    """ "category_Bars" -> "Bars"; "city_12" -> "city 12"; "star_4" -> "star 4"."""
    if name.startswith("category_"):
        return name[len("category_") :]
    return name.replace("_", " ")


# ----------------------------------------------------------------------------------------------
# Display names (optional files)
# ----------------------------------------------------------------------------------------------


def _hetrec_dir(folder: Path) -> Path:
    return folder.parent / HETREC


def _read_hetrec_table(path: Path) -> dict[int, str] | None:
    """Read a HetRec ``id<TAB>name...`` table (header line first); None with a warning when absent."""
    if not path.is_file():
        _LOG.warning("%s not found: using numbered names instead", path)
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as error:
        raise DatasetError(path, "", "a readable UTF-8 text table", str(error)) from None
    table: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].isdigit():
            raise DatasetError(path, f"line {number}", "an integer id, a tab, then a name", repr(line[:60]))
        table[int(parts[0])] = parts[1]
    return table


def _artist_names(folder: Path, n_items: int) -> list[str]:
    """Artist name of each item via ID_map_info/item_map.json and HetRec artists.dat."""
    names = [f"item {i}" for i in range(n_items)]
    map_path = folder / ID_MAP / "item_map.json"
    if not map_path.is_file():
        _LOG.warning("%s not found: items are shown as 'item <id>'", map_path)
        return names
    item_map = _require_dict(_read_json(map_path), map_path, "", "a JSON object {HetRec artist id: item id}")
    artists = _read_hetrec_table(_hetrec_dir(folder) / "artists.dat")
    if artists is None:
        return names
    unnamed = 0
    for artist_id, item in item_map.items():
        if type(item) is not int or not 0 <= item < n_items:
            raise DatasetError(map_path, artist_id, f"an item id in [0, {n_items})", repr(item))
        name = artists.get(int(artist_id)) if artist_id.isdigit() else None
        if name is None:
            unnamed += 1
        else:
            names[item] = name
    if unnamed:
        _LOG.info("%d items have no artist name in artists.dat; shown as 'item <id>'", unnamed)
    return names


def _lastfm_aspect_names(path: Path, n_aspects: int) -> list[str]:
    """LastFM's coarse aspect names from tag_reverse_map.json ({id: {"real_name": [...]}})."""
    names = [f"aspect {a}" for a in range(n_aspects)]
    if not path.is_file():
        _LOG.warning("%s not found: aspects are shown as 'aspect <id>'", path)
        return names
    obj = _require_dict(_read_json(path), path, "", 'a JSON object {aspect id: {"real_name": [...]}}')
    for key, entry in obj.items():
        real = entry.get("real_name") if isinstance(entry, dict) else None
        if not key.isdigit() or int(key) >= n_aspects:
            raise DatasetError(path, key, f"an aspect id in [0, {n_aspects})", repr(key))
        if not isinstance(real, list) or not all(isinstance(r, str) for r in real):
            raise DatasetError(path, f"{key}.real_name", "a list of tag names", _type_name(real))
        names[int(key)] = " / ".join(real)
    return names


def _hetrec_tag_names(folder: Path, tag_map: Mapping[str, int], n_aspects: int) -> list[str]:
    """LastFM* aspect names: HetRec tags.dat through original_tag_map.json (HetRec tag id -> aspect)."""
    names = [f"aspect {a}" for a in range(n_aspects)]
    tags = _read_hetrec_table(_hetrec_dir(folder) / "tags.dat")
    if tags is None:
        return names
    for tag_id, aspect in tag_map.items():
        name = tags.get(int(tag_id)) if tag_id.isdigit() else None
        if name is not None:
            names[aspect] = name
    return names
