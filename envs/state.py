"""The dialogue state: what a conversation has established, and its candidate items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.actions import ActionKind
from envs.ranker import DialogueFacts
from simulators.catalog import Catalog, compressed_entries


@dataclass(frozen=True)
class TurnRecord:
    """One turn of a dialogue, as shown in renders, transcripts and reports.

    Attributes:
        turn: 1-based turn number (turn 1 is the user's opening).
        kind: "open", "ask", "probe" or "recommend".
        asked: Question ids asked (aspects, or a category for enumerated questions).
        persona: Persona slot of a probe, else None.
        slate: Recommended items (empty for questions).
        accepted: Aspects the user accepted this turn.
        rejected: Aspects recorded as rejected this turn.
        accepted_item: The item the user accepted, else None.
        rank: 1-based slate rank of the accepted item, else None.
        reward: Reward of this turn.
        n_candidates: Candidate items left after the turn.
    """

    turn: int
    kind: str
    asked: tuple[int, ...] = ()
    persona: int | None = None
    slate: tuple[int, ...] = ()
    accepted: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()
    accepted_item: int | None = None
    rank: int | None = None
    reward: float = 0.0
    n_candidates: int = 0


@dataclass
class DialogueState:
    """Mutable state of one conversation, owned by the env (read it, never write it).

    Attributes:
        catalog: The catalogue the conversation is about.
        user: User id.
        turn: Turns elapsed, counting the user's opening (1 after reset).
        accepted: Accepted aspects, boolean mask of shape (n_aspects,).
        rejected: Rejected aspects, boolean mask of shape (n_aspects,).
        asked_categories: Categories asked (enumerated questions), mask of shape (n_parents,).
        rejected_items: Items recommended and rejected, mask of shape (n_items,).
        candidates: Items still possible, mask of shape (n_items,).
        history: The turns so far.
    """

    catalog: Catalog
    user: int
    turn: int = 0
    accepted: np.ndarray = field(init=False)  # set in __post_init__
    rejected: np.ndarray = field(init=False)  # set in __post_init__
    asked_categories: np.ndarray = field(init=False)  # set in __post_init__
    rejected_items: np.ndarray = field(init=False)  # set in __post_init__
    candidates: np.ndarray = field(init=False)  # set in __post_init__
    history: list[TurnRecord] = field(default_factory=list)
    last_answer: int = 0

    def __post_init__(self) -> None:
        catalog = self.catalog
        n_parents = catalog.taxonomy.n_parents if catalog.taxonomy else 0
        self.accepted = np.zeros(catalog.n_aspects, dtype=np.bool_)
        self.rejected = np.zeros(catalog.n_aspects, dtype=np.bool_)
        self.asked_categories = np.zeros(n_parents, dtype=np.bool_)
        self.rejected_items = np.zeros(catalog.n_items, dtype=np.bool_)
        self.candidates = np.ones(catalog.n_items, dtype=np.bool_)

    @property
    def agent_actions(self) -> int:
        """Actions the agent has taken (turns minus the user's opening)."""
        return max(self.turn - 1, 0)

    def candidate_items(self) -> np.ndarray:
        """Candidate item ids, shape (n_candidates,), ascending."""
        return np.flatnonzero(self.candidates)

    @property
    def n_candidates(self) -> int:
        return int(np.count_nonzero(self.candidates))

    def facts(self) -> DialogueFacts:
        """The state as a preference ranker sees it."""
        return DialogueFacts(
            user=self.user,
            accepted=np.flatnonzero(self.accepted),
            rejected=np.flatnonzero(self.rejected),
            rejected_items=np.flatnonzero(self.rejected_items),
        )

    def reachable_aspects(self) -> np.ndarray:
        """Aspects held by at least one candidate item, neither accepted nor rejected, ascending."""
        _, aspects = compressed_entries(self.catalog.item_aspects, self.candidate_items())
        held = np.zeros(self.catalog.n_aspects, dtype=np.bool_)
        held[aspects] = True
        return np.flatnonzero(held & ~self.accepted & ~self.rejected)

    def keep_items_with(self, aspect: int) -> None:
        """candidates ∩= items having `aspect`."""
        mask = np.zeros_like(self.candidates)
        mask[self.catalog.items_with(aspect)] = True
        self.candidates &= mask

    def items_with_any(self, aspects: tuple[int, ...]) -> np.ndarray:
        """Items having at least one of `aspects`, boolean mask of shape (n_items,)."""
        mask = np.zeros_like(self.candidates)
        for aspect in aspects:
            mask[self.catalog.items_with(aspect)] = True
        return mask

    def keep_items_with_any(self, aspects: tuple[int, ...]) -> None:
        """candidates ∩= items having at least one of `aspects` (``candidate_rule="any"``)."""
        self.candidates &= self.items_with_any(aspects)

    def mcmipl_candidates(self, accepted: tuple[int, ...], rejected: tuple[int, ...]) -> np.ndarray:
        """The candidates after a question answered (`accepted`, `rejected`), by MCMIPL's rule
        (``_update_cand_items``; docs/protocols/mcmipl.md section 4.7); the state is not changed.

        With C the candidates: C' = (∪_{a ∈ accepted} C ∩ items(a)) minus the items having any
        rejected aspect; with nothing accepted, C' = C minus those items; when C' is empty, C is kept.

        Returns:
            Boolean mask of shape (n_items,).
        """
        kept = self.candidates & self.items_with_any(accepted) if accepted else self.candidates.copy()
        kept &= ~self.items_with_any(rejected)
        return kept if kept.any() else self.candidates.copy()


KIND_NAMES = {ActionKind.ASK: "ask", ActionKind.PROBE: "probe", ActionKind.RECOMMEND: "recommend"}
