"""`crs report` finds a real-data catalogue where the evaluation read it: summary.json records the data
folder, absolute, so example dialogues replay without ``--data-dir`` or ``$CRS_DATA_DIR``, from any
working folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crs.app.evaluation import run_evaluation
from crs.app.run_folder import SUMMARY_FILE, EvalSummary, RunRecord
from crs.cli import app
from crs.report import build_report, load_inputs
from simulators.datasets import DATA_DIR_ENV

TINY_TRAIN = (
    "dataset: lastfm\nsteps: 32\nenvs: 1\ntest_episodes: 5\neval_episodes: 5\nbaselines: [ask-2]\n"
    "ranker: uniform\nppo: {n_steps: 32, batch_size: 32, n_epochs: 1}\n"
)


def _examples_of(inputs: list[Path], out: Path) -> tuple[int, str | None]:
    report = build_report(inputs, out, examples=1, persona=False, figures=False)
    return len(report.examples), report.unavailable.get("examples")


def test_an_evaluation_given_a_relative_data_dir_replays_from_another_folder(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``--data-dir`` is recorded absolute; the report, run elsewhere with no data folder
    named, replays its dialogues (before, it had no catalogue: "examples" unavailable)."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data").symlink_to(real_data_dir.resolve())
    monkeypatch.chdir(tmp_path / "a")
    run_evaluation(
        "ask-2", dataset="lastfm", data_dir="data", episodes=3, out=tmp_path / "e", show_progress=False
    )
    assert EvalSummary.read(tmp_path / "e").data_dir == str(real_data_dir.resolve())
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    assert _examples_of([tmp_path / "e"], tmp_path / "r") == (1, None)


def test_a_persona_world_evaluation_records_no_data_folder(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persona world reads no folder, even with ``$CRS_DATA_DIR`` set: none is recorded."""
    monkeypatch.setenv(DATA_DIR_ENV, str(real_data_dir))
    run_evaluation("ask-2", episodes=2, out=tmp_path / "e", show_progress=False)
    assert "data_dir" not in json.loads((tmp_path / "e" / SUMMARY_FILE).read_text())


@pytest.mark.slow
def test_a_real_data_train_runs_report_finds_its_data_without_data_dir(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real-data `crs train` run's tests record the data folder; a report without ``--data-dir``
    replays its dialogues. Summaries written before that record take the folder from the run's
    config.yaml; a folder that is gone is not used (the report then needs ``--data-dir``)."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_TRAIN)
    args = [
        "train",
        "--config",
        "tiny.yaml",
        "--data-dir",
        str(real_data_dir),
        "--name",
        "t",
        "--runs-dir",
        "runs",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    summaries = sorted((run / "tested").glob(f"*/{SUMMARY_FILE}"))
    assert len(summaries) == 2
    assert {EvalSummary.read(s.parent).data_dir for s in summaries} == {str(real_data_dir.resolve())}
    assert _examples_of([run], tmp_path / "r1") == (1, None)

    for summary in summaries:  # as written before summaries recorded their folder
        data = json.loads(summary.read_text())
        del data["data_dir"]
        summary.write_text(json.dumps(data))
    assert {e.data_dir for e in load_inputs([run]).evals} == {str(real_data_dir.resolve())}

    config, recorded = run / "config.yaml", RunRecord.read(run).settings.data_dir
    assert recorded is not None  # as --data-dir gave it (CI's data folder is reached by a link)
    config.write_text(config.read_text().replace(recorded, str(tmp_path / "moved")))
    assert {e.data_dir for e in load_inputs([run]).evals} == {None}  # the report then needs --data-dir


def test_a_data_dir_that_is_no_folder_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    """It was accepted in silence (exit 0), and the real-data sections said only "unavailable"."""
    out = tmp_path / "report"
    args = ["report", str(tmp_path), "--data-dir", str(tmp_path / "nope"), "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 2 and not out.exists(), result.output
    assert f"{tmp_path / 'nope'} is not a folder: give the folder that holds the datasets" in result.output
