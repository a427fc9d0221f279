"""When to stop asking, planned: a lookahead over ask-N's own questions under the ranker's belief (#18).

``lookahead-D`` plays the binary setting with the ask-N rules' question (the ranker's best aspect) and
slate (its top k), and decides each turn between them by a depth-D search. The belief about the target
is the ranker's softmax over the candidates at the turn. Each node of the search is a dialogue state
that the belief allows; its value is the belief's mass on targets that would be found:

- recommend from here on: the mass of the first k·r items of the node's ranking that its answers allow
  (r agent turns left);
- ask (depth < D, r ≥ 2): the node's best question, answered yes (candidates keep its holders) or no
  (it is rejected), the two children's values summed;
- with ``--interleave``, also one slate, then on from the node without it.

The root takes the better of ask and recommend (ties: recommend when everything the belief allows is
covered, else ask). It is a policy the rules cannot express: when a question's answer would not shrink
what is left, it stops; when the candidates can still be halved, it goes on. No training. Paired
against ``ask-{--reference}`` on the same conversations, as `benchmarks/stopping_rules.py`.

    python benchmarks/lookahead.py -d yelp_star --ranker uniform+profile+split -n 600 --seed 0 \
        --depths 2 3 --reference 10
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from crs.app.evaluation import EvalSpec, build_evaluation, conversation_indices
from envs.env import ConversationEnv
from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.ranker import DialogueFacts
from envs.registry import make_env
from envs.rollout import evaluate, evaluation_indices
from policies.content_profile import profile_holdout
from policies.pretrain.ranker import PersonaRanker
from policies.rules import AskThenRecommendPolicy, RulePolicy, top_k
from simulators.catalog import compressed_entries


@dataclass(frozen=True)
class Node:
    """A dialogue state the belief allows: its facts, its candidates and the targets still possible.

    Attributes:
        facts: The dialogue's facts at the node.
        candidates: Candidate item ids, shape (n,), ascending.
        possible: Of the root's candidates, those the node's answers allow as the target, mask (N,).
    """

    facts: DialogueFacts
    candidates: np.ndarray
    possible: np.ndarray


class LookaheadPolicy(RulePolicy):
    """ask-N's question or ask-N's slate, whichever a depth-`depth` search under the belief values more."""

    def __init__(
        self, ranker: PersonaRanker, depth: int, interleave: bool = False, belief_temperature: float = 1.0
    ) -> None:
        super().__init__(ranker)
        self.depth = depth
        self.interleave = interleave
        self.believer = ranker.with_temperature(belief_temperature)
        interleaved = " interleaved" if interleave else ""
        self.name = f"lookahead-{depth}{interleaved}, belief T {belief_temperature:g}"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        state = env.state
        turns_left = env.max_turns - state.turn
        root_items = state.candidate_items()
        if turns_left <= 1 or root_items.size <= env.slate_size:
            return self.slate(env)
        scores = self.believer.item_scores(state.facts(), root_items)
        belief = np.exp(scores - scores.max())
        belief /= belief.sum()
        self._env, self._root_items, self._belief = env, root_items, belief
        root = Node(state.facts(), root_items, np.ones(root_items.size, dtype=bool))
        question = self._question(root)
        if question is None:
            return self.slate(env)
        recommend = self._recommend_all(root, turns_left)
        ask = sum(self._value(child, turns_left - 1, 1) for child in self._answers(root, question))
        if self.interleave:
            recommend = max(recommend, self._one_slate(root, turns_left, 0))
        if ask > recommend or (ask == recommend and recommend < belief.sum() - 1e-9):
            return self.question(env, question)
        return self.slate(env)

    # search ------------------------------------------------------------------------------------
    def _value(self, node: Node, turns_left: int, depth: int) -> float:
        best = self._recommend_all(node, turns_left)
        if depth >= self.depth or turns_left <= 1 or best >= self._mass(node.possible) - 1e-12:
            return best
        question = self._question(node)
        if question is not None:
            children = self._answers(node, question)
            best = max(best, sum(self._value(child, turns_left - 1, depth + 1) for child in children))
        if self.interleave:
            best = max(best, self._one_slate(node, turns_left, depth))
        return best

    def _one_slate(self, node: Node, turns_left: int, depth: int) -> float:
        slate = self._ranking(node, self._env.slate_size)
        found = self._mass(node.possible & np.isin(self._root_items, slate))
        facts = node.facts
        rejected_items = np.union1d(facts.rejected_items, slate).astype(np.int64)
        after = Node(
            DialogueFacts(facts.user, facts.accepted, facts.rejected, rejected_items),
            np.setdiff1d(node.candidates, slate, assume_unique=True),
            node.possible & ~np.isin(self._root_items, slate),
        )
        return found + self._value(after, turns_left - 1, depth + 1)

    def _recommend_all(self, node: Node, turns_left: int) -> float:
        shown = self._ranking(node, self._env.slate_size * turns_left)
        return self._mass(node.possible & np.isin(self._root_items, shown))

    def _mass(self, possible: np.ndarray) -> float:
        return float(self._belief[possible].sum())

    def _ranking(self, node: Node, n: int) -> np.ndarray:
        scores = self._require_ranker().item_scores(node.facts, node.candidates)
        return top_k(node.candidates, scores, n)

    def _question(self, node: Node) -> int | None:
        catalog = self._env.catalog
        _, held = compressed_entries(catalog.item_aspects, node.candidates)
        open_ = np.zeros(catalog.n_aspects, dtype=bool)
        open_[held] = True
        open_[node.facts.accepted] = False
        open_[node.facts.rejected] = False
        aspects = np.flatnonzero(open_)
        if aspects.size == 0:
            return None
        scores = self._require_ranker().aspect_scores(node.facts, aspects)
        return int(top_k(aspects, scores, 1)[0])

    def _answers(self, node: Node, aspect: int) -> tuple[Node, Node]:
        holders = self._env.catalog.items_with(aspect)
        facts = node.facts
        yes = Node(
            DialogueFacts(
                facts.user,
                np.union1d(facts.accepted, [aspect]).astype(np.int64),
                facts.rejected,
                facts.rejected_items,
            ),
            node.candidates[np.isin(node.candidates, holders)],
            node.possible & np.isin(self._root_items, holders),
        )
        no = Node(
            DialogueFacts(
                facts.user,
                facts.accepted,
                np.union1d(facts.rejected, [aspect]).astype(np.int64),
                facts.rejected_items,
            ),
            node.candidates,
            node.possible & ~np.isin(self._root_items, holders),
        )
        return yes, no


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", default="yelp_star")
    parser.add_argument("--ranker", required=True, help="a ranker spec, e.g. uniform+profile+split")
    parser.add_argument("-n", "--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--reference", type=int, default=10, help="the ask-N the others are paired with")
    parser.add_argument("--depths", type=int, nargs="+", default=[2])
    parser.add_argument("--interleave", action="store_true", help="also search one slate then on")
    parser.add_argument("--beliefs", type=float, nargs="+", default=[1.0], help="belief temperatures")
    parser.add_argument(
        "--holdout", action="store_true", help="valid's interactions the tag profiles left out (Yelp*)"
    )
    args = parser.parse_args()

    spec = EvalSpec.of(
        policy=f"ask-{args.reference}",
        dataset=args.dataset,
        ranker=args.ranker,
        episodes=args.episodes,
        seed=args.seed,
        split=args.split,
    )
    env, reference, _, _ = build_evaluation(spec)
    indices = conversation_indices(spec, env)
    split = args.split
    if args.holdout:
        env = make_env(catalog=env.catalog, split="valid", goal_interactions=profile_holdout(env.catalog))
        indices = evaluation_indices(env.goals.n_goals, args.episodes, args.seed)
        split = "valid hold-out"
    assert isinstance(reference, AskThenRecommendPolicy) and isinstance(reference.ranker, PersonaRanker)
    policies: list[RulePolicy] = [reference]
    policies += [
        LookaheadPolicy(reference.ranker, depth, args.interleave, belief)
        for depth in args.depths
        for belief in args.beliefs
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
    main()
