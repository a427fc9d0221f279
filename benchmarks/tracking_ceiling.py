"""How well could any persona memory track the switch on the persona world? (#16, tracking ≥ 80%)

Plays ask-4 over a ranker with the frozen prior on returning users of the switch regime (test
targets, as `crs eval --sessions`), then scores each session's feedback with the persona world's *own*
generative model instead of a learned one: for each of the user's true personas p,

    success (item v* accepted):  ℓ_p = log P(v* | p)
    failure:                     ℓ_p = log Σ_{v ∉ rejected slates} P(v | p) · Π_{asked a} P(answer_a | v)

with P(v | p) = softmax_v(u_p(v)) the world's item distribution of p (`simulators.persona_world`, its
popularity term recovered from the world's seed) and P(answer | v) = 1 − ε when the answer is what v
implies, ε otherwise (ε: the world user's answer noise). That is the Bayes-optimal evidence of the
session about its active persona, given the dialogue the policy had. The switching filter
(`policies.memory`) then runs over the user's true persona slots, starting from the user's true
mixture, for a grid of constants, and the best tracking after the switch (the memory's top persona is
the true active one, sessions after the change, as `crs.app.sessions`) is the ceiling of what a memory
reaches from these dialogues. Printed beside it:

- how often one session's true evidence names the active persona, in successful and failed sessions;
- the tracking of a memory told every session's active persona (perfect evidence) and of one that
  knows the dominant persona after the switch (the share of sessions whose active persona is it);
- a label-free middle ground: a mixture of 8 global log-linear personas fitted by EM on the train
  interactions (`policies.pretrain.mixture`: the world's own model family, its parameters learned), whose
  components are mapped onto each user's ranker slots by the Hungarian matching of the two models'
  personas of the user's train items; its evidence drives the filter over the ranker's slots, scored
  against the true active persona's matched slot as `crs eval --sessions` scores the memory;
- the same filter grid on the memory's own evidence (`PersonaMemory.log_likelihood`, `DEFAULT_RULE`'s
  weights), for comparison;
- what caps a memory over the ranker's K persona slots: the share of the sessions after the switch
  whose active persona has no slot (`crs.app.sessions.match_personas`: K below the user's personas),
  and how often the ranker's persona of a test interaction (`persona_of`) is the matched true one.

    nice python benchmarks/tracking_ceiling.py --ranker runs/main-s10/ranker --users 1000 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import scipy.sparse as sp
import torch
from _cli import positive_int, run_script  # this folder is on sys.path as a script
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from tune_memory_update import SESSIONS, replay  # this folder is on sys.path as a script

from crs.app.sessions import match_personas
from envs.sessions import run_sequences
from policies.memory import PersonaMemory, SessionEvidence, UpdateRule
from policies.pretrain.mixture import PersonaMixture, fit_persona_mixture
from policies.rankers import RankerSpec
from policies.rules import make_rule_policy
from simulators import persona_world as world
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.returning import returning_sequences

FILTERS = (
    (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),  # switch rate h
    (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99),  # dominance m
    (0.25, 0.5, 1.0, 2.0),  # weight of the session's log-likelihood
)
"""The filters tried (`policies.memory.UpdateRule`), wider than `tune_memory_update.GRID`'s."""


def world_log_item_probs(catalog: Catalog, seed: int = 0) -> np.ndarray:
    """log P(v | p) of the default persona world (n_personas, n_items), popularity included.

    `make_persona_world` keeps no popularity, so its draws are replayed in the same order from its seed;
    the replayed item aspects must equal the catalogue's, which guards against a changed generator.
    """
    truth = catalog.truth
    assert truth is not None
    n_groups = int(truth.aspect_group.max()) + 1
    per_group = catalog.n_aspects // n_groups
    rng = np.random.default_rng(seed)
    item_aspects = world._draw_items(rng, catalog.n_items, n_groups, per_group)
    world._item_names(rng, catalog.n_items)
    world._draw_personas(rng, truth.n_personas, n_groups, per_group)
    for _ in range(catalog.n_users):
        rng.choice(truth.n_personas, size=truth.personas_per_user, replace=False)
    rng.dirichlet(np.full(truth.personas_per_user, world.WEIGHT_CONCENTRATION), size=catalog.n_users)
    if (item_aspects != catalog.item_aspects).nnz:
        raise SystemExit("the persona world's generator changed: update world_log_item_probs")
    utilities = world.persona_utilities(
        catalog.item_aspects, truth.aspect_group, truth.persona_groups, truth.persona_aspects
    )
    utilities = utilities + rng.normal(0.0, world.POPULARITY_STD, size=catalog.n_items)[None, :]
    return utilities - logsumexp(utilities, axis=1, keepdims=True)


def true_evidence(
    evidence: SessionEvidence,
    personas: np.ndarray,
    log_items: np.ndarray,
    holders: sp.csc_matrix,
    noise: float,
) -> np.ndarray:
    """ℓ over `personas` (module docstring), shape (K,); `holders` is the item x aspect matrix (CSC)."""
    if evidence.accepted_item is not None:
        return log_items[personas, evidence.accepted_item]
    log_answers = np.zeros(log_items.shape[1])
    for aspects, said_yes in ((evidence.accepted, True), (evidence.rejected, False)):
        if aspects.size == 0:
            continue
        holds = np.asarray(holders[:, aspects].todense(), dtype=bool)  # (n_items, n_asked)
        fits = holds if said_yes else ~holds
        log_answers += np.where(fits, np.log1p(-noise), np.log(noise)).sum(axis=1)
    log_answers[evidence.rejected_items] = -np.inf
    return logsumexp(log_items[personas] + log_answers[None, :], axis=1)


def slot_components(catalog: Catalog, ranker, mixture: PersonaMixture) -> np.ndarray:
    """The mixture component of each ranker persona slot per user, (n_users, K): the Hungarian
    matching of the ranker's `persona_of` and the mixture's on the user's train items."""
    train = catalog.split("train")
    k = int(np.asarray(ranker.log_prior).shape[1])
    out = np.zeros((catalog.n_users, k), dtype=np.int64)
    for user in range(catalog.n_users):
        items = train.items[train.users == user]
        table = np.zeros((k, mixture.log_item_probs.shape[0]))
        np.add.at(
            table, (ranker.persona_of(user, items), mixture.persona_of(np.full(items.size, user), items)), 1.0
        )
        slots, components = linear_sum_assignment(-table)
        out[user, slots] = components
    return out


def best_filter(data: dict[str, np.ndarray]) -> tuple[float, float, float, float]:
    """(tracking after the switch, switch rate, dominance, weight) of the best of `FILTERS` on `data`."""
    zeros = np.zeros_like(data["aspects"])
    rows = []
    for h, m, weight in itertools.product(*FILTERS):
        rule = UpdateRule(
            switch_rate=h, dominance=m, aspect_weight=weight, item_weight=0.0, rejected_item_weight=0.0
        )
        rows.append((replay(rule, {**data, "item": zeros, "rejected": zeros}, "switch")[0], h, m, weight))
    return max(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranker", required=True, help="persona world ranker the policy plays with")
    parser.add_argument("--users", type=positive_int, default=1000, help="returning users (switch regime)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the returning users and their sessions")
    args = parser.parse_args()
    catalog = DatasetSpec("persona_world", None, 0).load()
    truth = catalog.truth
    assert truth is not None
    log_items = world_log_item_probs(catalog)
    ranker = RankerSpec.parse(args.ranker).build(catalog)
    frozen = PersonaMemory(ranker, "frozen")
    sequences = returning_sequences(catalog, args.users, SESSIONS, "switch", np.random.default_rng(args.seed))
    evidence: dict[tuple[int, int], SessionEvidence] = {}

    def policy_for(i, sequence, s):
        return make_rule_policy("ask-4", frozen.ranker_for(sequence.user))

    def after(i, sequence, s, env, record):
        evidence[(i, s)] = SessionEvidence.from_state(env.state)

    started = time.perf_counter()
    run_sequences(catalog, sequences, policy_for, args.seed, after_session=after)
    print(f"{args.users} x {SESSIONS} switch sessions played in {time.perf_counter() - started:.0f} s")
    k = truth.personas_per_user
    holders = catalog.item_aspects.tocsc()  # one conversion for every failed session's answers
    ll = np.zeros((args.users, SESSIONS, k))
    for (i, s), found in evidence.items():
        ll[i, s] = true_evidence(found, sequences[i].personas, log_items, holders, world.WORLD_USER.noise)
    active = np.stack([sequence.active for sequence in sequences])
    success = np.array(
        [[evidence[(i, s)].accepted_item is not None for s in range(SESSIONS)] for i in range(args.users)]
    )
    change = np.array([sequence.change_session for sequence in sequences])
    after_change = np.arange(SESSIONS)[None, :] > change[:, None]
    named = ll.argmax(-1) == active
    print(f"SR@15 of the sessions: {success.mean():.3f}")
    print(
        f"one session's true evidence names the active persona: successful {named[success].mean():.3f}, "
        f"failed {named[~success].mean():.3f}, all {named.mean():.3f}"
    )
    matched = match_personas(ranker, catalog)
    no_slot = np.array([[matched[q.user, q.active[s]] < 0 for s in range(SESSIONS)] for q in sequences])
    share = no_slot[after_change].mean()
    print(f"sessions after the switch whose active persona has no ranker slot: {share:.3f}")
    test = catalog.split("test")
    assert test.personas is not None
    true_slots = np.argmax(truth.user_personas[test.users] == test.personas[:, None], axis=1)
    model_slots = np.concatenate(
        [ranker.persona_of(int(u), [int(v)]) for u, v in zip(test.users, test.items, strict=True)]
    )
    print(
        f"the ranker's persona of a test interaction is the matched true one: "
        f"{(matched[test.users, true_slots] == model_slots).mean():.3f}"
    )
    dominant = np.stack([sequence.mixtures.argmax(1) for sequence in sequences])
    share = (active == dominant)[after_change].mean()
    print(f"the dominant persona's share of the sessions after the switch: {share:.3f}")
    base = {
        "prior": np.array(truth.user_weights[[s.user for s in sequences]]),
        "active": active,
        "change": change,
    }
    perfect = np.where(np.arange(k)[None, None, :] == active[..., None], 10.0, 0.0)
    torch.set_num_threads(1)
    mixture = fit_persona_mixture(
        catalog.item_aspects, catalog.split("train"), catalog.n_users, 8, np.random.default_rng(0)
    )
    components = slot_components(catalog, ranker, mixture)
    mixture_ll = np.zeros((args.users, SESSIONS, components.shape[1]))
    for (i, s), found in evidence.items():
        mixture_ll[i, s] = true_evidence(
            found,
            components[sequences[i].user],
            mixture.log_item_probs,
            holders,
            world.WORLD_USER.noise,
        )
    train = catalog.split("train")
    table = np.zeros((mixture.log_item_probs.shape[0], truth.n_personas))
    np.add.at(table, (mixture.persona_of(train.users, train.items), train.personas), 1)
    prototype = np.zeros(mixture.log_item_probs.shape[0], dtype=np.int64)
    rows, columns = linear_sum_assignment(-table)
    prototype[rows] = columns
    named_by_mixture = prototype[mixture.persona_of(test.users, test.items)]
    accuracy = (named_by_mixture == test.personas).mean()
    print(
        "the EM mixture's persona of a test interaction is the true one (components matched to the "
        f"world's personas on train labels, for this measurement only): {accuracy:.3f}"
    )
    own = PersonaMemory(ranker, "update")  # the memory's own evidence, DEFAULT_RULE's weights
    own_ll = np.zeros_like(mixture_ll)
    for (i, s), found in evidence.items():
        own_ll[i, s] = own.log_likelihood(found)
    over_slots = {
        "prior": np.stack([frozen.prior(q.user) for q in sequences]),
        "active": np.array([[matched[q.user, q.active[s]] for s in range(SESSIONS)] for q in sequences]),
        "change": change,
    }
    cases = (
        ("the world's own model", {**base, "aspects": ll}),
        ("told the active persona", {**base, "aspects": perfect}),
        ("the EM persona mixture, over the ranker's slots", {**over_slots, "aspects": mixture_ll}),
        ("the memory's own (the ranker's), over its slots", {**over_slots, "aspects": own_ll}),
    )
    n_filters = len(list(itertools.product(*FILTERS)))
    for name, data in cases:
        tracking, h, m, weight = best_filter(data)
        print(
            f"best tracking after the switch, evidence from {name}: {tracking:.3f} "
            f"(switch rate {h}, dominance {m}, evidence weight {weight}; of {n_filters} filters)"
        )


if __name__ == "__main__":
    run_script(main)
