"""Progress lines in a log: `crs.progress.LoggedProgress`."""

from __future__ import annotations

import io

from rich.console import Console

from crs.progress import QUIET_SECONDS, LoggedProgress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logged(terminal: bool) -> tuple[LoggedProgress, io.StringIO, Clock]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=40)  # narrower than a line: none may wrap
    clock = Clock()
    return LoggedProgress(console=console, get_time=clock, auto_refresh=False), out, clock


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("work: ")]


def test_a_log_gets_a_line_per_tenth_with_elapsed_and_left_time() -> None:
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=200, note="7 steps/s")
        for _ in range(200):
            clock.now += 1.0
            progress.advance(task)
    lines = progress_lines(out.getvalue())
    # 1 s per unit: the 10% mark comes at 20 s, past the quiet start, so every tenth is written once
    assert len(lines) == 10
    assert lines[0] == "work: 20/200 (10%), 0:00:20 elapsed, 0:03:00 left, 7 steps/s"
    assert lines[-1] == "work: 200/200 (100%), 0:03:20 elapsed, 7 steps/s"
    assert [line for line in out.getvalue().splitlines() if line] == lines  # no bar: it would repeat them


def test_time_left_follows_the_pace_since_the_first_move_when_work_comes_in_chunks() -> None:
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=200)
        clock.now = 600.0  # a slow start (a copy before PPO, workers starting)
        for _ in range(4):
            progress.advance(task, 50)
            clock.now += 100.0
    lines = progress_lines(out.getvalue())
    assert lines[0] == "work: 50/200 (25%), 0:10:00 elapsed"  # no pace yet
    assert lines[1] == "work: 100/200 (50%), 0:11:40 elapsed, 0:03:20 left"  # 50 per 100 s, 100 to go
    assert lines[2] == "work: 150/200 (75%), 0:13:20 elapsed, 0:01:40 left"
    assert len(lines) == 4


def test_short_work_leaves_no_lines() -> None:
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=10)
        for _ in range(10):
            clock.now += QUIET_SECONDS / 20
            progress.update(task, advance=1)
    assert progress_lines(out.getvalue()) == []
    assert "work ━" in out.getvalue()  # rich's final bar is the one record of it


def test_a_resumed_task_reports_only_what_it_adds_and_a_task_without_total_nothing() -> None:
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=100, completed=60)
        batches = progress.add_task("batches", total=None)
        clock.now = 100.0
        progress.update(batches, completed=50, total=100)
        progress.update(task, completed=100)
    lines = progress_lines(out.getvalue())
    assert [line.split(",")[0] for line in lines] == ["work: 100/100 (100%)"]
    assert "batches: " not in out.getvalue()


def test_a_terminal_gets_rich_bar_not_lines() -> None:
    progress, out, clock = logged(terminal=True)
    with progress:
        task = progress.add_task("work", total=100)
        clock.now = 100.0
        progress.update(task, completed=100)
    assert progress_lines(out.getvalue()) == []
    assert "100%" in out.getvalue()  # rich's own bar


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = LoggedProgress(console=Console(file=out, force_terminal=False), get_time=clock, disable=True)
    with progress:
        task = progress.add_task("work", total=100)
        clock.now = 100.0
        progress.update(task, completed=100)
    assert out.getvalue() == ""


def test_a_training_log_lists_the_copy_of_the_rule_before_the_training(tmp_path) -> None:
    """Sent to a file, `crs train` prints its bars once at the end, in the order they were added: the
    imitation (which runs first) came after the training."""
    import yaml
    from typer.testing import CliRunner

    from crs.cli import app
    from tests.crs.test_train_cmd import TINY

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "r"]
    )
    assert result.exit_code == 0, result.output
    bars = [line.split()[0] for line in result.output.splitlines() if "━" in line]
    assert bars[:2] == ["imitating", "training"], result.output
