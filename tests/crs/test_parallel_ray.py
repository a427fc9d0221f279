"""The Ray backend on a local instance (started once for this module, 2 CPUs): a sweep's table equals
the serial run, `crs eval --workers 2` equals the serial records, a crashed worker's task is retried
and a raised error is not."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from crs.parallel import Task, WorkerPool

try:
    import ray
except ImportError:  # the [ray] extra is part of the [test] extra, so CI always has it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("ray is not installed (pip install 'persona-crs[ray]')", allow_module_level=True)

TIMING_KEYS = ("seconds", "conversations_per_second")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the whole module (starting one takes seconds); pools reuse it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def crash_on_first_attempt(marker: str, value: int) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed once\n")
        os._exit(13)  # the Ray worker process dies mid-task
    return value * value


def always_crash(value: int) -> int:
    os._exit(13)


def square(value: int) -> int:
    return value * value


def always_raise(value: int) -> int:
    raise ValueError(f"task {value} is broken")


def exit_early(value: int) -> int:
    sys.exit(f"task {value} exits")


def unpicklable_result(value: int) -> object:
    return threading.Lock()  # Ray fails to store it after the task has returned


def raise_dataset_error(value: int) -> int:
    from simulators.errors import DatasetError

    raise DatasetError(f"data/{value}.json", "items", "a list of items", "nothing")


def table_text(rows: dict) -> str:
    from crs.common import metrics_table

    console = Console(width=250, record=True, file=io.StringIO())
    console.print(metrics_table("sweep", rows))
    return console.export_text()


@pytest.mark.slow
def test_sweep_on_ray_gives_the_table_of_the_serial_run(tmp_path) -> None:
    from crs.app.evaluation import run_evaluation
    from crs.app.sweep import SweepConfig, expand_grid, run_sweep, sweep_task_dirs

    config = SweepConfig.model_validate(
        {
            "seeds": [1, 2],
            "policies": ["ask-4", "max-entropy"],
            "ablations": {"default": {}, "single": {"user": "single"}},
            "eval": {"episodes": 25},
        }
    )
    outcome = run_sweep(config, tmp_path / "sweep", workers=2, backend="ray")
    assert not outcome.failed and len(outcome.ran) == 8 == len(sweep_task_dirs(tmp_path / "sweep"))
    serial, serial_lines = {}, {}
    for task in expand_grid(config):  # one by one, same seeds, in this process
        out = tmp_path / "serial" / task.name
        result = run_evaluation(
            task.policy, dataset=task.dataset, seed=task.seed, out=out, show_progress=False, **task.settings
        )
        serial[task.name] = result.metrics
        serial_lines[task.name] = (out / "episodes.jsonl").read_text()
    assert list(outcome.rows) == list(serial)
    assert table_text(outcome.rows) == table_text(serial)
    for name, lines in serial_lines.items():  # the records themselves, not only their means
        assert (tmp_path / "sweep" / "runs" / name / "episodes.jsonl").read_text() == lines


@pytest.mark.slow
def test_eval_with_two_ray_workers_equals_the_serial_run(tmp_path) -> None:
    from crs.app.evaluation import run_evaluation

    common = {"episodes": 90, "seed": 4, "show_progress": False}
    serial = run_evaluation("max-entropy", out=tmp_path / "serial", **common)
    parallel = run_evaluation("max-entropy", out=tmp_path / "ray", workers=2, backend="ray", **common)
    assert parallel.records == serial.records and len(serial.records) == 90
    serial_summary, parallel_summary = serial.summary.to_dict(), parallel.summary.to_dict()
    for key in TIMING_KEYS:
        serial_summary.pop(key), parallel_summary.pop(key)
    assert parallel_summary == serial_summary
    on_disk = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert on_disk["metrics"] == serial_summary["metrics"]


def test_ray_retries_a_task_whose_worker_died_and_names_one_that_keeps_dying(tmp_path) -> None:
    tasks = [
        Task("fine", square, (3,)),
        Task("crash-once", crash_on_first_attempt, (str(tmp_path / "marker"), 4)),
        Task("doomed", always_crash, (5,)),
    ]
    with WorkerPool(2, backend="ray") as pool:
        fine, once, doomed = pool.run(tasks, retries=2)
    assert ray.is_initialized()  # the pool reused the module's instance and left it running
    assert fine.ok and fine.value == 9 and fine.attempts == 1
    assert once.ok and once.value == 16 and once.attempts == 2 and once.failures == 1
    assert not doomed.ok and doomed.attempts == 3 and doomed.failures == 3  # Ray blames exactly
    assert doomed.error is not None and doomed.error.startswith("WorkerCrashedError")


def test_ray_reports_a_raised_error_at_once_without_retrying() -> None:
    """Only a lost worker is retried: an error the task raised would only repeat."""
    tasks = [
        Task("broken", always_raise, (8,)),
        Task("bad-data", raise_dataset_error, (9,)),
        Task("exits", exit_early, (10,)),
    ]
    retried: list[str] = []
    with WorkerPool(2, backend="ray") as pool:
        broken, bad_data, exits = pool.run(tasks, retries=2, on_retry=lambda n, a, e: retried.append(n))
    assert retried == []
    assert not broken.ok and broken.attempts == 1 and broken.error == "ValueError: task 8 is broken"
    assert not bad_data.ok and bad_data.attempts == 1
    assert bad_data.error == "DatasetError: data/9.json [items]: expected a list of items, found nothing"
    assert not exits.ok and exits.attempts == 1 and exits.error == "SystemExit: task 10 exits"


def test_ray_does_not_retry_a_task_whose_result_it_cannot_store() -> None:
    """An error raised outside the task's code (here: its result cannot be serialised) is no lost worker:
    a retry would fail the same way, so the task fails at once."""
    retried: list[str] = []
    with WorkerPool(2, backend="ray") as pool:
        (result,) = pool.run(
            [Task("unpicklable", unpicklable_result, (1,))],
            retries=2,
            on_retry=lambda n, a, e: retried.append(n),
        )
    assert retried == [] and not result.ok and (result.attempts, result.failures) == (1, 1)
