"""The report's input list: which inputs it used, where, and which it left out, each with the reason.

One short list at the top of the terminal output, report.md and report.html (and ``input_list`` in
metrics.json), instead of warnings scattered through the pages. An input is a folder as the user
passed it or as a passed folder held it: a sweep counts once (with its number of tasks), a train run
stands for its own records (an ``eval/`` folder in it, or `crs train`'s ``tested/``). Used inputs are
grouped by the table they are in (a table other than table 1 says what sets it apart); inputs left out
are grouped by their reason:

- found beside the inputs but unreadable, or no input at all (`crs.report.inputs.load_inputs`);
- a sweep's unfinished or missing tasks (`crs.report.inputs.read_sweep_dir`);
- a run that repeats another (`crs.report.analysis.duplicates`), read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crs.app.run_folder import TEST_DIR
from crs.report.analysis import Table, duplicates, separation
from crs.report.inputs import EvalRun, Inputs, TrainRun, tested_in

TRAIN_ONLY = "train runs without episode records (learning curves and their own test summaries only)"
"""Where train runs go whose policy was not evaluated among the inputs."""


@dataclass(frozen=True)
class InputLine:
    """Inputs that went to one place of the report, or that were left out for one reason.

    Attributes:
        used: Whether their figures are in the report.
        where: For used inputs, where they are ("table 1", or `TRAIN_ONLY`); "" for inputs left out.
        reason: For a table other than table 1, what sets it apart ("separate from table 1: ..."); for
            inputs left out, why (with the fix when there is one); else "".
        paths: The inputs, as passed or found (a sweep with its number of tasks).
    """

    used: bool
    where: str
    reason: str
    paths: tuple[str, ...]

    @property
    def head(self) -> str:
        """ "table 2", or "left out"."""
        return self.where if self.used else "left out"

    def text(self) -> str:
        """The line in words: "<head>: <paths>", then " — <reason>" when there is one."""
        text = f"{self.head}: {', '.join(self.paths)}"
        return f"{text} — {self.reason}" if self.reason else text


def input_lines(inputs: Inputs, tables: Sequence[Table]) -> list[InputLine]:
    """The report's input list: used inputs by table (then train runs alone), then inputs left out by
    reason, in the order the inputs were read.

    Args:
        inputs: What `crs.report.inputs.load_inputs` read, with what it left out.
        tables: The comparison tables built from ``inputs.evals``.
    """
    lines: list[InputLine] = []
    compared: set[Path] = set()
    for index, table in enumerate(tables):
        runs = [run for row in table.rows for run in row.runs]
        compared.update(run.path for run in runs)
        reason = "" if index == 0 else f"separate from table 1: {separation(table, tables[0])}"
        lines.append(InputLine(True, f"table {index + 1}", reason, _grouped(_unit(run) for run in runs)))
    repeats = duplicates(inputs.evals)
    read = compared | {run.path for run, _ in repeats}  # a repeat is listed as such, not as "without records"
    alone = [_train_unit(run) for run in inputs.trains if not any(_is_own_eval(run, path) for path in read)]
    if alone:
        lines.append(InputLine(True, TRAIN_ONLY, "", _grouped(alone)))
    left: dict[str, list[str]] = {}
    for entry in inputs.left_out:
        left.setdefault(entry.reason, []).append(str(entry.path))
    for run, twin in repeats:
        reason = f"repeats {twin.path} (same configuration, seed and conversations); read once"
        left.setdefault(reason, []).append(str(run.path))
    lines += [InputLine(False, "", reason, tuple(paths)) for reason, paths in left.items()]
    return lines


def counts(lines: Iterable[InputLine]) -> str:
    """ "5 used, 2 left out": the inputs listed as used and as left out."""
    lines = list(lines)
    used = sum(len(line.paths) for line in lines if line.used)
    left = sum(len(line.paths) for line in lines if not line.used)
    return f"{used} used, {left} left out"


def _unit(run: EvalRun) -> tuple[str, bool]:
    """The input an eval run came from (its sweep, the train run it is the evaluation of, or itself),
    and whether it is a sweep's task (a baseline in a task's own test is part of the task's sweep)."""
    if run.task is not None:
        return str(run.task.sweep), True
    if run.tested_by is not None:
        return str(run.tested_by.sweep), False
    if run.train is not None and run.path.parent == run.train.path:
        return str(run.train.path), False
    tested = tested_in(run)
    return str(run.path if tested is None else tested), False


def _is_own_eval(run: TrainRun, path: Path) -> bool:
    """Whether `path` holds records of the train run's own (its final evaluation, or its test)."""
    final = run.final_eval is not None and path == run.final_eval.path
    return final or path.parent == run.info.path / TEST_DIR


def _train_unit(run: TrainRun) -> tuple[str, bool]:
    """The input a train run came from (its sweep, or itself), and whether it is a sweep's task."""
    return (str(run.task.sweep), True) if run.task is not None else (str(run.info.path), False)


def _grouped(units: Iterable[tuple[str, bool]]) -> tuple[str, ...]:
    """Inputs in order, each once; a sweep with the number of its tasks ("out/sweep (4 tasks)")."""
    tasks: dict[str, int] = {}
    for path, is_task in units:
        tasks[path] = tasks.get(path, 0) + is_task
    return tuple(f"{path} ({n} task{'s' if n > 1 else ''})" if n else path for path, n in tasks.items())
