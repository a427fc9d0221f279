"""Second mutation audit of `crs report`'s inputs (`crs.report.inputs`), assembly (`crs.report.build`)
and returning-user tables (`crs.report.sessions`): pairing, ranker identity, replica seeds, sweeps read
by hand-written folders, and the session tables' figures. Every expected figure is counted here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crs.app.run_folder import CURVE_CSV, TRAINED_TEST, CurveFile
from crs.app.sweep import DONE_MARKER, RUNS_DIR, SWEEP_FILE, TASK_FILE
from crs.report import build_report, build_tables, load_inputs
from crs.report.build import Report, _Catalogs, _examples, check_catalog, persona_sources
from crs.report.inputs import EvalRun, TrainInfo, read_train_info, read_train_run
from crs.report.plots import ABLATION_COLORS
from crs.report.sessions import SessionComparison, session_comparisons, session_sentences, sessions_json
from policies.memory import UpdateRule
from policies.pretrain.config import ARTIFACT_VERSION, CONFIG_FILE
from policies.rl.callbacks import EvalPoint
from policies.rl.config import RLConfig
from policies.rl.run_files import PolicyMeta
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from tests.crs.session_folders import Outcome, write_sessions_folder
from tests.crs.test_report_hostile_inputs import write_eval
from tests.crs.test_report_mutants import records, train_with_test


def sweep_task(
    sweep: Path,
    policy: str,
    seed: int,
    successes: list[int | None],
    *,
    ablation: str = "default",
    settings: dict[str, Any] | None = None,
    done: bool = True,
    **fields: Any,
) -> Path:
    """A sweep's eval task folder written by hand (``runs/<task>/`` with ``task.json`` and, when `done`,
    its ``done`` marker), its summary.json's `fields` as given."""
    name = f"persona_world-{policy}-{ablation}-s{seed}"
    folder = write_eval(sweep / RUNS_DIR / name, records(successes), policy=policy, seed=seed, **fields)
    task = {
        "name": name,
        "group": f"persona_world-{policy}-{ablation}",
        "kind": "eval",
        "dataset": "persona_world",
        "policy": policy,
        "ablation": ablation,
        "seed": seed,
        "settings": settings or {},
    }
    (folder / TASK_FILE).write_text(json.dumps(task))
    if done:
        (folder / DONE_MARKER).write_text("")
    return folder


def task_file(folder: Path, kind: str, policy: str, seed: int) -> Path:
    """Mark `folder` a finished sweep task of `kind` (its task.json and done marker)."""
    name = folder.name
    task = {"name": name, "group": name.rsplit("-s", 1)[0], "kind": kind, "dataset": "persona_world"}
    task |= {"policy": policy, "ablation": "default", "seed": seed, "settings": {}}
    (folder / TASK_FILE).write_text(json.dumps(task))
    (folder / DONE_MARKER).write_text("")
    return folder


def plan(sweep: Path, *names: str) -> Path:
    """The sweep's sweep.json, planning the tasks `names` (default: every task folder under runs/)."""
    names = names or tuple(sorted(c.name for c in (sweep / RUNS_DIR).iterdir() if not c.name.startswith(".")))
    (sweep / SWEEP_FILE).write_text(json.dumps({"tasks": [{"name": name} for name in names]}))
    return sweep


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    ("flags", "ablation"), [((False, True), "persona-blind"), ((True, False), "aspect-blind")]
)
def test_a_ranker_pretrained_with_the_runs_switches_follows_its_ablation(
    tmp_path: Path, flags: tuple[bool, bool], ablation: str
) -> None:
    """Guards against comparing the ranker's (persona, aspect) attentions with the run's flags in the
    other order: a single ablation's own ranker would then not count as the variant's, and its
    baselines would pool with those of the full ranker."""
    persona, aspect = flags

    def info(attentions: tuple[bool, bool]) -> TrainInfo:
        return TrainInfo(
            tmp_path, "r", persona, aspect, 1, "persona_world", None, {}, ranker_attentions=attentions
        )

    assert info(flags).ablation == ablation and info(flags).ranker_follows_ablation
    assert not info((aspect, persona)).ranker_follows_ablation  # the other single ablation's ranker
    assert not info((True, True)).ranker_follows_ablation


def test_two_sweeps_tasks_of_one_policy_and_ablation_over_other_rankers_are_two_rows(tmp_path: Path) -> None:
    """Guards against pooling sweep tasks by dataset, policy and ablation alone: two sweeps whose
    "default" ablations rank with other rankers (their task settings differ) are two configurations,
    never the seeds of one row."""
    sweep_task(tmp_path / "a", "ask-4", 1, [2] * 12, settings={"ranker": "popularity"})
    sweep_task(tmp_path / "b", "ask-4", 2, [None] * 12, settings={"ranker": "uniform"}, ranker="uniform")
    (table,), _ = build_tables(load_inputs([plan(tmp_path / "a"), plan(tmp_path / "b")]).evals)
    assert [(row.label, row.seeds) for row in table.rows] == [
        ("ask-4 (a)", (1,)),
        ("ask-4 (b)", (2,)),
    ]
    assert [row.metrics["SR@15"].mean for row in table.rows] == [1.0, 0.0]


def test_a_sweep_given_as_itself_and_as_its_runs_folder_is_read_and_listed_once(tmp_path: Path) -> None:
    """Guards against listing what a sweep leaves out once per way it was named (the sweep, its runs/):
    both name one sweep, whose finished task is read once and whose unfinished task is listed once."""
    sweep = tmp_path / "sweep"
    finished = sweep_task(sweep, "ask-4", 1, [2] * 12)
    sweep_task(sweep, "ask-4", 2, [2] * 12, done=False)
    plan(sweep)
    inputs = load_inputs([sweep, sweep / RUNS_DIR])
    assert [run.path for run in inputs.evals] == [finished]
    unfinished, inside = inputs.left_out
    assert unfinished.path == sweep / RUNS_DIR and "persona_world-ask-4-default-s2" in unfinished.reason
    assert (inside.path, inside.reason) == (
        sweep / RUNS_DIR,
        f"inside {sweep}, which is given too: read once",
    )


# ------------------------------------------------------------------------------------------ build
def test_a_conversation_just_past_the_catalogues_split_is_refused_by_name(tmp_path: Path) -> None:
    """Guards against an off-by-one in the catalogue check: goal index n of a split of n conversations
    names none of them, and is refused as from another catalogue (not an IndexError)."""
    catalog = DatasetSpec("persona_world", None, 0).load()
    users = catalog.splits["test"].users
    n = len(users)

    def run_of(goal: int) -> EvalRun:
        line = {**records([2])[0], "goal_index": goal, "user": int(users[min(goal, n - 1)])}
        return load_inputs([write_eval(tmp_path / str(goal), [line])]).evals[0]

    check_catalog(run_of(n - 1), catalog)  # the split's last conversation
    with pytest.raises(CRSError, match=f"conversation {n} was user"):
        check_catalog(run_of(n), catalog)


def test_a_sweep_task_passed_on_its_own_belongs_to_its_sweep_folder(tmp_path: Path) -> None:
    """Guards against taking a task folder's parent (the sweep's runs/) for its sweep: a task passed by
    name is tagged with the sweep folder itself, as when the sweep is read whole."""
    sweep = tmp_path / "rules"
    task = sweep_task(sweep, "ask-4", 1, [2] * 12)
    plan(sweep)
    (alone,) = load_inputs([task]).evals
    (whole,) = load_inputs([sweep]).evals
    assert alone.task is not None and whole.task is not None
    assert alone.task.sweep == whole.task.sweep == sweep


def test_a_rules_folder_named_like_its_policy_is_no_train_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against reading a policy spec that names a folder as a train run without its config: `crs
    eval --policy ask-4 --out ask-4`, reported from that folder's parent, must read as the rule's."""
    monkeypatch.chdir(tmp_path)
    folder = write_eval(Path("ask-4"), records([2] * 12), policy="ask-4")
    (run,) = load_inputs([folder]).evals
    assert run.train is None and run.replica_seed == 1


# -------------------------------------------------------------------------------- returning users
def returning(
    root: Path, memory: str, seed: int, *, sequences: int = 4, ok: Outcome | None = None, **fields: Any
) -> Path:
    """A `crs eval --sessions` folder of `sequences` users x 3 sessions, a switch at session 1; every
    session succeeds unless `ok` says otherwise."""
    return write_sessions_folder(
        root / f"{memory}-s{seed}-{sequences}-{len(fields)}",
        memory,
        seed,
        ok or (lambda sequence, session: True),
        sessions=3,
        sequences=sequences,
        change=1,
        **fields,
    )


def comparisons(paths: list[Path]) -> list[SessionComparison]:
    return session_comparisons(load_inputs(paths).evals)


def test_an_update_run_older_than_the_aspect_constants_pools_with_one_at_their_defaults(
    tmp_path: Path,
) -> None:
    """Guards against reading a constant an older run did not record as differing: such a run used
    `UpdateRule`'s defaults, so it pools (as a seed of one series) with a run that recorded them."""
    old = returning(tmp_path, "update", 1, rule={"switch_rate": 0.3})
    new = {
        "switch_rate": 0.3,
        "aspect_rate": UpdateRule.aspect_rate,
        "update_prior": float(UpdateRule.update_prior),
    }
    (comparison,) = comparisons([old, returning(tmp_path, "update", 2, rule=new)])
    (series,) = comparison.series
    assert (series.memory, series.seeds) == ("update", (1, 2))


def test_the_baselines_of_a_full_run_over_its_own_full_ranker_are_plain_baselines(tmp_path: Path) -> None:
    """Guards against naming a full model's own ranker a variant: the full run's ranker, pre-trained
    with every attention on, follows its ablation, yet its baselines are the rules' plain rows, not
    rows "(full ranker)" of their own."""
    ask = write_eval(tmp_path / "evals" / "ask-4", records([2, None] * 6))
    run = train_with_test(tmp_path / "runs", "full-s1", 1, {"ask-4": ask})
    (run / "ranker").mkdir()
    model = {"dim": 8, "personas": 3, "aspect_mode": "attention"}  # personas and aspect attention on
    artifact = {"kind": "persona_pretrain", "artifact_version": ARTIFACT_VERSION, "model": model}
    (run / "ranker" / CONFIG_FILE).write_text(json.dumps({**artifact, "split": {}, "seed": 0}))
    PolicyMeta("persona_world", "artifact:ranker", RLConfig(), None, {"user": "auto"}).write(run)
    (baseline,) = load_inputs([run]).evals
    assert read_train_info(run).ranker_follows_ablation
    assert baseline.tested_by is None and baseline.ranker_variant is None
    (table,), _ = build_tables([baseline])
    assert [row.label for row in table.rows] == ["ask-4"]


def test_a_sweeps_baselines_over_each_tasks_own_ranker_pool_over_the_tasks_seeds(tmp_path: Path) -> None:
    """Guards against reading a sweep's baselines as plain rule runs: each train task's own test scored
    the rule with that task's ranker, and those baselines are the seeds of one row, as the tasks are."""
    sweep = tmp_path / "sweep"
    for seed, successes in ((1, [2] * 12), (2, [2, None] * 6)):
        ask = write_eval(
            tmp_path / f"ask-{seed}", records(successes), seed=seed, ranker_identity=f"own-{seed}"
        )
        run = train_with_test(sweep / RUNS_DIR, f"persona_world-rl-default-s{seed}", seed, {"ask-4": ask})
        task_file(run, "train", "rl", seed)
    inputs = load_inputs([plan(sweep)])
    assert [run.tested_by.seed for run in inputs.evals if run.tested_by is not None] == [1, 2]
    (table,), _ = build_tables(inputs.evals)
    (row,) = table.rows
    assert (row.label, row.seeds) == ("ask-4", (1, 2))
    assert row.metrics["SR@15"].mean == 0.75  # seed 1: 12 of 12, seed 2: 6 of 12


def test_each_persona_world_seed_gets_its_own_catalogue(tmp_path: Path) -> None:
    """Guards against caching the report's catalogues by dataset alone: a run of world seed 1 after one
    of world seed 0 must be checked against (and explained with) its own world, not the first."""
    runs = []
    for world_seed in (0, 1):
        users = DatasetSpec("persona_world", None, world_seed).load().splits["test"].users
        line = {**records([2])[0], "goal_index": 0, "user": int(users[0])}
        folder = write_eval(tmp_path / str(world_seed), [line], world_seed=world_seed)
        runs.append(load_inputs([folder]).evals[0])
    catalogs = _Catalogs(None)
    first, second = catalogs.get(runs[0]), catalogs.get(runs[1])
    assert first is DatasetSpec("persona_world", None, 0).load()  # the world is built once per process
    assert second is DatasetSpec("persona_world", None, 1).load()


def test_a_run_with_its_final_evaluation_kept_but_no_summary_is_not_called_unfinished(tmp_path: Path) -> None:
    """Guards against calling a run unfinished for lacking summary.json when its final test evaluation
    is kept in the run folder (``crs eval --policy runs/x -o runs/x/eval``, runs older than the
    summary): only its missing curve is named."""
    run = train_with_test(tmp_path, "r-s1", 1, {})
    final = write_eval(run / "eval", records([2] * 12), policy="r-s1")
    read = read_train_run(run)
    assert read.final_eval is not None and read.final_eval.path == final and read.summary is None
    assert read.missing == (f"learning curve (no {CURVE_CSV})",)


def test_a_sweep_baseline_passed_before_its_sweep_is_read_as_the_sweeps(tmp_path: Path) -> None:
    """Guards against a report that changes with the order of its inputs: a sweep task's tested/ask-4
    named before the sweep is the same baseline, so the table is the one of the sweep alone (one row
    over the tasks' seeds), as when it is named after the sweep."""
    sweep = tmp_path / "sweep"
    for seed in (1, 2):
        ask = write_eval(
            tmp_path / f"ask-{seed}", records([2] * 12), seed=seed, ranker_identity=f"own-{seed}"
        )
        run = train_with_test(sweep / RUNS_DIR, f"persona_world-rl-default-s{seed}", seed, {"ask-4": ask})
        task_file(run, "train", "rl", seed)
    baseline = sweep / RUNS_DIR / "persona_world-rl-default-s1" / "tested" / "ask-4"
    for inputs in ([plan(sweep), baseline], [baseline, sweep]):
        (table,), _ = build_tables(load_inputs(inputs).evals)
        assert [(row.label, row.seeds) for row in table.rows] == [("ask-4", (1, 2))]


def test_a_full_model_beside_an_ablation_is_named_full_whatever_its_run_name(tmp_path: Path) -> None:
    """Guards against naming a full model after its run when an ablation is beside it: as in the
    comparison table, its train configuration is "full", the ablation's "persona-blind"."""
    runs = [
        train_with_test(tmp_path / "runs", "mine-s1", 1, {}),
        train_with_test(tmp_path / "runs", "mine-pb-s1", 1, {}, persona_attention=False),
    ]
    report = build_report(runs, tmp_path / "report", examples=0, persona=False, figures=False)
    assert {label: [run.info.name for run in group] for label, group in report.train_groups.items()} == {
        "full": ["mine-s1"],
        "persona-blind": ["mine-pb-s1"],
    }


def test_no_share_of_the_gap_is_given_before_the_change(tmp_path: Path) -> None:
    """Guards against a "gap closed" before the change session: the share is of the drop the change
    causes, so it is given from the change on (d >= 0) only, even where oracle beats frozen before."""

    def outcome(memory: str) -> Outcome:
        # session 0 (d = -1): frozen fails every other user, the others succeed; from the change on
        # frozen fails all, update half, oracle none
        rate = {"frozen": (0.5, 0.0), "update": (1.0, 0.5), "oracle": (1.0, 1.0)}[memory]
        return lambda sequence, session: sequence % 4 < 4 * rate[session > 0]

    paths = [returning(tmp_path, memory, 1, ok=outcome(memory)) for memory in ("frozen", "update", "oracle")]
    (comparison,) = comparisons(paths)
    assert comparison.gap_closed == {0: 0.5, 1: 0.5}


def test_only_a_ranker_folder_holding_a_pretrain_config_is_a_persona_source(tmp_path: Path) -> None:
    """Guards against taking any folder a run's ranker names for a persona model: one without its
    config.json (moved, or never a `crs pretrain` artifact) is no source, so the report says no persona
    model is among the inputs rather than failing to load one."""
    artifact, bare = tmp_path / "artifact", tmp_path / "bare"
    artifact.mkdir()
    bare.mkdir()
    (artifact / CONFIG_FILE).write_text("{}")
    paths = [
        write_eval(tmp_path / name, records([2] * 12), policy=name, ranker=str(ranker))
        for name, ranker in (("ask-4", artifact), ("ask-5", bare))
    ]
    (table,), _ = build_tables(load_inputs(paths).evals)
    sources = persona_sources(table)
    assert {source: [run.policy for run in runs] for source, runs in sources.items()} == {
        str(artifact): ["ask-4"]
    }


def test_the_example_contrast_is_the_weakest_row_beside_the_reference(tmp_path: Path) -> None:
    """Guards against contrasting the reference with the strongest other row: the example pair shows a
    conversation the reference wins and the weakest row (lowest SR@15) loses."""
    split = DatasetSpec("persona_world", None, 0).load().splits["test"]

    def lines(successes: list[int | None]) -> list[dict[str, Any]]:
        out = records(successes)
        for i, line in enumerate(out):
            line.update(user=int(split.users[i]), targets=[int(split.items[i])])
        return out

    outcomes = {"ask-4": [2] * 12, "ask-5": [2, None] * 6, "ask-6": [None] * 12}
    paths = [write_eval(tmp_path / name, lines(o), policy=name) for name, o in outcomes.items()]
    inputs = load_inputs(paths)
    tables, _ = build_tables(inputs.evals)
    report = Report(tmp_path, "report", "", inputs, tables, [], "", {})
    _examples(report, _Catalogs(None), {}, 2)  # the report's examples, without its figures
    assert [(example.policy, example.goal_index) for example in report.examples] == [
        ("ask-4", 0),
        ("ask-6", 0),
    ]


def test_the_paired_steps_since_the_change_start_at_the_change(tmp_path: Path) -> None:
    """Guards against listing paired differences before the change among the steps since the change:
    "by sessions since the change" names d = 0 and d = 1 only, each the update's gain over frozen."""

    def outcome(memory: str) -> Outcome:  # update: +1 at d = -1 (session 0), +0.5 at d = 0 and d = 1
        return lambda sequence, session: memory == "update" and (session == 0 or sequence % 2 == 0)

    (comparison,) = comparisons([returning(tmp_path, m, 1, ok=outcome(m)) for m in ("frozen", "update")])
    steps = [s for s in session_sentences(comparison) if "by sessions since the change" in s]
    assert len(steps) == 1 and "d=-1" not in steps[0]
    assert steps[0].startswith("update − frozen by sessions since the change: d=0: +0.500 [")
    assert ", d=1: +0.500 [" in steps[0]


def test_train_tasks_of_one_sweep_are_named_without_their_sweep(tmp_path: Path) -> None:
    """Guards against counting a sweep once per task: the two seeds of one sweep's train configuration
    are one group named by its configuration, the sweep's name added only beside another sweep."""
    sweep = tmp_path / "sweep"
    for seed in (1, 2):
        task_file(
            train_with_test(sweep / RUNS_DIR, f"persona_world-rl-default-s{seed}", seed, {}),
            "train",
            "rl",
            seed,
        )
    report = build_report([plan(sweep)], tmp_path / "report", examples=0, persona=False, figures=False)
    assert {label: len(runs) for label, runs in report.train_groups.items()} == {"persona_world · rl": 2}


def test_a_learning_curve_is_drawn_when_any_run_logged_one(tmp_path: Path) -> None:
    """Guards against dropping every learning curve when one run logged none (an older or unfinished
    run beside finished ones): the runs that logged one are drawn."""
    logged = train_with_test(tmp_path / "runs", "a-s1", 1, {})
    metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": 0.3, "AT": 9.0, "hDCG": 0.2}
    CurveFile(logged).add(EvalPoint(1000, 10.0, metrics, best=False))
    unlogged = train_with_test(tmp_path / "runs", "b-s1", 1, {})
    report = build_report([logged, unlogged], tmp_path / "report", examples=0, persona=False)
    assert report.learning is not None and "learning" not in report.unavailable


def test_a_comparisons_title_names_its_users_and_seeds(tmp_path: Path) -> None:
    """Guards against a title that counts the seeds without naming them: a reader matches a comparison
    to its `crs eval --sessions` runs by them."""
    paths = [returning(tmp_path, "frozen", seed) for seed in (2, 1)]
    (comparison,) = comparisons(paths)
    assert (
        comparison.title
        == "persona_world (test) · ask-4 · regime switch · 3 sessions · 4 users x 2 seeds (1, 2)"
    )
    (alone,) = comparisons(paths[:1])
    assert alone.title.endswith(" · 4 users x 1 seed (2)")


def test_metrics_json_keeps_each_seeds_paired_difference(tmp_path: Path) -> None:
    """Guards against metrics.json dropping the per-seed differences the report's sentence gives: the
    update's gain over frozen from the change on is 1 on seed 1 (frozen fails all) and 0.5 on seed 2
    (frozen fails every other user)."""
    frozen = {1: lambda sequence, session: False, 2: lambda sequence, session: sequence % 2 == 0}
    paths = [returning(tmp_path, "frozen", seed, ok=ok) for seed, ok in frozen.items()]
    paths += [returning(tmp_path, "update", seed) for seed in (1, 2)]
    (comparison,) = comparisons(paths)
    (paired,) = sessions_json(comparison)["paired"]
    assert {seed: value["mean"] for seed, value in paired["per_seed"].items()} == {"1": 1.0, "2": 0.5}


def test_a_notebook_cache_in_a_sweeps_runs_folder_is_no_unfinished_task(tmp_path: Path) -> None:
    """Guards against listing a hidden folder that is no task attempt (an editor or notebook cache) as an
    unfinished task whose sweep should be rerun: hidden folders are not inputs, and only a staging
    attempt (``.<task>.tmp-<id>``) names a task."""
    sweep = tmp_path / "sweep"
    sweep_task(sweep, "ask-4", 1, [2] * 12)
    plan(sweep)
    (sweep / RUNS_DIR / ".ipynb_checkpoints").mkdir()
    assert load_inputs([sweep]).left_out == ()


def test_train_configurations_without_a_table_keep_their_ablations_colours(tmp_path: Path) -> None:
    """Guards against colouring train configurations by label alone when no table names them (runs
    without their final test yet): each ablation keeps its own colour in the learning curves."""
    runs = [  # not in the palette's own order, which starts with the full model's and persona-blind's
        train_with_test(tmp_path / "runs", "m-ab-s1", 1, {}, aspect_attention=False),
        train_with_test(tmp_path / "runs", "m-pb-s1", 1, {}, persona_attention=False),
        train_with_test(tmp_path / "runs", "m-s1", 1, {}),
    ]
    report = build_report(runs, tmp_path / "report", examples=0, persona=False, figures=False)
    assert not report.tables
    labels = ("aspect-blind", "persona-blind", "full")
    assert {label: report.colors[label] for label in labels} == {
        label: ABLATION_COLORS[label] for label in labels
    }


def test_a_separate_tables_note_names_the_other_rows_as_their_own_table_does(tmp_path: Path) -> None:
    """A trained full model alone in its table is named after its run ("t1"), so the note of the table
    it is kept apart from names it "t1" too, not "full", a name no table shows."""
    trained = write_eval(tmp_path / "trained", records([2] * 12), policy="rl", conversations="list-a")
    run = train_with_test(tmp_path / "runs", "t1-s1", 1, {TRAINED_TEST: trained})
    write_eval(tmp_path / "ask", records([3] * 12), conversations="list-b")
    tables, _ = build_tables(load_inputs([run, tmp_path / "ask"]).evals)
    by_rows = {tuple(row.label for row in table.rows): table.separated for table in tables}
    assert set(by_rows) == {("t1",), ("ask-4",)}
    assert by_rows[("ask-4",)].startswith("not compared with t1 in one table")
    assert by_rows[("t1",)].startswith("not compared with ask-4 in one table")
