"""One conversation: its state, stepping the env, `back` (undo) and the `run_chat` entry point.

For a person, each turn first asks the policy for its action (the env is not touched), shows the
question, reads the reply, tells it to the `HumanUser` and only then steps the env, which asks the
`HumanUser` and gets the reply back. In watch mode the env's simulated user answers.

`back` undoes the last answer by replaying the conversation from its start with the same seed and
the person's earlier answers: env, goal sampler and policy draw all randomness from that seed, so
the replay reaches the same state (when a policy nevertheless acts differently, the replay stops
there and the person answers from that turn on).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from crs.chat.errors import ChatEndedError, ChatError, UndoRequestedError
from crs.chat.memory import ChatMemory, MemoryChange
from crs.chat.person import HumanUser, PersonAnswer, human_env
from crs.chat.question import Question, read_question
from crs.chat.replies import (
    NOT_TEXT,
    SUGGESTIONS,
    Hint,
    OpeningPrompt,
    Prompt,
    Reader,
    ShowOptions,
    Take,
    prompt_for,
    read_line,
    terminal_reader,
)
from crs.chat.signals import EndSignals, SignalEndError
from crs.chat.transcript import (
    agent_turn,
    check_transcript_path,
    free_path,
    opening_turn,
    outcome_record,
    pending_turn,
    simulated_said,
    write_transcript,
)
from crs.chat.view import ChatView
from crs.explain import Explainer, Explanation
from envs.env import ConversationEnv
from envs.ranker import DialogueFacts, PreferenceRanker
from envs.rollout import ConversationPolicy, episode_seed, evaluation_indices
from policies.memory_file import MemoryFileError


@dataclass
class ChatResult:
    """What a chat produced.

    Attributes:
        transcript: The whole dialogue as JSON-ready data (see `crs.chat.transcript`).
        ended: "accepted", "turn limit", "no candidates", "user left", "quit", "end of input",
            "interrupted" (Ctrl-C), "hung up" (SIGHUP: the terminal closed) or "terminated" (SIGTERM).
        info: The env's info of the last step (None when no step was taken).
        act_seconds: Seconds each agent turn spent in `policy.act`, reading the action and
            explaining a slate.
        turn_seconds: Watch mode: seconds of each whole agent turn (the above, ``env.step`` and
            rendering the turn).
        warm_up_seconds: Seconds the ranker took to build its per-user caches before the first turn.
        memory: What the chat did to the person's memory file (``--memory``), or None (no memory, or
            the chat ended before the person said anything).
    """

    transcript: dict[str, Any]
    ended: str
    info: dict[str, Any] | None
    act_seconds: list[float] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    warm_up_seconds: float = 0.0
    memory: MemoryChange | None = None


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
        personal_commands: Commands that give personal recommendations, shown at the start when the
            ranking is by popularity (see `ChatView.intro`).
        memory: The person's persona memory (``--memory``): its belief is said before the first turn.
        signals: The signal handlers in force (`run_chat`'s): told when the dialogue ends, so that
            later signals wait until the memory and the transcript are written.
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
        personal_commands: Sequence[str] = (),
        memory: ChatMemory | None = None,
        signals: EndSignals | None = None,
    ) -> None:
        self.env = env
        self.catalog = env.catalog
        self.policy = policy
        self.goal_index = int(goal_index)
        self.seed = int(seed)
        self.read = read or terminal_reader(console)
        self.ranker = ranker
        self.explainer = Explainer(env.catalog, policy, ranker)
        self.view = ChatView(console, env, self.explainer)
        self.meta = dict(meta or {})
        self.personal_commands = list(personal_commands)
        self.memory = memory
        self.signals = signals
        self.human = env.user if isinstance(env.user, HumanUser) else None
        self.turns: list[dict[str, Any]] = []
        self.pending: tuple[Question, list[Explanation]] | None = None
        """The question (or slate, with its explanations) shown and not answered yet."""
        self.info: dict[str, Any] | None = None
        self.total_reward = 0.0
        self.kinds: list[str] = []
        self.act_seconds: list[float] = []
        self.turn_seconds: list[float] = []
        self.warm_up_seconds = 0.0

    @property
    def user(self) -> int:
        """User id of the conversation."""
        return int(self.env.goals.interactions.users[self.goal_index])

    # --------------------------------------------------------------------------------- running
    def run(self) -> ChatResult:
        """Hold the conversation to its end (or until the person leaves, or a signal ends it) and show
        a summary (unless the terminal is gone)."""
        ended = ""
        try:
            try:
                self._warm_up()
                if self.human is None:
                    self._watch()
                else:
                    self._converse(self.human)
            finally:  # from here on, signals wait until the memory and the transcript are written
                if self.signals is not None:
                    self.signals.end()
        except ChatEndedError as end:
            ended = end.reason
        except SignalEndError as stop:
            ended = stop.reason
        except KeyboardInterrupt:
            ended = "interrupted"
        if not ended:
            ended = self._outcome()
        transcript = self.transcript(ended)
        # a closed terminal (SIGHUP) cannot show the summary; the transcript and memory are still saved
        with contextlib.suppress(OSError):
            self.view.summary(transcript)
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

    def _converse(self, human: HumanUser) -> None:
        """A person answers each turn until the conversation ends (or the person leaves)."""
        answers: list[PersonAnswer] = []
        self.view.intro(self.user, str(self.meta.get("policy", "policy")), self.personal_commands)
        if self.memory is not None:
            self.view.remembered(self.memory)
        while True:
            if not answers:
                answers.append(self._ask_opening())
                self._restart(human, answers)
                self.view.opened(answers[0].aspects[0])
                continue
            if self.env.done:
                return
            action, question, explanations = self._next()
            self.view.question(question, explanations)
            self.pending = (question, explanations)
            try:
                reply = self._ask(prompt_for(question, self.env, self.view.noun(singular=True)))
            except UndoRequestedError:
                undone = answers.pop()
                if answers:
                    self._restart(human, answers)
                    self.view.undone(undone.said)
                else:  # nothing said yet, as before the opening: nothing to record or remember
                    self.turns, self.info, self.total_reward, self.kinds = [], None, 0.0, []
                    self.pending = None
                    self.view.undone_opening()
                continue
            answers.append(reply)
            human.tell(reply)
            before = self.env.state.n_candidates
            self._step(action, question, explanations, reply.said)
            self.view.left(question, self.info, before, reply.said)

    def _watch(self) -> None:
        """The env's simulated user answers each turn until the conversation ends."""
        self._reset()
        opening = self.turns[0]["answer"]["accepted"][0]
        self.view.watch_intro(self.user, str(self.meta.get("policy", "the policy")))
        if self.memory is not None:
            self.view.remembered(self.memory, watched=True)
        self.view.watch_opening(opening)
        while not self.env.done:
            started = time.perf_counter()
            action, question, explanations = self._next()
            self.view.question(question, explanations)
            self.pending = (question, explanations)
            before = self.env.state.n_candidates
            info = self._step(action, question, explanations, None)
            self.view.simulated_reply(question, info)
            self.view.left(question, info, before, simulated_said(question, info))
            self.turn_seconds.append(time.perf_counter() - started)

    # --------------------------------------------------------------------------------- the env
    def _reset(self) -> None:
        """Start the conversation afresh from its seed; the user's opening is turn 1."""
        self.turns, self.info, self.total_reward, self.kinds = [], None, 0.0, []
        self.pending = None
        _, info = self.env.reset(seed=self.seed, options={"goal_index": self.goal_index})
        self.policy.reset(np.random.default_rng(self.seed))
        self.turns.append(opening_turn(self.catalog, int(info["answer"][0]), int(info["n_candidates"])))

    def _restart(self, human: HumanUser, answers: list[PersonAnswer]) -> None:
        """Reset the env with the person's opening and replay `answers[1:]` (truncating `answers`
        where the policy now acts differently)."""
        human.tell(answers[0])
        self._reset()
        for position, reply in enumerate(answers[1:], start=1):
            action = self.policy.act(self.env)
            question = read_question(self.env, action)
            if question.key != reply.question:
                del answers[position:]
                self.view.replay_diverged()
                return
            explanations = self._explain(question)
            human.tell(reply)
            self._step(action, question, explanations, reply.said)

    def _next(self) -> tuple[dict[str, Any], Question, list[Explanation]]:
        """The policy's next action, what it asks, and (a slate) its explanations; timed."""
        started = time.perf_counter()
        action = self.policy.act(self.env)
        question = read_question(self.env, action)
        explanations = self._explain(question)
        self.act_seconds.append(time.perf_counter() - started)
        return action, question, explanations

    def _explain(self, question: Question) -> list[Explanation]:
        return self.explainer.explain(self.env, question.parsed.items) if question.is_recommend else []

    def _step(
        self, action: dict[str, Any], question: Question, explanations: list[Explanation], said: str | None
    ) -> dict[str, Any]:
        """Step the env with `action` and record the turn (`said`: the person's answer, None for a
        simulated user's)."""
        _, reward, _, _, info = self.env.step(action)
        self.info = info
        self.total_reward += reward
        self.kinds.append(info["kind"])
        persona = question.parsed.persona
        label = None
        if not question.is_recommend and persona is not None and self.explainer.has_personas:
            label = self.explainer.persona_label(self.env.state.facts(), persona)
        simulated = said is None
        said = simulated_said(question, info) if said is None else said
        self.turns.append(agent_turn(self.catalog, question, info, reward, explanations, said, label))
        if simulated and not question.is_recommend:  # the simulated user's noise, told at the end
            self.turns[-1]["answer"]["slips"] = sorted(self.env.user.last_slips)
        self.pending = None
        return info

    def _pending_turn(self) -> dict[str, Any] | None:
        """The record of the question (or slate) shown and not answered, or None."""
        if self.pending is None:
            return None
        question, explanations = self.pending
        state = self.env.state
        persona = question.parsed.persona
        label = None
        if not question.is_recommend and persona is not None and self.explainer.has_personas:
            label = self.explainer.persona_label(state.facts(), persona)
        return pending_turn(self.catalog, question, explanations, state.turn + 1, state.n_candidates, label)

    # --------------------------------------------------------------------------------- reading
    def _ask_opening(self) -> PersonAnswer:
        """The person's opening: one thing they like (suggestions from their history and popular
        aspects; in the enumerated setting only aspects it can open with)."""
        openable = self._openable()
        profile = [a for a in self.explainer.profile(self.user).tolist() if openable[a]]
        order = np.argsort(-np.diff(self.catalog.aspect_items.indptr), kind="stable")
        popular = [int(a) for a in order if openable[a]]
        ideas = list(dict.fromkeys(profile[: SUGGESTIONS // 2] + popular[: SUGGESTIONS * 2]))
        ideas = ideas[:SUGGESTIONS]
        self.view.ask_opening(ideas)
        frequency = self.explainer.aspect_frequency
        return self._ask(OpeningPrompt(self.catalog, ideas, frequency, self.view.noun(), openable))

    def _openable(self) -> np.ndarray:
        """Which aspects the person may open with, boolean, shape (n_aspects,): all, except in the
        enumerated setting, whose opening names the aspect's category: there only aspects some
        category lists (Yelp* lists 73 of its aspects under none)."""
        taxonomy = self.catalog.taxonomy
        if not self.env.enumerated or taxonomy is None:
            return np.ones(self.catalog.n_aspects, dtype=np.bool_)
        return taxonomy.parent_of >= 0

    def _ask(self, prompt: Prompt) -> PersonAnswer:
        """Read lines until one answers `prompt`, showing hints, help and lists in between.

        Raises:
            ChatEndedError: The person left.
            UndoRequestedError: The person typed back (except at the opening, which has nothing to undo).
        """
        while True:
            try:
                text = read_line(self.read, prompt.prompt)
            except UndoRequestedError:
                if not prompt.undo_hint:
                    raise
                self.view.hint(prompt.undo_hint)
                continue
            if "\N{REPLACEMENT CHARACTER}" in text:  # bytes the input's encoding could not decode
                self.view.hint(NOT_TEXT)
                continue
            reply = prompt.parse(text)
            if isinstance(reply, Take):
                if reply.note:
                    self.view.note(reply.note)
                return reply.answer
            if isinstance(reply, Hint):
                self.view.hint(reply.text)
            elif isinstance(reply, ShowOptions):
                self.view.options(reply)
            else:
                self.view.help(prompt.help)

    # --------------------------------------------------------------------------------- the end
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

    def transcript(self, ended: str) -> dict[str, Any]:
        """The dialogue as JSON-ready data (the keys are listed in `crs.chat.transcript`)."""
        setting = self.env.setting
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
            "outcome": outcome_record(
                self.env,
                self.info,
                self.total_reward,
                self.kinds,
                ended,
                watched=self.human is None,
                pending=self._pending_turn(),
            ),
        }


# ----------------------------------------------------------------------------------- entry point
def choose_goal(env: ConversationEnv, seed: int, user_id: int | None = None) -> int:
    """The goal of a chat: the first conversation `crs eval --seed seed` would hold, or with
    `user_id` the first (in that same seeded order) whose user is `user_id`.

    Raises:
        ChatError: `user_id` is not a user of the catalogue, or has no conversation in the split.
    """
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
    personal_commands: Sequence[str] = (),
    memory: ChatMemory | None = None,
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
        personal_commands: Commands that give personal recommendations, shown at the start when
            `policy` ranks by popularity (e.g. pre-train a ranker, then chat with ``--ranker``).
        memory: The person's persona memory (``--memory``; `policy` must act with ``memory.ranker()``
            and `user_id` be ``memory.user``): its belief is said before the first turn; once the
            person has opened, the conversation's evidence moves it, the file is saved (after the
            transcript) and the change is shown, whatever the ending (accepted, quit, Ctrl-C).

    Run in the main thread, SIGHUP (the terminal closed) and SIGTERM end the dialogue as Ctrl-C does
    (`crs.chat.signals`), and once it has ended (a second Ctrl-C) signals are ignored until the
    memory and the transcript are written.

    Raises:
        ChatError: The user or goal cannot be chosen, or the transcript cannot be written.
        OutputExistsError: `transcript` exists and `overwrite` is False.
        MemoryFileError: The memory file cannot be written (the old one is kept).
    """
    if transcript is not None:
        check_transcript_path(transcript, overwrite=overwrite)
    if goal_index is None:
        goal_index = choose_goal(env, seed, user_id)
    with EndSignals() as signals:  # SIGHUP and SIGTERM end the dialogue as Ctrl-C does
        session = ChatSession(
            env if simulate else human_env(env),
            policy,
            goal_index=goal_index,
            seed=episode_seed(seed, goal_index),
            console=console,
            read=read,
            ranker=getattr(policy, "ranker", None) if ranker is None else ranker,
            meta={**(meta or {}), "chat_seed": seed},
            personal_commands=personal_commands,
            memory=memory,
            signals=signals,
        )
        result = session.run()
        _save(session, result, console, transcript=transcript, overwrite=overwrite, watched=simulate)
    return result


def _save(
    session: ChatSession,
    result: ChatResult,
    console: Console,
    *,
    transcript: Path | None,
    overwrite: bool,
    watched: bool,
) -> None:
    """Update and save the memory (``result.memory``), write the transcript, then say what was done.

    Raises:
        ChatError: The transcript cannot be written.
        MemoryFileError: The memory file cannot be written (raised once the transcript is written).
    """
    memory = session.memory
    unsaved: MemoryFileError | None = None
    if memory is not None and result.transcript["turns"]:  # the person said at least their opening
        result.memory = memory.update(session.env.state, result.ended)
        try:
            result.memory = memory.save(result.memory)
        except MemoryFileError as error:  # raised once the transcript is written
            unsaved = error
        result.transcript["memory"] = result.memory.to_json()
    if transcript is not None:
        target = transcript
        # created by someone else while the chat went on (with `overwrite`: not a regular file, which the
        # atomic write would replace)
        moved = target.exists() and not (overwrite and target.is_file())
        if moved:
            target = free_path(transcript)
        write_transcript(target, result.transcript)
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP); the file is written
            if moved:
                console.print(
                    f"[yellow]warning:[/] {escape(str(transcript))} appeared during the chat; it is kept "
                    f"and this transcript goes to {escape(str(target))}"
                )
            console.print(f"[dim]transcript written to {escape(str(target))}[/]")
    if unsaved is not None:
        raise unsaved
    if memory is not None:
        with contextlib.suppress(OSError):
            if result.memory is None:
                session.view.nothing_remembered(memory)
            else:
                session.view.belief_change(result.memory, watched=watched)
