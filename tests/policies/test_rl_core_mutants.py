"""Gaps a second mutation audit of the graph RL policy found: imitation's fallbacks, slot order, stop
rule and progress calls, the policy's masked deterministic choices, the slate distribution's sampled
log-probabilities, the training callback on a resume, at a zero score and on divergence, and loading a
trained run with a given ranker or a catalogue of other sizes. Expected values are worked out by hand
or from an independent computation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from envs import make_env
from envs.actions import ask, probe, recommend
from envs.ranker import PreferenceRanker
from envs.sb3_wrapper import SlateActionWrapper
from policies.baseline_rankers import PopularityRanker
from policies.rankers import RankerSpec
from policies.rl import RLConfig, build_model, make_vec_env
from policies.rl.acting import load_trained_policy
from policies.rl.callbacks import DivergedError, EvalPoint, TrainingCallback
from policies.rl.distribution import SlateDistribution
from policies.rl.imitation import collect_demonstrations, demonstration_action, deterministic_choices
from policies.rl.run_files import BEST_MODEL, CHECKPOINT, STATE_FILE, PolicyMeta, atomic_save
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.envs.conftest import TruthPersonaRanker
from tests.policies.test_imitation import WORLD
from tests.policies.test_rl_callbacks import FakeModel, Run, saved_steps
from tests.policies.test_rl_policy import SMALL, model_for


# ------------------------------------------------------------------------------------ distribution
def test_log_prob_from_params_samples_actions_and_scores_those_actions() -> None:
    """Guards against `log_prob_from_params` returning the deterministic action (SB3's API: a sampled
    action and its log-probability): over 300 identical flat rows the actions vary, and each row's
    log-probability is the choice's plus the slate's Plackett-Luce terms, computed here by hand."""
    torch.manual_seed(0)
    choice, items = [0.1, 0.0, 0.2], [0.3, 0.0, 0.2, 0.1]
    dist = SlateDistribution(n_choices=3, n_items=4, slate_size=2)
    actions, log_prob = dist.log_prob_from_params(torch.tensor([choice + items]).repeat(300, 1))
    assert len({tuple(row) for row in actions.tolist()}) > 5  # sampled, not the one mode [2, 0, 2]

    def by_hand(row: list[int]) -> float:
        c, first, second = row
        value = choice[c] - np.logaddexp.reduce(choice)
        if c == 2:  # recommend: PL of (first, second)
            rest = [v for i, v in enumerate(items) if i != first]
            value += items[first] - np.logaddexp.reduce(items) + items[second] - np.logaddexp.reduce(rest)
        return float(value)

    expected = [by_hand(row) for row in actions.tolist()]
    np.testing.assert_allclose(log_prob.numpy(), expected, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------- callbacks
def test_a_first_evaluation_that_scores_zero_is_still_the_best_model(tmp_path: Path) -> None:
    """Guards against a starting score to beat of (0, 0): a policy whose first evaluation never
    succeeds (SR@15 0, hDCG 0) must still save best_model.zip, or a run can end without one."""
    run = Run(tmp_path, [(0.0, 0.0), (0.0, 0.0)], eval_every=64, checkpoint_every=64)
    run.update_to(64)
    run.update_to(128)
    assert [(p.timesteps, p.best) for p in run.points] == [(64, True), (128, False)]
    assert saved_steps(tmp_path / BEST_MODEL) == 64


def test_an_evaluation_point_reports_seconds_since_the_callback_started(tmp_path: Path) -> None:
    """Guards against a curve row whose seconds are the raw clock instead of the training time."""
    before = time.perf_counter()
    run = Run(tmp_path, [(0.5, 0.2)], eval_every=64, checkpoint_every=64)
    run.update_to(64)
    elapsed = time.perf_counter() - before
    assert len(run.points) == 1 and 0 <= run.points[0].seconds <= elapsed


def test_non_finite_weights_stop_training_at_the_next_update_and_write_nothing(tmp_path: Path) -> None:
    """Guards against checking the weights only when training ends (or not at all): the first update
    after a weight turned NaN raises DivergedError naming it and the last good checkpoint's step,
    and writes no checkpoint, state or curve row, so the good checkpoint stays."""
    run = Run(tmp_path, [(0.5, 0.2), (0.9, 0.9)], eval_every=64, checkpoint_every=64)
    run.update_to(64)  # a good checkpoint and evaluation
    state = (tmp_path / STATE_FILE).read_text()
    with torch.no_grad():
        run.model.policy.weight[0, 0] = float("nan")
    with pytest.raises(DivergedError, match=r"before step 128: parameters weight hold NaN.*\(step 64\)"):
        run.update_to(128)  # an ordinary update (not the final one)
    assert saved_steps(tmp_path / CHECKPOINT) == 64 and (tmp_path / STATE_FILE).read_text() == state
    assert [p.timesteps for p in run.points] == [64] and run.model.saves[-1][1] == 64


def test_a_resumed_callback_schedules_from_the_step_it_resumed_at(tmp_path: Path) -> None:
    """Guards against scheduling a resumed run from step 0: resumed at step 1000 (checkpointed and
    evaluated there) with eval_every and checkpoint_every 128, nothing is due before step 1128, and
    the rollout that starts the resume is no update (nothing is written)."""
    model = FakeModel()
    model.num_timesteps = 1000
    points: list[EvalPoint] = []
    callback = TrainingCallback(
        tmp_path,
        lambda _: {"SR@15": 0.9, "hDCG": 0.9},
        eval_every=128,
        checkpoint_every=128,
        on_eval=points.append,
        best_score=(0.5, 0.2),
        last_eval=1000,
        last_checkpoint=1000,
    )
    callback.init_callback(model)  # type: ignore[arg-type]  # the stand-in model
    callback.on_training_start({}, {})
    for steps in (1000, 1064, 1128, 1192):
        model.num_timesteps = steps
        callback.on_rollout_start()
    assert [p.timesteps for p in points] == [1128]
    assert model.saves == [(CHECKPOINT, 1128), (BEST_MODEL, 1128)]


def test_a_checkpoint_written_for_an_evaluation_restarts_the_checkpoint_interval(tmp_path: Path) -> None:
    """Guards against keeping the old checkpoint schedule after an evaluation's checkpoint: with
    eval_every 64 and checkpoint_every 96, the checkpoints are those of the evaluations (64, 128,
    192), never one at 96, only 32 steps after the one at 64."""
    run = Run(tmp_path, [(0.1, 0.0), (0.1, 0.0), (0.1, 0.0)], eval_every=64, checkpoint_every=96)
    for steps in (32, 64, 96, 128, 160, 192):
        run.update_to(steps)
    assert [steps for name, steps in run.model.saves if name == CHECKPOINT] == [64, 128, 192]


# --------------------------------------------------------------------------------------- imitation
@pytest.fixture(scope="module")
def world() -> tuple[Catalog, PreferenceRanker]:
    """test_imitation's persona world and its popularity ranker."""
    catalog = load_catalog("persona_world", **WORLD)
    return catalog, PopularityRanker(catalog)


def first_state(
    catalog: Catalog, ranker: PreferenceRanker, found: Callable[[SlateActionWrapper, np.ndarray], bool]
) -> SlateActionWrapper:
    """A wrapper in the first state (over seeds, asking the first open question each turn) whose
    choice mask satisfies `found`."""
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker, RLConfig().wrapper)
    for seed in range(40):
        wrapper.reset(seed=seed)
        while not wrapper.base.done:
            choices = wrapper.action_masks()[: wrapper.n_choices]
            if found(wrapper, choices):
                return wrapper
            questions = np.flatnonzero(choices[: wrapper.n_questions])
            if not questions.size:
                break
            action = np.zeros(1 + wrapper.slate_size, dtype=np.int64)
            action[0] = questions[0]
            wrapper.step(action)
    raise AssertionError("no such state")


def test_a_probe_of_a_closed_persona_slot_becomes_its_aspects_question(world) -> None:
    """Guards against taking a probe's persona slot while the wrapper masks it (no aspects to list):
    the probe becomes the open question slot holding its first aspect."""
    catalog = world[0]
    wrapper = first_state(
        catalog,
        TruthPersonaRanker(catalog),
        lambda w, m: not m[w.n_questions : w.recommend_choice].all() and m[: w.n_questions].sum() > 1,
    )
    choices = wrapper.action_masks()[: wrapper.n_choices]
    closed = int(np.flatnonzero(~choices[wrapper.n_questions : wrapper.recommend_choice])[0])
    slot = int(np.flatnonzero(choices[: wrapper.n_questions])[-1])  # not the first open one
    action, exact = demonstration_action(wrapper, probe(closed, [int(wrapper.question_ids[slot])]))
    assert action[0] == slot and exact
    wrapper.step(action)  # the wrapper carries it out


def test_a_question_or_probe_with_nothing_open_to_ask_is_an_inexact_recommendation(world) -> None:
    """Guards against reporting the fallback as exact when no question or probe is open: the rule's
    question becomes "recommend" (the ranker's best), which is not what the rule did."""
    catalog = world[0]
    wrapper = first_state(
        catalog, TruthPersonaRanker(catalog), lambda w, m: not m[: w.recommend_choice].any()
    )
    for action_dict in (ask(0), probe(0, [0])):
        action, exact = demonstration_action(wrapper, action_dict)
        assert action[0] == wrapper.recommend_choice and not exact
        assert sorted(action[1:].tolist()) == list(range(wrapper.slate_size))  # distinct slots, best first


def test_a_slate_is_completed_by_the_best_remaining_slots_in_order(world) -> None:
    """Guards against completing a demonstrated slate with other slots than the best remaining ones in
    the ranker's order (slot 0 is the ranker's best): slate (4, 1) becomes slots 4, 1, 0, 2, 3, ..."""
    catalog, ranker = world
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker, RLConfig().wrapper)
    wrapper.reset(seed=3)
    items = wrapper.candidate_items
    assert items.size == wrapper.n_items == wrapper.slate_size == 10
    action, exact = demonstration_action(wrapper, recommend([int(items[4]), int(items[1])]))
    assert exact and action.tolist() == [wrapper.recommend_choice, 4, 1, 0, 2, 3, 5, 6, 7, 8, 9]


def test_a_multiple_choice_question_takes_the_slot_of_its_first_aspect(world) -> None:
    """Guards against reading another aspect than the first of a multiple-choice question."""
    catalog, ranker = world
    wrapper = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker, RLConfig().wrapper)
    wrapper.reset(seed=3)
    ids = wrapper.question_ids
    action, exact = demonstration_action(wrapper, ask([int(ids[3]), int(ids[5])]))
    assert exact and action[0] == 3


def test_demonstrations_stop_with_the_conversation_that_reaches_the_steps(world) -> None:
    """Guards against playing one conversation too many: asked for exactly the turns of the first
    conversation, the collection holds that conversation alone; one turn more takes a second."""
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig().wrapper
    calls: list[int] = []
    first = collect_demonstrations(
        factory, ranker, config, "ask-2", 1, 0.9, seed=7, on_turn=lambda: calls.append(1)
    )
    turns = len(first.actions)
    assert first.conversations == 1 and first.ends[-1] and turns > 1
    assert len(calls) == turns  # progress once per turn
    exact = collect_demonstrations(factory, ranker, config, "ask-2", turns, 0.9, seed=7)
    assert exact.conversations == 1 and len(exact.actions) == turns
    more = collect_demonstrations(factory, ranker, config, "ask-2", turns + 1, 0.9, seed=7)
    assert more.conversations == 2 and np.array_equal(more.actions[:turns], first.actions)


def test_deterministic_choices_are_the_best_open_choice_of_each_turns_mask(world) -> None:
    """Guards against ignoring the demonstrations' masks in the agreement's choices: with the untrained
    policy's favourite choice closed at every turn, each choice is the arg-max over the open ones
    (computed here from the encoder's choice logits)."""
    catalog, ranker = world
    factory = lambda: make_env(catalog=catalog, split="valid")  # noqa: E731
    config = RLConfig(n_envs=2, n_steps=32, batch_size=64)
    model = build_model(make_vec_env(factory, ranker, config, seed=0), ranker, config, seed=0)
    demos = collect_demonstrations(factory, ranker, config.wrapper, "ask-2", 40, config.gamma, seed=1)
    n_choices = int(model.action_space.nvec[0])
    obs = {key: torch.as_tensor(value) for key, value in demos.observations.items()}
    with torch.no_grad():
        logits = model.policy.features_extractor(obs)[:, :n_choices].numpy()
    masks = demos.masks.copy()
    favourite = logits.argmax(axis=1)
    masks[np.arange(len(masks)), favourite] = False  # close the unmasked favourite
    choice_masks = masks[:, :n_choices]
    keep = choice_masks.any(axis=1)
    closed = dataclasses.replace(
        demos,
        observations={key: value[keep] for key, value in demos.observations.items()},
        actions=demos.actions[keep],
        masks=masks[keep],
    )
    assert keep.sum() > 10
    expected = np.where(choice_masks[keep], logits[keep], -np.inf).argmax(axis=1)
    chosen = deterministic_choices(model, closed)
    assert np.array_equal(chosen, expected) and not np.any(chosen == favourite[keep])


# ------------------------------------------------------------------------------------------ acting
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog, RLConfig]:
    """A tiny untrained model saved as a run folder of test_rl_policy's small world (sizes recorded)."""
    catalog = load_catalog("persona_world", **SMALL)
    model, _, config = model_for(catalog)
    run = tmp_path_factory.mktemp("run")
    atomic_save(model, run / "model.zip")
    sizes = (catalog.n_users, catalog.n_items, catalog.n_aspects)
    PolicyMeta(catalog=catalog.name, ranker="popularity", rl=config, sizes=sizes).write(run)
    return run, catalog, config


def test_a_run_loads_with_the_ranker_it_is_given(saved_run) -> None:
    """Guards against ignoring the `ranker` argument (rebuilding the run's own ranker instead)."""
    run, catalog, _ = saved_run
    ranker = PopularityRanker(catalog)
    assert load_trained_policy(run, catalog, ranker).ranker is ranker
    assert load_trained_policy(run, catalog).ranker is not ranker


def test_a_run_of_other_sizes_names_the_fix_for_a_persona_world_and_for_a_dataset(saved_run) -> None:
    """Guards against swapping the two fixes of a sizes mismatch: a persona world of custom sizes
    cannot be rebuilt (its test's records are named), a dataset is evaluated with its own data."""
    run, _, _ = saved_run
    other = load_catalog("persona_world", **{**SMALL, "n_items": SMALL["n_items"] + 20})
    with pytest.raises(CRSError, match="cannot be evaluated again") as world_error:
        load_trained_policy(run, other)
    assert str(run / "tested" / "trained") in str(world_error.value)
    dataset = dataclasses.replace(other, truth=None)
    with pytest.raises(CRSError, match="evaluate it with the data folder it was trained on") as data_error:
        load_trained_policy(run, dataset)
    assert "cannot be evaluated again" not in str(data_error.value)


def test_python_callers_are_told_what_to_pass_not_a_cli_flag_alone(saved_run) -> None:
    """A catalogue that is not one (a dataset's name) is named with the call that loads one, instead of
    an AttributeError; another dataset's is told the Python call too."""
    run, catalog, _ = saved_run
    with pytest.raises(CRSError, match=r"catalog must be a Catalog, got str 'persona_world': .*load_catalog"):
        load_trained_policy(run, "persona_world")  # type: ignore[arg-type]
    with pytest.raises(
        CRSError, match=r"pass --dataset persona_world \(from Python: simulators\.load_catalog"
    ):
        load_trained_policy(run, dataclasses.replace(catalog, name="lastfm"))


def test_a_ranker_given_that_is_not_the_runs_is_named_when_the_model_does_not_fit_it(saved_run) -> None:
    """A persona ranker given to a run trained with popularity changes the encoder's sizes: the error
    says the ranker may be the cause (it blamed the model file alone) and how to use the run's own."""
    run, catalog, _ = saved_run
    with pytest.raises(
        CRSError, match=r"the ranker= given \(PersonaRanker\) may not be the run's own \(popularity\)"
    ):
        load_trained_policy(run, catalog, RankerSpec("uniform").build(catalog))
