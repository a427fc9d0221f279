"""`crs report`: turn evaluation records and training runs into a report that answers the question."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from crs.app.settings import MAX_SEED
from crs.claims import FolderClaim, refuse_output_over_inputs
from crs.common import (
    DATA_DIR_HELP,
    console,
    data_dir_input,
    friendly_errors,
    metrics_table,
    nothing_written,
    say_when_interrupted,
)

if TYPE_CHECKING:
    from crs.report.ledger import InputLine


@friendly_errors
def report_command(
    inputs: list[Path] = typer.Argument(
        ...,
        help="`crs eval` output folders, `crs train` run folders and/or `crs sweep` folders (or folders "
        "holding them).",
    ),
    out: Path = typer.Option(
        Path("out/report"),
        "--out",
        "-o",
        help="Output folder; refused if it holds files, unless --overwrite, and never one of the inputs, "
        "a folder holding one, or a folder inside one.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the earlier report the output folder holds (refused if it holds other files too).",
    ),
    data_dir: str = typer.Option(
        None,
        "--data-dir",
        help=DATA_DIR_HELP
        + " Real-data details read the folder each evaluation recorded; give this where the data moved.",
    ),
    examples: int = typer.Option(
        3, "--examples", min=0, help="Example dialogues to replay, at most (from the first table; 0: none)."
    ),
    persona: bool = typer.Option(
        True, "--persona/--no-persona", help="Run the persona analysis when possible."
    ),
    figures: bool = typer.Option(
        True,
        "--figures/--no-figures",
        help="Draw the plots (PNG and PDF); --no-figures writes the text and tables alone, faster (about "
        "3 times for evaluations alone; a persona analysis takes its own time).",
    ),
    title: str = typer.Option(None, "--title", help="Report title."),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=MAX_SEED,
        help="Seed of the analysis' own sampling (persona pairs, baselines).",
    ),
) -> None:
    """Write report.md, a self-contained report.html, metrics.json, tables.tex and plots into --out.

    Compares policies, rule baselines and ablations on the same test conversations (SR@5/10/15, AT,
    hDCG with 95% CIs, paired differences), draws SR@t curves, turn distributions, action mixes and
    learning curves, analyses personas when a persona model is among the inputs, and answers whether
    persona and aspect attention work better together than apart. Inputs evaluated on different
    datasets or conversations are never mixed in one table. A sweep folder contributes its finished
    tasks, one row per (dataset, policy, ablation) with a 95% CI across its seeds. The output opens with
    the inputs used (by table) and those left out with the reason: duplicates, a sweep's unfinished
    tasks, and unreadable or foreign folders inside a folder of inputs. tables.tex holds the tables
    as LaTeX for a paper (booktabs, graphicx; each caption names dataset, setting, user and conversations);
    every plot is written as PNG (for the pages) and as vector PDF (for a paper).

    An --out folder holding files is refused unless --overwrite, and a folder another crs command is
    writing is always refused.

    Examples:

      crs eval --policy ask-4 -n 300 -o out/eval/ask-4

      crs eval --policy max-entropy -n 300 -o out/eval/max-entropy

      crs report out/eval/ask-4 out/eval/max-entropy --out out/report

      crs report runs/full-s1 runs/persona-blind-s1 \\
        runs/aspect-blind-s1 runs/both-off-s1 --out out/ablation

      crs report out/sweeps/rules --out out/report-rules
    """
    from crs.report import build_report, load_inputs, write_report  # matplotlib, scipy.stats load here
    from crs.report.render import REPORT_MARK, is_report_file

    if data_dir is not None and not Path(data_dir).expanduser().is_dir():  # else: sections "unavailable"
        raise typer.BadParameter(
            f"{data_dir} is not a folder: give the folder that holds the datasets (as for crs eval)",
            param_hint="'--data-dir'",
        )
    refuse_output_over_inputs(out, [("input", path) for path in inputs], inside=True)
    refuse_output_over_inputs(out, [("data folder", data_dir_input(data_dir))], inside=True)
    started = time.perf_counter()
    interrupted = nothing_written("report", out, REPORT_MARK)
    with say_when_interrupted(interrupted), console.status("building the report"):
        loaded = load_inputs(inputs)  # unreadable inputs fail before the output is claimed (or emptied)
        with FolderClaim(
            out,
            "report output",
            overwrite=overwrite,
            hint="pass --overwrite to replace them, or --out to write elsewhere",
            marks=(REPORT_MARK,),
            owns=is_report_file,
            defer=True,
        ) as claim:
            # built whole beside an earlier report, which is replaced only then: a build that fails
            # leaves it as it was
            staging = claim.staging_folder()
            try:
                report = build_report(
                    loaded,
                    staging,
                    data_dir=data_dir,
                    examples=examples,
                    persona=persona,
                    title=title,
                    seed=seed,
                    figures=figures,
                )
                files = [out / file.name for file in write_report(report)]
                claim.move_in(staging, last=REPORT_MARK)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    print_input_list(report.input_list)
    for index, table in enumerate(report.tables):
        rows = {row.label: row.metrics for row in table.rows}
        console.print(metrics_table(f"table {index + 1}: {table.heading}", rows))
    console.print(f"\n[bold]The answer.[/] {escape(report.answer.replace('**', ''))}\n", highlight=False)
    for section, reason in report.unavailable.items():
        console.print(f"[dim]{section}: unavailable ({escape(reason)})[/]", highlight=False, soft_wrap=True)
    for run in report.inputs.trains:
        if run.missing:
            what = escape(f"{run.info.path}: missing {'; '.join(run.missing)}")
            console.print(f"[yellow]{what}[/]", highlight=False, soft_wrap=True)
    written = ", ".join(
        str(out / name) for name in ("report.html", REPORT_MARK, "metrics.json", "tables.tex")
    )
    console.print(
        f"wrote {len(files)} files in {time.perf_counter() - started:.1f} s: {escape(written)}",
        soft_wrap=True,
    )


def print_input_list(lines: list[InputLine]) -> None:
    """Print which inputs the report used (and where) and which it left out, with the reasons."""
    from crs.report.ledger import counts  # crs.report loads matplotlib and scipy.stats: only when reporting

    console.print(f"[bold]inputs:[/] {counts(lines)}", highlight=False)
    for line in lines:
        head = escape(line.head) if line.used else f"[yellow]{escape(line.head)}[/]"
        text = escape(line.text().removeprefix(line.head))
        console.print(f"  {head}{text}", highlight=False, soft_wrap=True)
