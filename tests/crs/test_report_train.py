"""`crs report` over a real (tiny) `crs train` run and `crs eval` of it: the run is recognised by its
config, its curve and test summary are read as written, its pre-trained ranker gives the persona
analysis, and its conversations replay exactly."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from crs.app.evaluation import run_evaluation
from crs.app.settings import make_settings
from crs.app.training import run_training
from crs.report import build_report, write_report
from tests.crs.test_train_cmd import WORLD, tiny_settings

pytestmark = pytest.mark.slow
EPISODES = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    settings = make_settings(
        {
            "steps": 256,
            "envs": 2,
            "seed": 1,
            "eval_every": 256,
            "eval_episodes": 10,
            "test_episodes": EPISODES,  # the run's own test (tested/) repeats the evaluations below
            "baselines": ["ask-4"],
            "checkpoint_every": 256,
            "pretrain_epochs": 1,
            "ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 1},
        }
    )
    run_training(settings, name="full-s1", runs_dir=root / "runs", show=False)
    run = root / "runs" / "full-s1"
    evals = root / "eval"
    run_evaluation(str(run), episodes=EPISODES, seed=1, out=evals / "full-s1", show_progress=False)
    run_evaluation(
        "ask-4",
        episodes=EPISODES,
        seed=1,
        ranker=str(run / "ranker"),
        out=evals / "ask-4",
        show_progress=False,
    )
    return root, run, evals


def test_report_of_a_real_train_run(trained) -> None:
    root, run, evals = trained
    report = build_report([run, evals], root / "report", examples=2)
    files = write_report(report)
    (table,) = report.tables
    full = table.row("full")
    assert full.ablation == "full" and full.kind == "trained" and full.seeds == (1,)
    assert table.reference == "full" and [d.label for d in table.diffs] == ["ask-4"]
    assert table.diffs[0].n_pairs == EPISODES  # same seed and size: the same 20 conversations
    repeats = [line.text() for line in report.input_list if not line.used]  # each read once
    assert len(repeats) == 2 and all("repeats" in line and "/tested/" in line for line in repeats)

    (train,) = report.inputs.trains
    with (run / "eval.csv").open() as handle:
        logged = list(csv.DictReader(handle))
    assert train.curve is not None
    assert train.curve.steps.tolist() == [float(r["timesteps"]) for r in logged]
    assert train.curve.sr.tolist() == [float(r["SR@15"]) for r in logged]
    assert report.learning is not None and report.learning.path in files

    stated = json.loads((run / "summary.json").read_text())["test"]["RL (full-s1)"]
    (row,) = report.train_rows
    assert {m: vars(v) for m, v in row.metrics.items()} == stated

    (analysis,) = report.persona
    assert analysis.source.endswith("full-s1/ranker")
    assert analysis.usage.sum() == pytest.approx(1.0)
    assert analysis.heatmap is not None
    sums = analysis.heatmap.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | np.isclose(sums, 0.0))
    assert 0.0 <= analysis.chance <= analysis.agreement.high <= 1.0
    for result in (analysis.deletion_persona, analysis.deletion_aspect):
        assert result is not None and 0.0 <= result.rate.low <= result.rate.mean <= result.rate.high <= 1.0

    assert report.examples and all(d.matches_record for d in report.examples)
    assert any(turn.explanation for d in report.examples for turn in d.turns)
    html = (root / "report" / "report.html").read_text()
    assert "Training runs: their own test summaries" in html and "persona_usage" in html


def test_examples_explain_only_the_runs_that_rank_with_the_persona_ranker(trained, tmp_path) -> None:
    """A dialogue ranked by popularity had no persona to name: the report's example shows none."""
    from crs.report.examples import example_dialogues
    from crs.report.inputs import load_inputs
    from policies.pretrain.artifact import load_ranker
    from simulators.datasets import DatasetSpec

    _, run, evals = trained
    popular = tmp_path / "popularity"
    run_evaluation("ask-4", episodes=EPISODES, seed=1, ranker="popularity", out=popular, show_progress=False)
    runs = {r.path.name: r for r in load_inputs([evals / "ask-4", popular]).evals}
    catalog = DatasetSpec("persona_world", None, 0).load()
    picks = [(name, r, r.records[0]) for name, r in sorted(runs.items())]
    ranker = load_ranker(run / "ranker", catalog)
    dialogues, notes = example_dialogues(picks, catalog, None, ranker, frozenset({runs["ask-4"].path}))
    assert not notes
    explained = {d.policy: any(turn.explanation for turn in d.turns) for d in dialogues}
    assert explained == {"ask-4": True, "popularity": False}


def test_an_evaluation_kept_in_the_run_is_reported_beside_its_own_test(trained, tmp_path) -> None:
    """`crs eval --policy RUN -o RUN/eval` (README: a run's own evaluation may lie inside it) adds a
    table; the run's own test (tested/: the trained policy and its baseline) stays in the report (it was
    dropped without a word), and the two tables' headings tell their conversations apart."""
    _, run, _ = trained
    copy = tmp_path / "runs" / "full-s1"
    shutil.copytree(run, copy)
    run_evaluation(str(copy), episodes=EPISODES + 5, seed=2, out=copy / "eval", show_progress=False)
    report = build_report([copy], tmp_path / "report", examples=0, persona=False, figures=False)
    own, kept = report.tables
    assert [row.label for row in own.rows] == ["full", "ask-4"] and [row.label for row in kept.rows] == [
        "full"
    ]
    assert kept.rows[0].runs[0].path == copy / "eval"
    assert own.heading.endswith(f", {EPISODES} conversations, eval seed 1")
    assert kept.heading.endswith(f", {EPISODES + 5} conversations, eval seed 2")
    write_report(report)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"T = 15, {EPISODES} conversations, eval seed 1" in markdown
    assert f"T = 15, {EPISODES + 5} conversations, eval seed 2" in markdown


def test_a_finished_run_without_its_test_records_says_so_and_how_to_make_them(trained, tmp_path) -> None:
    """A finished run whose tested/ is gone was "1 used" with "no evaluation records" only: the report
    names what is missing in the terminal and the command that makes the records again, which works."""
    from typer.testing import CliRunner

    from crs.cli import app

    _, run, _ = trained
    copy = tmp_path / "runs" / "full-s1"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "tested")
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(copy), "--out", str(tmp_path / "r1"), "--no-persona"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    fix = said.split("missing its test's records (no tested/); evaluate it again with `")[1].split("`")[0]
    assert fix.startswith(f"crs eval --policy {copy} --seed 1 -n {EPISODES}")
    assert runner.invoke(app, fix.split()[1:]).exit_code == 0
    report = build_report([copy], tmp_path / "r2", examples=0, persona=False, figures=False)
    (table,) = report.tables
    assert [row.label for row in table.rows] == ["full"] and table.rows[0].n_conversations == EPISODES


def test_train_runs_of_other_persona_worlds_are_never_pooled_as_seeds(trained, tmp_path) -> None:
    _, run, _ = trained
    other = tmp_path / "runs" / "full-s2"
    shutil.copytree(run, other)
    config = (other / "config.yaml").read_text()
    assert "world_seed: 0\n" in config
    (other / "config.yaml").write_text(config.replace("world_seed: 0\n", "world_seed: 3\n"))
    report = build_report([run, other], tmp_path / "report", examples=0, persona=False, figures=False)
    labels = sorted(report.train_groups)
    assert len(labels) == 2 and all(len(runs) == 1 for runs in report.train_groups.values())
    assert "world seed" not in labels[0] and "world seed 3" in labels[1]  # the default world goes unnamed


def test_a_persona_world_of_custom_sizes_is_named_kept_apart_and_rebuilt(tmp_path) -> None:
    """A run on a world of custom sizes records them in its test's summaries: the report names them, never
    tables the run with the default world's evaluations of the same conversations, and rebuilds that
    world to replay its dialogues and analyse its ranker's personas; a summary from before the record
    takes the sizes from its run's config."""
    run_training(
        tiny_settings(ranker="pretrain", pretrain_epochs=1),
        name="small",
        runs_dir=tmp_path / "runs",
        show=False,
    )
    run = tmp_path / "runs" / "small"
    tested = sorted((run / "tested").glob("*/summary.json"))
    assert tested and all(json.loads(path.read_text())["world"] == WORLD for path in tested)
    assert {json.loads(path.read_text())["user"] for path in tested} == {"persona"}  # not "auto"
    default = tmp_path / "default-world"  # the run's test conversations (seed 0, 12), in the default world
    run_evaluation("ask-4", episodes=12, seed=0, out=default, show_progress=False)
    sizes = "world seed 0, aspects_per_group 5, interactions_per_user 12, n_groups 4, n_items 300, n_users 40"

    report = build_report([run, default], tmp_path / "report", examples=1, figures=False)
    labels = [table.test_set.dataset_label for table in report.tables]
    assert sorted(labels) == ["persona_world (world seed 0)", f"persona_world ({sizes})"]
    assert "examples" not in report.unavailable, report.unavailable
    assert [analysis.source for analysis in report.persona] == [str(run / "ranker")]

    for path in tested:  # as written before summaries recorded the sizes
        summary = json.loads(path.read_text())
        del summary["world"]
        path.write_text(json.dumps(summary))
    again = build_report([run, default], tmp_path / "again", examples=0, persona=False, figures=False)
    assert sorted(table.test_set.dataset_label for table in again.tables) == sorted(labels)


def test_without_figures_the_learning_section_points_to_the_curves_in_metrics_json(trained, tmp_path) -> None:
    """`--no-figures` draws no learning curve: the section says where its points are, and they are there."""
    _, run, _ = trained
    report = build_report([run], tmp_path / "report", examples=0, persona=False, figures=False)
    write_report(report)
    assert report.learning is None
    assert report.unavailable["learning"].endswith("the curves' points are in metrics.json (learning_curves)")
    (curve,) = json.loads((tmp_path / "report" / "metrics.json").read_text())["learning_curves"].values()
    assert curve


def test_a_run_whose_ranker_folder_is_gone_is_told_so_in_the_persona_section(trained, tmp_path) -> None:
    """The persona section said "no persona model among the inputs" and told the user to add runs with
    `ranker: pretrain`, which this run is: it now names the folder that is gone."""
    _, run, _ = trained
    copy = tmp_path / "runs" / "full-s1"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "ranker")
    report = build_report([copy], tmp_path / "report", examples=0, figures=False)
    said = report.unavailable["persona"]
    assert f"the persona ranker the runs name no longer exists ({copy / 'ranker'})" in said, said
    assert "no persona model" not in said and not report.persona
