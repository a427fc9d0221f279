"""Writing a file atomically (into a temporary file beside it, then one rename, so a reader or a crash
never sees half a file), reading a JSON mapping back with a named error, and a folder lock for a
read-modify-write that two processes may do at once. Every layer that writes or reads run files uses
them.

It lives directly in `policies` (not in `policies.rl`) so that `crs` can import it without torch.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulators.errors import CRSError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write; renamed onto `path` when the block ends without an error.

    The temporary is hidden, named for this process and a random tag (two writers never share one, and
    no file of the user's is taken for it), and keeps the suffix (``.best_model.<pid>.<tag>.tmp.zip``),
    since some writers (SB3) add a suffix that is missing. A `path` that is a symbolic link is written
    through it, and an existing file keeps its permissions. When the block or the rename fails, the
    temporary is removed and `path` is left as it was.
    """
    if path.is_symlink():
        path = path.resolve()
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp{path.suffix}")
    try:
        yield temporary
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class FolderBusyError(OSError):
    """`folder_lock(..., wait=False)` found the folder locked by another process."""


LOCK_FILE = ".crs.lock"
"""The file a crs command holds in an output folder while it writes there (`crs.claims.FolderClaim`)."""


@contextmanager
def folder_lock(folder: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `folder` while the block runs: another process's `folder_lock` on it
    waits until the block ends. Advisory (``flock`` on the folder's descriptor: writers that do not take
    it are not stopped) and leaves no file behind; where ``fcntl`` does not exist (Windows) or the
    folder cannot be locked (a file system without ``flock``), it locks nothing.

    Args:
        folder: The folder.
        wait: Wait for another holder to end; with False, raise `FolderBusyError` at once instead.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderBusyError(f"{folder} is locked by another process") from None
        except OSError:  # no flock on this file system: atomic writes still keep files whole
            pass
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def unwritable_reason(folder: Path) -> str | None:
    """Why an atomic write cannot create a file in `folder` (no permission, a read-only or special
    filesystem such as /proc), found by creating and removing one; None when it can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"{folder}: {error.strerror or error}"
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as temporary, temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename makes it the file


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as indented JSON (with a final newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json_mapping(
    path: Path, required: Sequence[str] = (), fix: str = "restore it or train again"
) -> dict[str, Any]:
    """A JSON file holding a mapping with the `required` keys.

    Args:
        path: The file.
        required: Keys it must hold.
        fix: What to do about a bad file, for the message.

    Raises:
        CRSError: The file is missing, unreadable, truncated, not a mapping, or lacks a required key.
    """
    if not path.is_file():
        raise CRSError(f"{path} is missing; {fix}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CRSError(f"{path} is corrupt ({type(error).__name__}: {error}); {fix}") from None
    if not isinstance(data, dict):
        raise CRSError(f"{path} must hold a JSON mapping, found {type(data).__name__}; {fix}")
    missing = [key for key in required if key not in data]
    if missing:
        raise CRSError(f"{path} lacks {', '.join(missing)}; {fix}")
    return data
