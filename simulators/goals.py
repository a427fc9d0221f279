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
    """Maps a goal index to a `Goal`. Indices 0..n_goals-1 are the split's interactions."""

    def __init__(self, catalog: Catalog, split: str) -> None:
        self.catalog = catalog
        self.split_name = split
        self.interactions: Interactions = catalog.split(split)
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
