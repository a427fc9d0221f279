"""Returning users in the env: one conversation per session of a `ReturningSequence` (issue #16).

A returning sequence (`simulators.returning.returning_sequences`) is S sessions of one persona-world
user, each with its own goal and active persona. `run_sequence` plays them in order, one conversation
per session, in an env made by `envs.registry.make_env` whose goals are the sequence's sessions
(`simulators.returning.SessionGoals`) and whose `PersonaUser` knows the sequence's persona slots (so
the new persona of regime "new", slot K, runs too); on real data
(`simulators.returning.held_out_sequences`) the dataset's own user plays the sessions' targets.
Before each session it asks the caller for the
session's policy, after each it hands the finished env to the caller: that is where a per-user memory
reads the session's feedback and where the next session's policy gets the updated belief.

Everything is seeded by one run seed: session s of sequence n gets the conversation seed
`session_seed(seed, n, s)`, so a sequence replays identically whatever policy or memory plays it
(paired comparisons), whatever order or worker runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord
from envs.registry import make_env
from envs.rollout import ConversationPolicy, run_episode
from simulators.catalog import Catalog
from simulators.errors import CRSError
from simulators.returning import ReturningSequence, SessionGoals, session_user_personas

PolicyFor = Callable[[int, ReturningSequence, int], ConversationPolicy]
"""(sequence index, sequence, session) -> the policy that plays that session."""

AfterSession = Callable[[int, ReturningSequence, int, ConversationEnv, EpisodeRecord], None]
"""(sequence index, sequence, session, the env at the end of the session, its record) -> None."""


@dataclass(frozen=True)
class SessionRecord:
    """One session of a returning sequence: its conversation and the persona truth behind it.

    Attributes:
        sequence: Index of the sequence in its evaluation (0-based).
        session: Session index within the sequence (0-based).
        active: The session's true active persona slot (`ReturningSequence.active`; K = a new persona).
        persona: The true active persona's id (`ReturningSequence.personas[active]`).
        change_session: The sequence's change session (switch or new persona), or None.
        episode: The conversation's record; its ``goal_index`` is the session index.
    """

    sequence: int
    session: int
    active: int
    persona: int
    change_session: int | None
    episode: EpisodeRecord

    @property
    def user(self) -> int:
        return self.episode.user

    def to_dict(self) -> dict[str, object]:
        return {
            "sequence": self.sequence,
            "session": self.session,
            "active": self.active,
            "persona": self.persona,
            "change_session": self.change_session,
            **self.episode.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionRecord:
        """The record of `to_dict`'s output read back from JSON."""
        change = data.get("change_session")
        return cls(
            sequence=int(data["sequence"]),
            session=int(data["session"]),
            active=int(data["active"]),
            persona=int(data["persona"]),
            change_session=None if change is None else int(change),
            episode=EpisodeRecord.from_dict(data),
        )


def session_seed(seed: int, sequence: int, session: int) -> int:
    """The env seed of session `session` of sequence `sequence`: fixed by the three alone."""
    return int(np.random.SeedSequence([seed, sequence, session]).generate_state(1)[0])


def sequence_env(
    catalog: Catalog,
    sequence: ReturningSequence,
    *,
    split: str = "test",
    user_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> ConversationEnv:
    """The env that plays `sequence`: `make_env` with the sequence's sessions as goals (goal s = session
    s) and, on the persona world, a persona user over the sequence's slots (on real data, the dataset's
    default user: UNICORN's single-target user in the binary setting).

    Args:
        catalog: The catalogue the sequence was drawn from (persona world or real data).
        sequence: The returning sequence.
        split: Split the targets came from (`returning_sequences`' split).
        user_kwargs: `PersonaUser` arguments (noise, patience, drift; default the world's `WORLD_USER`);
            ``user_personas`` and ``persona_aspects`` are the sequence's and cannot be given.
        **env_kwargs: Passed to `make_env` (e.g. ``setting``, ``max_turns``).

    Raises:
        CRSError: On the persona world: the sequence is not of this catalogue, or ``user_personas`` /
            ``persona_aspects`` were given.
    """
    if catalog.truth is None:  # real data (`simulators.returning.held_out_sequences`): the dataset's user
        return make_env(
            catalog=catalog,
            split=split,
            user_kwargs=user_kwargs,
            goals=SessionGoals(catalog, split, sequence),
            **env_kwargs,
        )
    fixed = {"user_personas", "persona_aspects"} & set(user_kwargs or {})
    if fixed:
        raise CRSError(f"sequence_env: {sorted(fixed)} come from the sequence; leave them out of user_kwargs")
    user_personas = session_user_personas(catalog, sequence)  # raises without persona truth
    assert catalog.truth is not None  # session_user_personas checked it
    kwargs = {
        **(user_kwargs or {}),
        "user_personas": user_personas,
        "persona_aspects": catalog.truth.persona_aspects,
    }
    return make_env(
        catalog=catalog,
        split=split,
        user="persona",
        user_kwargs=kwargs,
        goals=SessionGoals(catalog, split, sequence),
        **env_kwargs,
    )


def run_sequence(
    catalog: Catalog,
    sequence: ReturningSequence,
    policy_for: PolicyFor,
    seed: int,
    index: int = 0,
    *,
    after_session: AfterSession | None = None,
    split: str = "test",
    user_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> list[SessionRecord]:
    """Play the S sessions of `sequence` in order, one conversation each.

    Session s: ``policy = policy_for(index, sequence, s)``; the env is reset to goal s with the seed
    `session_seed(seed, index, s)`, which also seeds the policy's generator; the conversation runs to
    its end; then ``after_session(index, sequence, s, env, record)``, with the env still holding the
    session's final dialogue state (`ConversationEnv.state`).

    Args:
        catalog: The persona world the sequence was drawn from.
        sequence: The returning sequence.
        policy_for: The policy of each session (see `PolicyFor`).
        seed: Run seed.
        index: The sequence's index in its evaluation (seeds and records).
        after_session: Called after each session (see `AfterSession`), or None.
        split: Split the targets came from.
        user_kwargs: `PersonaUser` arguments (see `sequence_env`).
        **env_kwargs: Passed to `make_env`.

    Returns:
        One record per session, in session order.
    """
    env = sequence_env(catalog, sequence, split=split, user_kwargs=user_kwargs, **env_kwargs)
    records = []
    for session in range(sequence.n_sessions):
        policy = policy_for(index, sequence, session)
        conversation_seed = session_seed(seed, index, session)
        episode = run_episode(
            env,
            policy,
            np.random.default_rng(conversation_seed),
            seed=conversation_seed,
            options={"goal_index": session},
        )
        if after_session is not None:
            after_session(index, sequence, session, env, episode)
        active = int(sequence.active[session])
        records.append(
            SessionRecord(
                sequence=index,
                session=session,
                active=active,
                persona=int(sequence.personas[active]),
                change_session=sequence.change_session,
                episode=episode,
            )
        )
    return records


def run_sequences(
    catalog: Catalog,
    sequences: Sequence[ReturningSequence],
    policy_for: PolicyFor,
    seed: int,
    *,
    after_session: AfterSession | None = None,
    on_sequence: Callable[[list[SessionRecord]], None] | None = None,
    split: str = "test",
    user_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> list[SessionRecord]:
    """`run_sequence` for every sequence, indices 0..N-1 in order; records sequence by sequence.

    Args:
        on_sequence: Called with each finished sequence's records (e.g. to advance a progress bar).
        (the others: see `run_sequence`)
    """
    records: list[SessionRecord] = []
    for index, sequence in enumerate(sequences):
        done = run_sequence(
            catalog,
            sequence,
            policy_for,
            seed,
            index,
            after_session=after_session,
            split=split,
            user_kwargs=user_kwargs,
            **env_kwargs,
        )
        records.extend(done)
        if on_sequence is not None:
            on_sequence(done)
    return records
