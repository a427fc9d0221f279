"""The preference-ranker protocol: scores items and aspects given the facts of a dialogue.

`envs` defines the protocol; `policies` implements learned rankers; the caller injects an instance
into the SB3 wrapper or a rule policy. A ranker is fixed during RL: nothing here updates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


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


@runtime_checkable
class PreferenceRanker(Protocol):
    """Scores candidate items and aspects for a dialogue; higher is more preferred."""

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        """Scores of `items` (shape (n,), int64), returned as float64 of shape (n,)."""
        ...

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        """Scores of `aspects` (shape (n,), int64), returned as float64 of shape (n,)."""
        ...
