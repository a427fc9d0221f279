"""SCPR/UNICORN loaders: exact counts on the real releases, names, immutability, and typed errors.

The error tests build tiny SCPR trees (or copies of a few real files) in tmp_path and damage them;
each must raise exactly one DatasetError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulators.catalog import Catalog
from simulators.errors import DatasetError, MissingSplitError
from simulators.scpr import detect_dataset, load_lastfm, load_lastfm_star, load_yelp_star

# ---------------------------------------------------------------------------------------------
# Tiny synthetic SCPR trees
# ---------------------------------------------------------------------------------------------

# 4 items x 3 aspects; users 0..2. Train 3 pairs, valid 1, test 2.
TINY_ITEMS = {"0": [0, 1], "1": [1], "2": [2, 0], "3": [1, 2]}
TINY_TRAIN = {"0": [0, 1], "1": [2]}
TINY_VALID = {"0": [2]}
TINY_TEST = {"1": [3], "2": [0]}


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_hetrec(root: Path) -> None:
    """HetRec names: artists 10..13 (item 3's artist 13 has no name), tags 13, 18, 73."""
    het = root / "hetrec2011-lastfm-2k"
    het.mkdir(parents=True, exist_ok=True)
    (het / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n10\tArtist Ten\tu\tp\n11\tArtist Eleven\tu\tp\n12\tArtist Twelve\tu\tp\n",
        encoding="utf-8",
    )
    (het / "tags.dat").write_bytes(b"tagID\ttagValue\r\n13\tchillout\r\n18\telectronic\r\n73\trock\r\n")


def write_lastfm(root: Path, name: str = "lastfm") -> Path:
    """A tiny LastFM (name="lastfm") or LastFM* (name="lastfm_star") tree under root; returns its folder."""
    folder = root / name
    graph = folder / "Graph_generate_data"
    _dump(graph / "item_dict.json", {k: {"feature_index": v} for k, v in TINY_ITEMS.items()})
    if name == "lastfm":
        _dump(graph / "merged_tag_map.json", {"13": 0, "18": 1, "73": 2})
        _dump(
            folder / "ID_map_info" / "tag_reverse_map.json",
            {
                "0": {"real_id": [13], "real_name": ["chillout"]},
                "1": {"real_id": [18], "real_name": ["electronic"]},
                "2": {"real_id": [73], "real_name": ["rock"]},
            },
        )
    else:
        _dump(graph / "original_tag_map.json", {"13": 0, "18": 1, "73": 2})
    _dump(folder / "ID_map_info" / "item_map.json", {"10": 0, "11": 1, "12": 2, "13": 3})
    ui = folder / "UI_Interaction_data"
    _dump(ui / "review_dict_train.json", TINY_TRAIN)
    _dump(ui / "review_dict_valid.json", TINY_VALID)
    _dump(ui / "review_dict_test.json", TINY_TEST)
    write_hetrec(root)
    return folder


def write_yelp(root: Path) -> Path:
    """A tiny Yelp*: 4 fine aspects; category Nightlife lists {1}, Japanese lists {2, 1}; 0 and 3 orphans."""
    folder = root / "yelp_star"
    graph = folder / "Graph_generate_data"
    _dump(graph / "item_dict-original_tag.json", {k: {"feature_index": v} for k, v in TINY_ITEMS.items()})
    _dump(
        graph / "second-layer_oringinal_tag_map.json",
        {"city_0": 0, "category_Bars": 1, "category_Sushi Bars": 2, "star_4": 3},
    )
    _dump(graph / "first-layer_merged_tag_map.json", {"Nightlife": 0, "Japanese": 1})
    _dump(graph / "2-layer taxonomy.json", {"Nightlife": [1], "Japanese": [2, 1]})
    ui = folder / "UI_Interaction_data"
    _dump(ui / "review_dict_valid.json", TINY_VALID)
    _dump(ui / "review_dict_test.json", TINY_TEST)
    return folder


def _pairs(catalog: Catalog, split: str) -> set[tuple[int, int]]:
    inter = catalog.split(split)
    return set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))


def _json_pairs(obj: dict[str, list[int]]) -> set[tuple[int, int]]:
    return {(int(u), i) for u, items in obj.items() for i in items}


# ---------------------------------------------------------------------------------------------
# Tiny trees: the loaders' logic, no real data needed
# ---------------------------------------------------------------------------------------------


def test_tiny_lastfm_loads_exactly_what_the_files_say(tmp_path: Path) -> None:
    write_lastfm(tmp_path)
    catalog = load_lastfm(tmp_path)
    # 4 items (keys 0..3), 3 aspects (merged_tag_map values 0..2), users 0..2 -> 3 users.
    assert (catalog.n_items, catalog.n_aspects, catalog.n_users) == (4, 3, 3)
    assert [catalog.aspects_of(i).tolist() for i in range(4)] == [[0, 1], [1], [0, 2], [1, 2]]
    assert catalog.items_with(1).tolist() == [0, 1, 3]
    assert _pairs(catalog, "train") == {(0, 0), (0, 1), (1, 2)}
    assert _pairs(catalog, "valid") == {(0, 2)}
    assert _pairs(catalog, "test") == {(1, 3), (2, 0)}
    assert catalog.aspect_names == ("chillout", "electronic", "rock")
    # Artist 13 (item 3) is missing from artists.dat -> numbered fallback.
    assert catalog.item_names == ("Artist Ten", "Artist Eleven", "Artist Twelve", "item 3")
    assert catalog.taxonomy is None and catalog.pretrain_split == "train"


def test_tiny_lastfm_star_names_tags_through_the_hetrec_tag_map(tmp_path: Path) -> None:
    write_lastfm(tmp_path, "lastfm_star")
    catalog = load_lastfm_star(tmp_path)
    # original_tag_map: HetRec tag 13 -> aspect 0, 18 -> 1, 73 -> 2; tags.dat names them.
    assert catalog.aspect_names == ("chillout", "electronic", "rock")
    assert catalog.n_aspects == 3 and catalog.n_users == 3


def test_dataset_folder_may_be_given_directly(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path, "lastfm_star")
    assert load_lastfm_star(folder).n_items == 4


def test_tiny_yelp_taxonomy_is_a_membership_relation(tmp_path: Path) -> None:
    write_yelp(tmp_path)
    catalog = load_yelp_star(tmp_path)
    tax = catalog.taxonomy
    assert tax is not None and tax.parent_names == ("Nightlife", "Japanese")
    assert tax.children(0).tolist() == [1] and tax.children(1).tolist() == [1, 2]
    # Aspect 1 is listed under both (primary = lowest id 0); 0 and 3 under none (-1).
    assert tax.parent_of.tolist() == [-1, 0, 1, -1]
    assert tax.parents_of(np.array([1])).tolist() == [0, 1]
    assert tax.parents_of(np.array([0, 3])).tolist() == []
    assert catalog.aspect_names == ("city 0", "Bars", "Sushi Bars", "star 4")
    assert "train" not in catalog.splits and catalog.pretrain_split == "valid"
    assert any("no train split" in note for note in catalog.notes)
    assert any("1 fine aspects sit under several categories and 2 under none" in n for n in catalog.notes)


def test_missing_name_files_fall_back_to_numbered_names_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_lastfm(tmp_path)
    shutil.rmtree(tmp_path / "hetrec2011-lastfm-2k")
    (folder / "ID_map_info" / "tag_reverse_map.json").unlink()
    with caplog.at_level(logging.WARNING, logger="simulators.scpr"):
        catalog = load_lastfm(tmp_path)
    assert catalog.item_names == ("item 0", "item 1", "item 2", "item 3")
    assert catalog.aspect_names == ("aspect 0", "aspect 1", "aspect 2")
    assert "artists.dat" in caplog.text and "tag_reverse_map.json" in caplog.text


# ---------------------------------------------------------------------------------------------
# Bad input: one DatasetError naming file and field
# ---------------------------------------------------------------------------------------------


def _error(loader, data_dir: Path) -> DatasetError:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetError) as info:
        loader(data_dir)
    assert type(info.value) is DatasetError
    return info.value


def test_missing_data_dir(tmp_path: Path) -> None:
    error = _error(load_lastfm, tmp_path / "nowhere")
    assert error.path.endswith("nowhere") and "no such directory" in str(error)


def test_missing_dataset_folder_says_where_to_point(tmp_path: Path) -> None:
    write_lastfm(tmp_path)
    error = _error(load_yelp_star, tmp_path)
    assert error.path.endswith("yelp_star") and "--data-dir" in str(error)


def test_missing_required_file(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    (folder / "UI_Interaction_data" / "review_dict_valid.json").unlink()
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("review_dict_valid.json") and error.found == "missing"


def test_truncated_json_names_file_and_position_without_json_traceback(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "Graph_generate_data" / "item_dict.json"
    path.write_text(path.read_text()[:25])
    error = _error(load_lastfm, tmp_path)
    assert error.path == str(path) and error.field.startswith("line 1, column")
    assert "valid JSON" in str(error) and "truncated" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # no chained json traceback


@pytest.mark.parametrize(
    ("content", "field", "found"),
    [
        ([[0, 1], [1]], "", "a list"),  # a list where an object is expected
        ({"0": [0, 1]}, "0", "a list"),  # an entry that is not an object
        ({"0": {"categories": [1]}}, "0.feature_index", "no such key"),
        ({"0": {"feature_index": "0,1"}}, "0.feature_index", "a string"),
        ({"0": {"feature_index": [0, "1"]}}, "0.feature_index", "element '1'"),
        ({"0": {"feature_index": [0, 1.5]}}, "0.feature_index", "element 1.5"),
        ({"0": {"feature_index": [0]}, "1": {"feature_index": [7]}}, "1.feature_index", "aspect id 7"),
        # 3 aspects: id 3 is the first one outside the vocabulary
        ({"0": {"feature_index": [0]}, "1": {"feature_index": [1, 3]}}, "1.feature_index", "aspect id 3"),
        ({"0": {"feature_index": [0]}, "2": {"feature_index": [1]}}, "keys", "first missing 1"),
        ({"zero": {"feature_index": [0]}}, "keys", "'zero'"),
    ],
)
def test_malformed_item_dict(tmp_path: Path, content: object, field: str, found: str) -> None:
    folder = write_lastfm(tmp_path)
    _dump(folder / "Graph_generate_data" / "item_dict.json", content)
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("item_dict.json")
    assert error.field == field
    assert found in error.found


@pytest.mark.parametrize(
    ("content", "field", "found"),
    [
        ({"0": [0, 4]}, "0", "item id 4"),  # 4 items: ids must be < 4
        ({"0": [-1]}, "0", "item id -1"),
        ({"0": 3}, "0", "a int"),
        ({"u7": [0]}, "keys", "'u7'"),
        ({"-2": [0]}, "keys", "id -2"),
        ("users", "", "a string"),
    ],
)
def test_malformed_review_dict(tmp_path: Path, content: object, field: str, found: str) -> None:
    folder = write_lastfm(tmp_path)
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", content)
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("review_dict_test.json")
    assert (error.field, found in error.found) == (field, True)


def test_tag_map_with_a_gap_in_aspect_ids(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    _dump(folder / "Graph_generate_data" / "merged_tag_map.json", {"13": 0, "18": 2})
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("merged_tag_map.json") and error.field == "values"
    assert "first missing 1" in error.found


def test_lastfm_star_loader_on_a_lastfm_folder_says_which_dataset_it_is(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path, "lastfm")
    error = _error(load_lastfm_star, folder)  # the LastFM folder given directly
    assert "lastfm_star" in error.expected and "a lastfm folder" in error.found
    assert "load it as 'lastfm'" in str(error)
    folder.rename(tmp_path / "lastfm_star")  # a LastFM tree under LastFM*'s name
    error = _error(load_lastfm_star, tmp_path)
    assert error.path.endswith("lastfm_star") and "a lastfm folder" in error.found


def test_yelp_loader_on_lastfm_star_and_back(tmp_path: Path) -> None:
    star = write_lastfm(tmp_path, "lastfm_star")
    yelp = write_yelp(tmp_path)
    assert detect_dataset(star) == "lastfm_star" and detect_dataset(yelp) == "yelp_star"
    assert "a lastfm_star folder" in _error(load_yelp_star, star).found
    assert "a yelp_star folder" in _error(load_lastfm, yelp).found


@pytest.mark.parametrize(
    ("content", "field", "found"),
    [
        ({"Nightlife": [1], "Sushi": [2]}, "Sushi", "an unknown category"),
        ({"Nightlife": [1, 9]}, "Nightlife", "id 9"),
        ({"Nightlife": "1"}, "Nightlife", "a string"),
    ],
)
def test_malformed_yelp_taxonomy(tmp_path: Path, content: object, field: str, found: str) -> None:
    folder = write_yelp(tmp_path)
    _dump(folder / "Graph_generate_data" / "2-layer taxonomy.json", content)
    error = _error(load_yelp_star, tmp_path)
    assert error.path.endswith("2-layer taxonomy.json")
    assert error.field == field and found in error.found


def test_malformed_hetrec_table(tmp_path: Path) -> None:
    write_lastfm(tmp_path)
    (tmp_path / "hetrec2011-lastfm-2k" / "artists.dat").write_text("id\tname\nten\tArtist Ten\n")
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("artists.dat") and error.field == "line 2"


# ---------------------------------------------------------------------------------------------
# Hostile or careless files (issue 13): each attack is one DatasetError naming file, key and value
# ---------------------------------------------------------------------------------------------

_BIG = 2**63  # one past the largest int64


@pytest.mark.parametrize(
    ("file", "text", "field", "found"),
    [
        # ids that do not fit in 64 bits (numpy's OverflowError before)
        ("UI_Interaction_data/review_dict_test.json", f'{{"{_BIG}": [0]}}', "keys", f"id {_BIG} (too large"),
        ("UI_Interaction_data/review_dict_train.json", f'{{"0": [{_BIG}]}}', "0", f"element {_BIG}"),
        ("UI_Interaction_data/review_dict_train.json", f'{{"0": [-{_BIG + 1}]}}', "0", "element -"),
        (
            "Graph_generate_data/item_dict.json",
            f'{{"0": {{"feature_index": [{_BIG}]}}}}',
            "0.feature_index",
            f"element {_BIG}",
        ),
        (
            "Graph_generate_data/item_dict.json",
            f'{{"{10**40}": {{"feature_index": [0]}}}}',
            "keys",
            "too large",
        ),
        ("Graph_generate_data/merged_tag_map.json", f'{{"13": 0, "18": {_BIG}}}', "values", f"to {_BIG}"),
        ("UI_Interaction_data/review_dict_valid.json", '{"0": [' + "9" * 5000 + "]}", "", "4300 digits"),
        # Unicode digits, signs, spaces, underscores, leading zeros: Python's int() takes them all
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "\uff12": [0]}', "keys", r"'\uff12'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "\u0662": [0]}', "keys", r"'\u0662'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "\u00b2": [0]}', "keys", r"'\xb2'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], " 2": [0]}', "keys", "key ' 2'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "+2": [0]}', "keys", "key '+2'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "02": [0]}', "keys", "key '02'"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "0_2": [0]}', "keys", "key '0_2'"),
        (
            "Graph_generate_data/item_dict.json",
            '{"0": {"feature_index": [0]}, "\uff11": {}}',
            "keys",
            r"\uff11",
        ),
        ("ID_map_info/item_map.json", '{"10": 0, "\uff11\uff11": 1}', "keys", r"'\uff11\uff11'"),
        ("ID_map_info/tag_reverse_map.json", '{"\u0660": {"real_name": ["x"]}}', "keys", r"'\u0660'"),
        # a key written twice: json keeps the last one, silently dropping user 1's test pair
        ("UI_Interaction_data/review_dict_test.json", '{"1": [3], "2": [0], "1": [0]}', "1", "the key twice"),
        # negative ids
        ("UI_Interaction_data/review_dict_valid.json", '{"-1": [0]}', "keys", "negative id -1"),
        ("Graph_generate_data/item_dict.json", '{"-1": {"feature_index": [0]}}', "keys", "negative id -1"),
        ("Graph_generate_data/item_dict.json", '{"0": {"feature_index": [-1]}}', "0.feature_index", "id -1"),
        ("Graph_generate_data/merged_tag_map.json", '{"13": 0, "18": -1, "73": 2}', "values", "from -1"),
        ("ID_map_info/item_map.json", '{"10": -1}', "10", "-1"),
        # bools where ids are expected (bool is an int subclass in Python)
        ("UI_Interaction_data/review_dict_test.json", '{"1": [true]}', "1", "element True"),
        (
            "Graph_generate_data/item_dict.json",
            '{"0": {"feature_index": [false]}}',
            "0.feature_index",
            "False",
        ),
        ("Graph_generate_data/merged_tag_map.json", '{"13": 0, "18": true, "73": 2}', "values", "True"),
        ("ID_map_info/item_map.json", '{"10": true}', "10", "True"),
        # the wrong JSON type
        ("UI_Interaction_data/review_dict_test.json", "[[1, 3], [2, 0]]", "", "a list"),
        ("Graph_generate_data/merged_tag_map.json", '["13", "18", "73"]', "", "a list"),
        ("UI_Interaction_data/review_dict_test.json", '{"1": {"3": 1}}', "1", "an object"),
        ("UI_Interaction_data/review_dict_test.json", "null", "", "null"),
        # not JSON at all
        ("UI_Interaction_data/review_dict_test.json", "user,item\n1,3\n", "line 1, column 1", "truncated"),
        ("UI_Interaction_data/review_dict_test.json", "", "line 1, column 1", "truncated"),
    ],
)
def test_hostile_lastfm_file(tmp_path: Path, file: str, text: str, field: str, found: str) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / file
    path.write_text(text, encoding="utf-8")
    error = _error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(path), field)
    assert found in error.found
    assert str(path) in str(error) and found in str(error)


def test_hostile_hetrec_table_with_unicode_digits(tmp_path: Path) -> None:
    write_lastfm(tmp_path)
    path = tmp_path / "hetrec2011-lastfm-2k" / "artists.dat"
    path.write_text("id\tname\n\uff11\uff10\tArtist Ten\n", encoding="utf-8")  # fullwidth "10"
    error = _error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(path), "line 2") and "ASCII decimal digits" in error.expected


def test_hostile_tag_map_key_of_lastfm_star(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path, "lastfm_star")
    path = folder / "Graph_generate_data" / "original_tag_map.json"
    path.write_text('{"13": 0, "\u0661\u0668": 1, "73": 2}', encoding="utf-8")  # Arabic-Indic "18"
    error = _error(load_lastfm_star, tmp_path)
    assert (error.path, error.field) == (str(path), "keys") and r"'\u0661\u0668'" in error.found


def test_non_utf8_file(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    path.write_bytes(b'{"1": [3], "\xff": [0]}')
    error = _error(load_lastfm, tmp_path)
    assert error.path == str(path) and "UTF-8" in error.expected


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deeply_nested_json_is_refused_not_a_recursion_error(tmp_path: Path, opening: str) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "UI_Interaction_data" / "review_dict_valid.json"
    path.write_text(opening * 200_000 + "0" + opening[0].translate({91: 93, 123: 125}) * 200_000)
    error = _error(load_lastfm, tmp_path)
    assert error.path == str(path) and "nesting too deep" in error.found


def test_a_huge_user_id_is_refused_instead_of_making_two_billion_users(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    _dump(path, {"1": [3], "2000000000": [0]})
    error = _error(load_lastfm, tmp_path)
    # 3 distinct users (0, 1, 2000000000) -> ids must be below 2 x 3 + 1,000 = 1,006.
    assert (error.path, error.field) == (str(path), "2000000000")
    assert error.found == "user id 2,000,000,000"
    assert "user ids below 1,006" in error.expected and "dense" in error.expected
    assert "renumber the users 0..2" in error.expected


def test_user_ids_may_have_gaps_up_to_the_density_bound(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    # Users 0, 1 (train, valid) and 1, X (test): 3 distinct -> ids below 2 x 3 + 1,000 = 1,006.
    _dump(path, {"1": [3], "1005": [0]})
    assert load_lastfm(tmp_path).n_users == 1006
    _dump(path, {"1": [3], "1006": [0]})
    assert _error(load_lastfm, tmp_path).field == "1006"


def test_users_with_empty_lists_do_not_count_towards_the_user_ids(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path)
    _dump(folder / "UI_Interaction_data" / "review_dict_test.json", {"1": [3], "2000000000": []})
    assert load_lastfm(tmp_path).n_users == 2


@pytest.mark.parametrize(("content", "found"), [({}, "an empty object"), ({"1": [], "2": []}, "2 users")])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_an_empty_split_file_is_refused(tmp_path: Path, split: str, content: object, found: str) -> None:
    folder = write_lastfm(tmp_path)
    path = folder / "UI_Interaction_data" / f"review_dict_{split}.json"
    _dump(path, content)
    error = _error(load_lastfm, tmp_path)
    assert (error.path, error.field) == (str(path), "")
    assert "at least one (user, item) interaction" in error.expected and found in error.found


def test_an_empty_yelp_test_split_is_refused(tmp_path: Path) -> None:
    folder = write_yelp(tmp_path)
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    _dump(path, {})
    error = _error(load_yelp_star, tmp_path)
    assert error.path == str(path) and "evaluation conversations" in error.expected


def _real_tree_with(real_data_dir: Path, root: Path, name: str, file: str, text: str) -> Path:
    """Sym-link dataset `name` of the real release into root, every file but `file`, written as `text`."""
    source = real_data_dir / name
    for original in source.rglob("*"):
        if original.is_file():
            link = root / name / original.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            if original.relative_to(source).as_posix() != file:
                link.symlink_to(original)
    path = root / name / file
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.real_data
def test_real_lastfm_with_one_stray_user_id(real_data_dir: Path, tmp_path: Path) -> None:
    file = "UI_Interaction_data/review_dict_test.json"
    test = json.loads((real_data_dir / "lastfm" / file).read_text())
    test["2000000000"] = test.pop("1800")
    path = _real_tree_with(real_data_dir, tmp_path, "lastfm", file, json.dumps(test))
    error = _error(load_lastfm, tmp_path)
    # Users 0..1800 (1800 is still in train and valid) and 2000000000: 1,802 distinct users, so ids
    # must be below 2 x 1,802 + 1,000 = 4,604.
    assert (error.path, error.field, error.found) == (str(path), "2000000000", "user id 2,000,000,000")
    assert "user ids below 4,604" in error.expected


@pytest.mark.real_data
def test_real_lastfm_star_with_a_fullwidth_user_key(real_data_dir: Path, tmp_path: Path) -> None:
    file = "UI_Interaction_data/review_dict_valid.json"
    valid = json.loads((real_data_dir / "lastfm_star" / file).read_text())
    valid["\uff11\uff12"] = valid.pop("12")  # fullwidth "12": int() would read user 12
    path = _real_tree_with(
        real_data_dir, tmp_path, "lastfm_star", file, json.dumps(valid, ensure_ascii=False)
    )
    error = _error(load_lastfm_star, tmp_path)
    assert (error.path, error.field) == (str(path), "keys") and r"'\uff11\uff12'" in error.found


# ---------------------------------------------------------------------------------------------
# Real data: exact counts of the SCPR/UNICORN releases
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lastfm(real_data_dir: Path) -> Catalog:
    return load_lastfm(real_data_dir)


@pytest.fixture(scope="module")
def lastfm_star(real_data_dir: Path) -> Catalog:
    return load_lastfm_star(real_data_dir)


@pytest.fixture(scope="module")
def yelp_star(real_data_dir: Path) -> Catalog:
    return load_yelp_star(real_data_dir)


def _split_sizes(catalog: Catalog) -> dict[str, int]:
    return {name: len(inter) for name, inter in catalog.splits.items()}


@pytest.mark.real_data
def test_lastfm_counts(lastfm: Catalog) -> None:
    assert (lastfm.n_users, lastfm.n_items, lastfm.n_aspects) == (1801, 7432, 33)
    assert _split_sizes(lastfm) == {"train": 52910, "valid": 11891, "test": 11892}
    assert lastfm.taxonomy is None


@pytest.mark.real_data
def test_lastfm_star_counts(lastfm_star: Catalog) -> None:
    assert (lastfm_star.n_users, lastfm_star.n_items, lastfm_star.n_aspects) == (1801, 7432, 8438)
    assert _split_sizes(lastfm_star) == {"train": 52910, "valid": 11891, "test": 11892}


@pytest.mark.real_data
def test_yelp_star_counts(yelp_star: Catalog) -> None:
    assert (yelp_star.n_items, yelp_star.n_aspects) == (70311, 590)
    assert yelp_star.n_users == 27675  # user ids 0..27674 across valid and test
    assert _split_sizes(yelp_star) == {"valid": 211319, "test": 211319}
    with pytest.raises(MissingSplitError):
        yelp_star.split("train")
    assert yelp_star.pretrain_split == "valid"
    assert any("no train split" in note and "valid" in note for note in yelp_star.notes)


@pytest.mark.real_data
def test_yelp_star_taxonomy(yelp_star: Catalog) -> None:
    tax = yelp_star.taxonomy
    assert tax is not None and tax.n_parents == 29
    # The 29 lists of "2-layer taxonomy.json" hold 565 (category, aspect) entries: 473 aspects listed
    # once, 40 twice, 4 three times (473 + 80 + 12 = 565) -> 517 distinct aspects, 44 under several
    # categories, and 590 - 517 = 73 aspects listed nowhere.
    assert tax.members.nnz == 565
    per_aspect = np.diff(tax.members.tocsc().indptr)
    assert np.bincount(per_aspect).tolist() == [73, 473, 40, 4]
    assert int((tax.parent_of == -1).sum()) == 73
    japanese = tax.parent_names.index("Japanese")
    assert {"Sushi Bars", "Ramen", "Japanese"} <= {yelp_star.aspect_names[a] for a in tax.children(japanese)}
    assert tax.children(tax.parent_names.index("city")).size == 214


@pytest.mark.real_data
def test_real_item_aspects_equal_the_json(real_data_dir: Path, lastfm_star: Catalog) -> None:
    path = real_data_dir / "lastfm_star" / "Graph_generate_data" / "item_dict.json"
    raw = json.loads(path.read_text())
    expected = {(int(i), a) for i, entry in raw.items() for a in entry["feature_index"]}
    coo = lastfm_star.item_aspects.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist(), strict=True)) == expected
    assert lastfm_star.item_aspects.nnz == len(expected) == 94446


@pytest.mark.real_data
def test_real_splits_equal_the_json(real_data_dir: Path, lastfm: Catalog) -> None:
    for split in ("train", "valid", "test"):
        raw = json.loads(
            (real_data_dir / "lastfm" / "UI_Interaction_data" / f"review_dict_{split}.json").read_text()
        )
        assert _pairs(lastfm, split) == _json_pairs(raw)


@pytest.mark.real_data
def test_real_names_are_resolved(lastfm: Catalog, lastfm_star: Catalog) -> None:
    # Item 0 is HetRec artist 11547 (ID_map_info/item_map.json), "The Honorary Title" in artists.dat.
    assert lastfm_star.item_names[0] == "The Honorary Title"
    assert {"Radiohead", "Coldplay", "The Beatles"} <= set(lastfm_star.item_names)
    assert lastfm.item_names == lastfm_star.item_names
    # LastFM* aspect 0 is HetRec tag 1, "metal"; LastFM's coarse aspect 2 is "rock".
    assert lastfm_star.aspect_names[0] == "metal"
    assert {"rock", "jazz", "hip-hop", "indie"} <= set(lastfm_star.aspect_names)
    assert lastfm.aspect_names[:3] == ("chillout", "electronic", "rock")
    # 150 of the 7,432 artist ids have no line in artists.dat and keep the numbered name.
    assert sum(name.startswith("item ") for name in lastfm_star.item_names) == 150


@pytest.mark.real_data
def test_real_catalog_is_immutable_and_transposes_agree(lastfm_star: Catalog, yelp_star: Catalog) -> None:
    for catalog in (lastfm_star, yelp_star):
        assert (catalog.aspect_items != catalog.item_aspects.T).nnz == 0
        with pytest.raises(ValueError, match="read-only"):
            catalog.item_aspects.indices[0] = 1
        with pytest.raises(ValueError, match="read-only"):
            catalog.aspect_items.data[0] = False
        with pytest.raises(ValueError, match="read-only"):
            catalog.split("test").items[0] = 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            catalog.n_users = 1  # type: ignore[misc]
    assert yelp_star.taxonomy is not None
    with pytest.raises(ValueError, match="read-only"):
        yelp_star.taxonomy.members.indices[0] = 0


@pytest.mark.real_data
def test_truncated_copy_of_a_real_file(real_data_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(real_data_dir / "lastfm", tmp_path / "lastfm")
    path = tmp_path / "lastfm" / "UI_Interaction_data" / "review_dict_train.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    error = _error(load_lastfm, tmp_path)
    assert error.path == str(path) and "valid JSON" in str(error)


@pytest.mark.real_data
def test_lastfm_item_dict_under_lastfm_star_name_is_out_of_range(real_data_dir: Path, tmp_path: Path) -> None:
    # LastFM's folder with LastFM*'s item dict: feature ids up to 8437 but merged_tag_map has 33.
    shutil.copytree(real_data_dir / "lastfm", tmp_path / "lastfm")
    shutil.copy(
        real_data_dir / "lastfm_star" / "Graph_generate_data" / "item_dict.json",
        tmp_path / "lastfm" / "Graph_generate_data" / "item_dict.json",
    )
    error = _error(load_lastfm, tmp_path)
    assert error.path.endswith("item_dict.json") and error.field.endswith(".feature_index")
    assert "[0, 33)" in error.expected
