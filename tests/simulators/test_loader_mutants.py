"""Loader bugs a mutation audit found untested: ids, splits, typed errors and the restricted reader.

Each test guards one bug a user of ``simulators.scpr``, ``simulators.mcmipl`` or
``simulators.mcmipl_groups`` would feel: an item, aspect, type or user given another's data; a split
or a target group crossing into another; a corrupt file that passes, or fails with an untyped error
instead of a `DatasetError` naming the file and the field; a pickle read without the restricted
reader. The trees are the tiny ones of ``test_scpr.py`` and ``test_mcmipl.py``, damaged one way each.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError, DatasetError
from simulators.mcmipl import (
    EVALUATION_CONVERSATIONS,
    AttributeTypes,
    TargetGroups,
    clear_cache,
    load_release,
)
from simulators.mcmipl_groups import PartnerCandidates, draw_partners, partner_candidates
from simulators.safe_pickle import UnsafePickleError
from simulators.scpr import UNICORN_EVALUATION_CONVERSATIONS, load_lastfm, load_yelp_star
from tests.simulators.test_mcmipl import write_tiny
from tests.simulators.test_scpr import TINY_ITEMS, write_hetrec, write_lastfm, write_yelp
from tests.simulators.test_scpr import _error as _scpr_error


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=3))


def _pairs(catalog: Catalog, split: str) -> set[tuple[int, int]]:
    inter = catalog.split(split)
    return set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))


def _mcmipl_error(root: Path) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_release("mcmipl_lastfm_star", root)
    return info.value


# ---------------------------------------------------------------------------------------------
# SCPR/UNICORN: ids mapped by their keys, not by the files' key order
# ---------------------------------------------------------------------------------------------


def test_item_dict_keys_out_of_order_keep_each_items_aspects(tmp_path: Path) -> None:
    """Guards against giving row k of the matrix the k-th entry of the file instead of the item it names."""
    folder = write_lastfm(tmp_path)
    shuffled = {key: {"feature_index": TINY_ITEMS[key]} for key in ("2", "0", "3", "1")}
    _dump(folder / "Graph_generate_data" / "item_dict.json", shuffled)
    catalog = load_lastfm(tmp_path)
    # TINY_ITEMS: item 0 {0, 1}, item 1 {1}, item 2 {2, 0}, item 3 {1, 2}, whatever the file's order.
    assert [catalog.aspects_of(i).tolist() for i in range(4)] == [[0, 1], [1], [0, 2], [1, 2]]


def test_split_keys_out_of_order_keep_each_users_items(tmp_path: Path) -> None:
    """Guards against pairing the users of a split file with the wrong item lists (e.g. users sorted)."""
    folder = write_lastfm(tmp_path)
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", {"2": [0, 1], "1": [3]})
    catalog = load_lastfm(tmp_path)
    assert _pairs(catalog, "test") == {(2, 0), (2, 1), (1, 3)}


def test_split_interactions_keep_the_files_order(tmp_path: Path) -> None:
    """Guards against re-ordering a split (e.g. by user): UNICORN's evaluation walks the test pairs in
    file order before its seeded shuffle, so the goal order must be the file's."""
    folder = write_lastfm(tmp_path)
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", {"2": [0, 1], "1": [3]})
    test = load_lastfm(tmp_path).split("test")
    assert test.users.tolist() == [2, 2, 1] and test.items.tolist() == [0, 1, 3]


def test_an_empty_tag_map_is_refused_naming_the_tag_map(tmp_path: Path) -> None:
    """Guards against taking an empty aspect vocabulary (the error would blame item_dict.json instead)."""
    folder = write_lastfm(tmp_path)
    path = folder / "Graph_generate_data" / "merged_tag_map.json"
    _dump(path, {})
    error = _scpr_error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(path), "values")
    assert "non-empty" in error.expected and error.found == "an empty object"


def test_a_yelp_release_with_a_train_split_pretrains_on_it(tmp_path: Path) -> None:
    """Guards against ignoring a Yelp* train split that is present (pre-training would use valid)."""
    folder = write_yelp(tmp_path)
    _dump(folder / "UI_Interaction_data" / "review_dict_train.json", {"0": [1], "3": [2]})
    catalog = load_yelp_star(tmp_path)
    assert _pairs(catalog, "train") == {(0, 1), (3, 2)}
    assert catalog.pretrain_split == "train"
    assert catalog.n_users == 4  # user 3 is only in train
    assert not any("no train split" in note for note in catalog.notes)


def test_taxonomy_rows_follow_the_first_layer_ids_not_the_file_order(tmp_path: Path) -> None:
    """Guards against numbering the categories by the taxonomy file's key order (aspects under the wrong
    category) instead of by ``first-layer_merged_tag_map.json``."""
    folder = write_yelp(tmp_path)  # Nightlife = 0, Japanese = 1
    _dump(folder / "Graph_generate_data" / "2-layer taxonomy.json", {"Japanese": [2, 1], "Nightlife": [1]})
    taxonomy = load_yelp_star(tmp_path).taxonomy
    assert taxonomy is not None and taxonomy.parent_names == ("Nightlife", "Japanese")
    assert taxonomy.children(0).tolist() == [1] and taxonomy.children(1).tolist() == [1, 2]
    assert taxonomy.parent_of.tolist() == [-1, 0, 1, -1]


@pytest.mark.parametrize(
    ("file", "content", "field"),
    [
        # 4 items: item id 4 is one past the last
        ("ID_map_info/item_map.json", {"10": 0, "11": 4}, "11"),
        # 3 aspects: aspect id 3 is one past the last
        ("ID_map_info/tag_reverse_map.json", {"0": {"real_name": ["a"]}, "3": {"real_name": ["x"]}}, "3"),
    ],
)
def test_name_maps_naming_an_id_one_past_the_last_are_dataset_errors(
    tmp_path: Path, file: str, content: object, field: str
) -> None:
    """Guards against an off-by-one range check in the name maps (an IndexError, not a DatasetError)."""
    folder = write_lastfm(tmp_path)
    _dump(folder / file, content)
    error = _scpr_error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(folder / file), field)


def test_yelp_taxonomy_naming_an_aspect_one_past_the_last_is_a_dataset_error(tmp_path: Path) -> None:
    """Guards against an off-by-one range check of ``2-layer taxonomy.json`` (4 aspects: id 4 is outside)."""
    folder = write_yelp(tmp_path)
    path = folder / "Graph_generate_data" / "2-layer taxonomy.json"
    _dump(path, {"Nightlife": [1], "Japanese": [2, 4]})
    error = _scpr_error(load_yelp_star, tmp_path)
    assert (error.path, error.field, error.found) == (str(path), "Japanese", "id 4")


def test_an_empty_item_dict_is_refused_naming_the_item_dict(tmp_path: Path) -> None:
    """Guards against taking an empty item dict (the error would blame a split file's items instead)."""
    folder = write_lastfm(tmp_path)
    path = folder / "Graph_generate_data" / "item_dict.json"
    _dump(path, {})
    error = _scpr_error(load_lastfm, tmp_path)
    assert error.path == str(path) and "at least one item" in error.expected


def test_a_missing_marker_file_is_named(tmp_path: Path) -> None:
    """Guards against blaming the whole folder when the one file that marks its dataset is missing."""
    folder = write_lastfm(tmp_path)
    path = folder / "Graph_generate_data" / "merged_tag_map.json"
    path.unlink()
    error = _scpr_error(load_lastfm, tmp_path)
    assert (error.path, error.found) == (str(path), "missing")


def test_blank_lines_of_a_hetrec_table_are_skipped(tmp_path: Path) -> None:
    """Guards against refusing a HetRec table with a blank line (e.g. a trailing empty line)."""
    write_lastfm(tmp_path)
    (tmp_path / "hetrec2011-lastfm-2k" / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n10\tArtist Ten\tu\tp\n\n11\tArtist Eleven\tu\tp\n\n", encoding="utf-8"
    )
    assert load_lastfm(tmp_path).item_names[:3] == ("Artist Ten", "Artist Eleven", "item 2")


def test_evaluation_conversation_counts_are_the_papers() -> None:
    """Guards against a wrong count of the conversations UNICORN and MCMIPL evaluate (their code's
    defaults: 4,000 on LastFM and LastFM*, 2,500 on Yelp* and MovieLens)."""
    assert dict(UNICORN_EVALUATION_CONVERSATIONS) == {"lastfm": 4000, "lastfm_star": 4000, "yelp_star": 2500}
    assert dict(EVALUATION_CONVERSATIONS) == {
        "mcmipl_lastfm_star": 4000,
        "mcmipl_movie": 2500,
        "mcmipl_yelp_star": 2500,
    }


# ---------------------------------------------------------------------------------------------
# MCMIPL's release: ids, target groups and the restricted reader
# ---------------------------------------------------------------------------------------------


def test_attribute_type_ids_with_a_gap_keep_every_type(tmp_path: Path) -> None:
    """Guards against counting the distinct types (2) instead of the ids' range (0..2): type 2 would
    be lost, or the type matrix too small to hold it."""
    folder = write_tiny(tmp_path)
    _pickle(folder / "Graph_generate_data" / "fea_large.pkl", {0: (0,), 1: (), 2: (2,)})
    types = load_release("mcmipl_lastfm_star", tmp_path).attribute_types
    assert types.n_types == 3 and types.primary.tolist() == [0, -1, 2]
    assert types.attributes_of(2).tolist() == [2] and types.attributes_of(1).tolist() == []
    assert types.question_type.tolist() == [0, 3, 2]  # the untyped tag asks under "other" = 3


def test_item_feature_keys_out_of_order_keep_each_items_attributes(tmp_path: Path) -> None:
    """Guards against giving item k the k-th entry of ``item_fea.pkl`` instead of the item its key names."""
    folder = write_tiny(tmp_path)
    _pickle(folder / "Graph_generate_data" / "item_fea.pkl", {1: (2,), 0: (0, 1), 2: (0,)})
    catalog = load_release("mcmipl_lastfm_star", tmp_path).catalog
    assert [catalog.aspects_of(i).tolist() for i in range(3)] == [[0, 1], [2], [0]]


class _Touch:
    """A pickle whose loading runs ``os.system("touch <path>")``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize(
    "file",
    [
        "Graph_generate_data/fea_large.pkl",
        "Graph_generate_data/item_fea.pkl",
        "UI_data/train.pkl",
        "UI_data/test.pkl",
    ],
)
def test_every_pickle_of_the_release_goes_through_the_restricted_reader(tmp_path: Path, file: str) -> None:
    """Guards against reading any one of the third-party pickles with the plain unpickler."""
    folder = write_tiny(tmp_path)
    marker = tmp_path / "pwned"
    _pickle(folder / file, {0: [_Touch(marker)]})
    error = _mcmipl_error(tmp_path)
    assert isinstance(error, UnsafePickleError) and error.path == str(folder / file)
    assert not marker.exists()


def write_tiny_movie(root: Path) -> Path:
    """A tiny ``mcmipl/movie``: 3 attributes (types as sets, as released), 3 items, 2 users.

    Items 0 and 2 list attributes 3 and 9, outside the vocabulary: MCMIPL's ``movie_graph.py`` skips them.
    """
    folder = root / "mcmipl" / "movie"
    _pickle(folder / "fea_item" / "small_to_large.pkl", {0: {1}, 1: {0}, 2: {0}})
    _pickle(folder / "fea_item" / "item_feature.pkl", {0: [0, 3], 1: [2], 2: [9, 1]})
    splits = {"train": {"0": [0, 1], "1": [2]}, "valid": {"0": [2]}, "test": {"1": [0]}}
    for split, obj in splits.items():
        _dump(folder / "UI_Interaction_data" / f"review_dict_{split}.json", obj)
    _pickle(folder / "UI_data" / "train.pkl", {0: [[2, 2]]})
    _pickle(folder / "UI_data" / "test.pkl", {1: [[0, 0]]})
    return folder


def test_movie_attributes_outside_the_vocabulary_are_skipped_as_movie_graph_does(tmp_path: Path) -> None:
    """Guards against refusing MovieLens' out-of-vocabulary attribute ids, which MCMIPL skips."""
    write_tiny_movie(tmp_path)
    release = load_release("mcmipl_movie", tmp_path)
    assert [release.catalog.aspects_of(i).tolist() for i in range(3)] == [[0], [2], [1]]
    assert release.attribute_types.primary.tolist() == [1, 0, 0]


@pytest.mark.parametrize("file", ["fea_item/small_to_large.pkl", "fea_item/item_feature.pkl"])
def test_movie_pickles_go_through_the_restricted_reader(tmp_path: Path, file: str) -> None:
    """Guards against reading MovieLens' attribute pickles with the plain unpickler."""
    folder = write_tiny_movie(tmp_path)
    marker = tmp_path / "pwned"
    _pickle(folder / file, {0: [_Touch(marker)]})
    with pytest.raises(UnsafePickleError) as info:
        load_release("mcmipl_movie", tmp_path)
    assert info.value.path == str(folder / file) and not marker.exists()


def test_tags_of_another_vocabulary_beside_the_release_are_not_used_as_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against naming MCMIPL's 3 tags from an SCPR LastFM* tag map of 4 tags (the wrong names)."""
    write_tiny(tmp_path)
    scpr = tmp_path / "lastfm_star"
    _dump(scpr / "Graph_generate_data" / "original_tag_map.json", {"13": 0, "18": 1, "73": 2, "99": 3})
    _dump(scpr / "ID_map_info" / "item_map.json", {"10": 0, "11": 1, "12": 2})
    write_hetrec(tmp_path)  # tags 13, 18, 73 are named; artists 10, 11, 12
    with caplog.at_level(logging.WARNING, logger="simulators.mcmipl"):
        catalog = load_release("mcmipl_lastfm_star", tmp_path).catalog
    assert catalog.aspect_names == ("aspect 0", "aspect 1", "aspect 2")
    assert catalog.item_names == ("Artist Ten", "Artist Eleven", "Artist Twelve")
    assert "another tag vocabulary" in caplog.text


def test_an_item_map_beside_the_release_naming_more_items_only_numbers_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The SCPR folder beside ``mcmipl/`` only names things: an ``item_map.json`` of another release (an
    item id past MCMIPL's 3 items) numbers the items instead of refusing the whole release."""
    write_tiny(tmp_path)
    scpr = tmp_path / "lastfm_star"
    _dump(scpr / "Graph_generate_data" / "original_tag_map.json", {"13": 0, "18": 1, "73": 2})
    _dump(scpr / "ID_map_info" / "item_map.json", {"10": 0, "11": 1, "12": 7})
    write_hetrec(tmp_path)  # tags 13, 18, 73 are named
    with caplog.at_level(logging.WARNING, logger="simulators.mcmipl"):
        catalog = load_release("mcmipl_lastfm_star", tmp_path).catalog
    assert catalog.item_names == ("item 0", "item 1", "item 2")
    assert catalog.aspect_names[0] != "aspect 0"  # the tags still named
    assert "item_map.json" in caplog.text and "items are numbered" in caplog.text


def test_a_missing_type_file_beside_the_groups_is_named(tmp_path: Path) -> None:
    """Guards against reporting a whole missing folder when only ``fea_large.pkl`` is missing from it."""
    folder = write_tiny(tmp_path)
    path = folder / "Graph_generate_data" / "fea_large.pkl"
    path.unlink()
    error = _mcmipl_error(tmp_path)
    assert type(error) is DatasetError
    assert (error.path, error.found) == (str(path), "missing")


def test_a_group_of_a_user_one_past_the_last_is_a_dataset_error(tmp_path: Path) -> None:
    """Guards against an off-by-one user check in ``UI_data/*.pkl`` (2 users: user 2 is outside)."""
    folder = write_tiny(tmp_path)
    path = folder / "UI_data" / "test.pkl"
    _pickle(path, {"0": [[1, 1]], "2": [[0, 2]]})
    error = _mcmipl_error(tmp_path)
    assert type(error) is DatasetError
    assert (error.path, error.field) == (str(path), "keys") and "'2'" in error.found


def test_item_feature_keys_naming_one_item_twice_are_refused(tmp_path: Path) -> None:
    """Guards against admitting keys 0 and "0" (the same item twice: item 1 would silently have no tag)."""
    folder = write_tiny(tmp_path)
    path = folder / "Graph_generate_data" / "item_fea.pkl"
    _pickle(path, {0: (0,), "0": (1,), 2: (0,)})
    error = _mcmipl_error(tmp_path)
    assert type(error) is DatasetError and (error.path, error.field) == (str(path), "keys")


@pytest.mark.parametrize("key", [" 1", "+1", "01", "\uff11"])
def test_a_group_user_key_that_is_not_canonical_decimal_is_refused(tmp_path: Path, key: str) -> None:
    """Guards against reading " 1", "+1", "01" or a fullwidth "1" as user 1 in ``UI_data/*.pkl``."""
    folder = write_tiny(tmp_path)
    path = folder / "UI_data" / "test.pkl"
    _pickle(path, {"0": [[1, 1]], key: [[0, 2]]})
    error = _mcmipl_error(tmp_path)
    assert type(error) is DatasetError and (error.path, error.field) == (str(path), "keys")


def test_the_same_folder_written_another_way_gives_the_same_release(tmp_path: Path) -> None:
    """Guards against caching by the path as written: a second release (and catalogue) for one folder,
    so an env and a goal sampler built from the two would not share their `Catalog`."""
    write_tiny(tmp_path)
    release = load_release("mcmipl_lastfm_star", tmp_path)
    assert load_release("mcmipl_lastfm_star", tmp_path / "mcmipl" / "..") is release


def test_within_tells_apart_users_whose_pair_keys_would_collide() -> None:
    """Guards against encoding (user, item) as ``user * max_item + item``: (1, 0) and (0, 2) would then
    both be 2, and a group about user 1 kept for an interaction of user 0 (a held-out pair leaking)."""
    groups = TargetGroups(source="t", users=np.array([1]), offsets=np.array([0, 2]), items=np.array([0, 0]))
    assert len(groups.within(Interactions(users=np.array([0]), items=np.array([2])))) == 0
    assert len(groups.within(Interactions(users=np.array([1]), items=np.array([0])))) == 1


def test_within_keeps_whole_groups_of_any_size() -> None:
    """Guards against assuming every group has two items when selecting the kept groups' items."""
    groups = TargetGroups(
        source="t", users=np.array([0, 1]), offsets=np.array([0, 1, 4]), items=np.array([5, 1, 2, 3])
    )
    kept = groups.within(Interactions(users=np.array([1, 1, 1]), items=np.array([3, 1, 2])))
    assert kept.users.tolist() == [1] and kept.targets(0) == (1, 2, 3)


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 0, 2],  # group 0 has no target: a conversation about nothing
        [1, 2, 3],  # offsets from 1: item 0 belongs to no group
    ],
)
def test_target_groups_refuse_offsets_that_lose_items_or_targets(offsets: list[int]) -> None:
    """Guards against admitting an empty group, or offsets that do not start at item 0."""
    with pytest.raises(CRSError, match="every group has an item"):
        TargetGroups(
            source="t", users=np.array([0, 1]), offsets=np.array(offsets), items=np.arange(offsets[-1])
        )


def test_distinct_targets_keep_the_first_listed_order() -> None:
    """Guards against sorting a group's distinct targets: MCMIPL ranks by the first listed target."""
    groups = TargetGroups(
        source="t", users=np.array([0]), offsets=np.array([0, 3]), items=np.array([2, 0, 2])
    )
    assert groups.distinct_targets(0) == (2, 0)


def test_attribute_types_refuse_a_primary_type_that_members_does_not_list() -> None:
    """Guards against a primary (question) type the attribute is not of."""
    members = sp.csr_matrix(np.eye(2, dtype=np.bool_))  # attribute 0 is of type 0 only
    with pytest.raises(CRSError, match="primary names a type that `members` does not list"):
        AttributeTypes(members=members, primary=np.array([1, -1]), names=("a", "b"))


def test_a_release_refuses_types_or_groups_that_do_not_fit_its_catalogue(tmp_path: Path) -> None:
    """Guards against a release whose attribute types cover another vocabulary, or whose groups name a
    split the catalogue lacks."""
    release = load_release("mcmipl_lastfm_star", write_tiny(tmp_path))  # 3 attributes
    two = AttributeTypes(
        members=sp.csr_matrix(np.eye(2, dtype=np.bool_)), primary=np.array([0, 1]), names=("a", "b")
    )
    with pytest.raises(CRSError, match="attribute types cover 2 attributes, the catalogue has 3"):
        dataclasses.replace(release, attribute_types=two)
    with pytest.raises(CRSError, match="groups for 'extra', a split the catalogue lacks"):
        dataclasses.replace(release, groups={**release.groups, "extra": release.groups_of("test")})


def test_attribute_types_refuse_a_primary_type_one_past_the_last() -> None:
    """Guards against an off-by-one check of the primary types (an IndexError, not a CRSError)."""
    members = sp.csr_matrix(np.eye(2, dtype=np.bool_))
    with pytest.raises(CRSError, match=r"primary must lie in \[-1, 2\)"):
        AttributeTypes(members=members, primary=np.array([0, 2]), names=("a", "b"))


def test_partner_candidates_refuse_an_item_one_past_the_last() -> None:
    """Guards against an off-by-one item check (6 items: item 6 is outside; scipy's IndexError otherwise)."""
    aspects = sp.csr_matrix(np.eye(6, dtype=np.bool_))
    with pytest.raises(CRSError, match=r"item ids must lie in \[0, 6\)"):
        partner_candidates(aspects, np.array([0, 0]), np.array([0, 6]))


def test_partner_candidates_refuse_decreasing_offsets() -> None:
    """Guards against admitting offsets that go back (interaction 1 would own a negative range)."""
    with pytest.raises(CRSError, match="non-decreasing"):
        PartnerCandidates(offsets=np.array([0, 2, 1]), items=np.array([4]), shared=np.array([3]))


def test_draw_partners_refuse_more_items_than_interactions() -> None:
    """Guards against drawing for item lists of another split (one item per interaction is required)."""
    candidates = partner_candidates(sp.csr_matrix(np.eye(3, dtype=np.bool_)), np.zeros(2), np.array([0, 1]))
    with pytest.raises(CRSError, match="one item per interaction"):
        draw_partners(candidates, np.array([0, 1, 2]), np.random.default_rng(0))
