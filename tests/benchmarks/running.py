"""Where the benchmark scripts are, and running one's `main` as its command line would."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def call_main(module: ModuleType, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    """Run a script's `main` with `argv` as its command line."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    module.main()
