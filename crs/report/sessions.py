"""Returning users in a report: per-session curves of `crs eval --sessions` folders (issue #16).

A `crs eval --sessions` folder's ``summary.json`` has a ``sessions`` block and its ``episodes.jsonl``
one line per session (`envs.sessions.SessionRecord`, plus the memory's belief). Folders that played
the same returning users (dataset, world seed, split, regime, S, policy, ranker) form one
`SessionComparison`, one `MemorySeries` per memory mode ("frozen", "update", "oracle"; an update that
also learns aspect weights is its own series, "update (both)" or "update (aspects)", `series_name`),
each pooling its run seeds. For each series:

- SR@15 per session with a 95% bootstrap CI over the (seed, sequence) conversations of that session;
- for a regime with a change session (switch, new persona), SR@15 by *sessions since the change*
  (offset d = session − change session; d < 0 before it), the level before the change (every session
  with d < 0 pooled), and the **recovery**: the first d >= 0 from which SR@15 is back within
  `RECOVERY_TOLERANCE` (0.02) of that level and stays there at every later d (0: no drop at all; None:
  not within the S sessions; one noisy session back near the level is no recovery);
- persona tracking from the session after the change (the memory's most likely persona before the
  session is the true active one), pooled over seeds; none for the oracle;
- "last time" over the same sessions (every session but the first without a change): the memory's most
  likely persona before the session is the *previous* session's active one, as `crs chat --memory` says
  when it opens (`crs.app.sessions`).

A figure over several sessions per user (every session, before or from the change, tracking, last time)
has a cluster bootstrap CI that resamples whole (seed, sequence) users, as `crs eval --sessions` does:
one user's sessions are correlated.

Paired differences against the "frozen" series use the conversations both played (same seed, sequence
and session, same target): per (seed, sequence) the mean difference over the sessions from the change
on (every session without a change), then a 95% bootstrap CI over those; and per offset d, the same
difference at d. "Gap closed" at d is (update − frozen) / (oracle − frozen) of the means at d, over
the seeds all three series played, at the offsets where oracle − frozen's paired CI excludes 0 (a ratio
over a gap that may be none is noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crs.app.run_folder import EPISODES_FILE
from crs.report.inputs import EvalRun
from envs.metrics import MIN_PAIRED, EpisodeRecord, MetricSummary, bootstrap_ci, ci_sign, per_episode_metrics
from policies.memory import UpdateRule
from simulators.errors import CRSError

METRIC = "SR@15"
"""The metric of the per-session curves."""

RECOVERY_TOLERANCE: float = 0.02
"""SR@15 counts as recovered once within this of its level before the change (issue #16)."""

MEMORY_ORDER: tuple[str, ...] = ("frozen", "update", "oracle")
"""Series order in tables and plots; other memory names follow."""

REFERENCE = "frozen"
"""The series paired differences are taken against."""


@dataclass(frozen=True)
class SessionLine:
    """One session of a returning-user evaluation, as the report needs it.

    Attributes:
        seed: The run seed.
        sequence: Sequence index.
        session: Session index.
        change_session: The sequence's change session, or None.
        targets: The session's target items (pairing check).
        value: The session's `METRIC` (0 or 1 for SR@15).
        tracked: The memory's most likely persona before the session was the true active one (None when
            the line does not say, e.g. an oracle run's).
        last_time: It was the previous session's true active one (None for a first session, and when
            the lines do not say).
    """

    seed: int
    sequence: int
    session: int
    change_session: int | None
    targets: tuple[int, ...]
    value: float
    tracked: bool | None
    last_time: bool | None = None

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.seed, self.sequence, self.session)

    @property
    def offset(self) -> int | None:
        """Sessions since the change (negative before it), or None without a change."""
        return None if self.change_session is None else self.session - self.change_session


def read_session_lines(run: EvalRun, metric: str = METRIC) -> list[SessionLine]:
    """The session lines of a `crs eval --sessions` folder.

    Raises:
        CRSError: The folder has no sessions block, or a line lacks the session fields (named).
    """
    block = run.summary.sessions
    if block is None:
        raise CRSError(f"{run.path}: not a `crs eval --sessions` folder (no sessions block in summary.json)")
    path = run.path / EPISODES_FILE
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, RecursionError) as error:
        raise CRSError(
            f"{path} is unreadable ({type(error).__name__}); re-run `crs eval --sessions`"
        ) from None
    try:
        values = per_episode_metrics([EpisodeRecord.from_dict(row) for row in rows], run.max_turns)[metric]
        active_of = {(int(row["sequence"]), int(row["session"])): row.get("active_slot") for row in rows}
        lines = []
        for row, value in zip(rows, values, strict=True):
            change = row.get("change_session")
            believed, active = row.get("believed"), row.get("active_slot")
            before = active_of.get((int(row["sequence"]), int(row["session"]) - 1))
            said = believed is not None and block.memory != "oracle"
            tracked = believed == active if said and active is not None else None
            last_time = believed == before if said and before is not None else None
            lines.append(
                SessionLine(
                    seed=run.seed,
                    sequence=int(row["sequence"]),
                    session=int(row["session"]),
                    change_session=None if change is None else int(change),
                    targets=tuple(int(t) for t in row["targets"]),
                    value=float(value),
                    tracked=tracked,
                    last_time=last_time,
                )
            )
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise CRSError(
            f"{path}: a line lacks the session fields ({error}); re-run `crs eval --sessions`"
        ) from None
    return lines


@dataclass(frozen=True)
class MemorySeries:
    """One memory mode's runs (seeds) of a returning-user comparison.

    Attributes:
        memory: "frozen", "update", "oracle" (`policies.memory.MEMORY_MODES`).
        runs: Its eval folders, one per seed.
        overall: `METRIC` over every session of every seed.
        by_session: `METRIC` per session (index = session), pooled over seeds.
        by_offset: `METRIC` per sessions-since-the-change (regimes with a change; else empty).
        before_change: `METRIC` over every session before the change, or None.
        after_change: `METRIC` over every session from the change on, or None.
        recovery: First offset d >= 0 from which `METRIC` >= before_change − `RECOVERY_TOLERANCE` at every
            offset; None when none within the sessions or no change.
        tracking_by_session: Persona tracking per session (None for the oracle).
        tracking_all: Persona tracking over every session (None for the oracle).
        tracking_after_change: Persona tracking over the sessions after the change session, or None.
        last_time: "Last time" over the sessions after the change session (every session but the first
            without a change); None for the oracle.
    """

    memory: str
    runs: tuple[EvalRun, ...]
    overall: MetricSummary
    by_session: tuple[MetricSummary, ...]
    by_offset: Mapping[int, MetricSummary]
    before_change: MetricSummary | None
    after_change: MetricSummary | None
    recovery: int | None
    tracking_by_session: tuple[MetricSummary, ...] | None
    tracking_all: MetricSummary | None
    tracking_after_change: MetricSummary | None
    last_time: MetricSummary | None = None
    lines: tuple[SessionLine, ...] = field(repr=False, default=())

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted({run.seed for run in self.runs}))


@dataclass(frozen=True)
class PairedSessions:
    """A series minus the reference ("frozen") on the conversations both played.

    Attributes:
        memory: The series' memory.
        after_change: Mean per-(seed, sequence) difference over the sessions from the change on (all
            sessions without a change), 95% bootstrap CI over sequences.
        per_seed: The same, per seed.
        by_offset: The difference at each sessions-since-the-change offset.
        n_sequences: Sequences paired.
        n_sessions: Sessions paired (every session both played).
        n_apart: Of those, the sessions one series succeeded in and the other did not: few of them
            explain a difference of about 0 (the memory barely changed what was played).
    """

    memory: str
    after_change: MetricSummary
    per_seed: Mapping[int, MetricSummary]
    by_offset: Mapping[int, MetricSummary]
    n_sequences: int
    n_sessions: int = 0
    n_apart: int = 0

    def significant(self) -> bool:
        """The CI excludes 0 (over at least `MIN_PAIRED` sequences)."""
        return ci_sign(self.after_change, self.n_sequences) != 0


@dataclass(frozen=True)
class SessionComparison:
    """Memory modes played on the same returning users.

    Attributes:
        title: "<dataset> · <policy> · regime <regime> · S sessions · N users".
        regime: The regime.
        sessions: S.
        sequences: N per seed.
        series: One per memory mode, in `MEMORY_ORDER`.
        paired: Each non-reference series minus "frozen" (empty without a frozen series).
        gap_closed: Offset d -> (update − frozen) / (oracle − frozen) at d, for d >= 0, over the seeds
            all three played (empty unless all three series and a change).
    """

    title: str
    regime: str
    sessions: int
    sequences: int
    series: tuple[MemorySeries, ...]
    paired: tuple[PairedSessions, ...]
    gap_closed: Mapping[int, float]

    @property
    def has_change(self) -> bool:
        return any(s.by_offset for s in self.series)


def _ci(values: Sequence[float], seed: int = 0) -> MetricSummary:
    """Mean and 95% bootstrap CI of values of one session (or one offset, or one mean) per user."""
    return bootstrap_ci(np.asarray(values, dtype=np.float64), seed=seed)


def _pooled(
    lines: Sequence[SessionLine], value: Callable[[SessionLine], float], seed: int = 0
) -> MetricSummary:
    """Mean and 95% bootstrap CI of `value` over `lines`, several sessions per user: whole users, (seed,
    sequence), are resampled (one user's sessions are correlated), as `crs eval --sessions` does."""
    users: dict[tuple[int, int], int] = {}
    clusters = [users.setdefault((x.seed, x.sequence), len(users)) for x in lines]
    return bootstrap_ci(np.asarray([value(x) for x in lines], dtype=np.float64), seed=seed, clusters=clusters)


def _value(line: SessionLine) -> float:
    return line.value


def _tracked(line: SessionLine) -> float:
    return float(bool(line.tracked))


def _series(memory: str, runs: Sequence[EvalRun], sessions: int) -> MemorySeries:
    lines = [line for run in sorted(runs, key=lambda r: r.seed) for line in read_session_lines(run)]
    # one seed: the bootstrap `crs eval --sessions` drew (its seed), so summary.json's intervals are these
    seeds = {run.seed for run in runs}
    seed = next(iter(seeds)) if len(seeds) == 1 else 0
    # the lines grouped in one pass, not filtered once per session: S is as large as the records allow
    of_session: dict[int, list[SessionLine]] = {}
    of_offset: dict[int, list[SessionLine]] = {}
    for x in lines:
        of_session.setdefault(x.session, []).append(x)
        if x.offset is not None:
            of_offset.setdefault(x.offset, []).append(x)
    by_session = tuple(_ci([x.value for x in of_session.get(s, [])], seed) for s in range(sessions))
    offsets = sorted(of_offset)
    by_offset = {d: _ci([x.value for x in of_offset[d]], seed) for d in offsets}
    before = [x for x in lines if x.offset is not None and x.offset < 0]
    after = [x for x in lines if x.offset is not None and x.offset >= 0]
    before_change = _pooled(before, _value, seed) if before else None
    recovery = None
    if before_change is not None:
        level = before_change.mean - RECOVERY_TOLERANCE
        after_offsets = [d for d in offsets if d >= 0]
        # the level must hold: a noisy session near it, followed by a drop, is no recovery
        recovery = next(
            (
                d
                for i, d in enumerate(after_offsets)
                if all(by_offset[e].mean >= level for e in after_offsets[i:])
            ),
            None,
        )
    tracked = all(x.tracked is not None for x in lines)
    tracking_by_session = (
        tuple(_ci([_tracked(x) for x in of_session.get(s, [])], seed) for s in range(sessions))
        if tracked
        else None
    )
    tracked_after = [x for x in lines if x.offset is not None and x.offset > 0]
    changed = any(x.offset is not None for x in lines)
    last_time = [
        x
        for x in lines
        if x.last_time is not None and (not changed or (x.offset is not None and x.offset > 0))
    ]
    return MemorySeries(
        memory=memory,
        runs=tuple(runs),
        overall=_pooled(lines, _value, seed),
        by_session=by_session,
        by_offset=by_offset,
        before_change=before_change,
        after_change=_pooled(after, _value, seed) if after else None,
        recovery=recovery,
        tracking_by_session=tracking_by_session,
        tracking_all=_pooled(lines, _tracked, seed) if tracked else None,
        tracking_after_change=_pooled(tracked_after, _tracked, seed) if tracked and tracked_after else None,
        last_time=_pooled(last_time, lambda x: float(bool(x.last_time)), seed) if last_time else None,
        lines=tuple(lines),
    )


def _paired(series: MemorySeries, reference: MemorySeries) -> PairedSessions | None:
    """`series` − `reference` on the sessions both played; None when they share none."""
    mine = {x.key: x for x in series.lines}
    pairs = [(x, mine[x.key]) for x in reference.lines if x.key in mine]
    if not pairs:
        return None
    for ref, other in pairs:
        if ref.targets != other.targets:
            raise CRSError(
                f"memory {series.memory} and {reference.memory}: seed {ref.seed}, sequence {ref.sequence}, "
                f"session {ref.session} had different targets; compare runs of the same `crs eval "
                "--sessions` command line with only --memory changed"
            )
    by_sequence: dict[tuple[int, int], list[float]] = {}
    by_offset: dict[int, list[float]] = {}
    for ref, other in pairs:
        if ref.offset is None or ref.offset >= 0:
            by_sequence.setdefault((ref.seed, ref.sequence), []).append(other.value - ref.value)
        if ref.offset is not None:
            by_offset.setdefault(ref.offset, []).append(other.value - ref.value)
    means = {key: float(np.mean(v)) for key, v in by_sequence.items()}
    seeds = sorted({seed for seed, _ in means})
    return PairedSessions(
        memory=series.memory,
        after_change=_ci(list(means.values())),
        per_seed={seed: _ci([m for (s, _), m in means.items() if s == seed]) for seed in seeds},
        by_offset={d: _ci(v) for d, v in sorted(by_offset.items())},
        n_sequences=len(means),
        n_sessions=len(pairs),
        n_apart=sum(ref.value != other.value for ref, other in pairs),
    )


def _gap_at(oracle: PairedSessions, d: int) -> bool:
    """Whether oracle − frozen at offset d has a CI above 0: a gap that `_gap_closed` may divide by."""
    at = oracle.by_offset.get(d)
    return at is not None and at.low > 0


def _gap_closed(frozen: MemorySeries, update: MemorySeries, oracle: MemorySeries) -> dict[int, float]:
    """Offset d >= 0 -> (update − frozen) / (oracle − frozen) of the means at d, over the seeds all three
    series played (a mode run for fewer seeds would compare other users)."""
    shared = set(frozen.seeds) & set(update.seeds) & set(oracle.seeds)

    def means(series: MemorySeries) -> dict[int, float]:
        at: dict[int, list[float]] = {}
        for line in series.lines:
            if line.seed in shared and line.offset is not None and line.offset >= 0:
                at.setdefault(line.offset, []).append(line.value)
        return {d: float(np.mean(values)) for d, values in at.items()}

    f, u, o = means(frozen), means(update), means(oracle)
    return {d: (u[d] - f[d]) / (o[d] - f[d]) for d in sorted(f) if d in u and d in o and o[d] - f[d] > 0}


def _group_key(run: EvalRun) -> tuple[object, ...]:
    block = run.summary.sessions
    assert block is not None
    return (
        run.dataset,
        run.world_seed,
        run.split,
        block.regime,
        block.sessions,
        block.sequences,
        run.summary.policy_spec,
        run.ranker_identity,
    )


RULE_DEFAULTS: dict[str, float] = {
    name: float(getattr(UpdateRule, name)) for name in ("aspect_rate", "update_prior")
}
"""Update constants that runs before them did not record, at `UpdateRule`'s defaults, which those runs
used (summary.json reads every constant as a float: update_prior True is 1.0)."""


def _rule(run: EvalRun) -> dict[str, float]:
    block = run.summary.sessions
    return {} if block is None or not block.rule else {**RULE_DEFAULTS, **block.rule}


def series_name(run: EvalRun) -> str:
    """The series a run belongs to: its memory mode, plus what an update moves when it learns aspect
    weights ("update (both)": prior and aspect weights; "update (aspects)": aspect weights only)."""
    block = run.summary.sessions
    assert block is not None
    rule = _rule(run)
    if block.memory != "update" or not rule.get("aspect_rate", 0.0) > 0.0:
        return block.memory
    return "update (both)" if rule.get("update_prior", 1.0) else "update (aspects)"


def session_comparisons(runs: Sequence[EvalRun]) -> list[SessionComparison]:
    """The returning-user comparisons among `runs` (those with a sessions block), in input order.

    Raises:
        CRSError: Two runs of one memory mode and seed in one comparison (a duplicate), or runs said to
            pair that played different targets.
    """
    groups: dict[tuple[object, ...], dict[str, list[EvalRun]]] = {}
    for run in runs:
        block = run.summary.sessions
        if block is None:
            continue
        by_memory = groups.setdefault(_group_key(run), {})
        name = series_name(run)
        same = [r for r in by_memory.get(name, []) if r.seed == run.seed]
        if same:
            raise CRSError(
                f"{run.path} and {same[0].path} are the same returning-user run (memory {name}, seed "
                f"{run.seed}); pass one of them"
            )
        for other in by_memory.get(name, [])[:1]:
            if _rule(other) != _rule(run):
                raise CRSError(
                    f"{run.path} and {other.path} ran memory {name} with different update constants "
                    f"({_rule(run)} vs {_rule(other)}); report them separately"
                )
        by_memory.setdefault(name, []).append(run)
    out = []
    for key, by_memory in groups.items():
        dataset, _, split, regime, sessions, sequences, policy, _ = key
        assert isinstance(sessions, int) and isinstance(sequences, int)
        order = sorted(by_memory, key=lambda m: (MEMORY_ORDER.index(m) if m in MEMORY_ORDER else 99, m))
        series = tuple(_series(memory, by_memory[memory], sessions) for memory in order)
        named = {s.memory: s for s in series}
        paired: list[PairedSessions] = []
        if REFERENCE in named:
            for s in series:
                if s.memory != REFERENCE and (diff := _paired(s, named[REFERENCE])) is not None:
                    paired.append(diff)
        gap: dict[int, float] = {}
        if {"frozen", "update", "oracle"} <= set(named):
            gap = _gap_closed(named["frozen"], named["update"], named["oracle"])
            oracle = next((d for d in paired if d.memory == "oracle"), None)
            gap = {d: v for d, v in gap.items() if oracle is not None and _gap_at(oracle, d)}
        seeds = sorted({run.seed for runs_ in by_memory.values() for run in runs_})
        others = [f"{s.memory}: {', '.join(map(str, s.seeds))}" for s in series if list(s.seeds) != seeds]
        title = (
            f"{dataset} ({split}) · {policy} · regime {regime} · {sessions} sessions · {sequences} users x "
            f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}"
            + (f"; {'; '.join(others)}" if others else "")
            + ")"
        )
        out.append(
            SessionComparison(
                title=title,
                regime=str(regime),
                sessions=sessions,
                sequences=sequences,
                series=series,
                paired=tuple(paired),
                gap_closed=gap,
            )
        )
    return out


def recovery_text(series: MemorySeries) -> str:
    """The recovery in words: "0 sessions (no drop at the change)", "2 sessions", "not within the
    sessions", "n/a"."""
    if series.before_change is None:
        return "n/a"
    if series.recovery is None:
        return "not within the sessions"
    if series.recovery == 0:
        return "0 sessions (no drop at the change)"
    return f"{series.recovery} session{'s' if series.recovery > 1 else ''}"


def sessions_json(comparison: SessionComparison) -> dict[str, object]:
    """A comparison as JSON-ready data (metrics.json)."""

    def summary(value: MetricSummary | None) -> dict[str, float] | None:
        return None if value is None else {"mean": value.mean, "low": value.low, "high": value.high}

    return {
        "title": comparison.title,
        "regime": comparison.regime,
        "sessions": comparison.sessions,
        "sequences": comparison.sequences,
        "metric": METRIC,
        "series": [
            {
                "memory": s.memory,
                "overall": summary(s.overall),
                "tracking_all": summary(s.tracking_all),
                "paths": [str(run.path) for run in s.runs],
                "seeds": list(s.seeds),
                "by_session": [summary(v) for v in s.by_session],
                "by_offset": {str(d): summary(v) for d, v in s.by_offset.items()},
                "before_change": summary(s.before_change),
                "after_change": summary(s.after_change),
                "recovery": s.recovery,
                "tracking_by_session": None
                if s.tracking_by_session is None
                else [summary(v) for v in s.tracking_by_session],
                "tracking_after_change": summary(s.tracking_after_change),
                "last_time": summary(s.last_time),
            }
            for s in comparison.series
        ],
        "paired": [
            {
                "memory": p.memory,
                "reference": REFERENCE,
                "after_change": summary(p.after_change),
                "per_seed": {str(seed): summary(v) for seed, v in p.per_seed.items()},
                "by_offset": {str(d): summary(v) for d, v in p.by_offset.items()},
                "n_sequences": p.n_sequences,
                "n_sessions": p.n_sessions,
                "n_apart": p.n_apart,
            }
            for p in comparison.paired
        ],
        "gap_closed": {str(d): v for d, v in comparison.gap_closed.items()},
    }


SESSION_HEADERS: tuple[str, ...] = (
    "memory",
    "seeds",
    f"{METRIC} all sessions",
    f"{METRIC} before the change",
    f"{METRIC} from the change on",
    "recovery",
    "tracking",
    "last time",
)
"""Columns of a returning-user table (`session_rows`)."""


def _text(value: MetricSummary | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{value.mean:.1%} [{value.low:.1%}, {value.high:.1%}]"
    return f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"


def _tracking_cell(value: MetricSummary | None, oracle: bool, has_change: bool) -> str:
    """A tracking or "last time" cell: the oracle is handed the truth; None else means no session after
    the change (or no session to count)."""
    if oracle:
        return "n/a (handed the truth)"
    if value is None:
        return "n/a (no session after the change)" if has_change else "n/a"
    return _text(value, percent=True)


def session_rows(comparison: SessionComparison) -> list[list[str]]:
    """The table's cells, one row per memory mode (`SESSION_HEADERS`); tracking and "last time" are over
    the sessions after the change when there is one, else over every session."""
    rows = []
    for s in comparison.series:
        tracking = s.tracking_after_change if comparison.has_change else s.tracking_all
        oracle = s.tracking_all is None  # handed the true persona: nothing of its own to track
        rows.append(
            [
                s.memory,
                ", ".join(map(str, s.seeds)),
                _text(s.overall),
                _text(s.before_change),
                _text(s.after_change),
                recovery_text(s),
                _tracking_cell(tracking, oracle, comparison.has_change),
                _tracking_cell(s.last_time, oracle, comparison.has_change),
            ]
        )
    return rows


def session_headlines(comparison: SessionComparison) -> list[str]:
    """For the report's answer: each updating memory minus frozen, paired per user (the oracle, which is
    handed the truth, is a bound, not an answer)."""
    return [
        f"Returning users ({comparison.title}): {_paired_text(comparison, p)})."
        for p in comparison.paired
        if p.memory != "oracle"
    ]


def _paired_text(comparison: SessionComparison, p: PairedSessions) -> str:
    """ "update − frozen, SR@15 from the change session on, paired per user: +0.200 [...] (CI excludes 0"
    (the caller closes the parenthesis)."""
    where = "from the change session on" if comparison.has_change else "over every session"
    if p.n_sequences < MIN_PAIRED:
        verdict = f"fewer than {MIN_PAIRED} users: no evidence either way"
    else:
        verdict = "CI excludes 0" if p.significant() else "CI includes 0"
    return (
        f"{p.memory} − {REFERENCE}, {METRIC} {where}, paired per user: {_signed(p.after_change)} ({verdict}"
    )


def session_sentences(comparison: SessionComparison) -> list[str]:
    """The paired differences and the gap closed, one sentence each (plain text)."""
    out = []
    for p in comparison.paired:
        seeds = "; ".join(f"seed {seed} {_signed(v)}" for seed, v in p.per_seed.items())
        out.append(f"{_paired_text(comparison, p)}; {p.n_sequences} users; {seeds}).")
        out.append(
            f"{p.memory} and {REFERENCE} ended differently (one succeeded, the other not) in "
            f"{p.n_apart:,} of the {p.n_sessions:,} sessions both played."
        )
        if comparison.has_change:
            steps = ", ".join(f"d={d}: {_signed(v)}" for d, v in p.by_offset.items() if d >= 0)
            out.append(f"{p.memory} − {REFERENCE} by sessions since the change: {steps}.")
    out += _tracks_worse(comparison)
    if comparison.gap_closed:
        gaps = ", ".join(f"d={d}: {v:.0%}" for d, v in comparison.gap_closed.items())
        out.append(
            f"Share of the frozen-to-oracle gap the update closes, by sessions since the change: {gaps} "
            "(only where oracle − frozen's CI excludes 0)."
        )
    out.append(
        f"Recovery: sessions after the change until {METRIC} is back within {RECOVERY_TOLERANCE} of the "
        "level before it and stays there in every later session measured. Tracking: the memory's most "
        "likely persona before a session is the true active "
        "one; last time: it is the previous session's active one, as `crs chat --memory` says when it "
        "opens" + (" (both over the sessions after the change session)." if comparison.has_change else ".")
    )
    return out


def _tracks_worse(comparison: SessionComparison) -> list[str]:
    """A sentence for each memory that names the active persona less often than frozen (its CI wholly
    below frozen's mean), over the sessions the tracking column counts: an update that chases each
    session's feedback can leave the user's usual self, and the table alone does not say so."""

    def tracking(series: MemorySeries) -> MetricSummary | None:
        return series.tracking_after_change if comparison.has_change else series.tracking_all

    named = {s.memory: s for s in comparison.series}
    frozen = tracking(named[REFERENCE]) if REFERENCE in named else None
    out = []
    for series in comparison.series:
        mine = tracking(series)
        if frozen is None or mine is None or series.memory == REFERENCE or mine.high >= frozen.mean:
            continue
        out.append(
            f"Note: {series.memory} names the active persona less often than {REFERENCE} "
            f"({mine.mean:.1%} [{mine.low:.1%}, {mine.high:.1%}] vs {frozen.mean:.1%}): its memory moved "
            "away from the persona that was active."
        )
    return out


def _signed(value: MetricSummary) -> str:
    return f"{value.mean:+.3f} [{value.low:+.3f}, {value.high:+.3f}]"
