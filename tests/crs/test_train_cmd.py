"""`crs train` end to end: the run directory, resume continuing the step count, config files, errors."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.settings import RULE_BASELINES, make_settings
from crs.app.training import FIT_CONVERSATIONS, run_training
from crs.cli import app
from envs import make_env
from envs.belief_fit import fit_temperature
from envs.rollout import evaluate, evaluation_indices
from policies.rankers import build_ranker
from policies.rl import load_trained_policy
from simulators.datasets import load_catalog
from simulators.errors import CRSError

runner = CliRunner()
WORLD = {"n_users": 40, "n_items": 300, "n_groups": 4, "aspects_per_group": 5, "interactions_per_user": 12}
TINY_PPO = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}


TINY = {
    "ranker": "popularity",
    "world": WORLD,
    "envs": 2,
    "steps": 128,
    "eval_every": 64,
    "eval_episodes": 8,
    "test_episodes": 12,
    "checkpoint_every": 64,
    "ppo": {**TINY_PPO, "subprocess": False},  # in-process: faster; the first test uses workers
}


def tiny_settings(**overrides):
    return make_settings({**TINY, **overrides})


def test_run_directory_holds_config_curves_models_and_summary(tmp_path) -> None:
    # each env in its own SubprocVecEnv worker process
    summary = run_training(
        tiny_settings(ppo={**TINY_PPO, "subprocess": True}), name="run", runs_dir=tmp_path, show=False
    )
    assert summary.envs == 2 and summary.env_processes == 2
    run = tmp_path / "run"
    for file in ("config.yaml", "policy.json", "checkpoint.zip", "state.json", "best_model.zip", "model.zip"):
        assert (run / file).is_file(), file
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 0 and config["settings"]["steps"] == 128
    assert {"torch", "stable_baselines3", "sb3_contrib", "cpu_count"} <= set(config["versions"])
    # 2 envs x 32 steps = 64 per rollout: the copy of ask-7 (the persona world's recipe imitates it) at
    # step 0, then evaluations after the updates at 64 and 128 (the final one)
    rows = list(csv.DictReader((run / "eval.csv").open()))
    assert [int(r["timesteps"]) for r in rows] == [0, 64, 128]
    assert len((run / "eval.jsonl").read_text().splitlines()) == 3
    assert any((run / "tb").rglob("events.out.tfevents*"))
    assert summary.timesteps == 128 and json.loads((run / "state.json").read_text())["timesteps"] == 128
    assert set(summary.test) == {"RL (run)", *RULE_BASELINES}
    assert summary.test_episodes == 12


def test_resume_continues_the_step_count_from_the_checkpoint(tmp_path) -> None:
    run_training(tiny_settings(steps=64), name="r", runs_dir=tmp_path, show=False)
    assert json.loads((tmp_path / "r" / "state.json").read_text())["timesteps"] == 64
    # an interrupted run (kill -9) leaves checkpoint.zip + state.json; resuming to 192 trains 128 more steps
    summary = run_training(None, name="r", runs_dir=tmp_path, resume=True, steps=192, show=False)
    assert summary.timesteps == 192
    rows = list(csv.DictReader((tmp_path / "r" / "eval.csv").open()))
    # first session: the copy at 0, then 64 (final); second: 128, 192 (final): the curve continues, and
    # the resumed session does not imitate again
    assert [int(r["timesteps"]) for r in rows] == [0, 64, 128, 192]
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["settings"]["steps"] == 192


def test_resume_with_new_ppo_settings_fine_tunes_with_them(tmp_path) -> None:
    from sb3_contrib import MaskablePPO

    run_training(tiny_settings(steps=64), name="f", runs_dir=tmp_path, show=False)
    ppo = {"learning_rate": 3e-4, "ent_coef": 0.003, "target_kl": 0.05}
    run_training(None, name="f", runs_dir=tmp_path, resume=True, steps=128, ppo=ppo, show=False)
    settings = yaml.safe_load((tmp_path / "f" / "config.yaml").read_text())["settings"]
    assert settings["ppo"]["learning_rate"] == 3e-4 and settings["ppo"]["ent_coef"] == 0.003
    assert settings["ppo"]["n_steps"] == 32  # the rest of the run's settings is kept
    model = MaskablePPO.load(tmp_path / "f" / "checkpoint.zip", device="cpu")
    # the second session trained with the new values (defaults were 1e-3 and 0.01)
    assert model.ent_coef == 0.003 and model.lr_schedule(1.0) == 3e-4 and model.target_kl == 0.05
    assert model.policy.optimizer.param_groups[0]["lr"] == 3e-4
    assert model.num_timesteps == 128


def test_a_warm_started_run_imitates_once_and_its_curve_starts_at_step_0(tmp_path) -> None:
    imitation = {"rule": "ask-2", "steps": 64, "epochs": 2, "learning_rate": 0.003}
    run_training(tiny_settings(steps=64, imitation=imitation), name="w", runs_dir=tmp_path, show=False)
    rows = list(csv.DictReader((tmp_path / "w" / "eval.csv").open()))
    assert [int(r["timesteps"]) for r in rows] == [0, 64]  # the imitated policy is evaluated first
    card = (tmp_path / "w" / "MODEL_CARD.md").read_text()
    assert "imitated the rule `ask-2` (64 turns, 2 epochs, learning rate 0.003;" in card
    recorded = yaml.safe_load((tmp_path / "w" / "config.yaml").read_text())["settings"]["imitation"]
    assert recorded == {**imitation, "batch_size": 256}  # the block as given, plus its defaults
    run_training(None, name="w", runs_dir=tmp_path, resume=True, steps=128, show=False)
    rows = list(csv.DictReader((tmp_path / "w" / "eval.csv").open()))
    assert [int(r["timesteps"]) for r in rows] == [0, 64, 128]  # a resumed run does not imitate again


def test_trained_run_loads_for_crs_eval(tmp_path) -> None:
    run_training(tiny_settings(steps=64), name="e", runs_dir=tmp_path, show=False)
    catalog = load_catalog("persona_world", seed=0, **WORLD)
    policy = load_trained_policy(tmp_path / "e", catalog)
    env = make_env(catalog=catalog, split="test")
    records = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 5, 0), seed=0)
    assert len(records) == 5 and all(1 <= r.agent_actions <= 14 for r in records)
    # a catalogue of other sizes (the default persona world) is refused with the reason
    with pytest.raises(CRSError, match="sizes"):
        load_trained_policy(tmp_path / "e", load_catalog("persona_world"))
    # deterministic: the same conversations give the same records
    again = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 5, 0), seed=0)
    assert [r.to_dict() for r in records] == [r.to_dict() for r in again]


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path) -> None:
    run_training(tiny_settings(steps=64), name="x", runs_dir=tmp_path, show=False)
    with pytest.raises(CRSError, match="--resume"):
        run_training(tiny_settings(steps=64), name="x", runs_dir=tmp_path, show=False)
    with pytest.raises(CRSError, match="there is no run"):
        run_training(None, name="missing", runs_dir=tmp_path, resume=True, show=False)


def test_cli_reads_a_toml_config_and_reports_bad_keys(tmp_path) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        'ranker = "popularity"\nsteps = 64\nenvs = 2\neval_every = 0\neval_episodes = 8\n'
        "test_episodes = 6\n"
        "[world]\nn_users = 40\nn_items = 300\nn_groups = 4\naspects_per_group = 5\n"
        "interactions_per_user = 12\n"
        "[ppo]\nn_steps = 32\nbatch_size = 32\nn_epochs = 1\n"
    )
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(config),
            "--runs-dir",
            str(tmp_path),
            "--name",
            "cli",
            "--seed",
            "3",
            "--workers",
            "--no-ranker-features",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["env_processes"] == 2
    assert "always-recommend" in result.output and "SR@15" in result.output
    # what starts is said first, before the minutes of loading and pre-training (also in a log file)
    said = (
        f"training {tmp_path / 'cli'}: persona_world, multiple_choice setting, ranker popularity, 64 steps, "
        "2 simulated users in worker processes, seed 3"
    )
    assert "".join(result.output.split()).startswith("".join(said.split()))  # a long path wraps anywhere
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())["settings"]
    assert saved["seed"] == 3 and saved["steps"] == 64 and saved["ppo"]["n_steps"] == 32
    assert saved["ppo"]["subprocess"] is True
    # the ablation switch reaches the saved settings and the policy `crs eval` loads
    assert saved["wrapper"]["ranker_features"] is False
    policy = load_trained_policy(tmp_path / "cli", load_catalog("persona_world", seed=0, **WORLD))
    assert policy.wrapper_config.ranker_features is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("stpes: 10\n")
    result = runner.invoke(app, ["train", "--config", str(bad), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "stpes" in result.output


def test_default_envs_are_one_per_core_with_a_fixed_rollout_size() -> None:
    envs = max(os.cpu_count() or 1, 8)  # one per core, at least 8
    settings = make_settings({})
    assert settings.envs == envs
    # worker processes only where they pay: on 2 cores in-process envs train faster (BENCHMARKS.md)
    assert settings.ppo.subprocess == ((os.cpu_count() or 1) > 2)
    assert make_settings({"ppo": {"subprocess": True}}).ppo.subprocess is True
    # 512 steps per PPO update, split over the envs, at least 32 per env
    assert settings.ppo.n_steps == max(512 // envs, 32)
    assert make_settings({"envs": 4}).ppo.n_steps == 128
    assert make_settings({"envs": 64}).ppo.n_steps == 32
    assert make_settings({"envs": 4, "ppo": {"n_steps": 10}}).ppo.n_steps == 10
    with pytest.raises(CRSError, match="envs"):
        make_settings({"envs": 0})


def test_training_rewards_override_the_table_and_unknown_ones_are_refused(tmp_path) -> None:
    from envs.env import Rewards

    run_training(
        tiny_settings(steps=64, rewards={"quit_at_limit": -1.0}), name="w", runs_dir=tmp_path, show=False
    )
    meta = json.loads((tmp_path / "w" / "policy.json").read_text())
    # only the named entry and the persona world recipe's change; the rest is UNICORN's table
    assert meta["train_rewards"] == {**Rewards().__dict__, "quit_at_limit": -1.0, "ask_rejected": 0.0}
    with pytest.raises(CRSError, match="quit_penalty"):
        make_settings({"rewards": {"quit_penalty": -1.0}})


def test_verdicts_pair_the_trained_policy_with_the_best_baseline_per_metric() -> None:
    import numpy as np

    from crs.app.training import verdicts

    n = 200
    ones, zeros, half = np.ones(n), np.zeros(n), np.r_[np.ones(n // 2), np.zeros(n // 2)]
    per_episode = {
        "RL (x)": {"SR@5": half, "SR@10": ones, "SR@15": ones, "AT": np.full(n, 3.0), "hDCG": half},
        "ask-4": {"SR@5": zeros, "SR@10": ones, "SR@15": half, "AT": np.full(n, 5.0), "hDCG": ones},
        "random": {"SR@5": zeros, "SR@10": zeros, "SR@15": zeros, "AT": np.full(n, 2.0), "hDCG": zeros},
    }
    found = {v.metric: v for v in verdicts("RL (x)", per_episode)}
    # SR@15: the best baseline is ask-4 (0.5); trained 1.0 on every conversation: +0.5, CI above 0
    assert found["SR@15"].baseline == "ask-4" and found["SR@15"].word == "better"
    assert found["SR@15"].difference.mean == 0.5
    assert found["SR@10"].word == "tie"  # identical on every conversation: a CI of [0, 0]
    # AT: fewer turns are better, so the best baseline is random's 2.0 and 3.0 is worse
    assert found["AT"].baseline == "random" and found["AT"].word == "worse"
    assert found["hDCG"].baseline == "ask-4" and found["hDCG"].word == "worse"
    # over fewer than 20 conversations a CI away from 0 decides nothing: not a "tie" either
    few = {label: {metric: row[:12] for metric, row in rows.items()} for label, rows in per_episode.items()}
    assert {v.word for v in verdicts("RL (x)", few)} == {"n/a (<20 pairs)"}


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        ([], "multiple_choice"),  # the persona world
        (["--dataset", "yelp_star"], "binary"),  # UNICORN's YELP_STAR
        (["--dataset", "yelp_star", "--setting", "enumerated"], "enumerated"),  # UNICORN's YELP
        (["--dataset", "mcmipl_lastfm_star"], "multiple_choice"),  # MCMIPL's multi-interest release
        (["--dataset", "mcmipl_yelp_star"], "multiple_choice"),  # built the way MCMIPL builds its groups
    ],
)
def test_each_dataset_s_own_setting_is_resolved_and_recorded(args: list[str], setting: str) -> None:
    result = runner.invoke(app, ["train", *args, "--print-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["setting"] == setting


def test_the_same_seed_trains_the_same_policy_and_another_seed_another(tmp_path) -> None:
    import torch
    from sb3_contrib import MaskablePPO

    def weights(name: str, seed: int) -> dict[str, torch.Tensor]:
        run_training(tiny_settings(steps=64, seed=seed), name=name, runs_dir=tmp_path, show=False)
        model = MaskablePPO.load(tmp_path / name / "model.zip", device="cpu")
        return model.policy.state_dict()

    a, b, c = weights("a", 0), weights("b", 0), weights("c", 1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "eval.csv").read_text().split("\n")[1].split(",")[2:] == (
        (tmp_path / "b" / "eval.csv").read_text().split("\n")[1].split(",")[2:]
    )
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_slates_in_a_row_are_capped_at_the_training_users_patience_on_the_persona_world() -> None:
    from simulators.persona_world import WORLD_USER

    assert make_settings({}).wrapper.max_slates_in_a_row == WORLD_USER.patience == 2
    assert make_settings({"user_kwargs": {"patience": 3}}).wrapper.max_slates_in_a_row == 3
    assert make_settings({"user_kwargs": {"patience": None}}).wrapper.max_slates_in_a_row is None
    assert make_settings({"wrapper": {"max_slates_in_a_row": 5}}).wrapper.max_slates_in_a_row == 5
    # real data: UNICORN's and MCMIPL's users never leave, so no cap unless asked for
    assert make_settings({"dataset": "lastfm"}).wrapper.max_slates_in_a_row is None
    with pytest.raises(CRSError, match="max_slates_in_a_row"):
        make_settings({"wrapper": {"max_slates_in_a_row": 0}})


def test_the_cap_never_binds_in_training_where_users_leave_at_it(tmp_path) -> None:
    import torch
    from sb3_contrib import MaskablePPO

    def weights(name: str, cap: int) -> dict[str, torch.Tensor]:
        settings = tiny_settings(steps=64, wrapper={"max_slates_in_a_row": cap})
        run_training(settings, name=name, runs_dir=tmp_path, show=False)
        return MaskablePPO.load(tmp_path / name / "model.zip", device="cpu").policy.state_dict()

    capped, free = weights("capped", 2), weights("free", 14)  # the world's users leave after 2 failed slates
    assert all(torch.equal(capped[k], free[k]) for k in capped)


def test_the_persona_world_trains_with_its_recipe_unless_a_key_says_otherwise() -> None:
    from crs.app.settings import WORLD_RECIPE

    default = make_settings({})
    assert (
        default.imitation is not None
        and default.imitation.rule == "ask-7"
        and default.imitation.steps == 8192
    )
    assert default.ppo.gamma == 1.0 and default.ppo.target_kl == 0.02 and not default.ppo.learn_slate_order
    assert default.wrapper.n_questions == 1 and default.rewards == {
        "quit_at_limit": -1.0,
        "ask_rejected": 0.0,
    }
    mine = make_settings(
        {"ppo": {"gamma": 0.99}, "wrapper": {"n_items": 20}, "imitation": None, "steps": 512}
    )
    assert mine.ppo.gamma == 0.99 and mine.ppo.target_kl == WORLD_RECIPE["ppo"]["target_kl"]  # key by key
    assert mine.wrapper.n_items == 20 and mine.wrapper.n_questions == 1 and mine.imitation is None
    short = make_settings({"steps": 512})
    assert short.imitation is not None and short.imitation.steps == 512  # not all copying
    real = make_settings({"dataset": "lastfm_star"})  # real data: no recipe
    assert real.imitation is None and real.ppo.gamma == 0.99 and real.wrapper.n_questions == 10


def test_plan_depth_trains_a_policy_that_reads_the_search_and_needs_the_binary_setting(tmp_path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**TINY, "setting": "binary", "imitation": None, "baselines": ["ask-4"]})
    )
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "plan"]
    result = runner.invoke(app, [*args, "--plan-depth", "2", "--plan-temperature", "0.5"])
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((tmp_path / "plan" / "config.yaml").read_text())["settings"]["wrapper"]
    assert recorded["plan_depth"] == 2 and recorded["plan_temperature"] == 0.5
    policy = load_trained_policy(tmp_path / "plan", load_catalog("persona_world", seed=0, **WORLD))
    assert policy.wrapper_config.plan_depth == 2 and policy.wrapper_config.plan_temperature == 0.5
    card = (tmp_path / "plan" / "MODEL_CARD.md").read_text()
    assert "planned features on (a depth-2 search, belief temperature 0.5)" in card
    env = make_env(catalog=load_catalog("persona_world", seed=0, **WORLD), split="test", setting="binary")
    records = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 4, 0), seed=0)
    assert len(records) == 4
    refused = runner.invoke(app, ["train", "--plan-depth", "2", "--print-config"])  # the world's own setting
    assert refused.exit_code != 0 and "setting: binary" in refused.output


def test_fit_plan_temperature_records_the_temperature_the_training_openings_like_best(tmp_path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**TINY, "setting": "binary", "imitation": None, "baselines": ["ask-4"], "steps": 64})
    )
    args = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "fit"]
    result = runner.invoke(app, [*args, "--plan-depth", "2", "--fit-plan-temperature"])
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load((tmp_path / "fit" / "config.yaml").read_text())["settings"]
    catalog = load_catalog("persona_world", seed=0, **WORLD)
    env = make_env(catalog=catalog, split="valid", setting="binary")  # popularity: all valid goals
    indices = evaluation_indices(env.goals.n_goals, FIT_CONVERSATIONS, 2)  # seed 0 + 2
    fit = fit_temperature(env, build_ranker("popularity", catalog), indices, 2)
    assert fit.best != 1.0  # else a run that ignored the fit would pass
    assert settings["fit_plan_temperature"] and settings["wrapper"]["plan_temperature"] == fit.best
    assert f"fitted the plan's belief temperature: T {fit.best:g}" in result.output
    policy = load_trained_policy(tmp_path / "fit", catalog)
    assert policy.wrapper_config.plan_temperature == fit.best
    card = (tmp_path / "fit" / "MODEL_CARD.md").read_text()
    assert f"belief temperature {fit.best:g}, fitted on the training conversations" in card
    refused = runner.invoke(app, [*args[:3], "--fit-plan-temperature", "--print-config"])  # no plan_depth
    assert refused.exit_code != 0
    assert "fit_plan_temperature" in refused.output and "plan_depth" in refused.output
    both_flags = ["--plan-depth", "2", "--plan-temperature", "0.5", "--fit-plan-temperature"]
    both = runner.invoke(app, [*args, *both_flags])
    assert both.exit_code != 0 and "pass one of them" in both.output


def printed_config(*args: str) -> dict:
    """The settings `crs train ... --print-config` resolves (nothing is trained)."""
    result = runner.invoke(app, ["train", *args, "--print-config"])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_each_option_reaches_the_settings_and_wins_over_the_config_file(tmp_path) -> None:
    """Every `crs train` option lands in its own setting, over what --config says, and leaves the
    config's other keys alone; a --seed 0 wins over the config's seed too (guards against swapped or
    dropped options, a falsy value taken for "not given", and a block replaced instead of merged)."""
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 5,
                "envs": 6,
                "ppo": {"learning_rate": 0.01, "ent_coef": 0.02, "gamma": 0.9},
                "wrapper": {"n_items": 20, "max_slates_in_a_row": 5},
            }
        )
    )
    plain = printed_config("--config", str(config))
    assert plain["seed"] == 5 and plain["envs"] == 6 and plain["ppo"]["learning_rate"] == 0.01
    args = ["--config", str(config), "--seed", "0", "--envs", "3", "--learning-rate", "0.003"]
    args += ["--ent-coef", "0", "--in-process", "--no-aspect-attention", "--policy-only-ablation"]
    given = printed_config(*args, "--no-ranker-features", "--steps", "96")
    assert given["seed"] == 0 and given["envs"] == 3 and given["steps"] == 96
    assert given["ppo"]["learning_rate"] == 0.003 and given["ppo"]["ent_coef"] == 0.0
    assert given["ppo"]["gamma"] == 0.9  # the config's, kept
    assert given["ppo"]["subprocess"] is False  # --in-process
    assert given["aspect_attention"] is False and given["persona_attention"] is True
    assert given["ablate_ranker"] is False
    assert given["wrapper"]["ranker_features"] is False
    assert given["wrapper"]["n_items"] == 20 and given["wrapper"]["max_slates_in_a_row"] == 5
    assert printed_config("--workers", "--seed", "7", "--envs", "2")["ppo"]["subprocess"] is True
    config.write_text(yaml.safe_dump({"ppo": {"subprocess": True}}))
    assert printed_config("--config", str(config))["ppo"]["subprocess"] is True  # neither flag: the config's
    both = runner.invoke(app, ["train", "--in-process", "--workers", "--print-config"])
    assert both.exit_code == 2 and "--in-process and --workers ask for opposite things" in both.output
    swapped = printed_config("--seed", "7", "--envs", "2")
    assert (swapped["seed"], swapped["envs"]) == (7, 2)
    persona_blind = printed_config("--no-persona-attention")
    assert persona_blind["persona_attention"] is False and persona_blind["aspect_attention"] is True
    assert persona_blind["ablate_ranker"] is True  # the ranker the run pre-trains is ablated too


def test_a_runs_config_yaml_replays_the_settings_it_recorded(tmp_path) -> None:
    """A run's config.yaml (settings under ``settings``) replays them; a run recorded before
    ``ablate_ranker`` pre-trained its ranker whole, and one before ``setting`` in its dataset's setting
    then (guards against reading the recorded settings as a fresh config)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"settings": {"seed": 4, "persona_attention": False}, "phases": []}))
    replayed = printed_config("--config", str(config))
    assert replayed["seed"] == 4 and replayed["persona_attention"] is False
    assert replayed["ablate_ranker"] is False
    config.write_text(yaml.safe_dump({"settings": {"dataset": "yelp_star"}}))
    assert printed_config("--config", str(config))["setting"] == "enumerated"
    config.write_text(yaml.safe_dump({"settings": {"dataset": "yelp_star", "setting": "binary"}}))
    assert printed_config("--config", str(config))["setting"] == "binary"


def test_a_runs_config_yaml_with_top_level_settings_beside_its_block_is_refused(tmp_path) -> None:
    """A settings key written beside a run's ``settings:`` block (an edit of its config.yaml) would not
    be read: refused, naming it, instead of training with the recorded value."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"settings": {"steps": 192}, "name": "r", "phases": [], "steps": 64}))
    result = runner.invoke(app, ["train", "--config", str(config), "--print-config"])
    assert result.exit_code == 2, result.output
    assert (
        "(it has a settings: block), whose other top-level keys are name, seed, versions, written, phases; "
        "steps would not be read: move them into settings:, or pass them as options"
    ) in " ".join(result.output.split())


class TrainingReachedError(Exception):
    """Raised by a stand-in for `run_training` once it has recorded what the CLI passed it."""


def test_run_options_reach_the_training_unchanged(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--name, --runs-dir and --overwrite reach `run_training` as typed, and --resume passes only what
    it applies (the steps and the PPO options), no settings (guards against a dropped --overwrite, which
    would refuse to start an existing run again, or a dropped --steps)."""
    import crs.train_cmd

    seen: dict = {}

    def record(settings, **kwargs) -> None:
        seen.clear()
        seen.update(kwargs, settings=settings)
        raise TrainingReachedError

    monkeypatch.setattr(crs.train_cmd, "run_training", record)
    args = ["train", "--name", "pw", "--runs-dir", str(tmp_path), "--steps", "64"]
    result = runner.invoke(app, [*args, "--overwrite"])
    assert isinstance(result.exception, TrainingReachedError), result.output
    assert seen["name"] == "pw" and seen["runs_dir"] == tmp_path and seen["overwrite"] is True
    assert seen["settings"].steps == 64
    result = runner.invoke(app, args)
    assert isinstance(result.exception, TrainingReachedError), result.output
    assert seen["overwrite"] is False
    result = runner.invoke(app, [*args, "--resume", "--learning-rate", "0.001", "--workers"])
    assert isinstance(result.exception, TrainingReachedError), result.output
    assert seen["settings"] is None and seen["resume"] is True and seen["steps"] == 64
    assert seen["ppo"] == {"learning_rate": 0.001, "subprocess": True}


def test_resume_and_overwrite_together_are_refused(tmp_path) -> None:
    """--resume continues a run and --overwrite deletes it: both at once is a one-line error that
    touches nothing (guards against one of them silently winning)."""
    args = ["train", "--resume", "--overwrite", "--name", "x", "--runs-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "pass one of them" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_config_s_mapping_adds_to_the_world_recipe_key_by_key() -> None:
    """On the persona world a config's ``rewards``, ``ppo``, ``wrapper`` and ``imitation`` entries win
    over the recipe's, and the recipe fills in the rest (guards against the recipe winning over what
    the person wrote)."""
    settings = make_settings(
        {
            "rewards": {"ask_rejected": -0.2},
            "ppo": {"learning_rate": 5e-4},
            "wrapper": {"n_questions": 3},
            "imitation": {"rule": "ask-4", "steps": 100},
        }
    )
    assert settings.rewards["ask_rejected"] == -0.2
    assert settings.ppo.learning_rate == 5e-4 and settings.ppo.gamma == 1.0  # recipe's gamma
    assert settings.wrapper.n_questions == 3
    assert settings.imitation is not None
    assert (settings.imitation.rule, settings.imitation.steps, settings.imitation.epochs) == (
        "ask-4",
        100,
        30,
    )
    assert make_settings({"imitation": {"steps": 20_000}}).imitation.steps == 20_000  # type: ignore[union-attr]


def test_settings_refuse_a_seed_numpy_cannot_take_and_unknown_baselines() -> None:
    """A seed is below 2**32 (numpy's legacy seeding) and a baseline is a rule policy (guards against
    a bad value accepted and failing mid-run)."""
    from crs.app.settings import MAX_SEED

    assert make_settings({"seed": MAX_SEED}).seed == MAX_SEED
    with pytest.raises(CRSError, match="seed"):
        make_settings({"seed": MAX_SEED + 1})
    with pytest.raises(CRSError, match="ask-many"):
        make_settings({"baselines": ["ask-4", "ask-many"]})


def test_an_ablation_switches_off_the_same_part_of_the_ranker_it_pre_trains() -> None:
    """Without persona attention the run's own ranker has one persona per user; without aspect attention
    uniform aspect weights; each switch only its own part, and none with ``ablate_ranker: false``
    (guards against a switch wired to the other attention)."""
    switches = {
        (persona, aspect): make_settings(
            {"persona_attention": persona, "aspect_attention": aspect}
        ).ranker_switches()
        for persona in (True, False)
        for aspect in (True, False)
    }
    assert switches == {
        (True, True): {},
        (False, True): {"personas": 1},
        (True, False): {"aspect_mode": "uniform"},
        (False, False): {"personas": 1, "aspect_mode": "uniform"},
    }
    whole = make_settings({"persona_attention": False, "aspect_attention": False, "ablate_ranker": False})
    assert whole.ranker_switches() == {}
