"""Killing a sweep (or `crs eval --workers`) leaves no process behind: the attack itself.

Each test starts the real command in a subprocess, finds its children through /proc (those whose
parent pid is the command's), kills the command alone — not its process group — and checks that
every child (pool workers and multiprocessing's resource tracker) is gone within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crs.app.sweep import RUNS_DIR, SCRATCH_PREFIX, remove_orphaned_scratch

REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN_SECONDS = 10.0
STARTUP_SECONDS = 120.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None when the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses


def children(parent: int) -> dict[int, str]:
    """{pid: start time (clock ticks since boot)} of the live processes whose parent is `parent`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent and fields[0] not in "ZX":
                found[int(entry.name)] = fields[19]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int, started: str) -> bool:
    """True while `pid` is the same process (same start time) and neither a zombie nor dead."""
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] not in "ZX"


def _default_sigint() -> None:
    # a shell without job control starts background jobs with SIGINT ignored, and children inherit it:
    # give the command the default a terminal's Ctrl-C meets, whoever started the tests
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(command: list[str], log: Path, temp_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `crs ...` in its own session (so that a failing test can still clean up its group), with
    `temp_dir` as its temporary folder if given."""
    env = {**os.environ, "TMPDIR": str(temp_dir)} if temp_dir is not None else None
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "crs.cli", *command],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
            env=env,
        )


def wait_for_workers(process: subprocess.Popen[bytes], workers: int, finished: Path | None = None) -> None:
    """Until `process` has `workers` pool workers and, with `finished` (a sweep directory), until its
    quick tasks are finished: its workers are then busy with the long ones."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        assert process.poll() is None, "the command ended before it could be killed"
        assert time.monotonic() < deadline, "its workers did not start in time"
        spawned = [pid for pid in children(process.pid) if "spawn_main" in command_line(pid)]
        runs = finished / RUNS_DIR if finished is not None else None
        # committed folders only: the hidden staging folder of a commit in progress ends in .tmp-*
        committed = list(runs.glob("[!.]*quick*")) if runs is not None and runs.is_dir() else []
        quick_done = runs is None or len(committed) == len(QUICK_SEEDS)
        if len(spawned) >= workers and quick_done:
            return
        time.sleep(0.05)


QUICK_SEEDS = (1, 2)


def sweep_config(long_episodes: int = 2400) -> str:
    """Grid order is ablations x seeds: the two quick tasks first, then two long ones (seconds each)."""
    return (
        f"seeds: {list(QUICK_SEEDS)}\npolicies: [max-entropy]\n"
        f"ablations: {{quick: {{episodes: 20}}, long: {{episodes: {long_episodes}}}}}\n"
    )


SWEEP_CONFIG = sweep_config()


def kill_and_check_orphans(
    process: subprocess.Popen[bytes], how: signal.Signals, log: Path, *, tracker: bool = True
) -> float:
    """Send `how` to `process` alone; assert every child it had is gone in time; the seconds it took.

    With `tracker`, multiprocessing's resource tracker must be among those children.
    """
    before = children(process.pid)
    names = {pid: command_line(pid) for pid in before}
    assert before, "no child to check"
    assert not tracker or any("resource_tracker" in name for name in names.values()), names
    try:
        os.kill(process.pid, how)
        killed = time.monotonic()
        process.wait(timeout=GONE_WITHIN_SECONDS)
        while any(alive(pid, started) for pid, started in before.items()):
            left = {pid: names[pid] for pid, started in before.items() if alive(pid, started)}
            text = log.read_text() if log.exists() else ""
            assert time.monotonic() - killed < GONE_WITHIN_SECONDS, f"left behind: {left}\n{text}"
            time.sleep(0.05)
        return time.monotonic() - killed
    finally:
        for pid, started in before.items():  # clean up after a failure: only the processes it started
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_sigkill_of_a_sweep_mid_task_kills_its_workers_and_the_resource_tracker(tmp_path) -> None:
    """Killed once the quick tasks are finished: both workers are in the middle of a long task."""
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG)
    out = tmp_path / "out"
    log = tmp_path / "sweep.log"
    sweep = start(
        ["sweep", str(config), "--out", str(out), "--workers", "2", "--backend", "process"], log, tmp_path
    )
    wait_for_workers(sweep, 2, finished=out)
    kill_and_check_orphans(sweep, signal.SIGKILL, log)
    assert sweep.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_the_scratch_folders_of_killed_workers_are_removed_by_the_rerun(tmp_path) -> None:
    config = tmp_path / "sweep.yaml"
    # shorter long tasks: the kill lands as one starts, and the rerun has to finish them
    config.write_text(sweep_config(long_episodes=600))
    out, temp_dir = tmp_path / "out", tmp_path / "tmp"
    temp_dir.mkdir()
    command = ["sweep", str(config), "--out", str(out), "--workers", "2", "--backend", "process"]
    sweep = start(command, tmp_path / "sweep.log", temp_dir)
    wait_for_workers(sweep, 2, finished=out)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not list(temp_dir.glob(f"{SCRATCH_PREFIX}*")):  # a long task has started in a worker
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.05)
    kill_and_check_orphans(sweep, signal.SIGKILL, tmp_path / "sweep.log")
    assert list(temp_dir.glob(f"{SCRATCH_PREFIX}*"))  # left by the workers killed in a long task
    rerun = start(command, tmp_path / "rerun.log", temp_dir)
    assert rerun.wait(timeout=STARTUP_SECONDS) == 0, (tmp_path / "rerun.log").read_text()
    assert not list(temp_dir.glob(f"{SCRATCH_PREFIX}*"))


def test_only_the_scratch_folders_of_dead_workers_are_removed(tmp_path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / f"{SCRATCH_PREFIX}{finished.pid}-abc"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    unnamed = tmp_path / f"{SCRATCH_PREFIX}xyz"  # not a worker's name: left alone
    # a live worker of another PID namespace sharing the folder: its PID looks dead, its lock is held
    elsewhere = tmp_path / f"{SCRATCH_PREFIX}{finished.pid}-ghi"
    for folder in (dead, live, unnamed, elsewhere):
        (folder / "run").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(elsewhere)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert remove_orphaned_scratch(tmp_path) == [dead]
    finally:
        holder.kill()
        holder.wait()
    assert not dead.exists() and live.is_dir() and unnamed.is_dir() and elsewhere.is_dir()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from policies.atomic import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_sigkill_of_eval_workers_as_soon_as_they_start_leaves_none_behind(tmp_path) -> None:
    """`crs eval --workers` uses the same pool; killed while its workers may still be starting."""
    log = tmp_path / "eval.log"
    command = ["eval", "-p", "max-entropy", "-n", "2400", "-o", str(tmp_path / "eval")]
    evaluation = start([*command, "--workers", "2", "--backend", "process"], log, tmp_path)
    wait_for_workers(evaluation, 2)
    kill_and_check_orphans(evaluation, signal.SIGKILL, log)
    assert evaluation.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "status", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_an_interrupted_sweep_kills_its_workers_instead_of_waiting_for_their_tasks(
    tmp_path, how, status, word
) -> None:
    """SIGINT or SIGTERM to the sweep alone (its workers do not see it): the exit of that signal at once,
    saying what is kept, no worker left (SIGTERM ended it in silence)."""
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG)
    out = tmp_path / "out"
    log = tmp_path / "sweep.log"
    sweep = start(
        ["sweep", str(config), "--out", str(out), "--workers", "2", "--backend", "process"], log, tmp_path
    )
    wait_for_workers(sweep, 2, finished=out)
    seconds = kill_and_check_orphans(sweep, how, log)
    assert sweep.returncode == status, log.read_text()
    assert f"{word}: finished tasks are kept in" in " ".join(log.read_text().split())
    assert seconds < 3.0  # the long tasks in flight (seconds each) were not waited for


@pytest.mark.slow  # starts Ray
def test_sigterm_ends_a_ray_sweep_as_it_ends_a_process_pool_sweep(tmp_path) -> None:
    """Ray's core answered SIGTERM with a stack dump and exit 1, and its waits turn the signal's
    exception into a plain Ctrl-C: the sweep now says "terminated" and exits 143 on Ray too."""
    pytest.importorskip("ray")
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG)
    out, log = tmp_path / "out", tmp_path / "sweep.log"
    # Ray's sockets live in the default temporary folder (a test's own is too long a path for them)
    sweep = start(["sweep", str(config), "--out", str(out), "--workers", "1", "--backend", "ray"], log)
    try:
        deadline = time.monotonic() + 120
        while not (out / RUNS_DIR).is_dir() or len(list((out / RUNS_DIR).glob("[!.]*quick*"))) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=60) == 143, log.read_text()
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    text = " ".join(log.read_text().split())
    assert "terminated: finished tasks are kept in" in text and "SIGTERM received" not in text
    assert "Token authentication is enabled" not in text  # asked for by name: no warning on each sweep


GUARDED_CHILD = """
import sys, threading, time
from pathlib import Path
from crs import parallel

parent = int(sys.argv[1])
if sys.argv[2] == "pdeathsig":
    assert parallel._set_parent_death_signal(), "prctl(PR_SET_PDEATHSIG) failed"
else:
    threading.Thread(target=parallel._watch_parent, args=(parent,), daemon=True).start()
Path(sys.argv[3]).write_text("armed")
time.sleep(120)
"""


@pytest.mark.parametrize("guard", ["pdeathsig", "watchdog"])
def test_each_worker_guard_alone_ends_a_worker_whose_parent_is_killed(tmp_path, guard) -> None:
    """PR_SET_PDEATHSIG (Linux) and the polling watchdog (the fallback elsewhere), each on its own: a
    middle process starts a guarded child, which arms its guard; then the middle one is SIGKILLed."""
    armed = tmp_path / "armed"
    middle = (
        "import os, subprocess, sys, time\n"
        f"code, guard, armed = {(GUARDED_CHILD, guard, str(armed))!r}\n"
        "subprocess.Popen([sys.executable, '-c', code, str(os.getpid()), guard, armed])\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", middle], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while not armed.exists():
            assert parent.poll() is None and time.monotonic() < deadline, "the guarded child did not start"
            time.sleep(0.02)
    except BaseException:
        os.killpg(parent.pid, signal.SIGKILL)
        raise
    seconds = kill_and_check_orphans(parent, signal.SIGKILL, tmp_path / "no.log", tracker=False)
    assert seconds < (0.5 if guard == "pdeathsig" else 2.0)  # the kernel at once; the watchdog in a poll


STEPS = 512


@pytest.mark.slow
def test_an_interrupted_train_task_goes_on_from_its_checkpoint_when_the_sweep_is_rerun(tmp_path) -> None:
    """Ctrl-C while a train task trains: the rerun continues the task from the checkpoint its attempt
    left (it started again from step 0), says so, and removes the attempt once the task is committed."""
    from crs.app.run_folder import RunRecord
    from crs.app.sweep import ATTEMPT_PREFIX, read_metrics, task_dir
    from policies.rl.model_file import read_model_data
    from tests.crs.test_train_cmd import WORLD

    config = tmp_path / "sweep.yaml"
    train = {
        "world": WORLD,
        "steps": STEPS,
        "envs": 2,
        "ranker": "popularity",
        "eval_every": 0,
        "test_episodes": 12,
        "baselines": [],
        "checkpoint_every": 64,
        "imitation": None,
        "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
    }
    config.write_text(yaml.safe_dump({"kind": "train", "seeds": [0], "train": train}))
    out, temp_dir = tmp_path / "out", tmp_path / "tmp"
    temp_dir.mkdir()
    command = ["sweep", str(config), "--out", str(out), "--workers", "1", "--backend", "process"]
    sweep = start(command, tmp_path / "sweep.log", temp_dir)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not (checkpoints := list(temp_dir.glob(f"{ATTEMPT_PREFIX}*/*/checkpoint.zip"))):
        assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()
        time.sleep(0.05)
    sweep.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=GONE_WITHIN_SECONDS) == 130, (tmp_path / "sweep.log").read_text()
    (checkpoint,) = checkpoints
    kept = int(read_model_data(checkpoint)["num_timesteps"])
    assert 64 <= kept < STEPS

    rerun = start(command, tmp_path / "rerun.log", temp_dir)
    assert rerun.wait(timeout=STARTUP_SECONDS) == 0, (tmp_path / "rerun.log").read_text()
    said = "".join((tmp_path / "rerun.log").read_text().split())  # the console wraps paths anywhere
    name = "persona_world-rl-default-s0"
    assert f"{name}:goesonfromthecheckpointitsinterruptedattemptleftin{checkpoint.parents[1]}" in said
    phases = RunRecord.read(task_dir(out, name)).phases
    assert [(phase.start >= kept, phase.steps) for phase in phases] == [(False, STEPS), (True, STEPS)]
    assert read_metrics(task_dir(out, name))  # committed, with its test
    assert not list(temp_dir.glob(f"{ATTEMPT_PREFIX}*"))


def test_a_rerun_removes_only_its_own_sweeps_attempts_that_no_task_continues(tmp_path) -> None:
    """An attempt of a task since finished, or of settings since changed, is removed, and so is one of a
    sweep folder since deleted (an abandoned sweep); another sweep folder's, one this run continues, and
    one a live worker holds are left alone."""
    from crs.app.sweep import ATTEMPT_FILE, ATTEMPT_PREFIX, remove_other_attempts

    out, other, gone = tmp_path / "out", tmp_path / "other", tmp_path / "gone"
    other.mkdir()
    folders = {}
    for name, sweep in (
        ("stale", out),
        ("continued", out),
        ("held", out),
        ("foreign", other),
        ("orphan", gone),
    ):
        folder = folders[name] = tmp_path / f"{ATTEMPT_PREFIX}{name}"
        folder.mkdir()
        (folder / ATTEMPT_FILE).write_text(json.dumps({"sweep": str(sweep.resolve()), "task": {}}))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folders["held"])], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        keep = {folders["continued"].name}
        removed = remove_other_attempts(out, keep, tmp_path)
        assert sorted(removed) == sorted([folders["stale"], folders["orphan"]])
    finally:
        holder.kill()
        holder.wait()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [*(folders[name].name for name in ("continued", "held", "foreign")), "other"]
    )


def test_a_link_in_place_of_an_attempt_folder_is_refused_and_its_target_left_alone(
    tmp_path, monkeypatch
) -> None:
    """The attempt folder's name can be foreseen: on a shared temporary folder, a link planted there would
    have had the task train into (and then delete) the folder it points to."""
    import tempfile

    from crs.app.sweep import SweepConfig, expand_grid, run_sweep_task, train_attempt
    from simulators.errors import CRSError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (task,) = expand_grid(SweepConfig.model_validate({"kind": "train", "seeds": [0], "train": {"steps": 64}}))
    attempt = train_attempt(tmp_path / "out", task)
    target = tmp_path / "target"
    target.mkdir()
    (target / "kept").write_text("x")
    attempt.folder.symlink_to(target)
    with pytest.raises(CRSError, match="is a link or another user's folder"):
        run_sweep_task(task, None, attempt)
    assert [p.name for p in target.iterdir()] == ["kept"] and attempt.folder.is_symlink()
