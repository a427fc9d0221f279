"""`crs report` on a folder of evaluations says up front, in one list, which inputs it used (and in which
table) and which it left out, each with the reason: other settings and conversations, duplicates,
unreadable runs, folders of something else, and folders of inputs one level too deep."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crs.app.evaluation import run_evaluation
from crs.cli import app
from crs.report import build_report, load_inputs, write_report
from crs.report.ledger import TRAIN_ONLY
from simulators.errors import CRSError
from tests.crs.test_report import _train_run

runner = CliRunner()
EPISODES = 20


def _eval(out: Path, policy: str, *, episodes: int = EPISODES, setting: str | None = None) -> Path:
    run_evaluation(policy, episodes=episodes, seed=1, out=out, setting=setting, show_progress=False)
    return out


@pytest.fixture(scope="module")
def evals(tmp_path_factory) -> Path:
    """``out/eval`` as a user leaves it: two policies on the same conversations, one run in another
    question setting, one on fewer conversations, a copy, a corrupt run, a folder of something else and
    a folder holding runs one level further down."""
    root = tmp_path_factory.mktemp("inputs") / "eval"
    _eval(root / "ask-4", "ask-4")
    _eval(root / "max-entropy", "max-entropy")
    _eval(root / "ask-4-binary", "ask-4", setting="binary")
    _eval(root / "ask-4-15", "ask-4", episodes=15)
    shutil.copytree(root / "ask-4", root / "ask-4-copy")
    shutil.copytree(root / "max-entropy", root / "broken")
    (root / "broken" / "summary.json").write_text("{")
    (root / "plots").mkdir()
    (root / "plots" / "sr.png").write_bytes(b"")
    shutil.copytree(root / "max-entropy", root / "older" / "max-entropy")
    (root / ".ipynb_checkpoints").mkdir()  # hidden: no input, and not worth a line
    return root


LEFT_OUT = {
    "ask-4-copy": "repeats {root}/ask-4 (same configuration, seed and conversations); read once",
    "broken": "unreadable: {root}/broken/summary.json is corrupt",
    "plots": "not an input (no summary.json + episodes.jsonl of `crs eval`",
    "older": "a folder of inputs (only those directly in {root} are read); pass it as an input",
}


def _fingerprints(root: Path) -> set[str]:
    """The conversation hashes of the runs under `root` (what the list must not be made of)."""
    summaries = [path for path in root.glob("*/summary.json") if path.parent.name != "broken"]
    return {json.loads(path.read_text())["conversations"] for path in summaries}


def test_the_terminal_lists_used_and_left_out_inputs_first_with_reasons(evals, tmp_path) -> None:
    result = runner.invoke(
        app,
        ["report", str(evals), "--out", str(tmp_path / "r"), "--examples", "0", "--no-persona"],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    head, _, rest = result.output.partition("table 1: persona_world")
    lines = head.splitlines()
    assert lines[0] == "inputs: 4 used, 4 left out", result.output
    assert lines[1] == f"  table 1: {evals}/ask-4, {evals}/max-entropy"
    assert lines[2] == (
        f"  table 2: {evals}/ask-4-15 — separate from table 1: other test conversations (15 conversations, "
        "eval seed 1; table 1: 20 conversations, eval seed 1)"
    )
    assert lines[3] == (
        f"  table 3: {evals}/ask-4-binary — separate from table 1: other question setting (binary)"
    )
    left = {line.split(" — ")[0].removeprefix("  left out: "): line for line in lines[4:] if line.strip()}
    assert sorted(left) == sorted(str(evals / name) for name in LEFT_OUT)
    for name, reason in LEFT_OUT.items():
        assert reason.format(root=evals) in left[str(evals / name)], left[str(evals / name)]
    assert ".ipynb_checkpoints" not in result.output
    # the list replaced the warnings: no conversation hash anywhere in the terminal output
    assert not any(fingerprint in result.output for fingerprint in _fingerprints(evals))
    assert "table 2: persona_world" in rest and "table 3: persona_world" in rest


def test_a_folder_given_twice_is_read_once_and_said(evals) -> None:
    inputs = load_inputs([evals / "ask-4", evals / "max-entropy", f"{evals}/ask-4/"])
    assert len(inputs.evals) == 2
    assert [(entry.path, entry.reason) for entry in inputs.left_out] == [
        (Path(f"{evals}/ask-4/"), "given twice: read once")
    ]


def test_a_folder_inside_another_given_is_read_once_and_said(evals) -> None:
    """A run inside a folder given before it was dropped in silence ("2 used" for 3 inputs, naming 2)."""
    inputs = load_inputs([evals, evals / "ask-4"])
    assert len(inputs.evals) == len(load_inputs([evals]).evals)
    assert (evals / "ask-4", f"inside {evals}, which is given too: read once") in [
        (entry.path, entry.reason) for entry in inputs.left_out
    ]


def test_the_pages_open_with_the_same_list(evals, tmp_path) -> None:
    report = build_report([evals], tmp_path / "r", examples=0, persona=False, figures=False)
    write_report(report)
    assert [(line.used, line.where) for line in report.input_list] == [
        (True, "table 1"),
        (True, "table 2"),
        (True, "table 3"),
        *[(False, "")] * 4,
    ]
    markdown = (tmp_path / "r" / "report.md").read_text()
    top = markdown.split("## The answer", 1)[0]
    assert "**Inputs** (4 used, 4 left out):" in top
    assert f"- table 1: `{evals}/ask-4`, `{evals}/max-entropy`" in top
    for name, reason in LEFT_OUT.items():
        assert f"- **left out**: `{evals / name}` — {reason.format(root=evals)}" in top
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.index('id="input-list"') < html.index('id="answer"')
    section = html.split('<section id="input-list">', 1)[1].split("</section>", 1)[0]
    assert "Inputs: 4 used, 4 left out" in section and section.count('<li class="left-out">') == 4
    assert f"<code>{evals}/broken</code>" in section
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())["input_list"]
    assert saved == [
        {"used": line.used, "where": line.where, "reason": line.reason, "paths": list(line.paths)}
        for line in report.input_list
    ]
    # the notes no longer repeat what the list says
    assert not any("repeats" in note or "other test conversations" in note for note in report.notes)


def test_a_configuration_on_other_conversations_is_not_pooled_as_a_second_seed(evals, tmp_path) -> None:
    """ask-4 on 20 and on 15 conversations, both eval seed 1: two runs of one seed are not two seeds;
    each sits in the table of its conversations."""
    report = build_report(
        [evals / "ask-4", evals / "ask-4-15", evals / "max-entropy"],
        tmp_path / "r",
        examples=0,
        persona=False,
        figures=False,
    )
    first, second = report.tables
    assert [(row.label, row.n_runs, row.n_conversations) for row in first.rows] == [
        ("ask-4", 1, EPISODES),
        ("max-entropy", 1, EPISODES),
    ]
    assert [(row.label, row.n_runs, row.n_conversations) for row in second.rows] == [("ask-4", 1, 15)]


def test_a_folder_passed_by_name_must_read_and_nothing_readable_is_an_error(evals, tmp_path) -> None:
    with pytest.raises(CRSError, match=r"broken/summary\.json is corrupt"):
        load_inputs([evals / "broken"])
    only_broken = tmp_path / "only"
    shutil.copytree(evals / "broken", only_broken / "broken")
    (only_broken / "notes").mkdir()
    with pytest.raises(CRSError) as error:
        load_inputs([only_broken])
    message = str(error.value)
    assert message.startswith(f"no eval or train runs found in {only_broken}")
    assert f"{only_broken}/broken left out (unreadable: " in message
    assert re.search(r"re-run `crs eval --out [^`]*broken --overwrite`", message)
    assert f"{only_broken}/notes left out (not an input" in message


def test_train_runs_are_listed_by_their_folder(tmp_path) -> None:
    """A train run stands for its own eval/ records in a table; one without records is listed as such."""
    full = _train_run(tmp_path / "runs", "full-s1", "ask-4", True, True)
    bare = tmp_path / "runs" / "bare-s1"
    shutil.copytree(full, bare)
    shutil.rmtree(bare / "eval")
    report = build_report([tmp_path / "runs"], tmp_path / "r", examples=0, persona=False, figures=False)
    assert [line.text() for line in report.input_list] == [
        f"table 1: {full}",
        f"{TRAIN_ONLY}: {bare}",
    ]


def test_a_train_run_whose_records_repeat_another_is_not_said_to_have_none(tmp_path) -> None:
    """A run trained again with the same settings (its records repeat the first's, read once) was listed
    under "train runs without episode records" as well as under "repeats"."""
    full = _train_run(tmp_path / "runs", "full-s1", "ask-4", True, True)
    again = tmp_path / "again" / "full-s1"
    shutil.copytree(full, again)
    report = build_report([full, again], tmp_path / "r", examples=0, persona=False, figures=False)
    lines = [line.text() for line in report.input_list]
    assert not any(line.startswith(TRAIN_ONLY) for line in lines), lines
    assert any(str(again) in line and "repeats" in line for line in lines), lines


def test_a_folder_given_by_two_spellings_is_read_once_and_said(evals, monkeypatch) -> None:
    """Guards against comparing the given paths as typed: ``<root>/ask-4`` and ``ask-4`` from inside
    ``<root>`` are one folder, so the second is listed as given twice."""
    monkeypatch.chdir(evals)
    inputs = load_inputs([evals / "ask-4", Path("ask-4")])
    assert len(inputs.evals) == 1
    assert [(entry.path, entry.reason) for entry in inputs.left_out] == [
        (Path("ask-4"), "given twice: read once")
    ]


@pytest.mark.parametrize("damage", ["no episodes", "no summary", "corrupt summary"])
def test_the_fix_an_unreadable_evaluation_is_given_works_as_written(tmp_path, damage) -> None:
    """The report's fix for a damaged `crs eval` folder is a command `crs eval` then carries out (it said
    `--overwrite` for a folder missing a file, which `crs eval` refuses to empty)."""
    folder = tmp_path / "e"
    run_evaluation("ask-2", episodes=4, out=folder, show_progress=False)
    if damage == "no episodes":
        (folder / "episodes.jsonl").unlink()
    elif damage == "no summary":
        (folder / "summary.json").unlink()
    else:
        (folder / "summary.json").write_text("{")
    with pytest.raises(CRSError) as error:
        load_inputs([folder])
    fix = re.search(r"(delete \S+ and )?re-run `(crs eval [^`]*)`", str(error.value))
    assert fix is not None, str(error.value)
    if fix.group(1):
        shutil.rmtree(folder)
    result = CliRunner().invoke(app, [*fix.group(2).split()[1:], "-p", "ask-2", "-n", "4"])
    assert result.exit_code == 0, result.output
    assert len(load_inputs([folder]).evals) == 1


def test_examples_come_from_the_first_table_of_plain_conversations(evals, tmp_path) -> None:
    """A returning-user table first left the whole report without example dialogues ("the first table is
    of returning users"), though the next table's conversations replay."""
    from tests.crs.test_report_sessions import write_folder

    returning = write_folder(tmp_path, "frozen", 0)
    report = build_report([returning, evals / "ask-4"], tmp_path / "r", persona=False, figures=False)
    assert report.tables[0].rows[0].runs[0].summary.sessions is not None  # table 1: returning users
    assert report.examples and report.examples_table == 1 and "examples" not in report.unavailable
    write_report(report)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert f"_From table 2: {report.tables[1].title}._" in markdown.replace("\\", "")
