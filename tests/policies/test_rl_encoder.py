"""The persona × aspect encoder, computed by hand on a tiny graph: α, β, ω, the ablations and pooling.

Every test builds the encoder with identity projections (embed_dim = hidden = 4, so the attention scale
is s = 1/√4 = 1/2), no relation offsets and ω's W = I, so personas, items and aspects are the hand-set
vectors below and each expectation follows from the formulas in `policies.rl.encoder`'s docstring.
The intermediates are read off the inputs of the heads (forward pre-hooks), the code is unchanged:
``item_head`` gets [e_v + h(v) (4), item_feats (1), preference (1), fit (1)], ``probe_head`` gets
[probe_feats (1), affinity (1), fit (1), β of the probed persona (1)] and ``global_head`` gets
[global (1), pooled items (4), pooled questions (4), entropy of β (1), pooled preference (1)].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from gymnasium import spaces

from policies.rl.encoder import PersonaAspectEncoder

D = 4  # embed_dim = hidden: s = 1/2
E = math.e
SIGMA = E / (1 + E)  # softmax(1, 0)[0]
PRIOR = (0.75, 0.25)  # π of the user's two personas
# user 0's personas p_1, p_2
PERSONAS = [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]
# items 0, 1, 2 (item 0 is also what a padded id -1 reads after clamping)
ITEMS = [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
# aspects 0, 1, 2 (a padded aspect id -1 reads aspect 0, which is deliberately not zero)
ASPECTS = [[0.0, 0.0, 0.0, 3.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
Q, P, M, N, F = 2, 2, 2, 3, 2  # question, probe slots, aspects per probe, item slots, fact slots
HEADS = ("item_head", "probe_head", "global_head")
Obs = dict[str, torch.Tensor]


def observation_space() -> spaces.Dict:
    def box(*shape: int) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)

    return spaces.Dict(
        {
            "choice_mask": box(Q + P + 1),
            "item_mask": box(N),
            "user": box(1),
            "question_ids": box(Q),
            "question_feats": box(Q, 1),
            "item_ids": box(N),
            "item_feats": box(N, 1),
            "accepted_ids": box(F),
            "rejected_ids": box(F),
            "item_question": box(N, Q),
            "item_rejected": box(N, F),
            "global": box(1),
            "probe_aspects": box(P, M),
            "probe_feats": box(P, 1),
        }
    )


def encoder(
    persona: bool = True, aspect: bool = True, personas: list[list[float]] = PERSONAS
) -> PersonaAspectEncoder:
    """Identity projections and hand-set tables; the heads keep their (seeded) random weights."""
    torch.manual_seed(0)
    enc = PersonaAspectEncoder(
        observation_space(),
        n_users=1,
        n_items=len(ITEMS),
        n_aspects=len(ASPECTS),
        n_personas=2,
        embed_dim=D,
        hidden=D,
        persona_attention=persona,
        aspect_attention=aspect,
    )
    with torch.no_grad():
        for layer in (enc.persona_proj, enc.item_proj, enc.aspect_proj):
            layer.weight.copy_(torch.eye(D))
            layer.bias.zero_()
        enc.omega.weight.copy_(torch.eye(D))
        enc.relation.zero_()
        enc.user_personas.weight.copy_(torch.tensor(personas).reshape(1, -1))
        enc.log_prior.weight.copy_(torch.tensor([PRIOR]).log())
        enc.item_emb.weight.copy_(torch.tensor(ITEMS))
        enc.aspect_emb.weight.copy_(torch.tensor(ASPECTS))
    return enc.eval()


def observation(
    accepted: tuple[float, float] = (-1, -1),
    rejected: tuple[float, float] = (-1, -1),
    padded_item_feat: float = 0.0,
) -> Obs:
    """Item slots (item 1, item 2, padding); questions (aspect 1, aspect 2); item 1 holds aspect 1,
    item 2 holds aspects 1 and 2; probe k lists aspect k."""
    obs = {
        "choice_mask": [1.0] * (Q + P + 1),
        "item_mask": [1.0, 1.0, 0.0],
        "user": [0.0],
        "question_ids": [1.0, 2.0],
        "question_feats": [[0.1], [-0.2]],
        "item_ids": [1.0, 2.0, -1.0],
        "item_feats": [[0.3], [-0.4], [padded_item_feat]],
        "accepted_ids": list(accepted),
        "rejected_ids": list(rejected),
        "item_question": [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
        "item_rejected": [[0.0] * F] * N,
        "global": [0.5],
        "probe_aspects": [[1.0, -1.0], [2.0, -1.0]],
        "probe_feats": [[0.2], [0.7]],
    }
    return {key: torch.tensor([value], dtype=torch.float32) for key, value in obs.items()}


def run(enc: PersonaAspectEncoder, obs: Obs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The encoder's output and the first input of each head (batch row 0)."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            seen[name] = args[0][0].detach()

        return hook

    handles = [getattr(enc, name).register_forward_pre_hook(keep(name)) for name in HEADS]
    try:
        with torch.no_grad():
            out = enc(obs)
    finally:
        for handle in handles:
            handle.remove()
    return out[0], seen


def item_parts(seen: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(e_v + h(v) per item slot (N, 4), preference per item slot (N,))."""
    item_in = seen["item_head"]
    return item_in[:, :D], item_in[:, D + 1]


def probe_beta(seen: dict[str, torch.Tensor]) -> list[float]:
    return seen["probe_head"][:, 3].tolist()


def test_persona_and_aspect_attention_give_the_hand_computed_preferences() -> None:
    _, seen = run(encoder(), observation())
    mixed, preference = item_parts(seen)
    # item 1 (e = (1,0,0,0)), one neighbour a_1: α = softmax_k(log π_k + p_k·e/2) = softmax(log .75 + 1,
    # log .25) = (3e, 1) / (3e + 1) (a softmax over the personas); h = a_1; p_1·(e + a_1)/2 = 2, p_2·.. = 0
    assert preference[0].item() == pytest.approx(2 * 3 * E / (3 * E + 1), abs=1e-5)
    assert mixed[0].tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0], abs=1e-6)
    # item 2 (e = (0,1,0,0)), neighbours a_1, a_2: α = softmax(log .75 + 0, log .25 + 1) = (3, e) / (3 + e)
    # ω_1 = softmax_a(p_1·a/2) = softmax(1, 0) = (σ, 1-σ), so h_1 = (σ, 1-σ, 0, 0), p_1·(e + h_1)/2 = σ;
    # ω_2 = softmax(0, 1) = (1-σ, σ), so h_2 = (1-σ, σ, 0, 0), p_2·(e + h_2)/2 = 1 + σ
    alpha = (3 / (3 + E), E / (3 + E))
    expected = alpha[0] * SIGMA + alpha[1] * (1 + SIGMA)
    assert preference[1].item() == pytest.approx(expected, abs=1e-5)
    h_mix = [alpha[0] * SIGMA + alpha[1] * (1 - SIGMA), alpha[0] * (1 - SIGMA) + alpha[1] * SIGMA, 0, 0]
    assert mixed[1].tolist() == pytest.approx([h_mix[0], 1 + h_mix[1], 0.0, 0.0], abs=1e-5)


@pytest.mark.parametrize("persona, aspect", [(True, True), (False, True), (True, False), (False, False)])
def test_an_item_with_one_neighbour_aggregates_exactly_that_neighbour(persona: bool, aspect: bool) -> None:
    # item 1's only neighbour is a_1 (shared with item 2; the padded accepted and rejected fact slots are
    # no neighbours): ω = 1 over its neighbours, or the mean over one, and α sums to 1 over the personas,
    # so e + h = e_1 + a_1 = (2, 0, 0, 0) whatever the switches
    mixed, _ = item_parts(run(encoder(persona, aspect), observation())[1])
    assert mixed[0].tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0], abs=1e-6)


def test_aspect_blind_takes_the_plain_mean_of_the_item_neighbours() -> None:
    mixed, preference = item_parts(run(encoder(aspect=False), observation())[1])
    # item 2: h = (a_1 + a_2) / 2 = (.5, .5, 0, 0) for both personas (2 neighbours, not the 2 + 2 + 2 slots)
    assert mixed[1].tolist() == pytest.approx([0.5, 1.5, 0.0, 0.0], abs=1e-6)
    # α = (3, e) / (3 + e) as with aspect attention; p_1·(e + h)/2 = .5, p_2·(e + h)/2 = 1.5
    assert preference[1].item() == pytest.approx((3 * 0.5 + E * 1.5) / (3 + E), abs=1e-5)


def test_the_posterior_moves_towards_accepted_and_away_from_rejected_aspects() -> None:
    # β_k ∝ π_k exp(Σ_accepted p_k·a/2 − Σ_rejected p_k·a/2); a_1 resembles p_1 (p_1·a_1/2 = 1, p_2·a_1 = 0)
    _, none = run(encoder(), observation())
    assert probe_beta(none) == pytest.approx(list(PRIOR), abs=1e-6)
    _, accepted = run(encoder(), observation(accepted=(1, -1)))
    assert probe_beta(accepted) == pytest.approx([3 * E / (3 * E + 1), 1 / (3 * E + 1)], abs=1e-6)
    _, rejected = run(encoder(), observation(rejected=(1, -1)))
    # π_1 e^-1 : π_2 = 3 : e, so rejecting a_1 lowers β_1 from .75 to 3 / (3 + e) = .52
    assert probe_beta(rejected) == pytest.approx([3 / (3 + E), E / (3 + E)], abs=1e-6)
    # entropy of β, as the global head sees it
    beta = probe_beta(rejected)
    assert rejected["global_head"][-2].item() == pytest.approx(-sum(b * math.log(b) for b in beta), abs=1e-6)


def test_persona_blind_is_the_prior_weighted_mean_persona_whatever_the_evidence() -> None:
    # .75 p_1 + .25 p_2 = (1.5, .5, 0, 0): two users with that same mean are one user to the persona-blind
    # encoder, even after evidence (a_1 accepted, a_2 rejected) that would split their posteriors
    obs = observation(accepted=(1, -1), rejected=(2, -1))
    out, seen = run(encoder(persona=False), obs)
    mean = [1.5, 0.5, 0.0, 0.0]
    same, _ = run(encoder(persona=False, personas=[mean, mean]), obs)
    torch.testing.assert_close(out, same, rtol=0, atol=1e-6)
    # the probe of persona k reads the one collapsed persona: affinity p̄·a_k/2 = (.75, .25), β = 1
    assert seen["probe_head"][:, 1].tolist() == pytest.approx([0.75, 0.25], abs=1e-6)
    assert probe_beta(seen) == pytest.approx([1.0, 1.0], abs=1e-6)


def test_item_pooling_reads_only_the_valid_item_slots() -> None:
    enc = encoder()
    out, seen = run(enc, observation())
    _, preference = item_parts(seen)
    logits = out[Q + P + 1 : Q + P + 1 + N]
    # pooled preference = Σ_valid softmax(item logits over the 2 valid slots) · preference
    weights = torch.softmax(logits[:2], dim=0)
    assert seen["global_head"][-1].item() == pytest.approx((weights * preference[:2]).sum().item(), abs=1e-5)
    # so what the padded slot holds changes its own logit, and nothing else
    moved, _ = run(enc, observation(padded_item_feat=5.0))
    padded = Q + P + 1 + 2
    assert (moved[padded] - out[padded]).abs().item() > 1e-4
    keep = torch.ones_like(out, dtype=torch.bool)
    keep[padded] = False
    torch.testing.assert_close(moved[keep], out[keep], rtol=0, atol=1e-6)


def test_load_pretrained_rescales_each_table_to_unit_std_and_keeps_the_prior() -> None:
    enc = encoder()
    rng = np.random.default_rng(0)
    arrays = {
        "item": 3.0 * rng.normal(size=(3, D)),
        "aspect": 0.1 * rng.normal(size=(3, D)),
        "personas": 5.0 * rng.normal(size=(1, 2, D)),
        "log_prior": np.log([[0.6, 0.4]]),
    }
    enc.load_pretrained(arrays)
    tables = {"item": enc.item_emb, "aspect": enc.aspect_emb, "personas": enc.user_personas}
    for key, table in tables.items():
        value = arrays[key].reshape(table.weight.shape)
        # value / std(value) (torch's std, with Bessel's correction): same directions, unit scale
        expected = torch.tensor(value / value.std(ddof=1), dtype=torch.float32)
        torch.testing.assert_close(table.weight.detach(), expected, rtol=1e-5, atol=1e-6)
        assert table.weight.std().item() == pytest.approx(1.0, abs=1e-5)
    log_prior = enc.log_prior.weight.detach()[0].tolist()
    assert log_prior == pytest.approx([math.log(0.6), math.log(0.4)], abs=1e-6)
