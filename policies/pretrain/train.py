"""Pre-training loop and early stopping (the artifact it is saved as: `policies.pretrain.artifact`).

Loss per batch of B training interactions, each with ``n_neg`` uniformly drawn negative items:

* sampled softmax: ``−log softmax(s(u, v⁺), s(u, v⁻_1..n))``;
* AMP-CF entropy terms: ``λ_ent (H(α(v⁺)) − H(α(v⁻)))`` (sharp persona attention on positives,
  flat on negatives);
* anti-collapse: ``λ_overlap`` × mean overlap ``m_k·m_k'`` of a user's persona mixtures (a user's
  personas draw on different prototypes), ``λ_sharp`` × entropy of each mixture (each persona
  commits to a prototype), ``λ_usage`` × KL(batch prototype usage ‖ uniform) (all prototypes used),
  ``λ_proto`` × mean squared cosine between distinct prototypes;
* L2 on the layer-0 embeddings and persona offsets touched by the batch.

Determinism: all randomness comes from one ``numpy.random.Generator`` seeded with ``seed`` (shuffles,
negatives) and a ``torch.Generator`` seeded from it (initial weights); torch runs single-threaded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional

from policies.pretrain.config import ModelConfig, TrainConfig
from policies.pretrain.graph import (
    PretrainData,
    PretrainGraph,
    build_graph,
    kmeans,
    seeded_split,
    spectral_embedding,
)
from policies.pretrain.metrics import RankingMetrics, evaluation_users, rank_metrics
from policies.pretrain.mixture import fit_persona_mixture
from policies.pretrain.model import PersonaModel
from policies.pretrain.ranker import PersonaRanker
from simulators.catalog import Catalog
from simulators.errors import CRSError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """One epoch's figures.

    Attributes:
        epoch: 1-based epoch.
        loss: Mean training loss.
        valid: Validation metrics after the epoch.
        seconds: Wall time of the epoch (training + validation).
        best: Whether this epoch is the best so far.
    """

    epoch: int
    loss: float
    valid: RankingMetrics
    seconds: float
    best: bool


@dataclass(frozen=True)
class PretrainResult:
    """What pre-training produced.

    Attributes:
        catalog_name: Dataset name.
        model_config: Model shape.
        train_config: Hyper-parameters.
        data: The interactions used (split names, hold-out).
        state_dict: Best model weights.
        weights: Exported inference arrays of the best weights (see `PersonaModel.export`).
        history: Per-epoch reports.
        best_epoch: Epoch of the kept weights.
        seconds: Total wall time.
        fingerprint: Hash of the catalogue facts the weights depend on.
    """

    catalog_name: str
    model_config: ModelConfig
    train_config: TrainConfig
    data: PretrainData
    state_dict: dict[str, torch.Tensor]
    weights: dict[str, np.ndarray]
    history: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    fingerprint: str = ""

    @property
    def epochs_per_second(self) -> float:
        return len(self.history) / self.seconds if self.seconds > 0 else 0.0

    def ranker(self, catalog: Catalog) -> PersonaRanker:
        """A `PersonaRanker` over the best weights."""
        return PersonaRanker(self.weights, catalog.item_aspects, self.model_config.aspect_mode)


def catalog_fingerprint(catalog: Catalog) -> str:
    """SHA-256 over the catalogue's sizes, item–aspect structure and pre-training split."""
    h = hashlib.sha256()
    h.update(f"{catalog.name}|{catalog.n_users}|{catalog.n_items}|{catalog.n_aspects}".encode())
    h.update(np.asarray(catalog.item_aspects.indptr, dtype=np.int64).tobytes())
    h.update(np.asarray(catalog.item_aspects.indices, dtype=np.int64).tobytes())
    split = catalog.split(catalog.pretrain_split)
    h.update(split.users.tobytes())
    h.update(split.items.tobytes())
    return h.hexdigest()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def _regularisers(
    out_alpha: torch.Tensor, mixtures: torch.Tensor, prototypes: torch.Tensor, cfg: TrainConfig
):
    """The persona terms of the loss (zero when K = 1); returns a scalar tensor."""
    K, P = mixtures.shape[1], mixtures.shape[2]
    if K == 1:
        return out_alpha.new_zeros(())
    a_pos, a_neg = out_alpha[:, 0, :], out_alpha[:, 1:, :]
    loss = cfg.entropy_weight * (_entropy(a_pos).mean() - _entropy(a_neg).mean())
    gram = mixtures @ mixtures.transpose(1, 2)  # (B, K, K)
    off = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(-1)
    loss = loss + cfg.overlap_weight * (off / (K * (K - 1))).mean()
    loss = loss + cfg.sharpness_weight * _entropy(mixtures).mean()
    usage = (a_pos.unsqueeze(-1) * mixtures).sum(1).mean(0)  # (P,)
    loss = loss + cfg.usage_weight * (usage * torch.log(usage.clamp_min(1e-12) * P)).sum()
    if P > 1:
        c = functional.normalize(prototypes, dim=-1)
        cos = c @ c.T
        loss = loss + cfg.prototype_weight * (cos.pow(2).sum() - cos.diagonal().pow(2).sum()) / (P * (P - 1))
    return loss


def initialise_from_data(
    model: PersonaModel,
    graph: PretrainGraph,
    data: PretrainData,
    rng: np.random.Generator,
    persona_init: str = "kmeans",
    prototype_scale: float = 2.0,
    item_aspects: sp.spmatrix | None = None,
) -> None:
    """Data-driven start: spectral node embeddings, clustered prototypes, per-user persona slots.

    Layer-0 embeddings = `spectral_embedding` of the graph. With K > 1, the training interactions are
    clustered into P groups: "kmeans" clusters their items' spectral coordinates (spherical k-means);
    "mixture" labels each with its most likely persona of an EM-fitted persona mixture over the items'
    aspects (`policies.pretrain.mixture`; needs `item_aspects`). Prototype j starts at cluster j's
    direction in the spectral coordinates (scaled so a member item's affinity is about 2); user u's K
    personas start on the K clusters that hold most of u's training interactions (ties and missing
    ones filled at random), with mixture logit 4 on that prototype and prior log-weight log(1 + count).

    Raises:
        CRSError: "mixture" without `item_aspects`.
    """
    cfg = model.config
    emb = spectral_embedding(graph, cfg.dim, rng)
    with torch.no_grad():
        model.node_emb.copy_(torch.from_numpy(emb))
    K, P, U = cfg.personas, cfg.prototypes, cfg.n_users
    if K == 1 or persona_init == "random":
        return
    points = emb[U + data.train.items].astype(np.float64)
    if persona_init == "mixture":
        if item_aspects is None:
            raise CRSError("persona_init='mixture' needs the catalogue's item_aspects")
        mixture = fit_persona_mixture(item_aspects, data.train, U, P, rng)
        labels = mixture.persona_of(data.train.users, data.train.items)
    else:
        labels = kmeans(points, P, rng)
    protos = np.zeros((P, cfg.dim))
    for j in range(P):
        members = points[labels == j]
        if members.shape[0] == 0:
            continue
        direction = members.mean(axis=0)
        direction /= max(np.linalg.norm(direction), 1e-12)
        spread = float(np.mean(members @ direction))
        protos[j] = direction * (prototype_scale / max(spread, 1e-6))
    counts = np.zeros((U, P))
    np.add.at(counts, (data.train.users, labels), 1.0)
    noisy = counts + rng.random((U, P)) * 0.5
    chosen = np.argsort(-noisy, axis=1)[:, :K]  # (U, K) distinct clusters
    logits = np.zeros((U, K, P))
    rows = np.repeat(np.arange(U), K)
    logits[rows, np.tile(np.arange(K), U), chosen.reshape(-1)] = 4.0
    prior = np.log1p(np.take_along_axis(counts, chosen, axis=1))
    with torch.no_grad():
        model.prototypes.copy_(torch.as_tensor(protos, dtype=torch.float32))
        model.slot_logits.copy_(torch.as_tensor(logits, dtype=torch.float32))
        model.prior_logits.copy_(torch.as_tensor(prior, dtype=torch.float32))


def negative_candidates(negative_pool: str, train_items: np.ndarray, n_items: int) -> np.ndarray:
    """Item ids negatives are drawn from (uniformly): all items, or the "warm" ones of `train_items`.

    Returns:
        Ascending int64 ids, shape (n,).
    """
    if negative_pool == "warm":
        return np.unique(train_items).astype(np.int64)
    return np.arange(n_items, dtype=np.int64)


def pretrain(
    catalog: Catalog,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> PretrainResult:
    """Pre-train the persona model on `catalog`'s pre-training split.

    Args:
        catalog: The catalogue.
        config: Hyper-parameters (and the seed).
        on_epoch: Called after every epoch with its report.
        on_batch: Called after every step with (steps done this epoch, steps per epoch).

    Returns:
        The best weights (by validation NDCG@10) and the history.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    if config.persona_init == "auto":
        config = replace(config, persona_init="kmeans" if catalog.truth is not None else "random")
    rng, torch_seed, data = seeded_split(catalog, config.seed, config.holdout_fraction, config.holdout_unit)
    gen = torch.Generator().manual_seed(torch_seed)
    graph = build_graph(catalog, data.train)
    mcfg = config.model_config(catalog)
    ia = catalog.item_aspects
    model = PersonaModel(mcfg, graph, (ia.indptr, ia.indices), gen)
    if config.data_init:
        initialise_from_data(
            model, graph, data, rng, config.persona_init, config.prototype_scale, catalog.item_aspects
        )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    U, I = catalog.n_users, catalog.n_items
    exclude = data.train.by_user(U, I)
    truth = data.valid.by_user(U, I)
    val_users = evaluation_users(truth, config.max_valid_users, rng)
    train_users = torch.as_tensor(np.array(data.train.users))
    train_items = torch.as_tensor(np.array(data.train.items))
    n = len(data.train)
    pool = negative_candidates(config.negative_pool, np.asarray(data.train.items), I)
    steps = math.ceil(n / config.batch_size)
    history: list[EpochReport] = []
    best_ndcg, best_epoch, bad = -1.0, 0, 0
    best_state: dict[str, torch.Tensor] = {}
    best_weights: dict[str, np.ndarray] = {}
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = torch.as_tensor(rng.permutation(n))
        total = 0.0
        model.train()
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            users = train_users[idx]
            neg = torch.as_tensor(pool[rng.integers(0, pool.size, size=(idx.shape[0], config.negatives))])
            items = torch.cat([train_items[idx].unsqueeze(1), neg], dim=1)
            reps = model.represent()
            out = model.score_pairs(reps, users, items)
            loss = functional.cross_entropy(out.scores, torch.zeros(idx.shape[0], dtype=torch.long))
            loss = loss + _regularisers(out.alpha, out.mixtures, model.prototypes, config)
            touched = torch.cat([users, U + items.reshape(-1)])
            l2 = config.l2 * model.node_emb[touched].pow(2).sum()
            l2 = l2 + config.offset_l2 * model.slot_offset[users].pow(2).sum()
            loss = loss + l2 / idx.shape[0]
            if not torch.isfinite(loss):
                raise CRSError(
                    f"pre-training diverged in epoch {epoch}, step {step + 1}: the loss is "
                    f"{float(loss.detach())}; "
                    f"lower the learning rate (lr={config.lr}; `TrainConfig.lr` from Python) or try "
                    "another --seed or a larger --batch-size"
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            if on_batch is not None:
                on_batch(step + 1, steps)
        model.eval()
        weights = model.export()
        ranker = PersonaRanker(weights, catalog.item_aspects, mcfg.aspect_mode)
        valid = rank_metrics(ranker.full_scores, exclude, truth, val_users, k=10, batch_size=128)
        improved = valid.ndcg > best_ndcg
        if improved:
            best_ndcg, best_epoch, bad = valid.ndcg, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_weights = weights
        else:
            bad += 1
        report = EpochReport(epoch, total / steps, valid, time.perf_counter() - t0, improved)
        history.append(report)
        log.info("epoch %d loss %.4f valid R@10 %.4f N@10 %.4f", epoch, report.loss, valid.recall, valid.ndcg)
        if on_epoch is not None:
            on_epoch(report)
        if bad >= config.patience:
            break
    return PretrainResult(
        catalog_name=catalog.name,
        model_config=mcfg,
        train_config=config,
        data=data,
        state_dict=best_state,
        weights=best_weights,
        history=history,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        fingerprint=catalog_fingerprint(catalog),
    )
