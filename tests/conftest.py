"""Shared fixtures: where the real benchmark data lives, and how its absence is handled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"

# The README runs the suite in two processes (`-n 2`), each filling a core: a second math thread, here or
# in a command a test starts, would wait for a busy core, and small torch calls then crawl (one step of a
# small MLP: 0.8 ms on one thread, 12 to 74 ms on two beside a busy core). Set before torch is imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The directory of the real SCPR/UNICORN data (../shared/data, or $CRS_DATA_DIR).

    Skips locally when the data is absent; fails under CI=true, where it must be present.
    """
    path = Path(os.environ.get("CRS_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "lastfm").is_dir():
        data_missing(f"real data not found at {path} (set CRS_DATA_DIR or put ../shared/data by the repo)")
    return path


def data_missing(message: str) -> None:
    """Skip the test locally; fail it under CI=true, where the real data must be present."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
