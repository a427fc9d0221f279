"""`crs sweep` with ``kind: sessions`` (issue #16): one `crs eval --sessions` per (policy, ablation,
seed) task, its settings the config's ``sessions:`` block with the ablation's overrides, every bad
value refused before any task starts; a task's folder equals a direct `run_session_evaluation` of it
(the same conversations in every memory mode), a rerun skips finished tasks, and `crs report` draws
the per-session curves from the sweep directory as it does from `crs eval --sessions` folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crs.app.run_folder import EvalSummary
from crs.app.sessions import SessionSpec, run_session_evaluation
from crs.app.sweep import (
    DONE_MARKER,
    RESULTS_FILE,
    expand_grid,
    load_sweep_config,
    read_metrics,
    read_task,
    sweep_task_dirs,
    task_dir,
)
from crs.cli import app
from crs.report import load_inputs
from crs.report.sessions import session_comparisons
from simulators.errors import CRSError
from tests.crs.tiny_runs import pretrain_tiny

runner = CliRunner()
SESSIONS, SEQUENCES = 3, 6
MODES = ("frozen", "update")
SEEDS = (0, 1)


def config_text(ranker: Path | str, **extra: str) -> str:
    """A sessions sweep: 2 memory modes x 2 seeds of ask-2 on `ranker`; `extra` adds or replaces keys."""
    keys = {
        "name": "memory-switch",
        "kind": "sessions",
        "seeds": f"[{', '.join(map(str, SEEDS))}]",
        "policies": "[ask-2]",
        "sessions": f"{{ranker: {ranker}, regime: switch, sessions: {SESSIONS}, sequences: {SEQUENCES}}}",
        "ablations": "{" + ", ".join(f"{mode}: {{memory: {mode}}}" for mode in MODES) + "}",
        **extra,
    }
    return "".join(f"{key}: {value}\n" for key, value in keys.items() if value)


def cli_sweep(config: Path, out: Path, *options: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out), *options], env={"COLUMNS": "250"})
    return result.exit_code, result.output


# ------------------------------------------------------------------ config (no task runs)
@pytest.fixture(scope="module")
def folder(tmp_path_factory: Any) -> Path:
    """A tiny `crs pretrain` artifact of the persona world, for the config checks (they read its config)."""
    return pretrain_tiny(tmp_path_factory.mktemp("folder") / "artifact")


def test_a_task_is_the_sessions_block_with_the_ablations_overrides(tmp_path: Path, folder: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(config_text(folder, sessions=f"{{ranker: {folder}, regime: drift, sequences: 9}}"))
    tasks = expand_grid(load_sweep_config(path))
    assert [task.name for task in tasks] == [
        f"persona_world-ask-2-{mode}-s{seed}" for mode in MODES for seed in SEEDS
    ]
    for task in tasks:
        assert task.kind == "sessions" and task.policy == "ask-2" and task.dataset == "persona_world"
        expected = SessionSpec(
            policy="ask-2",
            seed=task.seed,
            ranker=str(folder),
            regime="drift",
            sequences=9,
            memory=task.ablation,
        )
        assert task.settings == expected.model_dump(exclude={"policy", "dataset", "seed"})
        assert task.settings["memory"] == task.ablation and task.settings["sessions"] == 8  # the default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"sessions": "{ranker: RANKER, memroy: update}"},
            "sessions.memroy: Extra inputs are not permitted (known keys: data_dir, ranker,",
        ),
        (
            {"ablations": "{frozen: {memory: frozen}, forgetful: {memory: forgetful}}"},
            "ablations.forgetful.memory: Input should be 'frozen', 'update' or 'oracle'",
        ),
        (
            {"datasets": "[persona_world, mcmipl_lastfm_star]"},
            "datasets: kind 'sessions' plays returning users of persona_world, lastfm, lastfm_star, "
            "yelp_star; mcmipl_lastfm_star: not one of them",
        ),
        (
            {"datasets": "[persona_world, lastfm]", "sessions": "{ranker: RANKER, regime: drift}"},
            "sessions.regime: drift needs the persona world's generative truth; on lastfm use stable or "
            "switch",
        ),
        (
            {"datasets": "[lastfm]", "ablations": "{a: {memory: update}, b: {memory: frozen, regime: new}}"},
            "ablations.b.regime: new needs the persona world's generative truth",
        ),
        ({"sessions": "{ranker: RANKER, sessions: 5000}"}, "sessions.sessions: Input should be less than or"),
        ({"train": "{steps: 128}"}, "train: not used by kind 'sessions'"),
        ({"eval": "{episodes: 5}"}, "eval: not used by kind 'sessions'"),
        ({"kind": "eval"}, "sessions: not used by kind 'eval' (its settings are the eval: block); remove it"),
        ({"sessions": "{regime: switch}"}, "sessions.ranker: the rule policy 'ask-2' needs a persona ranker"),
        ({"sessions": "{ranker: popularity}"}, "sessions.ranker: 'popularity' has no personas"),
        (
            {"sessions": "{ranker: RANKER, sessions: 1}"},
            "sessions.sessions: Input should be greater than or equal to 2",
        ),
        (
            {"sessions": "{ranker: RANKER, sequences: true}"},
            "sessions.sequences: Input should be a valid integer",
        ),
        (
            {"sessions": "{ranker: RANKER, regime: wobble}"},
            "sessions.regime: Input should be 'stable', 'drift',",
        ),
        ({"sessions": "{ranker: RANKER, sequences: .nan}"}, "sessions.sequences: nan is not a finite number"),
        ({"sessions": "{ranker: RANKER, seed: 3}"}, "sessions: seed comes from the grid"),
        ({"ablations": "{a: {seed: 3}}"}, "ablations.a.seed: comes from the grid"),
        (
            {"ablations": "{a: {memory: update}, b: {memory: update}}"},
            "ablations.b: the same settings as ablations.a",
        ),
        (  # no memory_update runs DEFAULT_RULE, whose variant is "prior": the same tasks
            {"ablations": "{a: {memory: update}, b: {memory: update, memory_update: prior}}"},
            "ablations.b: the same settings as ablations.a",
        ),
    ],
)
def test_bad_sessions_configs_are_refused_before_any_task_starts_naming_the_key(
    tmp_path: Path, folder: Path, extra: dict[str, str], message: str
) -> None:
    text = config_text(folder, **{key: value.replace("RANKER", str(folder)) for key, value in extra.items()})
    config = tmp_path / "sweep.yaml"
    config.write_text(text)
    with pytest.raises(CRSError) as caught:
        load_sweep_config(config)
    assert message in str(caught.value)
    out = tmp_path / "out"
    code, output = cli_sweep(config, out, "--backend", "serial")
    assert code == 2, output
    assert message.split(":")[0] in output and not out.exists()  # nothing written, no task started


# ------------------------------------------------------------------ running (a tiny `crs pretrain` artifact)
@pytest.fixture(scope="module")
def artifact(tmp_path_factory: Any) -> Path:
    """A tiny `crs pretrain` artifact of the default persona world (what `crs eval --sessions` loads)."""
    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "art")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: Any, artifact: Path) -> tuple[Path, Path, str]:
    """The sweep run once through `crs sweep` (process backend): its config, directory and output."""
    root = tmp_path_factory.mktemp("sweep")
    config = root / "sweep.yaml"
    config.write_text(config_text(artifact))
    out = root / "out"
    code, output = cli_sweep(config, out, "--backend", "process", "--workers", "1")
    assert code == 0, output
    return config, out, output


@pytest.mark.slow
def test_each_task_commits_the_sessions_summary_of_its_memory_mode(swept: tuple[Path, Path, str]) -> None:
    config, out, output = swept
    tasks = expand_grid(load_sweep_config(config))
    assert "sweep memory-switch: 4 tasks, 0 already finished" in output
    assert "4/4 tasks finished (4 run now, 0 skipped as finished)" in output
    assert [path.name for path in sweep_task_dirs(out)] == sorted(task.name for task in tasks)
    results = json.loads((out / RESULTS_FILE).read_text())
    assert list(results["rows"]) == [task.name for task in tasks] and results["failed"] == []
    for task in tasks:
        folder = task_dir(out, task.name)
        assert read_task(folder) == task.to_dict() and read_task(folder)["kind"] == "sessions"
        summary = EvalSummary.read(folder)
        block = summary.sessions
        assert block is not None and block.memory == task.ablation and block.regime == "switch"
        assert (block.sessions, block.sequences, len(block.rows)) == (SESSIONS, SEQUENCES, SESSIONS)
        assert bool(block.rule) == (task.ablation == "update")  # the update's constants, only there
        assert summary.seed == task.seed and summary.episodes == SESSIONS * SEQUENCES
        assert summary.policy == f"ask-2 (memory {task.ablation})"
        lines = (folder / "episodes.jsonl").read_text().splitlines()
        assert len(lines) == SESSIONS * SEQUENCES
        assert read_metrics(folder) == summary.metrics
        assert results["rows"][task.name]["SR@15"]["mean"] == summary.metrics["SR@15"].mean
        # its table and label say these are returning users, with their regime and sessions
        returning = f"returning users ({SEQUENCES} x {SESSIONS} sessions, regime switch)"
        assert results["labels"][task.name]["returning"] == returning
    assert f"persona_world / test: returning users ({SEQUENCES} x {SESSIONS} sessions, regime switch):" in (
        " ".join(output.split())
    )


@pytest.mark.slow
def test_a_task_equals_a_direct_session_evaluation_and_modes_play_the_same_conversations(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    config, out, _ = swept
    played: dict[tuple[str, int], list[tuple[int, int, list[int]]]] = {}
    for task in expand_grid(load_sweep_config(config)):
        folder = task_dir(out, task.name)
        summary, _, direct = run_session_evaluation(
            policy=task.policy,
            dataset=task.dataset,
            seed=task.seed,
            out=tmp_path / task.name,
            show_progress=False,
            **task.settings,
        )
        swept_summary = EvalSummary.read(folder)
        assert swept_summary.metrics == summary.metrics and swept_summary.sessions == summary.sessions
        assert swept_summary.conversations == summary.conversations
        assert (folder / "episodes.jsonl").read_bytes() == (direct / "episodes.jsonl").read_bytes()
        lines = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
        played[(task.ablation, task.seed)] = [(x["sequence"], x["session"], x["targets"]) for x in lines]
    for seed in SEEDS:  # paired: every memory mode of a seed played the same sessions
        assert played[("frozen", seed)] == played[("update", seed)]
    assert played[("frozen", 0)] != played[("frozen", 1)]  # another seed, other users


@pytest.mark.slow
def test_a_rerun_skips_the_finished_tasks(swept: tuple[Path, Path, str]) -> None:
    config, out, _ = swept
    markers = {path.name: (path / DONE_MARKER).stat().st_mtime_ns for path in sweep_task_dirs(out)}
    code, output = cli_sweep(config, out, "--backend", "serial")
    assert code == 0, output
    assert "4 tasks, 4 already finished" in output and "(0 run now, 4 skipped as finished)" in output
    assert {path.name: (path / DONE_MARKER).stat().st_mtime_ns for path in sweep_task_dirs(out)} == markers


@pytest.mark.slow
def test_crs_report_draws_the_per_session_curves_of_the_sweep(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, out, _ = swept
    (comparison,) = session_comparisons(load_inputs([out]).evals)
    assert [series.memory for series in comparison.series] == list(MODES)
    assert all(series.seeds == SEEDS for series in comparison.series)
    assert comparison.sessions == SESSIONS and comparison.sequences == SEQUENCES
    (paired,) = comparison.paired  # update - frozen, on the conversations both played
    assert paired.memory == "update" and paired.n_sequences == len(SEEDS) * SEQUENCES
    # the same curves as from the tasks' folders passed one by one, as `crs eval --sessions` outputs
    (by_folder,) = session_comparisons(load_inputs(sweep_task_dirs(out)).evals)
    assert [s.by_session for s in by_folder.series] == [s.by_session for s in comparison.series]

    report = tmp_path / "report"
    result = runner.invoke(app, ["report", str(out), "--out", str(report), "--examples", "0"])
    assert result.exit_code == 0, result.output
    markdown = (report / "report.md").read_text()
    title = (
        f"persona_world (test) · ask-2 · regime switch · {SESSIONS} sessions · {SEQUENCES} users x 2 seeds"
    )
    assert f"## Returning users — {title}" in markdown
    assert "| frozen | 0, 1 |" in markdown and "| update | 0, 1 |" in markdown
    assert (report / "sessions.png").stat().st_size > 1000
    assert "ask-2 · frozen" in markdown and "ask-2 · update" in markdown  # the overall table's rows
    # the persona analysis says why it is not there (not that the ranker failed to load)
    assert (
        "returning-user runs (`crs eval --sessions`), whose persona tracking is in the returning-user table"
        in " ".join(result.output.split())
    )
    assert "could not load persona ranker" not in result.output
