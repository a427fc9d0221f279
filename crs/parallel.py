"""Worker backends for `crs eval --workers N` and `crs sweep`: Ray when installed, else a process pool.

One small API over three engines, so commands never schedule work themselves:

- ``ray``: a local Ray instance started (``num_cpus=workers``) and shut down by the pool, or an
  existing cluster reached with ``address=`` (left running). A Ray instance the caller already
  started (``ray.is_initialized()``) is reused and left running too.
- ``process``: `concurrent.futures.ProcessPoolExecutor` (spawned workers) — the fallback when Ray
  is not installed (``pip install 'persona-crs[ray]'``), announced with a one-line notice.
- ``serial``: in this process, for references and debugging (no protection against a crash).

`WorkerPool.run` keeps at most ``workers`` tasks in flight and hands results back in task order. A task
whose worker process died (or whose Ray worker or node was lost) is retried, at most ``retries`` times;
a task that *raised* is not: its inputs and seeds are fixed, so a retry would only repeat the error
(a `CRSError` names a bad setting; any other exception is a bug) — it fails at once, named with its
error, and the others still finish (`MemoryError` alone counts as a crash: memory may free up). A
process pool cannot tell which of its processes died with which task (the whole pool breaks), so after
a break the tasks that were in flight are re-run one at a time: a crash then blames exactly one task.
Ray attributes a dead worker to its task directly.

Process-pool workers die with the process that started them, even when it is killed with SIGKILL (no
orphan keeps computing, or blocks forever on a pipe nobody reads): on Linux each worker asks the kernel
for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread exits the
worker once its parent process is gone. The kernel sends that signal when the *thread* that started
the worker exits, so call `WorkerPool.run` from a thread that outlives the pool (the CLI uses the main
thread). Multiprocessing's resource tracker then exits by itself: the workers held its pipe open.
An interrupted `run` (e.g. Ctrl-C) kills the workers instead of waiting for their tasks, and cancels
the Ray tasks in flight.

Task functions must be importable module-level functions (they travel by reference); each worker
process may cache what it loads (e.g. a catalogue) across the tasks it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.util import find_spec
from multiprocessing import get_context
from types import TracebackType
from typing import Any, Literal

from simulators.errors import CRSError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "ray", "process", "serial"]
BACKENDS: tuple[str, ...] = ("auto", "ray", "process", "serial")
DEFAULT_RETRIES = 2
RETRIED_EXCEPTIONS: tuple[type[BaseException], ...] = (MemoryError,)  # raised, yet retried like a crash
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5  # the watchdog's period where PR_SET_PDEATHSIG is unavailable
RAY_MISSING_NOTICE = (
    "Ray is not installed (pip install 'persona-crs[ray]'); "
    "running {workers} worker(s) in a local process pool."
)


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(*args)`` under a unique, human-readable name.

    Attributes:
        name: Reported when the task fails (unique within one `WorkerPool.run`).
        function: An importable module-level function (pickled by reference).
        args: Its positional arguments (picklable).
    """

    name: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TaskResult:
    """What became of one task.

    Attributes:
        name: The task's name.
        value: The function's return value (None when the task failed).
        attempts: How many times it was started (1 = first try succeeded or the task raised). With the
            process pool a task that was merely in flight when another task killed the pool is started
            again, without that start counting against its retries.
        error: One line describing the last failure, None when the task succeeded.
        seconds: Wall time of the successful attempt (0.0 when it failed).
        failures: Failed attempts charged to this task (1 when it raised; retries + 1 when it kept
            crashing). A process-pool crash is charged only once the task crashed while running alone
            (see `WorkerPool`).
    """

    name: str
    value: Any = None
    attempts: int = 1
    error: str | None = None
    seconds: float = 0.0
    failures: int = 0

    @property
    def ok(self) -> bool:
        """True when the task finished without error."""
        return self.error is None


@dataclass
class _Slot:
    """Book-keeping of one task inside `WorkerPool.run`."""

    index: int
    task: Task
    attempts: int = 0  # starts
    failures: int = 0  # failed attempts charged to this task (at most retries + 1)
    started: float = 0.0


def ray_installed() -> bool:
    """True when the optional ``ray`` package can be imported."""
    try:
        return find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(backend: str, address: str | None) -> str:
    """The concrete backend for a request ("auto" picks Ray when installed, else the process pool).

    Raises:
        CRSError: For an unknown backend name, or when Ray is asked for (by name or by ``address``)
            but not installed.
    """
    if backend not in BACKENDS:
        raise CRSError(f"unknown backend {backend!r}; use --backend with one of: {', '.join(BACKENDS)}")
    if address is not None and backend not in ("auto", "ray"):
        raise CRSError(f"--address {address} needs the ray backend, not {backend!r}")
    if backend == "auto":  # an address is a request for Ray
        backend = "ray" if address is not None or ray_installed() else "process"
    if backend == "ray" and not ray_installed():
        raise CRSError("the ray backend needs Ray: pip install 'persona-crs[ray]' (or use --backend process)")
    return backend


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError when nothing listens at a ``host:port`` address within `timeout` seconds
    (Ray itself retries such an address for minutes before it gives up). Other forms (``auto``,
    ``ray://...``) are left to Ray, which answers them at once."""
    host, colon, port = address.rpartition(":")
    if address.startswith("ray://") or not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(f"nothing answers at {address} ({error.strerror or error})") from None


def _one_line(error: BaseException) -> str:
    """'ValueError: message' from an exception (Ray's wrapped task errors unwrapped to their cause)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass(frozen=True)
class _Raised:
    """A task's exception, carried back to the driver as plain data.

    Exceptions themselves do not always survive pickling (e.g. `simulators.errors.DatasetError`'s
    constructor takes four arguments; unpickling it fails, and the process pool would then report a
    broken pool — a crash, retried — for what is a bad setting).

    Attributes:
        error: One line, 'Type: message'.
        retry: True only for the exceptions that count as crashes (`RETRIED_EXCEPTIONS`).
    """

    error: str
    retry: bool


def _call_task(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Worker side of every backend: ``function(*args)``, or a `_Raised` for the exception it raised.

    A `SystemExit` counts as a raised error too: it would otherwise end the driver (serial), fail the
    task as raised outside it (process pool) or end the worker (Ray).
    """
    try:
        return function(*args)
    except (Exception, SystemExit) as error:
        return _Raised(_one_line(error), isinstance(error, RETRIED_EXCEPTIONS))


def _set_parent_death_signal() -> bool:
    """Ask the Linux kernel to SIGKILL this process when its parent thread exits; False where unsupported.

    Caveat: the kernel tracks the *thread* that forked this process, not the whole parent process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on (glibc, musl)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no libc, or no prctl symbol
        return False


def _watch_parent(parent_pid: int) -> None:
    """Watchdog thread: exit this worker at once when its parent process is gone (re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker die with the process `parent_pid` that started it (PR_SET_PDEATHSIG on Linux,
    else a watchdog thread). A parent that died before this call is noticed here: exit at once."""
    armed = _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
        ).start()


def _init_process_worker(parent_pid: int) -> None:
    """Process-pool initializer: die with the driver `parent_pid`; one math thread per worker (the
    workers already fill the cores)."""
    _die_with_parent(parent_pid)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"


RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def _not_the_token_notice(record: logging.LogRecord) -> bool:
    """Leave out Ray's notice that it enabled token authentication (its default for a local instance)."""
    return not record.getMessage().startswith("Token authentication is enabled")


def check_pool_request(workers: int | None, backend: str, address: str | None) -> str:
    """Validate a pool request before any work starts (whatever the worker count); the concrete backend.

    Raises:
        CRSError: For ``workers < 1``, an unknown backend name (the choices are listed), ``address``
            without Ray, or Ray asked for but not installed.
    """
    if workers is not None and workers < 1:
        raise CRSError(f"--workers must be >= 1, got {workers}")
    return resolve_backend(backend, address)


class WorkerPool:
    """A pool of `workers` worker processes on one backend; use it as a context manager.

    Args:
        workers: Tasks run at the same time (>= 1; default: this machine's cores, or the cluster's CPUs
            with ``address``).
        backend: "auto" (Ray when installed, else "process"), "ray", "process" or "serial".
        address: Address of an existing Ray cluster (e.g. "ray://head:10001" or "auto"); implies Ray.
        notify: Called with one line when the pool falls back from Ray to the process pool.

    Example:
        >>> with WorkerPool(2, backend="process") as pool:  # doctest: +SKIP
        ...     results = pool.run([Task("a", math.sqrt, (4.0,)), Task("b", math.sqrt, (9.0,))])
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        backend: str = "auto",
        address: str | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.address = address
        self.backend = check_pool_request(workers, backend, address)
        # With a cluster address and no count, the cluster's CPUs are read once Ray is connected.
        self.workers = workers or (0 if address is not None else max(1, os.cpu_count() or 1))
        if backend == "auto" and self.backend == "process":
            (notify or logger.warning)(RAY_MISSING_NOTICE.format(workers=self.workers))
        self._executor: ProcessPoolExecutor | None = None
        self._ray_started_here = False
        self._remote: Any = None  # `_call_task` as a Ray remote function, made once

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> WorkerPool:
        """Start the pool; the ray backend starts Ray or connects to ``address`` here.

        Raises:
            CRSError: The Ray cluster at ``address`` cannot be reached (or it is not an address).
        """
        if self.backend == "ray":
            self._start_ray()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(kill=error is not None)

    def _start_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            self._init_ray()
        if self.workers == 0:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _init_ray(self) -> None:
        import ray

        handler = signal.getsignal(signal.SIGTERM)
        if self.address is not None:
            try:
                _check_reachable(self.address)
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, ValueError) as error:  # nothing answers there, or not an address
                raise CRSError(
                    f"--address {self.address}: cannot connect to a Ray cluster there ({_one_line(error)}); "
                    "start one (`ray start --head`) and give its address (e.g. ray://head:10001 or "
                    "head:6379), or leave out --address to run on this machine"
                ) from None
        else:
            # Ray enables token authentication for a local instance by default and warns that it did, on
            # every sweep; the security stays, the notice goes (naming the mode instead needs a token first).
            logging.getLogger(RAY_TOKEN_LOGGER).addFilter(_not_the_token_notice)
            ray.init(
                num_cpus=self.workers,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        self._ray_started_here = True
        if threading.current_thread() is threading.main_thread() and callable(handler):
            # Ray's core installs its own SIGTERM handler (a stack dump, exit 1): keep the command's
            signal.signal(signal.SIGTERM, handler)

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers (and the local Ray instance this pool started; a cluster keeps running).

        Args:
            kill: Kill the process-pool workers instead of letting their running tasks finish (after an
                interrupt or an error: nobody will read those results).
        """
        if self._executor is not None:
            if kill:
                self._kill_workers()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._ray_started_here:
            import ray

            ray.shutdown()
            self._ray_started_here = False

    def _kill_workers(self) -> None:
        """SIGKILL the process pool's workers (ProcessPoolExecutor has no public way before Python 3.14)."""
        processes = getattr(self._executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(OSError, ValueError):  # already gone, or already closed
                process.kill()

    # ------------------------------------------------------------------ running
    def run(
        self,
        tasks: Sequence[Task],
        *,
        retries: int = DEFAULT_RETRIES,
        on_result: Callable[[TaskResult], None] | None = None,
        on_retry: Callable[[str, int, str], None] | None = None,
    ) -> list[TaskResult]:
        """Run every task; results come back in task order whatever order they finished in.

        Args:
            tasks: Tasks with unique names.
            retries: Extra attempts for a task whose worker died (0 = no retry). A task that raised is
                not retried (`MemoryError` excepted): it fails at once with its error.
            on_result: Called in the driver as each task finishes (success or final failure).
            on_retry: Called as ``on_retry(name, failed_attempt, error)`` before a task is re-run.

        Returns:
            One `TaskResult` per task, in the order of `tasks`.

        Raises:
            CRSError: For repeated task names or ``retries < 0``.
        """
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise CRSError(f"task names must be unique; repeated: {', '.join(duplicates)}")
        if retries < 0:
            raise CRSError(f"retries must be >= 0, got {retries}")
        slots = [_Slot(index, task) for index, task in enumerate(tasks)]
        results: list[TaskResult | None] = [None] * len(slots)

        def failed(slot: _Slot, error: str, retry: bool) -> bool:
            """Record a failed attempt (`retry`: a crash, not an exception); True when it runs again."""
            slot.failures += 1
            if retry and slot.failures <= retries:
                logger.info("task %s failed (attempt %d): %s; retrying", slot.task.name, slot.attempts, error)
                if on_retry is not None:
                    on_retry(slot.task.name, slot.attempts, error)
                return True
            done(slot, TaskResult(slot.task.name, None, slot.attempts, error, 0.0, slot.failures))
            return False

        def finished(slot: _Slot, value: Any) -> bool:
            """Record what an attempt returned (a value or a `_Raised`); True when it runs again."""
            if isinstance(value, _Raised):
                return failed(slot, value.error, value.retry)
            seconds = time.perf_counter() - slot.started
            done(slot, TaskResult(slot.task.name, value, slot.attempts, None, seconds, slot.failures))
            return False

        def done(slot: _Slot, result: TaskResult) -> None:
            results[slot.index] = result
            if on_result is not None:
                on_result(result)

        if self.backend == "serial":
            self._run_serial(slots, finished)
        elif self.backend == "ray":
            self._run_ray(slots, failed, finished)
        else:
            self._run_processes(slots, failed, finished)
        return [result for result in results if result is not None]

    def _run_serial(self, slots: list[_Slot], finished: Callable[[_Slot, Any], bool]) -> None:
        for slot in slots:
            again = True
            while again:
                slot.attempts += 1
                slot.started = time.perf_counter()
                again = finished(slot, _call_task(slot.task.function, slot.task.args))

    def _run_processes(
        self,
        slots: list[_Slot],
        failed: Callable[[_Slot, str, bool], bool],
        finished: Callable[[_Slot, Any], bool],
    ) -> None:
        queue = list(slots)
        isolate: list[_Slot] = []  # tasks in flight when the pool broke: re-run one at a time
        in_flight: dict[Future[Any], _Slot] = {}
        while queue or isolate or in_flight:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=get_context("spawn"),
                    initializer=_init_process_worker,
                    initargs=(os.getpid(),),
                )
            limit = 1 if isolate else self.workers
            source = isolate if isolate else queue
            broken = False
            while source and len(in_flight) < limit:
                slot = source[0]
                try:  # a worker may have died since the last wait (e.g. during a slow commit)
                    future = self._executor.submit(_call_task, slot.task.function, slot.task.args)
                except BrokenProcessPool:
                    broken = True  # the slot did not start: it stays first in its list, not charged
                    break
                source.pop(0)
                slot.attempts += 1
                slot.started = time.perf_counter()
                in_flight[future] = slot
            ready = wait(in_flight, return_when=FIRST_COMPLETED)[0] if in_flight else set()
            for future in ready:
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    broken = True
                    continue
                slot = in_flight.pop(future)
                # An exception here was raised outside the task (e.g. its arguments or its return value
                # do not pickle): as deterministic as the task's own exceptions, so not retried.
                again = failed(slot, _one_line(error), False) if error else finished(slot, future.result())
                if again:
                    queue.insert(0, slot)
            if broken:
                # The pool is unusable: every task still in flight died with it.
                suspects = list(in_flight.values())
                in_flight.clear()
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
                if len(suspects) == 1 and limit == 1:  # it ran alone in the pool: its own crash
                    if failed(suspects[0], "worker process died (BrokenProcessPool)", True):
                        isolate.insert(0, suspects[0])
                else:  # no blame yet (an idle worker may have died): each re-runs alone, not charged
                    isolate = suspects + isolate

    def _remote_call(self) -> Any:
        """`_call_task` as a Ray remote function (no retries of Ray's own: `run` decides)."""
        import ray

        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_call_task)
        return self._remote

    def _run_ray(
        self,
        slots: list[_Slot],
        failed: Callable[[_Slot, str, bool], bool],
        finished: Callable[[_Slot, Any], bool],
    ) -> None:
        import ray

        self._start_ray()
        queue = list(slots)
        in_flight: dict[Any, _Slot] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    slot = queue.pop(0)
                    slot.attempts += 1
                    slot.started = time.perf_counter()
                    in_flight[self._remote_call().remote(slot.task.function, slot.task.args)] = slot
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    slot = in_flight.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:  # raised outside the task: not retried
                        again = failed(slot, _one_line(error), False)
                    except ray.exceptions.RayError as error:  # worker, node or object lost: a crash
                        again = failed(slot, _one_line(error), True)
                    else:
                        again = finished(slot, value)
                    if again:
                        queue.insert(0, slot)
        except BaseException:  # interrupted: a cluster would otherwise run the tasks in flight to the end
            for ref in in_flight:
                with contextlib.suppress(Exception):  # best effort: the task may have finished meanwhile
                    ray.cancel(ref, force=True)
            raise
