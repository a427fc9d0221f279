"""Gaps a mutation audit of the graph RL policy found: the slate distribution's masks and padding, the
SB3 policy's action-space check, the training callback's schedule, acting with priors, and imitation's
returns and reported loss. Expected values are worked out by hand or replayed independently."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO

from envs import make_env
from envs.actions import probe, recommend
from envs.metrics import EpisodeRecord
from envs.ranker import PreferenceRanker
from envs.sb3_wrapper import SlateActionWrapper
from policies.baseline_rankers import PopularityRanker
from policies.pretrain.train import catalog_fingerprint
from policies.rl import RLConfig, RLPolicy, build_model, make_vec_env
from policies.rl.acting import PriorRowError, load_trained_policy, mean_metrics
from policies.rl.callbacks import TrainingCallback
from policies.rl.config import ImitationConfig
from policies.rl.distribution import SlateDistribution
from policies.rl.imitation import clone, collect_demonstrations, demonstration_action
from policies.rl.policy import SlatePolicy
from policies.rl.run_files import BEST_MODEL, CHECKPOINT, STATE_FILE, PolicyMeta, atomic_save
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.envs.conftest import TruthPersonaRanker
from tests.policies.test_imitation import WORLD, capped_after_a_failed_slate
from tests.policies.test_rl_callbacks import FakeModel, Run, saved_steps
from tests.policies.test_rl_policy import SMALL, model_for, random_persona_ranker


def lse(values: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in values))


# ------------------------------------------------------------------------------------ distribution
def test_a_batch_without_masks_does_not_reuse_the_previous_batchs_masks() -> None:
    """Guards against `proba_distribution` keeping the masks of an earlier batch (SB3 only calls
    `apply_masking` when it has masks, so stale ones would silently mask the new batch)."""
    choice, items = [0.5, -0.2, 1.0], [0.3, -1.0, 2.0, 0.0]
    dist = SlateDistribution(n_choices=3, n_items=4, slate_size=2)
    logits = torch.tensor([choice + items])
    dist.proba_distribution(logits)
    dist.apply_masking(np.array([[True, True, False] + [True, True, False, True] * 2]))
    assert dist.mode().tolist() == [[0, 0, 3]]  # recommend and item 2 masked
    dist.proba_distribution(logits)  # a new batch, no masks
    # unmasked: recommend (logit 1.0) and the top-2 items (2, then 0)
    assert dist.mode().tolist() == [[2, 2, 0]]
    expected = (choice[2] - lse(choice)) + (items[2] - lse(items)) + (items[0] - lse([0.3, -1.0, 0.0]))
    assert dist.log_prob(torch.tensor([[2, 2, 0]])).item() == pytest.approx(expected, abs=1e-5)
    # a batch of another size without masks works too
    dist.proba_distribution(logits.repeat(3, 1))
    assert dist.mode().tolist() == [[2, 2, 0]] * 3


def test_padding_adds_nothing_even_among_many_masked_items() -> None:
    """Guards against counting padding positions (masked items after the last valid one) in the
    slate's log-probability: with ~200 masked slots, float32 rounding of their -1e8 logits makes each
    such term about -8, not 0."""
    n, k = 200, 3
    item_logits = [1.0, 0.5] + [0.0] * (n - 2)
    dist = SlateDistribution(2, n, k).proba_distribution(torch.tensor([[0.0, 0.0, *item_logits]]))
    item_mask = [True, True] + [False] * (n - 2)
    dist.apply_masking(np.array([[True, True] + item_mask * k]))
    action = torch.tensor([[1, 0, 1, 57]])  # recommend: the two valid items, then a padding slot
    # log p(rec) = log 1/2; PL over the valid {0, 1}: [1 - lse(1, .5)] + [.5 - .5]; padding: 0
    expected = math.log(0.5) + (1.0 - lse([1.0, 0.5]))
    assert dist.log_prob(action).item() == pytest.approx(expected, abs=1e-4)


def test_masked_items_and_choices_lose_however_low_the_valid_logits_are() -> None:
    """Guards against a mask that is only a finite penalty: valid actions with very low logits must
    still beat masked ones with high logits."""
    choice = [0.0, -60.0]  # choice 0 masked, so recommend (choice 1) is the only valid one
    items = [-60.0, 5.0, -70.0, 3.0]  # items 1 and 3 masked
    dist = SlateDistribution(2, 4, 2).proba_distribution(torch.tensor([choice + items]))
    dist.apply_masking(np.array([[False, True] + [True, False, True, False] * 2]))
    assert dist.mode().tolist() == [[1, 0, 2]]
    torch.manual_seed(0)
    batch = SlateDistribution(2, 4, 2).proba_distribution(torch.tensor([choice + items]).repeat(200, 1))
    batch.apply_masking(np.tile([False, True] + [True, False, True, False] * 2, (200, 1)))
    sampled = batch.sample()
    assert (sampled[:, 0] == 1).all()
    assert set(sampled[:, 1:].reshape(-1).tolist()) == {0, 2}


def test_actions_from_params_deterministic_gives_the_mode() -> None:
    """Guards against `actions_from_params` ignoring `deterministic` (SB3's API: arg-max choice and
    top-k slate)."""
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 0.2, 0.1, 0.3, 0.0, 0.25]]).repeat(50, 1)
    dist = SlateDistribution(2, 4, 2)
    actions = dist.actions_from_params(logits, deterministic=True)
    assert actions.tolist() == [[1, 1, 3]] * 50


# ------------------------------------------------------------------------------------------ policy
@pytest.mark.parametrize("nvec", [[3, 4, 5], [3]])
def test_a_slate_policy_refuses_an_action_space_that_is_not_choice_plus_equal_slots(nvec: list[int]) -> None:
    """Guards against dropping the action-space check: slots of unequal sizes, or no slot at all, are
    not the wrapper's layout and must be a named error, not a network of the wrong shape."""
    with pytest.raises(CRSError, match="MultiDiscrete"):
        SlatePolicy(spaces.Dict({}), spaces.MultiDiscrete(nvec), lambda _: 3e-4)


@pytest.fixture(scope="module")
def small_model() -> tuple[Catalog, MaskablePPO, PreferenceRanker, RLConfig]:
    """A tiny untrained SlatePolicy model over the popularity ranker (test_rl_policy's small world)."""
    catalog = load_catalog("persona_world", **SMALL)
    model, ranker, config = model_for(catalog)
    return catalog, model, ranker, config


def test_the_action_logits_are_the_encoders_scores_as_they_are(small_model) -> None:
    """Guards against leaving SB3's linear action head in place: the distribution must read the
    encoder's choice and item logits unchanged (the action head is the identity)."""
    _, model, _, _ = small_model
    policy = model.policy
    obs, _ = policy.obs_to_tensor(model.get_env().reset())
    n_choices, n_items = int(model.action_space.nvec[0]), int(model.action_space.nvec[1])
    with torch.no_grad():
        features = policy.features_extractor(obs)
        dist = policy.get_distribution(obs)
    torch.testing.assert_close(dist.choice_logits, features[:, :n_choices], rtol=0, atol=0)
    torch.testing.assert_close(dist.item_logits, features[:, n_choices : n_choices + n_items], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ acting
def test_a_prior_row_of_a_user_past_the_encoders_table_is_a_named_error(small_model) -> None:
    """Guards against an off-by-one in the prior row's user bound: user n_users is outside the
    encoder's log_prior table of n_users rows (the last user, n_users - 1, fits)."""
    _, model, ranker, config = small_model
    table = model.policy.features_extractor.log_prior.weight
    users, width = table.shape
    row = np.zeros(width)
    with pytest.raises(PriorRowError, match=f"user {users} "):
        RLPolicy(model.policy, ranker, config.wrapper, prior=(users, row))
    with pytest.raises(PriorRowError, match="user -1 "):
        RLPolicy(model.policy, ranker, config.wrapper, prior=(-1, row))
    fits = RLPolicy(model.policy, ranker, config.wrapper, prior=(users - 1, row))
    assert fits._prior is not None and fits._prior[0] == users - 1


def test_a_policy_refuses_to_act_in_an_env_of_another_setting(small_model, tmp_path: Path) -> None:
    """Guards against dropping the setting check (in `check_env`, in `wrapper_for`, or by loading a run
    without its setting): a policy trained with multiple-choice questions must not act in a binary env."""
    catalog, model, ranker, config = small_model
    own = make_env(catalog=catalog, split="test")
    binary = make_env(catalog=catalog, split="test", setting="binary")
    assert own.setting != binary.setting
    atomic_save(model, tmp_path / "model.zip")
    PolicyMeta(catalog=catalog.name, ranker="popularity", rl=config).write(tmp_path)
    live = RLPolicy(model.policy, ranker, config.wrapper, setting=own.setting)
    loaded = load_trained_policy(tmp_path, catalog)
    assert loaded.setting == own.setting
    for policy in (live, loaded):
        # the fix for both ways in: the CLI's option and make_env's argument
        fix = f"--setting {own.setting} (in Python: make_env(..., setting='{own.setting}')"
        with pytest.raises(CRSError, match=re.escape(fix)):
            policy.check_env(binary)
        binary.reset(seed=0)
        with pytest.raises(CRSError, match=f"trained in the {own.setting} setting"):
            policy.act(binary)
        own.reset(seed=0)
        assert "kind" in policy.act(own)  # its own setting acts


def test_a_policy_refuses_an_env_of_another_slate_size_or_persona_slots_by_name(small_model) -> None:
    """An env of another slate size failed inside the wrapper ("action must be [choice, slot_1..slot_5]")
    and one of fewer persona slots inside torch ("The size of tensor a (3) must match ..."): both are
    now refused before acting, naming what differs."""
    catalog, model, ranker, config = small_model
    own = make_env(catalog=catalog, split="test")
    fewer = own.slate_size - 1
    other = make_env(catalog=catalog, split="test", slate_size=fewer)
    other.reset(seed=0)
    said = f"trained with slate size {own.slate_size} and cannot act in an env with slate size {fewer}"
    with pytest.raises(CRSError, match=re.escape(f"{said}: make the env with slate_size={own.slate_size}")):
        RLPolicy(model.policy, ranker, config.wrapper).act(other)
    personas = random_persona_ranker(catalog)  # 3 personas: 3 probe slots in an env of 3 or more
    probing = RLPolicy(model_for(catalog, personas)[0].policy, personas, config.wrapper)
    other = make_env(catalog=catalog, split="test", n_personas=2)
    other.reset(seed=0)
    with pytest.raises(CRSError, match=re.escape("(trained → here: choice_mask (")):
        probing.act(other)
    own.reset(seed=0)
    assert "kind" in probing.act(own)


def test_a_run_refuses_a_persona_world_of_other_sizes_naming_the_sizes(small_model, tmp_path: Path) -> None:
    """Guards against dropping the sizes check: a run of a custom-sized persona world loaded with
    another world must say the sizes differ (not that the catalogue of the same sizes differs)."""
    catalog, model, _, config = small_model
    sizes = (catalog.n_users, catalog.n_items, catalog.n_aspects)
    atomic_save(model, tmp_path / "model.zip")
    PolicyMeta(
        catalog=catalog.name,
        ranker="popularity",
        rl=config,
        sizes=sizes,
        fingerprint=catalog_fingerprint(catalog),
    ).write(tmp_path)
    other = load_catalog("persona_world", **{**SMALL, "n_items": SMALL["n_items"] + 20})
    with pytest.raises(CRSError, match=r"sizes \[40, 300, 20\], but this one has \[40, 320, 20\]"):
        load_trained_policy(tmp_path, other)
    assert load_trained_policy(tmp_path, catalog).setting is not None  # its own world loads


def test_mean_metrics_count_a_failed_conversation_as_fifteen_turns() -> None:
    """Guards against another default turn limit in the validation curve's means: a failure counts as
    15 turns in AT (the benchmark's limit), a success as its own agent actions."""
    failed = EpisodeRecord(0, 0, (1,), False, 15, None, 0.0)
    found = EpisodeRecord(1, 1, (2,), True, 7, 1, 1.0)
    metrics = mean_metrics([failed, found])
    assert metrics["AT"] == pytest.approx((15 + 7) / 2)
    assert (metrics["SR@5"], metrics["SR@10"], metrics["SR@15"]) == (0.0, 0.5, 0.5)
    # hDCG of a success at the 7th action (step 6), slate rank 1: 1 / log2(6 + 2), halved over two
    assert metrics["hDCG"] == pytest.approx(0.5 / math.log2(8))


# --------------------------------------------------------------------------------------- imitation
@pytest.fixture(scope="module")
def imitation_world() -> tuple[Catalog, PreferenceRanker]:
    """test_imitation's persona world and its popularity ranker."""
    catalog = load_catalog("persona_world", **WORLD)
    return catalog, PopularityRanker(catalog)


def test_demonstrated_returns_are_the_discounted_rewards_to_each_conversations_end(imitation_world) -> None:
    """Guards against returns that are not discounted, are discounted once too often, or run across a
    conversation's end: the demonstrated conversations are replayed in a fresh wrapper and each
    turn's return summed by hand, gamma^j * r over the rest of its conversation."""
    catalog, ranker = imitation_world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper
    gamma = 0.8
    demos = collect_demonstrations(factory, ranker, config, "ask-2", 40, gamma, seed=4)
    wrapper = SlateActionWrapper(factory(), ranker, config)
    rule = make_rule_policy("ask-2", ranker)
    rng = np.random.default_rng(4)
    conversations: list[list[float]] = []
    successes = 0
    t = 0
    while t < len(demos.actions):
        obs, _ = wrapper.reset(seed=int(rng.integers(2**31)))
        rule.reset(rng)
        rewards: list[float] = []
        done = False
        while not done:
            np.testing.assert_array_equal(obs["item_mask"], demos.observations["item_mask"][t])
            obs, reward, done, _, info = wrapper.step(demos.actions[t])
            assert done == demos.ends[t]
            rewards.append(reward)
            t += 1
        conversations.append(rewards)
        successes += int(info["success"])
    assert len(conversations) == demos.conversations and successes == demos.successes
    expected = [
        sum(gamma**j * r for j, r in enumerate(rewards[i:]))
        for rewards in conversations
        for i in range(len(rewards))
    ]
    np.testing.assert_allclose(demos.returns, expected, rtol=1e-9, atol=1e-12)
    assert any(len(rewards) > 1 and rewards[-1] != 0 for rewards in conversations)  # discounting shows


def test_clone_reports_the_mean_nll_of_every_turn_and_the_policys_own_choices(imitation_world) -> None:
    """Guards against a reported loss that is not the mean negative log-likelihood over all turns
    (not divided by the turns, a short last minibatch weighted as a full one or skipped), against an
    agreement of sampled rather than arg-max choices, and against a rule success share over turns.
    At a learning rate of 1e-9 the policy barely moves, so the expected values come from the
    untrained policy, the choice's arg-max taken by hand over the masked logits."""
    catalog, ranker = imitation_world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64)
    model = build_model(make_vec_env(factory, ranker, config, seed=0), ranker, config, seed=0)
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-2", 150, config.gamma, seed=1)
    n = len(demos.actions)
    assert n % 64 > 8  # a short last minibatch
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    with torch.no_grad():
        _, log_prob, _ = model.policy.evaluate_actions(
            obs,  # type: ignore[arg-type]  # Dict obs, as SB3's own
            torch.as_tensor(demos.actions),
            action_masks=torch.as_tensor(demos.masks),
        )
        features = model.policy.features_extractor(obs)
    n_choices = int(model.action_space.nvec[0])
    choice_logits = features[:, :n_choices].masked_fill(~torch.as_tensor(demos.masks[:, :n_choices]), -np.inf)
    agree = (choice_logits.argmax(dim=1).numpy() == demos.actions[:, 0]).mean()
    assert 0.05 < agree < 0.95  # a sampled choice would not give the same share
    result = clone(
        model, demos, ImitationConfig(rule="ask-2", epochs=1, batch_size=64, learning_rate=1e-9), 0
    )
    assert result.turns == n and result.conversations == demos.conversations
    assert result.loss == pytest.approx(-float(log_prob.mean()), rel=1e-4)
    assert result.agreement == pytest.approx(agree)
    assert result.rule_success == pytest.approx(demos.successes / demos.conversations)
    assert result.matched == pytest.approx(demos.matched.sum() / n)


# --------------------------------------------------------------------------------------- callbacks
def test_evaluations_are_due_eval_every_steps_after_the_last_one(tmp_path: Path) -> None:
    """Guards against scheduling the next evaluation from the previous due step rather than from the
    step evaluated: with updates every 48 steps and eval_every 64, step 96 is evaluated (the first
    update past 64), then 192 (the first past 96 + 64), never 144 (only 48 after 96)."""
    run = Run(tmp_path, [(0.1, 0.0), (0.2, 0.0), (0.3, 0.0)], eval_every=64, checkpoint_every=64)
    for steps in (48, 96, 144, 192):
        run.update_to(steps)
    assert [p.timesteps for p in run.points] == [96, 192]
    # checkpoints follow the same rule: 96, then 192, each the first update checkpoint_every past the last
    assert [steps for name, steps in run.model.saves if name == CHECKPOINT] == [96, 192]


def test_checkpoints_without_evaluations_are_due_checkpoint_every_steps_after_the_last(
    tmp_path: Path,
) -> None:
    """Guards against drifting checkpoints when no evaluation runs (eval_every 0): 96 (first past 64),
    then 192 (first past 96 + 64), not 144."""
    run = Run(tmp_path, [], eval_every=0, checkpoint_every=64)
    for steps in (48, 96, 144, 192):
        run.update_to(steps)
    assert [steps for name, steps in run.model.saves if name == CHECKPOINT] == [96, 192]
    assert run.points == []


def test_eval_every_zero_evaluates_only_when_training_ends(tmp_path: Path) -> None:
    """Guards against treating eval_every 0 as "every update": no curve row until the final update,
    which is evaluated once."""
    run = Run(tmp_path, [(0.5, 0.2)], eval_every=0, checkpoint_every=64)
    for steps in (64, 128, 192):
        run.update_to(steps)
    assert run.points == []
    run.model.num_timesteps = 200
    run.callback.after_update(final=True)
    assert [(p.timesteps, p.best) for p in run.points] == [(200, True)]
    assert saved_steps(tmp_path / BEST_MODEL) == 200 and saved_steps(tmp_path / CHECKPOINT) == 200


def test_training_without_an_evaluator_checkpoints_its_last_step_and_leaves_nothing_pending(
    tmp_path: Path,
) -> None:
    """Guards against a final update that writes no checkpoint when none is due and nothing is
    evaluated, and against marking an evaluation pending that no evaluator will ever clear (a resume
    would then wait on it)."""
    model = FakeModel()
    callback = TrainingCallback(tmp_path, None, eval_every=64, checkpoint_every=64)
    callback.init_callback(model)  # type: ignore[arg-type]  # the stand-in model
    callback.on_training_start({}, {})
    for steps in (64, 100):
        model.num_timesteps = steps
        if steps == 100:
            callback.after_update(final=True)  # 100 is not a checkpoint step: only `final` makes it one
        else:
            callback.on_rollout_start()
    assert [steps for _, steps in model.saves] == [64, 100]
    assert saved_steps(tmp_path / CHECKPOINT) == 100 and not (tmp_path / BEST_MODEL).exists()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["timesteps"] == 100 and state["pending_eval"] is None


def test_a_due_evaluation_is_marked_pending_before_its_checkpoint_is_written(tmp_path: Path) -> None:
    """Guards against marking the evaluation only after the checkpoint: a kill between the two would
    resume from a checkpoint whose evaluation state.json does not name, losing its curve row."""
    pending_at_save: list[tuple[str, int | None]] = []

    class Watched(FakeModel):
        def save(self, path: Path) -> None:
            state = tmp_path / STATE_FILE
            pending = json.loads(state.read_text())["pending_eval"] if state.is_file() else None
            super().save(path)
            pending_at_save.append((self.saves[-1][0], pending))

    run = Run(tmp_path, [(0.5, 0.2)], eval_every=64, checkpoint_every=64)
    run.model = Watched()
    run.callback.init_callback(run.model)  # type: ignore[arg-type]  # the stand-in model
    run.callback.on_training_start({}, {})
    run.update_to(64)
    assert pending_at_save == [(CHECKPOINT, 64), (BEST_MODEL, 64)]
    assert json.loads((tmp_path / STATE_FILE).read_text())["pending_eval"] is None  # cleared after the row


def test_progress_reports_seconds_since_the_callback_started() -> None:
    """Guards against reporting the raw clock instead of the elapsed seconds."""
    reports: list[tuple[int, float]] = []
    before = time.perf_counter()
    callback = TrainingCallback(Path("unused"), None, 0, 64, on_progress=lambda s, t: reports.append((s, t)))
    model = FakeModel()
    model.num_timesteps = 32
    callback.init_callback(model)  # type: ignore[arg-type]  # the stand-in model
    callback.on_rollout_end()
    elapsed = time.perf_counter() - before
    assert len(reports) == 1 and reports[0][0] == 32 and 0 <= reports[0][1] <= elapsed


def test_a_probe_of_a_persona_past_the_probe_slots_becomes_a_question(imitation_world) -> None:
    """Guards against an off-by-one in the probe slot bound: persona n_probes has no slot (slot
    n_questions + n_probes is "recommend"), so the probe falls back to its first aspect's question."""
    catalog = imitation_world[0]
    ranker = TruthPersonaRanker(catalog)
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker, RLConfig().wrapper)
    wrapper.reset(seed=3)
    assert wrapper.n_probes > 0
    slot = 2
    aspect = int(wrapper.question_ids[slot])
    action, _ = demonstration_action(wrapper, probe(wrapper.n_probes, [aspect]))
    assert action[0] == slot and action[0] != wrapper.recommend_choice
    assert wrapper.to_env_action(action)["aspects"] == [aspect]
    # a probe of the last persona slot is that slot
    last = wrapper.n_probes - 1
    if wrapper.action_masks()[wrapper.n_questions + last]:
        action, _ = demonstration_action(wrapper, probe(last, [aspect]))
        assert action[0] == wrapper.n_questions + last


def test_clone_takes_one_clipped_step_per_minibatch_of_its_seeded_order(imitation_world) -> None:
    """Guards against gradients that pile up across minibatches (no ``zero_grad``), unclipped steps, a
    skipped short last minibatch, or an order not drawn from the seed: `clone` must equal a reference
    loop written from its contract (the seed's permutation, minibatches of batch_size, loss = NLL +
    vf_coef * value MSE, the gradient clipped to max_grad_norm, one optimizer step each) on an
    identical model."""
    catalog, ranker = imitation_world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64)
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-2", 150, config.gamma, seed=1)
    n, batch_size, epochs, rate, seed = len(demos.actions), 64, 2, 1e-3, 5
    assert n % batch_size > 8  # a short last minibatch

    def fresh() -> MaskablePPO:
        return build_model(make_vec_env(factory, ranker, config, seed=0), ranker, config, seed=0)

    cloned, reference = fresh(), fresh()
    initial = {key: value.clone() for key, value in reference.policy.state_dict().items()}
    clone(
        cloned,
        demos,
        ImitationConfig(rule="ask-2", epochs=epochs, batch_size=batch_size, learning_rate=rate),
        seed,
    )

    policy = reference.policy
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    actions, masks = torch.as_tensor(demos.actions), torch.as_tensor(demos.masks)
    returns = torch.as_tensor(demos.returns, dtype=torch.float32)
    for group in policy.optimizer.param_groups:
        group["lr"] = rate
    policy.set_training_mode(True)
    generator = torch.Generator().manual_seed(seed)
    norms = []
    for _ in range(epochs):
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            values, log_prob, _ = policy.evaluate_actions(
                {key: value[batch] for key, value in obs.items()},  # type: ignore[arg-type]  # Dict obs
                actions[batch],
                action_masks=masks[batch],
            )
            value_loss = torch.nn.functional.mse_loss(values.flatten(), returns[batch])
            loss = -log_prob.mean() + reference.vf_coef * value_loss
            policy.optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), reference.max_grad_norm)))
            policy.optimizer.step()
    assert len(norms) == epochs * math.ceil(n / batch_size)
    assert max(norms) > 2 * reference.max_grad_norm  # clipping is at work
    got, expected = cloned.policy.state_dict(), policy.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert any(not torch.equal(value, initial[key]) for key, value in expected.items())  # it did train


def test_a_slate_while_slates_are_capped_becomes_the_first_open_choice(imitation_world) -> None:
    """Guards against picking another open choice than the first when the wrapper masks "recommend"
    (``max_slates_in_a_row``): the rule's slate becomes the lowest open choice slot (questions come
    first, the ranker's best in slot 0)."""
    wrapper, slate = capped_after_a_failed_slate(*imitation_world)
    choice_mask = wrapper.action_masks()[: wrapper.n_choices]
    assert not choice_mask[wrapper.recommend_choice] and choice_mask.sum() > 1
    first_open = int(np.flatnonzero(choice_mask)[0])
    action, exact = demonstration_action(wrapper, recommend(slate))
    assert not exact and action[0] == first_open
