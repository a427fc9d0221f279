"""The dataset registry: names, data directory resolution, caching, consistency checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions
from simulators.datasets import (
    DATA_DIR_ENV,
    DATASET_NAMES,
    check_catalog,
    clear_cache,
    load_catalog,
    resolve_data_dir,
)
from simulators.errors import CRSError, DatasetError, EmptySplitError, MissingSplitError


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
