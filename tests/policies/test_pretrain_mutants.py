"""Pre-training's artifact, graph split and persona mixture: tests that kill mutants the other pretrain
tests let through (a refusal dropped, a digest not recorded, a hold-out that ignores its seed, ...)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.pretrain.artifact import (
    EXPORT_FILE,
    WEIGHTS_FILE,
    load_ranker,
    load_state_dict,
    save_artifact,
    unseen_valid_interactions,
)
from policies.pretrain.graph import build_graph, kmeans, pretrain_data, spectral_embedding
from policies.pretrain.mixture import PersonaMixture, fit_persona_mixture
from policies.pretrain.train import PretrainResult, pretrain
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from tests.conftest import data_missing
from tests.policies.test_pretrain import FAST, _forget_digests, replace_splits, tiny_world


@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return tiny_world()


@pytest.fixture(scope="module")
def trained(tiny: Catalog) -> PretrainResult:
    return pretrain(tiny, FAST)


@pytest.fixture()
def artifact(tmp_path: Path, trained: PretrainResult) -> Path:
    return save_artifact(trained, tmp_path / "art")


def _no_train(catalog: Catalog) -> Catalog:
    """`catalog` without its train split (as Yelp*): pre-training learns from valid minus a hold-out."""
    return replace_splits(catalog, {"valid": catalog.split("valid"), "test": catalog.split("test")})


def _pairs(interactions: Interactions) -> list[tuple[int, int]]:
    return sorted(zip(interactions.users.tolist(), interactions.items.tolist(), strict=True))


# ------------------------------------------------------------------------------ artifact
def test_an_edited_weights_file_is_refused_by_its_digest(artifact: Path, tiny: Catalog) -> None:
    """Guards against weights.pt left out of the digests config.json records: an edited state dict
    (the encoder a policy starts from) would load silently."""
    state = torch.load(artifact / WEIGHTS_FILE, weights_only=True)
    state["prototypes"] = state["prototypes"] + 1.0
    torch.save(state, artifact / WEIGHTS_FILE)
    with pytest.raises(CRSError, match=r"weights\.pt is not the one its config\.json describes"):
        load_state_dict(artifact, tiny)


@pytest.mark.parametrize("version", [2, 0, "1", True, None, "missing"])
def test_an_artifact_of_another_version_is_refused_naming_it(artifact: Path, tiny: Catalog, version) -> None:
    """config.json's artifact_version was written but never read: an artifact of another layout (or one
    whose version field is damaged or gone) loaded silently. Every reader now refuses it."""
    config_path = artifact / "config.json"
    config = json.loads(config_path.read_text())
    assert config["artifact_version"] == 1
    if version == "missing":
        del config["artifact_version"]
    else:
        config["artifact_version"] = version
    config_path.write_text(json.dumps(config))
    shown = "None" if version == "missing" else repr(version)
    for load in (load_ranker, load_state_dict, unseen_valid_interactions):
        with pytest.raises(
            CRSError, match=rf"records artifact_version {re.escape(shown)}; .* reads version 1"
        ):
            load(artifact, tiny)


def test_the_state_dict_and_hold_out_of_another_catalogue_are_refused(artifact: Path) -> None:
    """Guards against `load_state_dict` or `unseen_valid_interactions` skipping the catalogue check:
    another world of the same sizes would get this world's encoder or hold-out."""
    other = tiny_world(seed=2)
    for load in (load_state_dict, unseen_valid_interactions):
        with pytest.raises(CRSError, match="different 'persona_world' catalogue"):
            load(artifact, other)


def test_a_catalogue_with_other_aspects_is_refused_naming_the_count(artifact: Path) -> None:
    """Guards against n_aspects dropped from the size checks (the refusal must name what differs)."""
    from simulators.persona_world import make_persona_world

    fewer = make_persona_world(
        n_users=40,
        n_items=90,
        n_personas=4,
        personas_per_user=2,
        interactions_per_user=10,
        seed=1,
        aspects_per_group=5,
    )
    with pytest.raises(CRSError, match="n_aspects="):
        load_ranker(artifact, fewer)


def test_a_missing_or_keyless_export_file_is_a_named_error(artifact: Path, tiny: Catalog) -> None:
    """Guards against a missing ranker.pt, or one lacking a weight, failing with a bare
    FileNotFoundError / KeyError instead of a CRSError naming the file."""
    tensors = torch.load(artifact / EXPORT_FILE, weights_only=True)
    _forget_digests(artifact)
    torch.save({k: v for k, v in tensors.items() if k != "item"}, artifact / EXPORT_FILE)
    with pytest.raises(CRSError, match=r"ranker\.pt lacks \['item'\]"):
        load_ranker(artifact, tiny)
    (artifact / EXPORT_FILE).unlink()
    with pytest.raises(CRSError, match=r"ranker\.pt is missing"):
        load_ranker(artifact, tiny)


def test_a_missing_export_file_is_named_even_with_its_digest_recorded(artifact: Path, tiny: Catalog) -> None:
    """Guards against the missing-file check dropped: the digest would then open a missing file."""
    (artifact / EXPORT_FILE).unlink()
    with pytest.raises(CRSError, match=r"ranker\.pt is missing"):
        load_ranker(artifact, tiny)


def test_a_non_tensor_value_in_an_export_file_is_refused(artifact: Path, tiny: Catalog) -> None:
    """Guards against only the container's type checked: a list where a tensor belongs must be refused
    as corrupt, not crash on a tensor method."""
    tensors = torch.load(artifact / EXPORT_FILE, weights_only=True)
    _forget_digests(artifact)
    torch.save({**tensors, "user": [1.0, 2.0]}, artifact / EXPORT_FILE)
    with pytest.raises(CRSError, match="expected a dict of tensors"):
        load_ranker(artifact, tiny)


@pytest.mark.parametrize("key", ["user", "item", "aspect", "log_prior", "shared"])
def test_every_exported_weight_of_another_shape_is_refused(
    artifact: Path, tiny: Catalog, trained: PretrainResult, key: str
) -> None:
    """Guards against a weight left out of the shape checks (a ranker scoring with a wrong-sized
    table would index past it or broadcast silently)."""
    tensors = torch.load(artifact / EXPORT_FILE, weights_only=True)
    assert key in tensors  # the trained tiny ranker has the shared persona too
    _forget_digests(artifact)
    shape = tuple(tensors[key].shape)
    wrong = (shape[0] + 1, *shape[1:])
    torch.save({**tensors, key: torch.zeros(wrong)}, artifact / EXPORT_FILE)
    with pytest.raises(CRSError, match=rf"{key} has shape"):
        load_ranker(artifact, tiny)


def test_a_model_entry_with_an_unknown_field_is_a_named_error(artifact: Path, tiny: Catalog) -> None:
    """Guards against a damaged config.json model entry raising a bare TypeError from ModelConfig."""
    config = json.loads((artifact / "config.json").read_text())
    config["model"]["colour"] = "blue"
    (artifact / "config.json").write_text(json.dumps(config))
    with pytest.raises(CRSError, match="model entry is damaged"):
        load_state_dict(artifact, tiny)


def test_the_config_records_the_best_epochs_metrics_and_every_epoch_run(
    tmp_path: Path, trained: PretrainResult
) -> None:
    """Guards against config.json's validation metrics taken from another epoch than the kept one, or
    epochs_run counting up to the best epoch only."""
    assert len(trained.history) == 2
    for best in (1, 2):
        result = replace(trained, best_epoch=best)
        config = json.loads((save_artifact(result, tmp_path / str(best)) / "config.json").read_text())
        assert config["best_epoch"] == best and config["epochs_run"] == 2
        assert config["metrics"]["valid"] == asdict(trained.history[best - 1].valid)


def test_a_group_hold_out_is_recorded_as_such(tmp_path: Path, trained: PretrainResult) -> None:
    """Guards against the hold-out unit not recorded: an artifact held out whole groups would be read
    back as single interactions, and its unseen conversations computed on another hold-out."""
    result = replace(trained, data=replace(trained.data, holdout_unit="group", train_split="valid"))
    config = json.loads((save_artifact(result, tmp_path / "art") / "config.json").read_text())
    assert config["split"]["holdout_unit"] == "group" and config["split"]["pretrained_on_valid"] is True


# ------------------------------------------------------------------------------ split
def test_a_user_with_one_interaction_keeps_it_for_training(tiny: Catalog) -> None:
    """Guards against the one-interaction floor of the hold-out reaching users with a single
    interaction: they would keep nothing to learn from. Counts by hand: floor(n * 0.1), at least 1 when
    n >= 2, so 1 -> 0, 2 -> 1, 25 -> 2."""
    users = np.array([0] + [1] * 2 + [2] * 25, dtype=np.int64)
    items = np.concatenate([[5], [3, 4], np.arange(25)]).astype(np.int64)
    catalog = replace_splits(tiny, {"valid": Interactions(users, items), "test": tiny.split("test")})
    data = pretrain_data(catalog, np.random.default_rng(0), holdout_fraction=0.1)
    held = np.bincount(data.valid.users, minlength=3)[:3].tolist()
    assert held == [0, 1, 2]
    assert (0, 5) in _pairs(data.train)
    assert sorted(_pairs(data.train) + _pairs(data.valid)) == _pairs(Interactions(users, items))


def test_the_interaction_hold_out_follows_the_seed(tiny: Catalog) -> None:
    """Guards against a hold-out that ignores its seed (always each user's first interactions): the same
    seed must give the same slice, and across seeds every interaction must be held out some time."""
    from policies.pretrain.graph import pretrain_split

    catalog = _no_train(tiny)
    first = pretrain_split(catalog, 0)
    assert _pairs(first.valid) == _pairs(pretrain_split(catalog, 0).valid)
    ever: set[tuple[int, int]] = set()
    for seed in range(40):
        ever |= set(_pairs(pretrain_split(catalog, seed).valid))
    valid = catalog.split("valid")
    counts = np.bincount(valid.users, minlength=catalog.n_users)
    eligible = {pair for pair in _pairs(valid) if counts[pair[0]] >= 2}
    assert eligible and eligible <= ever


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_a_hold_out_fraction_outside_the_open_interval_is_refused(tiny: Catalog, fraction: float) -> None:
    """Guards against a fraction of 1 accepted: it would hold out every interaction of every user."""
    with pytest.raises(CRSError, match=r"holdout_fraction must lie in \(0, 1\)"):
        pretrain_data(_no_train(tiny), np.random.default_rng(0), holdout_fraction=fraction)


def test_an_empty_pretraining_split_is_refused(tiny: Catalog) -> None:
    """Guards against pre-training started on nothing (an empty train split)."""
    empty = Interactions(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    catalog = replace_splits(tiny, {"train": empty, "valid": tiny.split("valid"), "test": tiny.split("test")})
    with pytest.raises(CRSError, match="pre-training split 'train' is empty"):
        pretrain_data(catalog, np.random.default_rng(0))


# ------------------------------------------------------------------------------ graph helpers
def test_spectral_coordinates_have_the_documented_spread(tiny: Catalog) -> None:
    """Guards against the layer-0 start scaled to another standard deviation than 0.1."""
    graph = build_graph(tiny, tiny.split("train"))
    coords = spectral_embedding(graph, 8, np.random.default_rng(0))
    assert coords.shape == (graph.n_nodes, 8) and coords.dtype == np.float32
    assert float(coords.std()) == pytest.approx(0.1, rel=1e-4)


def test_kmeans_recovers_well_separated_directions() -> None:
    """Guards against k-means assigning points to their farthest centre: three tight bundles of
    directions must come back as three clusters, each bundle whole."""
    rng = np.random.default_rng(0)
    axes = np.eye(3) * 5.0
    truth = np.repeat(np.arange(3), 20)
    points = axes[truth] + 0.05 * rng.standard_normal((60, 3))
    labels = kmeans(points, 3, np.random.default_rng(1))
    pairs = {(int(t), int(label)) for t, label in zip(truth, labels, strict=True)}
    assert len(pairs) == 3 and len({label for _, label in pairs}) == 3


# ------------------------------------------------------------------------------ persona mixture
def test_the_persona_of_a_pair_weighs_the_users_mixture_and_the_items_likelihood() -> None:
    """Guards against `persona_of` reading only the item's likelihood or only the user's mixture.

    Persona 0 picks item 0 with 0.9, persona 1 item 1 with 0.9. User 0 is 0.99 persona 0: for item 1,
    log .99 + log .1 = -2.31 beats log .01 + log .9 = -4.71, so persona 0. User 1 is even: item 1 ->
    persona 1, item 0 -> persona 0.
    """
    mixture = PersonaMixture(
        log_item_probs=np.log(np.array([[0.9, 0.1], [0.1, 0.9]])),
        user_mixture=np.array([[0.99, 0.01], [0.5, 0.5]]),
    )
    got = mixture.persona_of(np.array([0, 1, 1]), np.array([1, 1, 0]))
    assert got.tolist() == [0, 1, 0] and got.dtype == np.int64


def test_a_user_without_interactions_gets_an_even_mixture(tiny: Catalog) -> None:
    """Guards against the mixture's smoothing dropped: a user with no pre-training interaction must get
    the even mixture 1/P (the pseudo-counts alone), not 0/0."""
    torch.set_num_threads(1)
    train = tiny.split("train")
    mixture = fit_persona_mixture(
        tiny.item_aspects, train, tiny.n_users + 1, 3, np.random.default_rng(0), iterations=2
    )
    np.testing.assert_allclose(mixture.user_mixture[tiny.n_users], np.full(3, 1 / 3), atol=1e-6)
    assert np.all(mixture.user_mixture[: tiny.n_users] > 0)


@pytest.mark.slow
@pytest.mark.real_data
def test_a_group_hold_out_follows_its_seed_and_overshoots_a_share_by_one_at_most(real_data_dir: Path) -> None:
    """Guards against the groups visited in file order (every seed holding out the same groups), and
    against a group added to a user whose share is already met (overshooting by more than the one
    interaction a two-target group allows). Share by hand: floor(n * 0.1), at least 1 when n >= 2."""
    from policies.pretrain.graph import pretrain_split
    from simulators.mcmipl import load_release

    if not (real_data_dir / "yelp_star").is_dir():
        data_missing(f"{real_data_dir / 'yelp_star'} not found")
    catalog = load_release("mcmipl_yelp_star", real_data_dir).catalog
    counts = np.bincount(catalog.split("valid").users, minlength=catalog.n_users)
    share = np.floor(counts * 0.1).astype(np.int64)
    share[(counts >= 2) & (share == 0)] = 1
    held = [pretrain_split(catalog, seed, 0.1, "group").valid for seed in (0, 1)]
    assert _pairs(held[0]) != _pairs(held[1])
    for part in held:
        users = np.array([user for user, _ in set(_pairs(part))], dtype=np.int64)
        assert np.all(np.bincount(users, minlength=catalog.n_users) <= share + 1)
