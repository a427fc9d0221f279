"""The dataset registry: names, data directory resolution, caching, consistency checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.datasets import (
    DATA_DIR_ENV,
    DATASET_NAMES,
    DatasetSpec,
    check_catalog,
    clear_cache,
    load_catalog,
    pretrain_overlap,
    resolve_data_dir,
)
from simulators.errors import CRSError, DatasetError, EmptySplitError, MissingSplitError
from simulators.persona_world import make_persona_world


def _write_tiny_lastfm(root: Path, items: dict[str, list[int]], test: dict[str, list[int]]) -> None:
    """A LastFM tree with 3 aspects, the given items, train {"0": [0]}, valid {"1": [0]} and `test`."""
    files = {
        "Graph_generate_data/item_dict.json": {k: {"feature_index": v} for k, v in items.items()},
        "Graph_generate_data/merged_tag_map.json": {"13": 0, "18": 1, "73": 2},
        "UI_Interaction_data/review_dict_train.json": {"0": [0]},
        "UI_Interaction_data/review_dict_valid.json": {"1": [0]},
        "UI_Interaction_data/review_dict_test.json": test,
    }
    for name, obj in files.items():
        path = root / "lastfm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def test_dataset_names() -> None:
    assert DATASET_NAMES == (
        "persona_world",
        "lastfm",
        "lastfm_star",
        "yelp_star",
        "mcmipl_lastfm_star",
        "mcmipl_movie",
        "mcmipl_yelp_star",
    )


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(CRSError) as info:
        load_catalog("lastfm-star")
    message = str(info.value)
    assert "'lastfm-star'" in message and all(name in message for name in DATASET_NAMES)


def test_resolve_data_dir_argument_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "from_env"
    monkeypatch.delenv(DATA_DIR_ENV)
    with pytest.raises(DatasetError) as info:
        resolve_data_dir(None)
    assert "--data-dir" in str(info.value) and DATA_DIR_ENV in str(info.value)


def test_real_dataset_without_directory_is_a_dataset_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetError, match="CRS_DATA_DIR"):
        load_catalog("lastfm")


def test_persona_world_takes_generator_arguments() -> None:
    world = load_catalog("persona_world", n_users=50, n_items=80, seed=3)
    assert isinstance(world, Catalog) and world.name == "persona_world"
    assert (world.n_users, world.n_items) == (50, 80)
    again = load_catalog("persona_world", n_users=50, n_items=80, seed=3)
    assert again.describe() == world.describe()


def test_real_dataset_rejects_generator_arguments(tmp_path: Path) -> None:
    with pytest.raises(CRSError, match="seed"):
        load_catalog("lastfm", tmp_path, seed=1)


def test_real_catalogs_are_cached_per_resolved_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]}, {"0": [1]})
    first = load_catalog("lastfm", tmp_path)
    assert load_catalog("lastfm", tmp_path / "lastfm" / "..") is first  # same directory, resolved
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert load_catalog("lastfm") is first
    clear_cache()
    assert load_catalog("lastfm", tmp_path) is not first


def _status(catalog: Catalog) -> dict[str, str]:
    return {check.name: check.status for check in check_catalog(catalog)}


def test_checks_pass_on_a_clean_tree(tmp_path: Path) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]}, {"0": [1]})
    status = _status(load_catalog("lastfm", tmp_path))
    assert set(status.values()) == {"ok"}
    assert "train and test share no pair" in status


def test_most_test_users_unknown_to_the_pretraining_split_ask_whose_file_it_is(tmp_path: Path) -> None:
    """Another dataset's train file put in a folder leaves most test users without history: the check
    says so and asks (it gave the count alone)."""
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [1]}, {"5": [0], "6": [1], "0": [1]})
    checks = {c.name: c for c in check_catalog(load_catalog("lastfm", tmp_path))}
    check = checks["test users have train history"]
    assert check.status == "warn"
    assert check.detail == "2 of 3 test users without train interactions: is the train file this dataset's?"


def test_checks_flag_an_item_without_aspects_and_leaked_pairs(tmp_path: Path) -> None:
    # Item 1 has no aspect (fail); test pair (0, 0) is also a train pair (warn); user 2 is new (warn).
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": []}, {"0": [0], "2": [1]})
    checks = {check.name: check for check in check_catalog(load_catalog("lastfm", tmp_path))}
    assert checks["every item has an aspect"].status == "fail"
    assert checks["every item has an aspect"].detail == "1 of 2 items have none"
    assert checks["train and test share no pair"].status == "warn"
    assert checks["train and test share no pair"].detail == "1 shared pairs"
    assert checks["test users have train history"].detail == "1 test users without train interactions"
    assert checks["every aspect is held by an item"].status == "warn"  # aspect 2 is unused


@pytest.mark.real_data
def test_real_catalogs_pass_every_check_but_yelp_warnings(real_data_dir: Path) -> None:
    for name in ("lastfm", "lastfm_star"):
        assert set(_status(load_catalog(name, real_data_dir)).values()) == {"ok"}
    yelp = _status(load_catalog("yelp_star", real_data_dir))
    assert "fail" not in yelp.values()
    # Yelp* warnings: 73 aspects in no category; 70 test users with no valid interaction.
    assert yelp["taxonomy covers the aspects"] == "warn"
    assert yelp["test users have valid history"] == "warn"


def _catalog_with_splits(**splits: Interactions) -> Catalog:
    """1 user, 2 items with one aspect each, and the given splits."""
    return Catalog(
        name="tiny",
        item_aspects=sp.csr_matrix(np.array([[True], [True]])),
        item_names=("item 0", "item 1"),
        aspect_names=("aspect 0",),
        n_users=1,
        splits=splits,
    )


def test_an_empty_or_missing_conversation_split_fails_the_checks() -> None:
    # The attack: a catalogue whose test split holds no interaction (crs eval cannot draw from it).
    empty = Interactions(users=np.zeros(0, dtype=np.int64), items=np.zeros(0, dtype=np.int64))
    one = Interactions(users=np.array([0]), items=np.array([1]))
    catalog = _catalog_with_splits(train=one, test=empty)
    checks = {check.name: check for check in check_catalog(catalog)}
    assert checks["test split present and not empty"].status == "fail"
    assert checks["test split present and not empty"].detail == (
        "tiny: split 'test' is empty; no conversation can be drawn"
    )
    assert checks["valid split present and not empty"].status == "fail"
    assert "no 'valid' split" in checks["valid split present and not empty"].detail
    with pytest.raises(EmptySplitError, match="'test' is empty"):
        catalog.conversation_split("test")
    with pytest.raises(MissingSplitError):
        catalog.conversation_split("valid")
    assert catalog.conversation_split("train") is catalog.split("train")


def test_an_empty_test_file_is_refused_when_loading(tmp_path: Path) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]}, {})
    with pytest.raises(DatasetError) as info:
        load_catalog("lastfm", tmp_path)
    assert info.value.path.endswith("review_dict_test.json") and info.value.found == "an empty object"


def test_interactions_of_mismatched_shapes_are_refused() -> None:
    """Guards against a split built from 2-D id arrays (read as one interaction per row) or with one
    ground-truth persona too few or many."""
    with pytest.raises(CRSError, match="1-D"):
        Interactions(users=np.zeros((2, 2), dtype=np.int64), items=np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(CRSError, match="personas must have shape"):
        Interactions(users=np.array([0, 0]), items=np.array([0, 1]), personas=np.array([1]))


@pytest.mark.parametrize(
    "split, users, items, fragment",
    [
        ("train", [0, -1], [0, 1], "user ids outside"),
        ("valid", [0, 1], [0, 1], "user ids outside"),  # 1 user: id 1 is outside
        ("test", [0, 0], [-1, 1], "item ids outside"),
        ("test", [0, 0], [0, 2], "item ids outside"),  # 2 items: id 2 is outside
        ("holdout", [0], [0], "unknown split 'holdout'"),
    ],
)
def test_a_split_with_ids_outside_the_catalogue_or_an_unknown_name_is_refused(
    split: str, users: list[int], items: list[int], fragment: str
) -> None:
    """Guards against a split whose negative or too large ids would index another user's or item's
    rows (numpy wraps -1 around), or a split named neither train, valid nor test (never evaluated)."""
    with pytest.raises(CRSError, match=fragment):
        _catalog_with_splits(**{split: Interactions(users=np.array(users), items=np.array(items))})


def test_taxonomy_parents_must_lie_among_the_categories() -> None:
    """Guards against a parent id equal to the number of categories, or -1 ("no parent") without an
    explicit membership matrix, accepted; and a membership matrix of the wrong shape."""
    with pytest.raises(CRSError, match="must lie in"):
        Taxonomy(parent_of=np.array([0, 2]), parent_names=("a", "b"))
    with pytest.raises(CRSError, match="must lie in"):
        Taxonomy(parent_of=np.array([0, -1]), parent_names=("a", "b"))
    members = sp.csr_matrix(np.array([[True, False], [False, False]]))
    orphan = Taxonomy(parent_of=np.array([0, -1]), parent_names=("a", "b"), members=members)
    assert orphan.children(0).tolist() == [0] and orphan.children(1).tolist() == []
    assert orphan.parents_of(np.array([1])).tolist() == [] and orphan.parents_of(
        np.array([0, 1])
    ).tolist() == [0]
    with pytest.raises(CRSError, match="members must have shape"):
        Taxonomy(
            parent_of=np.array([0, 1]), parent_names=("a", "b"), members=sp.csr_matrix((2, 3), dtype=bool)
        )
    plain = Taxonomy(parent_of=np.array([1, 0, 1]), parent_names=("a", "b"))
    assert plain.children(1).tolist() == [0, 2] and plain.parents_of(np.array([2, 1])).tolist() == [0, 1]
    with pytest.raises(CRSError, match="taxonomy covers 3 aspects"):
        Catalog(
            name="tiny",
            item_aspects=sp.csr_matrix(np.array([[True], [True]])),
            item_names=("item 0", "item 1"),
            aspect_names=("aspect 0",),
            n_users=1,
            splits={},
            taxonomy=plain,
        )


def _pairs(*pairs: tuple[int, int]) -> Interactions:
    return Interactions(users=np.array([u for u, _ in pairs]), items=np.array([i for _, i in pairs]))


def _catalog(n_users: int, n_items: int, **splits: Interactions) -> Catalog:
    """`n_users` users and `n_items` items with one aspect each, and the given splits."""
    return Catalog(
        name="tiny",
        item_aspects=sp.csr_matrix(np.ones((n_items, 1), dtype=bool)),
        item_names=tuple(f"item {i}" for i in range(n_items)),
        aspect_names=("aspect 0",),
        n_users=n_users,
        splits=splits,
    )


def test_pretrain_overlap_counts_the_distinct_pairs_each_held_out_split_shares() -> None:
    """Guards against pair keys that collide across users ((0, 2) and (1, 0) with 2 users and 3 items),
    the pre-training split counted against itself, and a catalogue without train (Yelp*: pre-training
    reads valid) compared with a train split it lacks."""
    catalog = _catalog(
        2,
        3,
        train=_pairs((0, 2), (1, 1), (1, 1)),
        valid=_pairs((1, 1), (1, 1), (0, 0)),
        test=_pairs((1, 0), (0, 1)),
    )
    assert pretrain_overlap(catalog) == {"valid": 1, "test": 0}
    yelp_like = _catalog(2, 3, valid=_pairs((0, 2), (1, 1)), test=_pairs((1, 1), (0, 2), (1, 0)))
    assert yelp_like.pretrain_split == "valid"
    assert pretrain_overlap(yelp_like) == {"test": 2}


def test_checks_count_repeats_shared_pairs_of_every_two_splits_and_cold_test_users() -> None:
    """Guards against repeated pairs not counted, a pair of splits left uncompared (valid and test),
    and the cold-user check reading the wrong way (train users missing from test are not cold)."""
    catalog = _catalog(
        4,
        3,
        train=_pairs((0, 0), (1, 1), (3, 2)),
        valid=_pairs((2, 2), (2, 2), (2, 2)),
        test=_pairs((2, 2), (0, 1)),
    )
    checks = {check.name: check for check in check_catalog(catalog)}
    assert (
        checks["no repeated (user, item) pair in valid"].status,
        checks["no repeated (user, item) pair in valid"].detail,
    ) == ("warn", "2 repeats")
    assert checks["no repeated (user, item) pair in train"].status == "ok"
    assert checks["train and valid share no pair"].status == "ok"
    assert checks["train and test share no pair"].status == "ok"
    assert (checks["valid and test share no pair"].status, checks["valid and test share no pair"].detail) == (
        "warn",
        "1 shared pairs",
    )
    # test users 0 and 2: user 2 has no train interaction (users 1 and 3 are not in test: not counted)
    assert checks["test users have train history"].detail == "1 test users without train interactions"


def test_an_empty_data_dir_argument_falls_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against "" (an unset --data-dir, a blank config value) read as the current folder rather
    than as no argument."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert resolve_data_dir("") == tmp_path / "from_env"


def test_a_dataset_spec_builds_the_world_of_its_seed() -> None:
    """Guards against `DatasetSpec` dropping its world seed: two seeds must give two worlds, each the
    one `make_persona_world` gives for that seed."""
    sizes = (("n_users", 12), ("n_items", 30), ("interactions_per_user", 4))
    spec = DatasetSpec(world_seed=3, world=sizes)
    assert spec.world_kwargs() == {"seed": 3, "n_users": 12, "n_items": 30, "interactions_per_user": 4}
    world = spec.load()
    same = make_persona_world(seed=3, n_users=12, n_items=30, interactions_per_user=4)
    other = DatasetSpec(world_seed=4, world=sizes).load()
    assert (world.item_aspects != same.item_aspects).nnz == 0
    assert (world.item_aspects != other.item_aspects).nnz > 0
    assert DatasetSpec("lastfm", world_seed=3).world_kwargs() == {}
