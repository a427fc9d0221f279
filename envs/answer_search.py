"""A depth-limited search of a binary dialogue's yes/no answers under the ranker's belief.

The belief about the target is the softmax of the ranker's item scores over the turn's candidates,
divided by a temperature (1: the scores as they are; lower: sharper). A ranker's scores only order
items, so their scale need not be a calibrated probability: `envs.belief_fit` measures how well each
temperature predicts real targets (``benchmarks/belief_temperature.py``, ``crs train
--fit-plan-temperature``). A node of the search is a dialogue state the
belief allows, and its value is the belief's mass on the targets that would be found from it:

- recommend from here on: the mass of the first k·r items of the node's ranking that its answers allow
  (k the slate size, r the agent turns left);
- ask (below the depth, r >= 2): the node's best aspect (the ranker's), answered yes (the candidates
  keep its holders) or no (it is rejected); the two children's values summed.

It models UNICORN's binary setting (yes/no answers, every accepted aspect kept by the candidates).
`policies.rules.LookaheadPolicy` acts on it; `envs.sb3_wrapper` shows its values to a trained policy
(``WrapperConfig.plan_depth``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.ranker import DialogueFacts, PreferenceRanker
from simulators.catalog import Catalog, compressed_entries
from simulators.errors import CRSError


def top_k(items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The k best-scored items, best first, equal scores by lower item id; shape (min(k, n),).

    Which of the items tied at the k-th best score are kept is `np.argpartition`'s choice (fixed, but
    not always the lowest ids; `envs.sb3_slots.top_positions` keeps the lowest). The rules' published
    figures were measured with it, so it stays.
    """
    if items.size <= k:
        order = np.lexsort((items, -scores))
        return items[order]
    part = np.argpartition(-scores, k - 1)[:k]
    order = np.lexsort((items[part], -scores[part]))
    return items[part][order]


def check_temperature(temperature: float) -> None:
    """Raise a CRSError naming `temperature` unless it is a finite number > 0."""
    number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (number and np.isfinite(temperature) and temperature > 0.0):
        raise CRSError(f"belief temperature {temperature!r} must be a finite number > 0, e.g. 1.0 or 0.01")


def log_belief(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log softmax(scores / temperature) over the candidates, float64 of `scores`' shape (N,).

    Raises:
        CRSError: `temperature` is not a finite number > 0.
    """
    check_temperature(temperature)
    z = (np.asarray(scores, dtype=np.float64) - np.max(scores)) / temperature
    result: np.ndarray = z - np.log(np.exp(z).sum())
    return result


@dataclass(frozen=True)
class SearchNode:
    """A dialogue state that the search's belief allows.

    Attributes:
        facts: The dialogue's facts at the node.
        candidates: Candidate item ids, shape (n,), ascending.
        possible: Of the turn's candidates, those the node's answers leave possible as the target,
            boolean mask of shape (N,).
    """

    facts: DialogueFacts
    candidates: np.ndarray
    possible: np.ndarray


@dataclass(frozen=True)
class Plan:
    """What the search makes of one turn's options.

    Attributes:
        recommend_value: The belief's mass found by recommending from here on.
        ask_values: The mass found by asking each option now, float64 (n,).
        ask: The option the search asks (its position in the options), None: recommend.
    """

    recommend_value: float
    ask_values: np.ndarray
    ask: int | None


class AnswerSearch:
    """The search from one turn's state (see the module docstring).

    Args:
        catalog: The env's catalogue.
        ranker: The ranker whose scores are the belief and whose best aspects are asked.
        slate_size: Items per slate (k).
        depth: Questions a path may ask, >= 1.
        facts: The turn's dialogue facts.
        candidates: The turn's candidate item ids, shape (N,), ascending, N >= 1.
        scores: The ranker's scores of `candidates`, shape (N,); None: scored here.
        temperature: The belief's temperature, > 0: softmax(scores / temperature).

    Raises:
        CRSError: `temperature` is not a finite number > 0.
    """

    def __init__(
        self,
        catalog: Catalog,
        ranker: PreferenceRanker,
        slate_size: int,
        depth: int,
        facts: DialogueFacts,
        candidates: np.ndarray,
        scores: np.ndarray | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.catalog, self.ranker, self.slate_size, self.depth = catalog, ranker, slate_size, depth
        if scores is None:
            scores = ranker.item_scores(facts, candidates)
        self.items, self.belief, self.scores = candidates, np.exp(log_belief(scores, temperature)), scores
        self.root = SearchNode(facts, candidates, np.ones(candidates.size, dtype=bool))

    def plan(self, options: np.ndarray, turns_left: int) -> Plan:
        """Weigh asking each of `options` (aspect ids, best first, shape (n,)) at the root against
        recommending: the search asks the first option worth the most (a later one must be worth
        strictly more), when asking is worth more than recommending, or as much while the slates cannot
        yet cover everything the belief allows (recommending is worth less than 1)."""
        recommend_value = self.recommend_value(self.root, turns_left)
        values = np.array([self.ask_value(self.root, int(a), turns_left) for a in options], dtype=np.float64)
        if values.size == 0:
            return Plan(recommend_value, values, None)
        best = 0
        for k in range(1, values.size):
            if values[k] > values[best] + 1e-9:
                best = k
        tie = abs(values[best] - recommend_value) <= 1e-9  # two sums of the same masses in another order
        asks = (values[best] > recommend_value and not tie) or (tie and recommend_value < 1.0 - 1e-9)
        return Plan(recommend_value, values, best if asks else None)

    def recommend_value(self, node: SearchNode, turns_left: int) -> float:
        """The belief's mass found by showing the node's ranking, a slate per turn left."""
        scores = self.scores if node is self.root else self.ranker.item_scores(node.facts, node.candidates)
        shown = top_k(node.candidates, scores, self.slate_size * turns_left)
        return float(self.belief[node.possible & np.isin(self.items, shown)].sum())

    def ask_value(self, node: SearchNode, aspect: int, turns_left: int, depth: int = 0) -> float:
        """The belief's mass found by asking `aspect` at the node (`depth` questions already asked on
        the path to it) and searching on from both answers."""
        return sum(self.value(child, turns_left - 1, depth + 1) for child in self.answers(node, aspect))

    def value(self, node: SearchNode, turns_left: int, depth: int) -> float:
        """The node's value, `depth` questions already asked on the path to it: the better of
        recommending from here on and (below the search's depth) asking its best aspect."""
        best = self.recommend_value(node, turns_left)
        if depth >= self.depth or turns_left <= 1 or best >= self.belief[node.possible].sum() - 1e-12:
            return best
        aspects = self.best_aspects(node, 1)
        if aspects.size:
            best = max(best, self.ask_value(node, int(aspects[0]), turns_left, depth))
        return best

    def best_aspects(self, node: SearchNode, n: int) -> np.ndarray:
        """The ranker's n best-scored aspects that the node's candidates hold and no answer settled,
        best first (empty when none is left)."""
        _, held = compressed_entries(self.catalog.item_aspects, node.candidates)
        open_ = np.zeros(self.catalog.n_aspects, dtype=bool)
        open_[held] = True
        open_[node.facts.accepted] = False
        open_[node.facts.rejected] = False
        aspects = np.flatnonzero(open_)
        if aspects.size == 0:
            return aspects
        return top_k(aspects, self.ranker.aspect_scores(node.facts, aspects), n)

    def answers(self, node: SearchNode, aspect: int) -> tuple[SearchNode, SearchNode]:
        """The node after a yes and after a no to `aspect`."""
        holders = self.catalog.items_with(aspect)
        held = np.isin(self.items, holders)
        facts = node.facts
        yes = DialogueFacts(
            facts.user, np.union1d(facts.accepted, [aspect]), facts.rejected, facts.rejected_items
        )
        no = DialogueFacts(
            facts.user, facts.accepted, np.union1d(facts.rejected, [aspect]), facts.rejected_items
        )
        return (
            SearchNode(yes, node.candidates[np.isin(node.candidates, holders)], node.possible & held),
            SearchNode(no, node.candidates, node.possible & ~held),
        )
