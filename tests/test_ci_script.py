"""CI proves what the README says: `.ci/run` ends in `.ci/test-in-copy`, which runs the README's test
command as written, with COLUMNS=80, in a copy of the checkout under a long path."""

from __future__ import annotations

import re
from pathlib import Path

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
