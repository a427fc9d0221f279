"""Typed errors raised at the boundaries of the project (data files, configs, actions).

Every error names the bad value and says what was expected, so a user can fix the input without
reading a traceback.
"""

from __future__ import annotations


class CRSError(Exception):
    """Base class of every error this project raises on purpose."""


class DatasetError(CRSError, ValueError):
    """A dataset file is missing, malformed or inconsistent.

    Args:
        path: The file (or directory) at fault.
        field: The JSON field, key or column at fault ("" when the whole file is at fault).
        expected: What was expected there, in words.
        found: What was found instead, in words (optional).
    """

    def __init__(self, path: object, field: str, expected: str, found: str = "") -> None:
        self.path = str(path)
        self.field = field
        self.expected = expected
        self.found = found
        where = f"{self.path}" + (f" [{field}]" if field else "")
        message = f"{where}: expected {expected}"
        if found:
            message += f", found {found}"
        super().__init__(message)


class MissingSplitError(CRSError, KeyError):
    """A catalogue has no interactions for the requested split."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0])


class EmptySplitError(CRSError, ValueError):
    """A catalogue's split holds no interaction, so no conversation can be drawn from it."""
