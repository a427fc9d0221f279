"""Goal samplers: which (user, target) a simulated conversation is about.

A conversation is one (user, item) interaction of a split (UNICORN's rule). Samplers index goals
0..n_goals-1 so that training can draw indices at random and evaluation can walk them in a seeded
order, or split them across workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.users import Goal


class GoalSampler(ABC):
    """Maps a goal index to a `Goal`. Indices 0..n_goals-1 are the split's interactions.

    Args:
        catalog: The catalogue.
        split: Split the goals come from.
        interactions: Draw only these interactions of the split (e.g. the part of Yelp*'s valid
            split that pre-training held out); default: the whole split.
    """

    def __init__(self, catalog: Catalog, split: str, interactions: Interactions | None = None) -> None:
        self.catalog = catalog
        self.split_name = split
        self.interactions: Interactions = catalog.split(split) if interactions is None else interactions
        if len(self.interactions) == 0:
            raise CRSError(f"{catalog.name}: split {split!r} is empty; no conversation can be drawn")

    @property
    def n_goals(self) -> int:
        return len(self.interactions)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n_goals:
            raise CRSError(f"goal index {index} outside [0, {self.n_goals}) of split {self.split_name!r}")

    @abstractmethod
    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        """The goal of conversation `index`; `rng` resolves any further randomness."""


class PairGoals(GoalSampler):
    """One target: the interaction's item."""

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        return Goal(user=int(self.interactions.users[index]), targets=(int(self.interactions.items[index]),))


class MultiTargetGoals(GoalSampler):
    """Several distinct targets sharing an aspect (MCMIPL): the interaction's item plus related items.

    For interaction (user, item): draw the number of targets n uniformly in `n_targets`; try the
    item's aspects in a random order as the pivot; the other n - 1 targets are items with the pivot,
    the user's own items first (all splits), topped up from the catalogue. All targets therefore
    share the pivot aspect. When no pivot has n - 1 other items, the pivot with the most gives fewer
    targets (an item without aspects gives a single target).

    Args:
        catalog: The catalogue.
        split: Split whose interactions index the goals.
        n_targets: Number of targets, an int or an inclusive range (low, high), low >= 1.
    """

    def __init__(
        self,
        catalog: Catalog,
        split: str,
        n_targets: int | tuple[int, int] = (2, 3),
        interactions: Interactions | None = None,
    ) -> None:
        super().__init__(catalog, split, interactions)
        low, high = (n_targets, n_targets) if isinstance(n_targets, int) else n_targets
        if not 1 <= low <= high:
            raise CRSError(
                f"n_targets={n_targets} must be an int >= 1 or a range (low, high), 1 <= low <= high"
            )
        self.n_targets = (int(low), int(high))
        history = None
        for inter in catalog.splits.values():
            matrix = inter.by_user(catalog.n_users, catalog.n_items)
            history = matrix if history is None else history + matrix
        assert history is not None  # the goals' split is one of catalog.splits, so there is at least one
        self._history = history.tocsr()

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        user = int(self.interactions.users[index])
        item = int(self.interactions.items[index])
        low, high = self.n_targets
        n_more = int(rng.integers(low, high + 1)) - 1
        own = self._history.indices[self._history.indptr[user] : self._history.indptr[user + 1]]
        best: list[int] = []
        for pivot in rng.permutation(self.catalog.aspects_of(item)):
            if n_more == 0:
                break
            with_pivot = self.catalog.items_with(int(pivot))
            mine = np.setdiff1d(np.intersect1d(own, with_pivot), [item])
            picked = rng.permutation(mine)[:n_more].tolist()
            if len(picked) < n_more:
                others = np.setdiff1d(with_pivot, np.append(mine, item))
                picked += rng.permutation(others)[: n_more - len(picked)].tolist()
            if len(picked) > len(best):
                best = picked
            if len(best) == n_more:
                break
        return Goal(user=user, targets=(item, *(int(t) for t in best)))


class PersonaGoals(GoalSampler):
    """One target, the interaction's item, with the slot of the persona that produced it.

    `Goal.persona` is the position of the interaction's ground-truth persona among the user's K
    personas (`catalog.truth.user_personas[user]`), so a `PersonaUser` starts with that persona active.

    Raises:
        CRSError: The catalogue has no persona ground truth, the split has no persona labels, or an
            interaction's persona is not one of its user's personas.
    """

    def __init__(self, catalog: Catalog, split: str, interactions: Interactions | None = None) -> None:
        super().__init__(catalog, split, interactions)
        if catalog.truth is None or self.interactions.personas is None:
            raise CRSError(
                f"PersonaGoals needs persona labels, but {catalog.name!r} split {split!r} has none; "
                "use make_persona_world(), or PairGoals for data without personas"
            )
        user_personas = catalog.truth.user_personas[self.interactions.users]
        matches = user_personas == self.interactions.personas[:, None]
        bad = np.flatnonzero(~matches.any(axis=1))
        if bad.size:
            i = int(bad[0])
            persona, user = self.interactions.personas[i], self.interactions.users[i]
            raise CRSError(
                f"{catalog.name} split {split!r}: interaction {i} has persona {persona}, "
                f"not one of user {user}'s personas {user_personas[i].tolist()}"
            )
        self._slots = np.argmax(matches, axis=1)

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        return Goal(
            user=int(self.interactions.users[index]),
            targets=(int(self.interactions.items[index]),),
            persona=int(self._slots[index]),
        )
