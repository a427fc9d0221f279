"""The benchmark scripts' shared command line (benchmarks/_cli.py) and their most important refusals:
counts below 1, a reused run of other settings, folders of another catalogue, one folder pooled as
several seeds, and bad input as one ``error:`` line instead of a traceback."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from crs.app.run_folder import EvalSummary, RunRecord
from crs.app.settings import make_settings
from envs.rollout import evaluation_indices
from simulators.errors import CRSError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    """Import a benchmark script by name, its folder on sys.path as when it runs."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def call_main(module: ModuleType, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    module.main()


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
