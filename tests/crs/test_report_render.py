"""Rendering a built report: report.md and report.html print every figure the same way (one formatting
module), draw the same columns (one layout per table), report.html inlines the packaged style sheet as it
is, and metrics.json keeps its key order (the file format)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from crs.app.evaluation import run_evaluation
from crs.report import build_report, write_report
from crs.report.analysis import METRICS
from crs.report.build import Report
from crs.report.columns import COMPARISON
from crs.report.formatting import figure, interval, number
from crs.report.render import to_html, to_markdown, to_metrics
from crs.report.render_html import style_sheet


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Report, Path]:
    root = tmp_path_factory.mktemp("render")
    for policy in ("ask-4", "max-entropy"):
        run_evaluation(policy, episodes=20, seed=1, out=root / policy, show_progress=False)
    report = build_report([root / "ask-4", root / "max-entropy"], root / "report", examples=0, persona=False)
    write_report(report)
    return report, root / "report"


def test_the_written_files_are_the_renderers_output(written) -> None:
    report, out = written
    assert (out / "report.md").read_text() == to_markdown(report) == to_markdown(report)
    assert (out / "report.html").read_text() == to_html(report) == to_html(report)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(to_metrics(report)))


def test_html_inlines_the_packaged_style_sheet_unchanged(written) -> None:
    report, _ = written
    css = resources.files("crs.report").joinpath("report.css").read_text(encoding="utf-8")
    assert css == style_sheet() and "td.best { background:var(--best); }" in css
    assert f"<style>\n{css}</style>" in to_html(report)


def test_both_pages_show_the_same_figures_and_columns(written) -> None:
    report, _ = written
    (table,) = report.tables
    markdown, page = to_markdown(report), to_html(report)
    headers = [COMPARISON.label_header, *(c.header for c in COMPARISON.columns), *METRICS]
    assert "| " + " | ".join(headers) + " |" in markdown
    metric_headers = "".join(f"<th>{m}</th>" for m in METRICS)
    assert f'<th>policy</th><th class="text">ranker</th><th class="text">runs</th>{metric_headers}' in page
    for row in table.rows:
        for column in COMPARISON.columns:
            assert column.text(row) in markdown and column.text(row) in page
        for m in METRICS:
            summary = row.metrics[m]
            assert figure(summary, m) in markdown
            assert (
                f'class="mean">{number(summary.mean, m)}</span><span class="ci">{interval(summary, m)}'
                in page
            )


def test_metrics_json_keeps_its_key_order(written) -> None:
    _, out = written
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved) == [
        "title", "created", "version", "answer", "verdicts", "tables", "learning_curves", "train_summaries",
        "persona", "examples", "unavailable", "notes", "inputs", "input_list", "sessions",
    ]  # fmt: skip
    assert saved["sessions"] == []  # returning-user comparisons only with `crs eval --sessions` inputs
    (table,) = saved["tables"]
    assert list(table) == [
        "test_set",
        "separated",
        "reference",
        "rows",
        "paired_differences",
        "unpaired",
        "interaction",
    ]
    assert list(table["test_set"]) == [
        "dataset", "world_seed", "split", "user", "setting", "max_turns", "conversations",
    ]  # fmt: skip
    assert list(table["rows"][0]) == [
        "label", "ablation", "sweep", "ci", "runs", "seeds", "rankers", "conversations", "best", "metrics",
    ]  # fmt: skip
    assert list(table["rows"][0]["metrics"]) == list(METRICS)
    assert list(table["paired_differences"][0]) == ["row", "reference", "pairs", "metrics"]
