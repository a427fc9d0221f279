"""`crs chat --memory FILE`: the person's persona memory kept between chats (#16, "chat remembers").

Before the chat, `policy_with_memory` builds the policy's persona ranker (a rule's ``--ranker``, or a
trained run's own), opens the file (`ChatMemory.open`: a new person when it does not exist) and gives
the policy the memory's view of the ranker (`policies.memory.PersonaMemory.ranker_for`), whose prior
row of the person's user is what the memory believes. The chat opens by saying that belief (see
`crs.chat.view.ChatView.remembered`). After it (accepted, quit, left, or Ctrl-C once the person has
opened), `ChatMemory.update` moves the prior by the conversation's evidence (one step of the memory's
online EM), `ChatMemory.save` writes the file atomically and the chat shows before → after
(`ChatView.belief_change`). The file's format is `policies.memory_file`'s.

Two chats may run on one file at once (two terminals). `save` holds a lock on the file's folder while
it reads the file again and writes it; when another chat saved in between, this conversation's evidence
moves the belief that chat left, so each conversation is remembered once and none is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crs.chat.errors import ChatError
from envs.env import ConversationEnv
from envs.ranker import ExplainablePersonaRanker, PreferenceRanker
from envs.rollout import ConversationPolicy
from envs.state import DialogueState
from policies.atomic import folder_lock, unwritable_reason
from policies.memory import MemoryRanker, MemoryUpdate, PersonaMemory, SessionEvidence
from policies.memory_file import MemoryContext, MemoryFileError, MemoryRecord, read_memory, write_memory
from policies.rankers import RUN_RANKER, RankerSpec
from policies.rules import make_rule_policy
from simulators.catalog import Catalog

PERSONA_RANKER_FIX = "chat with a persona ranker (--ranker <a `crs pretrain` artifact>) or leave out --memory"
"""What to do when `--memory` meets a ranker without personas."""
RUN_FIX = (
    "chat with a run trained with a persona ranker, or a rule policy with --ranker <a `crs pretrain` "
    "artifact>, or leave out --memory"
)
"""The same for a trained run's ranker."""


@dataclass(frozen=True)
class MemoryChange:
    """What one chat did to the person's memory.

    Attributes:
        path: The memory file.
        update: The prior before and after (`PersonaMemory.update`).
        record: What the file holds after the chat.
        evidence: The conversation's evidence, which moved the prior.
        ended: How the conversation ended.
    """

    path: Path
    update: MemoryUpdate
    record: MemoryRecord
    evidence: SessionEvidence
    ended: str

    @property
    def before(self) -> np.ndarray:
        """The prior before the chat, shape (K,)."""
        return np.asarray(self.update.before)

    @property
    def after(self) -> np.ndarray:
        """The prior after the chat, shape (K,)."""
        return np.asarray(self.update.after)

    def to_json(self) -> dict[str, Any]:
        """The transcript's ``memory`` entry."""
        return {
            "file": str(self.path),
            "user": self.record.user,
            "conversations": self.record.conversations,
            "before": [float(p) for p in self.before],
            "after": [float(p) for p in self.after],
            **({} if self.update.home is None else {"home": self.update.home}),
        }


class ChatMemory:
    """One chat's persona memory: its file, what the file held, and the memory the chat's ranker comes from.

    Made by `open`. Attributes: ``path``, ``user`` (the person's user id), ``context`` (the catalogue and
    ranker the file belongs to), ``record`` (what the file holds; None for a new person) and ``memory``
    (the `PersonaMemory`, holding the file's prior for ``user``).
    """

    def __init__(
        self,
        path: Path,
        memory: PersonaMemory,
        context: MemoryContext,
        user: int,
        record: MemoryRecord | None,
    ) -> None:
        self.path = path
        self.memory = memory
        self.context = context
        self.user = user
        self.record = record

    @classmethod
    def open(
        cls,
        path: Path,
        ranker: PreferenceRanker,
        catalog: Catalog,
        ranker_name: str,
        *,
        user_id: int | None,
        drawn_user: int,
        fix: str = PERSONA_RANKER_FIX,
    ) -> ChatMemory:
        """The memory of `path` over `ranker` (the shared ranker, built for `catalog`).

        Args:
            path: The memory file; a missing one is a new person.
            ranker: The persona ranker the chat's policy uses.
            catalog: The catalogue.
            ranker_name: How the ranker is named (an artifact folder), for messages.
            user_id: The ``--user-id`` asked for, or None.
            drawn_user: The user to play when neither the file nor `user_id` names one.
            fix: What to do about a ranker without personas (the end of the refusal).

        Raises:
            ChatError: The ranker models no personas (or one per user), or `user_id` is not the file's.
            MemoryFileError: The file is unreadable, corrupt or of another ranker or catalogue, or its
                folder does not exist.
        """
        personas = np.asarray(getattr(ranker, "log_prior", np.zeros((0, 0)))).shape[-1]
        if not isinstance(ranker, MemoryRanker) or personas < 2:
            has = "one persona per user" if isinstance(ranker, MemoryRanker) else "no personas"
            raise ChatError(
                f"--memory keeps what the recommender believes about your personas, but ranker "
                f"{ranker_name!r} models {has}; {fix}"
            )
        if not path.parent.is_dir():
            raise MemoryFileError(
                path, f"its folder {path.parent} does not exist", "create it or pass another --memory path"
            )
        unwritable = unwritable_reason(path.parent)  # found now, not once the conversation is over
        if unwritable is not None:
            raise MemoryFileError(path, f"cannot be written ({unwritable})", "pass another --memory path")
        context = MemoryContext.of(catalog, ranker, ranker_name)
        record = read_memory(path, context)
        if record is not None and user_id is not None and user_id != record.user:
            raise ChatError(
                f"memory file {path} remembers user {record.user}, not --user-id {user_id}: leave out "
                f"--user-id (or pass {record.user}), or pass another --memory file for user {user_id}"
            )
        user = record.user if record is not None else (drawn_user if user_id is None else user_id)
        memory = PersonaMemory(ranker, "update")
        if record is not None:
            memory.restore(user, record.prior, record.home)
        return cls(path, memory, context, user, record)

    @property
    def conversations(self) -> int:
        """Conversations the file remembers (0 for a new person)."""
        return 0 if self.record is None else self.record.conversations

    def prior(self) -> np.ndarray:
        """What the memory believes now: the prior over the person's K personas, shape (K,)."""
        return np.asarray(self.memory.prior(self.user))

    def ranker(self) -> ExplainablePersonaRanker:
        """The ranker the chat runs with: the shared ranker whose prior row of the person is the memory's."""
        return self.memory.ranker_for(self.user)

    def update(self, state: DialogueState, ended: str) -> MemoryChange:
        """Move the prior by a finished conversation's evidence (nothing is written yet: `save`).

        Raises:
            ChatError: The conversation was another user's.
        """
        evidence = SessionEvidence.from_state(state)
        if evidence.user != self.user:
            raise ChatError(
                f"the chat was with user {evidence.user}, but {self.path} remembers user {self.user}"
            )
        return self._change(evidence, ended)

    def _change(self, evidence: SessionEvidence, ended: str) -> MemoryChange:
        update = self.memory.update(evidence)
        start = self.record or MemoryRecord.new(self.context, self.user, update.before)
        return MemoryChange(self.path, update, start.after(update, ended), evidence, ended)

    def save(self, change: MemoryChange) -> MemoryChange:
        """Write the memory after `change` to the file, atomically, under the folder's lock.

        When the file no longer holds what this chat read (another chat on it saved meanwhile, or the
        person was forgotten), `change`'s evidence moves what the file holds now instead (module
        docstring).

        Returns:
            The change written: `change`, or the same evidence applied to the file's current belief.

        Raises:
            MemoryFileError: The file cannot be written (the old one is kept), became unreadable, or
                now remembers another user (it is kept; this conversation is not remembered).
        """
        with folder_lock(self.path.parent):
            current = read_memory(self.path, self.context)
            if current != self.record:
                change = self._rebased(change, current)
            write_memory(self.path, change.record)
        self.record = change.record
        return change

    def _rebased(self, change: MemoryChange, current: MemoryRecord | None) -> MemoryChange:
        """`change`'s evidence applied to `current`, what the file holds now (None: no file)."""
        if current is not None and current.user != self.user:
            raise MemoryFileError(
                self.path,
                f"another chat saved user {current.user} into it during this chat with user {self.user}",
                "it is kept and this conversation is not remembered; pass another --memory file for it",
            )
        self.memory = PersonaMemory(self.memory.ranker, "update")
        if current is not None:
            self.memory.restore(self.user, current.prior, current.home)
        self.record = current
        return self._change(change.evidence, change.ended)


def policy_with_memory(
    policy: str,
    env: ConversationEnv,
    ranker_spec: str | None,
    data_dir: str | None,
    path: Path,
    *,
    user_id: int | None,
    drawn_user: int,
    fix: str = PERSONA_RANKER_FIX,
) -> tuple[ConversationPolicy, str, str, ChatMemory]:
    """The chat's policy over the memory's view of its ranker, as `crs.app.evaluation.resolve_policy`
    builds it otherwise: a rule over ``--ranker`` (default: the dataset's), or a trained run with its
    own ranker, played as `crs eval --sessions` plays it (`policies.rl.acting.RLPolicy.for_session`):
    its wrapper reads the memory's view (scores and posterior features start from the memory's prior)
    and its encoder reads the view's prior row of the user (for a new person the ranker's own, which
    differs from the encoder's row if training fine-tuned it); the network is not retrained.

    Args:
        policy: A rule's name or a trained run's folder.
        env: The chat's env.
        ranker_spec: ``--ranker`` (a rule's ranker; None: the dataset's default; with a trained run only
            None or "run", as `crs.app.evaluation.refuse_ranker_for_run` says).
        data_dir: The real-data folder.
        path: The memory file.
        user_id: ``--user-id``, or None.
        drawn_user: The user to play when neither the file nor `user_id` names one.
        fix: What to do about a rule's ranker without personas (`ChatMemory.open`).

    Returns:
        The policy, its display name, the ranker's name and the memory.

    Raises:
        ChatError, MemoryFileError: See `ChatMemory.open`.
        CRSError: The policy or ranker cannot be built; a trained run given a --ranker.
    """
    run = Path(policy)
    if run.is_dir():
        from crs.app.evaluation import refuse_ranker_for_run  # as plain chat, eval and --sessions refuse it
        from policies.rl.acting import load_trained_policy  # torch only for a trained run
        from policies.rl.run_files import run_ranker

        refuse_ranker_for_run(ranker_spec, run)
        name = run_ranker(run).name
        trained = load_trained_policy(run, env.catalog)
        trained.check_env(env)
        memory = ChatMemory.open(
            path, trained.ranker, env.catalog, name, user_id=user_id, drawn_user=drawn_user, fix=RUN_FIX
        )
        return trained.for_session(memory.ranker(), memory.user), run.name, RUN_RANKER.name, memory
    spec = RankerSpec.parse(ranker_spec) if ranker_spec else RankerSpec.default(env.catalog.name)
    memory = ChatMemory.open(
        path,
        spec.build(env.catalog, data_dir),
        env.catalog,
        spec.name,
        user_id=user_id,
        drawn_user=drawn_user,
        fix=fix,
    )
    rule = make_rule_policy(policy, memory.ranker())
    rule.check_env(env)
    return rule, policy, spec.name, memory
