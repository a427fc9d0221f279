"""`crs sweep`'s less-travelled paths, each test guarding one plausible bug a mutation audit found
unguarded: an ablation name that is not a folder name, checks run on the first ablation or policy only,
a continued training sweep (``--extend``) checked without training anything, a sweep folder's listing,
another config's tasks, a link among the scratch folders, and the worker pool's requests and one-line
errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crs.app.sweep import (
    DONE_MARKER,
    SWEEP_FILE,
    TASK_FILE,
    SweepConfig,
    SweepTask,
    commit_task,
    expand_grid,
    extend_tasks,
    load_sweep_config,
    run_sweep,
    task_dir,
    with_train_steps,
)
from simulators.errors import CRSError


def config_file(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    """`text` written as the sweep config `folder/name`."""
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ the config
def test_an_ablation_name_with_a_slash_is_refused(tmp_path: Path) -> None:
    """Task folders are named by the ablation: a name with a '/' (which the folder name would turn into
    '_', so 'a/b' and 'a_b' would share folders) is refused when the config is read."""
    with pytest.raises(CRSError, match="ablation name 'a/b' may only use letters, digits"):
        load_sweep_config(config_file(tmp_path, "ablations: {default: {}, a/b: {episodes: 5}}\n"))


def sessions_config(tmp_path: Path, text: str) -> Path:
    """A sessions sweep config whose ``sessions.ranker`` is an (empty) artifact folder, plus `text`."""
    artifact = tmp_path / "artifact"
    artifact.mkdir(exist_ok=True)
    return config_file(tmp_path, f"kind: sessions\nsessions: {{ranker: {artifact}}}\n{text}")


def test_every_ablation_of_a_rule_policy_needs_a_persona_ranker(tmp_path: Path) -> None:
    """A rule's memory needs a persona ranker: an ablation after the first that takes the ranker away
    is refused by its own key, not left for each of its tasks to fail."""
    path = sessions_config(tmp_path, "ablations: {kept: {}, dropped: {ranker: null}}\n")
    with pytest.raises(CRSError, match=r"ablations\.dropped\.ranker: the rule policy 'ask-4' needs"):
        load_sweep_config(path)


def test_a_rule_policy_after_a_run_directory_still_needs_a_persona_ranker(tmp_path: Path) -> None:
    """Policies are a trained run (its ranker travels with it) and then a rule: the rule, though not
    first, is checked and named."""
    run = tmp_path / "runs" / "rc1"
    run.mkdir(parents=True)
    path = config_file(tmp_path, f"kind: sessions\npolicies: [{run}, ask-4]\n")
    with pytest.raises(CRSError, match=r"sessions\.ranker: the rule policy 'ask-4' needs a persona ranker"):
        load_sweep_config(path)


def test_a_bad_training_setting_in_an_ablation_names_that_ablation(tmp_path: Path) -> None:
    """With several ablations, a bad value one of them gives is named by that ablation (the ``train:``
    block itself is fine), so the user knows which entry to fix."""
    text = "kind: train\ntrain: {steps: 64}\nablations: {fine: {}, bad: {ppo: {gamma: 2.0}}}\n"
    with pytest.raises(CRSError, match=r"ablations\.bad: bad training settings: gamma=2.0 must be <= 1"):
        load_sweep_config(config_file(tmp_path, text))


def test_retries_of_a_crashed_task_are_bounded_by_ten(tmp_path: Path) -> None:
    """``retries`` lies in 0..10 (a crash that keeps recurring is not rerun without end): 10 is taken,
    11 is refused by its key."""
    assert load_sweep_config(config_file(tmp_path, "retries: 10\n")).retries == 10
    with pytest.raises(CRSError, match="retries: Input should be less than or equal to 10"):
        load_sweep_config(config_file(tmp_path, "retries: 11\n"))


def test_each_train_task_trains_with_its_own_seed(tmp_path: Path) -> None:
    """A training task's settings carry the task's own seed (what `crs train --seed` gets), not the
    first seed of the grid for every task."""
    config = load_sweep_config(config_file(tmp_path, "kind: train\nseeds: [3, 0, 7]\ntrain: {steps: 64}\n"))
    assert [(task.seed, task.settings["seed"]) for task in expand_grid(config)] == [(3, 3), (0, 0), (7, 7)]


# ------------------------------------------------------------------ the sweep folder
def eval_task(seed: int = 1) -> SweepTask:
    """A task of the default eval grid, as `expand_grid` names it."""
    group = "persona_world-ask-4-default"
    return SweepTask(f"{group}-s{seed}", group, "eval", "persona_world", "ask-4", "default", seed, {})


def test_a_finished_run_goes_back_to_a_worker_as_it_came_from_one(tmp_path: Path) -> None:
    """``--extend`` sends a finished task's run to a worker: its files as the first worker returned them
    (the folder's path back to the marker), without the sweep's own ``task.json`` and ``done``."""
    from crs.app.sweep import TASK_DIR_MARKER, _run_files

    files = {
        "summary.json": json.dumps({"run": f"{TASK_DIR_MARKER}/best_model.zip"}).encode(),
        "tested/trained/MODEL_CARD.md": f"crs eval --policy {TASK_DIR_MARKER}\n".encode(),
        "best_model.zip": b"PK\x03\x04",
    }
    folder = commit_task(tmp_path, eval_task(), files)
    assert (folder / DONE_MARKER).is_file() and (folder / TASK_FILE).is_file()
    assert _run_files(folder) == files


def test_a_task_json_without_its_seed_is_named_not_a_key_error(tmp_path: Path) -> None:
    """Readers group a sweep's tasks by seed: a ``task.json`` that lost its seed is named as lacking it
    (with the fix), not a bare KeyError."""
    from crs.app.sweep import sweep_groups

    folder = commit_task(tmp_path, eval_task(), {})
    recorded = json.loads((folder / TASK_FILE).read_text())
    del recorded["seed"]
    (folder / TASK_FILE).write_text(json.dumps(recorded))
    with pytest.raises(CRSError, match=r"task.json lacks seed; delete"):
        sweep_groups(tmp_path)


@pytest.mark.parametrize("seed", [True, 2**32], ids=["true", "past-the-last-seed"])
def test_a_finished_task_whose_seed_is_no_seed_is_another_config_s(tmp_path: Path, seed: object) -> None:
    """A finished folder whose ``task.json`` gives ``"seed": true`` (or a seed past 2**32 - 1) is another
    config's task, named as such, not read as seed 1 (nor met with an error about a ``--seeds`` option
    nobody gave)."""
    from crs.app.sweep import check_sweep_folder

    config = SweepConfig.model_validate({"seeds": [2], "eval": {"episodes": 3}})
    out = tmp_path / "sweep"
    run_sweep(config, out, backend="serial")
    odd = commit_task(out, eval_task(1), {})
    recorded = json.loads((odd / TASK_FILE).read_text())
    (odd / TASK_FILE).write_text(json.dumps({**recorded, "seed": seed}))
    foreign = r"holds 1 finished task\(s\) of another config: persona_world-ask-4-default-s1"
    with pytest.raises(CRSError, match=foreign):
        check_sweep_folder(out, config, expand_grid(config))


def test_a_link_named_like_a_dead_worker_s_scratch_folder_is_left_alone(tmp_path: Path) -> None:
    """Only a dead worker's own scratch folder is removed: a link named like one (pointing at a folder
    the user keeps) is neither followed nor reported as removed."""
    import subprocess
    import sys

    from crs.app.sweep import SCRATCH_PREFIX, remove_orphaned_scratch

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    kept = tmp_path / "kept"
    (kept / "run").mkdir(parents=True)
    (kept / "run" / "summary.json").write_text("{}")
    link = tmp_path / f"{SCRATCH_PREFIX}{finished.pid}-abc"
    link.symlink_to(kept, target_is_directory=True)
    assert remove_orphaned_scratch(tmp_path) == []
    assert link.is_symlink() and (kept / "run" / "summary.json").read_text() == "{}"


def test_another_config_s_tasks_of_other_seeds_are_refused_though_named_alike(tmp_path: Path) -> None:
    """Tasks named like this config's (another seed) but run with other settings are another config's:
    adding a seed to that folder is refused, so one sweep folder never mixes two configs; the same
    config with a new seed is taken."""
    from crs.app.sweep import check_sweep_folder, with_seeds

    earlier = SweepConfig.model_validate({"seeds": [1, 2], "eval": {"episodes": 3}})
    out = tmp_path / "sweep"
    for task in expand_grid(earlier):
        commit_task(out, task, {})
    (out / SWEEP_FILE).write_text("{}")
    same = with_seeds(earlier, [3])
    check_sweep_folder(out, same, expand_grid(same))
    changed = SweepConfig.model_validate({"seeds": [3], "eval": {"episodes": 4}})
    with pytest.raises(CRSError, match=r"holds 2 finished task\(s\) of another config: persona_world-ask-4"):
        check_sweep_folder(out, changed, expand_grid(changed))
    # the changed config given the folder's own seeds and one more: all three differ, all are named (it
    # named only the new seed's, and deleting them led to the next refusal)
    more = with_seeds(changed, [1, 2, 3])
    commit_task(out, expand_grid(with_seeds(earlier, [3]))[0], {})
    with pytest.raises(CRSError, match=r"holds 3 finished task\(s\) of another config"):
        check_sweep_folder(out, more, expand_grid(more))


@pytest.mark.parametrize(
    "listing",
    [{"tasks": [{"seed": 4}, {"name": 7}, "junk"]}, [{"name": "persona_world-ask-4-default-s9"}]],
    ids=["entries-without-names", "not-a-mapping"],
)
def test_a_damaged_listing_is_replaced_by_the_run_not_a_crash(tmp_path: Path, listing: object) -> None:
    """``sweep.json`` is rewritten by each run: a damaged listing (entries that name no task, or no
    mapping at all) is dropped where it names nothing, and the run plans its own tasks."""
    config = SweepConfig.model_validate({"seeds": [1], "eval": {"episodes": 3}})
    out = tmp_path / "sweep"
    out.mkdir()
    (out / SWEEP_FILE).write_text(json.dumps(listing))
    outcome = run_sweep(config, out, backend="serial")
    assert outcome.planned == ["persona_world-ask-4-default-s1"]
    written = json.loads((out / SWEEP_FILE).read_text())
    assert [task["name"] for task in written["tasks"]] == ["persona_world-ask-4-default-s1"]
    assert written["config"]["seeds"] == [1]


# ------------------------------------------------------------------ --extend, without training
def fake_train_run(name: str, timesteps: int) -> dict[str, bytes]:
    """The files of a finished `crs train` run as a worker returns them: a summary trained `timesteps`
    (every metric of its test row 0.5)."""
    from crs.common import METRIC_ORDER

    summary = {
        "name": name,
        "dataset": "persona_world",
        "ranker": "popularity",
        "timesteps": timesteps,
        "train_seconds_this_session": 1.0,
        "steps_per_second": 64.0,
        "envs": 1,
        "env_processes": 0,
        "test_episodes": 10,
        "best_valid": {},
        "test": {f"RL ({name})": {key: {"mean": 0.5, "low": 0.25, "high": 0.75} for key in METRIC_ORDER}},
        "conversations_per_second": {},
    }
    return {"summary.json": json.dumps(summary).encode()}


def finished_train_sweep(tmp_path: Path, trained: int = 64) -> tuple[SweepConfig, Path]:
    """A two-seed training sweep of 64 steps whose tasks are committed as finished, each trained
    `trained` steps (nothing is trained)."""
    config = load_sweep_config(config_file(tmp_path, "kind: train\nseeds: [0, 1]\ntrain: {steps: 64}\n"))
    base = tmp_path / "old"
    for task in expand_grid(config):
        commit_task(base, task, fake_train_run(task.name, trained))
    return config, base


def rewrite_settings(folder: Path, **changes: object) -> None:
    """Change (or, with None, delete) keys of the settings a finished task's ``task.json`` records."""
    recorded = json.loads((folder / TASK_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            recorded["settings"].pop(key)
        else:
            recorded["settings"][key] = value
    (folder / TASK_FILE).write_text(json.dumps(recorded))


def test_an_extended_task_continues_its_namesake_with_the_new_budget(tmp_path: Path) -> None:
    """Each task of ``--extend OLD --steps 128`` records the OLD task folder it continues (the driver sends
    that folder's files to the worker) and keeps OLD's settings but the steps."""
    config, base = finished_train_sweep(tmp_path)
    tasks = extend_tasks(with_train_steps(config, 128), base, tmp_path / "new")
    names = ["persona_world-rl-default-s0", "persona_world-rl-default-s1"]
    assert [task.name for task in tasks] == names
    assert [task.extends for task in tasks] == [str(task_dir(base, name)) for name in names]
    for task, old in zip(tasks, expand_grid(config), strict=True):
        assert task.settings["steps"] == 128 and old.settings["steps"] == 64
        assert {**task.settings, "steps": 64} == json.loads(json.dumps(dict(old.settings)))
        assert task.to_dict()["extends"] == str(task_dir(base, task.name))
        assert "extends" not in json.loads((task_dir(base, task.name) / TASK_FILE).read_text())


def test_extend_refuses_a_budget_no_higher_than_the_steps_trained(tmp_path: Path) -> None:
    """A run trained to 64 steps is not continued "to" 64 steps (nothing would train); 65 is taken."""
    config, base = finished_train_sweep(tmp_path)
    with pytest.raises(CRSError, match="was trained to 64 steps, this config asks for 64"):
        extend_tasks(config, base, tmp_path / "new")
    assert len(extend_tasks(with_train_steps(config, 65), base, tmp_path / "new")) == 2


def test_extend_refuses_an_out_that_is_the_old_sweep_by_another_name(tmp_path: Path) -> None:
    """``--out`` reached through a link to OLD is OLD itself: refused, so OLD is never written into."""
    config, base = finished_train_sweep(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(base, target_is_directory=True)
    with pytest.raises(CRSError, match="the same folder as --out"):
        extend_tasks(with_train_steps(config, 128), base, link)


def test_extend_names_a_recorded_setting_that_is_missing_or_has_no_steps(tmp_path: Path) -> None:
    """OLD's task that lacks a setting this config gives is another config's (named by that key), and one
    whose settings lack the steps is named as corrupt, not a KeyError."""
    config, base = finished_train_sweep(tmp_path)
    longer = with_train_steps(config, 128)
    first = task_dir(base, "persona_world-rl-default-s0")
    rewrite_settings(first, test_episodes=None)
    with pytest.raises(CRSError, match="differs from task persona_world-rl-default-s0 in test_episodes"):
        extend_tasks(longer, base, tmp_path / "new")
    rewrite_settings(first, test_episodes=expand_grid(config)[0].settings["test_episodes"], steps=None)
    with pytest.raises(CRSError, match=r"task.json \[settings\] is corrupt \(no steps\)"):
        extend_tasks(longer, base, tmp_path / "new")


def test_extend_refuses_what_is_not_a_finished_training_sweep(tmp_path: Path) -> None:
    """``--extend`` continues training runs only: an eval config, a folder that is no sweep folder, and
    an OLD sweep that lacks one of the tasks are each refused by what is wrong, before anything runs."""
    config, base = finished_train_sweep(tmp_path)
    longer = with_train_steps(config, 128)
    evaluation = SweepConfig.model_validate({"eval": {"episodes": 3}})
    with pytest.raises(CRSError, match="--extend continues training runs: the config's kind must be 'train'"):
        extend_tasks(evaluation, base, tmp_path / "new")
    with pytest.raises(CRSError, match="is not a sweep directory"):
        extend_tasks(longer, tmp_path / "elsewhere", tmp_path / "new")
    (task_dir(base, "persona_world-rl-default-s1") / DONE_MARKER).unlink()
    with pytest.raises(CRSError, match="it has no finished task persona_world-rl-default-s1; finish"):
        extend_tasks(longer, base, tmp_path / "new")


def finished_extended_sweep(tmp_path: Path) -> tuple[Path, Path, SweepConfig]:
    """`finished_train_sweep` as OLD, and NEW: its ``--extend OLD --steps 128`` sweep with every task
    committed as finished (nothing is trained); OLD, NEW and the 128-step config."""
    from crs.app.sweep import _start_sweep_folder

    config, base = finished_train_sweep(tmp_path)
    new = tmp_path / "new"
    longer = with_train_steps(config, 128)
    tasks = extend_tasks(longer, base, new)
    _start_sweep_folder(new, longer, tasks)
    for task in tasks:
        commit_task(new, task, fake_train_run(task.name, 128))
    return base, new, longer


def test_a_rerun_of_a_finished_extended_sweep_skips_its_tasks(tmp_path: Path) -> None:
    """``crs sweep CONFIG --out NEW --extend OLD --steps N`` run again (e.g. after an interruption) finds
    NEW's finished tasks to be the ones it would run (they record what they extend): all are skipped,
    none is taken for another configuration's."""
    from typer.testing import CliRunner

    from crs.cli import app

    base, new, _ = finished_extended_sweep(tmp_path)
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(new), "--extend", str(base), "--steps", "128"]
    result = CliRunner().invoke(app, [*args, "--backend", "serial"], env={"COLUMNS": "250"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"2 tasks, continuing the runs of {base}, 2 already finished" in text
    assert "2/2 tasks finished (0 run now, 2 skipped as finished)" in text


def test_an_extended_sweep_run_a_seed_at_a_time_into_one_folder_keeps_its_other_seeds(
    tmp_path: Path,
) -> None:
    """``crs sweep CONFIG --out NEW --extend OLD --steps N --seeds 0`` where NEW also holds seed 1's
    finished run of the same ``--extend`` takes that run as this config's, as a sweep without
    ``--extend`` does (guards against comparing it with the un-extended task, which records no
    ``extends``: NEW was refused as holding another config's task). A seed-1 run that continues
    another sweep is still refused."""
    from typer.testing import CliRunner

    from crs.cli import app

    base, new, longer = finished_extended_sweep(tmp_path)
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(new), "--extend", str(base), "--steps", "128"]
    args += ["--seeds", "0", "--backend", "serial"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"1 tasks, continuing the runs of {base}, 1 already finished" in " ".join(result.output.split())
    other = tmp_path / "other"
    shutil.copytree(base, other)
    moved = extend_tasks(longer, other, new)[1]
    commit_task(new, moved, fake_train_run(moved.name, 128))
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code != 0
    assert "holds 1 finished task(s) of another config: persona_world-rl-default-s1" in " ".join(
        result.output.split()
    )


# ------------------------------------------------------------------ the worker pool
def raise_wrapped(value: int) -> int:
    """Raises as Ray reports a task's error: a wrapper whose ``cause`` is the task's own exception."""

    class TaskError(Exception):
        """Stands for ``ray.exceptions.RayTaskError`` (its message is a long traceback)."""

        cause = ValueError(f"task {value} is broken")

    raise TaskError("ray.exceptions.RayTaskError(ValueError): traceback ...")


def test_a_wrapped_task_error_is_named_by_its_cause() -> None:
    """Ray wraps a task's exception (``cause``): the failure names the task's own error, not the wrapper's
    traceback text."""
    from crs.parallel import Task, WorkerPool

    with WorkerPool(1, backend="serial") as pool:
        (result,) = pool.run([Task("wrapped", raise_wrapped, (4,))])
    assert result.error == "ValueError: task 4 is broken"


def test_a_ray_client_address_is_left_to_ray_not_dialled_as_host_and_port() -> None:
    """``ray://host:port`` is Ray's client form, answered by Ray itself: the reachability check does not
    try to open a socket to a host named 'ray://...' (it would always fail and refuse a good address)."""
    from crs.parallel import _check_reachable

    _check_reachable("ray://127.0.0.1:1", timeout=0.5)  # nothing listens there; Ray would say so


def test_the_ray_backend_without_ray_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine without Ray, asking for it by name is refused before any work starts, with the
    install command, not met later as an ImportError; "auto" falls back to the process pool."""
    from crs.parallel import check_pool_request, resolve_backend

    monkeypatch.setattr("crs.parallel.ray_installed", lambda: False)
    with pytest.raises(CRSError, match="the ray backend needs Ray: pip install"):
        resolve_backend("ray", None)
    with pytest.raises(CRSError, match="the ray backend needs Ray"):
        check_pool_request(2, "ray", None)
    assert resolve_backend("auto", None) == "process"


def test_a_cluster_address_without_ray_is_refused_not_run_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine without Ray, an ``--address`` under the default "auto" backend is a request for Ray
    and is refused with the install command (guards against "auto" falling back to the local process
    pool and dropping the cluster: a sweep then ran on this machine, or failed with a bare ValueError
    for want of a worker count)."""
    from crs.parallel import check_pool_request

    monkeypatch.setattr("crs.parallel.ray_installed", lambda: False)
    for workers in (None, 1):
        with pytest.raises(CRSError, match="the ray backend needs Ray: pip install"):
            check_pool_request(workers, "auto", "ray://head:10001")
