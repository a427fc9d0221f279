"""Writing a built report: report.md, a self-contained report.html (plots inline as base64 PNG, no
network), metrics.json with every figure the pages show, and tables.tex with the tables for a paper.

One module per file written, with what they share in one place:

- `crs.report.render_markdown` — report.md (`to_markdown`);
- `crs.report.render_html` — report.html (`to_html`), styled by `crs/report/report.css`;
- `crs.report.render_metrics` — metrics.json (`to_metrics`);
- `crs.report.render_latex` — tables.tex (`to_latex`);
- `crs.report.columns` — the tables' columns, shared by report.md, report.html and tables.tex: add a
  column there;
- `crs.report.formatting` — numbers, CIs and sentences both pages print the same way.

This module writes the four files; `to_markdown`, `to_html`, `to_metrics` and `to_latex` stay importable
from here.
"""

from __future__ import annotations

import re
from pathlib import Path

from crs.report.build import Report
from crs.report.plots import FIGURES
from crs.report.render_html import to_html
from crs.report.render_latex import to_latex
from crs.report.render_markdown import to_markdown
from crs.report.render_metrics import to_metrics
from policies.atomic import write_json_atomic, write_text_atomic

__all__ = ["to_html", "to_latex", "to_markdown", "to_metrics", "write_report"]


REPORT_MARK = "report.md"
"""The file every report output holds (`crs report --overwrite` replaces only a folder holding it)."""
REPORT_FILES = (REPORT_MARK, "report.html", "metrics.json", "tables.tex")
"""The text files every report writes (its figures: `crs.report.plots.FIGURES`)."""
_FIGURE_FILE = re.compile(rf"(?:{'|'.join(FIGURES)})(?:_[0-9]+)?\.(?:png|pdf)")


def is_report_file(name: str) -> bool:
    """Whether a file named `name` is one `write_report` writes: `REPORT_FILES`, or a figure as PNG or PDF
    (`crs.report.plots.figure_file`)."""
    return name in REPORT_FILES or _FIGURE_FILE.fullmatch(name) is not None


def write_report(report: Report) -> list[Path]:
    """Write report.md, report.html, metrics.json and tables.tex into ``report.out``; return the files."""
    out = report.out
    write_text_atomic(out / REPORT_MARK, to_markdown(report))
    write_text_atomic(out / "report.html", to_html(report))
    write_json_atomic(out / "metrics.json", to_metrics(report))
    write_text_atomic(out / "tables.tex", to_latex(report))
    plots = [p for ps in report.table_plots.values() for p in ps]
    plots += [p for ps in report.persona_plots.values() for p in ps]
    plots += list(report.session_plots.values())
    if report.learning is not None:
        plots.append(report.learning)
    files = [out / name for name in REPORT_FILES]
    return files + [path for plot in plots for path in (plot.path, plot.pdf)]
