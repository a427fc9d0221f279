"""report.md: the report as Markdown, plots linked as the PNG files beside it.

`to_markdown` lists the sections in page order; each section is one function returning its lines.
Where to edit:

- a column of a table: `crs.report.columns` (shared with report.html);
- how a figure or a shared sentence reads: `crs.report.formatting` (shared with report.html);
- Markdown-only wording or layout of a section: its `_section` function here.

Every string that comes from an input (names, paths, notes, the title) is hostile: it goes through
`escape` (plain text, table cells included), `_inline` (a sentence of ours holding names, whose own
``**bold**`` and `` `code` `` stay markup), `_code` (a code span) or `_fence` (a code block), never raw.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from crs import __version__
from crs.report.analysis import METRICS, PairedDiff, Table, pairing_note
from crs.report.build import FIGURES_OFF, Report
from crs.report.columns import COMPARISON, TRAIN_SUMMARY, RowT, TableLayout
from crs.report.formatting import (
    INTERACTION_METRIC,
    QUESTION,
    TRAIN_ROWS_NOTE,
    ci_text,
    figure,
    input_text,
    own_rules_note,
    rankers_alone_note,
    render_inline,
    separate_text,
    setting_note,
    train_input_text,
    whole_note,
)
from crs.report.ledger import counts
from crs.report.persona import DeletionResult, PersonaAnalysis
from crs.report.plots import Plot
from crs.report.sessions import SESSION_HEADERS, session_rows, session_sentences
from envs.metrics import MIN_PAIRED

_SPECIAL = {
    "<": "&lt;",
    ">": "&gt;",
    **{char: "\\" + char for char in "\\`*_[]|"},
    **{char: " " for char in map(chr, (*range(32), 127))},
}
"""What Markdown reads as markup in a line of text, and what to write instead: the HTML characters as
entities (no raw HTML, in any renderer; ``&`` only where it starts a character reference, `_ENTITY`),
emphasis, code, link and table-cell characters backslash-escaped, line breaks and other control
characters as spaces (a name cannot end a table row, list item or heading)."""
_ENTITY = re.compile(r"&(#\w+|[A-Za-z]\w*);")
"""An HTML character reference (``&lt;``, ``&#60;``): the one place where Markdown reads ``&`` as markup
("R&B" stays as it is)."""


def escape(text: str) -> str:
    """`text` as Markdown that reads as itself, also inside a table cell (an ``_`` between letters, as in
    ``lastfm_star``, is left as it is: it cannot start or end emphasis there).

    Example: ``escape("a|b <i>_x_</i> R&B &lt;")`` is ``a\\|b &lt;i&gt;\\_x\\_&lt;/i&gt; R&B &amp;lt;``.
    """
    return "".join(
        char
        if char == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
        else "&amp;"
        if char == "&" and _ENTITY.match(text, i)
        else _SPECIAL.get(char, char)
        for i, char in enumerate(text)
    )


def _inline(text: str) -> str:
    """A sentence of ours that holds names: its ``**bold**`` and `` `code` `` kept, every other character
    escaped (`escape`), so a name can add emphasis or a code span at worst, never HTML or a link."""
    return render_inline(text, escape, lambda bold: f"**{escape(bold)}**", lambda code: f"`{code}`")


def _code(text: str) -> str:
    """`text` as a code span: fenced by more backticks than it holds in a row, on one line."""
    text = " ".join(text.splitlines())
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: Sequence[str]) -> list[str]:
    """`lines` as a code block: fenced by more backticks than any line holds in a row (at least 3)."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks, *lines, ticks]


def to_markdown(report: Report) -> str:
    """The report as Markdown (plots linked as the PNG files beside it)."""
    out = _title(report) + _input_list(report) + _answer(report)
    for index, table in enumerate(report.tables):
        out += _comparison(table, report.table_plots.get(index, []))
    out += _returning_users(report)
    out += _train_summaries(report)
    out += _learning_curves(report)
    out += _persona_analysis(report)
    out += _example_dialogues(report)
    out += _inputs_and_notes(report)
    return "\n".join(out)


def _plot(plot: Plot) -> list[str]:
    return [f"![{plot.alt}]({plot.path.name})", "", f"_{plot.caption}_", ""]


def _unavailable(report: Report, section: str) -> list[str]:
    return [f"_Unavailable: {_inline(report.unavailable.get(section, ''))}._", ""]


def _table(layout: TableLayout[RowT], rows: Sequence[RowT]) -> list[str]:
    """A Markdown table of `rows` laid out by `layout` (see `crs.report.columns`)."""
    headers = [layout.label_header, *(c.header for c in layout.columns), *METRICS]
    rule = "|---|" + "".join("---|" if c.left else "---:|" for c in layout.columns) + "---:|" * len(METRICS)
    out = ["| " + " | ".join(headers) + " |", rule]
    for row in rows:
        best = layout.best(row)
        cells = []
        for m in METRICS:
            text = figure(row.metrics[m], m)
            cells.append(f"**{text}**" if m in best else text)
        texts = [escape(c.text(row)) for c in layout.columns]
        out.append("| " + " | ".join([escape(row.label), *texts, *cells]) + " |")
    return out


def _title(report: Report) -> list[str]:
    figures = "" if report.figures else f" · {FIGURES_OFF}"
    return [f"# {escape(report.title)}", "", f"_{report.created} · persona-crs {__version__}{figures}_", ""]


def _input_list(report: Report) -> list[str]:
    """Which inputs were used, where, and which were left out and why (details: "Inputs and notes")."""
    out = [f"**Inputs** ({counts(report.input_list)}):", ""]
    for line in report.input_list:
        paths = ", ".join(_code(path) for path in line.paths)
        head = escape(line.head) if line.used else "**left out**"
        out.append(f"- {head}: {paths}" + (f" — {_inline(line.reason)}" if line.reason else ""))
    return [*out, ""]


def _answer(report: Report) -> list[str]:
    return ["## The answer", "", f"> {QUESTION}", "", _inline(report.answer), ""]


def _comparison(table: Table, plots: list[Plot]) -> list[str]:
    out = [f"## Comparison — {escape(table.heading)}", ""]
    if table.separated:
        out += [f"_Separate table: {_inline(separate_text(table))}._", ""]
    out += _table(COMPARISON, table.rows)
    out += [
        "",
        f"Mean and 95% CI ({ci_text(table)}); **bold**: best in the column; {escape(setting_note(table))}; "
        f"{table.conversations_per_run} conversations per run.",
        "",
    ]
    if table.diffs:
        out += [
            f"**Paired differences** ({escape(table.reference or '')} minus row, same conversations, 95% "
            f"bootstrap CI; ✓ = CI excludes 0; {escape(pairing_note(table))}):",
            "",
            *_diff_table(table.diffs),
        ]
    out += [f"_Not paired: {_inline(line)}._" for line in table.unpaired] + ([""] if table.unpaired else [])
    out += [f"_Paired whole: {_inline(whole_note(table))}._", ""] if table.whole else []
    for diffs, title, note in (
        (table.ranker_diffs, "The rankers alone", rankers_alone_note(table)),
        (table.own_rule_diffs, "Over their own rankers", own_rules_note(table)),
    ):
        if diffs:
            out += [f"**{title}** ({_inline(note)}; ✓ = CI excludes 0 over at least {MIN_PAIRED} pairs):", ""]
            out += _diff_table(diffs, label=lambda d: f"{d.reference} − {d.label}")
    if table.interaction is not None:
        inter = figure(table.interaction[INTERACTION_METRIC], INTERACTION_METRIC, True)
        out += [
            f"Interaction (full − persona-blind − aspect-blind + both-off), {INTERACTION_METRIC}: {inter} on "
            f"{table.n_interaction} {table.test_set.pair_unit}.",
            "",
        ]
    for plot in plots:
        out += _plot(plot)
    return out


def _diff_table(
    diffs: Sequence[PairedDiff], label: Callable[[PairedDiff], str] = lambda d: d.label
) -> list[str]:
    """Paired differences as a Markdown table, a row each (named by `label`), then a blank line."""
    out = ["| row | pairs | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for d in diffs:
        cells = [f"{figure(d.metrics[m], m, True)}{' ✓' if d.significant(m) else ''}" for m in METRICS]
        out.append(f"| {escape(label(d))} | {d.n_pairs} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _returning_users(report: Report) -> list[str]:
    """Per-session curves of returning users (`crs eval --sessions` inputs), one block per comparison."""
    out: list[str] = []
    for index, comparison in enumerate(report.sessions):
        out += [f"## Returning users — {escape(comparison.title)}", ""]
        out += ["| " + " | ".join(SESSION_HEADERS) + " |", "|---|---|" + "---:|" * (len(SESSION_HEADERS) - 2)]
        out += ["| " + " | ".join(map(escape, cells)) + " |" for cells in session_rows(comparison)]
        out.append("")
        out += [f"- {_inline(sentence)}" for sentence in session_sentences(comparison)]
        out.append("")
        plot = report.session_plots.get(index)
        if plot is not None:
            out += _plot(plot)
    return out


def _train_summaries(report: Report) -> list[str]:
    if not report.train_rows:
        return []
    out = ["## Training runs: their own test summaries", ""]
    out += _table(TRAIN_SUMMARY, report.train_rows)
    return [*out, "", f"_{TRAIN_ROWS_NOTE}_", ""]


def _learning_curves(report: Report) -> list[str]:
    out = ["## Learning curves", ""]
    out += _plot(report.learning) if report.learning is not None else _unavailable(report, "learning")
    for label, runs in report.train_groups.items():
        for run in runs:
            if run.missing:
                missing = ", ".join(run.missing)
                out.append(f"- {escape(label)} ({escape(str(run.info.path))}): missing {escape(missing)}")
    return [*out, ""]


def _persona_analysis(report: Report) -> list[str]:
    out = ["## Persona analysis", ""]
    if not report.persona:
        out += _unavailable(report, "persona")
    for index, analysis in enumerate(report.persona):
        out += _persona(analysis, report.persona_plots.get(index, []))
    return out


def _deletion(result: DeletionResult | None) -> str:
    if result is None:
        return "n/a"
    return (
        f"{result.rate.mean:.1%} [{result.rate.low:.1%}, {result.rate.high:.1%}] of {result.n} items "
        f"(mean score drop {result.drop_explained:+.3f} vs {result.drop_random:+.3f} for a random one)"
    )


def _persona(analysis: PersonaAnalysis, plots: list[Plot]) -> list[str]:
    out = [f"### {escape(analysis.dataset)}: persona ranker {_code(analysis.source)}", ""]
    out.append(f"- pairs analysed: {analysis.n_pairs} (user, target) pairs of the evaluated conversations")
    if analysis.agreement is not None:
        a = analysis.agreement
        out.append(
            f"- agreement with the ground-truth personas (Hungarian-matched): {a.mean:.1%} [{a.low:.1%}, "
            f"{a.high:.1%}] vs {analysis.chance:.1%} by chance (shuffled labels), "
            f"{analysis.n_truth_personas} true personas"
        )
    out.append(f"- deletion test, explaining persona: {_deletion(analysis.deletion_persona)}")
    out.append(f"- deletion test, explaining aspect: {_deletion(analysis.deletion_aspect)}")
    out += [f"- note: {_inline(note)}" for note in analysis.notes]
    out.append("")
    for plot in plots:
        out += _plot(plot)
    return out


def _example_dialogues(report: Report) -> list[str]:
    out = ["## Example dialogues", ""]
    if not report.examples:
        out += _unavailable(report, "examples")
    elif len(report.tables) > 1:  # replayed from one table only
        table = report.tables[report.examples_table]
        out += [f"_From table {report.examples_table + 1}: {escape(table.title)}._", ""]
    for dialogue in report.examples:
        lines = []
        for turn in dialogue.turns:
            lines.append(turn.text)
            if turn.explanation:
                lines.append(f"       why: {turn.explanation}")
        out += [f"**{escape(dialogue.title)}**", "", *_fence(lines), ""]
    return out


def _inputs_and_notes(report: Report) -> list[str]:
    out = ["## Inputs and notes", ""]
    out += [f"- {_code(str(run.path))}: {escape(input_text(run))}" for run in report.inputs.evals]
    out += [f"- {_code(str(run.info.path))}: {escape(train_input_text(run))}" for run in report.inputs.trains]
    out.append("")
    out += [f"- note: {_inline(note)}" for note in report.notes]
    return [*out, ""]
