"""Returning users: one simulated user over several sessions whose persona mixture may change.

The first brick of "personas that evolve" (issue #16), in the simulator only. A returning sequence is
S sessions of one persona-world user; each session has a persona mixture over the user's persona
slots, an active slot drawn from it, and a one-item goal picked by the active persona. Four regimes say
how the mixture moves across sessions:

- ``"stable"``: the user's own weights (`PersonaTruth.user_weights`) every session.
- ``"drift"``: a random walk on the simplex from the user's weights: session s draws
  ``Dirichlet(DRIFT_CONCENTRATION * mixture[s - 1] + DRIFT_FLOOR)``.
- ``"switch"``: from a change session s* in [1, S-1] on, the user's lowest-weight persona takes
  `SWITCH_SHARE` (0.9) of the mass and the other K - 1 share the rest in their old proportions, so the
  minor persona dominates and stays dominant (see `SWITCH_SHARE` for why 0.9).
- ``"new"``: from s* on, a persona the user never had (a prototype of the world not among the user's
  K) takes `NEW_PERSONA_SHARE` of the mass and the user's K personas share the rest in their old
  proportions; before s* it has weight 0. Its slot is K (the last one), so K' = K + 1.

A memory-based recommender should track the stable user, follow the drift, notice the switch and
discover the new persona; this module produces the sequences and their ground truth, and what a
simulated user needs to play one (`SessionGoals`, `session_user_personas`).

## Targets: the same rule every session, leak-free

Session s's target is a fresh draw of what the active persona p generates in the held-out `split`:
one of the `split` interactions that the world labels p (any user's; ground-truth
`Interactions.personas`), drawn uniformly, so an item comes with probability proportional to how
often p generated it there, which is p's own item distribution softmax(u_p) of
`simulators.persona_world` as the world sampled it. Excluded: every item of the user's interactions
in the *other* splits (with the default split "test": the user's train and valid items, which
pre-training and RL training saw) and the earlier targets of the sequence. The user's own `split`
items of p are in the pool like anyone's. Only when nothing of that pool is left (a small world; never
met in the default persona world, where each persona labels about 300 test interactions) does the
draw widen to p's labelled interactions of every split, with the same exclusions and weights. Nothing
depends on the session index, so a session's target is as hard as any other's, and per-session curves
measure the memory, not the target pool.

## Real data: held-out sessions grouped by the pre-trained model's personas

Real datasets have no persona truth, so `held_out_sequences` builds returning users from each user's
own held-out (`split`) interactions, labelled by a pre-trained persona ranker: item v of user u is
persona ``persona_of(u, v)`` (the arg-max of the model's persona attention with the user's prior, no
dialogue), a slot 0..K-1 of the ranker's personas, which is also the session's "active" persona.
Only "stable" and "switch" exist there (drift and a new persona need a generative truth):

- ``"stable"``: S of the user's held-out items in a random order; every session's mixture is the
  user's share of held-out items per persona.
- ``"switch"``: the switched-to persona B is the one the pre-trained prior weighs least (as the
  world's switch makes the minor persona dominant) among those for which a change session fits;
  the change session c is uniform among those that the user's items allow ([max(1, S - n_B),
  min(S - 1, n_other)], n_B items of B and n_other of the other personas); sessions 0..c-1 are
  items of the other personas, c..S-1 items of B, each part in a random order. Mixtures: the other
  personas' shares before, all on B from c on.

Users need at least S held-out items (and, for "switch", a feasible change session); the others
are left out, and there are at most as many sequences as eligible users (drawn without replacement).
Targets are the user's own held-out interactions, never one of the user's items in another split,
so with the test split nothing a session asks for was seen in pre-training (train) or RL training
(valid); `crs eval --sessions` refuses the split the catalogue pre-trains on (train, or valid for
Yelp*). **This is a
simulation protocol over logged interactions, not logged returning behaviour**: the order of the
sessions, and therefore the shift, is constructed; the personas are the model's, not a truth.

(The rule before: the user's own test items of p first, then any unseen item carrying one of p's
signature aspects. Users have about 4 test items, so by session 7 of 8, 87% of targets came from that
fallback, which ask-4 found at SR@15 about 0.50 against 0.78 for the user's own items: SR@15 of the
stable regime fell from 0.741 in session 0 to 0.534 in session 7 with nothing changing.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions, PersonaTruth
from simulators.errors import CRSError
from simulators.frozen import ReadOnlyWhenUnpickled, read_only_array
from simulators.goals import GoalSampler
from simulators.users import Goal

Regime = Literal["stable", "drift", "switch", "new"]
"""How a returning user's persona mixture moves across sessions (see the module docstring)."""

REGIMES: tuple[Regime, ...] = get_args(Regime)
"""The regimes, in order: ("stable", "drift", "switch", "new")."""
REGIME_WORDS: dict[str, str] = {
    "stable": "the user's own persona mixture every session",
    "drift": "a random walk of the mixture from session to session",
    "switch": "from a random session on, the user's least-weighted persona dominates (90%)",
    "new": "from a random session on, a persona the user never had dominates",
}
"""Each regime in one line, for help texts (the module's docstring says exactly how)."""

HELD_OUT_REGIMES: tuple[Regime, ...] = ("stable", "switch")
"""The regimes `held_out_sequences` builds on real data (the others need a generative persona truth)."""

DRIFT_CONCENTRATION: float = 20.0
"""Dirichlet concentration of the drift walk: session s draws Dirichlet(c * mixture[s-1] + floor), so
each weight moves by about sqrt(m (1 - m) / (c + 1)) per session (about 0.1 for m = 0.5)."""

DRIFT_FLOOR: float = 0.1
"""Added to every Dirichlet parameter of the drift walk, so a faded persona can come back and the
parameters stay away from 0."""

SWITCH_SHARE: float = 0.9
"""Mass of the minor persona from the change session on (regime "switch"); the other K - 1 personas
share the rest in their old proportions.

Why 0.9: a session's active persona is drawn from its mixture, so no memory's most likely persona
follows the active one more often than the largest weight; persona tracking (issue #16: "does the
memory's most likely persona follow the true active one?", target >= 80% from the session after the
switch) can only reach 80% when the new dominant persona carries well over 0.8. The first version
swapped the top and minor weights: with the world's Dirichlet(2, 2, 2) users the active persona was
the dominant one in 53% of the sessions after the switch (1,000 users, seed 0), so 80% was out of
reach by construction. With 0.9 the ceiling is 0.9 and the switch is a clear change of who the user
is, which is what the regime is meant to test."""

NEW_PERSONA_SHARE: float = 0.7
"""Mass of the new persona from the change session on (regime "new"); the user's K personas share
the rest in their old proportions, so the new persona dominates."""


@dataclass(frozen=True)
class ReturningSequence(ReadOnlyWhenUnpickled):
    """One user's S sessions, with the ground truth of the persona behind each.

    Slots index `personas`: slots 0..K-1 are the user's K personas in the order of
    `PersonaTruth.user_personas[user]`; regime "new" adds slot K, the new persona.

    Attributes:
        user: User id.
        regime: How the mixture moves across sessions.
        goals: One goal per session, shape (S,): `Goal(user, (target,), persona=active[s])`.
        mixtures: The user's persona mixture in each session, float64, shape (S, K'); rows sum to 1.
        active: The active persona slot of each session (ground truth), int64, shape (S,).
        personas: Persona ids of the slots, int64, shape (K',): K' = K, or K + 1 for regime "new".
        change_session: Session (in [1, S-1]) where the switch or the new persona starts; None for
            "stable" and "drift".
    """

    user: int
    regime: Regime
    goals: tuple[Goal, ...]
    mixtures: np.ndarray
    active: np.ndarray
    personas: np.ndarray
    change_session: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "goals", tuple(self.goals))
        object.__setattr__(self, "mixtures", read_only_array(self.mixtures, np.float64))
        object.__setattr__(self, "active", read_only_array(self.active, np.int64))
        object.__setattr__(self, "personas", read_only_array(self.personas, np.int64))
        sessions = len(self.goals)
        if self.mixtures.shape != (sessions, self.personas.shape[0]) or self.active.shape != (sessions,):
            raise CRSError(
                f"ReturningSequence of user {self.user}: {sessions} goals need mixtures of shape "
                f"({sessions}, {self.personas.shape[0]}) and active of shape ({sessions},), got "
                f"{self.mixtures.shape} and {self.active.shape}"
            )

    @property
    def n_sessions(self) -> int:
        """S, the number of sessions."""
        return len(self.goals)

    @property
    def targets(self) -> tuple[int, ...]:
        """The target item of each session, shape (S,)."""
        return tuple(goal.targets[0] for goal in self.goals)


def returning_sequences(
    catalog: Catalog,
    n_sequences: int,
    sessions: int,
    regime: Regime,
    rng: np.random.Generator,
    split: str = "test",
) -> list[ReturningSequence]:
    """Draw returning-user sequences of one regime from the persona world.

    Users: drawn uniformly among the users with at least one interaction in `split`, without
    replacement when there are at least `n_sequences` of them, else with replacement.

    Mixtures: see the module docstring (`DRIFT_CONCENTRATION`, `DRIFT_FLOOR`, `NEW_PERSONA_SHARE`);
    the change session s* of "switch" and "new" is uniform in [1, S-1], and the new persona of "new"
    uniform among the world's personas the user does not have.

    Targets (one item per session), for the active slot's persona p: one of the `split` interactions
    labelled p (any user's), drawn uniformly among those whose item is neither one of the user's
    interactions in another split (so with the default split "test", no target was seen in
    pre-training (train) or RL training (valid)) nor an earlier target of the sequence; when none is
    left, the same among p's labelled interactions of every split (module docstring, "Targets").

    Randomness: all from `rng`, in a fixed order: the users; then per sequence the regime's draws
    (change session, new persona, drift walk), then per session the active slot and the target (one
    ``integers`` call). The
    same seed gives the same sequences.

    Args:
        catalog: A catalogue with persona ground truth (`make_persona_world`).
        n_sequences: Number of sequences (>= 1).
        sessions: S, sessions per sequence (>= 2).
        regime: One of `REGIMES`.
        rng: Source of all randomness.
        split: Split whose persona-labelled interactions give the targets.

    Returns:
        `n_sequences` sequences, in the order their users were drawn.

    Raises:
        CRSError: The catalogue has no persona truth or the split no persona labels; `sessions`,
            `n_sequences` or `regime` is out of range; "switch" with K = 1 persona per user, or "new"
            with K = n_personas (no unseen persona); a persona with no `split` interaction left to
            draw. The message names the value and the fix.
    """
    truth = _check_arguments(catalog, n_sequences, sessions, regime)
    held_out = catalog.conversation_split(split)
    if held_out.personas is None:
        raise CRSError(
            f"returning_sequences: split {split!r} of {catalog.name!r} has no persona labels; "
            "use make_persona_world(), whose splits carry them"
        )
    users_with_held_out = np.unique(held_out.users)
    replace = n_sequences > users_with_held_out.size
    users = rng.choice(users_with_held_out, size=n_sequences, replace=replace)

    by_persona = _persona_pools([held_out], truth.n_personas)
    everywhere = _persona_pools(list(catalog.splits.values()), truth.n_personas)
    elsewhere = _history(catalog, exclude=split)
    sequences = []
    for user in users.tolist():
        mixtures, personas, change = _mixtures(truth, int(user), sessions, regime, rng)
        seen = elsewhere.indices[elsewhere.indptr[user] : elsewhere.indptr[user + 1]]
        goals: list[Goal] = []
        active = np.empty(sessions, dtype=np.int64)
        used: list[int] = []
        for session in range(sessions):
            slot = int(rng.choice(personas.size, p=mixtures[session]))
            persona = int(personas[slot])
            pools = (by_persona[persona], everywhere[persona])
            target = _draw_target(pools, seen, used, rng, persona, split)
            used.append(target)
            active[session] = slot
            goals.append(Goal(user=int(user), targets=(target,), persona=slot))
        sequences.append(
            ReturningSequence(
                user=int(user),
                regime=regime,
                goals=tuple(goals),
                mixtures=mixtures,
                active=active,
                personas=personas,
                change_session=change,
            )
        )
    return sequences


def held_out_sequences(
    catalog: Catalog,
    persona_of: Callable[[int, np.ndarray], np.ndarray],
    log_prior: np.ndarray,
    n_sequences: int,
    sessions: int,
    regime: Regime,
    rng: np.random.Generator,
    split: str = "test",
) -> list[ReturningSequence]:
    """Returning users of a real dataset from their own held-out interactions (module docstring, "Real
    data"): each session's target is one of the user's `split` items, its active persona the
    pre-trained model's persona of that item.

    Randomness: all from `rng`, in a fixed order: the users (a permutation of all users, of which the
    eligible ones are kept in that order), then
    per sequence the change session (regime "switch") and the order of the items. The same seed gives
    the same sequences.

    Args:
        catalog: A real catalogue (any catalogue works; its persona truth is not read).
        persona_of: ``persona_of(user, items)``: the ranker's persona slot of each item, int (n,)
            (`envs.ranker.ExplainablePersonaRanker.persona_of`).
        log_prior: The ranker's persona log-prior, shape (n_users, K): picks the switched-to persona.
        n_sequences: Number of sequences (>= 1); fewer when fewer users are eligible.
        sessions: S, sessions per sequence (>= 2).
        regime: "stable" or "switch" (`HELD_OUT_REGIMES`).
        rng: Source of all randomness.
        split: The held-out split the targets come from.

    Returns:
        Up to `n_sequences` sequences; slots are the ranker's personas (``personas`` = 0..K-1).

    Raises:
        CRSError: A bad count or regime, or no user eligible (named, with the fix).
    """
    if sessions < 2:
        raise CRSError(f"held_out_sequences: sessions={sessions} must be >= 2 (a user who returns)")
    if n_sequences < 1:
        raise CRSError(f"held_out_sequences: n_sequences={n_sequences} must be >= 1")
    if regime not in HELD_OUT_REGIMES:
        raise CRSError(
            f"regime {regime!r} needs a generative persona truth; on real data use one of {HELD_OUT_REGIMES}"
        )
    log_prior = np.asarray(log_prior, dtype=np.float64)
    k = log_prior.shape[1]
    if regime == "switch" and k < 2:
        raise CRSError("held_out_sequences: regime 'switch' needs a ranker with >= 2 personas per user")
    usable = _held_out_items(catalog, split)
    slots = np.arange(k, dtype=np.int64)
    sequences: list[ReturningSequence] = []
    for user in rng.permutation(catalog.n_users).tolist():
        items = usable(user)
        if items.size < sessions:
            continue
        labels = np.asarray(persona_of(user, items), dtype=np.int64)
        shares = np.bincount(labels, minlength=k) / labels.size
        if regime == "stable":
            order = rng.permutation(items.size)[:sessions]
            targets, active = items[order], labels[order]
            mixtures = np.tile(shares, (sessions, 1))
            change = None
        else:
            picked = _switch_plan(labels, log_prior[user], sessions, rng)
            if picked is None:
                continue
            persona, change = picked
            before, after = np.flatnonzero(labels != persona), np.flatnonzero(labels == persona)
            order = np.concatenate(
                [rng.permutation(before)[:change], rng.permutation(after)[: sessions - change]]
            )
            targets, active = items[order], labels[order]
            others = shares.copy()
            others[persona] = 0.0
            mixtures = np.tile(np.eye(k)[persona], (sessions, 1))
            mixtures[:change] = others / others.sum()
        goals = tuple(Goal(int(user), (int(t),), int(a)) for t, a in zip(targets, active, strict=True))
        sequences.append(ReturningSequence(int(user), regime, goals, mixtures, active, slots, change))
        if len(sequences) == n_sequences:
            break
    if not sequences:
        raise CRSError(
            f"held_out_sequences: no user of {catalog.name!r} has {sessions} held-out {split!r} items"
            + (" with a feasible switch" if regime == "switch" else "")
            + "; ask for fewer --sessions"
        )
    return sequences


def _held_out_items(catalog: Catalog, split: str) -> Callable[[int], np.ndarray]:
    """``items(user)``: the user's `split` items that none of the user's other splits holds, int (n,)."""
    held_out = catalog.conversation_split(split).by_user(catalog.n_users, catalog.n_items)
    elsewhere = _history(catalog, exclude=split)

    def items(user: int) -> np.ndarray:
        own = held_out.indices[held_out.indptr[user] : held_out.indptr[user + 1]].astype(np.int64)
        return np.setdiff1d(own, elsewhere.indices[elsewhere.indptr[user] : elsewhere.indptr[user + 1]])

    return items


def users_with_held_out(catalog: Catalog, sessions: int, split: str = "test") -> int:
    """How many users have at least `sessions` usable held-out `split` items (`held_out_sequences`'s
    first condition; regime "switch" also needs a feasible change session)."""
    items = _held_out_items(catalog, split)
    return sum(items(user).size >= sessions for user in range(catalog.n_users))


def _switch_plan(
    labels: np.ndarray, log_prior: np.ndarray, sessions: int, rng: np.random.Generator
) -> tuple[int, int] | None:
    """(switched-to persona, change session) of one user's held-out items, or None when none fits.

    The persona is the least-prior one for which some change session c fits: c in
    [max(1, S - n_B), min(S - 1, n_other)] (n_B items of it, n_other of the other personas), drawn
    uniformly there (one ``integers`` call).
    """
    counts = np.bincount(labels, minlength=log_prior.size)
    for persona in np.argsort(log_prior, kind="stable").tolist():
        n_b, n_other = int(counts[persona]), int(labels.size - counts[persona])
        low, high = max(1, sessions - n_b), min(sessions - 1, n_other)
        if low <= high:
            return persona, int(rng.integers(low, high + 1))
    return None


class SessionGoals(GoalSampler):
    """The goals of one returning sequence: goal s is session s's goal (`ReturningSequence.goals`).

    ``interactions`` lists (user, target) per session, without persona labels: the slot of a session's
    active persona travels in its `Goal.persona` (slot K for the new persona of regime "new").

    Args:
        catalog: The catalogue the sequence was drawn from.
        split: Split the targets were drawn from (recorded, as other samplers do).
        sequence: The returning sequence.
    """

    def __init__(self, catalog: Catalog, split: str, sequence: ReturningSequence) -> None:
        users = np.full(sequence.n_sessions, sequence.user, dtype=np.int64)
        super().__init__(catalog, split, Interactions(users=users, items=np.asarray(sequence.targets)))
        self.sequence = sequence

    def goal(self, index: int, rng: np.random.Generator) -> Goal:
        self._check(index)
        return self.sequence.goals[index]


def session_user_personas(catalog: Catalog, sequence: ReturningSequence) -> np.ndarray:
    """The `PersonaUser` ``user_personas`` that plays `sequence`: shape (n_users, K').

    Every row is the user's persona ids (`PersonaTruth.user_personas`); with regime "new" (K' = K + 1)
    the sequence's user gets the new persona in column K, so session goals of slot K run, and every
    other user repeats their first persona there (a placeholder no goal of the sequence names).

    Raises:
        CRSError: The catalogue has no persona truth, or `sequence` does not fit it (its user's slots
            0..K-1 are not that user's personas).
    """
    truth = catalog.truth
    if truth is None:
        raise CRSError(
            f"session_user_personas needs persona ground truth, but catalogue {catalog.name!r} has none; "
            "use make_persona_world()"
        )
    own = np.asarray(truth.user_personas, dtype=np.int64)
    k = own.shape[1]
    if not 0 <= sequence.user < own.shape[0] or not np.array_equal(sequence.personas[:k], own[sequence.user]):
        raise CRSError(
            f"sequence of user {sequence.user} (personas {sequence.personas.tolist()}) was not drawn from "
            f"catalogue {catalog.name!r}: draw it with returning_sequences(catalog, ...)"
        )
    if sequence.personas.size == k:
        return own
    grown = np.concatenate([own, own[:, :1]], axis=1)
    grown[sequence.user] = sequence.personas
    return grown


def _check_arguments(catalog: Catalog, n_sequences: int, sessions: int, regime: str) -> PersonaTruth:
    """The catalogue's persona truth, once the arguments are checked."""
    truth = catalog.truth
    if truth is None:
        raise CRSError(
            f"returning_sequences needs persona ground truth, but catalogue {catalog.name!r} has none; "
            "use make_persona_world()"
        )
    if sessions < 2:
        raise CRSError(f"returning_sequences: sessions={sessions} must be >= 2 (a user who returns)")
    if n_sequences < 1:
        raise CRSError(f"returning_sequences: n_sequences={n_sequences} must be >= 1")
    if regime not in REGIMES:
        raise CRSError(f"returning_sequences: unknown regime {regime!r}; use one of {REGIMES}")
    k = truth.personas_per_user
    if regime == "switch" and k < 2:
        raise CRSError(
            "returning_sequences: regime 'switch' needs >= 2 personas per user, the world has 1; "
            "build it with make_persona_world(personas_per_user >= 2)"
        )
    if regime == "new" and k >= truth.n_personas:
        raise CRSError(
            f"returning_sequences: regime 'new' needs a persona the user does not have, but every user "
            f"has all {truth.n_personas} personas; build the world with personas_per_user < n_personas"
        )
    return truth


def _history(catalog: Catalog, exclude: str) -> sp.csr_matrix:
    """Every interaction of every split but `exclude`, as a user x item boolean CSR matrix."""
    history = sp.csr_matrix((catalog.n_users, catalog.n_items), dtype=np.bool_)
    for name, interactions in catalog.splits.items():
        if name != exclude:
            history = history + interactions.by_user(catalog.n_users, catalog.n_items)
    history = sp.csr_matrix(history)
    history.sort_indices()
    return history


def _persona_pools(splits: list[Interactions], n_personas: int) -> list[np.ndarray]:
    """Per persona, the items of the splits' interactions labelled with it, repeats kept, int64.

    A split without persona labels adds nothing.
    """
    pools: list[np.ndarray] = []
    for persona in range(n_personas):
        parts = [s.items[s.personas == persona] for s in splits if s.personas is not None]
        pools.append(np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64))
    return pools


def _mixtures(
    truth: PersonaTruth, user: int, sessions: int, regime: Regime, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The regime's mixtures, shape (S, K'), slot persona ids, shape (K',), and change session."""
    weights = np.asarray(truth.user_weights[user], dtype=np.float64)
    personas = np.asarray(truth.user_personas[user], dtype=np.int64)
    mixtures = np.tile(weights, (sessions, 1))
    if regime == "stable":
        return mixtures, personas, None
    if regime == "drift":
        for session in range(1, sessions):
            mixtures[session] = rng.dirichlet(DRIFT_CONCENTRATION * mixtures[session - 1] + DRIFT_FLOOR)
        return mixtures, personas, None
    change = int(rng.integers(1, sessions))
    if regime == "switch":
        minor = int(np.argmin(weights))
        others = weights.copy()
        others[minor] = 0.0
        switched = (1.0 - SWITCH_SHARE) * others / others.sum()
        switched[minor] = SWITCH_SHARE
        mixtures[change:] = switched
        return mixtures, personas, change
    unseen = np.setdiff1d(np.arange(truth.n_personas), personas)
    new_persona = int(rng.choice(unseen))
    grown = np.zeros((sessions, personas.size + 1))
    grown[:change, :-1] = weights
    grown[change:, :-1] = (1.0 - NEW_PERSONA_SHARE) * weights
    grown[change:, -1] = NEW_PERSONA_SHARE
    return grown, np.append(personas, new_persona), change


def _draw_target(
    pools: tuple[np.ndarray, ...],
    seen: np.ndarray,
    used: list[int],
    rng: np.random.Generator,
    persona: int,
    split: str,
) -> int:
    """A target: one of the first of `pools` with something left that is neither `seen` nor `used`,
    drawn uniformly (repeats kept, so weighted by count; see `returning_sequences`).

    Args:
        pools: The items of the split's interactions labelled with the persona, then those of every
            split; each shape (n,).
        seen: The user's items of the other splits, shape (m,).
        used: Targets of the earlier sessions of the sequence.
        rng: Source of randomness (one `integers` call).
        persona: The persona's id (for the error message).
        split: The split's name (for the error message).

    Raises:
        CRSError: Nothing of any pool is left.
    """
    excluded = np.concatenate([seen, np.asarray(used, dtype=np.int64)])
    for pool in pools:
        free = pool[~np.isin(pool, excluded)]
        if free.size:
            return int(free[int(rng.integers(free.size))])
    raise CRSError(
        f"returning_sequences: persona {persona} has no interaction left to draw a target from (its "
        f"{pools[0].size} in split {split!r} and {pools[-1].size} in all splits are the user's own items of "
        "other splits or earlier targets); build the world with more users "
        "(make_persona_world(n_users=...)) or play fewer sessions"
    )
