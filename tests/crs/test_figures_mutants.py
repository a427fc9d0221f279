"""The figures users put in papers, checked where a mutation audit found no test: pre-training's
Recall@K / NDCG against a brute-force ranking (many items, several batches), the sampled evaluation
users, and how `crs report` prints numbers, CIs, significance marks and columns in report.md,
metrics.json and tables.tex. Every expected figure is computed here by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from crs.app.run_folder import CurveFile, TrainSummary
from crs.report import build_report, load_inputs
from crs.report.analysis import PairedDiff, Row
from crs.report.build import Report
from crs.report.formatting import ranker_text
from crs.report.inputs import EvalRun
from crs.report.persona import DeletionResult, PersonaAnalysis
from crs.report.render import to_latex, to_markdown, to_metrics
from crs.report.render_metrics import _row_json
from envs.metrics import MetricSummary
from policies.pretrain.metrics import evaluation_users, rank_metrics
from policies.rl.callbacks import EvalPoint
from tests.crs.test_report_hostile_inputs import write_eval
from tests.crs.test_report_mutants import metrics_of, records, train_with_test

# ------------------------------------------------------------------------------ pre-training metrics


def brute_force(
    scores: np.ndarray, exclude: np.ndarray, truth: np.ndarray, users: list[int], k: int
) -> tuple[float, float]:
    """Mean Recall@k and NDCG@k by the definitions: rank every non-excluded item, best first."""
    recalls, ndcgs = [], []
    for u in users:
        ranked = [i for i in sorted(range(scores.shape[1]), key=lambda i: -scores[u, i]) if not exclude[u, i]]
        held = set(np.flatnonzero(truth[u]).tolist())
        top = ranked[:k]
        recalls.append(sum(i in held for i in top) / len(held))
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in held)
        ndcgs.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(held), k))))
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def random_problem(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 items, 9 users (user 4 holds nothing out), distinct scores, a few training items excluded."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(9 * 60).reshape(9, 60).astype(np.float64)
    exclude = rng.random((9, 60)) < 0.1
    truth = (rng.random((9, 60)) < 0.15) & ~exclude
    truth[4] = False
    truth[0, np.argmax(np.where(exclude[0], -np.inf, scores[0]))] = True  # a hit at rank 1
    return scores, exclude, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_and_ndcg_over_several_batches_match_a_brute_force_ranking(seed: int) -> None:
    """Guards against an unsorted top k (NDCG weighs each hit by its rank), a batch that drops a user,
    and a mean over the last batch instead of over every evaluated user."""
    scores, exclude, truth = random_problem(seed)
    truth_m = sp.csr_matrix(truth)
    users = evaluation_users(truth_m, None, None)
    assert users.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    m = rank_metrics(lambda b: scores[b], sp.csr_matrix(exclude), truth_m, users, k=7, batch_size=3)
    recall, ndcg = brute_force(scores, exclude, truth, users.tolist(), k=7)
    assert (m.recall, m.ndcg) == (pytest.approx(recall), pytest.approx(ndcg))
    assert (m.k, m.n_users) == (7, 8)


def test_ndcg_ranks_a_long_top_k_best_first() -> None:
    """Guards against taking `argpartition`'s top k in the order it leaves them: numpy sorts short
    prefixes by chance, not a long one (300 of 1,000 items), and NDCG weighs each hit by its rank."""
    rng = np.random.default_rng(0)
    scores = rng.permutation(4 * 1000).reshape(4, 1000).astype(np.float64)
    exclude = np.zeros((4, 1000), dtype=bool)
    truth = rng.random((4, 1000)) < 0.1
    users = np.arange(4)
    m = rank_metrics(lambda b: scores[b], sp.csr_matrix(exclude), sp.csr_matrix(truth), users, k=300)
    recall, ndcg = brute_force(scores, exclude, truth, users.tolist(), k=300)
    assert (m.recall, m.ndcg) == (pytest.approx(recall), pytest.approx(ndcg))


def test_progress_counts_every_user_scored_so_far() -> None:
    """Guards against a progress callback told the batch's size instead of the running total."""
    scores, exclude, truth = random_problem(0)
    seen: list[int] = []
    users = np.array([0, 1, 2, 3, 5, 6, 7])
    rank_metrics(lambda b: scores[b], sp.csr_matrix(exclude), sp.csr_matrix(truth), users, 5, 3, seen.append)
    assert seen == [3, 6, 7]


def test_the_scorers_own_array_is_never_overwritten_by_the_exclusions() -> None:
    """Guards against masking training items in the array the scorer returned (a model's cached scores
    would then hold -inf for the next evaluation)."""
    scores, exclude, truth = random_problem(1)
    kept = scores.copy()
    users = np.arange(4)
    rank_metrics(lambda b: scores[b[0] : b[-1] + 1], sp.csr_matrix(exclude), sp.csr_matrix(truth), users, 5)
    np.testing.assert_array_equal(scores, kept)


def test_sampled_evaluation_users_are_distinct_sorted_and_held_out_ones() -> None:
    """Guards against sampling with replacement (a user counted twice) and an unsorted sample."""
    truth = sp.csr_matrix(np.eye(40, 3, dtype=bool) | (np.arange(40)[:, None] % 2 == 0) & (np.arange(3) == 2))
    eligible = set(np.flatnonzero(np.diff(truth.indptr) > 0).tolist())
    for seed in range(5):
        users = evaluation_users(truth, 15, np.random.default_rng(seed))
        assert users.size == 15 and len(set(users.tolist())) == 15
        assert set(users.tolist()) <= eligible and users.tolist() == sorted(users.tolist())
    with pytest.raises(ValueError, match="rng"):
        evaluation_users(truth, 15, None)


# ------------------------------------------------------------------------------ crs report's figures


def summary(mean: float, low: float, high: float) -> MetricSummary:
    return MetricSummary(mean, low, high)


ROW_A = {
    "SR@5": summary(0.12345, 0.0, 0.25),
    "SR@10": summary(0.5, 0.4371, 0.5629),
    "SR@15": summary(0.75, 0.6666, 0.8334),
    "AT": summary(7.456, 6.5, 8.004),
    "hDCG": summary(float("nan"), float("nan"), float("nan")),
}
"""The reference row's figures, chosen so that every rounding and the missing mark show."""
ROW_B = {m: summary(0.2, 0.1, 0.3) for m in ("SR@5", "SR@10", "SR@15", "hDCG")} | {
    "AT": summary(9.0, 8.0, 10.0)
}
DIFF = {
    "SR@5": summary(0.05, 0.01, 0.09),  # CI above 0: significant
    "SR@10": summary(-0.02, -0.05, 0.01),  # includes 0
    "SR@15": summary(-0.1, -0.2, -0.03),  # CI below 0: significant
    "AT": summary(-1.5, -2.25, -0.75),
    "hDCG": summary(0.0, -0.001, 0.001),
}
RANKERS_ALONE = {m: summary(0.25, 0.125, 0.375) for m in DIFF}
OWN_RULES = {m: summary(-0.25, -0.375, -0.125) for m in DIFF}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A report of ask-4 (one run) and max-entropy (seeds 1 and 2) whose figures are then set by hand:
    the rows' means and CIs, best marks, and four kinds of paired differences of known sizes."""
    root = tmp_path_factory.mktemp("figures")
    folders = [
        write_eval(root / "a", records([3, 5, None, 2] * 3), policy="ask-4"),
        write_eval(root / "b", records([4, None, None, 2] * 3), policy="max-entropy"),
        write_eval(root / "c", records([4, None, 6, 2] * 3), policy="max-entropy", seed=2),
    ]
    built = build_report(folders, root / "report", examples=0, persona=False)
    (table,) = built.tables
    a, b = table.rows
    assert (a.label, a.ci, b.label, b.ci) == ("ask-4", "conversations", "max-entropy", "seeds")
    table = dataclasses.replace(
        table,
        rows=(
            dataclasses.replace(a, metrics=ROW_A, best=frozenset({"SR@10", "SR@15", "AT"})),
            dataclasses.replace(b, metrics=ROW_B, best=frozenset({"SR@5", "hDCG"})),
        ),
        diffs=(PairedDiff("max-entropy", "ask-4", DIFF, 1234),),
        ranker_diffs=(PairedDiff("ask-4 (b ranker)", "ask-4", RANKERS_ALONE, 30),),
        own_rule_diffs=(PairedDiff("ask-4 (c ranker)", "max-entropy", OWN_RULES, 40),),
        interaction={m: summary(0.0625, -0.02, 0.145) for m in DIFF},
        n_interaction=1500,
        whole=("max-entropy",),
        unpaired=("random: another ranker",),
    )
    return dataclasses.replace(built, tables=[table])


def cell(mean: str, ci: str, mark: str = "", bold: bool = False) -> str:
    """A tables.tex figure as a paper shows it: the mean (bold when best) over its CI in small type."""
    shown = rf"\textbf{{{mean}}}" if bold else mean
    return rf"\begin{{tabular}}[t]{{@{{}}r@{{}}}}{shown}{mark}\\{{\scriptsize {ci}}}\end{{tabular}}"


DAGGER = r"$^\dagger$"


def test_markdown_rows_print_each_figure_rounded_with_its_ci_and_best_mark(report: Report) -> None:
    """Guards against the wrong decimals (2 for AT, 3 for rates), swapped or unsigned CI bounds, a mean
    replaced by a bound, "nan" for a missing figure, a lost best mark and swapped text columns."""
    page = to_markdown(report)
    assert (
        "| ask-4 | popularity | 1 run, seed 1 | 0.123 [0.000, 0.250] | **0.500 [0.437, 0.563]** | "
        "**0.750 [0.667, 0.833]** | **7.46 [6.50, 8.00]** | – [–, –] |"
    ) in page
    assert (
        "| max-entropy | popularity | 2 seeds (1, 2) | **0.200 [0.100, 0.300]** | 0.200 [0.100, 0.300] | "
        "0.200 [0.100, 0.300] | 9.00 [8.00, 10.00] | **0.200 [0.100, 0.300]** |"
    ) in page
    assert "nan" not in page
    # max-entropy pools seeds 1 and 2: an interval of 1 degree of freedom, wide
    assert (
        "(bootstrap over conversations for single runs; Student-t across seeds for repeated runs, never "
        "narrower than the bootstrap over all their conversations; over 2 seeds, 1 degree of freedom: such "
        "an interval is wide; more seeds, or the paired differences, tell more)"
    ) in page


def test_markdown_differences_are_signed_and_marked_where_the_ci_excludes_0(report: Report) -> None:
    """Guards against differences printed without "+" (a gain reads like a level) and wrong marks."""
    page = to_markdown(report)
    assert (
        "| max-entropy | 1234 | +0.050 [+0.010, +0.090] ✓ | -0.020 [-0.050, +0.010] | "
        "-0.100 [-0.200, -0.030] ✓ | -1.50 [-2.25, -0.75] ✓ | +0.000 [-0.001, +0.001] |"
    ) in page
    rates, turns = "+0.250 [+0.125, +0.375] ✓", "+0.25 [+0.12, +0.38] ✓"  # 0.125 rounds half to even
    assert f"| ask-4 − ask-4 (b ranker) | 30 | {rates} | {rates} | {rates} | {turns} | {rates} |" in page
    rates, turns = "-0.250 [-0.375, -0.125] ✓", "-0.25 [-0.38, -0.12] ✓"
    assert (
        f"| max-entropy − ask-4 (c ranker) | 40 | {rates} | {rates} | {rates} | {turns} | {rates} |" in page
    )
    assert "SR@15: +0.062 [-0.020, +0.145] on 1500 conversations." in page
    assert "_Not paired: random: another ranker._" in page
    assert "_Paired whole: max-entropy and ask-4 each ran over a ranker pre-trained with their" in page


def test_latex_rows_show_rounded_figures_bold_where_best_and_the_varying_column(report: Report) -> None:
    """Guards against a lost bold, a hyphen for a minus, a column that varies between rows moved to the
    caption (or shared ones kept), and its alignment."""
    tex = to_latex(report)
    assert (
        r"\begin{tabular}{llrrrrr}" in tex and "policy & runs & SR@5 & SR@10 & SR@15 & AT & hDCG \\\\" in tex
    )
    a = [
        cell("0.123", "[0.000, 0.250]"),
        cell("0.500", "[0.437, 0.563]", bold=True),
        cell("0.750", "[0.667, 0.833]", bold=True),
        cell("7.46", "[6.50, 8.00]", bold=True),
        cell("–", "[–, –]"),
    ]
    assert "ask-4 & 1 run, seed 1 & " + " & ".join(a) + r" \\" in tex.splitlines()
    b = [cell("0.200", "[0.100, 0.300]", bold=True), *[cell("0.200", "[0.100, 0.300]")] * 2]
    b += [cell("9.00", "[8.00, 10.00]"), cell("0.200", "[0.100, 0.300]", bold=True)]
    assert "max-entropy & 2 seeds (1, 2) & " + " & ".join(b) + r" \\" in tex.splitlines()
    assert "; every row: ranker: popularity. Mean and 95\\% CI" in tex
    assert "12 conversations per run." in tex


def test_latex_differences_are_signed_with_math_minus_and_a_dagger_where_significant(report: Report) -> None:
    """Guards against unsigned differences, a text hyphen for the minus, daggers on the wrong cells, a
    wrong pair count, and the rankers-alone rows named the wrong way round."""
    lines = to_latex(report).splitlines()
    diff = [
        cell("+0.050", "[+0.010, +0.090]", mark=DAGGER),
        cell("$-$0.020", "[$-$0.050, +0.010]"),
        cell("$-$0.100", "[$-$0.200, $-$0.030]", mark=DAGGER),
        cell("$-$1.50", "[$-$2.25, $-$0.75]", mark=DAGGER),
        cell("+0.000", "[$-$0.001, +0.001]"),
    ]
    assert "max-entropy & 1,234 & " + " & ".join(diff) + r" \\" in lines
    rates, turns = cell("+0.250", "[+0.125, +0.375]", DAGGER), cell("+0.25", "[+0.12, +0.38]", DAGGER)
    alone = " & ".join([rates] * 3 + [turns, rates])
    assert "ask-4 $-$ ask-4 (b ranker) & 30 & " + alone + r" \\" in lines
    rates, turns = (
        cell("$-$0.250", "[$-$0.375, $-$0.125]", DAGGER),
        cell("$-$0.25", "[$-$0.38, $-$0.12]", DAGGER),
    )
    own = " & ".join([rates] * 3 + [turns, rates])
    assert "max-entropy $-$ ask-4 (c ranker) & 40 & " + own + r" \\" in lines
    assert [line for line in lines if line.startswith(r"\begin{tabular}{lrrrrrr}")] == [
        r"\begin{tabular}{lrrrrrr}"
    ] * 3
    caption = next(line for line in lines if line.startswith(r"\caption{"))
    assert "SR@15: +0.062 [$-$0.020, +0.145] on 1,500 conversations." in caption
    assert " Not paired: random: another ranker. Paired whole: max-entropy and ask-4 each ran over" in caption


def test_metrics_json_keeps_the_raw_figures_of_every_row_and_difference(report: Report) -> None:
    """Guards against swapped CI bounds, lost best marks and seeds, a wrong conversation or pair count,
    and the rankers-alone differences filed as the over-own-rankers ones."""
    (table,) = to_metrics(report)["tables"]
    a, b = table["rows"]
    assert a["metrics"]["SR@5"] == {"mean": 0.12345, "low": 0.0, "high": 0.25}
    assert a["metrics"]["AT"] == {"mean": 7.456, "low": 6.5, "high": 8.004}
    assert (a["best"], b["best"]) == (["AT", "SR@10", "SR@15"], ["SR@5", "hDCG"])
    assert (a["seeds"], b["seeds"], a["ci"], b["ci"]) == ([1], [1, 2], "conversations", "seeds")
    assert (a["conversations"], b["conversations"], b["rankers"]) == (12, 12, ["popularity"])
    (diff,) = table["paired_differences"]
    assert (diff["row"], diff["reference"], diff["pairs"]) == ("max-entropy", "ask-4", 1234)
    assert diff["metrics"]["SR@15"] == {"mean": -0.1, "low": -0.2, "high": -0.03}
    assert [(d["row"], d["pairs"]) for d in table["rankers_alone"]] == [("ask-4 (b ranker)", 30)]
    assert [(d["row"], d["pairs"]) for d in table["over_own_rankers"]] == [("ask-4 (c ranker)", 40)]
    assert table["interaction"]["conversations"] == 1500
    assert table["interaction"]["SR@15"] == {"mean": 0.0625, "low": -0.02, "high": 0.145}


def test_the_ranker_column_names_a_runs_own_ranker_by_its_run(tmp_path: Path) -> None:
    """Guards against "each run's own (1)" for a single run's own ranker, a path cut to its bare
    "ranker" folder (every trained run's is so named), and "each run's own" for a row whose rankers are
    not all runs' own, and rankers listed in set order (a report that changes between runs)."""
    rankers = {f"s{seed}": f"/runs/r-s{seed}/ranker" for seed in (4, 3, 2, 1)} | {"pop": "popularity"}
    folders = [
        write_eval(tmp_path / name, records([2, None] * 6), ranker=ranker, ranker_identity=f"sha:{name}")
        for name, ranker in rankers.items()
    ]
    s4, s3, s2, s1, pop = load_inputs(folders).evals

    def shown(*runs: EvalRun) -> str:
        return ranker_text(Row("rl", runs, {}, "seeds" if len(runs) > 1 else "conversations", None))

    assert (shown(s1), shown(pop)) == ("r-s1/ranker", "popularity")
    assert shown(s1, s2) == "each run's own (2)"
    assert shown(pop, s2) == shown(s2, pop) == "r-s2/ranker, popularity"
    # sorted, so that a report reads the same from one run of `crs report` to the next
    assert shown(pop, s4, s2, s3, s1) == "r-s1/ranker, r-s2/ranker, r-s3/ranker, r-s4/ranker, popularity"
    # metrics.json lists every ranker of a row whose runs differ in ranker, sorted
    metrics = {m: summary(0.5, 0.4, 0.6) for m in ("SR@5", "SR@10", "SR@15", "AT", "hDCG")}
    row = Row("rl", (pop, s2), metrics, "seeds", None)
    assert _row_json(row)["rankers"] == ["/runs/r-s2/ranker", "popularity"]


def test_the_training_runs_table_names_every_seeds_run_and_its_steps(tmp_path: Path) -> None:
    """Guards against a training-runs row naming only its first run, steps printed without thousands
    separators or left-aligned, metrics.json's test episodes replaced by the steps or its CI kind
    fixed, and a learning curve's missing value written as NaN (which no strict JSON reader accepts)."""
    runs = []
    for name, steps, outcomes, flags in (
        ("r-s1", 12345, [2, None] * 6, {}),
        ("r-s2", 23456, [2, 3, 4, None] * 3, {}),
        ("pb-s1", 5000, [2] * 12, {"persona_attention": False}),  # another configuration, one run
    ):
        run = train_with_test(tmp_path / "runs", name, 1 if name.endswith("s1") else 2, {}, **flags)
        TrainSummary(
            name=run.name,
            dataset="persona_world",
            ranker="popularity",
            timesteps=steps,
            train_seconds_this_session=30.0,
            steps_per_second=100.0,
            envs=8,
            env_processes=0,
            test_episodes=12,
            best_valid={"SR@15": 1.0, "hDCG": 0.5},
            test={f"RL ({run.name})": metrics_of(outcomes)},
            conversations_per_second={f"RL ({run.name})": 100.0},
        ).write(run)
        runs.append(run)
    curve = CurveFile(runs[0])
    for steps, value in ((1000, float("nan")), (2000, 0.25)):
        metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": 0.5, "AT": 9.0, "hDCG": value}
        curve.add(EvalPoint(steps, steps / 100, metrics, best=False))
    report = build_report(runs, tmp_path / "report", examples=0, persona=False)
    (full,) = [row for row in report.train_rows if len(row.runs) == 2]
    page = to_markdown(report).splitlines()
    header = page.index("| configuration | runs | steps | SR@5 | SR@10 | SR@15 | AT | hDCG |")
    assert page[header + 1] == "|---|---|---:|---:|---:|---:|---:|---:|"
    assert f"| {full.label} | r-s1, r-s2 | 12,345/23,456 | " in "\n".join(page[header + 2 : header + 4])
    saved = sorted(to_metrics(report)["train_summaries"], key=lambda row: row["ci"])
    assert [(row["ci"], row["timesteps"], row["test_episodes"]) for row in saved] == [
        ("conversations", [5000], [12]),
        ("seeds", [12345, 23456], [12, 12]),
    ]
    assert saved[1]["runs"] == [str(run) for run in runs[:2]]
    # SR@15 across the two seeds: the mean of 6/12 and 9/12
    assert saved[1]["metrics"]["SR@15"]["mean"] == pytest.approx(0.625)
    curves = to_metrics(report)["learning_curves"][full.label]
    assert [(c["seed"], c["steps"]) for c in curves] == [(1, [1000.0, 2000.0]), (2, None)]
    assert curves[0]["series"]["hDCG"] == [None, 0.25]  # a value not logged is null: metrics.json stays JSON
    json.dumps(to_metrics(report), allow_nan=False)


def test_metrics_json_keeps_the_verdicts_and_the_persona_analysis_figures(report: Report) -> None:
    """Guards against the verdicts replaced by the answer's text, the deletion test's two drops swapped,
    and the heatmap rounded to fewer than 6 decimals."""
    deletion = DeletionResult(summary(0.8, 0.7, 0.9), drop_explained=0.5, drop_random=0.125, n=40)
    analysis = PersonaAnalysis(
        source="r-s1/ranker",
        dataset="persona_world",
        n_pairs=40,
        prototype_names=("p0", "p1"),
        usage=np.array([0.25, 0.75]),
        group_names=("g0",),
        heatmap=np.array([[0.123456789, 0.876543211]]),
        agreement=None,
        chance=None,
        n_truth_personas=0,
        deletion_persona=deletion,
        deletion_aspect=None,
    )
    verdicts = {"persona_world (world seed 0)": "inconclusive"}
    saved = to_metrics(dataclasses.replace(report, persona=[analysis], verdicts=verdicts))
    assert saved["verdicts"] == verdicts
    (persona,) = saved["persona"]
    assert persona["heatmap"] == [[0.123457, 0.876543]] and persona["usage"] == [0.25, 0.75]
    assert persona["deletion_persona"] == {
        "rate": {"mean": 0.8, "low": 0.7, "high": 0.9},
        "drop_explained": 0.5,
        "drop_random": 0.125,
        "n": 40,
    }
    assert persona["deletion_aspect"] is None


def test_each_figure_names_its_dataset_split_setting_and_conversations(
    report: Report, tmp_path: Path
) -> None:
    """A figure goes into a paper apart from its table: its title said only the dataset, so the binary
    and enumerated Yelp* figures were titled alike."""
    from crs.report import plots

    titles: list[str] = []
    close = plots.plt.close

    def keep_title(fig: Any) -> None:
        titles.append(" ".join([fig.get_suptitle(), *(ax.get_title(loc="left") for ax in fig.axes)]))
        close(fig)

    (table,) = report.tables
    colors = {row.label: "black" for row in table.rows}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots.plt, "close", keep_title)
        plots.plot_sr_curves(table, colors, tmp_path / "sr.png")
        plots.plot_turns(table, colors, tmp_path / "turns.png")
        plots.plot_action_mix(table, tmp_path / "mix.png")
    # "per run": a row of 3 seeds pools 3 times as many (it said "60 conversations" of 180)
    about = f"{table.test_set.split} split, {table.test_set.setting} setting, 12 conversations per run"
    assert len(titles) == 3 and all(about in " ".join(title.split()) for title in titles), titles
