"""Compare persona-memory update rules by SR@15 on returning users, pooled over seeds (#16).

Plays a rule policy (ask-4 by default) over the persona world's returning users with the memory
frozen, as the oracle, and with each update rule given (`policies.memory.UpdateRule` fields over
`DEFAULT_RULE`), for every seed, in the switch and the stable regime. Prints, per rule, the mean SR@15
(switch: the sessions from the change on; stable: every session), its paired difference from the
first rule with a 95% bootstrap CI over users (all seeds pooled), and in the switch regime the share
of the frozen-to-oracle gap it closes at the change session and the two after it.

    nice python benchmarks/compare_memory_rules.py --ranker runs/k4mix --split valid --seeds 100,101,102 \\
        --rules '{"p2": {"home_rate": 0}, "home": {}}'

A rule is a JSON object of `UpdateRule` fields replacing `DEFAULT_RULE`'s ({} is the default rule);
"frozen" and "oracle" are always played first. Choose on ``--split valid``; report on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from _cli import positive_int, run_script  # this folder is on sys.path as a script

from crs.app.sessions import evaluate_returning
from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.ranker import ExplainablePersonaRanker
from envs.sessions import SessionRecord
from policies.memory import DEFAULT_RULE, MemoryMode, UpdateRule
from policies.rankers import RankerSpec
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from simulators.returning import Regime

OFFSETS = (0, 1, 2)
"""Sessions after the change whose gap share is printed."""


def per_user(records: list[SessionRecord], regime: Regime) -> tuple[np.ndarray, dict[int, list[float]]]:
    """Each sequence's mean SR@15 over the scored sessions, and SR@15 per offset from the change."""
    success = per_episode_metrics([r.episode for r in records])["SR@15"]
    scored: dict[int, list[float]] = {}
    offsets: dict[int, list[float]] = {o: [] for o in OFFSETS}
    for value, record in zip(success, records, strict=True):
        change = record.change_session
        if change is not None and record.session - change in offsets:
            offsets[record.session - change].append(float(value))
        if regime == "stable" or (change is not None and record.session >= change):
            scored.setdefault(record.sequence, []).append(float(value))
    return np.array([np.mean(scored[n]) for n in sorted(scored)]), offsets


def gap_shares(offsets: dict[str, dict[int, list[float]]], name: str) -> list[str]:
    """The share of the frozen-to-oracle SR@15 gap rule `name` closes at each of `OFFSETS` sessions
    after the change ("n/a" where there is no gap, or no session that far after a change)."""
    shares = []
    for offset in OFFSETS:
        if not all(offsets[played].get(offset) for played in ("frozen", "oracle", name)):
            shares.append("n/a (no session there)")  # every change came too late for this offset
            continue
        frozen = np.mean(offsets["frozen"][offset])
        gap = np.mean(offsets["oracle"][offset]) - frozen
        shares.append(
            "n/a (no gap)" if gap == 0 else f"{(np.mean(offsets[name][offset]) - frozen) / gap:.0%}"
        )
    return shares


def update_rules(text: str) -> dict[str, UpdateRule]:
    """An argparse type: a JSON object of one or more rules, name -> `UpdateRule` fields over `DEFAULT_RULE`.

    Raises:
        PersonaMemoryError: A field's value is out of range (from `UpdateRule`).
    """
    try:
        data = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) for v in data.values()):
        raise argparse.ArgumentTypeError(
            f"expected a non-empty JSON object, rule name -> fields, e.g. '{{\"home\": {{}}}}'; got {text!r}"
        )
    if {"frozen", "oracle"} & set(data):
        raise argparse.ArgumentTypeError("'frozen' and 'oracle' are always played: name the rules otherwise")
    fields = {field.name for field in dataclasses.fields(UpdateRule)}
    unknown = sorted({key for rule in data.values() for key in rule} - fields)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown UpdateRule fields {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    return {name: dataclasses.replace(DEFAULT_RULE, **rule) for name, rule in data.items()}


def seed_list(text: str) -> list[int]:
    """An argparse type: comma-separated integer seeds, e.g. ``100,101,102``."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranker", required=True, help="persona world ranker artifact (crs pretrain --out)")
    parser.add_argument("--rules", type=update_rules, required=True, help="JSON: name -> UpdateRule fields")
    parser.add_argument(
        "--users", type=positive_int, default=1000, help="returning users per seed and regime"
    )
    parser.add_argument("--seeds", type=seed_list, default="100,101,102", help="comma-separated run seeds")
    parser.add_argument("--split", default="valid", help="target split (choose on valid)")
    parser.add_argument("--policy", default="ask-4", help="rule policy playing every session")
    parser.add_argument("--sessions", type=positive_int, default=8, help="sessions per returning user")
    args = parser.parse_args()
    rules: dict[str, UpdateRule] = args.rules
    seeds: list[int] = args.seeds
    catalog = DatasetSpec("persona_world", None, 0).load()
    ranker = RankerSpec.parse(args.ranker).build(catalog)
    if not isinstance(ranker, ExplainablePersonaRanker):
        raise CRSError(f"--ranker {args.ranker} is not a persona ranker; pass a `crs pretrain` artifact")
    arms: list[tuple[str, MemoryMode, UpdateRule]] = [
        ("frozen", "frozen", DEFAULT_RULE),
        ("oracle", "oracle", DEFAULT_RULE),
        *((name, "update", rule) for name, rule in rules.items()),
    ]
    regimes: tuple[Regime, ...] = ("switch", "stable")
    for regime in regimes:
        users: dict[str, list[float]] = {}
        offsets: dict[str, dict[int, list[float]]] = {}
        started = time.perf_counter()
        for seed in seeds:
            for name, mode, rule in arms:
                if regime == "stable" and mode == "oracle":
                    continue  # no change session to know
                result = evaluate_returning(
                    catalog, ranker, args.policy, regime=regime, sessions=args.sessions,
                    sequences=args.users, memory=mode, seed=seed, split=args.split, rule=rule,
                )  # fmt: skip
                values, by_offset = per_user(result.records, regime)
                users.setdefault(name, []).extend(values)
                for offset, scores in by_offset.items():
                    offsets.setdefault(name, {}).setdefault(offset, []).extend(scores)
            print(f"{regime}: seed {seed} played ({time.perf_counter() - started:.0f} s)", flush=True)
        first = np.array(users[next(iter(rules))])
        for name, scored in users.items():
            diff = bootstrap_ci(np.array(scored) - first)
            line = (
                f"{regime:>6} {name:>14}: SR@15 {np.mean(scored):.4f}, − {next(iter(rules))} "
                f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]"
            )
            if regime == "switch":
                shares = gap_shares(offsets, name)
                line += f"; gap closed at +{'/+'.join(map(str, OFFSETS))}: {' / '.join(shares)}"
            print(line, flush=True)


if __name__ == "__main__":
    run_script(main)
