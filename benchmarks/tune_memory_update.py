"""Choose the persona memory's filter constants on the VALID split (#16, `policies.memory.DEFAULT_RULE`).

Plays ask-4 with the frozen prior on returning users of the switch and the stable regime (valid targets),
keeps each session's evidence as three log-likelihoods over the user's personas (the aspects alone, the
accepted item alone, the rejected slates' items alone, each with weight 1), then replays the evidence
through the switching filter (`policies.memory`'s module docstring) for a grid of constants and scores
the memory's prior before each session against the true active persona: the mean log-probability
(switch: sessions from the change on; stable: every session), summed over the two regimes, and the
share of sessions whose top persona is the true one ("tracking"; switch: sessions after the change).

It also prints how often one session's evidence alone names the true active persona (the argmax of
its log-likelihood): aspects, + the accepted item, + the rejected slates' items, and the rejected
slates' items alone, with either sign.

    nice python benchmarks/tune_memory_update.py --ranker runs/main-s8/ranker --users 500

`--cache FILE.npz` keeps the played evidence (and reads it back when the file exists, for the same
ranker, users and seed), so the grid can be rerun without playing again.

The replay is an approximation: the evidence comes from play under the frozen prior, not from play
under each rule.

It replays the filter without a home state (``home_rate`` 0, `policies.memory`); the home state and the
view were chosen by SR@15 with ``benchmarks/compare_memory_rules.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from _cli import npz_path, positive_int, run_script  # this folder is on sys.path as a script

from crs.app.sessions import match_personas
from envs.sessions import run_sequences
from policies.memory import PersonaMemory, SessionEvidence, UpdateRule
from policies.rankers import RankerSpec
from policies.rules import make_rule_policy
from simulators.datasets import DatasetSpec
from simulators.returning import Regime, returning_sequences

SESSIONS = 8
REGIMES: tuple[Regime, ...] = ("switch", "stable")
EVIDENCE = ("aspects", "item", "rejected")
GRID = {
    "switch_rate": (0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
    "dominance": (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
    "aspect_weight": (0.5, 1.0, 2.0, 3.0),
    "item_weight": (0.0, 0.5, 1.0, 2.0),
    "rejected_item_weight": (0.0, 0.25, 0.5, 1.0),
}
ALONE = {
    "aspects": UpdateRule(aspect_weight=1.0, item_weight=0.0, rejected_item_weight=0.0),
    "item": UpdateRule(aspect_weight=0.0, item_weight=1.0, rejected_item_weight=0.0),
    "rejected": UpdateRule(aspect_weight=0.0, item_weight=0.0, rejected_item_weight=1.0),
}


def play(catalog, ranker, regime: Regime, users: int, seed: int) -> dict[str, np.ndarray]:
    """Each session's log-likelihoods (`EVIDENCE`, each alone), whether it succeeded, the true active
    persona (as a ranker persona) and the change session, from ask-4 under the frozen prior."""
    matched = match_personas(ranker, catalog)
    frozen = PersonaMemory(ranker, "frozen")
    sequences = returning_sequences(catalog, users, SESSIONS, regime, np.random.default_rng(seed), "valid")
    evidence: dict[tuple[int, int], SessionEvidence] = {}

    def policy_for(i, sequence, s):
        return make_rule_policy("ask-4", frozen.ranker_for(sequence.user))

    def after(i, sequence, s, env, record):
        evidence[(i, s)] = SessionEvidence.from_state(env.state)

    run_sequences(catalog, sequences, policy_for, seed, after_session=after, split="valid")
    alone = {name: PersonaMemory(ranker, "update", rule) for name, rule in ALONE.items()}
    k = ranker.log_prior.shape[1]
    out = {name: np.zeros((users, SESSIONS, k)) for name in EVIDENCE}
    out["success"] = np.zeros((users, SESSIONS), dtype=bool)
    out["active"] = np.zeros((users, SESSIONS), dtype=np.int64)
    out["prior"] = np.stack([frozen.prior(sequence.user) for sequence in sequences])
    out["change"] = np.array(
        [s.change_session if s.change_session is not None else SESSIONS for s in sequences]
    )
    for i, sequence in enumerate(sequences):
        for s in range(SESSIONS):
            for name in EVIDENCE:
                out[name][i, s] = alone[name].log_likelihood(evidence[(i, s)])
            out["success"][i, s] = evidence[(i, s)].accepted_item is not None
            out["active"][i, s] = matched[sequence.user, sequence.active[s]]
    return out


def replay(rule: UpdateRule | None, data: dict[str, np.ndarray], regime: str) -> tuple[float, float]:
    """(tracking, mean log-probability of the true active persona) of `rule` (None: the frozen prior)."""
    prior = data["prior"].copy()  # a never-updated user's prior is the ranker's
    dominant = data["prior"].copy()  # and the first update takes it as the belief over the dominant one
    users, k = prior.shape
    if rule is not None:
        emission, transition = rule.emission(k), rule.transition(k)
    hits, logp = [], []
    for s in range(SESSIONS):
        active = data["active"][:, s]
        scored = np.ones(users, bool) if regime == "stable" else s >= data["change"]
        tracked = np.ones(users, bool) if regime == "stable" else s > data["change"]
        hits.append((prior.argmax(1) == active)[tracked])
        logp.append(np.log(prior[np.arange(users), active])[scored])
        if rule is None:
            continue
        ll = (
            rule.aspect_weight * data["aspects"][:, s]
            + rule.item_weight * data["item"][:, s]
            + rule.rejected_item_weight * data["rejected"][:, s]
        )
        likelihood = np.exp(ll - ll.max(1, keepdims=True))
        posterior = dominant * (likelihood @ emission.T)  # d ⊙ (E L), per user
        posterior /= posterior.sum(1, keepdims=True)
        dominant = posterior @ transition
        prior = dominant @ emission
    return float(np.concatenate(hits).mean()), float(np.concatenate(logp).mean())


def names_the_active(data: dict[str, np.ndarray]) -> dict[str, float]:
    """How often one session's evidence alone names the true active persona (the true one is the only
    maximum of ℓ; a session without that evidence, all ℓ equal, is a miss), for combinations of the
    evidence; the rejected slates' items also among the sessions that had rejected slates."""
    combos = {
        "aspects": data["aspects"],
        "aspects+item": data["aspects"] + data["item"],
        "aspects+item+rejected": data["aspects"] + data["item"] + data["rejected"],
        "rejected (+)": data["rejected"],
        "rejected (-)": -data["rejected"],
    }
    active = data["active"]
    has_rejected = np.any(data["rejected"] != 0.0, axis=-1)
    out = {}
    for name, ll in combos.items():
        top = ll.max(-1)
        only = (ll == top[..., None]).sum(-1) == 1
        hit = only & (np.take_along_axis(ll, active[..., None], -1)[..., 0] == top)
        out[name] = float(hit.mean())
        if name in ("aspects", "rejected (+)"):
            out[f"{name}, failed sessions"] = float(hit[~data["success"]].mean())
        if name.startswith("rejected"):
            out[f"{name}, sessions with rejected slates"] = float(hit[has_rejected].mean())
    out["share of sessions with rejected slates"] = float(has_rejected.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranker", required=True, help="persona world ranker artifact (crs pretrain --out)")
    parser.add_argument("--users", type=positive_int, default=500, help="returning users per regime")
    parser.add_argument(
        "--seed", type=int, default=100, help="seed of the returning users and their sessions"
    )
    parser.add_argument("--top", type=positive_int, default=10, help="best rules to print")
    parser.add_argument(
        "--cache", type=npz_path, default=None, help="a .npz file keeping the played evidence"
    )
    args = parser.parse_args()
    key = f"{Path(args.ranker).resolve()}|{args.users}|{args.seed}"
    data: dict[str, dict[str, np.ndarray]] = {}
    if args.cache is not None and args.cache.exists():
        with np.load(args.cache) as stored:
            if str(stored["key"]) == key:
                for regime in REGIMES:
                    prefix = f"{regime}/"
                    data[regime] = {n[len(prefix) :]: stored[n] for n in stored.files if n.startswith(prefix)}
                print(f"evidence read from {args.cache}")
    if not data:
        catalog = DatasetSpec("persona_world", None, 0).load()
        ranker = RankerSpec.parse(args.ranker).build(catalog)
        for regime in REGIMES:
            started = time.perf_counter()
            data[regime] = play(catalog, ranker, regime, args.users, args.seed)
            seconds = time.perf_counter() - started
            print(f"{regime}: {args.users} x {SESSIONS} sessions played in {seconds:.0f} s")
        if args.cache is not None:
            arrays = {f"{r}/{n}": v for r in REGIMES for n, v in data[r].items()}
            np.savez(args.cache, key=np.array(key), **arrays)  # type: ignore[arg-type]
    for regime in REGIMES:
        named = {name: round(share, 3) for name, share in names_the_active(data[regime]).items()}
        print(f"{regime}: one session's evidence names the active persona: {json.dumps(named)}")
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
    print(f"{len(rows)} rules; best by score (switch + stable log-probability):")
    rows.sort(key=lambda r: -r["score"])
    for row in rows[: args.top]:
        print(json.dumps({key: round(value, 4) for key, value in row.items()}))
    print("best by tracking after the switch:")
    for row in sorted(rows, key=lambda r: -r["switch_tracking"])[: args.top]:
        print(json.dumps({key: round(value, 4) for key, value in row.items()}))


if __name__ == "__main__":
    run_script(main)
