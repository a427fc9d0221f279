"""`crs eval --sessions` folders written by hand with known outcomes, shared by the report's tests of
returning-user curves: every figure the report draws from them is known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crs.app.run_folder import EvalSummary, SessionsSummary, write_json_lines

Outcome = Callable[[int, int], bool]
"""(sequence, session) -> success."""


def write_sessions_folder(
    out: Path,
    memory: str,
    seed: int,
    success: Outcome,
    *,
    sessions: int,
    sequences: int,
    change: int | None,
    regime: str | None = None,
    active_from: int | None = None,
    believed: Callable[[int, int], int] | None = None,
    rule: dict[str, float] | None = None,
    notes: tuple[str, ...] = (),
    targets_shift: int = 0,
    ranker_identity: str | None = None,
    conversations: str | None = None,
) -> Path:
    """Write `out` as `crs eval --sessions` does: `sequences` users x `sessions` sessions of ask-4 with
    memory `memory`, each session's success given by `success`.

    Args:
        change: The session every sequence switches at (None: no switch).
        regime: The summary's regime (default: "switch" with a change, else "stable").
        active_from: The session from which the active persona is slot 1, before it slot 0 (default:
            `change`; None with no change: slot 0 throughout).
        believed: The memory's most likely slot per (sequence, session) (default: 0).
        targets_shift: Added to every target, to make conversations that do not pair.
        conversations: summary.json's conversations label (default: "sessions-{seed}").
    """
    active_from = change if active_from is None else active_from
    out.mkdir(parents=True)
    lines = []
    for sequence in range(sequences):
        for session in range(sessions):
            ok = success(sequence, session)
            lines.append(
                {
                    "sequence": sequence,
                    "session": session,
                    "active": 0,
                    "persona": 0,
                    "change_session": change,
                    "goal_index": sequence * sessions + session,
                    "user": sequence,
                    "targets": [100 * sequence + session + targets_shift],
                    "success": ok,
                    "agent_actions": 3 if ok else 14,  # a failure at the turn limit: T - 1 actions
                    "rank": 1 if ok else None,
                    "total_reward": 1.0 if ok else -1.0,
                    "kinds": ["ask", "ask", "recommend"] if ok else ["ask"] * 14,
                    "believed": 0 if believed is None else believed(sequence, session),
                    "active_slot": 0 if active_from is None or session < active_from else 1,
                    "dominant_slot": 0,
                    "active_is_dominant": True,
                }
            )
    block = SessionsSummary(
        regime=regime or ("switch" if change is not None else "stable"),
        sessions=sessions,
        sequences=sequences,
        memory=memory,
        rule=rule or {},
        rows=(),
        after_change={},
    )
    summary = EvalSummary(
        policy=f"ask-4 (memory {memory})",
        policy_spec="ask-4",
        dataset="persona_world",
        split="test",
        ranker="popularity",
        user="persona",
        setting="binary",
        episodes=len(lines),
        seed=seed,
        world_seed=0,
        conversations=conversations or f"sessions-{seed}",
        max_turns=15,
        notes=notes,
        metrics={},
        seconds=1.0,
        conversations_per_second=1.0,
        versions={},
        sessions=block,
        ranker_identity=ranker_identity,
    )
    write_json_lines(out, lines)
    summary.write(out)
    return out
