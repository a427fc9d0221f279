"""report.html: the report as one self-contained page (inline CSS, plots as data: URIs, no scripts).

`to_html` lists the sections in page order; each section is one function returning its HTML.
The style sheet is `crs/report/report.css` (package data), inlined into every page as it is.
Where to edit:

- a column of a table: `crs.report.columns` (shared with report.md);
- how a figure or a shared sentence reads: `crs.report.formatting` (shared with report.md);
- colours, fonts, spacing: `report.css`;
- HTML-only markup of a section: its `_section` function here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from importlib import resources

from crs import __version__
from crs.report.analysis import LOWER_IS_BETTER, METRICS, PairedDiff, Table, pairing_note
from crs.report.build import FIGURES_OFF, Report
from crs.report.columns import COMPARISON, TRAIN_SUMMARY, RowT, TableLayout
from crs.report.formatting import (
    INTERACTION_METRIC,
    QUESTION,
    TRAIN_ROWS_NOTE,
    ci_text,
    input_text,
    interval,
    number,
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
from envs.metrics import MetricSummary, ci_sign

STYLE_SHEET = "report.css"
"""The page's CSS, a file of this package."""
WIDE_PLOTS = ("action_mix", "learning_curves", "persona_heatmap", "sessions")
"""Plots (by file-name prefix) that span the whole width of their grid."""


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, plots as data: URIs, no scripts)."""
    body = [_header(report), _input_list(report), _answer(report)]
    body += _comparisons(report)
    body += _returning_users(report)
    body += _train_summaries(report)
    body += _learning_curves(report)
    body += _persona_analysis(report)
    body += _example_dialogues(report)
    body += _inputs_and_notes(report)
    body.append(_footer())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(report.title)}</title><style>\n{style_sheet()}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


def style_sheet() -> str:
    """The CSS every page inlines, read from the package's `report.css`."""
    return resources.files("crs.report").joinpath(STYLE_SHEET).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------ building blocks
def _esc(text: object) -> str:
    return html.escape(str(text))


def _md_inline(text: str) -> str:
    """A sentence of ours that holds names: its **x** as <strong>x</strong> and `x` as <code>x</code>,
    everything else escaped (`formatting.render_inline`)."""
    return render_inline(
        text, _esc, lambda bold: f"<strong>{_esc(bold)}</strong>", lambda code: f"<code>{_esc(code)}</code>"
    )


def _unavailable(report: Report, section: str) -> str:
    return f'<p class="unavailable">Unavailable: {_md_inline(report.unavailable.get(section, ""))}.</p>'


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    wide = ' class="wide"' if plot.path.stem.startswith(WIDE_PLOTS) else ""
    return (
        f'<figure{wide}><img data-plot="{_esc(plot.path.stem)}" alt="{_esc(plot.alt)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_esc(plot.caption)}</figcaption></figure>'
    )


def _grid(plots: list[Plot]) -> str:
    """The plots side by side; nothing without plots (`--no-figures`)."""
    return '<div class="grid">' + "".join(_img(p) for p in plots) + "</div>" if plots else ""


def _metric_cell(summary: MetricSummary, metric: str, css: str = "", signed: bool = False) -> str:
    return (
        f'<td class="{css}" data-metric="{_esc(metric)}"><span '
        f'class="mean">{number(summary.mean, metric, signed)}</span>'
        f'<span class="ci">{interval(summary, metric, signed)}</span></td>'
    )


def _metric_headers() -> str:
    return "".join(f"<th>{_esc(m)}</th>" for m in METRICS)


def _open_table(
    layout: TableLayout[RowT], rows: Sequence[RowT], attributes: str, colors: Mapping[str, str]
) -> list[str]:
    """A card's table of `rows` laid out by `layout` (see `crs.report.columns`), left open: the head and
    one line per row; the caller closes the tbody, the table and the card (after its own notes)."""
    headers = "".join(
        f'<th class="text">{_esc(c.header)}</th>' if c.left else f"<th>{_esc(c.header)}</th>"
        for c in layout.columns
    )
    out = [
        f'<div class="card"><table {attributes}><thead><tr><th>{_esc(layout.label_header)}</th>{headers}'
        f"{_metric_headers()}</tr></thead><tbody>"
    ]
    for row in rows:
        best = layout.best(row)
        swatch = f'<span class="swatch" style="background:{colors.get(row.label, "#999")}"></span>'
        texts = "".join(
            f'<td class="text small">{_esc(c.text(row))}</td>' if c.left else f"<td>{_esc(c.text(row))}</td>"
            for c in layout.columns
        )
        cells = "".join(_metric_cell(row.metrics[m], m, "best" if m in best else "") for m in METRICS)
        out.append(f'<tr><td class="label">{swatch}{_esc(row.label)}</td>{texts}{cells}</tr>')
    return out


# ------------------------------------------------------------------------------------------ sections
def _header(report: Report) -> str:
    return (
        f'<header><h1>{_esc(report.title)}</h1><div class="meta">{_esc(report.created)} · persona-crs '
        f"{_esc(__version__)} · {len(report.inputs.evals)} evaluation runs, {len(report.inputs.trains)} "
        f"train runs{'' if report.figures else ' · ' + _esc(FIGURES_OFF)}</div></header>"
    )


def _input_list(report: Report) -> str:
    """Which inputs were used, where, and which were left out and why (details: "Inputs and notes")."""
    items = []
    for line in report.input_list:
        paths = ", ".join(f"<code>{_esc(path)}</code>" for path in line.paths)
        reason = f" — {_md_inline(line.reason)}" if line.reason else ""
        css = "" if line.used else ' class="left-out"'
        items.append(f"<li{css}><strong>{_esc(line.head)}</strong>: {paths}{reason}</li>")
    return (
        f'<section id="input-list"><p class="note">Inputs: {_esc(counts(report.input_list))}</p>'
        f'<ul class="inputs">{"".join(items)}</ul></section>'
    )


def _answer(report: Report) -> str:
    verdicts = "".join(
        f'<span class="verdict {_esc(v)}">{_esc(d)}: {_esc(v)}</span>' for d, v in report.verdicts.items()
    )
    return (
        f'<section class="answer" id="answer"><p class="q">{_esc(QUESTION)}</p>'
        f"<p>{_md_inline(report.answer)}</p>"
        + (f'<div class="verdicts">{verdicts}</div>' if verdicts else "")
        + "</section>"
    )


def _comparisons(report: Report) -> list[str]:
    if not report.tables:
        unavailable = _md_inline(report.unavailable.get("comparison", ""))
        return [f'<h2>Comparison</h2><p class="unavailable">{unavailable}</p>']
    out = []
    for index, table in enumerate(report.tables):
        out.append(f"<h2>Comparison — {_esc(table.heading)}</h2>")
        if table.separated:
            out.append(f'<div class="sep">Separate table: {_md_inline(separate_text(table))}.</div>')
        out.append(_comparison(table, report.colors, index))
        out.append(_grid(report.table_plots.get(index, [])))
    return out


def _comparison(table: Table, colors: Mapping[str, str], index: int) -> str:
    lines = _open_table(COMPARISON, table.rows, f'class="comparison" data-table="{index}"', colors)
    lines.append("</tbody></table>")
    lines.append(
        f'<p class="note">Mean and 95% CI ({_esc(ci_text(table))}); green: best in the column (AT: lower is '
        f"better); {table.conversations_per_run} conversations per run; "
        f"{_esc(setting_note(table))}.</p></div>"
    )
    if table.diffs:
        lines += _paired_differences(table)
    lines += [f'<div class="sep">Not paired: {_md_inline(line)}.</div>' for line in table.unpaired]
    if table.whole:
        lines.append(f'<div class="sep">Paired whole: {_md_inline(whole_note(table))}.</div>')
    for diffs, title, note in (
        (table.ranker_diffs, "The rankers alone", rankers_alone_note(table)),
        (table.own_rule_diffs, "Over their own rankers", own_rules_note(table)),
    ):
        if diffs:
            lines.append(_diff_card(diffs, title.lower(), name_reference=True))
            lines.append(f'<p class="note">{title}: {_md_inline(note)}.</p></div>')
    return "\n".join(lines)


def _favours_reference(diff: PairedDiff, metric: str) -> int:
    """+1 when the CI says the reference is better, −1 when worse, 0 when the CI includes zero."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return sign * ci_sign(diff.metrics[metric], diff.n_pairs)


def _diff_card(diffs: Sequence[PairedDiff], head: str, name_reference: bool = False) -> str:
    """An open card holding paired differences, a row each (named "reference − row" with `name_reference`),
    green where the CI favours the reference, red where it favours the row."""
    lines = [
        f'<div class="card"><table class="diffs"><thead><tr><th>{_esc(head)}</th>'
        f"<th>pairs</th>{_metric_headers()}</tr></thead><tbody>"
    ]
    for d in diffs:
        cells = []
        for m in METRICS:
            favour = _favours_reference(d, m)
            css = "pos" if favour > 0 else "neg" if favour < 0 else ""
            cells.append(_metric_cell(d.metrics[m], m, css, signed=True))
        label = f"{d.reference} − {d.label}" if name_reference else d.label
        lines.append(f'<tr><td class="label">{_esc(label)}</td><td>{d.n_pairs}</td>{"".join(cells)}</tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _paired_differences(table: Table) -> list[str]:
    lines = [_diff_card(table.diffs, f"{table.reference} minus")]
    lines.append(
        f'<p class="note">Paired differences on the same conversations ({_esc(table.reference)} minus row), '
        "95% bootstrap CI over conversations. Green: the CI says the reference is better; red: worse; "
        f"plain: the CI includes zero; {_esc(pairing_note(table))}.</p>"
    )
    if table.interaction is not None:
        inter = table.interaction[INTERACTION_METRIC]
        lines.append(
            '<p class="note">Interaction full − persona-blind − aspect-blind + both-off '
            f"({INTERACTION_METRIC}): <strong>{number(inter.mean, INTERACTION_METRIC, True)}</strong> "
            f"{interval(inter, INTERACTION_METRIC, True)} on {table.n_interaction} "
            f"{table.test_set.pair_unit}.</p>"
        )
    lines.append("</div>")
    return lines


def _returning_users(report: Report) -> list[str]:
    """Per-session curves of returning users (`crs eval --sessions` inputs), one block per comparison."""
    out: list[str] = []
    for index, comparison in enumerate(report.sessions):
        out.append(f"<h2>Returning users — {_esc(comparison.title)}</h2>")
        head = "".join(f"<th>{_esc(h)}</th>" for h in SESSION_HEADERS)
        body = "".join(
            "<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in cells) + "</tr>"
            for cells in session_rows(comparison)
        )
        out.append(
            f'<div class="card"><table class="sessions"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
        items = "".join(f"<li>{_md_inline(sentence)}</li>" for sentence in session_sentences(comparison))
        out.append(f'<ul class="inputs">{items}</ul>')
        plot = report.session_plots.get(index)
        if plot is not None:
            out.append(_grid([plot]))
    return out


def _train_summaries(report: Report) -> list[str]:
    if not report.train_rows:
        return []
    lines = _open_table(TRAIN_SUMMARY, report.train_rows, 'class="train"', report.colors)
    lines.append(f'</tbody></table><p class="note">{_md_inline(TRAIN_ROWS_NOTE)}</p></div>')
    return ["<h2>Training runs: their own test summaries</h2>", "\n".join(lines)]


def _learning_curves(report: Report) -> list[str]:
    out = ["<h2>Learning curves</h2>"]
    out.append(_grid([report.learning]) if report.learning is not None else _unavailable(report, "learning"))
    missing = [
        f"<li>{_esc(run.info.name)}: missing {_esc(', '.join(run.missing))}</li>"
        for runs in report.train_groups.values()
        for run in runs
        if run.missing
    ]
    if missing:
        out.append(f'<ul class="inputs">{"".join(missing)}</ul>')
    return out


def _persona_analysis(report: Report) -> list[str]:
    out = ["<h2>Persona analysis</h2>"]
    if not report.persona:
        out.append(_unavailable(report, "persona"))
    for index, analysis in enumerate(report.persona):
        out.append(_persona(analysis, report.persona_plots.get(index, [])))
    return out


def _deletion_stat(name: str, result: DeletionResult | None) -> str:
    if result is None:
        return f'<div class="stat"><div class="k">{_esc(name)}</div><div class="v">n/a</div></div>'
    return (
        f'<div class="stat"><div class="k">{_esc(name)}</div><div class="v">{result.rate.mean:.0%}</div>'
        f'<div class="small">[{result.rate.low:.0%}, {result.rate.high:.0%}] of {result.n} items; score drop '
        f"{result.drop_explained:+.3f} vs {result.drop_random:+.3f} for a random one</div></div>"
    )


def _persona(analysis: PersonaAnalysis, plots: list[Plot]) -> str:
    parts = [f"<h3>{_esc(analysis.dataset)} — persona ranker <code>{_esc(analysis.source)}</code></h3>"]
    parts.append('<div class="stats">')
    if analysis.agreement is not None:
        a = analysis.agreement
        parts.append(
            '<div class="stat"><div class="k">agreement with true personas</div><div '
            f'class="v">{a.mean:.0%}</div>'
            f'<div class="small">[{a.low:.0%}, {a.high:.0%}], chance {analysis.chance:.0%} (shuffled '
            f"labels); {analysis.n_truth_personas} true personas, Hungarian-matched</div></div>"
        )
    parts.append(_deletion_stat("deletion test: explaining persona", analysis.deletion_persona))
    parts.append(_deletion_stat("deletion test: explaining aspect", analysis.deletion_aspect))
    parts.append("</div>")
    parts.append(
        f'<p class="note">Over {analysis.n_pairs} (user, target) pairs of the evaluated conversations. '
        "Deletion test: removing the explaining persona (or aspect) must lower the item's score more than "
        "removing a random other one; the rate is the share of items where it does (ties count ½), 50% = no "
        "better than random.</p>"
    )
    parts += [f'<p class="note">Note: {_md_inline(note)}</p>' for note in analysis.notes]
    parts.append(_grid(plots))
    return "\n".join(parts)


def _example_dialogues(report: Report) -> list[str]:
    out = ["<h2>Example dialogues</h2>"]
    if not report.examples:
        out.append(_unavailable(report, "examples"))
    elif len(report.tables) > 1:  # replayed from one table only
        table = report.tables[report.examples_table]
        out.append(f'<p class="note">From table {report.examples_table + 1}: {_esc(table.title)}.</p>')
    for dialogue in report.examples:
        lines = []
        for turn in dialogue.turns:
            css = "success" if turn.success else turn.kind
            lines.append(f'<div class="{_esc(css)}">{_esc(turn.text)}</div>')
            if turn.explanation:
                lines.append(f'<div class="why">why: {_esc(turn.explanation)}</div>')
        out.append(
            f'<div class="card"><h3>{_esc(dialogue.title)}</h3><div class="dialogue">{"".join(lines)}</div>'
            "</div>"
        )
    return out


def _inputs_and_notes(report: Report) -> list[str]:
    out = ['<h2>Inputs and notes</h2><ul class="inputs">']
    out += [f"<li><code>{_esc(run.path)}</code>: {_esc(input_text(run))}</li>" for run in report.inputs.evals]
    out += [
        f"<li><code>{_esc(run.info.path)}</code>: {_esc(train_input_text(run))}</li>"
        for run in report.inputs.trains
    ]
    out.append("</ul>")
    if report.notes:
        notes = "".join(f"<li>{_md_inline(note)}</li>" for note in report.notes)
        out.append(f'<ul class="inputs">{notes}</ul>')
    return out


def _footer() -> str:
    return (
        f"<footer>Generated by <code>crs report</code> (persona-crs {_esc(__version__)}). Metrics: SR@t, AT "
        "and hDCG@(15,10) as in UNICORN (SIGIR 2021), computed by <code>envs/metrics.py</code> from the "
        "episode records.</footer>"
    )
