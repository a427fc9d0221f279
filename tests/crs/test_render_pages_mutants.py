"""report.html and report.md section by section, checked where a mutation audit found no test: the
input list and what was left out, the header's counts, best marks and colours in report.html, signed
differences named "reference − row", the interaction, unpaired and whole notes in report.html, each
table's own figures, the persona analysis' figures in their places, example dialogues with their
explanations, the notes, and Markdown escaping at the ends of a name. Every expected string is written
here from figures set by hand."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from crs.report import build_report
from crs.report.analysis import METRICS, PairedDiff
from crs.report.build import Report
from crs.report.examples import DialogueTurn, ExampleDialogue
from crs.report.ledger import InputLine
from crs.report.persona import DeletionResult, PersonaAnalysis
from crs.report.plots import Plot
from crs.report.render import to_html, to_markdown
from crs.report.render_markdown import escape
from envs.metrics import MetricSummary
from tests.crs.test_report_hostile_inputs import write_eval
from tests.crs.test_report_mutants import metrics_of, records, train_with_test, write_train_summary


def summary(mean: float, low: float, high: float) -> MetricSummary:
    return MetricSummary(mean, low, high)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A report of ask-4 and max-entropy, one run each over the same 12 conversations."""
    root = tmp_path_factory.mktemp("pages")
    folders = [
        write_eval(root / "a", records([3, 5, None, 2] * 3), policy="ask-4"),
        write_eval(root / "b", records([4, None, None, 2] * 3), policy="max-entropy"),
    ]
    return build_report(folders, root / "report", examples=0, persona=False)


DIFF = {
    "SR@5": summary(0.05, 0.01, 0.09),
    "SR@10": summary(-0.02, -0.05, 0.01),
    "SR@15": summary(-0.1, -0.2, -0.03),
    "AT": summary(-1.5, -2.25, -0.75),
    "hDCG": summary(0.0, -0.001, 0.001),
}
ALONE = {m: summary(0.25, 0.2, 0.3) for m in METRICS}


def with_differences(report: Report) -> Report:
    """`report` whose table holds paired differences, rankers-alone differences, an interaction, an
    unpaired row and a pair compared whole, all set by hand."""
    (table,) = report.tables
    table = dataclasses.replace(
        table,
        diffs=(PairedDiff("max-entropy", "ask-4", DIFF, 1234),),
        ranker_diffs=(PairedDiff("ask-4 (b ranker)", "ask-4", ALONE, 30),),
        interaction={m: summary(0.0625, -0.02, 0.145) for m in METRICS},
        n_interaction=1500,
        whole=("max-entropy",),
        unpaired=("random: another ranker",),
    )
    return dataclasses.replace(report, tables=[table])


def cell(css: str, metric: str, mean: str, ci: str) -> str:
    """A figure's cell in report.html."""
    spans = f'<span class="mean">{mean}</span><span class="ci">{ci}</span>'
    return f'<td class="{css}" data-metric="{metric}">{spans}</td>'


# ------------------------------------------------------------------------------------- report.html
def test_html_marks_each_rows_best_figures_and_colours_its_label_as_the_plots_do(built: Report) -> None:
    """Guards against best marks lost in report.html and every label drawn in the fallback grey
    instead of its plots' colour."""
    page = to_html(built)
    a, b = built.tables[0].rows
    assert a.best == frozenset(METRICS) and not b.best  # ask-4 finds more, sooner
    colours = {built.colors[a.label], built.colors[b.label]}
    assert len(colours) == 2 and "#999" not in colours
    for row in (a, b):
        (line,) = [line for line in page.splitlines() if f"</span>{row.label}</td>" in line]
        assert f'<span class="swatch" style="background:{built.colors[row.label]}">' in line
        assert re.findall(r'<td class="(\w*)" data-metric', line) == [
            "best" if m in row.best else "" for m in METRICS
        ]
    header = f"{len(built.inputs.evals)} evaluation runs, {len(built.inputs.trains)} train runs"
    assert header == "2 evaluation runs, 0 train runs" and header in page


def test_html_shows_signed_differences_named_reference_minus_row_and_the_tables_notes(built: Report) -> None:
    """Guards against differences printed unsigned (a gain reads like a level), a rankers-alone row
    named by its row alone, and the interaction, unpaired rows and whole pairs left out of the page."""
    page = to_html(with_differences(built))
    diff = (
        '<tr><td class="label">max-entropy</td><td>1234</td>'
        + cell("pos", "SR@5", "+0.050", "[+0.010, +0.090]")
        + cell("", "SR@10", "-0.020", "[-0.050, +0.010]")
        + cell("neg", "SR@15", "-0.100", "[-0.200, -0.030]")
        + cell("pos", "AT", "-1.50", "[-2.25, -0.75]")
        + cell("", "hDCG", "+0.000", "[-0.001, +0.001]")
        + "</tr>"
    )
    assert diff in page
    assert (
        '<tr><td class="label">ask-4 − ask-4 (b ranker)</td><td>30</td>'
        + cell("pos", "SR@5", "+0.250", "[+0.200, +0.300]")
        in page
    )
    assert (
        "(SR@15): <strong>+0.062</strong> [-0.020, +0.145] on 1500 conversations.</p>" in page
        and page.count("Interaction full − persona-blind") == 1
    )
    assert '<div class="sep">Not paired: random: another ranker.</div>' in page
    assert '<div class="sep">Paired whole: max-entropy and ask-4 each ran over' in page
    bare = to_html(built)  # none of them set: none shown
    assert "Interaction full" not in bare and "Not paired" not in bare and "Paired whole" not in bare


def lines_in(*lines: InputLine) -> tuple[InputLine, ...]:
    return lines


INPUT_LIST = lines_in(
    InputLine(True, "table 1", "", ("runs/a", "runs/b\nc")),
    InputLine(True, "table 2", "separate from table 1: another split", ("runs/c",)),
    InputLine(False, "", "not a run folder (no summary.json)", ("runs/x", "runs/y")),
)


def test_both_pages_list_used_and_left_out_inputs_with_their_reasons(built: Report) -> None:
    """Guards against a left-out input shown as used (or a used one struck out), the reason a table is
    separate or an input left out dropped from the list, and a path's line break kept in report.md."""
    report = dataclasses.replace(built, input_list=list(INPUT_LIST))
    page = to_html(report)
    assert (
        '<p class="note">Inputs: 3 used, 2 left out</p><ul class="inputs">'
        "<li><strong>table 1</strong>: <code>runs/a</code>, <code>runs/b\nc</code></li>"
        "<li><strong>table 2</strong>: <code>runs/c</code> — separate from table 1: another split</li>"
        '<li class="left-out"><strong>left out</strong>: <code>runs/x</code>, <code>runs/y</code> — not a '
        "run folder (no summary.json)</li></ul>"
    ) in page
    markdown = to_markdown(report).splitlines()
    start = markdown.index("**Inputs** (3 used, 2 left out):")
    assert markdown[start + 2 : start + 6] == [
        "- table 1: `runs/a`, `runs/b c`",  # a line break in a path would end the list item
        "- table 2: `runs/c` — separate from table 1: another split",
        "- **left out**: `runs/x`, `runs/y` — not a run folder (no summary.json)",
        "",
    ]


def plot(folder: Path, name: str) -> Plot:
    path = folder / f"{name}.png"
    path.write_bytes(name.encode())
    return Plot(path, f"caption of {name}", f"alt of {name}")


def test_each_table_shows_its_own_plots_wide_where_the_figure_is_wide(built: Report, tmp_path: Path) -> None:
    """Guards against every table showing the first table's plots, the wide class on the wrong figures,
    and report.md linking a plot by a path that breaks when the report folder moves (it links the file
    name beside it)."""
    (table,) = built.tables
    plots = {0: [plot(tmp_path, "sr_curves"), plot(tmp_path, "turns")], 1: [plot(tmp_path, "action_mix_2")]}
    report = dataclasses.replace(built, tables=[table, table], table_plots=plots)
    page = to_html(report)
    first, second = page.split('data-table="1"')
    assert re.findall(r'<figure( class="wide")?><img data-plot="(\w+)"', first) == [
        ("", "sr_curves"),
        ("", "turns"),
    ]
    assert re.findall(r'<figure( class="wide")?><img data-plot="(\w+)"', second) == [
        (' class="wide"', "action_mix_2")
    ]
    markdown = to_markdown(report)
    first, second = markdown.split("## Comparison — ")[1:]
    assert re.findall(r"!\[alt of (\w+)\]\(([^)]+)\)", first) == [
        ("sr_curves", "sr_curves.png"),
        ("turns", "turns.png"),
    ]
    assert re.findall(r"!\[alt of (\w+)\]\(([^)]+)\)", second) == [("action_mix_2", "action_mix_2.png")]
    assert "_caption of action_mix_2_" in second


def test_each_returning_user_comparison_shows_its_own_plot(tmp_path: Path) -> None:
    """Guards against every returning-user comparison in report.html showing the first one's figure."""
    from tests.crs.test_report_hostile_inputs import lines

    folder = write_eval(tmp_path / "e", lines(20, sessions=3), sessions={"sessions": 3, "memory": "frozen"})
    built = build_report([folder], tmp_path / "r", examples=0, persona=False)
    (comparison,) = built.sessions
    plots = {0: plot(tmp_path, "sessions_1"), 1: plot(tmp_path, "sessions_2")}
    report = dataclasses.replace(built, sessions=[comparison, comparison], session_plots=plots)
    blocks = to_html(report).split("<h2>Returning users — ")[1:]
    assert [re.findall(r'<img data-plot="(\w+)"', block.split("<h2>")[0]) for block in blocks] == [
        ["sessions_1"],
        ["sessions_2"],
    ]
    blocks = to_markdown(report).split("## Returning users — ")[1:]
    assert [re.findall(r"\]\((\w+)\.png\)", block.split("## ")[0]) for block in blocks] == [
        ["sessions_1"],
        ["sessions_2"],
    ]


ANALYSIS = PersonaAnalysis(
    source="runs/r/ranker",
    dataset="persona_world",
    n_pairs=40,
    prototype_names=("p0",),
    usage=np.ones(1),
    group_names=None,
    heatmap=None,
    agreement=summary(0.8, 0.7, 0.9),
    chance=0.25,
    n_truth_personas=3,
    deletion_persona=DeletionResult(summary(0.75, 0.6, 0.9), drop_explained=0.5, drop_random=0.125, n=40),
    deletion_aspect=DeletionResult(summary(0.5, 0.4, 0.7), drop_explained=0.25, drop_random=0.0625, n=30),
    notes=("no heatmap: the world has no aspect groups",),
)


def test_html_persona_analysis_shows_each_figure_in_its_place(built: Report) -> None:
    """Guards against the agreement's chance replaced by its mean, a deletion test's CI bound or drops
    swapped, and the aspect test showing the persona test's figures."""
    page = to_html(dataclasses.replace(built, persona=[ANALYSIS]))
    assert (
        '<div class="v">80%</div><div class="small">[70%, 90%], chance 25% (shuffled labels); 3 true '
        "personas, Hungarian-matched</div>"
    ) in page
    assert (
        '<div class="k">deletion test: explaining persona</div><div class="v">75%</div><div class="small">'
        "[60%, 90%] of 40 items; score drop +0.500 vs +0.125 for a random one</div>"
    ) in page
    assert (
        '<div class="k">deletion test: explaining aspect</div><div class="v">50%</div><div class="small">'
        "[40%, 70%] of 30 items; score drop +0.250 vs +0.062 for a random one</div>"
    ) in page
    assert '<p class="note">Note: no heatmap: the world has no aspect groups</p>' in page


def test_markdown_persona_analysis_shows_each_figure_in_its_place(built: Report) -> None:
    """The same guards in report.md: the chance, the deletion tests' CI bounds in order, their drops,
    the aspect test's own figures and the analysis' notes."""
    page = to_markdown(dataclasses.replace(built, persona=[ANALYSIS])).splitlines()
    start = page.index("### persona_world: persona ranker `runs/r/ranker`")
    assert page[start + 2 : start + 8] == [
        "- pairs analysed: 40 (user, target) pairs of the evaluated conversations",
        "- agreement with the ground-truth personas (Hungarian-matched): 80.0% [70.0%, 90.0%] vs 25.0% by "
        "chance (shuffled labels), 3 true personas",
        "- deletion test, explaining persona: 75.0% [60.0%, 90.0%] of 40 items (mean score drop +0.500 vs "
        "+0.125 for a random one)",
        "- deletion test, explaining aspect: 50.0% [40.0%, 70.0%] of 30 items (mean score drop +0.250 vs "
        "+0.062 for a random one)",
        "- note: no heatmap: the world has no aspect groups",
        "",
    ]


EXAMPLE = ExampleDialogue(
    "ask-4",
    0,
    "user 3 looking for item 7: found at turn 3",
    (
        DialogueTurn("[open] I want a0", "open"),
        DialogueTurn("[ask] a1?", "ask"),
        DialogueTurn("[recommend] item 9", "recommend", "your taste for a2"),
        DialogueTurn("[recommend] item 7", "recommend", "persona P1 · a1", success=True),
    ),
    True,
)


def test_both_pages_show_example_turns_by_kind_with_their_explanations(built: Report) -> None:
    """Guards against an accepted slate shown as a plain recommendation in report.html, and the turns'
    explanations ("why") left out of either page."""
    report = dataclasses.replace(built, examples=[EXAMPLE])
    assert (
        '<div class="dialogue"><div class="open">[open] I want a0</div><div class="ask">[ask] a1?</div>'
        '<div class="recommend">[recommend] item 9</div><div class="why">why: your taste for a2</div>'
        '<div class="success">[recommend] item 7</div><div class="why">why: persona P1 · a1</div></div>'
    ) in to_html(report)
    page = to_markdown(report).splitlines()
    start = page.index("**user 3 looking for item 7: found at turn 3**")
    assert page[start + 2 : start + 10] == [
        "```",
        "[open] I want a0",
        "[ask] a1?",
        "[recommend] item 9",
        "       why: your taste for a2",
        "[recommend] item 7",
        "       why: persona P1 · a1",
        "```",
    ]


def test_both_pages_list_the_reports_notes(built: Report) -> None:
    """Guards against the notes a reader must know (datasets, settings) left out of either page."""
    notes = ["persona_world only: no real dataset", "T = 15 throughout"]
    report = dataclasses.replace(built, notes=notes)
    assert (
        '<ul class="inputs"><li>persona_world only: no real dataset</li><li>T = 15 throughout</li></ul>'
        in to_html(report)
    )
    markdown = to_markdown(report)
    assert "- note: persona_world only: no real dataset\n- note: T = 15 throughout\n" in markdown
    assert "- note:" not in to_markdown(dataclasses.replace(built, notes=[]))


def test_html_shows_a_single_training_runs_own_test_summary(tmp_path: Path) -> None:
    """Guards against the training-runs table left out of report.html when it has one row: a run's
    own final test (SR@15 6/12 = 0.500 after 3,000 steps), with no best marked (nothing to compare)."""
    run = train_with_test(tmp_path / "runs", "r-s1", 1, {})
    write_train_summary(run, {f"RL ({run.name})": metrics_of([2, None] * 6)})
    report = build_report([run], tmp_path / "report", examples=0, persona=False)
    (row,) = report.train_rows
    page = to_html(report)
    assert "<h2>Training runs: their own test summaries</h2>" in page
    table = page.split('<table class="train">', 1)[1].split("</table>", 1)[0]
    assert '<th>configuration</th><th class="text">runs</th><th>steps</th>' in table
    (line,) = [line for line in table.splitlines() if line.startswith("<tr>")]
    assert f"</span>{row.label}</td>" in line and "<td>3,000</td>" in line
    assert 'data-metric="SR@15"><span class="mean">0.500</span>' in line and 'class="best"' not in line


# ------------------------------------------------------------------------------------------ escaping
@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("_ab", "\\_ab"),
        ("ab_", "ab\\_"),
        ("a_ b", "a\\_ b"),
        ("a _b", "a \\_b"),
        ("b_a_", "b_a\\_"),
        ("lastfm_star_v2", "lastfm_star_v2"),
    ],
)
def test_markdown_escapes_an_underscore_that_could_start_or_end_emphasis(text: str, escaped: str) -> None:
    """Guards against leaving an ``_`` unescaped at either end of a name or beside a space (where
    Markdown reads it as emphasis); only one between two letters or digits stays as it is."""
    assert escape(text) == escaped


def test_html_renders_the_code_spans_of_the_reports_own_sentences_as_markdown_does(built: Report) -> None:
    """The report's sentences that name commands and keys (unavailable sections, separate, unpaired and
    whole notes, analysis and report notes) show `x` as code in report.html as report.md does (guards
    against escaping them as plain text: the page showed the backticks)."""
    assert "Unavailable: no <code>crs train</code> run among the inputs." in to_html(built)
    assert "Unavailable: no `crs train` run among the inputs._" in to_markdown(built)
    (table,) = with_differences(built).tables
    marked = dataclasses.replace(
        table, separated="its own `ablate_ranker`", unpaired=("random: another `--ranker`",)
    )
    notes = ["give `crs pretrain` a **seed**"]
    page = to_html(dataclasses.replace(built, tables=[marked], notes=notes))
    assert "Separate table: its own <code>ablate_ranker</code>." in page
    assert "Not paired: random: another <code>--ranker</code>." in page
    assert "<li>give <code>crs pretrain</code> a <strong>seed</strong></li>" in page
    assert "`" not in re.sub(r"<(style|script)[^>]*>.*?</\1>", "", page, flags=re.S)
