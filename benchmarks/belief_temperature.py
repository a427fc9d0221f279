"""How well the search's belief predicts real targets, per temperature (#18).

`envs.answer_search` believes the target is softmax(scores / T) over the turn's candidates. A ranker's
scores only have to order items, so T = 1 need not be calibrated. This opens --episodes conversations
(the pre-training hold-out with --holdout, as `crs train` validates on Yelp*; else --split) and prints,
per temperature, the mean log-likelihood of the real target under the opening turn's belief, and the
temperature that maximises it: the T to try in ``lookahead-DxQtT`` and ``wrapper.plan_temperature``.
Conversations whose target the opening already excluded are left out (counted).

    python benchmarks/belief_temperature.py -d yelp_star --ranker uniform+profile+pop+split -n 1000 \\
        --seed 2 --holdout
"""

from __future__ import annotations

import argparse

import numpy as np

from crs.app.evaluation import EvalSpec
from envs.answer_search import log_belief
from envs.registry import make_env
from envs.rollout import episode_seed, evaluation_indices
from policies.content_profile import profile_holdout
from policies.rankers import build_ranker

TEMPERATURES = (1.0, 0.3, 0.1, 0.05, 0.03, 0.02, 0.015, 0.01, 0.007, 0.005, 0.003)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", default="yelp_star")
    parser.add_argument("--ranker", required=True, help="a ranker spec, e.g. uniform+profile+pop+split")
    parser.add_argument("-n", "--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "valid", "test"), default="valid")
    parser.add_argument(
        "--holdout", action="store_true", help="valid's interactions the tag profiles left out (Yelp*)"
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    args = parser.parse_args()

    spec = EvalSpec.of(dataset=args.dataset, ranker=args.ranker, split=args.split)
    catalog = spec.dataset_spec().load()
    ranker = build_ranker(args.ranker, catalog, spec.data_dir)
    split = args.split
    if args.holdout:
        held_out = profile_holdout(catalog)
        if held_out is None:
            parser.error(f"{args.dataset} pre-trains on train: its whole valid split is held out")
        env = make_env(catalog=catalog, split="valid", goal_interactions=held_out)
        split = "valid hold-out"
    else:
        env = make_env(catalog=catalog, split=split)
    totals = np.zeros(len(args.temperatures))
    scored = excluded = 0
    for index in evaluation_indices(env.goals.n_goals, args.episodes, args.seed):
        env.reset(seed=episode_seed(args.seed, int(index)), options={"goal_index": int(index)})
        candidates = env.state.candidate_items()
        target = int(env.user.targets[0])
        position = int(np.searchsorted(candidates, target))
        if position >= candidates.size or candidates[position] != target:
            excluded += 1
            continue
        scores = ranker.item_scores(env.state.facts(), candidates)
        totals += [log_belief(scores, t)[position] for t in args.temperatures]
        scored += 1
    print(
        f"{args.dataset} {split}, {args.ranker}: {scored} conversations (seed {args.seed}); "
        f"{excluded} whose opening excluded the target left out"
    )
    means = totals / max(scored, 1)
    for temperature, mean in zip(args.temperatures, means, strict=True):
        print(f"T {temperature:g}: mean log-likelihood of the target {mean:.3f}")
    print(f"best T: {args.temperatures[int(np.argmax(means))]:g}")


if __name__ == "__main__":
    main()
