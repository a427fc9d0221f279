"""The benchmark scripts' shared command line (benchmarks/_cli.py) and their most important refusals:
counts below 1, a negative seed, a reused run of other settings, folders of another catalogue, one
folder pooled as several seeds, and bad input as one ``error:`` line instead of a traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crs.app.run_folder import EvalSummary, RunRecord
from crs.app.settings import make_settings
from envs.rollout import evaluation_indices
from policies.baseline_rankers import PopularityRanker
from policies.rules import AskThenRecommendPolicy
from simulators.errors import CRSError
from tests.benchmarks.running import BENCHMARKS, call_main


@pytest.mark.parametrize("episodes", [0, -1])
def test_evaluation_indices_refuses_fewer_than_one_episode(episodes: int) -> None:
    with pytest.raises(CRSError, match=f"at least 1, got {episodes}"):
        evaluation_indices(100, episodes, 0)


@pytest.mark.parametrize(
    ("type_name", "text"),
    [
        ("positive_int", "0"),
        ("positive_int", "-1"),
        ("non_negative_int", "-1"),
        ("positive_float", "0"),
        ("positive_float", "inf"),
        ("open_fraction", "0"),
        ("open_fraction", "1"),
        ("open_fraction", "nan"),
        ("npz_path", "tune"),
    ],
)
def test_argument_types_refuse_values_out_of_range(script, type_name: str, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text) if type_name == "npz_path" else text):
        getattr(script("_cli"), type_name)(text)


def conversation_parser(cli: ModuleType, **options: Any) -> argparse.ArgumentParser:
    """A parser with only the shared conversation options (`_cli.add_conversation_options`)."""
    parser = argparse.ArgumentParser(formatter_class=cli.HelpFormatter)
    cli.add_conversation_options(parser, ranker_help="a ranker spec", **options)
    return parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
        (["-n", "0"], "argument -n/--episodes: must be at least 1, got 0"),
        (["--split", "train"], "argument --split: invalid choice: 'train'"),
        (["--holdout"], "unrecognized arguments: --holdout"),  # only where a script asks for it
    ],
)
def test_conversation_options_refuse_a_bad_value(script, capsys, argv: list[str], message: str) -> None:
    parser = conversation_parser(script("_cli"), splits=("valid", "test"))
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--ranker", "popularity", *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_conversation_options_hold_each_scripts_defaults_and_require_a_ranker(script, capsys) -> None:
    cli = script("_cli")
    bare = conversation_parser(cli, splits=None)
    assert vars(bare.parse_args(["--ranker", "r"])) == {
        "dataset": "yelp_star",
        "data_dir": None,
        "ranker": "r",
        "episodes": 600,
        "seed": 0,
    }
    full = conversation_parser(cli, dataset="lastfm_star", episodes=5, split="valid", holdout=True)
    args = full.parse_args(["--ranker", "r", "--holdout"])
    assert (args.dataset, args.episodes, args.split, args.holdout) == ("lastfm_star", 5, "valid", True)
    assert "a ranker spec\n" in full.format_help()  # required: no "(default: None)"
    with pytest.raises(SystemExit):
        full.parse_args([])
    assert "the following arguments are required: --ranker" in capsys.readouterr().err


def test_evaluation_from_args_builds_the_parsed_conversations(script) -> None:
    cli = script("_cli")
    parser = conversation_parser(cli, dataset="persona_world")
    args = parser.parse_args(["--ranker", "popularity", "-n", "7", "--seed", "3", "--split", "valid"])
    spec, env, policy, indices = cli.evaluation_from_args(args, "ask-2")
    assert (spec.policy, spec.dataset, spec.ranker, spec.episodes, spec.seed, spec.split) == (
        "ask-2",
        "persona_world",
        "popularity",
        7,
        3,
        "valid",
    )
    assert isinstance(policy, AskThenRecommendPolicy) and policy.name == "ask-2"
    assert isinstance(policy.ranker, PopularityRanker)
    assert indices.tolist() == evaluation_indices(env.goals.n_goals, 7, 3).tolist()
    test, _, _, test_indices = cli.evaluation_from_args(args, "ask-2", split="test", episodes=4)
    assert (test.split, test.episodes, test.seed) == ("test", 4, 3)
    assert test_indices.tolist() == indices[:4].tolist()


def test_run_script_prints_a_typed_error_as_one_line_and_exits_2(script, capsys) -> None:
    def main() -> None:
        raise CRSError("--x 3 is bad; pass 2")

    with pytest.raises(SystemExit) as stopped:
        script("_cli").run_script(main)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --x 3 is bad; pass 2\n"


def test_a_script_given_a_missing_folder_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "paired_arms.py"),
            "--a",
            str(tmp_path / "a"),
            "--b",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


RECORDED = {  # bench_ablation's settings of run full-s0 with --steps 512 --test-episodes 5 --ranker r
    "ranker": "r",
    "steps": 512,
    "seed": 0,
    "user_kwargs": {"drift": 0.1},
    "test_episodes": 5,
    "eval_every": 170,
    "persona_attention": True,
    "aspect_attention": True,
    "wrapper": {"ranker_features": True},
}


def test_bench_ablation_refuses_a_finished_run_of_other_settings(script, monkeypatch, tmp_path, capsys):
    run_dir = tmp_path / "full-s0"
    run_dir.mkdir()
    RunRecord(settings=make_settings(RECORDED), name="full-s0", versions={}, written="").write(run_dir)
    metrics = {"SR@15": {"mean": 0.5}, "AT": {"mean": 9.0}, "hDCG": {"mean": 0.25}}
    summary = {"test": {"RL (full-s0)": metrics, "ask-4": metrics}, "train_seconds_this_session": 1.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    bench = script("bench_ablation")
    argv = ("--runs-dir", str(tmp_path), "--ranker", "r", "--seeds", "0", "--variants", "full")

    with pytest.raises(CRSError, match=r"steps 512 \(asked 600\).*--runs-dir"):
        call_main(bench, monkeypatch, *argv, "--steps", "600", "--test-episodes", "5")
    with pytest.raises(CRSError, match=r"user_kwargs.drift 0.1 \(asked 0.2\)"):
        call_main(bench, monkeypatch, *argv, "--steps", "512", "--test-episodes", "5", "--drift", "0.2")
    capsys.readouterr()
    call_main(bench, monkeypatch, *argv, "--steps", "512", "--test-episodes", "5")  # the same: reused
    assert "| full | 0.500 ± 0.000 | 9.00 ± 0.00 | 0.250 ± 0.000 | 0.500 |" in capsys.readouterr().out


def test_bench_ablation_checks_its_arguments_before_creating_the_runs_dir(script, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        call_main(script("bench_ablation"), monkeypatch, "--variants", "full", "nope")
    assert stopped.value.code == 2
    assert not (tmp_path / "runs").exists()


def test_failure_anatomy_refuses_folders_of_another_dataset(script, monkeypatch, tmp_path):
    summary = {"policy": "ask-4", "dataset": "persona_world", "split": "test", "episodes": 5, "seed": 0}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        EvalSummary.from_dict({**summary, "max_turns": 15}).write(tmp_path / name)
    folders = (str(tmp_path / "a"), str(tmp_path / "b"))
    with pytest.raises(CRSError, match=r"-d lastfm_star.*evaluated on persona_world"):
        call_main(script("failure_anatomy"), monkeypatch, "-d", "lastfm_star", *folders)


def test_returning_finetune_compare_refuses_one_folder_for_several_seeds(script):
    with pytest.raises(CRSError, match=r"'out/a' has no \{seed\}"):
        script("returning_finetune").compare("out/a", "out/b-s{seed}", [0, 1])


def test_compare_memory_rules_says_n_a_for_an_offset_no_change_reached(script) -> None:
    rules = script("compare_memory_rules")
    offsets = {  # every change came at the last session: only offset 0 was played
        "frozen": {0: [0.0, 1.0], 1: [], 2: []},
        "oracle": {0: [1.0, 1.0], 1: [], 2: []},
        "home": {0: [1.0, 0.0], 1: [], 2: []},
    }
    assert rules.gap_shares(offsets, "home") == ["0%", "n/a (no session there)", "n/a (no session there)"]
    offsets["oracle"][0] = [0.0, 1.0]  # the oracle no better than frozen
    assert rules.gap_shares(offsets, "home")[0] == "n/a (no gap)"


@pytest.mark.real_data
def test_seed_overlap_counts_the_conversations_neighbouring_seeds_shared(script, real_data_dir: Path) -> None:
    """On LastFM* goal draws ignore the actions: with SB3's seed + k rule, env k of seed 0 and env
    k - 1 of seed 1 walk the same goals (every conversation of 2 of the 3 envs); with
    `training_env_seed`, none of these 12 (seeded, so no chance hit can come and go)."""
    overlap = script("seed_overlap")
    old, new = overlap.RULES.values()
    assert overlap.shared("lastfm_star", real_data_dir, old, 0, 3, 4) == 2 * 4
    assert overlap.shared("lastfm_star", real_data_dir, new, 0, 3, 4) == 0
