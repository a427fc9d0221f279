"""Worker pools without Ray: order of results, bounded retries of crashes (never of raised errors),
crash isolation, `crs eval --workers`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crs.parallel import RAY_MISSING_NOTICE, Task, WorkerPool, check_pool_request, resolve_backend
from simulators.errors import CRSError, DatasetError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
TIMING_KEYS = ("seconds", "conversations_per_second")


# Task functions live at module level: workers import them by reference.
def square(value: int) -> int:
    return value * value


def crash_on_first_attempt(marker: str, value: int) -> int:
    """Kills its worker process the first time (no exception, the process just dies), then squares."""
    path = Path(marker)
    if not path.exists():
        # written whole, then renamed: a worker killed mid-write (another task broke the pool) leaves no
        # empty marker that would let the re-run skip its crash
        staged = path.with_suffix(".partial")
        staged.write_text("crashed once\n")
        staged.replace(path)
        os._exit(13)
    return value * value


def always_crash(value: int) -> int:
    os._exit(13)


def raise_on_first_attempt(marker: str, value: int) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text("raised once\n")
        raise ValueError(f"first attempt of {value} fails")
    return value * value


def always_raise(value: int) -> int:
    raise ValueError(f"task {value} is broken")


def exit_early(value: int) -> int:
    sys.exit(f"task {value} exits")


def raise_dataset_error(value: int) -> int:
    """A user error whose exception does not survive pickling (four constructor arguments)."""
    raise DatasetError(f"data/{value}.json", "items", "a list of items", "nothing")


def memory_error_on_first_attempt(marker: str, value: int) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text("out of memory once\n")
        raise MemoryError
    return value * value


def crash_later_on_first_attempt(marker: str, value: int) -> int:
    """Like `crash_on_first_attempt`, but the worker dies after a second (while others go on)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed once\n")
        time.sleep(1.0)
        os._exit(13)
    return value * value


def record_pid(path: str) -> int:
    Path(path).write_text(str(os.getpid()))
    return 0


def sleep_then_square(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value * value


def raise_two_lines(value: int) -> int:
    raise ValueError(f"task {value} is broken\nsee the log for the details")


def always_out_of_memory(value: int) -> int:
    raise MemoryError


def unpicklable_result(value: int) -> threading.Lock:
    """Returns what cannot travel back to the driver (a lock does not pickle)."""
    return threading.Lock()


def math_threads(value: int) -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


def test_results_come_back_in_task_order() -> None:
    tasks = [Task(f"t{i}", square, (i,)) for i in range(7)]
    with WorkerPool(2, backend="process") as pool:
        results = pool.run(tasks)
    assert [r.name for r in results] == [f"t{i}" for i in range(7)]
    assert [r.value for r in results] == [0, 1, 4, 9, 16, 25, 36]  # i*i
    assert all(r.ok and r.attempts == 1 for r in results)


@pytest.mark.slow
def test_process_pool_retries_a_crashed_worker_and_names_a_task_that_keeps_crashing(tmp_path) -> None:
    tasks = [
        Task("fine-a", square, (2,)),
        Task("crash-once", crash_on_first_attempt, (str(tmp_path / "marker"), 3)),
        Task("fine-b", square, (4,)),
        Task("doomed", always_crash, (5,)),
        Task("fine-c", square, (6,)),
    ]
    retried: list[str] = []
    with WorkerPool(2, backend="process") as pool:
        results = {r.name: r for r in pool.run(tasks, retries=2, on_retry=lambda n, a, e: retried.append(n))}
    assert [results[n].value for n in ("fine-a", "crash-once", "fine-b", "fine-c")] == [4, 9, 16, 36]
    once = results["crash-once"]
    # Crashed once, then succeeded. Its crash is charged only if it was alone in flight when the pool
    # broke; otherwise every task in flight re-runs alone, uncharged, and its second run succeeds.
    assert once.ok and once.attempts >= 2 and once.failures in (0, 1)
    doomed = results["doomed"]
    assert not doomed.ok and doomed.value is None and "died" in (doomed.error or "")
    assert doomed.failures == 3  # retries=2: 1 + 2 crashes charged (each while running alone)
    # An innocent task in flight when a pool broke may be started again, but is never charged.
    assert all(results[n].failures == 0 for n in ("fine-a", "fine-b", "fine-c"))
    assert retried.count("doomed") == 2 and retried.count("crash-once") == once.failures
    assert (tmp_path / "marker").read_text() == "crashed once\n"


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_a_raised_error_is_reported_at_once_and_never_retried(tmp_path, backend) -> None:
    """Inputs and seeds are fixed, so a raised error would only repeat: no retry, whatever `retries`."""
    tasks = [
        Task("flaky", raise_on_first_attempt, (str(tmp_path / f"{backend}.marker"), 7)),
        Task("broken", always_raise, (8,)),
        Task("bad-data", raise_dataset_error, (9,)),
        Task("exits", exit_early, (10,)),
        Task("fine", square, (3,)),
    ]
    retried: list[str] = []
    with WorkerPool(2, backend=backend) as pool:
        flaky, broken, bad_data, exits, fine = pool.run(
            tasks, retries=2, on_retry=lambda n, a, e: retried.append(n)
        )
    assert retried == []
    assert not flaky.ok and flaky.attempts == 1 and flaky.failures == 1
    assert flaky.error == "ValueError: first attempt of 7 fails"
    assert not broken.ok and broken.attempts == 1 and broken.error == "ValueError: task 8 is broken"
    # Not mistaken for a crash (the exception itself would not unpickle in the driver):
    assert not bad_data.ok and bad_data.attempts == 1
    assert bad_data.error == "DatasetError: data/9.json [items]: expected a list of items, found nothing"
    # sys.exit in a task neither ends the driver (serial) nor counts as a crash
    assert not exits.ok and exits.attempts == 1 and exits.error == "SystemExit: task 10 exits"
    assert fine.ok and fine.value == 9


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_a_memory_error_is_retried_like_a_crash(tmp_path, backend) -> None:
    with WorkerPool(1, backend=backend) as pool:
        (result,) = pool.run([Task("hungry", memory_error_on_first_attempt, (str(tmp_path / "m"), 5))])
    assert result.ok and result.value == 25 and result.attempts == 2 and result.failures == 1


def test_bad_requests_are_typed_errors() -> None:
    choices = "use --backend with one of: auto, ray, process, serial"
    with pytest.raises(CRSError, match=f"unknown backend 'dask'; {choices}"):
        resolve_backend("dask", None)
    with pytest.raises(CRSError, match=f"unknown backend 'bogus'; {choices}"):
        check_pool_request(1, "bogus", None)  # whatever the worker count
    with pytest.raises(CRSError, match="--workers must be >= 1, got 0"):
        check_pool_request(0, "serial", None)
    with pytest.raises(CRSError, match="needs the ray backend"):
        resolve_backend("process", "ray://head:10001")
    with pytest.raises(CRSError, match="--workers must be >= 1"):
        WorkerPool(0, backend="process")
    with WorkerPool(1, backend="serial") as pool, pytest.raises(CRSError, match="repeated: a"):
        pool.run([Task("a", square, (1,)), Task("a", square, (2,))])


def _eval(tmp_path: Path, name: str, *extra: str) -> tuple[list[str], dict]:
    from crs.cli import app  # not at module level: process-pool workers import this module

    out = tmp_path / name
    args = ["eval", "-p", "max-entropy", "-n", "90", "--seed", "4", "-o", str(out), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    return (out / "episodes.jsonl").read_text().splitlines(), summary


@pytest.mark.slow
def test_eval_with_two_process_workers_equals_the_serial_run(tmp_path) -> None:
    serial_records, serial_summary = _eval(tmp_path, "serial")
    records, summary = _eval(tmp_path, "parallel", "--workers", "2", "--backend", "process")
    assert len(records) == 90 and records == serial_records  # same lines, same (goal) order
    for key in TIMING_KEYS:
        serial_summary.pop(key), summary.pop(key)
    assert summary == serial_summary


@pytest.mark.slow
def test_without_ray_workers_fall_back_to_a_process_pool_with_a_notice(tmp_path) -> None:
    """A child interpreter where `import ray` is impossible (sys.modules['ray'] = None)."""
    serial_records, _ = _eval(tmp_path, "serial")
    out = tmp_path / "no-ray"
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from crs.cli import main\n"
        "sys.argv = ['crs', 'eval', '-p', 'max-entropy', '-n', '90', '--seed', '4', '-w', '2', '-o', "
        f"{str(out)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    notice = RAY_MISSING_NOTICE.format(workers=2)
    assert notice in done.stdout + done.stderr
    assert (out / "episodes.jsonl").read_text().splitlines() == serial_records


@pytest.mark.slow
def test_a_worker_dying_while_the_driver_commits_is_retried_not_a_traceback(tmp_path) -> None:
    """A worker dies while the driver is busy with another result (a slow commit): the next submit meets
    a broken pool, which is handled like any other break."""
    tasks = [
        Task("dies", crash_later_on_first_attempt, (str(tmp_path / "marker"), 3)),
        Task("quick", square, (2,)),
        Task("next", square, (4,)),
    ]

    def slow_commit(result: object) -> None:
        time.sleep(2.0)  # the "dies" worker dies meanwhile

    with WorkerPool(2, backend="process") as pool:
        results = {r.name: r for r in pool.run(tasks, retries=1, on_result=slow_commit)}
    assert all(r.ok for r in results.values()), results
    assert [results[n].value for n in ("dies", "quick", "next")] == [9, 4, 16]


@pytest.mark.slow
def test_an_idle_worker_dying_is_not_charged_to_the_task_still_running(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    tasks = [Task("done-first", record_pid, (str(pid_file),)), Task("long", sleep_then_square, (3.0, 5))]

    def kill_the_idle_worker() -> None:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        time.sleep(0.5)  # its task has returned: the worker is idle (or runs "long", then it is fair)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_idle_worker)
    killer.start()
    with WorkerPool(2, backend="process") as pool:
        results = {r.name: r for r in pool.run(tasks, retries=0)}
    killer.join()
    assert results["long"].ok and results["long"].value == 25 and results["long"].failures == 0


def test_eval_on_a_pool_keeps_the_seeded_order_of_the_conversations(tmp_path) -> None:
    from envs import evaluation_indices, make_env

    records, summary = _eval(tmp_path, "pool", "--workers", "2", "--backend", "serial")  # chunks on a pool
    walked = [json.loads(line)["goal_index"] for line in records]
    n_goals = make_env("persona_world", split="test").goals.n_goals
    assert walked == evaluation_indices(n_goals, 90, 4).tolist() and summary["episodes"] == 90


def test_a_failed_task_is_named_by_the_first_line_of_its_error() -> None:
    """The one-line error is the exception's first line (its message), not a later detail line."""
    with WorkerPool(1, backend="serial") as pool:
        (result,) = pool.run([Task("two-lines", raise_two_lines, (3,))])
    assert result.error == "ValueError: task 3 is broken"


def test_retries_bound_the_attempts_of_a_task_that_keeps_crashing() -> None:
    """``retries=1`` allows exactly one more attempt after a crash (MemoryError counts as one): two
    attempts, both charged, and the retry announced once; ``retries=0`` allows none."""
    for retries, attempts in ((1, 2), (0, 1), (3, 4)):
        retried: list[tuple[str, int]] = []

        def note(name: str, attempt: int, error: str, retried: list[tuple[str, int]] = retried) -> None:
            retried.append((name, attempt))

        with WorkerPool(1, backend="serial") as pool:
            (result,) = pool.run([Task("hungry", always_out_of_memory, (1,))], retries=retries, on_retry=note)
        assert not result.ok and result.error == "MemoryError"
        assert (result.attempts, result.failures) == (attempts, attempts)
        assert retried == [("hungry", attempt) for attempt in range(1, attempts)]


def test_negative_retries_are_refused() -> None:
    refused = pytest.raises(CRSError, match="retries must be >= 0, got -1")
    with WorkerPool(1, backend="serial") as pool, refused:
        pool.run([Task("a", square, (1,))], retries=-1)


def test_a_task_s_time_is_measured_and_a_failure_takes_none() -> None:
    """`TaskResult.seconds` is the wall time of the successful attempt (here at least the task's sleep),
    0.0 for a task that failed."""
    with WorkerPool(1, backend="serial") as pool:
        tasks = [Task("slept", sleep_then_square, (0.2, 3)), Task("broken", always_raise, (1,))]
        slept, broken = pool.run(tasks)
    assert slept.ok and slept.value == 9 and 0.2 <= slept.seconds < 5.0
    assert not broken.ok and broken.seconds == 0.0


def test_a_result_that_cannot_travel_back_fails_at_once_without_retries() -> None:
    """A return value that does not pickle fails the same way every time: it is named as that task's
    error on its first attempt, not retried like a crash, and the other tasks finish."""
    retried: list[str] = []
    with WorkerPool(2, backend="process") as pool:
        locked, fine = pool.run(
            [Task("locked", unpicklable_result, (1,)), Task("fine", square, (5,))],
            retries=2,
            on_retry=lambda name, attempt, error: retried.append(name),
        )
    assert not locked.ok and locked.attempts == 1 and locked.failures == 1
    assert "pickle" in (locked.error or "") and retried == []
    assert fine.ok and fine.value == 25


def test_process_workers_use_one_math_thread_whatever_the_driver_sets(monkeypatch) -> None:
    """Workers already fill the cores: each uses one math thread even when the driver's environment
    asks for more (which spawned workers inherit)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    with WorkerPool(1, backend="process") as pool:
        (result,) = pool.run([Task("threads", math_threads, (0,))])
    assert result.ok and result.value == "1"


def test_the_missing_ray_notice_comes_only_when_auto_falls_back(monkeypatch) -> None:
    """The one-line notice says Ray is missing: given when "auto" falls back to the process pool, not
    when the process pool was asked for by name."""
    notices: list[str] = []
    WorkerPool(2, backend="process", notify=notices.append)
    assert notices == []
    monkeypatch.setattr("crs.parallel.ray_installed", lambda: False)  # a machine without Ray
    pool = WorkerPool(2, backend="auto", notify=notices.append)
    assert pool.backend == "process" and notices == [RAY_MISSING_NOTICE.format(workers=2)]


def test_a_pool_without_a_worker_count_uses_every_core() -> None:
    assert WorkerPool(backend="serial").workers == max(1, os.cpu_count() or 1)
    assert WorkerPool(3, backend="serial").workers == 3
