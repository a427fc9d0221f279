"""UNICORN's TransE embeddings: restricted loading and the preference-score formulas."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from envs.ranker import DialogueFacts
from policies.baseline_rankers import TransERanker, load_embedding_pickle
from simulators.errors import CRSError, DatasetError
from simulators.safe_pickle import UnsafePickleError
from tests.envs.conftest import tiny_catalog


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_anything_but_numpy_arrays(tmp_path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ui_emb": _Evil()}))
    with pytest.raises(UnsafePickleError, match="system") as info:
        load_embedding_pickle(path)
    assert info.value.path == str(path)  # the refusal names the file


@pytest.mark.parametrize("array", [np.ones((7, 3), dtype=object), np.full((7, 3), "x")])
def test_an_array_of_objects_or_strings_is_refused_as_it_is_read(tmp_path, array: np.ndarray) -> None:
    path = tmp_path / "transe.pkl"
    path.write_bytes(pickle.dumps({"ui_emb": array, "feature_emb": np.ones((4, 3))}))
    with pytest.raises(UnsafePickleError) as info:
        TransERanker.from_file(path, tiny_catalog())
    assert (info.value.path, info.value.field) == (str(path), "dtype") and "refused" in str(info.value)


def test_restricted_unpickler_reads_arrays_and_reports_corruption(tmp_path) -> None:
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"ui_emb": np.ones((2, 3)), "feature_emb": np.zeros((1, 3))}))
    assert load_embedding_pickle(path)["ui_emb"].shape == (2, 3)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetError, match="readable pickle"):
        load_embedding_pickle(path)


def test_scores_follow_unicorns_formulas() -> None:
    catalog = tiny_catalog()  # 1 user, 6 items, 4 aspects; item 2 has aspects {0, 1, 3}
    rng = np.random.default_rng(0)
    user, items, aspects = rng.normal(size=(1, 4)), rng.normal(size=(6, 4)), rng.normal(size=(4, 4))
    ranker = TransERanker(user, items, aspects, catalog)
    facts = DialogueFacts(
        user=0, accepted=np.array([0]), rejected=np.array([1, 2]), rejected_items=np.array([])
    )
    # item 2: e_u·e_v + e_a0·e_v - σ(e_a1·e_v) (aspect 2 is rejected but not an aspect of item 2)
    v = items[2]
    expected = user[0] @ v + aspects[0] @ v - 1 / (1 + np.exp(-(aspects[1] @ v)))
    assert ranker.item_scores(facts, np.array([2]))[0] == pytest.approx(expected)
    # aspect 3: e_u·e_a + e_a0·e_a
    assert ranker.aspect_scores(facts, np.array([3]))[0] == pytest.approx(
        user[0] @ aspects[3] + aspects[0] @ aspects[3]
    )


@pytest.mark.parametrize(
    ("user", "accepted", "message"),
    [
        (-1, [], r"user -1 outside \[0, 1\)"),
        (1, [], "user 1 outside"),
        (0, [-1], r"accepted aspect ids \[-1\]"),
    ],
)
def test_transe_refuses_a_dialogue_outside_its_embeddings(
    user: int, accepted: list[int], message: str
) -> None:
    """User -1 was read as the last user's vector and an accepted aspect -1 as the last aspect's: both
    scores refuse them by name."""
    catalog = tiny_catalog()  # 1 user, 6 items, 4 aspects
    ranker = TransERanker(np.ones((1, 2)), np.ones((6, 2)), np.ones((4, 2)), catalog)
    facts = DialogueFacts(
        user, np.array(accepted, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    )
    with pytest.raises(CRSError, match=message):
        ranker.item_scores(facts, np.arange(6))
    with pytest.raises(CRSError, match=message):
        ranker.aspect_scores(facts, np.arange(4))


def test_embeddings_of_another_dataset_are_refused() -> None:
    with pytest.raises(CRSError, match="use the embedding file of this dataset"):
        TransERanker(np.ones((1, 2)), np.ones((5, 2)), np.ones((4, 2)), tiny_catalog())


@pytest.mark.real_data
def test_unicorns_lastfm_file_loads(real_data_dir) -> None:
    from simulators.datasets import load_catalog

    catalog = load_catalog("lastfm", real_data_dir)
    ranker = TransERanker.from_file(real_data_dir / "lastfm" / "embeds" / "transe.pkl", catalog)
    assert ranker.user_emb.shape == (1801, 64) and ranker.item_emb.shape == (7432, 64)


# ---------------------------------------------------------------------------------------------
# Hostile embedding files (issue 13): a DatasetError naming the key and the expected shape
# ---------------------------------------------------------------------------------------------

_GOOD = {"ui_emb": np.ones((7, 3)), "feature_emb": np.ones((4, 3))}  # tiny_catalog: 1 + 6 rows, 4 aspects


def _with(key: str, value: object) -> dict[str, object]:
    data: dict[str, object] = dict(_GOOD)
    if value is None:
        del data[key]
    else:
        data[key] = value
    return data


def _nan_at(shape: tuple[int, int], value: float) -> np.ndarray:
    array = np.ones(shape)
    array[1, 2] = value
    return array


@pytest.mark.parametrize(
    ("data", "key", "expected", "found"),
    [
        (_with("feature_emb", np.ones((4, 5))), "feature_emb", "(4, 3)", "shape (4, 5)"),
        (_with("ui_emb", np.ones((7, 3), dtype=np.complex128)), "ui_emb", "(7, d)", "dtype complex128"),
        (_with("ui_emb", np.ones((7, 3), dtype=np.int64)), "ui_emb", "(7, d)", "dtype int64"),
        (_with("ui_emb", np.ones((7, 3), dtype=bool)), "ui_emb", "(7, d)", "dtype bool"),
        (_with("ui_emb", np.ones((9, 3))), "ui_emb", "1 users + 6 items", "shape (9, 3)"),
        (_with("feature_emb", np.ones((2, 3))), "feature_emb", "4 aspects", "shape (2, 3)"),
        (_with("ui_emb", np.ones(7)), "ui_emb", "(7, d)", "shape (7,)"),
        (_with("ui_emb", np.ones((7, 3, 1))), "ui_emb", "(7, d)", "shape (7, 3, 1)"),
        (_with("ui_emb", np.ones((7, 0))), "ui_emb", "(7, d)", "shape (7, 0)"),
        (_with("feature_emb", None), "feature_emb", "(4, 3)", "no such key"),
        (_with("feature_emb", [[1.0, 2.0, 3.0]] * 4), "feature_emb", "(4, 3)", "a list"),
        (_with("ui_emb", _nan_at((7, 3), np.nan)), "ui_emb", "finite", "nan at row 1, column 2"),
        (_with("feature_emb", _nan_at((4, 3), -np.inf)), "feature_emb", "finite", "-inf at row 1"),
    ],
)
def test_hostile_embedding_file_names_the_key_and_the_expected_shape(
    tmp_path, data: dict[str, object], key: str, expected: str, found: str
) -> None:
    path = tmp_path / "transe.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetError) as info:
        TransERanker.from_file(path, tiny_catalog())
    error = info.value
    assert (error.path, error.field) == (str(path), key)
    assert expected in error.expected and found in error.found
    assert str(path) in str(error) and f"[{key}]" in str(error)


def test_well_formed_embedding_file_loads(tmp_path) -> None:
    path = tmp_path / "transe.pkl"
    path.write_bytes(pickle.dumps({"ui_emb": np.ones((7, 3), np.float32), "feature_emb": np.ones((4, 3))}))
    ranker = TransERanker.from_file(path, tiny_catalog())
    assert ranker.user_emb.shape == (1, 3) and ranker.item_emb.shape == (6, 3)
    assert ranker.aspect_emb.dtype == np.float64
