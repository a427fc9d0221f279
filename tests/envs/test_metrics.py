"""UNICORN's metrics, with the arithmetic written out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.metrics import (
    MIN_PAIRED,
    EpisodeRecord,
    MetricSummary,
    bootstrap_ci,
    ci_sign,
    hdcg,
    hdcg_value,
    per_episode_metrics,
    summarize,
)


def record(success: bool, actions: int, rank: int | None = None) -> EpisodeRecord:
    return EpisodeRecord(0, 0, (1,), success, actions, rank, 0.0, ("recommend",) * actions)


def test_hdcg_of_a_first_action_rank_one_hit_is_one() -> None:
    # s = 0, r = 1: 1/log2(3) + (1/log2(2) - 1/log2(3)) / log2(2) = 1
    assert hdcg_value(0, 1) == pytest.approx(1.0)


def test_hdcg_formula_at_step_3_rank_10() -> None:
    expected = 1 / math.log2(6) + (1 / math.log2(5) - 1 / math.log2(6)) / math.log2(11)
    assert hdcg_value(3, 10) == pytest.approx(expected)
    # a record with 4 agent actions is step s = 3
    assert hdcg([record(True, 4, 10)])[0] == pytest.approx(expected)


def test_sr_at_and_average_turns() -> None:
    records = [record(True, 3, 1), record(True, 7, 2), record(True, 12, 1), record(False, 14)]
    values = per_episode_metrics(records)
    # successes at 3, 7, 12 actions: SR@5 = 1/4, SR@10 = 2/4, SR@15 = 3/4
    assert values["SR@5"].mean() == 0.25 and values["SR@10"].mean() == 0.5 and values["SR@15"].mean() == 0.75
    # AT: (3 + 7 + 12 + 15) / 4, a failure counts 15
    assert values["AT"].mean() == pytest.approx((3 + 7 + 12 + 15) / 4)
    assert values["hDCG"][3] == 0.0


def test_bootstrap_ci_brackets_the_mean_and_is_seeded() -> None:
    values = np.r_[np.ones(60), np.zeros(40)]
    ci = bootstrap_ci(values, seed=1)
    assert ci.low < 0.6 < ci.high and ci.mean == pytest.approx(0.6)
    # standard error of a 0.6 proportion over 100 is 0.049: the 95% interval is about ±0.096
    assert 0.07 < (ci.high - ci.low) / 2 < 0.12
    assert bootstrap_ci(values, seed=1) == ci


def test_records_round_trip_through_dicts() -> None:
    original = record(True, 5, 3)
    assert EpisodeRecord.from_dict(original.to_dict()) == original
    assert set(summarize([original])) == {"SR@5", "SR@10", "SR@15", "AT", "hDCG"}


def test_a_cluster_bootstrap_resamples_whole_clusters() -> None:
    values = np.random.default_rng(3).random(40)
    # each value its own cluster: the plain bootstrap, draw for draw
    assert bootstrap_ci(values, seed=5, clusters=list(range(40))) == bootstrap_ci(values, seed=5)
    # four identical copies per cluster: the bootstrap over the clusters' values, not a narrower one
    copies = np.repeat(values, 4)
    labels = np.repeat(np.arange(40), 4).tolist()
    clustered = bootstrap_ci(copies, seed=5, clusters=labels)
    assert clustered == bootstrap_ci(values, seed=5)
    naive = bootstrap_ci(copies, seed=5)
    assert naive.high - naive.low < 0.7 * (clustered.high - clustered.low)
    with pytest.raises(ValueError, match="3 cluster labels for 40 values"):
        bootstrap_ci(values, clusters=[0, 1, 2])


def test_average_turns_count_a_failure_as_the_env_turn_limit() -> None:
    # T = 10: a failure counts 10, not the default 15; a success its 4 agent actions
    records = [record(False, 9), record(True, 4, 1)]
    assert per_episode_metrics(records, max_turns=10)["AT"].tolist() == [10.0, 4.0]
    assert summarize(records, max_turns=10)["AT"].mean == pytest.approx((10 + 4) / 2)


def test_bootstrap_ci_is_the_2_5_and_97_5_percentiles_of_seeded_resample_means() -> None:
    """The bootstrap by hand: 1000 resamples of the n values with replacement, drawn with one
    ``integers(0, n, (1000, n))`` call of ``default_rng(seed)``; the CI is the 2.5th and 97.5th
    percentiles of the resamples' means."""
    values = np.array([0.0, 1.0, 3.0, 7.0, 2.0, 5.0])
    idx = np.random.default_rng(7).integers(0, values.size, size=(1000, values.size))
    low, high = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    ci = bootstrap_ci(values, seed=7)
    assert (ci.mean, ci.low, ci.high) == (
        pytest.approx(values.mean()),
        pytest.approx(low),
        pytest.approx(high),
    )


def test_bootstrap_seeds_draw_different_resamples() -> None:
    values = np.random.default_rng(0).random(30)
    intervals = {(ci.low, ci.high) for ci in (bootstrap_ci(values, seed=seed) for seed in range(5))}
    assert len(intervals) == 5


def test_a_cluster_bootstrap_resample_mean_is_its_sessions_mean_not_its_clusters_mean() -> None:
    """Clusters of unequal size: A = [0] (one session), B = [1, 1, 1] (three). One resample of two
    clusters is AA (mean 0), BB (mean 1) or AB: its four sessions' mean (0 + 1 + 1 + 1) / 4 = 0.75
    (the mean of the two cluster means would be 0.5). With one resample the CI is that resample's mean."""
    values, labels = np.array([0.0, 1.0, 1.0, 1.0]), [0, 1, 1, 1]
    seen = set()
    for seed in range(20):
        ci = bootstrap_ci(values, seed=seed, n_resamples=1, clusters=labels)
        assert ci.low == ci.high and ci.mean == pytest.approx(0.75)
        seen.add(round(ci.low, 12))
    assert seen == {0.0, 0.75, 1.0}


def test_ci_sign_needs_the_interval_strictly_off_zero() -> None:
    n = MIN_PAIRED
    assert ci_sign(MetricSummary(0.1, 0.0, 0.2), n) == 0  # low exactly 0: the interval includes 0
    assert ci_sign(MetricSummary(-0.1, -0.2, 0.0), n) == 0  # high exactly 0
    assert ci_sign(MetricSummary(0.1, 1e-6, 0.2), n) == 1
    assert ci_sign(MetricSummary(-0.1, -0.2, -1e-6), n) == -1
    assert ci_sign(MetricSummary(0.1, 1e-6, 0.2), n - 1) == 0  # too few pairs to count
