"""Mutation-audit tests of the persona × aspect encoder and the SB3 wrapper's named hand features.

The encoder tests reuse the hand-set tiny graph of `tests.policies.test_rl_encoder` (identity projections,
s = 1/2, personas p_1 = (2,0,0,0), p_2 = (0,2,0,0) with prior (.75, .25), items e_1 = (1,0,0,0),
e_2 = (0,1,0,0), aspects a_0 = (0,0,0,3), a_1 = (1,0,0,0), a_2 = (0,1,0,0)) and read the intermediates
off the heads' inputs: ``question_head`` gets [Qe (4), question_feats (1), q_pref (1), q_fit (1),
q_top (1)], ``item_head`` [e_v + h(v) (4), item_feats (1), preference (1), fit (1)] and ``probe_head``
[probe_feats (1), affinity (1), fit (1), β of the probed persona (1)].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from envs import make_env
from envs.sb3_features import FEATURE_NAMES, column
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.baseline_rankers import PopularityRanker
from policies.rl.encoder import PersonaAspectEncoder
from simulators.errors import CRSError
from tests.envs.conftest import tiny_catalog
from tests.envs.test_sb3_wrapper import FixedPersonaRanker
from tests.policies.test_rl_encoder import (
    ASPECTS,
    ITEMS,
    PERSONAS,
    PRIOR,
    SIGMA,
    D,
    E,
    N,
    Obs,
    P,
    Q,
    encoder,
    item_parts,
    observation,
    observation_space,
)

HEADS = ("question_head", "item_head", "probe_head", "global_head")


Seen = dict[str, torch.Tensor]


def forward(enc: PersonaAspectEncoder, obs: Obs) -> tuple[torch.Tensor, Seen, Seen]:
    """The encoder's output, each head's output (squeezed) and each head's first input (batch row 0)."""
    outputs: Seen = {}
    inputs: Seen = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...], result: torch.Tensor) -> None:
            inputs[name] = args[0][0].detach()
            outputs[name] = result[0].detach().squeeze(-1)

        return hook

    handles = [getattr(enc, name).register_forward_hook(keep(name)) for name in HEADS]
    try:
        with torch.no_grad():
            out = enc(obs)[0]
    finally:
        for handle in handles:
            handle.remove()
    return out, outputs, inputs


def head_inputs(enc: PersonaAspectEncoder, obs: Obs) -> Seen:
    """The first input of each head (batch row 0)."""
    return forward(enc, obs)[2]


def test_an_item_without_neighbours_aggregates_nothing() -> None:
    """Guards the masked softmax: an item holding no question aspect, with no accepted or rejected
    aspects, has no neighbour, so h = 0 (not the mean of the padded neighbour slots)."""
    obs = observation()
    obs["item_question"][0, 0] = torch.tensor([0.0, 0.0])  # item 1 now holds neither question aspect
    for aspect in (True, False):
        mixed, preference = item_parts(head_inputs(encoder(aspect=aspect), obs))
        assert mixed[0].tolist() == pytest.approx(ITEMS[1], abs=1e-6)
        # α = (3e, 1) / (3e + 1) (test_rl_encoder); p_1·e_1/2 = 1, p_2·e_1/2 = 0
        assert preference[0].item() == pytest.approx(3 * E / (3 * E + 1), abs=1e-5)


def test_aspect_id_zero_is_a_real_accepted_aspect_not_padding() -> None:
    """Guards the padding rule (id < 0 is padding): accepted aspect 0 must become a neighbour of every
    item; an off-by-one (id <= 0 padding) would drop it."""
    obs = observation(accepted=(0, -1))
    mixed, _ = item_parts(head_inputs(encoder(aspect=False), obs))
    # item 1's neighbours: a_1 (question it holds) and a_0 (accepted): h = (a_1 + a_0)/2 = (.5, 0, 0, 1.5)
    assert mixed[0].tolist() == pytest.approx([1.5, 0.0, 0.0, 1.5], abs=1e-6)
    # item 2's: a_1, a_2 (questions) and a_0: h = (1, 1, 0, 3)/3
    assert mixed[1].tolist() == pytest.approx([1 / 3, 1 + 1 / 3, 0.0, 1.0], abs=1e-6)


def test_dialogue_fit_adds_accepted_and_subtracts_rejected_aspects() -> None:
    """Guards the dialogue vector Σ accepted − Σ rejected that the item, question and probe fits read:
    a sign slip or a dropped rejection would score a rejected aspect's items as a match."""
    # accepted a_1 = (1,0,0,0), rejected a_2 = (0,1,0,0): dialogue = (1, -1, 0, 0), fit = dialogue·x/2
    seen = head_inputs(encoder(), observation(accepted=(1, -1), rejected=(2, -1)))
    item_fit = seen["item_head"][:2, D + 2].tolist()  # items 1 (= a_1) and 2 (= a_2)
    assert item_fit == pytest.approx([0.5, -0.5], abs=1e-6)
    question_fit = seen["question_head"][:, D + 2].tolist()  # questions about a_1 and a_2
    assert question_fit == pytest.approx([0.5, -0.5], abs=1e-6)
    probe_fit = seen["probe_head"][:, 2].tolist()  # probe k lists a_k
    assert probe_fit == pytest.approx([0.5, -0.5], abs=1e-6)


def test_each_edge_kind_adds_its_own_relation_vector() -> None:
    """Guards the relation offsets: question, accepted and rejected neighbours each add their own
    relation row, so an accepted aspect and a rejected one are told apart from a question about them."""
    enc = encoder(aspect=False)
    relations = [[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0]]  # question, acc, rej
    with torch.no_grad():
        enc.relation.copy_(torch.tensor(relations))
    obs = observation(accepted=(1, -1), rejected=(2, -1))
    obs["item_rejected"][0, 1, 0] = 1.0  # item 2 holds the rejected a_2
    mixed, _ = item_parts(head_inputs(enc, obs))
    # item 1: question a_1 + r_q = (1,0,1,0), accepted a_1 + r_acc = (1,0,0,1): e + mean = (2, 0, .5, .5)
    assert mixed[0].tolist() == pytest.approx([2.0, 0.0, 0.5, 0.5], abs=1e-6)
    # item 2: (1,0,1,0), a_2 + r_q = (0,1,1,0), (1,0,0,1), rejected a_2 + r_rej = (0,1,0,-1);
    # their mean is (.5, .5, .5, 0)
    assert mixed[1].tolist() == pytest.approx([0.5, 1.5, 0.5, 0.0], abs=1e-6)


def test_facts_and_questions_embed_an_aspect_alike() -> None:
    """Guards the projections: accepted and rejected aspects go through the aspect projection, like the
    questions, so an aspect is one vector whatever edge holds it (the items have their own projection)."""
    enc = encoder(aspect=False)
    with torch.no_grad():
        enc.item_proj.weight.mul_(2.0)  # items now read 2 e_v; aspects still a
    obs = observation(accepted=(1, -1), rejected=(2, -1))
    obs["item_rejected"][0, 1, 0] = 1.0  # item 2 holds the rejected a_2
    mixed, _ = item_parts(head_inputs(enc, obs))
    # item 1: 2 e_1 + mean(a_1 question, a_1 accepted) = (3, 0, 0, 0)
    assert mixed[0].tolist() == pytest.approx([3.0, 0.0, 0.0, 0.0], abs=1e-6)
    # item 2: 2 e_2 + mean(a_1, a_2 questions, a_1 accepted, a_2 rejected) = (.5, 2.5, 0, 0)
    assert mixed[1].tolist() == pytest.approx([0.5, 2.5, 0.0, 0.0], abs=1e-6)


def test_question_preference_reads_the_posterior_weighted_user_vector() -> None:
    """Guards q_pref = (Σ_k β_k p_k)·a/2: the question scores must follow the persona posterior, not
    an unweighted mean of the personas."""
    seen = head_inputs(encoder(), observation())
    # β = π = (.75, .25): user vector (1.5, .5, 0, 0); a_1 → .75, a_2 → .25
    assert seen["question_head"][:, D + 1].tolist() == pytest.approx([0.75, 0.25], abs=1e-6)
    seen = head_inputs(encoder(), observation(accepted=(1, -1)))
    beta = (3 * E / (3 * E + 1), 1 / (3 * E + 1))  # β after a_1 is accepted (test_rl_encoder)
    assert seen["question_head"][:, D + 1].tolist() == pytest.approx(list(beta), abs=1e-6)


def test_question_top_share_is_the_share_of_item_slots_holding_it() -> None:
    """Guards q_top: a_1 is held by 2 of the 3 item slots and a_2 by 1 (a share, not a count)."""
    seen = head_inputs(encoder(), observation())
    assert seen["question_head"][:, D + 3].tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-6)


def test_aspect_attention_scores_neighbours_through_its_own_projection() -> None:
    """Guards ω = softmax(p_k W e_a/√d): with W swapping the first two axes persona 1 attends to a_2
    and persona 2 to a_1, the reverse of W = I; dropping W would give the W = I weights."""
    enc = encoder()
    swap = torch.eye(D)[[1, 0, 2, 3]]
    with torch.no_grad():
        enc.omega.weight.copy_(swap)
    mixed, _ = item_parts(head_inputs(enc, observation()))
    # item 2, neighbours a_1, a_2: W p_1 = (0,2,0,0) → ω_1 = softmax(0, 1) = (1-σ, σ); W p_2 → (σ, 1-σ);
    # α = (3, e)/(3 + e) as with W = I (α does not read W)
    alpha = (3 / (3 + E), E / (3 + E))
    h = [alpha[0] * (1 - SIGMA) + alpha[1] * SIGMA, alpha[0] * SIGMA + alpha[1] * (1 - SIGMA)]
    assert mixed[1].tolist() == pytest.approx([h[0], 1 + h[1], 0.0, 0.0], abs=1e-5)


def test_probe_k_reads_persona_k() -> None:
    """Guards the probe → persona slot map: probe k lists a_k, which matches p_k (p_k·a_k/2 = 1) and
    not the other persona (0)."""
    seen = head_inputs(encoder(personas=[[2.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]]), observation())
    assert seen["probe_head"][:, 1].tolist() == pytest.approx([1.0, 2.0], abs=1e-6)


# p_1 now leans on a_0's axis too: a padded fact or probe slot (id -1 reads a_0) would move its scores
LEANING = [[2.0, 0.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0]]


def test_padded_fact_slots_are_no_evidence_for_the_posterior() -> None:
    """Guards the fact masks: the padded accepted and rejected slots (id -1, read as a_0, with
    p_1·a_0/2 = 1.5) must not move β; a real accepted a_1 moves it as β ∝ π_k exp(p_k·a_1/2)."""
    _, _, seen = forward(encoder(personas=LEANING), observation())
    assert seen["probe_head"][:, 3].tolist() == pytest.approx(list(PRIOR), abs=1e-6)
    _, _, seen = forward(encoder(personas=LEANING), observation(rejected=(2, -1)))
    # p_1·a_2 = 0, p_2·a_2/2 = 1: β ∝ (.75, .25 e^-1)
    beta = [3 * E / (3 * E + 1), 1 / (3 * E + 1)]
    assert seen["probe_head"][:, 3].tolist() == pytest.approx(beta, abs=1e-6)


def test_a_probe_scores_the_mean_of_its_listed_aspects_only() -> None:
    """Guards the probe aspect mean: probe 1 lists a_1 and a padded slot (read as a_0, which p_1 leans
    on) that must count neither in the sum nor in the mean; probe 2 lists a_1 and a_2, mean (.5,.5,0,0)."""
    obs = observation()
    obs["probe_aspects"] = torch.tensor([[[1.0, -1.0], [1.0, 2.0]]])
    _, _, seen = forward(encoder(personas=LEANING), obs)
    # p_1·a_1/2 = 1; p_2·(.5, .5, 0, 0)/2 = .5
    assert seen["probe_head"][:, 1].tolist() == pytest.approx([1.0, 0.5], abs=1e-6)


def test_the_prior_is_normalised_before_it_weighs_the_personas() -> None:
    """Guards the prior's log-softmax: log-prior rows (log 3, log 1) and (log .75, log .25) are the same
    prior, so the persona-blind mean persona, and every score, must be the same."""
    obs = observation(accepted=(1, -1))
    base = encoder(persona=False)
    raw = encoder(persona=False)
    with torch.no_grad():
        raw.log_prior.weight.copy_(torch.tensor([[3.0, 1.0]]).log())
    out, _, _ = forward(base, obs)
    moved, _, seen = forward(raw, obs)
    assert (out - moved).abs().max().item() < 1e-5
    # the mean persona .75 p_1 + .25 p_2 = (1.5, .5, 0, 0): probe affinities (.75, .25)
    assert seen["probe_head"][:, 1].tolist() == pytest.approx([0.75, 0.25], abs=1e-6)


def test_a_fresh_encoder_starts_from_a_uniform_persona_prior() -> None:
    """Guards the prior's zero init: without pre-training every persona starts equally likely."""
    enc = PersonaAspectEncoder(observation_space(), n_users=3, n_items=3, n_aspects=3, n_personas=2)
    assert torch.equal(enc.log_prior.weight, torch.zeros(3, 2))


def test_choice_logits_are_questions_then_probes_then_recommend() -> None:
    """Guards the output layout that the policy's choice indices rely on: [Q question logits,
    P probe logits, the recommend logit, N item logits, the value hidden state]."""
    enc = encoder()
    out, outputs, _ = forward(enc, observation())
    assert out.shape == (Q + P + 1 + N + D,)
    assert out[:Q].tolist() == pytest.approx(outputs["question_head"].tolist(), abs=1e-6)
    assert out[Q : Q + P].tolist() == pytest.approx(outputs["probe_head"].tolist(), abs=1e-6)
    assert out[Q + P + 1 + N :].tolist() == pytest.approx(outputs["global_head"].tolist(), abs=1e-6)


def test_pooled_questions_weigh_each_question_by_its_choice_probability() -> None:
    """Guards the value's question pooling: Σ_q softmax(question logits)_q · a_q, not a plain mean."""
    out, _, seen = forward(encoder(), observation())
    weights = torch.softmax(out[:Q], dim=0).tolist()  # questions about a_1 = (1,0,0,0), a_2 = (0,1,0,0)
    # the global head reads [global (1), pooled items (4), pooled questions (4), ...]
    assert seen["global_head"][1 + D : 1 + 2 * D].tolist() == pytest.approx([*weights, 0.0, 0.0], abs=1e-6)


def test_an_observation_space_of_another_layout_is_refused() -> None:
    """Guards the layout check: a choice mask that is not Q + P + 1 wide would misalign every logit."""
    space = observation_space()
    space.spaces["choice_mask"] = spaces.Box(-np.inf, np.inf, shape=(Q + P,), dtype=np.float32)
    with pytest.raises(CRSError, match="layout mismatch"):
        PersonaAspectEncoder(space, n_users=1, n_items=3, n_aspects=3, n_personas=2)


def test_load_pretrained_loads_the_tables_given_when_one_is_missing() -> None:
    """Guards the skip of a table not given: a missing "item" table must not stop the others loading."""
    enc = encoder()
    aspects = np.array([[1.0, -1.0, 1.0, -1.0]] * 3)  # std 1 (Bessel): loaded as is
    enc.load_pretrained({"aspect": aspects, "log_prior": np.log([[0.6, 0.4]])})
    assert enc.item_emb.weight.tolist() == [pytest.approx(row) for row in ITEMS]
    assert enc.aspect_emb.weight.detach().numpy() == pytest.approx(aspects / aspects.std(ddof=1))
    assert enc.log_prior.weight[0].tolist() == pytest.approx([np.log(0.6), np.log(0.4)])


def test_item_conditioned_persona_attention_starts_from_the_posterior() -> None:
    """Guards α_k(v) = softmax_k(log β_k + p_k·e_v/√d): after a_1 is accepted α must start from the
    posterior β, not from the prior π."""
    mixed, preference = item_parts(head_inputs(encoder(aspect=False), observation(accepted=(1, -1))))
    # β ∝ (3e, 1); item 2 (e_2): α ∝ (3e · e^0, 1 · e^1) = (3/4, 1/4)
    # its neighbours a_1, a_2 (questions) and a_1 (accepted): h = (2/3, 1/3, 0, 0)
    assert mixed[1].tolist() == pytest.approx([2 / 3, 4 / 3, 0.0, 0.0], abs=1e-6)
    # p_1·(e_2 + h)/2 = 2/3, p_2·(e_2 + h)/2 = 4/3: preference = 3/4 · 2/3 + 1/4 · 4/3 = 5/6
    assert preference[1].item() == pytest.approx(5 / 6, abs=1e-5)


def test_load_pretrained_keeps_each_users_personas_in_its_own_row() -> None:
    """Guards the (U, K, d) → (U, K·d) layout of the persona table: user u's row holds its K personas
    in order, not a mix of users."""
    enc = PersonaAspectEncoder(
        observation_space(), n_users=2, n_items=3, n_aspects=3, n_personas=2, embed_dim=D
    )
    personas = np.arange(2 * 2 * D, dtype=np.float64).reshape(2, 2, D)  # user, persona, axis
    enc.load_pretrained({"personas": personas})
    scale = personas.std(ddof=1)
    for user in range(2):
        row = enc.user_personas.weight[user].detach().numpy()
        assert row == pytest.approx(np.concatenate(personas[user]) / scale, rel=1e-5)


def test_load_pretrained_refuses_a_table_that_would_broadcast() -> None:
    """Guards the shape check: a one-row item table would broadcast into every item's row unnoticed."""
    enc = encoder()
    with pytest.raises(CRSError, match="pre-trained item has shape"):
        enc.load_pretrained({"item": np.ones((1, D))})
    assert enc.item_emb.weight.tolist() == [pytest.approx(row) for row in ITEMS]


def test_enumerated_questions_read_the_category_table() -> None:
    """Guards the table switch: in an enumerated env a question id is a category, so its embedding is
    the category table's row, not the aspect of the same id."""
    torch.manual_seed(0)
    enc = PersonaAspectEncoder(
        observation_space(), n_users=1, n_items=3, n_aspects=3, n_categories=2, n_personas=2,
        embed_dim=D, hidden=D,
    )  # fmt: skip
    categories = [[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    with torch.no_grad():
        enc.aspect_proj.weight.copy_(torch.eye(D))
        enc.aspect_proj.bias.zero_()
        enc.aspect_emb.weight.copy_(torch.tensor(ASPECTS))
        enc.category_emb.weight.copy_(torch.tensor(categories))
        enc.user_personas.weight.copy_(torch.tensor(PERSONAS).reshape(1, -1))
        enc.log_prior.weight.copy_(torch.tensor([PRIOR]).log())
    obs = observation()
    obs["question_ids"] = torch.tensor([[1.0, 0.0]])  # categories 1, 0
    seen = head_inputs(enc.eval(), obs)
    rows = seen["question_head"][:, :D]
    assert [row.tolist() for row in rows] == [pytest.approx(categories[1]), pytest.approx(categories[0])]


# the SB3 wrapper's named features ---------------------------------------------------------------

# what ranker_features=False hides, by the feature definitions in `envs.sb3_features`: everything read
# off the ranker's scores or persona posterior, and nothing that the state or the catalogue gives
HIDDEN = {
    "question_feats": {"score_z", "share_weighted", "entropy_weighted", "ranker_pick"},
    "probe_feats": {"posterior", "share_weighted"},
    "item_feats": {"score_z", "rank", "prob", "cum_prob"},
    "global": {"topk_mass", "top1_prob", "score_entropy"},
}


def tiny_run(**config: Any) -> tuple[SlateActionWrapper, list[dict[str, np.ndarray]]]:
    """The tiny catalogue (user 0 likes item 2) in the multiple-choice setting with two probe slots and
    one-item slates: after its opening (aspect 3 accepted; candidates 2, 4, 5, best first) it asks
    aspect 2 (rejected), shows item 4 and item 5 (both rejected), then asks aspect 1 (accepted). The env
    and the observations after the reset and after each of the four steps."""
    catalog = tiny_catalog()
    items, aspects = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2]), np.array([0.4, 0.8, 0.2, 0.6])
    ranker = FixedPersonaRanker(items, aspects, np.array([0.7, 0.3]))
    base = make_env(
        catalog=catalog, split="test", user="single", setting="multiple_choice", n_personas=2, slate_size=1
    )
    env = SlateActionWrapper(base, ranker, WrapperConfig(**config))
    seen = [env.reset(seed=0)[0]]
    assert env.base.state.history[0].accepted == (3,) and env.n_probes == 2
    assert env.candidate_items.tolist() == [2, 4, 5]
    seen.append(env.step(np.array([int(np.flatnonzero(env.question_ids == 2)[0]), 0]))[0])
    assert env.base.state.history[-1].rejected == (2,)
    for item in (4, 5):
        seen.append(env.step(np.array([env.recommend_choice, 1]))[0])  # item slot 1: the second best
        last = env.base.state.history[-1]
        assert last.slate == (item,) and last.accepted_item is None
    seen.append(env.step(np.array([int(np.flatnonzero(env.question_ids == 1)[0]), 0]))[0])
    assert env.base.state.history[-1].accepted == (1,)
    return env, seen


def test_fact_counts_and_rejected_items_use_their_documented_scales() -> None:
    """Guards the scales: accepted / rejected aspects in units of 8, an item's rejected aspects in 4,
    rejected items over k·T (a slate of k rejected every turn)."""
    env, (_, asked, shown_4, _, _) = tiny_run()
    assert asked["global"][column("global", "n_accepted")] == pytest.approx(1 / 8)
    assert asked["global"][column("global", "n_rejected")] == pytest.approx(1 / 8)
    # slots hold candidates 2 {0,1,3}, 4 {2,3}, 5 {0,3}: only item 4 holds the rejected aspect 2
    held = asked["item_feats"][:3, column("item_feats", "rejected_aspects")]
    assert held.tolist() == pytest.approx([0.0, 1 / 4, 0.0])
    # one rejected item over k·T = 1 · 15
    assert env.slate_size == 1 and env.base.max_turns == 15
    assert shown_4["global"][column("global", "n_rejected_items")] == pytest.approx(1 / 15)


def test_without_ranker_features_exactly_the_ranker_derived_columns_are_zeroed() -> None:
    """Guards the hidden-feature list: with ranker_features=False the score-, rank- and posterior-derived
    columns are zero and every state-derived one (shares, counts, turn, answers) is kept."""
    (_, shown), (_, hidden) = tiny_run(), tiny_run(ranker_features=False)
    for key, names in FEATURE_NAMES.items():
        for name in names:
            col = column(key, name)
            a = np.stack([obs[key][..., col] for obs in shown])
            b = np.stack([obs[key][..., col] for obs in hidden])
            # every feature is non-zero in some state, so hiding it, or not, is seen
            assert a.any(), (key, name)
            if name in HIDDEN[key]:
                assert not b.any(), (key, name)
            else:
                np.testing.assert_array_equal(b, a, err_msg=f"{key} {name}")


def test_without_ranker_features_an_env_without_probes_still_observes() -> None:
    """Guards hiding only the blocks an observation has: with no probe slots there is no probe block
    to zero, and the item scores are still hidden."""
    catalog = tiny_catalog()
    base = make_env(catalog=catalog, split="test", user="single")
    env = SlateActionWrapper(base, PopularityRanker(catalog), WrapperConfig(ranker_features=False))
    obs, _ = env.reset(seed=0)
    assert env.n_probes == 0 and "probe_feats" not in obs
    assert not obs["item_feats"][..., column("item_feats", "score_z")].any()
    assert obs["global"][column("global", "turn")] > 0  # the state's features are kept
