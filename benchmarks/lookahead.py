"""When to stop asking, planned: `lookahead-D` against ask-N on the same conversations (#18).

`policies.rules.LookaheadPolicy` asks ask-N's question or shows ask-N's slate each turn, whichever a
depth-D search of the answers values more under the ranker's belief. This plays ask-{--reference} and
lookahead-DxQtT for each D in --depths, Q in --questions and T in --temperatures on the same
conversations and prints each one's metrics, its SR@15 paired with ask-{--reference} (95% bootstrap
CI over conversations) and its run time.

--holdout plays the valid interactions that the tag profiles (and the popularity prior) left out, the
conversations `crs train` validates on with such a ranker on Yelp* (its test split stays untouched).

    python benchmarks/lookahead.py -d yelp_star --ranker uniform+profile+pop+split -n 2000 --seed 1 \\
        --holdout --depths 2 --questions 1 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    add_conversation_options,
    evaluation_from_args,
    positive_float,
    positive_int,
    run_script,
)

from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.registry import make_env
from envs.rollout import evaluate, evaluation_indices
from policies.content_profile import profile_holdout
from policies.rules import AskThenRecommendPolicy, LookaheadPolicy, RulePolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_conversation_options(
        parser, ranker_help="a ranker spec, e.g. uniform+profile+pop+split", holdout=True
    )
    parser.add_argument(
        "--reference", type=positive_int, default=10, help="the ask-N the others are paired with"
    )
    parser.add_argument(
        "--depths",
        type=positive_int,
        nargs="+",
        default=[2],
        help="D values: the search depth of lookahead-DxQtT",
    )
    parser.add_argument(
        "--questions",
        type=positive_int,
        nargs="+",
        default=[1],
        help="Q values: lookahead-DxQ weighs Q questions",
    )
    parser.add_argument(
        "--temperatures",
        type=positive_float,
        nargs="+",
        default=[1.0],
        help="the belief's T values (lookahead-DxQtT)",
    )
    args = parser.parse_args()

    _, env, reference, indices = evaluation_from_args(args, f"ask-{args.reference}")
    split = args.split
    if args.holdout:
        held_out = profile_holdout(env.catalog)
        if held_out is None:
            parser.error(f"{args.dataset} pre-trains on train: its whole valid split is held out")
        env = make_env(catalog=env.catalog, split="valid", goal_interactions=held_out)
        indices = evaluation_indices(env.goals.n_goals, args.episodes, args.seed)
        split = "valid hold-out"
    assert isinstance(reference, AskThenRecommendPolicy)
    policies: list[RulePolicy] = [
        reference,
        *(
            LookaheadPolicy(reference.ranker, d, q, t)
            for d in args.depths
            for q in args.questions
            for t in args.temperatures
        ),
    ]
    print(f"{args.dataset} {split}, {args.ranker}: {len(indices)} conversations (seed {args.seed})")
    first: np.ndarray | None = None
    for policy in policies:
        started = time.perf_counter()
        metrics = per_episode_metrics(evaluate(env, policy, indices, args.seed))
        took = time.perf_counter() - started
        line = ", ".join(f"{k} {v.mean():.3f}" for k, v in metrics.items())
        paired = ""
        if first is None:
            first = metrics["SR@15"]
        else:
            d = bootstrap_ci(metrics["SR@15"] - first)
            paired = f"; SR@15 − {reference.name} {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        print(f"{policy.name}: {line}{paired} ({took:.0f} s)", flush=True)


if __name__ == "__main__":
    run_script(main)
