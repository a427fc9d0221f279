"""A policy that listens (#15): trained with `crs train`'s defaults on the persona world, whose users leave
after two failed slates, it answers rejected slates by asking or probing instead of showing slate after
slate (session 4's main-job policy showed a person who kept saying no 9 slates in a row). Slow: it
trains the main job's recipe, short (a 4-epoch ranker, a copy of ask-7 on 2,048 turns, 2,048 PPO steps;
the recipe's 10,240 steps took 3 times as long; session 44: with the cap below lifted to 14, both
tests fail on this short run, so it still tells a policy that listens from one that does not).
What the weights do after 2 rejected slates was never trained (the world's users leave there) and
differed between machines (session 8: 11 slates in a row on one), so `crs train` caps slates in a
row at the users' patience (`WrapperConfig.max_slates_in_a_row`); these tests check the whole."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.app.settings import make_settings
from crs.app.training import run_training
from crs.cli import app
from envs import ConversationEnv, evaluation_indices, make_env
from policies.rl import evaluate_policy
from policies.rl.acting import load_trained_policy
from simulators.persona_world import WORLD_USER, make_persona_world
from simulators.users import PersonaUser, SlateReaction

pytestmark = pytest.mark.slow

STEPS = 2_048


class RejectingUser(PersonaUser):
    """Answers questions as the persona world's users do, rejects every slate and never leaves."""

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    settings = make_settings(
        {
            "steps": STEPS,
            "eval_every": STEPS,
            "pretrain_epochs": 4,
            "test_episodes": 100,
            "eval_episodes": 20,
            "baselines": ["always-recommend"],
        }
    )
    summary = run_training(settings, name="listens", runs_dir=root, show=False)
    rl, baseline = summary.test["RL (listens)"]["SR@15"], summary.test["always-recommend"]["SR@15"]
    # measured on the main job's 600 test conversations: 0.860 (the recipe, 40k steps) vs 0.552
    assert rl.mean > baseline.mean + 0.1, summary.test
    return root / "listens"


def longest_slate_run(kinds: Sequence[str]) -> int:
    """The most slates shown in a row."""
    return max((len(m) for m in re.findall("r+", "".join(k[0] for k in kinds))), default=0)


def test_facing_a_user_who_rejects_every_slate_it_asks_or_probes_within_a_few_turns(run: Path) -> None:
    catalog = make_persona_world()
    world_env = make_env(catalog=catalog, split="test")
    rejecting = RejectingUser(catalog, noise=WORLD_USER.noise, patience=None)

    def env() -> ConversationEnv:
        return ConversationEnv(catalog, rejecting, world_env.goals, setting=world_env.setting)

    indices = evaluation_indices(world_env.goals.n_goals, 100, 0)
    records = evaluate_policy(env, load_trained_policy(run, catalog), indices, 0)
    runs = [longest_slate_run(r.kinds) for r in records]
    # measured on the main job's policy (300 conversations): 1.51 slates in a row on average, 95% of
    # conversations at most 3; a policy that does not listen shows up to 14 (every turn)
    assert np.mean(runs) <= 2.0 and np.percentile(runs, 95) <= 4, runs
    # every conversation asks or probes. What follows a rejected slate is a question or probe 45% of the
    # time for the recipe's policy (session 9; 64% for session 8's from-scratch policy): it shows a
    # second slate about as often as it asks, and the cap makes it ask after two
    assert all(any(k != "recommend" for k in r.kinds) for r in records)


def test_a_person_who_says_no_to_everything_gets_questions_after_each_rejected_slate(
    run: Path, tmp_path: Path
) -> None:
    transcript = tmp_path / "no.json"
    lines = ["jazz"] + ["n"] * 40  # "n" answers a yes/no question, a multiple-choice one and a slate
    result = CliRunner().invoke(
        app,
        ["chat", "--policy", str(run), "--seed", "0", "--transcript", str(transcript)],
        input="".join(f"{line}\n" for line in lines),
    )
    assert result.exit_code == 0, result.output
    turns = json.loads(transcript.read_text())["turns"]
    kinds = [t["kind"] for t in turns if t["kind"] != "open"]
    assert len(kinds) == 14 and json.loads(transcript.read_text())["outcome"]["ended"] == "turn limit"
    assert longest_slate_run(kinds) <= 2, kinds
    # every rejected slate is followed, within two turns, by a question or a probe
    for at, kind in enumerate(kinds[:-2]):
        if kind == "recommend":
            assert {"ask", "probe"} & set(kinds[at + 1 : at + 3]), kinds
