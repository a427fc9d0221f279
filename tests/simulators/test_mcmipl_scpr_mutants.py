"""Loader bugs a second mutation audit found untested: the built Yelp*, type names, group files, ids.

Each test guards one bug a researcher's figures would carry: the built ``mcmipl_yelp_star`` drawing a
split's partners with another split's stream or from another split, its categories misnamed; LastFM*'s
attribute types named from the wrong folder; a group file admitting an unordered or empty group; an
SCPR id map read by key order instead of by the ids it names; an error blaming the wrong key. The trees
are the tiny ones of ``test_scpr.py``, ``test_mcmipl.py`` and ``test_loader_mutants.py``, changed one
way each; expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from simulators.catalog import Interactions
from simulators.errors import CRSError, DatasetError
from simulators.mcmipl import BUILD_SEED, TargetGroups, clear_cache, load_release
from simulators.mcmipl_groups import PartnerCandidates, partner_candidates
from simulators.scpr import load_lastfm, load_lastfm_star, load_yelp_star, parse_id
from tests.simulators.test_loader_mutants import _dump, _pickle, write_tiny_movie
from tests.simulators.test_mcmipl import write_tiny
from tests.simulators.test_scpr import _error as _scpr_error
from tests.simulators.test_scpr import write_lastfm, write_yelp


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def _mcmipl_error(root: Path, name: str = "mcmipl_lastfm_star") -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_release(name, root)
    assert type(info.value) is DatasetError
    return info.value


# ---------------------------------------------------------------------------------------------
# The built Yelp* on a tiny SCPR tree
# ---------------------------------------------------------------------------------------------


def _write_yelp_with_partners(root: Path) -> None:
    """``write_yelp``'s tree with items that share 3 attributes, and longer lists.

    Items 0 {0,1,2,3}, 1 {0,1,2}, 2 {1,2,3}, 3 {0,3}: 0-1 share 3, 0-2 share 3, every other pair fewer.
    So item 0 has candidates [1, 2] (list order), items 1 and 2 have [0], item 3 none.
    """
    folder = write_yelp(root)
    items = {"0": [0, 1, 2, 3], "1": [0, 1, 2], "2": [1, 2, 3], "3": [0, 3]}
    _dump(
        folder / "Graph_generate_data" / "item_dict-original_tag.json",
        {k: {"feature_index": v} for k, v in items.items()},
    )
    _dump(folder / "UI_Interaction_data" / "review_dict_valid.json", {"0": [0, 1, 2]})
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", {"1": [0, 1, 2, 3]})


def test_built_yelp_star_draws_each_splits_partners_from_that_split_with_its_own_stream(
    tmp_path: Path,
) -> None:
    """Guards against building a split's groups from another split, or drawing them with the other
    split's seeded stream (the groups, and every Yelp* figure, would change)."""
    _write_yelp_with_partners(tmp_path)
    release = load_release("mcmipl_yelp_star", tmp_path)
    # One stream per split of GROUP_FILES ("valid", then "test"), spawned from BUILD_SEED; item 0 takes
    # candidate floor(u * 2) of [1, 2] with u its stream's first draw.
    valid_stream, test_stream = np.random.SeedSequence(BUILD_SEED).spawn(2)
    valid_partner = [1, 2][int(np.random.default_rng(valid_stream).random(3)[0] * 2)]
    test_partner = [1, 2][int(np.random.default_rng(test_stream).random(4)[0] * 2)]
    assert valid_partner != test_partner  # the two streams tell apart here
    valid, test = release.groups_of("valid"), release.groups_of("test")
    assert valid.users.tolist() == [0, 0, 0]
    assert [valid.targets(g) for g in range(3)] == [(0, valid_partner), (1, 0), (2, 0)]
    assert test.users.tolist() == [1, 1, 1, 1]
    assert [test.targets(g) for g in range(4)] == [(0, test_partner), (1, 0), (2, 0), (3, 3)]


def test_built_yelp_star_is_named_and_typed_by_the_first_layer_categories(tmp_path: Path) -> None:
    """Guards against the built catalogue keeping SCPR's name (the registry would not find it as
    ``mcmipl_yelp_star``), misnamed question types, or a wrong count of untyped attributes in its notes."""
    _write_yelp_with_partners(tmp_path)
    release = load_release("mcmipl_yelp_star", tmp_path)
    assert release.catalog.name == "mcmipl_yelp_star"
    types = release.attribute_types
    # Nightlife = 0 lists {1}; Japanese = 1 lists {2, 1}: aspect 1's lowest category is 0; 0 and 3 none.
    assert types.names == ("Nightlife", "Japanese")
    assert types.primary.tolist() == [-1, 0, 1, -1] and types.question_type.tolist() == [2, 0, 1, 2]
    notes = " | ".join(release.catalog.notes)
    assert "4 test groups, 1 of them (i, i)" in notes  # only item 3 has no partner
    assert "asked over 2 first-layer categories; 2 attributes have none" in notes


# ---------------------------------------------------------------------------------------------
# MCMIPL's LastFM* and MovieLens: names, notes, group files, attribute types
# ---------------------------------------------------------------------------------------------


def test_lastfm_star_type_names_are_lastfms_coarse_attributes_beside_the_release(tmp_path: Path) -> None:
    """Guards against naming the types from another folder than ``lastfm/``, or numbering types whose
    coarse attribute is named (or naming one LastFM leaves unnamed)."""
    folder = write_tiny(tmp_path)
    _pickle(folder / "Graph_generate_data" / "fea_large.pkl", {0: (1, 0), 1: (), 2: (2,)})  # types 0..2
    lastfm = write_lastfm(tmp_path, "lastfm")
    _dump(
        lastfm / "ID_map_info" / "tag_reverse_map.json",
        {"0": {"real_name": ["chillout"]}, "1": {"real_name": ["electronic", "dance"]}},
    )
    types = load_release("mcmipl_lastfm_star", tmp_path).attribute_types
    assert types.names == ("chillout", "electronic / dance", "type 2")


def test_a_lastfm_name_map_of_more_coarse_attributes_only_numbers_the_types(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The SCPR folders beside ``mcmipl/`` only name things: LastFM's 3 coarse names for a release of
    2 types leave the types numbered, with a warning (as a tag map of another vocabulary does); the
    release was refused before."""
    write_tiny(tmp_path)  # 2 types
    write_lastfm(tmp_path, "lastfm")  # tag_reverse_map.json names aspects 0..2
    with caplog.at_level(logging.WARNING):
        types = load_release("mcmipl_lastfm_star", tmp_path).attribute_types
    assert types.names == ("type 0", "type 1")
    assert "tag_reverse_map.json" in caplog.text and "attribute types are numbered" in caplog.text


def test_a_dataset_folder_outside_mcmipl_is_named_from_the_scpr_folder_beside_it(tmp_path: Path) -> None:
    """Guards against looking for the SCPR names two levels up when the dataset folder is not under
    ``mcmipl/``: the tags would be numbered although LastFM*'s tag map sits beside the folder."""
    write_tiny(tmp_path).rename(tmp_path / "my_release")
    write_lastfm(tmp_path, "lastfm_star")  # tags 13 -> 0, 18 -> 1, 73 -> 2, named in tags.dat
    catalog = load_release("mcmipl_lastfm_star", tmp_path / "my_release").catalog
    assert catalog.aspect_names == ("chillout", "electronic", "rock")


def test_lastfm_star_note_counts_the_groups_naming_one_item_twice(tmp_path: Path) -> None:
    """Guards against counting every group of two items as a repeat in the catalogue's notes."""
    write_tiny(tmp_path)  # test groups [1, 1], [0, 2], [2, 0]: one repeat
    notes = " | ".join(load_release("mcmipl_lastfm_star", tmp_path).catalog.notes)
    assert "3 test target groups, 1 of them one item named twice" in notes


def test_movie_note_counts_the_test_pairs_also_in_train(tmp_path: Path) -> None:
    """Guards against counting the test pairs *not* in the user's train list as the ones that are."""
    folder = write_tiny_movie(tmp_path)  # train: user 0 [0, 1], user 1 [2]
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", {"0": [0, 1], "1": [0]})
    notes = " | ".join(load_release("mcmipl_movie", tmp_path).catalog.notes)
    # (0, 0) and (0, 1) are in train, (1, 0) is not; items 0 and 1 are the distinct test items.
    assert "names 2 distinct items and 2 of its 3 interactions are also in that user's train list" in notes


def test_an_unknown_dataset_name_is_a_crs_error_naming_the_valid_ones(tmp_path: Path) -> None:
    """Guards against an unknown name reaching the folder lookup (a KeyError, not a CRSError)."""
    with pytest.raises(CRSError, match=r"unknown MCMIPL dataset 'mcmipl_yelp'.*mcmipl_yelp_star"):
        load_release("mcmipl_yelp", tmp_path)


def test_a_group_given_as_a_set_is_refused(tmp_path: Path) -> None:
    """Guards against admitting a group as a set: its order (which MCMIPL's rank depends on) is lost."""
    folder = write_tiny(tmp_path)
    path = folder / "UI_data" / "test.pkl"
    _pickle(path, {"0": [{1, 2}]})
    error = _mcmipl_error(tmp_path)
    assert (error.path, error.field) == (str(path), "0[0]") and error.found == "a set of 2 elements"


def test_a_group_file_whose_users_have_no_group_is_refused(tmp_path: Path) -> None:
    """Guards against a group file with no group at all (a split without a single conversation)."""
    folder = write_tiny(tmp_path)
    path = folder / "UI_data" / "train.pkl"
    _pickle(path, {"0": [], "1": []})
    error = _mcmipl_error(tmp_path)
    assert (error.path, error.field) == (str(path), "")
    assert "at least one target group" in error.expected and error.found == "2 users without a group"


def test_a_far_type_id_is_blamed_on_the_attribute_listing_it(tmp_path: Path) -> None:
    """Guards against naming another attribute (e.g. the last one) than the one listing the bad type."""
    folder = write_tiny(tmp_path)
    path = folder / "Graph_generate_data" / "fea_large.pkl"
    _pickle(path, {0: (10**9,), 1: (0,), 2: ()})
    error = _mcmipl_error(tmp_path)
    assert (error.path, error.field, error.found) == (str(path), "0", "type id 1,000,000,000")


def test_type_ids_are_refused_from_the_density_bound_on(tmp_path: Path) -> None:
    """Guards against an off-by-one density bound: 2 distinct types allow ids below 2 x 2 + 1,000."""
    folder = write_tiny(tmp_path)
    path = folder / "Graph_generate_data" / "fea_large.pkl"
    _pickle(path, {0: (0,), 1: (1003,), 2: ()})
    assert load_release("mcmipl_lastfm_star", tmp_path).attribute_types.n_types == 1004
    clear_cache()
    _pickle(path, {0: (0,), 1: (1004,), 2: ()})
    error = _mcmipl_error(tmp_path)
    assert (error.path, error.field, error.found) == (str(path), "1", "type id 1,004")
    assert "below 1,004" in error.expected


@pytest.mark.parametrize(
    ("users", "items", "message"),
    [
        ([2], [0], "groups name users outside the catalogue"),
        ([0], [3], "groups name items outside the catalogue"),
        ([-1], [0], "groups name users outside the catalogue"),
        ([0], [-1], "groups name items outside the catalogue"),
    ],
)
def test_a_release_refuses_groups_one_past_its_users_or_items(
    tmp_path: Path, users: list[int], items: list[int], message: str
) -> None:
    """Guards against an off-by-one check of a release's groups (2 users, 3 items in the tiny tree), and
    against admitting negative ids (numpy would read them from the end)."""
    release = load_release("mcmipl_lastfm_star", write_tiny(tmp_path))
    groups = TargetGroups(source="t", users=np.array(users), offsets=np.array([0, 1]), items=np.array(items))
    with pytest.raises(CRSError, match=message):
        dataclasses.replace(release, groups={"test": groups})


def test_target_groups_copy_the_callers_arrays() -> None:
    """Guards against freezing the caller's own arrays: the caller could no longer write them, or a
    write before freezing would change the groups."""
    users, offsets, items = np.array([0, 1]), np.array([0, 1, 2]), np.array([4, 5])
    groups = TargetGroups(source="t", users=users, offsets=offsets, items=items)
    users[0], items[0] = 7, 9  # still the caller's to change
    assert groups.users.tolist() == [0, 1] and groups.targets(0) == (4,)


def test_target_groups_refuse_users_that_are_not_one_per_group() -> None:
    """Guards against admitting a 2-D users array (``users[g]`` would then be an array, not a user)."""
    with pytest.raises(CRSError, match=r"need users \(n,\)"):
        TargetGroups(source="t", users=np.array([[0]]), offsets=np.array([0, 1]), items=np.array([3]))


def test_within_tells_apart_pairs_whose_items_exceed_the_groups_items() -> None:
    """Guards against sizing the (user, item) key by the groups' items only: the interaction (0, 1) and
    the target (1, 0) would share key 1 and the group be kept for an interaction it does not hold."""
    groups = TargetGroups(source="t", users=np.array([1]), offsets=np.array([0, 1]), items=np.array([0]))
    assert len(groups.within(Interactions(users=np.array([0]), items=np.array([1])))) == 0


# ---------------------------------------------------------------------------------------------
# MCMIPL's group rule: bad inputs
# ---------------------------------------------------------------------------------------------


def test_partner_candidates_refuse_a_negative_item() -> None:
    """Guards against reading item -1 as the last row of the attribute matrix."""
    with pytest.raises(CRSError, match=r"item ids must lie in \[0, 3\).*got -1\.\.1"):
        partner_candidates(sp.csr_matrix(np.eye(3, dtype=np.bool_)), np.array([0, 0]), np.array([1, -1]))


def test_partner_candidates_refuse_users_and_items_of_different_lengths() -> None:
    """Guards against pairing users and items of different splits (a numpy error, or wrong pairs)."""
    with pytest.raises(CRSError, match="must be 1-D, equal"):
        partner_candidates(sp.csr_matrix(np.eye(3, dtype=np.bool_)), np.array([0, 0, 1]), np.array([0, 1]))


def test_partner_candidates_refuse_shared_counts_not_aligned_with_items() -> None:
    """Guards against admitting shared counts that do not line up with the candidate items."""
    with pytest.raises(CRSError, match="items and shared of"):
        PartnerCandidates(offsets=np.array([0, 1]), items=np.array([4]), shared=np.array([3, 3]))


# ---------------------------------------------------------------------------------------------
# SCPR/UNICORN: id maps read by their ids, errors naming the right key
# ---------------------------------------------------------------------------------------------


def test_a_split_item_out_of_range_is_blamed_on_its_users_key(tmp_path: Path) -> None:
    """Guards against naming the previous user when the bad item opens the next user's list."""
    folder = write_lastfm(tmp_path)  # 4 items: id 4 is outside
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    _dump(path, {"1": [3], "2": [4]})
    error = _scpr_error(load_lastfm, tmp_path)
    assert (error.path, error.field, error.found) == (str(path), "2", "item id 4")


def test_a_taxonomy_aspect_out_of_range_is_blamed_on_its_category(tmp_path: Path) -> None:
    """Guards against naming the previous category when the bad id opens the next category's list."""
    folder = write_yelp(tmp_path)  # 4 fine aspects: id 4 is outside
    path = folder / "Graph_generate_data" / "2-layer taxonomy.json"
    _dump(path, {"Nightlife": [1], "Japanese": [4]})
    error = _scpr_error(load_yelp_star, tmp_path)
    assert (error.path, error.field, error.found) == (str(path), "Japanese", "id 4")


def test_lastfm_star_tags_are_named_by_the_aspect_their_hetrec_id_maps_to(tmp_path: Path) -> None:
    """Guards against giving aspect k the k-th tag of ``original_tag_map.json`` instead of its value."""
    folder = write_lastfm(tmp_path, "lastfm_star")
    _dump(folder / "Graph_generate_data" / "original_tag_map.json", {"73": 2, "13": 0, "18": 1})
    # tags.dat: 13 chillout, 18 electronic, 73 rock
    assert load_lastfm_star(tmp_path).aspect_names == ("chillout", "electronic", "rock")


def test_yelp_names_follow_the_maps_ids_not_their_key_order(tmp_path: Path) -> None:
    """Guards against numbering categories or fine aspects by their map's key order."""
    folder = write_yelp(tmp_path)
    graph = folder / "Graph_generate_data"
    _dump(graph / "first-layer_merged_tag_map.json", {"Japanese": 1, "Nightlife": 0})
    _dump(
        graph / "second-layer_oringinal_tag_map.json",
        {"star_4": 3, "category_Bars": 1, "city_0": 0, "category_Sushi Bars": 2},
    )
    catalog = load_yelp_star(tmp_path)
    assert catalog.taxonomy is not None and catalog.taxonomy.parent_names == ("Nightlife", "Japanese")
    assert catalog.aspect_names == ("city 0", "Bars", "Sushi Bars", "star 4")


def test_coarse_aspect_names_must_be_strings_and_join_every_name(tmp_path: Path) -> None:
    """Guards against an untyped crash on a non-string name, and against keeping only the first name."""
    folder = write_lastfm(tmp_path)
    path = folder / "ID_map_info" / "tag_reverse_map.json"
    _dump(path, {"0": {"real_name": ["chill", "out"]}})
    assert load_lastfm(tmp_path).aspect_names == ("chill / out", "aspect 1", "aspect 2")
    _dump(path, {"0": {"real_name": ["chill", 7]}})
    error = _scpr_error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(path), "0.real_name")


def test_parse_id_takes_every_id_up_to_the_largest_int64() -> None:
    """Guards against refusing 19-digit ids below 2**63 (the length pre-check off by one)."""
    assert parse_id("9223372036854775807") == 2**63 - 1
    assert parse_id("1000000000000000000") == 10**18
    assert parse_id("9223372036854775808") is None and parse_id("10000000000000000000") is None
