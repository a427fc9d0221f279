"""`crs report`: evaluation reports (Markdown, self-contained HTML, metrics.json, PNG plots).

Reads `crs eval` output folders, `crs train` run folders and `crs sweep` folders, compares policies,
baselines and ablations on the same test conversations with 95% confidence intervals, and answers
whether persona and aspect attention work better together than apart, from the numbers.
"""

from crs.report.analysis import PairedDiff, Row, Table, TestSet, answer, build_tables
from crs.report.build import Report, build_report
from crs.report.inputs import (
    EvalRun,
    Inputs,
    SweepTaskInfo,
    TrainInfo,
    TrainRun,
    load_inputs,
    read_eval_dir,
    read_sweep_dir,
    read_train_run,
)
from crs.report.render import to_html, to_markdown, to_metrics, write_report

__all__ = [
    "EvalRun",
    "Inputs",
    "PairedDiff",
    "Report",
    "Row",
    "SweepTaskInfo",
    "Table",
    "TestSet",
    "TrainInfo",
    "TrainRun",
    "answer",
    "build_report",
    "build_tables",
    "load_inputs",
    "read_eval_dir",
    "read_sweep_dir",
    "read_train_run",
    "to_html",
    "to_markdown",
    "to_metrics",
    "write_report",
]
