"""Why an item is recommended: a persona of the user and an aspect of the item.

One module for every explanation a person reads:

- `crs chat` explains each item of a slate with `Explainer`: the (persona, aspect) pair comes from
  the policy, else the ranker, else a fallback that needs no persona model, and the persona is named
  by its signature aspects. `Explanation.text` words it ("for your jazz & calm side, because of
  trumpet").
- The report's example dialogues explain a slate's accepted (else first) item with a persona ranker
  (`prototype_explanations`); the persona is named by the shared prototype it draws most from.
  `Explanation.report_text` words it ('"Velvet Harbor": your persona 1 (P3 · jazz, calm), because of
  "jazz"').

Domain logic only: the callers style these words (a rich table in the chat, plain text in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.env import ConversationEnv
from envs.ranker import DialogueFacts, ExplainablePersonaRanker, PreferenceRanker
from simulators.catalog import Catalog
from simulators.errors import CRSError

LABEL_ASPECTS = 2
"""Signature aspects that make a persona's label ("jazz & melancholic")."""
NO_ASPECT_REASON = "how well it fits you"
"""The chat's reason for an item that has no aspect."""


class ExplanationError(CRSError):
    """A policy or ranker explained a different number of items than it was asked about."""


@dataclass(frozen=True)
class Explanation:
    """Why an item is recommended: a persona of the user and an aspect of the item.

    Attributes:
        item: Item id.
        persona: Persona slot among the user's personas (0 when the source has a single taste).
        persona_label: Readable name of the persona: its signature aspects in the chat ("jazz &
            melancholic"), its prototype in the report ("P3 · jazz, calm").
        aspect: Aspect id, or -1 when the item has none.
        source: "policy", "ranker" or "fallback".
    """

    item: int
    persona: int
    persona_label: str
    aspect: int
    source: str

    def reason(self, catalog: Catalog) -> str:
        """The aspect's name, or `NO_ASPECT_REASON` for an item without aspects."""
        return catalog.aspect_names[self.aspect] if self.aspect >= 0 else NO_ASPECT_REASON

    def text(self, catalog: Catalog) -> str:
        """The chat's words: 'for your <persona label> side, because of <aspect>'."""
        return f"for your {self.persona_label} side, because of {self.reason(catalog)}"

    def report_text(self, catalog: Catalog) -> str:
        """The report's words: '"<item>": your persona <k> (<prototype>), because of "<aspect>"'."""
        reason = f'because of "{catalog.aspect_names[self.aspect]}"' if self.aspect >= 0 else "no aspect"
        return (
            f'"{catalog.item_names[self.item]}": your persona {self.persona} ({self.persona_label}), {reason}'
        )

    def to_json(self, catalog: Catalog) -> dict[str, Any]:
        """The explanation as a chat transcript records it."""
        return {
            "item": self.item,
            "item_name": catalog.item_names[self.item],
            "persona": self.persona,
            "persona_label": self.persona_label,
            "aspect": self.aspect,
            "aspect_name": catalog.aspect_names[self.aspect] if self.aspect >= 0 else None,
            "source": self.source,
            "text": self.text(catalog),
        }


def explanation_pairs(
    source: object, argument: object, items: Sequence[int], name: str
) -> list[tuple[int, int]] | None:
    """The (persona, aspect) pair per item that ``source.explain(argument, items)`` gives.

    Args:
        source: A policy (``explain(env, items)``) or ranker (``explain(facts, items)``), or None.
        argument: What its ``explain`` takes first (the env or the dialogue facts).
        items: Item ids.
        name: "policy" or "ranker", for the error message.

    Returns:
        One pair per item, in order; None when `source` has no ``explain``.

    Raises:
        ExplanationError: ``explain`` returned a different number of pairs than items.
    """
    method = getattr(source, "explain", None) if source is not None else None
    if not callable(method):
        return None
    pairs = list(method(argument, np.asarray(items, dtype=np.int64)))
    if len(pairs) != len(items):
        raise ExplanationError(f"{name} explain() returned {len(pairs)} pairs for {len(items)} items")
    return [(int(k), int(a)) for k, a in pairs]


def prototype_explanations(
    ranker: ExplainablePersonaRanker,
    facts: DialogueFacts,
    items: Sequence[int],
    prototype_names: Sequence[str],
) -> list[Explanation]:
    """Explanations by a persona ranker, each persona named by the shared prototype it draws most from.

    Args:
        ranker: A persona ranker (``explain(facts, items)``, ``prototype_of(user)``).
        facts: The dialogue facts the items are explained under.
        items: Item ids.
        prototype_names: Display name of each shared prototype ("P3 · jazz, calm").

    Raises:
        ExplanationError: The ranker has no ``explain``, or explained a different number of items.
    """
    items = [int(i) for i in items]
    pairs = explanation_pairs(ranker, facts, items, "ranker")
    if pairs is None:
        raise ExplanationError(f"{type(ranker).__name__} has no explain(); it is not a persona ranker")
    prototypes = ranker.prototype_of(facts.user)
    return [
        Explanation(item, k, prototype_names[int(prototypes[k])], a, "ranker")
        for item, (k, a) in zip(items, pairs, strict=True)
    ]


class Explainer:
    """Explanations for the chat's recommended items, from the best source available.

    1. the policy, when it has ``explain(env, items) -> [(persona, aspect), ...]``;
    2. the ranker, when it has ``explain(facts, items) -> [(persona, aspect), ...]``;
    3. a fallback that needs no persona model: persona slot 0, labelled by the user's history, and
       the most specific accepted aspect the item has (fewest items in the catalogue), else the
       item's own aspect with the highest ranker aspect score.

    Persona labels come from ``signature_aspects(user, k, m)`` of the policy or ranker when they
    have it, else from the user's history: the aspects most over-represented in the items the user
    interacted with in the pre-training split (count x log(n_items / items having the aspect)).

    Args:
        catalog: The catalogue.
        policy: The dialogue policy (may have `explain`, `signature_aspects`, `ranker`).
        ranker: The preference ranker (may have `explain`, `signature_aspects`), or None.
    """

    def __init__(self, catalog: Catalog, policy: object, ranker: PreferenceRanker | None) -> None:
        self.catalog = catalog
        self.policy = policy
        self.ranker = ranker
        self._profiles: dict[int, np.ndarray] = {}
        self._labels: dict[tuple[int, int], str] = {}
        self._history: tuple[np.ndarray, np.ndarray] | None = None
        frequency = np.diff(catalog.aspect_items.indptr).astype(np.float64)
        self.aspect_frequency = frequency
        self._idf = np.log((catalog.n_items + 1.0) / (frequency + 1.0))

    @property
    def has_personas(self) -> bool:
        """Whether the policy or ranker can label several personas (``signature_aspects``)."""
        return self._signature_source() is not None

    def _signature_source(self) -> Any:
        for source in (self.policy, self.ranker):
            if source is not None and callable(getattr(source, "signature_aspects", None)):
                return source
        return None

    def explain(self, env: ConversationEnv, items: Sequence[int]) -> list[Explanation]:
        """One explanation per item of `items`, in order.

        Raises:
            ExplanationError: The policy or ranker explained a different number of items.
        """
        items = [int(i) for i in items]
        facts = env.state.facts()
        for source, name, argument in ((self.policy, "policy", env), (self.ranker, "ranker", facts)):
            pairs = explanation_pairs(source, argument, items, name)
            if pairs is not None:
                return [
                    Explanation(item, k, self.persona_label(facts, k), a, name)
                    for item, (k, a) in zip(items, pairs, strict=True)
                ]
        return self._fallback(facts, items)

    def _fallback(self, facts: DialogueFacts, items: list[int]) -> list[Explanation]:
        label = self.persona_label(facts, 0)
        accepted = set(facts.accepted.tolist())
        out = []
        for item in items:
            own = self.catalog.aspects_of(item)
            shared = np.array([a for a in own.tolist() if a in accepted], dtype=np.int64)
            pool = shared if shared.size else own
            if pool.size == 0:
                out.append(Explanation(item, 0, label, -1, "fallback"))
                continue
            if shared.size or self.ranker is None:  # the most specific thing the user asked for
                scores = -self.aspect_frequency[pool]
            else:
                scores = np.asarray(self.ranker.aspect_scores(facts, pool), dtype=np.float64)
            out.append(Explanation(item, 0, label, int(pool[int(np.argmax(scores))]), "fallback"))
        return out

    def persona_label(self, facts: DialogueFacts, k: int) -> str:
        """Readable label of persona slot `k` of the dialogue's user, e.g. "jazz & melancholic".

        The first label asked for a (user, slot) is kept for the rest of the conversation.
        """
        key = (facts.user, k)
        if key not in self._labels:
            source = self._signature_source()
            if source is not None:
                aspects = np.asarray(source.signature_aspects(facts.user, k, LABEL_ASPECTS), dtype=np.int64)
            else:
                aspects = self.profile(facts.user)[:LABEL_ASPECTS]
            if aspects.size == 0:  # a user without history: name the taste by what they said
                aspects = np.asarray(facts.accepted, dtype=np.int64)[:LABEL_ASPECTS]
            names = [self.catalog.aspect_names[int(a)] for a in aspects]
            self._labels[key] = " & ".join(names) if names else "own"
        return self._labels[key]

    def history(self, user: int) -> np.ndarray:
        """Items `user` interacted with in the pre-training split, shape (n,)."""
        if self._history is None:
            split = self.catalog.split(self.catalog.pretrain_split)
            order = np.argsort(split.users, kind="stable")
            self._history = (split.users[order], split.items[order])
        users, items = self._history
        low, high = np.searchsorted(users, [user, user + 1])
        return items[low:high]

    def profile(self, user: int) -> np.ndarray:
        """Aspects most characteristic of `user`'s history, best first, shape (n,) (n <= n_aspects)."""
        if user not in self._profiles:
            items = self.history(user)
            if items.size == 0:
                self._profiles[user] = np.zeros(0, dtype=np.int64)
            else:
                counts = np.asarray(self.catalog.item_aspects[items].sum(axis=0), dtype=np.float64).ravel()
                score = counts * self._idf
                held = np.flatnonzero(counts > 0)
                self._profiles[user] = held[np.lexsort((held, -score[held]))]
        return self._profiles[user]
