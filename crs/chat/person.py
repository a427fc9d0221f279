"""The person at the keyboard as the env's user model: the chat tells it the typed reply, then the
env asks it and gets that reply back, so the env keeps its usual rules and bookkeeping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crs.chat.errors import ChatError
from crs.chat.question import QuestionKey
from envs.env import ConversationEnv
from simulators.catalog import Catalog
from simulators.users import Goal, SlateReaction, UserModel


@dataclass(frozen=True)
class PersonAnswer:
    """One reply of the person, kept so that `back` can replay the dialogue.

    Attributes:
        question: Key of the question it answers (`Question.key`), None for the opening.
        said: "open", "yes", "no", "skip", "none", "choose", "accept" or "reject".
        aspects: Accepted aspect ids (the opening: the stated aspect).
        item: Accepted item id, or None.
    """

    question: QuestionKey | None
    said: str
    aspects: tuple[int, ...] = ()
    item: int | None = None


class HumanUser(UserModel):
    """The user model of a person at the keyboard: it answers with what the person typed.

    The chat loop reads the reply first and hands it over with `tell`; the env then calls
    `opening_aspect`, `answer` or `react`, which return that reply. A person has no hidden target:
    ``targets`` is empty, so success means the person accepted an item.

    Raises:
        ChatError: when the env asks before a reply was told, or the reply does not fit the question
            (an aspect that was not asked, an item not in the slate).
    """

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._reply: PersonAnswer | None = None

    def reset(self, goal: Goal, rng: np.random.Generator) -> None:
        """Keep the goal's user (whose history personalises the ranker), drop its target."""
        super().reset(Goal(user=goal.user, targets=()), rng)

    def tell(self, reply: PersonAnswer) -> None:
        """The person's reply to the next thing the env asks."""
        self._reply = reply

    def _take(self, what: str) -> PersonAnswer:
        if self._reply is None:
            raise ChatError(f"HumanUser was asked for {what} before a reply was told; call tell() first")
        reply, self._reply = self._reply, None
        return reply

    def opening_aspect(self) -> int:
        reply = self._take("its opening aspect")
        if len(reply.aspects) != 1:
            raise ChatError(f"the opening names exactly one aspect, got {list(reply.aspects)}")
        return int(reply.aspects[0])

    def opening_category(self) -> int:
        """The category of the aspect the person opened with (enumerated setting); the env's answer to
        it is that aspect alone, so the category's other aspects count as rejected, as UNICORN's YELP
        opening rejects them."""
        aspect = self.opening_aspect()
        taxonomy = self.catalog.taxonomy
        category = -1 if taxonomy is None else int(taxonomy.parent_of[aspect])
        if category < 0:
            name = self.catalog.aspect_names[aspect]
            raise ChatError(f"{name!r} is in no category; the enumerated setting opens with a listed one")
        self._reply = PersonAnswer(None, "open", (aspect,))
        return category

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        reply = self._take("an answer")
        asked = {int(a) for a in aspects}
        extra = sorted(set(reply.aspects) - asked)
        if extra:
            raise ChatError(f"reply accepts aspect(s) {extra} that were not asked (asked: {sorted(asked)})")
        return frozenset(int(a) for a in reply.aspects)

    def react(self, slate: Sequence[int]) -> SlateReaction:
        reply = self._take("a reaction to a slate")
        if reply.item is None:
            return SlateReaction(accepted=None, rank=None)
        items = [int(i) for i in slate]
        if reply.item not in items:
            raise ChatError(f"reply accepts item {reply.item}, which is not in the slate {items}")
        return SlateReaction(accepted=reply.item, rank=items.index(reply.item) + 1)


def human_env(env: ConversationEnv) -> ConversationEnv:
    """A copy of `env`'s setting (catalogue, goals, rules) whose answers come from a `HumanUser`."""
    return ConversationEnv(
        env.catalog,
        HumanUser(env.catalog),
        env.goals,
        setting=env.setting,
        candidate_rule=env.candidate_rule,
        max_turns=env.max_turns,
        slate_size=env.slate_size,
        max_choices=max(env.max_choices, 1),
        n_personas=env.n_personas,
        rewards=env.rewards,
        question_types=env.question_types,
    )
