"""`crs report` on damaged or hostile `crs eval` folders: every value the report loops, indexes or seeds
with is checked when the files are read (a one-line `CRSError` naming the file, the field, the value and
the fix), so no input makes the report hang, crash with a traceback, or name the wrong item; a bad folder
among a folder of runs is left out with the reason; a policy named "_..." keeps its legend entry."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import crs.report.plots as plots
from crs.app.evaluation import run_evaluation
from crs.report import build_report, load_inputs
from crs.report.examples import replay
from crs.report.sessions import session_comparisons
from envs.metrics import EpisodeRecord, summarize
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError

MAX_TURNS = 15
HUGE = "1e999"
"""A JSON number Python reads as inf: `dump` writes the string "1e999" as that bare number."""


def dump(data: Any) -> str:
    """`data` as JSON, each string value "1e999" written as the number 1e999."""
    return json.dumps(data).replace(f'"{HUGE}"', HUGE)


def lines(n: int = 20, sessions: int | None = None) -> list[dict[str, Any]]:
    """`n` records of successes after 1 to 5 actions and failures at the turn limit (T - 1 actions);
    with `sessions`, the lines of `n` returning users playing that many sessions each."""
    out = []
    for index in range(n * (sessions or 1)):
        ok = index % 4 != 3
        actions = 1 + index % 5 if ok else MAX_TURNS - 1
        line = {
            "goal_index": index,
            "user": index,
            "targets": [index],
            "success": ok,
            "agent_actions": actions,
            "rank": 1 if ok else None,
            "total_reward": 1.0 if ok else -1.0,
            "kinds": ["ask"] * (actions - 1) + ["recommend"],
        }
        if sessions is not None:
            line.update(sequence=index // sessions, session=index % sessions, change_session=None)
        out.append(line)
    return out


def write_eval(
    folder: Path,
    records: list[dict[str, Any]],
    *,
    policy: str = "ask-4",
    sessions: dict[str, Any] | None = None,
    **fields: Any,
) -> Path:
    """A `crs eval` folder written by hand: its summary's metrics are those of `records` at T =
    `MAX_TURNS` (so the report's own check passes; the same at any T when all succeed; pass
    ``metrics={}`` for records that do not read) and `fields` replace summary.json keys as written."""
    folder.mkdir(parents=True)
    if "metrics" not in fields:
        metrics = summarize([EpisodeRecord.from_dict(r) for r in records], MAX_TURNS)
        fields["metrics"] = {name: dataclasses.asdict(value) for name, value in metrics.items()}
    summary: dict[str, Any] = {
        "policy": policy,
        "policy_spec": policy,
        "dataset": "persona_world",
        "split": "test",
        "ranker": "popularity",
        "user": "persona",
        "setting": "multiple_choice",
        "episodes": len(records),
        "seed": 1,
        "world_seed": 0,
        "conversations": "hand-written",
        "max_turns": MAX_TURNS,
        "notes": [],
        "seconds": 1.0,
        "conversations_per_second": 1.0,
        "versions": {},
        **fields,
    }
    if sessions is not None:
        summary["sessions"] = {
            "regime": "stable",
            "sequences": 20,
            "memory": "frozen",
            "rows": [],
            **sessions,
        }
    (folder / "summary.json").write_text(dump(summary))
    (folder / "episodes.jsonl").write_text("".join(dump(r) + "\n" for r in records))
    return folder


def refusal(folder: Path) -> str:
    """The one-line error `crs report` reads `folder` with."""
    with pytest.raises(CRSError) as caught:
        load_inputs([folder])
    message = str(caught.value)
    assert "\n" not in message and "re-run `crs eval" in message, message
    return message


# ------------------------------------------------------------------------------------------ summary.json
def test_a_turn_limit_beyond_the_range_is_refused_not_looped_over(tmp_path: Path) -> None:
    """All successes: the metric means do not depend on T, so only the range check stops a report that
    would bootstrap and draw every turn up to 100000."""
    successes = [r for r in lines() if r["success"]]
    message = refusal(write_eval(tmp_path / "e", successes, max_turns=100000))
    assert "summary.json [max_turns] = 100000" in message and "between 2 and 100" in message


@pytest.mark.parametrize("max_turns", [1, 0, -5, HUGE])
def test_a_turn_limit_below_two_or_not_a_number_is_refused(tmp_path: Path, max_turns: Any) -> None:
    successes = [r for r in lines() if r["success"]]
    assert "[max_turns]" in refusal(write_eval(tmp_path / "e", successes, max_turns=max_turns))


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", HUGE), ("seed", -1), ("episodes", HUGE), ("world_seed", -1), ("world_seed", HUGE)],
)
def test_a_seed_or_count_out_of_range_is_a_one_line_error(tmp_path: Path, field: str, value: Any) -> None:
    message = refusal(write_eval(tmp_path / "e", lines(), **{field: value}))
    assert f"summary.json [{field}] = " in message and ">= 0" in message


# ---------------------------------------------------------------------------------------- episodes.jsonl
@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [
        ("goal_index", HUGE, ">= 0"),
        ("goal_index", -1, ">= 0"),
        ("targets", [-1], ">= 0"),
        ("agent_actions", 0, "between 1 and 14"),
        ("agent_actions", MAX_TURNS, "between 1 and 14"),  # the opening is turn 1 of T: T - 1 at most
        ("agent_actions", HUGE, "between 1 and 14"),
        ("rank", 0, ">= 1"),
    ],
)
def test_a_record_value_no_conversation_ends_with_is_refused(
    tmp_path: Path, field: str, value: Any, bound: str
) -> None:
    records = lines()
    records[2][field] = value
    message = refusal(write_eval(tmp_path / "e", records, metrics={}))
    assert f"episodes.jsonl line 3 [{field}] = " in message and bound in message


# -------------------------------------------------------------------------------------- sessions block
@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        (0, "[sessions] [sessions] = 0 must be an integer >= 1"),
        (2000, "[sessions] [sessions] = 2000 but the last session"),  # 2000 curves points from 3 sessions
        (2, "line 3 [session] = 2 must be an integer between 0 and 1"),
    ],
)
def test_a_sessions_block_must_count_the_sessions_of_its_records(
    tmp_path: Path, stated: int, expected: str
) -> None:
    folder = write_eval(tmp_path / "e", lines(20, sessions=3), sessions={"sessions": stated})
    assert expected in refusal(folder)


def test_a_session_line_with_a_huge_sequence_is_a_one_line_error(tmp_path: Path) -> None:
    records = lines(20, sessions=3)
    records[0]["sequence"] = HUGE
    folder = write_eval(tmp_path / "e", records, sessions={"sessions": 3})
    with pytest.raises(CRSError, match="lacks the session fields"):
        session_comparisons(load_inputs([folder]).evals)


# ---------------------------------------------------------------------------------------- folder of runs
def test_a_poisoned_folder_among_runs_is_left_out_with_the_reason(tmp_path: Path) -> None:
    write_eval(tmp_path / "runs" / "good", lines())
    write_eval(tmp_path / "runs" / "overflow", lines(), seed=HUGE)
    write_eval(tmp_path / "runs" / "negative", lines(), world_seed=-1)
    inputs = load_inputs([tmp_path / "runs"])
    assert [run.path.name for run in inputs.evals] == ["good"]
    reasons = {entry.path.name: entry.reason for entry in inputs.left_out}
    assert "[seed] = inf" in reasons["overflow"] and "[world_seed] = -1" in reasons["negative"]


# ------------------------------------------------------------------------------------------------ plots
def test_a_policy_named_with_a_leading_underscore_keeps_its_legend_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib leaves a label starting with "_" out of a legend; the report must not."""
    figures: dict[str, Any] = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.__setitem__(path.name, fig))
    paths = [write_eval(tmp_path / name, lines(), policy=name) for name in ("ask-4", "_maxent")]
    build_report(paths, tmp_path / "report", examples=0, persona=False)
    for name in ("sr_curves.png", "turns.png"):
        legend = figures[name].axes[0].get_legend()
        assert sorted(t.get_text().replace("\u200b", "") for t in legend.get_texts()) == ["_maxent", "ask-4"]
    plots.plt.close("all")


# ------------------------------------------------------------------------- targets outside the catalogue
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ask-4 on 20 conversations of the default persona world (seconds)."""
    out = tmp_path_factory.mktemp("eval") / "ask-4"
    run_evaluation("ask-4", episodes=20, seed=1, out=out, show_progress=False)
    return out


@pytest.mark.parametrize("target", [10**6, -1])
def test_a_replayed_record_with_a_target_outside_the_catalogue_is_refused(
    evaluated: Path, target: int
) -> None:
    """An id past the catalogue was an IndexError; a negative one silently named the last item."""
    (run,) = load_inputs([evaluated]).evals
    catalog = DatasetSpec("persona_world", None, 0).load()
    record = dataclasses.replace(run.records[0], targets=(target,))
    with pytest.raises(CRSError, match=rf"\[targets\] = \[{target}\], no item of the persona_world"):
        replay(run, record, catalog, "ask-4")


def test_a_report_of_records_naming_a_target_outside_the_catalogue_says_why_without_examples(
    evaluated: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "edited"
    shutil.copytree(evaluated, folder)
    records = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    records[0]["targets"] = [10**6]
    (folder / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report([folder], tmp_path / "report", examples=2, persona=False)
    assert not report.examples and "[targets] = [1000000]" in report.unavailable["examples"]


def test_a_report_of_records_naming_a_conversation_past_the_split_says_why_without_examples(
    evaluated: Path, tmp_path: Path
) -> None:
    """Guards against an off-by-one in the catalogue check: goal index = the split's size is already
    outside it, and must be said (another catalogue), not crash the report with an IndexError."""
    size = len(DatasetSpec("persona_world", None, 0).load().splits["test"])
    folder = tmp_path / "edited"
    shutil.copytree(evaluated, folder)
    records = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    records[0]["goal_index"] = size
    (folder / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report([folder], tmp_path / "report", examples=2, persona=False)
    assert not report.examples
    assert f"conversation {size} was user {records[0]['user']}'s" in report.unavailable["examples"]
