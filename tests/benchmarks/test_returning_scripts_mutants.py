"""Tests from a mutation audit of the returning-user benchmark scripts whose figures BENCHMARKS.md
quotes: returning_finetune.py (compare), compare_memory_rules.py, tune_memory_update.py,
tracking_ceiling.py, bench_memory_update.py and cold_prior.py. Each guards one plausible bug in how a
figure is computed: which sessions count (before or from the change), the direction and pairing of a
difference, what a share divides by, and what a prior's mass adds up to."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp
from scipy.stats import spearmanr

from crs.app.sessions import evaluate_returning
from envs.env import Rewards
from envs.metrics import EpisodeRecord
from envs.ranker import DialogueFacts
from envs.sb3_wrapper import WrapperConfig
from envs.sessions import SessionRecord
from policies.memory import DEFAULT_RULE, SessionEvidence, UpdateRule
from policies.pretrain.ranker import REJECTED_ASPECT_PENALTY, REJECTED_PENALTY
from policies.rankers import RankerSpec
from simulators import persona_world
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from tests.benchmarks.running import BENCHMARKS, call_main
from tests.crs.tiny_runs import pretrain_tiny

EMPTY = np.zeros(0, dtype=np.int64)


@pytest.fixture(scope="module")
def world():
    """The default persona world's catalogue (600 users, 3000 items, 48 aspects)."""
    return DatasetSpec("persona_world", None, 0).load()


# --- returning_finetune.py compare ------------------------------------------------------------------


def write_episodes(folder: Path, rows: list[tuple[int, int, int | None, bool]]) -> str:
    """An episodes.jsonl of `crs eval --sessions` rows (sequence, session, change_session, success)."""
    folder.mkdir(parents=True)
    lines = [
        json.dumps({"sequence": n, "session": s, "change_session": c, "success": ok, "user": n})
        for n, s, c, ok in rows
    ]
    (folder / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def compare_lines(capsys) -> dict[str, str]:
    """compare's two printed lines by side."""
    lines = capsys.readouterr().out.strip().splitlines()
    return {line.split(":")[0]: line for line in lines}


def test_returning_finetune_compare_splits_at_the_change_session_and_subtracts_b(
    script, tmp_path: Path, capsys
) -> None:
    """Guards against the change session counted before the change (``>`` for ``>=``), against a
    stable sequence (no change) being counted, and against B − A: user 0 changes at session 1, so
    its session 1 is "from the change on"."""
    a = write_episodes(
        tmp_path / "a",
        [
            *[(0, 0, 1, False), (0, 1, 1, True), (0, 2, 1, True)],
            *[(1, 0, 2, True), (1, 1, 2, True), (1, 2, 2, False)],
            *[(2, 0, None, True), (2, 1, None, True)],
        ],
    )
    b = write_episodes(
        tmp_path / "b",
        [
            *[(0, 0, 1, False), (0, 1, 1, False), (0, 2, 1, True)],
            *[(1, 0, 2, False), (1, 1, 2, True), (1, 2, 2, False)],
            *[(2, 0, None, False), (2, 1, None, False)],
        ],
    )
    script("returning_finetune").compare(a, b, [0])
    lines = compare_lines(capsys)
    # before: user 0 session 0 (A 0, B 0); user 1 sessions 0-1 (A 1, B 0.5)
    assert lines["before the change"].startswith("before the change: A 0.500, B 0.250, A - B +0.250 [")
    assert lines["before the change"].endswith("(2 users)")
    # from the change on: user 0 sessions 1-2 (A 1, B 0.5); user 1 session 2 (A 0, B 0)
    assert lines["from the change on"].startswith("from the change on: A 0.500, B 0.250, A - B +0.250 [")


def test_returning_finetune_compare_pairs_users_by_sequence_not_by_file_order(
    script, tmp_path: Path, capsys
) -> None:
    """Guards against B's users taken in its file's order (unpaired when B lists them otherwise):
    every user does the same in A and B, so each paired difference is 0 and so is its CI."""
    rows = [(n, s, 1, n == 0) for n in range(3) for s in range(2)]
    a = write_episodes(tmp_path / "a", rows)
    b = write_episodes(tmp_path / "b", rows[::-1])
    script("returning_finetune").compare(a, b, [0])
    for line in compare_lines(capsys).values():
        assert "A - B +0.000 [+0.000, +0.000] (3 users)" in line


def test_returning_finetune_compare_pools_every_seed_and_bootstraps_the_users_mean(
    script, tmp_path: Path, capsys
) -> None:
    """Guards against one seed's folder read for every seed (or one seed dropped), and the interval
    taken over the users' differences instead of their mean: seed 0, A beats B for 5 of 10 users;
    seed 1, both fail everyone. The 20 differences (five 1s) have mean 0.25 and a standard error
    near 0.1, so the 95% interval lies well inside [0, 1], where the differences lie."""
    for seed in (0, 1):
        write_episodes(tmp_path / f"a-s{seed}", [(n, s, 1, seed == 0) for n in range(10) for s in range(2)])
        write_episodes(
            tmp_path / f"b-s{seed}",
            [(n, s, 1, seed == 0 and n % 2 == 0) for n in range(10) for s in range(2)],
        )
    pattern = str(tmp_path / "{side}-s{{seed}}")
    script("returning_finetune").compare(pattern.format(side="a"), pattern.format(side="b"), [0, 1])
    line = compare_lines(capsys)["from the change on"]
    low, high = (float(x) for x in re.search(r"\[(\S+), (\S+)\]", line).groups())
    assert "A 0.500, B 0.250, A - B +0.250" in line and line.endswith("(20 users)")
    assert 0.0 < low < 0.25 < high < 0.6


def test_returning_finetune_compare_refuses_a_seed_twice_and_b_missing_a_user(script, tmp_path: Path) -> None:
    """Guards against the duplicate-seed check being dropped (a seed pooled twice) and against B
    lacking one of A's users passing as a shorter comparison."""
    compare = script("returning_finetune").compare
    with pytest.raises(CRSError, match="names a seed twice"):
        compare("a{seed}", "b{seed}", [3, 3])
    a = write_episodes(tmp_path / "a", [(n, 0, 1, True) for n in range(3)])
    b = write_episodes(tmp_path / "b", [(n, 0, 1, True) for n in (0, 2)])
    with pytest.raises(CRSError, match=r"seed 5: B lacks the returning users \[1\] of A"):
        compare(a, b, [5])


def test_returning_finetune_compare_says_which_side_has_no_session(script, tmp_path: Path) -> None:
    """Guards against an evaluation without a change (the stable regime) printing a mean of nothing:
    every change at session 0 leaves no session before it."""
    a = write_episodes(tmp_path / "a", [(n, 0, 0, True) for n in range(2)])
    with pytest.raises(CRSError, match="no returning user of A has a session before the change"):
        script("returning_finetune").compare(a, a, [0])
    stable = write_episodes(tmp_path / "s", [(n, 0, None, True) for n in range(2)])
    with pytest.raises(CRSError, match="before the change"):
        script("returning_finetune").compare(stable, stable, [0])


def test_returning_finetune_per_user_names_the_bad_line(script, tmp_path: Path) -> None:
    """Guards against a line without a returning session's keys read as a session (or a traceback)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    good = json.dumps({"sequence": 0, "session": 0, "change_session": 1, "success": True})
    (folder / "episodes.jsonl").write_text(
        good + "\n" + json.dumps({"goal_index": 3, "success": True}) + "\n"
    )
    with pytest.raises(CRSError, match=r"episodes.jsonl line 2 is no returning user's session"):
        script("returning_finetune")._per_user(folder, True)
    with pytest.raises(CRSError, match="not found"):
        script("returning_finetune")._per_user(tmp_path / "none", True)


# --- compare_memory_rules.py ------------------------------------------------------------------------


def session(sequence: int, number: int, change: int | None, success: bool) -> SessionRecord:
    """A session record whose conversation succeeded (at turn 3) or failed."""
    episode = EpisodeRecord(
        number, sequence, (7,), success, 3 if success else 15, 1 if success else None, 0.0
    )
    return SessionRecord(sequence, number, 0, 0, change, episode)


def test_compare_memory_rules_per_user_scores_switch_sessions_from_the_change_on(script) -> None:
    """Guards against the switch regime scoring sessions before the change (or only after it), a
    sequence without a change being scored there, and the offsets counted from the wrong end."""
    records = [
        session(1, 0, 1, True),
        session(1, 1, 1, False),  # the change session: scored, offset 0
        session(1, 2, 1, True),  # offset 1
        session(0, 0, 2, False),
        session(0, 1, 2, False),
        session(0, 2, 2, True),  # offset 0
        session(2, 0, None, True),
        session(2, 1, None, True),
    ]
    rules = script("compare_memory_rules")
    means, offsets = rules.per_user(records, "switch")
    assert means.tolist() == [1.0, 0.5]  # sequences 0 then 1
    assert offsets == {0: [0.0, 1.0], 1: [1.0], 2: []}
    stable, _ = rules.per_user(records, "stable")
    assert stable.tolist() == [1 / 3, 2 / 3, 1.0]


def test_compare_memory_rules_gap_share_is_the_rules_gain_over_frozen_by_the_gap(script) -> None:
    """Guards against the share measured from the oracle (or the gap's sign flipped): frozen 0.25,
    oracle 0.75, the rule 0.5 closes half the gap; a rule below frozen closes a negative share."""
    offsets = {
        "frozen": {0: [0.0, 0.5], 1: [0.0], 2: [1.0]},
        "oracle": {0: [1.0, 0.5], 1: [1.0], 2: [1.0]},
        "home": {0: [0.5, 0.5], 1: [0.0], 2: []},
        "worse": {0: [0.0, 0.0], 1: [0.25], 2: [1.0]},
    }
    rules = script("compare_memory_rules")
    assert rules.gap_shares(offsets, "home") == ["50%", "0%", "n/a (no session there)"]
    assert rules.gap_shares(offsets, "worse") == ["-50%", "25%", "n/a (no gap)"]


def test_compare_memory_rules_update_rules_replace_default_fields(script) -> None:
    """Guards against a rule built from `UpdateRule`'s class defaults instead of over DEFAULT_RULE,
    and against the refusals (reserved names, unknown fields, not an object) being dropped."""
    parse = script("compare_memory_rules").update_rules
    rules = parse('{"p2": {"home_rate": 0.2}, "home": {}}')
    assert list(rules) == ["p2", "home"]
    assert rules["home"] == DEFAULT_RULE
    assert rules["p2"].home_rate == 0.2
    assert rules["p2"].switch_rate == DEFAULT_RULE.switch_rate
    for text, message in (
        ('{"frozen": {}}', "always played"),
        ('{"oracle": {}, "x": {}}', "always played"),
        ('{"x": {"speed": 1, "home_rat": 0}}', "unknown UpdateRule fields home_rat, speed"),
        ("{}", "non-empty JSON object"),
        ('{"x": 1}', "non-empty JSON object"),
        ("[1]", "non-empty JSON object"),
        ("{x", "not JSON"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_compare_memory_rules_seed_list_reads_every_seed(script) -> None:
    """Guards against splitting on another separator or a bad seed passing."""
    seeds = script("compare_memory_rules").seed_list
    assert seeds("100,101,7") == [100, 101, 7]
    with pytest.raises(argparse.ArgumentTypeError, match="'1,x'"):
        seeds("1,x")


# --- tune_memory_update.py --------------------------------------------------------------------------


def tune_data(sessions: int, change: list[int], active: list[list[int]], prior: list[list[float]]) -> dict:
    """Evidence arrays as `tune_memory_update.play` keeps them, every log-likelihood 0."""
    users, k = len(prior), len(prior[0])
    zeros = np.zeros((users, sessions, k))
    return {
        "aspects": zeros,
        "item": zeros.copy(),
        "rejected": zeros.copy(),
        "success": np.zeros((users, sessions), dtype=bool),
        "active": np.array(active, dtype=np.int64),
        "prior": np.array(prior),
        "change": np.array(change),
    }


def test_tune_replay_of_the_frozen_prior_scores_from_and_tracks_after_the_change(script) -> None:
    """Guards against tracking counting the change session itself (or every session), and the
    log-probability skipping it: user 0 changes at 6 (scored 6-7, tracked 7), user 1 at 7 (scored 7,
    tracked none); the prior names persona 0 for user 0 and persona 1 for user 1."""
    tune = script("tune_memory_update")
    active = [[0] * 6 + [1, 0], [1] * 7 + [0]]
    data = tune_data(tune.SESSIONS, [6, 7], active, [[0.75, 0.25], [0.4, 0.6]])
    tracking, logp = tune.replay(None, data, "switch")
    assert tracking == 1.0  # user 0, session 7: persona 0 named
    assert logp == pytest.approx(np.mean(np.log([0.25, 0.75, 0.4])))
    tracking, logp = tune.replay(None, data, "stable")
    assert tracking == pytest.approx((7 + 7) / 16)  # user 0 misses session 6, user 1 session 7
    assert logp == pytest.approx((7 * np.log(0.75) + np.log(0.25) + 7 * np.log(0.6) + np.log(0.4)) / 16)


def test_tune_replay_moves_the_prior_by_each_sessions_weighted_evidence(script) -> None:
    """Guards against the filter's order (predict before update), the weights of the three kinds of
    evidence, and the emission's transpose. With dominance 1 the prior is the belief itself: one
    user, K = 2, a uniform prior, session 0's evidence favours persona 1 by a likelihood ratio 3."""
    tune = script("tune_memory_update")
    data = tune_data(tune.SESSIONS, [0], [[1] * tune.SESSIONS], [[0.5, 0.5]])
    data["item"][0, 0] = [0.0, np.log(3.0)]
    data["aspects"][0, 0] = [np.log(5.0), 0.0]  # weight 0: ignored
    h = 0.2
    rule = UpdateRule(
        switch_rate=h, dominance=1.0, aspect_weight=0.0, item_weight=1.0, rejected_item_weight=0
    )
    _, logp = tune.replay(rule, data, "stable")
    after = np.array([0.25, 0.75]) @ np.array([[1 - h, h], [h, 1 - h]])  # then the switch
    expected = [0.5, after[1]]
    for _ in range(tune.SESSIONS - 2):
        expected.append((np.array([1 - expected[-1], expected[-1]]) @ np.array([[1 - h, h], [h, 1 - h]]))[1])
    assert logp == pytest.approx(np.mean(np.log(expected)))


def test_tune_names_the_active_counts_only_a_sole_maximum_on_the_true_persona(script) -> None:
    """Guards against a tie counted as naming the persona, the rejected evidence's sign, and the
    failed-session and rejected-slate shares dividing by every session."""
    tune = script("tune_memory_update")
    data = tune_data(2, [0], [[0, 1]], [[0.5, 0.5]])
    data["aspects"] = np.array([[[2.0, 1.0], [1.0, 1.0]]])  # names 0 (hit); a tie (miss)
    data["item"] = np.array([[[0.0, 0.0], [0.0, 3.0]]])  # with it, session 1 names 1
    data["rejected"] = np.array([[[0.0, 0.0], [-1.0, 0.0]]])  # only session 1 has rejected slates
    data["success"] = np.array([[True, False]])
    named = tune.names_the_active(data)
    assert named["aspects"] == 0.5
    assert named["aspects, failed sessions"] == 0.0
    assert named["aspects+item"] == 1.0
    assert named["aspects+item+rejected"] == 1.0
    assert named["rejected (+)"] == 0.5  # session 1: persona 1 is the sole maximum
    assert named["rejected (-)"] == 0.0
    assert named["rejected (+), sessions with rejected slates"] == 1.0
    assert named["rejected (+), failed sessions"] == 1.0
    assert named["share of sessions with rejected slates"] == 0.5


def test_tune_main_reads_its_cache_only_for_the_same_key_and_sorts_by_score(
    script, monkeypatch, tmp_path: Path, capsys
) -> None:
    """Guards against evidence cached for another ranker (or users, or seed) being reused, and the
    best rules printed worst first: the cache's key is the ranker's path, the users and the seed."""
    tune = script("tune_memory_update")
    ranker = tmp_path / "no-ranker"
    rng = np.random.default_rng(0)
    arrays = {}
    for regime in tune.REGIMES:
        data = tune_data(tune.SESSIONS, [3, 5], [[0] * 5 + [1] * 3, [1] * 8], [[0.6, 0.4], [0.3, 0.7]])
        for name in tune.EVIDENCE:
            data[name] = rng.normal(size=data[name].shape)
        arrays.update({f"{regime}/{n}": v for n, v in data.items()})
    cache = tmp_path / "tune.npz"
    np.savez(cache, key=np.array(f"{ranker.resolve()}|2|100"), **arrays)
    call_main(tune, monkeypatch, "--ranker", str(ranker), "--users", "2", "--top", "3", "--cache", str(cache))
    out = capsys.readouterr().out
    assert f"evidence read from {cache}" in out
    best = [
        json.loads(line)
        for line in out.split("best by score")[1].split("best by tracking")[0].splitlines()[1:]
    ]
    assert len(best) == 3
    scores = [row["score"] for row in best]
    assert scores == sorted(scores, reverse=True)
    for row in best:
        assert row["score"] == pytest.approx(row["switch_logp"] + row["stable_logp"], abs=2e-4)
    tracking = [
        json.loads(line) for line in out.split("best by tracking after the switch:\n")[1].splitlines()
    ]
    assert len(tracking) == 3
    assert [r["switch_tracking"] for r in tracking] == sorted(
        (r["switch_tracking"] for r in tracking), reverse=True
    )
    with pytest.raises(CRSError):  # another seed: the cache is not read, so the (missing) ranker is
        call_main(
            tune, monkeypatch, "--ranker", str(ranker), "--users", "2", "--seed", "1", "--cache", str(cache)
        )


# --- tracking_ceiling.py ----------------------------------------------------------------------------


def test_tracking_ceiling_true_evidence_of_a_success_is_the_accepted_items_probability(script) -> None:
    """Guards against the accepted item's column read for the wrong personas (all of them, or in
    another order)."""
    log_items = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]]))
    found = script("tracking_ceiling").true_evidence(
        SessionEvidence(user=0, accepted=[0], accepted_item=1), np.array([2, 0]), log_items, None, 0.1
    )
    assert found == pytest.approx(np.log([0.7, 0.3]))


def test_tracking_ceiling_true_evidence_of_a_failure_sums_the_answers_over_unrejected_items(script) -> None:
    """Guards against the answers' likelihoods swapped (a yes to an aspect the item lacks weighted
    1 − ε), a rejected item kept in the sum, and a held aspect read from the wrong axis: items 0-2,
    aspects 0-1; the user said yes to 0, no to 1, and rejected item 2."""
    holders = sp.csc_matrix(np.array([[1, 0], [1, 1], [0, 0]], dtype=np.int8))
    log_items = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    evidence = SessionEvidence(user=0, accepted=[0], rejected=[1], rejected_items=[2])
    eps = 0.1
    found = script("tracking_ceiling").true_evidence(evidence, np.array([0, 1]), log_items, holders, eps)
    answers = np.array([(1 - eps) * (1 - eps), (1 - eps) * eps])  # item 0 fits both, item 1 the yes only
    expected = np.log(np.exp(log_items[:, :2]) @ answers)
    assert found == pytest.approx(expected)


def test_tracking_ceiling_best_filter_takes_the_filter_of_the_highest_tracking(script) -> None:
    """Guards against the worst filter (or a row's fields out of order) being reported: the returned
    constants, replayed, give the returned tracking, and no filter tracks better."""
    ceiling, tune = script("tracking_ceiling"), script("tune_memory_update")
    rng = np.random.default_rng(3)
    users, k = 6, 3
    active = np.repeat(rng.integers(0, k, users)[:, None], tune.SESSIONS, axis=1)
    change = np.array([2, 3, 4, 5, 2, 3])
    ll = rng.normal(size=(users, tune.SESSIONS, k)) + 1.5 * (np.arange(k) == active[..., None])
    data = {"prior": np.full((users, k), 1 / k), "active": active, "change": change, "aspects": ll}
    tracking, h, m, weight = ceiling.best_filter(data)
    zeros = np.zeros_like(ll)
    replayed = {**data, "item": zeros, "rejected": zeros}

    def track(h: float, m: float, w: float) -> float:
        rule = UpdateRule(
            switch_rate=h, dominance=m, aspect_weight=w, item_weight=0.0, rejected_item_weight=0.0
        )
        return tune.replay(rule, replayed, "switch")[0]

    assert track(h, m, weight) == tracking
    scores = {track(*f) for f in ((0.05, 0.6, 0.25), (0.8, 0.99, 2.0), (0.3, 0.85, 1.0))}
    assert tracking >= max(scores) and tracking > min(scores)


def test_tracking_ceiling_world_item_probabilities_replay_the_worlds_popularity(script, world) -> None:
    """Guards against the world's draws replayed out of order (another popularity vector), the
    popularity left out, or the rows not normalised: each persona's row is a distribution, rows
    differ by the personas' utilities only, and the popularity they share tracks how often the
    world's users drew each item; another seed is refused."""

    ceiling = script("tracking_ceiling")
    log_items = ceiling.world_log_item_probs(world)
    truth = world.truth
    assert log_items.shape == (truth.n_personas, world.n_items)
    assert logsumexp(log_items, axis=1) == pytest.approx(np.zeros(truth.n_personas))
    utilities = persona_world.persona_utilities(
        world.item_aspects, truth.aspect_group, truth.persona_groups, truth.persona_aspects
    )
    shared = log_items - utilities
    shared -= shared.mean(axis=1, keepdims=True)
    assert np.ptp(shared, axis=0).max() < 1e-9  # one popularity term for every persona
    assert shared[0].std() == pytest.approx(persona_world.POPULARITY_STD, rel=0.1)
    drawn = np.bincount(
        np.concatenate([world.split(s).items for s in ("train", "valid", "test")]), minlength=world.n_items
    )
    assert spearmanr(shared[0], drawn).statistic > 0.2  # a wrong draw: about 0
    with pytest.raises(SystemExit, match="generator changed"):
        ceiling.world_log_item_probs(world, seed=1)


# --- bench_memory_update.py -------------------------------------------------------------------------


def test_bench_memory_update_milliseconds_are_median_p95_and_max(script) -> None:
    """Guards against the seconds not scaled to milliseconds, or the mean or another percentile
    reported as the median or p95."""
    seconds = [0.001 * v for v in (1, 2, 3, 4, 100)]
    ms = script("bench_memory_update").milliseconds(seconds)
    assert ms == {"median": 3.0, "p95": round(float(np.percentile([1, 2, 3, 4, 100], 95)), 2), "max": 100.0}
    assert ms["p95"] == pytest.approx(4 + 0.8 * 96, abs=0.01)


def test_bench_memory_update_times_each_user_cold_then_warm(script, monkeypatch, capsys) -> None:
    """Guards against --users being ignored (or exceeding the catalogue's users) and the rule not
    reaching the memory: the JSON names the users timed, the rule and the random ranker's shape."""
    bench = script("bench_memory_update")
    call_main(bench, monkeypatch, "--dataset", "persona_world", "--users", "3", "--rule", "prior")
    out = json.loads(capsys.readouterr().out)
    assert (out["dataset"], out["items"], out["users"], out["rule"]) == ("persona_world", 3000, 3, "prior")
    assert out["ranker"] == "random d64 K3 P8"
    for side in ("cold_ms", "warm_ms"):
        assert 0.0 < out[side]["median"] <= out[side]["p95"] <= out[side]["max"]


def test_bench_memory_update_random_ranker_has_the_catalogues_size(script, world) -> None:
    """Guards against the random ranker's shape drifting from the catalogue's (d 64, K 3)."""
    ranker = script("bench_memory_update").random_ranker(world)
    assert (ranker.n_users, ranker.n_items, ranker.n_aspects) == (
        world.n_users,
        world.n_items,
        world.n_aspects,
    )
    assert ranker.personas_per_user == 3
    prior = np.exp(ranker.log_prior)
    assert prior.sum(axis=1) == pytest.approx(np.ones(world.n_users))


# --- cold_prior.py ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_ranker(world):
    """bench_memory_update's seeded random persona ranker of the persona world."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_memory_update
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_memory_update.random_ranker(world)


def test_cold_items_are_the_items_without_a_train_interaction(script, world) -> None:
    """Guards against another split's items (or the seen ones) counted as cold."""
    cold = script("cold_prior").cold_items(world)
    train = set(world.split("train").items.tolist())
    assert cold.tolist() == [v not in train for v in range(world.n_items)]


def test_cold_prior_gives_the_cold_items_the_share_rho_and_tempers_the_warm(script, random_ranker) -> None:
    """Guards against ρ given to the warm items, the cold mass not spread over the cold items, the
    warm prior not normalised over the warm items only, and T multiplying instead of dividing."""
    cold_prior = script("cold_prior")
    cold = np.zeros(random_ranker.n_items, dtype=bool)
    cold[::4] = True
    share, t = 0.3, 2.0
    ranker = cold_prior.ColdPriorRanker(random_ranker, cold, share, t)
    items = np.arange(random_ranker.n_items)
    plain = random_ranker.item_scores(DialogueFacts(5, EMPTY, EMPTY, EMPTY), items)
    scores = ranker.item_scores(DialogueFacts(5, EMPTY, EMPTY, EMPTY), items)
    assert np.exp(scores[cold]) == pytest.approx(np.full(cold.sum(), share / cold.sum()))
    assert np.exp(scores[~cold]).sum() == pytest.approx(1 - share)
    warm = np.flatnonzero(~cold)
    assert scores[warm] - scores[warm[0]] == pytest.approx((plain[warm] - plain[warm[0]]) / t)


def test_cold_prior_moves_every_item_by_the_dialogues_evidence(script, random_ranker) -> None:
    """Guards against the dialogue's evidence left out (or subtracted) and the base ranker's cache
    shared with the view: s'(v | facts) − s'(v | ∅) = s(v | facts) − s(v | ∅) for every item, after
    the base ranker has scored the same facts."""
    cold_prior = script("cold_prior")
    cold = np.zeros(random_ranker.n_items, dtype=bool)
    cold[1::3] = True
    facts = DialogueFacts(9, np.array([2]), np.array([5, 7]), np.array([0, 1, 4]))
    empty = DialogueFacts(9, EMPTY, EMPTY, EMPTY)
    items = np.arange(random_ranker.n_items)
    moved = random_ranker.item_scores(facts, items) - random_ranker.item_scores(empty, items)
    ranker = cold_prior.ColdPriorRanker(random_ranker, cold, 0.2)
    assert ranker.item_scores(facts, items) - ranker.item_scores(empty, items) == pytest.approx(moved)
    assert random_ranker.item_scores(empty, items)[0] != pytest.approx(ranker.item_scores(empty, items)[0])


def test_cold_prior_rules_only_moves_cold_items_by_the_rejections_alone(script, random_ranker) -> None:
    """Guards against the rules-only flag ignored, a warm item moved by the rules only, and the
    penalties' signs: a cold item keeps its prior less the rejected aspects' and items' penalties."""

    cold_prior = script("cold_prior")
    cold = np.zeros(random_ranker.n_items, dtype=bool)
    cold[:1500] = True
    facts = DialogueFacts(3, np.array([2]), np.array([5]), np.array([0, 2000]))
    empty = DialogueFacts(3, EMPTY, EMPTY, EMPTY)
    items = np.arange(random_ranker.n_items)
    ranker = cold_prior.ColdPriorRanker(random_ranker, cold, 0.4, rules_only=True)
    prior = ranker.item_scores(empty, items)
    holds = random_ranker.item_aspects[:, 5].toarray().ravel() != 0
    expected = prior - REJECTED_ASPECT_PENALTY * holds
    expected[[0, 2000]] -= REJECTED_PENALTY
    scores = ranker.item_scores(facts, items)
    assert scores[cold] == pytest.approx(expected[cold])
    moved = random_ranker.item_scores(facts, items) - random_ranker.item_scores(empty, items)
    assert scores[~cold] == pytest.approx(prior[~cold] + moved[~cold])


# --- the scripts' main, over a tiny pre-trained ranker ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory) -> Path:
    """A tiny `crs pretrain` artifact of the persona world (tests/crs/tiny_runs.py)."""
    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "ranker")


def test_compare_memory_rules_main_pools_the_seeds_and_pairs_each_arm_with_the_first_rule(
    script, monkeypatch, capsys, tiny_artifact: Path, world
) -> None:
    """Guards against a seed's users replacing the last seed's, the difference taken from frozen (or
    reversed) instead of from the first rule named, and the oracle played in the stable regime:
    frozen's switch SR@15 is the mean, over the users of both seeds, of each user's sessions from
    the change on."""

    rules = '{"b": {}, "a": {"switch_rate": 0.6}}'
    argv = ("--ranker", str(tiny_artifact), "--rules", rules, "--users", "3", "--seeds", "4,5")
    call_main(script("compare_memory_rules"), monkeypatch, *argv, "--sessions", "3", "--policy", "ask-2")
    lines = [line for line in capsys.readouterr().out.splitlines() if "SR@15" in line]
    found = {tuple(line.split(":")[0].split()): line for line in lines}
    assert list(found) == [
        ("switch", "frozen"),
        ("switch", "oracle"),
        ("switch", "b"),
        ("switch", "a"),
        ("stable", "frozen"),
        ("stable", "b"),
        ("stable", "a"),
    ]
    ranker = RankerSpec.parse(str(tiny_artifact)).build(world)
    per_user = []
    for seed in (4, 5):
        result = evaluate_returning(
            world, ranker, "ask-2", regime="switch", sessions=3, sequences=3, memory="frozen", seed=seed,
            split="valid",
        )  # fmt: skip
        scored: dict[int, list[float]] = {}
        for r in result.records:
            if r.change_session is not None and r.session >= r.change_session:
                scored.setdefault(r.sequence, []).append(
                    float(r.episode.success and r.episode.agent_actions <= 15)
                )
        per_user += [np.mean(v) for v in scored.values()]
    means = {key: float(re.search(r"SR@15 (\S+),", line).group(1)) for key, line in found.items()}
    assert means[("switch", "frozen")] == pytest.approx(np.mean(per_user), abs=5e-5)
    for key, line in found.items():
        diff = float(re.search(r"− b (\S+) \[", line).group(1))
        assert diff == pytest.approx(means[key] - means[(key[0], "b")], abs=2e-4)
    assert "− b +0.0000 [+0.0000, +0.0000]" in found[("switch", "b")]
    assert means[("switch", "frozen")] != means[("switch", "b")]  # so a difference from frozen shows
    assert "gap closed at +0/+1/+2" in found[("switch", "b")] and "gap" not in found[("stable", "b")]


def test_cold_prior_main_splits_sr_by_cold_target_and_pairs_with_the_pretrained(
    script, monkeypatch, capsys, tmp_path: Path, tiny_artifact: Path, world
) -> None:
    """Guards against ρ taken from every item (not valid's interactions), the cold/warm split read
    from the user instead of the target, and the paired difference reversed: each variant's figures
    are recomputed from the episodes it wrote."""
    cold_prior = script("cold_prior")
    cold = cold_prior.cold_items(world)
    share = cold[world.split("valid").items].mean()
    out = tmp_path / "out"
    argv = ("--ranker", str(tiny_artifact), "--dataset", "persona_world", "--policy", "ask-2", "-n", "12")
    call_main(cold_prior, monkeypatch, *argv, "--seed", "4", "--out", str(out), "--temperatures", "1", "3")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"persona_world: {int(cold.sum())} of 3000 items cold; cold share of valid interactions {share:.3f}"
    )
    names = ["pre-trained", f"cold prior rho={share:.3f} T=1", f"cold prior rho={share:.3f} T=3"]
    assert sorted(p.name for p in out.iterdir()) == sorted(n.replace(" ", "-") for n in names)
    success = {}
    for name in names:
        rows = [
            json.loads(line)
            for line in (out / name.replace(" ", "-") / "episodes.jsonl").read_text().splitlines()
        ]
        ok = np.array([r["success"] and r["agent_actions"] <= 15 for r in rows], dtype=float)
        is_cold = cold[[r["targets"][0] for r in rows]]
        success[name] = ok
        line = next(p for p in printed if p.startswith(f"ask-2, {name}:"))
        assert 0 < is_cold.sum() < len(rows)
        assert (
            f"SR@15 {ok.mean():.3f} (cold {ok[is_cold].mean():.3f} of {is_cold.sum()}, "
            f"warm {ok[~is_cold].mean():.3f} of {(~is_cold).sum()})"
        ) in line
    paired = [p for p in printed if p.startswith("  − pre-trained, paired:")]
    assert len(paired) == 2
    for name, line in zip(names[1:], paired, strict=True):
        assert f"'SR@15': '{(success[name] - success['pre-trained']).mean():+.3f} [" in line


def test_cold_prior_main_without_base_and_with_a_non_persona_ranker(
    script, monkeypatch, capsys, tiny_artifact: Path
) -> None:
    """Guards against --no-base still playing the plain ranker (and pairing against it), and a
    ranker that is no persona ranker reaching the prior."""
    cold_prior = script("cold_prior")
    argv = ("--dataset", "persona_world", "--policy", "ask-2", "-n", "3", "--shares", "0.25")
    call_main(cold_prior, monkeypatch, "--ranker", str(tiny_artifact), *argv, "--no-base")
    out = capsys.readouterr().out
    assert "ask-2, pre-trained:" not in out and "paired" not in out
    assert "ask-2, cold prior rho=0.250 T=1:" in out
    # these 3 conversations' targets are all warm: the cold side is said to be empty, not "nan"
    assert "(cold none, warm " in out and "nan" not in out
    with pytest.raises(CRSError, match="not a persona ranker"):
        call_main(cold_prior, monkeypatch, "--ranker", "popularity", *argv)


def test_returning_finetune_env_plays_each_users_sessions_in_order_over_the_memorys_view(
    script, tiny_artifact: Path, world
) -> None:
    """Guards against the fine-tuning env's episodes leaving a user before (or after) its 8 sessions,
    a session played with another goal than its index, the encoder's prior row not the memory's view,
    the memory not updated after a session, and a user met again starting from its old memory: two
    users of 8 sessions, then the first again (always recommending, so sessions end in a turn or two)."""
    import torch

    finetune = script("returning_finetune")
    ranker = RankerSpec.parse(str(tiny_artifact)).build(world)
    rows = torch.zeros(world.n_users, ranker.log_prior.shape[1], dtype=torch.float64)
    env = finetune.ReturningUsers(world, ranker, WrapperConfig(), Rewards(), None, rows, 7, 2)
    users = [q.user for q in env.sequences]
    assert users[0] != users[1]
    for episode in range(2 * finetune.SESSIONS + 1):
        _, info = env.reset()
        index, number = divmod(episode, finetune.SESSIONS)
        user = users[index % 2]
        assert (env.index, env.session, env.sequence.user) == (index % 2, number, user)
        assert info["goal_index"] == number
        row = rows[user].numpy()
        assert row == pytest.approx(np.asarray(env.memory.ranker_for(user).log_prior[user]))
        if number == 0:
            assert row == pytest.approx(np.asarray(ranker.log_prior[user]))
        else:
            assert np.abs(row - np.asarray(ranker.log_prior[user])).max() > 1e-3
        done = False
        while not done:
            action = np.array([env.wrapper.recommend_choice] + [-1] * env.wrapper.slate_size)
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
