"""The env's rules: what the mutation audit of envs/env.py, envs/actions.py, envs/state.py and
envs/rollout.py found untested.

Tiny catalogue (tests/envs/conftest.py): item -> aspects
0:{0,1} 1:{0,2} 2:{0,1,3} 3:{1,2} 4:{2,3} 5:{0,3}; the only conversation is user 0 with target item 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from gymnasium.vector.utils import batch_space

from envs import ConversationEnv, InvalidActionError, Rewards, ask, probe, recommend
from envs.env import ANSWER_ACCEPTED
from envs.metrics import EpisodeRecord
from envs.question_types import QuestionTypes
from envs.rollout import episode_seed, evaluate, evaluate_batched, evaluation_indices, run_episode
from simulators.catalog import Catalog, Taxonomy
from simulators.errors import CRSError
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser, SlateReaction
from tests.envs.conftest import tiny_catalog

R = Rewards()


class NoUser(SingleTargetUser):
    """States one aspect of its target, then rejects every question and every slate (never leaves)."""

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        return frozenset()

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


def make(catalog: Catalog, user: SingleTargetUser | None = None, **kwargs: object) -> ConversationEnv:
    """An env over the catalogue's test split, with `SingleTargetUser` unless `user` is given."""
    user = user or SingleTargetUser(catalog)
    return ConversationEnv(catalog, user, PairGoals(catalog, "test"), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ answers and observations
def test_a_partly_accepted_multiple_choice_question_is_observed_as_accepted(tiny: Catalog) -> None:
    """Guards against ``last_answer`` reading "rejected" whenever any listed aspect was rejected: a
    question with an accepted aspect is an accepted answer (and pays +0.01)."""
    env = make(tiny, setting="multiple_choice")
    env.reset(seed=0)
    obs, reward, *_ = env.step(ask([2, 1]))  # target 2 has aspect 1, not 2
    assert obs["last_answer"] == ANSWER_ACCEPTED and reward == pytest.approx(R.ask_accepted)
    obs, *_ = env.step(probe(0, [3, 2]))  # has 3, not 2
    assert obs["last_answer"] == ANSWER_ACCEPTED


def test_rejected_aspects_are_reported_in_the_order_asked(tiny: Catalog) -> None:
    """Guards against ``info["rejected"]`` being sorted (or reordered): it lists the rejected aspects
    in the order the question listed them, the accepted ones ascending."""
    env = make(tiny, user=NoUser(tiny), setting="multiple_choice")
    env.reset(seed=0)
    *_, info = env.step(ask([3, 1, 2]))
    assert info["answer"] == () and info["rejected"] == (3, 1, 2)
    assert env.state.history[-1].rejected == (3, 1, 2)


def test_rejected_items_observation_holds_only_recommended_items(tiny: Catalog) -> None:
    """Guards against ``obs["rejected_items"]`` marking every non-candidate: items filtered out by an
    answer were never shown, so only the slates' items are rejected items."""
    env = make(tiny)
    obs, _ = env.reset(seed=0)
    assert env.state.n_candidates < 6  # the opening filtered some items out
    assert not obs["rejected_items"].any()
    others = [i for i in env.state.candidate_items().tolist() if i != 2][:1]
    obs, *_ = env.step(recommend(others))
    assert np.flatnonzero(obs["rejected_items"]).tolist() == others


# ------------------------------------------------------------------------------ rewards in the history
def test_the_history_records_the_quit_penalty_of_the_last_turn(tiny: Catalog) -> None:
    """Guards against the turn record keeping the reward without the quit penalty: the record of the
    turn that reaches the limit holds what step returned (-0.1 - 0.3), so histories sum to the return."""
    env = make(tiny, user=NoUser(tiny), max_turns=3)
    env.reset(seed=0)
    rewards = [env.step(ask(2))[1], env.step(recommend([0]))[1]]
    assert rewards == pytest.approx([R.ask_rejected, R.recommend_fail + R.quit_at_limit])
    assert [record.reward for record in env.state.history[1:]] == pytest.approx(rewards)


# ------------------------------------------------------------------------------ constructor arguments
@pytest.mark.parametrize("max_turns", [2, 100])
def test_the_turn_limit_accepts_both_ends_of_its_range(tiny: Catalog, max_turns: int) -> None:
    """Guards against an off-by-one in the turn limit's bounds: 2 (one agent action) and 100 are valid."""
    env = make(tiny, max_turns=max_turns, user=NoUser(tiny))
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(ask(2))
        steps += 1
    assert steps == max_turns - 1


@pytest.mark.parametrize("max_turns", [1, 101])
def test_a_turn_limit_outside_its_range_is_refused(tiny: Catalog, max_turns: int) -> None:
    """Guards against the turn limit's bounds letting 1 (no agent action) or 101 through."""
    with pytest.raises(CRSError, match=r"max_turns=.* between 2 and 100"):
        make(tiny, max_turns=max_turns)


def test_a_slate_of_one_item_is_valid_and_of_none_refused(tiny: Catalog) -> None:
    """Guards against an off-by-one in the lower bound of the counts: slate_size=1 recommends one item."""
    env = make(tiny, slate_size=1)
    env.reset(seed=0)
    *_, info = env.step(recommend([2]))
    assert info["success"] and info["rank"] == 1
    with pytest.raises(CRSError, match=r"slate_size=0 must be an integer >= 1"):
        make(tiny, slate_size=0)


def test_a_user_model_of_another_catalogue_instance_is_refused(tiny: Catalog) -> None:
    """Guards against the env checking only the goal sampler's catalogue: a user built on another
    (equal) catalogue instance would answer from other data, so it is refused."""
    other = tiny_catalog()
    with pytest.raises(CRSError, match="share one Catalog instance"):
        ConversationEnv(tiny, SingleTargetUser(other), PairGoals(tiny, "test"))


@pytest.mark.parametrize("setting", ["binary", "enumerated"])
def test_typed_questions_outside_the_multiple_choice_setting_are_refused(setting: str) -> None:
    """Guards against the setting check reading only ``candidate_rule``: MCMIPL's typed questions
    (several aspects of one type per question) need the multiple-choice setting too."""
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    types = QuestionTypes(of_aspect=np.array([0, 0, 0, 1]), names=("t0", "t1"))
    with pytest.raises(CRSError, match="setting='multiple_choice'"):
        make(catalog, setting=setting, question_types=types)


# ------------------------------------------------------------------------------ the rendered dialogue
def test_render_names_the_first_three_items_of_a_slate_and_counts_the_rest(tiny: Catalog) -> None:
    """Guards against the "(+N more)" of a long slate counting all its items instead of those not named."""
    env = make(tiny, user=NoUser(tiny), render_mode="ansi")
    env.reset(seed=0)
    env.step(recommend([4, 3, 1, 0, 5]))
    env.step(recommend([5, 0, 1]))
    lines = env.render().splitlines()
    assert "recommends item4, item3, item1 (+2 more) -> user rejects the slate" in lines[1]
    assert "recommends item5, item0, item1 -> user rejects" in lines[2] and "more" not in lines[2]


# ------------------------------------------------------------------------------ actions
def test_a_category_id_equal_to_the_number_of_categories_is_refused() -> None:
    """Guards against an off-by-one in the category range of an enumerated ask: with categories 0 and
    1, category 2 is refused as an invalid action and changes nothing."""
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    env = make(catalog, setting="enumerated")
    env.reset(seed=0)
    history = list(env.state.history)
    with pytest.raises(InvalidActionError, match=r"category id in \[0, 2\), got 2"):
        env.step(ask(2))
    assert env.state.history == history and env.state.turn == 1
    *_, info = env.step(ask(1))  # the last category is valid
    assert info["kind"] == "ask" and env.state.asked_categories[1]


def test_a_space_without_probes_samples_ask_and_recommend_equally_often(tiny: Catalog) -> None:
    """Guards against the probe-free space turning every drawn probe into an ask: a drawn probe is
    redrawn uniformly between ask and recommend, so each kind comes half the time."""
    env = make(tiny)
    env.action_space.seed(0)
    kinds = np.array([int(env.action_space.sample()["kind"]) for _ in range(3000)])
    assert set(kinds.tolist()) == {0, 2}
    assert 0.46 < np.mean(kinds == 2) < 0.54  # a probe turned into an ask would give 1/3


def test_an_enumerated_ask_without_a_category_entry_is_an_invalid_action() -> None:
    """Guards against an enumerated ask missing its ``category`` entry failing with a KeyError: it is an
    InvalidActionError naming the entry, and the dialogue is unchanged."""
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1")))
    env = make(catalog, setting="enumerated")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="ask needs the action entry 'category'"):
        env.step({"kind": 0, "aspects": [1], "persona": 0})
    assert env.state.turn == 1 and len(env.state.history) == 1


def test_a_batch_of_actions_with_one_probe_is_outside_a_probe_free_vector_space(tiny: Catalog) -> None:
    """Guards against the batched probe-free space refusing a batch only when every row probes: one
    probing row makes the whole batch invalid."""
    space = batch_space(make(tiny).action_space, n=3)
    space.seed(0)
    batch = space.sample()
    assert space.contains(batch)
    batch["kind"] = np.array([0, 1, 2], dtype=batch["kind"].dtype)
    assert not space.contains(batch)


# ------------------------------------------------------------------------------ rollouts
class SlatePolicy:
    """Recommends one fixed slate every turn."""

    def __init__(self, slate: list[int]) -> None:
        self.slate = slate

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend(self.slate)


def test_an_episode_record_has_no_rank_when_no_item_was_accepted(tiny: Catalog) -> None:
    """Guards against a failed conversation's record carrying the info's 0 as its rank: records say
    None (no hit), and a hit's 1-based rank as it was shown."""
    env = make(tiny, max_turns=4)
    failed = run_episode(env, SlatePolicy([0, 5]), np.random.default_rng(0), seed=0)
    assert not failed.success and failed.rank is None and failed.agent_actions == 3
    assert failed.to_dict()["rank"] is None
    hit = run_episode(env, SlatePolicy([5, 0, 2]), np.random.default_rng(0), seed=0)
    assert hit.success and hit.rank == 3 and hit.agent_actions == 1


@pytest.mark.parametrize("episodes", [0, -1])
def test_an_evaluation_of_no_conversations_is_refused(episodes: int) -> None:
    """Guards against ``episodes=0`` silently evaluating nothing (or a negative count slicing most of
    the split): fewer than one conversation is an error."""
    with pytest.raises(CRSError, match="episodes must be at least 1"):
        evaluation_indices(10, episodes, 0)
    assert len(evaluation_indices(10, 1, 0)) == 1


class DrawingPolicy(SlatePolicy):
    """Recommends the first candidates; records one draw from the generator of every reset."""

    def __init__(self) -> None:
        super().__init__([])
        self.draws: list[float] = []

    def reset(self, rng: np.random.Generator) -> None:
        self.draws.append(float(rng.random()))

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend(env.state.candidate_items()[: env.slate_size])


def test_a_batched_evaluation_seeds_each_policy_reset_by_its_episode_seed(tiny: Catalog) -> None:
    """Guards against the batched evaluator seeding the policy's generator otherwise than `evaluate`
    (e.g. by the goal index): a stochastic policy must replay the same conversations either way."""
    policy = DrawingPolicy()
    records = evaluate_batched(lambda: make(tiny), policy, np.array([0, 0, 0]), seed=4, batch=2)
    expected = float(np.random.default_rng(episode_seed(4, 0)).random())
    assert len(records) == 3 and policy.draws == [expected] * 3


def test_evaluators_report_every_finished_conversation(tiny: Catalog) -> None:
    """Guards against `evaluate` or `evaluate_batched` not calling ``on_episode`` (what drives the
    progress bars of `crs eval`): it gets each record once, as the evaluation returns it."""
    seen: list[EpisodeRecord] = []
    records = evaluate(make(tiny), DrawingPolicy(), np.array([0, 0]), seed=1, on_episode=seen.append)
    assert len(records) == 2 and seen == records
    batched: list[EpisodeRecord] = []
    records = evaluate_batched(
        lambda: make(tiny), DrawingPolicy(), np.array([0, 0, 0]), seed=1, batch=2, on_episode=batched.append
    )
    assert len(records) == 3 and batched == records


# ------------------------------------------------------------------------------ the last turn
def test_a_hit_on_the_last_turn_terminates_without_the_quit_penalty(tiny: Catalog) -> None:
    """Guards against a success on the turn limit also counting as a truncation: the user accepted, so
    the episode terminates (not truncated) and pays +1 with no quit penalty."""
    env = make(tiny, user=SingleTargetUser(tiny), max_turns=3)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(recommend([0, 5]))
    assert (reward, terminated, truncated) == (pytest.approx(R.recommend_fail), False, False)
    _, reward, terminated, truncated, info = env.step(recommend([2]))
    assert info["success"] and info["turn"] == 3
    assert (reward, terminated, truncated) == (pytest.approx(R.recommend_success), True, False)


def test_the_any_rule_keeps_items_of_the_accepted_aspects_only(tiny: Catalog) -> None:
    """Guards against the union rule (``candidate_rule="any"``) also keeping the items of the rejected
    aspects: target 2 has aspect 1, not 2, so from every item the candidates become items(1)."""
    env = make(tiny, setting="multiple_choice", candidate_rule="any")
    env.reset(seed=0)
    env.state.candidates[:] = True  # start from all items to make the arithmetic explicit
    *_, info = env.step(ask([1, 2]))
    assert info["answer"] == (1,) and info["rejected"] == (2,)
    assert env.state.candidate_items().tolist() == [0, 2, 3]  # items with 1; items(2) = {1, 3, 4}
