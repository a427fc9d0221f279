"""A persona ranker's learned preferences tempered, its dialogue rules untouched (#18, Yelp* binary).

The item score s(v) of `PersonaRanker` is the learned preference part plus the dialogue rules (each
rejected aspect the item holds costs ``REJECTED_ASPECT_PENALTY``, a rejected item
``REJECTED_PENALTY``). Here the preference part is divided by a temperature T and the rules are kept:

    s_T(v) = (s(v) − rules(v)) / T + rules(v)

T = 1 is the ranker as trained; T → ∞ is the uniform ranker (no preferences). The same softmax drives
the slates and, with ``+split``, the questions. Every T plays the same conversations, paired with T = 1.

    python benchmarks/tempered_ranker.py --ranker runs/pretrain/yelp_star-l1+split --policy ask-12 -n 600 \
        --seed 0 --temperatures 2 3 4 6 8
"""

from __future__ import annotations

import argparse
import copy
from collections import OrderedDict

import numpy as np

from crs.app.evaluation import EvalSpec, build_evaluation, conversation_indices
from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.ranker import DialogueFacts
from envs.rollout import evaluate
from policies.pretrain.ranker import REJECTED_ASPECT_PENALTY, REJECTED_PENALTY, PersonaRanker
from policies.rules import RulePolicy


class TemperedRanker(PersonaRanker):
    """`base` with its preference part divided by `temperature` (a shallow copy with fresh caches)."""

    def __init__(self, base: PersonaRanker, temperature: float) -> None:
        self.__dict__.update(copy.copy(base.__dict__))
        self._cache, self._scored = OrderedDict(), OrderedDict()
        self.temperature = temperature

    def _all_item_scores(self, facts: DialogueFacts) -> np.ndarray:
        scores = super()._all_item_scores(facts)
        rules = np.zeros(self.n_items)
        if len(facts.rejected):
            rules -= REJECTED_ASPECT_PENALTY * self._holding(np.asarray(facts.rejected, dtype=np.int64))
        if len(facts.rejected_items):
            rules[np.asarray(facts.rejected_items, dtype=np.int64)] -= REJECTED_PENALTY
        tempered: np.ndarray = (scores - rules) / self.temperature + rules
        return tempered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", default="yelp_star")
    parser.add_argument("--ranker", required=True, help="a persona ranker spec, e.g. DIR+split")
    parser.add_argument("--policy", default="ask-12", help="a rule policy")
    parser.add_argument("-n", "--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0, 4.0])
    args = parser.parse_args()

    spec = EvalSpec.of(
        policy=args.policy,
        dataset=args.dataset,
        ranker=args.ranker,
        episodes=args.episodes,
        seed=args.seed,
        split=args.split,
    )
    env, policy, _, _ = build_evaluation(spec)
    indices = conversation_indices(spec, env)
    assert isinstance(policy, RulePolicy), "--policy must name a rule"
    base = policy.ranker
    assert isinstance(base, PersonaRanker), "--ranker must be a persona ranker"
    print(
        f"{args.dataset} {args.split}, {args.policy}, {args.ranker}: {len(indices)} conversations "
        f"(seed {args.seed})"
    )
    first = None
    for temperature in [1.0, *args.temperatures]:
        policy.ranker = TemperedRanker(base, temperature).with_questions(base.questions)
        metrics = per_episode_metrics(evaluate(env, policy, indices, args.seed))
        line = ", ".join(f"{k} {v.mean():.3f}" for k, v in metrics.items())
        if first is None:
            first = metrics["SR@15"]
            print(f"T 1 (as trained): {line}", flush=True)
            continue
        d = bootstrap_ci(metrics["SR@15"] - first)
        print(
            f"T {temperature:g}: {line}; SR@15 − T 1 {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]", flush=True
        )


if __name__ == "__main__":
    main()
