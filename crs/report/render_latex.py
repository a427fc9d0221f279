"""tables.tex: the report's tables as LaTeX, ready to ``\\input`` into a paper.

One ``table`` float per comparison. Its first tabular has the columns of `crs.report.columns.COMPARISON`
and one per metric, each figure "mean [low, high]" as report.md prints it, the best in bold. A second
tabular holds the paired differences (reference minus row, † where the 95% CI excludes 0). The caption
names what a reader needs to compare like with like: dataset, split, setting, simulated user, turn
limit, conversations per run and how the CIs were computed. Then one float per returning-user
comparison (`crs eval --sessions` inputs): the columns of `crs.report.sessions.SESSION_HEADERS`, and
its sentences (paired differences, the gap closed, what recovery and tracking mean) as the caption.

The file needs ``\\usepackage{booktabs,graphicx}`` in the paper's preamble, nothing else (a table wider
than the line is shrunk to it). Where to edit:

- a column: `crs.report.columns` (shared with report.md and report.html);
- how a number is written: `crs.report.formatting.number` (shared), then `_math` here for the minus sign.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from crs import __version__
from crs.report.analysis import METRICS, PairedDiff, Table, pairing_note
from crs.report.build import Report
from crs.report.columns import COMPARISON
from crs.report.formatting import (
    INTERACTION_METRIC,
    ci_text,
    figure,
    interval,
    number,
    own_rules_note,
    rankers_alone_note,
    setting_note,
    whole_note,
)
from crs.report.sessions import SESSION_HEADERS, SessionComparison, session_rows, session_sentences
from envs.metrics import MetricSummary

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "−": "$-$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "→": r"$\rightarrow$",
    "✓": r"$\surd$",  # \checkmark needs amssymb
    "*": r"$^*$",
    "[": "{[}",
    "]": "{]}",
    "<": "$<$",
    ">": "$>$",
    "|": r"$\vert$",
    "`": r"\textasciigrave{}",  # an opening quote otherwise
    **{char: " " for char in map(chr, (*range(32), 127))},
}
"""Characters that LaTeX reads as commands, or that its default fonts lack, and what to write instead
(line breaks and other control characters as spaces: a blank line ends a caption with an error, and the
end of a line ends a ``%`` comment)."""
SIGNIFICANT = r"$^\dagger$"
"""The mark of a paired difference whose 95% CI excludes 0."""


def escape(text: str) -> str:
    """`text` with every LaTeX special character (and the few Unicode signs reports use) written out.

    Example: ``escape("lastfm_star 5%")`` is ``lastfm\\_star 5\\%``; ``escape("Yelp*")`` is ``Yelp$^*$``;
    ``escape("--seed")`` is ``-{}-seed`` (TeX would join the two hyphens into an en dash).
    """
    return re.sub("-(?=-)", "-{}", "".join(_SPECIAL.get(char, char) for char in text))


def _math(text: str) -> str:
    """A printed figure with its minus signs as math minus ("-0.012" reads as a hyphen in text mode)."""
    return text.replace("-", "$-$")


def _figure(
    summary: MetricSummary, metric: str, signed: bool = False, bold: bool = False, mark: str = ""
) -> str:
    """The mean (bold when best, then `mark`) above its 95% CI in small type, right-aligned."""
    mean = _math(number(summary.mean, metric, signed))
    if bold:
        mean = rf"\textbf{{{mean}}}"
    ci = _math(interval(summary, metric, signed))
    return rf"\begin{{tabular}}[t]{{@{{}}r@{{}}}}{mean}{mark}\\{{\scriptsize {ci}}}\end{{tabular}}"


def _tabular(headers: Sequence[str], aligns: str, rows: Sequence[Sequence[str]]) -> list[str]:
    """A booktabs tabular, shrunk to the line's width when wider."""
    out = [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"]
    out += [rf"\begin{{tabular}}{{{aligns}}}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule"]
    out += [" & ".join(cells) + r" \\" for cells in rows]
    return [*out, r"\bottomrule", r"\end{tabular}}"]


def _float(tabulars: list[str], caption: str, label: str) -> list[str]:
    return [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        *tabulars,
        rf"\caption{{{caption}}}",
        rf"\label{{tab:crs-{label}}}",
        r"\end{table}",
        "",
    ]


def _comparison(index: int, table: Table, incomplete: str = "") -> list[str]:
    """The comparison table as a float; `incomplete`: a sentence the caption starts its notes with."""
    # A text column every row shares (one ranker, one seed) moves to the caption: the table stays narrow.
    shared = {c.header: c.text(table.rows[0]) for c in COMPARISON.columns}
    columns = [c for c in COMPARISON.columns if any(c.text(row) != shared[c.header] for row in table.rows)]
    headers = [escape(COMPARISON.label_header), *(escape(c.header) for c in columns), *METRICS]
    aligns = "l" + "".join("l" if c.left else "r" for c in columns) + "r" * len(METRICS)
    rows = []
    for row in table.rows:
        cells = [_figure(row.metrics[m], m, bold=m in row.best) for m in METRICS]
        rows.append([escape(row.label), *(escape(c.text(row)) for c in columns), *cells])
    out = _tabular(headers, aligns, rows)
    every_row = "; ".join(f"{c.header}: {shared[c.header]}" for c in COMPARISON.columns if c not in columns)
    caption = (
        f"{escape(table.title)}{escape(f'; every row: {every_row}' if every_row else '')}. Mean and 95\\% CI "
        f"({escape(ci_text(table))}); bold: best in the column; {escape(setting_note(table))}; "
        f"{table.conversations_per_run} conversations per run.{escape(incomplete)}"
    )
    if table.separated:
        caption += f" Separate table: {escape(table.separated)}."
    if table.diffs:
        out += [r"\par\medskip", *_diff_tabular(table.diffs, "row", lambda d: escape(d.label))]
        caption += (
            f" Below: {escape(table.reference or '')} minus each row on the same conversations, 95\\% "
            f"bootstrap CI; {SIGNIFICANT}: the CI excludes 0; {escape(pairing_note(table))}."
        )
    caption += "".join(f" Not paired: {escape(line)}." for line in table.unpaired)
    if table.whole:
        caption += f" Paired whole: {escape(whole_note(table))}."
    for diffs, head, note in (
        (table.ranker_diffs, "the rankers alone", rankers_alone_note(table)),
        (table.own_rule_diffs, "over their own rankers", own_rules_note(table)),
    ):
        if diffs:
            named = _diff_tabular(diffs, head, lambda d: f"{escape(d.reference)} $-$ {escape(d.label)}")
            out += [r"\par\medskip", *named]
            caption += f" Then {head}: {escape(note)}."
    if table.interaction is not None:
        inter = _math(figure(table.interaction[INTERACTION_METRIC], INTERACTION_METRIC, True))  # inline
        caption += (
            f" Interaction (full $-$ persona-blind $-$ aspect-blind $+$ both-off), {INTERACTION_METRIC}: "
            f"{inter} on {table.n_interaction:,} {table.test_set.pair_unit}."
        )
    return _float(out, caption, f"comparison-{index + 1}")


def _diff_tabular(diffs: Sequence[PairedDiff], head: str, label: Callable[[PairedDiff], str]) -> list[str]:
    """Paired differences as a tabular, a row each named by `label` (LaTeX), with `SIGNIFICANT` where the
    CI excludes 0."""
    rows = [
        [
            label(d),
            f"{d.n_pairs:,}",
            *(_figure(d.metrics[m], m, True, mark=SIGNIFICANT * d.significant(m)) for m in METRICS),
        ]
        for d in diffs
    ]
    return _tabular([escape(head), "pairs", *METRICS], "lr" + "r" * len(METRICS), rows)


def _sessions(index: int, comparison: SessionComparison) -> list[str]:
    rows = [[_math(escape(cell)) for cell in cells] for cells in session_rows(comparison)]
    out = _tabular([escape(h) for h in SESSION_HEADERS], "ll" + "r" * (len(SESSION_HEADERS) - 2), rows)
    caption = " ".join(
        [f"Returning users: {escape(comparison.title)}.", *map(escape, session_sentences(comparison))]
    )
    return _float(out, caption, f"sessions-{index + 1}")


def to_latex(report: Report) -> str:
    """The report's tables as LaTeX (one ``table`` float each; needs ``booktabs`` and ``graphicx``)."""
    out = [
        f"% {escape(report.title)}: tables written by persona-crs {__version__} (crs report).",
        "% \\input this file; the preamble needs \\usepackage{booktabs,graphicx}.",
        "",
    ]
    if not report.tables and not report.sessions:
        out += ["% No table: the inputs hold no evaluation records.", ""]
    missing = sum(left.tasks for left in report.inputs.left_out)
    incomplete = (
        f" Incomplete: {missing} sweep task(s) unfinished or not run are not in this table (the report's "
        "input list names them)."
        if missing
        else ""
    )
    for index, table in enumerate(report.tables):
        out += _comparison(index, table, incomplete)
    for index, comparison in enumerate(report.sessions):
        out += _sessions(index, comparison)
    return "\n".join(out)
