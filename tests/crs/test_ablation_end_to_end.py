"""The ablation end to end: a `crs train` run that pre-trains its own ranker switches the ranker's attentions
off as the policy's (`ablate_ranker`, the default), runs written before the key replay as they ran, a given
ranker pre-trained with the variant's switches counts as the variant's, and the report pairs such variants
whole although their rankers differ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from crs.app.settings import make_settings, recorded_settings
from crs.app.sweep import SweepConfig, run_sweep
from crs.app.training import run_training
from crs.cli import app
from crs.report import build_report
from crs.report.formatting import ranker_text
from crs.report.render import to_html, to_latex, to_markdown, to_metrics
from policies.rankers import RankerSpec
from simulators.errors import CRSError
from tests.crs.test_train_cmd import TINY

runner = CliRunner()
OWN_RANKER = {**TINY, "ranker": "pretrain", "pretrain_epochs": 1}


def _model(run: Path) -> dict:
    return json.loads((run / "ranker" / "config.json").read_text())["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    variants = {
        "full": {},
        "persona-blind": {"persona_attention": False},
        "persona-blind-policy": {"persona_attention": False, "ablate_ranker": False},
        "full-policy": {"ablate_ranker": False},
    }
    for name, switches in variants.items():
        run_training(make_settings({**OWN_RANKER, **switches}), name=name, runs_dir=root, show=False)
    given = {  # a persona-blind policy over a ranker it did not pre-train: one-persona, then popularity
        "persona-blind-given": str(root / "persona-blind" / "ranker"),
        "persona-blind-popularity": "popularity",
    }
    for name, ranker in given.items():
        settings = make_settings({**OWN_RANKER, "ranker": ranker, "persona_attention": False})
        run_training(settings, name=name, runs_dir=root, show=False)
    return {name: root / name for name in (*variants, *given)}


def test_each_switch_ablates_the_ranker_the_run_pretrains_unless_told_not_to() -> None:
    assert make_settings(OWN_RANKER).ranker_switches() == {}
    assert make_settings({**OWN_RANKER, "persona_attention": False}).ranker_switches() == {"personas": 1}
    both = make_settings({**OWN_RANKER, "persona_attention": False, "aspect_attention": False})
    assert both.ranker_switches() == {"personas": 1, "aspect_mode": "uniform"}
    policy_only = make_settings({**OWN_RANKER, "aspect_attention": False, "ablate_ranker": False})
    assert policy_only.ranker_switches() == {}


def test_the_pretrained_rankers_have_the_variants_shape(runs: dict[str, Path]) -> None:
    assert _model(runs["full"])["personas"] == 3
    assert _model(runs["persona-blind"])["personas"] == 1
    assert _model(runs["persona-blind-policy"]) == _model(runs["full"])
    recorded = yaml.safe_load((runs["persona-blind"] / "config.yaml").read_text())["settings"]
    assert recorded["ablate_ranker"] is True
    card = " ".join((runs["persona-blind"] / "MODEL_CARD.md").read_text().split())
    assert "pre-trained by this run: K = 1 personas per user, aspect attention" in card
    given = " ".join((runs["persona-blind-given"] / "MODEL_CARD.md").read_text().split())
    assert "pre-trained as: K = 1 personas per user, aspect attention" in given


def test_a_rankers_attentions_are_read_from_its_artifact(runs: dict[str, Path], tmp_path: Path) -> None:
    assert RankerSpec.parse(str(runs["full"] / "ranker")).attentions() == (True, True)
    assert RankerSpec.parse(str(runs["persona-blind"] / "ranker")).attentions() == (False, True)
    assert RankerSpec.parse("popularity").attentions() is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"kind": "persona_pretrain", "artifact_version": 1}')
    with pytest.raises(CRSError, match="lacks the model"):
        RankerSpec.parse(str(broken)).attentions()


def test_a_run_recorded_before_the_key_replays_with_a_whole_ranker() -> None:
    legacy = {**OWN_RANKER, "persona_attention": False}  # a config.yaml's settings without `ablate_ranker`
    assert make_settings(recorded_settings(legacy)).ranker_switches() == {}
    assert make_settings(recorded_settings({**legacy, "ablate_ranker": True})).ranker_switches() == {
        "personas": 1
    }


def test_the_cli_flag_ablates_the_policy_only(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(OWN_RANKER))
    args = ["train", "--config", str(config), "--no-persona-attention", "--runs-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, "--policy-only-ablation", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["ablate_ranker"] is False and printed["persona_attention"] is False


def _train_output(tmp_path: Path, settings: dict, switch: str) -> str:
    """What `crs train` prints for a tiny run with `settings` and an ablation `switch`, on one line."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = runner.invoke(app, ["train", "--config", str(config), switch, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_given_ranker_is_used_as_it_is_and_the_run_says_so(tmp_path: Path) -> None:
    output = _train_output(tmp_path, TINY, "--no-aspect-attention")  # ranker: popularity
    assert "the ranker popularity is used as it is, so only the policy is ablated" in output


def test_a_given_ranker_with_the_variants_switches_ablates_it_whole_and_the_run_says_so(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    settings = {**OWN_RANKER, "ranker": str(runs["persona-blind"] / "ranker")}
    output = _train_output(tmp_path, settings, "--no-persona-attention")
    assert "was pre-trained with this variant's switches, so the variant is ablated whole" in output


def test_the_report_pairs_variants_whole_only_when_each_ranker_has_its_variants_switches(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    report = build_report(
        [runs["full"], runs["persona-blind"]], tmp_path / "whole", examples=0, persona=False, figures=False
    )
    (table,) = report.tables
    assert table.reference == "full" and table.whole == ("persona-blind",)
    assert table.diffs[0].label == "persona-blind"
    # each variant's baselines are rows of their own, named after the ranker that scored them; the
    # persona-blind ranker's are not paired with the full model (they would mix a rule with its ranker)
    labels = [row.label for row in table.rows]
    assert "ask-7" in labels and "ask-7 (persona-blind ranker)" in labels and len(set(labels)) == len(labels)
    rules = ", ".join(
        f"{rule} (persona-blind ranker)" for rule in ("always-recommend", "ask-4", "ask-7", "max-entropy")
    )
    assert table.unpaired == (
        f"{rules}: rules over an ablation's own ranker, not paired with full "
        "(a difference would mix the rule with that ranker); each is paired with the same rule over full's "
        "ranker (the rankers alone); and with the variant over its ranker",
    )
    # the rankers alone: each rule over the full ranker minus the same rule over the one-persona ranker
    alone = {d.label: d for d in table.ranker_diffs}
    assert sorted(alone) == sorted(rules.split(", ")) and {d.reference for d in alone.values()} == {
        "always-recommend",
        "ask-4",
        "ask-7",
        "max-entropy",
    }
    full_rule, blind_rule = table.row("ask-7"), table.row("ask-7 (persona-blind ranker)")
    keys = sorted(full_rule.values["SR@15"])
    assert keys == sorted(blind_rule.values["SR@15"]) and alone["ask-7 (persona-blind ranker)"].n_pairs == 12
    by_hand = np.mean([full_rule.values["SR@15"][k] - blind_rule.values["SR@15"][k] for k in keys])
    assert alone["ask-7 (persona-blind ranker)"].metrics["SR@15"].mean == pytest.approx(by_hand)
    assert "**The rankers alone**" in to_markdown(report) and "ask-7 $-$ ask-7 (persona-blind ranker)" in (
        to_latex(report)
    )
    assert "ask-7 − ask-7 (persona-blind ranker)" in to_html(report)
    assert "The rankers alone, each rule over the full model's ranker" in report.answer
    # over their own rankers: the persona-blind variant minus each rule over its one-persona ranker
    own = {d.label: d for d in table.own_rule_diffs}
    assert sorted(own) == sorted(alone) and {d.reference for d in own.values()} == {"persona-blind"}
    variant = table.row("persona-blind").values["SR@15"]
    by_hand = np.mean([variant[k] - blind_rule.values["SR@15"][k] for k in keys])
    assert own["ask-7 (persona-blind ranker)"].metrics["SR@15"].mean == pytest.approx(by_hand)
    assert "**Over their own rankers**" in to_markdown(report)
    assert "persona-blind − ask-7 (persona-blind ranker)" in to_html(report)
    assert "persona-blind $-$ ask-7 (persona-blind ranker)" in to_latex(report)
    (written,) = to_metrics(report)["tables"]
    assert {d["row"] for d in written["rankers_alone"]} == set(alone)
    assert {(d["reference"], d["row"]) for d in written["over_own_rankers"]} == {
        ("persona-blind", r) for r in own
    }
    whole = "Paired whole: persona-blind and full each ran over a ranker pre-trained with"
    assert whole in to_markdown(report)
    assert "Paired whole: persona-blind and full" in to_latex(report)
    # a ranker `crs pretrain -k 1` wrote, given to the persona-blind variant, is that variant's too; and a
    # full model is whole whichever `ablate_ranker` it was trained with
    for full, blind in (("full", "persona-blind-given"), ("full-policy", "persona-blind")):
        given = build_report(
            [runs[full], runs[blind]], tmp_path / blind, examples=0, persona=False, figures=False
        )
        assert given.tables[0].whole == ("persona-blind",)
    # a persona-blind policy over a ranker without the variant's switches is no such variant
    mixed = build_report(
        [runs["full"], runs["persona-blind-popularity"]],
        tmp_path / "mixed",
        examples=0,
        persona=False,
        figures=False,
    )
    (table,) = mixed.tables
    assert table.whole == () and "persona-blind" not in {d.label for d in table.diffs}
    assert table.own_rule_diffs == ()
    assert any(line.startswith("persona-blind (ranker ") for line in table.unpaired)
    assert mixed.answer.startswith("From the train runs' own test summaries (unpaired")  # no paired verdict
    policy_only = build_report(
        [runs["full"], runs["persona-blind-policy"]],
        tmp_path / "same",
        examples=0,
        persona=False,
        figures=False,
    )
    (same,) = policy_only.tables
    # the policy-only variant shares the full model's ranker by content: paired as before, no note
    assert same.whole == () and same.diffs[0].label == "persona-blind" and not same.unpaired
    assert "ask-7 (persona-blind ranker)" not in [row.label for row in same.rows]


@pytest.mark.slow
def test_a_sweep_of_whole_variants_pairs_them_and_pools_each_variants_baselines_over_seeds(
    tmp_path: Path,
) -> None:
    config = SweepConfig.model_validate(
        {
            "kind": "train",
            "seeds": [0, 1],
            "ablations": {"full": {}, "persona-blind": {"persona_attention": False}},
            "train": {
                **{key: OWN_RANKER[key] for key in ("world", "envs", "steps", "pretrain_epochs")},
                "eval_every": 0,
                "eval_episodes": 8,
                "test_episodes": 12,
                "baselines": ["ask-4"],
                "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
            },
        }
    )
    run_sweep(config, tmp_path / "sweep", workers=1, backend="serial")
    (table,) = build_report(
        [tmp_path / "sweep"], tmp_path / "report", examples=0, persona=False, figures=False
    ).tables
    assert [(row.label, sorted(r.replica_seed for r in row.runs)) for row in table.rows] == [
        ("rl · full", [0, 1]),
        ("rl · persona-blind", [0, 1]),
        ("ask-4", [0, 1]),
        ("ask-4 (persona-blind ranker)", [0, 1]),
    ]
    assert table.whole == ("rl · persona-blind",)
    assert {ranker_text(row) for row in table.rows} == {"each run's own (2)"}  # not 2 paths per row
    assert {d.label: d.n_pairs for d in table.diffs} == {"rl · persona-blind": 24, "ask-4": 24}
    # the variant over each seed's own one-persona ranker against the rule over the same rankers
    own = {(d.reference, d.label): d.n_pairs for d in table.own_rule_diffs}
    assert own == {("rl · persona-blind", "ask-4 (persona-blind ranker)"): 24}
