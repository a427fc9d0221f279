"""`crs sweep`'s grid, config checks and sweep-folder files, and the run-folder files its tasks hold,
each test guarding one plausible bug that the end-to-end sweep tests would let through: a repeated or
grid-set key taken silently, a check run on the first dataset only, a task folder named by a run
directory's whole path, a path written into a task's files that breaks its JSON, seeds of a group out of
order once they pass 9, a sweep folder's listing that loses a seed, a reader that takes an unfinished
attempt for a finished task, a resumed curve that reports a step it dropped, or a run file read without
its checks."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crs.app.evaluation import run_evaluation
from crs.app.run_folder import (
    TEST_DIR,
    CurveFile,
    EvalSummary,
    RunRecord,
    TrainSummary,
    eval_command,
    read_episodes,
    write_test_folders,
)
from crs.app.settings import make_settings
from crs.app.sweep import (
    DONE_MARKER,
    RUNS_DIR,
    SWEEP_FILE,
    TASK_DIR_MARKER,
    SweepConfig,
    SweepTask,
    _relocatable,
    commit_task,
    expand_grid,
    load_sweep_config,
    parse_seeds,
    planned_tasks,
    read_task,
    remove_stale_attempts,
    run_sweep,
    sweep_groups,
    sweep_task_dirs,
    task_dir,
    with_seeds,
    with_train_steps,
)
from envs.metrics import EpisodeRecord
from simulators.errors import CRSError


def config_file(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    """`text` written as the sweep config `folder/name`."""
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ the config
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seeds: [1, 2, 1]\n", "seeds: repeated entries: 1"),
        ("policies: [ask-4, max-entropy, ask-4]\n", "policies: repeated entries: ask-4"),
        ("datasets: [persona_world, persona_world]\n", "datasets: repeated entries: persona_world"),
        # two names of one rule ran as two policies, and the report said they "shared" the best
        ("policies: [ask-4, ask-04]\n", r"policies: ask-4 and ask-04 are one rule \(ask-4\)"),
    ],
)
def test_a_repeated_grid_entry_is_refused_when_the_config_is_read(
    tmp_path: Path, text: str, message: str
) -> None:
    """A repeated seed (policy, dataset) would give two tasks one folder: refused by name, before any
    task runs, not left to the grid to trip over."""
    with pytest.raises(CRSError, match=message):
        load_sweep_config(config_file(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: train\ntrain: {dataset: lastfm}\n", "train: 'dataset' comes from the grid; list it under"),
        ("kind: train\ntrain: {seed: 4}\n", "train: 'seed' comes from the grid; list it under 'seeds'"),
        (
            "kind: train\nablations: {other: {dataset: lastfm}}\n",
            "ablations.other.dataset: comes from the grid; list it under 'datasets'",
        ),
        ("kind: train\nablations: {later: {seed: 4}}\n", "ablations.later.seed: comes from the grid"),
        ("ablations: {other: {seed: 3}}\n", "ablations.other.seed: comes from the grid; list it under"),
        (
            "ablations: {other: {policy: max-entropy}}\n",
            "ablations.other.policy: comes from the grid; list it under 'policies'",  # it said 'policys'
        ),
        ("eval: {dataset: lastfm}\n", "dataset comes from the grid: list them under policies/datasets/seeds"),
    ],
)
def test_a_grid_key_set_in_a_block_or_an_ablation_is_refused_not_ignored(
    tmp_path: Path, text: str, message: str
) -> None:
    """A dataset or seed given in ``train:`` or an ablation would be silently overridden by the grid (or
    override it, training on another dataset than the task's name says): each is refused by its key."""
    with pytest.raises(CRSError, match=message):
        load_sweep_config(config_file(tmp_path, text))


def test_a_probing_rule_over_a_ranker_without_personas_is_refused_when_the_config_is_read(
    tmp_path: Path,
) -> None:
    """probe-K-ask-N over the default popularity ranker failed only when its task ran (exit 1)."""
    with pytest.raises(CRSError, match=r"policies: probe-1-ask-4 probes personas, .* set eval\.ranker to"):
        load_sweep_config(config_file(tmp_path, "policies: [ask-4, probe-1-ask-4]\n"))
    text = "policies: [probe-1-ask-4]\nablations: {pop: {ranker: popularity}}\neval: {ranker: uniform}\n"
    with pytest.raises(CRSError, match=r"set ablations\.pop\.ranker to"):
        load_sweep_config(config_file(tmp_path, text))
    assert load_sweep_config(config_file(tmp_path, "policies: [probe-1-ask-4]\neval: {ranker: uniform}\n"))


def test_an_ablations_unknown_key_lists_no_key_the_grid_sets(tmp_path: Path) -> None:
    """The known keys of an eval ablation listed policy, dataset and seed, which are then refused."""
    with pytest.raises(CRSError, match=r"ablations\.other\.episods") as caught:
        load_sweep_config(config_file(tmp_path, "ablations: {other: {episods: 3}}\n"))
    known = str(caught.value).split("known keys: ")[1]
    assert "episodes" in known and not {"policy", "dataset", "seed"} & set(known.rstrip(")").split(", "))


def test_a_transe_ranker_is_checked_on_every_dataset_of_the_grid(tmp_path: Path) -> None:
    """TransE is published for lastfm alone: a grid whose *second* dataset cannot use it is refused too,
    naming that dataset (not only the first one checked), and so is LastFM* (another catalogue)."""
    both = config_file(tmp_path, "datasets: [lastfm, persona_world]\neval: {episodes: 5, ranker: transe}\n")
    with pytest.raises(CRSError, match="TransE embeddings are published for lastfm only, not persona_world"):
        load_sweep_config(both)
    star = config_file(tmp_path, "datasets: [lastfm_star]\neval: {episodes: 5, ranker: transe}\n")
    with pytest.raises(CRSError, match="published for lastfm only, not lastfm_star"):
        load_sweep_config(star)
    assert load_sweep_config(config_file(tmp_path, "datasets: [lastfm]\neval: {ranker: transe}\n"))


def test_a_transe_file_must_be_a_file_not_a_folder(tmp_path: Path) -> None:
    """``transe:PATH`` names the embeddings file: a folder there is refused when the config is read,
    not met by every task as an unreadable file."""
    folder = tmp_path / "embeddings"
    folder.mkdir()
    config = config_file(tmp_path, f"datasets: [lastfm]\neval: {{episodes: 5, ranker: 'transe:{folder}'}}\n")
    with pytest.raises(CRSError, match="no TransE file"):
        load_sweep_config(config)


def test_a_train_task_keeps_ppo_subprocess_when_the_config_asks_for_it(tmp_path: Path) -> None:
    """Sweep tasks run their envs in-process by default, but ``ppo.subprocess: true`` (in ``train:`` or
    an ablation) is the user's choice and is kept."""
    config = load_sweep_config(
        config_file(
            tmp_path,
            "kind: train\ntrain: {steps: 64}\nablations: {inside: {}, apart: {ppo: {subprocess: true}}}\n",
        )
    )
    subprocess_of = {task.ablation: task.settings["ppo"]["subprocess"] for task in expand_grid(config)}
    assert subprocess_of == {"inside": False, "apart": True}


def test_the_steps_option_sets_every_train_task_s_budget(tmp_path: Path) -> None:
    """``crs sweep --steps N`` gives every task N steps (the budget `--extend` continues to), leaving the
    config's other settings and the config itself as they were."""
    config = load_sweep_config(
        config_file(tmp_path, "kind: train\nseeds: [0, 1]\ntrain: {steps: 64, test_episodes: 12}\n")
    )
    longer = with_train_steps(config, 256)
    assert [task.settings["steps"] for task in expand_grid(longer)] == [256, 256]
    assert [task.settings["test_episodes"] for task in expand_grid(longer)] == [12, 12]
    assert [task.settings["steps"] for task in expand_grid(config)] == [64, 64]


# ------------------------------------------------------------------ the grid
def test_a_run_directory_policy_names_its_tasks_by_the_folder_name(tmp_path: Path) -> None:
    """A trained run given as a policy names its tasks by its folder's name, not by its whole path (which
    would put the machine's folders into every task name and change with the working folder)."""
    run = tmp_path / "runs" / "rc1"
    run.mkdir(parents=True)
    config = SweepConfig.model_validate({"seeds": [3], "policies": [str(run), "ask-4"]})
    assert [task.name for task in expand_grid(config)] == [
        "persona_world-rc1-default-s3",
        "persona_world-ask-4-default-s3",
    ]


def test_two_run_directories_with_one_name_are_refused_not_merged(tmp_path: Path) -> None:
    """Two runs called alike in different folders would share their task folders (the second run's task
    skipped as finished by the first's): refused, naming the shared task."""
    first, second = tmp_path / "a" / "rc1", tmp_path / "b" / "rc1"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    config = SweepConfig.model_validate({"policies": [str(first), str(second)]})
    with pytest.raises(CRSError, match="sweep tasks would share names persona_world-rc1-default-s1"):
        expand_grid(config)


@pytest.mark.parametrize(("text", "count"), [("0-6000,7000-12000", 12_002), ("0-9999,20000", 10_001)])
def test_the_seed_limit_counts_every_part_of_the_option(text: str, count: int) -> None:
    """``--seeds`` refuses more than 10,000 seeds in one call, counted over all its parts, not per part
    (each part here is under the limit; together they are over it)."""
    assert count > 10_000
    with pytest.raises(CRSError, match="more than 10000 seeds"):
        parse_seeds(text)
    assert len(parse_seeds("0-4999,5000-9999")) == 10_000  # exactly the limit is taken


def test_the_largest_seed_is_a_seed() -> None:
    """Seeds lie in 0 to 2**32 - 1 inclusive: the last one is taken, alone or ending a range."""
    assert parse_seeds("4294967295") == [2**32 - 1]
    assert parse_seeds("4294967294-4294967295") == [2**32 - 2, 2**32 - 1]


# ------------------------------------------------------------------ the sweep folder
def sweep_task(name: str = "persona_world-ask-4-default-s1", seed: int = 1) -> SweepTask:
    """A task of the default eval grid, as `expand_grid` names it."""
    return SweepTask(name, name.rsplit("-s", 1)[0], "eval", "persona_world", "ask-4", "default", seed, {})


def test_a_path_written_into_a_task_s_json_files_stays_valid_json(tmp_path: Path) -> None:
    """A train task's files name its folder; a sweep folder whose path holds a quote or a backslash must
    still give JSON that reads back as that path (and plain text files the path as it is)."""
    out = tmp_path / 'my "best" sweep\\2024'
    files = {
        "summary.json": json.dumps({"policy_spec": TASK_DIR_MARKER}).encode(),
        "tested/trained/episodes.jsonl": (json.dumps({"run": f"{TASK_DIR_MARKER}/x"}) + "\n").encode(),
        "MODEL_CARD.md": f"crs eval --policy {TASK_DIR_MARKER}\n".encode(),
    }
    folder = commit_task(out, sweep_task(), files)
    assert folder == task_dir(out, "persona_world-ask-4-default-s1")
    assert json.loads((folder / "summary.json").read_text()) == {"policy_spec": str(folder)}
    line = (folder / "tested" / "trained" / "episodes.jsonl").read_text()
    assert json.loads(line) == {"run": f"{folder}/x"}
    assert (folder / "MODEL_CARD.md").read_text() == f"crs eval --policy {folder}\n"


def test_a_worker_s_folder_is_replaced_in_every_text_file_it_returns(tmp_path: Path) -> None:
    """The scratch folder a task trained in is replaced by the marker in its JSON, JSONL, YAML, CSV and
    Markdown files (the model card's commands), and nowhere else (a model zip is left byte for byte)."""
    scratch = tmp_path / "crs-task-1-abc" / "run"
    text = f"path {scratch}/best_model.zip\n".encode()
    names = ["summary.json", "eval.jsonl", "config.yaml", "eval.csv", "MODEL_CARD.md", "model.zip"]
    relocatable = _relocatable(dict.fromkeys(names, text), scratch)
    expected = f"path {TASK_DIR_MARKER}/best_model.zip\n".encode()
    assert {name: data == expected for name, data in relocatable.items()} == {
        **dict.fromkeys(names[:-1], True),
        "model.zip": False,
    }
    assert relocatable["model.zip"] == text


def test_a_worker_s_folder_reached_through_a_link_is_replaced_whole(tmp_path: Path) -> None:
    """The scratch folder may be named through a link (macOS: /var/... is /private/var/...): when one
    name ends the other, the longer is replaced first, so no prefix of the real path is left over."""
    real = tmp_path / "private" / str(tmp_path).lstrip("/") / "run"
    real.mkdir(parents=True)
    link = tmp_path / "run"
    link.symlink_to(real)
    assert str(real).endswith(str(link))  # one name ends the other
    files = {"summary.json": f'["{real}", "{link}"]'.encode()}
    relocated = json.loads(_relocatable(files, link)["summary.json"])
    assert relocated == [TASK_DIR_MARKER, TASK_DIR_MARKER]


def test_an_unfinished_attempt_with_its_marker_is_not_a_finished_task(tmp_path: Path) -> None:
    """A commit killed after writing ``done`` but before its rename leaves ``runs/.<task>.tmp-<id>/`` with
    the marker: readers take only the renamed folders, sorted by name."""
    runs = tmp_path / RUNS_DIR
    for name in ("b-s1", ".b-s2.tmp-0123abcd", "a-s1", "c-s1"):
        (runs / name).mkdir(parents=True)
        (runs / name / DONE_MARKER).write_text("finished\n")
    (runs / "unmarked").mkdir()
    assert [path.name for path in sweep_task_dirs(tmp_path)] == ["a-s1", "b-s1", "c-s1"]


def test_a_group_lists_its_seeds_in_numeric_order_past_nine(tmp_path: Path) -> None:
    """`crs report` pairs a group's runs by seed: seeds 2, 10 and 9 come back as 2, 9, 10 (not in the
    folders' name order, where s10 sorts before s2)."""
    out = tmp_path / "sweep"
    for seed in (2, 10, 9):
        task = sweep_task(f"persona_world-ask-4-default-s{seed}", seed)
        commit_task(out, task, {})
        assert read_task(task_dir(out, task.name))["seed"] == seed
    assert {group: [path.name for path in members] for group, members in sweep_groups(out).items()} == {
        "persona_world-ask-4-default": [
            "persona_world-ask-4-default-s2",
            "persona_world-ask-4-default-s9",
            "persona_world-ask-4-default-s10",
        ]
    }


def test_seeds_run_in_any_order_are_listed_in_the_order_they_were_first_run(tmp_path: Path) -> None:
    """``sweep.json`` keeps every seed a sweep folder has run, once each, earlier runs' first: seeds 5
    then 1-2 then 2 again list as 5, 1, 2 (and each task once)."""
    config = SweepConfig.model_validate({"seeds": [5], "eval": {"episodes": 3}})
    out = tmp_path / "sweep"
    for seeds in ([5], [1, 2], [2]):
        run_sweep(with_seeds(config, seeds), out, backend="serial")
    listing = json.loads((out / SWEEP_FILE).read_text())
    assert listing["config"]["seeds"] == [5, 1, 2]
    assert [task["seed"] for task in listing["tasks"]] == [5, 1, 2]


def test_each_eval_task_walks_the_conversations_of_its_own_seed(tmp_path: Path) -> None:
    """A task of seed 2 is `crs eval` with ``--seed 2``: the same conversations, in the same order, as a
    direct evaluation of that seed (not those of another seed)."""
    config = SweepConfig.model_validate({"seeds": [2], "eval": {"episodes": 6}})
    run_sweep(config, tmp_path / "sweep", backend="serial")
    folder = task_dir(tmp_path / "sweep", "persona_world-ask-4-default-s2")
    run_evaluation("ask-4", seed=2, episodes=6, out=tmp_path / "direct", show_progress=False)
    assert EvalSummary.read(folder).seed == 2
    assert read_episodes(folder) == read_episodes(tmp_path / "direct")


def test_a_rerun_after_a_failure_counts_only_finished_tasks_as_skipped(tmp_path: Path) -> None:
    """A task that failed is neither run now nor skipped as finished: the rerun's summary line must not
    count it among the tasks it skipped."""
    (tmp_path / "empty").mkdir()  # a data folder without lastfm/: its task fails when it runs
    config = SweepConfig.model_validate(
        {
            "datasets": ["persona_world", "lastfm"],
            "eval": {"episodes": 3, "data_dir": str(tmp_path / "empty")},
        }
    )
    out = tmp_path / "sweep"
    first = run_sweep(config, out, backend="serial")
    assert first.ran == ["persona_world-ask-4-default-s1"] and first.skipped == []
    assert [result.name for result in first.failed] == ["lastfm-ask-4-default-s1"]
    again = run_sweep(config, out, backend="serial")
    assert again.ran == [] and again.skipped == ["persona_world-ask-4-default-s1"]
    assert [result.name for result in again.failed] == ["lastfm-ask-4-default-s1"]
    assert os.path.isdir(task_dir(out, "persona_world-ask-4-default-s1"))
    # the plan `crs report` reads names the failed task too, so it reports it as not run
    assert planned_tasks(out) == ["persona_world-ask-4-default-s1", "lastfm-ask-4-default-s1"]


def test_every_interrupted_attempt_is_removed_and_finished_tasks_are_kept(tmp_path: Path) -> None:
    """A sweep killed several times leaves several ``runs/.<task>.tmp-<id>`` folders: all are removed
    (and counted), the finished task folders stay."""
    runs = tmp_path / RUNS_DIR
    stale = [runs / f".a-s{seed}.tmp-0000000{seed}" for seed in (1, 2, 3)]
    for folder in stale:
        (folder / "sub").mkdir(parents=True)
        (folder / DONE_MARKER).write_text("finished\n")
    commit_task(tmp_path, sweep_task("a-s4", 4), {"summary.json": b"{}"})
    assert remove_stale_attempts(tmp_path) == 3
    assert sorted(path.name for path in runs.iterdir()) == ["a-s4"]
    assert remove_stale_attempts(tmp_path / "none") == 0


# ------------------------------------------------------------------ a task's run-folder files
def test_a_resumed_curve_ends_at_the_checkpoint_and_beats_the_saved_model_s_score(tmp_path: Path) -> None:
    """Resuming from the checkpoint at step 128 drops the later rows: the last evaluated step is 128 (not
    the dropped 192), and the score to beat is that of best_model.zip's step 64 (0.7, 0.35)."""
    curve = CurveFile(tmp_path)
    for steps, score, best in ((0, 0.5, True), (64, 0.7, True), (128, 0.6, False), (192, 0.9, True)):
        metrics = {"SR@5": score, "SR@10": score, "SR@15": score, "AT": 9.0, "hDCG": score / 2}
        curve.add(SimpleNamespace(timesteps=steps, seconds=1.0, metrics=metrics, best=best))
    assert curve.resume_at(128, 64) == ((0.7, 0.35), 128)
    assert [row["timesteps"] for row in curve.rows()] == [0, 64, 128]
    assert [json.loads(line)["timesteps"] for line in curve.jsonl.read_text().splitlines()] == [0, 64, 128]


def episode(goal: int, **extra: Any) -> str:
    """One line of episodes.jsonl: a conversation won at rank 1 after an ask."""
    record = {"goal_index": goal, "user": 1, "targets": [3], "success": True, "agent_actions": 2}
    record |= {"rank": 1, "total_reward": 1.0, "kinds": ["ask", "recommend"], **extra}
    return json.dumps(record) + "\n"


def test_an_episodes_file_without_a_record_is_refused(tmp_path: Path) -> None:
    """An empty (truncated) episodes.jsonl would give a comparison over no conversation: refused."""
    (tmp_path / "episodes.jsonl").write_text("\n")
    with pytest.raises(CRSError, match=r"episodes\.jsonl holds no records"):
        read_episodes(tmp_path)
    (tmp_path / "episodes.jsonl").write_text(episode(0) + "\n" + episode(1))
    assert [record.goal_index for record in read_episodes(tmp_path)] == [0, 1]


def test_session_records_must_reach_the_summary_s_last_session(tmp_path: Path) -> None:
    """A summary of 3 sessions with records of sessions 0 and 1 only (the files of two evaluations mixed)
    is refused; records of sessions 0 to 2 are read."""
    summary = EvalSummary.from_dict(
        {
            "policy": "ask-4",
            "dataset": "persona_world",
            "split": "test",
            "episodes": 6,
            "seed": 0,
            "max_turns": 15,
            "sessions": {"regime": "switch", "sessions": 3, "sequences": 2, "memory": "frozen"},
        }
    )
    short = "".join(episode(goal, session=goal % 2) for goal in range(6))
    (tmp_path / "episodes.jsonl").write_text(short)
    with pytest.raises(CRSError, match=r"\[sessions\] = 3 but the last session of .* is 1"):
        read_episodes(tmp_path, summary)
    (tmp_path / "episodes.jsonl").write_text("".join(episode(goal, session=goal % 3) for goal in range(6)))
    assert len(read_episodes(tmp_path, summary)) == 6


def test_a_summary_keeps_the_policy_spec_that_names_its_run(tmp_path: Path) -> None:
    """A trained policy's summary names its run folder in ``policy_spec`` (how `crs report` finds the run
    behind an evaluation); only a summary written before that key existed falls back to ``policy``."""
    base = {"policy": "rc1", "dataset": "persona_world", "split": "test", "seed": 0, "max_turns": 15}
    run = str(tmp_path / "runs" / "rc1")
    assert EvalSummary.from_dict({**base, "policy_spec": run}).policy_spec == run
    assert EvalSummary.from_dict(base).policy_spec == "rc1"


@pytest.mark.parametrize(
    ("settings", "options"),
    [
        ({}, []),
        ({"world_seed": 3, "user": "single"}, ["--world-seed", "3", "--user", "single"]),
        ({"setting": "binary"}, ["--setting", "binary"]),
        ({"setting": "multiple_choice"}, []),  # the persona world's own
        ({"dataset": "lastfm", "data_dir": "data"}, ["--dataset", "lastfm", "--data-dir", "DATA"]),
    ],
)
def test_a_run_s_eval_command_names_each_setting_that_is_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], options: list[str]
) -> None:
    """The model card's `crs eval` command reproduces the run's test only if it names the world seed,
    user kind, setting and data folder (made absolute: the command is run from anywhere) that differ
    from `crs eval`'s defaults."""
    monkeypatch.chdir(tmp_path)
    command = shlex.split(eval_command(tmp_path / "rc1", make_settings(settings), 12))
    expected = ["crs", "eval", "--policy", str(tmp_path / "rc1"), "--seed", "0", "-n", "12"]
    assert command == expected + [str(tmp_path / "data") if o == "DATA" else o for o in options]


def test_a_train_summary_from_before_the_setting_was_recorded_still_reads(tmp_path: Path) -> None:
    """``setting`` was added to a train run's summary.json later: a summary without it reads, with an
    empty setting; one without a key every run wrote (``timesteps``) is refused."""
    summary = TrainSummary(
        name="rc1",
        dataset="persona_world",
        ranker="popularity",
        timesteps=128,
        train_seconds_this_session=1.0,
        steps_per_second=128.0,
        envs=2,
        env_processes=0,
        test_episodes=8,
        best_valid={"SR@15": 0.5, "hDCG": 0.2},
        test={},
        conversations_per_second={},
        setting="multiple_choice",
    )
    summary.write(tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    del data["setting"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    old = TrainSummary.read(tmp_path)
    assert (old.timesteps, old.setting, old.best_valid) == (128, "", {"SR@15": 0.5, "hDCG": 0.2})
    del data["timesteps"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(CRSError, match="timesteps"):
        TrainSummary.read(tmp_path)


def test_a_new_test_replaces_the_old_one_and_leaves_no_hidden_folder(tmp_path: Path) -> None:
    """A resumed run's test is swapped in whole: the folders of the new test only, and neither the
    partial nor the old test left beside them (``.tested.partial``, ``.tested.old``)."""
    base = {"policy": "rc1", "dataset": "persona_world", "split": "test", "seed": 0, "max_turns": 15}
    summary = EvalSummary.from_dict({**base, "episodes": 1})
    records = [EpisodeRecord.from_dict(json.loads(episode(0)))]
    write_test_folders(tmp_path, [("trained", summary, records), ("ask-4", summary, records)])
    write_test_folders(tmp_path, [("trained", summary, records)])
    assert sorted(path.name for path in tmp_path.iterdir()) == [TEST_DIR]
    assert [path.name for path in (tmp_path / TEST_DIR).iterdir()] == ["trained"]
    assert read_episodes(tmp_path / TEST_DIR / "trained") == tuple(records)


@pytest.mark.parametrize("text", ["name: rc1\n", "settings: [steps, 128]\n", "- settings\n"])
def test_a_run_config_without_its_settings_mapping_is_named_not_a_traceback(
    tmp_path: Path, text: str
) -> None:
    """A config.yaml whose ``settings`` is missing or not a mapping is refused with the command that
    starts the run again, not read into a KeyError or TypeError."""
    run = tmp_path / "rc1"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    with pytest.raises(
        CRSError,
        match=r"config.yaml holds no 'settings' mapping; restore it from a copy to keep the run, or start",
    ):
        RunRecord.read(run)
