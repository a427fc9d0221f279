"""The persona × aspect model: KGAT-style attentive propagation, AMP-CF personas, aspect attention.

Notation (shapes in brackets): U users, I items, A aspects, d embedding dim, P shared persona
prototypes, K personas per user.

* **Propagation** (KGAT): every node starts from a free embedding ``x⁰`` [N, d]. A layer computes,
  for each edge ``t -> h`` of relation r, ``π(h, r, t) = (W_r x_t)ᵀ tanh(W_r x_h + e_r)``, normalises
  it with a softmax over all in-edges of h across relations, and sets ``x^{l+1}_h = Σ_t π̃ x^l_t``.
  The output is the mean of the layers (as LightGCN), split into user bases ``g_u``, item
  embeddings ``e_v`` and aspect embeddings ``e_a``.
* **Personas** (AMP-CF with shared prototypes): user u's persona k is
  ``p_{u,k} = Σ_j m_{u,k,j} c_j + δ_{u,k}`` with prototypes ``c`` [P, d], a mixture
  ``m_{u,k} = softmax(z_{u,k})`` [P] and a small offset ``δ`` [U, K, d]; ``log π_{u,k}`` is the
  user's prior log-weight of persona k.
* **Candidate-conditioned persona attention** (AMP-CF's ``softmax_k(p_k·v)`` with the item seen
  through persona k's aspect attention): ``α_k(v) = softmax_k(log π_k + ⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩)``.
* **Aspect attention** of persona k on item v, driven by the persona's prototype part
  ``q_{u,k} = Σ_j m_{u,k,j} c_j`` (what a persona cares about belongs to the shared prototypes):
  ``ω_{k,a}(v) = softmax_{a ∈ A(v)}(q_k·e_a)``, ``h_k(v) = Σ_a ω_{k,a}(v) e_a``, and the score uses
  ``⟨q_k, h_k(v)⟩ = Σ_a ω_{k,a}(v) (q_k·e_a)``.
  Ablations: "uniform" (ω = 1/|A(v)|) and "none" (h = 0).
* **Shared persona** (optional, ``shared_persona``): one global taste vector ``c₀`` [d] that every user
  holds outside the persona softmax, with its own aspect attention ``h₀(v)``
  (``ω_{0,a}(v) = softmax_{a ∈ A(v)}(c₀·e_a)``). It is the K = 1 model's shared prototype kept next to
  the K personas, so a K > 1 model contains the K = 1 model (personas that add nothing can fade to
  zero) and cold items (no training interaction) are scored by their aspects through ``⟨c₀, h₀(v)⟩``.
* **Score**: ``s(u, v) = g_u·e_v + ⟨c₀, e_v + h₀(v)⟩ + Σ_k α_k(v) (⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩)``. The base
  terms are the same for every persona, so they never change α.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, softmax

from policies.pretrain.config import ModelConfig
from policies.pretrain.graph import N_RELATIONS, PretrainGraph
from simulators.errors import CRSError


def _remove_generated_source(module: str) -> None:
    """Delete the file PyG rendered `module` (a layer's ``propagate``) into, once it is imported.

    PyG writes one ``<module>_<class>_propagate_*.py`` into the temporary folder per process and never
    removes it; the module stays in ``sys.modules`` (later layers reuse it), so the file is not needed.
    """
    path = getattr(sys.modules.get(module), "__file__", None)
    if path is not None and Path(path).parent == Path(tempfile.gettempdir()):
        Path(path).unlink(missing_ok=True)


class AttentivePropagation(MessagePassing):
    """One KGAT attentive propagation layer over a typed graph.

    Args:
        dim: Embedding dimension d.
        attention_dim: Dimension of the relation space W_r maps into (KGAT's k); smaller is cheaper.
        relation_ranges: For each relation r, the contiguous global node-id range ``(lo, hi)`` that
            holds every endpoint of its edges; ``W_r`` is applied to those rows only.
    """

    def __init__(self, dim: int, attention_dim: int, relation_ranges: list[tuple[int, int]]) -> None:
        super().__init__(aggr="add", node_dim=0)
        _remove_generated_source(f"{type(self).__module__}_{type(self).__name__}_propagate")  # PyG's name
        self.dim = dim
        self.attention_dim = attention_dim
        self.relation_ranges = relation_ranges
        self.W = nn.Parameter(torch.empty(len(relation_ranges), attention_dim, dim))
        self.rel = nn.Parameter(torch.empty(len(relation_ranges), attention_dim))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-initialise ``W_r`` and the relation embeddings ``e_r`` from `generator`."""
        bound = float(np.sqrt(6.0 / (self.dim + self.attention_dim)))
        with torch.no_grad():
            self.W.uniform_(-bound, bound, generator=generator)
            self.rel.normal_(0.0, 0.1, generator=generator)

    def attention(self, x: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        """Normalised attention of every edge.

        Args:
            x: Node embeddings, shape (N, d).
            edge_index: Source (tail t) and target (head h) ids, shape (2, E).
            edge_type: Relation of each edge, shape (E,).

        Returns:
            π̃(h, r, t), shape (E,), summing to 1 over the in-edges of each target node.
        """
        src, dst = edge_index
        parts = []
        order = []
        for r, (lo, hi) in enumerate(self.relation_ranges):
            edges = torch.nonzero(edge_type == r).squeeze(1)
            if edges.numel() == 0:
                continue
            xw = x[lo:hi] @ self.W[r].T  # (hi - lo, attention_dim)
            t, h = src[edges] - lo, dst[edges] - lo
            parts.append((xw[t] * torch.tanh(xw[h] + self.rel[r])).sum(-1))
            order.append(edges)
        logits = torch.empty(src.shape[0], dtype=x.dtype).index_put((torch.cat(order),), torch.cat(parts))
        return softmax(logits, dst, num_nodes=x.shape[0])

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        """Propagate once.

        Args:
            x: Node embeddings, shape (N, d).
            edge_index: Edges ``t -> h``, shape (2, E).
            edge_type: Relation ids, shape (E,).

        Returns:
            New node embeddings, shape (N, d); a node without in-edges gets zeros.
        """
        weight = self.attention(x, edge_index, edge_type)
        return self.propagate(edge_index, x=x, weight=weight)

    def message(self, x_j: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight.unsqueeze(-1) * x_j


@dataclass(frozen=True)
class Representations:
    """Propagated embeddings (torch, differentiable).

    Attributes:
        user: User bases g, shape (U, d).
        item: Item embeddings e_v, shape (I, d).
        aspect: Aspect embeddings e_a, shape (A, d).
    """

    user: torch.Tensor
    item: torch.Tensor
    aspect: torch.Tensor


@dataclass(frozen=True)
class PairOutput:
    """Scores of (user, item) pairs and their persona attention.

    Attributes:
        scores: s(u, v), shape (B, M).
        alpha: α_k(v), shape (B, M, K).
        mixtures: m_{u,k}, shape (B, K, P).
    """

    scores: torch.Tensor
    alpha: torch.Tensor
    mixtures: torch.Tensor


class PersonaModel(nn.Module):
    """KGAT propagation + AMP-CF personas + aspect attention (see the module docstring).

    Args:
        config: Sizes and switches.
        graph: The pre-training graph (its sizes must match `config`).
        item_aspects: Item x aspect CSR index pointer and indices, as (indptr (I + 1,), indices (nnz,)).
        generator: Seeded torch generator for the initial weights.
    """

    # buffers registered in __init__, declared for the type checker (nn.Module types them Tensor | Module)
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    ia_indptr: torch.Tensor
    ia_indices: torch.Tensor

    def __init__(
        self,
        config: ModelConfig,
        graph: PretrainGraph,
        item_aspects: tuple[np.ndarray, np.ndarray],
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if (graph.n_users, graph.n_items, graph.n_aspects) != (
            config.n_users,
            config.n_items,
            config.n_aspects,
        ):
            raise CRSError(
                f"graph sizes {(graph.n_users, graph.n_items, graph.n_aspects)} differ from model sizes "
                f"{(config.n_users, config.n_items, config.n_aspects)}"
            )
        self.config = config
        U, I, A, d = config.n_users, config.n_items, config.n_aspects, config.dim
        K, P = config.personas, config.prototypes
        ranges = [(0, U + I), (0, U + I), (U, U + I + A), (U, U + I + A)]
        assert len(ranges) == N_RELATIONS
        self.register_buffer(
            "edge_index", torch.as_tensor(graph.edge_index, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "edge_type", torch.as_tensor(graph.edge_type, dtype=torch.long), persistent=False
        )
        indptr, indices = item_aspects
        self.register_buffer(
            "ia_indptr", torch.as_tensor(np.array(indptr), dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "ia_indices", torch.as_tensor(np.array(indices), dtype=torch.long), persistent=False
        )
        self.node_emb = nn.Parameter(torch.empty(U + I + A, d))
        self.layers = nn.ModuleList(
            [AttentivePropagation(d, config.attention_dim, ranges) for _ in range(config.layers)]
        )
        self.prototypes = nn.Parameter(torch.empty(P, d))
        self.shared = nn.Parameter(torch.zeros(d)) if config.shared_persona else None
        self.slot_logits = nn.Parameter(torch.empty(U, K, P))
        self.slot_offset = nn.Parameter(torch.zeros(U, K, d))
        self.prior_logits = nn.Parameter(torch.zeros(U, K))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from `generator` (deterministic for a given seed)."""
        with torch.no_grad():
            self.node_emb.normal_(0.0, 0.1, generator=generator)
            for layer in self.layers:
                cast(AttentivePropagation, layer).reset_parameters(generator)  # self.layers holds only these
            self.prototypes.normal_(0.0, 0.1, generator=generator)
            if self.shared is not None:
                self.shared.normal_(0.0, 0.1, generator=generator)
            self.slot_logits.normal_(0.0, 1.0, generator=generator)
            self.slot_offset.zero_()
            self.prior_logits.zero_()

    def represent(self) -> Representations:
        """Run the propagation over the whole graph.

        Returns:
            User bases, item and aspect embeddings (mean over layers 0..L).
        """
        x = self.node_emb
        total = x
        for layer in self.layers:
            x = layer(x, self.edge_index, self.edge_type)
            total = total + x
        out = total / (len(self.layers) + 1)
        U, I = self.config.n_users, self.config.n_items
        return Representations(out[:U], out[U : U + I], out[U + I :])

    def mixtures(self, users: torch.Tensor) -> torch.Tensor:
        """Prototype mixtures m of `users` (shape (B,)), shape (B, K, P)."""
        return torch.softmax(self.slot_logits[users], dim=-1)

    def personas(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Persona vectors and prior log-weights of `users` (shape (B,)).

        Returns:
            p [B, K, d] and log π [B, K].
        """
        vectors = self.mixtures(users) @ self.prototypes + self.slot_offset[users]
        return vectors, torch.log_softmax(self.prior_logits[users], dim=-1)

    def aspect_term(
        self,
        mixtures: torch.Tensor,
        items: torch.Tensor,
        aspect_emb: torch.Tensor,
        prototypes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """⟨q_k, h_k(v)⟩ for every pair, under the configured aspect mode.

        Aspect attention is driven by the prototype part of each persona, ``q_{u,k} = m_{u,k} C``
        (what persona k cares about is a property of the shared prototypes, not of the user's offset),
        which also makes it cheap: ``q_{u,k}·e_a = Σ_j m_{u,k,j} (c_j·e_a)``.

        Args:
            mixtures: m, shape (B, K, P).
            items: Item ids, shape (B, M).
            aspect_emb: e_a, shape (A, d).
            prototypes: The vectors the mixtures weigh, shape (P, d); default the persona prototypes C.

        Returns:
            Shape (B, M, K); zeros in mode "none" and for items without aspects.
        """
        B, M = items.shape
        K = mixtures.shape[1]
        if self.config.aspect_mode == "none":
            return mixtures.new_zeros(B, M, K)
        flat = items.reshape(-1)
        starts, ends = self.ia_indptr[flat], self.ia_indptr[flat + 1]
        counts = ends - starts
        pair = torch.repeat_interleave(torch.arange(flat.shape[0]), counts)
        first = torch.cumsum(counts, 0) - counts
        pos = torch.arange(pair.shape[0]) - first[pair] + starts[pair]
        aspects = self.ia_indices[pos]
        protos = self.prototypes if prototypes is None else prototypes
        proto_sims = (protos @ aspect_emb.T).T  # (A, P)
        sims = torch.einsum("ekp,ep->ek", mixtures[pair // M], proto_sims[aspects])  # (E, K)
        if self.config.aspect_mode == "attention":
            weight = softmax(sims, pair, num_nodes=flat.shape[0])
        else:
            weight = (1.0 / counts[pair].clamp(min=1).to(sims.dtype)).unsqueeze(-1).expand_as(sims)
        term = scatter(weight * sims, pair, dim=0, dim_size=flat.shape[0], reduce="sum")
        return term.reshape(B, M, K)

    def score_pairs(self, reps: Representations, users: torch.Tensor, items: torch.Tensor) -> PairOutput:
        """Score items for users.

        Args:
            reps: Output of `represent`.
            users: User ids, shape (B,).
            items: Item ids per user, shape (B, M).

        Returns:
            Scores, persona attention and mixtures.
        """
        p, log_prior = self.personas(users)
        mixtures = self.mixtures(users)
        ev = reps.item[items]  # (B, M, d)
        per_persona = torch.einsum("bkd,bmd->bmk", p, ev) + self.aspect_term(mixtures, items, reps.aspect)
        alpha = torch.softmax(log_prior.unsqueeze(1) + per_persona, dim=-1)
        base = torch.einsum("bd,bmd->bm", reps.user[users], ev)
        if self.shared is not None:
            one = mixtures.new_ones(users.shape[0], 1, 1)
            shared_aspects = self.aspect_term(one, items, reps.aspect, self.shared.unsqueeze(0))
            base = base + ev @ self.shared + shared_aspects.squeeze(-1)
        scores = base + (alpha * per_persona).sum(-1)
        return PairOutput(scores, alpha, mixtures)

    @torch.no_grad()
    def export(self) -> dict[str, np.ndarray]:
        """The arrays inference needs (float32 numpy), independent of torch and the graph.

        Returns:
            "user" [U, d], "item" [I, d], "aspect" [A, d], "personas" [U, K, d],
            "log_prior" [U, K], "mixtures" [U, K, P], "prototypes" [P, d], and "shared" [d] (zeros
            without the shared persona).
        """
        reps = self.represent()
        users = torch.arange(self.config.n_users)
        p, log_prior = self.personas(users)
        out = {
            "user": reps.user,
            "item": reps.item,
            "aspect": reps.aspect,
            "personas": p,
            "log_prior": log_prior,
            "mixtures": self.mixtures(users),
            "prototypes": self.prototypes,
            "shared": self.shared if self.shared is not None else self.prototypes.new_zeros(self.config.dim),
        }
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in out.items()}
