"""Metrics, rollouts, returning-user sessions and the plan-temperature fit: what a mutation audit of
envs/metrics.py, envs/rollout.py, envs/sessions.py and envs/belief_fit.py found untested.

Tiny catalogue (tests/envs/conftest.py): item -> aspects
0:{0,1} 1:{0,2} 2:{0,1,3} 3:{1,2} 4:{2,3} 5:{0,3}; the only conversation is user 0 with target item 2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from envs import ConversationEnv, DialogueFacts, Rewards, ask, make_env, recommend
from envs.belief_fit import TemperatureFit, fit_temperature
from envs.metrics import EpisodeRecord, MetricSummary, bootstrap_ci, ci_sign, sr_at
from envs.rollout import episode_seed, evaluate, evaluate_batched, evaluation_indices, run_episode
from envs.sessions import SessionRecord, run_sequence, run_sequences, sequence_env, session_seed
from policies.baseline_rankers import PopularityRanker
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from simulators.goals import PairGoals
from simulators.returning import ReturningSequence
from simulators.users import SingleTargetUser
from tests.envs.conftest import tiny_catalog
from tests.envs.test_belief_fit import WORLD
from tests.envs.test_sessions import SESSIONS, ask_4, random_policy, sequences, world
from tests.simulators.test_returning_held_out import sequences as held_out_sequences
from tests.simulators.test_returning_held_out import world as held_out_world

R = Rewards()


# ----------------------------------------------------------------------------------------- metrics
def test_a_failure_never_counts_in_sr_at_any_turn_limit() -> None:
    """Guards against a failure's success turn being a finite stand-in: reports draw SR@t for every t up
    to T = 100, and a failure is a failure at every one of them."""
    records = [EpisodeRecord(0, 0, (1,), False, 99, None, 0.0), EpisodeRecord(1, 0, (1,), True, 99, 1, 0.0)]
    assert sr_at(records, 100).tolist() == [0.0, 1.0]
    assert sr_at(records, 98).tolist() == [0.0, 0.0]


def test_a_difference_counts_as_evidence_from_20_paired_conversations() -> None:
    """Guards against another threshold than the documented 20 pairs: 19 never count, 20 do."""
    above, below = MetricSummary(0.1, 0.05, 0.2), MetricSummary(-0.1, -0.2, -0.05)
    assert [ci_sign(above, n) for n in (10, 19, 20)] == [0, 0, 1]
    assert [ci_sign(below, n) for n in (10, 19, 20)] == [0, 0, -1]


def test_a_cluster_bootstrap_reads_any_labels_as_mere_names() -> None:
    """Guards against using the labels (user ids) as cluster positions: ids 3, 10, 42 are three
    clusters, resampled exactly as the same clusters named 0, 1, 2 (sorted ids), never as 43 clusters
    of which 40 are empty."""
    values = np.array([0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75])
    users = [10, 10, 42, 3, 42, 3, 10]
    renamed = [{3: 0, 10: 1, 42: 2}[u] for u in users]
    ci = bootstrap_ci(values, seed=2, clusters=users)
    assert ci == bootstrap_ci(values, seed=2, clusters=renamed)
    # a resample of three clusters: its sessions' mean lies within the range of the values
    assert 0.0 <= ci.low <= ci.mean <= ci.high <= 1.0 and ci.mean == pytest.approx(values.mean())


# ----------------------------------------------------------------------------------------- rollouts
class ScriptedPolicy:
    """From the env's state alone: ask aspect 2 (target 2 lacks it), then recommend [0, 5] (a miss),
    then [2] (the target)."""

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        facts = env.state.facts()
        if 2 not in facts.rejected.tolist():
            return ask(2)
        if 0 not in facts.rejected_items.tolist():
            return recommend([0, 5])
        return recommend([2])


def tiny_env() -> ConversationEnv:
    return make_env(catalog=tiny_catalog(), split="test", user="single")


def test_a_record_sums_every_reward_and_lists_every_action_kind_in_order() -> None:
    """Guards against a total that keeps only the last reward and kinds out of order, in both
    evaluators: a rejected question, a missed slate, a hit."""
    total = R.ask_rejected + R.recommend_fail + R.recommend_success
    kinds = ("ask", "recommend", "recommend")
    record = run_episode(tiny_env(), ScriptedPolicy(), np.random.default_rng(0), seed=0)
    assert (record.success, record.agent_actions, record.rank, record.kinds) == (True, 3, 1, kinds)
    assert record.total_reward == pytest.approx(total)
    batched = evaluate_batched(tiny_env, ScriptedPolicy(), np.array([0, 0, 0]), seed=1, batch=2)
    assert [r.kinds for r in batched] == [kinds] * 3
    assert [r.total_reward for r in batched] == [pytest.approx(total)] * 3


def test_episode_seeds_differ_for_every_run_seed_and_goal() -> None:
    """Guards against seeds that ignore the goal or mix it into the run seed: (0, 1) and (1, 0) are
    different conversations, and every goal of a run gets its own seed."""
    seeds = {episode_seed(seed, goal) for seed in range(6) for goal in range(60)}
    assert len(seeds) == 360
    assert episode_seed(0, 1) != episode_seed(1, 0) and episode_seed(3, 7) == episode_seed(3, 7)


class FirstCandidate:
    """Recommends the first candidate alone, every turn (conversations of many different lengths)."""

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend(env.state.candidate_items()[:1])


def test_a_batched_evaluation_gives_evaluates_records_in_index_order() -> None:
    """Guards against the batched evaluator resetting envs with the run seed, returning records in
    finishing order, or never ending a conversation that hits the turn limit: on the persona world,
    with conversations of different lengths and failures, its records are `evaluate`'s."""
    catalog = load_catalog("persona_world", **WORLD)

    def factory() -> ConversationEnv:
        return make_env(catalog=catalog, split="test", setting="binary", user="single")

    indices = evaluation_indices(len(catalog.split("test").users), 12, seed=7)
    expected = evaluate(factory(), FirstCandidate(), indices, seed=7)
    assert [r.goal_index for r in expected] == indices.tolist()
    assert len({r.agent_actions for r in expected}) > 2 and not all(r.success for r in expected)
    seen: list[EpisodeRecord] = []
    batched = evaluate_batched(factory, FirstCandidate(), indices, seed=7, batch=5, on_episode=seen.append)
    assert batched == expected
    assert sorted(seen, key=lambda r: indices.tolist().index(r.goal_index)) == expected
    # one conversation at a time: they run, and are reported, in `indices` order
    one: list[EpisodeRecord] = []
    assert evaluate_batched(factory, FirstCandidate(), indices, seed=7, batch=1, on_episode=one.append) == one


def test_the_batched_env_seed_is_the_episode_seed() -> None:
    """Guards against the batched evaluator seeding the env by the run seed: the user's opening aspect
    is drawn from the env seed, and the first-candidate policy then takes 1 action (opening 3), 2
    (opening 1) or 3 (opening 0); each run seed gives `run_episode`'s record under its episode seed."""
    for seed in range(8):
        conversation_seed = episode_seed(seed, 0)
        alone = run_episode(
            tiny_env(),
            FirstCandidate(),
            np.random.default_rng(0),
            seed=conversation_seed,
            options={"goal_index": 0},
        )
        (batched,) = evaluate_batched(tiny_env, FirstCandidate(), np.array([0]), seed=seed)
        assert batched == alone


class CountingBatchPolicy(FirstCandidate):
    """A batch policy that records the number of envs of each ``act_batch`` call; `act` is never due."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        raise AssertionError("a batch policy acts through act_batch")

    def act_batch(self, envs: Sequence[ConversationEnv]) -> list[dict[str, Any]]:
        self.calls.append(len(envs))
        return [FirstCandidate.act(self, env) for env in envs]


def test_a_batch_policy_acts_for_all_running_conversations_in_one_call() -> None:
    """Guards against a batched evaluation that ignores ``act_batch``, or that builds more envs than it
    has conversations for: 3 conversations with ``batch=32`` need 3 envs, acted for together."""
    built: list[ConversationEnv] = []

    def factory() -> ConversationEnv:
        built.append(tiny_env())
        return built[-1]

    policy = CountingBatchPolicy()
    records = evaluate_batched(factory, policy, np.array([0, 0, 0]), seed=3, batch=32)
    assert len(records) == 3 and len(built) == 3
    assert policy.calls[0] == 3 and sum(policy.calls) == sum(r.agent_actions for r in records)


@pytest.mark.parametrize("batch", [0, -1])
def test_a_batched_evaluation_never_silently_drops_its_conversations(batch: int) -> None:
    """A batch below 1 built no env and returned [] (every conversation dropped): it is refused."""
    with pytest.raises(CRSError, match=f"batch must be at least 1, got {batch}"):
        evaluate_batched(tiny_env, FirstCandidate(), np.array([0, 0]), seed=0, batch=batch)


# ----------------------------------------------------------------------------------------- sessions
def test_on_sequence_gets_each_sequences_own_records() -> None:
    """Guards against handing the progress callback the records so far instead of the sequence's."""
    drawn = sequences("stable", n=3)
    chunks: list[list[SessionRecord]] = []
    records = run_sequences(world(), drawn, ask_4, seed=0, on_sequence=chunks.append)
    assert [[r.sequence for r in chunk] for chunk in chunks] == [[n] * SESSIONS for n in range(3)]
    assert [r for chunk in chunks for r in chunk] == records


def test_run_sequences_passes_user_and_env_arguments_to_every_session() -> None:
    """Guards against dropping ``user_kwargs`` or env arguments on the way to each sequence's env: a
    user with patience 1 leaves at the first missed slate, and a turn limit of 4 allows 3 actions."""
    drawn = sequences("stable", n=2)
    users: list[Any] = []

    def look(_: int, __: ReturningSequence, ___: int, env: ConversationEnv, ____: Any) -> None:
        users.append((env.user.patience, env.max_turns))  # type: ignore[attr-defined]

    records = run_sequences(
        world(), drawn, random_policy, seed=1, after_session=look, user_kwargs={"patience": 1}, max_turns=4
    )
    assert users == [(1, 4)] * (2 * SESSIONS)
    assert all(r.episode.agent_actions <= 3 for r in records)
    for record in records:  # patience 1: a missed slate ends the session
        kinds = record.episode.kinds
        assert "recommend" not in kinds[:-1]


def test_a_sessions_env_is_seeded_by_its_session_seed() -> None:
    """Guards against resetting every session's env with the run seed: session s of sequence n is the
    conversation `run_episode` plays on the sequence's env under ``session_seed(seed, n, s)``."""
    sequence = sequences("drift", n=1)[0]
    records = run_sequence(world(), sequence, random_policy, seed=5, index=2, user_kwargs={"noise": 0.3})
    env = sequence_env(world(), sequence, user_kwargs={"noise": 0.3})
    for session, record in enumerate(records):
        conversation_seed = session_seed(5, 2, session)
        rng = np.random.default_rng(conversation_seed)
        alone = run_episode(
            env, random_policy(), rng, seed=conversation_seed, options={"goal_index": session}
        )
        assert record.episode == alone


def test_sequences_of_a_catalogue_without_persona_truth_run_with_the_datasets_user() -> None:
    """Guards against sending real data (no persona truth) down the persona world's branch, which needs
    that truth: held-out sequences play their sessions' targets with the single-target user."""
    catalog = dataclasses.replace(held_out_world(), truth=None)
    sequence = held_out_sequences("stable")[0]
    records = run_sequence(catalog, sequence, ask_4, seed=0)
    assert [r.episode.targets for r in records] == [(int(t),) for t in sequence.targets]
    assert type(sequence_env(catalog, sequence).user) is SingleTargetUser


# ----------------------------------------------------------------------------------------- belief fit
def test_the_best_temperature_is_the_first_of_the_highest_likelihood() -> None:
    """Guards against picking the worst temperature, or the last of equal ones."""
    fit = TemperatureFit((3.0, 1.0, 0.3, 0.1), (-4.0, -1.5, -1.5, -2.0), scored=2, excluded=0)
    assert fit.best == 1.0


class IdRanker(PopularityRanker):
    """Scores an item by its id."""

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return np.asarray(items, dtype=np.float64)


class Opens(SingleTargetUser):
    """Opens its conversations with the aspects `openings`, in turn."""

    def __init__(self, catalog: Catalog, openings: Sequence[int]) -> None:
        super().__init__(catalog)
        self.openings, self.opened = list(openings), 0

    def opening_aspect(self) -> int:
        self.opened += 1
        return self.openings[(self.opened - 1) % len(self.openings)]


def test_a_fit_is_the_mean_log_likelihood_of_the_target_over_the_scored_conversations() -> None:
    """Guards against averaging over the excluded conversations too, scoring another candidate than the
    target, or inverting the temperature. Opening 2 excludes target 2; opening 0 leaves candidates
    0, 1, 2, 5 (scores = ids): log softmax(ids / T) at item 2 is
    2/T - log(e^0 + e^(1/T) + e^(2/T) + e^(5/T))."""
    catalog = tiny_catalog()
    env = ConversationEnv(catalog, Opens(catalog, [2, 0, 0]), PairGoals(catalog, "test"))
    fit = fit_temperature(env, IdRanker(catalog), [0, 0, 0], seed=1, temperatures=(1.0, 0.5))
    assert (fit.scored, fit.excluded, fit.temperatures) == (2, 1, (1.0, 0.5))
    expected = [2 / t - math.log(sum(math.exp(c / t) for c in (0, 1, 2, 5))) for t in (1.0, 0.5)]
    assert fit.log_likelihoods == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert fit.best == 1.0  # the sharper belief puts more weight on item 5


def test_a_target_past_every_candidate_is_excluded_not_an_error() -> None:
    """Guards against reading past the end of the candidates: target 5 with opening 1 leaves candidates
    0, 2, 3, all below it, so the conversation is counted as excluded."""
    tiny = tiny_catalog()
    target_5 = dataclasses.replace(
        tiny, splits={name: dataclasses.replace(s, items=np.array([5])) for name, s in tiny.splits.items()}
    )
    env = ConversationEnv(target_5, Opens(target_5, [1, 3]), PairGoals(target_5, "test"))
    fit = fit_temperature(env, IdRanker(target_5), [0, 0], seed=0, temperatures=(1.0,))
    assert (fit.scored, fit.excluded) == (1, 1)


def test_a_fit_without_temperatures_is_refused() -> None:
    """Guards against fitting nothing and failing later on an empty argmax."""
    catalog = tiny_catalog()
    env = ConversationEnv(catalog, SingleTargetUser(catalog), PairGoals(catalog, "test"))
    with pytest.raises(CRSError, match="at least one temperature"):
        fit_temperature(env, IdRanker(catalog), [0], seed=0, temperatures=())
