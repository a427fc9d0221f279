"""The persona model, its pre-training loop and the MF/BPR baseline, checked against hand computation:
tests that kill mutants the other pretrain tests let through (an attention direction swapped, an
ablation switch ignored, a layer dropped from the mean, a regulariser's sign, negatives drawn from the
wrong pool, early stopping off by one, ...)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from policies.pretrain.baselines import popularity_scores, train_mf_bpr
from policies.pretrain.config import ModelConfig
from policies.pretrain.graph import PretrainGraph, build_graph, pretrain_data
from policies.pretrain.metrics import rank_metrics
from policies.pretrain.model import PersonaModel
from policies.pretrain.train import catalog_fingerprint, pretrain
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.persona_world import make_persona_world
from tests.policies.test_pretrain import FAST, replace_splits, tiny_world


@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return tiny_world()


@pytest.fixture(scope="module")
def graph(tiny: Catalog) -> PretrainGraph:
    return build_graph(tiny, pretrain_data(tiny, np.random.default_rng(0)).train)


def _model(tiny: Catalog, graph: PretrainGraph, seed: int = 0, **shape: Any) -> PersonaModel:
    """A small model on `tiny` whose offsets and priors are random too (they start at zero)."""
    config = ModelConfig(
        n_users=tiny.n_users,
        n_items=tiny.n_items,
        n_aspects=tiny.n_aspects,
        **{"dim": 6, "personas": 2, "prototypes": 3, "layers": 2, "shared_persona": True, **shape},
    )
    ia = tiny.item_aspects
    generator = torch.Generator().manual_seed(seed)
    model = PersonaModel(config, graph, (ia.indptr, ia.indices), generator)
    with torch.no_grad():
        model.slot_offset.normal_(0.0, 0.1, generator=generator)
        model.prior_logits.normal_(0.0, 1.0, generator=generator)
    return model


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _kgat_weights(x: np.ndarray, W: np.ndarray, rel: np.ndarray, graph: PretrainGraph) -> np.ndarray:
    """π̃ of every edge t -> h: softmax over h's in-edges of (W_r x_t)ᵀ tanh(W_r x_h + e_r), edge by edge."""
    src, dst = graph.edge_index
    logits = np.array(
        [
            (W[r] @ x[t]) @ np.tanh(W[r] @ x[h] + rel[r])
            for t, h, r in zip(src.tolist(), dst.tolist(), graph.edge_type.tolist(), strict=True)
        ]
    )
    weights = np.zeros_like(logits)
    for h in np.unique(dst):
        rows = dst == h
        weights[rows] = _softmax(logits[rows])
    return weights


# ------------------------------------------------------------------------------ propagation
def test_each_edges_attention_follows_the_kgat_formula(tiny: Catalog, graph: PretrainGraph) -> None:
    """Guards against the head and tail swapped in π(h, r, t), another relation's W_r or e_r used, or
    W_r applied to the wrong rows of a relation's node range (the item-aspect relations span items and
    aspects)."""
    model = _model(tiny, graph)
    layer = model.layers[0]
    with torch.no_grad():
        got = layer.attention(model.node_emb, model.edge_index, model.edge_type).numpy()
    expected = _kgat_weights(_np(model.node_emb), _np(layer.W), _np(layer.rel), graph)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_propagation_averages_every_layer_and_splits_users_items_aspects(
    tiny: Catalog, graph: PretrainGraph
) -> None:
    """Guards against the mean over layers 0..L losing a layer (dividing by L, keeping only the last)
    or the aspect block sliced one row off."""
    model = _model(tiny, graph)
    src, dst = graph.edge_index
    x = _np(model.node_emb)
    layers = [x]
    for layer in model.layers:
        w = _kgat_weights(x, _np(layer.W), _np(layer.rel), graph)
        nxt = np.zeros_like(x)
        np.add.at(nxt, dst, w[:, None] * x[src])
        layers.append(nxt)
        x = nxt
    mean = np.mean(layers, axis=0)
    with torch.no_grad():
        reps = model.represent()
    U, I = tiny.n_users, tiny.n_items
    np.testing.assert_allclose(reps.user.numpy(), mean[:U], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(reps.item.numpy(), mean[U : U + I], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(reps.aspect.numpy(), mean[U + I :], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ scoring
def _hand_scores(
    model: PersonaModel, tiny: Catalog, users: list[int], items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """s(u, v) and α_k(v) from the module docstring's formulas, one user and item at a time."""
    with torch.no_grad():
        reps = model.represent()
    g, e, asp = _np(reps.user), _np(reps.item), _np(reps.aspect)
    C = _np(model.prototypes)
    c0 = _np(model.shared) if model.shared is not None else np.zeros(C.shape[1])
    mode = model.config.aspect_mode
    ia = tiny.item_aspects

    def aspect_part(q: np.ndarray, item: int) -> float:
        """⟨q, h(v)⟩ = Σ_a ω_a(v) (q·e_a) under the aspect mode."""
        held = ia.indices[ia.indptr[item] : ia.indptr[item + 1]]
        if mode == "none" or held.size == 0:
            return 0.0
        sims = asp[held] @ q
        omega = _softmax(sims) if mode == "attention" else np.full(held.size, 1.0 / held.size)
        return float(omega @ sims)

    scores, alphas = np.zeros(items.shape), np.zeros((*items.shape, model.config.personas))
    for b, user in enumerate(users):
        mix = np.array([_softmax(row) for row in _np(model.slot_logits[user])])  # (K, P)
        q = mix @ C
        p = q + _np(model.slot_offset[user])
        prior = _np(model.prior_logits[user])
        log_prior = prior - np.log(np.exp(prior).sum())
        for m, item in enumerate(items[b].tolist()):
            per = np.array([p[k] @ e[item] + aspect_part(q[k], item) for k in range(len(p))])
            alpha = _softmax(log_prior + per)
            base = g[user] @ e[item] + c0 @ e[item] + aspect_part(c0, item)
            scores[b, m] = base + alpha @ per
            alphas[b, m] = alpha
    return scores, alphas


@pytest.mark.parametrize(
    "shape",
    [
        {"aspect_mode": "attention"},
        {"aspect_mode": "uniform"},
        {"aspect_mode": "none"},
        {"aspect_mode": "attention", "personas": 1, "prototypes": 1},
        {"aspect_mode": "attention", "shared_persona": False},
    ],
    ids=["attention", "uniform", "none", "one-persona", "no-shared-persona"],
)
def test_scores_and_persona_attention_follow_the_documented_formula(
    tiny: Catalog, graph: PretrainGraph, shape: dict[str, Any]
) -> None:
    """Guards against the persona softmax over the items instead of the personas, the prior or the
    offset dropped, the persona mixtures normalised over personas, aspect attention reversed or an
    item's aspects read at the wrong rows or for the wrong user, the aspect ablations ("uniform": the
    plain mean; "none": no aspect term) ignored, and the shared persona's aspect term lost or halved."""
    model = _model(tiny, graph, **shape)
    users = [0, 7, 31]
    items = np.random.default_rng(1).choice(tiny.n_items, size=(3, 5), replace=False)
    with torch.no_grad():
        out = model.score_pairs(model.represent(), torch.tensor(users), torch.as_tensor(items))
    scores, alphas = _hand_scores(model, tiny, users, items)
    np.testing.assert_allclose(out.scores.numpy(), scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.alpha.numpy(), alphas, rtol=1e-4, atol=1e-5)


def test_export_holds_normalised_mixtures_and_priors_and_the_persona_vectors(
    tiny: Catalog, graph: PretrainGraph
) -> None:
    """Guards against the exported prior left unnormalised (the ranker's persona posterior starts from
    exp(log_prior)) or the exported mixtures being raw logits (`prototype_of`, explanations)."""
    model = _model(tiny, graph)
    out = model.export()
    U, K, P = tiny.n_users, 2, 3
    logits = _np(model.slot_logits)
    mix = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["mixtures"], mix, rtol=1e-5)
    np.testing.assert_allclose(np.exp(out["log_prior"]).sum(-1), np.ones(U), rtol=1e-5)
    prior = _np(model.prior_logits)
    np.testing.assert_allclose(
        np.exp(out["log_prior"]), np.exp(prior) / np.exp(prior).sum(-1, keepdims=True), rtol=1e-5
    )
    expected = mix @ _np(model.prototypes) + _np(model.slot_offset)
    np.testing.assert_allclose(out["personas"], expected, rtol=1e-4, atol=1e-6)
    assert out["personas"].shape == (U, K, 6) and out["mixtures"].shape == (U, K, P)


def test_the_same_generator_seed_gives_the_same_initial_weights(tiny: Catalog, graph: PretrainGraph) -> None:
    """Guards against a weight initialised from torch's global generator instead of the seeded one:
    with random persona starts (real data) two runs of one seed would differ."""
    ia = tiny.item_aspects
    config = ModelConfig(n_users=tiny.n_users, n_items=tiny.n_items, n_aspects=tiny.n_aspects, dim=6)

    def state(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng():  # the global generator differs between the builds
            torch.manual_seed(global_seed)
            model = PersonaModel(config, graph, (ia.indptr, ia.indices), torch.Generator().manual_seed(seed))
        return model.state_dict()

    one, again, other = state(0, 100), state(0, 101), state(1, 100)
    for key, value in one.items():
        assert torch.equal(value, again[key]), key
    for key in ("node_emb", "prototypes", "slot_logits", "layers.0.W"):
        assert not torch.equal(one[key], other[key]), key


def test_a_graph_of_other_sizes_is_refused(tiny: Catalog, graph: PretrainGraph) -> None:
    """Guards against the size check dropped: a graph of another catalogue would index the wrong rows."""
    ia = tiny.item_aspects
    config = ModelConfig(n_users=tiny.n_users + 1, n_items=tiny.n_items, n_aspects=tiny.n_aspects, dim=6)
    with pytest.raises(CRSError, match="graph sizes"):
        PersonaModel(config, graph, (ia.indptr, ia.indices), torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------ loss
NO_TERMS = replace(
    FAST, entropy_weight=0.0, overlap_weight=0.0, sharpness_weight=0.0, usage_weight=0.0, prototype_weight=0.0
)


def _terms(alpha: list, mixtures: list, prototypes: list, **weights: float) -> float:
    """`_regularisers` with only the named weights on; alpha (1 + negatives, K) and mixtures (K, P) of
    one user, repeated for a batch of two."""
    from policies.pretrain.train import _regularisers

    a = torch.tensor(alpha, dtype=torch.float64).expand(2, -1, -1)
    m = torch.tensor(mixtures, dtype=torch.float64).expand(2, -1, -1)
    return float(
        _regularisers(a, m, torch.tensor(prototypes, dtype=torch.float64), replace(NO_TERMS, **weights))
    )


def test_each_persona_regulariser_has_its_documented_value() -> None:
    """Guards against a regulariser with the wrong sign, normaliser or input: the entropy terms taking
    the positive's attention among the negatives, the overlap divided by K² instead of K(K - 1), the
    mixture entropy rewarded instead of penalised, the usage KL losing its log P or its α weighting,
    and the prototype term not squaring the cosine (anti-parallel prototypes would pay -1)."""
    sharp, flat = [0.9, 0.1], [0.5, 0.5]
    eye2, protos = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]
    h_sharp = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    # λ_ent (H(α(v⁺)) − H(α(v⁻))): the positive is row 0 only
    got = _terms([sharp, flat, flat], eye2, protos, entropy_weight=1.0)
    assert got == pytest.approx(h_sharp - np.log(2.0), abs=1e-9)
    # overlap: mean m_k·m_k' over the K(K - 1) ordered pairs of distinct personas
    assert _terms([flat, flat], [[1.0, 0.0], [1.0, 0.0]], protos, overlap_weight=1.0) == pytest.approx(1.0)
    assert _terms([flat, flat], eye2, protos, overlap_weight=1.0) == pytest.approx(0.0, abs=1e-12)
    # sharpness: the entropy of each mixture, positive when a persona spreads over prototypes
    assert _terms([flat, flat], [[0.5, 0.5], [0.5, 0.5]], protos, sharpness_weight=1.0) == pytest.approx(
        np.log(2)
    )
    # usage: KL(batch usage ‖ uniform), usage weighted by the positives' persona attention
    assert _terms([[1.0, 0.0], flat], eye2, protos, usage_weight=1.0) == pytest.approx(np.log(2.0))
    assert _terms([flat, flat], eye2, protos, usage_weight=1.0) == pytest.approx(0.0, abs=1e-12)
    # prototypes: mean squared cosine between distinct prototypes
    anti = [[1.0, 0.0], [-2.0, 0.0]]
    assert _terms([flat, flat], eye2, anti, prototype_weight=1.0) == pytest.approx(1.0)
    assert _terms([flat, flat], eye2, protos, prototype_weight=1.0) == pytest.approx(0.0, abs=1e-12)


def test_one_persona_pays_no_persona_terms() -> None:
    """Guards against the K = 1 shortcut lost: the overlap's K(K - 1) is 0 there and the loss NaN."""
    weights = {name: 1.0 for name in ("entropy_weight", "overlap_weight", "sharpness_weight", "usage_weight")}
    assert _terms([[1.0], [1.0]], [[1.0]], [[1.0, 0.0]], **weights) == 0.0


def test_training_from_random_weights_lifts_each_users_training_items(tiny: Catalog) -> None:
    """Guards against the loss pointing the wrong way (the positive not in column 0 of the softmax,
    or the scores' sign flipped): from random weights, three epochs must rank a user's training items
    above most other items (the fit starts at one half)."""
    result = pretrain(tiny, replace(FAST, data_init=False, epochs=3))
    scores = result.ranker(tiny).full_scores(np.arange(tiny.n_users))
    train = result.data.train
    beaten = [float(np.mean(scores[u] < scores[u, i])) for u, i in zip(train.users, train.items, strict=True)]
    assert np.mean(beaten) > 0.7


# ------------------------------------------------------------------------------ data start
def test_the_cluster_start_puts_prototypes_on_clusters_and_personas_on_each_users_top_clusters(
    tiny: Catalog, graph: PretrainGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against the clustered start taking the users' rows for the items' coordinates, dropping
    the scale that gives a member item affinity `prototype_scale`, stopping at an empty cluster,
    giving a user its least used clusters, writing one user's slots into another's, or a prior that
    is not log(1 + count) of the slot's own cluster."""
    import policies.pretrain.train as train_module

    data = pretrain_data(tiny, np.random.default_rng(0))  # the split `graph` was built from
    U, K, P = tiny.n_users, 2, 4
    labels = 1 + data.train.items % (P - 1)  # clusters 1..3 by item id; cluster 0 stays empty
    clustered: list[tuple[np.ndarray, int]] = []

    def fixed_kmeans(points: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
        clustered.append((points, n_clusters))
        return labels

    monkeypatch.setattr(train_module, "kmeans", fixed_kmeans)
    model = _model(tiny, graph, personas=K, prototypes=P)
    train_module.initialise_from_data(model, graph, data, np.random.default_rng(5), "kmeans", 2.0)
    points = _np(model.node_emb)[U + data.train.items]  # the items' spectral coordinates
    # k-means runs once, into P clusters, on the training interactions' item coordinates
    assert len(clustered) == 1 and clustered[0][1] == P
    np.testing.assert_allclose(clustered[0][0], points, rtol=1e-6)
    protos = _np(model.prototypes)
    np.testing.assert_array_equal(protos[0], 0.0)
    for j in range(1, P):
        members = points[labels == j]
        direction = members.mean(axis=0) / np.linalg.norm(members.mean(axis=0))
        np.testing.assert_allclose(protos[j] / np.linalg.norm(protos[j]), direction, atol=1e-5)
        assert np.mean(members @ protos[j]) == pytest.approx(2.0, rel=1e-4)
    counts = np.zeros((U, P))
    np.add.at(counts, (data.train.users, labels), 1.0)
    logits, prior = _np(model.slot_logits), _np(model.prior_logits)
    for user in range(U):
        assert sorted(logits[user].ravel().tolist()) == [0.0] * (K * P - K) + [4.0] * K
        chosen = np.argmax(logits[user], axis=1)
        assert len(set(chosen.tolist())) == K
        assert counts[user, chosen].min() >= np.delete(counts[user], chosen).max()
        assert counts[user, chosen[0]] >= counts[user, chosen[1]]
        np.testing.assert_allclose(prior[user], np.log1p(counts[user, chosen]), rtol=1e-6)


def test_the_mixture_start_clusters_by_each_pairs_persona_of_a_p_persona_fit(
    tiny: Catalog, graph: PretrainGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against the EM mixture fitted with K personas instead of the P prototypes, or asked for
    the persona of other pairs than the training (user, item) ones."""
    import policies.pretrain.train as train_module

    data = pretrain_data(tiny, np.random.default_rng(0))
    U, P = tiny.n_users, 4
    fits: list[tuple[Interactions, int, int]] = []

    class ByItem:
        def persona_of(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
            return 1 + np.asarray(items) % (P - 1)  # cluster 0 stays empty

    def fit(item_aspects: Any, interactions: Interactions, n_users: int, n_personas: int, rng: Any) -> ByItem:
        fits.append((interactions, n_users, n_personas))
        return ByItem()

    monkeypatch.setattr(train_module, "fit_persona_mixture", fit)
    model = _model(tiny, graph, personas=2, prototypes=P)
    train_module.initialise_from_data(
        model, graph, data, np.random.default_rng(5), "mixture", 2.0, tiny.item_aspects
    )
    assert len(fits) == 1 and fits[0][0] is data.train and fits[0][1:] == (U, P)
    points = _np(model.node_emb)[U + data.train.items]
    labels = 1 + data.train.items % (P - 1)
    protos = _np(model.prototypes)
    np.testing.assert_array_equal(protos[0], 0.0)
    for j in range(1, P):
        direction = points[labels == j].mean(axis=0)
        np.testing.assert_allclose(
            protos[j] / np.linalg.norm(protos[j]), direction / np.linalg.norm(direction), atol=1e-5
        )


def test_a_random_persona_start_leaves_the_personas_as_drawn(tiny: Catalog, graph: PretrainGraph) -> None:
    """Guards against persona_init="random" (the default on real data) clustering anyway."""
    from policies.pretrain.train import initialise_from_data

    data = pretrain_data(tiny, np.random.default_rng(0))
    model = _model(tiny, graph)
    keys = ("prototypes", "slot_logits", "prior_logits")
    before = {key: getattr(model, key).detach().clone() for key in keys}
    emb = model.node_emb.detach().clone()
    initialise_from_data(model, graph, data, np.random.default_rng(5), "random")
    for key in keys:
        assert torch.equal(getattr(model, key), before[key]), key
    assert not torch.equal(model.node_emb, emb)  # the embeddings still start spectral


# ------------------------------------------------------------------------------ training loop
def test_each_epoch_trains_on_every_pair_once_with_negatives_from_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards against negatives drawn outside the configured pool or one too few, the positive not in
    column 0, a pair skipped or repeated within an epoch, and epochs that never reshuffle."""
    import policies.pretrain.train as train_module

    world = make_persona_world(
        n_users=20, n_items=200, n_personas=4, personas_per_user=2, interactions_per_user=5, seed=2
    )
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Recording(PersonaModel):
        def score_pairs(self, reps: Any, users: torch.Tensor, items: torch.Tensor) -> Any:
            if self.training:
                seen.append((users.clone(), items.clone()))
            return super().score_pairs(reps, users, items)

    monkeypatch.setattr(train_module, "PersonaModel", Recording)
    config = replace(FAST, epochs=2, patience=2, batch_size=16, negatives=3, negative_pool="warm")
    result = pretrain(world, config)
    train = result.data.train
    warm = set(np.unique(train.items).tolist())
    assert len(warm) < world.n_items // 2  # most items are cold: a pool mix-up shows
    steps = -(-len(train) // 16)
    assert len(seen) == 2 * steps and len(result.history) == 2
    expected = sorted(zip(train.users.tolist(), train.items.tolist(), strict=True))
    orders = []
    for epoch in range(2):
        batches = seen[epoch * steps : (epoch + 1) * steps]
        assert all(items.shape == (users.shape[0], 4) for users, items in batches)
        pairs = [
            (u, i)
            for users, items in batches
            for u, i in zip(users.tolist(), items[:, 0].tolist(), strict=True)
        ]
        assert sorted(pairs) == expected
        orders.append(pairs)
        negatives = set(torch.cat([items[:, 1:].reshape(-1) for _, items in batches]).tolist())
        assert negatives <= warm
    assert orders[0] != orders[1]
    # the "all" pool draws from every item: cold ones too
    seen.clear()
    pretrain(world, replace(config, epochs=1, negative_pool="all"))
    negatives = set(torch.cat([items[:, 1:].reshape(-1) for _, items in seen]).tolist())
    assert negatives - warm


def test_each_step_updates_with_its_own_batchs_gradient_only(
    tiny: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against gradients left to accumulate across steps (no zero_grad): a step would move the
    persona slots of users from earlier batches. A user's slots get gradient only from its own pairs."""
    import policies.pretrain.train as train_module

    models: list[PersonaModel] = []
    batch_users: list[torch.Tensor] = []
    stale: list[float] = []

    class Recording(PersonaModel):
        def score_pairs(self, reps: Any, users: torch.Tensor, items: torch.Tensor) -> Any:
            models.append(self)
            batch_users.append(users.clone())
            return super().score_pairs(reps, users, items)

    class CheckingAdam(torch.optim.Adam):
        def step(self, closure: Any = None) -> Any:
            others = torch.ones(tiny.n_users, dtype=torch.bool)
            others[batch_users[-1]] = False
            model = models[-1]
            for param in (model.slot_offset, model.slot_logits, model.prior_logits):
                assert param.grad is not None
                stale.append(float(param.grad[others].abs().max()))
            return super().step(closure)

    monkeypatch.setattr(train_module, "PersonaModel", Recording)
    monkeypatch.setattr(torch.optim, "Adam", CheckingAdam)
    pretrain(tiny, replace(FAST, epochs=1, batch_size=16))
    assert len(stale) == 3 * len(batch_users) > 6
    assert max(stale) == 0.0


def test_training_stops_after_patience_epochs_without_a_better_validation_ndcg(tiny: Catalog) -> None:
    """Guards against early stopping off by one, a tie counted as an improvement, or no stop at all.
    A learning rate of 1e-12 leaves the weights, so every epoch ties the first."""
    result = pretrain(tiny, replace(FAST, lr=1e-12, epochs=6, patience=2))
    ndcgs = [report.valid.ndcg for report in result.history]
    assert len(ndcgs) == 3 and ndcgs[0] == ndcgs[1] == ndcgs[2]
    assert [report.best for report in result.history] == [True, False, False]
    assert result.best_epoch == 1


def test_the_kept_weights_are_the_best_epochs_state_not_the_last(tiny: Catalog) -> None:
    """Guards against the best state kept as references to the live parameters, which the later
    epochs overwrite: the state dict `crs train` starts from would be the last epoch's."""
    result = pretrain(tiny, replace(FAST, lr=0.05, epochs=4, patience=4))
    assert result.best_epoch < len(result.history)  # this run peaks before its last epoch
    ia = tiny.item_aspects
    graph = build_graph(tiny, result.data.train)
    model = PersonaModel(result.model_config, graph, (ia.indptr, ia.indices), torch.Generator())
    model.load_state_dict(result.state_dict)
    exported = model.export()
    for key, value in result.weights.items():
        np.testing.assert_allclose(exported[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_the_epoch_loss_is_the_mean_over_its_steps_with_l2_per_example(tiny: Catalog) -> None:
    """Guards against the reported epoch loss divided by the interactions instead of the steps, or
    holding the last step only, and against L2 summed over the batch or put on the wrong rows. Frozen
    near-zero random weights score the positive and its four negatives alike, so each step's
    sampled-softmax loss is about log 5."""
    unweighted = {name: 0.0 for name in ("l2", "offset_l2", "entropy_weight", "overlap_weight")}
    unweighted |= {name: 0.0 for name in ("sharpness_weight", "usage_weight", "prototype_weight")}
    config = replace(FAST, lr=1e-12, epochs=1, data_init=False, **unweighted)
    result = pretrain(tiny, config)
    assert result.history[0].loss == pytest.approx(np.log(5.0), abs=0.05)
    # L2 is per example, on the layer-0 rows of the batch's users and items: l2 × (‖x_u‖² + ‖x_v⁺‖² +
    # Σ ‖x_v⁻‖²), the negatives uniform over the items (spectral rows: users' and items' norms differ)
    plain = pretrain(tiny, replace(config, data_init=True))
    weighted = pretrain(tiny, replace(config, data_init=True, l2=1.0))
    emb = weighted.state_dict["node_emb"].numpy().astype(np.float64)
    norms, train = (emb**2).sum(axis=1), weighted.data.train
    U = tiny.n_users
    per_example = (
        np.mean(norms[train.users] + norms[U + train.items]) + 4 * norms[U : U + tiny.n_items].mean()
    )
    added = weighted.history[0].loss - plain.history[0].loss
    assert added == pytest.approx(per_example, rel=0.05)


def test_a_loss_that_overflows_to_infinity_stops_with_a_named_error(tiny: Catalog) -> None:
    """Guards against the divergence check catching NaN only: an infinite loss would train on."""
    with pytest.raises(CRSError, match="diverged"):
        pretrain(tiny, replace(FAST, l2=1e38, epochs=1, batch_size=4096))


def test_the_fingerprint_follows_the_pretraining_interactions(tiny: Catalog) -> None:
    """Guards against the fingerprint leaving out the split's users or items: an artifact trained on
    other interactions would pass as this catalogue's."""
    train = tiny.split("train")
    items, users = train.items.copy(), train.users.copy()
    items[0] = (items[0] + 1) % tiny.n_items
    users[0] = (users[0] + 1) % tiny.n_users
    same = replace_splits(tiny, dict(tiny.splits))
    assert catalog_fingerprint(same) == catalog_fingerprint(tiny)
    for other in (Interactions(train.users, items), Interactions(users, train.items)):
        changed = replace_splits(tiny, {**tiny.splits, "train": other})
        assert catalog_fingerprint(changed) != catalog_fingerprint(tiny)


@pytest.mark.parametrize("aspect_mode", ["uniform", "none"])
def test_validation_ranks_with_the_models_own_aspect_mode(tiny: Catalog, aspect_mode: str) -> None:
    """Guards against per-epoch validation scoring an ablation with aspect attention: the epoch kept
    would be chosen by another model's NDCG."""
    result = pretrain(tiny, replace(FAST, aspect_mode=aspect_mode))
    U, I = tiny.n_users, tiny.n_items
    truth = result.data.valid.by_user(U, I)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    again = rank_metrics(result.ranker(tiny).full_scores, result.data.train.by_user(U, I), truth, users, k=10)
    assert again.ndcg == pytest.approx(result.history[result.best_epoch - 1].valid.ndcg, abs=1e-6)


# ------------------------------------------------------------------------------ baselines
def _blocks(
    seed: int = 0, n: int = 40, per_user: int = 8, n_train: int = 6
) -> tuple[Interactions, Interactions]:
    """Two tastes: the first n/2 users hold items of the first half, the others of the second half."""
    rng = np.random.default_rng(seed)
    train, valid = ([], []), ([], [])
    for user in range(n):
        items = (0 if user < n // 2 else n // 2) + rng.choice(n // 2, size=per_user, replace=False)
        for split, chosen in ((train, items[:n_train]), (valid, items[n_train:])):
            split[0].extend([user] * len(chosen))
            split[1].extend(chosen.tolist())
    return Interactions(np.array(train[0]), np.array(train[1])), Interactions(
        np.array(valid[0]), np.array(valid[1])
    )


def test_popularity_counts_every_item_including_the_unseen_last_ones() -> None:
    """Guards against the item count dropped: items after the last one trained on would be missing."""
    train = Interactions(np.array([0, 1, 1, 2]), np.array([3, 1, 3, 0]))
    np.testing.assert_array_equal(popularity_scores(train, 6), [1.0, 1.0, 0.0, 2.0, 0.0, 0.0])


def _mf(train: Interactions, valid: Interactions, seed: int, **kwargs: Any) -> Any:
    settings = {"dim": 8, "epochs": 60, "batch_size": 64, "lr": 0.1, "patience": 3, "max_valid_users": None}
    return train_mf_bpr(train, valid, 40, 40, np.random.default_rng(seed), **{**settings, **kwargs})


def test_mf_bpr_learns_the_tastes_and_keeps_its_best_epoch() -> None:
    """Guards against the BPR difference or loss sign flipped, validation excluding the held-out items
    instead of the trained ones, the kept factors being views the later epochs overwrite (or the worst
    epoch's), early stopping off by one, and the weights not following the seed."""
    train, valid = _blocks()
    result = _mf(train, valid, 0)
    # stopped early, `patience` epochs after the best one, which came after the first (this run also
    # has worse epochs before its best: they do not count towards the patience)
    assert result.best_epoch > 1 and result.epochs == result.best_epoch + 3 < 60
    # the kept factors are the best epoch's: a run cut at that epoch ends on the same factors
    cut = _mf(train, valid, 0, epochs=result.best_epoch)
    np.testing.assert_array_equal(result.user, cut.user)
    np.testing.assert_array_equal(result.item, cut.item)
    # each user scores items of its own half above those of the other half
    scores = result.scores(np.arange(40))
    own = np.arange(40)[:, None] // 20 == np.arange(40)[None, :] // 20
    assert all(scores[u, own[u]].mean() > scores[u, ~own[u]].mean() for u in range(40))
    assert not np.array_equal(_mf(train, valid, 1).user, result.user)


def test_mf_bpr_starts_from_factors_drawn_from_its_generator() -> None:
    """Guards against the initial factors drawn from a fixed seed: runs of other seeds would start
    alike. With a learning rate of 1e-6 one epoch leaves the factors where they started."""
    train, valid = _blocks()
    one, other = _mf(train, valid, 0, epochs=1, lr=1e-6), _mf(train, valid, 1, epochs=1, lr=1e-6)
    assert np.abs(one.user - other.user).max() > 0.05
    assert np.abs(one.item - other.item).max() > 0.05
