"""MCMIPL's multi-interest release: measured facts of the real files, a tiny tree, and hostile pickles.

The real-data tests assert what was measured on ``../shared/data/mcmipl`` (counts, the pairing of the
target groups with the splits, MovieLens's degeneracy). The tiny trees are written in tmp_path with
``pickle.dumps`` (protocol 3, as the release) and then damaged: each damage must give one
DatasetError naming the file (and the field where there is one).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from envs.registry import make_env
from simulators.catalog import Catalog, Interactions
from simulators.datasets import clear_cache, load_catalog
from simulators.errors import CRSError, DatasetError
from simulators.mcmipl import (
    MultiInterestRelease,
    _read_item_attributes,
    load_release,
    read_pickle,
    release_for,
)
from simulators.safe_pickle import UnsafePickleError
from simulators.scpr import load_lastfm_star
from tests.conftest import data_missing


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


# ---------------------------------------------------------------------------------------------
# A tiny MCMIPL tree
# ---------------------------------------------------------------------------------------------

# 3 tags: tag 0 lists types (1, 0) (primary 1, the first listed, not the smallest), tag 1 none
# ("other"), tag 2 type (1,). 3 items; users 0 and 1.
TINY_TYPES = {0: (1, 0), 1: (), 2: (1,)}
TINY_ITEMS = {0: (0, 1), 1: (2,), 2: (0,)}
TINY_SPLITS = {
    "train": {"0": [0, 1], "1": [2]},
    "valid": {"0": [2]},
    "test": {"0": [1], "1": [0, 2]},
}
# Groups pair each split interaction with an item of the same user (np.int64 second, as released).
TINY_GROUPS = {
    "train.pkl": {"0": [[2, np.int64(2)]]},
    "test.pkl": {"0": [[1, np.int64(1)]], "1": [[0, np.int64(2)], [2, np.int64(0)]]},
}


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=3))


def write_tiny(root: Path) -> Path:
    """A tiny ``mcmipl/lastfm_star`` under root (no SCPR folder beside it); returns the dataset folder."""
    folder = root / "mcmipl" / "lastfm_star"
    _pickle(folder / "Graph_generate_data" / "fea_large.pkl", TINY_TYPES)
    _pickle(folder / "Graph_generate_data" / "item_fea.pkl", TINY_ITEMS)
    for split, obj in TINY_SPLITS.items():
        path = folder / "UI_Interaction_data" / f"review_dict_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
    for name, obj in TINY_GROUPS.items():
        _pickle(folder / "UI_data" / name, obj)
    return folder


def _error(root: Path, name: str = "mcmipl_lastfm_star") -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_release(name, root)
    return info.value


def test_tiny_tree_loads_exactly_what_the_files_say(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tiny(tmp_path)
    with caplog.at_level(logging.WARNING, logger="simulators.mcmipl"):
        release = load_release("mcmipl_lastfm_star", tmp_path)
    catalog = release.catalog
    assert (catalog.name, catalog.n_items, catalog.n_aspects, catalog.n_users) == (
        "mcmipl_lastfm_star",
        3,
        3,
        2,
    )
    assert [catalog.aspects_of(i).tolist() for i in range(3)] == [[0, 1], [2], [0]]
    assert [len(catalog.split(s)) for s in ("train", "valid", "test")] == [3, 1, 3]
    types = release.attribute_types
    # Types 0 and 1 -> n_types 2; the untyped tag 1 asks under the extra type 2 ("other").
    assert types.n_types == 2 and types.primary.tolist() == [1, -1, 1]
    assert types.question_type.tolist() == [1, 2, 1]
    assert types.attributes_of(1).tolist() == [0, 2] and types.attributes_of(0).tolist() == [0]
    assert types.types_of(0).tolist() == [0, 1] and types.types_of(1).tolist() == []
    assert types.names == ("type 0", "type 1")  # no LastFM names beside the tree
    test, valid = release.groups_of("test"), release.groups_of("valid")
    assert test.users.tolist() == [0, 1, 1] and valid.users.tolist() == [0]
    assert [test.targets(g) for g in range(3)] == [(1, 1), (0, 2), (2, 0)]
    assert test.distinct_targets(0) == (1,) and test.distinct_sizes().tolist() == [1, 2, 2]
    assert valid.targets(0) == (2, 2)
    assert catalog.item_names == ("item 0", "item 1", "item 2")
    assert "original_tag_map.json not found" in caplog.text
    with pytest.raises(CRSError, match="available: \\['test', 'valid'\\]"):
        release.groups_of("train")


def test_goal_interactions_keep_the_groups_all_of_whose_targets_they_hold(tmp_path: Path) -> None:
    release = load_release("mcmipl_lastfm_star", write_tiny(tmp_path))
    test = release.groups_of("test")  # user 0: [1, 1]; user 1: [0, 2] and [2, 0]
    both = test.within(Interactions(users=np.array([1, 1, 0]), items=np.array([0, 2, 2])))
    assert both.users.tolist() == [1, 1] and [both.targets(g) for g in range(2)] == [(0, 2), (2, 0)]
    partial = test.within(Interactions(users=np.array([1, 0]), items=np.array([0, 1])))  # not (1, 2)
    assert partial.users.tolist() == [0] and partial.targets(0) == (1, 1)
    # the env converses only about the kept groups, and says so when none is left
    only = Interactions(users=np.array([0]), items=np.array([1]))
    env = make_env(catalog=release.catalog, split="test", user="multi", goal_interactions=only)
    assert env.goals.n_goals == 1
    env.reset(seed=0)
    assert env.user.goal.user == 0 and set(env.user.targets) == {1}
    with pytest.raises(CRSError, match="no test target group has all its targets among the 1 goal"):
        make_env(
            catalog=release.catalog,
            split="test",
            user="multi",
            goal_interactions=Interactions(users=np.array([0]), items=np.array([2])),
        )


def test_folder_may_be_the_mcmipl_folder_or_the_dataset_folder(tmp_path: Path) -> None:
    folder = write_tiny(tmp_path)
    assert load_release("mcmipl_lastfm_star", tmp_path / "mcmipl").catalog.n_items == 3
    assert load_release("mcmipl_lastfm_star", folder).catalog.n_items == 3


def test_catalogue_of_load_catalog_is_the_release_catalogue(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    catalog = load_catalog("mcmipl_lastfm_star", tmp_path)
    release = release_for(catalog)
    assert isinstance(release, MultiInterestRelease) and release.catalog is catalog
    assert load_release("mcmipl_lastfm_star", tmp_path) is release
    assert load_catalog("mcmipl_lastfm_star", tmp_path) is catalog


def test_release_for_a_catalogue_of_another_origin_says_how_to_load_one() -> None:
    other = load_catalog("persona_world", n_users=20, n_items=30, seed=1)
    with pytest.raises(CRSError, match="mcmipl_lastfm_star, mcmipl_movie"):
        release_for(other)


def test_missing_release_folder_names_the_folder_to_point_at(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_catalog("mcmipl_movie", tmp_path)
    assert info.value.path.endswith(os.path.join("mcmipl", "movie"))
    assert "mcmipl/movie/" in str(info.value) and "--data-dir" in str(info.value)


def test_missing_group_file(tmp_path: Path) -> None:
    folder = write_tiny(tmp_path)
    (folder / "UI_data" / "train.pkl").unlink()
    error = _error(tmp_path)
    assert error.path == str(folder / "UI_data" / "train.pkl") and error.found == "missing"


# ---------------------------------------------------------------------------------------------
# Hostile and broken pickles
# ---------------------------------------------------------------------------------------------


class _Touch:
    """A pickle whose loading runs ``os.system("touch <path>")``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


class _Eval:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("1 + 1",))


def test_a_pickle_that_would_run_os_system_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    folder = write_tiny(tmp_path)
    marker = tmp_path / "pwned"
    target = folder / "UI_data" / "test.pkl"
    _pickle(target, {"0": [[_Touch(marker), 1]]})
    # Loading the same bytes with the plain unpickler would create the marker: the test can fail.
    error = _error(tmp_path)
    assert isinstance(error, UnsafePickleError)
    assert error.path == str(target) and "system" in error.field
    assert "refused" in str(error)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [_Eval(), getattr, __import__, pickle.loads, np.load])
def test_every_other_global_is_refused(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "evil.pkl"
    _pickle(path, {"x": obj})
    with pytest.raises(UnsafePickleError) as info:
        read_pickle(path)
    assert info.value.path == str(path) and info.value.field.startswith("global ")


def test_builtin_containers_and_numpy_values_are_admitted(tmp_path: Path) -> None:
    path = tmp_path / "fine.pkl"
    value = {
        "array": np.arange(6, dtype=np.int64).reshape(2, 3),
        "floats": np.linspace(0.0, 1.0, 3),
        "scalar": np.int64(7),
        "set": {np.int64(1), np.int64(2)},
        "frozen": frozenset({3}),
        "nested": [(1, 2.5, "a", b"b", True, None)],
    }
    _pickle(path, value)
    loaded = read_pickle(path)
    assert isinstance(loaded, dict) and loaded.keys() == value.keys()
    np.testing.assert_array_equal(loaded["array"], value["array"])
    np.testing.assert_array_equal(loaded["floats"], value["floats"])
    assert loaded["scalar"] == 7 and type(loaded["scalar"]) is np.int64
    assert loaded["set"] == {1, 2} and loaded["frozen"] == frozenset({3})
    assert loaded["nested"] == value["nested"]


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "exhausted before seeing STOP"),
        (b"this is not a pickle", "opcode b' ' unknown"),
        (pickle.dumps(TINY_GROUPS["test.pkl"], protocol=3)[:40], "truncated or corrupt"),
    ],
)
def test_truncated_or_garbage_pickle_names_the_file(tmp_path: Path, content: bytes, found: str) -> None:
    folder = write_tiny(tmp_path)
    target = folder / "UI_data" / "test.pkl"
    target.write_bytes(content)
    error = _error(tmp_path)
    assert type(error) is DatasetError and error.path == str(target)
    assert found in error.found and "readable pickle" in str(error)


@pytest.mark.parametrize(
    ("file", "content", "field", "found"),
    [
        ("UI_data/test.pkl", [[0, 1]], "", "a list of 1 elements"),
        ("UI_data/test.pkl", {}, "", "an empty dict"),
        ("UI_data/test.pkl", {"0": [[0, 1]], "x": [[0, 1]]}, "keys", "key 'x'"),
        ("UI_data/test.pkl", {"0": [[0, 1]], "5": [[0, 1]]}, "keys", "key '5'"),
        ("UI_data/test.pkl", {"0": [[0, 1]], 0: [[0, 1]]}, "0", "user 0 twice"),
        ("UI_data/test.pkl", {"0": (0, 1)}, "0", "a tuple of 2 elements"),
        ("UI_data/test.pkl", {"0": [7]}, "0[0]", "a int 7"),
        ("UI_data/test.pkl", {"1": [[0, 2], []]}, "1[1]", "an empty group"),
        ("UI_data/test.pkl", {"1": [[0, np.int64(3)]]}, "1[0]", "item id 3"),
        ("UI_data/test.pkl", {"1": [[0, -1]]}, "1[0]", "element -1"),
        ("UI_data/test.pkl", {"1": [[0, True]]}, "1[0]", "element True"),
        ("UI_data/train.pkl", {"0": [[0, 1.0]]}, "0[0]", "element 1.0"),
        ("Graph_generate_data/item_fea.pkl", {0: (0,), 2: (1,), 3: (0,)}, "keys", "first missing 1"),
        ("Graph_generate_data/item_fea.pkl", {0: (0,), 1: (5,), 2: (0,)}, "1", "attribute id 5"),
        # 3 attributes: id 3 is the first one outside the vocabulary
        ("Graph_generate_data/item_fea.pkl", {0: (0,), 1: (2, 3), 2: (0,)}, "1", "attribute id 3"),
        ("Graph_generate_data/item_fea.pkl", {0: (0,), 1: "2", 2: (0,)}, "1", "a str"),
        ("Graph_generate_data/fea_large.pkl", {1: (0,), 0: (1,), 2: ()}, "keys", "key 1 at position 0"),
        ("Graph_generate_data/fea_large.pkl", {0: (), 1: (), 2: ()}, "values", "no type at all"),
        ("Graph_generate_data/fea_large.pkl", {0: (0,), 1: (10**9,), 2: ()}, "1", "type id 1,000,000,000"),
    ],
)
def test_pickle_of_the_wrong_shape_names_file_and_field(
    tmp_path: Path, file: str, content: object, field: str, found: str
) -> None:
    folder = write_tiny(tmp_path)
    _pickle(folder / file, content)
    error = _error(tmp_path)
    assert type(error) is DatasetError
    assert error.path == str(folder / file) and error.field == field
    assert found in error.found, error.found


def test_movie_attributes_outside_the_vocabulary_are_dropped_from_the_first_one_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # MovieLens' item_feature.pkl, as movie_graph.py reads it: with 3 attributes, ids 3 and 9 are dropped
    path = tmp_path / "item_feature.pkl"
    _pickle(path, {0: (0, 3), 1: (2, 9), 2: (1,)})
    with caplog.at_level(logging.WARNING, logger="simulators.mcmipl"):
        matrix = _read_item_attributes(path, 3, drop_unknown=True)
    assert matrix.shape == (3, 3)
    assert matrix.toarray().astype(int).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert "dropped 2 attribute ids" in caplog.text


# ---------------------------------------------------------------------------------------------
# The real release
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcmipl_dir(real_data_dir: Path) -> Path:
    """``../shared/data`` with ``mcmipl/`` in it: skipped locally without it, a failure under CI=true."""
    if not (real_data_dir / "mcmipl").is_dir():
        data_missing(f"MCMIPL's release not found at {real_data_dir / 'mcmipl'}")
    return real_data_dir


@pytest.fixture(scope="module")
def lastfm_release(mcmipl_dir: Path) -> MultiInterestRelease:
    return load_release("mcmipl_lastfm_star", mcmipl_dir)


@pytest.fixture(scope="module")
def movie_release(mcmipl_dir: Path) -> MultiInterestRelease:
    return load_release("mcmipl_movie", mcmipl_dir)


def _split_lists(catalog: Catalog, split: str) -> dict[int, list[int]]:
    inter = catalog.split(split)
    lists: dict[int, list[int]] = {}
    for user, item in zip(inter.users.tolist(), inter.items.tolist(), strict=True):
        lists.setdefault(user, []).append(item)
    return lists


@pytest.mark.real_data
def test_real_lastfm_star_counts(lastfm_release: MultiInterestRelease) -> None:
    catalog, types = lastfm_release.catalog, lastfm_release.attribute_types
    assert (catalog.n_users, catalog.n_items, catalog.n_aspects) == (1801, 7432, 8438)
    assert catalog.describe().split_sizes == {"train": 52910, "valid": 11891, "test": 11892}
    # 33 types (LastFM's coarse attributes); 490 of the 8,438 tags list none.
    assert types.n_types == 33 and int((types.primary < 0).sum()) == 490
    test, valid = lastfm_release.groups_of("test"), lastfm_release.groups_of("valid")
    assert len(test) == 11892 and len(valid) == 11891
    assert set(test.sizes().tolist()) == {2} and set(valid.sizes().tolist()) == {2}
    assert int((test.distinct_sizes() == 1).sum()) == 2812
    assert int((valid.distinct_sizes() == 1).sum()) == 2760


@pytest.mark.real_data
def test_real_lastfm_star_groups_pair_each_interaction_with_an_item_of_the_same_list(
    lastfm_release: MultiInterestRelease,
) -> None:
    """Measured: group g of user u is [i, j] with i running over u's split list in order (one group per
    interaction) and j another item of that list (or i itself) sharing at least one tag with i."""
    catalog = lastfm_release.catalog
    for split in ("valid", "test"):
        groups, lists = lastfm_release.groups_of(split), _split_lists(catalog, split)
        firsts: dict[int, list[int]] = {}
        for g in range(len(groups)):
            first, second = groups.targets(g)
            user = int(groups.users[g])
            firsts.setdefault(user, []).append(first)
            assert second in lists[user]
            assert np.intersect1d(catalog.aspects_of(first), catalog.aspects_of(second)).size > 0
        assert firsts == lists


@pytest.mark.real_data
def test_real_lastfm_star_equals_the_scpr_release(
    mcmipl_dir: Path, lastfm_release: MultiInterestRelease
) -> None:
    scpr = load_lastfm_star(mcmipl_dir)
    catalog = lastfm_release.catalog
    assert (catalog.item_aspects != scpr.item_aspects).nnz == 0
    for split in ("train", "valid", "test"):
        assert np.array_equal(catalog.split(split).items, scpr.split(split).items)
        assert np.array_equal(catalog.split(split).users, scpr.split(split).users)
    assert catalog.item_names == scpr.item_names and catalog.aspect_names == scpr.aspect_names
    assert catalog.aspect_names[1] == "alternative metal"


@pytest.mark.real_data
def test_real_lastfm_star_types_are_the_coarse_attributes_primary_first_listed(
    mcmipl_dir: Path, lastfm_release: MultiInterestRelease
) -> None:
    types = lastfm_release.attribute_types
    raw = read_pickle(mcmipl_dir / "mcmipl" / "lastfm_star" / "Graph_generate_data" / "fea_large.pkl")
    assert isinstance(raw, dict)
    listed = [tuple(int(t) for t in raw[a]) for a in range(8438)]
    assert types.primary.tolist() == [t[0] if t else -1 for t in listed]
    # The primary type is the first listed, not the smallest: 1,576 tags list their types unsorted.
    assert sum(1 for t in listed if list(t) != sorted(t)) == 1576
    assert sum(1 for t in listed if t and t[0] != min(t)) > 0
    # Tag 1, "alternative metal", is of types alternative (3) and metal (13).
    assert [types.names[t] for t in types.types_of(1)] == ["alternative", "metal"]
    assert types.names[types.primary[1]] == "alternative"


@pytest.mark.real_data
def test_real_movie_counts(movie_release: MultiInterestRelease) -> None:
    catalog, types = movie_release.catalog, movie_release.attribute_types
    assert (catalog.n_users, catalog.n_items, catalog.n_aspects) == (20892, 16482, 1498)
    assert catalog.describe().split_sizes == {"train": 190381, "valid": 71575, "test": 31171}
    # 24 types; every attribute lists 1 to 3 of them (937, 291 and 270 attributes).
    assert types.n_types == 24 and int((types.primary < 0).sum()) == 0
    per_attribute = np.diff(types.members.tocsc().indptr)
    assert Counter(per_attribute.tolist()) == {1: 937, 2: 291, 3: 270}
    test, valid = movie_release.groups_of("test"), movie_release.groups_of("valid")
    assert (len(test), len(valid)) == (31171, 71575)
    assert int((test.distinct_sizes() == 1).sum()) == 20133


@pytest.mark.real_data
def test_real_movie_is_degenerate(movie_release: MultiInterestRelease) -> None:
    catalog = movie_release.catalog
    test_groups = movie_release.groups_of("test")
    # 23 distinct target items across 31,171 test conversations (28 across the 71,575 training ones).
    assert np.unique(test_groups.items).size == 23
    assert np.unique(movie_release.groups_of("valid").items).size == 28
    assert np.unique(catalog.split("test").items).size == 23
    # Every test interaction is also in that user's train list, and so is every target of every group.
    train = _split_lists(catalog, "train")
    test = catalog.split("test")
    assert all(i in train[u] for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True))
    assert all(
        set(test_groups.targets(g)) <= set(train[int(test_groups.users[g])]) for g in range(len(test_groups))
    )
    assert any(note.startswith("degenerate") for note in catalog.notes)


@pytest.mark.real_data
def test_real_movie_primary_type_is_the_first_of_the_set_as_python_rebuilds_it(
    mcmipl_dir: Path, movie_release: MultiInterestRelease
) -> None:
    raw = read_pickle(mcmipl_dir / "mcmipl" / "movie" / "fea_item" / "small_to_large.pkl")
    assert isinstance(raw, dict)
    firsts = [int(next(iter(raw[a]))) for a in range(1498)]
    assert movie_release.attribute_types.primary.tolist() == firsts
    assert sum(1 for a in range(1498) if firsts[a] != min(int(t) for t in raw[a])) > 0


@pytest.mark.real_data
def test_real_catalogues_through_the_registry(mcmipl_dir: Path) -> None:
    lastfm = load_catalog("mcmipl_lastfm_star", mcmipl_dir)
    movie = load_catalog("mcmipl_movie", mcmipl_dir / "mcmipl")
    assert release_for(lastfm).catalog is lastfm and release_for(movie).catalog is movie
    assert lastfm.name == "mcmipl_lastfm_star" and movie.name == "mcmipl_movie"
    with pytest.raises(CRSError):
        release_for(load_lastfm_star(mcmipl_dir))


def test_a_value_named_in_an_error_is_cut_before_its_whole_text_is_built() -> None:
    # a 265-byte pickle describes shared sub-lists nested 40 deep: its full repr never ends
    from simulators.mcmipl import _describe, _short

    nested: list = [1, 2]
    for _ in range(40):
        nested = [nested, nested]
    assert len(_short(nested)) < 100
    assert len(_describe(bytes(10**7))) < 100  # repr of the whole byte string took 4x its size
