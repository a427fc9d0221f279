"""Pre-training building blocks: graph, splits, metrics, model/ranker agreement, artifacts, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from envs import make_env
from envs.ranker import DialogueFacts, PreferenceRanker
from policies.content_profile import profile_holdout
from policies.pretrain.artifact import (
    EXPORT_FILE,
    WEIGHTS_FILE,
    load_ranker,
    load_state_dict,
    save_artifact,
    unseen_valid_interactions,
)
from policies.pretrain.config import (
    ModelConfig,
    ModelShape,
    TrainConfig,
    read_artifact_config,
    shape_attentions,
)
from policies.pretrain.graph import build_graph, pretrain_data
from policies.pretrain.metrics import RankingMetrics, ScoreFn, rank_metrics
from policies.pretrain.model import PersonaModel
from policies.pretrain.ranker import REJECTED_PENALTY, PersonaRanker
from policies.pretrain.train import pretrain
from policies.rankers import RankerSpec
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.persona_world import make_persona_world

EMPTY = np.zeros(0, dtype=np.int64)


def tiny_world(seed: int = 1) -> Catalog:
    return make_persona_world(
        n_users=40, n_items=90, n_personas=4, personas_per_user=2, interactions_per_user=10, seed=seed
    )


FAST = TrainConfig(dim=16, personas=2, prototypes=4, epochs=2, batch_size=128, negatives=4, seed=3)


@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return tiny_world()


@pytest.fixture(scope="module")
def trained(tiny: Catalog):
    return pretrain(tiny, FAST)


def test_graph_uses_only_pretrain_interactions(tiny: Catalog) -> None:
    data = pretrain_data(tiny, np.random.default_rng(0))
    graph = build_graph(tiny, data.train)
    U, I = tiny.n_users, tiny.n_items
    n_ui = data.train.by_user(U, I).nnz
    n_ia = tiny.item_aspects.nnz
    # Each user-item pair and item-aspect pair appears once per direction.
    assert graph.edge_index.shape == (2, 2 * n_ui + 2 * n_ia)
    assert np.bincount(graph.edge_type, minlength=4).tolist() == [n_ui, n_ui, n_ia, n_ia]
    ui = graph.edge_index[:, graph.edge_type == 0]
    pairs = set(zip(ui[0].tolist(), (ui[1] - U).tolist(), strict=True))
    test = tiny.split("test")
    test_only = set(zip(test.users.tolist(), test.items.tolist(), strict=True)) - set(
        zip(data.train.users.tolist(), data.train.items.tolist(), strict=True)
    )
    assert test_only and not (pairs & test_only)
    assert data.train_split == "train" and data.valid_source == "valid"


def test_pretrain_data_holds_out_a_slice_when_there_is_no_train_split(tiny: Catalog) -> None:
    valid = tiny.split("valid")
    no_train = replace_splits(tiny, {"valid": valid, "test": tiny.split("test")})
    data = pretrain_data(no_train, np.random.default_rng(0), holdout_fraction=0.5)
    assert data.train_split == "valid" and data.valid_source == "holdout of valid"
    assert len(data.train) + len(data.valid) == len(valid)
    # Every user with >= 2 valid interactions keeps at least one and holds out floor(n/2) >= 1.
    counts = np.bincount(valid.users, minlength=tiny.n_users)
    held = np.bincount(data.valid.users, minlength=tiny.n_users)
    assert np.array_equal(held[counts >= 2], np.maximum(counts[counts >= 2] // 2, 1))


def test_a_group_hold_out_needs_a_release_and_a_split_to_hold_out_of(tiny: Catalog) -> None:
    with pytest.raises(CRSError, match="nothing is held out"):
        pretrain_data(tiny, np.random.default_rng(0), holdout_unit="group")
    no_train = replace_splits(tiny, {"valid": tiny.split("valid"), "test": tiny.split("test")})
    with pytest.raises(CRSError, match="no MCMIPL target groups"):
        pretrain_data(no_train, np.random.default_rng(0), holdout_unit="group")
    with pytest.raises(CRSError, match="interaction, group"):
        pretrain_data(no_train, np.random.default_rng(0), holdout_unit="user")
    with pytest.raises(CRSError, match="holdout_unit"):
        TrainConfig(holdout_unit="pairs")


def replace_splits(catalog: Catalog, splits: dict[str, Interactions]) -> Catalog:
    return Catalog(
        name=catalog.name,
        item_aspects=catalog.item_aspects,
        item_names=catalog.item_names,
        aspect_names=catalog.aspect_names,
        n_users=catalog.n_users,
        splits=splits,
    )


def test_rank_metrics_match_hand_computation() -> None:
    # 2 users, 5 items. User 0: train item 0 (excluded), test items {1, 3}. User 1: test item {4}.
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool))
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=bool))
    scores = np.array([[9.0, 5.0, 4.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    m = rank_metrics(lambda b: scores[b], exclude, truth, np.array([0, 1]), k=2)
    # User 0 top-2 after excluding item 0: [1, 2] -> 1 hit of 2: recall 1/2, DCG 1/log2(2) = 1,
    # IDCG = 1 + 1/log2(3). User 1 top-2: [4, 3] -> recall 1, NDCG 1.
    idcg = 1.0 + 1.0 / np.log2(3.0)
    assert m.recall == pytest.approx((0.5 + 1.0) / 2)
    assert m.ndcg == pytest.approx((1.0 / idcg + 1.0) / 2)
    assert m.n_users == 2


def test_attention_is_normalised_over_each_nodes_neighbours(tiny: Catalog) -> None:
    data = pretrain_data(tiny, np.random.default_rng(0))
    graph = build_graph(tiny, data.train)
    ia = tiny.item_aspects
    model = PersonaModel(
        ModelConfig(n_users=tiny.n_users, n_items=tiny.n_items, n_aspects=tiny.n_aspects, dim=8),
        graph,
        (ia.indptr, ia.indices),
        torch.Generator().manual_seed(0),
    )
    layer = model.layers[0]
    with torch.no_grad():
        w = layer.attention(model.node_emb, model.edge_index, model.edge_type)
    sums = np.bincount(graph.edge_index[1], weights=w.numpy().astype(np.float64), minlength=graph.n_nodes)
    has_in = np.bincount(graph.edge_index[1], minlength=graph.n_nodes) > 0
    np.testing.assert_allclose(sums[has_in], 1.0, rtol=1e-5)


def test_numpy_ranker_reproduces_the_torch_scores(tiny: Catalog, trained) -> None:
    data = pretrain_data(tiny, np.random.default_rng(FAST.seed))
    graph = build_graph(tiny, data.train)
    ia = tiny.item_aspects
    model = PersonaModel(trained.model_config, graph, (ia.indptr, ia.indices), torch.Generator())
    model.load_state_dict(trained.state_dict)
    users = torch.arange(5)
    items = torch.arange(tiny.n_items).repeat(5, 1)
    with torch.no_grad():
        expected = model.score_pairs(model.represent(), users, items).scores.numpy()
    ranker = trained.ranker(tiny)
    np.testing.assert_allclose(ranker.full_scores(np.arange(5)), expected, rtol=1e-4, atol=1e-4)
    facts = DialogueFacts(2, EMPTY, EMPTY, EMPTY)
    np.testing.assert_allclose(
        ranker.item_scores(facts, np.arange(10)), expected[2, :10], rtol=1e-4, atol=1e-4
    )


def test_ranker_conditions_on_dialogue_facts(tiny: Catalog, trained) -> None:
    ranker = trained.ranker(tiny)
    assert isinstance(ranker, PreferenceRanker)
    user, K = 0, ranker.personas_per_user
    prior = ranker.persona_posterior(DialogueFacts(user, EMPTY, EMPTY, EMPTY))
    np.testing.assert_allclose(prior.sum(), 1.0)
    np.testing.assert_allclose(prior, np.exp(ranker.log_prior[user]), rtol=1e-6)
    # Accepting persona 0's signature aspects raises its posterior weight; rejecting them lowers it.
    sig = ranker.signature_aspects(user, 0, 3)
    assert sig.shape == (3,) and len(set(sig.tolist())) == 3
    up = ranker.persona_posterior(DialogueFacts(user, sig, EMPTY, EMPTY))
    down = ranker.persona_posterior(DialogueFacts(user, EMPTY, sig, EMPTY))
    assert up[0] > prior[0] > down[0]
    assert up.shape == (K,)
    # A rejected item drops by the penalty: below every other item.
    items = np.arange(20)
    base = ranker.item_scores(DialogueFacts(user, EMPTY, EMPTY, EMPTY), items)
    rejected = ranker.item_scores(DialogueFacts(user, EMPTY, EMPTY, np.array([7])), items)
    assert rejected[7] == pytest.approx(base[7] - REJECTED_PENALTY)
    assert np.argmin(rejected) == 7
    # Explanations name one of the item's own aspects and one of the user's personas.
    for item, (k, a) in zip(
        items.tolist(), ranker.explain(DialogueFacts(user, EMPTY, EMPTY, EMPTY), items), strict=True
    ):
        assert 0 <= k < K
        assert a in tiny.aspects_of(item)
    assert ranker.aspect_scores(DialogueFacts(user, sig, EMPTY, EMPTY), np.arange(5)).shape == (5,)


def test_same_seed_same_weights(tiny: Catalog, trained) -> None:
    again = pretrain(tiny, FAST)
    for key, value in trained.state_dict.items():
        assert torch.equal(value, again.state_dict[key]), key
    other = pretrain(tiny, replace(FAST, seed=FAST.seed + 1))
    assert not torch.equal(trained.state_dict["node_emb"], other.state_dict["node_emb"])
    # the weights only torch draws (the propagation layers; the data start sets the rest) follow the
    # seed too: they start apart by far more than two epochs move them
    for key in ("layers.0.W", "layers.0.rel"):
        assert (trained.state_dict[key] - other.state_dict[key]).abs().max() > 0.05, key


def test_artifact_round_trip(tmp_path: Path, tiny: Catalog, trained) -> None:
    path = save_artifact(trained, tmp_path / "art")
    config = json.loads((path / "config.json").read_text())
    assert config["dataset"] == "persona_world"
    assert (config["n_users"], config["n_items"], config["n_aspects"]) == (40, 90, tiny.n_aspects)
    assert config["model"]["personas"] == 2 and config["seed"] == FAST.seed
    assert config["split"]["train"] == "train" and not config["split"]["pretrained_on_valid"]
    state = torch.load(path / "weights.pt", weights_only=True)
    assert set(state) == set(trained.state_dict)
    loaded = load_ranker(path, tiny)
    users = np.arange(tiny.n_users)
    np.testing.assert_allclose(loaded.full_scores(users), trained.ranker(tiny).full_scores(users), rtol=1e-6)
    model_config, state_dict = load_state_dict(path, tiny)
    assert model_config == trained.model_config and torch.equal(state_dict["prototypes"], state["prototypes"])


def test_rl_on_valid_avoids_what_a_ranker_pretrained_on_valid_was_fitted_to(
    tmp_path: Path, tiny: Catalog, trained
) -> None:
    from crs.app.training import _training_goals

    # pre-trained on train: every valid interaction is unseen
    on_train = save_artifact(trained, tmp_path / "on-train")
    assert unseen_valid_interactions(on_train, tiny) is None
    assert _training_goals(f"artifact:{on_train}", tmp_path, tiny)[0] is None
    # no train split (Yelp*): pre-training learns from valid minus a seeded hold-out
    no_train = replace_splits(tiny, {"valid": tiny.split("valid"), "test": tiny.split("test")})
    result = pretrain(no_train, replace(FAST, epochs=1))
    on_valid = save_artifact(result, tmp_path / "on-valid")
    held = unseen_valid_interactions(on_valid, no_train)
    assert held is not None and 0 < len(held) < len(no_train.split("valid"))
    np.testing.assert_array_equal(held.users, result.data.valid.users)  # exactly what training held out
    np.testing.assert_array_equal(held.items, result.data.valid.items)
    goals, note = _training_goals(f"artifact:{on_valid}", tmp_path, no_train)
    np.testing.assert_array_equal(goals.items, held.items)
    assert f"{len(held):,} interactions" in note
    # tag profiles hold what the artifact learned from and never its hold-out, the profile's too
    profile = RankerSpec.parse(f"{on_valid}+profile").build(no_train).profile  # type: ignore[attr-defined]
    kept = result.data.train.by_user(no_train.n_users, no_train.n_items)
    kept.data[:] = 1.0
    rows = (kept @ profile.items.T).toarray()
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    expected = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    np.testing.assert_allclose(profile.users.toarray(), expected, atol=1e-12)
    # ... and so does the popularity prior: it counts what the artifact learned from
    facts = DialogueFacts(
        user=0,
        accepted=np.array([], dtype=np.int64),
        rejected=np.array([], dtype=np.int64),
        rejected_items=np.array([], dtype=np.int64),
    )
    items = np.arange(no_train.n_items)
    with_prior = RankerSpec.parse(f"{on_valid}+pop:1").build(no_train).item_scores(facts, items)
    without = RankerSpec.parse(str(on_valid)).build(no_train).item_scores(facts, items)
    counts = np.bincount(result.data.train.items, minlength=no_train.n_items)
    np.testing.assert_allclose(with_prior - without, np.log1p(counts), atol=1e-9)
    default_holdout = profile_holdout(no_train)  # `crs pretrain`'s default seed: another slice
    assert default_holdout is not None and 0 < len(default_holdout) < len(no_train.split("valid"))
    uniform_goals, _ = _training_goals("uniform+profile", tmp_path, no_train)
    np.testing.assert_array_equal(uniform_goals.items, default_holdout.items)
    pop_goals, _ = _training_goals("uniform+pop", tmp_path, no_train)  # counts valid: its hold-out too
    np.testing.assert_array_equal(pop_goals.items, default_holdout.items)
    assert _training_goals("uniform+split", tmp_path, no_train)[0] is None  # no profile: all of valid
    # the plain popularity ranker counts all of valid: nothing is unseen, and the run's record says so
    popularity_goals, popularity_note = _training_goals("popularity", tmp_path, no_train)
    assert popularity_goals is None and "popularity ranker counts" in popularity_note
    assert _training_goals("popularity", tmp_path, tiny) == (None, "valid")  # it counts train there
    assert _training_goals("uniform+profile", tmp_path, tiny)[0] is None  # a train split: all unseen
    # the training env converses only about held-out interactions
    env = make_env(catalog=no_train, split="valid", user="single", goal_interactions=goals)
    assert env.goals.n_goals == len(held)
    pairs = set(zip(held.users.tolist(), held.items.tolist(), strict=True))
    for seed in range(20):
        env.reset(seed=seed)
        assert (env.state.user, int(env.user.targets[0])) in pairs


def test_mismatched_or_corrupt_artifact_is_refused(tmp_path: Path, tiny: Catalog, trained) -> None:
    path = save_artifact(trained, tmp_path / "art")
    bigger = make_persona_world(
        n_users=41, n_items=90, n_personas=4, personas_per_user=2, interactions_per_user=10, seed=1
    )
    with pytest.raises(CRSError, match="n_users=40"):
        load_ranker(path, bigger)
    with pytest.raises(CRSError, match="different 'persona_world' catalogue"):
        load_ranker(path, tiny_world(seed=2))
    renamed = replace_splits(tiny, dict(tiny.splits))
    object.__setattr__(renamed, "name", "lastfm_star")
    with pytest.raises(CRSError, match="trained on dataset 'persona_world', not 'lastfm_star'"):
        load_ranker(path, renamed)
    (path / EXPORT_FILE).write_bytes(b"not a torch file")
    with pytest.raises(CRSError, match="corrupt"):
        load_ranker(path, tiny)
    (path / "config.json").write_text("{")
    with pytest.raises(CRSError, match="corrupt"):
        load_ranker(path, tiny)
    with pytest.raises(CRSError, match=r"config\.json is missing"):
        load_ranker(tmp_path / "nowhere", tiny)


def test_k_must_not_exceed_prototypes(tiny: Catalog) -> None:
    with pytest.raises(CRSError, match="prototypes"):
        TrainConfig(personas=5, prototypes=3).model_config(tiny)
    with pytest.raises(CRSError, match="aspect_mode"):
        TrainConfig(aspect_mode="sometimes").model_config(tiny)
    with pytest.raises(CRSError, match="persona_init must be one of"):
        TrainConfig(persona_init="spectral")


def test_ablations_train_and_rank(tiny: Catalog) -> None:
    for cfg in (replace(FAST, personas=1, epochs=1), replace(FAST, aspect_mode="uniform", epochs=1)):
        result = pretrain(tiny, cfg)
        ranker = result.ranker(tiny)
        assert ranker.personas_per_user == cfg.personas
        assert np.isfinite(ranker.full_scores(np.arange(3))).all()


def test_ranker_rejects_bad_weights(tiny: Catalog, trained) -> None:
    weights = dict(trained.weights)
    del weights["aspect"]
    with pytest.raises(CRSError, match="lack"):
        PersonaRanker(weights, tiny.item_aspects)


def test_shared_persona_adds_one_item_term_for_everyone(tiny: Catalog, trained) -> None:
    weights = dict(trained.weights)
    assert weights["shared"].shape == (FAST.dim,) and np.any(weights["shared"] != 0)
    users = np.arange(tiny.n_users)
    zero = PersonaRanker({**weights, "shared": np.zeros(FAST.dim)}, tiny.item_aspects)
    # Artifacts written before the shared persona existed lack the key: they score as c₀ = 0.
    older = PersonaRanker({k: v for k, v in weights.items() if k != "shared"}, tiny.item_aspects)
    np.testing.assert_allclose(older.full_scores(users), zero.full_scores(users))
    # c₀ sits outside the persona softmax, so it adds the same ⟨c₀, e_v + h₀(v)⟩ to every user's row.
    diff = trained.ranker(tiny).full_scores(users) - zero.full_scores(users)
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=1e-9)
    assert np.ptp(diff[0]) > 0


def test_aspect_score_is_the_log_mass_of_consistent_items_holding_it(tiny: Catalog, trained) -> None:
    ranker = trained.ranker(tiny)
    ia = tiny.item_aspects.toarray().astype(bool)  # (I, A)
    accepted = np.array([int(np.argmax(ia.sum(axis=0)))])  # the most common aspect
    facts = DialogueFacts(3, accepted, EMPTY, np.array([int(np.flatnonzero(ia[:, accepted[0]])[0])]))
    # Consistent items: hold the accepted aspect and are not the rejected item.
    items = np.flatnonzero(ia[:, accepted[0]])[1:]
    np.testing.assert_array_equal(ranker.consistent_items(facts), items)
    s = ranker.item_scores(facts, items)
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    aspects = np.arange(tiny.n_aspects)
    mass = ia[items].T.astype(float) @ p
    scores = ranker.aspect_scores(facts, aspects)
    held = mass > 0
    # log(mass) up to the 1e-6 x affinity tie-breaker.
    np.testing.assert_allclose(scores[held], np.log(mass[held]), atol=1e-3)
    # Every consistent item holds the accepted aspect: mass 1, log 0.
    assert abs(scores[accepted[0]]) < 1e-3
    assert np.all(scores[~held] < scores[held].min())


def test_items_holding_a_rejected_aspect_pay_the_penalty_per_aspect(
    tiny: Catalog, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    import policies.pretrain.ranker as ranker_module

    ia = tiny.item_aspects.toarray().astype(bool)
    rejected = np.argsort(-ia.sum(axis=0))[:2]  # the two most common aspects
    facts = DialogueFacts(1, EMPTY, rejected, EMPTY)
    items = np.arange(tiny.n_items)
    with_penalty = trained.ranker(tiny).item_scores(facts, items)
    monkeypatch.setattr(ranker_module, "REJECTED_ASPECT_PENALTY", 0.0)
    without = trained.ranker(tiny).item_scores(facts, items)
    # Each rejected aspect an item holds costs 5: items holding 0, 1 or 2 of them drop by 0, 5 or 10.
    held = ia[:, rejected].sum(axis=1)
    assert set(held.tolist()) >= {0, 1}
    np.testing.assert_allclose(without - with_penalty, 5.0 * held, atol=1e-9)


def test_auto_persona_init_is_kmeans_on_the_world_and_random_on_real_data(tiny: Catalog, trained) -> None:
    # replace_splits drops the ground truth, as a real dataset has none
    without_truth = replace_splits(tiny, dict(tiny.splits))
    assert FAST.persona_init == "auto"
    assert trained.train_config.persona_init == "kmeans"
    assert pretrain(without_truth, replace(FAST, epochs=1)).train_config.persona_init == "random"


def test_warm_negatives_come_only_from_items_seen_in_training(tiny: Catalog) -> None:
    from policies.pretrain.train import negative_candidates

    train_items = np.array([5, 2, 5, 9])
    np.testing.assert_array_equal(negative_candidates("warm", train_items, 12), [2, 5, 9])
    np.testing.assert_array_equal(negative_candidates("all", train_items, 12), np.arange(12))
    with pytest.raises(CRSError, match="negative_pool"):
        TrainConfig(negative_pool="cold")
    # a short run with warm negatives trains and ranks like any other
    result = pretrain(tiny, TrainConfig(dim=8, epochs=1, negative_pool="warm", seed=0))
    assert np.isfinite(result.ranker(tiny).full_scores(np.arange(3))).all()


@pytest.mark.parametrize(
    "change",
    [
        {"lr": float("nan")},
        {"lr": float("inf")},
        {"lr": 0.0},
        {"entropy_weight": -1.0},
        {"l2": float("nan")},
        {"holdout_fraction": 1.0},
        {"epochs": 0},
    ],
)
def test_non_finite_or_out_of_range_pretraining_settings_are_refused(change) -> None:
    with pytest.raises(CRSError, match=next(iter(change))):
        replace(FAST, **change)


@pytest.mark.parametrize(
    "change",
    [
        {"personas": 0},
        {"prototypes": 0},
        {"dim": 0},
        {"layers": -1},
        {"patience": 0},
        {"batch_size": 0},
        {"seed": -1},
        {"negatives": -1},
        {"holdout_fraction": 0.0},
        {"prototype_scale": 0.0},
        {"holdout_unit": "user"},
        {"negative_pool": "cold"},
    ],
)
def test_every_setting_outside_its_range_is_refused_when_made(change: dict[str, Any]) -> None:
    """Guards against a range check lost or off by one (personas 0, dim 0, patience 0, a negative
    seed, an empty hold-out...), which would fail only deep in pre-training, or never."""
    with pytest.raises(CRSError, match=next(iter(change))):
        replace(FAST, **change)


def test_the_boundary_settings_that_mean_something_are_accepted(tiny: Catalog) -> None:
    """Guards against range checks one step too strict: 0 layers (plain embeddings), 0 negatives or
    loss weights, seed 0 and one persona with one prototype are all valid settings."""
    replace(FAST, layers=0, negatives=0, seed=0, l2=0.0, entropy_weight=0.0, personas=1, prototypes=1)
    ModelShape(personas=3, prototypes=3)
    # one persona per user: the model has one prototype whatever --prototypes says
    assert replace(FAST, personas=1, prototypes=8).model_config(tiny).prototypes == 1
    assert replace(FAST, personas=2, prototypes=8).model_config(tiny).prototypes == 8


def _write_config(path: Path, config: object) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


GOOD_CONFIG = {
    "kind": "persona_pretrain",
    "artifact_version": 1,
    "model": {"dim": 8, "personas": 2, "aspect_mode": "uniform"},
    "split": {"name": "train"},
    "seed": 0,
}


@pytest.mark.parametrize(
    "damage",
    [
        "no seed",
        "seed as text",
        "no aspect_mode",
        "no personas",
        "split not a mapping",
        "another kind",
        "a list",
    ],
)
def test_an_artifact_config_missing_what_identifies_the_ranker_is_refused(
    tmp_path: Path, damage: str
) -> None:
    """Guards against a config.json accepted without the model's shape, its split or its seed (what a
    ranker's identity and hold-out are read from), or of another kind of artifact."""
    assert read_artifact_config(_write_config(tmp_path / "good", GOOD_CONFIG)) == GOOD_CONFIG
    config: Any = json.loads(json.dumps(GOOD_CONFIG))
    if damage == "no seed":
        del config["seed"]
    elif damage == "seed as text":
        config["seed"] = "0"
    elif damage == "no aspect_mode":
        del config["model"]["aspect_mode"]
    elif damage == "no personas":
        del config["model"]["personas"]
    elif damage == "split not a mapping":
        config["split"] = "train"
    elif damage == "another kind":
        config["kind"] = "rl_run"
    else:
        config = [config]
    with pytest.raises(CRSError, match="config"):
        read_artifact_config(_write_config(tmp_path / "bad", config))


def test_a_file_named_as_an_artifact_is_told_to_name_the_folder(tmp_path: Path) -> None:
    """A file given where an artifact folder goes is named as a file (not "config.json is missing", which
    sent the user looking for a config.json beside it)."""
    (tmp_path / "model.pt").write_text("x")
    with pytest.raises(CRSError, match=r"model\.pt is a file, not a pre-training artifact: name the folder"):
        read_artifact_config(tmp_path / "model.pt")
    with pytest.raises(CRSError, match=r"config\.json is missing"):
        read_artifact_config(tmp_path)


def test_a_config_nested_too_deep_is_a_named_error(tmp_path: Path) -> None:
    """Guards against a hostile config.json crashing with RecursionError instead of a CRSError."""
    tmp_path.joinpath("config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CRSError, match="corrupt"):
        read_artifact_config(tmp_path)


def test_the_ablation_flags_read_from_a_recorded_shape() -> None:
    """Guards against one persona counted as persona attention: only K > 1 has it."""
    assert shape_attentions({"personas": 1, "aspect_mode": "attention"}) == (False, True)
    assert shape_attentions({"personas": 2, "aspect_mode": "uniform"}) == (True, False)
    assert shape_attentions({"personas": 4, "aspect_mode": "none"}) == (True, False)


def test_pretraining_that_diverges_stops_with_a_named_error(tiny: Catalog) -> None:
    # a finite but absurd learning rate makes the loss non-finite within the first epochs
    with pytest.raises(CRSError, match="diverged"):
        pretrain(tiny, replace(FAST, lr=1e30, epochs=5))


def _forget_digests(path: Path) -> None:
    """Drop the file digests from an artifact's config.json (as artifacts written before them), so a
    damaged file reaches the checks behind the digest's."""
    config = json.loads((path / "config.json").read_text())
    del config["sha256"]
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("attack", ["nan", "keyless config", "truncated", "truncated, digest kept"])
def test_a_damaged_artifact_is_refused_with_a_named_error(tiny: Catalog, trained, tmp_path, attack) -> None:
    path = save_artifact(trained, tmp_path / "art")
    if attack != "truncated, digest kept":
        _forget_digests(path)
    if attack == "nan":
        tensors = torch.load(path / EXPORT_FILE, weights_only=True)
        tensors["item"][0, 0] = float("nan")
        torch.save(tensors, path / EXPORT_FILE)
        match = "NaN or inf"
    elif attack == "keyless config":
        config = json.loads((path / "config.json").read_text())
        del config["model"]["dim"]
        (path / "config.json").write_text(json.dumps(config))
        match = "lacks"
    else:
        data = (path / EXPORT_FILE).read_bytes()
        (path / EXPORT_FILE).write_bytes(data[: len(data) // 2])
        match = "corrupt" if attack == "truncated" else "its sha256 differs"
    with pytest.raises(CRSError, match=match):
        load_ranker(path, tiny)


class _Payload:
    """Unpickling this runs `os.system("touch <marker>")`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("file", [EXPORT_FILE, WEIGHTS_FILE])
def test_an_artifact_file_holding_a_pickled_payload_never_runs_it(
    tiny: Catalog, trained, tmp_path, file
) -> None:
    path = save_artifact(trained, tmp_path / "art")
    _forget_digests(path)  # the unpickler's own guard, not the digest's
    marker = tmp_path / "pwned"
    tensors = torch.load(path / file, weights_only=True)
    torch.save({**tensors, "payload": _Payload(marker)}, path / file)
    load = load_ranker if file == EXPORT_FILE else load_state_dict
    with pytest.raises(CRSError, match=f"{file} refused: it references posix.system"):
        load(path, tiny)
    assert not marker.exists()


def test_the_per_dialogue_score_cache_serves_what_recomputing_gives(tiny: Catalog, trained) -> None:
    import copy

    cached = trained.ranker(tiny)
    uncached = PersonaRanker(dict(trained.weights), tiny.item_aspects, facts_cache_size=0)
    rng = np.random.default_rng(0)
    facts = [
        DialogueFacts(
            int(rng.integers(tiny.n_users)),
            rng.choice(tiny.n_aspects, int(rng.integers(0, 3)), replace=False),
            rng.choice(tiny.n_aspects, int(rng.integers(0, 4)), replace=False),
            rng.choice(tiny.n_items, int(rng.integers(0, 3)), replace=False),
        )
        for _ in range(10)
    ]
    for fact in [*facts, *facts[::-1], *facts]:  # repeats are served from the cache
        items = rng.choice(tiny.n_items, 30, replace=False)
        aspects = rng.choice(tiny.n_aspects, 12, replace=False)
        got = cached.item_scores(fact, items)
        np.testing.assert_array_equal(got, uncached.item_scores(fact, items))
        np.testing.assert_array_equal(
            cached.aspect_scores(fact, aspects), uncached.aspect_scores(fact, aspects)
        )
        got += 1.0  # the caller's copy, not the cache
        np.testing.assert_array_equal(cached.item_scores(fact, items), uncached.item_scores(fact, items))
    # A persona memory's view (a shallow copy with its own prior row) never gets the base ranker's scores.
    fact = facts[0]
    view = copy.copy(cached)
    view.log_prior = cached.log_prior.copy()
    view.log_prior[fact.user] = np.log(np.full(FAST.personas, 1e-3) + np.eye(FAST.personas)[0])
    items = np.arange(tiny.n_items)
    assert not np.array_equal(view.item_scores(fact, items), cached.item_scores(fact, items))
    np.testing.assert_array_equal(cached.item_scores(fact, items), uncached.item_scores(fact, items))


def _label_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of labels right under the best one-to-one naming of clusters by true personas."""
    table = np.zeros((int(labels.max()) + 1, int(truth.max()) + 1))
    np.add.at(table, (labels, truth), 1.0)
    rows, columns = linear_sum_assignment(-table)
    return float(table[rows, columns].sum() / labels.size)


def test_the_em_mixture_recovers_the_worlds_personas_better_than_kmeans() -> None:
    from policies.pretrain.graph import kmeans, spectral_embedding
    from policies.pretrain.mixture import fit_persona_mixture

    torch.set_num_threads(1)
    world = make_persona_world(
        n_users=120, n_items=300, n_personas=4, personas_per_user=2, interactions_per_user=20, seed=3
    )
    train = world.split("train")
    assert train.personas is not None
    mixture = fit_persona_mixture(world.item_aspects, train, world.n_users, 4, np.random.default_rng(0), 50)
    again = fit_persona_mixture(world.item_aspects, train, world.n_users, 4, np.random.default_rng(0), 50)
    np.testing.assert_array_equal(mixture.log_item_probs, again.log_item_probs)  # same seed, same fit
    np.testing.assert_allclose(np.exp(mixture.log_item_probs).sum(axis=1), 1.0, atol=1e-5)  # float32 fit
    np.testing.assert_allclose(mixture.user_mixture.sum(axis=1), 1.0, atol=1e-9)
    rng = np.random.default_rng(0)
    points = spectral_embedding(build_graph(world, train), 16, rng)[world.n_users + train.items]
    by_kmeans = _label_accuracy(kmeans(points.astype(np.float64), 4, rng), train.personas)
    by_mixture = _label_accuracy(mixture.persona_of(train.users, train.items), train.personas)
    assert by_mixture >= 0.85  # measured 0.88; k-means 0.75
    assert by_mixture > by_kmeans + 0.05


def test_a_mixture_start_trains_and_needs_the_item_aspects(tiny: Catalog) -> None:
    from policies.pretrain.train import initialise_from_data

    result = pretrain(tiny, replace(FAST, persona_init="mixture", epochs=1))
    assert result.train_config.persona_init == "mixture"
    assert np.isfinite(result.history[0].loss)
    data = pretrain_data(tiny, np.random.default_rng(0))
    graph = build_graph(tiny, data.train)
    aspects = (tiny.item_aspects.indptr, tiny.item_aspects.indices)
    model = PersonaModel(FAST.model_config(tiny), graph, aspects, torch.Generator())
    with pytest.raises(CRSError, match="needs the catalogue's item_aspects"):
        initialise_from_data(model, graph, data, np.random.default_rng(0), "mixture")


def test_a_propagation_layer_leaves_no_generated_file_in_the_temporary_folder(tmp_path: Path) -> None:
    """PyG renders each layer class's ``propagate`` into a file of the temporary folder; it is removed
    once imported (a pre-training left one 8 KB file behind per process)."""
    script = (
        "from policies.pretrain.model import AttentivePropagation\n"
        "import torch\n"
        "layer = AttentivePropagation(4, 4, [(0, 3)])\n"
        "AttentivePropagation(4, 4, [(0, 3)])\n"
        "print(layer.propagate.__module__)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("_propagate")  # PyG's rendered propagate is in use
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ graph, metrics, model
def test_each_relation_runs_in_its_documented_direction_and_every_edge_has_its_inverse(tiny: Catalog) -> None:
    data = pretrain_data(tiny, np.random.default_rng(0))
    graph = build_graph(tiny, data.train)
    U, I = tiny.n_users, tiny.n_items
    src, dst = graph.edge_index
    kind = np.select([src < U, src < U + I], ["user", "item"], "aspect")
    target = np.select([dst < U, dst < U + I], ["user", "item"], "aspect")
    expected = [("user", "item"), ("item", "user"), ("aspect", "item"), ("item", "aspect")]
    for relation, (source_kind, target_kind) in enumerate(expected):
        edges = graph.edge_type == relation
        assert edges.any() and set(kind[edges]) == {source_kind} and set(target[edges]) == {target_kind}
    # relation 0 holds each training pair once, relation 2 each item-aspect pair (aspect -> item)
    ui = graph.edge_index[:, graph.edge_type == 0]
    train = data.train.by_user(U, I).tocoo()
    assert sorted(zip(ui[0].tolist(), (ui[1] - U).tolist(), strict=True)) == sorted(
        zip(train.row.tolist(), train.col.tolist(), strict=True)
    )
    ai = graph.edge_index[:, graph.edge_type == 2]
    ia = tiny.item_aspects.tocoo()
    assert sorted(zip((ai[1] - U).tolist(), (ai[0] - U - I).tolist(), strict=True)) == sorted(
        zip(ia.row.tolist(), ia.col.tolist(), strict=True)
    )
    # relations 1 and 3 are the inverses of 0 and 2: every edge has its reverse, of the paired relation
    edges = set(zip(src.tolist(), dst.tolist(), graph.edge_type.tolist(), strict=True))
    assert len(edges) == src.size
    assert {(d, s, r ^ 1) for s, d, r in edges} == edges


def test_recall_divides_by_every_held_out_item_and_ndcg_by_at_most_k() -> None:
    # k = 2. User 0 holds out items {0, 1, 2} and ranks item 0 first, then item 4: 1 hit of 3.
    truth = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=bool))
    exclude = sp.csr_matrix((3, 5), dtype=bool)
    scores = np.array([[5.0, 0.0, 0.0, 1.0, 4.0], [0.0] * 5, [0.0, 1.0, 2.0, 3.0, 4.0]])
    m = rank_metrics(lambda b: scores[b], exclude, truth, np.array([0, 2]), k=2)
    # recall 1/3 (not 1/min(3, 2)); NDCG: DCG 1 over the IDCG of min(3, 2) = 2 hits
    assert m.recall == pytest.approx((1 / 3 + 1.0) / 2)
    assert m.ndcg == pytest.approx((1.0 / (1.0 + 1.0 / np.log2(3.0)) + 1.0) / 2)


def test_only_users_with_held_out_items_are_evaluated() -> None:
    from policies.pretrain.metrics import evaluation_users

    truth = sp.csr_matrix(np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=bool))
    np.testing.assert_array_equal(evaluation_users(truth, None, None), [1, 3])
    sampled = evaluation_users(truth, 1, np.random.default_rng(0))
    assert sampled.size == 1 and sampled[0] in (1, 3)


def test_a_users_own_training_items_are_excluded_wherever_the_user_sits_in_the_batch() -> None:
    # user 0 trained on item 4, user 1 on item 0; only user 1 is evaluated, and its held-out item is 4
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=bool))
    truth = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=bool))
    scores = np.array([[0.0] * 5, [9.0, 1.0, 2.0, 3.0, 4.0]])
    m = rank_metrics(lambda b: scores[b], exclude, truth, np.array([1]), k=1)
    assert (m.recall, m.ndcg, m.n_users) == (1.0, 1.0, 1)


def test_the_uniform_aspect_ablation_weighs_an_items_aspects_equally(tiny: Catalog) -> None:
    data = pretrain_data(tiny, np.random.default_rng(0))
    graph = build_graph(tiny, data.train)
    ia = tiny.item_aspects
    config = ModelConfig(
        n_users=tiny.n_users, n_items=tiny.n_items, n_aspects=tiny.n_aspects, dim=8, aspect_mode="uniform"
    )
    model = PersonaModel(config, graph, (ia.indptr, ia.indices), torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, config.personas, config.prototypes))
    mixtures = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), -1)
    items = torch.as_tensor(rng.choice(tiny.n_items, size=(2, 6), replace=False))
    aspect_emb = model.node_emb.detach()[tiny.n_users + tiny.n_items :]
    with torch.no_grad():
        term = model.aspect_term(mixtures, items, aspect_emb).numpy()
    # ⟨q_k, h_k(v)⟩ with h_k(v) the plain mean of the item's aspect embeddings
    q = mixtures.numpy() @ model.prototypes.detach().numpy()  # (B, K, d)
    dense = ia.toarray().astype(bool)
    for b in range(2):
        for m, item in enumerate(items[b].tolist()):
            held = np.flatnonzero(dense[item])
            mean = aspect_emb.numpy()[held].mean(axis=0) if held.size else np.zeros(config.dim)
            np.testing.assert_allclose(term[b, m], q[b] @ mean, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ training
def test_pretraining_keeps_the_epoch_of_best_validation_ndcg(
    tiny: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import policies.pretrain.train as train_module

    excluded: list[sp.csr_matrix] = []

    def recording(
        score_fn: ScoreFn, exclude: sp.csr_matrix, truth: sp.csr_matrix, users: np.ndarray, **kwargs: Any
    ) -> RankingMetrics:
        excluded.append(exclude)
        return rank_metrics(score_fn, exclude, truth, users, **kwargs)

    monkeypatch.setattr(train_module, "rank_metrics", recording)
    result = pretrain(tiny, replace(FAST, epochs=5, patience=5))
    ndcgs = [report.valid.ndcg for report in result.history]
    assert len(ndcgs) == 5 and result.best_epoch > 1  # this run improves after its first epoch
    assert result.best_epoch == 1 + int(np.argmax(ndcgs))
    assert [r.best for r in result.history] == [n > max(ndcgs[:i], default=-1.0) for i, n in enumerate(ndcgs)]
    # validation never ranks a user's training items: it excludes exactly the training interactions
    U, I = tiny.n_users, tiny.n_items
    train = result.data.train.by_user(U, I).toarray()
    assert excluded and all(np.array_equal(e.toarray() != 0, train) for e in excluded)
    # the returned weights are that epoch's: they score its validation NDCG again
    truth = result.data.valid.by_user(U, I)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    again = rank_metrics(result.ranker(tiny).full_scores, train, truth, users, k=10)
    assert again.ndcg == pytest.approx(ndcgs[result.best_epoch - 1], abs=1e-6)


def test_the_entropy_terms_reward_sharp_attention_on_positives_and_flat_on_negatives() -> None:
    from policies.pretrain.train import _regularisers

    config = replace(FAST, overlap_weight=0.0, sharpness_weight=0.0, usage_weight=0.0, prototype_weight=0.0)
    sharp, flat = torch.tensor([0.98, 0.02]), torch.tensor([0.5, 0.5])
    mixtures = torch.full((3, 2, 4), 0.25)
    prototypes = torch.eye(4)

    def loss(positive: torch.Tensor, negative: torch.Tensor) -> float:
        alpha = torch.stack([positive, negative, negative]).expand(3, 3, 2)  # (B, 1 + negatives, K)
        return float(_regularisers(alpha, mixtures, prototypes, config))

    assert loss(sharp, flat) < 0.0 < loss(flat, sharp)
    assert loss(sharp, sharp) == pytest.approx(0.0, abs=1e-6)


def test_the_persona_mixture_starts_from_the_callers_generator(tiny: Catalog) -> None:
    from policies.pretrain.mixture import fit_persona_mixture

    torch.set_num_threads(1)
    train = tiny.split("train")

    def fit(seed: int) -> np.ndarray:
        return fit_persona_mixture(
            tiny.item_aspects, train, tiny.n_users, 4, np.random.default_rng(seed), iterations=2
        ).log_item_probs

    np.testing.assert_array_equal(fit(0), fit(0))
    assert not np.allclose(fit(0), fit(1))
