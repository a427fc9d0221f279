"""Rule policies act by their rule, and informed rules beat random on the persona world."""

from __future__ import annotations

import pytest

from envs import make_env
from envs.metrics import summarize
from envs.rollout import evaluate, evaluation_indices
from policies.baseline_rankers import PopularityRanker
from policies.rules import make_rule_policy, top_k
from simulators.errors import CRSError
from tests.envs.conftest import TruthPersonaRanker


@pytest.fixture(scope="module")
def env():
    return make_env("persona_world", split="test")


def run(env, name: str, episodes: int = 150):
    policy = make_rule_policy(name, PopularityRanker(env.catalog))
    return evaluate(env, policy, evaluation_indices(env.goals.n_goals, episodes, 0), seed=0)


def test_ask_n_asks_n_times_then_recommends(env) -> None:
    for record in run(env, "ask-3", 30):
        kinds = list(record.kinds)
        assert kinds[:3] == ["ask"] * min(3, len(kinds)) and set(kinds[3:]) <= {"recommend"}


def test_always_recommend_and_abs_greedy_only_recommend(env) -> None:
    for name in ("always-recommend", "abs-greedy"):
        assert {kind for record in run(env, name, 30) for kind in record.kinds} == {"recommend"}


def test_ranked_rules_beat_random(env) -> None:
    random_sr = summarize(run(env, "random"))["SR@15"].mean
    for name in ("ask-4", "always-recommend"):
        assert summarize(run(env, name))["SR@15"].mean > random_sr + 0.1


def test_max_entropy_asks_the_most_even_split_until_few_candidates(env) -> None:
    import numpy as np

    from envs import recommend

    policy = make_rule_policy("max-entropy", PopularityRanker(env.catalog))
    env.reset(seed=0)
    policy.reset(np.random.default_rng(0))
    action = policy.act(env)
    state = env.state
    candidates = state.candidate_items()
    assert action["kind"] == 0 and candidates.size > env.slate_size
    # the asked aspect's (popularity-weighted) share of candidates is the closest to 1/2
    scores = PopularityRanker(env.catalog).item_scores(state.facts(), candidates)
    weights = np.exp((scores - scores.mean()) / scores.std())
    weights = weights / weights.sum()
    aspects = state.reachable_aspects()
    share = env.catalog.item_aspects[candidates][:, aspects].T @ weights
    assert abs(share[list(aspects).index(action["aspects"][0])] - 0.5) == pytest.approx(
        np.abs(share - 0.5).min()
    )
    state.candidates[candidates[5:]] = False  # 5 candidates left: it recommends them
    assert policy.act(env) == recommend(action_items := policy.slate(env)["items"]) and len(action_items) == 5


def test_ask_until_k_asks_while_more_than_k_candidates_hold_no_rejected_aspect(env) -> None:
    """ask-until-K stops asking exactly when at most K candidates are consistent with every answer
    (rejected aspects remove their holders from the count, not from the env's candidates)."""
    import numpy as np

    k = 40
    policy = make_rule_policy(f"ask-until-{k}", PopularityRanker(env.catalog))
    for record in run(env, f"ask-until-{k}", 30):
        kinds = list(record.kinds)
        first_slate = kinds.index("recommend") if "recommend" in kinds else len(kinds)
        assert set(kinds[:first_slate]) <= {"ask"} and set(kinds[first_slate:]) <= {"recommend"}
    env.reset(seed=0)
    policy.reset(np.random.default_rng(0))
    state = env.state
    candidates = state.candidate_items()
    assert candidates.size > k and policy.act(env)["kind"] == 0  # many left: it asks
    # reject aspects until at most K candidates hold none of them: then it recommends, though the
    # env's candidate set is unchanged
    holders = env.catalog.item_aspects[candidates].toarray() > 0
    for aspect in np.argsort(-holders.sum(axis=0)):
        state.rejected[aspect] = True
        consistent = int((~holders[:, state.rejected]).all(axis=1).sum())
        if consistent <= k:
            break
        assert policy.act(env)["kind"] == 0
    assert consistent <= k and state.candidate_items().size == candidates.size
    assert policy.act(env)["kind"] != 0


def test_top_k_orders_by_score_then_id() -> None:
    import numpy as np

    items, scores = np.array([5, 3, 9, 1]), np.array([0.5, 0.9, 0.5, 0.1])
    assert top_k(items, scores, 3).tolist() == [3, 5, 9]


def test_unknown_rule_names_the_choices() -> None:
    with pytest.raises(CRSError, match="ask-N"):
        make_rule_policy("ask-many", None)
    # probe-0-ask-4 never probes, yet was refused in the binary setting as a rule that probes personas
    with pytest.raises(CRSError, match=r"probe-0-ask-4 probes 0 times: use ask-4"):
        make_rule_policy("probe-0-ask-4", None)


def test_probe_k_ask_n_probes_the_most_likely_persona_k_times_then_asks_n_times(env) -> None:
    ranker = TruthPersonaRanker(env.catalog)
    policy = make_rule_policy("probe-2-ask-3", ranker)
    records = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 30, 0), seed=0)
    for record in records:
        kinds = list(record.kinds)
        questions = kinds[: kinds.index("recommend")] if "recommend" in kinds else kinds
        # two probes, then up to 3 asks (fewer when nothing is left to ask), then recommend every turn
        assert questions[:2] == ["probe", "probe"][: len(questions)] and len(questions) <= 5
        assert set(questions[2:]) <= {"ask"} and set(kinds[len(questions) :]) <= {"recommend"}
    assert sum(record.kinds[:5] == ("probe", "probe", "ask", "ask", "ask") for record in records) >= 20
    # the probe of the first turn names the persona the ranker believes most likely (this user's truth)
    env.reset(seed=4)
    action = policy.act(env)
    weights = ranker.persona_posterior(env.state.facts())
    assert action["kind"] == 1 and action["persona"] == int(weights.argmax())
    signature = ranker.signature_aspects(env.state.user, action["persona"], 100)
    assert set(action["aspects"]) <= set(signature.tolist()) and 0 < len(action["aspects"]) <= 3


def test_a_probing_rule_beats_random(env) -> None:
    random_sr = summarize(run(env, "random"))["SR@15"].mean
    policy = make_rule_policy("probe-1-ask-3", TruthPersonaRanker(env.catalog))
    records = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 150, 0), seed=0)
    assert summarize(records)["SR@15"].mean > random_sr + 0.1


def test_probing_rules_need_a_persona_ranker_and_the_multiple_choice_setting(env) -> None:
    given = r"probes personas, which the ranker given \(PopularityRanker\) does not model: pass --ranker"
    with pytest.raises(CRSError, match=given):
        make_rule_policy("probe-1-ask-6", PopularityRanker(env.catalog))
    binary = make_env("persona_world", split="test", setting="binary")
    binary.reset(seed=0)
    with pytest.raises(CRSError, match="multiple-choice setting") as refused:
        make_rule_policy("probe-1-ask-6", TruthPersonaRanker(binary.catalog)).act(binary)
    # the fix: the setting that offers probes, or a rule of every setting (not ask-N alone)
    assert "pass --setting multiple_choice where the dataset has it, or use a rule of every setting " in str(
        refused.value
    )


@pytest.fixture(scope="module")
def truthful_env():
    """The persona world in the binary setting with UNICORN's truthful single-target user."""
    return make_env("persona_world", split="test", setting="binary", user="single")


def test_lookahead_asks_only_while_the_slates_left_cannot_show_every_candidate(truthful_env) -> None:
    import numpy as np

    from policies.baseline_rankers import uniform_ranker

    env = truthful_env
    policy = make_rule_policy("lookahead-2", uniform_ranker(env.catalog))
    asked = 0
    for seed in range(30):
        env.reset(seed=seed)
        policy.reset(np.random.default_rng(seed))
        done = False
        while not done:
            n_candidates, turns_left = env.state.n_candidates, env.max_turns - env.state.turn
            action = policy.act(env)
            if action["kind"] == 0:  # a question: the slates left could not show every candidate
                asked += 1
                assert n_candidates > env.slate_size * turns_left
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    assert asked > 30  # it does ask when the candidates are many


def test_lookahead_finds_as_often_as_ask_n_in_fewer_turns_with_truthful_users(truthful_env) -> None:
    from policies.baseline_rankers import uniform_ranker

    env = truthful_env
    indices = evaluation_indices(env.goals.n_goals, 100, 0)
    ranker = uniform_ranker(env.catalog)
    plans = summarize(evaluate(env, make_rule_policy("lookahead-2", ranker), indices, seed=0))
    fixed = summarize(evaluate(env, make_rule_policy("ask-7", ranker), indices, seed=0))
    assert plans["SR@15"].mean >= fixed["SR@15"].mean > 0.9
    assert plans["AT"].mean < fixed["AT"].mean - 0.5


def test_lookahead_needs_a_depth_and_the_binary_setting(env) -> None:
    import numpy as np

    for bad in ("lookahead-0", "lookahead-2x0"):
        with pytest.raises(CRSError, match="depth D >= 1 and Q >= 1"):
            make_rule_policy(bad, PopularityRanker(env.catalog))
    assert make_rule_policy("lookahead-2x3", PopularityRanker(env.catalog)).name == "lookahead-2x3"
    multiple_choice = make_env("persona_world", split="test", setting="multiple_choice")
    policy = make_rule_policy("lookahead-2", PopularityRanker(multiple_choice.catalog))
    multiple_choice.reset(seed=0)
    policy.reset(np.random.default_rng(0))
    with pytest.raises(CRSError, match="binary setting"):
        policy.act(multiple_choice)


def test_lookahead_at_a_temperature_is_named_checked_and_changes_when_it_stops(truthful_env) -> None:
    env = truthful_env
    ranker = PopularityRanker(env.catalog)
    for name in ("lookahead-2x3t0.01", "lookahead-2x1t100", "lookahead-3x2t1e-05"):
        assert make_rule_policy(name, ranker).name == name  # the name round-trips
    assert make_rule_policy("lookahead-2x3t1", ranker).name == "lookahead-2x3"
    for bad in ("lookahead-2x3t0", "lookahead-2x3t0.0"):
        with pytest.raises(CRSError, match=r"temperature 0\.0 must be a finite number > 0"):
            make_rule_policy(bad, ranker)
    with pytest.raises(CRSError, match="unknown rule policy"):
        make_rule_policy("lookahead-2t0.5", ranker)  # the temperature follows xQ
    indices = evaluation_indices(env.goals.n_goals, 40, 0)
    sharp = summarize(evaluate(env, make_rule_policy("lookahead-2", ranker), indices, seed=0))
    flat = summarize(evaluate(env, make_rule_policy("lookahead-2x1t100", ranker), indices, seed=0))
    # popularity counts are far apart at T = 1; at T = 100 the belief is nearly flat, so recommending
    # finds little of it and the search keeps asking
    assert flat["AT"].mean > sharp["AT"].mean + 2.0


def test_lookahead_with_q_questions_asks_one_of_the_rankers_q_best(truthful_env) -> None:
    import numpy as np

    from policies.baseline_rankers import uniform_ranker

    env = truthful_env
    ranker = uniform_ranker(env.catalog)
    policy = make_rule_policy("lookahead-2x3", ranker)
    asked, other = 0, 0
    for seed in range(20):
        env.reset(seed=seed)
        policy.reset(np.random.default_rng(seed))
        done = False
        while not done:
            aspects = env.state.reachable_aspects()
            best = (
                top_k(aspects, ranker.aspect_scores(env.state.facts(), aspects), 3)
                if aspects.size
                else aspects
            )
            action = policy.act(env)
            if action["kind"] == 0:
                asked += 1
                assert int(action["aspects"][0]) in best.tolist()
                other += int(action["aspects"][0]) != int(best[0])
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    assert asked > 20 and other > 0  # it asks, and not always ask-N's question


def keep_candidates(env, n: int) -> None:
    """Reset `env` (seed 0) and keep only its n lowest-id candidates, no aspect rejected."""
    env.reset(seed=0)
    state = env.state
    state.rejected[:] = False
    state.candidates[state.candidate_items()[n:]] = False
    assert state.n_candidates == n


def test_ask_until_k_recommends_at_exactly_k_consistent_candidates_and_asks_at_k_plus_1(env) -> None:
    k = 5
    policy = make_rule_policy(f"ask-until-{k}", PopularityRanker(env.catalog))
    keep_candidates(env, k)
    assert policy.n_consistent(env) == k and policy.act(env)["kind"] == 2  # K left: recommend
    keep_candidates(env, k + 1)
    assert env.state.reachable_aspects().size > 0
    assert policy.n_consistent(env) == k + 1 and policy.act(env)["kind"] == 0  # K + 1 left: ask


def test_max_entropy_recommends_at_exactly_slate_size_candidates_and_asks_above(env) -> None:
    import numpy as np

    policy = make_rule_policy("max-entropy", PopularityRanker(env.catalog))
    policy.reset(np.random.default_rng(0))
    keep_candidates(env, env.slate_size)
    action = policy.act(env)
    assert action["kind"] == 2 and sorted(action["items"]) == env.state.candidate_items().tolist()
    keep_candidates(env, env.slate_size + 1)
    assert env.state.reachable_aspects().size > 0 and policy.act(env)["kind"] == 0


def test_abs_greedy_moves_down_the_candidates_sharing_a_rejected_items_aspects(env) -> None:
    """After item X is rejected, the items that leave the slate share more of X's aspects (per aspect
    they hold) than the items that enter it: sharing X's aspects ranks a candidate lower."""
    import numpy as np

    policy = make_rule_policy("abs-greedy", PopularityRanker(env.catalog))
    held = env.catalog.item_aspects.toarray() > 0
    env.reset(seed=0)
    changed = 0
    for rejected in policy.slate(env)["items"]:
        env.reset(seed=0)
        state = env.state
        state.candidates[rejected] = False  # as a rejected slate leaves it
        before = policy.act(env)["items"]
        state.rejected_items[rejected] = True
        after = policy.act(env)["items"]
        # the share of each item's aspects that the rejected item holds too
        shared = (held & held[rejected]).sum(axis=1) / np.maximum(held.sum(axis=1), 1)
        left, entered = list(set(before) - set(after)), list(set(after) - set(before))
        if left:
            changed += 1
            assert shared[left].min() > shared[entered].max()
    assert changed >= 3


def test_an_enumerated_question_asks_the_aspects_first_unasked_category() -> None:
    """Aspect 2 is listed by c1 and by c2; once c1 was asked, a question about aspect 2 asks c2.

    `question`'s own contract, on a hand-set state: the env answers every aspect of an asked category,
    so a rule never asks about an aspect with an asked parent."""
    import numpy as np
    import scipy.sparse as sp

    from envs import ConversationEnv, ask
    from policies.rules import RulePolicy
    from simulators.catalog import Taxonomy
    from simulators.goals import PairGoals
    from simulators.users import SingleTargetUser
    from tests.envs.conftest import tiny_catalog

    members = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]], dtype=bool))
    catalog = tiny_catalog(Taxonomy(np.array([0, 0, 1, 1]), ("c0", "c1", "c2"), members))
    env = ConversationEnv(
        catalog, SingleTargetUser(catalog), PairGoals(catalog, "test"), setting="enumerated"
    )
    env.reset(seed=0)
    policy = RulePolicy()
    env.state.asked_categories[:] = False
    assert policy.question(env, 2) == ask(1)  # nothing asked: the first category listing it
    env.state.asked_categories[1] = True
    assert policy.question(env, 2) == ask(2)


@pytest.mark.parametrize(
    "name", ["ask-４", "ask-until-８0", "probe-１-ask-5", "lookahead-２", "lookahead-2x３"]
)
def test_a_rule_name_takes_ascii_digits_only(name: str) -> None:
    """A full-width digit was read as its ASCII twin, so "ask-４" ran ask-4 under a second name that
    summaries and reports then kept apart from ask-4's."""
    with pytest.raises(CRSError, match="unknown rule policy"):
        make_rule_policy(name, None)
