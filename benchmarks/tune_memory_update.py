"""Choose the persona memory's update constants on the VALID split (#16, `policies.memory.DEFAULT_RULE`).

Plays ask-4 with the frozen prior on returning users of the switch and the stable regime (valid targets),
keeps each session's evidence, then replays the evidence through the closed-form update for a grid of
constants and scores the memory's belief before each session against the true active persona: the
mean log-probability (switch: sessions from the change on; stable: every session), summed over the two
regimes, and the share of sessions whose top persona is the true one (switch: after the change).

    python benchmarks/tune_memory_update.py --ranker runs/issue16/pw-ranker --users 500

The replay is an approximation: the evidence comes from play under the frozen prior, not from play
under each rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from crs.app.sessions import match_personas
from envs.sessions import run_sequences
from policies.memory import PersonaMemory, SessionEvidence, UpdateRule
from policies.rankers import RankerSpec
from policies.rules import make_rule_policy
from simulators.datasets import DatasetSpec
from simulators.returning import Regime, returning_sequences

SESSIONS = 8
REGIMES: tuple[Regime, ...] = ("switch", "stable")
GRID = {
    "forgetting": (0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
    "aspect_weight": (0.5, 1.0, 2.0, 3.0, 4.0),
    "item_weight": (0.0, 0.1, 0.5, 1.0),
    "floor": (0.02, 0.05),
}


def play(catalog, ranker, regime: Regime, users: int, seed: int) -> dict[str, np.ndarray]:
    """Each session's log-likelihoods (aspects alone, the accepted item alone), the true active persona
    (as a ranker persona) and the change session, from ask-4 under the frozen prior."""
    matched = match_personas(ranker, catalog)
    frozen = PersonaMemory(ranker, "frozen")
    sequences = returning_sequences(catalog, users, SESSIONS, regime, np.random.default_rng(seed), "valid")
    evidence: dict[tuple[int, int], SessionEvidence] = {}

    def policy_for(i, sequence, s):
        return make_rule_policy("ask-4", frozen.ranker_for(sequence.user))

    def after(i, sequence, s, env, record):
        evidence[(i, s)] = SessionEvidence.from_state(env.state)

    run_sequences(catalog, sequences, policy_for, seed, after_session=after, split="valid")
    by_aspects = PersonaMemory(ranker, "update", UpdateRule(aspect_weight=1.0, item_weight=0.0))
    by_item = PersonaMemory(ranker, "update", UpdateRule(aspect_weight=0.0, item_weight=1.0))
    k = ranker.log_prior.shape[1]
    out = {
        "aspects": np.zeros((users, SESSIONS, k)),
        "item": np.zeros((users, SESSIONS, k)),
        "active": np.zeros((users, SESSIONS), dtype=np.int64),
        "prior": np.stack([frozen.prior(sequence.user) for sequence in sequences]),
        "change": np.array(
            [s.change_session if s.change_session is not None else SESSIONS for s in sequences]
        ),
    }
    for i, sequence in enumerate(sequences):
        for s in range(SESSIONS):
            out["aspects"][i, s] = by_aspects.log_likelihood(evidence[(i, s)])
            out["item"][i, s] = by_item.log_likelihood(evidence[(i, s)])
            out["active"][i, s] = matched[sequence.user, sequence.active[s]]
    return out


def replay(rule: UpdateRule | None, data: dict[str, np.ndarray], regime: str) -> tuple[float, float]:
    """(tracking, mean log-probability of the true active persona) of `rule` (None: the frozen prior)."""
    prior = data["prior"].copy()
    users = prior.shape[0]
    hits, logp = [], []
    for s in range(SESSIONS):
        active = data["active"][:, s]
        scored = np.ones(users, bool) if regime == "stable" else s >= data["change"]
        tracked = np.ones(users, bool) if regime == "stable" else s > data["change"]
        hits.append((prior.argmax(1) == active)[tracked])
        logp.append(np.log(prior[np.arange(users), active])[scored])
        if rule is None:
            continue
        ll = rule.aspect_weight * data["aspects"][:, s] + rule.item_weight * data["item"][:, s]
        posterior = np.log(prior) + ll
        posterior = np.exp(posterior - posterior.max(1, keepdims=True))
        posterior /= posterior.sum(1, keepdims=True)
        prior = np.maximum((1 - rule.forgetting) * prior + rule.forgetting * posterior, rule.floor)
        prior /= prior.sum(1, keepdims=True)
    return float(np.concatenate(hits).mean()), float(np.concatenate(logp).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranker", required=True, help="persona world ranker artifact (crs pretrain --out)")
    parser.add_argument("--users", type=int, default=500, help="returning users per regime")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--top", type=int, default=10, help="best rules to print")
    args = parser.parse_args()
    catalog = DatasetSpec("persona_world", None, 0).load()
    ranker = RankerSpec.parse(args.ranker).build(catalog)
    data = {}
    for regime in REGIMES:
        started = time.perf_counter()
        data[regime] = play(catalog, ranker, regime, args.users, args.seed)
        print(f"{regime}: {args.users} x {SESSIONS} sessions played in {time.perf_counter() - started:.0f} s")
    for regime in REGIMES:
        tracking, logp = replay(None, data[regime], regime)
        print(f"frozen, {regime}: tracking {tracking:.3f}, log-probability {logp:.3f}")
    rows = []
    for values in itertools.product(*GRID.values()):
        rule = UpdateRule(**dict(zip(GRID, values, strict=True)))
        row: dict[str, float] = dict(zip(GRID, values, strict=True))
        for regime in REGIMES:
            row[f"{regime}_tracking"], row[f"{regime}_logp"] = replay(rule, data[regime], regime)
        row["score"] = row["switch_logp"] + row["stable_logp"]
        rows.append(row)
    rows.sort(key=lambda r: -r["score"])
    for row in rows[: args.top]:
        print(json.dumps({key: round(value, 3) for key, value in row.items()}))


if __name__ == "__main__":
    main()
