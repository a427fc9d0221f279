"""`crs report` with returning-user runs (`crs eval --sessions`) of trained configurations: they never
pool with a plain `crs eval` of the same configuration (nor with another memory of it), every interval
over several sessions of one user resamples whole users, their paired counts are users, and a change
session out of range is refused in one line. The folders are written by hand with known outcomes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from crs.app.run_folder import EvalSummary, SessionsSummary, write_json_lines
from crs.report import load_inputs
from crs.report.analysis import (
    ABLATIONS,
    DIFF_SEED,
    METRICS,
    Row,
    Table,
    answer,
    build_tables,
    paired_difference,
    separation,
    sr_curve,
)
from crs.report.build import Report
from crs.report.inputs import EvalRun, TrainInfo, read_eval_dir
from crs.report.render import to_html, to_latex, to_markdown
from crs.report.sessions import session_comparisons
from envs.metrics import MetricSummary, bootstrap_ci
from simulators.errors import CRSError

SESSIONS = 4
USERS = 24
CHANGE = 2  # every user switches at session 2
PLAIN = 30  # conversations of a plain `crs eval`
FLAGS = {
    "full": (True, True),
    "persona-blind": (False, True),
    "aspect-blind": (True, False),
    "both-off": (False, False),
}


def success(user: int, session: int, shift: int = 0) -> bool:
    """Known outcomes, the same in every session of a user before the change and in every one after it
    (one user's sessions are correlated); `shift` sets a configuration apart."""
    return (user * (7 if session < CHANGE else 3) + shift) % 10 < 6


def tracked(user: int, session: int) -> bool:
    """Whether the memory names the active persona before a session: for every third user, in every one."""
    return user % 3 == 0


def write_eval(
    root: Path, name: str, seed: int, sessions: bool, memory: str = "update", shift: int = 0, **line: object
) -> Path:
    """A `crs eval` folder: `USERS` returning users x `SESSIONS` sessions (regime switch), or `PLAIN`
    conversations; `line` overrides fields of the first episode line."""
    out = root / name
    out.mkdir(parents=True)
    lines = []
    for index in range(USERS * SESSIONS if sessions else PLAIN):
        user, session = divmod(index, SESSIONS) if sessions else (index, 0)
        ok = success(user, session, shift)
        record = {
            "goal_index": index,
            "user": user,
            "targets": [1000 + index],
            "success": ok,
            "agent_actions": 3 if ok else 14,
            "rank": 1 if ok else None,
            "total_reward": 1.0 if ok else -1.0,
            "kinds": ["ask", "ask", "recommend"] if ok else ["ask"] * 14,
        }
        if sessions:
            active = int(session >= CHANGE)
            record |= {
                "sequence": user,
                "session": session,
                "change_session": CHANGE,
                "active_slot": active,
                "believed": active if tracked(user, session) else 1 - active,
                "dominant_slot": 0,
                "active_is_dominant": True,
            }
        lines.append(record)
    lines[0] |= line
    block = SessionsSummary(
        regime="switch", sessions=SESSIONS, sequences=USERS, memory=memory, rule={}, rows=(), after_change={}
    )
    EvalSummary(
        policy=f"{name} (memory {memory})" if sessions else name,
        policy_spec=f"runs/{name}",
        dataset="persona_world",
        split="test",
        ranker="popularity",
        user="persona",
        setting="binary",
        episodes=len(lines),
        seed=seed,
        world_seed=0,
        conversations="returning" if sessions else "plain",
        max_turns=15,
        notes=(),
        metrics={},
        seconds=1.0,
        conversations_per_second=1.0,
        versions={},
        sessions=block if sessions else None,
        ranker_identity="popularity",
    ).write(out)
    write_json_lines(out, lines)
    return out


def trained(root: Path, ablation: str, seed: int, sessions: bool, memory: str = "update") -> EvalRun:
    """The evaluation of train run "<ablation>-s<seed>", plain or of returning users."""
    persona, aspect = FLAGS[ablation]
    name = f"{ablation}-s{seed}"
    info = TrainInfo(
        path=root / "runs" / name,
        name=name,
        persona_attention=persona,
        aspect_attention=aspect,
        seed=seed,
        dataset="persona_world",
        pretrained=None,
        config={"persona_attention": persona, "aspect_attention": aspect, "seed": seed},
    )
    shift = ABLATIONS.index(ablation)
    folder = write_eval(root / f"eval-{memory}", name, seed, sessions, memory, shift)
    return read_eval_dir(folder, train=info)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> list[Table]:
    """`crs eval -p runs/<ablation>-s0` and `crs eval -p runs/<ablation>-s1 --sessions 4` of each
    ablation: one configuration each, evaluated plainly with one seed and on returning users with another."""
    root = tmp_path_factory.mktemp("pooling")
    runs = [trained(root, a, seed, sessions=bool(seed)) for a in ABLATIONS for seed in (0, 1)]
    return build_tables(runs)[0]


def test_a_plain_and_a_returning_user_eval_of_one_configuration_never_share_a_row(
    tables: list[Table],
) -> None:
    plain, returning = sorted(tables, key=lambda t: t.test_set.sessions is not None)
    assert plain.test_set.sessions is None and returning.test_set.sessions == SESSIONS
    assert returning.test_set.regime == "switch" and "returning users (4 sessions" in returning.title
    assert separation(returning, plain) == "returning users (4 sessions, regime switch)"
    for table, units in ((plain, PLAIN), (returning, USERS)):
        assert [r.label for r in table.rows] == list(ABLATIONS)
        assert all(r.n_runs == 1 for r in table.rows)  # no row pools the two evaluations as seeds
        assert all(bool(r.units) == (table is returning) for r in table.rows)
        assert [d.n_pairs for d in table.diffs] == [units] * 3 and table.n_interaction == units


def test_paired_counts_of_returning_users_are_users_in_the_answer_and_on_every_page(
    tables: list[Table], tmp_path: Path
) -> None:
    text, verdicts = answer(tables)
    assert f"{PLAIN} paired conversations" in text and f"{USERS} paired users" in text
    folder = write_eval(tmp_path, "any", 0, sessions=False)
    report = Report(tmp_path, "t", "now", load_inputs([folder]), tables, [], text, verdicts)
    for page in (to_markdown(report), to_html(report), to_latex(report)):
        assert f"on {PLAIN} conversations." in page and f"on {USERS} users." in page


def test_a_key_without_a_user_counts_as_a_unit_of_its_own() -> None:
    keys = [("f", goal) for goal in range(4)]
    ones = {m: {key: 1.0 for key in keys} for m in METRICS}
    zeros = {m: {key: 0.0 for key in keys} for m in METRICS}
    reference = Row("a", (), {}, "conversations", None, values=ones, units={keys[0]: 0, keys[1]: 0})
    other = Row("b", (), {}, "conversations", None, values=zeros)
    assert paired_difference(reference, other).n_pairs == 3  # keys 0 and 1 one user; 2 and 3 alone


def test_another_memory_of_one_trained_configuration_is_a_row_of_its_own(tmp_path: Path) -> None:
    runs = [trained(tmp_path, "full", 1, sessions=True, memory=m) for m in ("frozen", "update")]
    (table,) = build_tables(runs)[0]
    assert [r.label for r in table.rows] == ["full (full, memory frozen)", "full (full, memory update)"]
    assert [d.n_pairs for d in table.diffs] == [USERS]


def bootstrap_over_users(
    value: Callable[[int, int], bool], sessions: range, seed: int = 0, resamples: int = 1000
) -> MetricSummary:
    """The bootstrap of each user's mean `value(user, session)` over `sessions` (with equal sessions per
    user, a bootstrap that resamples whole users)."""
    means = np.array([np.mean([float(value(u, s)) for s in sessions]) for u in range(USERS)])
    return bootstrap_ci(means, seed=seed, n_resamples=resamples)


def same(a: MetricSummary | None, b: MetricSummary) -> bool:
    return a is not None and (a.mean, a.low, a.high) == pytest.approx((b.mean, b.low, b.high))


def test_figures_over_several_sessions_per_user_resample_whole_users(tmp_path: Path) -> None:
    run = load_inputs([write_eval(tmp_path, "ask-4", 0, sessions=True)]).evals[0]
    ((series,),) = [c.series for c in session_comparisons([run])]
    everyone = range(SESSIONS)
    assert same(series.overall, bootstrap_over_users(success, everyone))
    assert same(series.before_change, bootstrap_over_users(success, range(CHANGE)))
    assert same(series.after_change, bootstrap_over_users(success, range(CHANGE, SESSIONS)))
    assert same(series.tracking_all, bootstrap_over_users(tracked, everyone))
    after = range(CHANGE + 1, SESSIONS)  # the memory has seen a session of the new persona
    assert same(series.tracking_after_change, bootstrap_over_users(tracked, after))
    assert same(series.last_time, bootstrap_over_users(tracked, after))  # the previous session's is active
    # one session per user: as before
    values = np.array([success(u, 1) for u in range(USERS)], dtype=np.float64)
    assert series.by_session[1] == bootstrap_ci(values, seed=0)
    # the main table's SR@t band resamples whole users too
    ((row,),) = [t.rows for t in build_tables([run])[0]]
    ts, mean, low, high = sr_curve(row)
    band = bootstrap_over_users(success, everyone, DIFF_SEED, 400)  # SR@14: success
    assert ts[-1] == 14 and same(MetricSummary(mean[-1], low[-1], high[-1]), band)


@pytest.mark.parametrize("change", [10**30, -3, SESSIONS + 1])
def test_a_change_session_out_of_range_is_refused_in_one_line(tmp_path: Path, change: int) -> None:
    folder = write_eval(tmp_path, "ask-4", 0, sessions=True, change_session=change)
    with pytest.raises(
        CRSError, match=r"line 1 \[change_session\] = .* must be an integer between 0 and 4; re-run"
    ):
        load_inputs([folder])
