"""The preference-ranker protocols: scores items and aspects given the facts of a dialogue.

`envs` defines the protocols; `policies` implements learned rankers; the caller injects an instance
into the SB3 wrapper or a rule policy. A ranker is fixed during RL: nothing here updates it.

- `PreferenceRanker`: item and aspect scores (every ranker);
- `PersonaAwareRanker`: also a persona posterior and each persona's signature aspects (the SB3
  wrapper's persona probes);
- `ExplainablePersonaRanker`: also (persona, aspect) explanations and the exported embeddings (the
  report's persona analysis; `policies.pretrain.ranker.PersonaRanker` is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from simulators.errors import CRSError

if TYPE_CHECKING:
    from simulators.catalog import Catalog


@dataclass(frozen=True)
class DialogueFacts:
    """What a dialogue has established so far, as a ranker sees it.

    Attributes:
        user: User id.
        accepted: Accepted aspect ids, shape (n_acc,), int64.
        rejected: Rejected aspect ids, shape (n_rej,), int64.
        rejected_items: Item ids recommended and rejected, shape (n_rej_items,), int64.
    """

    user: int
    accepted: np.ndarray
    rejected: np.ndarray
    rejected_items: np.ndarray


def check_user(user: int, n_users: int) -> None:
    """Refuse a user id outside [0, n_users) (numpy would read -1 as the last user's row).

    Raises:
        CRSError: naming the user and the range.
    """
    if not 0 <= user < n_users:
        raise CRSError(f"user {user} outside [0, {n_users})")


def check_facts(facts: DialogueFacts, n_users: int, n_aspects: int, n_items: int) -> None:
    """Refuse a dialogue naming a user, aspect or item outside a ranker of these sizes (numpy would
    read a negative id as one counted from the end, or fail on a large one with an IndexError).

    Raises:
        CRSError: naming the field, the ids outside and the range.
    """
    check_user(facts.user, n_users)
    for name, ids, size in (
        ("accepted aspect", facts.accepted, n_aspects),
        ("rejected aspect", facts.rejected, n_aspects),
        ("rejected item", facts.rejected_items, n_items),
    ):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= size):
            outside = sorted({int(i) for i in ids if not 0 <= i < size})
            raise CRSError(f"{name} ids {outside} outside [0, {size}) of this ranker")


@runtime_checkable
class PreferenceRanker(Protocol):
    """Scores candidate items and aspects for a dialogue; higher is more preferred."""

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        """Scores of `items` (shape (n,), int64), returned as float64 of shape (n,)."""
        ...

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        """Scores of `aspects` (shape (n,), int64), returned as float64 of shape (n,)."""
        ...


def ranker_misfit(ranker: object, catalog: Catalog) -> str | None:
    """Why `ranker` scores another catalogue than `catalog`, by the sizes it states (its ``n_users``,
    ``n_items`` and ``n_aspects``, each where it has one, as the project's rankers do; a ranker of none
    is taken on trust), e.g. "scores 7,432 items, not the 3,000 of 'persona_world'"; None when it fits."""
    off = [
        f"{stated:,} {what}, not the {wanted:,} of {catalog.name!r}"
        for what, wanted in (
            ("users", catalog.n_users),
            ("items", catalog.n_items),
            ("aspects", catalog.n_aspects),
        )
        if (stated := getattr(ranker, f"n_{what}", None)) is not None and stated != wanted
    ]
    return f"scores {'; '.join(off)}" if off else None


@runtime_checkable
class PersonaAwareRanker(PreferenceRanker, Protocol):
    """A preference ranker that sees each user as K personas: what the SB3 wrapper's persona probes read.

    ``isinstance(ranker, PersonaAwareRanker)`` checks that the members exist (not their signatures).
    """

    @property
    def personas_per_user(self) -> int:
        """K, the personas of every user."""
        ...

    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        """The user's belief over their K personas given the dialogue, float64 of shape (K,), sums to 1."""
        ...

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        """Up to m aspect ids that best distinguish persona k of `user`, best first, int64 of shape (<= m,).

        Args:
            user: User id.
            k: Persona index in [0, K).
            m: How many aspects at most.
            among: Aspect ids to choose from, shape (n,), int64 (None: every aspect).
        """
        ...


@runtime_checkable
class ExplainablePersonaRanker(PersonaAwareRanker, Protocol):
    """A persona ranker that also explains its scores and exports its embeddings: what the report's persona
    analysis (`crs.report.persona`) reads.

    Attributes:
        item: Item embeddings, shape (I, d).
        aspect: Aspect embeddings, shape (A, d).
        personas: Persona embeddings of every user, shape (U, K, d).
        log_prior: Log prior weight of every user's personas, shape (U, K).
    """

    item: np.ndarray
    aspect: np.ndarray
    personas: np.ndarray
    log_prior: np.ndarray

    def explain(self, facts: DialogueFacts, items: np.ndarray) -> list[tuple[int, int]]:
        """The (persona, aspect) explaining each of `items` (shape (n,), int64); aspect -1 if it has none."""
        ...

    def persona_of(self, user: int, items: np.ndarray) -> np.ndarray:
        """The persona of `user` (no dialogue facts) behind each of `items` (shape (n,)), int64, (n,)."""
        ...

    def prototype_of(self, user: int) -> np.ndarray:
        """The shared prototype each of `user`'s K personas draws most from, int64 of shape (K,)."""
        ...
