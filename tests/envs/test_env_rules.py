"""The UNICORN rules of ConversationEnv, checked on a catalogue small enough to work out by hand.

Tiny catalogue (tests/envs/conftest.py): item -> aspects
0:{0,1} 1:{0,2} 2:{0,1,3} 3:{1,2} 4:{2,3} 5:{0,3}; the only conversation is user 0 with target item 2.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp

from envs import ConversationEnv, InvalidActionError, Rewards, ask, make_env, probe, recommend
from envs.env import (
    ANSWER_ACCEPTED,
    ANSWER_NONE,
    ANSWER_REJECTED,
    ANSWER_SLATE_REJECTED,
    ResetOptionsError,
    render_dialogue,
)
from simulators.catalog import Interactions, Taxonomy
from simulators.errors import CRSError
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser
from tests.envs.conftest import YesUser, tiny_catalog

R = Rewards()


def make(catalog, user=None, **kwargs) -> ConversationEnv:
    user = user or SingleTargetUser(catalog)
    return ConversationEnv(catalog, user, PairGoals(catalog, "test"), **kwargs)


def test_opening_states_an_aspect_of_the_target_and_filters_candidates(tiny) -> None:
    env = make(tiny)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        opening = env.state.history[0].accepted[0]
        assert opening in (0, 1, 3)  # the aspects of target item 2
        expected = sorted(i for i in range(6) if opening in tiny.aspects_of(i))
        assert env.state.candidate_items().tolist() == expected
        assert obs["turn"][0] == 1 and obs["accepted"][opening] == 1
        assert info["n_candidates"] == len(expected)


def test_ask_accepted_intersects_candidates_and_pays_0_01(tiny) -> None:
    env = make(tiny)
    env.reset(seed=0, options={"goal_index": 0})
    env.state.candidates[:] = True  # start from all items to make the arithmetic explicit
    _, reward, terminated, truncated, info = env.step(ask(1))
    # aspect 1 is an aspect of target 2 -> accepted; items with aspect 1: {0, 2, 3}
    assert reward == pytest.approx(R.ask_accepted)
    assert info["answer"] == (1,) and not terminated and not truncated
    assert env.state.candidate_items().tolist() == [0, 2, 3]


def test_ask_rejected_records_but_keeps_candidates(tiny) -> None:
    env = make(tiny)
    env.reset(seed=0)
    before = env.state.candidate_items().tolist()
    _, reward, _, _, info = env.step(ask(2))  # target 2 lacks aspect 2
    assert reward == pytest.approx(R.ask_rejected)
    assert info["rejected"] == (2,) and env.state.rejected[2]
    assert env.state.candidate_items().tolist() == before


def test_failed_slate_leaves_candidates_and_success_ends_with_rank(tiny) -> None:
    env = make(tiny)
    env.reset(seed=0)
    others = [i for i in env.state.candidate_items().tolist() if i != 2][:2]
    _, reward, terminated, _, info = env.step(recommend(others))
    assert reward == pytest.approx(R.recommend_fail) and not terminated and not info["success"]
    assert not env.state.candidates[others].any() and env.state.rejected_items[others].all()
    _, reward, terminated, _, info = env.step(recommend([5, 2]))
    assert (
        info["success"] and info["rank"] == 2 and terminated and reward == pytest.approx(R.recommend_success)
    )
    assert info["targets"] == (2,) and info["agent_actions"] == 2


def test_turn_limit_truncates_after_14_actions_with_quit_penalty(tiny) -> None:
    env = make(tiny)
    env.reset(seed=0)
    rewards, truncated = [], False
    while not truncated:
        _, reward, terminated, truncated, info = env.step(ask(2))  # always rejected, never ends early
        assert not terminated
        rewards.append(reward)
    # T = 15 turns counting the opening -> 14 agent actions; the last pays -0.1 - 0.3
    assert len(rewards) == 14 and info["turn"] == 15
    assert rewards[-1] == pytest.approx(R.ask_rejected + R.quit_at_limit)
    with pytest.raises(InvalidActionError, match="ended"):
        env.step(ask(1))


def test_a_user_out_of_patience_quits_with_the_quit_penalty() -> None:
    """A persona-world user with patience 2 leaves at the second failed slate: that slate pays the
    failure plus the quit penalty, and the conversation terminates (not truncated) before the limit."""
    env = make_env("persona_world", world_kwargs={"n_users": 10, "n_items": 60}, user_kwargs={"patience": 2})
    env.reset(seed=0)
    steps = []
    for _ in range(2):
        wrong = [i for i in env.state.candidate_items().tolist() if i not in env.user.targets][:3]
        _, reward, terminated, truncated, info = env.step(recommend(wrong))
        steps.append((reward, terminated, truncated))
    assert steps[0] == (pytest.approx(R.recommend_fail), False, False)
    assert steps[1] == (pytest.approx(R.recommend_fail + R.quit_at_limit), True, False)
    assert not info["success"] and info["turn"] == 3


def test_no_candidates_left_terminates_with_penalty(tiny) -> None:
    env = make(tiny, user=YesUser(tiny), setting="multiple_choice")
    env.reset(seed=0)  # YesUser opens with aspect 0: items {0, 1, 2, 5}
    _, reward, terminated, _, _ = env.step(ask([1, 2]))  # no item has 0, 1 and 2
    assert terminated and reward == pytest.approx(R.no_candidates) and env.state.n_candidates == 0


def test_any_rule_keeps_items_with_at_least_one_accepted_aspect(tiny) -> None:
    env = make(tiny, user=YesUser(tiny), setting="multiple_choice", candidate_rule="any")
    env.reset(seed=0)  # candidates {0, 1, 2, 5}
    env.step(ask([1, 2]))  # union of items with 1 or 2 = {0,1,2,3,4}; ∩ {0,1,2,5} = {0,1,2}
    assert env.state.candidate_items().tolist() == [0, 1, 2]


def test_probe_is_one_multiple_choice_turn(tiny) -> None:
    env = make(tiny, setting="multiple_choice", n_personas=2)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(probe(1, [1, 2, 3]))
    # target 2 has {0, 1, 3}: accepted {1, 3}, rejected {2}
    assert info["answer"] == (1, 3) and info["rejected"] == (2,) and info["kind"] == "probe"
    assert env.state.history[-1].persona == 1 and reward == pytest.approx(R.ask_accepted)
    assert set(env.state.candidate_items().tolist()) <= {2}  # items with 1 and 3 (and the opening)


def test_enumerated_questions_accept_fine_aspects_or_reject_the_category() -> None:
    # categories: c0 = {0, 1}, c1 = {2, 3}
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    env = make(catalog, setting="enumerated")
    assert env.enumerated
    reset_to_opening(env, category=0)
    _, reward, _, _, info = env.step(ask(1))  # category c1: target 2 has 3, not 2
    assert info["answer"] == (3,) and info["rejected"] == (2,) and reward == pytest.approx(R.ask_accepted)
    assert env.state.asked_categories[1] and env.state.accepted[3] and env.state.rejected[2]


def reset_to_opening(env: ConversationEnv, category: int) -> None:
    """Reset `env` with the first seed whose enumerated opening names `category`."""
    for seed in range(100):
        env.reset(seed=seed)
        if env.state.history[0].asked == (category,):
            return
    raise AssertionError(f"no seed below 100 opens with category {category}")


def test_enumerated_opening_is_a_category_of_the_target_answered_like_a_question() -> None:
    """UNICORN's YELP opening (RL/env_enumerated_question.py, reset): a random category of the target
    (`belong_to_large`), marked asked; its fine aspects the target has are accepted and filter the
    candidates, its others are rejected. Categories: c0 = {0, 1}, c1 = {2, 3}, c2 = {2};
    target 2 = {0, 1, 3} lies in c0 and c1, never in c2."""
    taxonomy = Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1", "c2"))
    members = taxonomy.members.toarray()
    members[2, 2] = True
    catalog = tiny_catalog(Taxonomy(taxonomy.parent_of, taxonomy.parent_names, sp.csr_matrix(members)))
    env = make(catalog, setting="enumerated")
    opened = {}
    for seed in range(40):
        _, info = env.reset(seed=seed)
        record = env.state.history[0]
        opened[record.asked] = (record.accepted, record.rejected, env.state.candidate_items().tolist())
        assert record.kind == "open" and info["answer"] == record.accepted
        assert env.state.asked_categories.tolist() == [c in record.asked for c in range(3)]
    # c0: target has 0 and 1 -> items with both: {0, 2}; c1: target has 3, not 2 -> items with 3: {2, 4, 5}
    assert opened == {(0,): ((0, 1), (), [0, 2]), (1,): ((3,), (2,), [2, 4, 5])}
    assert "in 'c1': a3" in render_dialogue(catalog, [make_opening(env, 1)])


def make_opening(env: ConversationEnv, category: int):
    reset_to_opening(env, category)
    return env.state.history[0]


def test_binary_setting_ignores_the_taxonomy_and_opens_with_an_aspect() -> None:
    """UNICORN's YELP_STAR (Yelp*) is binary: one fine aspect per question, even with a taxonomy."""
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    env = make(catalog)
    _, info = env.reset(seed=0)
    assert env.setting == "binary" and not env.enumerated and "category" not in env.action_space.spaces
    assert len(info["answer"]) == 1 and env.state.history[0].asked == ()
    _, _, _, _, info = env.step(ask(3))
    assert info["answer"] == (3,) and not env.state.asked_categories.any()


def test_enumerated_setting_needs_a_taxonomy(tiny) -> None:
    with pytest.raises(CRSError, match="needs a catalogue with a taxonomy"):
        make(tiny, setting="enumerated")


def test_enumerated_category_without_target_aspects_rejects_all() -> None:
    # c0 = {0, 1, 3} (target 2's aspects), c1 = {2}
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 0]), parent_names=("c0", "c1")))
    env = make(catalog, setting="enumerated")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(ask(1))
    assert info["answer"] == () and info["rejected"] == (2,) and reward == pytest.approx(R.ask_rejected)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (ask(9), "unknown aspect"),
        (recommend([99]), "unknown item"),
        (recommend([]), "non-empty slate"),
        ({"kind": 0, "aspects": [], "persona": 0, "items": []}, r"at least one aspect id \(got none\)"),
        (ask(-1), r"at least one aspect id \(got none but -1, which pads the list\)"),
        (recommend([-1, -1]), r"non-empty slate of item ids \(got none but -1, which pads the list\)"),
        (probe(0, [1]), r"kind 1 \(probe\) is not offered here.*setting='multiple_choice'"),
        (ask([0, 1]), "allows 1 per question"),
        ({"kind": 7}, "not one of"),
        ("ask 3", "must be a dict"),
        # outside the action space in an entry the kind does not read: refused too
        ({"kind": 2, "items": [1], "aspects": [50]}, r"action\['aspects'\] holds \[50\], outside \[0, 4\)"),
        ({"kind": 0, "aspects": [1], "items": [500]}, r"action\['items'\] holds \[500\], outside"),
        ({"kind": 2, "items": [1], "persona": 9}, r"kind 2 does not read it, but every entry must lie in"),
    ],
)
def test_bad_actions_raise_and_leave_the_state_unchanged(tiny, action, message) -> None:
    env = make(tiny)
    obs, _ = env.reset(seed=0)
    history = list(env.state.history)
    with pytest.raises(InvalidActionError, match=message):
        env.step(action)
    after = env._observation()
    assert all(np.array_equal(obs[key], after[key]) for key in obs)
    assert env.state.history == history


def test_render_ansi_shows_the_dialogue(tiny) -> None:
    env = make(tiny, render_mode="ansi")
    env.reset(seed=0)
    env.step(ask(2))
    env.step(recommend([2]))
    text = env.render()
    assert "a2" in text and "accepts 'item2' (rank 1)" in text and text.count("\n") == 3


def test_reachable_aspects_are_the_candidates_unsettled_aspects() -> None:
    from envs import make_env

    env = make_env("persona_world", split="test")
    rng = np.random.default_rng(0)
    for seed in range(20):
        env.reset(seed=seed)
        state = env.state
        state.candidates &= rng.random(state.candidates.size) < 0.3  # an arbitrary candidate subset
        state.rejected[rng.integers(0, env.catalog.n_aspects, 5)] = True
        naive = set()
        for item in state.candidate_items():
            naive.update(int(a) for a in env.catalog.aspects_of(item))
        naive -= set(np.flatnonzero(state.accepted | state.rejected).tolist())
        assert state.reachable_aspects().tolist() == sorted(naive)


# ------------------------------------------------------------------ probes only where the setting offers them
def enumerated_tiny() -> ConversationEnv:
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    return make(catalog, setting="enumerated")


@pytest.mark.parametrize("setting", ["binary", "enumerated"])
def test_settings_without_probes_refuse_a_probe_and_never_sample_one(tiny, setting: str) -> None:
    env = enumerated_tiny() if setting == "enumerated" else make(tiny, setting=setting)
    assert not env.offers_probes
    env.reset(seed=0)
    history = list(env.state.history)
    with pytest.raises(InvalidActionError, match=r"kind 1 \(probe\) is not offered.*multiple_choice"):
        env.step(probe(0, [1]))
    assert env.state.history == history and env.state.turn == 1
    # the action space keeps kind Discrete(3), but a sample never probes and contains() refuses a probe
    assert env.action_space["kind"].n == 3
    env.action_space.seed(0)
    kinds = set()
    for _ in range(300):
        sample = env.action_space.sample()
        kinds.add(int(sample["kind"]))
        assert env.action_space.contains(sample)
        assert not env.action_space.contains({**sample, "kind": np.int64(1)})
    assert kinds == {0, 2}


def test_multiple_choice_setting_still_offers_probes(tiny) -> None:
    env = make(tiny, setting="multiple_choice", n_personas=2)
    assert env.offers_probes
    env.action_space.seed(0)
    assert {int(env.action_space.sample()["kind"]) for _ in range(100)} == {0, 1, 2}


def test_vector_envs_without_probes_never_sample_one() -> None:
    world = {"n_users": 10, "n_items": 60, "interactions_per_user": 6}
    vector = gym.vector.SyncVectorEnv(
        [lambda: make_env("persona_world", world_kwargs=world, setting="binary", user="single")] * 2
    )
    vector.action_space.seed(0)
    vector.reset(seed=0)
    kinds = np.concatenate([vector.action_space.sample()["kind"] for _ in range(200)])
    assert set(kinds.tolist()) == {0, 2}
    for _ in range(50):
        vector.step(vector.action_space.sample())  # every sample is carried out
    vector.close()


@pytest.mark.real_data
def test_unicorns_enumerated_yelp_refuses_a_probe(real_data_dir) -> None:
    env = gym.make("crs/Yelp-v0", data_dir=real_data_dir)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="not offered"):
        env.step(probe(0, [0]))


# ------------------------------------------------------------------------------------ reset options
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"goal_index": 1.9}, r"must be an integer .* got 1\.9 \(float\)"),
        ({"goal_index": 0.0}, r"got 0\.0 \(float\)"),
        ({"goal_index": "0"}, r"got '0' \(str\)"),
        ({"goal_index": True}, r"got True \(bool\)"),
        ({"goal_index": np.bool_(False)}, r"must be an integer"),
        ({"goal_index": None}, r"got None \(NoneType\)"),
        ({"goal_index": "x"}, r"got 'x' \(str\)"),
        ({"goal_index": 1}, r"options\['goal_index'\]=1 outside \[0, 1\)"),
        ({"goal_index": -1}, r"=-1 outside \[0, 1\)"),
        ({"goal_idx": 0}, r"unknown reset option\(s\) \['goal_idx'\]; the only option is 'goal_index'"),
        ({"goal_index": 0, "seed": 3}, r"unknown reset option\(s\) \['seed'\]"),
        ("goal_index", r"must be None or a dict like \{'goal_index': 3\}, got 'goal_index' \(str\)"),
        ([("goal_index", 0)], r"must be None or a dict"),
    ],
)
def test_bad_reset_options_raise_naming_the_value_and_leave_the_env_as_it_was(tiny, options, message) -> None:
    env = make(tiny)
    env.reset(seed=0)
    env.step(ask(1))
    history = list(env.state.history)
    with pytest.raises(ResetOptionsError, match=message) as raised:
        env.reset(seed=5, options=options)
    assert isinstance(raised.value, CRSError)
    assert env.state.history == history


@pytest.mark.parametrize("options", [None, {}, {"goal_index": 0}, {"goal_index": np.int64(0)}])
def test_valid_reset_options_pick_the_goal(tiny, options) -> None:
    _, info = make(tiny).reset(seed=0, options=options)
    assert info["goal_index"] == 0


# ------------------------------------------------------------------------------ UNICORN's reward table
def test_default_rewards_are_unicorns_reward_table() -> None:
    """The defaults are UNICORN's ``reward_dict`` (dengyang17/unicorn, RL/env_binary_question.py,
    ``BinaryRecommendEnv.__init__``; the same table in RL/env_enumerated_question.py), as DESIGN.md
    lists it: rec_suc 1, rec_fail -0.1, ask_suc 0.01, ask_fail -0.1, until_T -0.3, cand_none -0.1."""
    unicorn = {
        "rec_suc": 1.0,
        "rec_fail": -0.1,
        "ask_suc": 0.01,
        "ask_fail": -0.1,
        "until_T": -0.3,
        "cand_none": -0.1,
    }
    ours = {
        "rec_suc": R.recommend_success,
        "rec_fail": R.recommend_fail,
        "ask_suc": R.ask_accepted,
        "ask_fail": R.ask_rejected,
        "until_T": R.quit_at_limit,
        "cand_none": R.no_candidates,
    }
    assert ours == unicorn
    assert make(tiny_catalog()).rewards == R  # an env given no `rewards` uses them


# ------------------------------------------------------------------------------ the observed answer
def test_last_answer_tells_accepted_rejected_and_slate_rejected_apart(tiny) -> None:
    env = make(tiny)
    obs, _ = env.reset(seed=0)
    assert obs["last_answer"] == ANSWER_NONE
    obs, *_ = env.step(ask(2))  # target 2 lacks aspect 2
    assert obs["last_answer"] == ANSWER_REJECTED
    obs, *_ = env.step(ask(3))  # target 2 has aspect 3 (unless the opening stated it: accepted again)
    assert obs["last_answer"] == ANSWER_ACCEPTED
    obs, *_ = env.step(recommend([0]))
    assert obs["last_answer"] == ANSWER_SLATE_REJECTED


def test_a_failed_slate_reaches_the_rankers_facts(tiny) -> None:
    env = make(tiny)
    env.reset(seed=0)
    env.step(ask(2))
    env.step(recommend([5, 0]))  # target 2 is in neither
    facts = env.state.facts()
    assert facts.rejected_items.tolist() == [0, 5]  # ascending ids
    assert facts.rejected.tolist() == [2] and facts.accepted.tolist() == list(env.state.history[0].accepted)


# ------------------------------------------------------------------------------ sequential goal order
def sequential_env() -> ConversationEnv:
    """The tiny catalogue with six goals, user 0 with each item in turn, walked in a seeded order."""
    catalog = tiny_catalog()
    goals = PairGoals(catalog, "test", interactions=Interactions(users=np.zeros(6), items=np.arange(6)))
    return ConversationEnv(catalog, SingleTargetUser(catalog), goals, episode_order="sequential")


def walk(env: ConversationEnv, seed: int, resets: int) -> list[int]:
    """Goal indices of `resets` resets, the first with `seed`, the rest unseeded."""
    indices = [env.reset(seed=seed)[1]["goal_index"]]
    indices += [env.reset()[1]["goal_index"] for _ in range(resets - 1)]
    return indices


def test_sequential_order_walks_every_goal_once_then_wraps_around() -> None:
    indices = walk(sequential_env(), seed=1, resets=13)
    assert sorted(indices[:6]) == list(range(6))  # each goal once per pass
    assert indices[6:12] == indices[:6] and indices[12] == indices[0]  # the next pass repeats the order


def test_reseeding_a_sequential_env_redraws_the_order_from_the_new_seed() -> None:
    fresh = walk(sequential_env(), seed=2, resets=6)
    assert fresh != walk(sequential_env(), seed=1, resets=6)  # the two seeds order the goals differently
    env = sequential_env()
    walk(env, seed=1, resets=3)  # part way through seed 1's order
    assert walk(env, seed=2, resets=6) == fresh  # from the start of seed 2's order
