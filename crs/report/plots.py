"""The report's figures, drawn with matplotlib's Agg backend (no display), saved as PNG and PDF.

Every function draws one figure into `path` (PNG, for the pages) and the same figure as vector PDF
beside it (`Plot.pdf`, for a paper), and returns a `Plot` (file, caption, alt text). Colours are fixed
per configuration label (`palette`), so a policy has the same colour in every figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from crs.report.analysis import ACTION_KINDS, Table, action_mix, sr_curve, turn_distribution
from crs.report.inputs import TrainRun
from crs.report.persona import PersonaAnalysis
from crs.report.sessions import METRIC, SessionComparison

COLORS: tuple[str, ...] = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
"""matplotlib's tab10, reordered so the first two rows are blue and red."""

ABLATION_COLORS: Mapping[str, str] = {
    "full": "#1f77b4",
    "persona-blind": "#d62728",
    "aspect-blind": "#ff7f0e",
    "both-off": "#7f7f7f",
}
MEMORY_COLORS: Mapping[str, str] = {"frozen": "#7f7f7f", "update": "#1f77b4", "oracle": "#2ca02c"}
"""Colour of each memory mode in the returning-user curves (others: the tab10 order)."""
KIND_COLORS: Mapping[str, str] = {"ask": "#4c72b0", "probe": "#dd8452", "recommend": "#55a868"}
DPI = 110
FIGURES = (
    "sr_curves",
    "turns",
    "action_mix",
    "sessions",
    "learning_curves",
    "persona_usage",
    "persona_heatmap",
)
"""The figures a report draws, by file stem (`figure_file`)."""


def figure_file(out: Path, figure: str, index: int = 0) -> Path:
    """Where figure `figure` (one of `FIGURES`) of the `index`-th table, comparison or persona analysis
    goes: ``out/<figure>.png`` for the first, ``out/<figure>_<index + 1>.png`` for later ones (its PDF
    beside it, `Plot.pdf`)."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; one of {FIGURES}")
    return out / f"{figure}{'' if index == 0 else f'_{index + 1}'}.png"


@dataclass(frozen=True)
class Plot:
    """A saved figure: its PNG file (and a PDF beside it), a caption, and alt text."""

    path: Path
    caption: str
    alt: str

    @property
    def pdf(self) -> Path:
        """The same figure as vector PDF, for a paper."""
        return self.path.with_suffix(".pdf")


def palette(labels: Sequence[str], ablations: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A colour per label, stable across figures (ablation rows get their fixed colours)."""
    ablations = ablations or {}
    out: dict[str, str] = {}
    reserved = any(a in ABLATION_COLORS for a in ablations.values())
    free = [c for c in COLORS if not reserved or c not in ABLATION_COLORS.values()]
    index = 0
    for label in labels:
        if label in out:
            continue
        ablation = ablations.get(label)
        if ablation is not None and ablation in ABLATION_COLORS:
            out[label] = ABLATION_COLORS[ablation]
        else:
            out[label] = free[index % len(free)]
            index += 1
    return out


def _plain(text: str) -> str:
    """`text` (a name from an input) as matplotlib prints it: its ``$`` escaped, so that a name holding
    two is not read as math (a bad formula, e.g. ``$\\input$``, would fail the whole report)."""
    return text.replace("$", r"\$")


LEGEND_KEEP = "\u200b"
"""A zero-width space. matplotlib leaves a label that starts with "_" out of a legend (its mark of a
hidden artist); this before such a label keeps it in, unchanged to the eye."""


def _legend_label(text: str) -> str:
    """`text` (a name from an input) as a legend label: `_plain`, and kept in the legend when it starts
    with "_" (`LEGEND_KEEP`)."""
    plain = _plain(text)
    return LEGEND_KEEP + plain if plain.startswith("_") else plain


def _style(ax: plt.Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _about(table: Table) -> str:
    """What a table's figures were measured on, for the line under their titles (a figure may be read
    apart from its table): dataset, split, question setting and conversations per run, wrapped."""
    test = table.test_set
    about = f"{test.dataset_label}, {test.split} split, {test.setting} setting, "
    return textwrap.fill(_plain(f"{about}{table.conversations_per_run} conversations per run"), 90)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The tight box once for both files: savefig's bbox_inches="tight" draws the figure an extra time for
    # each file to find it (a third of a report's time went there). 0.1 inch is savefig's own padding.
    fig.set_dpi(DPI)  # text measured as the PNG draws it
    box = fig.get_tightbbox().padded(0.1)
    fig.savefig(path, dpi=DPI, bbox_inches=box, facecolor="white")
    # No creation date: the same inputs give the same file.
    fig.savefig(path.with_suffix(".pdf"), bbox_inches=box, metadata={"CreationDate": None})
    plt.close(fig)


def plot_sr_curves(table: Table, colors: Mapping[str, str], path: Path) -> Plot:
    """SR@t against t, one line per configuration with its 95% bootstrap band."""
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    for row in table.rows:
        ts, mean, low, high = sr_curve(row)
        color = colors[row.label]
        ax.fill_between(ts, low, high, color=color, alpha=0.15, linewidth=0)
        ax.plot(
            ts, mean, marker="o", markersize=3.5, linewidth=2, color=color, label=_legend_label(row.label)
        )
    ax.set_xlabel("agent actions t")
    ax.set_ylabel("SR@t")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(ts)
    ax.set_title(f"Success within t actions\n{_about(table)}", fontsize=11, loc="left")
    _style(ax)
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    _save(fig, path)
    return Plot(
        path,
        "SR@t: share of conversations that succeed within t agent actions (95% bootstrap band over a "
        "row's conversations; for a row of several seeds the table's interval also spans the seeds).",
        "line chart of SR@t per policy",
    )


def plot_turns(table: Table, colors: Mapping[str, str], path: Path) -> Plot:
    """Share of conversations succeeding at each agent action, and the failure share."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    n = len(table.rows)
    width = 0.8 / max(n, 1)
    for i, row in enumerate(table.rows):
        ts, shares, fail = turn_distribution(row)
        offset = (i - (n - 1) / 2) * width
        color = colors[row.label]
        ax.bar(ts + offset, shares, width=width, color=color, label=_legend_label(row.label))
        ax.bar([ts[-1] + 1.5 + offset], [fail], width=width, color=color, hatch="//", edgecolor="white")
    ax.set_xticks([*ts.tolist(), ts[-1] + 1.5], [*(str(t) for t in ts), "fail"])
    ax.set_xlabel("agent actions to success")
    ax.set_ylabel("share of conversations")
    ax.set_title(f"When conversations end\n{_about(table)}", fontsize=11, loc="left")
    _style(ax)
    ax.legend(frameon=False, fontsize=9)
    _save(fig, path)
    return Plot(
        path,
        "Distribution of turns: share of conversations that succeed at each agent action; "
        "hatched: failures (no success within the limit).",
        "bar chart of turns to success",
    )


def plot_action_mix(table: Table, path: Path) -> Plot:
    """Per configuration, the share of ask / probe / recommend at each agent action (stacked)."""
    rows = table.rows[:8]
    cols = min(len(rows), 4)
    lines = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(lines, cols, figsize=(3.0 * cols, 2.5 * lines + 0.4), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    for ax, row in zip(axes.ravel(), rows, strict=False):
        ts, shares, running = action_mix(row)
        bottom = np.zeros(ts.size)
        for kind in ACTION_KINDS:
            values = np.nan_to_num(shares[kind])
            ax.bar(ts, values, bottom=bottom, color=KIND_COLORS[kind], width=0.85, label=kind)
            bottom += values
        total = max(running[0], 1)
        ax.plot(ts, running / total, color="black", linewidth=1.2, linestyle=":", label="still running")
        ax.set_title(_plain(row.label), fontsize=10, loc="left")
        ax.set_xlabel("agent action t", fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_ylabel("share")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=9, bbox_to_anchor=(0.5, -0.06)
    )
    fig.suptitle(f"Action mix per turn\n{_about(table)}", x=0.01, ha="left", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return Plot(
        path,
        "Mix of ask / probe / recommend at each agent action among conversations still running "
        "(dotted: share of conversations still running).",
        "stacked bars of action kinds per turn",
    )


def plot_learning_curves(
    groups: Mapping[str, Sequence[TrainRun]], colors: Mapping[str, str], path: Path
) -> Plot:
    """Validation SR@15 and hDCG against training steps; thin lines per seed, thick the mean over seeds."""
    curves_of = {label: [r.curve for r in runs if r.curve is not None] for label, runs in groups.items()}
    logged = {
        name
        for curves in curves_of.values()
        for c in curves
        for name, v in c.series.items()
        if np.isfinite(v).any()
    }
    panels = [name for name in ("SR@15", "hDCG") if name in logged] or ["SR@15"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.25 * len(panels), 3.6), squeeze=False)
    for label, curves in curves_of.items():
        color = colors.get(label, "#333333")
        for ax, name in zip(axes[0], panels, strict=True):
            series = [
                (c.steps, c.series[name])
                for c in curves
                if name in c.series and np.isfinite(c.series[name]).any()
            ]
            if not series:
                continue
            for steps, values in series:
                ax.plot(steps, values, color=color, alpha=0.3 if len(series) > 1 else 1.0, linewidth=1)
            if len(series) > 1:
                grid = np.unique(np.concatenate([s for s, _ in series]))
                stacked = np.array([np.interp(grid, s, v, left=np.nan, right=np.nan) for s, v in series])
                mean = np.nanmean(stacked, axis=0)
                ax.plot(
                    grid, mean, color=color, linewidth=2.2, label=_legend_label(f"{label} (n={len(series)})")
                )
            else:
                ax.lines[-1].set_label(_legend_label(label))
                ax.lines[-1].set_linewidth(2.2)
    for ax, name in zip(axes[0], panels, strict=True):
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"validation {name}")
        _style(ax)
    axes[0, 0].set_title("Learning curves", fontsize=11, loc="left")
    axes[0, 0].legend(frameon=False, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    what = " and ".join(panels)
    return Plot(
        path,
        f"Learning curves: evaluation {what} against environment steps; thin: one seed, thick: mean "
        "over seeds.",
        "learning curves",
    )


def plot_persona_usage(analysis: PersonaAnalysis, path: Path) -> Plot:
    """Share of the evaluated targets each shared persona prototype explains."""
    fig, ax = plt.subplots(figsize=(6.0, 0.42 * len(analysis.prototype_names) + 1.0))
    order = np.arange(len(analysis.prototype_names))[::-1]
    ax.barh([_plain(analysis.prototype_names[i]) for i in order], analysis.usage[order], color="#4c72b0")
    for y, i in enumerate(order):
        ax.text(analysis.usage[i] + 0.005, y, f"{analysis.usage[i]:.0%}", va="center", fontsize=8)
    ax.set_xlabel("share of target items explained")
    ax.set_title("Persona usage", fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)
    return Plot(
        path,
        "Persona usage: share of the evaluated (user, target) pairs whose arg-max persona "
        "maps to each shared prototype (named by its closest aspects).",
        "bar chart of persona usage",
    )


def plot_heatmap(
    analysis: PersonaAnalysis, truth_groups: np.ndarray | None, truth_names: Sequence[str] | None, path: Path
) -> Plot:  # fmt: skip
    """Prototype × aspect-group attention; beside it the world's true persona × group weights, if known."""
    assert analysis.heatmap is not None and analysis.group_names is not None
    panels = [(analysis.heatmap, analysis.prototype_names, "Learned: persona × aspect group of explanations")]
    if truth_groups is not None and truth_names is not None:
        panels.append((np.asarray(truth_groups), tuple(truth_names), "Ground truth: persona × group weights"))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.2 * len(panels), 0.45 * len(analysis.prototype_names) + 2.0), squeeze=False
    )
    for ax, (matrix, names, title) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-9), aspect="auto")
        ax.set_xticks(
            range(len(analysis.group_names)),
            [_plain(name) for name in analysis.group_names],
            rotation=35,
            ha="right",
            fontsize=9,
        )
        ax.set_yticks(range(len(names)), [_plain(name) for name in names], fontsize=9)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.6 * matrix.max() else "black",
            )
        ax.set_title(title, fontsize=11, loc="left")
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    _save(fig, path)
    caption = (
        "Persona × aspect-group attention: each user's top-20 items are explained by a persona (arg-max of "
        "persona attention α) and an aspect (arg-max of that persona's aspect attention ω); a row is the "
        "share of a prototype's explanations whose aspect falls in each group (rows sum to 1)."
    )
    if len(panels) > 1:
        caption += " Right: the persona world's true personas and their group weights (rows are not aligned)."
    return Plot(path, caption, "heatmap of persona by aspect-group attention")


def plot_sessions(comparison: SessionComparison, path: Path) -> Plot:
    """Per-session SR@15 of each memory mode with its 95% band; with a change session, a second panel
    by sessions since the change, the level before it dashed."""
    panels = 2 if comparison.has_change else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, 3.9), squeeze=False)
    spare = [c for c in COLORS if c not in MEMORY_COLORS.values()]
    colors = {
        s.memory: MEMORY_COLORS.get(s.memory, spare[i % len(spare)]) for i, s in enumerate(comparison.series)
    }
    ax = axes[0, 0]
    for series in comparison.series:
        x = np.arange(len(series.by_session))
        mean = np.array([v.mean for v in series.by_session])
        low = np.array([v.low for v in series.by_session])
        high = np.array([v.high for v in series.by_session])
        color = colors[series.memory]
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
        ax.plot(
            x, mean, marker="o", markersize=3.5, linewidth=2, color=color, label=_legend_label(series.memory)
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # every session up to about ten, then fewer
    ax.set_xlabel("session")
    ax.set_ylabel(METRIC)
    ax.set_title(f"{METRIC} per session — regime {_plain(comparison.regime)}", fontsize=11, loc="left")
    _style(ax)
    ax.legend(frameon=False, fontsize=9)
    if comparison.has_change:
        ax = axes[0, 1]
        for series in comparison.series:
            offsets = np.array(sorted(series.by_offset))
            mean = np.array([series.by_offset[d].mean for d in offsets])
            low = np.array([series.by_offset[d].low for d in offsets])
            high = np.array([series.by_offset[d].high for d in offsets])
            color = colors[series.memory]
            ax.fill_between(offsets, low, high, color=color, alpha=0.15, linewidth=0)
            ax.plot(
                offsets,
                mean,
                marker="o",
                markersize=3.5,
                linewidth=2,
                color=color,
                label=_legend_label(series.memory),
            )
            if series.before_change is not None:
                ax.axhline(series.before_change.mean, color=color, linestyle="--", linewidth=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axvline(-0.5, color="#444444", linewidth=1)
        ax.set_xlabel("sessions since the change (0: the first session of the new mixture)")
        ax.set_ylabel(METRIC)
        ax.set_title("aligned on the change", fontsize=11, loc="left")
        _style(ax)
    _save(fig, path)
    caption = (
        f"{METRIC} per session of returning users, per memory mode (95% bootstrap band over users, seeds "
        "pooled)."
    )
    if comparison.has_change:
        caption += (
            " Right: by sessions since the change session (fewer users at the far ends); dashed: each "
            "mode's level before the change."
        )
    return Plot(path, caption, f"line chart of {METRIC} per session for each memory mode")
