"""Warm start by imitation: a rule's actions in the wrapper's layout, and a policy that copies them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from envs import evaluation_indices, make_env
from envs.actions import ask, probe, recommend
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.baseline_rankers import PopularityRanker
from policies.rl import RLConfig, RLPolicy, build_model, evaluate_policy, make_vec_env
from policies.rl.acting import mean_metrics
from policies.rl.config import ImitationConfig
from policies.rl.imitation import Demonstrations, clone, collect_demonstrations, demonstration_action
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.envs.conftest import TruthPersonaRanker

WORLD = {"n_users": 60, "n_items": 600, "n_groups": 3, "aspects_per_group": 5, "interactions_per_user": 12}


@pytest.fixture(scope="module")
def world():
    catalog = load_catalog("persona_world", **WORLD)
    return catalog, PopularityRanker(catalog)


def wrapped(world) -> SlateActionWrapper:
    catalog, ranker = world
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker)
    wrapper.reset(seed=3)
    return wrapper


def test_a_rules_question_becomes_the_slot_that_holds_it(world) -> None:
    wrapper = wrapped(world)
    slot = 3
    action, exact = demonstration_action(wrapper, ask(int(wrapper.question_ids[slot])))
    assert exact and action[0] == slot
    # the wrapper turns it back into the very question
    assert wrapper.to_env_action(action)["aspects"] == [int(wrapper.question_ids[slot])]


def test_a_question_no_slot_holds_falls_back_to_the_first_open_slot(world) -> None:
    wrapper = wrapped(world)
    catalog = world[0]
    outside = next(a for a in range(catalog.n_aspects) if a not in set(wrapper.question_ids.tolist()))
    action, exact = demonstration_action(wrapper, ask(outside))
    assert not exact and action[0] == 0


def test_a_slate_becomes_its_items_slots_in_order_then_distinct_padding(world) -> None:
    wrapper = wrapped(world)
    items = wrapper.candidate_items
    slate = [int(items[4]), int(items[1])]
    action, exact = demonstration_action(wrapper, recommend(slate))
    assert exact and action[0] == wrapper.recommend_choice
    assert action[1:3].tolist() == [4, 1]
    # every slot distinct, so no item counts twice in the slate's likelihood
    assert len(set(action[1:].tolist())) == wrapper.slate_size
    assert wrapper.to_env_action(action)["items"][:2] == slate
    _, exact = demonstration_action(wrapper, recommend([int(items[0]), -5 % world[0].n_items]))
    assert exact == bool(np.any(items == -5 % world[0].n_items))


def capped_after_a_failed_slate(catalog: Catalog, ranker: Any) -> tuple[SlateActionWrapper, list[int]]:
    """A wrapper capped at one slate in a row, in a conversation whose first slate (candidates 5..6,
    returned) failed and went on, so that "recommend" is masked."""
    wrapper = SlateActionWrapper(
        make_env(catalog=catalog, split="valid"), ranker, WrapperConfig(max_slates_in_a_row=1)
    )
    for seed in range(20):
        wrapper.reset(seed=seed)
        slate = [int(i) for i in wrapper.candidate_items[5:7]]
        wrapper.step(demonstration_action(wrapper, recommend(slate))[0])
        if not wrapper.base.done:
            break
    return wrapper, slate


def test_a_slate_while_slates_are_capped_becomes_an_open_question(world) -> None:
    wrapper, slate = capped_after_a_failed_slate(*world)
    assert not wrapper.base.done and not wrapper.action_masks()[wrapper.recommend_choice]
    action, exact = demonstration_action(wrapper, recommend(slate))
    assert not exact and action[0] != wrapper.recommend_choice and wrapper.action_masks()[action[0]]
    wrapper.step(action)  # the wrapper carries it out


def test_a_probing_rules_demonstrations_take_the_probed_personas_slot(world) -> None:
    catalog = world[0]
    ranker = TruthPersonaRanker(catalog)
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper
    demos = collect_demonstrations(factory, ranker, config, "probe-1-ask-1", 200, 0.99, seed=1)
    wrapper = SlateActionWrapper(factory(), ranker, config)
    personas = np.arange(wrapper.n_questions, wrapper.n_questions + wrapper.n_probes)
    starts = np.r_[0, np.flatnonzero(demos.ends[:-1]) + 1]
    # every conversation opens with a probe, expressed exactly as that persona's slot
    assert wrapper.n_probes == 4 and np.all(np.isin(demos.actions[starts, 0], personas))
    assert demos.matched[starts].all()
    assert len(set(demos.actions[starts, 0].tolist())) > 1  # the persona follows the user
    # a probe whose persona slot lists other aspects is not exact
    wrapper.reset(seed=3)
    persona = next(p for p, aspects in enumerate(wrapper.probe_aspects) if aspects.size)
    action, exact = demonstration_action(wrapper, probe(persona, wrapper.probe_aspects[persona]))
    assert exact and action[0] == wrapper.n_questions + persona
    other = next(a for a in range(catalog.n_aspects) if a not in wrapper.probe_aspects[persona])
    action, exact = demonstration_action(wrapper, probe(persona, [other]))
    assert not exact and action[0] == wrapper.n_questions + persona


def test_demonstrations_are_the_rules_conversations_and_replay_with_the_seed(world) -> None:
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper
    first = collect_demonstrations(factory, ranker, config, "ask-2", 200, 0.99, seed=1)
    again = collect_demonstrations(factory, ranker, config, "ask-2", 200, 0.99, seed=1)
    other = collect_demonstrations(factory, ranker, config, "ask-2", 200, 0.99, seed=2)
    assert first.actions.shape[0] >= 200 and np.array_equal(first.actions, again.actions)
    assert np.array_equal(first.returns, again.returns) and not np.array_equal(first.returns, other.returns)
    assert first.ends[-1] and first.ends.sum() == first.conversations >= first.successes > 0
    # ask-2 asks twice, then recommends every turn
    recommend_choice = wrapped(world).recommend_choice
    starts = np.r_[0, np.flatnonzero(first.ends[:-1]) + 1]
    assert np.all(first.actions[starts, 0] != recommend_choice)
    assert np.all(first.actions[starts + 1, 0] != recommend_choice)
    assert np.all(first.actions[starts + 2, 0] == recommend_choice)
    # a conversation's return at its last turn is that turn's reward: accepted slates pay 1
    assert (first.returns[first.ends] > 0.5).sum() == first.successes


def test_cloning_copies_the_rule_and_beats_the_untrained_policy(world) -> None:
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64)
    vec = make_vec_env(factory, ranker, config, seed=0)
    model = build_model(vec, ranker, config, seed=0)
    test = lambda: make_env(catalog=catalog, split="test")  # noqa: E731
    indices = evaluation_indices(test().goals.n_goals, 200, 0)

    def score(policy) -> float:
        return mean_metrics(evaluate_policy(test, policy, indices, 0))["SR@15"]

    untrained = score(RLPolicy(model.policy, ranker, config.wrapper))
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-4", 3000, config.gamma, seed=2)
    result = clone(model, demos, ImitationConfig(rule="ask-4", steps=3000, epochs=20), seed=0)
    cloned = score(RLPolicy(model.policy, ranker, config.wrapper))
    rule = score(make_rule_policy("ask-4", ranker))
    # popularity ties at the 10th place break differently in the rule's slate and the wrapper's top 10:
    # 0.83 of the turns fit exactly (measured); the choice is what agreement counts
    assert result.matched > 0.7 and result.agreement > 0.9, result
    assert cloned > untrained + 0.1, (cloned, untrained, rule)
    assert abs(cloned - rule) < 0.1, (cloned, rule)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rule": "ask-many"}, "ask-many"), ({"steps": 0}, "imitation.steps=0"), ({"epochs": 1.5}, "epochs")],
)
def test_bad_imitation_settings_are_named(kwargs, message) -> None:
    with pytest.raises(CRSError, match=message):
        ImitationConfig(**kwargs)


def test_the_copy_learning_rate_fits_faster_and_leaves_ppo_rate_alone(world) -> None:
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64, learning_rate=1e-5)
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-4", 1500, config.gamma, seed=2)
    results = {}
    for rate in (None, 3e-3):
        model = build_model(make_vec_env(factory, ranker, config, seed=0), ranker, config, seed=0)
        copy = ImitationConfig(rule="ask-4", epochs=5, learning_rate=rate)
        results[rate] = clone(model, demos, copy, seed=0)
        assert [group["lr"] for group in model.policy.optimizer.param_groups] == [1e-5]
    # at PPO's tiny rate the copy barely moves; at its own rate it fits the rule
    assert results[3e-3].loss < results[None].loss - 0.5, results
    assert results[3e-3].agreement > results[None].agreement + 0.1, results


@pytest.mark.parametrize("rate", [0, -1e-3, 1.5, True, "fast"])
def test_a_bad_copy_learning_rate_is_named(rate) -> None:
    with pytest.raises(CRSError, match=r"imitation\.learning_rate"):
        ImitationConfig(learning_rate=rate)


def test_each_turn_records_the_observation_its_action_was_chosen_in(world) -> None:
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper
    demos = collect_demonstrations(factory, ranker, config, "ask-2", 60, 0.99, seed=1)
    wrapper = SlateActionWrapper(factory(), ranker, config)
    choices, items = wrapper.n_choices, wrapper.n_items
    # the observation's masks are the turn's action mask: both were read before the action
    np.testing.assert_array_equal(demos.observations["choice_mask"] > 0.5, demos.masks[:, :choices])
    np.testing.assert_array_equal(
        demos.observations["item_mask"] > 0.5, demos.masks[:, choices : choices + items]
    )
    assert all(demos.observations["choice_mask"][t, a] > 0.5 for t, a in enumerate(demos.actions[:, 0]))
    # a conversation's first observation is the one its reset gave
    first, _ = wrapper.reset(seed=int(np.random.default_rng(1).integers(2**31)))
    for key, value in first.items():
        np.testing.assert_array_equal(demos.observations[key][0], value, err_msg=key)


def test_a_random_rules_demonstrations_follow_the_seed(world) -> None:
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper

    def collect(seed: int) -> Demonstrations:
        return collect_demonstrations(factory, ranker, config, "random", 8, 0.99, seed=seed)

    first, again = collect(1), collect(1)
    assert np.array_equal(first.actions, again.actions) and np.array_equal(first.returns, again.returns)
    # the rule draws from the demonstrations' generator: whether it opens with a question (a coin flip)
    # varies with the seed
    recommend_choice = wrapped(world).recommend_choice
    opens_asking = {bool(collect(seed).actions[0, 0] != recommend_choice) for seed in range(8)}
    assert opens_asking == {True, False}


def test_cloning_fits_the_value_head_to_the_demonstrated_returns(world) -> None:
    import torch

    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64)
    model = build_model(make_vec_env(factory, ranker, config, seed=0), ranker, config, seed=0)
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-4", 300, config.gamma, seed=2)
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    returns = torch.as_tensor(demos.returns, dtype=torch.float32)

    def value_loss() -> float:
        with torch.no_grad():
            values = model.policy.predict_values(obs)  # type: ignore[arg-type]  # Dict obs, as SB3's own
        return float(torch.nn.functional.mse_loss(values.flatten(), returns))

    before = value_loss()
    clone(model, demos, ImitationConfig(rule="ask-4", epochs=5, learning_rate=3e-3), seed=0)
    after = value_loss()
    # the returns are noisy (a conversation succeeds or not), so the floor is near their variance: the
    # fitted head does at least as well as predicting the mean return (0.45; measured 0.45 after, 0.59
    # before, and 0.59 when cloning fits the actions alone)
    mean_return_loss = float(((returns - returns.mean()) ** 2).mean())
    assert after < before - 0.1 and after < mean_return_loss + 0.01, (before, after, mean_return_loss)
