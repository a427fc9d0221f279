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

from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    add_conversation_options,
    positive_float,
    run_script,
)

from crs.app.evaluation import EvalSpec
from envs.belief_fit import FIT_TEMPERATURES, fit_temperature
from envs.registry import make_env
from envs.rollout import evaluation_indices
from policies.content_profile import profile_holdout
from policies.rankers import build_ranker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_conversation_options(
        parser,
        ranker_help="a ranker spec, e.g. uniform+profile+pop+split",
        episodes=1000,
        episodes_help="conversations to open",
        split="valid",
        holdout=True,
    )
    parser.add_argument(
        "--temperatures",
        type=positive_float,
        nargs="+",
        default=list(FIT_TEMPERATURES),
        help="the belief temperatures T to compare",
    )
    args = parser.parse_args()

    spec = EvalSpec.of(dataset=args.dataset, ranker=args.ranker, split=args.split, data_dir=args.data_dir)
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
    indices = evaluation_indices(env.goals.n_goals, args.episodes, args.seed)
    fit = fit_temperature(env, ranker, indices, args.seed, args.temperatures)
    print(
        f"{args.dataset} {split}, {args.ranker}: {fit.scored} conversations (seed {args.seed}); "
        f"{fit.excluded} whose opening excluded the target left out"
    )
    for temperature, mean in zip(fit.temperatures, fit.log_likelihoods, strict=True):
        print(f"T {temperature:g}: mean log-likelihood of the target {mean:.3f}")
    print(f"best T: {fit.best:g}")


if __name__ == "__main__":
    run_script(main)
