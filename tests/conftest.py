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


# The README runs the suite in two processes, each taking one module at a time in the order below
# (`--no-loadscope-reorder` in pyproject.toml keeps it; xdist's own order, most tests first, put the
# module of the longest fixture last, and the run ended with one process working alone). The slowest
# modules go first, longest first, so that the short ones fill the gaps at the end. Measured in session 44
# (seconds of one process, two running, after its cuts): 65, 60, 50, 50, 47, 46, 42, 42, 41, 38, 34,
# 29, 27, 27, 26, then 24 to 14. The other modules follow in collection order. A module missing here
# only runs later.
SLOWEST_FIRST = (
    "tests/crs/test_ablation_end_to_end.py",
    "tests/policies/test_rl_policy.py",
    "tests/crs/test_listening_policy.py",
    "tests/crs/test_sweep.py",
    "tests/envs/test_action_fuzz.py",
    "tests/crs/test_ranker_pinning.py",
    "tests/crs/test_train_trust.py",
    "tests/crs/test_sweep_kill.py",
    "tests/crs/test_train_cmd.py",
    "tests/crs/test_report.py",
    "tests/crs/test_parallel.py",
    "tests/crs/test_train_kills.py",
    "tests/crs/test_output_claims.py",
    "tests/crs/test_parallel_ray.py",
    "tests/crs/test_sessions_real_data.py",
    "tests/simulators/test_mcmipl.py",
    "tests/crs/test_run_consumers.py",
    "tests/crs/test_train_eval_pass2_mutants.py",
    "tests/policies/test_imitation.py",
    "tests/crs/test_report_train.py",
    "tests/policies/test_pretrain_persona.py",
    "tests/crs/test_chat.py",
    "tests/simulators/test_mcmipl_yelp.py",
    "tests/crs/test_sweep_sessions.py",
    "tests/envs/test_vector_envs.py",
    "tests/test_readme_rl_example.py",
    "tests/crs/test_report_input_list.py",
    "tests/envs/test_registered.py",
    "tests/crs/test_sweep_extend.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules of `SLOWEST_FIRST` first, in its order; the rest keep theirs (a stable sort)."""
    rank = {path: place for place, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
