"""Benchmark: SB3-wrapper steps/s with the persona ranker's per-dialogue score cache on and off.

One turn asks the ranker for item and aspect scores several times with the same dialogue facts
(candidate ranking, question slots, the question finally asked); `PersonaRanker` keeps the full
score vectors of the last dialogue states (`facts_cache_size`). This plays the same random valid
actions (seeded) through the wrapper with the cache on and off, alternating rounds so that other
load on the machine hits both alike, and prints one JSON object with both rates.

Example (2 CPU cores):

    python benchmarks/bench_ranker_cache.py --dataset mcmipl_lastfm_star \\
        --ranker runs/pretrain/mcmipl_lastfm_star --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _cli import positive_float, positive_int, run_script  # this folder is on sys.path as a script
from bench_train import DATA_DIR, wrapped_steps_per_second  # this folder is on sys.path as a script

from envs import make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.pretrain.artifact import load_ranker
from policies.pretrain.ranker import WEIGHT_KEYS, PersonaRanker
from simulators.datasets import load_catalog


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="mcmipl_lastfm_star")
    parser.add_argument("--ranker", required=True, help="a `crs pretrain` artifact folder")
    parser.add_argument("--n-items", type=positive_int, default=20, help="the wrapper's item slots")
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="per round and setting")
    parser.add_argument("--rounds", type=positive_int, default=3)
    args = parser.parse_args()

    catalog = load_catalog(args.dataset, None if args.dataset == "persona_world" else DATA_DIR)
    cached = load_ranker(args.ranker, catalog)
    weights = {key: getattr(cached, key) for key in (*WEIGHT_KEYS, "shared")}
    uncached = PersonaRanker(weights, cached.item_aspects, cached.aspect_mode, facts_cache_size=0)
    rates: dict[str, list[float]] = {"cache_off": [], "cache_on": []}
    for round_ in range(args.rounds):
        for name, ranker in (("cache_off", uncached), ("cache_on", cached)):
            wrapped = SlateActionWrapper(
                make_env(catalog=catalog, split="valid"), ranker, WrapperConfig(n_items=args.n_items)
            )
            rate = wrapped_steps_per_second(wrapped, args.seconds, np.random.default_rng(round_))
            rates[name].append(rate)
    off, on = float(np.mean(rates["cache_off"])), float(np.mean(rates["cache_on"]))
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "n_items": args.n_items,
                "rounds": {name: [round(r, 1) for r in values] for name, values in rates.items()},
                "wrapped_steps_per_s_cache_off": round(off, 1),
                "wrapped_steps_per_s_cache_on": round(on, 1),
                "speedup": round(on / off, 2),
            }
        )
    )


if __name__ == "__main__":
    run_script(main)
