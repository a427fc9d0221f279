"""The careless or hostile user against `crs eval`, `crs report`, `crs pretrain` and `crs chat` outputs:
two commands racing into one folder, a stale lock, silent overwrites, an output over its own input,
an output that is a file, negative seeds, a bogus backend, more conversations than the split holds,
and damaged artifacts. Every refusal is a one-line error with exit code 2 that leaves the old files
as they were.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import crs.report
import policies.pretrain.train
from crs import claims
from crs.app.evaluation import run_evaluation
from crs.chat import run_chat
from crs.claims import LOCK_FILE, FolderClaim, OutputBusyError
from crs.cli import app
from envs.registry import make_env
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.errors import CRSError
from simulators.persona_world import make_persona_world
from tests.crs.tiny_runs import PRETRAIN  # a tiny pre-training: an artifact that loads

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
QUICK_REPORT = ["--examples", "0", "--no-persona", "--no-figures"]  # the claims, not the report


def squash(text: str) -> str:
    """`text` without whitespace: rich wraps (and folds long paths) at 80 columns."""
    return "".join(text.split())


def says(output: str, *parts: str) -> bool:
    """Whether `output` holds every one of `parts`, whitespace ignored."""
    return all(squash(part) in squash(output) for part in parts)


def files(folder: Path) -> dict[str, bytes]:
    """Every file of `folder` (recursively) by relative path, to check that nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result, *parts: str) -> bool:
    """A one-line error (exit code 2, no traceback) holding `parts`."""
    return result.exit_code == 2 and "Traceback" not in result.output and says(result.output, *parts)


def dead_pid() -> int:
    """The PID of a process that has ended."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Path:
    """A small `crs eval` output, the input of reports."""
    out = tmp_path_factory.mktemp("inputs") / "ask-4"
    run_evaluation("ask-4", episodes=20, seed=1, out=out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A tiny `crs pretrain` artifact, written by the CLI."""
    out = tmp_path_factory.mktemp("pretrain") / "art"
    result = runner.invoke(app, [*PRETRAIN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# ----------------------------------------------------------------------------- concurrent writers


def test_two_evals_started_together_into_one_folder_one_wins_the_other_is_refused(tmp_path: Path) -> None:
    """The attack itself: two real `crs eval -o same` processes at once."""
    command = [sys.executable, "-m", "crs.cli", "eval", "-p", "max-entropy", "-n", "600", "-o", "same"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [
        subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    codes = sorted(racer.returncode for racer in racers)
    assert codes == [0, 2], outputs
    winner, loser = (0, 1) if racers[0].returncode == 0 else (1, 0)
    # the loser is refused while the winner writes, or (if it started after the winner finished) because
    # the folder then holds results: either way nothing is mixed
    busy = says(
        outputs[loser][1], f"is being written by process {racers[winner].pid}", "choose another output"
    )
    assert busy or says(outputs[loser][1], "already holds results", "--overwrite"), outputs[loser][1]
    assert "Traceback" not in outputs[loser][1]
    # the survivor's output is whole: 600 records that agree with its summary, no lock, no temporary
    out = tmp_path / "same"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 600 == len((out / "episodes.jsonl").read_text().splitlines())
    assert sorted(p.name for p in out.iterdir()) == ["episodes.jsonl", "summary.json"]


def test_a_claimed_folder_refuses_a_second_claim_until_released(tmp_path: Path) -> None:
    with FolderClaim(tmp_path / "out", "evaluation output") as claim:
        with pytest.raises(OutputBusyError, match=f"process {os.getpid()}"):
            FolderClaim(tmp_path / "out", "evaluation output")
        assert claim.lock.is_file()
        # the lock is written whole before it appears, and neither claim leaves its draft behind
        assert [entry.name for entry in (tmp_path / "out").iterdir()] == [LOCK_FILE]
        assert json.loads(claim.lock.read_text())["pid"] == os.getpid()
    assert not (tmp_path / "out" / LOCK_FILE).exists()
    FolderClaim(tmp_path / "out", "evaluation output").release()  # free again


def test_a_racing_writers_lock_draft_is_not_taken_for_results(tmp_path: Path) -> None:
    # CI caught two `crs train` racing for one name both refused: the loser's draft
    # (.crs.lock.<pid>.<hex>, before its hard link fails) made the winner see "results"
    out = tmp_path / "out"
    out.mkdir()
    draft = out / f"{LOCK_FILE}.4242.0a1b2c3d"
    draft.write_text("{}")
    with FolderClaim(out, "run") as claim:  # no resume, no overwrite: an empty folder but the draft
        assert claim.held and not claim.pending
    assert draft.exists()  # another writer's draft is left to it


def test_a_move_in_that_fails_midway_leaves_the_folder_without_its_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the mark (report.md of a report, config.json of a pre-training) says "a whole output": moved last
    out = tmp_path / "out"
    with FolderClaim(out, "report output") as claim:
        staging = claim.staging_folder()
        for name in ("a.md", "config.json", "metrics.json", "z.html"):
            (staging / name).write_text(name)
        moved: list[str] = []
        replace = os.replace

        def full_disk_after_one(source: Path, target: Path) -> None:
            if moved:
                raise OSError(errno.ENOSPC, "No space left on device")
            replace(source, target)
            moved.append(Path(source).name)

        monkeypatch.setattr(os, "replace", full_disk_after_one)
        with pytest.raises(OSError, match="No space left"):
            claim.move_in(staging, last="config.json")
        monkeypatch.undo()
        assert len(moved) == 1 and (out / moved[0]).is_file()
        assert not (out / "config.json").exists()  # an interrupted output is never taken for a whole one
        claim.move_in(staging, last="config.json")  # the rerun moves the rest, the mark last
        assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name != LOCK_FILE) == [
            "a.md",
            "config.json",
            "metrics.json",
            "z.html",
        ]
        shutil.rmtree(staging)


def test_two_reruns_racing_for_a_dead_lock_take_turns(tmp_path: Path, monkeypatch) -> None:
    # the interleaving an audit forced: B finds the dead lock stale, A takes it over, then B removed A's
    # new lock and took it too: both ran one sweep folder
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    outcome: dict[str, object] = {}
    threads: list[threading.Thread] = []
    real = claims._stale

    def rerun_a() -> None:
        try:
            FolderClaim(folder, "sweep folder", resume=True, take_stale=True)
            outcome["a"] = "took the folder"
        except OutputBusyError:
            outcome["a"] = "refused"

    def stale_while_a_starts(lock: Path) -> bool:
        answer = real(lock)
        monkeypatch.setattr(claims, "_stale", real)
        threads.append(threading.Thread(target=rerun_a))
        threads[0].start()
        threads[0].join(timeout=1.0)  # A waits for B's turn to end (before, it took the lock here)
        return answer

    monkeypatch.setattr(claims, "_stale", stale_while_a_starts)
    b = FolderClaim(folder, "sweep folder", resume=True, take_stale=True)
    threads[0].join(timeout=30)
    assert b.held and outcome == {"a": "refused"}
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    b.release()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_zombie_process_counts_as_dead() -> None:
    # a killed sweep worker whose parent died too stayed a zombie in CI, and its lock and scratch
    # folder counted as a live process's
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":  # not reaped yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not claims.process_alive(child.pid)
        assert claims.process_alive(os.getpid())
    finally:
        child.wait()


def test_a_folder_holding_a_link_is_not_continued(tmp_path: Path) -> None:
    # a shared run whose model card links to a file of the user's: resuming it wrote through the link
    run, victim = tmp_path / "run", tmp_path / "bashrc"
    run.mkdir()
    victim.write_text("the user's file\n")
    (run / "MODEL_CARD.md").symlink_to(victim)
    with pytest.raises(CRSError, match=r"holds a symbolic link, MODEL_CARD\.md ->"):
        FolderClaim(run, "run", resume=True)
    assert not (run / LOCK_FILE).exists() and victim.read_text() == "the user's file\n"


def test_every_command_refuses_a_folder_another_process_writes(tmp_path: Path, evaluation: Path) -> None:
    out = tmp_path / "busy"
    attempts = {
        "eval": ["eval", "-n", "5", "-o", str(out)],
        "pretrain": [*PRETRAIN, "--out", str(out)],
        "report": ["report", str(evaluation), "--out", str(out), "--examples", "0"],
    }
    with FolderClaim(out, "output"):  # stands for a `crs` command still running
        for command, args in attempts.items():
            result = runner.invoke(app, args)
            assert refused(result, f"is being written by process {os.getpid()}"), (command, result.output)
            result = runner.invoke(app, [*args, "--overwrite"])  # --overwrite does not break a live lock
            assert refused(result, f"is being written by process {os.getpid()}"), (command, result.output)
    assert not out.exists()  # the claim created it and nothing was written: released, it is gone


@pytest.mark.parametrize("command", ["eval", "pretrain", "report"])
def test_a_stale_lock_is_reported_with_the_rm_command_that_clears_it(
    command: str, tmp_path: Path, evaluation: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_FILE
    pid = dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "crs eval -o out"}))
    args = {
        "eval": ["eval", "-n", "5", "-o", str(out)],
        "pretrain": [*PRETRAIN, "--out", str(out)],
        "report": ["report", str(evaluation), "--out", str(out), *QUICK_REPORT],
    }[command]
    result = runner.invoke(app, args)
    assert refused(result, f"locked by process {pid}", "no longer running", f"`rm {lock}`"), result.output
    lock.unlink()  # what the message says to do
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not lock.exists()


def test_a_failed_evaluation_releases_its_lock(tmp_path: Path, monkeypatch) -> None:
    def crash(*args, **kwargs):
        raise RuntimeError("a conversation crashed")

    out = tmp_path / "out"
    monkeypatch.setattr("crs.app.evaluation.evaluate", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        run_evaluation("ask-4", episodes=5, out=out, show_progress=False)
    assert not out.exists()  # no lock left behind, nothing half-written, no empty folder
    monkeypatch.undo()
    run_evaluation("ask-4", episodes=5, out=out, show_progress=False)  # the folder is free again
    # an --overwrite evaluation that crashes (or is interrupted) keeps the earlier one
    before = files(out)
    monkeypatch.setattr("crs.app.evaluation.evaluate", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        run_evaluation("ask-4", episodes=5, seed=2, out=out, overwrite=True, show_progress=False)
    assert files(out) == before


# ----------------------------------------------------------------------------- silent overwrites


def test_eval_refuses_an_existing_output_and_replaces_it_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert runner.invoke(app, ["eval", "-n", "5", "--seed", "1", "-o", str(out)]).exit_code == 0
    before = files(out)
    result = runner.invoke(app, ["eval", "-n", "5", "--seed", "2", "-o", str(out)])
    assert refused(result, "already holds results", "--overwrite"), result.output
    assert files(out) == before
    result = runner.invoke(app, ["eval", "-n", "5", "--seed", "2", "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["episodes.jsonl", "summary.json"]


def test_a_folder_that_is_no_earlier_output_is_refused_without_suggesting_overwrite(tmp_path: Path) -> None:
    """A folder holding other files (here a pre-training artifact's) is refused with or without
    --overwrite, so the first refusal must not suggest --overwrite, which would only be refused again."""
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "config.json").write_text("{}")
    for overwrite in ([], ["--overwrite"]):
        result = runner.invoke(app, ["eval", "-n", "5", "-o", str(out), *overwrite])
        assert refused(result, "no summary.json, episodes.jsonl", "choose another folder"), result.output
        assert "pass --overwrite" not in " ".join(result.output.split())
    assert files(out) == {"config.json": b"{}"}


def test_rerunning_an_eval_into_its_default_folder_says_how_to_proceed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["eval", "-n", "5"]).exit_code == 0
    default = Path("out") / "eval" / "persona_world-ask-4-s1"
    before = files(default)
    result = runner.invoke(app, ["eval", "-n", "5"])
    assert refused(result, str(default), "already holds results", "--overwrite", "-o"), result.output
    assert files(default) == before


def test_report_refuses_someone_elses_report_and_replaces_it_with_overwrite(
    tmp_path: Path, evaluation: Path
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("someone else's report")
    args = ["report", str(evaluation), "--out", str(out), *QUICK_REPORT]
    result = runner.invoke(app, args)
    assert refused(result, "already holds results", "report.md", "--overwrite"), result.output
    assert (out / "report.md").read_text() == "someone else's report"
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").read_text().startswith("# persona-crs evaluation report")


def test_rerunning_a_report_into_its_default_folder_is_refused(
    tmp_path: Path, evaluation: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["report", str(evaluation), *QUICK_REPORT]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert refused(result, str(Path("out") / "report"), "already holds results", "--overwrite"), result.output


@pytest.mark.parametrize("where", ["the input", "above the input", "inside the input"])
def test_report_never_writes_over_its_own_input_even_with_overwrite(
    where: str, tmp_path: Path, evaluation: Path
) -> None:
    root = tmp_path / "evals"
    shutil.copytree(evaluation, root / "ask-4")
    source = root / "ask-4"
    out = {"the input": source, "above the input": root, "inside the input": source / "report"}[where]
    before = files(root)
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["report", str(source), "--out", str(out), "--examples", "0", *extra])
        assert refused(result, "which this command reads", "choose"), (extra, result.output)
    assert files(root) == before
    assert not (source / "report").exists()


def test_eval_never_writes_over_its_ranker_or_data_folder_even_with_overwrite(
    tmp_path: Path, artifact: Path
) -> None:
    data = tmp_path / "data"
    (data / "lastfm").mkdir(parents=True)
    (data / "lastfm" / "item_dict.json").write_text("{}")
    before_data, before_artifact = files(data), files(artifact)
    for args in (
        ["--data-dir", str(data), "-o", str(data)],
        ["--data-dir", str(data / "lastfm"), "-o", str(data)],
        ["--data-dir", str(data), "-o", str(data / "lastfm")],  # inside the data folder
        ["--data-dir", str(data), "-o", str(data / "lastfm" / "new")],
        ["--ranker", str(artifact), "-o", str(artifact)],
        ["--ranker", str(artifact), "-o", str(artifact.parent)],
        ["--ranker", str(artifact), "-o", str(artifact / "eval")],  # inside the ranker artifact
    ):
        result = runner.invoke(app, ["eval", "-n", "5", *args, "--overwrite"])
        assert refused(result, "which this command reads"), (args, result.output)
        sessions = ["--sessions", "2", "--regime", "stable", "--memory", "update"]
        if "--ranker" not in args:
            sessions += ["--ranker", str(artifact)]
        result = runner.invoke(app, ["eval", "-n", "2", *sessions, *args, "--overwrite"])
        assert refused(result, "which this command reads"), ("--sessions", args, result.output)
    assert files(data) == before_data and files(artifact) == before_artifact


@pytest.mark.parametrize("command", ["eval", "pretrain", "report"])
def test_overwrite_never_empties_a_folder_that_is_not_an_earlier_output_of_the_command(
    tmp_path: Path, evaluation: Path, artifact: Path, command: str
) -> None:
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("my own files")
    (out / "summary.json").write_text("{}")  # one file of a crs eval output is not enough
    before = files(out)
    args = {
        "eval": ["eval", "-n", "5", "-o", str(out)],
        "pretrain": [*PRETRAIN, "--out", str(out)],
        "report": ["report", str(evaluation), "--out", str(out), *QUICK_REPORT],
    }[command]
    result = runner.invoke(app, [*args, "--overwrite"])
    assert refused(result, "is not an earlier", "choose another folder"), result.output
    assert files(out) == before
    earlier = {"eval": evaluation, "pretrain": artifact, "report": None}[command]
    if earlier is not None:  # an earlier output of the command is replaced
        shutil.copytree(earlier, tmp_path / "earlier")
        args[args.index(str(out))] = str(tmp_path / "earlier")
        assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("command", ["eval", "pretrain", "report"])
def test_overwrite_refuses_an_earlier_output_holding_files_the_command_never_wrote(
    tmp_path: Path, evaluation: Path, artifact: Path, command: str
) -> None:
    """An earlier output with a user's notes and another command's results beside it: --overwrite is
    refused naming them, and every file stays (guards against emptying the whole folder); without them,
    the earlier output is replaced."""
    out = tmp_path / "earlier"
    args = {
        "eval": ["eval", "-n", "5", "-o", str(out)],
        "pretrain": [*PRETRAIN, "--out", str(out)],
        "report": ["report", str(evaluation), "--out", str(out), *QUICK_REPORT],
    }[command]
    assert runner.invoke(app, args).exit_code == 0
    (out / "notes.txt").write_text("my own notes")
    shutil.copytree(evaluation, out / "evals" / "mine")
    before = files(out)
    result = runner.invoke(app, [*args, "--overwrite"])
    assert refused(result, "holds evals, notes.txt besides an earlier", "move them out"), result.output
    assert files(out) == before
    shutil.rmtree(out / "evals")
    (out / "notes.txt").unlink()
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("command", ["pretrain", "report"])
def test_ctrl_c_says_nothing_was_written_and_keeps_the_earlier_output(
    tmp_path: Path, evaluation: Path, artifact: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the artifact or report is built (a KeyboardInterrupt from the builder) exits 130
    saying that nothing was written, and an --overwrite's earlier output is as it was (it stopped in
    silence)."""
    out = tmp_path / "earlier"
    args = {
        "pretrain": [*PRETRAIN, "--out", str(out)],
        "report": ["report", str(evaluation), "--out", str(out), *QUICK_REPORT],
    }[command]
    if command == "pretrain":
        shutil.copytree(artifact, out)
    else:
        assert runner.invoke(app, args).exit_code == 0
    before = files(out)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    builder = {"pretrain": (policies.pretrain.train, "pretrain"), "report": (crs.report, "build_report")}
    monkeypatch.setattr(*builder[command], interrupted)
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 130, result.output
    assert says(result.output, "interrupted: no", "was written", f"the earlier one in {out} is kept")
    assert files(out) == before
    # a first build stopped keeps no earlier one, and does not say it does
    result = runner.invoke(app, [arg if arg != str(out) else str(tmp_path / "new") for arg in args])
    assert result.exit_code == 130, result.output
    assert says(result.output, "interrupted: no", "was written (one is moved in only once whole)")
    assert "earlier" not in result.output


@pytest.mark.slow  # a real process: python and torch start in it
def test_sigterm_ends_pretrain_as_ctrl_c_does_leaving_no_lock(tmp_path: Path) -> None:
    """`kill` (or `timeout`) while `crs pretrain` trains: the command says what it left and exits 143,
    and its output folder's lock goes with it, so the next run is not refused."""
    out = tmp_path / "art"
    long = [*PRETRAIN]
    long[long.index("--epochs") + 1] = "500"
    args = [sys.executable, "-m", "crs", *long, "--out", str(out)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOCK_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / LOCK_FILE).exists(), "the run never claimed its output folder"
    time.sleep(1.0)  # into the training
    process.terminate()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert "terminated: no artifact was written" in " ".join(output.split())
    assert not out.exists()  # the folder it created, lock and all, is gone
    assert runner.invoke(app, [*PRETRAIN, "--out", str(out)]).exit_code == 0


def test_report_refuses_a_negative_number_of_examples(tmp_path: Path, evaluation: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(evaluation), "--out", str(out), "--examples", "-1"])
    assert result.exit_code == 2 and "--examples" in result.output and not out.exists()


def test_pretrain_and_report_never_write_inside_the_data_folder(tmp_path: Path, evaluation: Path) -> None:
    data = tmp_path / "data"
    (data / "lastfm").mkdir(parents=True)
    (data / "lastfm" / "item_dict.json").write_text("{}")
    before = files(data)
    for args in (
        [*PRETRAIN, "--data-dir", str(data), "--out", str(data / "lastfm"), "--overwrite"],
        [
            "report",
            str(evaluation),
            "--data-dir",
            str(data),
            "--out",
            str(data / "report"),
            "--examples",
            "0",
        ],
    ):
        result = runner.invoke(app, args)
        assert refused(result, "lies inside the data folder"), (args, result.output)
    assert files(data) == before


def test_pretrain_refuses_an_existing_artifact_and_replaces_it_with_overwrite(
    tmp_path: Path, artifact: Path
) -> None:
    out = tmp_path / "art"
    shutil.copytree(artifact, out)
    before = files(out)
    result = runner.invoke(app, [*PRETRAIN, "--out", str(out), "--seed", "1"])
    assert refused(result, "already holds results", "config.json", "--overwrite"), result.output
    assert files(out) == before
    result = runner.invoke(app, [*PRETRAIN, "--out", str(out), "--seed", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_pretrain_refuses_its_default_folder_when_it_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "pretrain").mkdir(parents=True)
    (tmp_path / "runs" / "pretrain" / "config.json").write_text("{}")
    result = runner.invoke(app, PRETRAIN)
    assert refused(result, str(Path("runs") / "pretrain"), "already holds results", "--overwrite")


def test_chat_refuses_an_existing_transcript_before_the_chat_and_replaces_it_with_overwrite(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.json"
    path.write_text("yesterday's chat")
    result = runner.invoke(app, ["chat", "--simulate", "--transcript", str(path)])
    assert refused(result, "already exists", "--overwrite"), result.output
    assert "How about" not in result.output  # refused before the conversation, not after it
    assert path.read_text() == "yesterday's chat"
    result = runner.invoke(app, ["chat", "--simulate", "--transcript", str(path), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["meta"]["mode"] == "simulate"


def test_a_transcript_created_during_the_chat_is_kept(tmp_path: Path) -> None:
    world = make_persona_world()
    path = tmp_path / "chat.json"

    def read(prompt: str) -> str:  # someone else writes the transcript while the user types
        path.write_text("theirs")
        return "quit"

    out = io.StringIO()
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    env = make_env(catalog=world, split="test")
    run_chat(env, policy, seed=0, console=Console(file=out, width=200), read=read, transcript=path)
    assert path.read_text() == "theirs"
    assert json.loads((tmp_path / "chat-1.json").read_text())["outcome"]["ended"] == "quit"
    assert "appeared during the chat" in out.getvalue()


# ----------------------------------------------------------------------------- bad values


def test_an_output_that_is_a_file_is_a_named_error(tmp_path: Path, evaluation: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for args in (
        ["eval", "-n", "5", "-o", str(blocker)],
        ["report", str(evaluation), "--out", str(blocker), "--examples", "0"],
        [*PRETRAIN, "--out", str(blocker)],
    ):
        result = runner.invoke(app, args)
        assert refused(result, "is a file, not a folder"), (args, result.output)
    result = runner.invoke(app, ["eval", "-n", "5", "-o", str(blocker / "sub")])
    assert refused(result, "cannot create", "Not a directory"), result.output
    result = runner.invoke(app, ["chat", "--simulate", "--transcript", str(tmp_path)])
    assert refused(result, "is a folder"), result.output
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--seed", "-1"],
        ["eval", "--world-seed", "-1"],
        ["chat", "--simulate", "--seed", "-1"],
        [*PRETRAIN, "--seed", "-1"],
        ["report", "in", "--seed", "-1"],
    ],
    ids=["eval-seed", "eval-world-seed", "chat-seed", "pretrain-seed", "report-seed"],
)
def test_negative_seeds_are_refused_when_parsed(args: list[str], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert says(result.output, f"Invalid value for '{args[args.index('-1') - 1]}'"), result.output
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_a_bogus_backend_is_refused_even_with_one_worker(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "-n", "5", "--backend", "bogus", "-o", str(tmp_path / "out")])
    assert refused(result, "bogus"), result.output
    assert not (tmp_path / "out").exists()


def test_more_conversations_than_the_split_holds_says_how_many_were_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "-n", "100000000", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert says(result.output, "warning: --episodes 100000000", "evaluating all 2400")
    assert json.loads((out / "summary.json").read_text())["episodes"] == 2400


def test_damaged_pretrain_artifacts_are_named_errors(tmp_path: Path, artifact: Path) -> None:
    config = (artifact / "config.json").read_text()
    damages = {
        "truncated config": ("config.json", config[: len(config) // 2], "config.json is corrupt"),
        "keyless config": (
            "config.json",
            '{"kind": "persona_pretrain", "artifact_version": 1}',
            "config.json lacks",
        ),
        "truncated weights": ("ranker.pt", None, "ranker.pt is not the one its config.json describes"),
    }
    for name, (file, text, message) in damages.items():
        damaged = tmp_path / name.replace(" ", "-")
        shutil.copytree(artifact, damaged)
        if text is None:
            data = (damaged / file).read_bytes()
            (damaged / file).write_bytes(data[: len(data) // 2])
        else:
            (damaged / file).write_text(text)
        for args in (
            ["eval", "-n", "5", "--ranker", str(damaged), "-o", str(tmp_path / "out" / damaged.name)],
            ["chat", "--simulate", "--ranker", str(damaged)],
        ):
            result = runner.invoke(app, args)
            assert refused(result, message), (name, args, result.output)


def test_a_report_that_fails_to_write_leaves_the_earlier_one_as_it_was(
    tmp_path: Path, evaluation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crs.report

    out = tmp_path / "report"
    args = ["report", str(evaluation), "--out", str(out), *QUICK_REPORT]
    assert runner.invoke(app, args).exit_code == 0
    before = files(out)
    write = crs.report.write_report

    def full_disk(report: crs.report.Report) -> list[Path]:
        write(report)  # the new report is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(crs.report, "write_report", full_disk)
    result = runner.invoke(app, [*args, "--overwrite", "--title", "another title"])
    assert result.exit_code != 0 and "No space left" in result.output, result.output
    assert files(out) == before  # the earlier report, whole, and nothing else
    assert sorted(path.name for path in out.iterdir()) == sorted(before)
    monkeypatch.undo()
    result = runner.invoke(app, [*args, "--overwrite", "--title", "another title"])
    assert result.exit_code == 0, result.output
    assert "another title" in (out / "report.md").read_text()


def test_an_output_path_that_looks_like_markup_is_printed_as_written(tmp_path: Path) -> None:
    out = tmp_path / "o[red]x[/]"
    result = runner.invoke(app, ["eval", "-p", "ask-4", "-n", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert says(result.output, f"records in {out}") and (out / "summary.json").is_file()


# ------------------------------------------------------------------------------ claims, unit by unit


def test_a_dead_pid_of_another_host_is_no_stale_lock(tmp_path: Path) -> None:
    """Guards against taking another machine's lock for stale: its PID says nothing about this host's
    processes (a sweep folder on a shared disk), so a rerun is refused and the lock is kept."""
    folder = tmp_path / "sweep"
    folder.mkdir()
    holder = {"pid": dead_pid(), "host": f"not-{socket.gethostname()}", "command": "crs sweep"}
    (folder / LOCK_FILE).write_text(json.dumps(holder))
    with pytest.raises(OutputBusyError) as error:
        FolderClaim(folder, "sweep folder", resume=True, take_stale=True)
    assert f"is being written by process {holder['pid']} on {holder['host']}" in str(error.value)
    assert "no longer running" not in str(error.value)
    assert json.loads((folder / LOCK_FILE).read_text()) == holder


def test_overwrite_removes_a_link_to_a_folder_not_what_it_names(tmp_path: Path) -> None:
    """Guards against emptying an earlier output by following its links: a link to a folder is removed
    as a link, and the folder it names keeps its files."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("the user's\n")
    (out / "summary.json").write_text("{}")
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    with FolderClaim(out, "evaluation output", overwrite=True, marks=("summary.json",)):
        assert sorted(entry.name for entry in out.iterdir()) == [LOCK_FILE]
    assert (elsewhere / "keep.txt").read_text() == "the user's\n"


def test_releasing_a_claim_keeps_a_folder_it_did_not_create(tmp_path: Path) -> None:
    """Guards against removing, on release, an empty folder the user made before the command ran: only
    a folder the claim created (and left empty) is removed."""
    mine = tmp_path / "made-by-the-user"
    mine.mkdir()
    FolderClaim(mine, "evaluation output").release()
    assert mine.is_dir() and not any(mine.iterdir())
    created = tmp_path / "made-by-the-claim"
    FolderClaim(created, "evaluation output").release()
    assert not created.exists()


def test_an_output_inside_an_input_is_refused_only_where_asked(tmp_path: Path) -> None:
    """Guards against refusing ``crs eval --policy runs/x -o runs/x/eval`` (an output inside its input
    folder is allowed unless `inside`), while an output that is or holds an input is always refused."""
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    claims.refuse_output_over_inputs(run / "eval", [("--policy run", run)])
    with pytest.raises(claims.OutputOverInputError, match="lies inside the --policy run"):
        claims.refuse_output_over_inputs(run / "eval", [("--policy run", run)], inside=True)
    with pytest.raises(claims.OutputOverInputError, match="holds the --policy run"):
        claims.refuse_output_over_inputs(tmp_path / "runs", [("--policy run", run)])


def test_a_new_file_claim_refuses_a_folder_and_an_existing_file_unless_overwrite(tmp_path: Path) -> None:
    """Guards against `claim_new_file` letting a writer replace a folder, or an existing file without
    ``--overwrite``."""
    with pytest.raises(CRSError, match="is a folder; give a file path"):
        claims.claim_new_file(tmp_path, "transcript", overwrite=True)
    existing = tmp_path / "chat.md"
    existing.write_text("earlier\n")
    with pytest.raises(claims.OutputExistsError, match="already exists; pass --overwrite"):
        claims.claim_new_file(existing, "transcript")
    claims.claim_new_file(existing, "transcript", overwrite=True)
    claims.claim_new_file(tmp_path / "new.md", "transcript")


def test_resume_continues_a_folder_with_results_that_a_new_claim_refuses(tmp_path: Path) -> None:
    """Guards against refusing the folder a command continues (``--resume``, a sweep's rerun): with
    `resume` its results are accepted and kept; without it or `overwrite` the claim is refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.csv").write_text("timesteps\n1000\n")
    with pytest.raises(claims.OutputExistsError, match=r"already holds results \(eval\.csv\); pass --resume"):
        FolderClaim(run, "run", hint="pass --resume")
    with FolderClaim(run, "run", resume=True) as claim:
        assert claim.held and not claim.pending
    assert (run / "eval.csv").read_text() == "timesteps\n1000\n" and not (run / LOCK_FILE).exists()
