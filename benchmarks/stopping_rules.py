r"""When to stop asking (#17, #18): fixed ask-N, an oracle over N, confident early slates, a final reserve.

Every variant plays the same conversations with the same ranker (question rule included):

- ``ask-N`` for each N in ``--asks``;
- the oracle bound over those N: a conversation counts as a success if any ask-N succeeded on it. No
  policy that only chooses how many questions to ask before recommending can do better, though part of
  the bound is chance (each N sees a different question sequence);
- ``ask-N, confident θ``: ask-N, except that it recommends whenever the ranker puts at least θ of its
  softmax mass over the candidates on the top-k slate (k the env's slate size); after a rejected slate it
  goes on asking while fewer than N questions were asked;
- ``ask-until-K, last R``: ask-until-K that recommends in the last R agent turns whatever is left (a
  question in the last turn can never lead to a success; in the last few a slate may beat one more
  question).

Paired differences (95% bootstrap CI over conversations) are against ``ask-{--reference}``.

    python benchmarks/stopping_rules.py -d yelp_star --ranker runs/pretrain/yelp_star-l1+split -n 600 \
        --seed 0 --asks 8 9 10 11 12 13 --confident 12:0.7 12:0.8 12:0.9 11:0.8
    python benchmarks/stopping_rules.py -d lastfm_star --ranker uniform+split -n 5000 --seed 1 \
        --split valid --asks 7 --reference 7 --until-reserve 60:0 60:1 60:2 60:3 60:4 60:5
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    add_conversation_options,
    evaluation_from_args,
    positive_int,
    run_script,
)

from envs.env import ConversationEnv
from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.ranker import PreferenceRanker
from envs.rollout import evaluate
from policies.rules import AskThenRecommendPolicy, AskUntilPolicy, RulePolicy


class ConfidentAskPolicy(AskThenRecommendPolicy):
    """ask-N that recommends early whenever the ranker's top-k slate holds at least θ of its mass."""

    def __init__(self, ranker: PreferenceRanker | None, n_asks: int, threshold: float) -> None:
        super().__init__(ranker, n_asks)
        self.threshold = threshold
        self.name = f"ask-{n_asks}, confident {threshold:g}"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        state = env.state
        candidates = state.candidate_items()
        if candidates.size:
            scores = self._require_ranker().item_scores(state.facts(), candidates)
            p = np.exp(scores - scores.max())
            top = np.sort(p)[::-1][: env.slate_size].sum() / p.sum()
            if top >= self.threshold:
                return self.slate(env)
        return super().act(env)


class ReserveAskUntilPolicy(AskUntilPolicy):
    """ask-until-K that recommends in the last `reserve` agent turns, whatever is left."""

    def __init__(self, ranker: PreferenceRanker | None, k: int, reserve: int) -> None:
        super().__init__(ranker, k)
        self.reserve = reserve
        self.name = f"ask-until-{k}, last {reserve}"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if env.max_turns - env.state.turn <= self.reserve:
            return self.slate(env)
        return super().act(env)


def _pair(text: str) -> tuple[int, float]:
    n, _, value = text.partition(":")
    try:
        return int(n), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:VALUE such as 12:0.8, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_conversation_options(parser, ranker_help="a ranker spec, e.g. DIR+split")
    parser.add_argument(
        "--asks", type=positive_int, nargs="+", default=[8, 9, 10, 11, 12, 13], help="N values of ask-N"
    )
    parser.add_argument(
        "--reference", type=positive_int, default=12, help="the ask-N the others are paired with"
    )
    parser.add_argument("--confident", type=_pair, nargs="*", default=[], help="N:THETA pairs")
    parser.add_argument("--until-reserve", type=_pair, nargs="*", default=[], help="K:R pairs")
    args = parser.parse_args()
    if args.reference not in args.asks:
        parser.error(f"--reference {args.reference} must be one of --asks {args.asks}")

    _, env, reference, indices = evaluation_from_args(args, f"ask-{args.reference}")
    assert isinstance(reference, AskThenRecommendPolicy)
    ranker = reference.ranker
    first_reference = sorted(args.asks, key=lambda n: n != args.reference)  # paired with it from the start
    policies: list[RulePolicy] = [AskThenRecommendPolicy(ranker, n) for n in first_reference]
    policies += [ConfidentAskPolicy(ranker, n, threshold) for n, threshold in args.confident]
    policies += [ReserveAskUntilPolicy(ranker, k, int(r)) for k, r in args.until_reserve]
    print(f"{args.dataset} {args.split}, {args.ranker}: {len(indices)} conversations (seed {args.seed})")
    success: dict[str, np.ndarray] = {}
    for policy in policies:
        metrics = per_episode_metrics(evaluate(env, policy, indices, args.seed))
        success[policy.name] = metrics["SR@15"]
        line = ", ".join(f"{k} {v.mean():.3f}" for k, v in metrics.items())
        first = success.get(f"ask-{args.reference}")
        paired = ""
        if first is not None and policy.name != f"ask-{args.reference}":
            d = bootstrap_ci(metrics["SR@15"] - first)
            paired = f"; SR@15 − ask-{args.reference} {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        print(f"{policy.name}: {line}{paired}", flush=True)
    bound = np.max([success[f"ask-{n}"] for n in args.asks], axis=0)
    print(f"oracle over ask-{{{','.join(map(str, args.asks))}}}: SR@15 {bound.mean():.3f}")


if __name__ == "__main__":
    run_script(main)
