"""`PersonaAspectEncoder`: the persona × aspect state encoder, as an SB3 features extractor.

It reads the SB3 wrapper's padded local dialogue graph (see `envs.sb3_wrapper`) and scores every
candidate action. With B the batch, K personas, N candidate items, Q question slots, P probe slots,
F fact slots, d the model width:

- personas p_k of the user (B, K, d) and their prior log π_k; the dialogue posterior
  ``log β_k = log π_k + Σ_{a∈A+} p_k·e_a/√d − Σ_{a∈A−} p_k·e_a/√d``;
- item-conditioned persona attention ``α_k(v) = softmax_k(log β_k + p_k·e_v/√d)``;
- per-persona aspect attention over the item's neighbours in the local graph (question aspects it
  holds, the accepted aspects, rejected aspects it holds; each with a relation embedding):
  ``ω_{k,a}(v) = softmax_{a∈N(v)}(p_k W e_a/√d)``, ``h_k(v) = Σ_a ω_{k,a}(v) e_a``;
- item preference ``Σ_k α_k(v) p_k·(e_v + h_k(v))/√d``, which with the ranker's hand features gives
  the item logits; question, probe and recommend logits and the value's hidden state follow.

Switches: ``persona_attention=False`` collapses the K personas into their prior-weighted mean
(persona-blind); ``aspect_attention=False`` replaces ω by a uniform mean over N(v) (aspect-blind).
Both off is a UNICORN-style graph policy: a user vector and mean-aggregated neighbourhoods.

Dense masked attention is used over the padded graph (a few dozen nodes per state): on small padded
graphs it is much faster on CPU than scatter-based message passing; ``torch_geometric.utils.softmax``
semantics (softmax over each node's neighbours) are reproduced with masks.

Output: ``[choice logits (Q + P + 1), item logits (N), value hidden (H)]`` of width
``Q + P + 1 + N + H``; `policies.rl.policy.SlatePolicy` splits it.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from simulators.errors import CRSError

NEG = -1e8


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    logits = logits.masked_fill(~mask, NEG)
    weights = torch.softmax(logits, dim=dim) * mask.float()
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(1e-9)


class PersonaAspectEncoder(BaseFeaturesExtractor):
    """Persona × aspect attention over the padded local dialogue graph.

    Args:
        observation_space: The SB3 wrapper's Dict observation space.
        n_users: Users in the catalogue.
        n_items: Items in the catalogue.
        n_aspects: Aspects in the catalogue.
        n_categories: First-layer categories (enumerated questions; 0 otherwise).
        n_personas: K, personas per user in the encoder.
        embed_dim: Width of the (pre-trained) embeddings.
        hidden: Width d of the model and H of its heads.
        persona_attention: Use the persona posterior and item-conditioned persona attention.
        aspect_attention: Use per-persona attention over each item's aspects (else a uniform mean).
        train_embeddings: Fine-tune the embedding tables (False keeps pre-trained ones fixed).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        n_users: int,
        n_items: int,
        n_aspects: int,
        n_categories: int = 0,
        n_personas: int = 1,
        embed_dim: int = 32,
        hidden: int = 64,
        persona_attention: bool = True,
        aspect_attention: bool = True,
        train_embeddings: bool = True,
    ) -> None:
        # every space of the wrapper's Dict is a Box, whose shape is set (gym types it Optional)
        shapes = cast(
            "dict[str, tuple[int, ...]]",
            {key: space.shape for key, space in observation_space.spaces.items()},
        )
        self.n_questions = shapes["question_ids"][0]
        self.n_probes = shapes["probe_feats"][0] if "probe_feats" in shapes else 0
        self.n_items_slots = shapes["item_ids"][0]
        self.n_choices = shapes["choice_mask"][0]
        if self.n_choices != self.n_questions + self.n_probes + 1:
            raise CRSError(f"observation space layout mismatch: {shapes}")
        super().__init__(observation_space, features_dim=self.n_choices + self.n_items_slots + hidden)
        self.K = n_personas if persona_attention else 1
        self.n_personas_model = n_personas
        self.persona_attention = persona_attention
        self.aspect_attention = aspect_attention
        self.hidden = hidden
        self.scale = 1.0 / math.sqrt(hidden)
        d0 = embed_dim
        self.user_personas = nn.Embedding(n_users, n_personas * d0)
        self.log_prior = nn.Embedding(n_users, n_personas)
        self.item_emb = nn.Embedding(n_items, d0)
        self.aspect_emb = nn.Embedding(n_aspects, d0)
        self.category_emb = nn.Embedding(max(n_categories, 1), d0)
        for table in (self.user_personas, self.item_emb, self.aspect_emb, self.category_emb):
            nn.init.normal_(table.weight, std=1.0)
            table.weight.requires_grad_(train_embeddings)
        nn.init.zeros_(self.log_prior.weight)
        self.log_prior.weight.requires_grad_(train_embeddings)
        self.enumerated = n_categories > 0
        self.persona_proj = nn.Linear(d0, hidden)
        self.item_proj = nn.Linear(d0, hidden)
        self.aspect_proj = nn.Linear(d0, hidden)
        self.relation = nn.Parameter(torch.zeros(3, hidden))  # question / accepted / rejected edges
        self.omega = nn.Linear(hidden, hidden, bias=False)
        n_item_feats = shapes["item_feats"][1]
        n_question_feats = shapes["question_feats"][1]
        n_probe_feats = shapes["probe_feats"][1] if self.n_probes else 0
        n_global = shapes["global"][0]
        self.item_head = _mlp(hidden + n_item_feats + 2, hidden, hidden)
        self.item_out = nn.Linear(hidden, 1)
        self.question_head = _mlp(hidden + n_question_feats + 3, hidden, 1)
        self.probe_head = _mlp(n_probe_feats + 3, hidden, 1)
        self.global_head = _mlp(n_global + 2 * hidden + 2, hidden, hidden)
        self.recommend_out = nn.Linear(hidden, 1)

    @torch.no_grad()
    def load_pretrained(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy pre-trained embeddings ("item", "aspect", "personas" (U, K, d), "log_prior" (U, K)).

        Raises:
            CRSError: A shape differs from the encoder's tables.
        """
        U = self.user_personas.num_embeddings
        targets = {
            "item": self.item_emb.weight,
            "aspect": self.aspect_emb.weight,
            "personas": self.user_personas.weight,
            "log_prior": self.log_prior.weight,
        }
        for key, weight in targets.items():
            if key not in arrays:
                continue
            value = torch.as_tensor(np.asarray(arrays[key]), dtype=weight.dtype)
            if key == "personas":
                value = value.reshape(U, -1)
            if tuple(value.shape) != tuple(weight.shape):
                raise CRSError(
                    f"pre-trained {key} has shape {tuple(value.shape)} but the encoder expects "
                    f"{tuple(weight.shape)}: build the encoder with the ranker's sizes"
                )
            # rescale each table to unit entry scale, like the random init (log_prior kept as is)
            if key != "log_prior":
                value = value / value.std().clamp_min(1e-6)
            weight.copy_(value)

    def _ids(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = x.round().long()
        return ids.clamp_min(0), ids >= 0

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        user = obs["user"].round().long().reshape(-1)
        B = user.shape[0]
        s = self.scale
        # personas and posterior ------------------------------------------------------------------
        P = self.persona_proj(self.user_personas(user).view(B, self.n_personas_model, -1))  # (B, K0, d)
        log_prior = torch.log_softmax(self.log_prior(user), dim=1)  # (B, K0)
        acc_ids, acc_ok = self._ids(obs["accepted_ids"])
        rej_ids, rej_ok = self._ids(obs["rejected_ids"])
        acc = self.aspect_proj(self.aspect_emb(acc_ids)) * acc_ok[..., None]  # (B, F, d)
        rej = self.aspect_proj(self.aspect_emb(rej_ids)) * rej_ok[..., None]
        if self.persona_attention:
            evidence = torch.einsum("bkd,bfd->bk", P, acc) * s - torch.einsum("bkd,bfd->bk", P, rej) * s
            log_beta = torch.log_softmax(log_prior + evidence, dim=1)  # (B, K)
        else:
            P = (log_prior.exp()[..., None] * P).sum(dim=1, keepdim=True)  # (B, 1, d)
            log_beta = torch.zeros(B, 1, device=P.device)
        beta = log_beta.exp()
        dialogue = acc.sum(1) - rej.sum(1)  # (B, d)

        # items: persona attention α and aspect attention ω over the local graph ---------------
        item_ids, _item_ok = self._ids(obs["item_ids"])
        E = self.item_proj(self.item_emb(item_ids))  # (B, N, d)
        q_ids, q_ok = self._ids(obs["question_ids"])
        table = self.category_emb if self.enumerated else self.aspect_emb
        Qe = self.aspect_proj(table(q_ids))  # (B, Q, d)
        neighbours = torch.cat(
            [Qe + self.relation[0], acc + self.relation[1], rej + self.relation[2]], dim=1
        )  # (B, L, d)
        N = E.shape[1]
        adjacency = torch.cat(
            [
                (obs["item_question"] > 0.5) & q_ok[:, None, :],
                acc_ok[:, None, :].expand(B, N, acc_ok.shape[1]),
                (obs["item_rejected"] > 0.5) & rej_ok[:, None, :],
            ],
            dim=2,
        )  # (B, N, L)
        alpha_logits = log_beta[:, :, None] + torch.einsum("bkd,bnd->bkn", P, E) * s
        alpha = torch.softmax(alpha_logits, dim=1)  # (B, K, N)
        if self.aspect_attention:
            scores = torch.einsum("bkd,bld->bkl", self.omega(P), neighbours) * s  # (B, K, L)
            omega = _masked_softmax(scores[:, :, None, :].expand(-1, -1, N, -1), adjacency[:, None], dim=3)
            h = torch.einsum("bknl,bld->bknd", omega, neighbours)  # (B, K, N, d)
        else:
            adj = adjacency.float()
            mean = adj / adj.sum(dim=2, keepdim=True).clamp_min(1.0)
            h = torch.einsum("bnl,bld->bnd", mean, neighbours)[:, None]  # (B, 1, N, d)
        per_persona = torch.einsum("bkd,bknd->bkn", P, E[:, None] + h) * s  # (B, K, N)
        preference = (alpha * per_persona).sum(dim=1)  # (B, N)
        h_mix = (alpha[..., None] * h).sum(dim=1)  # (B, N, d)
        fit = torch.einsum("bnd,bd->bn", E, dialogue) * s
        item_in = torch.cat([E + h_mix, obs["item_feats"], preference[..., None], fit[..., None]], dim=2)
        item_h = self.item_head(item_in)  # (B, N, H)
        item_logits = self.item_out(item_h).squeeze(2)  # (B, N)

        # questions, probes, recommend, value ---------------------------------------------------
        user_vec = (beta[..., None] * P).sum(dim=1)  # (B, d)
        q_pref = torch.einsum("bd,bqd->bq", user_vec, Qe) * s
        q_fit = torch.einsum("bd,bqd->bq", dialogue, Qe) * s
        q_top = obs["item_question"].mean(dim=1)  # share of the N item slots holding it (empty slots: no)
        q_in = torch.cat(
            [Qe, obs["question_feats"], q_pref[..., None], q_fit[..., None], q_top[..., None]], 2
        )
        q_logits = self.question_head(q_in).squeeze(2)  # (B, Q)
        if self.n_probes:
            pa_ids, pa_ok = self._ids(obs["probe_aspects"])  # (B, P, M)
            pa = self.aspect_proj(self.aspect_emb(pa_ids)) * pa_ok[..., None]
            pa = pa.sum(2) / pa_ok.sum(2, keepdim=True).clamp_min(1)  # (B, P, d)
            slot = torch.arange(self.n_probes, device=P.device).clamp_max(P.shape[1] - 1)
            P_slot = P[:, slot]  # (B, P, d)
            p_aff = (P_slot * pa).sum(2) * s
            p_fit = torch.einsum("bd,bpd->bp", dialogue, pa) * s
            p_beta = beta[:, slot] if self.persona_attention else torch.ones_like(p_aff)
            p_in = torch.cat([obs["probe_feats"], p_aff[..., None], p_fit[..., None], p_beta[..., None]], 2)
            p_logits = self.probe_head(p_in).squeeze(2)
        else:
            p_logits = torch.zeros(B, 0, device=P.device)
        item_weights = _masked_softmax(item_logits.detach(), obs["item_mask"] > 0.5, dim=1)
        pooled_items = (item_weights[..., None] * item_h).sum(1)
        # every slot, padded ones too (id -1 reads aspect 0), unlike the items: masking them would change
        # what models trained before compute (measured in session 40, the quick start moved from SR@15
        # 0.825 in 7.46 turns to 0.827 in 8.38)
        pooled_questions = (torch.softmax(q_logits.detach(), 1)[..., None] * Qe).sum(1)
        beta_entropy = -(beta * log_beta).sum(1, keepdim=True)
        top_pref = (item_weights * preference).sum(1, keepdim=True)
        g_in = torch.cat([obs["global"], pooled_items, pooled_questions, beta_entropy, top_pref], dim=1)
        g = self.global_head(g_in)
        rec_logit = self.recommend_out(torch.relu(g))
        return torch.cat([q_logits, p_logits, rec_logit, item_logits, g], dim=1)
