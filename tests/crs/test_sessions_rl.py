"""A trained RL policy on returning users (#16): each session it acts with the persona memory's belief,
in its wrapper's ranker and in its encoder's prior row, and nothing of one session leaks into another."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crs.app.run_folder import EvalSummary
from crs.app.sessions import ReturningResult, evaluate_returning
from crs.app.settings import make_settings
from crs.cli import app
from envs.ranker import ExplainablePersonaRanker
from envs.registry import make_env
from envs.sessions import run_sequences
from policies.memory import PersonaMemory
from policies.rl import RLConfig, RLPolicy, build_model, make_vec_env
from policies.rl.acting import PriorRowError
from policies.rl.run_files import PolicyMeta
from simulators.datasets import DatasetSpec
from tests.crs.test_sessions_eval import ranker, runner, world
from tests.crs.tiny_runs import pretrain_tiny, untrained_run

SESSIONS = 3
SEQUENCES = 8


@lru_cache(maxsize=1)
def policy() -> RLPolicy:
    """A tiny MaskablePPO policy over the ranker, its encoder's priors loaded from it, briefly trained."""
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64, hidden=16)
    vec = make_vec_env(lambda: make_env(catalog=world(), split="valid"), ranker(), config, seed=0)
    model = build_model(vec, ranker(), config, seed=0)
    model.learn(64)
    setting = make_env(catalog=world(), split="test").setting
    return RLPolicy(model.policy, ranker(), config.wrapper, name="tiny", setting=setting)


def trained_priors() -> torch.Tensor:
    return policy().encoder.log_prior.weight.detach().clone()


@dataclass
class Recorder:
    """Not the thing under test: the tiny policy as a `BeliefPolicy`, recording per session the
    encoder's prior row of the session's user at every forward pass (a forward hook)."""

    inner: RLPolicy
    rows: list[list[torch.Tensor]] = field(default_factory=list)
    users: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def setting(self) -> Any:
        return self.inner.setting

    def for_session(self, view: ExplainablePersonaRanker, user: int) -> RLPolicy:
        self.rows.append([])
        self.users.append(user)
        session = self.inner.for_session(view, user)
        assert session.ranker is view  # its wrappers score with the memory's view
        return session

    def hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self.rows[-1].append(self.inner.encoder.log_prior.weight[self.users[-1]].detach().clone())


@cache
def recorded(memory: str, seed: int = 2) -> tuple[ReturningResult, Recorder]:
    recorder = Recorder(policy())
    handle = policy().encoder.register_forward_hook(recorder.hook)
    try:
        result = evaluate_returning(
            world(),
            ranker(),
            recorder,
            regime="switch",
            sessions=SESSIONS,
            sequences=SEQUENCES,
            memory=memory,  # type: ignore[arg-type]
            seed=seed,
        )
    finally:
        handle.remove()
    return result, recorder


def test_each_oracle_session_feeds_the_oracle_prior_to_the_encoder_and_leaves_the_model_as_trained() -> None:
    before = trained_priors()
    result, recorder = recorded("oracle")
    assert len(recorder.rows) == SEQUENCES * SESSIONS
    memory = PersonaMemory(ranker(), "oracle")
    moved = 0
    for t, rows, user in zip(result.tracking, recorder.rows, recorder.users, strict=True):
        assert user == result.sequences[t.sequence].user and rows  # every session acted at least once
        prior = memory.oracle_prior(t.active) if t.active >= 0 else np.full(3, 1 / 3)
        expected = torch.as_tensor(np.log(prior), dtype=torch.float32)
        for row in rows:
            torch.testing.assert_close(row, expected)
        moved += not torch.allclose(expected, before[user])
    assert moved == len(recorder.rows)  # the ranker's prior is never the oracle's
    torch.testing.assert_close(trained_priors(), before, rtol=0, atol=0)  # written back after each pass


def test_frozen_sessions_act_with_the_trained_rows_and_replay_a_plain_evaluation() -> None:
    result, recorder = recorded("frozen")
    before = trained_priors()
    for rows, user in zip(recorder.rows, recorder.users, strict=True):
        for row in rows:
            torch.testing.assert_close(row, before[user], rtol=0, atol=0)
    plain = run_sequences(world(), result.sequences, lambda *_: policy(), 2, setting=policy().setting)
    assert [r.episode for r in plain] == [r.episode for r in result.records]


def test_update_sessions_read_the_memorys_moving_prior() -> None:
    result, recorder = recorded("update")
    frozen, _ = recorded("frozen")
    before = trained_priors()
    first = [rows[0] for rows in recorder.rows]
    for t, row, user in zip(result.tracking, first, recorder.users, strict=True):
        if t.session == 0:  # each sequence starts from the ranker's prior
            torch.testing.assert_close(row, before[user], rtol=0, atol=0)
    assert (
        sum(not torch.equal(row, before[user]) for row, user in zip(first, recorder.users, strict=True)) > 0
    )
    # the memory's belief changed what the policy did in some session
    oracle, _ = recorded("oracle")
    assert [r.episode for r in oracle.records] != [r.episode for r in frozen.records]


def test_a_seed_replays_the_same_sessions() -> None:
    again = evaluate_returning(
        world(),
        ranker(),
        policy(),
        regime="switch",
        sessions=SESSIONS,
        sequences=SEQUENCES,
        memory="update",
        seed=2,
    )
    result, _ = recorded("update")
    assert again.records == result.records and again.tracking == result.tracking


def test_a_prior_row_that_does_not_fit_the_encoder_is_a_named_error() -> None:
    view = PersonaMemory(ranker(), "frozen").ranker_for(0)
    with pytest.raises(PriorRowError, match="user 40"):
        policy().for_session(view, 40)
    narrow = np.zeros((world().n_users, 2))
    with pytest.raises(PriorRowError, match="2 personas does not fit"):
        RLPolicy(policy().policy, ranker(), policy().wrapper_config, prior=(0, narrow[0]))


# ------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as `crs train` writes one, on the default persona world: a tiny `crs pretrain`
    artifact as its ranker/ and an untrained (but loadable) model with the encoder's priors from it."""
    root = tmp_path_factory.mktemp("runs")
    catalog = DatasetSpec("persona_world", None, 0).load()
    return untrained_run(root / "tiny-run", pretrain_tiny(root / "pretrain"), catalog)


def sessions_args(run: Path, memory: str, out: Path) -> list[str]:
    args = ["eval", "-p", str(run), "--sessions", "3", "--regime", "switch", "--memory", memory]
    return [*args, "-n", "4", "--seed", "1", "-o", str(out)]


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.mark.slow  # the tiny `crs pretrain` artifact takes ~20 s on a shared 2-core machine
def test_crs_eval_sessions_runs_a_trained_run_and_records_it(trained_run: Path, tmp_path: Path) -> None:
    written = {}
    for memory in ("frozen", "oracle"):
        result = runner.invoke(app, sessions_args(trained_run, memory, tmp_path / memory))
        assert result.exit_code == 0, result.output
        written[memory] = EvalSummary.read(tmp_path / memory)
    oracle = written["oracle"]
    assert oracle.policy == "tiny-run (memory oracle)" and oracle.policy_spec == str(trained_run)
    assert oracle.ranker == "run" and oracle.episodes == 12 and oracle.notes == written["frozen"].notes
    assert oracle.run_ranker == str(trained_run / "ranker")  # its own artifact, named where it lies
    assert oracle.sessions is not None and oracle.sessions.memory == "oracle"
    assert oracle.conversations == written["frozen"].conversations  # the same sessions in both modes
    assert not any("fine-tuned" in note for note in oracle.notes)  # its encoder's priors are the ranker's
    # "run" names the run's own ranker; any other --ranker is refused, as plain `crs eval` refuses it,
    # even the run's own folder (with a modifier such as +profile it would be another ranker)
    again = runner.invoke(app, [*sessions_args(trained_run, "update", tmp_path / "u"), "--ranker", "run"])
    assert again.exit_code == 0, again.output
    for other_ranker in (str(trained_run / "ranker"), "popularity"):
        other = runner.invoke(
            app, [*sessions_args(trained_run, "update", tmp_path / "p"), "--ranker", other_ranker]
        )
        assert other.exit_code == 2 and "ranks with its own ranker" in flat(other.output), other.output
    seed = runner.invoke(app, [*sessions_args(trained_run, "update", tmp_path / "w"), "--world-seed", "3"])
    assert seed.exit_code == 2 and "pass --world-seed 0" in flat(seed.output), seed.output


@pytest.mark.slow  # trains a tiny run
def test_a_run_whose_ranker_has_one_persona_per_user_is_refused_naming_it(tmp_path: Path) -> None:
    """A run trained over a ranker of one persona per user has no persona to track: refused naming its
    ranker (it failed later, in `held_out_sequences`, on real data)."""
    from crs.app.training import run_training
    from tests.crs.test_train_cmd import TINY

    settings = {k: v for k, v in TINY.items() if k != "world"} | {"ranker": "uniform+profile", "steps": 64}
    run_training(make_settings(settings), name="one", runs_dir=tmp_path, show=False)
    result = runner.invoke(app, sessions_args(tmp_path / "one", "frozen", tmp_path / "x"))
    message = flat(result.output)
    assert result.exit_code == 2 and not (tmp_path / "x").exists(), result.output
    assert "was trained with the ranker 'uniform+profile', which models one persona per user" in message


def test_a_run_of_another_dataset_is_refused_with_sessions(tmp_path: Path) -> None:
    run = tmp_path / "lastfm-run"
    run.mkdir()
    PolicyMeta(catalog="lastfm", ranker="popularity", rl=RLConfig()).write(run)
    result = runner.invoke(app, [*sessions_args(run, "update", tmp_path / "x"), "-d", "persona_world"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = flat(result.output)
    assert f"run {run} was trained on lastfm, not persona_world: leave out -d" in message
    assert not (tmp_path / "x").exists()  # refused before the output folder is claimed
