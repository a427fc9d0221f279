"""Benchmark: the cost of one returning-user memory update (#16 asks for at most 50 ms on one core).

Each of --users users (a new one each time, so the ranker's per-user caches start cold) gets one
`PersonaMemory.update` from a session's evidence (three accepted and two rejected aspects, an accepted
item, a rejected slate of ten), then the memory's ranker view scores every item once (what the next
session's first turn asks for). A second update of the same user measures the warm case. BLAS runs on
one thread (`threadpoolctl`), as the issue's "one core" says. Prints one JSON object: median, 95th
percentile and maximum in milliseconds, cold and warm.

The ranker is a `crs pretrain` artifact (--ranker) or, without one, seeded random weights of the
catalogue's size (d 64, K 3, P 8: the default pre-training shape), which costs the same.

Example (2 CPU cores):

    python benchmarks/bench_memory_update.py --dataset lastfm_star --data-dir ../shared/data --rule both
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _cli import positive_int, run_script  # this folder is on sys.path as a script
from threadpoolctl import threadpool_limits

from envs.ranker import DialogueFacts
from policies.memory import PersonaMemory, SessionEvidence, rule_of
from policies.pretrain.artifact import load_ranker
from policies.pretrain.ranker import PersonaRanker
from simulators.catalog import Catalog
from simulators.datasets import PERSONA_WORLD, DatasetSpec


def random_ranker(catalog: Catalog, seed: int = 7) -> PersonaRanker:
    """A persona ranker of `catalog`'s size with seeded random weights (d 64, K 3, P 8)."""
    rng = np.random.default_rng(seed)
    d, k, p = 64, 3, 8
    weights = {
        "user": rng.normal(size=(catalog.n_users, d)),
        "item": rng.normal(size=(catalog.n_items, d)),
        "aspect": rng.normal(size=(catalog.n_aspects, d)),
        "personas": rng.normal(size=(catalog.n_users, k, d)),
        "log_prior": np.log(rng.dirichlet(np.ones(k), size=catalog.n_users)),
        "mixtures": rng.dirichlet(np.ones(p), size=(catalog.n_users, k)),
        "prototypes": rng.normal(size=(p, d)),
    }
    return PersonaRanker(weights, catalog.item_aspects, "attention")


def milliseconds(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000.0
    return {
        "median": round(float(np.median(values)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
        "max": round(float(values.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=PERSONA_WORLD, help="a dataset name (default: the world)")
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets")
    parser.add_argument("--ranker", default=None, help="a `crs pretrain` artifact folder (optional)")
    parser.add_argument("--rule", default="both", choices=("prior", "aspects", "both"), help="what moves")
    parser.add_argument("--users", type=positive_int, default=50, help="users updated, one each")
    args = parser.parse_args()

    catalog = DatasetSpec(args.dataset, args.data_dir).load()
    ranker = load_ranker(args.ranker, catalog) if args.ranker else random_ranker(catalog)
    memory = PersonaMemory(ranker, "update", rule_of(args.rule))
    items = np.arange(catalog.n_items)
    empty = np.zeros(0, dtype=np.int64)
    cold: list[float] = []
    warm: list[float] = []
    with threadpool_limits(limits=1):
        for user in range(min(args.users, catalog.n_users)):
            session = SessionEvidence(
                user=user,
                accepted=np.array([1, 5, 9]) % catalog.n_aspects,
                rejected=np.array([2, 3]) % catalog.n_aspects,
                accepted_item=user % catalog.n_items,
                rejected_items=np.arange(100, 110) % catalog.n_items,
            )
            for times in (cold, warm):
                started = time.perf_counter()
                memory.update(session)
                memory.ranker_for(user).item_scores(DialogueFacts(user, empty, empty, empty), items)
                times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "dataset": catalog.name,
                "items": catalog.n_items,
                "ranker": args.ranker or "random d64 K3 P8",
                "rule": args.rule,
                "users": len(cold),
                "cold_ms": milliseconds(cold),
                "warm_ms": milliseconds(warm),
            }
        )
    )


if __name__ == "__main__":
    run_script(main)
