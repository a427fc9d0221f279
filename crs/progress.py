"""Progress on long work, drawn in a terminal and written as plain lines into a log."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress, Task, TaskID

LOG_STEPS = 10
"""A console that is not a terminal gets a line each time a task passes another 1/LOG_STEPS of its total..."""
QUIET_SECONDS = 10.0
"""... once the task has run this long: work that ends sooner leaves no lines."""


class LoggedProgress(Progress):
    """A rich `Progress` that also reports to a console that is not a terminal.

    rich draws a bar only on a terminal; sent to a file, a pipe or a CI log it prints the bar once, when
    the work ends, so a 50-minute training shows nothing until then. Here such a console gets a plain
    line ("training: 4,096/20,480 (20%), 0:09:58 elapsed, 0:39:52 left, 7 steps/s") each time a task
    passes another tenth of its total, from its tenth second on; a task added without a total is not
    logged. On a terminal, or when disabled, it is rich's `Progress` unchanged.
    """

    def __init__(self, *columns: Any, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._logged_step: dict[TaskID, int] = {}
        # (time, completed) when the task first moved; (None, completed when added) until then. Time left
        # is measured from there: rich's own estimate needs several updates within 30 s, and a log's tasks
        # often move in chunks minutes apart (PPO rollouts, a worker pool's batches) after a slow start.
        self._moved: dict[TaskID, tuple[float | None, float]] = {}
        self._logged_done: set[TaskID] = set()  # tasks whose 100% line is in the log

    def stop(self) -> None:
        """Stop. rich then prints the bars once more to a console that is not a terminal; when every
        task has written its 100% line that would only repeat it, so the bars are left out."""
        if not self.console.is_terminal and self.tasks and all(t.id in self._logged_done for t in self.tasks):
            self.live.transient = True
        super().stop()

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        if total is not None:  # a task without a total when added (e.g. batches of an epoch) is not logged
            self._logged_step[task_id] = self._step(self._task(task_id))  # a resumed task starts where it is
            self._moved[task_id] = (None, float(completed))
        return task_id

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        super().update(
            task_id,
            total=total,
            completed=completed,
            advance=advance,
            description=description,
            visible=visible,
            refresh=refresh,
            **fields,
        )
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _task(self, task_id: TaskID) -> Task:
        return next(task for task in self.tasks if task.id == task_id)

    @staticmethod
    def _step(task: Task) -> int:
        """How many whole tenths of its total the task has done (0 while it has no total)."""
        if not task.total:
            return 0
        return min(LOG_STEPS, int(LOG_STEPS * task.completed / task.total))

    def _log(self, task_id: TaskID) -> None:
        if self.disable or self.console.is_terminal or task_id not in self._logged_step:
            return
        task = self._task(task_id)
        moved_at, done_then = self._moved[task_id]
        if moved_at is None and task.completed > done_then:
            self._moved[task_id] = (self.get_time(), task.completed)
        step = self._step(task)
        if step <= self._logged_step[task_id]:
            return
        self._logged_step[task_id] = step
        if task.elapsed is None or task.elapsed < QUIET_SECONDS:
            return
        parts = [
            f"{task.description}: {task.completed:,.0f}/{task.total:,.0f} ({task.percentage:.0f}%)",
            f"{_clock(task.elapsed)} elapsed",
        ]
        left = self._time_left(task)
        if left is not None:
            parts.append(f"{_clock(left)} left")
        note = task.fields.get("note")
        if note:
            parts.append(str(note))
        self.console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)  # never wrapped
        if step == LOG_STEPS:
            self._logged_done.add(task_id)

    def _time_left(self, task: Task) -> float | None:
        """Seconds left at the pace since the task first moved; None before it has a pace, or when done."""
        since, done_then = self._moved[task.id]
        if since is None or task.finished or task.total is None:
            return None
        done, seconds = task.completed - done_then, self.get_time() - since
        if done <= 0 or seconds <= 0:
            return None
        return (task.total - task.completed) * seconds / done


def _clock(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
