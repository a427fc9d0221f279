"""Chat latency: how long a person waits for the recommender's next turn in `crs chat`.

Runs whole conversations in watch mode (`--simulate`: the env's simulated user answers at once) with
the dialogue rendered into memory, and times every agent turn:

- ``policy``: ``policy.act`` + reading the action + the explanations of a slate (what `crs chat`
  computes before it can show the turn);
- ``turn``: the whole turn as `crs chat` runs it: the above, ``env.step`` and rendering the turn
  with rich (questions, the slate table);
- ``warm-up``: the ranker's per-user caches, built once per conversation before the first turn
  (while the person reads the introduction); ``startup``: building env, ranker and policy.

Target: under 50 ms per turn on LastFM* on these machines. Run:

    python benchmarks/bench_chat.py --data-dir ../shared/data   # or with $CRS_DATA_DIR set
    python benchmarks/bench_chat.py --datasets lastfm_star --ranker /path/to/pretrain-artifact
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from _cli import HelpFormatter, positive_int, run_script  # this folder is on sys.path as a script
from rich.console import Console

from crs.app.evaluation import resolve_policy
from crs.chat import run_chat
from envs.registry import make_env
from envs.rollout import evaluation_indices


def measure(
    dataset: str, data_dir: str | None, policy_spec: str, ranker: str | None, conversations: int
) -> dict[str, np.ndarray | float]:
    """Per-turn seconds over `conversations` seeded test conversations (the first ones `crs eval
    --seed 0` holds): ``policy`` and ``turn`` arrays of shape (n_turns,), plus ``startup`` seconds
    (building the env, ranker and policy)."""
    started = time.perf_counter()
    env = make_env(dataset, data_dir=data_dir, split="test")
    policy, _, _ = resolve_policy(policy_spec, env, ranker, data_dir)
    startup = time.perf_counter() - started
    indices = evaluation_indices(env.goals.n_goals, conversations, 0)
    policy_times: list[float] = []
    turn_times: list[float] = []
    warm_up: list[float] = []
    for index in indices:
        result = run_chat(env, policy, seed=0, console=Console(file=io.StringIO(), width=100), simulate=True,
                          goal_index=int(index))  # fmt: skip
        policy_times.extend(result.act_seconds)
        turn_times.extend(result.turn_seconds)
        warm_up.append(result.warm_up_seconds)
    return {
        "policy": np.array(policy_times),
        "turn": np.array(turn_times),
        "warm_up": float(np.mean(warm_up)),
        "startup": startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; none: $CRS_DATA_DIR")
    parser.add_argument(
        "--datasets", nargs="+", default=["lastfm_star", "persona_world"], help="datasets measured"
    )
    parser.add_argument("--policies", nargs="+", default=["ask-4", "max-entropy"], help="policies measured")
    parser.add_argument("--ranker", default=None, help="ranker spec for every run; none: each dataset's own")
    parser.add_argument(
        "--conversations", type=positive_int, default=100, help="conversations per dataset and policy"
    )
    args = parser.parse_args()
    print(
        f"{'dataset':<14} {'policy':<12} {'turns':>6} {'policy ms p50/p95/max':>24} "
        f"{'turn ms p50/p95/max':>22} {'warm-up ms':>11} {'startup s':>10}"
    )
    for dataset in args.datasets:
        data_dir = None if dataset == "persona_world" else args.data_dir
        for policy in args.policies:
            result = measure(dataset, data_dir, policy, args.ranker, args.conversations)
            cells = []
            for key in ("policy", "turn"):
                ms = 1000 * result[key]  # type: ignore[operator]
                cells.append(f"{np.median(ms):.1f} / {np.percentile(ms, 95):.1f} / {ms.max():.1f}")
            print(
                f"{dataset:<14} {policy:<12} {result['turn'].size:>6} {cells[0]:>24} {cells[1]:>22} "  # type: ignore[union-attr]
                f"{1000 * result['warm_up']:>11.1f} {result['startup']:>10.2f}"
            )


if __name__ == "__main__":
    run_script(main)
