"""How a chat stops early: an error, the person leaving, or the person undoing an answer."""

from __future__ import annotations

from simulators.errors import CRSError


class ChatError(CRSError):
    """A chat cannot start or continue (bad user id, a reply the env cannot take)."""


class ChatEndedError(Exception):
    """The person ended the conversation (quit, end of input, Ctrl-C).

    Attributes:
        reason: How it ended, as the transcript's ``outcome.ended`` records it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UndoRequestedError(Exception):
    """The person asked to undo the last answer."""
