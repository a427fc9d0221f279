"""Why an item is recommended: what the person asked for that the item has, and the persona of the
user it serves (with an aspect of the item), or the ranking's own reason when there is no persona.

One module for every explanation a person reads:

- `crs chat` explains each item of a slate with `Explainer`: the item's own aspects among those the
  person accepted; the (persona, aspect) pair from the policy, else the ranker, when they model
  personas; else the ranking's reason (popularity: how many users have the item in their history;
  another ranker: the item's other aspect it scores highest). `Explanation.text` words it ("has
  jazz & trumpet, as you asked; for your calm & steady side, because of cello").
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
from policies.baseline_rankers import PopularityRanker
from simulators.catalog import Catalog
from simulators.errors import CRSError

LABEL_ASPECTS = 2
"""Signature aspects that make a persona's label ("jazz & melancholic")."""
LABEL_POOL = 20
"""A persona's label is chosen among this many of the user's most characteristic aspects (`profile`):
over all of LastFM*'s 8,438 tags a persona's most distinctive ones were tags the user's own history
held in 4% of labels ("industri & fucking selfdeep"); among the profile's 20, "songwriters & live"."""
MATCHED_SHOWN = 3
"""Accepted aspects of an item named in the chat's explanation (the rest as "+N")."""
NO_ASPECT_REASON = "how well it fits you"
"""The chat's reason for an item with nothing else to say about it."""

Segment = tuple[str, str]
"""A piece of an explanation's words and its style for the chat ("", "bold" or "italic")."""


class ExplanationError(CRSError):
    """A policy or ranker explained a different number of items than it was asked about."""


def side_segments(label: str, declined: Sequence[str]) -> list[Segment]:
    """A persona side in the chat's words, after "for" or "about": "your *jazz & calm* side", with the
    label's aspects the person turned down (`declined`, names) said rather than contradicted: "your
    *jazz & calm* side (without **jazz**, as you answered)", or, every one turned down (or skipped),
    "the side of you that is usually *jazz & calm* (not today, as you answered)"."""
    if declined and label == " & ".join(declined):
        usually: list[Segment] = [("the side of you that is usually ", ""), (label, "italic")]
        return [*usually, (" (not today, as you answered)", "")]
    part: list[Segment] = [("your ", ""), (label, "italic"), (" side", "")]
    if declined:
        part += [(" (without ", ""), (" & ".join(declined), "bold"), (", as you answered)", "")]
    return part


@dataclass(frozen=True)
class Explanation:
    """Why an item is recommended.

    Attributes:
        item: Item id.
        persona: Persona slot among the user's personas, or None when the source models no personas
            (a popularity ranking, a ranker with one taste per user).
        persona_label: Readable name of the persona: its signature aspects in the chat ("jazz &
            melancholic"), its prototype in the report ("P3 · jazz, calm"); "" without a persona.
        aspect: An aspect of the item that explains it beyond what the person asked for (the
            persona's, or the ranker's best-scored one), or -1 for none.
        source: "policy", "ranker", "popularity", "fallback" (the ranker's best other aspect) or
            "dialogue" (the same from a ranker without preferences: the aspect most of the items left
            have, `PersonaRanker.has_preferences`).
        matched: The item's own aspects among those the person accepted, in the order accepted.
        popularity: Users having the item in their pre-training history, when the ranking is by
            popularity; else None.
        declined: Aspects of the persona's label the person turned down in this conversation (the
            label names a side of their history and keeps its name; the words say which part of it
            was declined rather than contradict the answer).
    """

    item: int
    persona: int | None
    persona_label: str
    aspect: int
    source: str
    matched: tuple[int, ...] = ()
    popularity: int | None = None
    declined: tuple[int, ...] = ()

    def segments(self, catalog: Catalog) -> list[Segment]:
        """The chat's words in styled pieces; `text` joins them.

        Up to three parts, joined by "; ": what the item has of what was asked ("has jazz & trumpet,
        as you asked"); the persona ("for your calm & steady side, because of cello"), else the
        ranking's reason ("ranked by popularity: 212 users have it in their history", "also cello,
        close to your taste"); `NO_ASPECT_REASON` when there is nothing else to say.
        """
        names = catalog.aspect_names
        parts: list[list[Segment]] = []
        if self.matched:
            shown = [names[a] for a in self.matched[:MATCHED_SHOWN]]
            extra = len(self.matched) - len(shown)
            listed = " & ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
            listed += f" (+{extra} more)" if extra > 0 else ""
            parts.append([("has ", ""), (listed, "bold"), (", as you asked", "")])
        if self.persona is not None:
            part = [("for ", ""), *side_segments(self.persona_label, [names[a] for a in self.declined])]
            if self.aspect >= 0:
                part += [(", because of ", ""), (names[self.aspect], "bold")]
            parts.append(part)
        elif self.popularity is not None:
            users = "1 user has" if self.popularity == 1 else f"{self.popularity} users have"
            parts.append([(f"ranked by popularity: {users} it in their history", "")])
        elif self.aspect >= 0:
            why = ", common among the items left" if self.source == "dialogue" else ", close to your taste"
            parts.append([("also ", ""), (names[self.aspect], "bold"), (why, "")])
        if not parts:
            parts.append([(NO_ASPECT_REASON, "")])
        out: list[Segment] = []
        for n, part in enumerate(parts):
            out += ([("; ", "")] if n else []) + part
        return out

    def text(self, catalog: Catalog) -> str:
        """The chat's words, e.g. 'has jazz & trumpet, as you asked; for your calm & steady side,
        because of cello' or 'has jazz, as you asked; ranked by popularity: 212 users have it in
        their history'."""
        return "".join(text for text, _ in self.segments(catalog))

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
            "persona_label": self.persona_label or None,
            "aspect": self.aspect,
            "aspect_name": catalog.aspect_names[self.aspect] if self.aspect >= 0 else None,
            "matched": list(self.matched),
            "matched_names": [catalog.aspect_names[a] for a in self.matched],
            "popularity": self.popularity,
            "declined": list(self.declined),
            "declined_names": [catalog.aspect_names[a] for a in self.declined],
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


def unsettled_aspects(catalog: Catalog, facts: DialogueFacts, item: int) -> np.ndarray:
    """The item's own aspects the dialogue has not settled (neither accepted nor rejected), ascending."""
    own = catalog.aspects_of(item)
    settled = np.concatenate([facts.accepted, facts.rejected]).astype(np.int64)
    return own[~np.isin(own, settled)]


def persona_reason(
    catalog: Catalog, source: Any, facts: DialogueFacts, item: int, k: int, aspect: int
) -> int:
    """The aspect that explains `item` for persona `k`: the source's `aspect`, unless the dialogue
    settled it (accepted: every candidate may have it, so it tells items apart no more than the asked
    aspects do; rejected: the person said no to it), then the item's unsettled aspect that best marks
    persona `k` (``source.signature_aspects``), or -1 when there is none."""
    others = unsettled_aspects(catalog, facts, item)
    if aspect in set(others.tolist()) or (
        aspect >= 0 and aspect not in set(catalog.aspects_of(item).tolist())
    ):
        return aspect
    if others.size == 0 or not callable(getattr(source, "signature_aspects", None)):
        return -1
    best = np.asarray(source.signature_aspects(facts.user, k, 1, others), dtype=np.int64)
    return int(best[0]) if best.size and int(best[0]) in set(others.tolist()) else -1


def prototype_explanations(
    ranker: ExplainablePersonaRanker,
    facts: DialogueFacts,
    items: Sequence[int],
    prototype_names: Sequence[str],
    catalog: Catalog,
) -> list[Explanation]:
    """Explanations by a persona ranker, each persona named by the shared prototype it draws most from.

    Args:
        ranker: A persona ranker (``explain(facts, items)``, ``prototype_of(user)``).
        facts: The dialogue facts the items are explained under.
        items: Item ids.
        prototype_names: Display name of each shared prototype ("P3 · jazz, calm").
        catalog: The catalogue (an aspect the dialogue settled is replaced, as the chat replaces it:
            `persona_reason`).

    Raises:
        ExplanationError: The ranker has no ``explain``, or explained a different number of items.
    """
    items = [int(i) for i in items]
    pairs = explanation_pairs(ranker, facts, items, "ranker")
    if pairs is None:
        raise ExplanationError(f"{type(ranker).__name__} has no explain(); it is not a persona ranker")
    prototypes = ranker.prototype_of(facts.user)
    return [
        Explanation(
            item,
            k,
            prototype_names[int(prototypes[k])],
            persona_reason(catalog, ranker, facts, item, k, a),
            "ranker",
        )
        for item, (k, a) in zip(items, pairs, strict=True)
    ]


class Explainer:
    """Explanations for the chat's recommended items, from the best source available.

    Every explanation names the item's own aspects among those the person accepted (`matched`), then:

    1. the policy's persona, when it has ``explain(env, items) -> [(persona, aspect), ...]`` and
       models several personas;
    2. else the ranker's, when it has ``explain(facts, items)`` and models several personas;
    3. else no persona: with a popularity ranker, how many users have the item in their history;
       with another ranker, the item's aspect (neither accepted nor rejected) it scores highest.

    A persona's aspect is the source's; when the person accepted it (so every candidate may have it,
    and it tells items apart no more than `matched` does) or rejected it, it is the item's other
    aspect that best marks the persona (``signature_aspects(user, k, 1, among)``), or none
    (`persona_reason`, which the report's explanations share). No explanation names an aspect the
    person said no to.

    Persona labels come from ``signature_aspects(user, k, m)`` of the policy or ranker when they
    have it, else from the user's history: the aspects most over-represented in the items the user
    interacted with in the pre-training split (count x log(n_items / items having the aspect)).
    A source models several personas when it has ``signature_aspects`` and does not say it has one
    persona per user (``personas_per_user == 1``).

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
        self._labels: dict[tuple[int, int], tuple[int, ...]] = {}
        self._history: tuple[np.ndarray, np.ndarray] | None = None
        frequency = np.diff(catalog.aspect_items.indptr).astype(np.float64)
        self.aspect_frequency = frequency
        self._idf = np.log((catalog.n_items + 1.0) / (frequency + 1.0))

    @property
    def has_personas(self) -> bool:
        """Whether the policy or ranker models several personas per user and can label them."""
        source = self._signature_source()
        return source is not None and getattr(source, "personas_per_user", 2) != 1

    @property
    def by_popularity(self) -> bool:
        """Whether items are ranked by popularity (the same for everyone), not for the user."""
        return isinstance(self.ranker, PopularityRanker)

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
        accepted = _accepted_in_order(env)
        matched = {item: self._matched(item, accepted) for item in items}
        if self.has_personas:
            for source, name, argument in ((self.policy, "policy", env), (self.ranker, "ranker", facts)):
                pairs = explanation_pairs(source, argument, items, name)
                if pairs is not None:
                    return [
                        Explanation(
                            item,
                            k,
                            self.persona_label(facts, k),
                            persona_reason(self.catalog, self._signature_source(), facts, item, k, a),
                            name,
                            matched[item],
                            declined=self.declined(facts, k),
                        )
                        for item, (k, a) in zip(items, pairs, strict=True)
                    ]
        if isinstance(self.ranker, PopularityRanker):
            popularity = self.ranker.item_popularity
            return [
                Explanation(item, None, "", -1, "popularity", matched[item], int(popularity[item]))
                for item in items
            ]
        source = "fallback" if getattr(self.ranker, "has_preferences", True) else "dialogue"
        return [
            Explanation(item, None, "", self._ranker_aspect(facts, item), source, matched[item])
            for item in items
        ]

    def _matched(self, item: int, accepted: Sequence[int]) -> tuple[int, ...]:
        """The item's own aspects among `accepted`, in that order."""
        own = set(self.catalog.aspects_of(item).tolist())
        return tuple(a for a in accepted if a in own)

    def _ranker_aspect(self, facts: DialogueFacts, item: int) -> int:
        """The item's aspect the dialogue has not settled that the ranker scores highest; -1 without a
        ranker or such an aspect."""
        others = unsettled_aspects(self.catalog, facts, item)
        if self.ranker is None or others.size == 0:
            return -1
        scores = np.asarray(self.ranker.aspect_scores(facts, others), dtype=np.float64)
        return int(others[int(np.argmax(scores))])

    def persona_label(self, facts: DialogueFacts, k: int) -> str:
        """Readable label of persona slot `k` of the dialogue's user, e.g. "jazz & melancholic" (the
        names of `label_aspects`), or "own" when it names none."""
        names = [self.catalog.aspect_names[a] for a in self.label_aspects(facts, k)]
        return " & ".join(names) if names else "own"

    def declined(self, facts: DialogueFacts, k: int) -> tuple[int, ...]:
        """The aspects naming persona slot `k` (`label_aspects`) that the dialogue has turned down."""
        rejected = set(facts.rejected.tolist())
        return tuple(a for a in self.label_aspects(facts, k) if a in rejected)

    def label_aspects(self, facts: DialogueFacts, k: int) -> tuple[int, ...]:
        """The aspects that name persona slot `k` of the dialogue's user: the persona's signature
        aspects among the user's `LABEL_POOL` most characteristic ones (`profile`), so that a label
        names tags of the user's own history.

        The first label asked for a (user, slot) is kept for the rest of the conversation.
        """
        key = (facts.user, k)
        if key not in self._labels:
            source = self._signature_source()
            own = self.profile(facts.user)[:LABEL_POOL]
            if source is not None:
                among = own if own.size else None
                aspects = np.asarray(
                    source.signature_aspects(facts.user, k, LABEL_ASPECTS, among=among), dtype=np.int64
                )
            else:
                aspects = own[:LABEL_ASPECTS]
            if aspects.size == 0:  # a user without history: name the taste by what they said
                aspects = np.asarray(facts.accepted, dtype=np.int64)[:LABEL_ASPECTS]
            self._labels[key] = tuple(int(a) for a in aspects)
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


def _accepted_in_order(env: ConversationEnv) -> list[int]:
    """The aspects the user accepted, in the order the dialogue accepted them."""
    order: dict[int, None] = {}
    for record in env.state.history:
        order.update((int(a), None) for a in record.accepted)
    order.update((int(a), None) for a in env.state.facts().accepted.tolist())
    return list(order)
