"""One run written by `crs train` and read by every consumer through the run-folder schema
(`crs.app.run_folder`): `crs eval`, `crs chat`, `crs report` and `crs train --resume`. No fixture
writes a run file by hand, so writer and readers cannot drift apart without this test failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.run_folder import CurveFile, EvalSummary, RunRecord, TrainSummary, read_episodes
from crs.cli import app
from crs.report import build_report, load_inputs
from crs.report.formatting import input_text, ranker_text
from policies.rl.run_files import CheckpointState, PolicyMeta

pytestmark = pytest.mark.slow
runner = CliRunner()
# the default persona world (the one `crs eval` and `crs chat` build), a fixed ranker, 2 x 64 steps
SETTINGS = {
    "ranker": "popularity",
    "envs": 2,
    "steps": 128,
    "eval_every": 64,
    "eval_episodes": 8,
    "test_episodes": 8,
    "checkpoint_every": 64,
    "baselines": ["ask-4"],
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "subprocess": False},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(root), "--name", "r"])
    assert result.exit_code == 0, result.output
    return root / "r"


def test_the_run_reads_back_through_its_schema(run: Path) -> None:
    record = RunRecord.read(run)
    assert record.name == "r" and record.settings.steps == 128 and record.settings.ppo.n_steps == 32
    summary = TrainSummary.read(run)
    assert summary.timesteps == 128 and set(summary.test) == {summary.trained_label, "ask-4"}
    assert [row["timesteps"] for row in CurveFile(run).rows()] == [0, 64, 128]  # 0: the copy of ask-7
    state = CheckpointState.read(run)
    assert state is not None and state.timesteps == 128
    assert PolicyMeta.read(run).ranker == "popularity"


def test_crs_eval_chat_and_report_read_the_run(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--policy", str(run), "-n", "12", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    evaluation = EvalSummary.read(out)
    assert evaluation.policy == "r" and evaluation.policy_spec == str(run) and evaluation.ranker == "run"
    assert evaluation.run_ranker == "popularity"  # the run's own ranker, named in the summary
    assert "ranker run (popularity)" in " ".join(result.output.split())
    assert len(read_episodes(out)) == 12 == evaluation.episodes

    transcript = tmp_path / "chat.json"
    chat = ["chat", "--policy", str(run), "--simulate", "--seed", "2", "--transcript", str(transcript)]
    result = runner.invoke(app, chat)
    assert result.exit_code == 0, result.output
    assert json.loads(transcript.read_text())["meta"]["policy"] == "r"

    inputs = load_inputs([run, out])
    (train,) = inputs.trains
    assert train.info.seed == 0 and train.info.ablation == "full" and train.summary is not None
    assert train.curve is not None and train.curve.steps.tolist() == [0.0, 64.0, 128.0]
    (evaluated,) = [e for e in inputs.evals if e.path == out]
    assert evaluated.train is not None and evaluated.train.path == run  # found through policy_spec
    report = build_report([run, out], tmp_path / "report", examples=0)
    assert report.tables and report.train_groups


def test_the_setting_is_recorded_and_a_policy_acts_only_in_its_own(run: Path, tmp_path: Path) -> None:
    assert RunRecord.read(run).settings.setting == "multiple_choice"  # the persona world's own, resolved
    assert TrainSummary.read(run).setting == "multiple_choice"
    assert PolicyMeta.read(run).env["setting"] == "multiple_choice"
    out = tmp_path / "binary"
    result = runner.invoke(
        app, ["eval", "--policy", str(run), "-n", "4", "--setting", "binary", "-o", str(out)]
    )
    assert result.exit_code == 2 and "trained in the multiple_choice setting" in result.output
    assert "--setting multiple_choice" in result.output and not (out / "summary.json").exists()
    result = runner.invoke(
        app, ["eval", "--policy", "ask-4", "-n", "4", "--setting", "yes-no", "-o", str(out)]
    )
    assert (
        result.exit_code == 2
        and "setting: Input should be 'binary', 'enumerated' or 'multiple_choice'"
        in " ".join(result.output.split())
    )


def test_runs_from_before_the_setting_was_recorded_keep_theirs(run: Path, tmp_path: Path) -> None:
    """Yelp* was enumerated by default before settings were recorded: an old Yelp* run stays so."""
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((run / "policy.json").read_text())
    del meta["env"]["setting"]
    for catalog, expected in (("yelp_star", "enumerated"), ("persona_world", None)):
        (old / "policy.json").write_text(json.dumps({**meta, "catalog": catalog}))
        assert PolicyMeta.read(old).env["setting"] == expected
    record = yaml.safe_load((run / "config.yaml").read_text())
    del record["settings"]["setting"]
    record["settings"]["dataset"] = "yelp_star"
    (old / "config.yaml").write_text(yaml.safe_dump(record))
    assert RunRecord.read(old).settings.setting == "enumerated"


def test_resume_reads_and_extends_the_same_files(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs" / "r"
    copy.mkdir(parents=True)
    for file in run.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    result = runner.invoke(
        app, ["train", "--name", "r", "--runs-dir", str(copy.parent), "--resume", "--steps", "192"]
    )
    assert result.exit_code == 0, result.output
    state = CheckpointState.read(copy)
    assert state is not None and TrainSummary.read(copy).timesteps == 192 == state.timesteps
    assert [row["timesteps"] for row in CurveFile(copy).rows()] == [0, 64, 128, 192]
    assert RunRecord.read(copy).settings.steps == 192


def test_a_run_s_config_yaml_replays_with_crs_train_config(run: Path) -> None:
    result = runner.invoke(app, ["train", "--config", str(run / "config.yaml"), "--print-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == RunRecord.read(run).settings.model_dump()


def test_the_model_card_says_what_was_trained_and_how_to_rerun_it(run: Path) -> None:
    card = (run / "MODEL_CARD.md").read_text()
    summary = TrainSummary.read(run)
    assert f"{summary.timesteps:,} steps" in card and "seed 0" in card and "`popularity`" in card
    trained = summary.test[summary.trained_label]["SR@15"]
    assert f"| {summary.trained_label} | {trained.mean:.3f} [{trained.low:.3f}, {trained.high:.3f}]" in card
    assert f"crs train --config {run / 'config.yaml'} --name r-again" in card


def test_a_report_names_a_trained_policys_ranker_even_when_its_run_is_gone(run: Path, tmp_path: Path) -> None:
    """The report's ranker column shows the run's own ranker, not "run": from the run folder, else from
    summary.json's ``run_ranker``; a summary from before that field, with its run gone, says "run"."""
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--policy", str(run), "-n", "6", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output

    def rankers_shown(folder: Path) -> tuple[str, str]:
        """The comparison table's ranker column, and the ranker its input line names."""
        report = build_report([folder], tmp_path / "report", examples=0, persona=False)
        ((row,),) = [table.rows for table in report.tables]
        (evaluated,) = row.runs
        return ranker_text(row), input_text(evaluated).split("ranker ")[1].split(",")[0]

    assert rankers_shown(out) == ("popularity", "popularity")  # found through policy_spec
    gone = tmp_path / "gone"
    gone.mkdir()
    summary = json.loads((out / "summary.json").read_text())
    (gone / "episodes.jsonl").write_text((out / "episodes.jsonl").read_text())
    (gone / "summary.json").write_text(json.dumps({**summary, "policy_spec": str(tmp_path / "moved")}))
    assert rankers_shown(gone) == ("popularity", "popularity")  # from summary.json alone
    del summary["run_ranker"]
    (gone / "summary.json").write_text(json.dumps({**summary, "policy_spec": str(tmp_path / "moved")}))
    assert rankers_shown(gone) == ("run", "run")
