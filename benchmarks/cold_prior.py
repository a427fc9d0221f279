r"""Benchmark (#17, cause 1): a cold-item prior over the pre-trained persona ranker, with a rule policy.

The pre-trained ranker scores items that have no `train` interaction ("cold") near the bottom, and
37.9% of LastFM* test targets are cold. This mixes the ranker's item distribution with a uniform one
over the cold items, weighted by the share ρ of cold targets among the *valid* interactions (the
test split is never read for it):

    warm v:  s'(v) = log(1 − ρ) + s(v | ∅)/T − logsumexp_{warm w} s(w | ∅)/T + s(v | facts) − s(v | ∅)
    cold v:  s'(v) = log(ρ / n_cold) + s(v | facts) − s(v | ∅)

so the ranker's learned preference, tempered by T (1: as learned), decides among warm items, the
dialogue's evidence (accepted and rejected aspects, rejected items: s(v | facts) − s(v | ∅)) moves
every item, and cold items keep their prior mass instead of the ranker's near-zero one. Aspect scores
follow (they are the mass of the consistent items holding each aspect under s').

    python benchmarks/cold_prior.py --ranker runs/pretrain/lastfm_star-full --policy ask-7 -n 5000 \
        --seed 1 --out out/issue17/cold [--temperatures 3 --rules-only --questions split]
"""

from __future__ import annotations

import argparse
import copy
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
from _cli import (  # this folder is on sys.path as a script
    evaluation_from_args,
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    run_script,
)

from envs.metrics import MetricSummary, bootstrap_ci, per_episode_metrics
from envs.ranker import DialogueFacts
from envs.rollout import evaluate
from policies.pretrain.ranker import QUESTION_RULES, REJECTED_ASPECT_PENALTY, REJECTED_PENALTY, PersonaRanker
from policies.rules import RulePolicy
from simulators.catalog import Catalog
from simulators.errors import CRSError

EMPTY = np.zeros(0, dtype=np.int64)


class ColdPriorRanker(PersonaRanker):
    """`base` with the cold-item prior of the module docstring (a shallow copy with fresh caches)."""

    def __init__(
        self,
        base: PersonaRanker,
        cold: np.ndarray,
        share: float,
        temperature: float = 1.0,
        rules_only: bool = False,
    ) -> None:
        self.__dict__.update(copy.copy(base.__dict__))
        self.rules_only_for_cold = rules_only
        self._cache, self._scored = OrderedDict(), OrderedDict()
        self.cold = cold
        self.warm_temperature = temperature  # not `temperature`: PersonaRanker reads that one itself
        self.log_cold = np.log(share) - np.log(max(int(cold.sum()), 1))
        self.log_warm = np.log(1.0 - share)
        self._empty: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _prior(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """s(· | ∅) for `user`, and the log of its prior (module docstring), both of shape (I,)."""
        kept = self._empty.get(user)
        if kept is None:
            plain = super()._all_item_scores(DialogueFacts(user, EMPTY, EMPTY, EMPTY))
            tempered = plain / self.warm_temperature
            warm = tempered[~self.cold]
            top = warm.max()
            log_warm = self.log_warm + tempered - (top + np.log(np.exp(warm - top).sum()))
            kept = (plain, np.where(self.cold, self.log_cold, log_warm))
            self._empty[user] = kept
        return kept

    def _all_item_scores(self, facts: DialogueFacts) -> np.ndarray:
        scores = super()._all_item_scores(facts)
        plain, log_prior = self._prior(facts.user)
        out: np.ndarray = log_prior + scores - plain
        if self.rules_only_for_cold:  # a cold item's embedding is untrained: only the rules move it
            rules = np.zeros(self.n_items)
            if len(facts.rejected):
                rules -= REJECTED_ASPECT_PENALTY * self._holding(np.asarray(facts.rejected, dtype=np.int64))
            if len(facts.rejected_items):
                rules[np.asarray(facts.rejected_items, dtype=np.int64)] -= REJECTED_PENALTY
            out[self.cold] = log_prior[self.cold] + rules[self.cold]
        return out


def cold_items(catalog: Catalog) -> np.ndarray:
    """Items with no `train` interaction, boolean of shape (I,)."""
    seen = np.zeros(catalog.n_items, dtype=bool)
    seen[catalog.split("train").items] = True
    return ~seen


def summary(values: np.ndarray) -> str:
    ci: MetricSummary = bootstrap_ci(values)
    return f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranker", required=True, help="crs pretrain artifact folder")
    parser.add_argument("--dataset", default="lastfm_star", help="dataset name")
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; default $CRS_DATA_DIR")
    parser.add_argument("--policy", default="ask-7", help="a rule policy")
    parser.add_argument("-n", "--episodes", type=positive_int, default=5000, help="conversations")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="seed of the conversations")
    parser.add_argument(
        "--shares",
        type=open_fraction,
        nargs="*",
        default=None,
        help="ρ values, each strictly between 0 and 1 (default: valid's cold share)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write each variant's episodes.jsonl here")
    parser.add_argument(
        "--temperatures", type=positive_float, nargs="*", default=[1.0], help="T values (1: as learned)"
    )
    parser.add_argument(
        "--rules-only", action="store_true", help="move cold items by the rejection rules only, not e_v"
    )
    parser.add_argument("--no-base", dest="with_base", action="store_false", help="skip the plain ranker")
    parser.add_argument(
        "--questions", choices=QUESTION_RULES, default="likely", help="how every variant scores questions"
    )
    args = parser.parse_args()

    _, env, policy, indices = evaluation_from_args(args, args.policy, split="test")
    cold = cold_items(env.catalog)
    valid = env.catalog.split("valid").items
    shares = args.shares or [float(cold[valid].mean())]
    if not 0.0 < shares[0] < 1.0:
        raise CRSError(
            f"the cold share of {args.dataset}'s valid interactions is {shares[0]:g}: no prior to mix; "
            "give --shares values between 0 and 1"
        )
    if not isinstance(policy, RulePolicy):
        raise CRSError(f"--policy {args.policy!r} is not a rule policy; name one, e.g. ask-7")
    if not isinstance(policy.ranker, PersonaRanker):
        raise CRSError(
            f"--ranker {args.ranker!r} is not a persona ranker; give a `crs pretrain` artifact folder"
        )
    base = policy.ranker.with_questions(args.questions)
    print(
        f"{args.dataset}: {int(cold.sum())} of {cold.size} items cold; cold share of valid interactions "
        f"{cold[valid].mean():.3f}"
    )
    variants: list[tuple[str, PersonaRanker]] = [("pre-trained", base)]
    variants += [
        (
            f"cold prior rho={share:.3f} T={t:g}" + (" rules" if args.rules_only else ""),
            ColdPriorRanker(base, cold, share, t, args.rules_only).with_questions(args.questions),
        )
        for share in shares
        for t in args.temperatures
    ]
    results = {}
    for name, ranker in variants[0 if args.with_base else 1 :]:
        policy.ranker = ranker
        records = evaluate(env, policy, indices, args.seed)
        metrics = per_episode_metrics(records)
        results[name] = metrics
        is_cold = cold[np.array([r.targets[0] for r in records])]
        sr = metrics["SR@15"]
        print(
            f"{args.policy}, {name}: SR@15 {sr.mean():.3f} (cold {share_text(sr[is_cold])}, warm "
            f"{share_text(sr[~is_cold])}), AT {metrics['AT'].mean():.2f}, hDCG {metrics['hDCG'].mean():.3f}"
        )
        if args.out is not None:
            folder = args.out / name.replace(" ", "-")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "episodes.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
        if "pre-trained" in results and name != "pre-trained":
            first = results["pre-trained"]
            paired = {k: summary(metrics[k] - first[k]) for k in ("SR@15", "AT", "hDCG")}
            print("  − pre-trained, paired:", paired)


def share_text(successes: np.ndarray) -> str:
    """The mean of `successes` to three decimals and how many conversations it counts, e.g. "0.750 of
    4"; "none" when the sample holds no such conversation."""
    return f"{successes.mean():.3f} of {successes.size}" if successes.size else "none"


if __name__ == "__main__":
    run_script(main)
