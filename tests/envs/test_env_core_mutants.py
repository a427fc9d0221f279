"""The env's rules that the second mutation audit of envs/env.py, envs/actions.py and envs/state.py
found untested: each setting's answer rule, the reward table, what a rejected slate removes, probe
answers, the observed answer and the error messages of invalid actions.

Tiny catalogue (tests/envs/conftest.py): item -> aspects
0:{0,1} 1:{0,2} 2:{0,1,3} 3:{1,2} 4:{2,3} 5:{0,3}; the only conversation is user 0 with target item 2,
so items(0) = {0,1,2,5}, items(1) = {0,2,3}, items(2) = {1,3,4}, items(3) = {2,4,5}.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs import ConversationEnv, InvalidActionError, Rewards, ask, probe, recommend
from envs.env import ANSWER_ACCEPTED
from envs.state import DialogueState
from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.errors import CRSError
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser
from tests.envs.conftest import tiny_catalog
from tests.envs.test_mcmipl_env import tiny_mcmipl

R = Rewards()
# categories of the enumerated setting: c0 = {0, 1}, c1 = {2, 3}
TWO_CATEGORIES = Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1"))


def make(catalog: Catalog, **kwargs: object) -> ConversationEnv:
    """An env over the catalogue's test split with the truthful single-target user."""
    return ConversationEnv(catalog, SingleTargetUser(catalog), PairGoals(catalog, "test"), **kwargs)  # type: ignore[arg-type]


def enumerated() -> ConversationEnv:
    """The tiny catalogue in the enumerated setting, with categories c0 = {0, 1} and c1 = {2, 3}."""
    return make(tiny_catalog(TWO_CATEGORIES), setting="enumerated")


# ------------------------------------------------------------------------------ the observed answer
def test_an_accepted_slate_is_observed_as_an_accepted_answer(tiny: Catalog) -> None:
    """Guards against ``last_answer`` reading "slate rejected" after every recommendation: the slate
    the user accepts ends the episode with the accepted code."""
    env = make(tiny)
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(recommend([2]))
    assert terminated and info["success"]
    assert obs["last_answer"] == ANSWER_ACCEPTED


def test_an_answer_lists_the_accepted_aspects_in_ascending_order() -> None:
    """Guards against the answer keeping the user model's set order: with aspect ids 1 and 33 (which
    a python set of 8 slots iterates as 33, 1 when 33 is added first) the answer is (1, 33)."""
    n_aspects = 40
    matrix = sp.csr_matrix((np.ones(4, dtype=bool), ([0, 0, 1, 1], [1, 33, 2, 34])), shape=(2, n_aspects))
    split = Interactions(users=np.array([0]), items=np.array([0]))
    catalog = Catalog(
        name="wide",
        item_aspects=matrix,
        item_names=("item0", "item1"),
        aspect_names=tuple(f"a{a}" for a in range(n_aspects)),
        n_users=1,
        splits={"train": split, "valid": split, "test": split},
    )
    env = make(catalog, setting="multiple_choice")
    env.reset(seed=0)
    *_, info = env.step(ask([33, 1, 34]))
    assert info["answer"] == (1, 33) and info["rejected"] == (34,)
    assert env.state.history[-1].accepted == (1, 33)


def test_the_render_names_a_probes_persona_every_accepted_aspect_and_an_empty_answer(tiny: Catalog) -> None:
    """Guards against the rendered dialogue dropping a probe's persona, naming only the first accepted
    aspect, or leaving an answer of no aspect blank."""
    env = make(tiny, setting="multiple_choice", render_mode="ansi")
    env.reset(seed=0)
    env.step(probe(2, [3, 2, 1]))  # target 2 has 1 and 3, not 2
    env.step(ask([2]))
    lines = env.render().splitlines()
    assert "agent probes (persona 2): a3, a2, a1? -> user: a1, a3" in lines[1]
    assert "agent asks: a2? -> user: none of these" in lines[2]


def test_the_render_of_the_binary_setting_answers_yes_or_no(tiny: Catalog) -> None:
    """A binary question is answered "yes" or "no", as a person answers it in `crs chat` (the render said
    "none of these", the multiple-choice answer)."""
    env = make(tiny, setting="binary", render_mode="ansi")
    env.reset(seed=0)
    env.step(ask([2]))  # target 2 has 1 and 3, not 2
    env.step(ask([1]))
    lines = env.render().splitlines()
    assert "agent asks: a2? -> user: no " in lines[1] and "agent asks: a1? -> user: yes " in lines[2]


# ------------------------------------------------------------------------------ info
def test_the_targets_stay_hidden_until_the_episode_ends(tiny: Catalog) -> None:
    """Guards against ``info["targets"]`` revealing the hidden target before the end: it is ``()``
    after reset and after a turn that does not end the episode, the target once it has."""
    env = make(tiny)
    _, info = env.reset(seed=0)
    assert info["targets"] == ()
    *_, info = env.step(ask(2))
    assert info["targets"] == ()
    *_, info = env.step(recommend([2]))
    assert info["targets"] == (2,)


# ------------------------------------------------------------------------------ the enumerated setting
def reset_to_category(env: ConversationEnv, category: int) -> None:
    """Reset `env` with the first seed whose enumerated opening names `category`."""
    for seed in range(100):
        env.reset(seed=seed)
        if env.state.history[0].asked == (category,):
            return
    raise AssertionError(f"no seed below 100 opens with category {category}")


def test_an_enumerated_ask_records_the_category_asked_not_its_aspects() -> None:
    """Guards against the turn record of an enumerated ask listing the category's fine aspects as
    what was asked: it records the category id, and the render names the category."""
    env = enumerated()
    env.render_mode = "ansi"
    reset_to_category(env, 0)
    env.step(ask(1))  # c1 = {2, 3}: target 2 has 3, not 2
    record = env.state.history[-1]
    assert record.asked == (1,) and record.accepted == (3,) and record.rejected == (2,)
    assert "agent asks: c1? -> user: a3" in env.render().splitlines()[1]


def test_re_asking_the_opening_category_gets_the_same_answer_again() -> None:
    """Guards against a repeated enumerated question leaving out the aspects accepted before: the user
    answers a category by the target's fine aspects under it, every time (+0.01 again)."""
    env = enumerated()
    reset_to_category(env, 0)  # c0 = {0, 1}: target 2 has both
    _, reward, *_, info = env.step(ask(0))
    assert info["answer"] == (0, 1) and info["rejected"] == ()
    assert reward == pytest.approx(R.ask_accepted)


def test_the_enumerated_setting_asks_one_category_per_question() -> None:
    """Guards against the enumerated setting taking the multiple-choice size of a question: its
    action lists one id (the category), like the binary setting."""
    env = enumerated()
    assert env.max_choices == 1 and env.action_space["aspects"].shape == (1,)


def test_too_many_ids_in_an_enumerated_ask_do_not_call_the_env_binary() -> None:
    """An enumerated env is not in the binary setting: refusing an ask of two ids must not say it is, nor
    tell the user that the multiple-choice setting would take several ids; it names the category entry.
    (The fault this caught: the hint followed ``max_choices == 1``, which the enumerated setting has.)"""
    env = enumerated()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="allows 1 per question") as raised:
        env.step(ask([0, 1]))
    assert "binary setting" not in str(raised.value) and "multiple_choice" not in str(raised.value)
    assert str(raised.value).endswith("asks one category per question, in the category entry)")


def test_a_multiple_choice_env_of_one_choice_is_not_told_to_become_one(tiny: Catalog) -> None:
    """A multiple-choice env made with ``max_choices=1`` refuses two ids without the binary setting's
    hint, which would tell it to switch to the setting it is in."""
    env = make(tiny, setting="multiple_choice", max_choices=1)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"allows 1 per question$"):
        env.step(ask([0, 1]))


def test_a_negative_category_is_refused_not_read_from_the_end() -> None:
    """Guards against the category range check missing its lower bound: category -1 would ask the
    last category; it is an invalid action that changes nothing."""
    env = enumerated()
    env.reset(seed=0)
    history, asked = list(env.state.history), env.state.asked_categories.copy()
    with pytest.raises(InvalidActionError, match=r"category id in \[0, 2\), got -1"):
        env.step(ask(0) | {"category": -1})
    assert env.state.history == history and (env.state.asked_categories == asked).all()


# ------------------------------------------------------------------------------ the multiple-choice setting
def test_the_union_rule_keeps_the_candidates_when_every_listed_aspect_is_rejected(tiny: Catalog) -> None:
    """Guards against the union rule (``candidate_rule="any"``) filtering by an empty answer, which
    would leave no item: rejected aspects are recorded, the candidates stay as they were."""
    env = make(tiny, setting="multiple_choice", candidate_rule="any")
    env.reset(seed=0)
    before = env.state.candidate_items().tolist()
    _, reward, terminated, _, info = env.step(ask([2]))  # target 2 lacks aspect 2
    assert info["answer"] == () and info["rejected"] == (2,)
    assert env.state.candidate_items().tolist() == before and not terminated
    assert reward == pytest.approx(R.ask_rejected)


def test_a_probe_under_the_union_rule_keeps_the_items_of_any_accepted_aspect(tiny: Catalog) -> None:
    """A probe is answered like an ask: target 2 has 1 and 3, not 2; under the union rule the
    candidates become items(1) ∪ items(3) = {0, 2, 3, 4, 5} from every item."""
    env = make(tiny, setting="multiple_choice", candidate_rule="any")
    env.reset(seed=0)
    env.state.candidates[:] = True
    *_, info = env.step(probe(3, [2, 3, 1]))
    assert info["kind"] == "probe" and info["answer"] == (1, 3) and info["rejected"] == (2,)
    assert env.state.candidate_items().tolist() == [0, 2, 3, 4, 5]


def test_one_choice_and_one_persona_slot_are_valid_sizes(tiny: Catalog) -> None:
    """Guards against an off-by-one in the lower bounds of ``max_choices`` and ``n_personas``: one
    aspect per question and one persona slot are valid; zero of either is refused."""
    env = make(tiny, setting="multiple_choice", max_choices=1, n_personas=1)
    env.reset(seed=0)
    *_, info = env.step(probe(0, [3]))
    assert info["answer"] == (3,) and env.state.history[-1].persona == 0
    with pytest.raises(InvalidActionError, match="allows 1 per question"):
        env.step(ask([1, 3]))
    for arguments in ({"max_choices": 0}, {"n_personas": 0}):
        with pytest.raises(CRSError, match=r"must be an integer >= 1"):
            make(tiny, setting="multiple_choice", **arguments)


# ------------------------------------------------------------------------------ rewards
def test_an_env_pays_the_reward_table_it_is_given(tiny: Catalog) -> None:
    """Guards against the env ignoring its ``rewards`` argument: each entry of a custom table is paid
    (ask accepted, ask rejected, failed slate plus the quit penalty at the limit, success)."""
    table = Rewards(
        recommend_success=2.0,
        recommend_fail=-0.25,
        ask_accepted=0.5,
        ask_rejected=-0.75,
        quit_at_limit=-1.5,
        no_candidates=-3.0,
    )
    env = make(tiny, rewards=table, max_turns=4)
    env.reset(seed=0)
    rewards = [env.step(ask(3))[1], env.step(ask(2))[1], env.step(recommend([0]))[1]]
    assert rewards == pytest.approx([0.5, -0.75, -0.25 - 1.5])
    env.reset(seed=0)
    assert env.step(recommend([2]))[1] == pytest.approx(2.0)


# ------------------------------------------------------------------------------ slates
def test_a_failed_full_slate_removes_every_one_of_its_items(tiny: Catalog) -> None:
    """Guards against a failed slate removing only some of its items: with 10 extra items having
    aspect 0, a slate of 10 non-targets leaves exactly those 10 out of the candidates."""
    catalog = tiny_catalog(n_extra_items=10)  # items 6..15 have aspect 0 only
    env = make(catalog)
    env.reset(seed=0)
    env.state.candidates[:] = True
    slate = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6]
    *_, info = env.step(recommend(slate))
    assert not info["success"] and info["n_candidates"] == 16 - 10
    assert env.state.candidate_items().tolist() == [0, 1, 2, 3, 4, 5]
    assert np.flatnonzero(env.state.rejected_items).tolist() == sorted(slate)


# ------------------------------------------------------------------------------ goal order
def test_a_goal_index_option_is_honoured_in_sequential_order() -> None:
    """Guards against ``reset(options={"goal_index": i})`` being read only in random order: a
    sequential env also runs goal i."""
    catalog = tiny_catalog()
    goals = PairGoals(catalog, "test", interactions=Interactions(users=np.zeros(6), items=np.arange(6)))
    env = ConversationEnv(catalog, SingleTargetUser(catalog), goals, episode_order="sequential")
    for index in (4, 1, 4):
        _, info = env.reset(seed=0, options={"goal_index": index})
        assert info["goal_index"] == index and env.user.targets == (index,)


# ------------------------------------------------------------------------------ invalid actions
@pytest.mark.parametrize(
    ("action", "message"),
    [
        (ask(4), r"unknown aspect id\(s\) \[4\]; aspect ids lie in \[0, 4\)"),
        (ask(-2), r"unknown aspect id\(s\) \[-2\]"),
        (recommend([6]), r"unknown item id\(s\) \[6\]; item ids lie in \[0, 6\)"),
        (recommend([1, -3]), r"unknown item id\(s\) \[-3\]"),
        ({"kind": 0, "aspects": [-1]}, r"^ask needs at least one aspect id"),
        (ask([1, 3]), r"allows 1 per question \(binary setting allows 1; .*setting='multiple_choice'"),
    ],
)
def test_invalid_ids_are_refused_naming_the_id_and_the_range(
    tiny: Catalog, action: object, message: str
) -> None:
    """Guards against off-by-ones in the id ranges (the first id past the end), ids below -1 read as
    padding, and error messages naming the wrong range, question word or setting hint."""
    env = make(tiny)
    env.reset(seed=0)
    history = list(env.state.history)
    with pytest.raises(InvalidActionError, match=message):
        env.step(action)  # type: ignore[arg-type]
    assert env.state.history == history and env.state.turn == 1


def test_an_empty_probe_names_the_probe_and_no_binary_hint(tiny: Catalog) -> None:
    """Guards against the question word or the binary setting's hint in the multiple-choice setting's
    messages: an empty probe says "probe needs", too many aspects give no binary hint."""
    env = make(tiny, setting="multiple_choice", max_choices=2)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"^probe needs at least one aspect id"):
        env.step(probe(0, []))
    with pytest.raises(InvalidActionError, match=r"allows 2 per question$"):
        env.step(ask([0, 1, 3]))


# ------------------------------------------------------------------------------ the state
def test_a_new_dialogue_state_counts_no_agent_action(tiny: Catalog) -> None:
    """Guards against ``agent_actions`` going negative before the opening turn (turn 0)."""
    state = DialogueState(tiny, user=0)
    assert state.turn == 0 and state.agent_actions == 0
    state.turn = 3
    assert state.agent_actions == 2


def test_the_observation_counts_the_candidates_the_opening_leaves(tiny: Catalog) -> None:
    """Guards against ``obs["n_candidates"]`` counting every item after reset: it counts the items
    having the stated aspect, as ``info`` does, and follows each turn."""
    env = make(tiny)
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        opening = info["answer"][0]
        having = [i for i in range(6) if opening in tiny.aspects_of(i)]
        assert obs["n_candidates"].tolist() == [len(having)] == [info["n_candidates"]]
        obs, *_, info = env.step(recommend([i for i in having if i != 2][:1]))
        assert obs["n_candidates"].tolist() == [len(having) - 1] == [info["n_candidates"]]


def test_a_rejected_slate_that_stays_a_candidate_still_reaches_the_rankers_facts() -> None:
    """Guards against the facts listing only rejected items that left the candidates: under MCMIPL's
    rule a failed slate stays when at most ``slate_size`` candidates are left, yet it was rejected."""
    env = tiny_mcmipl([[0, 5]])  # targets 0 and 5 share aspect 0: candidates items(0) = {0, 1, 2, 5}
    env.reset(seed=0)
    *_, info = env.step(recommend([1, 2]))
    assert not info["success"] and info["n_candidates"] == 4  # 4 <= 10: the slate stays
    assert env.state.candidates[[1, 2]].all()
    assert env.state.facts().rejected_items.tolist() == [1, 2]


def test_only_a_probe_records_a_persona(tiny: Catalog) -> None:
    """Guards against an ask keeping the persona entry it does not read: its record has no persona,
    a probe's has the slot it named."""
    env = make(tiny, setting="multiple_choice")
    env.reset(seed=0)
    env.step(ask([2, 3]) | {"persona": 3})
    env.step(probe(1, [2, 3]))
    assert [record.persona for record in env.state.history] == [None, None, 1]


def test_the_opening_record_counts_the_candidates_it_leaves(tiny: Catalog) -> None:
    """Guards against the opening's turn record (shown in renders and transcripts) counting every item:
    it counts the items having the stated aspect."""
    env = make(tiny, render_mode="ansi")
    _, info = env.reset(seed=0)
    having = sum(info["answer"][0] in tiny.aspects_of(i) for i in range(6))
    assert env.state.history[0].n_candidates == having < 6
    assert env.render().endswith(f"[{having} candidates]\n")


def test_empty_reset_options_draw_the_goal_as_no_options_do() -> None:
    """Guards against ``options={}`` picking goal 0: without a ``goal_index`` the goal is drawn as with
    ``options=None``, in both episode orders."""
    catalog = tiny_catalog()
    goals = PairGoals(catalog, "test", interactions=Interactions(users=np.zeros(6), items=np.arange(6)))
    for order in ("random", "sequential"):
        env = ConversationEnv(catalog, SingleTargetUser(catalog), goals, episode_order=order)  # type: ignore[arg-type]
        drawn = [env.reset(seed=seed)[1]["goal_index"] for seed in range(8)]
        assert len(set(drawn)) > 1  # the draws are not all goal 0
        assert [env.reset(seed=seed, options={})[1]["goal_index"] for seed in range(8)] == drawn
