"""Mutation-audit tests of `crs report`'s returning-user curves (`crs.report.sessions`), their figure
(`crs.report.plots.plot_sessions`) and the report assembly (`crs.report.build`). The `crs eval
--sessions` folders are written by hand with known outcomes, so every figure is known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from crs.report import build_report, load_inputs
from crs.report import plots as plots_module
from crs.report.build import _train_label
from crs.report.inputs import TrainInfo, TrainRun
from crs.report.sessions import (
    SessionComparison,
    series_name,
    session_comparisons,
    session_rows,
    session_sentences,
    sessions_json,
)
from envs.metrics import bootstrap_ci
from tests.crs.session_folders import Outcome, write_sessions_folder


def write_folder(
    root: Path,
    memory: str,
    seed: int,
    success: Outcome,
    *,
    sessions: int = 4,
    sequences: int = 50,
    change: int | None = 2,
    believed: Callable[[int, int], int] | None = None,
    rule: dict[str, float] | None = None,
    notes: tuple[str, ...] = (),
) -> Path:
    """A `crs eval --sessions` folder of `sequences` users x `sessions` sessions with known outcomes;
    the active persona slot is 0 before `change` and 1 from it on."""
    return write_sessions_folder(
        root / f"{memory}-s{seed}-{len(rule or {})}{(rule or {}).get('update_prior')}",
        memory,
        seed,
        success,
        sessions=sessions,
        sequences=sequences,
        change=change,
        believed=believed,
        rule=rule,
        notes=notes,
    )


def comparison_of(paths: list[Path]) -> SessionComparison:
    (comparison,) = session_comparisons(load_inputs(paths).evals)
    return comparison


def test_recovery_counts_a_session_exactly_at_the_tolerance_as_recovered(tmp_path: Path) -> None:
    """Guards against a strict `>` or a tolerance added instead of taken off: 40 of 50 users succeed
    before the change (0.80); at the change 39 (0.78, exactly 0.02 below: recovered at once)."""

    def outcome(sequence: int, session: int) -> bool:
        return sequence < (40 if session < 2 else 39)

    (series,) = comparison_of([write_folder(tmp_path, "update", 0, outcome)]).series
    assert series.before_change is not None and series.before_change.mean == pytest.approx(0.8)
    assert series.by_offset[0].mean == pytest.approx(0.78)
    assert series.recovery == 0


def test_a_recovery_must_hold_one_session_back_near_the_level_then_a_drop_is_none(tmp_path: Path) -> None:
    """A walkthrough's frozen memory "recovered in 2 sessions" on one noisy session that landed near the
    level, the curve dropping again after it. 40 of 50 succeed before the change (0.80); after it 30,
    40, 30, 40: back at d=1 and d=3 but not holding from d=1, so the recovery is d=3 (the last)."""
    after = {2: 30, 3: 40, 4: 30, 5: 40}

    def outcome(sequence: int, session: int) -> bool:
        return sequence < after.get(session, 40)

    (series,) = comparison_of([write_folder(tmp_path, "update", 0, outcome, sessions=6)]).series
    assert [series.by_offset[d].mean for d in range(4)] == pytest.approx([0.6, 0.8, 0.6, 0.8])
    assert series.recovery == 3
    after[5] = 30  # never holds: no recovery within the sessions
    (series,) = comparison_of([write_folder(tmp_path / "b", "update", 0, outcome, sessions=6)]).series
    assert series.recovery is None


def test_the_curves_do_not_depend_on_the_order_the_seeds_are_given_in(tmp_path: Path) -> None:
    """Guards against pooling the seeds' lines in input order: the report of seeds 0, 1 and of 1, 0 is
    the same, every interval a bootstrap over the lines of seed 0 then seed 1."""

    def outcome_of(seed: int) -> Outcome:
        return lambda sequence, session: (sequence * 3 + session + seed * 5) % 7 < 4

    runs = [write_folder(tmp_path, "frozen", seed, outcome_of(seed), sequences=20) for seed in (0, 1)]
    forward = comparison_of(runs).series[0]
    backward = comparison_of(runs[::-1]).series[0]
    lines = [(seed, n, s) for seed in (0, 1) for n in range(20) for s in range(4)]
    values = np.array([outcome_of(seed)(n, s) for seed, n, s in lines], dtype=np.float64)
    users = [seed * 20 + n for seed, n, _ in lines]
    expected = bootstrap_ci(values, seed=0, clusters=users)
    assert forward.overall == expected and backward.overall == expected
    assert forward.by_session == backward.by_session and forward.by_offset == backward.by_offset


def test_from_the_change_on_includes_the_change_session_itself(tmp_path: Path) -> None:
    """Guards against leaving the change session out of "from the change on": 2 sessions before the
    change (every user succeeds), the change session (none does), one after it (every user does)."""

    def outcome(sequence: int, session: int) -> bool:
        return session != 2

    comparison = comparison_of([write_folder(tmp_path, "update", 0, outcome, sequences=10)])
    (series,) = comparison.series
    assert series.before_change is not None and series.before_change.mean == 1.0
    assert series.after_change is not None and series.after_change.mean == pytest.approx(0.5)
    assert series.overall.mean == pytest.approx(0.75)
    (block,) = sessions_json(comparison)["series"]  # metrics.json keeps each figure under its name
    assert block["before_change"]["mean"] == 1.0 and block["after_change"]["mean"] == pytest.approx(0.5)
    assert block["by_offset"]["0"]["mean"] == 0.0 and block["recovery"] == 1


def test_tracking_is_over_the_sessions_after_the_change_session(tmp_path: Path) -> None:
    """Guards against counting the change session in the tracking: the memory names the new persona
    (slot 1) from the session after the change on, never at the change session (it cannot know yet)."""

    def believed(sequence: int, session: int) -> int:
        return 1 if session >= 3 else 0

    path = write_folder(tmp_path, "update", 0, lambda n, s: True, sequences=10, believed=believed)
    comparison = comparison_of([path])
    (series,) = comparison.series
    assert series.tracking_after_change is not None and series.tracking_after_change.mean == 1.0
    # every session: tracked at 0, 1 (slot 0) and 3, not at the change session 2
    assert series.tracking_all is not None and series.tracking_all.mean == pytest.approx(0.75)
    assert series.tracking_by_session is not None
    assert [v.mean for v in series.tracking_by_session] == [1.0, 1.0, 0.0, 1.0]
    (row,) = session_rows(comparison)
    assert row[6].startswith("100.0% [")  # the table shows the tracking after the change
    (block,) = sessions_json(comparison)["series"]
    assert block["tracking_after_change"]["mean"] == 1.0 and block["tracking_all"]["mean"] == 0.75


def test_no_session_after_the_change_is_said_so_not_that_the_memory_was_handed_the_truth(
    tmp_path: Path,
) -> None:
    """Two sessions, the change at the second: no session follows it, so a memory's tracking and "last
    time" read "no session after the change" (they read "handed the truth", the oracle's reason)."""
    paths = [
        write_folder(tmp_path, memory, 0, lambda n, s: True, sessions=2, change=1, sequences=10)
        for memory in ("update", "oracle")
    ]
    rows = {row[0]: row for row in session_rows(comparison_of(paths))}
    assert rows["update"][6:] == ["n/a (no session after the change)"] * 2
    assert rows["oracle"][6:] == ["n/a (handed the truth)"] * 2


def test_per_seed_differences_use_only_that_seeds_users(tmp_path: Path) -> None:
    """Guards against pooling other seeds into one seed's paired difference: with seed 0 update beats
    frozen for every user and with seed 1 for none, the per-seed means are 1 and 0."""
    paths = [
        write_folder(tmp_path, "frozen", 0, lambda n, s: False, sequences=10),
        write_folder(tmp_path, "frozen", 1, lambda n, s: False, sequences=10),
        write_folder(tmp_path, "update", 0, lambda n, s: True, sequences=10),
        write_folder(tmp_path, "update", 1, lambda n, s: False, sequences=10),
    ]
    comparison = comparison_of(paths)
    (paired,) = comparison.paired
    assert paired.memory == "update" and paired.n_sequences == 20
    # the sentence by sessions since the change names the offsets from the change on only
    (steps,) = [x for x in session_sentences(comparison) if "by sessions since the change:" in x]
    assert "d=0: +0.500" in steps and "d=1: +0.500" in steps and "d=-" not in steps
    # 20 users is `MIN_PAIRED`: enough for the CI to count as evidence
    assert "(CI excludes 0; 20 users; seed 0 +1.000" in session_sentences(comparison)[0]
    assert paired.per_seed[0].mean == 1.0 and paired.per_seed[1].mean == 0.0
    assert paired.after_change.mean == pytest.approx(0.5)


def _three_modes(root: Path) -> SessionComparison:
    """Frozen, update and oracle over 20 users, a switch at session 2, with different curves."""
    levels = {"frozen": (15, 15, 5, 5), "update": (15, 15, 5, 14), "oracle": (15, 15, 15, 15)}
    return comparison_of(
        [
            write_folder(root, memory, 0, lambda n, s, c=counts: n < c[s], sequences=20)
            for memory, counts in levels.items()
        ]
    )


def test_the_sessions_figure_draws_each_modes_curve_band_and_level_in_its_colour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against a curve drawn from the wrong figures (a band from the mean, offsets unsorted, the
    dashed level after the change instead of before it) or a mode in another mode's colour."""
    comparison = _three_modes(tmp_path)
    figures: list[plt.Figure] = []
    monkeypatch.setattr(plots_module, "_save", lambda fig, path: figures.append(fig))
    plots_module.plot_sessions(comparison, tmp_path / "sessions.png")
    (fig,) = figures
    per_session, aligned = fig.axes
    colours = {"frozen": "#7f7f7f", "update": "#1f77b4", "oracle": "#2ca02c"}
    curves = {line.get_label(): line for line in per_session.lines}
    assert set(curves) == set(colours)
    for series in comparison.series:
        line = curves[series.memory]
        assert line.get_color() == colours[series.memory]
        assert list(line.get_xdata()) == [0, 1, 2, 3]
        assert list(line.get_ydata()) == pytest.approx([v.mean for v in series.by_session])
    # the bands: each mode's CI, low to high, around its curve
    bands = per_session.collections
    assert len(bands) == 3
    for band, series in zip(bands, comparison.series, strict=True):
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(min(v.low for v in series.by_session))
        assert ys.max() == pytest.approx(max(v.high for v in series.by_session))
    # aligned on the change: offsets -2 .. 1 in order, the level before the change dashed
    solid = [line for line in aligned.lines if line.get_linestyle() == "-" and len(line.get_xdata()) == 4]
    assert [line.get_label() for line in solid] == ["frozen", "update", "oracle"]
    for line, series in zip(solid, comparison.series, strict=True):
        assert list(line.get_xdata()) == [-2, -1, 0, 1]
        assert list(line.get_ydata()) == pytest.approx([series.by_offset[d].mean for d in (-2, -1, 0, 1)])
    dashed = [line for line in aligned.lines if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in dashed] == pytest.approx([0.75, 0.75, 0.75])
    for fig_ in figures:
        plt.close(fig_)


def test_an_update_of_the_aspect_weights_alone_is_named_aspects_and_with_the_prior_both(
    tmp_path: Path,
) -> None:
    """Guards against the two aspect-learning arms swapping names: update_prior 0 moves the aspect
    weights only ("update (aspects)"), update_prior 1 both ("update (both)")."""
    aspects = write_folder(
        tmp_path, "update", 0, lambda n, s: True, rule={"aspect_rate": 0.25, "update_prior": 0.0}
    )
    both = write_folder(
        tmp_path, "update", 0, lambda n, s: True, rule={"aspect_rate": 0.25, "update_prior": 1.0}
    )
    runs = {run.path.name: run for run in load_inputs([aspects, both]).evals}
    assert series_name(runs[aspects.name]) == "update (aspects)"
    assert series_name(runs[both.name]) == "update (both)"
    # rows: frozen, update, oracle first, the other arms after them (by name)
    frozen = write_folder(tmp_path, "frozen", 0, lambda n, s: True)
    update = write_folder(tmp_path, "update", 0, lambda n, s: True)
    comparison = comparison_of([both, aspects, update, frozen])
    assert [s.memory for s in comparison.series] == ["frozen", "update", "update (aspects)", "update (both)"]


def test_no_gap_closed_where_the_oracle_is_not_above_frozen(tmp_path: Path) -> None:
    """Guards against a share of a negative frozen-to-oracle gap: at the change the oracle does worse
    than frozen (no gap to close: left out); a session later frozen 10, oracle 20, update 15 of 20."""
    levels = {"frozen": (15, 15, 10, 10), "update": (15, 15, 8, 15), "oracle": (15, 15, 5, 20)}
    comparison = comparison_of(
        [
            write_folder(tmp_path, memory, 0, lambda n, s, c=counts: n < c[s], sequences=20)
            for memory, counts in levels.items()
        ]
    )
    assert comparison.gap_closed == {1: pytest.approx(0.5)}


def test_no_gap_closed_where_the_oracle_frozen_gap_may_be_none(tmp_path: Path) -> None:
    """A walkthrough read "d=2: 100%" where oracle − frozen was +0.018 with a CI across 0: a ratio over
    a gap that may be none is noise. Here the oracle is one user ahead of frozen at d=1 (of 20: its
    paired CI includes 0), well ahead at d=0; only d=0 gets a share."""
    levels = {"frozen": (15, 15, 5, 15), "update": (15, 15, 10, 16), "oracle": (15, 15, 15, 16)}
    comparison = comparison_of(
        [
            write_folder(tmp_path, memory, 0, lambda n, s, c=counts: n < c[s], sequences=20)
            for memory, counts in levels.items()
        ]
    )
    oracle = next(p for p in comparison.paired if p.memory == "oracle")
    assert oracle.by_offset[1].low <= 0 < oracle.by_offset[0].low
    assert comparison.gap_closed == {0: pytest.approx(0.5)}
    assert "(only where oracle − frozen's CI excludes 0)" in " ".join(session_sentences(comparison))


def test_every_table_and_comparison_gets_its_own_figure_files(tmp_path: Path) -> None:
    """Guards against two tables' (or two returning-user comparisons') figures written to one file, the
    second drawing over the first: a switch and a stable regime make two tables and two comparisons."""
    switch = write_folder(tmp_path / "switch", "frozen", 0, lambda n, s: n % 2 == 0, sequences=10)
    stable = write_folder(tmp_path / "stable", "frozen", 0, lambda n, s: True, sequences=10, change=None)
    report = build_report([switch, stable], tmp_path / "report", examples=0, persona=False)
    assert len(report.tables) == 2 and len(report.sessions) == 2
    table_files = [plot.path.name for plots in report.table_plots.values() for plot in plots]
    assert len(set(table_files)) == len(table_files) == 6
    assert all((tmp_path / "report" / name).is_file() for name in table_files)
    session_files = [report.session_plots[i].path.name for i in range(2)]
    assert session_files == ["sessions.png", "sessions_2.png"]
    assert all((tmp_path / "report" / name).is_file() for name in session_files)


def test_a_note_every_seed_carries_is_said_once(tmp_path: Path) -> None:
    """Guards against repeating a dataset note once per run: two seeds of one dataset carry the same
    note; the report says it once, named by its dataset."""
    paths = [
        write_folder(tmp_path, "frozen", seed, lambda n, s: True, sequences=10, notes=("a known caveat",))
        for seed in (0, 1)
    ]
    report = build_report(paths, tmp_path / "report", examples=0, persona=False, figures=False)
    assert report.notes.count("persona_world: a known caveat") == 1


@pytest.mark.parametrize(
    ("name", "label"),
    [("ask-runs-s1", "ask-runs"), ("bass_seed12", "bass"), ("grass", "grass"), ("s3", "s3")],
)
def test_a_train_runs_label_drops_only_a_trailing_seed_number(tmp_path: Path, name: str, label: str) -> None:
    """Guards against a seed suffix matched without its number: "grass" is a configuration, not
    "gras" plus seed "s"; "ask-runs-s1" and "bass_seed12" are seeds of "ask-runs" and "bass"."""
    info = TrainInfo(
        path=tmp_path / name,
        name=name,
        persona_attention=None,
        aspect_attention=None,
        seed=None,
        dataset="persona_world",
        pretrained=None,
        config={"setting": "binary"},
    )
    run = TrainRun(info=info, curve=None, final_eval=None)
    assert _train_label(run, mixed=False, sweeps=0, ablated=False) == label


def test_a_memory_that_tracks_worse_than_frozen_is_said_to(tmp_path: Path) -> None:
    """A walkthrough's update memory named the active persona in 35% of stable sessions against frozen's
    42%, shown side by side without a word. Here frozen believes the active slot 0 throughout and update
    believes slot 1 in every other session: a note names update, not frozen."""
    runs = [
        write_folder(tmp_path, "frozen", 0, lambda n, s: True, change=None),
        write_folder(tmp_path, "update", 0, lambda n, s: True, change=None, believed=lambda n, s: s % 2),
    ]
    said = " ".join(session_sentences(comparison_of(runs)))
    assert "Note: update names the active persona less often than frozen (50.0% [" in said
    assert "vs 100.0%): its memory moved away" in said and "Note: frozen" not in said
    same = [runs[0], write_folder(tmp_path / "b", "update", 0, lambda n, s: True, change=None)]
    assert "less often" not in " ".join(session_sentences(comparison_of(same)))


def test_the_report_says_in_how_many_sessions_two_memories_ended_differently(tmp_path: Path) -> None:
    """A walkthrough's LastFM* memories differed in 3 of 400 conversations, and the report printed
    "+0.000 [+0.000, +0.000]" at every d with nothing to say why. Here update succeeds where frozen does
    not for the first 3 users at the change session only: 3 of the 200 sessions both played."""
    runs = [
        write_folder(tmp_path, "frozen", 0, lambda n, s: n >= 10),
        write_folder(tmp_path, "update", 0, lambda n, s: n >= 10 or (s == 2 and n < 3)),
    ]
    comparison = comparison_of(runs)
    (paired,) = comparison.paired
    assert (paired.n_apart, paired.n_sessions) == (3, 200)
    said = " ".join(session_sentences(comparison))
    assert (
        "update and frozen ended differently (one succeeded, the other not) in 3 of the 200 sessions" in said
    )
    assert sessions_json(comparison)["paired"][0]["n_apart"] == 3
