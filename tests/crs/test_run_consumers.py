"""One run written by `crs train` and read by every consumer through the run-folder schema
(`crs.app.run_folder`): `crs eval`, `crs chat`, `crs report` and `crs train --resume`. No fixture
writes a run file by hand, so writer and readers cannot drift apart without this test failing."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.run_folder import (
    TEST_DIR,
    TRAINED_TEST,
    CurveFile,
    EvalSummary,
    RunRecord,
    TrainSummary,
    read_episodes,
    write_test_folders,
)
from crs.app.training import next_commands
from crs.cli import app
from crs.report import build_report, load_inputs
from crs.report.formatting import input_text, ranker_text
from envs.setting import LEGACY_SETTINGS
from policies.rankers import RankerSpec
from policies.rl.run_files import RUN_ID_ENTRY, CheckpointState, PolicyMeta, run_ranker, trained_setting

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
    report = build_report([run, out], tmp_path / "report", examples=0, figures=False)
    assert report.tables and report.train_groups


def test_an_evaluation_of_a_run_named_relatively_is_read_from_any_folder(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crs eval -p runs/a1` recorded "runs/a1": a report made from another folder lost the run (and its
    ranker), so its persona analysis and examples were dropped without an error (a walkthrough)."""
    monkeypatch.chdir(run.parent)
    out = tmp_path / "relative-eval"
    result = runner.invoke(app, ["eval", "--policy", run.name, "-n", "4", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert EvalSummary.read(out).policy_spec == str(run.resolve())
    monkeypatch.chdir(tmp_path)
    (evaluated,) = load_inputs([out]).evals
    assert evaluated.train is not None and evaluated.train.path.resolve() == run.resolve()


def test_a_model_file_copied_from_another_run_is_refused(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A best_model.zip copied from another run of the same sizes was evaluated without a word (a
    security walkthrough). Each zip holds the run id of the run that wrote it: a folder whose id is
    another refuses it, naming both; a zip without an id (older) loads with a warning."""
    meta = PolicyMeta.read(run)
    assert meta.run_id is not None
    for name in ("best_model.zip", "model.zip", "checkpoint.zip"):
        with zipfile.ZipFile(run / name) as archive:
            assert archive.read(RUN_ID_ENTRY).decode() == meta.run_id
    other = tmp_path / "other"
    shutil.copytree(run, other)
    dataclasses.replace(meta, run_id="0" * 32).write(other)  # another run, whose folder got r's models
    result = runner.invoke(app, ["eval", "--policy", str(other), "-n", "2", "-o", str(tmp_path / "e")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "was written by another run" in said and meta.run_id in said
    older = tmp_path / "older"
    shutil.copytree(run, older)
    with (
        zipfile.ZipFile(run / "best_model.zip") as source,
        zipfile.ZipFile(older / "best_model.zip", "w") as out,
    ):
        for info in source.infolist():
            if info.filename != RUN_ID_ENTRY:
                out.writestr(info, source.read(info))
    result = runner.invoke(app, ["eval", "--policy", str(older), "-n", "2", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "holds no run id" in caplog.text


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
        app,
        ["eval", "--policy", "ask-4", "-n", "4", "--setting", "yes-no", "-o", str(out)],
        env={"COLUMNS": "250"},  # the error's box: one line
    )
    assert (
        result.exit_code == 2
        and "unknown setting 'yes-no'; valid settings: binary, enumerated, multiple_choice"
        in " ".join(result.output.split())
    )
    for command in (["chat"], ["train", "--print-config"]):  # one option: one check, one wording
        result = runner.invoke(app, [*command, "--setting", "yes-no"], input="quit\n", env={"COLUMNS": "250"})
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "unknown setting 'yes-no'; valid settings: binary" in text, text


def test_runs_from_before_the_setting_was_recorded_keep_theirs(run: Path, tmp_path: Path) -> None:
    """Yelp* was enumerated by default before settings were recorded: an old Yelp* run stays so."""
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((run / "policy.json").read_text())
    del meta["env"]["setting"]
    for catalog, expected in (("yelp_star", "enumerated"), ("persona_world", None)):
        (old / "policy.json").write_text(json.dumps({**meta, "catalog": catalog}))
        assert PolicyMeta.read(old).env["setting"] == expected == LEGACY_SETTINGS.get(catalog)
        assert trained_setting(old) == expected
    record = yaml.safe_load((run / "config.yaml").read_text())
    del record["settings"]["setting"]
    record["settings"]["dataset"] = "yelp_star"
    (old / "config.yaml").write_text(yaml.safe_dump(record))
    assert RunRecord.read(old).settings.setting == "enumerated"


def test_a_relative_ranker_of_a_run_lies_in_the_run_from_any_folder(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained with `pretrain` records its own ``artifact:ranker``: read from another working
    folder, it is the run's ranker/ folder, not one beside the reader."""
    moved = tmp_path / "runs" / "r"
    moved.mkdir(parents=True)
    meta = json.loads((run / "policy.json").read_text())
    (moved / "policy.json").write_text(json.dumps({**meta, "ranker": "artifact:ranker+split"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = run_ranker(moved)
    assert spec == RankerSpec("artifact", str(moved / "ranker"), "split") and spec.path == moved / "ranker"
    assert run_ranker(run) == RankerSpec("popularity")  # a ranker without a file is as recorded


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
    # a trained figure can round differently on another CPU or torch: the card says which it ran on
    versions = RunRecord.read(run).versions
    assert versions["cpu"] and f"torch {versions['torch']}, on {versions['cpu']}." in " ".join(card.split())


def test_the_model_card_s_evaluation_replays_the_run_s_test(run: Path, tmp_path: Path) -> None:
    card = " ".join((run / "MODEL_CARD.md").read_text().split())
    command = card.split("Evaluate it again on the same conversations: `")[1].split("`")[0]
    args = shlex.split(command)
    assert args[:2] == ["crs", "eval"]
    result = runner.invoke(app, [*args[1:], "-o", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert read_episodes(tmp_path / "again") == read_episodes(run / TEST_DIR / TRAINED_TEST)


def test_a_report_names_a_trained_policys_ranker_even_when_its_run_is_gone(run: Path, tmp_path: Path) -> None:
    """The report's ranker column shows the run's own ranker, not "run": from the run folder, else from
    summary.json's ``run_ranker``; a summary from before that field, with its run gone, says "run"."""
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--policy", str(run), "-n", "6", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output

    def rankers_shown(folder: Path) -> tuple[str, str]:
        """The comparison table's ranker column, and the ranker its input line names."""
        report = build_report([folder], tmp_path / "report", examples=0, persona=False, figures=False)
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


def test_the_runs_test_is_kept_as_eval_folders_that_crs_eval_reproduces(run: Path, tmp_path: Path) -> None:
    """`crs train` keeps each tested policy's records in tested/<policy>/, exactly as `crs eval` of the
    run (or of the rule over the run's ranker) on the run's seed writes them, so `crs report <run>` pairs
    the trained policy with its baselines and replays its dialogues."""
    assert sorted(p.name for p in (run / TEST_DIR).iterdir()) == ["ask-4", TRAINED_TEST]
    for folder, args in (
        (TRAINED_TEST, ["-p", str(run)]),
        ("ask-4", ["-p", "ask-4", "--ranker", "popularity"]),
    ):
        out = tmp_path / folder
        result = runner.invoke(app, ["eval", *args, "-n", "8", "--seed", "0", "-o", str(out)])
        assert result.exit_code == 0, result.output
        kept, again = EvalSummary.read(run / TEST_DIR / folder), EvalSummary.read(out)
        assert (kept.policy, kept.policy_spec, kept.ranker, kept.run_ranker, kept.conversations) == (
            again.policy,
            again.policy_spec,
            again.ranker,
            again.run_ranker,
            again.conversations,
        )
        assert read_episodes(run / TEST_DIR / folder) == read_episodes(out)

    report = build_report([run], tmp_path / "report", examples=1, persona=False, figures=False)
    ((full, ask4),) = [table.rows for table in report.tables]
    # a full model with no ablation beside it is named after its run
    assert (full.label, ask4.label) == (run.name, "ask-4") and full.runs[0].train is not None
    (difference,) = [d for d in report.tables[0].diffs if d.label == "ask-4"]
    assert difference.n_pairs == 8  # paired over the run's own test conversations
    assert [line.text() for line in report.input_list] == [f"table 1: {run}"]
    assert report.examples and "examples" not in report.unavailable


def test_a_new_test_replaces_the_old_one_whole_and_runs_share_their_baselines(
    run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (trained,) = [e for e in load_inputs([copy]).evals if e.train is not None]
    write_test_folders(copy, [(TRAINED_TEST, trained.summary, trained.records)])  # as a resume re-tests
    assert [p.name for p in (copy / TEST_DIR).iterdir()] == [TRAINED_TEST]  # ask-4 is no longer tested
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith(".")) == []  # nothing left behind

    twin = tmp_path / "twin"
    shutil.copytree(run, twin)  # the same test conversations, over the same ranker
    evals = load_inputs([run, twin]).evals
    assert sorted(e.policy for e in evals) == ["ask-4", "r", "r"]  # each run's own, one ask-4


def test_a_runs_baselines_rank_with_its_own_ranker_wherever_the_run_lies(run: Path, tmp_path: Path) -> None:
    """A baseline of tested/ names its ranker as it was when the run trained (a pre-trained ranker/ as
    a path then), and the trained policy names the run's folder then; moved or copied, the run still
    pairs them through its own ranker, and its dialogues replay from where it lies now."""
    moved = tmp_path / "elsewhere" / "r"
    shutil.copytree(run, moved)
    for folder, key, gone in (
        ("ask-4", "ranker", "/gone/runs/r/ranker"),
        (TRAINED_TEST, "policy_spec", "/gone/runs/r"),
    ):
        summary = moved / TEST_DIR / folder / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), key: gone}))
    report = build_report([moved], tmp_path / "report", examples=2, persona=False, figures=False)
    ((full, ask4),) = [table.rows for table in report.tables]
    assert ranker_text(ask4) == "popularity" == ranker_text(full)
    assert [d.label for d in report.tables[0].diffs] == ["ask-4"]  # paired: one ranker by content
    assert "examples" not in report.unavailable
    assert {e.policy for e in report.examples} == {moved.name, "ask-4"} and all(
        e.matches_record for e in report.examples
    )


def test_the_commands_a_training_suggests_next_work_as_printed(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # they write relative to the working directory
    commands = [shlex.split(command) for command in next_commands(run)]
    assert [command[:2] for command in commands] == [
        ["crs", "report"],
        ["crs", "eval"],
        ["crs", "chat"],
        ["tensorboard", "--logdir"],
    ]
    for command in commands[:3]:
        if command[1] == "eval":  # fewer conversations
            command[command.index("-n") + 1] = "4"
        result = runner.invoke(app, command[1:], input="quit\n")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / f"report-{run.name}" / "report.html").is_file()


def test_a_run_a_command_is_still_writing_is_named_so_not_called_no_run(tmp_path: Path) -> None:
    """`crs chat` (or eval) of a run whose `crs train` has not written policy.json yet said it is no
    trained run and to train one; it says a command is writing it (its lock) and to wait."""
    from crs.claims import FolderClaim

    run = tmp_path / "lk"
    with FolderClaim(run, "run"):  # as `crs train` holds its run folder
        result = runner.invoke(app, ["chat", "--policy", str(run)], input="quit\n", env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{run} has no policy.json yet: a crs command is writing it ({run / '.crs.lock'} names it)" in text
    assert "train one with" not in text
