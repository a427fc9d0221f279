"""`crs data info|validate`: inspect and check the catalogues (persona world and SCPR/UNICORN data)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crs.app.settings import MAX_SEED
from crs.common import CRSGroup
from simulators.catalog import Catalog
from simulators.datasets import DATASET_NAMES, Check, DatasetSpec, check_catalog, check_dataset_name
from simulators.errors import CRSError

EXIT_BAD_INPUT = 2  # unknown dataset name, missing or malformed data
EXIT_FAILED_CHECK = 1  # data loads but fails a consistency check

_NAMES = ", ".join(DATASET_NAMES)

data_app = typer.Typer(
    name="data",
    cls=CRSGroup,
    help=(
        "Inspect and validate datasets: the embedded persona world or the SCPR/UNICORN benchmarks "
        f"({_NAMES})."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_DATA_DIR_HELP = (
    "Folder that contains lastfm/, lastfm_star/, yelp_star/ (and hetrec2011-lastfm-2k/ for names) and "
    "mcmipl/. Default: $CRS_DATA_DIR (an empty --data-dir means it too). Not used by persona_world."
)
# str, not Path: typer would read an empty --data-dir "" as Path("."), the current folder
_DataDir = Annotated[str | None, typer.Option("--data-dir", help=_DATA_DIR_HELP)]
_Seed = Annotated[
    int,
    typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the persona world (ignored for real data)."),
]


def _load(console: Console, dataset: str, data_dir: str | None, seed: int) -> Catalog:
    """Load a catalogue, or print the error in red and exit with EXIT_BAD_INPUT."""
    try:
        check_dataset_name(dataset)
        return DatasetSpec(dataset, data_dir or None, seed).load()
    except CRSError as error:  # escaped: a file's key such as "[keys]" or "[/]" is not markup
        console.print(
            f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False, markup=True
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _summary_table(catalog: Catalog) -> Table:
    summary = catalog.describe()
    table = Table(title=f"dataset {summary.name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("users", f"{summary.n_users:,}")
    table.add_row("items", f"{summary.n_items:,}")
    table.add_row("aspects", f"{summary.n_aspects:,}")
    table.add_row("parent categories", f"{summary.n_parents:,}" if summary.n_parents else "none")
    table.add_row(
        "aspects per item",
        f"mean {summary.aspects_per_item_mean:.2f}, min {summary.aspects_per_item_min}, "
        f"max {summary.aspects_per_item_max}",
    )
    per_aspect = catalog.aspect_items.indptr[1:] - catalog.aspect_items.indptr[:-1]
    table.add_row("items per aspect", f"mean {per_aspect.mean():.1f}, max {int(per_aspect.max(initial=0)):,}")
    for split in ("train", "valid", "test"):
        size = summary.split_sizes.get(split)
        table.add_row(f"{split} interactions", f"{size:,}" if size is not None else "[yellow]absent[/]")
    if catalog.taxonomy is None:
        table.add_row("taxonomy", "none (no categories over the aspects, so no enumerated setting)")
    else:
        tax = catalog.taxonomy
        assert tax.members is not None  # set in Taxonomy.__post_init__
        sizes = tax.members.indptr[1:] - tax.members.indptr[:-1]
        table.add_row(
            "taxonomy",
            f"{summary.n_parents} categories (parents), {int(sizes.min())}-{int(sizes.max())} "
            f"fine aspects each; {int((tax.parent_of < 0).sum())} aspects under no category",
        )
    if catalog.truth is not None:
        truth = catalog.truth
        table.add_row(
            "personas (ground truth)",
            f"{truth.n_personas} shared personas, {truth.personas_per_user} per user",
        )
    table.add_row("pre-training split", catalog.pretrain_split)
    for i, note in enumerate(summary.notes):
        table.add_row("notes" if i == 0 else "", note)
    return table


@data_app.command(
    "info",
    epilog=(
        "Examples:\n\n"
        "  crs data info                       # the embedded persona world (seed 0)\n\n"
        "  crs data info --seed 3              # another persona world\n\n"
        "  crs data info lastfm_star --data-dir ../shared/data\n\n"
        "  CRS_DATA_DIR=../shared/data crs data info yelp_star"
    ),
)
def info(
    dataset: Annotated[str, typer.Argument(help=f"Dataset name: one of {_NAMES}.")] = "persona_world",
    data_dir: _DataDir = None,
    seed: _Seed = 0,
) -> None:
    """Show a summary of a dataset: users, items, aspects, aspects per item, splits, taxonomy, notes."""
    console = Console()
    catalog = _load(Console(stderr=True), dataset, data_dir, seed)
    console.print(_summary_table(catalog))


def _transe_check(catalog: Catalog, data_dir: str | None) -> Check:
    """Whether LastFM's TransE embeddings (UNICORN's ranker, `--ranker transe`) load for `catalog`."""
    from policies.baseline_rankers import TransERanker  # only this check needs the rankers
    from policies.rankers import transe_file

    path = transe_file(data_dir)
    if not path.is_file():
        return Check("TransE embeddings", "warn", f"{path} is missing; only --ranker transe needs it")
    try:
        TransERanker.from_file(path, catalog)
    except CRSError as error:
        return Check("TransE embeddings", "fail", str(error))
    return Check("TransE embeddings", "ok", f"{path} fits {catalog.name}")


@data_app.command(
    "validate",
    epilog=(
        "Exit codes: 0 valid (warnings allowed), 1 a consistency check failed, "
        "2 the data could not be loaded (the message names the file, the field and what was expected).\n\n"
        "Examples:\n\n"
        "  crs data validate lastfm_star --data-dir ../shared/data\n\n"
        "  crs data validate yelp_star --data-dir /data/scpr\n\n"
        "  crs data validate persona_world --seed 1"
    ),
)
def validate(
    dataset: Annotated[str, typer.Argument(help=f"Dataset name: one of {_NAMES}.")],
    data_dir: _DataDir = None,
    seed: _Seed = 0,
) -> None:
    """Load a dataset with full validation, then run consistency checks (pairs, splits, taxonomy)."""
    console = Console()
    catalog = _load(Console(stderr=True), dataset, data_dir, seed)
    checks = check_catalog(catalog) + (
        (_transe_check(catalog, data_dir),) if catalog.name == "lastfm" else ()
    )
    table = Table(title=f"checks of {catalog.name}", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    style = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}
    for check in checks:
        table.add_row(check.name, style[check.status], escape(check.detail))
    console.print(table)
    summary = catalog.describe()
    counts = (
        f"{summary.n_users:,} users, {summary.n_items:,} items, {summary.n_aspects:,} aspects, "
        + ", ".join(f"{split} {size:,}" for split, size in summary.split_sizes.items())
    )
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        console.print(
            f"[bold red]FAILED[/] {catalog.name}: {len(failed)} check(s) failed ({counts})", soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED_CHECK)
    warned = sum(c.status == "warn" for c in checks)
    console.print(
        f"[bold green]OK[/] {catalog.name}: {counts}" + (f" ({warned} warning(s))" if warned else ""),
        soft_wrap=True,
    )
