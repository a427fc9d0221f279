"""Claiming an output folder or file so that no two commands write it at once and nothing is
overwritten silently.

A folder is claimed by creating its lock file ``.crs.lock``, holding the writer's PID, host and
command, in one atomic step: the content is written first and hard-linked to the lock's name, which
fails when the lock exists (``O_CREAT | O_EXCL`` where hard links are not supported). A second writer gets
`OutputBusyError`; a lock left by a process that has died is reported with the command that
clears it. A claimed folder must be empty unless the caller resumes it or passes ``overwrite``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from policies.atomic import LOCK_FILE, folder_lock
from simulators.errors import CRSError

STAGING_PREFIX = ".crs.staging-"


class OutputExistsError(CRSError):
    """The output already holds results and the command was not asked to overwrite them."""


class OutputBusyError(CRSError):
    """Another process (alive, or dead without releasing it) holds the output's lock."""


class OutputOverInputError(CRSError):
    """An output folder is, holds, or (where refused) lies inside a folder the command reads."""


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (one of another user's counts as running; a zombie,
    dead but not yet reaped by its parent, does not). On Windows every process counts as running:
    ``os.kill(pid, 0)`` would send it Ctrl-C there."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): the signal test is all there is
        return True
    try:  # Linux: a killed worker whose parent died too may stay a zombie where nothing reaps it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # it ended meanwhile
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _holder(lock: Path) -> tuple[int, str, str] | None:
    """The (pid, host, command) a lock file names, or None when it cannot be read."""
    try:
        holder = json.loads(lock.read_text())
        return int(holder["pid"]), str(holder["host"]), str(holder.get("command", "?"))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _stale(lock: Path) -> bool:
    """Whether `lock` names a process of this host that is no longer running."""
    holder = _holder(lock)
    return holder is not None and holder[1] == socket.gethostname() and not process_alive(holder[0])


def _busy_error(folder: Path, lock: Path) -> OutputBusyError:
    holder = _holder(lock)
    if holder is None:
        return OutputBusyError(
            f"{folder} is locked by {lock}, which is unreadable; if no other crs command writes there, "
            f"remove it with `rm {lock}` and run again"
        )
    pid, host, command = holder
    if host == socket.gethostname() and not process_alive(pid):
        return OutputBusyError(
            f"{folder} is locked by process {pid} ({command!r}), which is no longer running (killed or "
            f"crashed); remove the stale lock with `rm {lock}` and run again"
        )
    unknown = f" (if it no longer runs, remove the lock with `rm {lock}`)" if sys.platform == "win32" else ""
    return OutputBusyError(
        f"{folder} is being written by process {pid} on {host} ({command!r}); wait for it to finish or "
        f"choose another output{unknown}"
    )


def _create_lock(lock: Path) -> None:
    """Create `lock` holding this process's PID, host and command, or raise FileExistsError.

    The content is written to a file of this process's own first and then hard-linked to `lock` (which
    fails when `lock` exists), so a second writer never reads a lock that is still empty. Where hard
    links are not supported, `lock` is created with ``O_CREAT | O_EXCL`` and then written.
    """
    holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)})
    draft = lock.with_name(f"{lock.name}.{os.getpid()}.{os.urandom(4).hex()}")
    draft.write_text(holder)
    try:
        os.link(draft, lock)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        pass
    finally:
        draft.unlink(missing_ok=True)
    descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(holder)


def _refuse_links(folder: Path, what: str) -> None:
    """Refuse a folder to continue that holds a symbolic link: a folder from elsewhere (a shared run)
    could point one at a file of the user's, which continuing would overwrite."""
    for root, dirs, names in os.walk(folder):
        for name in (*dirs, *names):
            path = Path(root) / name
            if path.is_symlink():
                raise CRSError(
                    f"{what} {folder} holds a symbolic link, {path.relative_to(folder)} -> "
                    f"{os.readlink(path)}; continuing would write through it, outside the folder: replace "
                    "the link by a copy of what it names, or remove it, and run again"
                )


def a_few(names: list[str], shown: int = 4) -> str:
    """The first `shown` of `names`, then how many more: "a.json, b.json and 3 more"."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _is_lock_entry(name: str) -> bool:
    """Whether `name` is a lock file or a lock's draft (``.crs.lock.<pid>.<hex>``, which a racing
    writer holds for an instant before it hard-links it to the lock)."""
    return name == LOCK_FILE or name.startswith(f"{LOCK_FILE}.")


def folder_entries(folder: Path) -> list[str]:
    """The sorted names of what `folder` holds, leaving out its lock, lock drafts and staging folders
    (`FolderClaim.staging_folder`; one a killed writer left is no result)."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if not (_is_lock_entry(entry.name) or entry.name.startswith(STAGING_PREFIX))
    )


def empty_folder(folder: Path, keep: Iterable[str] = ()) -> None:
    """Delete everything `folder` holds but its lock file, lock drafts and the entries named `keep`."""
    kept = set(keep)
    for entry in folder.iterdir():
        if _is_lock_entry(entry.name) or entry.name in kept:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


class FolderClaim:
    """An exclusive claim on an output folder, released on `release` or at the end of a `with` block.

    Args:
        folder: The folder (created with its parents if missing).
        what: What the folder is, for messages ("run", "evaluation output").
        overwrite: Empty the folder's previous content (the lock is taken first), which must then be an
            earlier output of the command: hold every file of `marks`.
        resume: Accept a folder with content (the caller continues it), unless it holds a symbolic link
            (continuing would write through it).
        hint: How to proceed when the folder already holds results, e.g. "pass --resume".
        marks: Files every earlier output of the command holds (e.g. ``summary.json``), so that
            `overwrite` never empties a folder of something else.
        owns: Whether a top-level entry is one the command writes: with `overwrite`, a folder that also
            holds anything else is refused, so that what a user put beside an earlier output (notes,
            another command's results) is never deleted. None: not checked.
        take_stale: Replace a lock whose process of this host is no longer running (a command that is
            rerun to continue, like `crs sweep`), instead of asking for its removal.
        defer: With `overwrite`, empty the folder only when the caller calls `clear` (right before it
            writes), so that a command that fails or is interrupted first leaves the earlier output as it
            was; without it, the folder is emptied at once. ``pending`` is True while an earlier output
            waits for `clear`.

    Raises:
        OutputBusyError: Another writer holds the lock, or a dead one left it.
        OutputExistsError: The folder holds results, without `overwrite` or `resume`.
        CRSError: The path exists and is not a folder, or cannot be created.
    """

    def __init__(
        self,
        folder: Path,
        what: str,
        *,
        overwrite: bool = False,
        resume: bool = False,
        hint: str = "",
        marks: tuple[str, ...] = (),
        defer: bool = False,
        owns: Callable[[str], bool] | None = None,
        take_stale: bool = False,
    ) -> None:
        self.folder = folder
        self.pending = False  # an earlier output that `clear` empties
        self.staging: list[Path] = []  # `staging_folder`s, which `clear` keeps
        self.lock = folder / LOCK_FILE
        if folder.exists() and not folder.is_dir():
            raise CRSError(f"{what} {folder} is a file, not a folder; choose a folder path")
        self.created = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a parent is a file, no permission, ...
            raise CRSError(f"cannot create {what} {folder} ({error.strerror}); choose another path") from None
        try:
            if take_stale:
                # two reruns racing for a dead lock take turns: else one could remove the other's new lock
                with folder_lock(folder):
                    if _stale(self.lock):
                        self.lock.unlink(missing_ok=True)
                    _create_lock(self.lock)
            else:
                _create_lock(self.lock)
        except FileExistsError:
            raise _busy_error(folder, self.lock) from None
        except OSError as error:  # a read-only folder, ...
            raise CRSError(f"cannot write {what} {folder} ({error.strerror}); choose another path") from None
        self.held = True
        try:
            if resume:
                _refuse_links(folder, what)
            names = folder_entries(folder)
            missing = [name for name in marks if not (folder / name).exists()]
            if names and missing and not resume:  # --overwrite would be refused: do not suggest it
                raise OutputExistsError(
                    f"{what} {folder} holds {a_few(names)} but no {', '.join(missing)}, so it is not an "
                    f"earlier {what}; --overwrite only replaces one of those: choose another folder"
                )
            foreign = [name for name in names if owns is not None and not owns(name)]
            if names and overwrite and foreign:
                raise OutputExistsError(
                    f"{what} {folder} holds {a_few(foreign)} besides an earlier {what}; --overwrite replaces "
                    f"only what the command writes: move {'it' if len(foreign) == 1 else 'them'} out, or "
                    "choose another folder"
                )
            if names and overwrite:
                self.pending = True
                if not defer:
                    self.clear()
            elif names and not resume:
                raise OutputExistsError(
                    f"{what} {folder} already holds results ({a_few(names)}); "
                    f"{hint or 'pass --overwrite to replace them'}"
                )
        except BaseException:
            self.release()
            raise

    def clear(self) -> None:
        """Empty the earlier output that `overwrite` replaces (once; nothing when there is none), but
        this claim's staging folders."""
        if self.pending:
            empty_folder(self.folder, keep=[path.name for path in self.staging])
            self.pending = False

    def staging_folder(self) -> Path:
        """A new hidden folder inside the claimed one (``.crs.staging-*``) to write a whole output into
        before `clear` and a rename move it in: on the same file system, kept by `clear`, never taken
        for results. The caller removes it."""
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        self.staging.append(path)
        return path

    def move_in(self, staging: Path, last: str) -> None:
        """Empty the earlier output (`clear`) and move every file of `staging` into the folder, `last`
        (the command's mark, e.g. config.json) last: a folder the moves were interrupted in lacks the
        mark, so it is never taken for a whole output. `staging` is left empty for the caller to remove."""
        self.clear()
        for file in sorted(staging.iterdir(), key=lambda file: file.name == last):
            os.replace(file, self.folder / file.name)

    def release(self) -> None:
        """Remove the lock (once), and the folder if the claim created it and nothing was written there
        (e.g. the command failed before writing)."""
        if self.held:
            self.lock.unlink(missing_ok=True)
            self.held = False
            if self.created:
                with contextlib.suppress(OSError):  # not empty: keep it
                    self.folder.rmdir()

    def __enter__(self) -> FolderClaim:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def claim_new_file(path: Path, what: str, *, overwrite: bool = False) -> None:
    """Refuse to replace an existing file unless `overwrite` (writers then replace it atomically).

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False.
        CRSError: `path` is a folder.
    """
    if path.is_dir():
        raise CRSError(f"{what} {path} is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{what} {path} already exists; pass --overwrite to replace it or choose another"
        )


def refuse_output_over_inputs(
    out: Path, inputs: Iterable[tuple[str, Path | None]], *, inside: bool = False
) -> None:
    """Refuse an output folder that is one of the command's input folders or holds one.

    Writing there would replace (with ``--overwrite``: delete) the input, so this holds whatever the
    flags say.

    Args:
        out: The output folder.
        inputs: (what the input is, e.g. "--policy run", its path) pairs; None paths are skipped.
        inside: Also refuse an output that lies inside an input folder.

    Raises:
        OutputOverInputError: `out` is, holds, or (with `inside`) lies in one of `inputs`.
    """
    target = out.resolve()
    for what, path in inputs:
        if path is None or not path.exists():
            continue
        source = path.resolve()
        if target == source or source.is_relative_to(target):
            relation = "is" if target == source else "holds"
            raise OutputOverInputError(
                f"output folder {out} {relation} the {what} {path}, which this command reads; writing "
                "there would destroy it (--overwrite does not allow this): choose another output folder"
            )
        if inside and target.is_relative_to(source):
            raise OutputOverInputError(
                f"output folder {out} lies inside the {what} {path}, which this command reads; the "
                "output would become part of its own input: choose a folder outside it"
            )
