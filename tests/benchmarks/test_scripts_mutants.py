"""Tests from a mutation audit of the benchmark scripts whose figures BENCHMARKS.md quotes: the shared
command line (benchmarks/_cli.py), paired_arms.py, stopping_rules.py, lookahead.py, seed_overlap.py and
bench_env.py. Each guards one plausible bug in how a figure is computed or printed: which conversations
are paired, in which direction, over which seeds, and what a rate counts."""

from __future__ import annotations

import argparse
import errno
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from crs.app.run_folder import write_episodes
from envs.metrics import EpisodeRecord, MetricSummary, bootstrap_ci, per_episode_metrics
from envs.registry import make_env
from envs.rollout import evaluate, evaluation_indices, run_episode
from policies.content_profile import profile_holdout
from policies.rankers import RankerSpec
from policies.rules import AskThenRecommendPolicy, LookaheadPolicy, make_rule_policy
from simulators.errors import CRSError
from tests.benchmarks.running import call_main


def ci_text(summary: MetricSummary) -> str:
    """A paired difference as the scripts print it: mean [low, high], signed, three decimals."""
    return f"{summary.mean:+.3f} [{summary.low:+.3f}, {summary.high:+.3f}]"


# --- _cli.py ---------------------------------------------------------------------------------------


def test_positive_float_refuses_nan(script) -> None:
    """Guards against a range check written as two comparisons that NaN passes (every comparison
    with NaN is False), so --temperatures nan would reach the search."""
    with pytest.raises(argparse.ArgumentTypeError, match="nan"):
        script("_cli").positive_float("nan")
    assert script("_cli").positive_float("0.25") == 0.25


def test_comma_names_reads_each_name_and_refuses_an_unknown_one(script) -> None:
    """Guards against splitting on another separator (``full,k1`` read as one name) and against the
    unknown-name check being dropped (a misspelt dataset silently measured as nothing)."""
    parse = script("_cli").comma_names(("lastfm", "lastfm_star", "persona_world"))
    assert parse("lastfm_star,persona_world") == ["lastfm_star", "persona_world"]
    assert parse("persona_world,lastfm") == ["persona_world", "lastfm"]  # measured in this order
    with pytest.raises(argparse.ArgumentTypeError, match="'yelp'; choose from lastfm, lastfm_star"):
        parse("lastfm,yelp")


def test_evaluation_from_args_reads_its_data_dir(script, tmp_path: Path) -> None:
    """Guards against --data-dir being dropped on the way to the evaluation (the default data
    folder read instead of the one named)."""
    cli = script("_cli")
    parser = argparse.ArgumentParser()
    cli.add_conversation_options(parser, ranker_help="a ranker spec")
    missing = tmp_path / "no-data-here"
    args = parser.parse_args(
        ["--ranker", "uniform+split", "-d", "lastfm_star", "--data-dir", str(missing), "-n", "2"]
    )
    with pytest.raises(CRSError, match=str(missing)):
        cli.evaluation_from_args(args, "ask-2")


def test_run_script_prints_a_system_error_with_its_file_as_one_line(script, capsys) -> None:
    """Guards against run_script catching only the project's errors (a missing file then ends in a
    traceback) and against the file's name being left out of the line."""

    def main() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "out/ask-4/episodes.jsonl")

    with pytest.raises(SystemExit) as stopped:
        script("_cli").run_script(main)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: No such file or directory: out/ask-4/episodes.jsonl\n"


def test_run_script_prints_a_system_error_without_errno_as_its_message(script, capsys) -> None:
    """Guards against every OSError read through its strerror: one raised with a bare message has
    none, and the line must then be the message itself."""

    def main() -> None:
        raise OSError("the runs folder is on a read-only disk")

    with pytest.raises(SystemExit) as stopped:
        script("_cli").run_script(main)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: the runs folder is on a read-only disk\n"


# --- paired_arms.py --------------------------------------------------------------------------------

SUCCESSES = {  # per conversation (goals 0..7), success of each folder
    "a0": [1, 0, 0, 0, 0, 0, 0, 0],  # 0.125
    "a1": [1, 1, 1, 0, 0, 0, 0, 0],  # 0.375
    "b0": [1, 1, 0, 0, 0, 0, 0, 0],  # 0.25
    "b1": [1, 1, 1, 1, 1, 1, 0, 0],  # 0.75
    "ref": [0, 0, 0, 0, 0, 0, 0, 1],  # 0.125
}


def write_folder(folder: Path, successes: Sequence[int], *, probed: int = 0, order: int = 1) -> None:
    """An eval folder of len(`successes`) conversations (goal i succeeds when successes[i]); the
    first `probed` hold probes from their second action on; records written in goal order (`order`
    1) or reversed (-1)."""
    records = []
    for goal, success in enumerate(successes):
        kinds = ["ask", "ask", "recommend"] if success else ["ask"] * 13 + ["recommend"]
        if goal < probed:  # one probe in a success, two in a failure
            kinds[1 : 2 if success else 3] = ["probe"] * (1 if success else 2)
        records.append(
            EpisodeRecord(
                goal_index=goal,
                user=goal,
                targets=(goal,),
                success=bool(success),
                agent_actions=len(kinds),
                rank=1 if success else None,
                total_reward=1.0 if success else -1.0,
                kinds=tuple(kinds),
            )
        )
    folder.mkdir()
    write_episodes(folder, records[::order])


def paired_rows(out: str) -> dict[str, list[str]]:
    """The Markdown rows of paired_arms' output by their first cell, each row's other cells."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def arms(tmp_path: Path) -> dict[str, Path]:
    """The five folders of `SUCCESSES`; a0 probes in half its conversations, and b0 and the
    reference are written in reverse goal order."""
    folders = {name: tmp_path / name for name in SUCCESSES}
    for name, folder in folders.items():
        write_folder(
            folder,
            SUCCESSES[name],
            probed=4 if name == "a0" else 0,
            order=-1 if name in ("b0", "ref") else 1,
        )
    return folders


def test_paired_arms_pairs_seed_by_seed_and_with_the_reference(script, monkeypatch, capsys, arms) -> None:
    """Guards against records paired in file order rather than by goal (b0 and the reference are
    written backwards), the probe share counting only first actions or counting probes rather than
    conversations with one, the folder table's SR@15 not
    being a mean, arm B's seeds paired in another order, B's folders left out of the reference rows,
    and a difference taken the wrong way round."""
    f = {name: str(path) for name, path in arms.items()}
    call_main(
        script("paired_arms"),
        monkeypatch,
        *("--reference", f["ref"], "--a", f["a0"], f["a1"], "--b", f["b0"], f["b1"]),
    )
    rows = paired_rows(capsys.readouterr().out)
    s = {name: np.array(values, dtype=float) for name, values in SUCCESSES.items()}
    # the folder table: SR@15 is the third figure, the probe share the last
    assert rows[f["a0"]][2] == "0.125" and rows[f["a0"]][-1] == "50.0%"
    assert rows[f["b1"]][2] == "0.750" and rows[f["b1"]][-1] == "0.0%"
    assert "paired (8 conversations)" in rows
    for a, b in (("a0", "b0"), ("a1", "b1"), ("a0", "ref"), ("a1", "ref"), ("b0", "ref"), ("b1", "ref")):
        assert rows[f"{f[a]} − {f[b]}"][0] == ci_text(bootstrap_ci(s[a] - s[b])), (a, b)
    assert rows[f"{f['a0']} − {f['b0']}"][0].startswith("-0.125")
    assert rows[f"{f['b1']} − {f['ref']}"][0].startswith("+0.625")
    assert f"{f['a0']} − {f['b1']}" not in rows


def test_paired_arms_pools_the_arms_over_conversations_and_over_seeds(script, monkeypatch, capsys, arms):
    """Guards against the pooled row averaging each seed over conversations instead of each
    conversation over seeds (a bootstrap over 2 seeds), the per-seed row pairing seeds across or
    clipping a difference's t-interval to [0, 1], and 2 seeds shown as n/a."""
    f = {name: str(path) for name, path in arms.items()}
    call_main(
        script("paired_arms"),
        monkeypatch,
        *("--a", f["a0"], f["a1"], "--b", f["b0"], f["b1"], "--names", "probes", "plain"),
    )
    rows = paired_rows(capsys.readouterr().out)
    s = {name: np.array(values, dtype=float) for name, values in SUCCESSES.items()}
    assert "probes − plain, 2 seeds" in rows
    per_conversation = (s["a0"] + s["a1"]) / 2 - (s["b0"] + s["b1"]) / 2
    pooled = rows["per conversation, mean over seeds (bootstrap over conversations)"]
    assert pooled[0] == ci_text(bootstrap_ci(per_conversation))
    # per seed: a0 − b0 = −0.125, a1 − b1 = −0.375; Student t with 1 degree of freedom, unclipped
    differences = np.array([-0.125, -0.375])
    half = stats.t.ppf(0.975, 1) * differences.std(ddof=1) / math.sqrt(2)
    expected = MetricSummary(-0.25, -0.25 - half, -0.25 + half)
    assert rows["per seed, mean (t-interval over seeds)"][0] == ci_text(expected)
    assert ci_text(expected).startswith("-0.250 [-1.8")


def test_paired_arms_refuses_folders_of_other_conversations(script, monkeypatch, tmp_path) -> None:
    """Guards against the conversations' check comparing only how many there are: a folder of other
    goals, as many, would be paired position by position."""
    write_folder(tmp_path / "a", [1, 0, 1, 0])
    records = [
        EpisodeRecord(goal_index=g, user=g, targets=(g,), success=False, agent_actions=14, rank=None,
                      total_reward=-1.0, kinds=("ask",) * 14)
        for g in (0, 1, 2, 9)
    ]  # fmt: skip
    (tmp_path / "b").mkdir()
    write_episodes(tmp_path / "b", records)
    with pytest.raises(CRSError, match="holds other conversations"):
        call_main(script("paired_arms"), monkeypatch, "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"))


def test_paired_arms_refuses_arms_of_unequal_seeds(script, monkeypatch, capsys, arms) -> None:
    """Guards against arms of 2 and 1 seeds reaching the pairing (a traceback from zip, or a seed
    silently dropped) instead of a usage error."""
    with pytest.raises(SystemExit) as stopped:
        argv = ("--a", str(arms["a0"]), str(arms["a1"]), "--b", str(arms["b0"]))
        call_main(script("paired_arms"), monkeypatch, *argv)
    assert stopped.value.code == 2
    assert "--a has 2 folders and --b 1" in capsys.readouterr().err


# --- stopping_rules.py -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_env():
    """The persona world's test conversations."""
    return make_env("persona_world", split="test")


def first_turn(env, goal: int = 0):
    """`env` reset to goal `goal`'s opening."""
    env.reset(seed=0, options={"goal_index": goal})
    return env


def test_confident_ask_recommends_when_the_top_slate_holds_theta(script, world_env) -> None:
    """Guards against the confidence read off the k lowest-scored candidates and against a strict
    threshold: with the uniform ranker each of the n candidates holds 1/n of the mass, so the top-10
    slate holds exactly 10/n; popularity puts nearly all of it on its top 10."""
    rules = script("stopping_rules")
    env = first_turn(world_env)
    n = env.state.candidate_items().size
    assert n > 20
    uniform = RankerSpec.parse("uniform").build(env.catalog, None)
    for theta, kind in ((10 / n, "recommend"), (10 / n + 1e-6, "ask"), (0.01, "recommend")):
        policy = rules.ConfidentAskPolicy(uniform, 5, theta)
        policy.reset(np.random.default_rng(0))
        action = policy.act(env)
        assert (len(action["items"]) > 0) == (kind == "recommend"), theta
    popularity = RankerSpec.parse("popularity").build(env.catalog, None)
    policy = rules.ConfidentAskPolicy(popularity, 5, 0.5)
    policy.reset(np.random.default_rng(0))
    assert policy.act(env) == policy.slate(env)


def test_confident_ask_recommends_once_the_slate_holds_every_candidate(script, world_env) -> None:
    """Guards against the confidence test skipped when few candidates are left: with at most k
    candidates the top-k slate holds all of the mass, so even θ = 1 recommends, though ask-N with
    questions left would ask."""
    rules = script("stopping_rules")
    uniform = RankerSpec.parse("uniform").build(world_env.catalog, None)
    asker = AskThenRecommendPolicy(RankerSpec.parse("popularity").build(world_env.catalog, None), 20)
    could_ask = 0
    for goal in range(10):
        world_env.reset(seed=0, options={"goal_index": goal})
        while world_env.state.candidate_items().size > world_env.slate_size:  # narrow by asking
            world_env.step(asker.act(world_env))
        plain = AskThenRecommendPolicy(uniform, 20)
        could_ask += len(plain.act(world_env)["items"]) == 0
        policy = rules.ConfidentAskPolicy(uniform, 20, 1.0)
        policy.reset(np.random.default_rng(0))
        action = policy.act(world_env)
        assert sorted(action["items"]) == sorted(world_env.state.candidate_items().tolist()), goal
    assert could_ask > 0


@pytest.mark.parametrize("reserve", [1, 2])
def test_reserve_recommends_in_exactly_the_last_turns(script, world_env, reserve: int) -> None:
    """Guards against an off-by-one in the reserve: ask-until-1 with reserve R asks until R agent
    turns are left, then recommends in each of those R (of max_turns − 1 agent turns)."""
    rules = script("stopping_rules")
    ranker = RankerSpec.parse("popularity").build(world_env.catalog, None)
    policy = rules.ReserveAskUntilPolicy(ranker, 1, reserve)
    records = evaluate(world_env, policy, np.arange(20), 0)
    full = [r.kinds for r in records if r.agent_actions == world_env.max_turns - 1]
    assert full, "no conversation went the whole length"
    agent_turns = world_env.max_turns - 1
    for kinds in full:
        assert kinds == ("ask",) * (agent_turns - reserve) + ("recommend",) * reserve


def stopping_lines(out: str) -> dict[str, str]:
    """stopping_rules' lines by policy name (before the first colon)."""
    return dict(line.split(": ", 1) for line in out.splitlines()[1:])


def test_stopping_rules_pairs_with_the_reference_and_bounds_over_the_asks(
    script, monkeypatch, capsys, world_env
) -> None:
    """Guards against the reference not played first (the others then unpaired), a difference taken
    the wrong way round, the conversations played with seed 0 instead of --seed, a reserve rule's K
    and R swapped, and the oracle bound over SR@10, as a mean over the asks, or as a max over every
    policy (the reserve rules succeed where no ask-N does)."""
    rules = script("stopping_rules")
    argv = ("-d", "persona_world", "--ranker", "popularity", "-n", "8", "--seed", "2")
    argv += ("--asks", "1", "3", "10", "--reference", "3", "--until-reserve", "1:1", "50:1")
    call_main(rules, monkeypatch, *argv)
    lines = stopping_lines(capsys.readouterr().out)
    ranker = RankerSpec.parse("popularity").build(world_env.catalog, None)
    indices = evaluation_indices(world_env.goals.n_goals, 8, 2)
    sr = {
        n: per_episode_metrics(evaluate(world_env, AskThenRecommendPolicy(ranker, n), indices, 2))["SR@15"]
        for n in (1, 3, 10)
    }
    assert f"SR@15 {sr[3].mean():.3f}," in lines["ask-3"] and "−" not in lines["ask-3"]
    for n in (1, 10):
        assert lines[f"ask-{n}"].endswith(f"; SR@15 − ask-3 {ci_text(bootstrap_ci(sr[n] - sr[3]))}")
    bound = np.maximum(np.maximum(sr[1], sr[3]), sr[10]).mean()
    assert lines["oracle over ask-{1,3,10}"] == f"SR@15 {bound:.3f}"
    names = ["ask-3", "ask-1", "ask-10", "ask-until-1, last 1", "ask-until-50, last 1"]
    assert list(lines) == [*names, "oracle over ask-{1,3,10}"]


def test_stopping_rules_refuses_a_reference_not_among_the_asks(script, monkeypatch, capsys) -> None:
    """Guards against a --reference outside --asks being played unpaired (every difference left
    out) instead of refused before any conversation."""
    argv = ("-d", "persona_world", "--ranker", "popularity", "-n", "2", "--asks", "1", "2")
    with pytest.raises(SystemExit) as stopped:
        call_main(script("stopping_rules"), monkeypatch, *argv, "--reference", "5")
    assert stopped.value.code == 2
    assert "--reference 5 must be one of --asks [1, 2]" in capsys.readouterr().err


# --- lookahead.py ----------------------------------------------------------------------------------


@pytest.mark.real_data
def test_lookahead_pairs_each_search_with_the_reference(script, monkeypatch, capsys, real_data_dir) -> None:
    """Guards against a search paired with the search before it instead of ask-N, a difference
    taken the wrong way round, the conversations played with seed 0 instead of --seed, and a
    --temperatures value left out."""
    argv = ("-d", "lastfm_star", "--data-dir", str(real_data_dir), "--ranker", "uniform+split", "-n", "10")
    argv += ("--seed", "1", "--reference", "1", "--depths", "1", "2", "--temperatures", "1", "0.5")
    call_main(script("lookahead"), monkeypatch, *argv)
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    env = make_env("lastfm_star", data_dir=real_data_dir, split="test")
    ranker = RankerSpec.parse("uniform+split").build(env.catalog, real_data_dir)
    indices = evaluation_indices(env.goals.n_goals, 10, 1)

    def sr15(policy) -> np.ndarray:
        return per_episode_metrics(evaluate(env, policy, indices, 1))["SR@15"]

    ask = sr15(AskThenRecommendPolicy(ranker, 1))
    assert lines["ask-1"].startswith("SR@5 ") and f"SR@15 {ask.mean():.3f}," in lines["ask-1"]
    searches = [LookaheadPolicy(ranker, d, 1, t) for d in (1, 2) for t in (1.0, 0.5)]
    assert list(lines) == ["ask-1", *(search.name for search in searches)]
    for search in searches:
        paired = ci_text(bootstrap_ci(sr15(search) - ask))
        assert f"; SR@15 − ask-1 {paired} (" in lines[search.name], search.name


@pytest.mark.real_data
def test_lookahead_refuses_a_holdout_where_valid_is_whole(script, monkeypatch, capsys, real_data_dir) -> None:
    """Guards against --holdout on a catalogue whose profiles pre-train on train (LastFM*) playing
    its whole valid split as if it were a hold-out."""
    argv = ("-d", "lastfm_star", "--data-dir", str(real_data_dir), "--ranker", "uniform+split", "-n", "2")
    with pytest.raises(SystemExit) as stopped:
        call_main(script("lookahead"), monkeypatch, *argv, "--holdout", "--depths", "1")
    assert stopped.value.code == 2
    assert "lastfm_star pre-trains on train: its whole valid split is held out" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.real_data
def test_lookahead_holdout_plays_valids_held_out_conversations(script, monkeypatch, capsys, real_data_dir):
    """Guards against --holdout playing the held-out interactions under the test split, or the
    conversations drawn for the test split played among the hold-out's goals."""
    argv = ("-d", "yelp_star", "--data-dir", str(real_data_dir), "--ranker", "uniform+profile+split")
    call_main(script("lookahead"), monkeypatch, *argv, "-n", "6", "--seed", "1", "--reference", "3",
              "--holdout", "--depths", "1")  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "yelp_star valid hold-out, uniform+profile+split: 6 conversations (seed 1)"
    test_env = make_env("yelp_star", data_dir=real_data_dir, split="test")
    ranker = RankerSpec.parse("uniform+profile+split").build(test_env.catalog, real_data_dir)
    held_out = profile_holdout(test_env.catalog)
    env = make_env(catalog=test_env.catalog, split="valid", goal_interactions=held_out)
    records = evaluate(env, AskThenRecommendPolicy(ranker, 3), evaluation_indices(env.goals.n_goals, 6, 1), 1)
    line = ", ".join(f"{k} {v.mean():.3f}" for k, v in per_episode_metrics(records).items())
    assert out[1].startswith(f"ask-3: {line} (")


# --- seed_overlap.py -------------------------------------------------------------------------------


def test_seed_overlap_counts_a_shared_goal_only_at_its_position(script, monkeypatch) -> None:
    """Guards against a conversation of seed s + 1 counted when seed s drew its goal at another
    position (the count is of conversations both runs train on at the same point)."""
    overlap = script("seed_overlap")
    streams = {  # (seed, env) -> goals, in order
        (0, 0): [1, 2, 3],
        (0, 1): [4, 5, 6],
        (1, 0): [2, 1, 3],  # 3 at the same position as seed 0's env 0; 2 and 1 elsewhere only
        (1, 1): [5, 9, 6],  # 5 at position 0 of no env of seed 0 (env 1 has it at 1); 6 at env 1's 2
    }
    monkeypatch.setattr(overlap, "goal_stream", lambda d, p, r, seed, k, n: streams[seed, k][:n])
    assert overlap.shared("any", Path("."), lambda seed, k: seed + k, 0, 2, 3) == 2


@pytest.mark.real_data
def test_seed_overlap_goal_stream_walks_one_seeded_env(script, real_data_dir: Path) -> None:
    """Guards against the env reseeded with its first seed at every conversation (one goal stream
    repeated instead of the env's own sequence): on LastFM* goals ignore the actions, so the stream
    is the env's resets in turn."""
    overlap = script("seed_overlap")
    rule = overlap.RULES["training_env_seed (now)"]
    env = make_env("lastfm_star", data_dir=real_data_dir)
    expected = [int(env.reset(seed=rule(3, 1))[1]["goal_index"])]
    expected += [int(env.reset()[1]["goal_index"]) for _ in range(4)]
    assert len(set(expected)) > 1
    assert overlap.goal_stream("lastfm_star", real_data_dir, rule, 3, 1, 5) == expected


@pytest.mark.real_data
def test_seed_overlap_shares_are_of_every_envs_conversations(script, monkeypatch, capsys, real_data_dir):
    """Guards against the printed share taken of one env's conversations instead of all envs'
    (envs x conversations)."""
    argv = (
        "--data-dir",
        str(real_data_dir),
        "--datasets",
        "lastfm_star",
        "--envs",
        "3",
        "--conversations",
        "2",
    )
    call_main(script("seed_overlap"), monkeypatch, *argv)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "seeds 0 and 1, 3 envs x 2 conversations"
    rows = [line.split(" | ") for line in out if line.startswith("| lastfm_star")]
    # SB3's seed + k: seed 1's envs 0 and 1 are seed 0's envs 1 and 2, so 4 of the 6 conversations
    assert rows[0][2] == "4 of 6 (67%) |"
    assert rows[1][2].endswith(" of 6 (0%) |")


# --- bench_env.py ----------------------------------------------------------------------------------


def test_bench_env_rates_count_the_conversations_steps(script, world_env) -> None:
    """Guards against conversations per second timed over the env-only replay, or the two step
    rates swapped: steps/s over conversations/s of the same timing is the steps per conversation,
    counted here by playing each conversation as the benchmark seeds it."""
    bench = script("bench_env")
    episodes = 12
    env_rate, both_rate, conv_rate = bench.measure("persona_world", None, "ask-4", episodes)
    env = world_env
    policy = make_rule_policy("ask-4", RankerSpec.default("persona_world").build(env.catalog, None))
    steps = sum(
        run_episode(
            env, policy, np.random.default_rng(int(i)), seed=int(i), options={"goal_index": int(i)}
        ).agent_actions
        for i in evaluation_indices(env.goals.n_goals, episodes, 0)
    )
    assert both_rate / conv_rate == pytest.approx(steps / episodes, rel=1e-9)
    assert env_rate > 0 and both_rate > 0


def test_bench_env_prints_each_rate_in_its_column(script, monkeypatch, capsys, world_env) -> None:
    """Guards against the printed env-only and env+rule columns swapped: env+rule steps/s over
    conv/s is the steps per conversation (both from one timing), which the env-only rate is not."""
    bench = script("bench_env")
    call_main(bench, monkeypatch, "--episodes", "12", "--datasets", "persona_world")
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["dataset", "ranker", "env", "steps/s", "env+rule", "steps/s", "conv/s"]
    name, ranker, env_rate, both_rate, conv_rate = row.split()
    assert (name, ranker) == ("persona_world", RankerSpec.default("persona_world").name)
    env = world_env
    policy = make_rule_policy("ask-4", RankerSpec.default("persona_world").build(env.catalog, None))
    steps = sum(
        run_episode(
            env, policy, np.random.default_rng(int(i)), seed=int(i), options={"goal_index": int(i)}
        ).agent_actions
        for i in evaluation_indices(env.goals.n_goals, 12, 0)
    )
    both, conversations = float(both_rate.replace(",", "")), float(conv_rate.replace(",", ""))
    # the steps per conversation within the printed figures' rounding (whole steps/s, 0.1 conv/s)
    assert (both - 0.5) / (conversations + 0.05) <= steps / 12 <= (both + 0.5) / (conversations - 0.05)
    assert float(env_rate.replace(",", "")) > 0


def test_bench_env_reads_the_real_datasets_from_its_data_dir(script, monkeypatch, tmp_path) -> None:
    """Guards against --data-dir given to the generated persona world only, so LastFM* is read from
    the default folder instead of the one named."""
    missing = tmp_path / "no-data-here"
    argv = ("--episodes", "2", "--datasets", "lastfm_star", "--data-dir", str(missing))
    with pytest.raises(CRSError, match=str(missing)):
        call_main(script("bench_env"), monkeypatch, *argv)
