"""The rule baselines, UNICORN's metrics and the env registry, checked where a mutation audit found no
test: which aspect a rule asks and which values a typed question lists, the random rule's odds, seeding
and slates, abs-greedy's penalty worked out by hand, the last turn of a lookahead, SR@t at exactly t,
summaries that keep their seed and clusters, and `make_env`'s defaults that a caller's own arguments
replace.

Rules run on the tiny catalogue of tests/envs/conftest.py (item -> aspects 0:{0,1} 1:{0,2} 2:{0,1,3}
3:{1,2} 4:{2,3} 5:{0,3}) with a ranker of fixed scores, and a state set by hand, so that every action
can be worked out here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from envs import ConversationEnv, ask, recommend
from envs.metrics import EpisodeRecord, bootstrap_ci, per_episode_metrics, summarize
from envs.question_types import QuestionTypes
from envs.ranker import DialogueFacts
from envs.registry import make_env, resolve_user_and_setting
from policies.rules import RandomPolicy, make_rule_policy
from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.errors import CRSError
from simulators.goals import GroupGoals, PairGoals
from simulators.users import MCMIPLUser, SingleTargetUser
from tests.envs.conftest import TruthPersonaRanker, tiny_catalog
from tests.envs.test_mcmipl_env import target_groups


class FixedRanker:
    """A preference ranker whose item and aspect scores are fixed arrays, whatever the dialogue."""

    def __init__(self, items: list[float], aspects: list[float]) -> None:
        self.items = np.asarray(items, dtype=np.float64)
        self.aspects = np.asarray(aspects, dtype=np.float64)

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return self.items[items]

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return self.aspects[aspects]


FLAT_ITEMS = [0.0] * 6
SMALL_WORLD = {"n_users": 10, "n_items": 60, "interactions_per_user": 6}


def tiny_env(catalog: Catalog | None = None, **kwargs: object) -> ConversationEnv:
    """The tiny catalogue's binary env (user 0, target item 2), reset; `kwargs` go to the env."""
    catalog = catalog or tiny_catalog()
    env = ConversationEnv(catalog, SingleTargetUser(catalog), PairGoals(catalog, "test"), **kwargs)
    env.reset(seed=0)
    return env


def set_state(
    env: ConversationEnv,
    candidates: Sequence[int] = range(6),
    accepted: Sequence[int] = (),
    rejected_items: Sequence[int] = (),
) -> None:
    """Set the conversation's candidates, accepted aspects and rejected items; nothing else rejected."""
    state = env.state
    state.candidates[:] = False
    state.candidates[list(candidates)] = True
    state.accepted[:] = False
    state.accepted[list(accepted)] = True
    state.rejected[:] = False
    state.rejected_items[:] = False
    state.rejected_items[list(rejected_items)] = True


# ------------------------------------------------------------------------------------------- ask-N
def test_ask_n_asks_the_rankers_best_reachable_aspect_down_to_the_last_one() -> None:
    """Guards against asking the worst-scored aspect, and against giving up (recommending) while one
    aspect is still reachable. Scores a0 .1, a1 .9, a2 .5, a3 .3."""
    env = tiny_env()
    policy = make_rule_policy("ask-3", FixedRanker(FLAT_ITEMS, [0.1, 0.9, 0.5, 0.3]))
    set_state(env)
    assert policy.act(env) == ask(1)
    set_state(env, accepted=[1])
    assert policy.act(env) == ask(2)
    set_state(env, accepted=[1, 2, 3])  # a0 alone is left to ask
    assert env.state.reachable_aspects().tolist() == [0]
    assert policy.act(env) == ask(0)


def test_ask_0_is_always_recommend_and_ask_until_0_is_refused() -> None:
    """Guards against off-by-one bounds: ask-0 (no question, a slate every turn) is a valid rule;
    ask-until-0 would ask until no candidate is left, and is refused."""
    env = tiny_env(slate_size=2)
    policy = make_rule_policy("ask-0", FixedRanker([0.1, 0.6, 0.2, 0.5, 0.3, 0.4], [1.0] * 4))
    set_state(env)
    assert policy.name == "ask-0" and policy.act(env) == recommend([1, 3])
    with pytest.raises(CRSError, match="ask-until-K needs K >= 1, got 0"):
        make_rule_policy("ask-until-0", None)
    assert make_rule_policy("ask-until-1", None).name == "ask-until-1"


def test_an_enumerated_rule_asks_only_about_aspects_under_an_unasked_category() -> None:
    """Guards against keeping aspects whose every category was asked: c0 lists {a0, a1}, c1 {a2, a3},
    c2 {a2}; once c1 was asked, a3 is not askable (the user named its whole category), a2 still is
    (through c2), and ask-N asks c2 for a2 although it scores a3 highest."""
    members = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]], dtype=bool))
    catalog = tiny_catalog(Taxonomy(np.array([0, 0, 1, 1]), ("c0", "c1", "c2"), members))
    env = tiny_env(catalog, setting="enumerated")
    set_state(env)
    env.state.asked_categories[:] = [False, True, False]
    policy = make_rule_policy("ask-2", FixedRanker(FLAT_ITEMS, [0.1, 0.2, 0.5, 0.9]))
    assert policy.askable_aspects(env).tolist() == [0, 1, 2]
    assert policy.act(env) == ask(2)


# ------------------------------------------------------------------------------------ probe-K-ask-N
class HiddenPersonaRanker(TruthPersonaRanker):
    """The persona world's truth, but the personas in `hidden` have no signature aspect to list."""

    def __init__(self, catalog: Catalog, hidden: set[int]) -> None:
        super().__init__(catalog)
        self.hidden = hidden

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        if k in self.hidden:
            return np.zeros(0, dtype=np.int64)
        return super().signature_aspects(user, k, m, among)


def test_a_probe_names_the_most_likely_persona_that_has_something_to_list() -> None:
    """Guards against probing the most likely persona when its probe is empty: the rule probes the
    next most likely one instead, and asks when no persona has anything to list."""
    env = make_env("persona_world", world_kwargs=SMALL_WORLD, split="test")
    env.reset(seed=0)
    order = np.argsort(-TruthPersonaRanker(env.catalog).persona_posterior(env.state.facts()))
    top, second = int(order[0]), int(order[1])
    action = make_rule_policy("probe-1-ask-1", HiddenPersonaRanker(env.catalog, {top})).act(env)
    assert action["kind"] == 1 and action["persona"] == second and len(action["aspects"]) > 0
    everyone = set(range(env.n_personas))
    assert make_rule_policy("probe-1-ask-1", HiddenPersonaRanker(env.catalog, everyone)).act(env)["kind"] == 0


def test_a_probe_lists_no_more_values_than_the_env_takes() -> None:
    """Guards against a probe of the wrapper's full probe size (3) where the env takes 2 values per
    question: the env would refuse it."""
    env = make_env("persona_world", world_kwargs=SMALL_WORLD, split="test", max_choices=2)
    policy = make_rule_policy("probe-2-ask-0", TruthPersonaRanker(env.catalog))
    probes = 0
    for seed in range(5):
        env.reset(seed=seed)
        action = policy.act(env)
        assert action["kind"] == 1 and 1 <= len(action["aspects"]) <= 2
        probes += len(action["aspects"]) == 2
        env.step(action)  # accepted
    assert probes > 0


def test_a_probe_names_one_of_the_envs_persona_slots() -> None:
    """Guards against probing a persona beyond the env's slots: with 2 slots and a ranker of 4 personas
    the probe names persona 0 or 1 (user 0's posterior .11, .05, .30, .54 at seed 0 puts its most likely
    persona in slot 3), and the env takes it."""
    env = make_env("persona_world", world_kwargs=SMALL_WORLD, split="test", n_personas=2)
    ranker = TruthPersonaRanker(env.catalog)
    policy = make_rule_policy("probe-1-ask-0", ranker)
    beyond = 0
    for seed in range(5):
        env.reset(seed=seed)
        posterior = ranker.persona_posterior(env.state.facts())
        beyond += int(np.argmax(posterior)) >= 2
        action = policy.act(env)
        assert action["kind"] == 1 and action["persona"] in (0, 1)
        env.step(action)  # accepted
    assert beyond > 0


def test_an_unknown_rule_written_as_a_path_says_no_run_is_there_in_either_spelling() -> None:
    """Guards against the hint for a mistyped run folder only with "/": a Windows path ("runs\\a") names
    it too, and a plain unknown name does not."""
    for name in ("runs/a", "runs\\a"):
        with pytest.raises(CRSError, match="or a trained run's folder \\(none is there\\)"):
            make_rule_policy(name, None)
    with pytest.raises(CRSError) as info:
        make_rule_policy("ask-some", None)
    assert "trained run" not in str(info.value)


# ------------------------------------------------------------------------------------------ random
def test_random_asks_and_recommends_with_equal_odds() -> None:
    """Guards against other odds than one half: over 1,000 seeded turns with aspects to ask, the share
    of questions is within 4 standard errors (0.063) of 1/2."""
    env = tiny_env()
    set_state(env)
    policy = RandomPolicy()
    policy.reset(np.random.default_rng(0))
    asks = sum(policy.act(env)["kind"] == 0 for _ in range(1000))
    assert abs(asks / 1000 - 0.5) < 0.063


def test_random_replays_the_generator_it_is_reset_with() -> None:
    """Guards against `reset` ignoring its generator: evaluation seeds each conversation's policy, so a
    reset to the same seed must give the same action again, and other seeds other actions."""
    env = tiny_env(slate_size=2)
    set_state(env)
    policy = RandomPolicy()
    actions = []
    for seed in range(8):
        policy.reset(np.random.default_rng(seed))
        first = policy.act(env)
        policy.reset(np.random.default_rng(seed))
        assert policy.act(env) == first, seed
        actions.append(repr(first))
    assert len(set(actions)) > 2


def test_random_slates_list_distinct_candidates_and_all_of_them_when_fewer_than_the_slate() -> None:
    """Guards against drawing a slate with replacement (an item twice) and against drawing a full slate
    from fewer candidates: with no aspect left to ask it recommends every turn."""
    env = tiny_env(slate_size=4)
    set_state(env, accepted=[0, 1, 2, 3])  # nothing to ask: a slate every turn
    policy = RandomPolicy()
    policy.reset(np.random.default_rng(1))
    for _ in range(50):
        action = policy.act(env)
        assert action["kind"] == 2 and len(set(action["items"])) == len(action["items"]) == 4
    set_state(env, candidates=[1, 4], accepted=[0, 1, 2, 3])
    for _ in range(10):
        action = policy.act(env)
        assert action["kind"] == 2 and sorted(action["items"]) == [1, 4]


TYPES = QuestionTypes(of_aspect=np.array([0, 0, 0, 1]), names=("t0", "t1"))


def tiny_typed() -> ConversationEnv:
    """MCMIPL's typed multiple-choice env on the tiny catalogue (t0 = {a0, a1, a2}, t1 = {a3}), two
    values per question, slates of 2, reset."""
    catalog = tiny_catalog()
    goals = GroupGoals(catalog, "test", target_groups([[2]], users=[0]))
    env = ConversationEnv(
        catalog,
        MCMIPLUser(catalog),
        goals,
        setting="multiple_choice",
        candidate_rule="mcmipl",
        question_types=TYPES,
        max_choices=2,
        slate_size=2,
    )
    env.reset(seed=0)
    return env


def test_random_asks_typed_questions_without_a_ranker() -> None:
    """Guards against scoring a typed question's other values by a ranker the random rule does not
    have: its questions list two values of one type, drawn at random."""
    env = tiny_typed()
    set_state(env)
    policy = RandomPolicy()
    policy.reset(np.random.default_rng(0))
    listed = set()
    for _ in range(60):
        action = policy.act(env)
        if action["kind"] == 0 and TYPES.of_aspect[action["aspects"][0]] == 0:
            first, second = action["aspects"]
            assert TYPES.of_aspect[second] == 0 and second != first
            listed.add((first, second))
    assert len(listed) >= 4  # pairs of t0 drawn, not one fixed order


# ------------------------------------------------------------------------------------- max-entropy
def test_max_entropy_lists_the_next_best_split_not_the_rankers_favourite() -> None:
    """Guards against a typed question's second value picked by the ranker's aspect scores: with equal
    item scores, a0 splits the 6 candidates 4:2 and a1, a2, a3 3:3 (entropy 1 bit each); max-entropy
    asks a1 (ties: lower id) and lists a2, the even split of its type, although the ranker scores a0
    far above a2."""
    env = tiny_typed()
    set_state(env)
    policy = make_rule_policy("max-entropy", FixedRanker(FLAT_ITEMS, [0.9, 0.1, 0.2, 0.3]))
    assert policy.act(env) == ask([1, 2])


def test_max_entropy_recommends_when_nothing_is_left_to_ask_however_many_candidates() -> None:
    """Guards against asking (and failing on an empty choice) when no aspect is reachable although more
    than a slate of candidates is left: it recommends the ranker's best."""
    env = tiny_env(slate_size=2)
    set_state(env, accepted=[0, 1, 2, 3])
    policy = make_rule_policy("max-entropy", FixedRanker([0.1, 0.6, 0.2, 0.5, 0.3, 0.4], [1.0] * 4))
    assert policy.act(env) == recommend([1, 3])


# -------------------------------------------------------------------------------------- abs-greedy
def test_abs_greedy_penalises_the_share_of_an_items_aspects_the_rejected_items_hold() -> None:
    """Guards against dropping either normalisation of abs-greedy's penalty: per item, the rejected
    items' mean aspect profile summed over its aspects, divided by its number of aspects, times the
    scores' standard deviation.

    Items 0 {a0, a1} and 1 {a0, a2} rejected: the profile is a0 1, a1 .5, a2 .5, a3 0. Candidates 2..5
    score .4, .3, .2, .8 (std .2278); their penalties are .2278 times 1.5/3, 1/2, .5/2 and 1/2, so the
    scores become .286, .186, .143, .686: the slate is 5, 2, 3, 4. Without the division by the number of
    aspects it would be 5, 4, 3, 2; without the mean over the rejected items 5, 2, 4, 3."""
    env = tiny_env(slate_size=4)
    set_state(env, candidates=[2, 3, 4, 5], rejected_items=[0, 1])
    policy = make_rule_policy("abs-greedy", FixedRanker([0.9, 0.9, 0.4, 0.3, 0.2, 0.8], [1.0] * 4))
    assert policy.act(env) == recommend([5, 2, 3, 4])


# --------------------------------------------------------------------------------------- lookahead
def test_lookahead_recommends_on_the_last_turn_and_at_a_slate_of_candidates() -> None:
    """The last turn is a slate (a question there leaves no turn to recommend), and so is a turn whose
    candidates all fit one slate, whatever the search would value."""
    env = tiny_env(slate_size=2, max_turns=5)
    ranker = FixedRanker([0.1, 0.6, 0.2, 0.5, 0.3, 0.4], [0.0] * 4)
    policy = make_rule_policy("lookahead-2", ranker)
    set_state(env)
    env.state.turn = env.max_turns - 1  # one turn left
    assert policy.act(env) == recommend([1, 3])
    env.state.turn = 2
    set_state(env, candidates=[0, 4])
    assert policy.act(env) == recommend([4, 0])


def test_lookahead_refuses_a_binary_env_with_another_candidate_rule() -> None:
    """Guards against planning where the search's model of the candidates is wrong: its answers follow
    UNICORN's rule (every accepted aspect), so a binary env keeping candidates by "any" is refused."""
    env = tiny_env(candidate_rule="any")
    policy = make_rule_policy("lookahead-2", FixedRanker(FLAT_ITEMS, [0.0] * 4))
    with pytest.raises(CRSError, match="lookahead-2 plans yes/no questions"):
        policy.check_env(env)
    with pytest.raises(CRSError, match="binary setting"):
        policy.act(env)


# ----------------------------------------------------------------------------------------- metrics
def record(success: bool, actions: int, rank: int | None = 1, user: int = 0) -> EpisodeRecord:
    return EpisodeRecord(0, user, (1,), success, actions, rank if success else None, 0.0)


def test_sr_at_t_counts_a_success_at_exactly_t_actions() -> None:
    """Guards against a strict comparison: SR@t is success *within* t agent actions, so successes at
    5, 10 and 15 actions count in SR@5, SR@10 and SR@15, and those at 6 and 11 only from the next t."""
    records = [record(True, n) for n in (5, 6, 10, 11, 15)] + [record(False, 14)]
    values = per_episode_metrics(records)
    assert values["SR@5"].tolist() == [1, 0, 0, 0, 0, 0]
    assert values["SR@10"].tolist() == [1, 1, 1, 0, 0, 0]
    assert values["SR@15"].tolist() == [1, 1, 1, 1, 1, 0]


def test_a_success_without_a_rank_counts_as_rank_1() -> None:
    """Guards against another default rank for a success recorded without one: hDCG of a first-action
    hit at rank 1 is 1/log2(3) + (1 - 1/log2(3)) / log2(2) = 1."""
    (value,) = per_episode_metrics([EpisodeRecord(0, 0, (1,), True, 1, None, 0.0)])["hDCG"]
    assert value == pytest.approx(1.0)


def test_summarize_draws_its_bootstrap_from_the_seed_it_is_given() -> None:
    """Guards against a summary that ignores its seed: SR@15's CI is the 2.5th and 97.5th percentiles
    of 1,000 resample means drawn by ``default_rng(seed).integers(0, n, (1000, n))``, by hand."""
    outcomes = [3, None, 7, None, None, 12, 2, None, 9, None, 4]
    records = [record(n is not None, n or 14) for n in outcomes]
    values = np.array([n is not None for n in outcomes], dtype=np.float64)
    for seed in (3, 11):
        idx = np.random.default_rng(seed).integers(0, values.size, size=(1000, values.size))
        low, high = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
        ci = summarize(records, seed=seed)["SR@15"]
        assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))


def test_summarize_resamples_whole_clusters_when_given_them() -> None:
    """Guards against `summarize` dropping its clusters: four identical sessions per user, clustered by
    user, give every metric the interval of the users' own values (a session bootstrap over the copies
    would be about half as wide)."""
    rng = np.random.default_rng(2)
    outcomes = [int(n) if n < 15 else None for n in rng.integers(1, 22, size=30)]
    users = [record(n is not None, n or 14, rank=1 + u % 3, user=u) for u, n in enumerate(outcomes)]
    sessions = [r for r in users for _ in range(4)]
    clustered = summarize(sessions, seed=4, clusters=[r.user for r in sessions])
    assert clustered == summarize(users, seed=4)
    assert summarize(sessions, seed=4) != clustered


def test_a_record_written_before_kinds_were_recorded_reads_with_no_kinds() -> None:
    """Guards against requiring the "kinds" key: episodes.jsonl files written before it was recorded
    read back with no kinds, every other field as written."""
    data = {"goal_index": 4, "user": 2, "targets": [7, 9], "success": True, "agent_actions": 3}
    data |= {"rank": 2, "total_reward": 0.5}
    assert EpisodeRecord.from_dict(data) == EpisodeRecord(4, 2, (7, 9), True, 3, 2, 0.5, ())


def test_an_empty_summary_is_nan_without_resampling_nothing() -> None:
    """Guards against resampling an empty set: a metric over no conversations is NaN, mean and bounds,
    without numpy's warnings of a mean of an empty slice on the user's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = bootstrap_ci(np.zeros(0))
        assert np.isnan([ci.mean, ci.low, ci.high]).all()
        assert all(np.isnan(s.mean) for s in summarize([]).values())


# ---------------------------------------------------------------------------------------- registry


def test_auto_resolves_the_user_and_setting_by_catalogue_and_named_setting() -> None:
    """Guards against MCMIPL's multi-interest user where a setting is named: on MCMIPL's release "auto"
    is its multi-interest user only when no setting or the multiple-choice one is named."""
    cases = {
        (None, False, False): ("single", "binary"),
        (None, False, True): ("multi", "multiple_choice"),
        ("binary", False, True): ("single", "binary"),
        ("multiple_choice", False, False): ("multi", "multiple_choice"),
        ("binary", True, True): ("persona", "binary"),
        (None, True, False): ("persona", "multiple_choice"),
    }
    for (setting, world, mcmipl), expected in cases.items():
        assert resolve_user_and_setting("auto", setting, world=world, mcmipl=mcmipl) == expected
    assert resolve_user_and_setting("single", None, world=True, mcmipl=True) == ("single", "binary")


@pytest.mark.parametrize("user", ["single", "persona", "multi"])
def test_goal_interactions_are_the_only_conversations_of_every_user_kind(user: str) -> None:
    """Guards against a user kind's goal sampler that ignores ``goal_interactions``: the env converses
    about those three interactions of the split only, in their order."""
    catalog = make_env("persona_world", world_kwargs=SMALL_WORLD).catalog
    test = catalog.split("test")
    chosen = [1, 4, 6]
    subset = Interactions(test.users[chosen], test.items[chosen], test.personas[chosen])
    env = make_env(catalog=catalog, split="test", user=user, goal_interactions=subset)
    rng = np.random.default_rng(0)
    goals = [env.goals.goal(index, rng) for index in range(env.goals.n_goals)]
    expected = [(int(test.users[i]), int(test.items[i])) for i in chosen]
    assert [(g.user, g.targets[0]) for g in goals] == expected


def test_the_multi_users_candidate_rule_is_a_default_the_caller_may_change() -> None:
    """Guards against overriding the caller: a multi-interest user keeps candidates by "any" accepted
    aspect unless ``candidate_rule`` says otherwise."""
    catalog = make_env("persona_world", world_kwargs=SMALL_WORLD).catalog
    assert make_env(catalog=catalog, user="multi").candidate_rule == "any"
    assert make_env(catalog=catalog, user="multi", candidate_rule="all").candidate_rule == "all"


@pytest.mark.real_data
def test_mcmipl_s_candidate_rule_is_a_default_the_caller_may_change(real_data_dir: Path) -> None:
    """Guards against overriding the caller on MCMIPL's release: its own candidate rule unless
    ``candidate_rule`` says otherwise (as its value count, `MCMIPL_MAX_CHOICES`, already is)."""
    assert make_env("mcmipl_lastfm_star", data_dir=real_data_dir).candidate_rule == "mcmipl"
    env = make_env("mcmipl_lastfm_star", data_dir=real_data_dir, candidate_rule="any")
    assert (env.candidate_rule, env.max_choices, env.question_types is not None) == ("any", 2, True)


@pytest.mark.real_data
def test_mcmipl_s_user_in_the_binary_setting_gets_no_typed_questions(real_data_dir: Path) -> None:
    """Guards against MCMIPL's multiple-choice rules (typed questions of 2 values, its candidate rule)
    given to its user in the binary setting, where a question asks one aspect: the multi-interest
    user's "any" rule then, untyped."""
    env = make_env("mcmipl_lastfm_star", data_dir=real_data_dir, user="multi", setting="binary")
    assert isinstance(env.user, MCMIPLUser) and env.setting == "binary"
    assert (env.candidate_rule, env.question_types, env.max_choices) == ("any", None, 1)


@pytest.mark.real_data
def test_mcmipl_s_groups_are_those_within_the_goal_interactions(real_data_dir: Path) -> None:
    """Guards against ignoring ``goal_interactions`` for MCMIPL's target groups: only the groups all of
    whose (user, item) targets are among them are conversations, and none is refused by name."""
    groups = make_env("mcmipl_lastfm_star", data_dir=real_data_dir, split="test").goals.groups
    chosen = [0, 1, 5]
    pairs = {(int(groups.users[g]), int(item)) for g in chosen for item in groups.targets(g)}
    users, items = zip(*sorted(pairs), strict=True)
    subset = Interactions(np.array(users), np.array(items))
    env = make_env("mcmipl_lastfm_star", data_dir=real_data_dir, split="test", goal_interactions=subset)
    within = [
        g for g in range(len(groups)) if {(int(groups.users[g]), int(i)) for i in groups.targets(g)} <= pairs
    ]
    assert set(chosen) <= set(within) and env.goals.n_goals == len(within) < len(groups)
    rng = np.random.default_rng(0)
    assert [env.goals.goal(g, rng).targets for g in range(env.goals.n_goals)] == [
        groups.targets(g) for g in within
    ]
    user = int(groups.users[0])
    held = {int(i) for g in range(len(groups)) if groups.users[g] == user for i in groups.targets(g)}
    other = next(i for i in range(env.catalog.n_items) if i not in held)
    with pytest.raises(
        CRSError, match="no test target group has all its targets among the 1 goal interactions"
    ):
        make_env(
            "mcmipl_lastfm_star",
            data_dir=real_data_dir,
            split="test",
            goal_interactions=Interactions(np.array([user]), np.array([other])),
        )
