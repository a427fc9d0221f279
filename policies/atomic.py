"""Writing a file atomically: into a temporary file beside it, then one rename, so a reader or a crash
never sees half a file. Every layer that writes results uses it.

It lives directly in `policies` (not in `policies.rl`) so that `crs` can import it without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write; renamed onto `path` when the block ends without an error.

    The temporary keeps the suffix (``best_model.tmp.zip``), since some writers (SB3) add a suffix
    that is missing.
    """
    temporary = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as indented JSON (with a final newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
