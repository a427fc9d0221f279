"""Tests from a mutation audit of the ranker specs (`policies.rankers`), the catalogue
(`simulators.catalog`) and the dataset registry (`simulators.datasets`): each guards against one
plausible bug that the other tests of these modules let through."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from policies.content_profile import DEFAULT_SPLIT
from policies.pretrain.config import ARTIFACT_VERSION, CONFIG_FILE
from policies.rankers import RankerChangedError, RankerSpec, transe_file
from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.datasets import DATA_DIR_ENV, check_catalog, clear_cache, load_catalog, resolve_data_dir
from simulators.errors import CRSError, DatasetError


# ------------------------------------------------------------------------------------- ranker specs
def test_the_transe_file_is_the_lastfm_one_when_the_data_folder_also_holds_embeds(tmp_path: Path) -> None:
    """Guards against the data folder read as the lastfm folder whenever it holds an ``embeds/``
    folder, even though it holds ``lastfm/`` too: TransE's file is the one under ``lastfm/``."""
    (tmp_path / "lastfm" / "embeds").mkdir(parents=True)
    (tmp_path / "embeds").mkdir()
    assert transe_file(tmp_path) == tmp_path / "lastfm" / "embeds" / "transe.pkl"


def test_pretrain_names_no_folder_of_its_own() -> None:
    """Guards against "pretrain" taking a folder: it pre-trains into the run's own ``ranker`` folder,
    so a spec naming another one could not be written back as its name."""
    with pytest.raises(ValueError, match="reads no file"):
        RankerSpec("pretrain", "runs/elsewhere")


def test_an_artifact_spec_without_its_folder_is_refused() -> None:
    """Guards against an artifact spec made in Python without its folder: its name would be empty
    (no ranker string names it) and it would pass as a data-free ranker when a run pins it."""
    with pytest.raises(ValueError, match="needs its folder"):
        RankerSpec("artifact")


@pytest.mark.parametrize("dataset", ["lastfm_star", "mcmipl_lastfm_star", "persona_world"])
def test_transe_is_the_default_ranker_on_lastfm_alone(dataset: str) -> None:
    """Guards against TransE taken as the default for every LastFM-like dataset: UNICORN's embeddings
    are published for ``lastfm`` only (its items and aspects), so LastFM* ranks by popularity."""
    assert RankerSpec.default(dataset) == RankerSpec("popularity")
    assert RankerSpec.default("lastfm") == RankerSpec("transe")


def _write_config(
    folder: Path, personas: int, aspect_mode: str, split: dict[str, object] | None = None, seed: int = 0
) -> None:
    """A minimal artifact config.json in `folder`: a model of `personas` personas and `aspect_mode`,
    pre-trained on `split` (default train) with `seed`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = {"dim": 8, "personas": personas, "aspect_mode": aspect_mode}
    config = {"kind": "persona_pretrain", "artifact_version": ARTIFACT_VERSION, "model": model}
    written = {**config, "split": split or {"name": "train"}, "seed": seed}
    (folder / CONFIG_FILE).write_text(json.dumps(written))


def test_attentions_are_the_artifacts_and_none_without_its_config(tmp_path: Path) -> None:
    """Guards against a folder without config.json (not yet pre-trained, or another ranker's) read
    as an artifact's config, which refuses it, where `attentions` says "no variant" (None)."""
    assert RankerSpec("artifact", str(tmp_path / "empty")).attentions() is None
    (tmp_path / "empty").mkdir()
    assert RankerSpec("artifact", str(tmp_path / "empty")).attentions() is None
    _write_config(tmp_path / "both", 3, "attention")
    _write_config(tmp_path / "neither", 1, "mean")
    assert RankerSpec("artifact", str(tmp_path / "both")).attentions() == (True, True)
    assert RankerSpec("artifact", str(tmp_path / "neither")).attentions() == (False, False)
    assert RankerSpec("uniform").attentions() is None


def test_a_legacy_identity_is_checked_with_the_rankers_own_suffix(tmp_path: Path) -> None:
    """Guards against the identity recorded before config.json was covered (the tensor files' digest
    alone) compared without the ranker's suffix: a run of ``+split`` that recorded it with its suffix
    would be refused, and one recorded without the split questions taken as this ranker."""
    artifact = tmp_path / "art"
    _write_config(artifact, 2, "attention")
    (artifact / "weights.pt").write_bytes(b"tensor bytes")
    legacy = "artifact:" + hashlib.sha1(b"weights.pt\0tensor bytes").hexdigest()[:16]
    spec = RankerSpec.parse(f"{artifact}+split")
    assert spec.check_pinned(legacy + "+split", "runs/x") == spec.identity()
    with pytest.raises(RankerChangedError, match="runs/x"):
        spec.check_pinned(legacy, "runs/x")


def test_profiles_and_priors_follow_an_artifacts_own_hold_out(tmp_path: Path) -> None:
    """Guards against the tag profiles and the popularity prior of an artifact pre-trained on
    ``valid`` (Yelp*) built from `crs pretrain`'s default hold-out rather than the artifact's own
    seeded one: they would count the very interactions the artifact held out for validation."""
    split = {"name": "valid", "pretrained_on_valid": True, "holdout_fraction": 0.3, "holdout_unit": "user"}
    _write_config(tmp_path / "yelp", 2, "attention", split, seed=7)
    _write_config(tmp_path / "train", 2, "attention")
    default = (DEFAULT_SPLIT.seed, DEFAULT_SPLIT.holdout_fraction, DEFAULT_SPLIT.holdout_unit)
    assert RankerSpec("artifact", str(tmp_path / "yelp"))._pretraining_split() == (7, 0.3, "user")
    assert RankerSpec("artifact", str(tmp_path / "train"))._pretraining_split() == default
    assert RankerSpec("uniform")._pretraining_split() == default


def test_an_unreadable_rankers_identity_is_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against the identity of a folder or file that cannot be read kept as written: one ranker
    named by a relative and by an absolute path would then be two rankers."""
    monkeypatch.chdir(tmp_path)
    for kind in ("artifact", "transe"):
        relative = RankerSpec(kind, "gone/ranker").identity()
        assert relative == RankerSpec(kind, str(tmp_path / "gone" / "ranker")).identity()
        assert relative == f"{kind}:{tmp_path / 'gone' / 'ranker'}"


def test_transes_default_file_is_refused_for_lastfm_star(tmp_path: Path) -> None:
    """Guards against UNICORN's LastFM embeddings taken for LastFM* (another item and tag set) because
    its name starts like LastFM's: the refusal must say they are published for lastfm only."""
    star = dataclasses.replace(_small_catalog(), name="lastfm_star")
    with pytest.raises(CRSError, match="lastfm only, not lastfm_star"):
        RankerSpec("transe").build(star, tmp_path)


# ---------------------------------------------------------------------------------------- catalogue
def test_parents_of_names_the_categories_listing_the_aspects() -> None:
    """Guards against `Taxonomy.parents_of` counting the asked aspects rather than the categories:
    it must return category ids (an enumerated question's choices), checked against a brute-force
    scan of a membership matrix where aspects sit under several categories or none."""
    rng = np.random.default_rng(3)
    listed = rng.random((5, 9)) < 0.3
    listed[:, 8] = False  # aspect 8: under no category
    parent_of = np.array([int(np.flatnonzero(col)[0]) if col.any() else -1 for col in listed.T])
    taxonomy = Taxonomy(parent_of, tuple("abcde"), members=sp.csr_matrix(listed))
    for size in (1, 2, 4):
        for _ in range(10):
            aspects = rng.choice(9, size=size, replace=False)
            expected = [p for p in range(5) if listed[p, aspects].any()]
            assert taxonomy.parents_of(aspects).tolist() == expected
    plain = Taxonomy(parent_of=np.array([2, 0, 2]), parent_names=("a", "b", "c"))
    assert plain.parents_of(np.array([0])).tolist() == [2]


def _small_catalog(taxonomy: Taxonomy | None = None) -> Catalog:
    """3 users, 4 items over 3 aspects (item 3 holds none), with train, valid and test splits, and
    `taxonomy`."""
    holds = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
    return Catalog(
        name="small",
        item_aspects=sp.csr_matrix(holds),
        item_names=("i0", "i1", "i2", "i3"),
        aspect_names=("a0", "a1", "a2"),
        n_users=3,
        splits={
            "train": Interactions(np.array([0, 1, 2]), np.array([0, 1, 2])),
            "valid": Interactions(np.array([2]), np.array([3])),
            "test": Interactions(np.array([0, 1]), np.array([2, 0])),
        },
        taxonomy=taxonomy,
    )


def test_a_catalogue_pickles_and_reads_back_the_same() -> None:
    """Guards against a catalogue that cannot be pickled (its read-only splits view does not pickle):
    worker processes receive the catalogue pickled."""
    catalog = _small_catalog()
    again = pickle.loads(pickle.dumps(catalog))
    assert sorted(again.splits) == ["test", "train", "valid"]
    assert again.split("test").items.tolist() == [2, 0] and again.split("valid").users.tolist() == [2]
    assert again.aspects_of(2).tolist() == [0, 1, 2] and again.items_with(1).tolist() == [1, 2]
    with pytest.raises(TypeError):
        again.splits["train"] = again.splits["test"]  # type: ignore[index]


def test_describe_counts_every_item_and_lists_the_splits_in_order() -> None:
    """Guards against the summary's aspects-per-item figures leaving out an item without aspects (the
    minimum would hide what ``crs data validate`` fails), and splits listed in the order given rather
    than train, valid, test."""
    catalog = _small_catalog()
    reordered = dataclasses.replace(
        catalog, splits={name: catalog.splits[name] for name in ("test", "valid", "train")}
    )
    summary = reordered.describe()
    assert (summary.n_users, summary.n_items, summary.n_aspects, summary.n_parents) == (3, 4, 3, 0)
    assert summary.aspects_per_item_mean == pytest.approx((2 + 1 + 3 + 0) / 4)
    assert (summary.aspects_per_item_min, summary.aspects_per_item_max) == (0, 3)
    assert list(summary.split_sizes.items()) == [("train", 3), ("valid", 1), ("test", 2)]


# ----------------------------------------------------------------------------------------- datasets
def test_a_data_dir_argument_under_home_is_expanded_as_the_environments_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against ``~`` expanded in ``$CRS_DATA_DIR`` but not in a ``data_dir`` argument (a
    config's ``data_dir: ~/data`` would then look for a folder named ``~``)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(DATA_DIR_ENV, "~/from_env")
    assert resolve_data_dir("~/data") == tmp_path / "data"
    assert resolve_data_dir(None) == tmp_path / "from_env"


def test_interactions_copy_the_callers_arrays_and_leave_them_writable() -> None:
    """Guards against `Interactions` freezing and keeping the caller's own int64 arrays: the caller
    could then no longer write them, and a write through another view would change the split."""
    users, items = np.array([0, 1], dtype=np.int64), np.array([2, 0], dtype=np.int64)
    split = Interactions(users, items)
    users[0], items[0] = 1, 1
    assert split.users.tolist() == [0, 1] and split.items.tolist() == [2, 0]
    assert not split.users.flags.writeable


def test_a_catalogue_with_item_names_of_another_count_is_refused() -> None:
    """Guards against a catalogue whose item names do not match its items (a slate would show the
    wrong item's name, or fail past the last name)."""
    catalog = _small_catalog()
    with pytest.raises(CRSError, match="3 item names for 4 items"):
        Catalog(
            name="small",
            item_aspects=catalog.item_aspects,
            item_names=catalog.item_names[:3],
            aspect_names=catalog.aspect_names,
            n_users=3,
            splits={},
        )


def _taxonomy_check(taxonomy: Taxonomy) -> tuple[str, str]:
    """(status, detail) of check_catalog's taxonomy check on `_small_catalog` with `taxonomy`."""
    checks = {check.name: check for check in check_catalog(_small_catalog(taxonomy))}
    check = checks["taxonomy covers the aspects"]
    return check.status, check.detail


def test_the_taxonomy_check_counts_aspects_under_none_and_empty_categories() -> None:
    """Guards against aspects under category 0 counted as under none, and categories that list no
    aspect not counted: a taxonomy covering every aspect with every category used is ok."""
    names = ("a", "b")
    assert _taxonomy_check(Taxonomy(np.array([0, 1, 0]), names)) == (
        "ok",
        "2 categories; 0 aspects under none; 0 empty categories",
    )
    assert _taxonomy_check(Taxonomy(np.array([0, 0, 0]), names)) == (
        "warn",
        "2 categories; 0 aspects under none; 1 empty categories",
    )
    members = sp.csr_matrix(np.array([[True, False, False], [False, False, True]]))
    assert _taxonomy_check(Taxonomy(np.array([0, -1, 1]), names, members=members)) == (
        "warn",
        "2 categories; 1 aspects under none; 0 empty categories",
    )


@pytest.mark.parametrize(
    ("name", "folder"),
    [("mcmipl_movie", "mcmipl/movie"), ("mcmipl_yelp_star", "yelp_star"), ("lastfm_star", "lastfm_star")],
)
def test_a_missing_data_folder_names_the_folder_the_dataset_lives_in(
    tmp_path: Path, name: str, folder: str
) -> None:
    """Guards against the hint naming a folder after the dataset (``mcmipl_movie/``) rather than where
    its files are (``mcmipl/movie/``; MCMIPL's Yelp* is built from ``yelp_star/``)."""
    clear_cache()
    with pytest.raises(DatasetError) as info:
        load_catalog(name, tmp_path / "nowhere")
    assert f"(the folder that holds {folder}/)" in str(info.value) and "--data-dir" in str(info.value)
