"""Do training runs of neighbouring seeds train on the same conversations?

SB3 seeds training env k of a run seeded s with s + k; since session 38 each env resets with
`policies.rl.model.training_env_seed(s, k)` instead. For both rules this script resets the envs of
seeds s and s + 1 and counts the conversations of seed s + 1's envs whose goal (user and target) is
the one some env of seed s drew at the same position. Each env plays random valid actions of its own,
as the two runs' policies act differently.

Usage:
    .venv/bin/python benchmarks/seed_overlap.py --data-dir ../shared/data --datasets lastfm_star,persona_world
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _cli import comma_names, non_negative_int, positive_int, run_script  # this folder is on sys.path

from envs.registry import make_env
from policies.rl.model import training_env_seed

DATASETS = ("lastfm", "lastfm_star", "yelp_star", "persona_world")
RULES: dict[str, Callable[[int, int], int]] = {
    "seed + k (SB3, before session 38)": lambda seed, k: seed + k,
    "training_env_seed (now)": training_env_seed,
}


def goal_stream(
    dataset: str, data_dir: Path, rule: Callable[[int, int], int], seed: int, k: int, conversations: int
) -> list[int]:
    """The goals env k of a run seeded `seed` draws in its first `conversations`, under random actions
    of its own (seeded by (seed, k), as two runs' policies act differently)."""
    env = make_env(dataset, data_dir=data_dir)
    env.action_space.seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
    _, info = env.reset(seed=rule(seed, k))
    goals = []
    for _ in range(conversations):
        goals.append(int(info["goal_index"]))
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        _, info = env.reset()
    return goals


def shared(
    dataset: str, data_dir: Path, rule: Callable[[int, int], int], seed: int, envs: int, n: int
) -> int:
    """Conversations of seed + 1's envs whose goal some env of `seed` drew at the same position."""
    first = [goal_stream(dataset, data_dir, rule, seed, k, n) for k in range(envs)]
    second = [goal_stream(dataset, data_dir, rule, seed + 1, k, n) for k in range(envs)]
    return sum(any(stream[i] == other[i] for other in first) for stream in second for i in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--datasets", type=comma_names(DATASETS), default=["lastfm_star", "persona_world"])
    parser.add_argument("--seed", type=non_negative_int, default=0, help="compare seeds s and s + 1")
    parser.add_argument("--envs", type=positive_int, default=8, help="training envs per run (as crs train)")
    parser.add_argument("--conversations", type=positive_int, default=50, help="per env")
    args = parser.parse_args()
    total = args.envs * args.conversations
    print(f"seeds {args.seed} and {args.seed + 1}, {args.envs} envs x {args.conversations} conversations")
    print("| dataset | env seeds | conversations of seed s+1 that seed s also drew |")
    print("|---|---|---:|")
    for dataset in args.datasets:
        for name, rule in RULES.items():
            count = shared(dataset, args.data_dir, rule, args.seed, args.envs, args.conversations)
            print(f"| {dataset} | {name} | {count:,} of {total:,} ({count / total:.0%}) |")


if __name__ == "__main__":
    run_script(main)
