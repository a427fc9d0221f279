"""Where a mutation audit of the training settings and tables.tex found no test: the ranges and types a
config's values must have, what the settings hand to training (the world's seed, the ablation's switches,
the user's arguments), the recipe's imitation cap and the errors a user reads; and in tables.tex the
characters a paper cannot print raw, the captions of paired differences, separate tables and
returning-user tables. Every expected value is worked out here by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from crs.app.settings import make_settings
from crs.report import load_inputs
from crs.report.analysis import METRICS
from crs.report.build import Report
from crs.report.render import to_latex, to_markdown
from crs.report.render_latex import escape
from crs.report.sessions import SESSION_HEADERS, session_comparisons
from envs.metrics import MIN_PAIRED, MetricSummary
from simulators.errors import CRSError
from tests.crs.test_figures_mutants import report  # noqa: F401 (the figures' report, a fixture)
from tests.crs.test_report_sessions import write_folder

METRIC_HEAD = " & ".join(METRICS) + r" \\"

# ---------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": 0}, r"steps: Input should be greater than or equal to 1"),
        ({"eval_episodes": 0}, r"eval_episodes: Input should be greater than or equal to 1"),
        ({"test_episodes": 0}, r"test_episodes: Input should be greater than or equal to 1"),
        ({"checkpoint_every": 0}, r"checkpoint_every: Input should be greater than or equal to 1"),
        ({"pretrain_epochs": 0}, r"pretrain_epochs: Input should be greater than or equal to 1"),
        ({"envs": 0}, r"envs: Input should be greater than or equal to 1"),
        ({"world": {"n_items": 0}}, r"world\.n_items: Input should be greater than or equal to 1"),
        ({"world": {"n_personas": 0}}, r"world\.n_personas: Input should be greater than or equal to 1"),
        # a shared run's config of 2e9 items made `crs report` and `crs train --resume` hang
        (
            {"world": {"n_items": 2_000_000_000}},
            r"world\.n_items: Input should be less than or equal to 50000",
        ),
        ({"user_kwargs": {"noise": 1.5}}, r"user_kwargs\.noise: Input should be less than or equal to 1"),
        ({"user_kwargs": {"drift": -0.1}}, r"user_kwargs\.drift: Input should be greater than or equal to 0"),
        ({"user_kwargs": {"drift": 1.1}}, r"user_kwargs\.drift: Input should be less than or equal to 1"),
        ({"user_kwargs": {"patience": 0}}, r"user_kwargs\.patience: Input should be greater than or equal"),
    ],
)
def test_a_count_or_probability_outside_its_range_is_refused_by_name(
    data: dict[str, Any], message: str
) -> None:
    """Guards against a range's bound moved by one (a run of 0 steps or 0 test conversations, a user
    who leaves before any slate) or a probability allowed past 1."""
    with pytest.raises(CRSError, match=r"^bad training settings: " + message):
        make_settings(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ppo": {"gamma": None}}, r"ppo\.gamma=None must be of type float"),  # not an optional key
        ({"ppo": {"n_epochs": True}}, r"ppo\.n_epochs=True must be of type int"),  # YAML's true is no count
        ({"ppo": {"learning_rate": "0.1"}}, r"ppo\.learning_rate='0\.1' must be of type float"),
        ({"wrapper": {"ranker_features": 1}}, r"wrapper\.ranker_features=1 must be of type bool"),
        ({"persona_attention": 1}, r"persona_attention: Input should be a valid boolean"),
        ({"ablate_ranker": "yes"}, r"ablate_ranker: Input should be a valid boolean"),
        ({"user_kwargs": {"noise": "0.1"}}, r"user_kwargs\.noise: Input should be a valid number"),
        ({"world": {"n_users": True}}, r"world\.n_users: Input should be a valid integer"),
    ],
)
def test_a_value_of_another_type_is_refused_not_coerced(data: dict[str, Any], message: str) -> None:
    """Guards against lax reading of a config (``true`` taken as 1, ``"yes"`` or 1 as a switch, a
    quoted number as a number) and against a non-optional key of a block taking ``null``."""
    with pytest.raises(CRSError, match=message):
        make_settings(data)


def test_optional_keys_take_null_and_a_switch_takes_a_bool() -> None:
    """The other side of the type checks: ``null`` for an optional key, ``false`` for a switch."""
    settings = make_settings({"ppo": {"target_kl": None}, "wrapper": {"ranker_features": False}})
    assert settings.ppo.target_kl is None and settings.wrapper.ranker_features is False


def test_the_errors_name_what_was_given_and_list_the_known_keys_for_an_unknown_one() -> None:
    """Guards against the value given left out of a range error (or added to an unknown key's), the
    known keys left out of an unknown key's error, and a block's own range check raised without
    saying it is the training settings that are bad."""
    with pytest.raises(CRSError) as error:
        make_settings({"steps": 0})
    expected = "bad training settings: steps: Input should be greater than or equal to 1, got 0"
    assert str(error.value) == expected
    with pytest.raises(CRSError) as error:
        make_settings({"stpes": 10})
    message = str(error.value)
    assert message.startswith("bad training settings: stpes: Extra inputs are not permitted (known keys: ")
    assert "got" not in message and "dataset, data_dir, ranker, steps, envs, seed, world_seed" in message
    with pytest.raises(CRSError, match=r"^bad training settings: .*gamma"):
        make_settings({"ppo": {"gamma": 0.0}})  # PPOConfig's own check: gamma in (0, 1]


def test_a_home_relative_data_dir_is_recorded_under_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against recording ``~/data`` as a folder named ``~`` under the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    settings = make_settings({"dataset": "lastfm", "data_dir": "~/data"})
    assert settings.data_dir == str((tmp_path / "home" / "data").resolve())


def test_rewards_are_recorded_sorted_by_name_on_real_data_too() -> None:
    """Guards against the rewards of a config written in the order the defaults and the config gave
    them: config.yaml writes every block sorted (the world recipe's too), whatever the dataset."""
    rewards = make_settings({"dataset": "lastfm_star", "rewards": {"ask_rejected": 0.0}}).rewards
    assert list(rewards.items()) == [("ask_rejected", 0.0), ("quit_at_limit", -1.0)]


def test_the_catalogue_is_the_world_seed_s_not_the_training_seed_s() -> None:
    """Guards against the training seed building the persona world: a run would train on another
    world than the one its config.yaml names (and `crs eval` then tests on)."""
    settings = make_settings({"seed": 3, "world_seed": 5, "world": {"n_users": 40, "n_items": 300}})
    spec = settings.dataset_spec()
    assert (spec.name, spec.world_seed) == ("persona_world", 5)
    assert spec.world_kwargs() == {"seed": 5, "n_items": 300, "n_users": 40}


def test_the_env_gets_only_the_user_arguments_a_config_changed() -> None:
    """Guards against handing every default user argument to the env: real data's single user takes
    none, so a run on real data would fail to start (and policy.json would record defaults)."""
    assert make_settings({"dataset": "lastfm_star"}).env_options() == {
        "user": "auto",
        "setting": "binary",
        "user_kwargs": {},
    }
    options = make_settings({"user_kwargs": {"noise": 0.2}}).env_options()
    assert options["user_kwargs"] == {"noise": 0.2} and options["setting"] == "multiple_choice"


@pytest.mark.parametrize(("persona", "aspect"), [(False, True), (True, False)])
def test_the_policy_trains_with_each_attention_as_its_own_switch_says(persona: bool, aspect: bool) -> None:
    """Guards against the policy's RL config reading one attention switch for the other (an ablation
    would train the other variant than its name says)."""
    config = make_settings({"persona_attention": persona, "aspect_attention": aspect}).rl_config()
    assert (config.persona_attention, config.aspect_attention) == (persona, aspect)


def test_a_one_step_run_imitates_for_one_step() -> None:
    """Guards against an off-by-one in the recipe's imitation cap: a run of 1 step is a valid run, so
    it copies the rule on at most 1 turn, not the recipe's 8,192."""
    settings = make_settings({"steps": 1})
    assert settings.imitation is not None and settings.imitation.steps == 1


def test_a_search_is_taken_on_a_dataset_whose_own_setting_is_yes_no() -> None:
    """Guards against checking the setting a config named instead of the one the run trains in: real
    data's single user answers yes/no by default, so ``plan_depth`` needs no ``setting: binary``."""
    settings = make_settings({"dataset": "lastfm_star", "wrapper": {"plan_depth": 2}})
    assert settings.setting == "binary" and settings.wrapper.plan_depth == 2


# ---------------------------------------------------------------------------------- tables.tex


def test_latex_writes_out_every_sign_a_paper_font_lacks() -> None:
    """Guards against a sign of the reports' own sentences (×, ≤, →, ✓) or a control character (DEL
    among them) reaching the paper raw: pdflatex stops on the first and prints nothing for the last."""
    assert escape("a × b ≤ c → d ✓") == r"a $\times$ b $\leq$ c $\rightarrow$ d $\surd$"
    assert escape("x\x7fy\x00z\x1f") == "x y z "
    assert escape("A*") == r"A$^*$" and escape("2^3") == r"2\textasciicircum{}3"


def test_the_paired_differences_captions_say_which_way_round_and_on_what(report: Report) -> None:  # noqa: F811
    """Guards against the differences' caption naming the subtraction the wrong way round, dropping
    what the pairing rests on, or giving the rankers-alone tabular the over-own-rankers note (or no
    note), and against each differences tabular headed by another's name."""
    (table,) = report.tables
    tex = to_latex(report)
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    assert (
        r" Below: ask-4 minus each row on the same conversations, 95\% bootstrap CI; $^\dagger$: the CI "
        f"excludes 0; a CI counts only over at least {MIN_PAIRED} pairs; rows of several seeds "
        "are paired over their conversations here"
    ) in caption
    assert (
        " Then the rankers alone: each rule over ask-4's ranker minus the same rule over an ablation's own "
        r"ranker, on the same conversations, 95\% bootstrap CI: what the attentions"
    ) in caption
    assert (
        " Then over their own rankers: each variant paired whole minus each rule over the variant's own "
        r"ranker, on the same conversations, 95\% bootstrap CI: what the trained policy adds"
    ) in caption
    heads = [line.split(" & ")[0] for line in tex.splitlines() if line.endswith(r"& pairs & " + METRIC_HEAD)]
    assert heads == ["row", "the rankers alone", "over their own rankers"]
    assert table.reference == "ask-4"


def test_a_separate_table_says_why_in_its_caption_escaped(report: Report) -> None:  # noqa: F811
    """Guards against the reason a table stands apart left out of its LaTeX caption (a reader would
    compare its rows with table 1's), or written raw (it names other tables' policies)."""
    (table,) = report.tables
    fix = "re-run `crs eval` with the same --episodes and --seed to compare them"
    apart = dataclasses.replace(
        table, separated="not compared with ask_4 50% in one table", separated_fix=fix
    )
    tex = to_latex(dataclasses.replace(report, tables=[table, apart])).splitlines()
    captions = [line for line in tex if line.startswith(r"\caption{")]
    assert " Separate table: " not in captions[0]
    assert r" Separate table: not compared with ask\_4 50\% in one table." in captions[1]
    # the fix is the reader's of the pages, not of a paper
    assert "re-run" not in "\n".join(tex)
    page = to_markdown(dataclasses.replace(report, tables=[table, apart]))
    assert f"not compared with ask_4 50% in one table; {fix}." in " ".join(page.split()).replace("\\", "")
    labels = [line for line in tex if line.startswith(r"\label{")]
    assert labels == [r"\label{tab:crs-comparison-1}", r"\label{tab:crs-comparison-2}"]


def test_the_caption_names_an_unknown_setting_and_every_row_paired_whole(report: Report) -> None:  # noqa: F811
    """Guards against a setting without a stock note left out of the caption (a reader could not tell
    what was asked), and the paired-whole note naming only the first of several ablations."""
    (table,) = report.tables
    other = dataclasses.replace(table.test_set, setting="ranked_choice")
    shown = dataclasses.replace(table, test_set=other, whole=("persona-blind", "aspect-blind"))
    caption = next(
        line
        for line in to_latex(dataclasses.replace(report, tables=[shown])).splitlines()
        if line.startswith(r"\caption{")
    )
    unknown = r"ranked\_choice setting (the synthetic persona world: no published figure compares with it)"
    assert rf"bold: best in the column; {unknown}; 12 conversations per run." in caption
    assert " Paired whole: persona-blind, aspect-blind and ask-4 each ran over a ranker" in caption


@pytest.fixture(scope="module")
def session_report(report: Report, tmp_path_factory: pytest.TempPathFactory) -> Report:  # noqa: F811
    """The figures' report with a returning-user comparison of frozen, update and oracle memory (seed 0)
    on users who switch persona."""
    root = tmp_path_factory.mktemp("sessions")
    folders = [write_folder(root, memory, 0) for memory in ("frozen", "update", "oracle")]
    return dataclasses.replace(report, sessions=session_comparisons(load_inputs(folders).evals))


def test_a_returning_user_table_is_aligned_and_a_report_of_only_such_tables_has_tables(
    session_report: Report,
) -> None:
    """Guards against the sessions tabular's text columns (memory, seeds) right-aligned like figures,
    and a report holding only returning-user tables announced as holding no table."""
    (comparison,) = session_report.sessions
    tex = to_latex(dataclasses.replace(session_report, tables=[]))
    assert "No table" not in tex
    assert r"\begin{tabular}{llrrrrrr}" in tex and len(SESSION_HEADERS) == 8
    assert tex.count(r"\begin{table}") == 1 and r"\label{tab:crs-sessions-1}" in tex
    assert len(comparison.series) == 3


def test_every_returning_user_comparison_gets_its_own_numbered_float(session_report: Report) -> None:
    """Guards against only the first returning-user comparison written, or two under one label."""
    (comparison,) = session_report.sessions
    other = dataclasses.replace(comparison, title="persona_world (test) · ask-4 · regime stable")
    tex = to_latex(dataclasses.replace(session_report, sessions=[comparison, other]))
    labels = [line for line in tex.splitlines() if line.startswith(r"\label{tab:crs-sessions")]
    assert labels == [r"\label{tab:crs-sessions-1}", r"\label{tab:crs-sessions-2}"]
    assert r"Returning users: persona\_world (test) · ask-4 · regime stable." in tex


def test_the_interaction_counts_users_for_returning_user_rows(report: Report) -> None:  # noqa: F811
    """Guards against the interaction's count always called conversations: on returning users the pairs
    (and the count) are users."""
    (table,) = report.tables
    users = dataclasses.replace(table.test_set, sessions=4, regime="switch")
    interaction = {m: MetricSummary(-0.05, -0.125, 0.025) for m in METRICS}
    shown = dataclasses.replace(table, test_set=users, interaction=interaction, n_interaction=1234)
    assert shown.test_set.pair_unit == "users"
    tex = to_latex(dataclasses.replace(report, tables=[shown]))
    assert r"SR@15: $-$0.050 [$-$0.125, +0.025] on 1,234 users." in tex


def test_a_command_named_in_a_caption_keeps_its_double_hyphen(session_report: Report) -> None:
    """A caption names commands (``crs chat --memory``, ``crs eval --sessions``); TeX joined ``--`` into
    an en dash and set a backtick as an opening quote, so a paper printed another option name than the
    one to type."""
    body = [line for line in to_latex(session_report).splitlines() if not line.startswith("%")]
    assert r"\textasciigrave{}crs chat -{}-memory\textasciigrave{}" in "\n".join(body)
    assert not [line for line in body if "--" in line or "`" in line]
    assert escape("`crs chat --memory`, ---") == (
        r"\textasciigrave{}crs chat -{}-memory\textasciigrave{}, -{}-{}-"
    )
