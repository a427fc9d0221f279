"""`crs sweep CONFIG --out DIR`: run a grid of evaluations, trainings or returning-user evaluations on Ray
(or a local process pool)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from crs.app.run_folder import FigureLabel
from crs.app.sweep import (
    DEFAULT_NAME,
    RESULTS_FILE,
    RUNS_DIR,
    check_sweep_folder,
    expand_grid,
    extend_tasks,
    finished_tasks,
    load_sweep_config,
    parse_seeds,
    run_sweep,
    sweep_task_dirs,
    with_seeds,
    with_train_steps,
)
from crs.common import console, friendly_errors, metrics_table, stopped, terminate_as_interrupt
from crs.parallel import BACKENDS, TaskResult, check_pool_request
from crs.progress import LoggedProgress
from envs.metrics import MetricSummary

EXIT_TASKS_FAILED = 1


def _sweep_title(name: str) -> str:
    """ "sweep <name>" in bold, or "sweep" alone for a config that gives no name."""
    return "sweep" if name == DEFAULT_NAME else f"sweep [bold]{escape(name)}[/]"


@friendly_errors
def sweep_command(
    config: Path = typer.Argument(
        ..., help="Sweep config (.yaml or .toml): kind, seeds, datasets, policies, ablations."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Sweep directory: new, empty, or an earlier sweep of this config (a rerun skips its finished "
        "tasks).",
    ),
    workers: int = typer.Option(
        None, "--workers", "-w", help="Tasks at once (default: all cores, or the cluster's CPUs)."
    ),
    backend: str = typer.Option("auto", "--backend", help=f"Worker backend: {', '.join(BACKENDS)}."),
    address: str = typer.Option(
        None, "--address", help="Existing Ray cluster (e.g. ray://head:10001); default: a local instance."
    ),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Kind train: set train.steps (e.g. a longer budget with --extend)."
    ),
    seeds: str = typer.Option(
        None,
        "--seeds",
        help="Run these seeds instead of the config's, e.g. 0-9 or 0,2,5 (into the same --out, only the new "
        "seeds run).",
    ),
    extend: Path = typer.Option(
        None,
        "--extend",
        help="Kind train: an earlier sweep of this config whose runs each task continues to train.steps "
        "(that folder is only read; --out must be another).",
    ),
) -> None:
    """Run every (dataset, policy, ablation, seed) of a config as its own task.

    The config's kind says what a task is: eval (default), one `crs eval` with the `eval:` block;
    train, one `crs train` with the `train:` block, then its test comparison; sessions, one `crs eval
    --sessions` (returning users of the persona world, lastfm, lastfm_star or yelp_star) with the
    `sessions:` block. The ablations
    override the block's keys; a mapping of the train block (ppo, wrapper, rewards, ...) is merged key by
    key, so `{ppo: {ent_coef: 0.05}}` changes that one setting.

    Each finished task is moved into DIR/runs/<task>/ by one atomic rename (with a `done` marker);
    interrupting (or killing) and rerunning the same command skips finished tasks and continues a train
    task that was running from its last checkpoint, while a second run into DIR as the first goes on is
    refused. DIR holds one config: a config may grow there (more policies, datasets or seeds: the
    finished tasks are skipped, and sweep.json becomes the new config), but one that leaves out a
    finished task, or a non-empty folder that is not a sweep folder, is refused (use another --out).
    A task whose worker process crashed is retried (`retries` in the config,
    default 2); a task that raised an error (e.g. a missing data folder) is not. Failed tasks are named
    (exit code 1). The options and the whole config are checked before any task starts (exit code 2 on
    a bad value). Killing the sweep kills its workers.

    More seeds? `--seeds 0-9` runs the config with those seeds; into the sweep folder of the same config
    with fewer seeds, only the new seeds' tasks run.

    Curves still rising? `--extend OLD --steps N` continues each run of the training sweep OLD (same
    config, fewer steps) to N steps in a new sweep folder, tests it again, and leaves OLD as it was.

    Example config (sweep.yaml):

      seeds: [1, 2, 3]

      policies: \\[ask-4, max-entropy]

      eval: {episodes: 600}

    Returning users, frozen vs updated memory (then `crs report DIR` draws the per-session curves):

      kind: sessions

      seeds: [0, 1, 2]

      policies: \\[ask-4]

      sessions: {ranker: runs/pw-ranker, regime: switch,
                 sessions: 8, sequences: 1000}

      ablations:
        frozen: {memory: frozen}
        update: {memory: update}
        oracle: {memory: oracle}

    Examples:

      crs sweep sweep.yaml --out out/sweeps/rules

      crs sweep sweep.yaml --out out/sweeps/rules \\
        --workers 8 --address ray://head:10001

      crs sweep train.yaml --out runs/sweeps/ablation --seeds 0-9

      crs sweep train.yaml --out runs/sweeps/ablation-80k \\
        --extend runs/sweeps/ablation --steps 81920
    """
    check_pool_request(workers, backend, address)  # before anything runs, whatever the worker count
    settings = load_sweep_config(config)
    if steps is not None:
        settings = with_train_steps(settings, steps)
    if seeds is not None:
        settings = with_seeds(settings, parse_seeds(seeds))
    tasks = expand_grid(settings) if extend is None else extend_tasks(settings, extend, out)
    check_sweep_folder(out, settings, tasks, extend)  # one config per folder, nothing else's files
    already = finished_tasks(out, tasks)
    continued = f", continuing the runs of {escape(str(extend))}" if extend is not None else ""
    console.print(
        f"{_sweep_title(settings.name)}: {len(tasks)} tasks{continued}, "
        f"{len(already)} already finished in {escape(str(out))}",
        highlight=False,
    )
    with LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("tasks", total=len(tasks), completed=len(already))

        def finished(result: TaskResult) -> None:
            progress.advance(bar)
            if result.ok:
                console.print(
                    f"[green]done[/] {escape(result.name)} ({result.seconds:.1f} s)", highlight=False
                )
            else:
                attempts = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
                failure = escape(f"{result.name} after {attempts}: {result.error}")
                console.print(f"[bold red]failed[/] {failure}", highlight=False)

        def retrying(name: str, attempt: int, error: str) -> None:
            console.print(
                f"[yellow]retry[/] {escape(name)} (attempt {attempt} failed: {escape(error)})",
                highlight=False,
            )

        try:
            with terminate_as_interrupt():
                outcome = run_sweep(
                    settings,
                    out,
                    workers=workers,
                    backend=backend,
                    address=address,
                    notify=lambda line: console.print(line, markup=False, highlight=False),
                    on_result=finished,
                    on_retry=retrying,
                    extend=extend,
                )
        except KeyboardInterrupt as stop:
            progress.stop()
            word, status = stopped(stop)
            done = len(sweep_task_dirs(out)) if (out / RUNS_DIR).is_dir() else 0
            kept = (
                f"finished tasks are kept in {escape(str(out / RUNS_DIR))} ({done} so far)"
                if done
                else "no task had finished, so none is kept"
            )
            console.print(
                f"[yellow]{word}[/]: {kept}; rerun the same command to run the rest (a train task that was "
                "running goes on from its last checkpoint; any other task that was running starts again)",
                highlight=False,
            )
            raise typer.Exit(status) from None

    this_run = f"{len(outcome.ran)} run now, {len(outcome.skipped)} skipped as finished"
    if len(outcome.tasks) != len(outcome.planned):  # e.g. `--seeds` into a folder of more seeds
        this_run = f"this run's {len(outcome.tasks)}: {this_run}"
    console.print(
        f"{_sweep_title(settings.name)}: {len(outcome.rows)}/{len(outcome.planned)} tasks finished "
        f"({this_run})",
        highlight=False,
    )
    tables: dict[FigureLabel, dict[str, dict[str, MetricSummary]]] = {}
    for name, metrics in outcome.rows.items():  # one table per dataset, split, setting, ranker, size
        tables.setdefault(outcome.labels[name], {})[name] = metrics
    for label, rows in tables.items():
        console.print(metrics_table(label.describe(), rows))
    console.print(f"results in [bold]{escape(str(out))}[/] ({RESULTS_FILE}, {RUNS_DIR}/<task>/)")
    if outcome.failed:
        names = escape(", ".join(result.name for result in outcome.failed))
        console.print(f"[bold red]{len(outcome.failed)} task(s) failed:[/] {names}; rerun to retry them")
        raise typer.Exit(EXIT_TASKS_FAILED)
