"""Tests from a second mutation audit of the ranker specs (`policies.rankers`), the catalogue
(`simulators.catalog`) and the dataset registry (`simulators.datasets`): each guards against one
plausible bug that the other tests of these modules let through."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from policies.pretrain.config import CONFIG_FILE
from policies.rankers import RankerChangedError, RankerSpec
from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.datasets import DATA_DIR_ENV, DatasetSpec, check_catalog, clear_cache
from simulators.errors import CRSError, DatasetError, MissingSplitError
from tests.simulators.test_catalog_specs_mutants import _small_catalog, _write_config
from tests.simulators.test_datasets import _write_tiny_lastfm


def _sha(*parts: tuple[str, bytes]) -> str:
    """The documented digest of (name, content) parts: SHA-1 of name, a NUL and the content, in order,
    cut to 16 hex digits (computed here independently of `policies.rankers`)."""
    digest = hashlib.sha1()
    for name, content in parts:
        digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest()[:16]


def _artifact(folder: Path, tensors: dict[str, bytes]) -> Path:
    """A minimal artifact folder: config.json (2 personas, attention) and the given tensor files."""
    _write_config(folder, 2, "attention")
    for name, content in tensors.items():
        (folder / name).write_bytes(content)
    return folder


# ------------------------------------------------------------------------------------ identities
def test_a_transe_files_identity_is_its_name_and_content_wherever_it_lies(tmp_path: Path) -> None:
    """Guards against a TransE identity that hashes the file's path (two copies of one file would be two
    rankers, and a run moved with its data would refuse its own ranker), that is taken for a folder
    only, or that leaves the file's name out of the digest."""
    content = b"embedding bytes"
    first, second = tmp_path / "a" / "transe.pkl", tmp_path / "b" / "transe.pkl"
    for file in (first, second):
        file.parent.mkdir()
        file.write_bytes(content)
    expected = f"transe:{_sha(('transe.pkl', content))}"
    assert RankerSpec("transe", str(first)).identity() == expected
    assert RankerSpec("transe", str(second)).identity() == expected
    second.write_bytes(b"other embedding bytes")
    assert RankerSpec("transe", str(second)).identity() != expected


def test_an_artifact_copied_to_another_folder_keeps_its_identity(tmp_path: Path) -> None:
    """Guards against an artifact identity that hashes its tensor files' paths: a copy of the artifact
    (a run's folder moved or shared) must be the same ranker."""
    original = _artifact(tmp_path / "here", {"weights.pt": b"tensor bytes"})
    shutil.copytree(original, tmp_path / "elsewhere" / "copy")
    here = RankerSpec("artifact", str(original)).identity()
    assert here.startswith("artifact:") and str(tmp_path) not in here
    assert RankerSpec("artifact", str(tmp_path / "elsewhere" / "copy")).identity() == here


def test_tensors_swapped_between_an_artifacts_files_change_its_identity(tmp_path: Path) -> None:
    """Guards against a digest of the tensor contents alone: two artifacts whose files hold each
    other's tensors compute different rankers and must not compare equal."""
    one = _artifact(tmp_path / "one", {"a.pt": b"first tensor", "b.pt": b"second tensor"})
    other = _artifact(tmp_path / "other", {"a.pt": b"second tensor", "b.pt": b"first tensor"})
    assert RankerSpec("artifact", str(one)).identity() != RankerSpec("artifact", str(other)).identity()


def test_an_artifacts_identity_follows_the_split_it_held_out(tmp_path: Path) -> None:
    """Guards against the identity leaving out config.json's ``split``: an artifact pre-trained on
    another split (one that held out other interactions) is another ranker to a run that pinned it."""
    artifact = _artifact(tmp_path / "art", {"weights.pt": b"tensor bytes"})
    on_train = RankerSpec("artifact", str(artifact)).identity()
    config = json.loads((artifact / CONFIG_FILE).read_text())
    config["split"] = {"name": "valid", "pretrained_on_valid": True, "holdout_fraction": 0.3}
    (artifact / CONFIG_FILE).write_text(json.dumps(config))
    assert RankerSpec("artifact", str(artifact)).identity() != on_train


def test_a_folder_without_tensor_files_is_identified_by_its_path(tmp_path: Path) -> None:
    """Guards against a folder holding config.json but no tensors (a pre-training that never saved)
    identified by its config alone: every such folder of one config would then be one ranker."""
    folder = tmp_path / "unfinished"
    _write_config(folder, 2, "attention")
    assert RankerSpec("artifact", str(folder)).identity() == f"artifact:{folder.resolve()}"


def test_an_artifact_whose_config_cannot_be_read_is_identified_by_its_path(tmp_path: Path) -> None:
    """Guards against a corrupt config.json hashed as empty: two folders of one tensor file and
    unreadable configs (what a model and hold-out they hold is unknown) would compare equal."""
    for name in ("one", "two"):
        folder = _artifact(tmp_path / name, {"weights.pt": b"tensor bytes"})
        (folder / CONFIG_FILE).write_text("{not json")
        assert RankerSpec("artifact", str(folder)).identity() == f"artifact:{folder.resolve()}"


# ------------------------------------------------------------------------------------- pinning
def test_a_replaced_transe_file_is_refused_naming_both_identities(tmp_path: Path) -> None:
    """Guards against a pinned TransE file not checked (no test trains with one): the same file passes
    and returns its identity, another file is refused as another *file* naming both identities, and a
    removed one as gone."""
    file = tmp_path / "transe.pkl"
    file.write_bytes(b"embedding bytes")
    spec = RankerSpec("transe", str(file))
    recorded = spec.identity()
    assert spec.check_pinned(recorded, "runs/x") == recorded
    file.write_bytes(b"other embedding bytes")
    now = f"transe:{_sha(('transe.pkl', b'other embedding bytes'))}"
    expected = (
        f"run runs/x was trained with ranker transe:{file} (identity {recorded}); {file} now holds "
        f"another file (identity {now}): restore it, or train again"
    )
    with pytest.raises(RankerChangedError, match=re.escape(expected)):
        spec.check_pinned(recorded, "runs/x")
    file.unlink()
    with pytest.raises(RankerChangedError, match=f"{re.escape(str(file))} no longer exists"):
        spec.check_pinned(recorded, "runs/x")


def test_a_gone_ranker_is_refused_even_for_a_run_that_recorded_no_identity(tmp_path: Path) -> None:
    """Guards against a run from before identities were recorded loading with its ranker gone: only
    the identity check is skipped for it, not the check that the file or folder is still there."""
    artifact = tmp_path / "art"
    spec = RankerSpec("artifact", str(artifact))
    with pytest.raises(RankerChangedError, match="no longer exists"):
        spec.check_pinned(None, "runs/old")
    _artifact(artifact, {"weights.pt": b"tensor bytes"})
    assert spec.check_pinned(None, "runs/old") is None


def test_a_legacy_identity_with_another_suffix_is_refused(tmp_path: Path) -> None:
    """Guards against a legacy (tensors-only) identity matched by its start: a run trained with the
    artifact's ``+split`` ranker must not accept the plain artifact, which asks other questions."""
    artifact = _artifact(tmp_path / "art", {"weights.pt": b"tensor bytes"})
    legacy = f"artifact:{_sha(('weights.pt', b'tensor bytes'))}"
    plain = RankerSpec("artifact", str(artifact))
    assert plain.check_pinned(legacy, "runs/x") == plain.identity()
    with pytest.raises(RankerChangedError, match="runs/x"):
        plain.check_pinned(legacy + "+split", "runs/x")


# --------------------------------------------------------------------------------------- parsing
def test_a_folder_named_artifact_is_an_artifact_ranker() -> None:
    """Guards against the kind word "artifact" read as a name (it is no name a user types): ``crs
    pretrain --out artifact`` then ``--ranker artifact`` must name that folder, not fail."""
    spec = RankerSpec.parse("artifact")
    assert spec == RankerSpec("artifact", "artifact")
    assert spec.name == "artifact" and spec.entry == "artifact:artifact"


@pytest.mark.parametrize("text", ["uniform:2", "popularity:v2", "run:x"])
def test_a_name_kind_before_a_colon_is_a_folder_and_no_policy_json_entry(text: str) -> None:
    """Guards against "kind:where" read for every kind, not only TransE and artifacts: a name such as
    ``uniform:2`` must stay a folder (refused when built as no artifact), and as a policy.json entry
    be refused as an unknown entry naming the file, not crash with a spec error."""
    assert RankerSpec.parse(text) == RankerSpec("artifact", text)
    with pytest.raises(CRSError, match=re.escape(f"runs/x/policy.json: unknown ranker entry {text!r}")):
        RankerSpec.from_entry(text, "runs/x/policy.json")


def test_a_prior_on_a_ranker_without_preferences_names_that_prior() -> None:
    """Guards against the refusal of a prior on a non-persona ranker naming the other prior: the
    message must name the one that was asked for and its suffix."""
    with pytest.raises(CRSError, match=re.escape("cannot add the opening prior (+open)")):
        RankerSpec.parse("popularity+open")
    with pytest.raises(CRSError, match=re.escape("cannot add the popularity prior (+pop)")):
        RankerSpec.parse("transe:/x/t.pkl+pop")


def test_a_priors_bad_weight_is_named_with_the_whole_ranker_as_typed() -> None:
    """Guards against the refusal of a weight of 0 or below quoting only the part before the prior:
    the user must see the ranker as typed, with the weight that is refused."""
    with pytest.raises(CRSError, match=re.escape("popularity weight '0' in 'uniform+profile+pop:0' must")):
        RankerSpec.parse("uniform+profile+pop:0")
    with pytest.raises(CRSError, match=re.escape("opening weight '-2' in 'uniform+pop+open:-2' must")):
        RankerSpec.parse("uniform+pop+open:-2")


def test_a_run_records_the_transe_file_it_was_given_not_the_default_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against `for_run` recording TransE's default file (in the data folder) for a ranker that
    named its own file: the run would then pin and reload other embeddings than it trained with."""
    monkeypatch.chdir(tmp_path)
    recorded = RankerSpec.parse("transe:mine/t.pkl").for_run(tmp_path / "data")
    assert recorded == RankerSpec("transe", str(tmp_path / "mine" / "t.pkl"))
    assert recorded.entry == f"transe:{tmp_path / 'mine' / 't.pkl'}"


# ------------------------------------------------------------------------------------- catalogue
def test_duplicate_and_unsorted_aspect_entries_are_merged_and_sorted() -> None:
    """Guards against the catalogue keeping a CSR matrix's duplicate or unsorted entries as given: an
    item would list an aspect twice, and `aspects_of` / `items_with` would not be sorted."""
    indptr, indices = np.array([0, 3, 4]), np.array([2, 0, 2, 1])  # item 0: 2, 0, 2; item 1: 1
    holds = sp.csr_matrix((np.ones(4, dtype=bool), indices, indptr), shape=(2, 3))
    catalog = Catalog("dup", holds, ("i0", "i1"), ("a0", "a1", "a2"), n_users=1, splits={})
    assert catalog.aspects_of(0).tolist() == [0, 2] and catalog.aspects_of(1).tolist() == [1]
    assert catalog.item_aspects.nnz == 3
    assert [catalog.items_with(a).tolist() for a in range(3)] == [[0], [1], [0]]


def test_interaction_ids_are_int64_whatever_the_callers_arrays_hold() -> None:
    """Guards against a split keeping the caller's int32 (or other) id arrays: the documented int64
    ids are what pair keys and sparse matrices built from a split expect."""
    split = Interactions(np.array([0, 1], dtype=np.int32), np.array([1, 0], dtype=np.int16))
    assert split.users.dtype == np.int64 and split.items.dtype == np.int64
    assert split.users.tolist() == [0, 1] and split.items.tolist() == [1, 0]


def test_a_catalogue_with_more_aspect_names_than_aspects_is_refused() -> None:
    """Guards against extra aspect names accepted (the names would belong to another aspect list,
    and a question would show the wrong aspect's name)."""
    with pytest.raises(CRSError, match="3 aspect names for 2 aspects"):
        Catalog("names", sp.csr_matrix(np.eye(2, dtype=bool)), ("i0", "i1"), ("a0", "a1", "a2"), 1, {})


def test_a_catalogue_keeps_its_splits_when_the_callers_dict_changes() -> None:
    """Guards against the catalogue wrapping the caller's own dict of splits: a later change to that
    dict would change the (validated, immutable) catalogue's splits."""
    given = {"test": Interactions(np.array([0]), np.array([1]))}
    catalog = Catalog("own", sp.csr_matrix(np.eye(2, dtype=bool)), ("i0", "i1"), ("a0", "a1"), 1, given)
    given["valid"] = Interactions(np.array([5]), np.array([9]))  # ids no validation saw
    del given["test"]
    assert sorted(catalog.splits) == ["test"] and catalog.split("test").items.tolist() == [1]


def test_a_taxonomy_keeps_its_membership_when_the_callers_matrix_changes() -> None:
    """Guards against a taxonomy keeping the caller's own membership matrix: a later write to it would
    change which aspects an enumerated question lists."""
    given = sp.csr_matrix(np.array([[True, False], [False, True]]))
    taxonomy = Taxonomy(np.array([0, 1]), ("a", "b"), members=given)
    given.indices[:] = [1, 0]  # category a now lists aspect 1, b aspect 0
    assert taxonomy.children(0).tolist() == [0] and taxonomy.children(1).tolist() == [1]
    assert taxonomy.members is not None and not taxonomy.members.data.flags.writeable


def test_a_pickled_catalogues_aspect_matrices_stay_read_only() -> None:
    """Guards against the catalogue a worker process unpickles having writable aspect matrices: a
    write there would change what every ranker and simulator of that worker reads."""
    again = pickle.loads(pickle.dumps(_small_catalog()))
    for matrix in (again.item_aspects, again.aspect_items):
        assert not any(part.flags.writeable for part in (matrix.data, matrix.indices, matrix.indptr))


def _without_train(catalog: Catalog) -> Catalog:
    """`catalog` as Yelp* is: no train split, named "yelp_like"."""
    return dataclasses.replace(
        catalog, name="yelp_like", splits={n: catalog.splits[n] for n in ("valid", "test")}
    )


def test_a_missing_split_names_the_splits_there_are() -> None:
    """Guards against a missing split's error that does not say which splits the catalogue has (Yelp*
    has no train: the user must learn to ask for valid)."""
    catalog = _small_catalog()
    yelp_like = _without_train(catalog)
    with pytest.raises(
        MissingSplitError, match=re.escape("yelp_like has no 'train' split; available: ['test', 'valid']")
    ):
        yelp_like.split("train")


# -------------------------------------------------------------------------------------- datasets
def test_a_dataset_spec_reads_its_own_data_folder_not_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against `DatasetSpec.load` dropping its ``data_dir`` (a config's ``data_dir:``): the
    catalogue must come from that folder even when ``$CRS_DATA_DIR`` names another."""
    clear_cache()
    _write_tiny_lastfm(tmp_path / "mine", {"0": [0, 1], "1": [2]}, {"0": [1]})
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    catalog = DatasetSpec("lastfm", data_dir=str(tmp_path / "mine")).load()
    assert catalog.n_items == 2 and catalog.n_aspects == 3
    with pytest.raises(DatasetError):
        DatasetSpec("lastfm").load()


def _checks(catalog: Catalog) -> dict[str, tuple[str, str]]:
    return {check.name: (check.status, check.detail) for check in check_catalog(catalog)}


def test_an_aspect_no_item_holds_is_a_warning_not_a_failure() -> None:
    """Guards against an unused aspect failing ``crs data validate``: it is unusual (never the answer's
    aspect) but the env runs on it, unlike an item without aspects, which fails."""
    holds = np.array([[1, 0, 0], [1, 0, 1]], dtype=bool)  # aspect 1: held by no item
    split = Interactions(np.array([0]), np.array([1]))
    catalog = Catalog("unused", sp.csr_matrix(holds), ("i0", "i1"), ("a0", "a1", "a2"), 1, {"test": split})
    checks = _checks(catalog)
    assert checks["every aspect is held by an item"] == ("warn", "1 of 3 aspects are held by no item")
    assert checks["every item has an aspect"] == ("ok", "2 items")


def test_cold_test_users_are_counted_against_valid_where_there_is_no_train() -> None:
    """Guards against the cold-user check reading train on a catalogue without it (Yelp*): there
    pre-training reads valid, so test users are checked for valid history; and against the check
    reading a pre-training split that is missing altogether (the check must report, not crash)."""
    catalog = _small_catalog()  # valid: user 2; test: users 0 and 1
    yelp_like = _without_train(catalog)
    checks = _checks(yelp_like)
    assert checks["test users have valid history"] == (  # all of them: whose file is it?
        "warn",
        "2 of 2 test users without valid interactions: is the valid file this dataset's?",
    )
    assert not any("train" in name for name in checks)
    test_only = dataclasses.replace(yelp_like, splits={"test": catalog.splits["test"]})
    checks = _checks(test_only)  # no pre-training split at all: nothing to be cold against
    assert (
        not any("history" in name for name in checks)
        and checks["valid split present and not empty"][0] == "fail"
    )
