"""`crs eval` end to end: output files, table values recomputed from records, clear errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.app.evaluation import conversations_fingerprint
from crs.app.run_folder import EvalSummary
from crs.app.settings import make_settings
from crs.app.training import run_training
from crs.cli import app
from crs.report import build_report, build_tables, load_inputs
from crs.report.formatting import setting_note
from envs import evaluation_indices, make_env
from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, per_episode_metrics
from envs.setting import SETTING_NOTES

runner = CliRunner()


def test_eval_writes_records_whose_metrics_match_the_summary(tmp_path) -> None:
    out = tmp_path / "ask2"
    result = runner.invoke(app, ["eval", "--policy", "ask-2", "-n", "40", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "SR@15" in result.output and "ask-2" in result.output
    lines = (out / "episodes.jsonl").read_text().splitlines()
    records = [EpisodeRecord.from_dict(json.loads(line)) for line in lines]
    summary = json.loads((out / "summary.json").read_text())
    assert len(records) == 40 == summary["episodes"]
    for name, values in per_episode_metrics(records).items():
        assert summary["metrics"][name]["mean"] == np.mean(values)
    assert summary["dataset"] == "persona_world" and summary["ranker"] == "popularity"


def test_the_persona_user_on_real_data_is_refused_naming_the_users_it_has(tmp_path, real_data_dir) -> None:
    args = ["eval", "-d", "lastfm_star", "--data-dir", str(real_data_dir), "--user", "persona", "-n", "3"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x")])
    message = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and not (tmp_path / "x").exists(), result.output
    assert (
        "--user persona simulates the persona world's users" in message
        and "--user single, multi or auto" in message
    )
    assert "make_persona_world" not in message  # not the Python API's advice


def test_the_default_folder_names_what_differs_from_the_defaults(tmp_path, monkeypatch) -> None:
    """Evaluations that differ in ranker, setting, split or order get default folders of their own (the
    second one was refused: the folder named after dataset, policy and seed held the first)."""
    monkeypatch.chdir(tmp_path)
    variants = {
        "persona_world-ask-4-s1": [],
        "persona_world-ask-4-uniform+profile-s1": ["--ranker", "uniform+profile"],
        "persona_world-ask-4-binary-s1": ["--setting", "binary"],
        "persona_world-ask-4-valid-s1": ["--split", "valid"],
        "persona_world-ask-4-s1-again": ["--setting", "multiple_choice"],  # the world's own: the first
    }
    for folder, extra in variants.items():
        result = runner.invoke(app, ["eval", "-p", "ask-4", "-n", "3", *extra])
        if folder.endswith("-again"):
            assert result.exit_code != 0 and "already holds" in result.output, result.output
            continue
        assert result.exit_code == 0, result.output
        summary = EvalSummary.read(tmp_path / "out" / "eval" / folder)
        assert (summary.ranker, summary.setting, summary.split) == (
            "uniform+profile" if "uniform" in folder else "popularity",
            "binary" if "binary" in folder else "multiple_choice",
            "valid" if "valid" in folder else "test",
        )
    assert len(list((tmp_path / "out" / "eval").iterdir())) == 4


def test_same_seed_same_records_and_other_seed_other_conversations(tmp_path) -> None:
    def records(seed: int, name: str) -> list[str]:
        out = tmp_path / name
        assert (
            runner.invoke(
                app, ["eval", "-p", "random", "-n", "15", "--seed", str(seed), "-o", str(out)]
            ).exit_code
            == 0
        )
        return (out / "episodes.jsonl").read_text().splitlines()

    first = records(5, "a")
    assert first == records(5, "b")
    assert first != records(6, "c")


def test_seeded_order_walks_the_seeds_sample_of_the_split(tmp_path) -> None:
    n_goals = make_env("persona_world", split="test").goals.n_goals

    def walked(seed: int) -> list[int]:
        out = tmp_path / f"s{seed}"
        args = ["eval", "-p", "ask-2", "-n", "8", "--seed", str(seed), "-o", str(out)]
        assert runner.invoke(app, args).exit_code == 0
        return [json.loads(line)["goal_index"] for line in (out / "episodes.jsonl").read_text().splitlines()]

    four, nine = walked(4), walked(9)
    assert four == evaluation_indices(n_goals, 8, 4).tolist()
    assert nine == evaluation_indices(n_goals, 8, 9).tolist() != four


def test_conversations_fingerprint_tells_splits_and_orders_apart() -> None:
    indices = np.arange(10)
    assert conversations_fingerprint("test", indices) == conversations_fingerprint("test", indices.copy())
    assert conversations_fingerprint("valid", indices) != conversations_fingerprint("test", indices)
    assert conversations_fingerprint("test", indices[::-1]) != conversations_fingerprint("test", indices)


def test_bad_input_gives_one_line_errors(tmp_path) -> None:
    for args, message in [
        (["eval", "--policy", "ask-many"], "unknown rule policy"),
        (["eval", "--policy", "runs/nothere"], "or a trained run's folder (none is there)"),
        (["eval", "--dataset", "netflix"], "unknown dataset"),
        (["eval", "--episodes", "0"], "greater than or equal to 1"),
        (["eval", "--ranker", "nope"], "neither one of"),
        (["eval", "--policy", "lookahead-2"], "lookahead-2 plans yes/no questions: it needs the binary"),
        (
            ["eval", "--policy", "probe-1-ask-4", "--setting", "binary", "--ranker", "uniform"],
            "only the multiple-choice",
        ),
    ]:
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, (args, result.output)
        flat = " ".join(result.output.replace("│", " ").split())  # click's error box may wrap
        assert message in flat and "Traceback" not in result.output
        assert not (tmp_path / "x").exists()  # refused before any conversation or output


def test_mcmipl_order_walks_mcmipls_own_test_conversations(tmp_path, real_data_dir) -> None:
    out = tmp_path / "mcmipl"
    args = ["eval", "--policy", "ask-2", "-d", "mcmipl_lastfm_star", "--data-dir", str(real_data_dir)]
    result = runner.invoke(app, [*args, "--order", "mcmipl", "-n", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(MCMIPL order)" in " ".join(result.output.split())  # the title, however it wraps
    goals = make_env("mcmipl_lastfm_star", data_dir=real_data_dir, split="test").goals
    expected = np.random.RandomState(1).permutation(goals.n_goals)[:6].tolist()  # MCMIPL's shuffle, seed 1
    walked = [json.loads(line)["goal_index"] for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert walked == expected != evaluation_indices(goals.n_goals, 6, 1).tolist()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["order"] == "mcmipl" == EvalSummary.read(out).order
    assert summary["world_seed"] is None is EvalSummary.read(out).world_seed  # real data has no world


def test_unicorn_order_walks_unicorns_own_test_pairs(tmp_path, real_data_dir) -> None:
    out = tmp_path / "unicorn"
    args = ["eval", "--policy", "ask-2", "-d", "lastfm_star", "--data-dir", str(real_data_dir), "-n", "5"]
    result = runner.invoke(app, [*args, "--order", "unicorn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(UNICORN order)" in " ".join(result.output.split())
    # UNICORN's __test_tuple_generate__, replayed: [user, item] rows in the JSON's order, shuffled in place
    # by numpy's global generator right after set_random_seed(1)
    split = json.loads((real_data_dir / "lastfm_star/UI_Interaction_data/review_dict_test.json").read_text())
    ui_array = np.array([[int(user), item] for user, items in split.items() for item in items])
    np.random.seed(1)
    np.random.shuffle(ui_array)
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [[r["user"], *r["targets"]] for r in records] == ui_array[:5].tolist()
    assert json.loads((out / "summary.json").read_text())["order"] == "unicorn" == EvalSummary.read(out).order


def test_multiple_choice_on_unicorns_data_names_its_multi_interest_user_and_no_published_figure(
    tmp_path, real_data_dir
) -> None:
    """`--setting multiple_choice` on LastFM* plays MCMIPL's multi-interest user over UNICORN's data: the
    summary names that user (it said "auto"), an older summary's "auto" reads as the user it was, and
    the report's note says no published figure compares (it invited a comparison with MCMIPL's)."""
    folders, said = {}, {}
    for setting in ("multiple_choice", "binary"):
        folders[setting] = tmp_path / setting
        args = ["eval", "--policy", "ask-2", "-d", "lastfm_star", "--data-dir", str(real_data_dir), "-n", "5"]
        result = runner.invoke(app, [*args, "--setting", setting, "--out", str(folders[setting])])
        assert result.exit_code == 0, result.output
        said[setting] = " ".join(result.output.replace("│", " ").split())
    assert (
        "multiple_choice setting, ranker popularity, user multi" in said["multiple_choice"]
    )  # the console too
    users = {
        setting: json.loads((out / "summary.json").read_text())["user"] for setting, out in folders.items()
    }
    assert users == {"multiple_choice": "multi", "binary": "single"}
    # crs eval says so too, and records it: the targets are crs's, not MCMIPL's groups
    own = "multi-interest targets drawn by crs"
    assert own in said["multiple_choice"] and own not in said["binary"]
    notes = json.loads((folders["multiple_choice"] / "summary.json").read_text())["notes"]
    assert any(own in note and "-d mcmipl_lastfm_star" in note for note in notes)
    notes = {
        table.test_set.user: setting_note(table)
        for table in build_tables(load_inputs(folders.values()).evals)[0]
    }
    assert "UNICORN's data, not MCMIPL's release and rules: see the data notes" in notes["multi"]
    # said once, by the data note (the caption said it twice)
    assert notes["multi"].count("no published figure compares") == 1, notes["multi"]
    assert notes["multi"].count("-d mcmipl_lastfm_star") == 1, notes["multi"]
    older = folders["multiple_choice"] / "summary.json"  # written before the data note existed
    kept = older.read_text()
    older.write_text(json.dumps({**json.loads(kept), "notes": []}))
    (table,) = build_tables(load_inputs([folders["multiple_choice"]]).evals)[0]
    assert (
        "no published figure compares with it; MCMIPL's own setting: -d mcmipl_lastfm_star"
        in setting_note(table)
    )
    older.write_text(kept)
    assert notes["single"] == f"{SETTING_NOTES['binary']} (compare with EAR / SCPR / UNICORN figures)"
    # the report's answer names each table's setting, and says once why it has no persona analysis
    report = build_report(list(folders.values()), tmp_path / "report", examples=0, figures=False)
    assert "(multiple_choice setting)" in report.answer and "(binary setting)" in report.answer
    reason = report.unavailable["persona"]
    assert reason.count("no persona model among the inputs") == 1, reason
    for setting, out in folders.items():  # as written before the user was resolved
        summary = json.loads((out / "summary.json").read_text())
        (out / "summary.json").write_text(json.dumps({**summary, "user": "auto"}))
        assert EvalSummary.read(out).user == users[setting]


@pytest.mark.parametrize(
    ("dataset", "user"), [("persona_world", "auto"), ("mcmipl_lastfm_star", "auto"), ("lastfm_star", "multi")]
)
def test_unicorn_order_without_unicorns_pairs_is_refused(tmp_path, real_data_dir, dataset, user) -> None:
    args = ["eval", "-d", dataset, "--data-dir", str(real_data_dir), "--user", user, "--order", "unicorn"]
    result = runner.invoke(app, [*args, "-n", "5", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    flat = " ".join(result.output.replace("│", " ").split())
    assert "--order unicorn" in flat and "-d lastfm_star" in flat and "--order seeded" in flat
    assert not (tmp_path / "x").exists()


def test_mcmipl_order_without_mcmipls_groups_is_refused(tmp_path) -> None:
    result = runner.invoke(app, ["eval", "--order", "mcmipl", "-n", "5", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "--order mcmipl" in result.output and "mcmipl_lastfm_star" in result.output
    assert not (tmp_path / "x").exists()


def test_a_run_trained_in_another_setting_is_evaluated_in_its_own(tmp_path) -> None:
    # the persona world's own setting is multiple_choice; a run trained in binary is evaluated in binary
    settings = {"ranker": "popularity", "steps": 32, "envs": 1, "eval_every": 0, "test_episodes": 4}
    settings.update(eval_episodes=8, setting="binary", imitation=None, baselines=["ask-4"])
    ppo = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "subprocess": False}
    run_training(
        make_settings({**settings, "ppo": ppo}),
        name="binary",
        runs_dir=tmp_path,
        show=False,
    )
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--policy", str(tmp_path / "binary"), "-n", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["setting"] == "binary"


class AppReachedError(Exception):
    """Raised by a stand-in for the application layer once it has recorded what the CLI passed it."""


def reach(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """Replace `crs.eval_cmd`'s `name` (an application-layer entry point) by a recorder; the CLI call
    then ends with `AppReachedError`, and the returned mapping holds the keyword arguments it was given."""
    import crs.eval_cmd

    seen: dict[str, Any] = {}

    def record(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs, args=args)
        raise AppReachedError

    monkeypatch.setattr(crs.eval_cmd, name, record)
    return seen


def test_eval_options_reach_the_evaluation_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Each option of `crs eval` arrives at `run_evaluation` as typed, and the defaults are the ones
    the help states: 600 conversations of the test split, seed 1, one worker (guards against a
    dropped, swapped or re-defaulted option)."""
    seen = reach(monkeypatch, "run_evaluation")
    result = runner.invoke(app, ["eval", "-p", "ask-2", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, AppReachedError), result.output
    (spec,) = seen["args"]
    assert (spec.episodes, spec.seed, spec.split, spec.world_seed, spec.order) == (
        600,
        1,
        "test",
        0,
        "seeded",
    )
    assert seen["workers"] == 1 and seen["address"] is None and seen["overwrite"] is False
    args = ["eval", "-p", "ask-4", "-n", "7", "--seed", "4", "--split", "valid", "--world-seed", "3"]
    result = runner.invoke(app, [*args, "-w", "2", "--overwrite", "-o", str(tmp_path / "y")])
    assert isinstance(result.exception, AppReachedError), result.output
    (spec,) = seen["args"]
    assert (spec.policy, spec.episodes, spec.seed, spec.split, spec.world_seed) == ("ask-4", 7, 4, "valid", 3)
    assert seen["workers"] == 2 and seen["overwrite"] is True and seen["out"] == tmp_path / "y"


def test_session_options_reach_the_session_evaluation_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """`crs eval --sessions` passes its users (--episodes), sessions, regime, memory, memory update,
    seeds and split as typed (guards against one given for another, or dropped)."""
    seen = reach(monkeypatch, "run_session_evaluation")
    args = ["eval", "-p", "ask-4", "--ranker", "runs/r", "--sessions", "5", "--regime", "switch"]
    args += ["--memory", "update", "--memory-update", "both", "-n", "9", "--seed", "2", "--world-seed", "4"]
    args += ["--setting", "multiple_choice"]
    result = runner.invoke(app, [*args, "--split", "valid", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, AppReachedError), result.output
    expected = {"sessions": 5, "sequences": 9, "regime": "switch", "memory": "update", "seed": 2}
    expected |= {"memory_update": "both", "world_seed": 4, "split": "valid", "ranker": "runs/r"}
    expected |= {"setting": "multiple_choice"}
    assert {key: seen[key] for key in expected} == expected


@pytest.mark.parametrize(
    "extra",
    [
        ["--order", "unicorn"],
        ["--user", "multi"],
        ["-d", "lastfm_star", "--user", "persona"],
        ["--workers", "2"],
        ["--address", "ray://x:1"],
    ],
)
def test_session_options_refuse_what_returning_users_do_not_take(
    monkeypatch: pytest.MonkeyPatch, tmp_path, extra: list[str]
) -> None:
    """With --sessions, an option returning users cannot honour is refused in one line naming it, before
    any conversation (guards against one of them let through and silently ignored)."""
    seen = reach(monkeypatch, "run_session_evaluation")
    args = ["eval", "--sessions", "4", "--regime", "switch", "--memory", "update", *extra]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert f"--sessions does not take {extra[-2]}" in result.output
    assert not seen


def test_session_options_accept_what_returning_users_take(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """One worker and the persona user on the persona world are what returning users run with anyway:
    accepted (guards against refusing them)."""
    seen = reach(monkeypatch, "run_session_evaluation")
    args = ["eval", "--sessions", "4", "--regime", "switch", "--memory", "update", "-w", "1"]
    result = runner.invoke(app, [*args, "--user", "persona", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, AppReachedError), result.output
    assert seen["sessions"] == 4


def interrupt_at_step(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the env's `n`-th step from now raise KeyboardInterrupt, as Ctrl-C there would."""
    step, steps = ConversationEnv.step, []

    def interrupted(self: ConversationEnv, action: dict[str, Any]) -> Any:
        steps.append(action)
        if len(steps) == n:
            raise KeyboardInterrupt
        return step(self, action)

    monkeypatch.setattr(ConversationEnv, "step", interrupted)


def test_ctrl_c_says_nothing_was_recorded_and_keeps_the_earlier_evaluation(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of an --overwrite evaluation (at the env's 30th step) exits 130 saying that
    nothing was recorded, and the earlier evaluation's files are as they were (`crs eval --sessions`:
    tests/crs/test_sessions_eval.py)."""
    out = tmp_path / "e"
    command = ["eval", "--policy", "ask-2", "-n", "20", "--out", str(out)]
    assert runner.invoke(app, command).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    interrupt_at_step(monkeypatch, 30)
    result = runner.invoke(app, [*command, "--overwrite"])
    assert result.exit_code == 130, result.output
    assert "interrupted: no conversation was recorded" in " ".join(result.output.split())
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_default_output_holding_another_evaluation_says_what_it_holds(tmp_path, monkeypatch) -> None:
    """The default folder (out/eval/<dataset>-<policy>-s<seed>) leaves the number of conversations out: a
    second evaluation of another size is refused saying what the folder holds, so --overwrite is not
    taken blindly."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["eval", "-p", "ask-2", "-n", "5"]).exit_code == 0
    result = runner.invoke(app, ["eval", "-p", "ask-2", "-n", "7"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "out/eval/persona_world-ask-2-s1 already holds results" in message
    assert (
        "they are ask-2 on persona_world / test: 5 conversations, seed 1, multiple_choice setting" in message
    )
