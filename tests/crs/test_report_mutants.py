"""`crs report` checked where a mutation audit found no test: which inputs are read, refused, pooled or
deduplicated (folders passed by name, baselines that several runs' own tests hold), which runs are seeds
of one row, and the numbers that land in a table. The eval folders are written by hand with known
outcomes (`tests.crs.test_report_hostile_inputs.write_eval`), so every expected figure is counted here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import crs.report.plots as plots
from crs.app.run_folder import (
    TRAINED_TEST,
    CurveFile,
    EvalSummary,
    RunRecord,
    TrainSummary,
    read_episodes,
    write_test_folders,
)
from crs.app.settings import make_settings
from crs.report import build_report, build_tables, load_inputs
from crs.report.analysis import (
    METRICS,
    PRIMARY,
    Table,
    action_mix,
    separation,
    train_summary_rows,
    turn_distribution,
)
from crs.report.inputs import read_train_run
from crs.report.persona import (
    _deletion,
    _score,
    analyse_personas,
    persona_deletion,
    persona_heatmap,
    prototype_names,
    truth_agreement,
)
from crs.report.plots import ABLATION_COLORS, palette
from crs.report.render import to_html, to_markdown
from envs.metrics import EpisodeRecord, summarize
from policies.rl.callbacks import EvalPoint
from simulators.errors import CRSError
from tests.crs.test_report import _one_user_ranker
from tests.crs.test_report_hostile_inputs import MAX_TURNS, write_eval

N = 12
"""Conversations per hand-written run."""


def records(successes: list[int | None]) -> list[dict[str, Any]]:
    """Episode lines: a success after that many agent actions, or a failure (None) at the turn limit."""
    out = []
    for index, actions in enumerate(successes):
        ok = actions is not None
        taken = actions if ok else MAX_TURNS - 1
        out.append(
            {
                "goal_index": index,
                "user": index,
                "targets": [index],
                "success": ok,
                "agent_actions": taken,
                "rank": 1 if ok else None,
                "total_reward": 1.0 if ok else -1.0,
                "kinds": ["ask"] * (taken - 1) + ["recommend"],
            }
        )
    return out


def sr15(successes: list[int | None]) -> float:
    """SR@15 by hand: the share of successes within 15 agent actions."""
    return sum(a is not None and a <= 15 for a in successes) / len(successes)


def train_with_test(root: Path, name: str, seed: int, tested: dict[str, Path], **settings: Any) -> Path:
    """A `crs train` run folder (config.yaml) whose own test (tested/) holds the eval folders `tested`
    (folder name -> a hand-written eval folder), as `crs train` writes it after training."""
    run = root / name
    run.mkdir(parents=True)
    config = make_settings({"seed": seed, "persona_attention": True, "aspect_attention": True} | settings)
    RunRecord(settings=config, name=name, versions={}, written="").write(run)
    if tested:
        folders = [(folder, EvalSummary.read(path), read_episodes(path)) for folder, path in tested.items()]
        write_test_folders(run, folders)
    return run


def metrics_of(successes: list[int | None]) -> dict[str, Any]:
    """The metrics `crs eval` states for these outcomes (`envs.metrics.summarize`)."""
    return summarize([EpisodeRecord.from_dict(line) for line in records(successes)], MAX_TURNS)


def write_train_summary(run: Path, test: dict[str, Any]) -> None:
    """The run's summary.json as `crs train` writes it after its own final test (label -> metrics)."""
    TrainSummary(
        name=run.name,
        dataset="persona_world",
        ranker="popularity",
        timesteps=3000,
        train_seconds_this_session=30.0,
        steps_per_second=100.0,
        envs=8,
        env_processes=0,
        test_episodes=N,
        best_valid={"SR@15": 1.0, "hDCG": 0.5},
        test=test,
        conversations_per_second=dict.fromkeys(test, 100.0),
    ).write(run)


# ------------------------------------------------------------------------------------------ reading
def test_a_corrupt_folder_passed_by_name_stops_the_report_even_beside_good_ones(tmp_path: Path) -> None:
    """Guards against leaving out (rather than refusing) a folder the user named: only what a folder
    holds one level down may be left out; a named one must read."""
    good = write_eval(tmp_path / "good", records([1, 2, None] * 4))
    broken = write_eval(tmp_path / "broken", records([1, 2, None] * 4))
    (broken / "summary.json").write_text("{")
    with pytest.raises(CRSError, match=r"broken/summary\.json"):
        load_inputs([good, broken])
    inputs = load_inputs([tmp_path])  # one level down: left out with the reason
    assert [run.path for run in inputs.evals] == [good]
    assert [entry.path for entry in inputs.left_out] == [broken]


def test_a_baseline_that_two_runs_tested_is_read_once(tmp_path: Path) -> None:
    """Guards against reading twice the one evaluation two runs' own tests hold (same rule, ranker and
    conversations): the second copy is dropped when read, the first run's kept."""
    lines = records([1, 3, None, 2] * 3)
    trained = write_eval(tmp_path / "evals" / "r", lines, policy="r")
    ask = write_eval(tmp_path / "evals" / "ask-4", records([2, None, None, 4] * 3))
    runs = [
        train_with_test(tmp_path / "runs", f"r-s{seed}", seed, {TRAINED_TEST: trained, "ask-4": ask})
        for seed in (1, 2)
    ]
    evals = load_inputs(runs).evals
    assert sorted(run.policy for run in evals) == ["ask-4", "r", "r"]
    (baseline,) = [run for run in evals if run.policy == "ask-4"]
    assert baseline.path == runs[0] / "tested" / "ask-4"


@pytest.mark.parametrize(
    "other",
    [{"conversations": "another-list"}, {"setting": "binary"}, {"user": "single"}, {"max_turns": 10}],
    ids=["other conversations", "other setting", "other user", "other turn limit"],
)
def test_baselines_of_two_runs_tested_on_another_test_set_are_both_read(
    tmp_path: Path, other: dict[str, Any]
) -> None:
    """Guards against taking two runs' baselines for one evaluation when they walked another conversation
    list, question setting, simulated user or turn limit: each is a run of its own test set and must be
    read."""
    lines = records([2] * 12)  # all succeed: the same figures at either turn limit
    first = write_eval(tmp_path / "evals" / "a", lines)
    second = write_eval(tmp_path / "evals" / "b", lines, **other)
    runs = [
        train_with_test(tmp_path / "runs", f"r-s{seed}", seed, {"ask-4": path})
        for seed, path in ((1, first), (2, second))
    ]
    evals = load_inputs(runs).evals
    assert sorted(str(run.path) for run in evals) == sorted(str(run / "tested" / "ask-4") for run in runs)


def test_a_learning_curve_logged_out_of_order_is_read_by_step(tmp_path: Path) -> None:
    """Guards against reading eval.csv in file order: a resumed run appends rows whose steps come before
    earlier ones, and each value must stay with its step once the rows are put in step order."""
    run = train_with_test(tmp_path, "r-s1", 1, {})
    curve = CurveFile(run)
    for steps, value in ((2000, 0.5), (1000, 0.2), (3000, 0.8)):
        metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": value, "AT": 9.0, "hDCG": value / 2}
        curve.add(EvalPoint(steps, steps / 100, metrics, best=False))
    read = read_train_run(run).curve
    assert read is not None
    assert read.steps.tolist() == [1000.0, 2000.0, 3000.0]
    assert read.sr.tolist() == [0.2, 0.5, 0.8]
    assert read.series["hDCG"].tolist() == [0.1, 0.25, 0.4]


# ------------------------------------------------------------------------------------------- tables
def table_of(paths: list[Path]) -> Table:
    """The one comparison table of `paths`."""
    (table,) = build_tables(load_inputs(paths).evals)[0]
    return table


def test_paired_differences_average_each_conversation_over_a_rows_seeds(tmp_path: Path) -> None:
    """Guards against summing (not averaging) a conversation's values over a row's runs: with two seeds
    per row, the paired difference is the difference of the rows' means, not twice it; and against
    another reference than the best row by SR@15 when no full model is among the rows."""
    outcomes = {
        ("ask-4", 1): [1, 2, None, 3] * 3,
        ("ask-4", 2): [1, None, None, 3] * 3,
        ("max-entropy", 1): [None, 2, None, None] * 3,
        ("max-entropy", 2): [4, None, None, None] * 3,
    }
    paths = [
        write_eval(tmp_path / f"{policy}-s{seed}", records(lines), policy=policy, seed=seed)
        for (policy, seed), lines in outcomes.items()
    ]
    table = table_of(paths)
    mean = {
        p: np.mean([sr15(lines) for (q, _), lines in outcomes.items() if q == p])
        for p in ("ask-4", "max-entropy")
    }
    assert [(row.label, row.n_runs) for row in table.rows] == [("ask-4", 2), ("max-entropy", 2)]
    assert table.reference == "ask-4"
    (diff,) = table.diffs
    assert diff.n_pairs == N
    assert diff.metrics[PRIMARY].mean == pytest.approx(mean["ask-4"] - mean["max-entropy"])  # 0.625 - 0.25


def test_records_that_repeat_a_conversation_are_refused(tmp_path: Path) -> None:
    """Guards against reading a run whose episodes.jsonl walks one conversation twice (a concatenated or
    edited file): it would weigh that conversation double in every figure and pairing."""
    lines = records([1, 2, None] * 4)
    lines[5]["goal_index"] = lines[4]["goal_index"]
    folder = write_eval(tmp_path / "twice", lines)
    with pytest.raises(CRSError, match=r"repeats conversations \(duplicate goal_index\)"):
        load_inputs([folder])


def test_a_summary_off_its_records_by_a_thousandth_is_refused(tmp_path: Path) -> None:
    """Guards against a loose check of summary.json against episodes.jsonl: a stated SR@15 of 0.751
    where the records give 0.750 means the files do not belong together."""
    lines = records([1, 2, 3, None] * 3)
    stated = summarize([EpisodeRecord.from_dict(line) for line in lines], MAX_TURNS)
    assert stated[PRIMARY].mean == 0.75
    metrics = {name: dataclasses.asdict(value) for name, value in stated.items()}
    metrics[PRIMARY]["mean"] = 0.751
    folder = write_eval(tmp_path / "edited", lines, metrics=metrics)
    with pytest.raises(CRSError, match=r"says SR@15 = 0\.751 but its episodes\.jsonl gives 0\.75"):
        load_inputs([folder])


# ---------------------------------------------------------------------------- persona analysis, plots
def test_a_prototype_is_named_by_the_aspects_it_points_to_most() -> None:
    """Guards against naming a prototype by its least similar aspects (an argsort the wrong way)."""
    ranker = SimpleNamespace(prototypes=[[1.0, 0.0], [0.0, 1.0]], aspect=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.5]])
    catalog = SimpleNamespace(aspect_names=["jazz", "calm", "loud"])
    assert prototype_names(ranker, catalog) == ("P0 · jazz, loud", "P1 · calm, loud")


def test_an_explanation_by_the_first_aspect_counts_in_the_heatmap() -> None:
    """Guards against dropping aspect 0 (a valid index) with the "no aspect" marker (-1): the one item is
    explained by persona 0 and aspect 0, which lies in group 0."""
    heat = persona_heatmap(_one_user_ranker(), np.array([[0, 0, 0]]), np.array([0, 1]), 2)
    assert heat.tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_agreement_with_the_truth_matches_labels_to_maximise_it() -> None:
    """Guards against a Hungarian matching that minimises agreement: model labels that are the true ones
    renamed agree fully, and 0,0,0,1 against 0,0,1,1 agrees at best on 3 of 4."""
    renamed, _ = truth_agreement(
        np.array([0, 0, 1, 1, 1]), np.array([1, 1, 0, 0, 0]), np.random.default_rng(0)
    )
    assert (renamed.mean, renamed.low, renamed.high) == (1.0, 1.0, 1.0)
    partial, _ = truth_agreement(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), np.random.default_rng(0))
    assert partial.mean == 0.75


def test_a_deletion_tie_counts_one_half() -> None:
    """Guards against counting a tie (both deletions lower the score equally) as a loss: rate = (½ + 1)/2."""
    result = _deletion(np.array([1.0, 1.0]), np.array([1.0, 0.0]), seed=0)
    assert result.rate.mean == 0.75 and result.n == 2
    assert (result.drop_explained, result.drop_random) == (1.0, 0.5)


def test_the_random_other_persona_is_never_the_explaining_one() -> None:
    """Guards against drawing the "random other" persona among all K, the explaining one included: with
    two personas it is always the other one, so every pair's random drop is that of removing persona 1."""
    ranker = _one_user_ranker()
    score = _score(ranker, 0, 0)
    only_p0 = _score(_one_user_ranker(personas=((2.0, 0.0),)), 0, 0)
    result = persona_deletion(ranker, np.array([[0, 0, 0]] * 20), np.random.default_rng(0))
    assert result is not None and result.n == 20
    assert result.drop_random == pytest.approx(score - only_p0)


def test_one_users_pairs_are_edited_one_at_a_time() -> None:
    """Guards against removing several personas of one user in one edited ranker: with a user's pairs in
    one round, two of them drawing the two other personas would remove both at once. Personas 1 and 2 are
    alike, so removing either one drops the score as removing persona 1 alone does."""
    personas = ((2.0, 0.0), (0.0, 1.0), (0.0, 1.0))
    ranker = _one_user_ranker(personas=personas)
    score = _score(ranker, 0, 0)
    without_p1 = _score(_one_user_ranker(personas=(personas[0], personas[2])), 0, 0)
    result = persona_deletion(ranker, np.array([[0, 0, 0]] * 20), np.random.default_rng(0))
    assert result is not None
    assert result.drop_random == pytest.approx(score - without_p1)


def test_ablation_rows_keep_their_colours_and_other_rows_never_take_one() -> None:
    """Guards against a policy row drawn in an ablation's fixed colour (or an ablation in a free one):
    beside ablations, the other rows take the free colours in order."""
    ablations = {"full": "full", "persona-blind": "persona-blind", "ask-4": None, "max-entropy": None}
    colours = palette(["ask-4", "full", "persona-blind", "max-entropy"], ablations)
    assert colours == {
        "ask-4": "#2ca02c",
        "full": ABLATION_COLORS["full"],
        "persona-blind": ABLATION_COLORS["persona-blind"],
        "max-entropy": "#9467bd",
    }
    assert palette(["a", "b"]) == {"a": "#1f77b4", "b": "#d62728"}


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("max_turns", 10, "other turn limit (T = 10)"),
        ("world_seed", 1, "other persona world (world seed 1)"),
        ("user", "single", "other simulated user (single)"),
    ],
)
def test_runs_of_another_turn_limit_world_or_user_get_a_table_of_their_own(
    tmp_path: Path, field: str, value: object, why: str
) -> None:
    """Guards against a test set that leaves out the turn limit, the persona world or the simulated
    user: runs on the same conversation list under another one are never compared in one table."""
    lines = records([1, 2, 3, 4, 5] * 2)  # all succeed: the same figures at any turn limit
    paths = [
        write_eval(tmp_path / "ask-4", lines),
        write_eval(tmp_path / "max-entropy", lines, policy="max-entropy", **{field: value}),
    ]
    tables = build_tables(load_inputs(paths).evals)[0]
    assert [[row.label for row in table.rows] for table in tables] == [["ask-4"], ["max-entropy"]]
    assert getattr(tables[1].test_set, field) == value
    assert separation(tables[1], tables[0]) == why


def test_turn_and_action_distributions_count_each_agent_action(tmp_path: Path) -> None:
    """Guards against the figures' distributions drifting from the records: the turns plot shows the share
    that succeed *at* each action (not within it), and the action mix divides by the conversations still
    running at that action (not by all)."""
    outcomes = [1, 2, None, 3] * 3  # 3 succeed at each of actions 1, 2, 3; 3 fail after 14 actions
    (row,) = table_of([write_eval(tmp_path / "ask-4", records(outcomes))]).rows
    ts, shares, fail = turn_distribution(row)
    assert ts.tolist() == list(range(1, MAX_TURNS))
    assert shares.tolist() == [0.25, 0.25, 0.25] + [0.0] * (MAX_TURNS - 4)
    assert fail == 0.25
    ts, mix, running = action_mix(row)
    # each conversation asks until its last action, a recommendation
    assert running[:4].tolist() == [12, 9, 6, 3]
    assert mix["ask"][:4].tolist() == [9 / 12, 6 / 9, 3 / 6, 3 / 3]
    assert mix["recommend"][:4].tolist() == [3 / 12, 3 / 9, 3 / 6, 0.0]


def test_a_train_runs_own_test_row_is_its_trained_policys_not_a_baselines(tmp_path: Path) -> None:
    """Guards against taking the first entry of a run's test summary for its trained policy: the run's
    row is the "RL (<name>)" entry, whatever baseline comes first."""
    run = train_with_test(tmp_path, "r-s1", 1, {})
    write_train_summary(run, {"ask-4": metrics_of([None] * N), "RL (r-s1)": metrics_of([2] * N)})
    (row,) = train_summary_rows({"r": [read_train_run(run)]})
    assert row.ci == "conversations" and row.test_episodes == (N,) and row.timesteps == (3000,)
    assert row.metrics[PRIMARY].mean == 1.0


def test_train_runs_of_another_persona_world_are_never_one_configuration(tmp_path: Path) -> None:
    """Guards against grouping train runs without their persona world: seeds 1 and 2 of one config on
    world seed 0 pool, the same config on world seed 3 is a group of its own (named by its world)."""
    runs = [
        train_with_test(tmp_path / "runs", "r-s1", 1, {}),
        train_with_test(tmp_path / "runs", "r-s2", 2, {}),
        train_with_test(tmp_path / "runs", "r-s3", 3, {}, world_seed=3),
    ]
    report = build_report(runs, tmp_path / "report", examples=0, persona=False, figures=False)
    groups = {label: [run.info.name for run in members] for label, members in report.train_groups.items()}
    assert sorted(groups.values()) == [["r-s1", "r-s2"], ["r-s3"]]
    (other,) = [label for label, names in groups.items() if names == ["r-s3"]]
    assert "world seed 3" in other
    assert not any("world seed" in label for label, names in groups.items() if names != ["r-s3"])


# ------------------------------------------------------------------------------------------- pages
def test_both_pages_mark_a_paired_difference_by_what_its_ci_says(tmp_path: Path) -> None:
    """Guards against inverted or unsigned marks in the paired differences: ask-4 beats max-entropy in
    every metric over 24 conversations (✓ in report.md, green in report.html, AT included although
    lower is better there), and ties random (no mark, no colour)."""
    n = 24
    paths = [
        write_eval(tmp_path / "ask-4", records([2] * n)),
        write_eval(tmp_path / "max-entropy", records([None] * n), policy="max-entropy"),
        write_eval(tmp_path / "random", records([2] * n), policy="random"),
    ]
    report = build_report(paths, tmp_path / "report", examples=0, persona=False, figures=False)
    assert report.tables[0].reference == "ask-4"
    markdown = to_markdown(report).splitlines()
    (beaten,) = [line for line in markdown if line.startswith(f"| max-entropy | {n} |")]
    (tied,) = [line for line in markdown if line.startswith(f"| random | {n} |")]
    assert beaten.count("✓") == len(METRICS) and "| -13.00 [-13.00, -13.00] ✓ |" in beaten
    assert "✓" not in tied
    page = to_html(report)
    diffs = page.split('<table class="diffs">', 1)[1].split("</table>", 1)[0]
    cells = {
        label: re.findall(r'<td class="(\w*)" data-metric="([^"]+)">', row)
        for label, row in re.findall(r'<tr><td class="label">([^<]+)</td>(.*?)</tr>', diffs)
    }
    assert cells == {
        "max-entropy": [("pos", metric) for metric in METRICS],
        "random": [("", metric) for metric in METRICS],
    }


def test_evaluations_of_two_seeds_of_one_train_config_are_one_row_of_two_seeds(tmp_path: Path) -> None:
    """Guards against reading a `crs eval --policy <run>` folder without its run: its policy spec names
    the run folder, whose config makes the two runs (training seeds 1 and 2, one eval seed) two seeds of
    one configuration, not two policies of one seed."""
    outcomes = {1: [1, 2, None, 3] * 3, 2: [1, None, None, 3] * 3}
    paths = []
    for seed, lines in outcomes.items():
        run = train_with_test(tmp_path / "runs", f"r-s{seed}", seed, {}, persona_attention=False)
        folder = tmp_path / "eval" / run.name
        paths.append(write_eval(folder, records(lines), policy=run.name, policy_spec=str(run), ranker="run"))
    (row,) = table_of(paths).rows
    assert (row.label, row.n_runs, row.seeds, row.ci) == ("persona-blind", 2, (1, 2), "seeds")
    assert row.metrics[PRIMARY].mean == pytest.approx(np.mean([sr15(lines) for lines in outcomes.values()]))


def test_no_unpaired_answer_compares_train_runs_of_two_question_settings(tmp_path: Path) -> None:
    """Guards against the unpaired answer (from the runs' own test summaries) setting a full model of one
    question setting beside an ablation of another: figures of two settings are never compared."""
    flags = {"full": (True, True), "persona-blind": (False, True)}
    runs = []
    for (name, (persona, aspect)), setting in zip(flags.items(), ("multiple_choice", "binary"), strict=True):
        run = train_with_test(
            tmp_path, name, 1, {}, persona_attention=persona, aspect_attention=aspect, setting=setting
        )
        lines = records([2] * N if name == "full" else [None] * N)
        write_train_summary(
            run, {f"RL ({name})": summarize([EpisodeRecord.from_dict(x) for x in lines], MAX_TURNS)}
        )
        runs.append(run)
    report = build_report(runs, tmp_path / "report", examples=0, persona=False, figures=False)
    assert len(report.train_rows) == 2
    assert report.answer == "No evaluation records: nothing to compare."
    # the same two runs in one setting do get the unpaired answer
    for run in runs:
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(config.replace("setting: binary", "setting: multiple_choice"))
    same = build_report(runs, tmp_path / "same", examples=0, persona=False, figures=False)
    assert same.answer.startswith("From the train runs' own test summaries")


def test_the_mean_learning_curve_averages_only_the_seeds_logged_at_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against extrapolating a seed's curve past its last evaluation: where only seed 1 logged
    (step 3000), the thick mean line is seed 1's value, not an average with seed 2's last one."""
    figures: dict[str, Any] = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.__setitem__(path.name, fig))
    runs = []
    for seed, values in ((1, (0.2, 0.4, 0.8)), (2, (0.4, 0.6))):
        run = train_with_test(tmp_path, f"r-s{seed}", seed, {})
        curve = CurveFile(run)
        for steps, value in zip((1000, 2000, 3000), values, strict=False):
            metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": value, "AT": 9.0, "hDCG": value / 2}
            curve.add(EvalPoint(steps, steps / 100, metrics, best=False))
        runs.append(run)
    build_report(runs, tmp_path / "report", examples=0, persona=False)
    (mean,) = [line for line in figures["learning_curves.png"].axes[0].lines if "(n=2)" in line.get_label()]
    plots.plt.close("all")
    assert np.asarray(mean.get_xdata()).tolist() == [1000.0, 2000.0, 3000.0]
    assert np.asarray(mean.get_ydata()).tolist() == pytest.approx([0.3, 0.5, 0.8])


def test_two_configurations_of_the_full_model_in_one_table_get_no_verdict(tmp_path: Path) -> None:
    """Guards against drawing a verdict when a table holds two configurations of one ablation (two
    "full" models of other step counts): no row is taken for "the" full model, so no verdict is given."""
    runs = {
        "full-a": {"steps": 1000},
        "full-b": {"steps": 2000},
        "blind": {"steps": 1000, "persona_attention": False},
    }
    paths = []
    for seed, (name, settings) in enumerate(runs.items(), 1):
        run = train_with_test(tmp_path / "runs", name, seed, {}, **settings)
        folder = tmp_path / "eval" / name
        lines = records([2] * 24 if name.startswith("full") else [None] * 24)
        paths.append(write_eval(folder, lines, policy=name, policy_spec=str(run), ranker="run"))
    report = build_report(paths, tmp_path / "report", examples=0, persona=False, figures=False)
    (table,) = report.tables
    assert [(row.label, row.ablation) for row in table.rows] == [
        ("full (full-a)", None),
        ("full (full-b)", None),
        ("persona-blind", None),
    ]
    assert report.verdicts == {}


def test_a_heatmap_row_is_one_prototypes_explanations_summing_to_one() -> None:
    """Guards against normalising the heatmap by column: one persona explains item 0 by aspect 0 (group 0)
    and item 1 by aspect 1 (group 1), so its row is [½, ½] and the unused prototype's row is zeros."""
    import scipy.sparse as sp

    from policies.pretrain.ranker import PersonaRanker

    weights = {
        "user": np.zeros((1, 2)),
        "item": np.eye(2),
        "aspect": np.eye(2),
        "personas": np.array([[[2.0, 0.0]]]),
        "log_prior": np.zeros((1, 1)),
        "mixtures": np.array([[[1.0, 0.0]]]),
        "prototypes": np.array([[2.0, 0.0], [0.0, 2.0]]),
        "shared": np.zeros(2),
    }
    ranker = PersonaRanker(weights, sp.csr_matrix(np.eye(2)), "attention")
    heat = persona_heatmap(ranker, np.array([[0, 0, 0]]), np.array([0, 1]), 2)
    assert heat.tolist() == [[0.5, 0.5], [0.0, 0.0]]


def test_copies_of_one_ranker_in_two_folders_are_one_configuration(tmp_path: Path) -> None:
    """Guards against keying a rule's configuration by its ranker's path: two copies of one pre-trained
    ranker (same identity, other folders) rank alike, so ask-4 over either is one row of two seeds; a
    ranker of another identity is another row."""
    lines = {1: [1, 2, None, 3] * 3, 2: [1, None, None, 3] * 3}
    copies = {1: "/home/a/copy-1", 2: "/home/b/copy-2"}
    paths = [
        write_eval(
            tmp_path / f"s{seed}", records(lines[seed]), seed=seed, ranker=path, ranker_identity="sha:1"
        )
        for seed, path in copies.items()
    ]
    other = write_eval(tmp_path / "other", records(lines[1]), ranker="/home/c/other", ranker_identity="sha:2")
    rows = table_of([*paths, other]).rows
    assert [(row.n_runs, row.seeds) for row in rows] == [(2, (1, 2)), (1, (1,))]


def test_persona_usage_is_a_share_of_the_pairs_analysed(tmp_path: Path) -> None:
    """Guards against dividing persona usage by anything but the pairs analysed: twelve conversations of
    one (user, target) pair are one pair, explained by prototype 0, so usage is [1, 0]; a catalogue without
    groups or true personas gives no heatmap and no agreement, and says so."""
    lines = records([1, 2, None] * 4)
    for line in lines:
        line.update(user=0, targets=[0])
    (run,) = load_inputs([write_eval(tmp_path / "one-pair", lines)]).evals
    catalog = SimpleNamespace(name="tiny", aspect_names=["a0", "a1"], truth=None, taxonomy=None, splits={})
    analysis = analyse_personas(_one_user_ranker(), catalog, [run], "tiny ranker", "tiny")
    assert analysis.n_pairs == 1 and analysis.usage.tolist() == [1.0, 0.0]
    assert analysis.heatmap is None and analysis.agreement is None
    assert any("no aspect groups" in note for note in analysis.notes)
    assert any("no ground-truth personas" in note for note in analysis.notes)


def test_two_train_configurations_named_alike_but_for_the_seed_keep_the_seed_in_their_labels(
    tmp_path: Path,
) -> None:
    """Guards against two rows of one label: runs r-s1 and r-s2 of two configurations (other step counts)
    are two rows, which their names without the seed cannot tell apart, so the seed stays."""
    paths = []
    for seed, steps in ((1, 1000), (2, 2000)):
        run = train_with_test(tmp_path / "runs", f"r-s{seed}", seed, {}, steps=steps)
        lines = records([2, None] * 6)
        spec = {"policy": run.name, "policy_spec": str(run), "ranker": "run", "ranker_identity": "one"}
        paths.append(write_eval(tmp_path / "eval" / run.name, lines, **spec))
    assert [row.label for row in table_of(paths).rows] == ["r (r-s1)", "r (r-s2)"]


def test_a_runs_own_evaluation_passed_before_the_run_is_read_as_the_runs(tmp_path: Path) -> None:
    """Guards against keeping the copy read first when a run's tested/trained folder is also passed on its
    own, before the run: a moved run's policy spec no longer names its folder, so only the copy read
    through the run knows its run (its seed, its ablation)."""
    spec = {"policy": "r-s7", "policy_spec": "/gone/runs/r-s7", "ranker": "run"}
    trained = write_eval(tmp_path / "evals" / "r", records([1, 2, None] * 4), **spec)
    run = train_with_test(tmp_path / "runs", "r-s7", 7, {TRAINED_TEST: trained}, aspect_attention=False)
    (evaluation,) = load_inputs([run / "tested" / TRAINED_TEST, run]).evals
    assert evaluation.train is not None and evaluation.train.path == run
    assert (evaluation.replica_seed, evaluation.train.ablation) == (7, "aspect-blind")


def test_a_train_summary_lacking_a_metric_gives_no_row(tmp_path: Path) -> None:
    """Guards against a train-summary row from a test entry that lacks a metric of the table (a run of an
    older format): it would leave a cell with no figure, so that run gives no row."""
    run = train_with_test(tmp_path, "r-s1", 1, {})
    metrics = metrics_of([2] * N)
    del metrics["SR@5"]
    write_train_summary(run, {"RL (r-s1)": metrics})
    assert train_summary_rows({"r": [read_train_run(run)]}) == []


def test_rules_over_two_rankers_of_one_folder_name_get_labels_of_their_own(tmp_path: Path) -> None:
    """Trained runs keep their rankers in folders all named ``ranker``: ask-4 over two of them was
    labelled "ask-4 (ranker)" twice, so both rows were marked best and the worse one dropped out of the
    paired differences without a word. The labels now take as much of the path as tells them apart,
    and rankers at one path (one replaced between two evaluations) are numbered after the whole path."""
    better = write_eval(
        tmp_path / "better",
        records([1, 2, 3, 1] * 3),
        ranker="/runs/full-s1/ranker",
        ranker_identity="sha:1",
    )
    worse = write_eval(
        tmp_path / "worse",
        records([None, None, 3, 1] * 3),
        ranker="/runs/both-off-s1/ranker",
        ranker_identity="sha:2",
    )
    table = table_of([better, worse])
    labels = sorted(row.label for row in table.rows)
    assert labels == ["ask-4 (both-off-s1/ranker)", "ask-4 (full-s1/ranker)"]
    best = {row.label: "SR@15" in row.best for row in table.rows}
    assert best == {"ask-4 (full-s1/ranker)": True, "ask-4 (both-off-s1/ranker)": False}
    assert len(table.diffs) + len(table.unpaired) == 1  # the other row is compared or said to be unpaired
    replaced = write_eval(
        tmp_path / "replaced",
        records([None, None, 3, 1] * 3),
        ranker="/runs/full-s1/ranker",
        ranker_identity="sha:3",
    )
    renamed = sorted(row.label for row in table_of([better, replaced]).rows)
    assert renamed == ["ask-4 (/runs/full-s1/ranker) #1", "ask-4 (/runs/full-s1/ranker) #2"]
