"""The worker pool's and the progress log's less-travelled paths, each test guarding a plausible bug a
mutation audit found unguarded: crash blame and timing on the process pool, a driver error killing the
workers, workers dying with their parent, results that are None, and the progress lines of resumed,
overshooting, empty and hour-long work."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from crs.parallel import Task, WorkerPool, resolve_backend
from crs.progress import LoggedProgress
from simulators.errors import CRSError
from tests.crs.test_progress import Clock, progress_lines
from tests.crs.test_sweep_kill import REPO, kill_and_check_orphans

# Task functions are builtins: a spawned worker then imports nothing of the tests.


# ------------------------------------------------------------------ the worker pool
def test_a_task_that_returns_none_succeeded() -> None:
    """Success is the absence of an error, not a value: a task may return None."""
    with WorkerPool(1, backend="serial") as pool:
        (result,) = pool.run([Task("nap", time.sleep, (0,))])
    assert result.ok and result.value is None and result.error is None


def test_on_result_gets_each_result_in_turn_failures_included() -> None:
    """`on_result` is called once per task (a success or a final failure) with the returned result."""
    seen: list[object] = []
    tasks = [Task("a", abs, (-2,)), Task("b", int, ("x",)), Task("c", abs, (3,))]
    with WorkerPool(1, backend="serial") as pool:
        results = pool.run(tasks, on_result=seen.append)
    assert seen == results and [r.name for r in results] == ["a", "b", "c"]
    assert [r.ok for r in results] == [True, False, True]


def test_an_os_error_raised_by_a_task_is_not_retried(tmp_path) -> None:
    """Only a crash (or MemoryError) is retried: a missing file would be missing again."""
    retried: list[str] = []
    with WorkerPool(1, backend="serial") as pool:
        (result,) = pool.run(
            [Task("missing", open, (str(tmp_path / "absent.txt"),))],
            retries=2,
            on_retry=lambda name, attempt, error: retried.append(name),
        )
    assert retried == [] and (result.attempts, result.failures) == (1, 1)
    assert (result.error or "").startswith("FileNotFoundError: ")


def test_an_address_with_the_serial_backend_is_refused() -> None:
    """A cluster address needs Ray: the serial backend would drop it and run here."""
    with pytest.raises(CRSError, match="--address head:6379 needs the ray backend, not 'serial'"):
        resolve_backend("serial", "head:6379")


def test_a_crash_beside_another_task_is_charged_only_once_it_crashes_alone() -> None:
    """The first crash breaks the pool with two tasks in flight: neither is charged, each re-runs alone.
    The crashing task then crashes alone twice (charged: 1 + retries=1), so it was started three times;
    the retry names its second start. The sleeper (started at most twice) succeeds with None, timed from
    its own start."""
    retried: list[tuple[str, int]] = []
    started = time.perf_counter()
    with WorkerPool(2, backend="process") as pool:
        doomed, sleeper = pool.run(
            [Task("doomed", os._exit, (13,)), Task("sleeper", time.sleep, (0.5,))],
            retries=1,
            on_retry=lambda name, attempt, error: retried.append((name, attempt)),
        )
    wall = time.perf_counter() - started
    assert not doomed.ok and "died" in (doomed.error or "")
    assert (doomed.attempts, doomed.failures) == (3, 2)
    assert retried == [("doomed", 2)]
    assert sleeper.ok and sleeper.value is None and sleeper.failures == 0 and sleeper.attempts <= 2
    assert 0.5 <= sleeper.seconds < wall


def test_an_error_in_the_driver_kills_the_workers_instead_of_waiting_for_their_tasks() -> None:
    """Ctrl-C (here raised by `on_result` as the quick task comes back) leaves the pool at once: the
    worker sleeping through its 30 s task is killed, not waited for, and no worker is left."""
    workers: list[int] = []

    def interrupt(result: object) -> None:
        workers.extend(child.pid for child in multiprocessing.active_children() if child.pid is not None)
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), WorkerPool(2, backend="process") as pool:
        pool.run([Task("quick", abs, (-1,)), Task("long", time.sleep, (30,))], on_result=interrupt)
    assert time.monotonic() - started < 20  # the long task would hold the pool for 30 s
    assert workers
    for pid in workers:
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(pid, 0)


DRIVER = """
import os, time
from crs.parallel import Task, WorkerPool
with WorkerPool(1, backend="process") as pool:
    pool.run([Task("start", abs, (1,))])
    print("started", flush=True)
    pool.run([Task("sleep", time.sleep, (60,))])
"""


def test_process_pool_workers_die_with_a_killed_driver(tmp_path) -> None:
    """A driver SIGKILLed while its worker runs a long task leaves neither the worker nor the resource
    tracker behind (the pool's initializer arms the worker's guard)."""
    log = tmp_path / "driver.log"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "started\n"
    except BaseException:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        raise
    kill_and_check_orphans(driver, signal.SIGKILL, log)


GUARDS = """
import os, sys, threading
from crs import parallel
sys.platform = "darwin"  # no PR_SET_PDEATHSIG there: the watchdog thread guards the worker
parallel._die_with_parent(os.getppid())
print("watchdog", any(t.name == "parent-watchdog" for t in threading.enumerate()), flush=True)
sys.platform = "linux"
parallel._die_with_parent(os.getppid() + 1)  # not its parent: the one that started it is gone
print("still running", flush=True)
"""


def test_a_worker_guards_itself_and_exits_when_its_parent_is_already_gone() -> None:
    """Without PR_SET_PDEATHSIG the watchdog thread starts; a worker whose starting process died before
    the guard was armed exits at once (status 1) instead of running on as an orphan."""
    done = subprocess.run(
        [sys.executable, "-c", GUARDS], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "watchdog True\n", done.stderr
    assert done.returncode == 1


# ------------------------------------------------------------------ progress lines in a log
def logged() -> tuple[LoggedProgress, io.StringIO, Clock]:
    """A progress on a console that is not a terminal, with a hand-moved clock."""
    out = io.StringIO()
    clock = Clock()
    console = Console(file=out, force_terminal=False, width=40)
    return LoggedProgress(console=console, get_time=clock, auto_refresh=False), out, clock


def test_unfinished_work_keeps_rich_s_final_bars() -> None:
    """The bars are left out only when every task wrote its 100% line: one unfinished task keeps them."""
    progress, out, clock = logged()
    with progress:
        work = progress.add_task("work", total=10)
        progress.add_task("other", total=10)
        clock.now = 100.0
        progress.update(work, completed=10)
    text = out.getvalue()
    assert progress_lines(text)[0].startswith("work: 10/10 (100%)")
    assert any(line.startswith("other") for line in text.splitlines())


def test_a_resumed_task_logs_only_once_it_passes_a_new_tenth() -> None:
    """Resumed at 60%: moving to 61% passes no new tenth (no line); 70% does."""
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=100, completed=60)
        clock.now = 100.0
        progress.advance(task, 1)
        assert progress_lines(out.getvalue()) == []
        progress.advance(task, 9)
    assert [line.split(",")[0] for line in progress_lines(out.getvalue())] == ["work: 70/100 (70%)"]


def test_time_left_is_paced_from_the_first_move_not_from_an_update_that_moved_nothing() -> None:
    """Resumed at 50/100; a note at 500 s moves nothing; 60 at 600 s is the first move (no pace yet);
    70 at 700 s: 10 per 100 s, 30 to go, so 300 s left."""
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=100, completed=50)
        clock.now = 500.0
        progress.update(task, completed=50)
        clock.now = 600.0
        progress.advance(task, 10)
        clock.now = 700.0
        progress.advance(task, 10)
    lines = progress_lines(out.getvalue())
    assert lines[:2] == [
        "work: 60/100 (60%), 0:10:00 elapsed",
        "work: 70/100 (70%), 0:11:40 elapsed, 0:05:00 left",
    ]


def test_work_past_its_total_writes_one_final_line() -> None:
    """Work may overshoot its total (e.g. whole rollouts): 100% is written once, nothing beyond it."""
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=100)
        clock.now = 100.0
        progress.update(task, completed=100)
        clock.now = 110.0
        progress.advance(task, 30)
    assert [line.split(",")[0] for line in progress_lines(out.getvalue())] == ["work: 100/100 (100%)"]


def test_a_task_with_a_zero_total_is_accepted_and_not_logged() -> None:
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=0)
        clock.now = 100.0
        progress.update(task, completed=0)
    assert progress_lines(out.getvalue()) == []


def test_lines_start_at_the_tenth_second_and_show_minutes_within_the_hour() -> None:
    """A tenth passed at exactly 10 s is written; one passed at 1 h 2 min 5 s reads 1:02:05."""
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=10)
        clock.now = 10.0
        progress.advance(task)
        clock.now = 3725.0
        progress.advance(task)
    lines = progress_lines(out.getvalue())
    assert lines[0] == "work: 1/10 (10%), 0:00:10 elapsed"
    assert lines[1].startswith("work: 2/10 (20%), 1:02:05 elapsed")


def test_a_tenth_passed_in_the_quiet_start_is_not_written_late() -> None:
    """10% passed at 1 s (quiet); moving within that tenth after 10 s writes nothing; 20% is written."""
    progress, out, clock = logged()
    with progress:
        task = progress.add_task("work", total=10)
        clock.now = 1.0
        progress.advance(task)
        clock.now = 11.0
        progress.advance(task, 0.5)
        clock.now = 12.0
        progress.advance(task, 0.5)
    assert [line.split(",")[0] for line in progress_lines(out.getvalue())] == ["work: 2/10 (20%)"]
