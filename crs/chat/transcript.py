"""The chat transcript: JSON-ready records of each turn and of the outcome, and writing the file.

A transcript has ``meta`` (dataset, world_seed on the persona world, policy, ranker, seed: the
conversation's own, chat_seed: the ``crs chat --seed`` that chose it, mode, setting), ``user``,
``goal_index``, ``turns`` (each: ``turn``, ``kind``, ``action``, ``answer``, ``candidates_left``,
``explanation``, and after the opening ``reward``; in watch mode a question's ``answer`` has ``slips``:
the aspects the simulated user answered against its target) and ``outcome`` (``ended``, ``success``,
``accepted_item``, ``rank``, ``agent_actions``, ``total_reward``, ``metrics`` of the finished
conversation, ``pending``: the question or slate shown but not answered when the conversation ended
(``turn``, ``kind``, ``action``, ``candidates_left``, ``explanation``; None when there was none), and in
watch mode ``targets``); with ``--memory``, ``memory`` (``file``, ``user``, ``conversations`` remembered,
the persona prior ``before`` and ``after`` the chat; `crs.chat.memory.MemoryChange.to_json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crs.chat.errors import ChatError
from crs.chat.question import Question
from crs.claims import claim_new_file
from crs.common import write_json_atomic
from crs.explain import Explanation
from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, per_episode_metrics
from policies.atomic import unwritable_reason
from simulators.catalog import Catalog


def accepted_item(info: dict[str, Any]) -> int | None:
    """The item the user took in a step's `info` (whose ``accepted_item`` is -1 for none), else None."""
    return int(info["accepted_item"]) if info.get("success") else None


# ------------------------------------------------------------------------------------ turns
def opening_turn(catalog: Catalog, opening: int, n_candidates: int) -> dict[str, Any]:
    """The record of the user's opening (turn 1)."""
    return {
        "turn": 1,
        "kind": "open",
        "action": None,
        "answer": {"said": "open", "accepted": [opening], "accepted_names": [catalog.aspect_names[opening]]},
        "candidates_left": n_candidates,
        "explanation": None,
    }


def pending_turn(
    catalog: Catalog,
    question: Question,
    explanations: list[Explanation],
    turn: int,
    n_candidates: int,
    persona_label: str | None,
) -> dict[str, Any]:
    """The record of a recommender turn shown but not answered (the person left, or the input ended):
    an `agent_turn` without its answer and reward.

    Args:
        catalog: The catalogue (names).
        question: What the recommender asked.
        explanations: The slate's explanations (a recommendation), else empty.
        turn: The turn's number.
        n_candidates: Candidates when it was asked.
        persona_label: Label of the probed persona, for a probe of a persona; else None.
    """
    return {
        "turn": turn,
        "kind": question.kind,
        "action": _action(catalog, question, persona_label),
        "candidates_left": n_candidates,
        "explanation": [e.to_json(catalog) for e in explanations] if question.is_recommend else None,
    }


def simulated_said(question: Question, info: dict[str, Any]) -> str:
    """What a simulated user's answer amounts to, in a person's words ("yes", "accept", ...)."""
    if question.is_recommend:
        return "accept" if accepted_item(info) is not None else "reject"
    if question.is_binary:
        return "yes" if info["answer"] else "no"
    return "choose"


def agent_turn(
    catalog: Catalog,
    question: Question,
    info: dict[str, Any],
    reward: float,
    explanations: list[Explanation],
    said: str,
    persona_label: str | None,
) -> dict[str, Any]:
    """The record of one recommender turn and the user's answer.

    Args:
        catalog: The catalogue (names).
        question: What the recommender asked.
        info: The env's info of the step.
        reward: The step's reward.
        explanations: The slate's explanations (a recommendation), else empty.
        said: The answer in a person's words ("yes", "choose", "accept", ...).
        persona_label: Label of the probed persona, for a probe of a persona; else None.
    """
    return {
        "turn": int(info["turn"]),
        "kind": question.kind,
        "action": _action(catalog, question, persona_label),
        "answer": _answer(catalog, question, info, said),
        "candidates_left": int(info["n_candidates"]),
        "explanation": [e.to_json(catalog) for e in explanations] if question.is_recommend else None,
        "reward": round(float(reward), 6),
    }


def _action(catalog: Catalog, question: Question, persona_label: str | None) -> dict[str, Any]:
    parsed = question.parsed
    action: dict[str, Any] = {"kind": question.kind}
    if question.is_recommend:
        action.update(items=list(parsed.items), item_names=[catalog.item_names[i] for i in parsed.items])
        return action
    action.update(
        aspects=list(question.options), aspect_names=[catalog.aspect_names[int(a)] for a in question.options]
    )
    if question.category is not None:
        taxonomy = catalog.taxonomy
        assert taxonomy is not None
        action.update(category=question.category, category_name=taxonomy.parent_names[question.category])
    if parsed.persona is not None:
        action.update(persona=parsed.persona, persona_label=persona_label)
    return action


def _answer(catalog: Catalog, question: Question, info: dict[str, Any], said: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"said": said}
    if question.is_recommend:
        item = accepted_item(info)
        answer.update(
            accepted_item=item,
            accepted_item_name=catalog.item_names[item] if item is not None else None,
            rank=info["rank"] or None,
        )
        return answer
    accepted = [int(a) for a in info["answer"]]
    answer.update(
        accepted=accepted,
        accepted_names=[catalog.aspect_names[a] for a in accepted],
        rejected=[int(a) for a in info["rejected"]],
    )
    return answer


# ------------------------------------------------------------------------------------ the outcome
def episode_record(
    env: ConversationEnv, info: dict[str, Any] | None, total_reward: float, kinds: list[str]
) -> EpisodeRecord | None:
    """The finished conversation as `crs eval` records it; None when it did not finish."""
    if info is None or not env.done:
        return None
    return EpisodeRecord(
        goal_index=int(info["goal_index"]),
        user=env.state.user,
        targets=tuple(int(t) for t in info.get("targets", ())),
        success=bool(info["success"]),
        agent_actions=int(info["agent_actions"]),
        rank=info["rank"] or None,
        total_reward=total_reward,
        kinds=tuple(kinds),
    )


def outcome_record(
    env: ConversationEnv,
    info: dict[str, Any] | None,
    total_reward: float,
    kinds: list[str],
    ended: str,
    *,
    watched: bool,
    pending: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The transcript's ``outcome``.

    Args:
        env: The env after the conversation.
        info: The env's info of the last step (None when no step was taken).
        total_reward: Sum of the rewards.
        kinds: The env's kind of each agent turn.
        ended: How the conversation ended ("accepted", "quit", ...).
        watched: Watch mode: the simulated user's hidden target (and active persona) are revealed.
        pending: The turn shown but not answered when the conversation ended (`pending_turn`), or None.
    """
    catalog = env.catalog
    record = episode_record(env, info, total_reward, kinds)
    info = info or {}
    item = accepted_item(info)
    outcome: dict[str, Any] = {
        "ended": ended,
        "success": bool(info.get("success", False)),
        "accepted_item": item,
        "accepted_item_name": catalog.item_names[item] if item is not None else None,
        "rank": info.get("rank") or None,
        "agent_actions": int(info.get("agent_actions", 0)),
        "total_reward": round(total_reward, 6),
        "metrics": None,
        "pending": pending,
    }
    if record is not None:
        metrics = per_episode_metrics([record], env.max_turns)
        outcome["metrics"] = {name: float(values[0]) for name, values in metrics.items()}
    if watched and record is not None:
        outcome["targets"] = list(record.targets)
        outcome["target_names"] = [catalog.item_names[t] for t in record.targets]
        persona = getattr(env.user, "active_persona_id", None)
        truth = catalog.truth
        if persona is not None and truth is not None:
            outcome["active_persona"] = truth.persona_names[int(persona)]
    return outcome


# ------------------------------------------------------------------------------------ the file
def check_transcript_path(path: Path, *, overwrite: bool = False) -> None:
    """Refuse a transcript path before the chat starts rather than after it: an existing file
    (unless `overwrite`), a folder, something else that is not a regular file (a FIFO, a device such
    as /dev/null: the atomic write would replace it, even with `overwrite`), or a path below a file.

    Raises:
        OutputExistsError: `path` is an existing file and `overwrite` is False.
        CRSError: `path` is a folder.
        ChatError: `path` exists and is neither a file nor a folder, a parent of `path` is a file, or
            its nearest existing folder takes no new file (no permission, a read-only or special
            filesystem such as /proc).
    """
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ChatError(
            f"--transcript {path} is not a regular file (a FIFO, a device or a socket), and writing the "
            "transcript would replace it; give the path of a file"
        )
    claim_new_file(path, "transcript", overwrite=overwrite)
    parent = path.parent
    while not parent.exists():  # the filesystem root always exists
        parent = parent.parent
    if not parent.is_dir():
        raise ChatError(f"could not write the transcript to {path} ({parent} is a file); pick another path")
    reason = unwritable_reason(parent)  # where the transcript's folders will be
    if reason is not None:
        raise ChatError(f"could not write the transcript to {path} ({reason}); pick another path")


def free_path(path: Path) -> Path:
    """`path` with the first ``-N`` suffix (chat-1.json, chat-2.json, ...) that names no file yet."""
    number = 1
    while (candidate := path.with_name(f"{path.stem}-{number}{path.suffix}")).exists():
        number += 1
    return candidate


def write_transcript(path: Path, transcript: dict[str, Any]) -> None:
    """Write `transcript` as JSON to `path` (atomically), creating its folder.

    Raises:
        ChatError: The file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, transcript)
    except OSError as error:
        raise ChatError(f"could not write the transcript to {path} ({error}); pick another path") from None
