"""`crs report`'s statistics checked where a mutation audit of crs/report/analysis.py, inputs.py, ledger.py
and crs/claims.py found no test: the order of rows, the reference row, the conversations a row counts, the
contrast across seeds, the interaction and the verdict, what sets one table apart from another, the
train runs' own summaries, and the input list. The eval folders are written by hand with known outcomes
(`tests.crs.test_report_mutants.records`), so every expected figure is counted here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from crs.app.run_folder import TRAINED_TEST
from crs.claims import LOCK_FILE, STAGING_PREFIX, FolderClaim, OutputExistsError, folder_entries
from crs.report import build_report, build_tables, load_inputs
from crs.report.analysis import (
    PRIMARY,
    Row,
    answer,
    seed_contrast,
    separation,
    train_summary_rows,
    turn_distribution,
    unpaired_answer,
)
from crs.report.formatting import setting_note
from crs.report.inputs import EvalRun, read_train_run
from crs.report.ledger import counts, input_lines
from crs.report.render import to_latex
from envs.metrics import MIN_PAIRED
from simulators.errors import CRSError
from tests.crs.test_report_hostile_inputs import lines as session_lines
from tests.crs.test_report_mutants import (
    N,
    metrics_of,
    records,
    sr15,
    table_of,
    train_with_test,
    write_eval,
    write_train_summary,
)

FLAGS = {  # persona_attention, aspect_attention of each ablation
    "full": (True, True),
    "persona-blind": (False, True),
    "aspect-blind": (True, False),
    "both-off": (False, False),
}
WORLD = "persona_world (world seed 0)"


def trained_eval(
    root: Path, ablation: str, successes: list[int | None], *, seed: int = 1, identity: str = "one"
) -> Path:
    """`crs eval --policy <run>` of a train run of `ablation` (training seed `seed`), written by hand:
    the run's config says its ablation and seed; `identity` is the ranker it was scored with."""
    persona, aspect = FLAGS[ablation]
    name = f"{ablation}-s{seed}"
    run = train_with_test(root / "runs", name, seed, {}, persona_attention=persona, aspect_attention=aspect)
    spec = {"policy": name, "policy_spec": str(run), "ranker": "run", "ranker_identity": identity}
    return write_eval(root / "eval" / name, records(successes), **spec)


def by_path(paths: list[Path]) -> dict[Path, EvalRun]:
    """The eval runs of `paths`, by folder."""
    return {run.path: run for run in load_inputs(paths).evals}


# ---------------------------------------------------------------------------------------------- rows
def test_a_row_of_seeds_on_other_lists_counts_every_runs_conversations(tmp_path: Path) -> None:
    """Guards against a row's size and its turn shares taken from its first run alone: seeds 1 and 2 of
    ask-4 walked 12 and 8 conversations, so the table says "8/12" and the shares of the 20 pooled
    conversations (8 succeed at action 1, 4 at action 2, 8 fail) add up to 1."""
    first = write_eval(tmp_path / "s1", records([1, 2, None] * 4), conversations="list-a")
    second = write_eval(tmp_path / "s2", records([1, None] * 4), seed=2, conversations="list-b")
    table = table_of([first, second])
    (row,) = table.rows
    assert row.n_runs == 2 and table.conversations_per_run == "8/12"
    # metrics.json's row says so too: no one size (it gave the first run's 12)
    assert row.n_conversations is None and row.run_conversations == (12, 8)
    _, shares, fail = turn_distribution(row)
    assert shares[:3].tolist() == [8 / 20, 4 / 20, 0.0]
    assert fail == 8 / 20 and shares.sum() + fail == pytest.approx(1.0)


def test_trained_rows_come_first_with_the_ablations_in_their_order(tmp_path: Path) -> None:
    """Guards against rows in the order they were read: the trained full model and its ablations come
    first, in ABLATIONS order (full, then both-off), and a rule policy read before them comes last."""
    rule = write_eval(tmp_path / "ask-4", records([2, None] * 6), ranker_identity="one")
    both_off = trained_eval(tmp_path, "both-off", [None] * N)
    full = trained_eval(tmp_path, "full", [1] * N)
    table = table_of([rule, both_off, full])
    assert [row.label for row in table.rows] == ["full", "both-off", "ask-4"]
    assert table.reference == "full"


def test_the_reference_among_rules_breaks_an_sr15_tie_on_hdcg(tmp_path: Path) -> None:
    """Guards against a reference picked by SR@15 alone: both rules succeed in 8 of 12 conversations,
    max-entropy (read second) after 1 action and ask-4 after 5, so max-entropy's hDCG is higher and it is
    the reference."""
    slow = write_eval(tmp_path / "ask-4", records([5, 5, None] * 4))
    fast = write_eval(tmp_path / "max-entropy", records([1, 1, None] * 4), policy="max-entropy")
    table = table_of([slow, fast])
    ask, entropy = table.rows
    assert ask.metrics[PRIMARY].mean == entropy.metrics[PRIMARY].mean == 8 / 12
    assert entropy.metrics["hDCG"].mean > ask.metrics["hDCG"].mean
    assert table.reference == "max-entropy"
    assert "hDCG" in entropy.best and "hDCG" not in ask.best


def test_a_table_of_one_row_marks_nothing_best(tmp_path: Path) -> None:
    """Guards against marking the one row of a table best in every metric: there is nothing to beat."""
    (row,) = table_of([write_eval(tmp_path / "ask-4", records([1, 2, None] * 4))]).rows
    assert row.best == frozenset()


# ------------------------------------------------------------------------------------ seeds, contrasts
def test_a_contrast_across_seeds_without_spread_is_no_interval(tmp_path: Path) -> None:
    """Guards against a zero-width interval across seeds: ask-4 beats max-entropy by exactly 0.25 with
    either seed, which a t-interval would show as [+0.25, +0.25], a certainty two seeds cannot give; a
    contrast whose seeds differ (0.25 and 0) does get its Student-t interval."""
    outcomes = {
        ("ask-4", 1): [1, 2, 3, None] * 3,  # 0.75
        ("ask-4", 2): [1, 2, None, None] * 3,  # 0.5
        ("max-entropy", 1): [1, None, 2, None] * 3,  # 0.5
        ("max-entropy", 2): [1, None, None, None] * 3,  # 0.25
        ("random", 1): [1, None, 2, None] * 3,  # 0.5
        ("random", 2): [1, None, 2, None] * 3,  # 0.5
    }
    paths = {
        key: write_eval(tmp_path / f"{key[0]}-s{key[1]}", records(lines), policy=key[0], seed=key[1])
        for key, lines in outcomes.items()
    }
    runs = by_path(list(paths.values()))

    def row(policy: str) -> Row:
        return Row(policy, tuple(runs[paths[(policy, s)]] for s in (1, 2)), {}, "seeds", None)

    assert seed_contrast(((row("ask-4"), 1), (row("max-entropy"), -1)), PRIMARY) is None
    spread = seed_contrast(((row("ask-4"), 1), (row("random"), -1)), PRIMARY)
    half = stats.t.ppf(0.975, 1) * np.std([0.25, 0.0], ddof=1) / math.sqrt(2)
    assert spread is not None
    assert (spread.mean, spread.low, spread.high) == pytest.approx((0.125, 0.125 - half, 0.125 + half))


def test_the_interaction_across_training_seeds_is_full_minus_both_single_ablations_plus_both_off(
    tmp_path: Path,
) -> None:
    """Guards against wrong signs in the answer's interaction across seeds: per training seed it is
    full − persona-blind − aspect-blind + both-off of the rows' SR@15 (0.25 with seed 1, 0 with seed 2),
    then a Student-t interval over the two seeds."""
    outcomes = {
        "full": ([1] * N, [1, 1, 1, None] * 3),  # 1.0, 0.75
        "persona-blind": ([1, None] * 6, [1, None] * 6),  # 0.5, 0.5
        "aspect-blind": ([1, None] * 6, [1, None, None, None] * 3),  # 0.5, 0.25
        "both-off": ([1, None, None, None] * 3, [None] * N),  # 0.25, 0.0
    }
    paths = [
        trained_eval(tmp_path, ablation, lines[seed - 1], seed=seed)
        for ablation, lines in outcomes.items()
        for seed in (1, 2)
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    assert table.interaction is not None
    per_seed = [
        sr15(outcomes["full"][s])
        - sr15(outcomes["persona-blind"][s])
        - sr15(outcomes["aspect-blind"][s])
        + sr15(outcomes["both-off"][s])
        for s in (0, 1)
    ]
    assert per_seed == [0.25, 0.0]
    half = stats.t.ppf(0.975, 1) * np.std(per_seed, ddof=1) / math.sqrt(2)
    mean = np.mean(per_seed)
    shown = f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] across training seeds"
    text, _ = answer([table])
    assert f"full − persona-blind − aspect-blind + both-off is {shown}" in text


# ---------------------------------------------------------------------------------------------- answer
def test_an_ablation_scored_by_another_ranker_leaves_the_interaction_and_the_verdict_open(
    tmp_path: Path,
) -> None:
    """Guards against an interaction or a verdict over an ablation that is not paired with the full
    model: both-off was scored by another ranker, so no interaction is computed and, although the full
    model beats the two paired ablations, the question stays open with both-off named as missing."""
    paths = [
        trained_eval(tmp_path, "full", [1] * 24),
        trained_eval(tmp_path, "persona-blind", [None] * 24),
        trained_eval(tmp_path, "aspect-blind", [None] * 24),
        trained_eval(tmp_path, "both-off", [1] * 24, identity="another"),
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    assert sorted(d.label for d in table.diffs) == ["aspect-blind", "persona-blind"]
    assert table.interaction is None and table.n_interaction == 0
    text, verdicts = answer([table])
    assert verdicts == {WORLD: "inconclusive"}
    assert "both-off is missing (or scored by another ranker)" in text
    assert "beats persona-blind" in text and "beats aspect-blind" in text


def test_beating_one_of_three_ablations_is_no_yes(tmp_path: Path) -> None:
    """Guards against a "yes" when the full model beats only some ablations: it beats persona-blind
    (every conversation, 24 pairs) but equals aspect-blind and both-off, so the evidence is
    inconclusive."""
    paths = [
        trained_eval(tmp_path, "full", [2] * 24),
        trained_eval(tmp_path, "persona-blind", [None] * 24),
        trained_eval(tmp_path, "aspect-blind", [2] * 24),
        trained_eval(tmp_path, "both-off", [2] * 24),
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    text, verdicts = answer([table])
    assert verdicts == {WORLD: "inconclusive"}
    assert "beats persona-blind" in text and "is not told apart from aspect-blind (+0.000" in text
    assert "**inconclusive**" in text


@pytest.mark.parametrize("pairs", [MIN_PAIRED - 1, MIN_PAIRED])
def test_the_answer_warns_of_too_few_pairs_only_below_the_minimum(tmp_path: Path, pairs: int) -> None:
    """Guards against an off-by-one in the answer's warning: exactly `MIN_PAIRED` paired conversations are
    enough (no warning, and the win counts), one fewer is not."""
    paths = [
        trained_eval(tmp_path, "full", [2] * pairs),
        trained_eval(tmp_path, "persona-blind", [None] * pairs),
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    text, _ = answer([table])
    assert f"{pairs} paired conversations" in text
    warned = f"Fewer than {MIN_PAIRED} paired conversations" in text
    assert warned == (pairs < MIN_PAIRED)
    assert ("beats persona-blind" in text) == (pairs >= MIN_PAIRED)


# ------------------------------------------------------------------------------------------ separation
def test_tables_of_lists_that_share_no_conversation_are_not_said_to_share_some(tmp_path: Path) -> None:
    """Guards against the separated table's advice for shared lists where no list is shared: ask-4 and
    max-entropy walked two other lists of one size and seed (another catalogue), while a row whose seeds
    walked both lists beside a row on one of them does share one."""
    lines = records([1, 2, None] * 4)
    apart = [
        write_eval(tmp_path / "a" / "ask-4", lines, conversations="list-a"),
        write_eval(tmp_path / "a" / "max-entropy", lines, policy="max-entropy", conversations="list-b"),
    ]
    tables, _ = build_tables(load_inputs(apart).evals)
    assert len(tables) == 2
    for table in tables:
        assert "catalogue or its split differed" in table.separated
        assert "Some conversation lists are shared" not in table.separated
    shared = [
        write_eval(tmp_path / "s" / "ask-4-s1", lines, conversations="list-a"),
        write_eval(tmp_path / "s" / "ask-4-s2", lines, seed=2, conversations="list-b"),
        write_eval(tmp_path / "s" / "max-entropy", lines, policy="max-entropy", conversations="list-a"),
    ]
    tables, _ = build_tables(load_inputs(shared).evals)
    assert len(tables) == 2
    assert all("Some conversation lists are shared" in table.separated for table in tables)


def test_tables_apart_by_their_seeds_or_rankers_say_so(tmp_path: Path) -> None:
    """Two lists of other eval seeds are not put down to another catalogue; a row named alike in the
    other table that ran over a ranker of other weights (pre-trained again in place) is said to."""
    lines = records([1, 2, None] * 4)
    paths = [
        write_eval(tmp_path / "s1", lines, conversations="list-a", ranker_identity="weights-a"),
        write_eval(tmp_path / "s2", lines, seed=2, conversations="list-b", ranker_identity="weights-b"),
    ]
    tables, _ = build_tables(load_inputs(paths).evals)
    assert [row.label for table in tables for row in table.rows] == ["ask-4", "ask-4"]
    for table in tables:
        assert "numbers of conversations or eval seeds differ" in table.separated
        assert "catalogue or its split differed" not in table.separated
        assert "re-run `crs eval`" in table.separated_fix and "re-run" not in table.separated
        assert "Also, ask-4 ran over popularity here and there, but of other weights" in table.separated
    paths[1] = write_eval(
        tmp_path / "s2-same", lines, seed=2, conversations="list-b", ranker_identity="weights-a"
    )
    tables, _ = build_tables(load_inputs(paths).evals)
    assert not any("ran over" in table.separated for table in tables)
    # rankers of other names are named, not put down to other weights (they were two specs)
    paths[1] = write_eval(
        tmp_path / "s2-uniform", lines, seed=2, conversations="list-b", ranker="uniform", ranker_identity="u"
    )
    tables, _ = build_tables(load_inputs(paths).evals)
    said = [table.separated for table in tables]
    assert "Also, ask-4 ran over popularity here, uniform there:" in said[0]
    assert "Also, ask-4 ran over uniform here, popularity there:" in said[1]
    assert not any("weights" in text for text in said)


def test_a_tables_caption_names_its_order_its_data_notes_and_whether_published_figures_compare(
    tmp_path: Path,
) -> None:
    """A paper's table must carry what its figures cannot be read without: a protocol's own conversation
    order (two tables of one dataset differed only by a hash), the data's notes (Yelp* pre-trains on
    valid; MCMIPL's MovieLens is degenerate: they were only in the report's closing notes), and no
    "compare with MCMIPL / SAPIENT figures" on data no published figure used."""
    lines = records([1, 2, None] * 4)
    real = {"world_seed": None}
    degenerate = "degenerate: the test split names 23 distinct items"
    valid = "no train split in the release: pre-training uses the valid split"
    paths = [
        write_eval(
            tmp_path / "movie", lines, dataset="mcmipl_movie", order="mcmipl", notes=[degenerate], **real
        ),
        write_eval(tmp_path / "star", lines, dataset="mcmipl_lastfm_star", order="mcmipl", **real),
        write_eval(tmp_path / "yelp", lines, dataset="yelp_star", setting="binary", notes=[valid], **real),
        write_eval(tmp_path / "world", lines),
    ]
    report = build_report(paths, tmp_path / "report", examples=0, persona=False, figures=False)
    captions = {
        table.test_set.dataset: " ".join(
            line for line in to_latex(report).splitlines() if table.title.replace("_", r"\_") in line
        )
        for table in report.tables
    }
    tables = {table.test_set.dataset: table for table in report.tables}
    assert "MCMIPL order" in tables["mcmipl_movie"].title and "order" not in tables["yelp_star"].title
    assert f"data: {degenerate}" in setting_note(tables["mcmipl_movie"])
    assert "compare with" not in setting_note(tables["mcmipl_movie"])
    assert "compare with MCMIPL / SAPIENT figures" in setting_note(tables["mcmipl_lastfm_star"])
    assert f"data: {valid}" in setting_note(tables["yelp_star"])
    assert "no published figure" in setting_note(tables["persona_world"])
    assert "compare with" not in setting_note(tables["persona_world"])
    assert "degenerate" in captions["mcmipl_movie"] and "MCMIPL order" in captions["mcmipl_movie"]
    assert "valid split" in captions["yelp_star"]


def test_one_dataset_in_one_setting_gets_no_note(tmp_path: Path) -> None:
    """Guards against the notes on split datasets or settings where nothing was split: two policies of
    one dataset and setting share one table and need no note."""
    lines = records([1, 2, None] * 4)
    paths = [
        write_eval(tmp_path / "ask-4", lines),
        write_eval(tmp_path / "max-entropy", lines, policy="max-entropy"),
    ]
    tables, notes = build_tables(load_inputs(paths).evals)
    assert len(tables) == 1 and notes == []


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        ({}, {"split": "valid"}, "other split (valid)"),
        (
            {"conversations": "list-a"},
            {"conversations": "list-b", "seed": 2},
            "other test conversations (12 conversations, eval seed 2; "
            "table 1: 12 conversations, eval seed 1)",
        ),
    ],
    ids=["split", "conversations"],
)
def test_a_second_table_says_what_sets_it_apart(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any], why: str
) -> None:
    """Guards against a separation that leaves out the split, or that takes other conversations of
    another eval seed for a data change: the second table names what differs from table 1."""
    lines = records([1, 2, None] * 4)
    paths = [
        write_eval(tmp_path / "ask-4", lines, **first),
        write_eval(tmp_path / "max-entropy", lines, policy="max-entropy", **second),
    ]
    tables, _ = build_tables(load_inputs(paths).evals)
    assert [[row.label for row in table.rows] for table in tables] == [["ask-4"], ["max-entropy"]]
    assert separation(tables[1], tables[0]) == why


# ------------------------------------------------------------------------------ train runs' summaries
def test_a_train_configurations_own_figures_pool_its_seeds_and_one_full_model_gets_no_answer(
    tmp_path: Path,
) -> None:
    """Guards against a train-summary row of several seeds that keeps one seed's figures (the row is the
    mean of both seeds' SR@15, 1.0 and 0.5, with a Student-t interval), and against an unpaired answer
    from the full model alone (it compares the full model with its ablations, and there is none)."""
    runs = []
    for seed, outcome in ((1, [2] * N), (2, [2, None] * 6)):
        run = train_with_test(tmp_path, f"r-s{seed}", seed, {})
        write_train_summary(run, {f"RL (r-s{seed})": metrics_of(outcome)})
        runs.append(read_train_run(run))
    (row,) = train_summary_rows({"full": runs})
    assert row.ci == "seeds" and len(row.runs) == 2
    half = stats.t.ppf(0.975, 1) * np.std([1.0, 0.5], ddof=1) / math.sqrt(2)
    assert row.metrics[PRIMARY].mean == pytest.approx(0.75)
    assert row.metrics[PRIMARY].low == pytest.approx(max(0.75 - half, 0.0))
    assert unpaired_answer([row]) is None
    assert row.metrics["AT"].high <= 15  # T: a t-interval of two seeds far apart gave [1.00, 37.15]
    # two seeds that agree: an interval of zero width ("0.600 [0.600, 0.600]") claimed a certainty that
    # their conversations do not give; never narrower than their own intervals pooled
    agreeing = []
    for seed in (3, 4):
        run = train_with_test(tmp_path, f"a-s{seed}", seed, {})
        write_train_summary(run, {f"RL (a-s{seed})": metrics_of([2, None] * 6)})
        agreeing.append(read_train_run(run))
    (same,) = train_summary_rows({"full": agreeing})
    own = agreeing[0].test_summary["RL (a-s3)"][PRIMARY]  # type: ignore[index]
    pooled = (own.high - own.low) / math.sqrt(2)
    low, high = same.metrics[PRIMARY].low, same.metrics[PRIMARY].high
    assert same.metrics[PRIMARY].mean == own.mean and high - low == pytest.approx(pooled)


# ------------------------------------------------------------------------------------------------ inputs
def test_a_train_run_with_its_summary_but_no_records_is_not_called_unfinished(tmp_path: Path) -> None:
    """Guards against calling a finished run unfinished: its summary.json (the final test comparison) is
    there, only its learning curve and episode records are not, so the gaps said are those two."""
    run = train_with_test(tmp_path, "r-s1", 1, {})
    write_train_summary(run, {"RL (r-s1)": metrics_of([2] * N)})
    read = read_train_run(run)
    assert read.final_eval is None and read.summary is not None
    curve, records = read.missing
    assert curve == "learning curve (no eval.csv)" and records.startswith("its test's records (no tested/)")
    assert not any("not finished" in gap for gap in read.missing)


def test_hidden_folders_beside_the_inputs_are_not_inputs(tmp_path: Path) -> None:
    """Guards against listing a hidden folder (a notebook's or editor's cache) as a left-out input: only
    the eval folder is read and nothing is said to be left out."""
    good = write_eval(tmp_path / "ask-4", records([1, 2, None] * 4))
    (tmp_path / ".ipynb_checkpoints").mkdir()
    inputs = load_inputs([tmp_path])
    assert [run.path for run in inputs.evals] == [good] and inputs.left_out == ()


def test_a_folder_of_records_without_its_summary_is_left_out_as_unreadable(tmp_path: Path) -> None:
    """Guards against calling an eval folder whose summary.json is gone "not an input": its records say it
    is an evaluation, so it is left out as unreadable, with the missing file named."""
    write_eval(tmp_path / "ask-4", records([1, 2, None] * 4))
    broken = write_eval(tmp_path / "broken", records([1, 2, None] * 4))
    (broken / "summary.json").unlink()
    (entry,) = load_inputs([tmp_path]).left_out
    assert entry.path == broken
    assert entry.reason.startswith("unreadable: ") and "summary.json" in entry.reason


def test_a_stated_metric_is_checked_even_when_an_earlier_one_is_not_stated(tmp_path: Path) -> None:
    """Guards against stopping the check of summary.json at its first missing metric: SR@5 is not stated,
    and the stated SR@15 (0.9) is not the records' (0.75), so the folder is refused."""
    lines = records([1, 2, 3, None] * 3)
    stated = {name: vars(value) for name, value in metrics_of([1, 2, 3, None] * 3).items()}
    del stated["SR@5"]
    stated[PRIMARY] = {"mean": 0.9, "low": 0.8, "high": 1.0}
    folder = write_eval(tmp_path / "edited", lines, metrics=stated)
    with pytest.raises(CRSError, match=r"says SR@15 = 0\.9 but its episodes\.jsonl gives 0\.75"):
        load_inputs([folder])


def test_a_trained_policys_ranker_is_named_as_its_run_recorded_it_when_the_run_is_gone(
    tmp_path: Path,
) -> None:
    """Guards against showing "run" as the ranker of a trained policy whose run folder has moved: its
    summary.json recorded the run's ranker, and that is the name shown."""
    spec = {"policy": "r-s1", "policy_spec": "/gone/r-s1", "ranker": "run", "run_ranker": "runs/x/ranker"}
    (run,) = load_inputs([write_eval(tmp_path / "r", records([1, 2, None] * 4), **spec)]).evals
    assert run.train is None and run.ranker_name == "runs/x/ranker"


# ------------------------------------------------------------------------------------------ input list
def test_a_train_run_whose_own_test_is_in_a_table_is_listed_there_only(tmp_path: Path) -> None:
    """Guards against listing a train run among the runs without episode records when its own test
    (tested/trained) is in table 1: the run is listed once, as table 1's input."""
    trained = write_eval(tmp_path / "evals" / "r", records([1, 2, None] * 4), policy="r-s1")
    run = train_with_test(tmp_path / "runs", "r-s1", 1, {TRAINED_TEST: trained})
    inputs = load_inputs([run])
    tables, _ = build_tables(inputs.evals)
    assert [line.text() for line in input_lines(inputs, tables)] == [f"table 1: {run}"]


# -------------------------------------------------------------------------------------------- claims
def test_a_staging_folder_a_killed_writer_left_is_no_result(tmp_path: Path) -> None:
    """Guards against refusing a folder as "already holds results" when all it holds is a staging folder
    (``.crs.staging-*``) of a writer that was killed before moving its output in."""
    out = tmp_path / "out"
    (out / f"{STAGING_PREFIX}dead").mkdir(parents=True)
    with FolderClaim(out, "report output") as claim:
        assert claim.held and not claim.pending


def earlier_output(folder: Path) -> Path:
    """A folder holding an earlier report (its mark report.md, and metrics.json)."""
    folder.mkdir()
    (folder / "report.md").write_text("earlier\n")
    (folder / "metrics.json").write_text("{}")
    return folder


def test_a_deferred_overwrite_keeps_the_earlier_output_until_cleared_and_clears_once(
    tmp_path: Path,
) -> None:
    """Guards against emptying a folder at claim time when the command asked to defer (a command that fails
    first must leave the earlier output as it was), and against clearing twice: what the command wrote
    after `clear` is its new output, which a later `clear` or `move_in` must keep."""
    out = earlier_output(tmp_path / "out")
    with FolderClaim(out, "report output", overwrite=True, marks=("report.md",), defer=True) as claim:
        assert claim.pending and sorted(folder_entries(out)) == ["metrics.json", "report.md"]
        claim.clear()
        assert folder_entries(out) == []
        (out / "report.md").write_text("new\n")
        staging = claim.staging_folder()
        (staging / "metrics.json").write_text('{"new": true}')
        claim.move_in(staging, last="report.md")
        staging.rmdir()
    assert (out / "report.md").read_text() == "new\n"
    assert (out / "metrics.json").read_text() == '{"new": true}'


def test_an_overwrite_moves_its_staged_output_in_over_the_earlier_one(tmp_path: Path) -> None:
    """Guards against `clear` deleting the claim's own staging folder with the earlier output: the staged
    files replace the earlier ones, none of the earlier ones is left."""
    out = earlier_output(tmp_path / "out")
    with FolderClaim(out, "report output", overwrite=True, marks=("report.md",), defer=True) as claim:
        staging = claim.staging_folder()
        assert staging.parent == out
        (staging / "report.md").write_text("new\n")
        claim.move_in(staging, last="report.md")
        staging.rmdir()
    assert folder_entries(out) == ["report.md"] and (out / "report.md").read_text() == "new\n"


def test_a_refused_claim_leaves_no_lock_behind(tmp_path: Path) -> None:
    """Guards against keeping the lock of a claim that was refused (the folder holds results): the next
    command would be told another process writes there."""
    out = earlier_output(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="already holds results"):
        FolderClaim(out, "report output")
    assert not (out / LOCK_FILE).exists()
    with FolderClaim(out, "report output", overwrite=True, marks=("report.md",)) as claim:
        assert claim.held and folder_entries(out) == []


# ------------------------------------------------------------------------------------- returning users
SESSIONS = 3
"""Sessions per returning user in the hand-written `crs eval --sessions` folders."""


def returning(folder: Path, regime: str = "stable", **fields: Any) -> Path:
    """A `crs eval --sessions` folder of 20 returning users playing `SESSIONS` sessions each."""
    block = {"sessions": SESSIONS, "regime": regime}
    return write_eval(folder, session_lines(20, sessions=SESSIONS), sessions=block, **fields)


def test_returning_users_of_another_regime_get_a_table_said_to_differ_by_it(tmp_path: Path) -> None:
    """Guards against a separation that compares only the sessions per user: two runs of 3 sessions per
    user whose personas moved by other regimes are set apart by the regime."""
    paths = [
        returning(tmp_path / "ask-4"),
        returning(tmp_path / "max-entropy", regime="switch", policy="max-entropy"),
    ]
    tables, _ = build_tables(load_inputs(paths).evals)
    assert [[row.label for row in table.rows] for table in tables] == [["ask-4"], ["max-entropy"]]
    assert separation(tables[1], tables[0]) == f"returning users ({SESSIONS} sessions, regime switch)"


def test_returning_users_of_two_conversation_lists_are_other_users(tmp_path: Path) -> None:
    """Guards against taking sequence 0 of one list and sequence 0 of another for one user: two seeds per
    row on two lists of 20 users each pair over 40 users (whole users resampled), not 20."""
    paths = [
        returning(tmp_path / f"{policy}-s{seed}", policy=policy, seed=seed, conversations=f"list-{seed}")
        for policy in ("ask-4", "max-entropy")
        for seed in (1, 2)
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    assert [row.n_runs for row in table.rows] == [2, 2]
    (diff,) = table.diffs
    assert diff.n_pairs == 40


def test_records_fewer_than_the_summary_counts_are_refused(tmp_path: Path) -> None:
    """Guards against reading an eval folder whose episodes.jsonl lost records (an interrupted copy): the
    summary counts 13 conversations, the file holds 12, so the folder is refused with both counts."""
    folder = write_eval(tmp_path / "cut", records([1, 2, None] * 4), episodes=13)
    with pytest.raises(CRSError, match=r"holds 12 records but summary\.json says 13"):
        load_inputs([folder])


def test_the_input_counts_count_every_folder_left_out_for_one_reason(tmp_path: Path) -> None:
    """Guards against counting the input list's lines instead of its folders: two folders left out for
    one reason (no input) are two left out."""
    write_eval(tmp_path / "ask-4", records([1, 2, None] * 4))
    (tmp_path / "notes").mkdir()
    (tmp_path / "misc").mkdir()
    inputs = load_inputs([tmp_path])
    lines = input_lines(inputs, build_tables(inputs.evals)[0])
    assert [len(line.paths) for line in lines if not line.used] == [2]
    assert counts(lines) == "1 used, 2 left out"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        *(("full-s1", "full"), ("full_seed12", "full"), ("a.s3", "a")),
        *(("ws2", "ws2"), ("bass2", "bass2"), ("s4", "s4")),
    ],
)
def test_a_run_name_loses_only_a_seed_after_a_separator(name: str, label: str) -> None:
    """A run named "ws2" was shown as "w" (its s2 taken for a seed)."""
    from crs.report.analysis import without_seed

    assert without_seed(name) == label


def test_a_row_of_seeds_whose_means_agree_keeps_the_width_its_conversations_give(tmp_path: Path) -> None:
    """Two seeds of equal SR@15 gave a Student-t interval of zero width, [m, m]: certainty that 24
    conversations do not give. The row's interval is now at least the bootstrap over them all."""
    lines = records([1, 2, None] * 4)
    paths = [
        write_eval(tmp_path / "ask-4-s1", lines, conversations="list-a"),
        write_eval(tmp_path / "ask-4-s2", lines, seed=2, conversations="list-b"),
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    (row,) = table.rows
    sr = row.metrics["SR@15"]
    assert row.ci == "seeds" and sr.mean == pytest.approx(2 / 3)
    assert sr.low < sr.mean - 0.1 and sr.high > sr.mean + 0.1
