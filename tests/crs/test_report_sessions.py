"""`crs report` on returning-user folders (`crs eval --sessions`, issue #16): per-session SR@15 with CIs
per memory mode, aligned on the change, recovery, tracking, paired differences, the plot and every
output file. The folders are written by hand with known successes, so every figure is known."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.cli import app
from crs.report import build_report, load_inputs, write_report
from crs.report.analysis import DIFF_SEED, answer, build_tables, pairing_note
from crs.report.sessions import RECOVERY_TOLERANCE, recovery_text, session_comparisons, session_sentences
from envs.metrics import bootstrap_ci
from simulators.errors import CRSError
from tests.crs.session_folders import write_sessions_folder

runner = CliRunner()
SESSIONS = 4
SEQUENCES = 30
CHANGE = 2  # every sequence switches at session 2


def success(memory: str, seed: int, sequence: int, session: int) -> bool:
    """Known outcomes: before the change everyone succeeds 80% of the time; at the change frozen and
    update drop to 40%; update is back to 80% one session later, frozen never; the oracle stays at 80%."""
    base = (sequence * 7 + session * 3 + seed) % 10 < 8  # 80%, the same conversations in every mode
    if session < CHANGE or memory == "oracle":
        return base
    if memory == "update" and session > CHANGE:
        return base
    return base and sequence % 2 == 0  # half of them: 40%


def write_folder(
    root: Path,
    memory: str,
    seed: int,
    regime: str = "switch",
    targets_shift: int = 0,
    rule: dict[str, float] | None = None,
    ranker_identity: str | None = None,
) -> Path:
    """The `success` outcomes of `memory` under `regime`; update tracks the active persona from the
    session after the change, frozen never after it."""
    return write_sessions_folder(
        root / f"{regime}-{memory}-s{seed}",
        memory,
        seed,
        lambda sequence, session: success(memory, seed, sequence, session),
        sessions=SESSIONS,
        sequences=SEQUENCES,
        change=CHANGE if regime == "switch" else None,
        regime=regime,
        active_from=CHANGE,
        believed=lambda _, session: 1 if session >= CHANGE and memory != "update" else 0,
        rule=rule,
        targets_shift=targets_shift,
        ranker_identity=ranker_identity,
        conversations=f"{regime}-{seed}",
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sessions")
    return {
        f"{memory}-s{seed}": write_folder(root, memory, seed)
        for memory in ("oracle", "frozen", "update")
        for seed in (0, 1)
    }


def outcomes(memory: str, seeds: tuple[int, ...], session: int) -> np.ndarray:
    return np.array(
        [success(memory, seed, n, session) for seed in seeds for n in range(SEQUENCES)], dtype=np.float64
    )


def test_per_session_curves_pool_the_seeds_with_bootstrap_cis(folders: dict[str, Path]) -> None:
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    assert [s.memory for s in comparison.series] == ["frozen", "update", "oracle"]  # fixed order
    assert comparison.regime == "switch" and comparison.sessions == SESSIONS
    for series in comparison.series:
        assert series.seeds == (0, 1)
        for session in range(SESSIONS):
            expected = bootstrap_ci(outcomes(series.memory, (0, 1), session), seed=0)
            assert series.by_session[session] == expected
    # aligned on the change: every sequence changes at session 2, so offset d is session 2 + d
    frozen = comparison.series[0]
    assert sorted(frozen.by_offset) == [-2, -1, 0, 1]
    assert frozen.by_offset[1] == frozen.by_session[3]


def test_the_answer_never_names_the_oracle_best(folders: dict[str, Path]) -> None:
    """The oracle memory knows each session's true persona: the answer named it "the best ... ahead of
    each of the others". It is said to bound them, and the best is named among the others."""
    tables, _ = build_tables(load_inputs(list(folders.values())).evals)
    text, _ = answer(tables)
    best = text.split(". ")[0]
    assert " is ask-4 (memory update) (SR@15 " in best
    assert best.endswith(
        "; ask-4 (memory oracle) knows each session's true persona: their bound, not a contender"
    )


def test_the_answer_gives_update_minus_frozen_and_not_the_oracles(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """The report's answer said nothing of returning users: the verdict that matters (update − frozen,
    paired per user) was only in its own section. It is in the answer now; the oracle's is not."""
    report = build_report(list(folders.values()), tmp_path / "r", examples=0, persona=False, figures=False)
    (comparison,) = report.sessions
    section = session_sentences(comparison)[0]  # "update − frozen, SR@15 ... (CI excludes 0; 60 users; ..."
    assert section.startswith("update − frozen") and "(CI excludes 0; 60 users;" in section
    said = f"Returning users ({comparison.title}): {section.split('; 60 users')[0]})."
    assert report.answer.endswith(said)
    assert "oracle − frozen" not in report.answer


def test_the_comparison_table_says_its_intervals_resample_whole_users(folders: dict[str, Path]) -> None:
    """Its caption said "bootstrap over conversations" where a returning user's sessions are resampled
    together (and the returning-user table beside it gave other bounds for the same rows)."""
    from crs.report.formatting import ci_text

    tables, _ = build_tables(load_inputs(list(folders.values())).evals)
    assert (
        "never narrower than the bootstrap over all their conversations (whole users of returning-user runs)"
        in ci_text(tables[0])
    )
    one, _ = build_tables(load_inputs([folders["frozen-s0"]]).evals)
    assert (
        ci_text(one[0]) == "bootstrap over conversations (whole users of returning-user runs) for single runs"
    )


def test_recovery_counts_sessions_until_back_within_the_tolerance(folders: dict[str, Path]) -> None:
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    named = {s.memory: s for s in comparison.series}
    before = np.concatenate([outcomes("frozen", (0, 1), s) for s in range(CHANGE)]).mean()
    assert named["frozen"].before_change is not None
    assert named["frozen"].before_change.mean == pytest.approx(before)
    assert named["update"].recovery == 1  # back at 80% one session after the change
    assert named["frozen"].recovery is None  # never back
    oracle = named["oracle"]
    assert (
        oracle.before_change is not None
        and oracle.by_offset[0].mean >= oracle.before_change.mean - RECOVERY_TOLERANCE
    )
    assert oracle.recovery == 0  # no drop at the change
    # in words, it claims nothing of later sessions (it said "no drop" beside a later, larger one)
    texts = {name: recovery_text(series) for name, series in named.items()}
    assert texts == {
        "oracle": "0 sessions (no drop at the change)",
        "update": "1 session",
        "frozen": "not within the sessions",
    }


def test_tracking_after_the_change_and_none_for_the_oracle(folders: dict[str, Path]) -> None:
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    named = {s.memory: s for s in comparison.series}
    assert named["update"].tracking_after_change is not None
    assert named["update"].tracking_after_change.mean == 0.0  # believed 0, active 1 after the change
    assert named["frozen"].tracking_after_change is not None
    assert named["frozen"].tracking_after_change.mean == 1.0
    assert named["oracle"].tracking_all is None and named["oracle"].tracking_after_change is None


def test_last_time_compares_with_the_previous_sessions_active_persona(folders: dict[str, Path]) -> None:
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    named = {s.memory: s for s in comparison.series}
    # after the change (session 3): the previous session's active slot is 1; frozen believes 1, update 0
    assert named["frozen"].last_time is not None and named["frozen"].last_time.mean == 1.0
    assert named["update"].last_time is not None and named["update"].last_time.mean == 0.0
    assert named["oracle"].last_time is None
    first = [x for x in named["frozen"].lines if x.session == 0]
    assert first and all(x.last_time is None for x in first)  # no session before the first
    change = [x for x in named["frozen"].lines if x.session == CHANGE]
    assert all(x.last_time is False for x in change)  # believed 1, session 1's active slot 0


def test_paired_differences_against_frozen_per_user_and_per_offset(folders: dict[str, Path]) -> None:
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    by_memory = {p.memory: p for p in comparison.paired}
    assert set(by_memory) == {"update", "oracle"}
    update = by_memory["update"]
    means = [
        np.mean(
            [success("update", seed, n, s) - success("frozen", seed, n, s) for s in range(CHANGE, SESSIONS)]
        )
        for seed in (0, 1)
        for n in range(SEQUENCES)
    ]
    assert update.after_change == bootstrap_ci(np.array(means), seed=0)
    assert update.n_sequences == 2 * SEQUENCES and set(update.per_seed) == {0, 1}
    assert update.by_offset[0].mean == 0.0  # at the change update and frozen play alike
    assert update.by_offset[1].mean > 0.3
    # the gap closed: none at the change, all of it a session later
    assert comparison.gap_closed[0] == pytest.approx(0.0)
    assert comparison.gap_closed[1] == pytest.approx(1.0)


def test_the_gap_closed_compares_only_the_seeds_every_mode_played(tmp_path: Path) -> None:
    """The oracle run for seed 0 only, frozen and update for seeds 0-2 (a sweep given more seeds before
    the oracle was added): the gap closed divides over seed 0's users alone (it mixed 90 users with 30),
    and the title names the oracle's own seeds. Update recovers fully for seed 0, not at all for the
    others: over seed 0 it closes the whole gap, mixed about a third of it."""

    def outcome(memory: str, seed: int) -> Callable[[int, int], bool]:
        def succeeded(sequence: int, session: int) -> bool:
            base = (sequence * 7 + session * 3) % 10 < 8
            recovered = memory == "oracle" or (memory == "update" and seed == 0)
            return base if session < CHANGE or recovered else base and sequence % 2 == 0

        return succeeded

    folders = [
        write_sessions_folder(
            tmp_path / f"{memory}-s{seed}",
            memory,
            seed,
            outcome(memory, seed),
            sessions=SESSIONS,
            sequences=SEQUENCES,
            change=CHANGE,
            conversations=f"switch-{seed}",
        )
        for memory, seeds in (("frozen", (0, 1, 2)), ("update", (0, 1, 2)), ("oracle", (0,)))
        for seed in seeds
    ]
    (comparison,) = session_comparisons(load_inputs(folders).evals)
    assert comparison.gap_closed == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert comparison.title.endswith("30 users x 3 seeds (0, 1, 2; oracle: 0)")


def test_every_figure_over_several_sessions_resamples_whole_users_of_every_seed(
    folders: dict[str, Path],
) -> None:
    # both seeds number their users 0 .. 29: user 3 of seed 0 and user 3 of seed 1 are two users
    (comparison,) = session_comparisons(load_inputs(list(folders.values())).evals)
    frozen = comparison.series[0]
    assert frozen.memory == "frozen" and frozen.seeds == (0, 1)
    lines = [(seed, n, s) for seed in (0, 1) for n in range(SEQUENCES) for s in range(SESSIONS)]
    values = np.array([success("frozen", *line) for line in lines], dtype=np.float64)
    users = [seed * SEQUENCES + n for seed, n, _ in lines]  # 60 users of 4 sessions each
    assert frozen.overall == bootstrap_ci(values, seed=0, clusters=users)
    one_per_sequence = bootstrap_ci(values, seed=0, clusters=[n for _, n, _ in lines])
    assert frozen.overall != one_per_sequence  # the seeds' users pooled in pairs: another interval
    before = [i for i, (_, _, s) in enumerate(lines) if s < CHANGE]
    assert frozen.before_change == bootstrap_ci(values[before], seed=0, clusters=[users[i] for i in before])


def test_memory_modes_run_over_different_rankers_are_never_paired(tmp_path: Path) -> None:
    frozen = write_folder(tmp_path / "a", "frozen", 0, ranker_identity="ranker a")
    update = write_folder(tmp_path / "b", "update", 0, ranker_identity="ranker b")
    comparisons = session_comparisons(load_inputs([frozen, update]).evals)
    assert [[s.memory for s in c.series] for c in comparisons] == [["frozen"], ["update"]]
    assert all(c.paired == () for c in comparisons)
    same = write_folder(tmp_path / "c", "update", 0, ranker_identity="ranker a")
    (comparison,) = session_comparisons(load_inputs([frozen, same]).evals)  # one ranker: paired
    assert [p.memory for p in comparison.paired] == ["update"]


def test_runs_with_other_targets_are_refused_and_duplicates_named(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    other = write_folder(tmp_path, "update", 0, targets_shift=1)
    with pytest.raises(CRSError, match="different targets"):
        session_comparisons(load_inputs([folders["frozen-s0"], other]).evals)
    copy = write_folder(tmp_path / "copy", "frozen", 0)
    with pytest.raises(CRSError, match="same returning-user run"):
        session_comparisons(load_inputs([folders["frozen-s0"], copy]).evals)
    # a report reads a copy once, as it does a plain evaluation's (it stopped with the error above)
    report = build_report([folders["frozen-s0"], copy], tmp_path / "report", examples=0, figures=False)
    ((series,),) = [comparison.series for comparison in report.sessions]
    assert series.memory == "frozen" and series.seeds == (0,)
    left = [line.text() for line in report.input_list if str(copy) in line.text()]
    assert left and all("repeats" in text for text in left), left
    # seeds of one memory mode are pooled only when they ran the same update constants
    ruled = write_folder(tmp_path / "ruled", "update", 1, rule={"switch_rate": 0.3})
    with pytest.raises(CRSError, match="different update constants"):
        session_comparisons(load_inputs([folders["update-s0"], ruled]).evals)


def test_what_an_update_moves_makes_its_own_series_and_old_runs_pool_with_the_prior_variant(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    old = {"switch_rate": 0.3, "dominance": 0.8}  # a run from before aspect weights: neither key recorded
    prior = write_folder(tmp_path / "prior", "update", 0, rule=old)
    same = write_folder(tmp_path / "same", "update", 1, rule={**old, "aspect_rate": 0.0, "update_prior": 1.0})
    both = write_folder(
        tmp_path / "both", "update", 0, rule={**old, "aspect_rate": 0.25, "update_prior": 1.0}
    )
    aspects = write_folder(
        tmp_path / "aspects", "update", 0, rule={**old, "aspect_rate": 0.25, "update_prior": 0.0}
    )
    runs = [folders["frozen-s0"], folders["frozen-s1"], prior, same, both, aspects]
    (comparison,) = session_comparisons(load_inputs(runs).evals)
    named = {s.memory: s for s in comparison.series}
    assert set(named) == {"frozen", "update", "update (both)", "update (aspects)"}
    assert len(named["update"].runs) == 2 and len(named["update (both)"].runs) == 1
    assert {p.memory for p in comparison.paired} == {"update", "update (both)", "update (aspects)"}


def test_a_stable_regime_has_no_change_panel_and_compares_every_session(tmp_path: Path) -> None:
    runs = [write_folder(tmp_path, memory, 0, regime="stable") for memory in ("frozen", "update")]
    (comparison,) = session_comparisons(load_inputs(runs).evals)
    assert not comparison.has_change and comparison.gap_closed == {}
    (update,) = comparison.paired
    assert update.n_sequences == SEQUENCES and update.by_offset == {}
    assert all(s.recovery is None and s.before_change is None for s in comparison.series)


def test_report_files_show_the_returning_users_section(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", *map(str, folders.values()), "--out", str(out), "--examples", "0"])
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    assert "## Returning users — persona_world (test) · ask-4 · regime switch · 4 sessions" in markdown
    assert (
        "| update | 0, 1 |" in markdown
        and "1 session |" in markdown
        and "not within the sessions" in markdown
    )
    assert "![line chart of SR@15 per session for each memory mode](sessions.png)" in markdown
    assert (out / "sessions.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "Returning users" in html and 'data-plot="sessions"' in html
    metrics = json.loads((out / "metrics.json").read_text())
    (block,) = metrics["sessions"]
    test_set = metrics["tables"][0]["test_set"]  # the main table says its rows are returning users
    assert (test_set["sessions"], test_set["regime"], test_set["pair_unit"]) == (4, "switch", "users")
    assert [s["memory"] for s in block["series"]] == ["frozen", "update", "oracle"]
    assert block["series"][1]["recovery"] == 1 and block["gap_closed"]["1"] == pytest.approx(1.0)
    tex = (out / "tables.tex").read_text()  # the same table as LaTeX, its sentences as the caption
    assert r"\label{tab:crs-sessions-1}" in tex and "regime switch" in tex
    (row,) = [line for line in tex.splitlines() if line.startswith("update & 0, 1 & ")]
    assert row.count(" & ") == 7 and "1 session &" in row and r"\%" in row
    assert r"update $-$ frozen, SR@15 from the change session on, paired per user" in tex


def test_one_memory_mode_alone_still_gets_its_curve_and_no_pairs(tmp_path: Path) -> None:
    report = build_report([write_folder(tmp_path, "frozen", 0)], tmp_path / "r", examples=1, persona=False)
    files = write_report(report)
    assert len(report.sessions) == 1 and report.session_plots[0].path.name == "sessions.png"
    # what `crs report` says it wrote is every file in the folder, the session curve's png and pdf among them
    assert sorted(files) == sorted(path for path in (tmp_path / "r").rglob("*") if path.is_file())
    assert {report.session_plots[0].path, report.session_plots[0].pdf} <= set(files)
    assert report.sessions[0].paired == () and report.sessions[0].gap_closed == {}
    # the per-conversation sections say why they skip it (its goal indices are sessions, not the split's),
    # not that a catalogue that loads fine could not load
    examples = report.unavailable["examples"]
    assert "is of returning users" in examples and "returning-user table" in examples
    assert "could not load" not in examples


def test_the_main_table_resamples_whole_users_of_returning_user_runs(folders: dict[str, Path]) -> None:
    inputs = load_inputs([folders["frozen-s0"], folders["update-s0"]])
    (table,) = [t for t in build_tables(inputs.evals)[0] if len(t.rows) == 2]
    rows = {row.runs[0].summary.sessions.memory: row for row in table.rows}
    (diff,) = table.diffs

    def per_user(memory: str, other: str | None = None) -> np.ndarray:
        """Each user's mean SR@15 over their sessions (minus `other`'s), in sequence order."""
        return np.array(
            [
                np.mean(
                    [
                        success(memory, 0, n, s) - (success(other, 0, n, s) if other else 0)
                        for s in range(SESSIONS)
                    ]
                )
                for n in range(SEQUENCES)
            ]
        )

    # equal sessions per user: a bootstrap over whole users is a bootstrap over their means
    assert rows["frozen"].metrics["SR@15"] == bootstrap_ci(per_user("frozen"), seed=0)
    reference, other = (diff.reference, diff.label)
    first = next(m for m, row in rows.items() if row.label == reference)
    second = next(m for m, row in rows.items() if row.label == other)
    assert diff.metrics["SR@15"] == bootstrap_ci(per_user(first, second), seed=DIFF_SEED)
    assert diff.n_pairs == SEQUENCES  # users, not their 4 x 30 sessions
    assert "resample whole users" in pairing_note(table)
