"""`crs chat`'s dialogue: a person plays the user (or watches a simulated one) and a policy asks,
probes and recommends, explaining every recommendation with a persona x aspect pair.

The env's answers come from a `UserModel`. For a person that model is `HumanUser`: the chat loop
first asks the policy for its action (the env is not touched), shows the question, reads the
person's reply, hands it to the `HumanUser` (`tell`) and only then steps the env, which asks the
`HumanUser` and gets the reply back. The env therefore runs with its usual rules and bookkeeping;
the person has no hidden target (``targets`` is empty) and a conversation succeeds when the person
accepts an item.

`back` undoes the last answer by replaying the conversation from its start with the same seed and
the person's earlier answers: env, goal sampler and policy draw all randomness from that seed, so
the replay reaches the same state (when a policy nevertheless acts differently, the replay stops
there and the person answers from that turn on).
"""

from __future__ import annotations

import difflib
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from crs.claims import claim_new_file
from crs.common import write_json_atomic
from envs.actions import ActionKind, ParsedAction
from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, per_episode_metrics
from envs.ranker import DialogueFacts, PreferenceRanker
from envs.rollout import ConversationPolicy, episode_seed, evaluation_indices
from simulators.catalog import Catalog
from simulators.errors import CRSError
from simulators.users import Goal, SlateReaction, UserModel

SUGGESTIONS = 10
"""Aspects suggested at the opening."""
LABEL_ASPECTS = 2
"""Signature aspects that make a persona's label ("jazz & melancholic")."""
OPTIONS_SHOWN = 30
"""Options of a multiple-choice question listed at first (the rest on `more`)."""
TAGS_SHOWN = 3
"""Aspects of an item shown in a recommendation table."""
QUIT_WORDS = frozenset({"quit", "q", "exit", ":q"})
BACK_WORDS = frozenset({"back", "b", "undo"})
HELP_WORDS = frozenset({"help", "h", "?"})
MORE_WORDS = frozenset({"more", "list", "all options"})
YES_WORDS = frozenset({"y", "yes", "yeah", "yep", "sure", "ok"})
NO_WORDS = frozenset({"n", "no", "nope", "nah"})
SKIP_WORDS = frozenset({"s", "skip", "pass", "-", "dunno", "whatever"})
NONE_WORDS = frozenset({"none", "n", "no", "0", "-", "nothing"})
REJECT_WORDS = frozenset({"n", "no", "none", "0", "r", "reject", "-", "nothing"})


class ChatError(CRSError):
    """A chat cannot start or continue (bad user id, a reply the env cannot take)."""


# ------------------------------------------------------------------------------------ the person
@dataclass(frozen=True)
class PersonAnswer:
    """One reply of the person, kept so that `back` can replay the dialogue.

    Attributes:
        question: Key of the question it answers (`question_key`), None for the opening.
        said: "open", "yes", "no", "skip", "choose", "accept" or "reject".
        aspects: Accepted aspect ids (the opening: the stated aspect).
        item: Accepted item id, or None.
    """

    question: tuple[Any, ...] | None
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
        question_mode=env.question_mode,
        enumerated=env.enumerated,
        candidate_rule=env.candidate_rule,
        max_turns=env.max_turns,
        slate_size=env.slate_size,
        max_choices=max(env.max_choices, 1),
        n_personas=env.n_personas,
        rewards=env.rewards,
    )


# ------------------------------------------------------------------------------------- questions
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
        return {ActionKind.ASK: "ask", ActionKind.PROBE: "probe", ActionKind.RECOMMEND: "recommend"}[
            self.parsed.kind
        ]

    @property
    def is_recommend(self) -> bool:
        return self.parsed.kind is ActionKind.RECOMMEND

    @property
    def is_binary(self) -> bool:
        return not self.is_recommend and self.category is None and len(self.options) == 1

    @property
    def key(self) -> tuple[Any, ...]:
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


def candidates_after(env: ConversationEnv, accepted: Sequence[int]) -> int:
    """Candidates the env would keep if the user accepted `accepted` (the env's candidate rule)."""
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


# ---------------------------------------------------------------------------------- explanations
@dataclass(frozen=True)
class Explanation:
    """Why an item is recommended: a persona of the user and an aspect of the item.

    Attributes:
        item: Item id.
        persona: Persona slot among the user's personas (0 when the source has a single taste).
        persona_label: Readable label from the persona's signature aspects ("jazz & melancholic").
        aspect: Aspect id, or -1 when the item has none.
        source: "policy", "ranker" or "fallback".
    """

    item: int
    persona: int
    persona_label: str
    aspect: int
    source: str

    def text(self, catalog: Catalog) -> str:
        """'for your <persona label> side, because of <aspect>'."""
        reason = catalog.aspect_names[self.aspect] if self.aspect >= 0 else "how well it fits you"
        return f"for your {self.persona_label} side, because of {reason}"

    def to_json(self, catalog: Catalog) -> dict[str, Any]:
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


class Explainer:
    """Explanations for recommended items, from the best source available.

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
        """One explanation per item of `items`, in order."""
        items = [int(i) for i in items]
        facts = env.state.facts()
        for source, name, argument in (
            (self.policy, "policy", env),
            (self.ranker, "ranker", facts),
        ):
            method = getattr(source, "explain", None) if source is not None else None
            if not callable(method):
                continue
            pairs = list(method(argument, np.asarray(items, dtype=np.int64)))
            if len(pairs) != len(items):
                raise ChatError(f"{name} explain() returned {len(pairs)} pairs for {len(items)} items")
            return [
                Explanation(item, int(k), self.persona_label(facts, int(k)), int(a), name)
                for item, (k, a) in zip(items, pairs, strict=True)
            ]
        return self._fallback(env, facts, items)

    def _fallback(self, env: ConversationEnv, facts: DialogueFacts, items: list[int]) -> list[Explanation]:
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
        """Readable label of persona slot `k` of the dialogue's user, e.g. "jazz & melancholic"."""
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


# ------------------------------------------------------------------------------------- the reader
class ChatEndedError(Exception):
    """The person ended the conversation (quit, end of input, Ctrl-C)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UndoRequestedError(Exception):
    """The person asked to undo the last answer."""


Reader = Callable[[str], str]
"""Reads one line after showing a prompt; raises EOFError at the end of input."""


def terminal_reader(console: Console) -> Reader:
    """Read lines from standard input: with line editing on a terminal; from a pipe, line by line,
    echoing each line so the printed dialogue reads as a conversation."""

    def read(prompt: str) -> str:
        if sys.stdin.isatty():
            try:
                return console.input(prompt)
            except (EOFError, KeyboardInterrupt):
                console.print()  # end the prompt's line before the summary
                raise
        console.print(prompt, end="")
        line = sys.stdin.readline()
        if line == "":
            console.print()
            raise EOFError
        line = line.rstrip("\r\n")
        console.print(escape(line), style="dim", highlight=False)
        return line

    return read


def _normal(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


# -------------------------------------------------------------------------------------- the chat
@dataclass
class ChatResult:
    """What a chat produced.

    Attributes:
        transcript: The whole dialogue as JSON-ready data (see `ChatSession.transcript`).
        ended: "accepted", "turn limit", "no candidates", "user left", "quit", "end of input" or
            "interrupted".
        info: The env's info of the last step (None when no step was taken).
        act_seconds: Seconds each agent turn spent in `policy.act`, reading the action and
            explaining a slate.
        turn_seconds: Watch mode: seconds of each whole agent turn (the above, ``env.step`` and
            rendering the turn).
        warm_up_seconds: Seconds the ranker took to build its per-user caches before the first turn.
    """

    transcript: dict[str, Any]
    ended: str
    info: dict[str, Any] | None
    act_seconds: list[float] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    warm_up_seconds: float = 0.0


def _accepted(info: dict[str, Any]) -> int | None:
    """The item the user took in a step's `info` (whose ``accepted_item`` is -1 for none), else None."""
    return int(info["accepted_item"]) if info.get("success") else None


class ChatSession:
    """One conversation shown in the terminal, answered by a person or by the env's simulated user.

    Args:
        env: The env; its user model is a `HumanUser` (a person answers) or a simulated user
            (watch mode).
        policy: The dialogue policy.
        goal_index: Goal of the env's split the conversation is about (its user; in watch mode also
            its hidden target).
        seed: The conversation's seed (env, goal sampler and policy draw from it).
        console: Where the dialogue is shown.
        read: Reads the person's lines (`terminal_reader` by default).
        ranker: The policy's preference ranker (explanations), or None.
        meta: Facts written at the top of the transcript (dataset, policy, ranker, ...).
    """

    def __init__(
        self,
        env: ConversationEnv,
        policy: ConversationPolicy,
        *,
        goal_index: int,
        seed: int,
        console: Console,
        read: Reader | None = None,
        ranker: PreferenceRanker | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.env = env
        self.catalog = env.catalog
        self.policy = policy
        self.goal_index = int(goal_index)
        self.seed = int(seed)
        self.console = console
        self.read = read or terminal_reader(console)
        self.ranker = ranker
        self.explainer = Explainer(env.catalog, policy, ranker)
        self.meta = dict(meta or {})
        self.human = env.user if isinstance(env.user, HumanUser) else None
        self.turns: list[dict[str, Any]] = []
        self.info: dict[str, Any] | None = None
        self.total_reward = 0.0
        self.kinds: list[str] = []
        self.act_seconds: list[float] = []
        self.turn_seconds: list[float] = []
        self.warm_up_seconds = 0.0
        self._suggestions: list[int] = []
        self._popular = np.argsort(-np.diff(self.catalog.aspect_items.indptr), kind="stable")

    @property
    def user(self) -> int:
        """User id of the conversation."""
        return int(self.env.goals.interactions.users[self.goal_index])

    # --------------------------------------------------------------------------------- running
    def run(self) -> ChatResult:
        """Hold the conversation to its end (or until the person leaves) and show a summary."""
        ended = ""
        self._warm_up()
        try:
            if self.human is None:
                self._watch()
            else:
                self._converse()
        except ChatEndedError as end:
            ended = end.reason
        except KeyboardInterrupt:
            ended = "interrupted"
        if not ended:
            ended = self._outcome()
        transcript = self.transcript(ended)
        self._summary(transcript)
        return ChatResult(
            transcript=transcript,
            ended=ended,
            info=self.info,
            act_seconds=self.act_seconds,
            turn_seconds=self.turn_seconds,
            warm_up_seconds=self.warm_up_seconds,
        )

    def _warm_up(self) -> None:
        """Let the ranker build its per-user caches now (while the person reads the introduction)
        rather than in the first turn: one item score for the user, no dialogue facts."""
        if self.ranker is None:
            return
        started = time.perf_counter()
        empty = np.zeros(0, dtype=np.int64)
        self.ranker.item_scores(DialogueFacts(self.user, empty, empty, empty), np.zeros(1, dtype=np.int64))
        self.warm_up_seconds = time.perf_counter() - started

    def _restart(self, answers: list[PersonAnswer]) -> None:
        """Reset the env with the person's opening and replay `answers[1:]` (truncating `answers`
        where the policy now acts differently)."""
        assert self.human is not None
        self.human.tell(answers[0])
        self._reset()
        for position, reply in enumerate(answers[1:], start=1):
            action = self.policy.act(self.env)
            question = read_question(self.env, action)
            if question.key != reply.question:
                del answers[position:]
                self.console.print("[yellow]The recommender now asks something else; answer from here.[/]")
                return
            explanations = (
                self.explainer.explain(self.env, question.parsed.items) if question.is_recommend else []
            )
            self.human.tell(reply)
            self._step(action, question, explanations, reply.said)

    def _reset(self) -> None:
        self.turns, self.info, self.total_reward, self.kinds = [], None, 0.0, []
        _, info = self.env.reset(seed=self.seed, options={"goal_index": self.goal_index})
        self.policy.reset(np.random.default_rng(self.seed))
        opening = int(info["answer"][0])
        self.turns.append(
            {
                "turn": 1,
                "kind": "open",
                "action": None,
                "answer": {"said": "open", "accepted": [opening], "accepted_names": [self._aspect(opening)]},
                "candidates_left": int(info["n_candidates"]),
                "explanation": None,
            }
        )

    def _next(self) -> tuple[dict[str, Any], Question, list[Explanation]]:
        started = time.perf_counter()
        action = self.policy.act(self.env)
        question = read_question(self.env, action)
        explanations = (
            self.explainer.explain(self.env, question.parsed.items) if question.is_recommend else []
        )
        self.act_seconds.append(time.perf_counter() - started)
        return action, question, explanations

    def _converse(self) -> None:
        assert self.human is not None
        answers: list[PersonAnswer] = []
        self._intro()
        while True:
            if not answers:
                answers.append(self._ask_opening())
                self._restart(answers)
                self.console.print(
                    f"[dim]{self._count(self.env.state.n_candidates, 'has', 'have')} "
                    f"{escape(self._aspect(answers[0].aspects[0]))}.[/]"
                )
                continue
            if self.env.done:
                return
            action, question, explanations = self._next()
            self._show(question, explanations)
            try:
                reply = self._ask(question)
            except _UndoRequestedError:
                undone = answers.pop()
                if answers:
                    self._restart(answers)
                    self.console.print(
                        f"[yellow]Undone ({undone.said}). Back at turn {self.env.state.turn + 1}.[/]"
                    )
                else:
                    self.console.print("[yellow]Undone your opening. Start again:[/]")
                continue
            answers.append(reply)
            self.human.tell(reply)
            self._step(action, question, explanations, reply.said)
            self._after(question)

    def _watch(self) -> None:
        self._reset()
        self.console.print(
            Panel(
                f"Watching user {self.user} of {escape(self.catalog.name)} (simulated) talk to "
                f"{escape(str(self.meta.get('policy', 'the policy')))}. Its target is hidden until the end.",
                title="crs chat --simulate",
                expand=False,
            )
        )
        opening = self.turns[0]["answer"]["accepted"][0]
        self.console.print(
            f"[bold]User:[/] I'd like something with [bold]{escape(self._aspect(opening))}[/]."
        )
        self.console.print(f"[dim]{self._count(self.env.state.n_candidates, 'has', 'have')} it.[/]")
        while not self.env.done:
            started = time.perf_counter()
            action, question, explanations = self._next()
            self._show(question, explanations)
            info = self._step(action, question, explanations, None)
            self._say_simulated(question, info)
            self._after(question)
            self.turn_seconds.append(time.perf_counter() - started)

    # --------------------------------------------------------------------------------- one turn
    def _step(
        self, action: dict[str, Any], question: Question, explanations: list[Explanation], said: str | None
    ) -> dict[str, Any]:
        _, reward, _, _, info = self.env.step(action)
        self.info = info
        self.total_reward += reward
        self.kinds.append(info["kind"])
        parsed = question.parsed
        accepted = [int(a) for a in info["answer"]]
        if said is None:  # simulated
            if question.is_recommend:
                said = "accept" if _accepted(info) is not None else "reject"
            elif question.is_binary:
                said = "yes" if accepted else "no"
            else:
                said = "choose"
        answer: dict[str, Any] = {"said": said}
        if question.is_recommend:
            item = _accepted(info)
            answer.update(
                accepted_item=item,
                accepted_item_name=self.catalog.item_names[item] if item is not None else None,
                rank=info["rank"] or None,
            )
        else:
            rejected = [int(a) for a in info["rejected"]]
            answer.update(
                accepted=accepted,
                accepted_names=[self._aspect(a) for a in accepted],
                rejected=rejected,
            )
        action_json: dict[str, Any] = {"kind": question.kind}
        if question.is_recommend:
            action_json.update(
                items=list(parsed.items), item_names=[self.catalog.item_names[i] for i in parsed.items]
            )
        else:
            action_json.update(
                aspects=list(question.options), aspect_names=[self._aspect(a) for a in question.options]
            )
            if question.category is not None:
                taxonomy = self.catalog.taxonomy
                assert taxonomy is not None
                action_json.update(
                    category=question.category, category_name=taxonomy.parent_names[question.category]
                )
            if parsed.persona is not None:
                action_json.update(
                    persona=parsed.persona,
                    persona_label=self.explainer.persona_label(self.env.state.facts(), parsed.persona),
                )
        self.turns.append(
            {
                "turn": int(info["turn"]),
                "kind": question.kind,
                "action": action_json,
                "answer": answer,
                "candidates_left": int(info["n_candidates"]),
                "explanation": [e.to_json(self.catalog) for e in explanations]
                if question.is_recommend
                else None,
                "reward": round(float(reward), 6),
            }
        )
        return info

    def _after(self, question: Question) -> None:
        if self.env.done or (question.is_recommend and self.info and self.info["success"]):
            return
        self.console.print(f"[dim]{self._count(self.env.state.n_candidates)} left.[/]")

    # ------------------------------------------------------------------------------ showing
    def _noun(self, singular: bool = False) -> str:
        one, many = {"lastfm": ("artist", "artists"), "lastfm_star": ("artist", "artists")}.get(
            self.catalog.name,
            ("business", "businesses") if self.catalog.name == "yelp_star" else ("item", "items"),
        )
        return one if singular else many

    def _count(self, n: int, one: str = "", many: str = "") -> str:
        """'1 item has' / '5 items have' (the verb only when given)."""
        verb = (one if n == 1 else many) if one or many else ""
        return f"{n} {self._noun(singular=n == 1)}" + (f" {verb}" if verb else "")

    def _aspect(self, aspect: int) -> str:
        return self.catalog.aspect_names[int(aspect)]

    def _intro(self) -> None:
        history = self.explainer.history(self.user)
        liked = ", ".join(escape(self.catalog.item_names[int(i)]) for i in history[:5])
        more = f" and {history.size - 5} more" if history.size > 5 else ""
        lines = [
            f"You play user [bold]{self.user}[/] of [bold]{escape(self.catalog.name)}[/]; the recommender "
            f"([bold]{escape(str(self.meta.get('policy', 'policy')))}[/]) knows their history"
            + (f": {liked}{more}." if liked else "."),
            f"It may take {self.env.max_turns - 1} turns. Commands at any prompt: "
            "[bold]help[/], [bold]back[/] (undo your last answer), [bold]quit[/].",
        ]
        self.console.print(Panel("\n".join(lines), title="crs chat", expand=False))

    def _turn_header(self) -> None:
        state = self.env.state
        self.console.rule(f"turn {state.turn + 1} of {self.env.max_turns}", style="dim")

    def _show(self, question: Question, explanations: list[Explanation]) -> None:
        self._turn_header()
        who = "[bold cyan]Recommender:[/]"
        parsed = question.parsed
        if question.is_recommend:
            self.console.print(f"{who} How about {'this one' if len(parsed.items) == 1 else 'one of these'}?")
            self.console.print(self._slate_table(parsed.items, explanations))
            return
        if question.is_binary:
            aspect = question.options[0]
            left = self._count(self.env.state.n_candidates)
            share = f"{candidates_after(self.env, [aspect])} of the {left} left"
            self.console.print(
                f"{who} Do you want [bold]{escape(self._aspect(aspect))}[/]? [dim]({share})[/]"
            )
            return
        if question.category is not None:
            taxonomy = self.catalog.taxonomy
            assert taxonomy is not None
            topic = escape(taxonomy.parent_names[question.category])
            self.console.print(f"{who} About [bold]{topic}[/]: which of these fits you today?")
        else:
            side = ""
            if parsed.kind is ActionKind.PROBE and parsed.persona is not None and self.explainer.has_personas:
                label = self.explainer.persona_label(self.env.state.facts(), parsed.persona)
                side = f" [dim](asking about your {escape(label)} side)[/]"
            self.console.print(f"{who} Which of these fits you today?{side}")
        self._numbered(question.options, OPTIONS_SHOWN)
        notes = []
        if len(question.options) > OPTIONS_SHOWN:
            notes.append(
                f"{len(question.options) - OPTIONS_SHOWN} rarer ones not shown: "
                "type [bold]more[/] to list all"
            )
        if question.hidden:
            notes.append(f"{question.hidden} left out that no remaining {self._noun(singular=True)} has")
        if notes:
            self.console.print(f"[dim]({'; '.join(notes)})[/]")

    def _numbered(self, aspects: Sequence[int], limit: int | None = None, counts: bool = False) -> None:
        """Print `aspects` numbered from 1, in columns; only the first `limit` when given; with
        `counts`, each with the number of items having it."""
        shown = aspects if limit is None else aspects[:limit]
        cells = [
            f"[bold]{n:>3}[/] {escape(self._aspect(a))}"
            + (f" [dim]({int(self.explainer.aspect_frequency[a])})[/]" if counts else "")
            for n, a in enumerate(shown, start=1)
        ]
        if len(cells) <= 6:
            for cell in cells:
                self.console.print(cell)
            return
        table = Table.grid(padding=(0, 3))
        columns = 3 if len(cells) > 12 else 2
        for _ in range(columns):
            table.add_column()
        rows = -(-len(cells) // columns)
        for r in range(rows):
            table.add_row(*(cells[c * rows + r] if c * rows + r < len(cells) else "" for c in range(columns)))
        self.console.print(table)

    def _tags(self, item: int, said: set[int]) -> str:
        """A few of the item's aspects that the dialogue has not settled (every candidate has the
        accepted ones), best known first, e.g. "soul, trumpet, calm +3" (plain text)."""
        own = self.catalog.aspects_of(item)
        open_ = own[~np.isin(own, np.fromiter(said, dtype=np.int64, count=len(said)))]
        order = open_[np.argsort(-self.explainer.aspect_frequency[open_], kind="stable")]
        chosen = [self._aspect(int(a)) for a in order[:TAGS_SHOWN]]
        extra = order.size - len(chosen)
        return ", ".join(chosen) + (f" +{extra}" if extra > 0 else "")

    def _slate_table(self, items: Sequence[int], explanations: list[Explanation]) -> Table:
        """The slate as a table: number, name (and a few other tags), explanation. Cells are built
        as `Text` (no markup parsing: it halves the time rich needs for the table)."""
        facts = self.env.state.facts()
        said = set(facts.accepted.tolist()) | set(facts.rejected.tolist())
        table = Table(show_edge=False, pad_edge=False, expand=False)
        table.add_column("#", justify="right", style="bold", no_wrap=True)
        table.add_column(Text.assemble(self._noun(singular=True), (" (other tags)", "dim")))
        table.add_column("why")
        for n, (item, why) in enumerate(zip(items, explanations, strict=True), start=1):
            reason = self._aspect(why.aspect) if why.aspect >= 0 else "how well it fits you"
            tags = self._tags(item, said)
            name = Text(self.catalog.item_names[item], style="bold")
            if tags:
                name.append("\n" + tags, style="dim")
            text = Text.assemble(
                "for your ", (why.persona_label, "italic"), " side, because of ", (reason, "bold")
            )
            table.add_row(str(n), name, text)
        return table

    def _say_simulated(self, question: Question, info: dict[str, Any]) -> None:
        user = "[bold]User:[/]"
        if question.is_recommend:
            item = _accepted(info)
            if item is None:
                self.console.print(f"{user} None of these.")
            else:
                name = escape(self.catalog.item_names[item])
                self.console.print(f"{user} I'll take #{info['rank']}, [bold green]{name}[/]!")
            return
        accepted = [self._aspect(a) for a in info["answer"]]
        if question.is_binary:
            self.console.print(f"{user} {'Yes.' if accepted else 'No.'}")
        else:
            said = ", ".join(escape(a) for a in accepted) if accepted else "none of these"
            self.console.print(f"{user} {said}.")

    # ---------------------------------------------------------------------------- reading
    def _line(self, prompt: str) -> str:
        """One line from the person; handles quit/help/back. Returns the stripped line."""
        try:
            line = self.read(prompt)
        except EOFError:
            raise ChatEndedError("end of input") from None
        text = line.strip()
        word = text.casefold()
        if word in QUIT_WORDS:
            raise ChatEndedError("quit")
        if word in BACK_WORDS:
            raise _UndoRequestedError
        return text

    def _hint(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/]", highlight=False)

    def _help(self, what: str) -> None:
        self.console.print(
            Panel(
                f"{what}\n[bold]back[/]: undo your last answer   [bold]quit[/]: end the conversation   "
                "[bold]help[/]: this text\nCtrl-D (end of input) or Ctrl-C also end it, with a summary.",
                title="help",
                expand=False,
            )
        )

    def _ask_opening(self) -> PersonAnswer:
        profile = self.explainer.profile(self.user).tolist()
        popular = [int(a) for a in self._popular[: SUGGESTIONS * 2]]
        suggested = list(dict.fromkeys(profile[: SUGGESTIONS // 2] + popular))[:SUGGESTIONS]
        self._suggestions = suggested
        what = (
            "Type the name of something you like (an aspect: a genre, mood, tag ...; close spellings are "
            "fine) or the number of a suggestion."
        )
        self.console.print(
            f"[bold cyan]Recommender:[/] Tell me one thing you like. Some ideas ({self._noun()} in brackets):"
        )
        self._numbered(suggested, counts=True)
        while True:
            try:
                text = self._line("[bold]you>[/] ")
            except _UndoRequestedError:
                self._hint("Nothing to undo yet: tell me one thing you like.")
                continue
            if text.casefold() in HELP_WORDS:
                self._help(what)
                continue
            if not text:
                self._hint(
                    "Type a name (e.g. " + escape(self._aspect(suggested[0])) + ") or a number from the list."
                )
                continue
            aspect = self._match_aspect(text)
            if aspect is not None:
                return PersonAnswer(question=None, said="open", aspects=(aspect,))

    def _match_aspect(self, text: str) -> int | None:
        """The aspect `text` names (a suggestion number, a name, a close spelling), or None after
        showing what the person may have meant."""
        if text.isdigit():
            number = int(text)
            if 1 <= number <= len(self._suggestions):
                return self._suggestions[number - 1]
            self._hint(f"{number} is not on the list; pick 1-{len(self._suggestions)} or type a name.")
            return None
        names = self.catalog.aspect_names
        key = _normal(text)
        if not key:
            self._hint("Type a name made of letters or digits, or a number from the list.")
            return None
        normal = [_normal(name) for name in names]
        same = [a for a, name in enumerate(normal) if name == key]
        if len(same) == 1:
            return same[0]
        same.sort(key=lambda a: -self.explainer.aspect_frequency[a])
        close = difflib.get_close_matches(key, normal, n=8, cutoff=0.75)
        matches = list(dict.fromkeys(same + [a for c in close for a, name in enumerate(normal) if name == c]))
        if len(key) >= 3:
            contains = [a for a, name in enumerate(normal) if key in name and a not in matches]
            contains.sort(key=lambda a: -self.explainer.aspect_frequency[a])
            matches += contains
        matches = matches[:SUGGESTIONS]
        if len(matches) == 1 and not same:
            self.console.print(f"[dim](taking {escape(names[matches[0]])})[/]")
            return matches[0]
        if not matches:
            self._hint(f"I know nothing called {escape(text)!r}; try another word or a number from the list.")
            return None
        self.console.print(f"Did you mean one of these? (type its number; {self._noun()} in brackets)")
        self._suggestions = matches
        self._numbered(matches, counts=True)
        return None

    def _ask(self, question: Question) -> PersonAnswer:
        if question.is_recommend:
            return self._ask_slate(question)
        if question.is_binary:
            return self._ask_binary(question)
        return self._ask_choice(question)

    def _ask_binary(self, question: Question) -> PersonAnswer:
        aspect = question.options[0]
        what = (
            f"Answer [bold]y[/] if you want {escape(self._aspect(aspect))}, [bold]n[/] if not, [bold]skip[/] "
            "if you don't mind (the recommender then counts it as a no, but keeps those items)."
        )
        while True:
            text = self._line("[bold]you>[/] [dim](y/n/skip)[/] ").casefold()
            if text in YES_WORDS:
                return PersonAnswer(question.key, "yes", (aspect,))
            if text in NO_WORDS:
                return PersonAnswer(question.key, "no")
            if text in SKIP_WORDS:
                return PersonAnswer(question.key, "skip")
            if text in HELP_WORDS:
                self._help(what)
                continue
            self._hint("Type y, n or skip (or help, back, quit).")

    def _ask_choice(self, question: Question) -> PersonAnswer:
        options = question.options
        what = (
            "Type the numbers of every option that fits (e.g. [bold]1 3[/]), each between 1 and "
            f"{len(options)}, or [bold]none[/]."
        )
        while True:
            text = self._line("[bold]you>[/] [dim](numbers, or none)[/] ")
            word = text.casefold()
            if word in HELP_WORDS:
                self._help(what)
                continue
            if word in NONE_WORDS:
                return PersonAnswer(question.key, "none")
            if word in MORE_WORDS:
                self._numbered(options)
                continue
            if word == "all":
                text = " ".join(str(n) for n in range(1, len(options) + 1))
            parts = [p for p in re.split(r"[\s,;]+", text) if p]
            if not parts or not all(p.isdigit() for p in parts):
                self._hint(f"Type numbers between 1 and {len(options)} (e.g. 1 3), or none.")
                continue
            numbers = sorted({int(p) for p in parts})
            bad = [n for n in numbers if not 1 <= n <= len(options)]
            if bad:
                self._hint(
                    f"{', '.join(map(str, bad))}: not on the list; use numbers between 1 and {len(options)}."
                )
                continue
            chosen = tuple(options[n - 1] for n in numbers)
            if candidates_after(self.env, chosen) == 0:
                self._hint(
                    f"No remaining {self._noun(singular=True)} has all of "
                    f"{', '.join(escape(self._aspect(a)) for a in chosen)}; pick fewer."
                )
                continue
            return PersonAnswer(question.key, "choose", tuple(sorted(chosen)))

    def _ask_slate(self, question: Question) -> PersonAnswer:
        items = question.parsed.items
        what = f"Type the number (1-{len(items)}) of the one you'd take, or [bold]n[/] to reject them all."
        while True:
            choices = "1 to take it" if len(items) == 1 else f"1-{len(items)} to take one"
            text = self._line(f"[bold]you>[/] [dim]({choices}, n for none)[/] ").casefold()
            if text in HELP_WORDS:
                self._help(what)
                continue
            if text in REJECT_WORDS:
                return PersonAnswer(question.key, "reject")
            if text.lstrip("#").isdigit() and 1 <= int(text.lstrip("#")) <= len(items):
                return PersonAnswer(question.key, "accept", item=int(items[int(text.lstrip("#")) - 1]))
            self._hint(f"Type a number between 1 and {len(items)}, or n to reject them all.")

    # ------------------------------------------------------------------------------- the end
    def _outcome(self) -> str:
        info = self.info
        if info is None:
            return "quit"
        if info["success"]:
            return "accepted"
        if self.env.state.n_candidates == 0:
            return "no candidates"
        if self.env.state.turn >= self.env.max_turns:
            return "turn limit"
        return "user left"

    def _episode(self) -> EpisodeRecord | None:
        info = self.info
        if info is None or not self.env.done:
            return None
        return EpisodeRecord(
            goal_index=int(info["goal_index"]),
            user=self.env.state.user,
            targets=tuple(int(t) for t in info.get("targets", ())),
            success=bool(info["success"]),
            agent_actions=int(info["agent_actions"]),
            rank=info["rank"] or None,
            total_reward=self.total_reward,
            kinds=tuple(self.kinds),
        )

    def transcript(self, ended: str) -> dict[str, Any]:
        """The dialogue as JSON-ready data.

        Keys: ``meta`` (dataset, policy, ranker, seed, mode, setting), ``user``, ``goal_index``,
        ``turns`` (each: ``turn``, ``kind``, ``action``, ``answer``, ``candidates_left``,
        ``explanation``), and ``outcome`` (``ended``, ``success``, ``accepted_item``, ``rank``,
        ``agent_actions``, ``metrics`` of the finished conversation, and in watch mode ``targets``).
        """
        record = self._episode()
        info = self.info or {}
        outcome: dict[str, Any] = {
            "ended": ended,
            "success": bool(info.get("success", False)),
            "accepted_item": _accepted(info),
            "accepted_item_name": (
                self.catalog.item_names[item] if (item := _accepted(info)) is not None else None
            ),
            "rank": info.get("rank") or None,
            "agent_actions": int(info.get("agent_actions", 0)),
            "total_reward": round(self.total_reward, 6),
            "metrics": None,
        }
        if record is not None:
            metrics = per_episode_metrics([record], self.env.max_turns)
            outcome["metrics"] = {name: float(values[0]) for name, values in metrics.items()}
        if self.human is None and record is not None:
            outcome["targets"] = list(record.targets)
            outcome["target_names"] = [self.catalog.item_names[t] for t in record.targets]
            persona = getattr(self.env.user, "active_persona_id", None)
            truth = self.catalog.truth
            if persona is not None and truth is not None:
                outcome["active_persona"] = truth.persona_names[int(persona)]
        setting = "enumerated" if self.env.enumerated else self.env.question_mode
        return {
            "meta": {
                **self.meta,
                "seed": self.seed,
                "mode": "human" if self.human else "simulate",
                "setting": setting,
            },
            "user": self.user,
            "goal_index": self.goal_index,
            "turns": self.turns,
            "outcome": outcome,
        }

    def _summary(self, transcript: dict[str, Any]) -> None:
        outcome = transcript["outcome"]
        ended = outcome["ended"]
        lines: list[str] = []
        subject = "You" if self.human else "The user"
        if ended == "accepted":
            lines.append(
                f"{subject} took [bold green]{escape(outcome['accepted_item_name'])}[/] "
                f"(rank {outcome['rank']}) after {outcome['agent_actions']} recommender turns."
            )
        elif ended == "turn limit":
            lines.append(f"No item was taken within {self.env.max_turns} turns.")
        elif ended == "no candidates":
            lines.append(f"No {self._noun(singular=True)} is left that fits everything that was said.")
        elif ended == "user left":
            lines.append("The user ran out of patience and left.")
        else:
            lines.append(
                f"Conversation ended ({ended}) after {max(len(self.turns) - 1, 0)} recommender turns."
            )
        if "targets" in outcome:
            names = ", ".join(escape(n) for n in outcome["target_names"])
            lines.append(f"Hidden target: [bold]{names}[/] (item {', '.join(map(str, outcome['targets']))}).")
            if "active_persona" in outcome:
                lines.append(f"Active persona: [bold]{escape(outcome['active_persona'])}[/].")
        metrics = outcome["metrics"]
        if metrics is not None:
            lines.append(
                f"SR@15 {metrics['SR@15']:.0f}   turns (AT) {metrics['AT']:.0f}   hDCG {metrics['hDCG']:.3f}"
            )
        self.console.print(Panel("\n".join(lines), title="summary", expand=False))


# ----------------------------------------------------------------------------------- entry point
def choose_goal(env: ConversationEnv, seed: int, user_id: int | None = None) -> int:
    """The goal of a chat: the first conversation `crs eval --seed seed` would hold, or with
    `user_id` the first (in that same seeded order) whose user is `user_id`."""
    n = env.goals.n_goals
    if user_id is None:
        return int(evaluation_indices(n, 1, seed)[0])
    users = env.goals.interactions.users
    if not 0 <= user_id < env.catalog.n_users:
        raise ChatError(f"--user-id {user_id} outside [0, {env.catalog.n_users}) of {env.catalog.name}")
    order = evaluation_indices(n, n, seed)
    mine = order[users[order] == user_id]
    if mine.size == 0:
        raise ChatError(
            f"user {user_id} has no conversation in the {env.goals.split_name!r} split of "
            f"{env.catalog.name}; "
            f"pick another --user-id (e.g. {int(users[order[0]])}) or leave it out"
        )
    return int(mine[0])


def check_transcript_path(path: Path, *, overwrite: bool = False) -> None:
    """Refuse a transcript path before the chat starts rather than after it: an existing file
    (unless `overwrite`), a folder, or a path below a file.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False.
        CRSError: `path` is a folder.
        ChatError: A parent of `path` is a file.
    """
    claim_new_file(path, "transcript", overwrite=overwrite)
    parent = path.parent
    while not parent.exists():  # the filesystem root always exists
        parent = parent.parent
    if not parent.is_dir():
        raise ChatError(f"could not write the transcript to {path} ({parent} is a file); pick another path")


def _free_path(path: Path) -> Path:
    """`path` with the first ``-N`` suffix (chat-1.json, chat-2.json, ...) that names no file yet."""
    number = 1
    while (candidate := path.with_name(f"{path.stem}-{number}{path.suffix}")).exists():
        number += 1
    return candidate


def run_chat(
    env: ConversationEnv,
    policy: ConversationPolicy,
    *,
    seed: int,
    console: Console,
    simulate: bool = False,
    user_id: int | None = None,
    goal_index: int | None = None,
    ranker: PreferenceRanker | None = None,
    read: Reader | None = None,
    transcript: Path | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ChatResult:
    """Hold one conversation between `policy` and a person (or, with `simulate`, `env`'s simulated
    user), and write its transcript.

    Args:
        env: An env with a simulated user (from `envs.make_env`); for a person its setting is
            copied with a `HumanUser` (see `human_env`).
        policy: The dialogue policy.
        seed: Seed of the conversation: the goal (as `crs eval --seed` orders them), env and policy.
        console: Where the dialogue is shown.
        simulate: Watch the simulated user instead of playing it.
        user_id: Play (or watch) this user; default: the seed's first evaluation conversation.
        goal_index: Hold conversation `goal_index` of the split (overrides `user_id`); it is seeded
            as `crs eval --seed seed` seeds it.
        ranker: The policy's preference ranker, for explanations (default: ``policy.ranker``).
        read: Line reader (default: standard input).
        transcript: Where to write the JSON transcript, or None. It is checked before the chat
            starts (see `check_transcript_path`); a file another process creates there meanwhile is
            kept, and the transcript goes to a free ``-N`` name beside it (with a warning).
        meta: Facts recorded at the top of the transcript.
        overwrite: Replace an existing transcript file.

    Raises:
        ChatError: The user or goal cannot be chosen, or the transcript cannot be written.
        OutputExistsError: `transcript` exists and `overwrite` is False.
    """
    if transcript is not None:
        check_transcript_path(transcript, overwrite=overwrite)
    if goal_index is None:
        goal_index = choose_goal(env, seed, user_id)
    chat_env = env if simulate else human_env(env)
    if ranker is None:
        ranker = getattr(policy, "ranker", None)
    session = ChatSession(
        chat_env,
        policy,
        goal_index=goal_index,
        seed=episode_seed(seed, goal_index),
        console=console,
        read=read,
        ranker=ranker,
        meta=meta,
    )
    result = session.run()
    if transcript is not None:
        target = transcript
        if not overwrite and target.exists():  # created by someone else while the chat went on
            target = _free_path(transcript)
            console.print(
                f"[yellow]warning:[/] {escape(str(transcript))} appeared during the chat; it is kept and "
                f"this transcript goes to {escape(str(target))}"
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(target, result.transcript)
        except OSError as error:
            raise ChatError(
                f"could not write the transcript to {target} ({error}); pick another path"
            ) from None
        console.print(f"[dim]transcript written to {escape(str(target))}[/]")
    return result
