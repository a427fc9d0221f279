"""`crs.explain` and the report's persona analysis checked where a mutation audit found no test: the
words of an explanation (how many asked-for aspects are shown, aspect 0, one user, the JSON record), the
(persona, aspect) pair a source gives, the persona's label, and the ground-truth comparison. Every
expected value is worked out by hand or by an independent rule here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from crs.explain import Explainer, Explanation, explanation_pairs
from simulators.catalog import Catalog
from simulators.persona_world import make_persona_world


@pytest.fixture(scope="module")
def world() -> Catalog:
    """The persona world with 3 personas per user (as `tests/crs/test_explain.py` uses)."""
    return make_persona_world(personas_per_user=3)


def test_the_chat_shows_three_asked_aspects_and_counts_the_rest(world: Catalog) -> None:
    """Guards against showing a fourth asked-for aspect, or dropping the "+1" of a single one not shown."""
    names = world.aspect_names
    five = Explanation(0, None, "", -1, "fallback", matched=(4, 3, 2, 1, 0))
    assert five.text(world) == f"has {names[4]}, {names[3]} & {names[2]} (+2 more), as you asked"
    four = Explanation(0, None, "", -1, "fallback", matched=(4, 3, 2, 1))
    assert four.text(world) == f"has {names[4]}, {names[3]} & {names[2]} (+1 more), as you asked"
    two = Explanation(0, None, "", -1, "fallback", matched=(5, 1))
    assert two.text(world) == f"has {names[5]} & {names[1]}, as you asked"


def test_aspect_zero_is_a_persona_reason_in_the_chat_and_the_report(world: Catalog) -> None:
    """Guards against testing the persona's aspect for > 0 (aspect 0 is a valid id; -1 means none)."""
    why = Explanation(0, 1, "calm & steady", 0, "ranker")
    assert why.text(world) == f"for your calm & steady side, because of {world.aspect_names[0]}"
    expected = (
        f'"{world.item_names[0]}": your persona 1 (calm & steady), because of "{world.aspect_names[0]}"'
    )
    assert why.report_text(world) == expected
    none = Explanation(0, 1, "calm & steady", -1, "ranker")
    assert none.text(world) == "for your calm & steady side"
    assert none.report_text(world).endswith("(calm & steady), no aspect")


def test_popularity_words_agree_with_the_number_of_users(world: Catalog) -> None:
    """Guards against "1 user has" for an item nobody has in their history."""
    for users, words in ((0, "0 users have"), (1, "1 user has"), (2, "2 users have")):
        text = Explanation(0, None, "", -1, "popularity", popularity=users).text(world)
        assert text == f"ranked by popularity: {words} it in their history"


def test_the_transcript_records_no_label_as_null(world: Catalog) -> None:
    """Guards against recording an empty persona label as "" instead of null in the transcript."""
    record = Explanation(0, None, "", -1, "popularity", popularity=3).to_json(world)
    assert record["persona_label"] is None and record["persona"] is None and record["aspect_name"] is None
    labelled = Explanation(0, 2, "jazz", 0, "policy").to_json(world)
    assert labelled["persona_label"] == "jazz" and labelled["aspect_name"] == world.aspect_names[0]


class OverExplainer:
    """Not the thing under test: a ranker that explains one item more than it is asked about."""

    def explain(self, facts: Any, items: np.ndarray) -> list[tuple[int, int]]:
        return [(0, -1)] * (len(items) + 1)


def test_a_source_explaining_more_items_than_asked_is_refused() -> None:
    """Guards against a count check that only refuses too few pairs: extra pairs would pair items with
    explanations meant for others."""
    from crs.explain import ExplanationError

    with pytest.raises(ExplanationError, match="returned 4 pairs for 3 items"):
        explanation_pairs(OverExplainer(), None, [4, 5, 6], "ranker")


class FixedSignature:
    """Not the thing under test: a signature source that names one aspect whatever it is offered."""

    def __init__(self, aspect: int) -> None:
        self.aspect = aspect

    def signature_aspects(self, user: int, k: int, n: int, candidates: np.ndarray) -> np.ndarray:
        return np.array([self.aspect], dtype=np.int64)


def test_a_reason_the_dialogue_did_not_settle_is_kept_even_off_the_item(world: Catalog) -> None:
    """Only an aspect of the item the dialogue settled is replaced: the source's aspect that the item
    lacks (and the person never answered about) is its reason as given (guards against replacing every
    aspect that is not among the item's unsettled ones)."""
    from crs.explain import persona_reason
    from envs.ranker import DialogueFacts

    item = next(i for i in range(world.n_items) if world.aspects_of(i).size >= 3)
    own = world.aspects_of(item)
    foreign = next(a for a in range(world.n_aspects) if a not in set(own.tolist()))
    facts = DialogueFacts(
        0, np.array([int(own[0])]), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    )
    assert persona_reason(world, FixedSignature(int(own[1])), facts, item, 0, foreign) == foreign
    assert persona_reason(world, FixedSignature(int(own[1])), facts, item, 0, int(own[0])) == int(own[1])


class PersonaPolicy:
    """Not the thing under test: a policy that explains every item by persona 1 and aspect -1, and
    labels any persona by aspects 0 and 1."""

    def explain(self, env: Any, items: np.ndarray) -> list[tuple[int, int]]:
        return [(1, -1)] * len(items)

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        return np.array([0, 1], dtype=np.int64)[:m]


def test_an_explanation_says_which_part_of_its_sides_name_was_turned_down(world: Catalog) -> None:
    """A side keeps its name for the conversation, so after a "no" to one of the aspects naming it the
    words say so ("without X, as you answered") instead of recommending "for your X & Y side" as if the
    answer had not been heard (a walkthrough counted 34 of 92 explanations contradicting an answer)."""
    env = _started_env(world)
    names = world.aspect_names
    turned_down = next(a for a in (0, 1) if not env.state.accepted[a])
    items = [int(i) for i in env.state.candidate_items()[:3]]
    explainer = Explainer(world, PersonaPolicy(), None)
    assert all(e.declined == () for e in explainer.explain(env, items))
    env.state.rejected[turned_down] = True
    explanations = explainer.explain(env, items)
    assert all(e.declined == (turned_down,) for e in explanations)
    side = f"for your {names[0]} & {names[1]} side (without {names[turned_down]}, as you answered)"
    assert side in explanations[0].text(world)
    record = explanations[0].to_json(world)
    assert record["declined"] == [turned_down] and record["declined_names"] == [names[turned_down]]
    # both turned down: not "for your X & Y side (without X & Y)", which contradicted itself
    env.state.rejected[[0, 1]] = True
    env.state.accepted[[0, 1]] = False
    (every,) = explainer.explain(env, items[:1])
    assert every.declined == (0, 1)
    usual = f"for the side of you that is usually {names[0]} & {names[1]} (not today, as you answered)"
    assert usual in every.text(world) and "without" not in every.text(world)


class IdScoringRanker:
    """Not the thing under test: a ranker (no personas, no `has_preferences`) scoring an aspect by its id."""

    def aspect_scores(self, facts: Any, aspects: np.ndarray) -> np.ndarray:
        return np.asarray(aspects, dtype=np.float64)


def _started_env(world: Catalog) -> Any:
    from envs.registry import make_env

    env = make_env(catalog=world, split="test", user_kwargs={"noise": 0.0})
    env.reset(seed=0, options={"goal_index": 0})
    return env


def test_the_policys_persona_comes_before_the_rankers(world: Catalog) -> None:
    """Guards against asking the ranker first when both explain: the policy chose the slate, so its
    (persona, aspect) pair is the one shown."""
    from tests.crs.test_chat import random_persona_ranker

    env = _started_env(world)
    items = [int(i) for i in env.state.candidate_items()[:3]]
    explanations = Explainer(world, PersonaPolicy(), random_persona_ranker(world, personas=2)).explain(
        env, items
    )
    assert [(e.source, e.persona) for e in explanations] == [("policy", 1)] * 3
    label = f"{world.aspect_names[0]} & {world.aspect_names[1]}"
    assert all(e.persona_label == label for e in explanations)


def test_a_ranker_that_does_not_say_it_lacks_preferences_explains_by_your_taste(world: Catalog) -> None:
    """Guards against assuming a ranker without a `has_preferences` flag has none (its reason would
    claim the aspect is common among the items left) and against naming the lowest-scored aspect: the
    reason is the item's highest-id unsettled aspect, "close to your taste"."""
    env = _started_env(world)
    items = [int(i) for i in env.state.candidate_items()[:3]]
    facts = env.state.facts()
    settled = set(facts.accepted.tolist()) | set(facts.rejected.tolist())
    for why in Explainer(world, None, IdScoringRanker()).explain(env, items):
        free = [int(a) for a in world.aspects_of(why.item) if int(a) not in settled]
        assert why.source == "fallback" and why.aspect == max(free)
        assert why.text(world).endswith(f"also {world.aspect_names[max(free)]}, close to your taste")


class CountingSignature:
    """Not the thing under test: a signature source naming new aspects on every call (2n, 2n + 1 on
    the n-th call), or none at all when `silent`."""

    def __init__(self, silent: bool = False) -> None:
        self.calls = 0
        self.silent = silent

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        first = 2 * self.calls
        self.calls += 1
        return np.zeros(0, dtype=np.int64) if self.silent else np.arange(first, first + m, dtype=np.int64)


def test_a_personas_label_is_kept_for_the_conversation_per_slot(world: Catalog) -> None:
    """Guards against relabelling a persona on every turn (its name would change mid-conversation) and
    against one label for all the user's personas."""
    from envs.ranker import DialogueFacts

    names = world.aspect_names
    empty = np.zeros(0, dtype=np.int64)
    explainer = Explainer(world, CountingSignature(), None)
    facts = DialogueFacts(0, empty, empty, empty)
    first = explainer.persona_label(facts, 0)
    assert first == f"{names[0]} & {names[1]}"
    assert explainer.persona_label(DialogueFacts(0, np.array([5]), empty, empty), 0) == first
    assert explainer.persona_label(facts, 1) == f"{names[2]} & {names[3]}"


def test_a_persona_without_signature_aspects_is_named_by_what_was_accepted(world: Catalog) -> None:
    """Guards against naming it by the rejected aspects: the first two accepted name it, else "own"."""
    from envs.ranker import DialogueFacts

    names = world.aspect_names
    empty = np.zeros(0, dtype=np.int64)
    explainer = Explainer(world, CountingSignature(silent=True), None)
    facts = DialogueFacts(0, np.array([7, 3, 9]), np.array([1, 2]), empty)
    assert explainer.persona_label(facts, 0) == f"{names[7]} & {names[3]}"
    assert explainer.persona_label(DialogueFacts(0, empty, np.array([1]), empty), 1) == "own"


# --- the report's persona analysis (crs/report/persona.py) ---


def _two_item_ranker(mixture: tuple[float, float] = (1.0, 0.0)) -> Any:
    """One user with one persona (2, 0) drawing on prototype `mixture`; items e0 and e1 each have only
    aspect e0, resp. e1 (aspect i in group i), prototypes (2, 0) and (0, 2)."""
    import scipy.sparse as sp

    from policies.pretrain.ranker import PersonaRanker

    weights = {
        "user": np.zeros((1, 2)),
        "item": np.eye(2),
        "aspect": np.eye(2),
        "personas": np.array([[[2.0, 0.0]]]),
        "log_prior": np.zeros((1, 1)),
        "mixtures": np.array([[mixture]]),
        "prototypes": np.array([[2.0, 0.0], [0.0, 2.0]]),
        "shared": np.zeros(2),
    }
    return PersonaRanker(weights, sp.csr_matrix(np.eye(2)), "attention")


def test_the_heatmap_explains_the_users_best_items_under_their_prototype() -> None:
    """Guards against explaining the user's worst-scored items, and against filing an explanation under
    the persona's slot instead of the shared prototype it draws on. Persona (2, 0) scores item e0 (2) over
    e1 (0): its top item is item 0, explained by aspect 0 (group 0)."""
    from crs.report.persona import persona_heatmap

    pairs = np.array([[0, 0, 0]])
    groups = np.array([0, 1])
    assert persona_heatmap(_two_item_ranker(), pairs, groups, 2, top=1).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    drawn = persona_heatmap(_two_item_ranker((0.0, 1.0)), pairs, groups, 2)
    assert drawn[0].tolist() == [0.0, 0.0] and drawn[1].sum() == pytest.approx(1.0)


def test_agreement_counts_more_true_personas_than_model_labels() -> None:
    """Guards against sizing the confusion matrix by the model's labels alone: three true personas
    against two model labels agree at best on 4 of 6 (0 -> 0 and 1 -> 1), and shuffling cannot beat it."""
    from crs.report.persona import truth_agreement

    labels, truth = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 2, 1, 1, 2])
    score, chance = truth_agreement(labels, truth, np.random.default_rng(0))
    assert score.mean == pytest.approx(4 / 6) and chance <= 4 / 6 + 1e-12


def test_the_pairs_analysed_are_distinct_first_seen_and_an_unbiased_sample() -> None:
    """Guards against a repeated (user, target) keeping its last goal instead of its first, a conversation
    without a target counted, and against
    keeping the first pairs over the limit (those of the first run only) instead of a random sample."""
    from types import SimpleNamespace

    from crs.report.persona import analysis_pairs

    def rec(user: int, target: int, goal: int) -> Any:
        return SimpleNamespace(user=user, targets=(target,), goal_index=goal)

    untargeted = SimpleNamespace(user=8, targets=(), goal_index=8)
    runs = [SimpleNamespace(records=[rec(0, 1, 5), rec(2, 3, 6), untargeted, rec(0, 1, 9), rec(4, 5, 7)])]
    assert analysis_pairs(runs, np.random.default_rng(0)).tolist() == [[0, 1, 5], [2, 3, 6], [4, 5, 7]]
    many = [SimpleNamespace(records=[rec(u, u, u) for u in range(r * 50, r * 50 + 50)]) for r in range(2)]
    sample = analysis_pairs(many, np.random.default_rng(0), limit=20)
    users = sample[:, 0].tolist()
    assert len(set(users)) == 20 and users == sorted(users)
    assert any(u >= 50 for u in users)  # P(all 20 from the first run) = C(50,20)/C(100,20) < 1e-7


def _best_matched_share(model: np.ndarray, true: np.ndarray) -> float:
    """Brute force: the largest share of positions where a one-to-one renaming of the model's labels
    (two labels, so: kept or swapped) equals the true label."""
    kept = float(np.mean(model == true))
    swapped = float(np.mean((1 - model) == true))
    return max(kept, swapped)


def test_the_agreement_interval_is_the_95_percent_bootstrap_interval() -> None:
    """Guards against a narrower interval than the 95% one the report states: 200 resamples of the pairs
    (drawn as the analysis draws them), cut at the 2.5th and 97.5th percentiles."""
    from crs.report.persona import truth_agreement

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=40)
    truth = np.where(rng.random(40) < 0.7, labels, 1 - labels)
    score, _ = truth_agreement(labels, truth, np.random.default_rng(0))
    draws = np.random.default_rng(0)
    resampled = []
    for _ in range(200):
        idx = draws.integers(0, labels.size, size=labels.size)
        resampled.append(_best_matched_share(labels[idx], truth[idx]))
    assert score.mean == pytest.approx(_best_matched_share(labels, truth))
    assert (score.low, score.high) == pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))


def test_chance_agreement_shuffles_the_model_labels() -> None:
    """Guards against a "chance" that scores the model's own labels: 20 + 20 labels that agree fully with
    the truth agree far less once shuffled (a shuffled half-half labelling matches ~60%, hardly ever 90%)."""
    from crs.report.persona import truth_agreement

    labels = np.repeat([0, 1], 20)
    score, chance = truth_agreement(labels, 1 - labels, np.random.default_rng(0))
    assert score.mean == 1.0 and 0.5 <= chance < 0.9


def test_an_item_with_one_aspect_is_skipped_by_the_aspect_deletion_test() -> None:
    """Guards against testing items with a single aspect (there is no other aspect to remove at random):
    a ranker whose every item has one aspect has no aspect deletion test at all."""
    from crs.report.persona import aspect_deletion

    assert (
        aspect_deletion(_two_item_ranker(), np.array([[0, 0, 0], [0, 1, 1]]), np.random.default_rng(0))
        is None
    )


class TruthSplit:
    """Not the thing under test: a split's interactions with the persona that produced each one."""

    def __init__(self, users: list[int], personas: list[int]) -> None:
        self.users, self.personas = np.array(users), np.array(personas)

    def __len__(self) -> int:
        return len(self.users)


def _four_user_ranker() -> Any:
    """Four users with one persona (2, 0) each, two items e0 and e1 with aspect e0 resp. e1: users 0 and 1
    draw on prototype 1, users 2 and 3 on prototype 0."""
    import scipy.sparse as sp

    from policies.pretrain.ranker import PersonaRanker

    mixtures = np.array([[[0.0, 1.0]], [[0.0, 1.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    weights = {
        "user": np.zeros((4, 2)),
        "item": np.eye(2),
        "aspect": np.eye(2),
        "personas": np.tile([[[2.0, 0.0]]], (4, 1, 1)),
        "log_prior": np.zeros((4, 1)),
        "mixtures": mixtures,
        "prototypes": np.array([[2.0, 0.0], [0.0, 2.0]]),
        "shared": np.zeros(2),
    }
    return PersonaRanker(weights, sp.csr_matrix(np.eye(2)), "attention")


def _truth_analysis(goals: list[tuple[int, int]], split_users: list[int], split_personas: list[int]) -> Any:
    """`analyse_personas` of `_four_user_ranker` on conversations (user, goal index), target item 0, of
    split "test" in a catalogue whose only split with true personas is "test"."""
    from types import SimpleNamespace

    from crs.report.persona import analyse_personas

    records = [SimpleNamespace(user=u, targets=(0,), goal_index=g) for u, g in goals]
    run = SimpleNamespace(records=records, split="test")
    truth = SimpleNamespace(aspect_group=np.array([0, 1]), group_names=("g0", "g1"))
    catalog = SimpleNamespace(
        name="tiny",
        aspect_names=["a0", "a1"],
        truth=truth,
        taxonomy=None,
        splits={"test": TruthSplit(split_users, split_personas), "train": None},
    )
    return analyse_personas(_four_user_ranker(), catalog, [run], "tiny ranker", "tiny")


def test_agreement_compares_each_pairs_prototype_with_its_interactions_true_persona() -> None:
    """Guards against comparing persona slots (all 0 here) instead of the prototypes they draw on, against
    usage counted by slot, against reading another split than the runs', and against miscounting the true
    personas. Users 0, 1 draw on prototype 1 and their interactions came from persona 0; users 2, 3 draw
    on prototype 0, persona 1: renamed, they agree fully."""
    analysis = _truth_analysis([(0, 0), (1, 1), (2, 2), (3, 3)], [0, 1, 2, 3], [0, 0, 1, 1])
    assert analysis.n_pairs == 4 and analysis.usage.tolist() == [0.5, 0.5]
    assert analysis.agreement is not None and analysis.agreement.mean == 1.0
    assert analysis.n_truth_personas == 2
    assert analysis.heatmap is not None and analysis.heatmap.sum(axis=1).tolist() == [1.0, 1.0]


def test_a_conversation_whose_goal_is_another_users_interaction_is_not_scored() -> None:
    """Guards against scoring a conversation against an interaction of another user (a stale goal index),
    and against scoring agreement on a single pair. Goals 2 and 3 belong to users 3 and 2 here: only users
    0 and 1 are scored (both prototype 1; their true personas 0 and 1 agree on one of two; with the other
    two, prototype 0 against persona 1 twice, it would be 3 of 4)."""
    analysis = _truth_analysis([(0, 0), (1, 1), (2, 2), (3, 3)], [0, 1, 3, 2], [0, 1, 1, 1])
    assert analysis.agreement is not None and analysis.agreement.mean == 0.5
    assert analysis.n_truth_personas == 2
    single = _truth_analysis([(0, 0), (2, 2), (3, 3)], [0, 1, 3, 2], [0, 0, 1, 1])
    assert single.agreement is None and single.n_truth_personas == 0
    assert any("too few conversations" in note for note in single.notes)


def _two_user_ranker(item_aspects: tuple[tuple[float, float], ...] = ((1.0, 1.0),)) -> Any:
    """Two users with one persona each, (2, 0) and (0, 2), each its own prototype; one item e0 with
    aspects e0 and e1 (as `item_aspects` gives)."""
    import scipy.sparse as sp

    from policies.pretrain.ranker import PersonaRanker

    personas = np.array([[[2.0, 0.0]], [[0.0, 2.0]]])
    weights = {
        "user": np.zeros((2, 2)),
        "item": np.array([[1.0, 0.0]]),
        "aspect": np.eye(2),
        "personas": personas,
        "log_prior": np.zeros((2, 1)),
        "mixtures": np.array([[[1.0, 0.0]], [[0.0, 1.0]]]),
        "prototypes": np.array([[2.0, 0.0], [0.0, 2.0]]),
        "shared": np.zeros(2),
    }
    return PersonaRanker(weights, sp.csr_matrix(np.array(item_aspects)), "attention")


def test_two_users_pairs_with_one_item_remove_one_aspect_at_a_time() -> None:
    """Guards against removing several aspects of one item in one edited ranker: user 0 explains the item
    by aspect 0 and user 1 by aspect 1, so in one round the item would lose both. Each drop must be that
    of the item without its one aspect."""
    from crs.report.persona import _score, aspect_deletion
    from envs.ranker import DialogueFacts

    ranker = _two_user_ranker()
    empty = np.zeros(0, dtype=np.int64)
    assert [ranker.explain(DialogueFacts(u, empty, empty, empty), np.array([0]))[0][1] for u in (0, 1)] == [
        0,
        1,
    ]
    without = {a: _two_user_ranker(((0.0, 1.0),) if a == 0 else ((1.0, 0.0),)) for a in (0, 1)}
    drop = {(u, a): _score(ranker, u, 0) - _score(without[a], u, 0) for u in (0, 1) for a in (0, 1)}
    result = aspect_deletion(ranker, np.array([[0, 0, 0], [1, 0, 1]]), np.random.default_rng(0))
    assert result is not None and result.n == 2
    assert result.drop_explained == pytest.approx((drop[0, 0] + drop[1, 1]) / 2)
    assert result.drop_random == pytest.approx((drop[0, 1] + drop[1, 0]) / 2)


def test_the_transcript_names_the_asked_aspects_in_the_order_asked(world: Catalog) -> None:
    """Guards against sorting the matched names: they follow the order the person accepted them."""
    record = Explanation(0, None, "", -1, "fallback", matched=(5, 1)).to_json(world)
    assert record["matched"] == [5, 1]
    assert record["matched_names"] == [world.aspect_names[5], world.aspect_names[1]]


def test_without_a_signature_source_a_persona_is_named_by_the_users_top_history_aspects(
    world: Catalog,
) -> None:
    """Guards against naming it by the user's least characteristic aspects: the two aspects of the
    user's pre-training history with the highest count x log((n_items + 1) / (items having it + 1))."""
    from envs.ranker import DialogueFacts

    split = world.split(world.pretrain_split)
    having = np.diff(world.aspect_items.indptr)
    counts: dict[int, int] = {}
    for item in split.items[split.users == 2]:
        for aspect in world.aspects_of(int(item)):
            counts[int(aspect)] = counts.get(int(aspect), 0) + 1
    score = {a: c * np.log((world.n_items + 1.0) / (having[a] + 1.0)) for a, c in counts.items()}
    top = sorted(score, key=lambda a: (-score[a], a))[:2]
    empty = np.zeros(0, dtype=np.int64)
    label = Explainer(world, None, None).persona_label(DialogueFacts(2, empty, empty, empty), 0)
    assert label == f"{world.aspect_names[top[0]]} & {world.aspect_names[top[1]]}"
