"""What the policy's action asks of the user, in the person's terms (the options of a question, the
candidates an answer would keep)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from envs.actions import ActionKind, ParsedAction
from envs.env import ConversationEnv
from envs.ranker import DialogueFacts, PreferenceRanker

RejectionEffect = Literal["lower", "ignored", "higher"]
"""How a ranker treats the candidates having a rejected aspect (`rejection_effect`)."""
TOLERANCE = 1e-9
"""Score changes within this count as none."""

# `Question.key`: (action kind, question ids, persona slot, slate)
QuestionKey = tuple[int, tuple[int, ...], int | None, tuple[int, ...]]


@dataclass(frozen=True)
class Question:
    """What the policy's action asks of the user, in the person's terms.

    Attributes:
        parsed: The validated action.
        options: Aspect ids the user chooses among (an enumerated ask: the category's fine aspects
            that a candidate still has); empty for a recommendation.
        category: Category id of an enumerated ask, else None.
        hidden: Fine aspects of the category left out of `options` (no candidate has them).
    """

    parsed: ParsedAction
    options: tuple[int, ...] = ()
    category: int | None = None
    hidden: int = 0

    @property
    def kind(self) -> str:
        """The action's kind as the transcript names it: "ask", "probe" or "recommend"."""
        return {ActionKind.ASK: "ask", ActionKind.PROBE: "probe", ActionKind.RECOMMEND: "recommend"}[
            self.parsed.kind
        ]

    @property
    def is_recommend(self) -> bool:
        return self.parsed.kind is ActionKind.RECOMMEND

    @property
    def is_binary(self) -> bool:
        """A yes/no question: one aspect, not an enumerated category."""
        return not self.is_recommend and self.category is None and len(self.options) == 1

    @property
    def key(self) -> QuestionKey:
        """Identity of the question, compared when a replay checks the policy still asks it."""
        return (int(self.parsed.kind), self.parsed.aspects, self.parsed.persona, self.parsed.items)


def read_question(env: ConversationEnv, action: dict[str, Any]) -> Question:
    """Validate the policy's `action` with the env's rules and describe what it asks."""
    parsed = env.parse(action)
    if parsed.kind is ActionKind.RECOMMEND:
        return Question(parsed)
    if parsed.kind is ActionKind.ASK and env.enumerated:
        taxonomy = env.catalog.taxonomy
        assert taxonomy is not None
        category = parsed.aspects[0]
        fine = taxonomy.children(category)
        held = _candidates_holding(env, fine)
        shown = fine[held > 0] if (held > 0).any() else fine
        shown = shown[np.argsort(-held[held > 0], kind="stable")] if (held > 0).any() else shown
        return Question(
            parsed,
            options=tuple(int(a) for a in shown),
            category=category,
            hidden=int(fine.size - shown.size),
        )
    return Question(parsed, options=parsed.aspects)


def _candidates_holding(env: ConversationEnv, aspects: np.ndarray) -> np.ndarray:
    """How many candidate items have each aspect; int64, shape (n,)."""
    candidates = env.state.candidates
    return np.array([int(candidates[env.catalog.items_with(int(a))].sum()) for a in aspects], dtype=np.int64)


def pick_rule(env: ConversationEnv, noun: str) -> str:
    """What several picks at a multiple-choice question mean under the env's candidate rule, e.g. "an
    artist needs just one of those you pick" ("all": every one; MCMIPL's: none left out, and one picked
    when any is: "none" keeps the items having no listed value)."""
    article = "an" if noun[:1].lower() in "aeiou" else "a"
    if env.candidate_rule == "all":
        return f"{article} {noun} must have every one you pick"
    if env.candidate_rule == "mcmipl":
        return f"{article} {noun} stays if it has none you leave out and one you pick (if you pick any)"
    return f"{article} {noun} needs just one of those you pick"


def candidates_after(env: ConversationEnv, accepted: Sequence[int], rejected: Sequence[int] = ()) -> int:
    """Candidates the env would keep if the user accepted `accepted` and rejected `rejected` (the env's
    candidate rule; only MCMIPL's reads the rejected aspects)."""
    if env.candidate_rule == "mcmipl":
        kept = env.state.mcmipl_candidates(tuple(int(a) for a in accepted), tuple(int(a) for a in rejected))
        return int(kept.sum())
    mask = env.state.candidates.copy()
    if not accepted:
        return int(mask.sum())
    if env.candidate_rule == "all":
        for aspect in accepted:
            keep = np.zeros_like(mask)
            keep[env.catalog.items_with(int(aspect))] = True
            mask &= keep
    else:
        keep = np.zeros_like(mask)
        for aspect in accepted:
            keep[env.catalog.items_with(int(aspect))] = True
        mask &= keep
    return int(mask.sum())


def rejection_effect(
    env: ConversationEnv, ranker: PreferenceRanker | None, aspects: Sequence[int]
) -> RejectionEffect | None:
    """What rejecting `aspects` (already in the env's state) does to the ranking of the candidates.

    The candidates having any of `aspects` are scored with and without those rejections; "lower" when
    their scores drop against the other candidates' (the rejection ranks them lower), "ignored" when
    no score moves differently (the ranker does not use it), "higher" when they rise.

    Returns:
        "lower", "ignored", "higher", or None when it cannot tell: no ranker, nothing rejected, or
        no candidate (or every candidate) has one of `aspects`.
    """
    if ranker is None or not aspects:
        return None
    items = env.state.candidate_items()
    holds = np.zeros(env.catalog.n_items, dtype=np.bool_)
    for aspect in aspects:
        holds[env.catalog.items_with(int(aspect))] = True
    holders = holds[items]
    if not holders.any() or holders.all():
        return None
    facts = env.state.facts()
    without = DialogueFacts(
        facts.user,
        facts.accepted,
        np.setdiff1d(facts.rejected, np.asarray(aspects, dtype=np.int64)),
        facts.rejected_items,
    )
    change = np.asarray(ranker.item_scores(facts, items), dtype=np.float64) - np.asarray(
        ranker.item_scores(without, items), dtype=np.float64
    )
    gap = float(change[holders].mean() - change[~holders].mean())
    if abs(gap) <= TOLERANCE:
        return "ignored"
    return "lower" if gap < 0 else "higher"
