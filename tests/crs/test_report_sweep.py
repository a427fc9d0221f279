"""`crs report` on a `crs sweep` folder: one row per configuration (dataset, policy, ablation) whose
figures are the mean over seeds of each task's metrics, with a Student-t CI across seeds; unfinished
task folders are never read and are listed as left out."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from crs.app.evaluation import run_evaluation
from crs.app.sweep import DONE_MARKER, RUNS_DIR, SWEEP_FILE, TASK_FILE, SweepConfig, run_sweep, task_dir
from crs.cli import app
from crs.report import build_report, load_inputs, read_sweep_dir
from crs.report.analysis import METRICS, PROPORTIONS
from envs.metrics import bootstrap_ci
from simulators.errors import CRSError

runner = CliRunner()
EPISODES = 20
SEEDS = (1, 2)
POLICIES = ("ask-4", "max-entropy")
MAX_TURNS = 15


def _values_by_hand(folder: Path) -> dict[str, list[float]]:
    """A task's per-conversation metric values, recomputed from its episodes.jsonl with the formulas of
    the design: SR@t = success within t agent actions; AT = actions of a success, 15 for a failure;
    hDCG = 1/log2(s+3) + (1/log2(s+2) - 1/log2(s+3)) / log2(r+1) at 0-based step s = actions - 1 and
    1-based rank r, 0 for a failure."""
    raw = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines() if line]
    out = {f"SR@{t}": [float(r["success"] and r["agent_actions"] <= t) for r in raw] for t in (5, 10, 15)}
    out["AT"] = [float(r["agent_actions"] if r["success"] else MAX_TURNS) for r in raw]
    out["hDCG"] = []
    for r in raw:
        s, rank = r["agent_actions"] - 1, r["rank"]
        upper, lower = 1 / math.log2(s + 3), 1 / math.log2(s + 2)
        out["hDCG"].append(upper + (lower - upper) / math.log2(rank + 1) if r["success"] else 0.0)
    return out


def _metrics_by_hand(folder: Path) -> dict[str, float]:
    """A task's metric means (`_values_by_hand`)."""
    return {m: sum(values) / len(values) for m, values in _values_by_hand(folder).items()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real sweep on the persona world: 2 policies x 2 seeds, 20 conversations per task, serial; then
    one unfinished task folder (a valid copy of a finished task, seed 3, without its `done` marker) and
    one interrupted attempt (hidden staging folder holding a corrupt summary.json)."""
    out = tmp_path_factory.mktemp("sweeps") / "rules"
    config = SweepConfig.model_validate(
        {"seeds": list(SEEDS), "policies": list(POLICIES), "eval": {"episodes": EPISODES}}
    )
    outcome = run_sweep(config, out, backend="serial")
    assert not outcome.failed and len(outcome.ran) == len(SEEDS) * len(POLICIES) == 4
    half = task_dir(out, "persona_world-ask-4-default-s3")
    shutil.copytree(task_dir(out, "persona_world-ask-4-default-s1"), half)
    task = json.loads((half / TASK_FILE).read_text())
    (half / TASK_FILE).write_text(json.dumps({**task, "name": half.name, "seed": 3}))
    (half / DONE_MARKER).unlink()
    attempt = out / RUNS_DIR / ".persona_world-max-entropy-default-s3.tmp-0123abcd"
    attempt.mkdir()
    (attempt / "summary.json").write_text("{")
    return out


def test_sweep_report_has_one_row_per_configuration_with_the_mean_over_seeds(sweep, tmp_path) -> None:
    result = runner.invoke(
        app,
        ["report", str(sweep), "--out", str(tmp_path / "report"), "--examples", "0", "--no-persona"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    # The unfinished folders are listed up front as left out, and not read (the corrupt one would raise).
    assert result.output.startswith(f"inputs: 1 used, 1 left out\n  table 1: {sweep} (4 tasks)\n")
    unfinished = "skipped 2 unfinished task folder(s) without the `done` marker (not read)"
    assert f"left out: {sweep / RUNS_DIR} — {unfinished}" in result.output
    assert "persona_world-ask-4-default-s3" in result.output
    # the attempt by its task's name (the staging folder's dot and suffix taken off)
    assert " persona_world-max-entropy-default-s3 (interrupted attempt)" in " ".join(result.output.split())
    assert ".persona_world-max-entropy" not in result.output and ".tmp-0123abcd" not in result.output

    (table,) = json.loads((tmp_path / "report" / "metrics.json").read_text())["tables"]
    assert table["test_set"]["dataset"] == "persona_world"
    assert [row["label"] for row in table["rows"]] == list(POLICIES)
    for row, policy in zip(table["rows"], POLICIES, strict=True):
        tasks = [task_dir(sweep, f"persona_world-{policy}-default-s{seed}") for seed in SEEDS]
        assert row["sweep"] == {
            "dataset": "persona_world",
            "policy": policy,
            "ablation": "default",
            "group": f"persona_world-{policy}-default",
        }
        assert row["runs"] == [str(path) for path in tasks]  # seed 3 (no `done` marker) is not among them
        assert row["seeds"] == list(SEEDS) and row["ci"] == "seeds" and row["conversations"] == EPISODES
        per_task = [_metrics_by_hand(path) for path in tasks]
        for path, values in zip(tasks, per_task, strict=True):  # the hand formulas are crs eval's
            written = json.loads((path / "summary.json").read_text())["metrics"]
            assert {m: written[m]["mean"] for m in METRICS} == pytest.approx(values, abs=1e-12)
        for metric in METRICS:
            means = [values[metric] for values in per_task]
            mean = sum(means) / 2
            # Student-t 95% CI across n = 2 seeds: half-width t(0.975, 1) * sd / sqrt(2), sd with n - 1.
            sd = math.sqrt(sum((m - mean) ** 2 for m in means) / (2 - 1))
            half = stats.t.ppf(0.975, 1) * sd / math.sqrt(2)
            summary = row["metrics"][metric]
            assert summary["mean"] == pytest.approx(mean, abs=1e-12), (policy, metric)
            low, high = mean - half, mean + half
            # never narrower than the bootstrap over both seeds' conversations (seeds that agree gave [m, m])
            pooled = bootstrap_ci(
                np.array([v for path in tasks for v in _values_by_hand(path)[metric]]), seed=1
            )
            low, high = (
                min(low, mean - (pooled.mean - pooled.low)),
                max(high, mean + (pooled.high - pooled.mean)),
            )
            if metric in PROPORTIONS:  # clipped to [0, 1]
                low, high = max(low, 0.0), min(high, 1.0)
            elif metric == "AT":  # clipped to [1, the 15-turn limit]
                low, high = max(low, 1.0), min(high, 15.0)
            assert summary["low"] == pytest.approx(low, abs=1e-9)
            assert summary["high"] == pytest.approx(high, abs=1e-9)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "2 seeds (1, 2)" in markdown and "sweep task persona_world-ask-4-default-s1" in markdown
    # a paper's table says it lacks the unfinished tasks (only the terminal and report.md named them)
    tex = " ".join((tmp_path / "report" / "tables.tex").read_text().split())
    assert "Incomplete: 2 sweep task(s) unfinished or not run are not in this table" in tex


def test_a_sweeps_runs_folder_reads_as_the_sweep_and_a_lone_unfinished_task_is_refused(sweep) -> None:
    whole = read_sweep_dir(sweep)
    via_runs = load_inputs([sweep / RUNS_DIR])
    assert [run.path for run in via_runs.evals] == [run.path for run in whole.evals]
    assert len(whole.evals) == 4 and via_runs.left_out == whole.left_out and len(whole.left_out) == 1
    assert sorted({run.task.group for run in whole.evals}) == [f"persona_world-{p}-default" for p in POLICIES]
    with pytest.raises(CRSError, match=r"unfinished sweep task .*no `done` marker"):
        load_inputs([task_dir(sweep, "persona_world-ask-4-default-s3")])
    lone = load_inputs([task_dir(sweep, "persona_world-ask-4-default-s1")])
    assert lone.evals[0].task is not None and lone.evals[0].task.label == "ask-4"


def test_a_sweep_with_no_finished_task_or_mixed_test_sets(sweep, tmp_path) -> None:
    empty = tmp_path / "empty"
    (empty / RUNS_DIR / "persona_world-ask-4-default-s1").mkdir(parents=True)
    shutil.copy(sweep / SWEEP_FILE, empty / SWEEP_FILE)
    with pytest.raises(CRSError, match=r"has no finished task \(1 unfinished, 3 not run\)"):
        load_inputs([empty])
    # a sweep all of whose tasks failed has no runs/ folder: still a sweep, not "not a sweep directory"
    failed = tmp_path / "failed"
    failed.mkdir()
    shutil.copy(sweep / SWEEP_FILE, failed / SWEEP_FILE)
    with pytest.raises(CRSError, match=r"has no finished task \(0 unfinished, 4 not run\)"):
        load_inputs([failed])
    # Another persona world (world seed 1) is another test set: its own table, never a row of the sweep's.
    other = tmp_path / "world1"
    run_evaluation("ask-4", episodes=10, seed=1, out=other, world_seed=1, show_progress=False)
    # beside other inputs, a sweep without a finished task is left out with its reason: the report goes on
    mixed = load_inputs([failed, other])
    assert [run.path for run in mixed.evals] == [other]
    assert [entry.path for entry in mixed.left_out] == [failed]
    assert "has no finished task (0 unfinished, 4 not run); rerun `crs sweep" in mixed.left_out[0].reason
    report = build_report([sweep, other], tmp_path / "report", examples=0, persona=False)
    assert [[row.label for row in t.rows] for t in report.tables] == [
        list(POLICIES),
        ["ask-4"],
    ]
    assert [t.test_set.world_seed for t in report.tables] == [0, 1]
    assert any("figures from different datasets are not comparable" in note for note in report.notes)
