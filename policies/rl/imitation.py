"""Warm start by imitation: the graph RL policy first copies a rule policy, then PPO improves on it.

From scratch, PPO on the showcase world and on Yelp* learns to recommend early and stays below the
rules it is compared with (BENCHMARKS.md). A warm start replays a rule (e.g. ask-7) in the training
envs, translates each of its actions into the SB3 wrapper's action layout (`demonstration_action`),
and fits the policy to them by maximum likelihood and the value head to the discounted returns
(`clone`). PPO then starts from the rule's behaviour instead of from a uniform policy.

The demonstrations use the training envs (valid split, training rewards) and their own seeded
generator; they are not PPO timesteps and are reported separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from envs.actions import ActionKind
from envs.env import ConversationEnv
from envs.ranker import PreferenceRanker
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.rl.config import ImitationConfig
from policies.rules import make_rule_policy


@dataclass(frozen=True)
class Demonstrations:
    """A rule's turns in the wrapper's layout. T = turns.

    Attributes:
        observations: The wrapper's observation arrays, each of shape (T, *space shape).
        actions: [choice, slot_1..slot_k] per turn, int64 of shape (T, 1 + k).
        masks: The action masks, bool of shape (T, sum(nvec)).
        returns: Discounted return from each turn to the end of its conversation, shape (T,).
        ends: Whether the turn ended its conversation, shape (T,).
        matched: Whether the rule's action was available as it is among the wrapper's slots (a
            question it asked was a question slot; every slate item a candidate slot), shape (T,).
        conversations: Conversations played.
        successes: Conversations the rule ended with an accepted slate.
    """

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    masks: np.ndarray
    returns: np.ndarray
    ends: np.ndarray
    matched: np.ndarray
    conversations: int
    successes: int


@dataclass(frozen=True)
class CloneResult:
    """What imitation did: its data and how closely the policy copies the rule afterwards.

    Attributes:
        turns: Demonstration turns.
        conversations: Demonstration conversations.
        rule_success: Share of those conversations the rule ended with an accepted slate.
        matched: Share of turns whose action the wrapper could express as it is.
        agreement: Share of turns where the policy's deterministic choice (question slot, probe or
            recommend) equals the rule's, after cloning.
        loss: Mean negative log-likelihood of the rule's actions in the last epoch.
    """

    turns: int
    conversations: int
    rule_success: float
    matched: float
    agreement: float
    loss: float


def demonstration_action(wrapper: SlateActionWrapper, env_action: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """The wrapper action ``[choice, slot_1..slot_k]`` closest to a rule's env action this turn.

    A probe becomes its persona's slot (exact when the slot lists the same aspects, as the probes of
    ``probe-K-ask-N`` do); a question becomes the question slot that holds its (first) aspect or
    category; a slate becomes the recommend choice with its items' candidate slots, in slate order,
    completed by the best remaining slots. A question that no slot holds (or a probe whose persona slot
    is closed) becomes the first open question slot (slot 0 holds the ranker's best), or recommend when
    no question is open. A slate while the wrapper masks "recommend" (``max_slates_in_a_row``) becomes
    the first open choice (the wrapper refuses a masked one).

    Returns:
        The action (int64, shape (1 + k,)) and whether it expresses the rule's action exactly.
    """
    mask = wrapper.action_masks()
    choice_mask = mask[: wrapper.n_choices]
    action = np.zeros(1 + wrapper.slate_size, dtype=np.int64)
    matched = True
    kind = int(env_action["kind"])
    if kind == int(ActionKind.PROBE):
        persona = int(env_action["persona"])
        slot = wrapper.n_questions + persona
        if persona < wrapper.n_probes and choice_mask[slot]:
            action[0] = slot
            return action, np.array_equal(wrapper.probe_aspects[persona], env_action["aspects"])
    if kind != int(ActionKind.RECOMMEND):
        hits = np.flatnonzero(wrapper.question_ids == int(env_action["aspects"][0]))
        hits = hits[choice_mask[hits]]
        if hits.size:
            action[0] = hits[0]
            return action, True
        open_questions = np.flatnonzero(choice_mask[: wrapper.n_questions])
        if open_questions.size:
            action[0] = open_questions[0]
            return action, False
        matched = False  # nothing to ask: recommend the ranker's best instead
    if not choice_mask[wrapper.recommend_choice]:  # slates capped (max_slates_in_a_row): ask instead
        action[0] = int(np.flatnonzero(choice_mask)[0])
        return action, False
    action[0] = wrapper.recommend_choice
    items = wrapper.candidate_items
    slate = [int(i) for i in env_action["items"]] if kind == int(ActionKind.RECOMMEND) else []
    slots = [int(np.flatnonzero(items == item)[0]) for item in slate if np.any(items == item)]
    matched = matched and len(slots) == len(slate)
    # distinct slots throughout: the best remaining candidates, then masked slots (padding, as a sampled
    # slate has them), since a repeated slot would count one item twice in the slate's likelihood
    rest = [s for s in range(wrapper.n_items) if s not in slots]
    action[1:] = (slots + rest)[: wrapper.slate_size]
    return action, matched


def collect_demonstrations(
    env_factory: Callable[[], ConversationEnv],
    ranker: PreferenceRanker,
    wrapper_config: WrapperConfig,
    rule: str,
    steps: int,
    gamma: float,
    seed: int,
    on_turn: Callable[[], None] | None = None,
) -> Demonstrations:
    """Play `rule` in fresh conversations of ``env_factory()`` until at least `steps` turns are recorded.

    Conversation n is reset with a seed drawn from ``np.random.default_rng(seed)``, so the same seed
    gives the same demonstrations. `on_turn` is called after every turn (progress).
    """
    wrapper = SlateActionWrapper(env_factory(), ranker, wrapper_config)
    policy = make_rule_policy(rule, ranker)
    rng = np.random.default_rng(seed)
    observations: list[dict[str, np.ndarray]] = []
    actions: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    rewards: list[float] = []
    ends: list[bool] = []
    matched: list[bool] = []
    conversations = successes = 0
    while len(actions) < steps:
        obs, _ = wrapper.reset(seed=int(rng.integers(2**31)))
        policy.reset(rng)
        conversations += 1
        done = False
        while not done:
            action, exact = demonstration_action(wrapper, policy.act(wrapper.base))
            observations.append(obs)
            masks.append(wrapper.action_masks())
            actions.append(action)
            matched.append(exact)
            obs, reward, done, _, info = wrapper.step(action)
            rewards.append(reward)
            ends.append(done)
            if on_turn is not None:
                on_turn()
        successes += int(bool(info.get("success", False)))
    returns = np.zeros(len(rewards))
    following = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = rewards[t] + (0.0 if ends[t] else gamma * following)
        returns[t] = following
    return Demonstrations(
        observations={key: np.stack([o[key] for o in observations]) for key in observations[0]},
        actions=np.stack(actions),
        masks=np.stack(masks),
        returns=returns,
        ends=np.asarray(ends),
        matched=np.asarray(matched),
        conversations=conversations,
        successes=successes,
    )


def deterministic_choices(model: MaskablePPO, demos: Demonstrations) -> np.ndarray:
    """The policy's deterministic choice (question slot, probe or recommend) at each demonstrated turn,
    int64 (n,)."""
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    with torch.no_grad():
        chosen = [
            model.policy.get_distribution(
                {key: value[batch] for key, value in obs.items()},
                action_masks=demos.masks[batch.numpy()],
            ).get_actions(deterministic=True)[:, 0]
            for batch in torch.arange(len(demos.actions)).split(1024)
        ]
    return torch.cat(chosen).numpy()


def clone(model: MaskablePPO, demos: Demonstrations, config: ImitationConfig, seed: int) -> CloneResult:
    """Fit ``model.policy`` to the demonstrations: the rule's actions by maximum likelihood, the value
    head to the discounted returns (weighted by the model's ``vf_coef``), with the model's optimizer
    at ``config.learning_rate`` (PPO's own rate when None; PPO's rate is restored afterwards).
    """
    policy = model.policy
    n = demos.actions.shape[0]
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    actions = torch.as_tensor(demos.actions)
    masks = torch.as_tensor(demos.masks)
    returns = torch.as_tensor(demos.returns, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    groups = policy.optimizer.param_groups
    ppo_rates = [group["lr"] for group in groups]
    if config.learning_rate is not None:
        for group in groups:
            group["lr"] = config.learning_rate
    policy.set_training_mode(True)
    epoch_loss = 0.0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            values, log_prob, _ = policy.evaluate_actions(
                {key: value[batch] for key, value in obs.items()},  # type: ignore[arg-type]  # Dict obs, as SB3's own
                actions[batch],
                action_masks=masks[batch],
            )
            nll = -log_prob.mean()
            loss = nll + model.vf_coef * torch.nn.functional.mse_loss(values.flatten(), returns[batch])
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            policy.optimizer.step()
            total += float(nll.detach()) * len(batch)
        epoch_loss = total / n
    for group, rate in zip(groups, ppo_rates, strict=True):
        group["lr"] = rate
    policy.set_training_mode(False)
    chosen = deterministic_choices(model, demos)
    return CloneResult(
        turns=n,
        conversations=demos.conversations,
        rule_success=demos.successes / demos.conversations,
        matched=float(demos.matched.mean()),
        agreement=float((chosen == demos.actions[:, 0]).mean()),
        loss=epoch_loss,
    )
