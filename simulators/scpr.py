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
another dataset. The rules that a careless or hostile file could otherwise slip past:

- An id (a JSON key naming a user, item or aspect, or a HetRec id) is written in canonical ASCII
  decimal below 2**63 (`parse_id`): Python's ``int()`` would also take "１２", "٣", " 12", "+12" or
  "1_2" and silently merge two keys into one id.
- A JSON object never repeats a key (the parser would keep only the last one), and JSON nested too
  deep for the parser is refused rather than crashing it.
- User ids are dense (`_check_user_ids_dense`): every id up to the largest becomes a user, so one
  stray key "2000000000" would otherwise allocate two billion users.
- A split file holds at least one interaction: ``crs data validate`` refuses what ``crs eval`` and
  ``crs train`` could not use.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

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
# Conversations UNICORN's evaluation runs (RL/RL_evaluate.py, dqn_evaluate, default --eval_num): the
# first 4,000 of its seeded order of the test pairs on LastFM and LastFM*, 2,500 on Yelp* and YELP
# (`simulators.goals.GoalSampler.protocol_order`).
UNICORN_EVALUATION_CONVERSATIONS: Mapping[str, int] = MappingProxyType(
    {"lastfm": 4000, "lastfm_star": 4000, "yelp_star": 2500}
)
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
        item_names=tuple(item_names),
        aspect_names=tuple(aspect_names),
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
    assert isinstance(tag_map, dict)  # _vocabulary_size checked it
    item_aspects = _read_item_dict(folder / GRAPH / "item_dict.json", n_aspects)
    splits, n_users = _read_splits(folder, item_aspects.shape[0], required=("train", "valid", "test"))
    aspect_names = _hetrec_tag_names(folder, tag_map, n_aspects)
    item_names = _artist_names(folder, item_aspects.shape[0])
    return Catalog(
        name="lastfm_star",
        item_aspects=item_aspects,
        item_names=tuple(item_names),
        aspect_names=tuple(aspect_names),
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
    assert isinstance(fine_map, dict)  # _vocabulary_size checked it
    item_aspects = _read_item_dict(folder / GRAPH / "item_dict-original_tag.json", n_aspects)
    has_train = (folder / UI / "review_dict_train.json").is_file()
    required = ("train", "valid", "test") if has_train else ("valid", "test")
    splits, n_users = _read_splits(folder, item_aspects.shape[0], required=required)
    aspect_names = [""] * n_aspects
    for name, index in fine_map.items():
        aspect_names[index] = _yelp_display_name(name)
    taxonomy = _read_yelp_taxonomy(folder, n_aspects)
    assert taxonomy.members is not None  # set in Taxonomy.__post_init__
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
        aspect_names=tuple(aspect_names),
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
            "a file, not a directory" if data_dir.exists() else "no such directory",
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
    """Parse one JSON file; every failure is a DatasetError naming the file.

    Besides invalid JSON this refuses an object that repeats a key (the parser would silently keep
    only the last value) and nesting too deep for the parser (a RecursionError otherwise).
    """
    if not path.is_file():
        raise DatasetError(path, "", "a required file of the SCPR/UNICORN release", "missing")

    def unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DatasetError(
                        path,
                        key,
                        "each key once in a JSON object",
                        "the key twice (only the last would count)",
                    )
                seen.add(key)
        return obj

    try:
        with path.open("rb") as handle:
            return json.load(handle, object_pairs_hook=unique_keys)
    except DatasetError:  # a repeated key (DatasetError is also a ValueError: keep it as it is)
        raise
    except json.JSONDecodeError as error:
        raise DatasetError(
            path,
            f"line {error.lineno}, column {error.colno}",
            "valid JSON",
            f"{error.msg} (truncated or corrupt file?)",
        ) from None
    except (UnicodeDecodeError, OSError) as error:
        raise DatasetError(path, "", "a readable UTF-8 JSON file", str(error)) from None
    except RecursionError:
        raise DatasetError(
            path,
            "",
            "JSON of the release's shape (objects and lists a few levels deep)",
            "nesting too deep to parse",
        ) from None
    except ValueError as error:  # e.g. an integer literal of more than 4,300 digits
        raise DatasetError(path, "", "valid JSON", str(error)) from None


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _require_dict(value: object, path: Path, field: str, expected: str) -> dict[str, Any]:
    """`value` if it is a JSON object; its values are parsed JSON (Any), checked where they are used."""
    if not isinstance(value, dict):
        raise DatasetError(path, field, expected, _type_name(value))
    return value


# An id as the release writes it: "0", or an ASCII digit 1-9 followed by ASCII digits.
_ID_TEXT = re.compile(r"0|[1-9][0-9]*")
_MAX_ID = 2**63 - 1  # ids are stored as int64
ID_RULE = "written in ASCII decimal digits (0, 1, 2, ...; no sign, space, leading zero or other digits)"


def parse_id(text: str) -> int | None:
    """The id that `text` writes, or None unless it is a canonical ASCII decimal below 2**63.

    Python's ``int()`` also accepts "１２" (fullwidth), "٣" (Arabic-Indic), " 12", "+12", "012" and
    "1_2"; taken as ids they would silently merge distinct keys into one id. Only the canonical form
    is an id here.

    Args:
        text: A JSON key or a HetRec table's first column.

    Returns:
        The id, or None when `text` is not one.
    """
    if len(text) > len(str(_MAX_ID)) or _ID_TEXT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def _bad_id(text: str) -> str:
    """Describe a key that `parse_id` refused, for the `found` part of a DatasetError."""
    if text.startswith("-") and _ID_TEXT.fullmatch(text[1:]):
        return f"negative id {text}"
    if _ID_TEXT.fullmatch(text):
        return f"id {text} (too large: ids must be below 2**63)"
    shown = repr(text) if text.isascii() else f"{text!r} (non-ASCII: {text!a})"
    return f"key {shown}"


def _int_keys(obj: Mapping[str, object], path: Path, what: str) -> np.ndarray:
    """The keys of a JSON object as ids (`parse_id`), int64 of shape (len(obj),).

    Raises:
        DatasetError: A key is not an id; the message quotes the key.
    """
    ids: list[int] = []
    for key in obj:
        value = parse_id(key)
        if value is None:
            raise DatasetError(path, "keys", f"{what} ids {ID_RULE}", _bad_id(key))
        ids.append(value)
    return np.array(ids, dtype=np.int64)


def _int_lists(
    lists: Sequence[object], keys: Sequence[str], path: Path, field: str
) -> tuple[np.ndarray, ...]:
    """Flatten JSON lists of ints into (lengths, values) arrays; field names the bad entry.

    Args:
        lists: One JSON value per key; each must be a list of ints (bools are not ints here).
        keys: The JSON key of each value (for messages).
        path: The file (for messages).
        field: Format of the field in messages, with ``{key}`` for the entry's key.

    Returns:
        lengths, shape (len(lists),), int64, and values, shape (sum(lengths),), int64.
    """
    for key, value in zip(keys, lists, strict=True):
        if type(value) is not list:
            raise DatasetError(path, field.format(key=key), "a list of integer ids", _type_name(value))
    rows = cast("Sequence[list[object]]", lists)  # each value is a list: checked just above
    if not set(map(type, chain.from_iterable(rows))) <= {int}:
        for key, row in zip(keys, rows, strict=True):
            for element in row:
                if type(element) is not int:
                    raise DatasetError(
                        path, field.format(key=key), "a list of integer ids", f"element {element!r}"
                    )
    int_rows = cast("Sequence[list[int]]", rows)  # each element is an int: checked just above
    lengths = np.fromiter(map(len, int_rows), dtype=np.int64, count=len(int_rows))
    try:
        values = np.fromiter(chain.from_iterable(int_rows), dtype=np.int64, count=int(lengths.sum()))
    except OverflowError:
        for key, value in zip(keys, int_rows, strict=True):
            for element in value:
                if not -_MAX_ID - 1 <= element <= _MAX_ID:
                    raise DatasetError(
                        path, field.format(key=key), "integer ids below 2**63", f"element {element}"
                    ) from None
        raise  # pragma: no cover - the loop above always finds the culprit
    return lengths, values


def _vocabulary_size(tag_map: object, path: Path) -> int:
    """Number of aspects of a tag map {name or HetRec id: aspect id}, whose ids must be 0..n-1."""
    tag_map = _require_dict(tag_map, path, "", "a JSON object {tag: aspect id}")
    values = list(tag_map.values())
    bad = next((v for v in values if type(v) is not int), None)
    if bad is not None or not values:
        found = f"value {bad!r}" if bad is not None else "an empty object"
        raise DatasetError(path, "values", "a non-empty object of integer aspect ids", found)
    n = len(values)
    expected = set(range(n))
    if set(values) != expected:  # Python ints: no overflow however large the values
        missing = sorted(expected.difference(values))
        raise DatasetError(
            path,
            "values",
            f"aspect ids 0..{n - 1}, each once",
            f"ids from {min(values)} to {max(values)}"
            + (f", first missing {missing[0]}" if missing else ", some repeated"),
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


# What each split is for, in the message that refuses an empty split file.
_SPLIT_USE = {
    "train": "it pre-trains the rankers",
    "valid": "RL training conversations come from it (and pre-training when there is no train split)",
    "test": "evaluation conversations come from it",
}

# User ids must be dense: the largest id may be at most this many times the number of distinct users
# (plus `_USER_ID_SLACK`). The real releases number their users 0..n-1 with no gap.
_USER_ID_FACTOR = 2
_USER_ID_SLACK = 1000


def _read_splits(
    folder: Path, n_items: int, required: tuple[str, ...]
) -> tuple[dict[str, Interactions], int]:
    """Read ``review_dict_<split>.json`` for each required split.

    Returns:
        The splits and the number of users (largest user id in any split + 1).

    Raises:
        DatasetError: A split file is malformed, holds no interaction, names an item outside the
            item dict, or its user ids are not dense (`_check_user_ids_dense`).
    """
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in required:
        path = folder / UI / f"review_dict_{split}.json"
        obj = _require_dict(_read_json(path), path, "", "a JSON object {user id: [item ids]}")
        user_ids = _int_keys(obj, path, "user")
        keys = list(obj.keys())
        lengths, items = _int_lists(list(obj.values()), keys, path, "{key}")
        if items.size == 0:
            raise DatasetError(
                path,
                "",
                f"at least one (user, item) interaction ({_SPLIT_USE[split]})",
                "an empty object" if not obj else f"{len(obj)} users, every one with an empty list",
            )
        if items.min() < 0 or items.max() >= n_items:
            bad_at = int(np.flatnonzero((items < 0) | (items >= n_items))[0])
            owner = keys[int(np.searchsorted(np.cumsum(lengths), bad_at, side="right"))]
            raise DatasetError(
                path,
                owner,
                f"item ids in [0, {n_items}) (the items of the item dict)",
                f"item id {int(items[bad_at])}",
            )
        raw[split] = (np.repeat(user_ids, lengths), items)
    _check_user_ids_dense(folder, {split: users for split, (users, _) in raw.items()})
    n_users = 1 + max(int(users.max()) for users, _ in raw.values())
    splits = {split: Interactions(users=users, items=items) for split, (users, items) in raw.items()}
    return splits, n_users


def _check_user_ids_dense(folder: Path, users_by_split: Mapping[str, np.ndarray]) -> None:
    """Refuse user ids far beyond the number of users: n_users is the largest id + 1.

    Rule: with n distinct users across the splits, every user id must be below
    ``_USER_ID_FACTOR * n + _USER_ID_SLACK`` (2n + 1,000): gaps are allowed, but at most about half
    of the id range may be unused, so the user count (and every per-user array) stays proportional to
    the data. One stray key "2000000000" would otherwise make two billion users.

    Args:
        folder: The dataset folder (for messages).
        users_by_split: The user of every interaction, per split, int64 of shape (n_interactions,).

    Raises:
        DatasetError: Naming the split file and the key of the largest user id.
    """
    n_distinct = int(np.unique(np.concatenate(list(users_by_split.values()))).size)
    bound = _USER_ID_FACTOR * n_distinct + _USER_ID_SLACK
    for split, users in users_by_split.items():
        largest = int(users.max())
        if largest >= bound:
            raise DatasetError(
                folder / UI / f"review_dict_{split}.json",
                str(largest),
                f"user ids below {bound:,}: ids must be dense, since every id up to the largest one "
                f"becomes a user ({n_distinct:,} distinct users allow ids below "
                f"{_USER_ID_FACTOR} x {n_distinct:,} + {_USER_ID_SLACK:,}); renumber the users "
                f"0..{n_distinct - 1}",
                f"user id {largest:,}",
            )


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
        table_id = parse_id(parts[0]) if len(parts) >= 2 else None
        if table_id is None:
            raise DatasetError(
                path, f"line {number}", f"an id {ID_RULE}, a tab, then a name", repr(line[:60])
            )
        table[table_id] = parts[1]
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
    artist_ids = _int_keys(item_map, map_path, "HetRec artist")
    unnamed = 0
    for artist_id, (key, item) in zip(artist_ids.tolist(), item_map.items(), strict=True):
        if type(item) is not int or not 0 <= item < n_items:
            raise DatasetError(map_path, key, f"an item id in [0, {n_items})", repr(item))
        name = artists.get(artist_id)
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
    for aspect, (key, entry) in zip(_int_keys(obj, path, "aspect").tolist(), obj.items(), strict=True):
        real = entry.get("real_name") if isinstance(entry, dict) else None
        if aspect >= n_aspects:
            raise DatasetError(path, key, f"an aspect id in [0, {n_aspects})", repr(key))
        if not isinstance(real, list) or not all(isinstance(r, str) for r in real):
            raise DatasetError(path, f"{key}.real_name", "a list of tag names", _type_name(real))
        names[aspect] = " / ".join(real)
    return names


def _hetrec_tag_names(folder: Path, tag_map: Mapping[str, int], n_aspects: int) -> list[str]:
    """LastFM* aspect names: HetRec tags.dat through original_tag_map.json (HetRec tag id -> aspect)."""
    tag_ids = _int_keys(tag_map, folder / GRAPH / "original_tag_map.json", "HetRec tag")
    names = [f"aspect {a}" for a in range(n_aspects)]
    tags = _read_hetrec_table(_hetrec_dir(folder) / "tags.dat")
    if tags is None:
        return names
    for tag_id, aspect in zip(tag_ids.tolist(), tag_map.values(), strict=True):
        name = tags.get(tag_id)
        if name is not None:
            names[aspect] = name
    return names
