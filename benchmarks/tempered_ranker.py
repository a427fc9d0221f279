r"""A persona ranker's learned preferences tempered, its dialogue rules untouched (#18, Yelp* binary).

The item score s(v) of `PersonaRanker` is the learned preference part plus the dialogue rules (each
rejected aspect the item holds costs ``REJECTED_ASPECT_PENALTY``, a rejected item
``REJECTED_PENALTY``). `PersonaRanker.with_temperature(T)` (a ranker name's ``@T``) divides the
preference part by a temperature T and keeps the rules:

    s_T(v) = (s(v) − rules(v)) / T + rules(v)

T = 1 is the ranker as trained; T → ∞ is the uniform ranker (no preferences). The same softmax drives
the slates and, with ``+split``, the questions. Every T plays the same conversations, paired with T = 1.

    python benchmarks/tempered_ranker.py --ranker runs/pretrain/yelp_star-l1+split --policy ask-12 -n 600 \
        --seed 0 --temperatures 2 3 4 6 8
"""

from __future__ import annotations

import argparse

from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    add_conversation_options,
    evaluation_from_args,
    positive_float,
    run_script,
)

from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.rollout import evaluate
from policies.pretrain.ranker import PersonaRanker
from policies.rules import RulePolicy
from simulators.errors import CRSError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_conversation_options(
        parser, ranker_help="a persona ranker spec, e.g. DIR+split", splits=("valid", "test")
    )
    parser.add_argument("--policy", default="ask-12", help="a rule policy")
    parser.add_argument(
        "--temperatures", type=positive_float, nargs="+", default=[2.0, 4.0], help="T values played after T 1"
    )
    args = parser.parse_args()

    _, env, policy, indices = evaluation_from_args(args, args.policy)
    if not isinstance(policy, RulePolicy):
        raise CRSError(f"--policy {args.policy!r} is not a rule policy; name one, e.g. ask-12")
    base = policy.ranker
    if not isinstance(base, PersonaRanker):
        raise CRSError(f"--ranker {args.ranker!r} is not a persona ranker; give a `crs pretrain` artifact")
    print(
        f"{args.dataset} {args.split}, {args.policy}, {args.ranker}: {len(indices)} conversations "
        f"(seed {args.seed})"
    )
    first = None
    for temperature in [1.0, *args.temperatures]:
        policy.ranker = base.with_temperature(temperature)
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
    run_script(main)
