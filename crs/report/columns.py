"""The columns of the report's tables, declared once for report.md, report.html and tables.tex.

Each table is a `TableLayout`: the row label first (with its colour swatch in HTML), then its
`TextColumn`s in order, then one column per metric of `crs.report.analysis.METRICS`.
`render_markdown`, `render_html` and `render_latex` (comparison tables only) draw a table from its
layout, so:

- to add a text column to the comparison table (or the training-runs table) of both pages, add a
  `TextColumn` to `COMPARISON` (or `TRAIN_SUMMARY`) below: a header and a function of the row;
- to store the same value in metrics.json, add its key to `_row_json` (or `_train_row_json`) in
  `crs.report.render_metrics` (metrics.json keeps raw values, not the page text);
- a new metric column is a new name in `METRICS` (every table and metrics.json follow).

The paired-differences table has its own, different columns per format and is drawn in each renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from crs.report.analysis import Row, TrainSummaryRow
from crs.report.formatting import ranker_text, runs_note
from envs.metrics import MetricSummary


class TableRow(Protocol):
    """What every table row has: a label and a mean / 95% CI per metric."""

    @property
    def label(self) -> str: ...

    @property
    def metrics(self) -> Mapping[str, MetricSummary]: ...


RowT = TypeVar("RowT", bound=TableRow)


@dataclass(frozen=True)
class TextColumn(Generic[RowT]):
    """A column of words or a non-metric figure.

    Attributes:
        header: Column header.
        text: The cell's text for a row (plain text: the HTML renderer escapes it).
        left: Left-aligned small text (names, seeds); False: right-aligned like the figures (counts).
    """

    header: str
    text: Callable[[RowT], str]
    left: bool = True


@dataclass(frozen=True)
class TableLayout(Generic[RowT]):
    """One table: label column, text columns, then a column per metric.

    Attributes:
        label_header: Header of the first column (the row's label).
        columns: The text columns between the label and the metrics.
        best: The metrics in which a row is best (bold in Markdown, green in HTML).
    """

    label_header: str
    columns: tuple[TextColumn[RowT], ...]
    best: Callable[[RowT], Set[str]]


def _no_best(row: object) -> Set[str]:
    return frozenset()


def _train_runs(row: TrainSummaryRow) -> str:
    return ", ".join(r.info.name for r in row.runs)


def _train_steps(row: TrainSummaryRow) -> str:
    return "/".join(f"{t:,}" for t in row.timesteps)


COMPARISON: TableLayout[Row] = TableLayout(
    label_header="policy",
    columns=(TextColumn("ranker", ranker_text), TextColumn("runs", runs_note)),
    best=lambda row: row.best,
)
"""A comparison table: each configuration evaluated on the table's test conversations."""

TRAIN_SUMMARY: TableLayout[TrainSummaryRow] = TableLayout(
    label_header="configuration",
    columns=(TextColumn("runs", _train_runs), TextColumn("steps", _train_steps, left=False)),
    best=_no_best,
)
"""The training runs' own test summaries (as their summary.json states them; no best marked)."""
