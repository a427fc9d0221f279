"""The structured action of a conversation turn: ask, probe a persona, or recommend a slate.

An action is a dict with four entries (the env's Dict action space):

- ``kind``: 0 = ask, 1 = probe, 2 = recommend.
- ``aspects``: aspect ids of a question, shape (max_choices,). One distinct id = a binary question,
  several = multiple choice.
- ``category``: the first-layer category of an enumerated question (Yelp*-style envs only).
- ``persona``: the persona slot a probe targets (kept for explanations; ignored otherwise).
- ``items``: the slate, shape (slate_size,).

Id lists may be shorter than their slot count, padded with -1, or repeat ids: repeats count once, in
order of first appearance. So every sample of the action space is a valid action, and the helpers
`ask`, `probe` and `recommend` build the short form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from simulators.errors import CRSError


class ActionKind(IntEnum):
    ASK = 0
    PROBE = 1
    RECOMMEND = 2


class InvalidActionError(CRSError, ValueError):
    """An action the env cannot carry out; the dialogue state is left unchanged."""


@dataclass(frozen=True)
class ParsedAction:
    """An action after validation: ids de-duplicated, padding removed.

    Attributes:
        kind: Ask, probe or recommend.
        aspects: Question ids asked (empty for a recommendation).
        persona: Persona slot of a probe, else None.
        items: The slate (empty for a question).
    """

    kind: ActionKind
    aspects: tuple[int, ...] = ()
    persona: int | None = None
    items: tuple[int, ...] = ()


PAD = -1


def _ids(values: Iterable[int] | int) -> list[int]:
    if isinstance(values, int | np.integer):
        return [int(values)]
    return [int(v) for v in values]


def ask(aspects: Iterable[int] | int) -> dict[str, object]:
    """An ask action: one aspect id (binary question), several (multiple choice), or for an env with
    enumerated questions one category id."""
    ids = _ids(aspects)
    return {
        "kind": int(ActionKind.ASK),
        "aspects": ids,
        "category": ids[0] if ids else PAD,
        "persona": 0,
        "items": [],
    }


def probe(persona: int, aspects: Iterable[int] | int) -> dict[str, object]:
    """A probe of persona slot `persona`: one multiple-choice question listing `aspects`."""
    return {
        "kind": int(ActionKind.PROBE),
        "aspects": _ids(aspects),
        "category": PAD,
        "persona": int(persona),
        "items": [],
    }


def recommend(items: Iterable[int]) -> dict[str, object]:
    """A recommendation of the slate `items` (best first)."""
    return {
        "kind": int(ActionKind.RECOMMEND),
        "aspects": [],
        "category": PAD,
        "persona": 0,
        "items": _ids(items),
    }


def _unique(values: object) -> tuple[int, ...]:
    array = np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1)
    seen: dict[int, None] = {}
    for value in array.tolist():
        if value != PAD:
            seen.setdefault(value, None)
    return tuple(seen)


def parse_action(
    action: object,
    *,
    n_aspects: int,
    n_categories: int,
    n_items: int,
    n_personas: int,
    max_choices: int,
    slate_size: int,
) -> ParsedAction:
    """Validate a raw action (dict from a helper or sampled from the action space).

    Padding (-1) is dropped and repeated ids are kept once, in order of first appearance. With
    `n_categories` > 0 (enumerated questions) an ask reads the ``category`` entry; its ParsedAction
    carries the category id in `aspects`.

    Raises:
        InvalidActionError: unknown kind, id out of range, empty question or slate, too many ids.
    """
    if not isinstance(action, dict):
        raise InvalidActionError(
            f"action must be a dict with keys kind/aspects/persona/items (use envs.ask/probe/recommend), "
            f"got {type(action).__name__}"
        )
    try:
        kind = ActionKind(int(np.asarray(action.get("kind", -1)).reshape(-1)[0]))
    except ValueError as error:
        raise InvalidActionError(
            f"action kind {action.get('kind')!r} is not one of 0=ask, 1=probe, 2=recommend"
        ) from error
    if kind is ActionKind.RECOMMEND:
        items = _unique(action.get("items"))
        if not items:
            raise InvalidActionError("recommend needs a non-empty slate of item ids (got none)")
        if len(items) > slate_size:
            raise InvalidActionError(f"slate of {len(items)} items exceeds slate_size={slate_size}")
        bad = [i for i in items if not 0 <= i < n_items]
        if bad:
            raise InvalidActionError(f"unknown item id(s) {bad}; item ids lie in [0, {n_items})")
        return ParsedAction(kind=kind, items=items)
    word = "ask" if kind is ActionKind.ASK else "probe"
    if kind is ActionKind.ASK and n_categories:
        category = int(np.asarray(action.get("category", PAD)).reshape(-1)[0])
        if not 0 <= category < n_categories:
            raise InvalidActionError(
                f"this env asks enumerated questions: ask needs a category id in [0, {n_categories}), "
                f"got {category}"
            )
        return ParsedAction(kind=kind, aspects=(category,))
    aspects = _unique(action.get("aspects"))
    if not aspects:
        raise InvalidActionError(f"{word} needs at least one aspect id (got none)")
    if len(aspects) > max_choices:
        raise InvalidActionError(
            f"{word} lists {len(aspects)} aspects but this env allows {max_choices} per question "
            f"(binary setting allows 1; create the env with question_mode='multiple_choice' for more)"
        )
    bad = [a for a in aspects if not 0 <= a < n_aspects]
    if bad:
        raise InvalidActionError(f"unknown aspect id(s) {bad}; aspect ids lie in [0, {n_aspects})")
    persona = None
    if kind is ActionKind.PROBE:
        persona = int(np.asarray(action.get("persona", 0)).reshape(-1)[0])
        if not 0 <= persona < n_personas:
            raise InvalidActionError(f"probe persona {persona} outside [0, {n_personas})")
    return ParsedAction(kind=kind, aspects=aspects, persona=persona)
