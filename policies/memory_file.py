"""A person's persona memory on disk: one plain JSON file per person (``crs chat --memory FILE``, #16).

A `PersonaMemory` lives in one process; this file keeps one user's prior between processes. The
format, version `MEMORY_VERSION` of schema `MEMORY_SCHEMA`::

    {
      "schema": "persona-crs/persona-memory",
      "version": 1,
      "dataset": "persona_world",                       # the catalogue it belongs to ...
      "catalog": {"users": 600, "items": 3000, "aspects": 48},
      "ranker": {"fingerprint": "3f1c...", "personas": 4, "name": "runs/pretrain/persona_world"},
      "user": 12,                                       # ... the user ...
      "prior": [0.61, 0.24, 0.1, 0.05],                 # ... and the memory's belief over their K personas
      "home": 0.42,                                     # (optional) the chance they are still home
      "conversations": 3,                               # conversations remembered
      "history": [                                      # the belief after each of the last ones
        {"conversation": 3, "ended": "accepted", "prior": [0.61, 0.24, 0.1, 0.05]}, ...
      ]
    }

The prior only means something for the ranker whose personas it weighs, so a file names that ranker by
content (`ranker_fingerprint`: a hash of its persona embeddings and prior table, the same wherever the
artifact lies) and the catalogue by name and sizes; a file made for another ranker or dataset is
refused. ``ranker.name`` is only for the messages.

Reading (`read_memory`): a missing file is a new person (None: start from the ranker's prior); any
other problem (unreadable, not JSON, a key given twice or one the format lacks, another schema or
version, another ranker or catalogue, a prior of the wrong length, negative, non-finite or not summing
to 1, a malformed history) raises `MemoryFileError`, naming the file, what is wrong and the fix.
Writing (`write_memory`) is atomic (`policies.atomic`): a reader or a crash sees the old file or the
new one, never half of one.
Deleting the file forgets the person. Plain JSON only, never pickle.

``home`` (optional, added in session 26 without a version change: a file without it reads as before)
is the filter's probability that the person is still in their pre-trained mixture, for a rule with a
home state (`policies.memory.UpdateRule.home_rate`); with it, a restored memory continues exactly where
the writing one stopped (`PersonaMemory.restore`). It must lie in [0, 1].

The file keeps the prior (and home) only: per-persona aspect weights a memory learns
(``UpdateRule.aspect_rate`` > 0, `policies.memory`) are not saved, so across restarts a chat keeps
prior-only semantics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from envs.ranker import ExplainablePersonaRanker
from policies.atomic import write_json_atomic
from policies.memory import MemoryUpdate
from simulators.catalog import Catalog
from simulators.errors import CRSError

MEMORY_SCHEMA = "persona-crs/persona-memory"
"""The ``schema`` every memory file holds."""
MEMORY_VERSION = 1
"""The format version this code writes and reads."""
HISTORY_KEPT = 10
"""Beliefs kept in a file's history (the most recent)."""
SUM_TOLERANCE = 1e-6
"""How far a stored prior's sum may lie from 1."""
FILE_KEYS = (
    "schema",
    "version",
    "dataset",
    "catalog",
    "ranker",
    "user",
    "prior",
    "home",
    "conversations",
    "history",
)
"""The keys a memory file may hold (``home`` is optional); any other is refused, not ignored."""
CATALOG_KEYS = ("users", "items", "aspects")
"""The keys of a file's ``catalog`` entry."""
RANKER_KEYS = ("fingerprint", "personas", "name")
"""The keys of a file's ``ranker`` entry."""
BELIEF_KEYS = ("conversation", "ended", "prior")
"""The keys of an entry of a file's ``history``."""
FORGET = "delete it to forget this person (the next chat starts from the ranker's prior)"
"""The fix for a damaged file."""


class MemoryFileError(CRSError):
    """A memory file cannot be read or written: corrupt, another format or version, or made with
    another ranker or catalogue. The message names the file, what is wrong and the fix."""

    def __init__(self, path: Path, problem: str, fix: str = FORGET) -> None:
        super().__init__(f"memory file {path}: {problem}; {fix}")
        self.path = path


def ranker_fingerprint(ranker: ExplainablePersonaRanker) -> str:
    """A short hash of what a persona prior refers to: the ranker's persona embeddings (U, K, d) and its
    pre-trained prior table (U, K), as float64; equal for two loads of one artifact, 16 hex digits."""
    digest = hashlib.sha256()
    for name in ("personas", "log_prior"):
        values = np.ascontiguousarray(getattr(ranker, name), dtype=np.float64)
        digest.update(f"{name}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class MemoryContext:
    """What a memory file belongs to: a catalogue and a persona ranker over it.

    Attributes:
        dataset: The catalogue's name.
        n_users: Its users.
        n_items: Its items.
        n_aspects: Its aspects.
        ranker: `ranker_fingerprint` of the persona ranker.
        personas: The ranker's personas per user (K), the length of every prior.
        ranker_name: How the ranker was named (an artifact folder, a run's entry), for messages only.
    """

    dataset: str
    n_users: int
    n_items: int
    n_aspects: int
    ranker: str
    personas: int
    ranker_name: str = ""

    @classmethod
    def of(cls, catalog: Catalog, ranker: ExplainablePersonaRanker, ranker_name: str = "") -> MemoryContext:
        """The context of `ranker` (the shared ranker, not a memory's view) over `catalog`."""
        return cls(
            dataset=catalog.name,
            n_users=catalog.n_users,
            n_items=catalog.n_items,
            n_aspects=catalog.n_aspects,
            ranker=ranker_fingerprint(ranker),
            personas=int(np.asarray(ranker.log_prior).shape[1]),
            ranker_name=ranker_name,
        )

    def to_json(self) -> dict[str, Any]:
        """The file's ``dataset``, ``catalog`` and ``ranker`` entries."""
        return {
            "dataset": self.dataset,
            "catalog": {"users": self.n_users, "items": self.n_items, "aspects": self.n_aspects},
            "ranker": {"fingerprint": self.ranker, "personas": self.personas, "name": self.ranker_name},
        }


@dataclass(frozen=True)
class Belief:
    """The memory's belief after one conversation (an entry of a file's history).

    Attributes:
        conversation: Which conversation it followed (1 = the first remembered).
        prior: The prior after it, K floats summing to 1.
        ended: How the conversation ended ("accepted", "quit", ...).
    """

    conversation: int
    prior: tuple[float, ...]
    ended: str

    def to_json(self) -> dict[str, Any]:
        return {"conversation": self.conversation, "ended": self.ended, "prior": list(self.prior)}


@dataclass(frozen=True)
class MemoryRecord:
    """What a memory file holds: one user's persona prior for one ranker, and how it got there.

    Attributes:
        context: The catalogue and ranker it belongs to.
        user: User id.
        prior: The memory's prior over the user's K personas, K finite floats >= 0 summing to 1.
        conversations: Conversations remembered (>= 0).
        history: The beliefs after the last conversations, oldest first (at most `HISTORY_KEPT`).
        home: The filter's probability that the user is still in their pre-trained mixture
            (`policies.memory.MemoryUpdate.home`), or None (a rule without a home state, or nothing
            remembered yet).

    Raises:
        ValueError: A prior of the wrong length, negative, non-finite or not summing to 1, a negative
            user or count, a home outside [0, 1], a history entry like that, or a history that is not
            the last conversations in order (`read_memory` names the file instead).
    """

    context: MemoryContext
    user: int
    prior: tuple[float, ...]
    conversations: int = 0
    history: tuple[Belief, ...] = ()
    home: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prior", _checked_prior(self.prior, self.context.personas, "prior"))
        if self.user < 0 or self.conversations < 0:
            raise ValueError(f"user {self.user} and conversations {self.conversations} must be >= 0")
        for belief in self.history:
            _checked_prior(belief.prior, self.context.personas, f"history entry {belief.conversation}")
        numbers = [belief.conversation for belief in self.history]
        kept = list(range(self.conversations - len(numbers) + 1, self.conversations + 1))
        if numbers != kept:  # `after` keeps the beliefs after the last conversations, in order
            raise ValueError(
                f"history numbers conversations {numbers}; a memory of {self.conversations} keeps {kept}"
            )
        home = self.home
        if home is not None:
            if isinstance(home, bool) or not isinstance(home, float | int) or not 0 <= home <= 1:
                raise ValueError(f"home must be a number in [0, 1], not {home!r}")
            object.__setattr__(self, "home", float(home))

    @classmethod
    def new(cls, context: MemoryContext, user: int, prior: Sequence[float] | np.ndarray) -> MemoryRecord:
        """A person with nothing remembered yet, whose prior is the ranker's (`prior`)."""
        return cls(context, int(user), tuple(float(p) for p in np.asarray(prior).reshape(-1)))

    def after(self, update: MemoryUpdate, ended: str) -> MemoryRecord:
        """The record once a conversation ending `ended` moved the prior (`PersonaMemory.update`).

        Raises:
            ValueError: The update is of another user.
        """
        if update.user != self.user:
            raise ValueError(f"an update of user {update.user} cannot go into user {self.user}'s memory")
        prior = tuple(float(p) for p in np.asarray(update.after).reshape(-1))
        count = self.conversations + 1
        history = (*self.history, Belief(count, prior, ended))[-HISTORY_KEPT:]
        return replace(self, prior=prior, conversations=count, history=history, home=update.home)

    def most_likely(self) -> int:
        """The persona slot the memory believes most likely (first on ties)."""
        return int(np.argmax(self.prior))

    def to_json(self) -> dict[str, Any]:
        """The file's content (module docstring)."""
        return {
            "schema": MEMORY_SCHEMA,
            "version": MEMORY_VERSION,
            **self.context.to_json(),
            "user": self.user,
            "prior": list(self.prior),
            "conversations": self.conversations,
            "history": [belief.to_json() for belief in self.history],
            **({} if self.home is None else {"home": self.home}),
        }


def write_memory(path: Path, record: MemoryRecord) -> None:
    """Write `record` to `path` atomically (a temporary file beside it, then one rename).

    Raises:
        MemoryFileError: The file cannot be written (a missing folder, no permission, a full disk);
            the old file, if any, is left as it was.
    """
    try:
        write_json_atomic(path, record.to_json())
    except OSError as error:
        raise MemoryFileError(
            path,
            f"cannot be written ({type(error).__name__}: {error.strerror or error})",
            "the file as it was before this conversation is kept; check the folder and its permissions",
        ) from None


def read_memory(path: Path, context: MemoryContext) -> MemoryRecord | None:
    """The memory `path` holds for `context`, or None when there is no file (a new person).

    Raises:
        MemoryFileError: The file is unreadable, corrupt, of another schema or version, made with
            another ranker or catalogue, or holds a bad prior or history (module docstring).
    """
    if not path.exists():
        return None
    if not path.is_file():
        raise MemoryFileError(
            path, "is not a file", "pass the path of a file (a new one starts a new memory)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise MemoryFileError(path, f"is corrupt ({type(error).__name__}: {error})") from None
    return memory_from_json(data, path, context)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice (a hand edit that added a second ``"user"``,
    which JSON would silently take the last of) is a ValueError."""
    data = dict(pairs)
    if len(data) < len(pairs):
        twice = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
        raise ValueError(f"the key {twice[0]!r} is given twice")
    return data


def memory_from_json(data: object, path: Path, context: MemoryContext) -> MemoryRecord:
    """A memory file's parsed JSON as a record, checked against `context` (`path` for the messages).

    Raises:
        MemoryFileError: See `read_memory`.
    """
    if not isinstance(data, dict):
        raise MemoryFileError(path, f"must hold a JSON object, not {type(data).__name__}")
    schema = data.get("schema")
    if schema != MEMORY_SCHEMA:
        raise MemoryFileError(
            path,
            f"is not a persona memory (schema {schema!r}, expected {MEMORY_SCHEMA!r})",
            "pass a file written by `crs chat --memory`, or a new path to start a memory",
        )
    version = data.get("version")
    if type(version) is not int or version != MEMORY_VERSION:  # 1.0 or true are no version 1
        raise MemoryFileError(
            path,
            f"has format version {version!r}; this crs reads version {MEMORY_VERSION}",
            f"use the crs that wrote it, or {FORGET}",
        )
    _refuse_unknown_keys(data, FILE_KEYS, path, "the file")
    _check_context(data, path, context)
    user = _integer(data.get("user"), path, "user")
    if user >= context.n_users:
        raise MemoryFileError(path, f"user {user} is outside [0, {context.n_users}) of {context.dataset}")
    conversations = _integer(data.get("conversations"), path, "conversations")
    prior = _prior(data.get("prior"), path, "prior", context.personas)
    entries = data.get("history")
    if not isinstance(entries, list):
        raise MemoryFileError(path, f"history must be a list, not {type(entries).__name__}")
    if conversations < 1 or not 1 <= len(entries) <= min(conversations, HISTORY_KEPT):
        raise MemoryFileError(
            path,
            f"remembers {conversations} conversation(s) with {len(entries)} history entries; a memory file "
            f"is written after a conversation and keeps the beliefs after the last {HISTORY_KEPT}",
        )
    history = []
    for n, entry in enumerate(entries):
        where = f"history[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("ended"), str):
            raise MemoryFileError(path, f"{where} must be an object with conversation, ended and prior")
        _refuse_unknown_keys(entry, BELIEF_KEYS, path, where)
        history.append(
            Belief(
                _integer(entry.get("conversation"), path, f"{where}.conversation"),
                _prior(entry.get("prior"), path, f"{where}.prior", context.personas),
                entry["ended"],
            )
        )
    try:
        return MemoryRecord(context, user, prior, conversations, tuple(history), data.get("home"))
    except ValueError as error:
        raise MemoryFileError(path, str(error)) from None


def _check_context(data: dict[str, Any], path: Path, context: MemoryContext) -> None:
    """Refuse a file of another dataset, catalogue or ranker."""
    dataset, catalog, ranker = data.get("dataset"), data.get("catalog"), data.get("ranker")
    if not isinstance(catalog, dict) or not isinstance(ranker, dict):
        raise MemoryFileError(path, "lacks its catalog or ranker entry")
    _refuse_unknown_keys(catalog, CATALOG_KEYS, path, "catalog")
    _refuse_unknown_keys(ranker, RANKER_KEYS, path, "ranker")
    if dataset != context.dataset:
        raise MemoryFileError(
            path,
            f"belongs to dataset {dataset!r}, not {context.dataset!r}",
            f"chat with --dataset {dataset} (and its ranker), or pass another --memory file",
        )
    sizes = {"users": context.n_users, "items": context.n_items, "aspects": context.n_aspects}
    stored = {key: catalog.get(key) for key in sizes}
    if stored != sizes:
        raise MemoryFileError(
            path,
            f"belongs to another {context.dataset} catalogue ({stored}, this one has {sizes})",
            "chat with the catalogue it was made with, or pass another --memory file",
        )
    if ranker.get("fingerprint") != context.ranker or ranker.get("personas") != context.personas:
        made = ranker.get("name") or "another ranker"
        if made == context.ranker_name:  # one folder, other weights: `crs pretrain --overwrite` since
            raise MemoryFileError(
                path,
                f"was made with ranker {made} as it was then (fingerprint {ranker.get('fingerprint')}, "
                f"{ranker.get('personas')} personas); {made} has been pre-trained again since "
                f"(fingerprint {context.ranker}, {context.personas} personas), so the file's beliefs weigh "
                "personas it no longer has",
                f"pass another --memory file, or {FORGET}",
            )
        raise MemoryFileError(
            path,
            f"was made with ranker {made} (fingerprint {ranker.get('fingerprint')}, "
            f"{ranker.get('personas')} personas), not {context.ranker_name or 'this one'} "
            f"(fingerprint {context.ranker}, {context.personas} personas): its beliefs weigh another "
            "ranker's personas",
            f"chat with the ranker it was made with (--ranker {made}), pass another --memory file, "
            f"or {FORGET}",
        )


def _refuse_unknown_keys(data: dict[str, Any], known: tuple[str, ...], path: Path, where: str) -> None:
    """Refuse a key the format does not have: a hand edit's typo (``"priors"``) would otherwise be ignored
    in silence and the chat go on from the old value."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MemoryFileError(
            path,
            f"{where} holds the unknown key {unknown[0]!r} (its keys are {', '.join(known)})",
            f"correct or remove that key, or {FORGET}",
        )


def _integer(value: object, path: Path, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MemoryFileError(path, f"{name} must be an integer >= 0, not {value!r}")
    return value


def _prior(value: object, path: Path, name: str, personas: int) -> tuple[float, ...]:
    try:
        return _checked_prior(value, personas, name)
    except ValueError as error:
        raise MemoryFileError(path, str(error)) from None


def _checked_prior(value: object, personas: int, name: str) -> tuple[float, ...]:
    """`value` as K floats >= 0 summing to 1.

    Raises:
        ValueError: Not a list of K numbers, or a negative, non-finite or badly summed one.
    """
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in value
    ):
        raise ValueError(f"{name} must be a list of {personas} numbers, not {value!r}")
    if len(value) != personas:
        raise ValueError(f"{name} has {len(value)} weights, but the ranker has {personas} personas per user")
    try:
        prior = tuple(float(p) for p in value)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError(f"{name} holds a number too large for a probability") from None
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in prior):
        raise ValueError(f"{name} {list(prior)} holds a weight outside [0, 1] or a NaN")
    if abs(math.fsum(prior) - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{name} {list(prior)} sums to {math.fsum(prior)}, not 1")
    return prior
