"""The SB3 wrapper, its slots and the answer search: what the mutation audit of envs/sb3_slots.py,
envs/sb3_wrapper.py, envs/answer_search.py and envs/question_types.py found untested."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from envs import ConversationEnv, DialogueFacts, make_env
from envs.actions import ActionKind
from envs.answer_search import AnswerSearch, top_k
from envs.question_types import QuestionTypes
from envs.sb3_features import FEATURE_NAMES, PLAN_FEATURES, column
from envs.sb3_slots import category_scores
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig, WrapperError
from policies.baseline_rankers import PopularityRanker
from policies.rules import LookaheadPolicy
from simulators.catalog import Catalog, Taxonomy
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from simulators.users import PersonaUser, SingleTargetUser, SlateReaction
from tests.envs.conftest import TruthPersonaRanker, tiny_catalog
from tests.envs.test_answer_search import WEIGHTS, code_catalog, code_plan, in_36ths

WORLD = {"n_users": 40, "n_items": 300, "n_groups": 4, "aspects_per_group": 5, "interactions_per_user": 12}


@pytest.fixture(scope="module")
def world() -> Catalog:
    return load_catalog("persona_world", **WORLD)


class FixedRanker:
    """Fixed item and aspect scores (indexed by id), whatever the dialogue."""

    def __init__(self, item_values: Sequence[float], aspect_values: Sequence[float]) -> None:
        self.item_values = np.asarray(item_values, dtype=np.float64)
        self.aspect_values = np.asarray(aspect_values, dtype=np.float64)

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return self.item_values[np.asarray(items, dtype=np.int64)]

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return self.aspect_values[np.asarray(aspects, dtype=np.int64)]


class NoUser(SingleTargetUser):
    """States one aspect of its target, then rejects every question and every slate (never leaves)."""

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        return frozenset()

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


class SlateRefuser(PersonaUser):
    """Answers questions as the persona world's users do, rejects every slate (and never leaves)."""

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


def feature(obs: dict[str, np.ndarray], key: str, name: str) -> np.ndarray:
    """The named feature's column of an observation block, shape block.shape[:-1]."""
    return obs[key][..., column(key, name)]


def plan_column(key: str, name: str) -> int:
    """The column of a `PLAN_FEATURES` feature: after the block's own ones."""
    return len(FEATURE_NAMES[key]) + PLAN_FEATURES[key].index(name)


def reset_with_opening(env: SlateActionWrapper, accepted: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Reset on the first seed whose opening accepted the aspects `accepted`; the observation."""
    seed = next(s for s in range(100) if env.reset(seed=s) and env.base.state.history[0].accepted == accepted)
    obs, _ = env.reset(seed=seed)
    return obs


# ------------------------------------------------------------------------------ the local graph's edges
def check_edges(env: SlateActionWrapper, obs: dict[str, np.ndarray]) -> None:
    """item_question / item_rejected equal the catalogue's item-aspect incidence of the shown slots."""
    catalog, items = env.base.catalog, env.candidate_items
    incidence = catalog.item_aspects[items].toarray().astype(bool)  # (n_top, A)
    if env.base.enumerated:
        assert catalog.taxonomy is not None
        parent_of = np.asarray(catalog.taxonomy.parent_of)
        asked = [np.flatnonzero(parent_of == q) for q in env.question_ids.tolist()]
    else:
        asked = [np.array([q]) for q in env.question_ids.tolist()]
    expected = np.zeros((env.n_items, env.n_questions), dtype=np.float32)
    for j, aspects in enumerate(asked):
        expected[: items.size, j] = incidence[:, aspects].any(axis=1)
    np.testing.assert_array_equal(obs["item_question"], expected)
    shown = obs["rejected_ids"][obs["rejected_ids"] >= 0].astype(np.int64)
    expected = np.zeros((env.n_items, env.config.max_facts), dtype=np.float32)
    expected[: items.size, : shown.size] = incidence[:, shown]
    np.testing.assert_array_equal(obs["item_rejected"], expected)


def test_item_edges_link_each_item_slot_to_the_question_slots_and_rejected_aspects_it_holds(
    world: Catalog,
) -> None:
    """The local graph's edges: row r is item slot r's item, column j question slot j (rejected_ids[j]);
    guards against edges read from other candidates than the shown slots, or rows / columns reversed."""
    env = SlateActionWrapper(
        make_env(catalog=world, split="valid"), TruthPersonaRanker(world), WrapperConfig(max_facts=4)
    )
    rng = np.random.default_rng(2)
    obs, _ = env.reset(seed=2)
    edges_seen = rejected_seen = 0.0
    for _ in range(60):
        check_edges(env, obs)
        edges_seen += float(obs["item_question"].sum())
        rejected_seen += float(obs["item_rejected"].sum())
        choice = rng.choice(np.flatnonzero(env.action_masks()[: env.n_choices]))
        obs, _, done, _, _ = env.step(np.array([choice, *rng.permutation(env.n_items)]))
        if done:
            obs, _ = env.reset()
    assert edges_seen > 0 and rejected_seen > 0  # both edge sets were exercised, not all zero


def test_category_edges_hold_the_items_of_the_item_slots() -> None:
    """Enumerated questions: item_question[r, j] = slot r's item has an aspect of category j; guards
    against the edges of the first candidates by id instead of the ranker's best (the item slots)."""
    taxonomy = Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1"))
    catalog = tiny_catalog(taxonomy=taxonomy, n_extra_items=30)
    # item 2 beats item 0, and the extra items (ids 6..35, aspect 0 only) score highest: the item
    # slots are not the lowest candidate ids
    ranker = FixedRanker(np.r_[0.0, 0.0, 0.5, 0.0, 0.0, 0.0, np.arange(1.0, 31.0)], np.zeros(4))
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single", setting="enumerated"), ranker, WrapperConfig()
    )
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        check_edges(env, obs)
    obs = reset_with_opening(env, (0, 1))  # c0 asked: candidates {0, 2}, c1 open (item 2 holds 3)
    assert env.question_ids.tolist() == [1] and env.candidate_items.tolist() == [2, 0]
    assert obs["item_question"][:2, 0].tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------------- question slots
def test_when_the_open_aspects_fit_the_slots_all_are_ranker_picks_best_score_first() -> None:
    """Target item 2 holds {0, 1, 3}: after the opening 0 the candidates {0, 1, 2, 5} leave aspects 1, 2, 3
    open; with aspect scores 0.4, 0.8, 0.2, 0.6 and 3 slots the slots are 1, 3, 2 (best first), each a
    ranker pick; guards against the entropy rule filling slots when all fit, and a reversed order."""
    catalog = tiny_catalog()
    ranker = FixedRanker([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], [0.4, 0.8, 0.2, 0.6])
    for n_questions in (3, 5):
        env = SlateActionWrapper(
            make_env(catalog=catalog, split="test", user="single"),
            ranker,
            WrapperConfig(n_questions=n_questions),
        )
        obs = reset_with_opening(env, (0,))
        assert env.question_ids.tolist() == [1, 3, 2]
        assert obs["question_ids"].tolist() == [1.0, 3.0, 2.0] + [-1.0] * (n_questions - 3)
        assert feature(obs, "question_feats", "ranker_pick").tolist() == [1.0] * 3 + [0.0] * (n_questions - 3)


def test_category_slots_are_ordered_by_their_best_open_aspects_score() -> None:
    """Categories c0 = {0}, c1 = {1, 2}, c2 = {3}; after the opening c0 (aspect 0) c1 and c2 are open,
    scored 0.8 (aspect 1) and 0.6 (aspect 3): slot order c1, c2; guards against a reversed sign."""
    taxonomy = Taxonomy(parent_of=np.array([0, 1, 1, 2]), parent_names=("c0", "c1", "c2"))
    catalog = tiny_catalog(taxonomy=taxonomy)
    ranker = FixedRanker([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], [0.4, 0.8, 0.2, 0.6])
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single", setting="enumerated"), ranker, WrapperConfig()
    )
    obs = reset_with_opening(env, (0,))
    assert env.question_ids.tolist() == [1, 2]
    assert feature(obs, "question_feats", "ranker_pick")[:2].tolist() == [1.0, 1.0]


def test_a_category_scores_its_best_reachable_member_and_one_without_any_the_lowest() -> None:
    """Aspect scores 1, 5, 2, 3 with aspects 0 and 2 reachable; c0 = {0, 1}, c1 = {2, 3}, c2 = {3}: c0
    scores 1 (aspect 1 is not reachable), c1 2, c2 (no reachable member) the lowest, 1; guards against
    scoring members that cannot be asked."""
    members = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=bool)  # (A, C)
    ranker = FixedRanker([], [1.0, 5.0, 2.0, 3.0])
    none = np.zeros(0, dtype=np.int64)
    facts = DialogueFacts(0, none, none, none)
    scores = category_scores(ranker, facts, members, np.array([0, 2]), np.array([0, 1, 2]))
    assert scores.tolist() == [1.0, 2.0, 1.0]


# ------------------------------------------------------------------------------------------ actions
def test_a_typed_ask_lists_the_slot_aspect_then_its_types_best_scored_reachable_values(
    world: Catalog,
) -> None:
    """Types by id mod 3, max_choices 3: a question slot asks its aspect and the two most popular other
    reachable aspects of its type (ties: lower id); guards against a fixed count or the worst values."""
    base = make_env(catalog=world, split="valid")
    types = QuestionTypes(of_aspect=np.arange(world.n_aspects) % 3, names=("a", "b", "c"))
    typed = ConversationEnv(
        world, base.user, base.goals, setting="multiple_choice", question_types=types, max_choices=3
    )
    ranker = PopularityRanker(world)
    env = SlateActionWrapper(typed, ranker, WrapperConfig(probes=False))
    full = 0
    for seed in range(5):
        env.reset(seed=seed)
        state = env.base.state
        reachable = state.reachable_aspects().tolist()
        popularity = dict(
            zip(reachable, ranker.aspect_scores(state.facts(), state.reachable_aspects()), strict=True)
        )
        for slot, aspect in enumerate(env.question_ids.tolist()):
            peers = [a for a in reachable if a != aspect and a % 3 == aspect % 3]
            best = sorted(peers, key=lambda a: (-popularity[a], a))[:2]
            asked = env.to_env_action(np.array([slot] + [0] * env.slate_size))["aspects"]
            assert list(asked) == [aspect, *best]
            full += len(asked) == 3
    assert full > 0


def test_probe_slots_follow_the_envs_persona_count_and_max_choices(world: Catalog) -> None:
    """A 4-persona ranker over an env with 2 persona slots and 2 values per question: 2 probe slots,
    each listing at most 2 aspects, and every probe the mask allows is carried out; guards against
    probes the env refuses (persona 3, or 3 values)."""
    env = SlateActionWrapper(
        make_env(catalog=world, split="valid", n_personas=2, max_choices=2),
        TruthPersonaRanker(world),
        WrapperConfig(probe_size=3),
    )
    assert world.truth is not None and world.truth.personas_per_user == 4
    assert env.n_probes == 2 and env.probe_size == 2
    assert env.action_space.nvec[0] == env.n_questions + 2 + 1
    assert env.observation_space["probe_aspects"].shape == (2, 2)
    probed = 0
    for seed in range(4):
        env.reset(seed=seed)
        assert all(aspects.size <= 2 for aspects in env.probe_aspects)
        for k in range(env.n_probes):
            if env.base.done or not env.action_masks()[env.n_questions + k]:
                continue
            listed = tuple(int(a) for a in env.probe_aspects[k])
            env.step(np.array([env.n_questions + k, *range(10)]))
            record = env.base.state.history[-1]
            assert record.kind == "probe" and record.persona == k and record.asked == listed
            probed += 1
    assert probed > 0


def test_recommend_stays_valid_at_the_slate_cap_when_no_question_is_left() -> None:
    """max_slates_in_a_row closes recommend only while a question or probe is open: once every aspect
    is asked (and rejected) and a slate rejected, recommend must stay valid; guards against a mask
    with no valid choice."""
    catalog = tiny_catalog(n_extra_items=30)
    valid = make_env(catalog=catalog, split="test", user="single")
    base = ConversationEnv(catalog, NoUser(catalog), valid.goals, setting="binary")
    env = SlateActionWrapper(base, PopularityRanker(catalog), WrapperConfig(max_slates_in_a_row=1))
    reset_with_opening(env, (0,))  # 34 candidates: the 6 items and the 30 extra items with aspect 0
    while env.question_ids.size:
        _, _, done, _, _ = env.step(np.array([0, *range(10)]))
        assert not done
    assert env.base.state.n_candidates > env.slate_size
    _, _, done, _, _ = env.step(np.array([env.recommend_choice, *range(10)]))
    assert not done and env.base.state.history[-1].kind == "recommend"
    choice = env.action_masks()[: env.n_choices]
    assert np.flatnonzero(choice).tolist() == [env.recommend_choice]


def test_turn_limit_info_marks_only_the_step_that_reaches_the_turn_limit(world: Catalog) -> None:
    """A user who rejects every question (the candidates stay) reaches the turn limit: that step's
    info["turn_limit"] is True (and the step terminates), every earlier one False; guards against
    reading it from `terminated`."""
    valid = make_env(catalog=world, split="valid", user="single", setting="binary")
    base = ConversationEnv(world, NoUser(world), valid.goals, setting="binary")
    env = SlateActionWrapper(base, PopularityRanker(world), WrapperConfig())
    env.reset(seed=3)
    limits, done = [], False
    while not done:
        _, _, done, truncated, info = env.step(np.array([0, *range(10)]))  # ask question slot 0
        limits.append(info["turn_limit"])
        assert truncated is False
    assert env.base.state.turn == env.base.max_turns and env.base.state.n_candidates > 0
    assert limits == [False] * (env.base.max_turns - 2) + [True]


def test_the_user_feature_is_the_dialogues_user(world: Catalog) -> None:
    """obs["user"] is the id of the user in the dialogue (a policy embeds it); guards against a constant."""
    env = SlateActionWrapper(make_env(catalog=world, split="valid"), PopularityRanker(world), WrapperConfig())
    users = set()
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        assert obs["user"].tolist() == [float(env.base.state.user)]
        users.add(env.base.state.user)
        obs, _, done, _, _ = env.step(np.array([0, *range(10)]))
        if not done:
            assert obs["user"].tolist() == [float(env.base.state.user)]
    assert len(users) > 1


def test_probes_false_offers_no_persona_slots_even_with_a_persona_ranker(world: Catalog) -> None:
    """WrapperConfig(probes=False) (the persona-blind ablation) drops the persona slots a persona
    ranker would bring; guards against the flag being ignored."""
    env = SlateActionWrapper(
        make_env(catalog=world, split="valid"), TruthPersonaRanker(world), WrapperConfig(probes=False)
    )
    assert env.base.offers_probes and env.n_probes == 0
    assert env.action_space.nvec[0] == env.n_questions + 1 and env.recommend_choice == env.n_questions
    obs, _ = env.reset(seed=0)
    assert "probe_aspects" not in obs and "probe_feats" not in obs


def test_the_final_observation_pads_the_id_blocks_and_keeps_the_user(world: Catalog) -> None:
    """Past the end every id block is -1 padding (0 would read as item or aspect 0) and ``user`` is still
    the dialogue's user; guards against a zero-filled block or user."""
    env = SlateActionWrapper(
        make_env(catalog=world, split="valid"), TruthPersonaRanker(world), WrapperConfig()
    )
    env.reset(seed=1)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(np.array([env.recommend_choice, *range(10)]))
    assert env.base.state.user != 0
    assert obs["user"].tolist() == [float(env.base.state.user)]
    for key in ("question_ids", "probe_aspects", "item_ids", "accepted_ids", "rejected_ids"):
        assert (obs[key] == -1.0).all(), key


# ---------------------------------------------------------------------------------------- configuration
def test_config_refuses_a_bool_count_and_plan_depth_off_the_all_candidate_rule(world: Catalog) -> None:
    """True is an int to Python but not a slot count; the search models UNICORN's "all" candidate rule,
    so plan_depth is refused with another rule even in the binary setting."""
    with pytest.raises(WrapperError, match="n_questions=True must be an integer >= 1"):
        WrapperConfig(n_questions=True)
    binary_any = make_env(catalog=world, split="valid", setting="binary", candidate_rule="any")
    with pytest.raises(WrapperError, match="plan_depth=2"):
        SlateActionWrapper(binary_any, PopularityRanker(world), WrapperConfig(plan_depth=2))


def test_question_types_refuse_a_type_without_a_name() -> None:
    """Two names, so types 0 and 1: an aspect of type 2 is refused (it would have no name to show)."""
    with pytest.raises(CRSError, match=r"values in \[0, 2\)"):
        QuestionTypes(of_aspect=np.array([0, 1, 2]), names=("a", "b"))
    assert QuestionTypes(of_aspect=np.array([0, 1, 1]), names=("a", "b")).members(1).tolist() == [1, 2]


# ------------------------------------------------------------------------------------------ plan features
def test_plan_pick_marks_the_first_slot_of_largest_gain_not_always_the_first() -> None:
    """With 4 question slots the search asks the option worth the most: plan_pick marks that slot (of
    largest plan_gain, >= 0), also when it is not the first (under a flat belief, temperature 100, the
    options' values differ); guards against the flag landing on slot 0 whatever the search picked."""
    env = make_env("persona_world", split="test", setting="binary", user="single")
    ranker = TruthPersonaRanker(env.catalog)
    config = WrapperConfig(n_questions=4, plan_depth=1, plan_temperature=100.0, probes=False)
    wrapper = SlateActionWrapper(env, ranker, config)
    pick, gain = plan_column("question_feats", "plan_pick"), plan_column("question_feats", "plan_gain")
    later_picks = 0
    for seed in range(6):
        obs, _ = wrapper.reset(seed=seed)
        done = False
        while not done:
            picks, gains = obs["question_feats"][:, pick], obs["question_feats"][:, gain]
            n_q = wrapper.question_ids.size
            assert not picks[n_q:].any() and not gains[n_q:].any()
            choice = wrapper.recommend_choice
            if picks.any():
                (slot,) = np.flatnonzero(picks)
                # the search's options within 1e-9 tie (sums of one mass in another order)
                assert gains[slot] >= gains[:n_q].max() - 1e-6 and gains[slot] >= -1e-6
                later_picks += int(gains[slot] > gains[0] + 1e-6)  # a later slot, clearly better
                choice = int(slot)
            obs, _, done, _, _ = wrapper.step(np.array([choice, *range(10)]))
    assert later_picks > 0


def test_plan_depth_one_chooses_what_lookahead_one_chooses() -> None:
    """plan_depth is the search's depth: at depth 1 plan_pick marks the ranker's best aspect exactly
    when lookahead-1 asks (depth 2 differs on some of these turns); guards against a fixed depth."""
    env = make_env("persona_world", split="test", setting="binary", user="single")
    ranker = TruthPersonaRanker(env.catalog)
    wrapper = SlateActionWrapper(env, ranker, WrapperConfig(n_questions=1, plan_depth=1, probes=False))
    rule = LookaheadPolicy(ranker, 1)
    pick = plan_column("question_feats", "plan_pick")
    turns, agree = 0, 0
    for seed in range(10):
        obs, _ = wrapper.reset(seed=seed)
        done = False
        while not done:
            rule_asks = rule.act(env.unwrapped)["kind"] == int(ActionKind.ASK)
            turns, agree = turns + 1, agree + (bool(obs["question_feats"][0, pick]) == rule_asks)
            choice = 0 if rule_asks else wrapper.recommend_choice
            obs, _, done, _, _ = wrapper.step(np.array([choice, *range(10)]))
    assert turns > 20 and agree == turns


def test_plan_recommend_is_the_belief_mass_of_the_slates_left() -> None:
    """plan_recommend = the mass of softmax(scores / T) on the k x r best-scored candidates (r turns
    left; 0 when the search is skipped: r <= 1 or at most k candidates), recomputed here from the
    ranker; guards against it showing an ask value instead."""
    env = make_env("persona_world", split="test", setting="binary", user="single")
    ranker = TruthPersonaRanker(env.catalog)
    config = WrapperConfig(n_questions=2, plan_depth=1, plan_temperature=100.0, probes=False)
    wrapper = SlateActionWrapper(env, ranker, config)
    at = plan_column("global", "plan_recommend")
    searched = 0
    for seed in range(4):
        obs, _ = wrapper.reset(seed=seed)
        done = False
        while not done:
            state, k = env.unwrapped.state, wrapper.slate_size
            candidates, turns_left = state.candidate_items(), env.unwrapped.max_turns - state.turn
            expected = 0.0
            if turns_left > 1 and candidates.size > k:
                z = np.asarray(ranker.item_scores(state.facts(), candidates), dtype=np.float64) / 100.0
                belief = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
                expected = float(np.sort(belief)[::-1][: k * turns_left].sum())
                searched += 1
            assert obs["global"][at] == pytest.approx(expected, rel=1e-5, abs=1e-7)
            picks = obs["question_feats"][:, plan_column("question_feats", "plan_pick")]
            choice = int(np.flatnonzero(picks)[0]) if picks.any() else wrapper.recommend_choice
            obs, _, done, _, _ = wrapper.step(np.array([choice, *range(10)]))
    assert searched > 5


# ------------------------------------------------------------------------------------------ the search
class AcceptedShareRanker:
    """Item score log(weight) + 10 x (share of the item's aspects accepted) - 10 per rejected aspect it
    holds: an accepted aspect reorders its holders (a rejected one shifts them all alike)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        matrix = self.catalog.item_aspects[items].toarray().astype(np.float64)
        share = matrix[:, facts.accepted].sum(axis=1) / np.maximum(matrix.sum(axis=1), 1.0)
        return np.log(WEIGHTS[items]) + 10.0 * share - 10.0 * matrix[:, facts.rejected].sum(axis=1)

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return -aspects.astype(np.float64)


def test_a_yes_answer_is_searched_with_the_aspect_accepted() -> None:
    """Code catalogue (belief (8 - i) / 36), k = 1, r = 3, depth 1, asking a0 = {0,1,2,3}. Yes: a0
    accepted, shares 1/3, 1/2, 1/2, 1 rank items 3, 1, 2, 0; two slates find 5 + 7 = 12. No: a0's
    holders drop last, two slates show 4, 5: 4 + 3 = 7. So a0 is worth 19/36 (recommending 8 + 7 + 6 =
    21); guards against the yes branch recording the aspect as rejected (0, 1: 15, so 22)."""
    catalog = code_catalog()
    none = np.zeros(0, dtype=np.int64)
    search = AnswerSearch(
        catalog, AcceptedShareRanker(catalog), 1, 1, DialogueFacts(0, none, none, none), np.arange(8)
    )
    plan = search.plan(np.array([0]), 3)
    assert round(plan.recommend_value * 36, 9) == 21
    assert [round(v * 36, 9) for v in plan.ask_values] == [19]
    assert plan.ask is None


def test_a_node_below_the_root_recommends_when_that_finds_more_than_asking() -> None:
    """Code catalogue with its WeightRanker, k = 1, r = 3, depth 2, asking a0. Yes (items 0..3, 2
    turns): recommending finds 8 + 7 = 15, asking a1 only 8 + 6 = 14; no (items 4..7): recommending
    4 + 3 = 7, asking a1 4 + 2 = 6. So a0 is worth 15 + 7 = 22 against recommending's 8 + 7 + 6 = 21,
    and the search asks; guards against inner nodes that always ask (14 + 6 = 20: it would recommend)."""
    plan = code_plan(3, depth=2, options=(0,))
    assert in_36ths(plan) == (21, [22]) and plan.ask == 0


def test_top_k_orders_best_first_and_equal_scores_by_lower_id() -> None:
    """Both paths (k below and above the item count) put equal scores in ascending id order; rule
    slates are shown in this order; guards against ties left in input order or by higher id."""
    items, scores = np.array([9, 3, 7, 1]), np.array([2.0, 2.0, 5.0, 0.0])
    assert top_k(items, scores, 10).tolist() == [7, 3, 9, 1]
    assert top_k(items, scores, 3).tolist() == [7, 3, 9]
