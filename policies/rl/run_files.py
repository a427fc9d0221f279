"""What a run directory of `crs train` holds, and reading and writing it.

``policy.json`` records what `policies.rl.acting.load_trained_policy` needs to rebuild the wrapper
and the fixed ranker; ``state.json`` the step count and best score of the last checkpoint; the SB3
model zips are ``best_model.zip``, ``model.zip`` and ``checkpoint.zip``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sb3_contrib import MaskablePPO

from policies.atomic import atomic_path, write_json_atomic
from simulators.errors import CRSError

POLICY_META = "policy.json"
STATE_FILE = "state.json"
MODEL_FILES = ("best_model.zip", "model.zip", "checkpoint.zip")


def atomic_save(model: MaskablePPO, path: Path) -> None:
    """Save an SB3 model zip through a temporary file and an atomic rename."""
    with atomic_path(path) as temporary:
        model.save(temporary)


def write_policy_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``policy.json`` (dataset, ranker spec, RL config, env options) atomically."""
    write_json_atomic(run_dir / POLICY_META, meta)


def read_json_mapping(path: Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON file of a run holding a mapping with the `required` keys.

    Raises:
        CRSError: The file is unreadable, truncated, not a mapping, or lacks a required key.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CRSError(
            f"{path} is damaged ({type(error).__name__}: {error}); restore it or train again"
        ) from None
    if not isinstance(data, dict):
        raise CRSError(
            f"{path} must hold a JSON mapping, found {type(data).__name__}; restore it or train again"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise CRSError(f"{path} lacks {', '.join(missing)}; restore it or train again")
    return data


def read_state(run_dir: Path) -> dict[str, Any]:
    """The ``state.json`` of the last checkpoint ({} when none)."""
    path = run_dir / STATE_FILE
    return read_json_mapping(path, ("timesteps", "best_score")) if path.is_file() else {}


def read_policy_meta(run_dir: str | Path) -> dict[str, Any]:
    """Read ``policy.json`` of a run directory.

    Raises:
        CRSError: The directory is not a trained run, or its policy.json is damaged.
    """
    path = Path(run_dir) / POLICY_META
    if not path.is_file():
        raise CRSError(
            f"{run_dir} is not a trained run directory (no {POLICY_META}); train one with `crs train`"
        )
    return read_json_mapping(path, ("catalog", "ranker", "rl"))


def model_file(run_dir: str | Path) -> Path:
    """The model a run offers for evaluation: best, else final, else the latest checkpoint."""
    for name in MODEL_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            return path
    raise CRSError(f"{run_dir} has no model ({', '.join(MODEL_FILES)}); the run has not saved one yet")
