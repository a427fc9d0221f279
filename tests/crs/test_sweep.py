"""`crs sweep`: config validation (before any task runs), the grid, atomic task folders, skipping
finished tasks on a rerun, failing tasks named (a raised error is never retried), and a sweep killed
mid-way that a rerun completes without redoing finished tasks (see test_sweep_kill.py for its workers)."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from crs.app.evaluation import run_evaluation
from crs.app.run_folder import (
    TEST_DIR,
    TRAINED_TEST,
    EvalSummary,
    RunRecord,
    task_rerun_fix,
)
from crs.app.sweep import (
    DONE_MARKER,
    MAX_SEED,
    RESULTS_FILE,
    RUNS_DIR,
    SWEEP_FILE,
    TASK_DIR_MARKER,
    SweepConfig,
    expand_grid,
    load_sweep_config,
    parse_seeds,
    read_metrics,
    run_sweep,
    sweep_groups,
    sweep_task_dirs,
    task_dir,
)
from crs.common import metrics_table
from crs.report import build_report
from simulators.errors import CRSError
from tests.crs.test_train_cmd import WORLD

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def table_text(title: str, rows: dict) -> str:
    """The rich results table as plain text, wide enough that nothing is cut."""
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(metrics_table(title, rows))
    return console.export_text()


def serial_rows(config: SweepConfig, out: Path) -> dict:
    """The reference: every task of the grid run one by one with `run_evaluation`, in this process
    (its files written under `out`)."""
    rows = {}
    for task in expand_grid(config):
        result = run_evaluation(
            task.policy,
            dataset=task.dataset,
            seed=task.seed,
            out=out / task.name,
            show_progress=False,
            **task.settings,
        )
        rows[task.name] = result.metrics
    return rows


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ config
def test_config_errors_name_each_bad_key(tmp_path) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        "seeds: [1, x]\npolicies: [ask-4, ask-lots]\ndatasets: [netflix]\neval: {episods: 3}\nfoo: 1\n",
    )
    with pytest.raises(CRSError) as caught:
        load_sweep_config(bad)
    message = str(caught.value)
    for part in (
        "seeds.1: Input should be a valid integer",
        "unknown rule policy 'ask-lots'",
        "unknown dataset 'netflix'",
        "eval.episods: Extra inputs are not permitted (known keys: data_dir, ranker,",
        "foo: Extra inputs are not permitted",
    ):
        assert part in message, (part, message)

    ablation = write(
        tmp_path / "ablation.toml", '[ablations.fast]\nepisodes = 5\n[ablations.odd]\nusr = "single"\n'
    )
    with pytest.raises(CRSError, match=r"ablations\.odd\.usr: Extra inputs are not permitted"):
        load_sweep_config(ablation)
    train = write(tmp_path / "train.yaml", "kind: train\npolicies: [ask-4]\n")
    with pytest.raises(CRSError, match="policies: not used by kind 'train'"):
        load_sweep_config(train)
    seeded = write(tmp_path / "seeded.yaml", "kind: train\ntrain: {seed: 3}\n")
    with pytest.raises(CRSError, match="train: 'seed' comes from the grid"):
        load_sweep_config(seeded)
    with pytest.raises(CRSError, match="unknown suffix"):
        load_sweep_config(write(tmp_path / "sweep.json", "{}"))


def test_seeds_counts_and_splits_are_checked_when_the_config_is_read(tmp_path) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        f"seeds: [-1, {MAX_SEED + 1}, true, 2.0]\nretries: -1\n"
        "eval: {episodes: 0, split: tset, world_seed: -3}\n",
    )
    with pytest.raises(CRSError) as caught:
        load_sweep_config(bad)
    message = str(caught.value)
    for part in (
        "seeds.0: Input should be greater than or equal to 0",
        f"seeds.1: Input should be less than or equal to {MAX_SEED}",
        "seeds.2: Input should be a valid integer",  # a boolean is not a seed
        "seeds.3: Input should be a valid integer",
        "retries: Input should be greater than or equal to 0",
        "eval.episodes: Input should be greater than or equal to 1",
        "eval.split: Input should be 'train', 'valid' or 'test'",
        "eval.world_seed: Input should be greater than or equal to 0",
    ):
        assert part in message, (part, message)


def test_nan_and_infinity_anywhere_in_the_config_are_named(tmp_path) -> None:
    yaml_config = write(
        tmp_path / "nan.yaml",
        "kind: train\ntrain: {ppo: {ent_coef: .inf}}\nablations: {hot: {rewards: {recommend_fail: .nan}}}\n",
    )
    with pytest.raises(CRSError) as caught:
        load_sweep_config(yaml_config)
    assert "train.ppo.ent_coef: inf is not a finite number" in str(caught.value)
    assert "ablations.hot.rewards.recommend_fail: nan is not a finite number" in str(caught.value)
    toml_config = write(tmp_path / "nan.toml", "seeds = [1, -inf]\n[eval]\nepisodes = nan\n")
    with pytest.raises(CRSError, match=r"seeds\.1: -inf is not a finite number; eval\.episodes: nan is not"):
        load_sweep_config(toml_config)


def test_a_key_written_twice_is_refused_not_silently_overridden(tmp_path) -> None:
    twice = write(tmp_path / "twice.yaml", "seeds: [1, 2, 3]\neval: {episodes: 5}\nseeds: [4]\n")
    with pytest.raises(CRSError, match="duplicate key 'seeds'"):
        load_sweep_config(twice)


def cli_sweep(tmp_path: Path, config_text: str, *options: str) -> tuple[int, str, Path]:
    """`crs sweep` on `config_text`: exit code, output, and the --out folder (not created beforehand)."""
    from crs.cli import app

    config = write(tmp_path / "sweep.yaml", config_text)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out), *options], env={"COLUMNS": "250"})
    return result.exit_code, result.output, out


def test_an_unknown_backend_is_refused_before_anything_runs_even_with_one_worker(tmp_path) -> None:
    code, output, out = cli_sweep(tmp_path, "eval: {episodes: 5}\n", "--workers", "1", "--backend", "bogus")
    assert code == 2, output
    assert "unknown backend 'bogus'; use --backend with one of: auto, ray, process, serial" in output
    assert not out.exists() and "tasks" not in output  # nothing read, written or run


def test_a_negative_seed_is_refused_before_any_task_starts(tmp_path) -> None:
    code, output, out = cli_sweep(tmp_path, "seeds: [-1]\neval: {episodes: 5}\n", "--backend", "serial")
    assert code == 2, output
    assert "seeds.0: Input should be greater than or equal to 0" in output
    assert not out.exists() and "retry" not in output and "failed" not in output


def test_nan_in_a_sweep_config_exits_2_before_any_task_starts(tmp_path) -> None:
    code, output, out = cli_sweep(tmp_path, "eval: {episodes: .nan}\n", "--backend", "serial")
    assert code == 2, output
    assert "eval.episodes: nan is not a finite number" in output
    assert not out.exists()


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("policies: [ask-4]\ntrain: {steps: 100}\neval: {episodes: 5}\n", "train: not used by kind 'eval'"),
        ("kind: train\ntrain: {steps: 64}\neval: {episodes: 5}\n", "eval: not used by kind 'train'"),
    ],
)
def test_a_block_another_kind_reads_is_refused_not_ignored(tmp_path, config: str, said: str) -> None:
    """Each kind reads one block (eval, train or sessions): another one would be kept in sweep.json and
    never used, so the config is refused before any task starts, naming the block."""
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 2 and said in output, output
    assert not out.exists()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ("datasets: [lastfm]\npolicies: [ask-4]\neval: {episodes: 5, data_dir: /nonexist}\n", "eval"),
        ("kind: train\ndatasets: [lastfm]\ntrain: {steps: 64, data_dir: /nonexist}\n", "train"),
        ("datasets: [lastfm]\nablations: {a: {}, b: {data_dir: /nonexist}}\n", "ablations.b"),
    ],
)
def test_a_data_dir_that_is_no_folder_is_refused_by_its_key(tmp_path, config: str, key: str) -> None:
    """Before any task starts, naming the config key (each task failed when it ran, with a hint naming
    --data-dir, which a sweep does not have)."""
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 2 and f"{key}.data_dir: /nonexist is not a folder" in output, output
    assert not out.exists()


def test_grid_is_datasets_x_policies_x_ablations_x_seeds(tmp_path) -> None:
    config = load_sweep_config(
        write(
            tmp_path / "grid.toml",
            'seeds = [1, 2, 3]\ndatasets = ["persona_world", "lastfm"]\npolicies = ["ask-4", "random"]\n'
            '[eval]\nepisodes = 50\n[ablations.default]\n[ablations.single]\nuser = "single"\n',
        )
    )
    tasks = expand_grid(config)
    assert len(tasks) == 2 * 2 * 2 * 3 == 24
    assert len({task.name for task in tasks}) == 24
    assert tasks[0].name == "persona_world-ask-4-default-s1" and tasks[-1].name == "lastfm-random-single-s3"
    assert {task.group for task in tasks if task.seed == 2} == {task.group for task in tasks}  # 8 groups
    assert len({task.group for task in tasks}) == 8
    single = [task for task in tasks if task.ablation == "single"]
    assert all(t.settings["user"] == "single" and t.settings["episodes"] == 50 for t in single)


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-4,7", [0, 1, 2, 3, 4, 7]), ("3", [3]), (" 2 , 5-6 ", [2, 5, 6]), ("4-4", [4])]
)
def test_seeds_option_reads_seeds_and_inclusive_ranges(text, seeds) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5-2", "the range '5-2' runs backwards; write 2-5"),
        ("1,x", "'x' is not a seed or a range"),
        ("0-2,2", "seed 2 is listed twice"),
        ("", "'' is not a seed or a range"),
        ("0-4294967296", "seeds lie in 0-4294967295; '0-4294967296' does not"),
        ("0-20000", "more than 10000 seeds"),
    ],
)
def test_bad_seeds_option_is_refused_before_anything_runs(tmp_path, text, message) -> None:
    code, output, out = cli_sweep(tmp_path, "eval: {episodes: 5}\n", "--seeds", text, "--backend", "serial")
    assert code == 2, output
    assert message in " ".join(output.split())
    assert not out.exists()


def test_more_seeds_into_a_sweep_folder_run_only_the_new_seeds(tmp_path) -> None:
    config = "seeds: [1]\npolicies: [ask-4]\neval: {episodes: 5}\n"
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 0, output
    first = task_dir(out, "persona_world-ask-4-default-s1")
    before = {path.name: path.read_bytes() for path in first.iterdir()}
    marker = (first / DONE_MARKER).stat().st_mtime_ns

    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial", "--seeds", "1-3")
    assert code == 0, output
    assert "3 tasks, 1 already finished" in " ".join(output.split())
    assert [path.name for path in sweep_task_dirs(out)] == [
        f"persona_world-ask-4-default-s{s}" for s in (1, 2, 3)
    ]
    assert (first / DONE_MARKER).stat().st_mtime_ns == marker  # seed 1 was not run again
    assert {path.name: path.read_bytes() for path in first.iterdir()} == before
    seeds = [json.loads((path / "task.json").read_text())["seed"] for path in sweep_task_dirs(out)]
    assert seeds == [1, 2, 3]

    # a run of one more seed alone keeps the earlier seeds in the folder's plan and results table
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial", "--seeds", "4")
    assert code == 0, output
    assert "4/4 tasks finished (this run's 1: 1 run now, 0 skipped" in " ".join(output.split())
    listing = json.loads((out / SWEEP_FILE).read_text())
    assert listing["config"]["seeds"] == [1, 2, 3, 4]
    assert [task["seed"] for task in listing["tasks"]] == [1, 2, 3, 4]
    results = json.loads((out / RESULTS_FILE).read_text())["rows"]
    assert sorted(results) == [f"persona_world-ask-4-default-s{s}" for s in (1, 2, 3, 4)]


def test_the_sweep_table_names_what_each_row_was_measured_on(tmp_path) -> None:
    """Rows of another setting or size are not mixed into one table without labels: each table's title
    names the dataset, split, conversations, setting and ranker, and results.json holds them per task."""
    config = (
        "seeds: [1, 2]\npolicies: [ask-4]\neval: {episodes: 5}\n"
        "ablations: {plain: {}, yesno: {setting: binary}, more: {episodes: 7}}\n"
    )
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 0, output
    assert "sweep: 6 tasks" in output and "sweep sweep" not in output  # a config without a name
    titles = [
        "persona_world / test: 5 conversations, multiple_choice setting, ranker popularity",
        "persona_world / test: 5 conversations, binary setting, ranker popularity",
        "persona_world / test: 7 conversations, multiple_choice setting, ranker popularity",
    ]
    text = " ".join(output.split())  # a title wraps at its table's width
    starts = [text.index(title) for title in titles]
    assert starts == sorted(starts)  # in grid order, the first ablation's table first
    tables = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    task = "persona_world-ask-4-{}-s1"
    for table, ablation in zip(tables, ["plain", "yesno", "more"], strict=True):
        rows = {a: table.count(f"-ask-4-{a}-s") for a in ("plain", "yesno", "more")}  # a name may fold
        assert rows == {a: 2 if a == ablation else 0 for a in rows}, table  # both seeds, nothing else
    labels = json.loads((out / RESULTS_FILE).read_text())["labels"]
    assert labels[task.format("yesno")] == {
        "dataset": "persona_world",
        "split": "test",
        "conversations": 5,
        "setting": "binary",
        "ranker": "popularity",
        "returning": "",
    }
    assert [labels[task.format(name)]["conversations"] for name in ("plain", "more")] == [5, 7]


def test_a_finished_task_with_damaged_files_is_named_before_any_task_runs(tmp_path) -> None:
    config = "seeds: [1, 2]\npolicies: [ask-4]\neval: {episodes: 5}\n"
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 0, output
    task = task_dir(out, "persona_world-ask-4-default-s1")
    for damage in ("task.json", "summary.json"):
        (task / damage).write_text('{"na')
        shutil.rmtree(task_dir(out, "persona_world-ask-4-default-s2"))
        code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
        text = " ".join(output.split())
        assert code == 2, output
        assert f"{damage} is corrupt" in text and "Traceback" not in output
        assert f"delete {task} and rerun `crs sweep CONFIG --out {out}`" in text
        assert not task_dir(out, "persona_world-ask-4-default-s2").exists()  # nothing ran
        shutil.rmtree(task)
        code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")  # the fix works
        assert code == 0, output


def test_a_foreign_task_or_a_lock_nested_too_deep_is_named_not_a_traceback(tmp_path) -> None:
    from crs.claims import LOCK_FILE

    config = "seeds: [1]\npolicies: [ask-4]\neval: {episodes: 5}\n"
    code, output, out = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 0, output
    foreign = out / "runs" / "zzz"
    foreign.mkdir()
    (foreign / "done").write_text("finished\n")
    (foreign / "task.json").write_text("[" * 100_000)  # RecursionError in json.loads
    code, output, _ = cli_sweep(tmp_path, config, "--backend", "serial")
    text = " ".join(output.split())
    assert code == 2 and "finished task(s) of another config: zzz" in text and "Traceback" not in output
    shutil.rmtree(foreign)
    (out / LOCK_FILE).write_text("[" * 100_000)
    code, output, _ = cli_sweep(tmp_path, config, "--backend", "serial")
    assert code == 2 and "which is unreadable" in " ".join(output.split()) and "Traceback" not in output


def test_an_ablation_s_mapping_changes_only_the_keys_it_names(tmp_path) -> None:
    # {ppo: {ent_coef: 0.05}} replaced the whole ppo block: the ablation also ran 8x the rollout and
    # 10 epochs instead of 1, and hot − base mixed those changes into what read as one
    config = write(
        tmp_path / "sweep.yaml",
        "kind: train\nseeds: [0]\n"
        "ablations: {base: {}, hot: {ppo: {ent_coef: 0.05}}, soft: {rewards: {ask_rejected: -0.2}}}\n"
        "train: {ranker: popularity, steps: 128, ppo: {n_steps: 32, batch_size: 32, n_epochs: 1},\n"
        "        rewards: {recommend_fail: -0.2}}\n",
    )
    tasks = {task.name.split("-")[2]: task.settings for task in expand_grid(load_sweep_config(config))}
    assert tasks["hot"]["ppo"] == {**tasks["base"]["ppo"], "ent_coef": 0.05}
    assert (tasks["hot"]["ppo"]["n_steps"], tasks["hot"]["ppo"]["n_epochs"]) == (32, 1)
    assert tasks["soft"]["rewards"] == {**tasks["base"]["rewards"], "ask_rejected": -0.2}
    assert tasks["soft"]["rewards"]["recommend_fail"] == -0.2
    # the persona world's recipe merges the same way: an imitation ablation keeps the capped steps
    imitation = write(
        tmp_path / "imitation.yaml",
        "kind: train\nseeds: [0]\nablations: {long: {imitation: {epochs: 5}}, copyless: {imitation: null},\n"
        "  bare: {ppo: null}}\ntrain: {ranker: popularity, steps: 4096}\n",
    )
    settings = {t.name.split("-")[2]: t.settings for t in expand_grid(load_sweep_config(imitation))}
    assert settings["long"]["imitation"]["steps"] == 4096 and settings["long"]["imitation"]["epochs"] == 5
    assert settings["copyless"]["imitation"] is None and settings["bare"]["ppo"]["subprocess"] is False


@pytest.mark.parametrize("kind", ["eval", "train"])
def test_two_ablations_with_the_same_settings_are_refused(tmp_path, kind) -> None:
    block = "eval: {episodes: 5}" if kind == "eval" else "train: {steps: 64}"
    config = f"kind: {kind}\n{block}\nablations: {{a: {{}}, b: {{user: auto}}, c: {{user: single}}}}\n"
    code, output, out = cli_sweep(tmp_path, config)
    text = " ".join(output.split())
    assert code == 2 and "ablations.b: the same settings as ablations.a (every task would run twice)" in text
    assert not out.exists()


def test_a_sweep_folder_another_run_writes_is_refused_and_a_dead_runs_lock_is_taken(tmp_path) -> None:
    from crs.claims import LOCK_FILE, FolderClaim

    config = "seeds: [1]\npolicies: [ask-4]\neval: {episodes: 5}\n"
    out = tmp_path / "out"
    with FolderClaim(out, "sweep folder", resume=True):  # a run of this process, still going
        code, output, _ = cli_sweep(tmp_path, config, "--backend", "serial")
        assert code == 2 and "is being written by process" in " ".join(output.split()), output
        assert not (out / "runs").exists()  # nothing ran
    out.mkdir(exist_ok=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "command": "x"}))
    code, output, _ = cli_sweep(tmp_path, config, "--backend", "serial")  # a killed run's lock
    assert code == 0, output
    assert not (out / LOCK_FILE).exists()


def test_ablation_names_must_begin_and_end_with_a_letter_or_digit(tmp_path) -> None:
    code, output, out = cli_sweep(tmp_path, "eval: {episodes: 5}\nablations: {a: {}, a_: {}}\n")
    assert code == 2 and "ablation name 'a_' may only use" in " ".join(output.split()), output
    assert not out.exists()


# ------------------------------------------------------------------ running
@pytest.mark.slow
def test_sweep_table_equals_serial_runs_and_a_rerun_skips_finished_tasks(tmp_path) -> None:
    config = SweepConfig.model_validate(
        {
            "seeds": [1, 2],
            "policies": ["ask-4", "max-entropy"],
            "ablations": {"default": {}, "single": {"user": "single"}},
            "eval": {"episodes": 25},
        }
    )
    out = tmp_path / "sweep"
    outcome = run_sweep(config, out, workers=2, backend="process")
    names = [task.name for task in expand_grid(config)]
    assert outcome.ran and sorted(outcome.ran) == sorted(names) and not outcome.failed and not outcome.skipped
    assert list(outcome.rows) == names  # grid order, whatever order the workers finished in
    assert table_text("t", outcome.rows) == table_text("t", serial_rows(config, tmp_path / "serial"))

    markers = {name: (task_dir(out, name) / DONE_MARKER).stat().st_mtime_ns for name in names}
    again = run_sweep(config, out, workers=2, backend="process")
    assert again.ran == [] and again.skipped == names
    assert {name: (task_dir(out, name) / DONE_MARKER).stat().st_mtime_ns for name in names} == markers
    assert table_text("t", again.rows) == table_text("t", outcome.rows)

    groups = sweep_groups(out)  # the reader `crs report` uses: configurations across seeds
    assert list(groups) == sorted({name.rsplit("-s", 1)[0] for name in names})
    assert all([p.name[-2:] for p in members] == ["s1", "s2"] for members in groups.values())


def test_a_task_that_raises_a_user_error_is_named_at_once_not_retried_and_the_others_finish(
    tmp_path,
) -> None:
    from crs.cli import app

    (tmp_path / "empty").mkdir()  # a data folder without lastfm/: its task fails when it runs
    config = write(
        tmp_path / "sweep.yaml",
        f"datasets: [persona_world, lastfm]\neval: {{episodes: 10, data_dir: {tmp_path / 'empty'}}}\n",
    )
    out = tmp_path / "out"
    args = ["sweep", str(config), "--out", str(out), "--backend", "serial"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    # The data folder holds no lastfm (a CRSError): retrying cannot help, so it is not retried.
    assert "failed lastfm-ask-4-default-s1 after 1 attempt:" in result.output
    assert "retry lastfm" not in result.output
    assert "1 task(s) failed: lastfm-ask-4-default-s1" in result.output
    assert [path.name for path in sweep_task_dirs(out)] == ["persona_world-ask-4-default-s1"]
    results = json.loads((out / "results.json").read_text())
    assert [f["name"] for f in results["failed"]] == ["lastfm-ask-4-default-s1"]
    assert list(results["rows"]) == ["persona_world-ask-4-default-s1"]

    rerun = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert rerun.exit_code == 1 and "2 tasks, 1 already finished" in rerun.output


def test_unfinished_folders_are_never_taken_for_finished_ones(tmp_path) -> None:
    config = SweepConfig.model_validate({"seeds": [1, 2], "eval": {"episodes": 8}})
    out = tmp_path / "out"
    first, second = (task.name for task in expand_grid(config))
    # An interrupted attempt and a folder without its `done` marker (e.g. copied by hand, half-written),
    # in a sweep folder (a sweep writes sweep.json before any task):
    stale = out / RUNS_DIR / f".{first}.tmp-0123abcd"
    stale.mkdir(parents=True)
    (out / SWEEP_FILE).write_text("{}")
    (stale / "summary.json").write_text("{")
    half = task_dir(out, second)
    half.mkdir()
    (half / "summary.json").write_text("{")
    assert sweep_task_dirs(out) == []

    outcome = run_sweep(config, out, backend="serial")
    assert sorted(outcome.ran) == [first, second] and outcome.skipped == []
    assert not stale.exists()
    assert (
        read_metrics(half)["SR@15"].mean
        == json.loads((half / "summary.json").read_text())["metrics"]["SR@15"]["mean"]
    )
    assert [p.name for p in sweep_task_dirs(out)] == [first, second]

    changed = SweepConfig.model_validate({"seeds": [1, 2], "eval": {"episodes": 9}})
    with pytest.raises(CRSError, match=r"holds 2 finished task\(s\) of another config"):
        run_sweep(changed, out, backend="serial")


@pytest.mark.slow
def test_a_sweep_killed_mid_way_resumes_without_redoing_finished_tasks(tmp_path) -> None:
    """SIGKILL the whole sweep (driver and worker) as soon as its first task is finished; the rerun
    runs only the rest: finished folders keep their `done` marker (same mtime), and the table matches
    the serial run."""
    config_path = write(
        tmp_path / "sweep.yaml",
        "seeds: [1, 2, 3]\npolicies: [max-entropy]\neval: {episodes: 200}\n",
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "crs.cli", "sweep", str(config_path), "--out", str(out)]
    command += ["--workers", "1", "--backend", "process"]
    sweep = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    try:
        while not (out / RUNS_DIR).is_dir() or not sweep_task_dirs(out):
            assert sweep.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no task finished in time"
            time.sleep(0.02)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # driver and its worker process, mid-way through task 2
        sweep.wait()
    finished = {path.name: (path / DONE_MARKER).stat().st_mtime_ns for path in sweep_task_dirs(out)}
    assert 1 <= len(finished) < 3, finished  # each task takes seconds: the kill came mid-sweep

    from crs.cli import app

    rerun = runner.invoke(app, command[3:], env={"COLUMNS": "250"})
    assert rerun.exit_code == 0, rerun.output
    assert f"3 tasks, {len(finished)} already finished" in rerun.output
    assert f"({3 - len(finished)} run now, {len(finished)} skipped as finished)" in rerun.output
    done_now = {path.name: (path / DONE_MARKER).stat().st_mtime_ns for path in sweep_task_dirs(out)}
    assert len(done_now) == 3 and all(done_now[name] == mtime for name, mtime in finished.items())
    assert not list((out / RUNS_DIR).glob(".*"))  # the killed attempt's scratch folder is gone
    config = load_sweep_config(config_path)
    rows = {task.name: read_metrics(task_dir(out, task.name)) for task in expand_grid(config)}
    assert table_text("t", rows) == table_text("t", serial_rows(config, tmp_path / "serial"))


@pytest.mark.slow
def test_a_train_sweep_task_equals_crs_train_and_its_folder_is_an_evaluable_run(tmp_path) -> None:
    from crs.app.settings import make_settings
    from crs.app.training import run_training

    config = SweepConfig.model_validate(
        {
            "kind": "train",
            "seeds": [0],
            "ablations": {"blind": {"persona_attention": False, "aspect_attention": False}},
            "train": {
                "steps": 128,
                "envs": 2,
                "ranker": "popularity",
                "eval_every": 0,
                "eval_episodes": 10,
                "test_episodes": 20,
                "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
            },
        }
    )
    (task,) = expand_grid(config)
    assert task.name == "persona_world-rl-blind-s0" and task.settings["persona_attention"] is False
    outcome = run_sweep(config, tmp_path / "sweep", workers=1, backend="process")
    assert outcome.ran == [task.name]
    folder = task_dir(tmp_path / "sweep", task.name)
    serial = run_training(make_settings(dict(task.settings)), name=task.name, runs_dir=tmp_path, show=False)
    expected = serial.test[serial.trained_label]  # the trained policy's row of `crs train`'s table
    assert read_metrics(folder) == expected
    evaluated = run_evaluation(str(folder), episodes=5, out=tmp_path / "eval", show_progress=False)
    assert len(evaluated.records) == 5
    # the task trained in a worker's scratch folder; its files name the folder where it lies now
    texts = {p: p.read_text() for p in folder.rglob("*") if p.suffix in (".json", ".jsonl", ".md", ".yaml")}
    assert not [
        p
        for p, text in texts.items()
        if "crs-task-" in text or "crs-train-" in text or TASK_DIR_MARKER in text
    ]
    assert f"crs eval --policy {folder} --seed" in texts[folder / "MODEL_CARD.md"]
    assert EvalSummary.read(folder / TEST_DIR / TRAINED_TEST).policy_spec == str(folder)
    # so `crs report` on the sweep pairs the trained policy with its baselines and replays its dialogues
    report = build_report([tmp_path / "sweep"], tmp_path / "report", examples=1, persona=False, figures=False)
    ((*rows,),) = [table.rows for table in report.tables]
    assert [row.label for row in rows][:1] == ["rl · blind"] and len(rows) > 1, [r.label for r in rows]
    assert report.tables[0].diffs and report.examples and "examples" not in report.unavailable


@pytest.mark.slow
def test_a_train_sweeps_baselines_pool_over_its_seeds_beside_its_tasks(tmp_path) -> None:
    """Each task's own test holds the baselines on its seed's conversations, over the ranker it pre-trained
    with its seed; the report puts them in the tasks' table, one row per baseline over the sweep's seeds,
    paired conversation by conversation."""
    config = SweepConfig.model_validate(
        {
            "kind": "train",
            "seeds": [0, 1],
            "train": {
                "world": WORLD,
                "steps": 64,
                "envs": 2,
                "pretrain_epochs": 1,
                "eval_every": 0,
                "eval_episodes": 8,
                "test_episodes": 12,
                "baselines": ["ask-4"],
                "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
            },
        }
    )
    run_sweep(config, tmp_path / "sweep", workers=1, backend="serial")
    report = build_report([tmp_path / "sweep"], tmp_path / "report", examples=0, persona=False, figures=False)
    (table,) = report.tables
    assert [(row.label, sorted(r.replica_seed for r in row.runs)) for row in table.rows] == [
        ("rl", [0, 1]),
        ("ask-4", [0, 1]),
    ]
    ((difference,),) = [table.diffs]
    assert difference.label == "ask-4" and difference.n_pairs == 24  # 12 conversations per seed
    # the input list names the sweep once, not the task folders that hold the baselines
    assert [line.text() for line in report.input_list] == [f"table 1: {tmp_path / 'sweep'} (2 tasks)"]
    # a second sweep of another configuration: its train runs are a group of their own, named by sweep
    other = SweepConfig.model_validate(
        config.model_dump(exclude_unset=True)
        | {"train": {**config.train, "ppo": {"n_steps": 32, "n_epochs": 2}}}
    )
    run_sweep(other, tmp_path / "other", workers=1, backend="serial")
    both = build_report(
        [tmp_path / "sweep", tmp_path / "other"], tmp_path / "both", examples=0, persona=False, figures=False
    )
    assert {label: len(runs) for label, runs in both.train_groups.items()} == {
        "persona_world · rl (sweep)": 2,
        "persona_world · rl (other)": 2,
    }


def test_the_commands_errors_name_paste_into_a_shell_with_spaces_in_the_paths(tmp_path) -> None:
    sweep = tmp_path / "my sweeps" / "rules; rm -rf x"
    quoted = task_rerun_fix(sweep / "runs" / "task 1").split("`")[1]
    assert shlex.split(quoted) == ["crs", "sweep", "CONFIG", "--out", str(sweep)]
    run = tmp_path / "my runs" / "run 1"
    run.mkdir(parents=True)
    with pytest.raises(CRSError) as info:
        RunRecord.read(run)
    command = str(info.value).split("`")[1]
    assert shlex.split(command) == [
        "crs",
        "train",
        "--name",
        "run 1",
        "--runs-dir",
        str(run.parent),
        "--overwrite",
    ]


def test_a_training_tasks_table_names_its_ranker_as_a_ranker_option_names_it() -> None:
    """A run's summary records its ranker as policy.json's entry: "artifact:ranker" for the one
    pre-trained into the run meant nothing in a table title; it reads "pretrain", as typed."""
    from crs.app.run_folder import TrainSummary

    def label(entry: str) -> str:
        return TrainSummary("r", "persona_world", entry, 1, 0.0, 0.0, 1, 0, 12, {}, {}, {}).label.ranker

    assert [label(e) for e in ("artifact:ranker", "artifact:ranker+profile", "popularity")] == [
        "pretrain",
        "pretrain+profile",
        "popularity",
    ]
    assert label("artifact:/runs/art+pop") == "/runs/art+pop" and label("a-later-entry") == "a-later-entry"
