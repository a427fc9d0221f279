"""What every command shares: the console, error reporting, dataset and ranker options."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from envs.metrics import MetricSummary
from simulators.errors import CRSError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DATASET_HELP = "Dataset: persona_world (default, embedded), lastfm, lastfm_star or yelp_star."
DATA_DIR_HELP = (
    "Folder holding the SCPR/UNICORN data (lastfm/, lastfm_star/, yelp_star/); default $CRS_DATA_DIR."
)


def friendly_errors(function: F) -> F:
    """Turn the project's typed errors into a one-line red message and exit code 2 (no traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CRSError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to `path` through a temporary file and an atomic rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)


def format_metric(summary: MetricSummary, digits: int = 3) -> str:
    """'0.682 [0.645, 0.719]'."""
    return f"{summary.mean:.{digits}f} [{summary.low:.{digits}f}, {summary.high:.{digits}f}]"


METRIC_ORDER = ("SR@5", "SR@10", "SR@15", "AT", "hDCG")


def metrics_table(title: str, rows: Mapping[str, Mapping[str, MetricSummary]]) -> Table:
    """A rich table: one row per policy, SR@5/10/15, AT and hDCG with 95% CIs."""
    table = Table(
        title=title, title_justify="left", caption="mean, [95% bootstrap CI] below", caption_justify="left"
    )
    table.add_column("policy", style="bold", no_wrap=True)
    for name in METRIC_ORDER:
        table.add_column(name, justify="right")
    for policy, metrics in rows.items():
        table.add_row(
            policy, *(format_metric(metrics[name], 2 if name == "AT" else 3) for name in METRIC_ORDER)
        )
    return table
