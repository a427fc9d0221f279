"""Simulated users, split as in RecSim: a goal sampler, a response model, and patience.

The interface every user model implements:

- `reset(goal, rng)`: start a conversation with a hidden goal (user id, target item(s)).
- `opening_aspect()`: turn 1 is the user's: one random aspect of the target, stated by the user.
- `answer(aspects)`: the subset of the asked aspects that the user accepts (a binary question asks
  one aspect; a multiple-choice question or probe asks several).
- `react(slate)`: whether the user accepts an item of the slate, and whether the user leaves.

The env reads `targets` only to fill `info` at the end of an episode; a policy never sees it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulators.catalog import Catalog


@dataclass(frozen=True)
class Goal:
    """What a simulated user wants in one conversation.

    Attributes:
        user: User id.
        targets: Target item ids (one for a single-target user, several for multi-interest).
        persona: Slot (0..K-1) of the user's active persona, or None outside the persona world.
    """

    user: int
    targets: tuple[int, ...]
    persona: int | None = None


@dataclass(frozen=True)
class SlateReaction:
    """A user's reaction to a recommended slate.

    Attributes:
        accepted: The accepted item id, or None when no item of the slate fits.
        rank: 1-based position of the accepted item in the slate, or None.
        leaves: True when the user runs out of patience and leaves.
    """

    accepted: int | None
    rank: int | None
    leaves: bool = False


class UserModel(ABC):
    """A simulated user: answers questions and reacts to slates according to a hidden goal."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._goal: Goal | None = None
        self._rng: np.random.Generator | None = None

    def reset(self, goal: Goal, rng: np.random.Generator) -> None:
        """Start a conversation with `goal`, drawing all randomness from `rng`."""
        self._goal = goal
        self._rng = rng

    @property
    def goal(self) -> Goal:
        if self._goal is None:
            raise RuntimeError("call reset(goal, rng) before using the user")
        return self._goal

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            raise RuntimeError("call reset(goal, rng) before using the user")
        return self._rng

    @property
    def targets(self) -> tuple[int, ...]:
        """The current target items (hidden from policies)."""
        return self.goal.targets

    @abstractmethod
    def opening_aspect(self) -> int:
        """The aspect the user states in the opening turn."""

    @abstractmethod
    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        """The subset of `aspects` the user accepts."""

    @abstractmethod
    def react(self, slate: Sequence[int]) -> SlateReaction:
        """The user's reaction to a recommended slate."""


class SingleTargetUser(UserModel):
    """The EAR/SCPR/UNICORN user: one target item, truthful answers, no early leave.

    - Opening: states one aspect of the target, drawn uniformly.
    - Question about aspects A: accepts exactly A ∩ aspects(target). For Yelp*'s enumerated
      questions the env asks the fine aspects of one category; the same rule gives the answer.
    - Slate: accepts iff the target is in it.
    """

    def opening_aspect(self) -> int:
        aspects = self.catalog.aspects_of(self.targets[0])
        return int(self.rng.choice(aspects))

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        return _accepted_by_any(self.catalog, self.targets, aspects)

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return _first_hit(slate, self.targets)


def _accepted_by_any(catalog: Catalog, targets: Sequence[int], aspects: Sequence[int]) -> frozenset[int]:
    """Aspects of `aspects` that at least one target item has."""
    owned = set()
    for target in targets:
        owned.update(catalog.aspects_of(target).tolist())
    return frozenset(int(a) for a in aspects if int(a) in owned)


def _first_hit(slate: Sequence[int], targets: Sequence[int]) -> SlateReaction:
    """Accept the best-ranked slate item that is a target."""
    wanted = set(targets)
    for rank, item in enumerate(slate, start=1):
        if int(item) in wanted:
            return SlateReaction(accepted=int(item), rank=rank)
    return SlateReaction(accepted=None, rank=None)
