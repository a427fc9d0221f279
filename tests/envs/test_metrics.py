"""UNICORN's metrics, with the arithmetic written out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.metrics import EpisodeRecord, bootstrap_ci, hdcg, hdcg_value, per_episode_metrics, summarize


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
