"""CI proves what the README says: `.ci/run` ends in `.ci/test-in-copy`, which runs the README's test
command as written, with COLUMNS=80, in a copy of the checkout under a long path."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from tests.conftest import SLOWEST_FIRST, pytest_collection_modifyitems

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_in_a_long_copy_at_80_columns() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"Run the tests:\n\n```bash\n(.+?)\n```", readme)
    assert found is not None, "README.md lost its 'Run the tests:' block"
    script = (REPO / ".ci" / "test-in-copy").read_text(encoding="utf-8")
    assert f"\n{found.group(1)} || exit $?\n" in script
    assert "\nexport COLUMNS=80\n" in script and '-le 150 ]; do copy="$copy/' in script
    assert "git status --porcelain --ignored" in script
    assert (REPO / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith("\n.ci/test-in-copy")


def test_the_slowest_modules_start_first_and_xdist_keeps_that_order() -> None:
    """Each module `SLOWEST_FIRST` names exists (a renamed one would lose its place at the front), the
    hook moves them to the front in its order and keeps the others' order, and pytest's options keep
    xdist from sorting modules by their number of tests instead."""
    assert [path for path in SLOWEST_FIRST if not (REPO / path).is_file()] == []
    names = [
        "tests/a.py::x",
        SLOWEST_FIRST[1] + "::y",
        "tests/b.py::z",
        SLOWEST_FIRST[0] + "::w",
        "tests/a.py::v",
    ]
    items = [cast(pytest.Item, SimpleNamespace(nodeid=name)) for name in names]
    pytest_collection_modifyitems(items)
    assert [item.nodeid for item in items] == [names[3], names[1], names[0], names[2], names[4]]
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '\naddopts = "-ra --dist loadscope --no-loadscope-reorder"\n' in pyproject
