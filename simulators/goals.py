"""Goal samplers: which (user, target) a simulated conversation is about.

A conversation is one (user, item) interaction of a split (UNICORN's rule). Samplers index goals
0..n_goals-1 so that training can draw indices at random and evaluation can walk them in a seeded
order, or split them across workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError
from simulators.mcmipl import TargetGroups
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

    def sample_index(self, rng: np.random.Generator) -> int:
        """The goal index of a training conversation (random order): uniform over the goals, i.e.
        interaction-uniform (UNICORN's draw), with one ``rng.integers`` call."""
        return int(rng.integers(self.n_goals))

    def protocol_order(self, seed: int = 1, size: int | None = None) -> np.ndarray:
        """The field's own evaluation conversations: the first `size` goals of
        ``np.random.RandomState(seed).permutation(n_goals)``; shape (min(size, n_goals),), int64.

        UNICORN (``__test_tuple_generate__`` of both its envs) and MCMIPL build their test tuples in
        file order (users in the split file's key order, each user's items or groups as listed,
        which is the goal order here) and ``np.random.shuffle`` them right after
        ``set_random_seed(seed)``; a shuffle of the rows draws the same swaps as this permutation.

        Args:
            seed: The protocol's seed (1 by default in both codes).
            size: Conversations (None: all); UNICORN evaluates
                `simulators.scpr.UNICORN_EVALUATION_CONVERSATIONS`, MCMIPL
                `simulators.mcmipl.EVALUATION_CONVERSATIONS` of them.
        """
        order = np.random.RandomState(seed).permutation(self.n_goals).astype(np.int64)
        return order if size is None else order[:size]


class PairGoals(GoalSampler):
    """One target: the interaction's item."""

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        return Goal(user=int(self.interactions.users[index]), targets=(int(self.interactions.items[index]),))


class MultiTargetGoals(GoalSampler):
    """Several distinct targets sharing an aspect (MCMIPL): the interaction's item plus related items.

    For interaction (user, item): draw the number of targets n uniformly in `n_targets`; try the
    item's aspects in a random order as the pivot; the other n - 1 targets are items with the pivot,
    the user's own items of the goal's split first, topped up from the catalogue but never from the
    user's items of another split (a test goal never targets an item the recommender trained on). All
    targets therefore share the pivot aspect. When no pivot has n - 1 other items, the pivot with the
    most gives fewer targets (an item without aspects gives a single target).

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
        shape = (catalog.n_users, catalog.n_items)
        by_split = {name: inter.by_user(*shape).tocsr() for name, inter in catalog.splits.items()}
        self._own = by_split[split]  # the user's items of the goal's split
        others = [matrix for name, matrix in by_split.items() if name != split]
        self._elsewhere = sum(others, sp.csr_matrix(shape, dtype=self._own.dtype)).tocsr()

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        user = int(self.interactions.users[index])
        item = int(self.interactions.items[index])
        low, high = self.n_targets
        n_more = int(rng.integers(low, high + 1)) - 1
        own = self._own.indices[self._own.indptr[user] : self._own.indptr[user + 1]]
        held_out = self._elsewhere.indices[self._elsewhere.indptr[user] : self._elsewhere.indptr[user + 1]]
        best: list[int] = []
        for pivot in rng.permutation(self.catalog.aspects_of(item)):
            if n_more == 0:
                break
            with_pivot = self.catalog.items_with(int(pivot))
            mine = np.setdiff1d(np.intersect1d(own, with_pivot), [item])
            picked = rng.permutation(mine)[:n_more].tolist()
            if len(picked) < n_more:
                others = np.setdiff1d(with_pivot, np.concatenate([mine, [item], held_out]))
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


class GroupGoals(GoalSampler):
    """MCMIPL's multi-interest target groups: goal g is group g of the split's ``UI_data`` pickle.

    The targets are the group's items as listed, repeats kept (``[i, i]`` is a single-target
    conversation; `simulators.users.MCMIPLUser` accepts it), in the listed order MCMIPL reports the rank
    by. ``interactions`` lists (group user, group's first item) per goal: the first items of a user's
    groups are exactly the user's interactions of the paired split (`simulators.mcmipl`), so
    ``interactions.users[g]`` is goal g's user, as for the other samplers.

    Training draws (`sample_index`) as MCMIPL's ``reset`` in train mode: a user uniformly (MCMIPL
    draws over the users of ``review_dict_valid.json``, the very users of ``train.pkl``'s groups), then
    one of that user's groups uniformly; so training is user-uniform, not group-uniform.

    Args:
        catalog: The release's catalogue.
        split: "valid" (groups of ``UI_data/train.pkl``, RL training) or "test" (``UI_data/test.pkl``).
        groups: The split's groups: ``simulators.mcmipl.release_for(catalog).groups_of(split)``.

    Raises:
        CRSError: A group names a user or item outside the catalogue.
    """

    def __init__(self, catalog: Catalog, split: str, groups: TargetGroups) -> None:
        if groups.users.max() >= catalog.n_users or groups.items.max() >= catalog.n_items:
            raise CRSError(
                f"target groups of {groups.source} name users or items outside {catalog.name} "
                f"({catalog.n_users} users, {catalog.n_items} items); load the release's own catalogue"
            )
        first_items = groups.items[groups.offsets[:-1]]
        super().__init__(catalog, split, Interactions(users=groups.users, items=first_items))
        self.groups = groups
        self._by_user = np.argsort(groups.users, kind="stable")  # goal indices grouped by user
        _, self._user_start, self._user_count = np.unique(
            groups.users[self._by_user], return_index=True, return_counts=True
        )

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        return Goal(user=int(self.groups.users[index]), targets=self.groups.targets(index))

    def sample_index(self, rng: np.random.Generator) -> int:
        """A user uniformly, then one of the user's groups uniformly (two ``rng.integers`` calls)."""
        user = int(rng.integers(self._user_count.size))
        within = int(rng.integers(self._user_count[user]))
        return int(self._by_user[self._user_start[user] + within])
