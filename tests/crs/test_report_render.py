"""Rendering a built report: report.md and report.html print every figure the same way (one formatting
module), draw the same columns (one layout per table), report.html inlines the packaged style sheet as it
is, metrics.json keeps its key order (the file format), and tables.tex is well-formed LaTeX."""

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
from crs.report.render import to_html, to_latex, to_markdown, to_metrics
from crs.report.render_html import style_sheet
from crs.report.render_latex import escape


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
        "separated_fix",
        "reference",
        "rows",
        "paired_differences",
        "unpaired",
        "paired_whole",
        "rankers_alone",
        "over_own_rankers",
        "interaction",
    ]
    assert list(table["test_set"]) == [
        "dataset", "world_seed", "world", "split", "user", "setting", "max_turns", "sessions", "regime",
        "pair_unit", "conversations",
    ]  # fmt: skip
    assert (table["test_set"]["sessions"], table["test_set"]["pair_unit"]) == (None, "conversations")
    assert list(table["rows"][0]) == [
        "label", "ablation", "sweep", "ci", "runs", "seeds", "rankers", "conversations",
        "conversations_per_run", "best", "metrics",
    ]  # fmt: skip
    assert list(table["rows"][0]["metrics"]) == list(METRICS)
    assert list(table["paired_differences"][0]) == ["row", "reference", "pairs", "metrics"]


def test_latex_escapes_every_special_character() -> None:
    assert escape("lastfm_star 5% & #1 {a} ~b^c \\d $e") == (
        r"lastfm\_star 5\% \& \#1 \{a\} \textasciitilde{}b\textasciicircum{}c \textbackslash{}d \$e"
    )
    assert escape("Yelp* −0.01 [x]") == r"Yelp$^*$ $-$0.01 {[}x{]}"


def balanced(text: str) -> bool:
    """Whether the braces that LaTeX reads as groups (not ``\\{``, but ``\\\\{``) balance."""
    depth = 0
    for index, char in enumerate(text):
        backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
        if char in "{}" and backslashes % 2 == 0:
            depth += 1 if char == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def test_latex_tables_show_every_row_figure_and_best_mark(written) -> None:
    report, out = written
    tex = (out / "tables.tex").read_text()
    assert tex == to_latex(report)
    (table,) = report.tables
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert r"\toprule" in tex and r"\label{tab:crs-comparison-1}" in tex
    assert balanced(tex)
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert "persona_world" not in "\n".join(body)  # escaped in the caption
    assert "persona\\_world (world seed 0), test split" in tex
    assert f"{table.rows[0].n_conversations:,} conversations per run" in tex
    shared = [c for c in COMPARISON.columns if len({c.text(row) for row in table.rows}) == 1]
    assert "every row: " + "; ".join(f"{c.header}: {c.text(table.rows[0])}" for c in shared) in tex
    n_columns = 1 + len(COMPARISON.columns) - len(shared) + len(METRICS)
    for row in table.rows:
        line = next(line for line in body if line.startswith(escape(row.label) + " & "))  # diffs come later
        assert line.count(" & ") == n_columns - 1 and line.endswith(r" \\")
        assert line.count(r"\textbf{") == len(row.best)
        for m in METRICS:
            mean = number(row.metrics[m].mean, m)
            cell = rf"\textbf{{{mean}}}" if m in row.best else rf"\begin{{tabular}}[t]{{@{{}}r@{{}}}}{mean}\\"
            assert cell in line
    (diff,) = table.diffs
    (line,) = [line for line in body if line.startswith(escape(diff.label) + f" & {diff.n_pairs:,} & ")]
    assert line.count(r"$^\dagger$") == sum(diff.significant(m) for m in METRICS)
