"""What the benchmark scripts share on their command line: argparse types for counts and fractions, the
help formatter, and the entry point that turns the project's typed errors into one line.

The scripts import it as ``from _cli import ...``: a script's own folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from simulators.errors import CRSError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default after its help."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    value = float(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def open_fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def comma_names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of `choices` (e.g. ``full,k1``)."""

    def parse(text: str) -> list[str]:
        names = text.split(",")
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def npz_path(text: str) -> Path:
    """An argparse type: a file name ending in ``.npz`` (`numpy.savez` adds the suffix otherwise, so
    the file written would not be the one read back)."""
    path = Path(text)
    if path.suffix != ".npz":
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .npz; name the file e.g. {path.stem}.npz")
    return path


def run_script(main: Callable[[], None]) -> None:
    """Call a script's `main`; the project's typed errors (`CRSError`) and the system's (a missing
    file, a denied permission) print one line ``error: ...`` to stderr and exit with code 2.

    Args:
        main: The script's entry point.
    """
    try:
        main()
    except (CRSError, OSError) as error:
        message = str(error)
        if isinstance(error, OSError) and error.strerror:
            message = error.strerror + (f": {error.filename}" if error.filename else "")
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
