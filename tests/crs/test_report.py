"""`crs report` from small real runs: table values recomputed from the episode records, CIs, paired
differences, refusal to mix test sets, clear errors, train-run folders and the generated answer."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from crs.app.evaluation import run_evaluation
from crs.app.run_folder import CurveFile, RunRecord, TrainSummary
from crs.app.settings import make_settings
from crs.cli import app
from crs.report import build_report, build_tables, load_inputs, write_report
from crs.report.analysis import (
    METRICS,
    PROPORTIONS,
    PairedDiff,
    Row,
    answer,
    seed_contrast,
    seeds_interval,
    train_summary_rows,
    unpaired_answer,
)
from crs.report.render import is_report_file
from envs.metrics import MIN_PAIRED, EpisodeRecord, MetricSummary, bootstrap_ci, ci_sign, per_episode_metrics
from envs.ranker import DialogueFacts
from policies.rl.callbacks import EvalPoint
from simulators.errors import CRSError

runner = CliRunner()
EPISODES = 40
FLAGS = {  # persona_attention, aspect_attention of each ablation
    "full": (True, True),
    "persona-blind": (False, True),
    "aspect-blind": (True, False),
    "both-off": (False, False),
}


def _eval(out: Path, policy: str, *, episodes: int = EPISODES, seed: int = 1, world_seed: int = 0) -> Path:
    run_evaluation(policy, episodes=episodes, seed=seed, out=out, world_seed=world_seed, show_progress=False)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Rule policies on the persona world: two policies x two eval seeds, same 40 conversations per seed."""
    root = tmp_path_factory.mktemp("evals")
    return {
        f"{policy}-s{seed}": _eval(root / f"{policy}-s{seed}", policy, seed=seed)
        for policy in ("ask-4", "max-entropy")
        for seed in (1, 2)
    }


def _records_by_hand(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "episodes.jsonl").read_text().splitlines()]


def test_table_values_equal_the_metrics_recomputed_from_the_episode_records(runs, tmp_path) -> None:
    report = build_report([runs["ask-4-s1"], runs["max-entropy-s1"]], tmp_path / "report", examples=0)
    write_report(report)
    (table,) = report.tables
    assert [row.label for row in table.rows] == ["ask-4", "max-entropy"]
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())["tables"][0]["rows"]
    for row, saved_row, name in zip(table.rows, saved, ("ask-4-s1", "max-entropy-s1"), strict=True):
        raw = _records_by_hand(runs[name])
        n = len(raw)
        assert n == EPISODES == row.n_conversations
        # SR@t = share of successes within t agent actions; AT = actions of a success, 15 for a failure.
        for t in (5, 10, 15):
            expected = sum(r["success"] and r["agent_actions"] <= t for r in raw) / n
            assert row.metrics[f"SR@{t}"].mean == pytest.approx(expected, abs=1e-12)
        at = sum(r["agent_actions"] if r["success"] else 15 for r in raw) / n
        assert row.metrics["AT"].mean == pytest.approx(at, abs=1e-12)
        # hDCG and the CIs: the project's metric functions over the records, bootstrap seeded like `crs eval`,
        # so every figure equals summary.json's.
        records = [EpisodeRecord.from_dict(r) for r in raw]
        summary = json.loads((runs[name] / "summary.json").read_text())
        for metric, values in per_episode_metrics(records).items():
            expected = bootstrap_ci(values, seed=1)
            assert (row.metrics[metric].mean, row.metrics[metric].low, row.metrics[metric].high) == (
                expected.mean,
                expected.low,
                expected.high,
            )
            assert summary["metrics"][metric] == saved_row["metrics"][metric] == vars(expected)
    markdown = (tmp_path / "report" / "report.md").read_text()
    ask = table.rows[0].metrics["SR@15"]
    assert f"{ask.mean:.3f} [{ask.low:.3f}, {ask.high:.3f}]" in markdown


def test_best_value_per_column_is_highlighted(runs, tmp_path) -> None:
    report = build_report(
        [runs["ask-4-s1"], runs["max-entropy-s1"]], tmp_path / "r", examples=0, persona=False, figures=False
    )
    write_report(report)
    (table,) = report.tables
    ask, maxent = table.rows
    for metric in METRICS:
        a, m = ask.metrics[metric].mean, maxent.metrics[metric].mean
        better_ask = a < m if metric == "AT" else a > m
        if a != m:
            assert (metric in ask.best) == better_ask and (metric in maxent.best) == (not better_ask)
    html = (tmp_path / "r" / "report.html").read_text()
    comparison = html.split('<table class="comparison"', 1)[1].split("</table>", 1)[0]
    assert comparison.count('class="best"') == len(ask.best) + len(maxent.best)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert markdown.count("**") >= 2 * (len(ask.best) + len(maxent.best))


def test_paired_differences_are_taken_on_the_same_conversations(runs) -> None:
    inputs = load_inputs([runs["ask-4-s1"], runs["max-entropy-s1"]])
    (table,), _ = build_tables(inputs.evals)
    reference = table.row(table.reference)
    (diff,) = table.diffs
    other = table.row(diff.label)
    # Both walked the same 40 goals (same seed), so the mean of the paired differences equals the
    # difference of the means, and the CI is a bootstrap of the 40 per-conversation differences.
    assert diff.n_pairs == EPISODES
    ref_records = {r.goal_index: r for r in reference.runs[0].records}
    other_records = {r.goal_index: r for r in other.runs[0].records}
    assert ref_records.keys() == other_records.keys()
    goals = sorted(ref_records)
    for metric in METRICS:
        ref_values = per_episode_metrics([ref_records[g] for g in goals])[metric]
        other_values = per_episode_metrics([other_records[g] for g in goals])[metric]
        expected = bootstrap_ci(ref_values - other_values, seed=0)
        assert diff.metrics[metric].mean == pytest.approx(
            reference.metrics[metric].mean - other.metrics[metric].mean
        )
        assert (diff.metrics[metric].low, diff.metrics[metric].high) == pytest.approx(
            (expected.low, expected.high)
        )


def test_several_seeds_of_one_configuration_give_a_ci_across_seeds(runs) -> None:
    inputs = load_inputs(
        [runs[name] for name in ("ask-4-s1", "ask-4-s2", "max-entropy-s1", "max-entropy-s2")]
    )
    (table,), _ = build_tables(inputs.evals)
    ask = table.row("ask-4")
    assert ask.ci == "seeds" and ask.n_runs == 2 and sorted(ask.seeds) == [1, 2]
    for metric in METRICS:
        m1, m2 = (
            per_episode_metrics([EpisodeRecord.from_dict(r) for r in _records_by_hand(runs[f"ask-4-s{s}"])])[
                metric
            ].mean()
            for s in (1, 2)
        )
        # n = 2 runs: mean (m1 + m2) / 2; sd = |m1 − m2| / √2; half-width = t(0.975, 1) · sd / √2.
        half = stats.t.ppf(0.975, 1) * abs(m1 - m2) / 2
        assert ask.metrics[metric].mean == pytest.approx((m1 + m2) / 2)
        # clipped to what the metric can take, a proportion's to [0, 1], AT's to [1, the runs' 15 turns]
        # (a t-interval over 2 seeds is wide)
        top, bottom = (1.0, 0.0) if metric in PROPORTIONS else (15.0, 1.0)
        assert ask.metrics[metric].high == pytest.approx(min((m1 + m2) / 2 + half, top))
        assert ask.metrics[metric].low == pytest.approx(max((m1 + m2) / 2 - half, bottom))
    # Paired differences pool both seeds' 40 conversations each.
    assert table.diffs[0].n_pairs == 2 * EPISODES


def test_an_interval_over_seeds_stays_within_the_values_its_metric_takes() -> None:
    # the README recipe's case: SR@15 of three seeds, t(0.975, 2) = 4.30 makes the raw interval leave [0, 1]
    means = [0.98, 1.0, 0.72]
    raw_half = stats.t.ppf(0.975, 2) * np.std(means, ddof=1) / math.sqrt(3)
    assert np.mean(means) + raw_half > 1  # the raw interval would leave [0, 1]
    sr = seeds_interval("SR@15", means)
    assert sr.mean == pytest.approx(np.mean(means)) and sr.high == 1.0
    assert sr.low == pytest.approx(np.mean(means) - raw_half)
    # AT lies in [1, max turns]: the raw interval [-3.1, 13.4] is clipped to it (to 1 below when the
    # turn limit is not given); with turns [5, 6, 7] it lies inside and stays as it is
    turns = [3.0, 3.5, 9.0]
    half = stats.t.ppf(0.975, 2) * np.std(turns, ddof=1) / math.sqrt(3)
    assert np.mean(turns) - half < 1 and np.mean(turns) + half > 10
    at = seeds_interval("AT", turns)
    assert at.low == 1.0 and at.high == pytest.approx(np.mean(turns) + half)
    capped = seeds_interval("AT", turns, max_turns=10)
    assert (capped.low, capped.high) == (1.0, 10.0)
    inside, h = seeds_interval("AT", [5.0, 6.0, 7.0], max_turns=15), stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert (inside.low, inside.high) == pytest.approx((6 - h, 6 + h))
    # a difference is not clipped
    assert seeds_interval("AT", turns, clip=False).low == pytest.approx(np.mean(turns) - half)


def test_different_test_sets_are_refused_in_one_table_and_the_reason_is_given(runs, tmp_path) -> None:
    fewer = _eval(tmp_path / "max-entropy-30", "max-entropy", episodes=30)
    other_world = _eval(tmp_path / "ask-4-world1", "ask-4", world_seed=1)
    report = build_report(
        [runs["ask-4-s1"], fewer, other_world], tmp_path / "r", examples=0, persona=False, figures=False
    )
    write_report(report)
    assert len(report.tables) == 3
    for table in report.tables:
        assert len(table.rows) == 1
    world0 = [t for t in report.tables if t.test_set.world_seed == 0]
    assert len(world0) == 2 and all("other test conversations" in t.separated for t in world0)
    assert "40 conversations" in world0[0].separated and "30 conversations" in world0[0].separated
    assert any("2 datasets" in note for note in report.notes)
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count('<table class="comparison"') == 3 and "Separate table" in html


def test_a_contrast_across_seeds_pairs_runs_by_seed_and_keeps_the_seeds_spread(runs) -> None:
    """The answer's verdict with several training seeds per row: per seed the difference of the runs'
    means, then Student-t over seeds (t(0.975, 1) = 12.706 for two seeds), never clipped to [0, 1]."""
    by_path = {run.path: run for run in load_inputs(list(runs.values())).evals}
    evals = {key: by_path[path] for key, path in runs.items()}

    def row(label: str, *keys: str) -> Row:
        return Row(label, tuple(evals[k] for k in keys), {}, "seeds", None)

    def sr(key: str) -> float:
        return float(np.mean([r.success and r.agent_actions <= 14 for r in evals[key].records]))

    a, b = row("a", "ask-4-s1", "ask-4-s2"), row("b", "max-entropy-s1", "max-entropy-s2")
    got = seed_contrast(((a, 1), (b, -1)), "SR@15")
    per_seed = [sr("ask-4-s1") - sr("max-entropy-s1"), sr("ask-4-s2") - sr("max-entropy-s2")]
    half = 12.706 * np.std(per_seed, ddof=1) / math.sqrt(2)
    assert got is not None and got.mean == pytest.approx(np.mean(per_seed))
    assert (got.low, got.high) == pytest.approx(
        (np.mean(per_seed) - half, np.mean(per_seed) + half), abs=1e-3
    )
    assert seed_contrast(((b, 1), (a, -1)), "SR@15").mean == pytest.approx(-got.mean)  # a signed difference
    assert seed_contrast(((a, 1), (row("one seed", "max-entropy-s1"), -1)), "SR@15") is None


def test_runs_of_different_settings_get_separate_tables_and_are_never_pooled(
    runs, ablations, tmp_path
) -> None:
    binary = tmp_path / "ask-4-binary"
    run_evaluation("ask-4", episodes=EPISODES, seed=1, out=binary, setting="binary", show_progress=False)
    report = build_report(
        [runs["ask-4-s1"], binary], tmp_path / "r", examples=0, persona=False, figures=False
    )
    assert sorted(t.test_set.setting for t in report.tables) == ["binary", "multiple_choice"]
    assert all(len(t.rows) == 1 and not t.diffs for t in report.tables)
    assert any("2 question settings (binary, multiple_choice)" in note for note in report.notes)
    # train runs: a full run in another setting is its own configuration, never a seed of "full"
    other = _train_run(tmp_path / "train", "full-s2", "ask-4", True, True, seed=2, setting="binary")
    trains = build_report(
        [ablations["full"], other], tmp_path / "t", examples=0, persona=False, figures=False
    )
    assert sorted(trains.train_groups) == [
        "persona_world · binary · full",
        "persona_world · multiple_choice · full",
    ]
    assert all(len(runs) == 1 for runs in trains.train_groups.values())


def test_rows_scored_by_different_rankers_are_not_paired_and_copies_of_one_ranker_are(runs, tmp_path) -> None:
    """#15: a difference between a policy with one ranker and a policy with another mixes the two (one rule
    over two rankers is paired: the difference is the rankers'); a ranker copied to another folder is the
    same ranker (compared by content)."""
    artifact, copy = tmp_path / "art", tmp_path / "copy"
    tiny = ["pretrain", "--epochs", "1", "--dim", "8", "--layers", "0", "--prototypes", "3", "--out"]
    assert runner.invoke(app, [*tiny, str(artifact)]).exit_code == 0
    shutil.copytree(artifact, copy)
    config = copy / "config.json"  # timings differ between two identical pre-trainings: not compared
    config.write_text(config.read_text().replace('"seconds"', '"seconds" '))
    ask = tmp_path / "ask-4-art"
    entropy = tmp_path / "max-entropy-copy"
    run_evaluation("ask-4", episodes=EPISODES, seed=1, out=ask, ranker=str(artifact), show_progress=False)
    run_evaluation(
        "max-entropy", episodes=EPISODES, seed=1, out=entropy, ranker=str(copy), show_progress=False
    )
    inputs = [runs["ask-4-s1"], runs["max-entropy-s1"], ask, entropy]  # popularity, popularity, art, copy
    report = build_report(inputs, tmp_path / "r", examples=0, persona=False, figures=False)
    (table,) = report.tables
    identity = {row.label: row.runs[0].ranker_identity for row in table.rows}
    assert len(set(identity.values())) == 2  # the copy is the same ranker as the artifact
    reference = identity[table.reference]
    paired = {d.label for d in table.diffs}
    # one rule over another ranker is paired too: their difference is the rankers' alone
    rule = table.reference.split(" (")[0]
    same_rule = {label for label in identity if label.split(" (")[0] == rule and label != table.reference}
    assert len(same_rule) == 1
    by_ranker = {label for label, i in identity.items() if i == reference and label != table.reference}
    assert paired == by_ranker | same_rule
    assert len(table.unpaired) == 1 and all("is not paired with" in line for line in table.unpaired)
    assert "would mix the policy with its ranker" in table.unpaired[0]
    assert not table.unpaired[0].startswith(rule)
    write_report(report)
    assert (tmp_path / "r" / "report.md").read_text().count("_Not paired:") == 1


def test_missing_or_corrupt_inputs_are_named_in_a_clear_error(runs, tmp_path) -> None:
    with pytest.raises(CRSError, match="does not exist"):
        load_inputs([tmp_path / "nowhere"])
    with pytest.raises(CRSError, match="neither a `crs eval` output"):
        load_inputs([tmp_path])

    broken = tmp_path / "broken"
    shutil.copytree(runs["ask-4-s1"], broken)
    (broken / "episodes.jsonl").unlink()
    with pytest.raises(CRSError, match=r"broken/episodes\.jsonl is missing"):
        load_inputs([broken])

    shutil.copy(runs["ask-4-s1"] / "episodes.jsonl", broken / "episodes.jsonl")
    lines = (broken / "episodes.jsonl").read_text().splitlines()
    lines[6] = lines[6][:20]
    (broken / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CRSError, match=r"episodes\.jsonl line 7 is corrupt"):
        load_inputs([broken])

    shutil.copy(runs["ask-4-s1"] / "episodes.jsonl", broken / "episodes.jsonl")
    summary = json.loads((broken / "summary.json").read_text())
    summary["metrics"]["SR@15"]["mean"] += 0.1
    (broken / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(CRSError, match=r"says SR@15 = .* but its episodes\.jsonl gives"):
        load_inputs([broken])

    (broken / "summary.json").write_text("{not json")
    with pytest.raises(CRSError, match=r"summary\.json is corrupt"):
        load_inputs([broken])

    result = runner.invoke(app, ["report", str(broken), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    flat = result.output.replace("\n", "")  # rich wraps long paths
    assert "broken/summary.json is corrupt" in flat and "Traceback" not in flat


def _train_run(
    root: Path,
    name: str,
    policy: str,
    persona: bool,
    aspect: bool,
    seed: int = 1,
    setting: str | None = None,
    episodes: int = EPISODES,
    **other_settings: Any,
) -> Path:
    """A run folder written with `crs train`'s own writers (config.yaml, eval.csv, summary.json with the
    final test comparison), plus episode records in ``eval/`` as ``crs eval --policy <run> -o <run>/eval``
    writes them; the real records of a rule policy stand in for the trained policy's."""
    run = root / name
    run.mkdir(parents=True)
    settings = make_settings(
        {"seed": seed, "persona_attention": persona, "aspect_attention": aspect, "setting": setting}
        | other_settings
    )
    RunRecord(settings=settings, name=name, versions={}, written="").write(run)
    curve = CurveFile(run)
    sr = [0.2, 0.5, 0.8] if name.startswith("full") else [0.1, 0.3, 0.4]
    for steps, value in zip((1000, 2000, 3000), sr, strict=True):
        metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": value, "AT": 9.0, "hDCG": value / 2}
        curve.add(EvalPoint(steps, steps / 100, metrics, best=False))
    # single-target users, truthful and never leaving: the stand-ins' gaps do not move with the
    # persona world's default users
    result = run_evaluation(
        policy,
        episodes=episodes,
        seed=1,
        user="single",
        out=run / "eval",
        setting=settings.setting,
        show_progress=False,
    )
    TrainSummary(
        name=name,
        dataset="persona_world",
        ranker="popularity",
        timesteps=3000,
        train_seconds_this_session=30.0,
        steps_per_second=100.0,
        envs=8,
        env_processes=0,
        test_episodes=episodes,
        best_valid={"SR@15": sr[-1], "hDCG": sr[-1] / 2},
        test={f"RL ({name})": result.metrics},
        conversations_per_second={f"RL ({name})": 100.0},
    ).write(run)
    return run


@pytest.fixture(scope="module")
def ablations(tmp_path_factory) -> dict[str, Path]:
    """Stand-ins chosen so the "full" row clearly wins: abs-greedy reaches SR@15 0.875 on these 40
    conversations, random 0.500 and ask-14 (one slate, at the last turn) 0.250."""
    root = tmp_path_factory.mktemp("train")
    return {
        "full": _train_run(root, "full-s1", "abs-greedy", True, True),
        "persona-blind": _train_run(root, "persona-blind-s1", "random", False, True),
        "aspect-blind": _train_run(root, "aspect-blind-s1", "ask-14", True, False),
        "both-off": _train_run(root, "both-off-s1", "ask-14", False, False),
    }


def test_seeds_of_one_configuration_are_pooled_whatever_their_own_final_test(tmp_path) -> None:
    """Two arms (probes on / off) × two training seeds; seed 2's runs tested themselves on fewer
    conversations against other baselines, which does not change the policy they trained."""
    runs = [
        _train_run(
            tmp_path,
            f"{arm}-s{seed}",
            "abs-greedy" if probes else "random",
            True,
            True,
            seed=seed,
            wrapper={"probes": probes},
            **({"test_episodes": 100, "baselines": ["ask-4"], "checkpoint_every": 99} if seed == 2 else {}),
        )
        for arm, probes in (("probes", True), ("no-probes", False))
        for seed in (1, 2)
    ]
    (table,), _ = build_tables(load_inputs(runs).evals)
    # one row per arm with both seeds, named by the arm's run name without its seed (no ablation is
    # beside these full models)
    assert sorted(row.label for row in table.rows) == ["no-probes", "probes"]
    assert all(row.n_runs == 2 and sorted(row.seeds) == [1, 2] for row in table.rows)


def _expected_verdict(lows_highs: list[tuple[float, float]]) -> str:
    """The rule the answer states: yes when the CIs of full − each of the three ablations are all above
    0, no when one is below."""
    if any(high < 0 for _, high in lows_highs):
        return "no"
    return "yes" if len(lows_highs) == 3 and all(low > 0 for low, _ in lows_highs) else "inconclusive"


def test_train_runs_give_ablation_rows_learning_curves_and_an_answer(ablations, tmp_path) -> None:
    report = build_report(list(ablations.values()), tmp_path / "r", examples=0, persona=False)
    files = write_report(report)
    (table,) = report.tables
    assert {row.ablation for row in table.rows} == {"full", "persona-blind", "aspect-blind", "both-off"}
    assert table.reference == "full" and len(table.diffs) == 3 and table.interaction is not None
    # The interaction per conversation is full − persona-blind − aspect-blind + both-off, so its mean is
    # the same signed sum of the four rows' means.
    means = {row.ablation: row.metrics["SR@15"].mean for row in table.rows}
    expected = means["full"] - means["persona-blind"] - means["aspect-blind"] + means["both-off"]
    assert table.interaction["SR@15"].mean == pytest.approx(expected)
    assert report.learning is not None and report.learning.path in files
    curve = report.train_groups["full"][0].curve
    assert (
        curve is not None
        and curve.steps.tolist() == [1000, 2000, 3000]
        and curve.sr.tolist() == [0.2, 0.5, 0.8]
    )
    assert curve.series["hDCG"].tolist() == [0.1, 0.25, 0.4]
    assert "SR@15 and hDCG" in report.learning.caption
    # The runs' own test summaries: one run per configuration, so its row is that run's figures.
    train_rows = {row.label: row for row in report.train_rows}
    assert set(train_rows) == {"full", "persona-blind", "aspect-blind", "both-off"}
    assert train_rows["full"].metrics["SR@15"] == table.row("full").metrics["SR@15"]
    diffs = {d.label: d.metrics["SR@15"] for d in table.diffs}
    assert all(d.low > 0 for d in diffs.values()), diffs  # the stand-ins make "full" win clearly
    assert report.verdicts == {"persona_world (world seed 0)": "yes"}
    assert "better together than apart" in report.answer
    full = table.row("full").metrics["SR@15"]
    assert f"{full.mean:.3f} [{full.low:.3f}, {full.high:.3f}]" in report.answer
    for label, d in diffs.items():
        assert f"{label} by {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" in report.answer
    html = (tmp_path / "r" / "report.html").read_text()
    assert '<span class="verdict yes">' in html and "learning_curves" in html


def test_the_answer_follows_the_confidence_intervals(tmp_path, ablations) -> None:
    # "full" is now the weaker random and "persona-blind" the stronger abs-greedy: the answer must say no.
    weak = _train_run(tmp_path, "full-s1", "random", True, True)
    aspect_blind = ablations["aspect-blind"]
    report = build_report([weak, aspect_blind], tmp_path / "r", examples=0, persona=False, figures=False)
    (table,) = report.tables
    expected = _expected_verdict([(d.metrics["SR@15"].low, d.metrics["SR@15"].high) for d in table.diffs])
    assert report.verdicts == {"persona_world (world seed 0)": expected}
    inputs = load_inputs([weak, _train_run(tmp_path, "persona-blind-s1", "abs-greedy", False, True)])
    (table,), _ = build_tables(inputs.evals)
    (diff,) = table.diffs
    assert diff.metrics["SR@15"].high < 0  # random − abs-greedy = −0.375 on 40 conversations
    text, verdicts = answer([table])
    assert (
        verdicts == {"persona_world (world seed 0)": "no"}
        and "**not**" in text
        and "loses to persona-blind" in text
    )


def test_one_ablation_that_the_full_model_beats_leaves_the_question_open(tmp_path, ablations) -> None:
    inputs = load_inputs([ablations["full"], ablations["persona-blind"]])
    (table,), _ = build_tables(inputs.evals)
    (diff,) = table.diffs
    assert diff.significant("SR@15") and diff.metrics["SR@15"].low > 0  # full beats persona-blind
    text, verdicts = answer([table])
    assert verdicts == {"persona_world (world seed 0)": "inconclusive"}
    assert "beats persona-blind" in text and "aspect-blind, both-off are missing" in text
    assert "better together than apart**" not in text


def test_a_ci_over_too_few_pairs_is_no_evidence() -> None:
    # one conversation gave "+1.000 [+1.000, +1.000] ✓" and a verdict: a point, not evidence
    above = {m: MetricSummary(0.5, 0.2, 0.8) for m in METRICS}
    assert PairedDiff("a", "b", above, n_pairs=MIN_PAIRED).significant("SR@15")
    assert not PairedDiff("a", "b", above, n_pairs=MIN_PAIRED - 1).significant("SR@15")
    assert ci_sign(MetricSummary(1.0, 1.0, 1.0), n_pairs=1) == 0
    assert ci_sign(MetricSummary(-0.2, -0.3, -0.1), n_pairs=MIN_PAIRED) == -1


def test_an_interaction_over_too_few_conversations_is_no_evidence(tmp_path) -> None:
    # the three ablations are the weak ask-14, the full model abs-greedy: the interaction, full − ask-14
    # per conversation, excludes 0, but over fewer than MIN_PAIRED conversations that proves nothing
    policies = {
        "full": "abs-greedy",
        "persona-blind": "ask-14",
        "aspect-blind": "ask-14",
        "both-off": "ask-14",
    }
    runs = [
        _train_run(tmp_path, f"{a}-s1", policy, *FLAGS[a], episodes=MIN_PAIRED - 1)
        for a, policy in policies.items()
    ]
    (table,), _ = build_tables(load_inputs(runs).evals)
    assert table.interaction is not None and table.n_interaction == MIN_PAIRED - 1
    inter = table.interaction["SR@15"]
    assert inter.low > 0  # the interval alone would say "more than the sum"
    text, verdicts = answer([table])
    shown = f"{inter.mean:+.3f} [{inter.low:+.3f}, {inter.high:+.3f}]"
    assert f"{shown}: it rests on fewer than {MIN_PAIRED} paired conversations, so whether together" in text
    assert "more or less than the sum of their gains is not told" in text and "help each other" not in text
    assert verdicts == {"persona_world (world seed 0)": "inconclusive"}


def test_a_verdict_over_training_seeds_keeps_the_seeds_spread(ablations, tmp_path) -> None:
    """Two training seeds per configuration; the ablations' stand-ins swap between the seeds, so the full
    model beats each by 0.375 with one seed and 0.625 with the other: over the 40 conversations the
    bootstrap excludes 0, but over two seeds (t(0.975, 1) = 12.706) the interval includes it."""
    second = {"full": "abs-greedy", "persona-blind": "ask-14", "aspect-blind": "random", "both-off": "random"}
    runs = [*ablations.values()]
    runs += [_train_run(tmp_path, f"{a}-s2", policy, *FLAGS[a], seed=2) for a, policy in second.items()]
    (table,), _ = build_tables(load_inputs(runs).evals)
    rows = table.by_ablation()
    assert all(row.n_runs == 2 and sorted(row.seeds) == [1, 2] for row in rows.values())
    assert all(d.metrics["SR@15"].low > 0 and d.n_pairs >= MIN_PAIRED for d in table.diffs)
    text, verdicts = answer([table])
    assert verdicts == {"persona_world (world seed 0)": "inconclusive"}
    assert "**inconclusive**" in text and "better together than apart**" not in text
    for ablation in ("persona-blind", "aspect-blind", "both-off"):
        seeds = seed_contrast(((rows["full"], 1), (rows[ablation], -1)), "SR@15")
        assert seeds is not None and seeds.low < 0 < seeds.high
        shown = f"{seeds.mean:+.3f} [{seeds.low:+.3f}, {seeds.high:+.3f}]"
        assert f"is not told apart from {ablation} ({shown} across training seeds)" in text
    weighted = tuple(
        (rows[a], w)
        for a, w in zip(("full", "persona-blind", "aspect-blind", "both-off"), (1, -1, -1, 1), strict=True)
    )
    inter = seed_contrast(weighted, "SR@15")
    assert inter is not None and inter.low < 0 < inter.high  # "about the sum of their separate gains" it said
    assert "across training seeds: its interval includes 0, so whether together they add more or less" in text


def test_two_tables_of_one_dataset_keep_a_verdict_each(ablations, tmp_path) -> None:
    binary = [
        _train_run(tmp_path, "full-s1", "abs-greedy", True, True, setting="binary"),
        _train_run(tmp_path, "persona-blind-s1", "random", False, True, setting="binary"),
    ]
    report = build_report(
        [ablations["full"], ablations["persona-blind"], *binary], tmp_path / "r", examples=0, figures=False
    )
    assert sorted(t.test_set.setting for t in report.tables) == ["binary", "multiple_choice"]
    order = [t.test_set.setting for t in report.tables]
    assert sorted(report.verdicts) == sorted(
        f"persona_world (world seed 0) ({setting} setting, table {order.index(setting) + 1})"
        for setting in ("binary", "multiple_choice")
    )


def test_two_configurations_of_the_ablations_are_never_pooled_in_the_unpaired_answer(
    ablations, tmp_path
) -> None:
    other = _train_run(tmp_path, "full-s1", "random", True, True, wrapper={"probes": False})
    trains = load_inputs([ablations["full"], other, ablations["persona-blind"]]).trains
    by_name = {run.info.path: run for run in trains}
    rows = train_summary_rows(
        {
            "full (probes)": [by_name[ablations["full"]]],
            "full (no probes)": [by_name[other]],
            "persona-blind": [by_name[ablations["persona-blind"]]],
        }
    )
    text = unpaired_answer(rows)
    assert text is not None and "more than one configuration" in text and "full (no probes)" in text
    assert "runs" not in text.split("(")[0]  # no pooled "N runs" figure
    alone = unpaired_answer([row for row in rows if row.label != "full (no probes)"])
    assert alone is not None and "No verdict without paired records" in alone
    assert str(ablations["full"]) in alone  # the runs to evaluate, by their folders


def test_without_ablations_the_answer_says_it_cannot_answer(runs) -> None:
    inputs = load_inputs([runs["ask-4-s1"], runs["max-entropy-s1"]])
    tables, _ = build_tables(inputs.evals)
    text, verdicts = answer(tables)
    assert verdicts == {} and text.startswith("The best by SR@15 among the policies compared on ")
    assert "needs a trained full model and its ablations" in text
    (diff,) = tables[0].diffs  # the best is named only as far as its paired difference tells it apart
    top, other = diff.reference, diff.label
    said = {}
    for name, low in (("apart", 0.01), ("close", -0.01)):
        ci = dataclasses.replace(diff, metrics={**diff.metrics, "SR@15": MetricSummary(0.05, low, 0.09)})
        said[name] = answer([dataclasses.replace(tables[0], diffs=[ci])])[0].split(". ")[0]
    lead = "The best by SR@15 among the policies compared on persona_world (world seed 0) is"
    assert said["apart"].startswith(f"{lead} {top} (SR@15 ")
    assert said["apart"].endswith("ahead of each of the others (paired 95% CI of the difference above 0)")
    assert said["close"].startswith(f"{lead} not told apart: {top} has the highest mean (SR@15 ")
    # which interval: a single run's bootstrap says nothing more, a row of seeds says it is across them
    (top_row,) = [row for row in tables[0].rows if row.label == top]
    assert (top_row.ci == "seeds") == (f", across its {top_row.n_runs} seeds)" in said["close"])
    seeded = dataclasses.replace(top_row, ci="seeds", runs=top_row.runs[:1] * 2)
    rows = type(tables[0].rows)(seeded if row.label == top else row for row in tables[0].rows)
    close = dataclasses.replace(diff, metrics={**diff.metrics, "SR@15": MetricSummary(0.05, -0.01, 0.09)})
    two = answer([dataclasses.replace(tables[0], rows=rows, diffs=[close])])[0].split(". ")[0]
    assert f"{top} has the highest mean (SR@15 " in two and ", across its 2 seeds)" in two
    assert diff.n_pairs >= MIN_PAIRED  # so the reason said is the interval's
    assert said["close"].endswith(f"but its paired difference to {other} has a 95% CI that includes 0")
    # ahead of the one row it is paired with is not ahead of "each of the others": a third row over another
    # ranker, not paired with it, was said to be beaten (a walkthrough's report)
    apart = dataclasses.replace(diff, metrics={**diff.metrics, "SR@15": MetricSummary(0.05, 0.01, 0.09)})
    (low_row,) = [row for row in tables[0].rows if row.label == other]
    third = dataclasses.replace(low_row, label="ask-7 (uniform+profile)")
    three = dataclasses.replace(tables[0], rows=type(tables[0].rows)([*tables[0].rows, third]), diffs=[apart])
    unpaired = answer([three])[0].split(". ")[0]
    assert "ahead of each of the others" not in unpaired
    assert unpaired.endswith("but it is not paired with ask-7 (uniform+profile) (see the table's notes)")
    few = dataclasses.replace(apart, n_pairs=MIN_PAIRED - 1)
    scant = answer([dataclasses.replace(tables[0], diffs=[few])])[0].split(". ")[0]
    assert scant.endswith(
        f"but its paired differences to {other} rest on fewer than {MIN_PAIRED} conversations"
    )
    assert text.split(". ")[0] == said["apart" if diff.significant("SR@15") else "close"].split(". ")[0]
    alone, _ = answer(build_tables(load_inputs([runs["ask-4-s1"]]).evals)[0])  # nothing to be best among
    assert alone.startswith("ask-4 alone was evaluated on ") and "best" not in alone
    seeded_alone = dataclasses.replace(tables[0], rows=type(tables[0].rows)([seeded]), diffs=[])
    assert ", across its 2 seeds)" in answer([seeded_alone])[0].split(". ")[0]
    first, second = tables[0].rows[:2]  # the two at the same SR@15: no best is named
    second = dataclasses.replace(second, metrics=first.metrics, ci="seeds", runs=second.runs[:1] * 3)
    shared, _ = answer([dataclasses.replace(tables[0], rows=type(tables[0].rows)([first, second]))])
    assert shared.startswith("The best SR@15 mean among the policies compared on ")
    assert "best by" not in shared
    # each tied row keeps its own interval: one of three seeds is not one run's bootstrap
    assert f"is shared by {first.label} (SR@15 " in shared and f") and {second.label} (SR@15 " in shared
    assert shared.count(", across its") == 1 and ", across its 3 seeds)" in shared


def test_a_trained_run_is_full_beside_its_ablations_and_else_named_after_itself(ablations, tmp_path) -> None:
    mine = _train_run(tmp_path, "my-run-s1", "abs-greedy", True, True)
    (alone,), _ = build_tables(load_inputs([mine]).evals)
    assert [row.label for row in alone.rows] == ["my-run"] and alone.rows[0].ablation == "full"
    (beside,), _ = build_tables(load_inputs([mine, ablations["persona-blind"]]).evals)
    assert sorted(row.label for row in beside.rows) == ["full", "persona-blind"]
    assert list(
        build_report([mine], tmp_path / "r", examples=0, persona=False, figures=False).train_groups
    ) == ["my-run"]
    # the main job's default name, "<dataset>-s<seed>", read as the dataset alone: "persona_world 0.828"
    default = _train_run(tmp_path, "persona_world-s0", "abs-greedy", True, True, seed=0)
    (table,), _ = build_tables(load_inputs([default]).evals)
    assert [row.label for row in table.rows] == ["RL (persona_world)"]
    report = build_report([default], tmp_path / "d", examples=0, persona=False, figures=False)
    assert list(report.train_groups) == ["RL (persona_world)"]


def test_a_train_run_without_optional_parts_is_read_and_the_gaps_are_said(tmp_path) -> None:
    run = tmp_path / "bare-s3"
    run.mkdir()
    settings = make_settings({"seed": 3, "persona_attention": False})
    RunRecord(settings=settings, name=run.name, versions={}, written="").write(run)
    (inputs := load_inputs([run]))
    (train,) = inputs.trains
    assert train.info.seed == 3 and train.info.ablation == "persona-blind"
    assert train.curve is None and train.final_eval is None and len(train.missing) == 2
    report = build_report([run], tmp_path / "r", examples=0)
    write_report(report)
    assert "comparison" in report.unavailable and "learning" in report.unavailable
    html = (tmp_path / "r" / "report.html").read_text()
    assert "no evaluation records" in html and "missing learning curve" in html


def test_sections_without_a_persona_model_say_so_and_examples_replay_exactly(runs, tmp_path) -> None:
    report = build_report(
        [runs["ask-4-s1"], runs["max-entropy-s1"]], tmp_path / "r", examples=3, figures=False
    )
    write_report(report)
    assert "no persona model among the inputs" in report.unavailable["persona"]
    assert "popularity" in report.unavailable["persona"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Unavailable: persona_world (world seed 0): no persona model" in html
    assert 1 <= len(report.examples) <= 3
    for dialogue in report.examples:
        assert dialogue.matches_record
        assert dialogue.turns[0].kind == "open" and len(dialogue.turns) >= 2


def test_example_dialogues_replay_in_the_setting_evaluated(runs, tmp_path) -> None:
    """An evaluation in the binary setting replays in it, its questions answered "yes" or "no" (it
    replayed in the dataset's own multiple-choice setting, answered "none of these")."""
    run_evaluation(
        "max-entropy", episodes=EPISODES, seed=1, setting="binary", out=tmp_path / "b", show_progress=False
    )
    for folder, setting in ((tmp_path / "b", "binary"), (runs["max-entropy-s1"], "multiple_choice")):
        report = build_report([folder], tmp_path / f"r-{setting}", examples=2, persona=False, figures=False)
        assert report.examples and all(dialogue.matches_record for dialogue in report.examples)
        answers = [
            t.text.split("-> user: ")[1].split("   [")[0]
            for d in report.examples
            for t in d.turns
            if t.kind == "ask"
        ]
        if setting == "binary":
            assert set(answers) == {"yes", "no"}, answers
        else:
            assert "none of these" in answers and "no" not in answers, answers
    both = build_report(
        [tmp_path / "b", runs["max-entropy-s1"]], tmp_path / "both", examples=2, figures=False
    )
    write_report(both)  # two tables: the dialogues say which one they replay
    first = both.tables[0].title
    assert f"_From table 1: {first}._" in (tmp_path / "both" / "report.md").read_text()
    assert f"From table 1: {first}." in (tmp_path / "both" / "report.html").read_text()


def test_two_settings_of_one_dataset_get_persona_sections_named_by_setting(tmp_path) -> None:
    """One persona ranker evaluated in two settings: a persona section per table, each named by its
    whole test set (both were headed by the dataset alone)."""
    from tests.crs.tiny_runs import pretrain_tiny

    artifact = pretrain_tiny(tmp_path / "art")
    folders = []
    for setting in ("binary", "multiple_choice"):
        folders.append(tmp_path / setting)
        run_evaluation(
            "ask-4", episodes=12, ranker=str(artifact), setting=setting, out=folders[-1], show_progress=False
        )
    report = build_report(folders, tmp_path / "r", examples=0, figures=False)
    assert [analysis.dataset for analysis in report.persona] == [table.title for table in report.tables]
    assert sorted(table.test_set.setting for table in report.tables) == ["binary", "multiple_choice"]
    assert all(f"{table.test_set.setting} setting" in table.title for table in report.tables)
    one = build_report(folders[:1], tmp_path / "one", examples=0, figures=False)
    assert [analysis.dataset for analysis in one.persona] == ["persona_world (world seed 0)"]


def test_cli_writes_every_file(runs, tmp_path) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["report", str(runs["ask-4-s1"]), str(runs["max-entropy-s1"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "The answer." in result.output and "SR@15" in result.output
    for name in ("report.md", "report.html", "metrics.json", "sr_curves.png", "turns.png", "action_mix.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("sr_curves.png", "turns.png", "action_mix.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pdf = (out / name).with_suffix(".pdf").read_bytes()  # the same figure as vector PDF, for a paper
        assert pdf.startswith(b"%PDF-") and b"/CreationDate" not in pdf
    assert f"wrote {len(list(out.iterdir()))} files" in result.output  # every file written is counted
    # and each is one `crs report --overwrite` may replace (what else the folder holds, it refuses to)
    assert all(is_report_file(path.name) for path in out.iterdir()), sorted(out.iterdir())
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert not math.isnan(
        json.loads((out / "metrics.json").read_text())["tables"][0]["rows"][0]["metrics"]["AT"]["mean"]
    )


def test_no_figures_writes_the_same_text_and_tables_without_a_plot(runs, tmp_path) -> None:
    """`--no-figures`: no PNG or PDF, the report says so where its plots would be, and its tables are
    those of the report with figures."""
    inputs = [str(runs["ask-4-s1"]), str(runs["max-entropy-s1"])]
    drawn, bare = tmp_path / "drawn", tmp_path / "bare"
    for out, extra in ((drawn, []), (bare, ["--no-figures"])):
        result = runner.invoke(app, ["report", *inputs, "--out", str(out), "--examples", "0", *extra])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in bare.iterdir()) == [
        "metrics.json",
        "report.html",
        "report.md",
        "tables.tex",
    ]
    assert list(drawn.glob("*.png")) and list(drawn.glob("*.pdf"))
    for name in ("report.md", "report.html"):
        assert "figures switched off (--no-figures)" in (bare / name).read_text()
        assert "figures switched off" not in (drawn / name).read_text()
    # said under the title, where a reader looking for the plots starts, not only among the notes at the end
    assert "figures switched off" in "".join((bare / "report.md").read_text().splitlines()[:3])
    assert "figures switched off" in (bare / "report.html").read_text().split("</header>")[0]
    assert "data:image/png" not in (bare / "report.html").read_text()
    assert '<div class="grid"></div>' not in (bare / "report.html").read_text()
    tables = [json.loads((out / "metrics.json").read_text())["tables"] for out in (drawn, bare)]
    assert tables[0] == tables[1]
    assert (drawn / "tables.tex").read_text() == (bare / "tables.tex").read_text()


def _one_user_ranker(personas=((2.0, 0.0), (0.0, 1.0)), item_aspects=((1.0, 1.0),), shared=(0.0, 0.0)):
    """One user, one item e_v = (1, 0), aspects e_a0 = (1, 0) and e_a1 = (0, 1), d = 2; each persona is its
    own prototype (so persona k's aspect attention and its item affinity use the same vector)."""
    import scipy.sparse as sp

    from policies.pretrain.ranker import PersonaRanker

    k = len(personas)
    weights = {
        "user": np.zeros((1, 2)),
        "item": np.array([[1.0, 0.0]]),
        "aspect": np.eye(2),
        "personas": np.array([personas]),
        "log_prior": np.zeros((1, k)),
        "mixtures": np.eye(k)[None],
        "prototypes": np.array(personas),
        "shared": np.array(shared),
    }
    return PersonaRanker(weights, sp.csr_matrix(np.array(item_aspects)), "attention")


def test_the_deletion_tests_clone_of_a_ranker_scores_as_the_ranker() -> None:
    """An unedited clone (the shared persona and a view's temperature kept) scores exactly as its
    original, so that a drop measures the deletion alone."""
    from crs.report.persona import _clone, _score

    ranker = _one_user_ranker(shared=(0.5, -0.3)).with_temperature(2.0).with_item_prior(np.array([0.7]))
    assert _score(_clone(ranker), 0, 0) == _score(ranker, 0, 0)
    assert _score(_one_user_ranker(), 0, 0) != _score(ranker, 0, 0)  # the shared persona counts


def test_deletion_test_removes_exactly_the_explaining_persona_or_aspect() -> None:
    from crs.report.persona import _score, aspect_deletion, persona_deletion

    ranker = _one_user_ranker()
    pairs = np.array([[0, 0, 0]])
    score = _score(ranker, 0, 0)
    # p0 = (2, 0) has affinity 2 with the item and 2 with its aspect a0; p1 = (0, 1) has 0 and 1: the item is
    # explained by persona 0 and aspect a0.
    empty = np.zeros(0, dtype=np.int64)
    assert ranker.explain(DialogueFacts(0, empty, empty, empty), np.array([0])) == [(0, 0)]
    # Removing persona 0 must score the item as a user who only has persona 1 (and vice versa); the only
    # "random other" persona of a two-persona user is the other one.
    only_p1 = _score(_one_user_ranker(personas=((0.0, 1.0),)), 0, 0)
    only_p0 = _score(_one_user_ranker(personas=((2.0, 0.0),)), 0, 0)
    persona = persona_deletion(ranker, pairs, np.random.default_rng(0))
    assert persona.drop_explained == pytest.approx(score - only_p1)
    assert persona.drop_random == pytest.approx(score - only_p0)
    assert persona.rate.mean == float(score - only_p1 > score - only_p0) == 1.0 and persona.n == 1
    # Removing aspect a0 must score the item as if it only had a1 (and the random other aspect is a1).
    without_a0 = _score(_one_user_ranker(item_aspects=((0.0, 1.0),)), 0, 0)
    without_a1 = _score(_one_user_ranker(item_aspects=((1.0, 0.0),)), 0, 0)
    aspect = aspect_deletion(ranker, pairs, np.random.default_rng(0))
    assert aspect.drop_explained == pytest.approx(score - without_a0)
    assert aspect.drop_random == pytest.approx(score - without_a1)
    assert aspect.rate.mean == float(without_a0 < without_a1) == 1.0
