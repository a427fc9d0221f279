"""The SB3 wrapper: SB3's env checker passes, masks are exact, and actions mean what the slots say."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from envs import DialogueFacts, make_env
from envs.sb3_wrapper import FEATURE_NAMES, RANKER_DERIVED, SlateActionWrapper, WrapperConfig, WrapperError
from envs.transe import PopularityRanker
from simulators.catalog import Catalog, Taxonomy
from simulators.datasets import load_catalog
from tests.envs.conftest import tiny_catalog

WORLD = {"n_users": 40, "n_items": 300, "n_groups": 4, "aspects_per_group": 5, "interactions_per_user": 12}


class TruthPersonaRanker(PopularityRanker):
    """Popularity scores plus the persona interface, read from the persona world's ground truth."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        assert catalog.truth is not None
        self.truth = catalog.truth
        self.personas_per_user = catalog.truth.personas_per_user

    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        return self.truth.user_weights[facts.user]

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        signature = np.flatnonzero(self.truth.persona_aspects[self.truth.user_personas[user, k]])
        if among is not None:
            signature = signature[np.isin(signature, among)]
        return signature[:m]


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
    # K = 3 personas per user in the persona world: 10 question slots + 3 probes + recommend = 14 choices
    assert with_probes.n_probes == world.truth.personas_per_user == 3
    assert with_probes.action_space.nvec.tolist() == [14] + [20] * 10
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
        make_env(catalog=catalog, split="test", user="single"), PopularityRanker(catalog), WrapperConfig()
    )
    check_env(env, warn=False)
    env.reset(seed=0)
    # opening aspect 0 (category 0) leaves aspects 1 (c0), 2 and 3 (c1) reachable: both categories open
    assert sorted(env.question_ids.tolist()) == [0, 1]
    env.step(np.array([int(np.flatnonzero(env.question_ids == 1)[0]), *list(range(10))]))
    assert env.base.state.history[-1].asked == (1,) and env.base.state.asked_categories[1]


def test_bad_configuration_names_the_fix(world: Catalog) -> None:
    with pytest.raises(WrapperError, match="n_items >= 10"):
        wrapped(world, n_items=5)
