"""`crs train` and `crs eval` checked against rules worked out by hand (a mutation audit of
`crs.app.training`, `crs.app.evaluation` and their commands): a worker that rebuilds an evaluation for a
new spec, a single failed chunk, refusals before the first conversation, the default rankers, the split,
user, seed and setting an evaluation walks, the bounds of its settings, a trained policy batched over
the split it is given, the default run name, the training split, a resumed run's speed and test count,
a damaged state.json, verdicts without baselines, the options merged into a config file's, the note of
a replayed resumed run, and the sessions table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from crs.app.evaluation import (
    EvalSpec,
    build_evaluation,
    conversations_fingerprint,
    evaluate_chunk,
    evaluate_in_parallel,
    policy_setting,
    run_evaluation,
    run_ranker_name,
)
from crs.app.run_folder import EvalSummary, SessionRow, SessionsSummary
from crs.app.settings import MAX_SEED, make_settings
from crs.app.training import _prepare, _resolve_ranker, default_run_name, run_training, verdicts
from crs.cli import app
from crs.common import METRIC_ORDER
from crs.eval_cmd import sessions_table
from crs.parallel import WorkerPool
from crs.train_cmd import note_resumed_changes
from envs import evaluation_indices, make_env
from envs.metrics import MetricSummary
from envs.rollout import evaluate
from policies.rankers import RankerSpec
from policies.rl import RLConfig, load_trained_policy
from policies.rl.run_files import CheckpointState, PolicyMeta
from policies.rules import make_rule_policy
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.crs.test_eval_cmd import AppReachedError, reach
from tests.crs.test_train_cmd import TINY, TINY_PPO, WORLD, tiny_settings

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping (and click's error box) undone."""
    return " ".join(text.replace("│", " ").split())


def dicts(records: list[Any]) -> list[dict[str, object]]:
    """Episode records as plain mappings (what episodes.jsonl holds)."""
    return [record.to_dict() for record in records]


# ------------------------------------------------------------------------------------- evaluation
def test_a_worker_given_another_spec_evaluates_that_spec() -> None:
    """Guards against a worker process reusing the env and policy it built for an earlier spec (a pool
    that runs two evaluations, as a sweep does, would score the second with the first's policy)."""
    indices = [0, 1, 2, 3]
    first = evaluate_chunk(EvalSpec(policy="ask-2"), indices, 3)
    other = EvalSpec(policy="random", split="valid")
    second = evaluate_chunk(other, indices, 3)
    env, policy, _, _ = build_evaluation(other)
    expected = evaluate(env, policy, np.asarray(indices), 3)
    assert dicts(second) == dicts(expected) != dicts(first)


def test_a_single_failed_chunk_stops_the_evaluation_naming_it() -> None:
    """Guards against an evaluation that goes on past one failed chunk (of several): it would return
    records with that chunk's conversations missing, or fail on its empty result, instead of a named
    error."""
    with WorkerPool(2, backend="serial") as pool:
        expected = (
            r"evaluation failed in 1 chunk\(s\): chunk 2/2 \(goals 999999\.\.999999\) after 1 attempt: "
        )
        with pytest.raises(CRSError, match=expected + "ResetOptionsError"):
            evaluate_in_parallel(
                pool, EvalSpec(policy="ask-2"), np.array([0, 999999]), 1, chunks_per_worker=1
            )


def test_a_rule_the_setting_does_not_suit_is_refused_for_the_setting_before_its_ranker(
    tmp_path: Path,
) -> None:
    """A probe rule in the binary setting over a ranker without personas: the setting is the refusal (the
    ranker's fix, a persona ranker, would only lead to the setting's refusal next)."""
    with pytest.raises(CRSError, match=r"^probe-1-ask-4 probes personas, which only the multiple-choice"):
        run_evaluation("probe-1-ask-4", setting="binary", ranker="popularity", episodes=4, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_rule_the_setting_does_not_suit_is_refused_before_the_workers_start(tmp_path: Path) -> None:
    """Guards against a rule checked only once it plays: on a pool the refusal would come back as failed
    chunks, after every worker had built the evaluation, instead of the rule's own one-line error."""
    with pytest.raises(CRSError, match=r"^probe-1-ask-4 probes personas, which only the multiple-choice"):
        run_evaluation(
            "probe-1-ask-4",
            setting="binary",
            ranker="uniform",
            episodes=4,
            workers=2,
            backend="serial",
            out=tmp_path / "x",
            show_progress=False,
        )
    assert not (tmp_path / "x").exists()


def test_a_rule_on_lastfm_ranks_with_transe_by_default(tmp_path: Path, real_data_dir: Path) -> None:
    """Guards against a rule's default ranker taken as popularity everywhere: on LastFM it is UNICORN's
    TransE (`crs eval --help`), so an evaluation without --ranker compares with the paper's."""
    result = run_evaluation(
        "ask-2",
        dataset="lastfm",
        data_dir=str(real_data_dir),
        episodes=2,
        out=tmp_path / "e",
        show_progress=False,
    )
    assert result.summary.ranker == "transe" == EvalSummary.read(tmp_path / "e").ranker


def test_a_setting_named_for_a_run_is_the_one_it_is_evaluated_in(tmp_path: Path) -> None:
    """Guards against ``--setting`` dropped for a trained run in favour of the run's own: a run then
    plays silently in its own setting where the user asked for another (which it must refuse, naming
    its own), and an unknown setting name is let through."""
    run = tmp_path / "run"
    run.mkdir()  # a folder: a trained run's place (its policy.json is read only without --setting)
    assert policy_setting(str(run), "binary") == "binary"
    assert policy_setting("ask-2", "enumerated") == "enumerated"
    assert policy_setting("ask-2", None) is None  # the dataset's own, resolved by make_env
    with pytest.raises(CRSError, match="bogus"):
        policy_setting("ask-2", "bogus")


def test_an_evaluation_of_a_run_records_the_ranker_its_run_recorded(tmp_path: Path) -> None:
    """summary.json's ``run_ranker`` is the trained run's own ranker (what a report names when the run is
    gone), and None for a rule (guards against the test of which one it is turned round or dropped)."""
    run = tmp_path / "run"
    run.mkdir()
    PolicyMeta("persona_world", "uniform+pop", RLConfig(), (40, 300, 20), {"user": "auto"}).write(run)
    assert run_ranker_name(str(run), "run") == "uniform+pop"
    assert run_ranker_name("ask-2", "popularity") is None


def test_unicorn_order_is_refused_where_unicorn_never_ran_even_for_single_targets(tmp_path: Path) -> None:
    """Guards against UNICORN's order taken for any single-target conversations: the persona world with
    single-target users has (user, item) pairs too, but UNICORN never walked them."""
    with pytest.raises(
        CRSError, match=r"--order unicorn is UNICORN's .* persona_world with user 'single' has none"
    ):
        run_evaluation(
            "ask-2", user="single", order="unicorn", episodes=2, out=tmp_path / "x", show_progress=False
        )
    assert not (tmp_path / "x").exists()


def test_an_evaluation_walks_the_split_and_user_kind_it_is_given(tmp_path: Path) -> None:
    """Guards against the env of an evaluation built from the test split or the default user whatever
    ``--split`` and ``--user`` say (the summary would still name them)."""
    result = run_evaluation(
        "ask-2", episodes=4, seed=2, split="valid", user="single", out=tmp_path / "e", show_progress=False
    )
    env = make_env("persona_world", split="valid", user="single")
    policy = make_rule_policy("ask-2", RankerSpec.parse("popularity").build(env.catalog))
    expected = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 4, 2), 2)
    assert dicts(result.records) == dicts(expected)
    walked = np.array([record.goal_index for record in result.records])
    assert result.summary.conversations == conversations_fingerprint("valid", walked)  # the valid split's
    test_split = run_evaluation(
        "ask-2", episodes=4, seed=2, user="single", out=tmp_path / "t", show_progress=False
    )
    auto_user = run_evaluation(
        "ask-2", episodes=4, seed=2, split="valid", out=tmp_path / "a", show_progress=False
    )
    assert dicts(test_split.records) != dicts(expected) != dicts(auto_user.records)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"world_seed": -1}, "world_seed"),
        ({"world_seed": MAX_SEED + 1}, "world_seed"),
        ({"seed": -1}, "seed"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"episodes": 0}, "episodes"),
    ],
)
def test_an_evaluation_setting_out_of_its_range_is_refused_by_name(
    settings: dict[str, int], field: str
) -> None:
    """Guards against a dropped bound of `EvalSpec` (a sweep's task would fail later, or numpy refuse the
    seed, instead of a named error before any work)."""
    with pytest.raises(CRSError, match=f"bad evaluation settings: {field}:"):
        EvalSpec.of(**settings)


def test_an_evaluation_takes_its_settings_bounds_and_refuses_an_unknown_dataset() -> None:
    """Guards against bounds made exclusive, and an unknown dataset let through to fail when loaded."""
    spec = EvalSpec.of(seed=MAX_SEED, world_seed=MAX_SEED, episodes=1)
    assert (spec.seed, spec.world_seed, spec.episodes) == (MAX_SEED, MAX_SEED, 1)
    assert EvalSpec.of(seed=0, world_seed=0).seed == 0
    with pytest.raises(CRSError, match="unknown dataset"):
        EvalSpec.of(dataset="netflix")


def test_an_address_without_workers_takes_the_clusters_cpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Guards against ``--address`` without ``--workers`` running one worker on the cluster (the help
    says: with --address, the cluster's CPUs, i.e. ``workers=None``)."""
    seen = reach(monkeypatch, "run_evaluation")
    result = runner.invoke(app, ["eval", "-p", "ask-2", "--address", "ray://x:1", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, AppReachedError), result.output
    assert seen["workers"] is None and seen["address"] == "ray://x:1"


@pytest.mark.slow  # trains a tiny run: about 5 s on a shared 2-core machine
def test_a_trained_policy_batched_walks_the_split_and_seed_it_is_given(tmp_path: Path) -> None:
    """A trained policy's conversations, batched in `crs eval`, are those of the serial walk over the
    split asked for (guards against the batch's extra envs built from the test split, or seeded apart)."""
    settings = {"ranker": "popularity", "steps": 32, "envs": 1, "eval_every": 0, "test_episodes": 2}
    settings |= {
        "eval_episodes": 8,
        "imitation": None,
        "baselines": [],
        "ppo": {**TINY_PPO, "subprocess": False},
    }
    run_training(make_settings(settings), name="r", runs_dir=tmp_path, show=False)  # the default world
    run = tmp_path / "r"
    result = run_evaluation(
        str(run), split="valid", episodes=5, seed=3, out=tmp_path / "e", show_progress=False
    )
    env = make_env("persona_world", split="valid")
    policy = load_trained_policy(run, env.catalog)
    expected = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 5, 3), 3)
    assert dicts(result.records) == dicts(expected)


# ------------------------------------------------------------------------------------- training
@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({}, "persona_world-s0"),
        ({"seed": 2, "world_seed": 5}, "persona_world-s2"),
        ({"persona_attention": False, "seed": 1}, "persona_world-nopersona-s1"),
        ({"aspect_attention": False, "seed": 1}, "persona_world-noaspect-s1"),
        ({"wrapper": {"ranker_features": False}, "seed": 1}, "persona_world-noscores-s1"),
        (
            {
                "persona_attention": False,
                "aspect_attention": False,
                "wrapper": {"ranker_features": False},
                "seed": 3,
            },
            "persona_world-nopersona-noaspect-noscores-s3",
        ),
    ],
)
def test_a_run_without_a_name_is_named_after_its_dataset_ablation_and_seed(
    settings: dict[str, Any], name: str
) -> None:
    """The default run name is the dataset, each ablation and the training seed (`crs train --help`)
    (guards against an ablation or the seed left out: two different runs would share one folder)."""
    assert default_run_name(make_settings(settings)) == name


def test_training_converses_about_the_valid_split_and_tests_on_the_test_split(tmp_path: Path) -> None:
    """Guards against training (and validation) conversations drawn from the split the ranker learned
    from: the policy would be tuned on conversations whose targets its ranker has seen."""
    (tmp_path / "p").mkdir()
    prepared = _prepare(tiny_settings(), "p", tmp_path / "p", show=False)
    assert prepared.train_env().goals.split_name == "valid"
    assert prepared.test_env().goals.split_name == "test"


@pytest.mark.slow  # trains a tiny run and resumes it: about 6 s on a shared 2-core machine
def test_a_resumed_runs_speed_counts_only_the_steps_this_session_trained(tmp_path: Path) -> None:
    """summary.json's steps per second of a resumed run is this session's steps over its seconds, and
    its test conversations those the test split holds (guards against counting the steps of earlier
    sessions too: a resume from 64 to 128 steps would report twice its speed; and against the asked
    count where the split holds fewer)."""
    settings = tiny_settings(steps=64, baselines=[], test_episodes=100_000)
    run_training(settings, name="r", runs_dir=tmp_path, show=False)
    summary = run_training(None, name="r", runs_dir=tmp_path, resume=True, steps=128, show=False)
    n_test = make_env(catalog=load_catalog("persona_world", seed=0, **WORLD), split="test").goals.n_goals
    assert summary.timesteps == 128 and summary.test_episodes == n_test < 100_000
    assert summary.steps_per_second * summary.train_seconds_this_session == pytest.approx(64, rel=0.3)


@pytest.mark.slow  # trains a tiny run and resumes it: about 6 s on a shared 2-core machine
def test_a_resume_past_a_damaged_state_json_trains_on_and_writes_it_again(tmp_path: Path) -> None:
    """A damaged state.json marks no evaluation due: the resume continues from checkpoint.zip and its
    next checkpoint writes the file again (guards against the damage stopping every resume of the run)."""
    run_training(tiny_settings(steps=64, baselines=[]), name="r", runs_dir=tmp_path, show=False)
    (tmp_path / "r" / "state.json").write_text("{")
    summary = run_training(None, name="r", runs_dir=tmp_path, resume=True, steps=128, show=False)
    state = CheckpointState.read(tmp_path / "r")
    assert summary.timesteps == 128 and state is not None and state.timesteps == 128


@pytest.mark.slow  # trains a tiny run: about 4 s on a shared 2-core machine
def test_a_runs_test_with_other_users_than_crs_evals_says_so(tmp_path: Path) -> None:
    """A run trained and tested with simulated users of other options than `crs eval`'s notes them in
    each tested policy's summary.json (guards against the note dropped: a report would then compare
    the run's test with `crs eval` folders of other users as if they were alike)."""
    settings = tiny_settings(steps=64, baselines=["ask-2"], test_episodes=2, user_kwargs={"noise": 0.0})
    run_training(settings, name="r", runs_dir=tmp_path, show=False)
    note = "simulated users with the run's options {'noise': 0.0} (`crs eval` uses the defaults)"
    for folder in ("trained", "ask-2"):
        assert note in EvalSummary.read(tmp_path / "r" / "tested" / folder).notes


@pytest.mark.slow  # pre-trains a tiny ranker for one epoch: 1.5-3 s on a shared 2-core machine
def test_a_persona_world_run_without_a_ranker_pre_trains_one_into_the_run(tmp_path: Path) -> None:
    """On the persona world the default ranker is pre-trained into the run's ranker/ (`crs train
    --help`; guards against the dataset's rule default, popularity, taken instead)."""
    settings = make_settings({**{k: v for k, v in TINY.items() if k != "ranker"}, "pretrain_epochs": 1})
    run = tmp_path / "r"
    run.mkdir()
    _, entry, _ = _resolve_ranker(settings, settings.dataset_spec().load(), run, show=False, resumed=False)
    assert entry == "artifact:ranker" and (run / "ranker" / "config.json").is_file()


def test_verdicts_without_baselines_are_none() -> None:
    """A run with ``baselines: []`` is tested alone: no verdict (guards against looking for the best of
    no baselines, which fails after the whole training)."""
    alone = {"RL (x)": {metric: np.ones(30) for metric in METRIC_ORDER}}
    assert verdicts("RL (x)", alone) == []


# ------------------------------------------------------------------------------------- crs train
def printed_config(*args: str) -> dict[str, Any]:
    """The settings `crs train ... --print-config` resolves (nothing is trained)."""
    result = runner.invoke(app, ["train", *args, "--print-config"])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_plan_options_add_to_a_config_files_wrapper(tmp_path: Path) -> None:
    """Guards against --plan-depth or --plan-temperature replacing the config's whole ``wrapper`` block
    (its other keys silently reset to their defaults)."""
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump({"setting": "binary", "wrapper": {"n_items": 20, "max_slates_in_a_row": 5}})
    )
    wrapper = printed_config("--config", str(config), "--plan-depth", "2", "--plan-temperature", "0.5")[
        "wrapper"
    ]
    assert (wrapper["plan_depth"], wrapper["plan_temperature"]) == (2, 0.5)
    assert (wrapper["n_items"], wrapper["max_slates_in_a_row"]) == (20, 5)
    depth_only = printed_config("--config", str(config), "--plan-depth", "3")["wrapper"]
    assert (depth_only["plan_depth"], depth_only["n_items"], depth_only["max_slates_in_a_row"]) == (3, 20, 5)


def test_a_set_and_a_fitted_plan_temperature_together_are_refused() -> None:
    """Guards against --fit-plan-temperature silently overriding a --plan-temperature given with it."""
    args = ["train", "--setting", "binary", "--plan-depth", "2", "--plan-temperature", "2"]
    result = runner.invoke(app, [*args, "--fit-plan-temperature", "--print-config"])
    assert result.exit_code == 2, result.output
    assert "--fit-plan-temperature fits one: pass one of them" in flat(result.output)


RESUMED = [
    {"start": 0, "steps": 64, "changed": {}},
    {"start": 64, "steps": 128, "changed": {}},
    {"start": 128, "steps": 192, "changed": {"ppo.learning_rate": [0.0002, 0.0003]}},
]


def test_a_replayed_config_notes_only_the_sessions_that_changed_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards against the replay note firing for a run whose resumes changed nothing, or listing its
    unchanged sessions as changed."""
    config = tmp_path / "config.yaml"
    note_resumed_changes(RESUMED[:2], config)
    assert capsys.readouterr().out == ""
    note_resumed_changes(RESUMED, config)
    out = flat(capsys.readouterr().out)
    assert (
        "resumed with changed settings (steps 128 to 192 with ppo.learning_rate 0.0003 (was 0.0002));" in out
    )


def test_print_config_of_a_resumed_runs_config_is_a_config_file(tmp_path: Path) -> None:
    """Guards against the replay note printed into --print-config's output, which is a config file."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"settings": {"seed": 4}, "phases": RESUMED}))
    result = runner.invoke(app, ["train", "--config", str(config), "--print-config"])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output and yaml.safe_load(result.output)["seed"] == 4


# ------------------------------------------------------------------------------------- crs eval
def summary_of(value: float) -> MetricSummary:
    return MetricSummary(value, value - 0.01, value + 0.01)


def test_the_sessions_table_shows_each_rows_own_figures() -> None:
    """Guards against the sessions table showing hDCG as AT (or the reverse), or the dominant persona's
    tracking as the active one's."""
    metrics = {"SR@5": 0.1, "SR@10": 0.2, "SR@15": 0.345, "AT": 7.25, "hDCG": 0.456}
    row = SessionRow(
        session=1,
        episodes=10,
        metrics={name: summary_of(value) for name, value in metrics.items()},
        tracking=summary_of(0.611),
        dominant_tracking=summary_of(0.722),
        active_is_dominant=0.833,
        last_time=summary_of(0.944),
    )
    first = SessionRow(0, 10, row.metrics, summary_of(0.5), None, 0.25, None)
    block = SessionsSummary("switch", 2, 10, "update", {}, (first, row), {})
    summary = EvalSummary(
        "ask-2",
        "ask-2",
        "persona_world",
        "test",
        "popularity",
        "auto",
        "multiple_choice",
        20,
        1,
        0,
        "x",
        15,
        (),
        row.metrics,
        1.0,
        20.0,
        {},
        sessions=block,
    )
    console = Console(record=True, width=250)
    console.print(sessions_table(summary))
    lines = [flat(line) for line in console.export_text().splitlines()]
    assert "1 0.345 [0.335, 0.355] 7.25 0.456 0.611 0.722 0.833 0.944" in lines
    assert "0 0.345 [0.335, 0.355] 7.25 0.456 0.500 - 0.250 -" in lines


def test_unicorn_order_is_refused_on_a_split_unicorn_never_walked(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """UNICORN's order is that of its test pairs: on the valid split it was accepted, and the output was
    headed "(UNICORN order)" for conversations UNICORN never walked in that order."""
    with pytest.raises(CRSError, match=r"--order unicorn is UNICORN's .*: --split valid has no such order"):
        run_evaluation(
            "ask-2",
            dataset="lastfm_star",
            data_dir=str(real_data_dir),
            split="valid",
            order="unicorn",
            episodes=2,
            out=tmp_path / "x",
            show_progress=False,
        )
    assert not (tmp_path / "x").exists()


def test_an_evaluation_on_the_split_rankers_pre_train_on_says_it_is_no_test_result(tmp_path: Path) -> None:
    """`--split train` ran in silence (SR@15 1.000 with a ranker that memorised those pairs)."""
    said = "the targets are pairs of the train split, which rankers pre-train on"
    for split, noted in (("train", True), ("valid", False), ("test", False)):
        result = run_evaluation("ask-2", split=split, episodes=2, out=tmp_path / split, show_progress=False)
        assert any(said in note for note in result.summary.notes) == noted, (split, result.summary.notes)
