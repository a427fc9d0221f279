"""Env speed: steps per second of the ask-4 rule with a preference ranker, single process.

UNICORN's own environment runs 35-60 steps/s on LastFM on these 2-core machines (Python loops over
candidates); the target is at least 100x that. Run:

    python benchmarks/bench_env.py --data-dir ../shared/data   # or with $CRS_DATA_DIR set
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _cli import HelpFormatter, positive_int, run_script  # this folder is on sys.path as a script

from envs import make_env
from envs.rollout import evaluate, evaluation_indices
from policies.rankers import RankerSpec
from policies.rules import make_rule_policy


def measure(
    dataset: str, data_dir: str | None, policy_name: str, episodes: int
) -> tuple[float, float, float]:
    """(env-only steps/s, policy+env steps/s, conversations/s) over `episodes` test conversations."""
    env = make_env(dataset, data_dir=data_dir, split="test")
    ranker = RankerSpec.default(dataset).build(env.catalog, data_dir)
    policy = make_rule_policy(policy_name, ranker)
    indices = evaluation_indices(env.goals.n_goals, episodes, 0)
    evaluate(env, policy, indices[:5], seed=0)  # warm caches
    actions: list[list[dict]] = []

    # 1) policy + env, recording the actions
    start = time.perf_counter()
    steps = 0
    for index in indices:
        env.reset(seed=int(index), options={"goal_index": int(index)})
        policy.reset(np.random.default_rng(int(index)))
        episode, done = [], False
        while not done:
            action = policy.act(env)
            episode.append(action)
            _, _, terminated, truncated, _ = env.step(action)
            steps += 1
            done = terminated or truncated
        actions.append(episode)
    both = time.perf_counter() - start

    # 2) env only: replay the recorded actions
    start = time.perf_counter()
    for index, episode in zip(indices, actions, strict=True):
        env.reset(seed=int(index), options={"goal_index": int(index)})
        for action in episode:
            env.step(action)
    env_only = time.perf_counter() - start
    return steps / env_only, steps / both, len(indices) / both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; none: $CRS_DATA_DIR")
    parser.add_argument("--episodes", type=positive_int, default=300, help="test conversations per dataset")
    parser.add_argument("--policy", default="ask-4", help="the rule policy played")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["persona_world", "lastfm", "lastfm_star", "yelp_star"],
        help="datasets measured, in order",
    )
    args = parser.parse_args()
    print(f"{'dataset':<14} {'ranker':<11} {'env steps/s':>12} {'env+rule steps/s':>17} {'conv/s':>8}")
    for dataset in args.datasets:
        data_dir = None if dataset == "persona_world" else args.data_dir
        env_rate, both_rate, conv_rate = measure(dataset, data_dir, args.policy, args.episodes)
        print(
            f"{dataset:<14} {RankerSpec.default(dataset).name:<11} {env_rate:>12,.0f} {both_rate:>17,.0f} "
            f"{conv_rate:>8,.1f}"
        )


if __name__ == "__main__":
    run_script(main)
