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
from simulators.errors import CRSError


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
        self.last_slips: frozenset[int] = frozenset()
        """Aspects of the last `answer` answered against the targets (a noisy user's flips)."""

    def reset(self, goal: Goal, rng: np.random.Generator) -> None:
        """Start a conversation with `goal`, drawing all randomness from `rng`."""
        self._goal = goal
        self._rng = rng
        self.last_slips = frozenset()

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

    def opening_category(self) -> int:
        """The first-layer category the user opens with when questions are enumerated (UNICORN's YELP).

        Drawn uniformly among the categories listing an aspect that every target has (ascending ids,
        as UNICORN's ``random.choice`` over the target's sorted ``belong_to_large``); the env then
        answers it like an enumerated question.

        Raises:
            CRSError: The catalogue has no taxonomy, or no category lists a shared aspect of the targets.
        """
        taxonomy = self.catalog.taxonomy
        if taxonomy is None or taxonomy.members is None:
            raise CRSError(f"{self.catalog.name} has no category taxonomy: an enumerated opening needs one")
        shared = _shared_aspects(self.catalog, self.targets)
        categories = np.flatnonzero(np.asarray(taxonomy.members[:, shared].sum(axis=1)).ravel())
        if categories.size == 0:
            raise CRSError(
                f"no category of {self.catalog.name} lists an aspect of targets {self.targets}; "
                "the enumerated setting cannot open this conversation"
            )
        return int(self.rng.choice(categories))

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


def _shared_aspects(catalog: Catalog, targets: Sequence[int]) -> np.ndarray:
    """Aspects every target has, shape (n,), sorted."""
    shared = catalog.aspects_of(targets[0])
    for target in targets[1:]:
        shared = np.intersect1d(shared, catalog.aspects_of(target), assume_unique=True)
    return shared


def _check_targets(catalog: Catalog, goal: Goal, need_shared: bool, *, distinct: bool = True) -> np.ndarray:
    """Validate a goal's targets (repeats refused when `distinct`); return the aspects all targets
    share, shape (n,)."""
    targets = goal.targets
    if len(targets) == 0:
        raise CRSError(f"goal of user {goal.user} has no target item; give at least one")
    if distinct and len(set(targets)) != len(targets):
        raise CRSError(
            f"goal targets {targets} repeat an item; multi-interest targets must be distinct "
            "(MCMIPL's groups, which may name an item twice, run with MCMIPLUser)"
        )
    for target in targets:
        if not 0 <= target < catalog.n_items:
            raise CRSError(f"goal target {target} outside [0, {catalog.n_items}) of {catalog.name}")
    shared = _shared_aspects(catalog, targets)
    if need_shared and shared.size == 0:
        raise CRSError(
            f"goal targets {targets} share no aspect; draw them with MultiTargetGoals, which picks "
            "targets sharing one"
        )
    return shared


class MultiInterestUser(UserModel):
    """MCMIPL's user: several distinct target items that share at least one aspect.

    - Opening: states one aspect shared by all targets, drawn uniformly.
    - Question about aspects A (binary or multiple choice): accepts every aspect of A that ANY target
      has, i.e. A ∩ (aspects(t_1) ∪ ... ∪ aspects(t_n)) (MCMIPL's union rule).
    - Slate: accepts the best-ranked slate item that is any target.

    Raises:
        CRSError: at `reset`, when the targets are empty, repeat an item, or share no aspect.
    """

    # whether `reset` refuses a goal that names an item twice
    distinct_targets = True

    def reset(self, goal: Goal, rng: np.random.Generator) -> None:
        self._shared = _check_targets(self.catalog, goal, need_shared=True, distinct=self.distinct_targets)
        super().reset(goal, rng)

    def opening_aspect(self) -> int:
        return int(self.rng.choice(self._shared))

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        return _accepted_by_any(self.catalog, self.targets, aspects)

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return _first_hit(slate, self.targets)


class MCMIPLUser(MultiInterestUser):
    """MCMIPL's user exactly as its code has it (``MultiChoiceRecommendEnv`` of ZYM6-6/MCMIPL), for its
    target groups (`simulators.goals.GroupGoals`).

    - Targets: the group as listed; an item named twice (``[i, i]``, 2,812 of LastFM*'s 11,892 test
      groups) is accepted and makes a single-target conversation.
    - Opening and answers: as `MultiInterestUser` (an aspect of the targets' intersection, drawn
      uniformly; the union rule).
    - Slate: success iff some target is in it; the accepted item and rank are those of the first target
      *in listed order* that is in the slate (``_recommend_update``), not of the best-ranked target.

    Raises:
        CRSError: at `reset`, when the targets are empty or share no aspect.
    """

    distinct_targets = False

    def react(self, slate: Sequence[int]) -> SlateReaction:
        items = [int(item) for item in slate]
        for target in self.targets:
            if target in items:
                return SlateReaction(accepted=target, rank=items.index(target) + 1)
        return SlateReaction(accepted=None, rank=None)


class PersonaUser(UserModel):
    """A user who is a mixture of K personas; the session's active persona picked the target(s).

    Response model:

    - Opening: states one aspect shared by all targets (one target: any of its aspects), drawn
      uniformly, always truthfully.
    - Question about aspects A: each aspect's truth is "some target has it"; with probability `noise`
      (independently per aspect) the answer flips it. With `noise=0` the answer is A ∩ aspects(targets).
    - Slate: accepts the best-ranked slate item that is a target. After `patience` failed slates the
      user leaves: the `patience`-th failed slate returns `leaves=True`.
    - Drift: after each answer and each failed slate that does not end the conversation, with
      probability `drift` the active persona switches to another of the user's K personas (drawn
      uniformly) and the target becomes one item of the new persona: one of the user's interactions
      labelled with that persona (in `split`, or in all splits when `split` is None), else an item
      having at least one of the persona's signature aspects. With a `split`, the new target is never
      one of the user's items of another split (a test conversation's drift never lands on an item the
      recommender trained on; `envs.make_env` passes the conversation's split). `targets` and
      `active_persona` show the change. Nothing drifts when K = 1.

    Randomness is drawn from the rng handed to `reset`, in a fixed order (opening draw; per answer:
    noise draws when noise > 0, then the drift draw(s) when drift > 0), so the same goal and seed
    replay the same conversation.

    Personas come from `catalog.truth` (the persona world), or, for real data, from `user_personas`
    and `persona_aspects` handed in (e.g. derived from each user's history by clustering); then a
    goal without `persona` gets the slot whose signature aspects overlap the target's most.

    Args:
        catalog: The catalogue.
        noise: Probability in [0, 1] that an answer flips an aspect's truth.
        patience: Failed slates after which the user leaves; None = never leaves early.
        drift: Probability in [0, 1], per turn, that the active persona changes.
        user_personas: Persona ids of each user, shape (n_users, K); default `catalog.truth`.
        persona_aspects: Signature aspects of each persona, boolean, shape (n_personas, n_aspects);
            default `catalog.truth`.
        split: Split whose interactions drift targets come from, and whose user's items in the other
            splits a drift never targets; None = all splits (no item is kept out).

    Raises:
        CRSError: An argument is out of range, or the catalogue has no persona ground truth and no
            `user_personas`/`persona_aspects` were given.
    """

    def __init__(
        self,
        catalog: Catalog,
        noise: float = 0.0,
        patience: int | None = None,
        drift: float = 0.0,
        *,
        user_personas: np.ndarray | None = None,
        persona_aspects: np.ndarray | None = None,
        split: str | None = None,
    ) -> None:
        super().__init__(catalog)
        real, whole = (int, float, np.integer, np.floating), (int, np.integer, type(None))
        for name, value, types, kind in (
            ("noise", noise, real, "a number"),
            ("drift", drift, real, "a number"),
            ("patience", patience, whole, "an integer or None"),
        ):
            if isinstance(value, bool) or not isinstance(value, types):  # "0.1" failed later on a comparison
                raise CRSError(f"PersonaUser {name}={value!r} must be {kind}")
        if not 0.0 <= noise <= 1.0:
            raise CRSError(f"PersonaUser noise={noise} must lie in [0, 1]")
        if not 0.0 <= drift <= 1.0:
            raise CRSError(f"PersonaUser drift={drift} must lie in [0, 1]")
        if patience is not None and patience < 1:
            raise CRSError(f"PersonaUser patience={patience} must be >= 1, or None for no early leave")
        self.noise = float(noise)
        self.drift = float(drift)
        self.patience = patience
        self.user_personas, self.persona_aspects = _persona_arrays(catalog, user_personas, persona_aspects)
        self._labelled = _labelled_interactions(catalog, split)
        self._split = split
        self._targets: tuple[int, ...] = ()
        self._slot = 0
        self._failed = 0

    def reset(self, goal: Goal, rng: np.random.Generator) -> None:
        if not 0 <= goal.user < self.user_personas.shape[0]:
            raise CRSError(f"goal user {goal.user} outside [0, {self.user_personas.shape[0]})")
        shared = _check_targets(self.catalog, goal, need_shared=True)
        k = self.user_personas.shape[1]
        if goal.persona is None:
            slot = self._best_slot(goal)
        elif 0 <= goal.persona < k:
            slot = int(goal.persona)
        else:
            raise CRSError(f"goal persona slot {goal.persona} outside [0, {k}) of user {goal.user}")
        super().reset(goal, rng)
        self._shared = shared
        self._targets = tuple(int(t) for t in goal.targets)
        self._slot = slot
        self._failed = 0

    @property
    def targets(self) -> tuple[int, ...]:
        """The current target items (changed by drift; hidden from policies)."""
        self.goal  # noqa: B018  (raises before reset)
        return self._targets

    @property
    def active_persona(self) -> int:
        """Slot (0..K-1) of the active persona among the user's personas."""
        self.goal  # noqa: B018  (raises before reset)
        return self._slot

    @property
    def active_persona_id(self) -> int:
        """Persona id (row of `persona_aspects`) of the active persona."""
        return int(self.user_personas[self.goal.user, self.active_persona])

    @property
    def failed_slates(self) -> int:
        """Number of slates without a target so far in this conversation."""
        return self._failed

    def opening_aspect(self) -> int:
        return int(self.rng.choice(self._shared))

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        asked = [int(a) for a in aspects]
        truth = _accepted_by_any(self.catalog, self._targets, asked)
        if self.noise > 0.0 and asked:
            flips = self.rng.random(len(asked)) < self.noise
            accepted = frozenset(a for a, flip in zip(asked, flips, strict=True) if (a in truth) != flip)
            self.last_slips = frozenset(a for a, flip in zip(asked, flips, strict=True) if flip)
        else:
            accepted = truth
            self.last_slips = frozenset()
        self._maybe_drift()
        return accepted

    def react(self, slate: Sequence[int]) -> SlateReaction:
        reaction = _first_hit(slate, self._targets)
        if reaction.accepted is not None:
            return reaction
        self._failed += 1
        if self.patience is not None and self._failed >= self.patience:
            return SlateReaction(accepted=None, rank=None, leaves=True)
        self._maybe_drift()
        return reaction

    def _best_slot(self, goal: Goal) -> int:
        """Slot whose persona's signature aspects the targets share most (first on ties)."""
        owned = np.zeros(self.catalog.n_aspects, dtype=np.int64)
        for target in goal.targets:
            owned[self.catalog.aspects_of(target)] += 1
        signatures = self.persona_aspects[self.user_personas[goal.user]]
        return int(np.argmax(signatures.astype(np.int64) @ owned))

    def _maybe_drift(self) -> None:
        k = self.user_personas.shape[1]
        if self.drift <= 0.0 or k < 2 or self.rng.random() >= self.drift:
            return
        others = [slot for slot in range(k) if slot != self._slot]
        self._slot = int(others[int(self.rng.integers(len(others)))])
        persona = int(self.user_personas[self.goal.user, self._slot])
        target = self._draw_target(persona)
        if target is not None:
            self._targets = (target,)
            self._shared = self.catalog.aspects_of(target)

    def _held_elsewhere(self) -> np.ndarray:
        """The user's items in the splits other than `split` (none without a split), int64."""
        if self._split is None:
            return np.zeros(0, dtype=np.int64)
        parts = [part for name, part in self.catalog.splits.items() if name != self._split]
        return np.concatenate(
            [np.zeros(0, dtype=np.int64), *(part.items[part.users == self.goal.user] for part in parts)]
        ).astype(np.int64)

    def _draw_target(self, persona: int) -> int | None:
        """An item of `persona` for this user, not a current target; None when there is none."""
        current = np.asarray(self._targets, dtype=np.int64)
        if self._labelled is not None:
            users, items, personas = self._labelled
            mine = items[(users == self.goal.user) & (personas == persona)]
            mine = np.setdiff1d(mine, current)
            if mine.size:
                return int(self.rng.choice(mine))
        signature = np.flatnonzero(self.persona_aspects[persona])
        hits = np.asarray(self.catalog.item_aspects[:, signature].sum(axis=1)).ravel()
        pool = np.setdiff1d(np.flatnonzero(hits > 0), np.concatenate([current, self._held_elsewhere()]))
        if pool.size:
            return int(self.rng.choice(pool))
        return None


def _persona_arrays(
    catalog: Catalog, user_personas: np.ndarray | None, persona_aspects: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The (user_personas, persona_aspects) a PersonaUser runs on, validated."""
    if user_personas is None and persona_aspects is None:
        if catalog.truth is None:
            raise CRSError(
                f"PersonaUser needs personas, but catalogue {catalog.name!r} has no persona ground truth; "
                "use make_persona_world(), or pass user_personas (n_users, K) and persona_aspects "
                "(n_personas, n_aspects) derived from the users' histories"
            )
        return catalog.truth.user_personas, catalog.truth.persona_aspects
    if user_personas is None or persona_aspects is None:
        raise CRSError("PersonaUser: pass both user_personas and persona_aspects, or neither")
    user_personas = np.asarray(user_personas, dtype=np.int64)
    persona_aspects = np.asarray(persona_aspects, dtype=np.bool_)
    if user_personas.ndim != 2 or user_personas.shape[0] != catalog.n_users:
        raise CRSError(
            f"PersonaUser: user_personas must have shape ({catalog.n_users}, K), got {user_personas.shape}"
        )
    if persona_aspects.ndim != 2 or persona_aspects.shape[1] != catalog.n_aspects:
        raise CRSError(
            f"PersonaUser: persona_aspects must have shape (n_personas, {catalog.n_aspects}), "
            f"got {persona_aspects.shape}"
        )
    if user_personas.size and (user_personas.min() < 0 or user_personas.max() >= persona_aspects.shape[0]):
        raise CRSError(f"PersonaUser: user_personas ids must lie in [0, {persona_aspects.shape[0]})")
    return user_personas, persona_aspects


def _labelled_interactions(
    catalog: Catalog, split: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(users, items, personas) of the persona-labelled interactions of `split` (None: all splits)."""
    parts = [catalog.split(split)] if split is not None else list(catalog.splits.values())
    parts = [part for part in parts if part.personas is not None]
    if not parts:
        return None
    return (
        np.concatenate([part.users for part in parts]),
        np.concatenate([part.items for part in parts]),
        np.concatenate([part.personas for part in parts]),
    )
