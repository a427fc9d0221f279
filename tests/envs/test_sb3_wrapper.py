"""The SB3 wrapper: SB3's env checker passes, masks are exact, and actions mean what the slots say."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env

from envs import ConversationEnv, DialogueFacts, make_env
from envs.actions import ActionKind
from envs.question_types import QuestionTypes
from envs.sb3_features import ANSWER_FEATURES, FACT_COUNT_SCALE, REJECTED_ASPECTS_SCALE, column, write
from envs.sb3_slots import PROBE_POOL
from envs.sb3_wrapper import (
    FEATURE_NAMES,
    GLOBAL_FEATURES,
    PLAN_FEATURES,
    QUESTION_FEATURES,
    RANKER_DERIVED,
    SlateActionWrapper,
    WrapperConfig,
    WrapperError,
)
from policies.baseline_rankers import PopularityRanker
from policies.rankers import build_ranker
from policies.rules import LookaheadPolicy
from simulators.catalog import Catalog, Taxonomy
from simulators.datasets import load_catalog
from simulators.users import PersonaUser, SlateReaction
from tests.envs.conftest import TruthPersonaRanker, tiny_catalog

WORLD = {"n_users": 40, "n_items": 300, "n_groups": 4, "aspects_per_group": 5, "interactions_per_user": 12}


@pytest.fixture(scope="module")
def world() -> Catalog:
    return load_catalog("persona_world", **WORLD)


def wrapped(catalog: Catalog, ranker=None, **config) -> SlateActionWrapper:
    env = make_env(catalog=catalog, split="valid")
    return SlateActionWrapper(env, ranker or PopularityRanker(catalog), WrapperConfig(**config))


def test_sb3_env_checker_passes_with_and_without_probes(world: Catalog) -> None:
    plain = wrapped(world)
    assert plain.n_probes == 0 and "probe_feats" not in plain.observation_space.spaces
    check_env(plain, warn=False)
    with_probes = wrapped(world, TruthPersonaRanker(world))
    # K = 4 personas per user in this world: 10 question slots + 4 probes + recommend = 15 choices;
    # each of the 10 slate positions picks one of the n_items = 10 item slots
    assert with_probes.n_probes == world.truth.personas_per_user == 4
    assert with_probes.action_space.nvec.tolist() == [15] + [10] * 10
    check_env(with_probes, warn=False)


def test_masks_are_exact_and_never_all_false(world: Catalog) -> None:
    env = wrapped(world, TruthPersonaRanker(world))
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        mask = env.action_masks()
        # sum(nvec) entries: the choice mask, then the item mask once per slate slot
        assert mask.shape == (int(env.action_space.nvec.sum()),) and mask.dtype == np.bool_
        choice, items = mask[: env.n_choices], mask[env.n_choices :].reshape(env.slate_size, env.n_items)
        assert choice.any() and choice[env.recommend_choice]
        assert (items == items[0]).all()
        np.testing.assert_array_equal(choice, obs["choice_mask"] > 0.5)
        np.testing.assert_array_equal(items[0], obs["item_mask"] > 0.5)
        state = env.base.state
        # question slots: exactly the occupied ones, each a reachable aspect
        assert choice[: env.n_questions].sum() == env.question_ids.size
        assert set(env.question_ids.tolist()) <= set(state.reachable_aspects().tolist())
        # item slots: min(N, candidates), all of them candidates
        assert items[0].sum() == min(env.n_items, state.n_candidates)
        assert state.candidates[env.candidate_items].all()
        action = np.concatenate([[rng.choice(np.flatnonzero(choice))], rng.permutation(env.n_items)[:10]])
        obs, _, terminated, truncated, _ = env.step(action)
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            assert env.action_masks()[: env.n_choices].any()
            obs, _ = env.reset()


def test_item_slots_are_the_rankers_top_candidates_best_first(world: Catalog) -> None:
    env = wrapped(world)
    obs, _ = env.reset(seed=3)
    state = env.base.state
    candidates = state.candidate_items()
    popularity = env.ranker.item_popularity[candidates]
    # best first, ties by lower id: lexsort on (id, -score)
    expected = candidates[np.lexsort((candidates, -popularity))][: env.n_items]
    np.testing.assert_array_equal(env.candidate_items, expected)
    np.testing.assert_array_equal(obs["item_ids"][: expected.size].astype(np.int64), expected)
    assert obs["item_feats"][0, 1] == 0.0 and obs["item_feats"][1, 1] == pytest.approx(1 / env.n_items)


def test_without_ranker_features_only_the_ranker_derived_columns_are_zero(world: Catalog) -> None:
    shown = wrapped(world, TruthPersonaRanker(world))
    hidden = wrapped(world, TruthPersonaRanker(world), ranker_features=False)
    rng = np.random.default_rng(0)
    a, _ = shown.reset(seed=5)
    b, _ = hidden.reset(seed=5)
    derived_seen = 0.0
    for _ in range(40):
        for key in a:
            if key not in RANKER_DERIVED:
                np.testing.assert_array_equal(a[key], b[key])  # same state, same slots, same graph
                continue
            names = FEATURE_NAMES[key]
            columns = [names.index(name) for name in RANKER_DERIVED[key]]
            kept = [i for i in range(len(names)) if i not in columns]
            assert not b[key][..., columns].any()
            np.testing.assert_array_equal(a[key][..., kept], b[key][..., kept])
            derived_seen += float(np.abs(a[key][..., columns]).sum())
        action = np.concatenate(
            [[rng.choice(np.flatnonzero(shown.action_masks()[: shown.n_choices]))], rng.permutation(20)[:10]]
        )
        a, _, done, _, _ = shown.step(action)
        b, _, done_b, _, _ = hidden.step(action)
        assert done == done_b
        if done:
            a, _ = shown.reset()
            b, _ = hidden.reset()
    assert derived_seen > 0  # the default wrapper does show them


def test_choices_map_to_the_slot_contents(world: Catalog) -> None:
    env = wrapped(world, TruthPersonaRanker(world))
    env.reset(seed=1)
    base = env.base
    # a question slot asks exactly that aspect
    aspect = int(env.question_ids[2])
    env.step(np.array([2, *list(range(10))]))
    record = base.state.history[-1]
    assert record.kind == "ask" and record.asked == (aspect,)
    if base.done:
        env.reset(seed=1)
    # a probe slot asks persona k's signature aspects among the reachable ones
    k = next(k for k, aspects in enumerate(env._probes) if aspects.size)
    listed = tuple(int(a) for a in env._probes[k])
    env.step(np.array([env.n_questions + k, *list(range(10))]))
    record = base.state.history[-1]
    assert record.kind == "probe" and record.persona == k and record.asked == listed
    if base.done:
        env.reset(seed=1)
    # recommend: the slate is the candidate items at the chosen slots, in slot order
    items = env.candidate_items.copy()
    slots = [4, 0, 7, 1, 2, 3, 5, 6, 8, 9]
    env.step(np.array([env.recommend_choice, *slots]))
    record = base.state.history[-1]
    assert record.kind == "recommend" and record.slate == tuple(int(items[s]) for s in slots)


def test_short_candidate_lists_drop_masked_slots_from_the_slate() -> None:
    catalog = tiny_catalog()  # 6 items: the opening aspect leaves at most 4 candidates
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single"),
        PopularityRanker(catalog),
        WrapperConfig(n_items=10),
    )
    env.reset(seed=0)
    n = env.candidate_items.size
    assert 0 < n < env.slate_size
    assert env.action_masks()[env.n_choices : env.n_choices + env.n_items].sum() == n
    env.step(np.array([env.recommend_choice, *range(10)]))
    # slots >= n are padding: the slate holds the n candidates only
    assert env.base.state.history[-1].slate == tuple(int(i) for i in env.candidate_items) or env.base.done


def test_enumerated_env_offers_categories() -> None:
    taxonomy = Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1"))
    catalog = tiny_catalog(taxonomy=taxonomy, n_extra_items=30)
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single", setting="enumerated"),
        PopularityRanker(catalog),
        WrapperConfig(),
    )
    check_env(env, warn=False)
    seed = next(s for s in range(50) if env.reset(seed=s) and env.base.state.history[0].asked == (0,))
    env.reset(seed=seed)
    # the opening asked c0 (target 2 has 0 and 1): candidates {0, 2}; aspect 3 of item 2 keeps c1 open
    assert env.question_ids.tolist() == [1]
    env.step(np.array([0, *list(range(10))]))
    assert env.base.state.history[-1].asked == (1,) and env.base.state.asked_categories[1]


def test_bad_configuration_names_the_fix(world: Catalog) -> None:
    with pytest.raises(WrapperError, match="n_items >= 10"):
        wrapped(world, n_items=5)
    for switch in ("probes", "ranker_features"):  # "no" read as True, 0 as False
        for bad in ("no", 0):
            with pytest.raises(WrapperError, match=rf"WrapperConfig.{switch}={bad!r} must be of type bool"):
                WrapperConfig(**{switch: bad})


def test_a_ranker_of_another_catalogue_is_refused_naming_both(world: Catalog) -> None:
    """A ranker built for another dataset scored the wrong items without a word (bigger) or failed deep
    in a step with an IndexError (smaller): refused when the wrapper is built, naming the sizes."""
    tiny = tiny_catalog()
    env = make_env(catalog=world, split="valid")
    with pytest.raises(
        WrapperError, match=r"scores 6 items, not the 300 of 'persona_world'.*unwrapped.catalog"
    ):
        SlateActionWrapper(env, PopularityRanker(tiny))
    with pytest.raises(WrapperError, match=r"scores 40 users, not the 1 of .*300 items, not the 6 of "):
        SlateActionWrapper(make_env(catalog=tiny, split="valid"), build_ranker("uniform", world))
    SlateActionWrapper(env, build_ranker("uniform", world))  # its own catalogue's ranker is taken


def test_masks_before_reset_and_a_second_wrapper_are_refused(world: Catalog) -> None:
    """`action_masks()` before `reset()` said KeyError 'choice_mask'; a wrapper over a wrapper failed only
    at its first step."""
    env = wrapped(world)
    with pytest.raises(WrapperError, match=r"call reset\(\) before action_masks\(\)"):
        env.action_masks()
    with pytest.raises(WrapperError, match=r"a SlateActionWrapper already.*env.unwrapped"):
        SlateActionWrapper(gym.wrappers.RecordEpisodeStatistics(env), PopularityRanker(world))
    env.reset(seed=0)
    assert env.action_masks().shape == (sum(env.action_space.nvec),)


def feature(obs: dict[str, np.ndarray], key: str, name: str) -> np.ndarray:
    """The named feature's column of an observation block, shape block.shape[:-1]."""
    return obs[key][..., column(key, name)]


def holders(env: SlateActionWrapper, candidates: np.ndarray, aspect_sets: list[np.ndarray]) -> np.ndarray:
    """held[i, j] = candidate i holds an aspect of aspect_sets[j], computed from the catalogue; bool."""
    matrix = env.base.catalog.item_aspects[candidates].toarray().astype(bool)  # (n_c, A)
    return np.stack([matrix[:, aspects].any(axis=1) for aspects in aspect_sets], axis=1)


def question_aspects(env: SlateActionWrapper) -> list[np.ndarray]:
    """The aspects each question slot asks about: itself, or its category's members when enumerated."""
    taxonomy = env.base.catalog.taxonomy
    if not env.base.enumerated:
        return [np.array([q]) for q in env.question_ids.tolist()]
    assert taxonomy is not None
    return [np.flatnonzero(np.asarray(taxonomy.parent_of) == q) for q in env.question_ids.tolist()]


def ranker_weights(
    env: SlateActionWrapper, facts: DialogueFacts, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(z-scored ranker scores, their softmax) over the candidates, recomputed here; each (n_c,)."""
    scores = np.asarray(env.ranker.item_scores(facts, candidates), dtype=np.float64)
    std = scores.std()
    z = (scores - scores.mean()) / (std if std > 1e-9 else 1.0)
    weights = np.exp(z - z.max())
    return z, weights / weights.sum()


def binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def check_global(env: SlateActionWrapper, obs: dict[str, np.ndarray], weights: np.ndarray) -> None:
    state, T, k = env.base.state, env.base.max_turns, env.slate_size
    facts, n_c = state.facts(), weights.size
    approx = pytest.approx

    def g(name: str) -> float:
        return float(feature(obs, "global", name))

    assert g("turn") == approx(state.turn / T) and g("turns_left") == approx((T - state.turn) / T)
    assert g("log_candidates") == approx(np.log1p(n_c) / np.log1p(env.base.catalog.n_items))
    assert g("few_candidates") == float(n_c <= k)
    answers = [g(name) for name in ANSWER_FEATURES.values()]
    assert answers == [float(code == state.last_answer) for code in ANSWER_FEATURES]
    assert g("n_accepted") == approx(facts.accepted.size / FACT_COUNT_SCALE)
    assert g("n_rejected") == approx(facts.rejected.size / FACT_COUNT_SCALE)
    assert g("n_rejected_items") == approx(facts.rejected_items.size / (k * T))
    shown = np.sort(weights)[::-1][: env.n_items]
    assert g("top1_prob") == approx(shown[0], rel=1e-5)
    assert g("topk_mass") == approx(shown[:k].sum(), rel=1e-5)
    entropy = -(weights * np.log(weights + 1e-12)).sum() / np.log(max(n_c, 2))
    assert g("score_entropy") == approx(entropy, rel=1e-5, abs=1e-6)


def check_items(
    env: SlateActionWrapper, obs: dict[str, np.ndarray], z: np.ndarray, weights: np.ndarray
) -> None:
    state, N = env.base.state, env.n_items
    at = np.searchsorted(state.candidate_items(), env.candidate_items)  # slot -> candidate position
    n_top = at.size
    close = np.testing.assert_allclose
    close(feature(obs, "item_feats", "score_z")[:n_top], z[at], rtol=1e-5, atol=1e-6)
    close(feature(obs, "item_feats", "prob")[:n_top], weights[at], rtol=1e-5)
    close(feature(obs, "item_feats", "cum_prob")[:n_top], np.cumsum(weights[at]), rtol=1e-5)
    close(feature(obs, "item_feats", "rank")[:n_top], np.arange(n_top) / N, rtol=1e-6)
    rejected = state.facts().rejected[-env.config.max_facts :]
    if rejected.size:
        held = env.base.catalog.item_aspects[env.candidate_items][:, rejected].toarray().sum(axis=1)
        close(feature(obs, "item_feats", "rejected_aspects")[:n_top], held / REJECTED_ASPECTS_SCALE)
    assert not obs["item_feats"][n_top:].any()


def check_questions(env: SlateActionWrapper, obs: dict[str, np.ndarray], weights: np.ndarray) -> None:
    """share / log_count / share_weighted / entropy_weighted count the candidates holding the slot's aspect
    (an aspect of its category); score_z is checked for aspect slots."""
    state, n_q = env.base.state, env.question_ids.size
    candidates, close = state.candidate_items(), np.testing.assert_allclose
    assert not obs["question_feats"][n_q:].any()
    if n_q == 0:
        return
    held = holders(env, candidates, question_aspects(env))  # (n_c, n_q)
    count, share_w = held.sum(axis=0), weights @ held
    close(feature(obs, "question_feats", "share")[:n_q], count / candidates.size, rtol=1e-6)
    close(
        feature(obs, "question_feats", "log_count")[:n_q],
        np.log1p(count) / np.log1p(candidates.size),
        rtol=1e-6,
    )
    close(feature(obs, "question_feats", "share_weighted")[:n_q], share_w, rtol=1e-5, atol=1e-7)
    entropy = feature(obs, "question_feats", "entropy_weighted")[:n_q]
    close(entropy, binary_entropy_bits(share_w), rtol=1e-4, atol=1e-5)
    picks = feature(obs, "question_feats", "ranker_pick")[:n_q]
    assert set(picks.tolist()) <= {0.0, 1.0} and picks[0] == 1.0
    if not env.base.enumerated:
        reachable = state.reachable_aspects()
        scores = np.asarray(env.ranker.aspect_scores(state.facts(), reachable), dtype=np.float64)
        std = scores.std()
        z = (scores - scores.mean()) / (std if std > 1e-9 else 1.0)
        at = np.searchsorted(reachable, env.question_ids)
        close(feature(obs, "question_feats", "score_z")[:n_q], z[at], rtol=1e-5, atol=1e-6)


def check_probes(env: SlateActionWrapper, obs: dict[str, np.ndarray], weights: np.ndarray) -> None:
    """posterior: the ranker's; share(_weighted): candidates with a listed aspect; n_aspects: listed / M."""
    facts, candidates = env.base.state.facts(), env.base.state.candidate_items()
    posterior = env.ranker.persona_posterior(facts)
    approx = pytest.approx
    for p, aspects in enumerate(env._probes):
        if aspects.size == 0:
            assert not obs["probe_feats"][p].any()
            continue
        # listed: the signature order over the PROBE_POOL reachable aspects of largest weighted share
        reachable = env.base.state.reachable_aspects()
        share = weights @ holders(env, candidates, [np.array([a]) for a in reachable])
        pool = reachable[np.lexsort((reachable, -share))][:PROBE_POOL]
        signature = env.ranker.signature_aspects(facts.user, p, pool.size, among=np.sort(pool))
        if env.base.question_types is not None:
            types = env.base.question_types.of_aspect
            signature = signature[types[signature] == types[signature[0]]]
        np.testing.assert_array_equal(aspects, signature[: env.probe_size])
        held = holders(env, candidates, [aspects])[:, 0]
        assert feature(obs, "probe_feats", "posterior")[p] == approx(posterior[p], rel=1e-6)
        assert feature(obs, "probe_feats", "share")[p] == approx(held.mean(), rel=1e-6)
        assert feature(obs, "probe_feats", "share_weighted")[p] == approx(weights[held].sum(), rel=1e-5)
        assert feature(obs, "probe_feats", "n_aspects")[p] == approx(aspects.size / env.probe_size)


def check_named_features(env: SlateActionWrapper, obs: dict[str, np.ndarray]) -> None:
    """Every hand feature, read by name, equals its definition recomputed from the env's state."""
    state = env.base.state
    z, weights = ranker_weights(env, state.facts(), state.candidate_items())
    check_global(env, obs, weights)
    check_items(env, obs, z, weights)
    check_questions(env, obs, weights)
    if env.n_probes:
        check_probes(env, obs, weights)


def run_checked(env: SlateActionWrapper, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        check_named_features(env, obs)
        choice = rng.choice(np.flatnonzero(env.action_masks()[: env.n_choices]))
        obs, _, done, _, _ = env.step(
            np.concatenate([[choice], rng.permutation(env.n_items)[: env.slate_size]])
        )
        if done:
            obs, _ = env.reset()


def test_each_named_feature_lands_in_its_named_column(world: Catalog) -> None:
    env = wrapped(world, TruthPersonaRanker(world), max_facts=4)
    assert env.n_probes == world.truth.personas_per_user == 4
    run_checked(env, steps=120, seed=4)


def test_probes_of_a_typed_env_list_one_question_type(world: Catalog) -> None:
    """MCMIPL's rule for asks holds for probes too: every value a probe lists has one question type."""
    base = make_env(catalog=world, split="valid")
    types = QuestionTypes(of_aspect=np.arange(world.n_aspects) % 3, names=("a", "b", "c"))
    typed = ConversationEnv(
        world, base.user, base.goals, setting="multiple_choice", question_types=types, max_choices=3
    )
    env = SlateActionWrapper(typed, TruthPersonaRanker(world), WrapperConfig())
    run_checked(env, steps=60, seed=2)
    env.reset(seed=3)
    listed = [aspects for aspects in env._probes if aspects.size]
    assert listed and all(len(set(types.of_aspect[a].tolist())) == 1 for a in listed)
    assert any(a.size > 1 for a in listed)


def test_named_features_of_enumerated_questions() -> None:
    taxonomy = Taxonomy(parent_of=np.array([0, 0, 1, 1]), parent_names=("c0", "c1"))
    catalog = tiny_catalog(taxonomy=taxonomy, n_extra_items=30)
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single", setting="enumerated"),
        PopularityRanker(catalog),
        WrapperConfig(),
    )
    run_checked(env, steps=30, seed=0)


def test_feature_writer_is_keyed_by_name() -> None:
    block = np.zeros((2, len(FEATURE_NAMES["item_feats"])), dtype=np.float32)
    write(block, "item_feats", "cum_prob", [0.5, 1.0])
    assert block[:, FEATURE_NAMES["item_feats"].index("cum_prob")].tolist() == [0.5, 1.0]
    assert block.sum() == 1.5
    with pytest.raises(KeyError, match="item_feats has no feature 'turn'"):
        write(block, "item_feats", "turn", 1.0)
    # every ranker-derived feature is one of its block's named features
    for key, names in RANKER_DERIVED.items():
        assert set(names) <= set(FEATURE_NAMES[key])


def test_one_question_slot_holds_the_rankers_best_aspect(world: Catalog) -> None:
    ranker = PopularityRanker(world)
    env = wrapped(world, ranker, n_questions=1)
    env.reset(seed=0)
    for _ in range(5):
        state = env.base.state
        reachable = state.reachable_aspects()
        assert env.question_ids.size == 1
        scores = ranker.aspect_scores(state.facts(), reachable)
        assert scores[reachable == env.question_ids[0]][0] == scores.max()
        _, _, terminated, truncated, _ = env.step(np.array([0, *range(10)]))  # ask it
        if terminated or truncated:
            break


class NoSayer(PersonaUser):
    """Answers questions as the persona world's users do, rejects every slate (and never leaves here)."""

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


@pytest.mark.parametrize("cap", [None, 1, 2])
def test_after_max_slates_in_a_row_rejected_slates_the_next_turn_asks(
    world: Catalog, cap: int | None
) -> None:
    valid = make_env(catalog=world, split="valid")
    base = ConversationEnv(world, NoSayer(world, patience=None), valid.goals, setting=valid.setting)
    env = SlateActionWrapper(base, PopularityRanker(world), WrapperConfig(max_slates_in_a_row=cap))
    env.reset(seed=3)
    in_a_row, longest = 0, 0
    for _ in range(14):
        mask = env.action_masks()[: env.n_choices]
        asks = mask[: env.recommend_choice].any()
        capped = cap is not None and in_a_row >= cap and asks
        assert bool(mask[env.recommend_choice]) is not capped, (in_a_row, cap)
        if not mask[env.recommend_choice]:
            choice, in_a_row = int(np.flatnonzero(mask)[0]), 0  # the capped policy must ask
        else:
            choice, in_a_row = env.recommend_choice, in_a_row + 1
        longest = max(longest, in_a_row)
        _, _, terminated, truncated, _ = env.step(np.array([choice, *range(10)]))
        if terminated or truncated:
            break
    # the cap is reached and never passed; without it, slate after slate until the dialogue ends
    assert longest == cap if cap else longest > 2


def plan_column(key: str, name: str) -> int:
    """The column of a `PLAN_FEATURES` feature: after the block's own ones."""
    return len(FEATURE_NAMES[key]) + PLAN_FEATURES[key].index(name)


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_plan_features_choose_what_lookahead_chooses(temperature: float) -> None:
    """With one question slot (the ranker's best aspect) and plan_depth D, plan_pick marks the slot
    exactly when lookahead-D asks, and plan_gain's sign agrees; a wrong search, column or sign fails.
    At temperature 100 the rule asks far longer than at 1, so a wrapper that ignored it fails too."""
    env = make_env("persona_world", split="test", setting="binary", user="single")
    ranker = TruthPersonaRanker(env.catalog)
    config = WrapperConfig(n_questions=1, plan_depth=2, plan_temperature=temperature, probes=False)
    wrapper = SlateActionWrapper(env, ranker, config)
    check_env(wrapper, warn=False)
    assert wrapper.observation_space["question_feats"].shape == (1, len(QUESTION_FEATURES) + 2)
    assert wrapper.observation_space["global"].shape == (len(GLOBAL_FEATURES) + 1,)
    rule = LookaheadPolicy(ranker, 2, temperature=temperature)
    pick, gain = plan_column("question_feats", "plan_pick"), plan_column("question_feats", "plan_gain")
    turns, agree, asked = 0, 0, 0
    for seed in range(25):
        obs, _ = wrapper.reset(seed=seed)
        done = False
        while not done:
            rule_asks = rule.act(env.unwrapped)["kind"] == int(ActionKind.ASK)
            picked = bool(obs["question_feats"][0, pick])
            turns, agree, asked = turns + 1, agree + (picked == rule_asks), asked + picked
            if picked:
                assert obs["question_feats"][0, gain] >= -1e-6
            assert 0.0 <= obs["global"][-1] <= 1.0 + 1e-6  # plan_recommend is a mass of the belief
            choice = 0 if picked else wrapper.recommend_choice
            obs, _, done, _, _ = wrapper.step(np.array([choice, *range(10)]))
    assert 0 < asked < turns
    assert agree == turns


def test_plan_depth_needs_the_binary_setting_and_ranker_features(world: Catalog) -> None:
    with pytest.raises(WrapperError, match="plan_depth=0 must be an integer >= 1"):
        WrapperConfig(plan_depth=0)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "warm", True):
        with pytest.raises(WrapperError, match=r"plan_temperature: belief temperature .* must be a finite"):
            WrapperConfig(plan_depth=2, plan_temperature=bad)  # type: ignore[arg-type]
    with pytest.raises(WrapperError, match="set plan_depth too"):
        WrapperConfig(plan_temperature=0.5)
    enumerated = make_env(catalog=world, split="valid", setting="multiple_choice")
    with pytest.raises(WrapperError, match="binary setting"):
        SlateActionWrapper(enumerated, PopularityRanker(world), WrapperConfig(plan_depth=2))
    binary = make_env(catalog=world, split="valid", setting="binary")
    hidden = WrapperConfig(plan_depth=2, ranker_features=False)
    with pytest.raises(WrapperError, match="ranker_features"):
        SlateActionWrapper(binary, PopularityRanker(world), hidden)


# ------------------------------------------------------------------ actions outside the space or the mask
@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.full(11, 0.7), "whole numbers"),
        ([0.0] * 10 + [np.nan], "whole numbers"),
        (np.array([0]), r"11 integers \(shape \(11,\)\), got \[0\]"),
        (np.zeros(12, dtype=np.int64), "shape"),
        (np.zeros((1, 11), dtype=np.int64), "shape"),
        (np.zeros(11, dtype=bool), "11 integers"),
        (["0"] * 11, "11 integers"),
        (None, "11 integers"),
        (np.array([99] + [0] * 10), r"action\[0\] \(the choice\) = 99 lies outside \[0, 11\)"),
        (np.array([-1.0] + [0] * 10), r"action\[0\] \(the choice\) = -1\.0 lies outside"),
    ],
)
def test_malformed_actions_raise_and_change_nothing(world: Catalog, action: object, message: str) -> None:
    env = wrapped(world)
    env.reset(seed=0)
    history = list(env.base.state.history)
    with pytest.raises(WrapperError, match=message):
        env.step(action)  # type: ignore[arg-type]
    assert env.base.state.history == history


def test_whole_float_actions_are_carried_out(world: Catalog) -> None:
    env = wrapped(world)
    env.reset(seed=0)
    aspect = int(env.question_ids[0])
    env.step(np.zeros(11, dtype=np.float32))
    assert env.base.state.history[-1].asked == (aspect,)


def test_masked_choices_raise_naming_the_choice_and_why() -> None:
    catalog = tiny_catalog()  # 4 aspects: fewer open questions than the 10 question slots
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single"), PopularityRanker(catalog), WrapperConfig()
    )
    with pytest.raises(WrapperError, match=r"call reset\(\)"):
        env.step(np.zeros(11, dtype=np.int64))
    env.reset(seed=0)
    open_questions = env.question_ids.size
    assert 0 < open_questions < env.n_questions and not env.action_masks()[open_questions]
    history = list(env.base.state.history)
    with pytest.raises(WrapperError, match=rf"choice {open_questions} is masked.*question slot .* is empty"):
        env.step(np.array([open_questions] + [0] * 10))
    assert env.base.state.history == history


def test_recommend_masked_after_max_slates_in_a_row_raises(world: Catalog) -> None:
    valid = make_env(catalog=world, split="valid")
    base = ConversationEnv(world, NoSayer(world, patience=None), valid.goals, setting=valid.setting)
    env = SlateActionWrapper(base, PopularityRanker(world), WrapperConfig(max_slates_in_a_row=1))
    env.reset(seed=3)
    env.step(np.array([env.recommend_choice, *range(10)]))
    assert not env.action_masks()[env.recommend_choice]
    with pytest.raises(
        WrapperError, match=r"recommend is closed after 1 rejected slates.*max_slates_in_a_row=1"
    ):
        env.step(np.array([env.recommend_choice, *range(10)]))


def test_action_space_samples_only_what_the_mask_allows() -> None:
    catalog = tiny_catalog(n_extra_items=6)
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single"), PopularityRanker(catalog), WrapperConfig()
    )
    env.action_space.seed(0)
    env.reset(seed=0)
    masked_seen = 0
    for _ in range(300):
        mask = env.action_masks()
        masked_seen += int(not mask.all())
        action = env.action_space.sample()
        assert mask[action[0]] and mask[env.n_choices + action[1:]].all()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    assert masked_seen > 0  # the masks did forbid something
    # a copy (as SB3 sends spaces between processes) samples as a plain MultiDiscrete
    assert pickle.loads(pickle.dumps(env.action_space)) == env.action_space


# ------------------------------------------------------------------ Gymnasium's checker and env.spec
@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.utils.env_checker")  # unbounded Boxes: by design
def test_gymnasium_check_env_and_spec_over_a_gym_make_env() -> None:
    inner = gym.make("crs/PersonaWorld-v0", world_kwargs=WORLD)
    ranker = PopularityRanker(inner.unwrapped.catalog)
    env = SlateActionWrapper(inner, ranker, WrapperConfig(n_questions=3))
    gym_check_env(env, skip_render_check=True)
    last = env.spec.additional_wrappers[-1]
    assert last.name == "SlateActionWrapper" and last.kwargs["ranker"] is ranker  # kept, not copied
    again = gym.make(env.spec)
    assert isinstance(again, SlateActionWrapper) and again.action_space == env.action_space


def test_reset_and_step_infos_have_the_same_keys(world: Catalog) -> None:
    env = wrapped(world)
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(np.array([env.recommend_choice, *range(10)]))
    assert reset_info["turn_limit"] is False
    assert set(reset_info) == set(step_info)


# ------------------------------------------------------------------ what the mutation audit found untested
def test_the_final_observation_leaves_recommend_and_one_item_slot_valid(world: Catalog) -> None:
    """After the last step only recommend is valid, and every slate position keeps one valid item slot:
    MaskablePPO's per-position distributions need at least one true entry each."""
    env = wrapped(world)
    env.reset(seed=0)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(np.array([env.recommend_choice, *range(10)]))
    assert env.observation_space.contains(obs)
    mask = env.action_masks()
    choice, items = mask[: env.n_choices], mask[env.n_choices :].reshape(env.slate_size, env.n_items)
    assert np.flatnonzero(choice).tolist() == [env.recommend_choice]
    assert items.any(axis=1).all()
    np.testing.assert_array_equal(obs["item_mask"] > 0.5, np.arange(env.n_items) == 0)


def test_accepted_ids_keep_the_highest_ids_when_there_are_more_than_max_facts() -> None:
    """Target item 2 holds aspects {0, 1, 3}: the opening states 0, then 3 and 1 are asked and accepted,
    in that order; with max_facts = 1 the observation keeps the highest id, 3 (not the first, 0, nor the
    latest answered, 1: `WrapperConfig.max_facts`)."""
    catalog = tiny_catalog()
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single"),
        PopularityRanker(catalog),
        WrapperConfig(max_facts=1),
    )
    seed = next(s for s in range(50) if env.reset(seed=s) and env.base.state.history[0].accepted == (0,))
    obs, _ = env.reset(seed=seed)
    for aspect in (3, 1):
        slot = int(np.flatnonzero(env.question_ids == aspect)[0])
        obs, _, done, _, _ = env.step(np.array([slot, *range(10)]))
        assert not done and env.base.state.history[-1].accepted == (aspect,)
    assert env.base.state.facts().accepted.tolist() == [0, 1, 3]
    assert obs["accepted_ids"].tolist() == [3.0]
    assert feature(obs, "global", "n_accepted") == pytest.approx(3 / FACT_COUNT_SCALE)  # all are counted


def test_a_slate_of_only_masked_slots_shows_the_rankers_best_candidates(world: Catalog) -> None:
    env = wrapped(world, n_items=20)
    env.reset(seed=3)
    items = env.candidate_items.copy()
    assert items.size > env.slate_size  # the first and last slate_size candidates differ
    env.step(np.array([env.recommend_choice, -1, 20, 25, -3, 20, 21, 99, -1, 20, 30]))
    record = env.base.state.history[-1]
    assert record.kind == "recommend" and record.slate == tuple(int(i) for i in items[: env.slate_size])


def test_question_slots_never_repeat_an_aspect(world: Catalog) -> None:
    """With more reachable aspects than slots, half the slots go by score and the rest by entropy
    among the aspects not already picked: every turn's slots are distinct."""
    env = wrapped(world, n_questions=4)
    rng = np.random.default_rng(7)
    env.reset(seed=7)
    turns_with_entropy_picks = 0
    for _ in range(60):
        ids = env.question_ids
        assert np.unique(ids).size == ids.size, ids
        turns_with_entropy_picks += int(ids.size == env.n_questions)
        choice = rng.choice(np.flatnonzero(env.action_masks()[: env.n_choices]))
        _, _, done, _, _ = env.step(np.array([choice, *range(10)]))
        if done:
            env.reset()
    assert turns_with_entropy_picks > 0


def test_answer_features_mark_the_users_last_answer_by_name() -> None:
    """Target item 2 holds {0, 1, 3} and not 2: after the opening (0), asking 2 is rejected, then 1
    accepted."""
    catalog = tiny_catalog()
    env = SlateActionWrapper(
        make_env(catalog=catalog, split="test", user="single"), PopularityRanker(catalog), WrapperConfig()
    )
    seed = next(s for s in range(50) if env.reset(seed=s) and env.base.state.history[0].accepted == (0,))
    obs, _ = env.reset(seed=seed)
    names = ("answer_none", "answer_accepted", "answer_rejected", "answer_slate_rejected")

    def answer() -> list[float]:
        return [float(feature(obs, "global", name)) for name in names]

    assert answer() == [1.0, 0.0, 0.0, 0.0]  # no answer yet after the opening
    for aspect, expected in ((2, [0.0, 0.0, 1.0, 0.0]), (1, [0.0, 1.0, 0.0, 0.0])):
        slot = int(np.flatnonzero(env.question_ids == aspect)[0])
        obs, _, _, _, _ = env.step(np.array([slot, *range(10)]))
        assert answer() == expected, aspect


class FixedPersonaRanker:
    """Fixed item and aspect scores, a fixed persona posterior, two personas listing the pool rotated."""

    personas_per_user = 2

    def __init__(self, item_values: np.ndarray, aspect_values: np.ndarray, posterior: np.ndarray) -> None:
        self.item_values, self.aspect_values, self.posterior = item_values, aspect_values, posterior

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return self.item_values[np.asarray(items, dtype=np.int64)]

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return self.aspect_values[np.asarray(aspects, dtype=np.int64)]

    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        return self.posterior

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        pool = np.arange(self.aspect_values.size) if among is None else np.asarray(among, dtype=np.int64)
        return np.roll(pool, -k)[:m]


def test_without_ranker_features_the_observation_ignores_the_rankers_scores_and_posterior() -> None:
    """Two rankers that order items and aspects alike (the second's scores are the first's to the 4th
    power) but weigh them and the personas differently: with ranker features off every observation
    is the same; with them on, cum_prob and the probe posterior tell them apart."""
    catalog = tiny_catalog()  # 4 aspects: every reachable aspect gets a question slot and is in the pool
    items, aspects = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2]), np.array([0.4, 0.8, 0.2, 0.6])
    rankers = (
        FixedPersonaRanker(items, aspects, np.array([0.7, 0.3])),
        FixedPersonaRanker(items**4, aspects**4, np.array([0.2, 0.8])),
    )

    def run(ranker_features: bool) -> list[list[dict[str, np.ndarray]]]:
        runs = []
        for ranker in rankers:
            base = make_env(
                catalog=catalog, split="test", user="single", setting="multiple_choice", n_personas=2
            )
            env = SlateActionWrapper(base, ranker, WrapperConfig(ranker_features=ranker_features))
            assert env.n_probes == 2
            obs, _ = env.reset(seed=0)
            seen, done = [obs], False
            for choice in (env.n_questions, 0, env.recommend_choice):  # probe persona 0, ask, recommend
                if done or not env.action_masks()[choice]:
                    continue
                obs, _, done, _, _ = env.step(np.array([choice, *range(10)]))
                seen.append(obs)
            runs.append(seen)
        return runs

    shown = run(ranker_features=True)
    assert not np.allclose(
        feature(shown[0][0], "item_feats", "cum_prob"), feature(shown[1][0], "item_feats", "cum_prob")
    )
    assert (
        feature(shown[0][0], "probe_feats", "posterior").tolist()
        != feature(shown[1][0], "probe_feats", "posterior").tolist()
    )
    first, second = run(ranker_features=False)
    assert len(first) == len(second) > 1
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
