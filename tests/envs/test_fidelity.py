"""Fidelity to UNICORN's own simulator: ask-N with TransE on LastFM's test split.

UNICORN's environment gives (600 seeded conversations): ask-4 SR@15 0.680, AT 10.35, hDCG 0.215;
ask-7 SR@15 0.782, AT 10.64, hDCG 0.229. Ours must land within ±0.05 SR@15 and ±0.5 AT.
"""

from __future__ import annotations

import pytest

from envs import make_env
from envs.metrics import summarize
from envs.rollout import evaluate, evaluation_indices
from policies.baseline_rankers import TransERanker
from policies.rules import make_rule_policy

UNICORN = {"ask-4": (0.680, 10.35), "ask-7": (0.782, 10.64)}


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("policy_name", sorted(UNICORN))
def test_ask_n_with_transe_matches_unicorn_on_lastfm(policy_name: str, real_data_dir) -> None:
    env = make_env("lastfm", data_dir=real_data_dir, split="test")
    ranker = TransERanker.from_file(real_data_dir / "lastfm" / "embeds" / "transe.pkl", env.catalog)
    records = evaluate(
        env, make_rule_policy(policy_name, ranker), evaluation_indices(env.goals.n_goals, 600, 1), 1
    )
    metrics = summarize(records)
    sr, at = UNICORN[policy_name]
    assert abs(metrics["SR@15"].mean - sr) <= 0.05, metrics["SR@15"]
    assert abs(metrics["AT"].mean - at) <= 0.5, metrics["AT"]
