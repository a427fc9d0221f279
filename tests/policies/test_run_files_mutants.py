"""A run folder's policy.json and state.json read back exactly, damaged files refused by name, and the
RL / PPO settings' bounds and defaults (`policies.rl.run_files`, `policies.rl.config`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from envs.sb3_wrapper import WrapperConfig
from policies.rl.config import ImitationConfig, PPOConfig, RLConfig
from policies.rl.run_files import CheckpointState, PolicyMeta, model_file, run_ranker, trained_setting
from simulators.errors import CRSError


def _write_policy_json(run: Path, data: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "policy.json").write_text(json.dumps(data))


def test_policy_meta_reads_back_every_recorded_field(tmp_path: Path) -> None:
    """Guards against a field of policy.json dropped, renamed or reordered on write or read (sizes'
    order, world seed, fingerprint, ranker identity, the attention switches, the wrapper sizes)."""
    rl = RLConfig(
        n_envs=2,
        n_steps=48,
        persona_attention=False,
        aspect_attention=False,
        wrapper=WrapperConfig(n_questions=5, n_items=12, probe_size=2),
    )
    meta = PolicyMeta(
        catalog="persona_world",
        ranker="transe:emb.pt",
        rl=rl,
        sizes=(3, 5, 7),
        env={"user": "persona", "setting": "multiple_choice"},
        train_rewards={"rec_success": 1.0, "ask_fail": -0.1},
        train_goals="train",
        world_seed=7,
        fingerprint="f1a2",
        ranker_identity="sha:99",
    )
    meta.write(tmp_path)
    back = PolicyMeta.read(tmp_path)
    assert back == meta
    assert back.sizes == (3, 5, 7)
    assert (back.rl.persona_attention, back.rl.aspect_attention) == (False, False)
    assert (back.rl.wrapper.n_questions, back.rl.wrapper.n_items, back.rl.wrapper.probe_size) == (5, 12, 2)
    assert (back.world_seed, back.fingerprint, back.ranker_identity) == (7, "f1a2", "sha:99")
    assert trained_setting(tmp_path) == "multiple_choice"


def test_policy_meta_of_an_old_run_gets_the_documented_defaults(tmp_path: Path) -> None:
    """Guards against wrong defaults for keys older runs lack: the popularity ranker, "valid" goals,
    world seed 0, and the dataset's legacy setting (yelp_star: enumerated; others: None)."""
    _write_policy_json(tmp_path / "old", {"catalog": "yelp_star", "rl": {}})
    old = PolicyMeta.read(tmp_path / "old")
    assert (old.ranker, old.train_goals, old.world_seed) == ("popularity", "valid", 0)
    assert (old.sizes, old.fingerprint, old.ranker_identity) == (None, None, None)
    assert old.env["setting"] == "enumerated"
    assert trained_setting(tmp_path / "old") == "enumerated"
    _write_policy_json(tmp_path / "other", {"catalog": "persona_world", "rl": {}, "env": {"user": "x"}})
    assert PolicyMeta.read(tmp_path / "other").env == {"user": "x", "setting": None}
    assert trained_setting(tmp_path / "other") is None


@pytest.mark.parametrize(
    "entry",
    [
        {"sizes": [1, 2]},
        {"sizes": ["a", 1, 2]},
        {"env": ["binary"]},
        {"rl": {"no_such_setting": 1}},
        {"world_seed": "seven"},
        {"rl": {"gamma": 2.0}},  # in range for the type, out of RLConfig's own range: was a bare message
    ],
)
def test_a_damaged_policy_json_is_refused_by_name(tmp_path: Path, entry: dict[str, Any]) -> None:
    """Guards against a bad entry of policy.json escaping as a bare Python error (IndexError, ...)
    instead of a CRSError naming the file."""
    _write_policy_json(tmp_path, {"catalog": "persona_world", "ranker": "popularity", "rl": {}, **entry})
    with pytest.raises(CRSError, match=r"policy\.json"):
        PolicyMeta.read(tmp_path)


def test_an_unknown_recorded_setting_is_refused(tmp_path: Path) -> None:
    """Guards against `trained_setting` returning an edited, unknown setting unchecked."""
    _write_policy_json(tmp_path, {"catalog": "persona_world", "rl": {}, "env": {"setting": "yes_no"}})
    with pytest.raises(CRSError, match="yes_no"):
        trained_setting(tmp_path)


def test_a_relative_ranker_file_is_resolved_in_the_run(tmp_path: Path) -> None:
    """Guards against a relative TransE file or artifact folder of policy.json being read from the
    working directory instead of the run folder."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    PolicyMeta(catalog="persona_world", ranker="transe:emb.pt", rl=RLConfig()).write(tmp_path / "a")
    assert run_ranker(tmp_path / "a").path == tmp_path / "a" / "emb.pt"
    PolicyMeta(catalog="persona_world", ranker="artifact:rk", rl=RLConfig()).write(tmp_path / "b")
    assert run_ranker(tmp_path / "b").path == tmp_path / "b" / "rk"


@pytest.mark.parametrize(
    "state", [CheckpointState(1234, (0.5, 0.25), 2048), CheckpointState(-1, (0.0, 0.125))]
)
def test_checkpoint_state_reads_back_exactly(tmp_path: Path, state: CheckpointState) -> None:
    """Guards against state.json swapping SR@15 and hDCG or dropping the pending evaluation."""
    assert CheckpointState.read(tmp_path) is None  # before the first checkpoint
    state.write(tmp_path)
    assert CheckpointState.read(tmp_path) == state


@pytest.mark.parametrize(
    "data",
    [
        {"timesteps": 5, "best_score": [0.1, 0.2, 0.3]},
        {"timesteps": "five", "best_score": [0.1, 0.2]},
        {"timesteps": 5, "best_score": [0.1, "high"]},
        {"timesteps": 5, "best_score": [0.1, 0.2], "pending_eval": "soon"},
        {"timesteps": 5},
    ],
)
def test_a_damaged_state_json_is_refused_by_name(tmp_path: Path, data: dict[str, Any]) -> None:
    """Guards against a bad or missing state.json entry escaping as a bare ValueError or KeyError."""
    (tmp_path / "state.json").write_text(json.dumps(data))
    with pytest.raises(CRSError, match=r"state\.json"):
        CheckpointState.read(tmp_path)


def test_model_file_prefers_best_then_final_then_checkpoint(tmp_path: Path) -> None:
    """Guards against evaluating the final or latest model while a best one exists."""
    with pytest.raises(CRSError, match="has no model"):
        model_file(tmp_path)
    for name in ("checkpoint.zip", "model.zip", "best_model.zip"):
        (tmp_path / name).write_bytes(b"zip")
        assert model_file(tmp_path) == tmp_path / name
    # a best model that is no regular file was skipped, and model.zip evaluated without a word
    (tmp_path / "best_model.zip").unlink()
    (tmp_path / "best_model.zip").symlink_to("/dev/null")
    with pytest.raises(CRSError, match=r"best_model\.zip is not a regular file .* remove it to evaluate"):
        model_file(tmp_path)
    (tmp_path / "best_model.zip").unlink()
    (tmp_path / "best_model.zip").symlink_to(tmp_path / "gone.zip")  # dangling
    with pytest.raises(CRSError, match=r"best_model\.zip is not a regular file"):
        model_file(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_steps": 1},
        {"batch_size": 2},
        {"n_epochs": 1},
        {"ent_coef": 0.0},
        {"vf_coef": 0.0},
        {"gamma": 1.0},
        {"gae_lambda": 1.0},
        {"target_kl": 0.01},
    ],
)
def test_ppo_settings_at_their_inclusive_bounds_are_accepted(kwargs: dict[str, Any]) -> None:
    """Guards against a bound made strict (batch size 2, no entropy bonus, gamma 1 refused)."""
    config = PPOConfig(**kwargs)
    assert all(getattr(config, name) == value for name, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 1}, "batch_size=1"),
        ({"n_epochs": 0}, "n_epochs=0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"target_kl": 0.0}, "target_kl=0.0"),
        ({"gamma": 1.01}, "gamma=1.01"),
        ({"gae_lambda": 1.5}, "gae_lambda=1.5"),
        ({"ent_coef": -0.01}, "ent_coef=-0.01"),
    ],
)
def test_ppo_settings_out_of_range_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    """Guards against a bound dropped or loosened, and an error that does not name the bad value."""
    with pytest.raises(CRSError, match=message):
        PPOConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_envs": 2.0}, "RLConfig.n_envs=2.0 must be of type int"),
        ({"n_envs": True}, "RLConfig.n_envs=True must be of type int"),
        ({"n_steps": 32.5}, "RLConfig.n_steps=32.5 must be of type int or None"),
        ({"batch_size": "32"}, "RLConfig.batch_size='32' must be of type int"),
        ({"subprocess": 1}, "RLConfig.subprocess=1 must be of type bool or None"),
        ({"wrapper": {"n_questions": 3}}, "RLConfig.wrapper=.* must be of type WrapperConfig"),
        ({"learning_rate": float("inf")}, "RLConfig.learning_rate=inf must be a finite number"),
        ({"target_kl": float("nan")}, "RLConfig.target_kl=nan must be a finite number"),
    ],
)
def test_rl_config_refuses_values_of_another_type_by_name(kwargs: dict[str, Any], message: str) -> None:
    """A library caller's 2.0 envs or dict of wrapper sizes was accepted and failed deep in training
    ('float' object cannot be interpreted as an integer, 'dict' object has no attribute 'n_items')."""
    with pytest.raises(CRSError, match=message):
        RLConfig(**kwargs)
    assert RLConfig(learning_rate=1).learning_rate == 1  # an int is a number


def test_rl_config_resolves_rollout_steps_per_env() -> None:
    """Guards against n_steps = min(...) instead of max(512 // envs, 32), and 0 envs accepted."""
    assert [RLConfig(n_envs=n).n_steps for n in (1, 8, 16, 32)] == [512, 64, 32, 32]
    assert RLConfig(n_envs=8, n_steps=100).n_steps == 100
    with pytest.raises(CRSError, match="n_envs=0"):
        RLConfig(n_envs=0)


@pytest.mark.parametrize(("cores", "workers"), [(2, False), (3, True), (None, False)])
def test_worker_processes_by_default_only_from_three_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, workers: bool
) -> None:
    """Guards against worker processes chosen on a 2-core machine or refused on a 3-core one."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert RLConfig(n_envs=2).subprocess is workers
    assert RLConfig(n_envs=2, subprocess=not workers).subprocess is (not workers)


def test_rl_config_defaults_are_as_documented() -> None:
    """Guards against a changed default (10 PPO epochs, both attentions on, 8 envs, batch 256)."""
    config = RLConfig()
    assert (config.n_epochs, config.batch_size, config.n_envs) == (10, 256, 8)
    assert (config.persona_attention, config.aspect_attention, config.learn_slate_order) == (True, True, True)
    assert (config.target_kl, config.slate_entropy_scale, config.train_embeddings) == (None, None, False)
    assert config.wrapper == WrapperConfig()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": True}, "imitation.steps=True"),
        ({"epochs": 0}, "imitation.epochs=0"),
        ({"batch_size": -1}, "imitation.batch_size=-1"),
        ({"learning_rate": 1}, "imitation.learning_rate=1"),
        ({"learning_rate": 1.0}, "imitation.learning_rate=1.0"),
    ],
)
def test_bad_imitation_numbers_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    """Guards against a boolean taken as a count, a 0 count, or a learning rate of 1 accepted."""
    with pytest.raises(CRSError, match=message):
        ImitationConfig(**kwargs)
    assert ImitationConfig(steps=1, epochs=1, batch_size=1, learning_rate=0.999).steps == 1
