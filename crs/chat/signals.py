"""Ending a chat by a signal: Ctrl-C (SIGINT), a closed terminal (SIGHUP) or a kill (SIGTERM) ends the
dialogue as Ctrl-C always did, so the summary, the memory and the transcript are still written; once
the dialogue has ended, further signals (Ctrl-C pressed twice) are ignored until they are.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
"""How a chat ended by each signal, as the transcript's ``outcome.ended`` records it."""
if hasattr(signal, "SIGHUP"):  # not on Windows
    REASONS[signal.SIGHUP] = "hung up"
EXIT_STATUS = {reason: 128 + int(signum) for signum, reason in REASONS.items()}
"""The shell's exit status for a chat ended by a signal: 128 + the signal's number (130 for Ctrl-C)."""


class SignalEndError(KeyboardInterrupt):
    """A signal ended the dialogue; a `KeyboardInterrupt`, so code that lets Ctrl-C through lets it
    through too.

    Attributes:
        reason: How it ended ("interrupted", "hung up", "terminated"; see `REASONS`).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EndSignals:
    """While entered (in the main thread), SIGINT, SIGHUP and SIGTERM end the dialogue: the first one
    raises `SignalEndError`; after it, or after `end` (the dialogue ended some other way), they are
    ignored, so that the memory and the transcript get written. Leaving restores the handlers there
    were. A signal ignored before (SIG_IGN, e.g. SIGHUP under ``nohup``) stays ignored.

    Attributes:
        ended: Whether the dialogue has ended (signals are ignored from then on).
        ignored: The signals that arrived after the end, in order.
    """

    def __init__(self) -> None:
        self.ended = False
        self.ignored: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> EndSignals:
        if threading.current_thread() is not threading.main_thread():  # only it may set handlers
            return self
        for signum in REASONS:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
            signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def end(self) -> None:
        """The dialogue has ended: ignore signals from now on."""
        self.ended = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.ended:
            self.ignored.append(signum)
            return
        self.ended = True
        raise SignalEndError(REASONS[signal.Signals(signum)])
