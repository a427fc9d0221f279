"""Example dialogues: evaluated conversations replayed turn by turn, with explanations.

A conversation of `crs eval` is fixed by (eval seed, goal index) (`envs.rollout.episode_seed`), so it
is replayed exactly by rebuilding the env and the policy; the replay is checked against the record.
When a persona ranker is at hand, each slate's accepted (else first) item gets its explanation
(`crs.explain.prototype_explanations`, given the facts before that turn).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from crs.app.evaluation import resolve_policy
from crs.app.run_folder import EPISODES_FILE, eval_fix
from crs.explain import prototype_explanations
from crs.report.inputs import EvalRun
from crs.report.persona import prototype_names
from envs.env import render_dialogue
from envs.metrics import EpisodeRecord
from envs.ranker import ExplainablePersonaRanker
from envs.registry import UserKind, make_env
from envs.rollout import episode_seed
from envs.setting import SETTINGS
from policies.rankers import RUN_RANKER
from simulators.catalog import Catalog
from simulators.errors import CRSError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DialogueTurn:
    """One replayed turn: its text (as `render_dialogue` writes it) and its explanation, if any."""

    text: str
    kind: str
    explanation: str = ""
    success: bool = False


@dataclass(frozen=True)
class ExampleDialogue:
    """A replayed conversation.

    Attributes:
        policy: Row label of the policy.
        goal_index: The conversation's goal.
        title: One-line description (user, target, outcome).
        turns: The turns.
        matches_record: Whether the replay reproduced the recorded outcome.
    """

    policy: str
    goal_index: int
    title: str
    turns: tuple[DialogueTurn, ...]
    matches_record: bool


def check_targets(run: EvalRun, records: Sequence[EpisodeRecord], catalog: Catalog) -> None:
    """Refuse records naming a target that is no item of `catalog` (ids 0 .. n_items - 1): records of
    another catalogue, or edited ones.

    Raises:
        CRSError: The first such record, with its conversation, the target and the fix.
    """
    for record in records:
        outside = [t for t in record.targets if not 0 <= t < catalog.n_items]
        if outside:
            raise CRSError(
                f"{run.path / EPISODES_FILE}: conversation {record.goal_index} [targets] = {outside}, no "
                f"item of the {catalog.name} catalogue loaded now (ids 0 to {catalog.n_items - 1}); "
                f"{eval_fix(run.path)}"
            )


def replay(
    run: EvalRun,
    record: EpisodeRecord,
    catalog: Catalog,
    label: str,
    data_dir: str | None = None,
    explainer: ExplainablePersonaRanker | None = None,
) -> ExampleDialogue:
    """Replay `record` of `run` and render it.

    Args:
        run: The eval run the record belongs to.
        record: The conversation.
        catalog: The run's catalogue.
        label: Display name of the policy.
        data_dir: Real-data folder (for rankers that read files).
        explainer: A persona ranker (``explain``, ``prototype_of``) for explanations, or None.

    Raises:
        CRSError: The policy cannot be rebuilt (e.g. its run folder or ranker is gone), or the record
            names a target outside `catalog` (`check_targets`).
    """
    check_targets(run, [record], catalog)
    user = cast(UserKind, run.user)  # a str read from the run folder; make_env checks it is a UserKind
    setting = run.setting if run.setting in SETTINGS else None  # None: files older than its record
    env = make_env(catalog=catalog, split=run.split, user=user, setting=setting)
    if env.max_turns != run.max_turns:
        raise CRSError(f"{run.path}: evaluated with T = {run.max_turns}, the env now has {env.max_turns}")
    # a trained policy and a run's own baselines are rebuilt from the run where it lies now, which may
    # not be where it trained (a moved folder, a sweep task trained in a scratch folder)
    spec = str(run.train.path) if run.train is not None else run.summary.policy_spec
    ranker = None if run.ranker in ("", RUN_RANKER.name) else run.ranker_to_load
    policy, _, _ = resolve_policy(spec, env, ranker, data_dir)
    seed = episode_seed(run.seed, record.goal_index)
    env.reset(seed=seed, options={"goal_index": record.goal_index})
    policy.reset(np.random.default_rng(seed))
    names = None if explainer is None else prototype_names(explainer, catalog)
    turns = [DialogueTurn(render_dialogue(catalog, env.state.history, env.setting).strip(), "open")]
    done = False
    info: dict[str, Any] = {}
    while not done:
        facts = env.state.facts()
        _, _, terminated, truncated, info = env.step(policy.act(env))
        done = terminated or truncated
        turn = env.state.history[-1]
        text = render_dialogue(catalog, [turn], env.setting).strip()
        explanation = ""
        if turn.kind == "recommend" and explainer is not None and names is not None and turn.slate:
            item = turn.accepted_item if turn.accepted_item is not None else turn.slate[0]
            (why,) = prototype_explanations(explainer, facts, [item], names, catalog)
            explanation = why.report_text(catalog)
        turns.append(DialogueTurn(text, turn.kind, explanation, turn.accepted_item is not None))
    matches = (
        bool(info.get("success")) == record.success
        and int(info.get("agent_actions", -1)) == record.agent_actions
    )
    target = ", ".join(catalog.item_names[t] for t in record.targets)
    outcome = f"success after {record.agent_actions} actions" if record.success else "failure"
    title = f"{label}: user {record.user} looking for {target!r}, {outcome}"
    return ExampleDialogue(label, record.goal_index, title, tuple(turns), matches)


def pick_examples(
    reference: tuple[str, EvalRun], contrast: tuple[str, EvalRun] | None, limit: int
) -> list[tuple[str, EvalRun, EpisodeRecord]]:
    """Conversations worth showing: one the reference wins and the contrast loses (both shown), one the
    reference wins quickly, and one it fails; at most `limit` replays."""
    ref_label, ref_run = reference
    chosen: list[tuple[str, EvalRun, EpisodeRecord]] = []
    if contrast is not None and limit >= 2:
        other_label, other_run = contrast
        other = {r.goal_index: r for r in other_run.records}
        for record in ref_run.records:
            twin = other.get(record.goal_index)
            if record.success and twin is not None and not twin.success and "ask" in record.kinds:
                chosen += [(ref_label, ref_run, record), (other_label, other_run, twin)]
                break
    wins = [r for r in ref_run.records if r.success and len(r.kinds) >= 2]
    fails = [r for r in ref_run.records if not r.success]
    shown = {(label, r.goal_index) for label, _, r in chosen}
    for pool in (wins, fails):
        for record in pool:
            if (ref_label, record.goal_index) not in shown:
                chosen.append((ref_label, ref_run, record))
                shown.add((ref_label, record.goal_index))
                break
    return chosen[:limit]


def example_dialogues(
    picks: list[tuple[str, EvalRun, EpisodeRecord]],
    catalog: Catalog,
    data_dir: str | Path | None,
    explainer: ExplainablePersonaRanker | None = None,
    explained: frozenset[Path] = frozenset(),
) -> tuple[list[ExampleDialogue], list[str]]:
    """Replay the picked conversations; problems become notes, not failures of the whole report.

    Only the runs in `explained` (those that rank with `explainer`) get its explanations: a policy over
    another ranker (popularity, TransE) had no persona to name."""
    dialogues, notes = [], []
    for label, run, record in picks:
        try:
            dialogue = replay(
                run,
                record,
                catalog,
                label,
                None if data_dir is None else str(data_dir),
                explainer if run.path in explained else None,
            )
        except (CRSError, ImportError, OSError) as exc:
            notes.append(f"could not replay a {label} conversation ({exc})")
            continue
        if not dialogue.matches_record:
            notes.append(f"the replay of {label} conversation {record.goal_index} differs from its record")
        dialogues.append(dialogue)
    return dialogues, notes
