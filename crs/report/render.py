"""Writing a built report: report.md, a self-contained report.html (plots inline as base64 PNG, no
network), and metrics.json with every figure the pages show."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from crs import __version__
from crs.common import write_json_atomic
from crs.report.analysis import LOWER_IS_BETTER, METRICS, PairedDiff, Row, Table
from crs.report.build import Report
from crs.report.persona import DeletionResult, PersonaAnalysis
from crs.report.plots import Plot
from envs.metrics import MetricSummary

QUESTION = (
    "Do persona attention (a user is several competing tastes; the candidate decides which one speaks) and "
    "aspect attention (which item features matter to this user) work better together than apart?"
)
SETTING_NOTE = {
    "binary": "binary setting: every question names one aspect (compare with EAR / SCPR / UNICORN figures)",
    "multiple_choice": (
        "multiple-choice setting: probes list several aspects (compare with MCMIPL / SAPIENT figures)"
    ),
    "enumerated": "enumerated questions (Yelp*: a category per question, as in SCPR / UNICORN)",
}


def _digits(metric: str) -> int:
    return 2 if metric == "AT" else 3


def _num(value: float, metric: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{'+' if signed else ''}.{_digits(metric)}f}"


def _ci(summary: MetricSummary, metric: str, signed: bool = False) -> str:
    return f"[{_num(summary.low, metric, signed)}, {_num(summary.high, metric, signed)}]"


def _favours_reference(diff: PairedDiff, metric: str) -> int:
    """+1 when the CI says the reference is better, −1 when worse, 0 when the CI includes zero."""
    m = diff.metrics[metric]
    sign = -1 if metric in LOWER_IS_BETTER else 1
    if m.low > 0:
        return sign
    if m.high < 0:
        return -sign
    return 0


def _row_note(row: Row) -> str:
    if row.ci == "seeds":
        return f"{row.n_runs} seeds ({', '.join(str(s) for s in row.seeds)})"
    return f"1 run, seed {row.seeds[0]}"


def _ranker_text(row: Row) -> str:
    rankers = sorted({run.ranker for run in row.runs})
    return ", ".join("/".join(Path(r).parts[-2:]) if "/" in r else r for r in rankers)


# ------------------------------------------------------------------------------------------ markdown
def to_markdown(report: Report) -> str:
    """The report as Markdown (plots linked as the PNG files beside it)."""
    out: list[str] = [f"# {report.title}", "", f"_{report.created} · persona-crs {__version__}_", ""]
    out += ["## The answer", "", f"> {QUESTION}", "", report.answer, ""]
    for index, table in enumerate(report.tables):
        out += [f"## Comparison — {table.title}", ""]
        if table.separated:
            out += [f"_Separate table: {table.separated}._", ""]
        out += [
            "| policy | ranker | runs | " + " | ".join(METRICS) + " |",
            "|---|---|---|" + "---:|" * len(METRICS),
        ]
        for row in table.rows:
            cells = []
            for m in METRICS:
                text = f"{_num(row.metrics[m].mean, m)} {_ci(row.metrics[m], m)}"
                cells.append(f"**{text}**" if m in row.best else text)
            out.append(
                f"| {row.label} | {_ranker_text(row)} | {_row_note(row)} | " + " | ".join(cells) + " |"
            )
        out += [
            "",
            f"Mean and 95% CI ({_ci_text(table)}); **bold**: best in the column; "
            f"{SETTING_NOTE.get(table.test_set.setting, table.test_set.setting)}; "
            f"{table.rows[0].n_conversations} conversations per run.",
            "",
        ]
        if table.diffs:
            out += [
                f"**Paired differences** ({table.reference} minus row, same conversations, 95% bootstrap CI; "
                "✓ = CI excludes 0):",
                "",
                "| row | pairs | " + " | ".join(METRICS) + " |",
                "|---|---:|" + "---:|" * len(METRICS),
            ]
            for d in table.diffs:
                cells = [
                    f"{_num(d.metrics[m].mean, m, True)} "
                    f"{_ci(d.metrics[m], m, True)}{' ✓' if d.significant(m) else ''}"
                    for m in METRICS
                ]
                out.append(f"| {d.label} | {d.n_pairs} | " + " | ".join(cells) + " |")
            out.append("")
        if table.interaction is not None:
            inter = table.interaction["SR@15"]
            out += [
                f"Interaction (full − persona-blind − aspect-blind + both-off), SR@15: "
                f"{_num(inter.mean, 'SR@15', True)} {_ci(inter, 'SR@15', True)} on {table.n_interaction} "
                "conversations.",
                "",
            ]
        for plot in report.table_plots.get(index, []):
            out += [f"![{plot.alt}]({plot.path.name})", "", f"_{plot.caption}_", ""]
    out += _train_rows_markdown(report)
    out += ["## Learning curves", ""]
    if report.learning is not None:
        out += [
            f"![{report.learning.alt}]({report.learning.path.name})",
            "",
            f"_{report.learning.caption}_",
            "",
        ]
    else:
        out += [f"_Unavailable: {report.unavailable.get('learning', '')}._", ""]
    for label, runs in report.train_groups.items():
        for run in runs:
            if run.missing:
                out.append(f"- {label} ({run.info.path}): missing {', '.join(run.missing)}")
    out += ["", "## Persona analysis", ""]
    if not report.persona:
        out += [f"_Unavailable: {report.unavailable.get('persona', '')}._", ""]
    for index, analysis in enumerate(report.persona):
        out += _persona_markdown(analysis, report.persona_plots.get(index, []))
    out += ["## Example dialogues", ""]
    if not report.examples:
        out += [f"_Unavailable: {report.unavailable.get('examples', '')}._", ""]
    for dialogue in report.examples:
        out += [f"**{dialogue.title}**", "", "```"]
        for turn in dialogue.turns:
            out.append(turn.text)
            if turn.explanation:
                out.append(f"       why: {turn.explanation}")
        out += ["```", ""]
    out += ["## Inputs and notes", ""]
    for run in report.inputs.evals:
        out.append(f"- `{run.path}`: {_input_text(run)}")
    for run in report.inputs.trains:
        out.append(
            f"- `{run.info.path}`: train run ({run.info.ablation or 'flags unknown'}, seed {run.info.seed})"
        )
    out.append("")
    for note in report.notes:
        out.append(f"- note: {note}")
    out.append("")
    return "\n".join(out)


def _train_rows_markdown(report: Report) -> list[str]:
    if not report.train_rows:
        return []
    out = [
        "## Training runs: their own test summaries",
        "",
        "| configuration | runs | steps | " + " | ".join(METRICS) + " |",
        "|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for row in report.train_rows:
        cells = [f"{_num(row.metrics[m].mean, m)} {_ci(row.metrics[m], m)}" for m in METRICS]
        runs = ", ".join(r.info.name for r in row.runs)
        steps = "/".join(f"{t:,}" for t in row.timesteps)
        out.append(f"| {row.label} | {runs} | {steps} | " + " | ".join(cells) + " |")
    out += ["", f"_{TRAIN_ROWS_NOTE}_", ""]
    return out


TRAIN_ROWS_NOTE = (
    "As each run's summary.json states them: the trained policy on its own test conversations (bootstrap CI "
    "for one run, Student-t across seeds for several); not recomputed and not paired. Evaluate the runs with "
    "`crs eval --policy <run>` on one seed to compare them on the same conversations above."
)


def _ci_text(table: Table) -> str:
    kinds = {row.ci for row in table.rows}
    parts = []
    if "conversations" in kinds:
        parts.append("bootstrap over conversations for single runs")
    if "seeds" in kinds:
        parts.append("Student-t across seeds for repeated runs")
    return "; ".join(parts)


def _input_text(run) -> str:
    text = (
        f"{run.policy} on {run.dataset}/{run.split}, {len(run.records)} conversations, seed {run.seed}, "
        f"ranker {run.ranker}, {run.setting} setting"
    )
    if run.train is not None:
        text += f", trained in {run.train.path} ({run.train.ablation or 'flags unknown'})"
    if run.task is not None:
        text += f", sweep task {run.task.name} of {run.task.sweep}"
    return text


def _deletion_text(result: DeletionResult | None) -> str:
    if result is None:
        return "n/a"
    return (
        f"{result.rate.mean:.1%} [{result.rate.low:.1%}, {result.rate.high:.1%}] of {result.n} items "
        f"(mean score drop {result.drop_explained:+.3f} vs {result.drop_random:+.3f} for a random one)"
    )


def _persona_markdown(analysis: PersonaAnalysis, plots: list[Plot]) -> list[str]:
    out = [f"### {analysis.dataset}: persona ranker `{analysis.source}`", ""]
    out.append(f"- pairs analysed: {analysis.n_pairs} (user, target) pairs of the evaluated conversations")
    if analysis.agreement is not None:
        a = analysis.agreement
        out.append(
            f"- agreement with the ground-truth personas (Hungarian-matched): {a.mean:.1%} [{a.low:.1%}, "
            f"{a.high:.1%}] "
            f"vs {analysis.chance:.1%} by chance (shuffled labels), {analysis.n_truth_personas} true personas"
        )
    out.append(f"- deletion test, explaining persona: {_deletion_text(analysis.deletion_persona)}")
    out.append(f"- deletion test, explaining aspect: {_deletion_text(analysis.deletion_aspect)}")
    for note in analysis.notes:
        out.append(f"- note: {note}")
    out.append("")
    for plot in plots:
        out += [f"![{plot.alt}]({plot.path.name})", "", f"_{plot.caption}_", ""]
    return out


# -------------------------------------------------------------------------------------------- html
CSS = """
:root { --ink:#1d2430; --muted:#6b7280; --line:#e5e7eb; --accent:#1f5fa8; --best:#dff3e4; --bestink:#11602a;
        --bad:#fde2e1; --badink:#9b1c1c; --paper:#ffffff; --bg:#f5f6f8; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 32px 60px; }
header h1 { margin:0 0 4px; font-size:28px; letter-spacing:-0.01em; }
header .meta { color:var(--muted); font-size:13px; }
h2 { font-size:20px; margin:34px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:22px 0 8px; }
.answer { background:var(--paper); border-left:6px solid var(--accent); border-radius:8px; padding:16px 20px;
          box-shadow:0 1px 3px rgba(0,0,0,.06); margin-top:18px; }
.answer .q { color:var(--muted); font-style:italic; margin:0 0 8px; }
.answer p { margin:0; font-size:16px; }
.verdicts { margin-top:10px; display:flex; gap:8px; flex-wrap:wrap; }
.verdict { border-radius:999px; padding:2px 12px; font-size:13px; font-weight:600; }
.verdict.yes { background:var(--best); color:var(--bestink); }
.verdict.no { background:var(--bad); color:var(--badink); }
.verdict.inconclusive { background:#fff4d6; color:#7a5300; }
.card { background:var(--paper); border-radius:8px; padding:14px 18px; box-shadow:0 1px 3px rgba(0,0,0,.06);
        margin:12px 0; overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:right; vertical-align:top; }
th { font-size:12.5px; letter-spacing:.02em; color:var(--muted); font-weight:600; }
th:first-child, td:first-child, td.text, th.text { text-align:left; }
td .mean { font-size:15px; font-weight:500; display:block; }
td .ci { font-size:11.5px; color:var(--muted); display:block; }
td.best { background:var(--best); }
td.best .mean { font-weight:700; color:var(--bestink); }
td.pos { background:var(--best); } td.neg { background:var(--bad); }
td.label { font-weight:600; white-space:nowrap; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px;
          vertical-align:0; }
.small { font-size:12.5px; color:var(--muted); }
.note { font-size:13px; color:var(--muted); margin:6px 0 0; }
.sep { background:#fff4d6; border-radius:6px; padding:8px 12px; font-size:13.5px; margin:8px 0; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(520px, 1fr)); gap:14px; }
figure { margin:0; background:var(--paper); border-radius:8px; padding:10px 12px 8px;
         box-shadow:0 1px 3px rgba(0,0,0,.06); }
figure.wide { grid-column:1 / -1; }
figure img { width:100%; height:auto; display:block; }
figcaption { font-size:12.5px; color:var(--muted); margin-top:4px; }
.stats { display:flex; gap:12px; flex-wrap:wrap; margin:10px 0; }
.stat { background:var(--paper); border-radius:8px; padding:10px 16px; box-shadow:0 1px 3px rgba(0,0,0,.06);
        min-width:220px; flex:1; }
.stat .v { font-size:24px; font-weight:700; }
.stat .k { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.dialogue { font:13px/1.55 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.dialogue div { padding:2px 0; white-space:pre-wrap; }
.dialogue .recommend { color:#1d4f91; } .dialogue .success { color:#11602a; font-weight:700; }
.dialogue .why { color:#7a5300; padding-left:4.5em; font-style:italic; }
.unavailable { color:var(--muted); font-style:italic; }
ul.inputs { font-size:13px; color:var(--ink); padding-left:18px; }
ul.inputs code { font-size:12px; background:#eef0f3; padding:1px 4px; border-radius:3px; }
footer { margin-top:40px; color:var(--muted); font-size:12px; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text))


def _md_inline(text: str) -> str:
    """Escape, then turn **x** into <strong>x</strong> and `x` into <code>x</code>."""
    escaped = _esc(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


WIDE_PLOTS = ("action_mix", "learning_curves", "persona_heatmap")


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    wide = ' class="wide"' if plot.path.stem.startswith(WIDE_PLOTS) else ""
    return (
        f'<figure{wide}><img data-plot="{_esc(plot.path.stem)}" alt="{_esc(plot.alt)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_esc(plot.caption)}</figcaption></figure>'
    )


def _metric_cell(
    summary: MetricSummary, metric: str, css: str = "", signed: bool = False, mark: str = ""
) -> str:
    return (
        f'<td class="{css}" data-metric="{_esc(metric)}"><span '
        f'class="mean">{_num(summary.mean, metric, signed)}{mark}</span>'
        f'<span class="ci">{_ci(summary, metric, signed)}</span></td>'
    )


def _table_html(table: Table, colors: Mapping[str, str], index: int) -> str:
    head = "".join(f"<th>{_esc(m)}</th>" for m in METRICS)
    lines = [
        f'<div class="card"><table class="comparison" data-table="{index}">'
        f'<thead><tr><th>policy</th><th class="text">ranker</th><th class="text">runs</th>{head}</tr>'
        "</thead><tbody>"
    ]
    for row in table.rows:
        cells = "".join(_metric_cell(row.metrics[m], m, "best" if m in row.best else "") for m in METRICS)
        swatch = f'<span class="swatch" style="background:{colors.get(row.label, "#999")}"></span>'
        lines.append(
            f'<tr><td class="label">{swatch}{_esc(row.label)}</td><td class="text '
            f'small">{_esc(_ranker_text(row))}</td>'
            f'<td class="text small">{_esc(_row_note(row))}</td>{cells}</tr>'
        )
    lines.append("</tbody></table>")
    lines.append(
        f'<p class="note">Mean and 95% CI ({_esc(_ci_text(table))}); green: best in the column (AT: lower is '
        f"better); {table.rows[0].n_conversations} conversations per run; "
        f"{_esc(SETTING_NOTE.get(table.test_set.setting, table.test_set.setting))}.</p></div>"
    )
    if table.diffs:
        lines.append(
            f'<div class="card"><table class="diffs"><thead><tr><th>{_esc(table.reference)} minus</th>'
            f"<th>pairs</th>{head}"
            "</tr></thead><tbody>"
        )
        for d in table.diffs:
            cells = []
            for m in METRICS:
                favour = _favours_reference(d, m)
                css = "pos" if favour > 0 else "neg" if favour < 0 else ""
                cells.append(_metric_cell(d.metrics[m], m, css, signed=True))
            lines.append(
                f'<tr><td class="label">{_esc(d.label)}</td><td>{d.n_pairs}</td>{"".join(cells)}</tr>'
            )
        lines.append("</tbody></table>")
        lines.append(
            f'<p class="note">Paired differences on the same conversations ({_esc(table.reference)} minus '
            "row), "
            "95% bootstrap CI over conversations. Green: the CI says the reference is better; red: worse; "
            "plain: the CI includes zero.</p>"
        )
        if table.interaction is not None:
            inter = table.interaction["SR@15"]
            lines.append(
                f'<p class="note">Interaction full − persona-blind − aspect-blind + both-off (SR@15): '
                f"<strong>{_num(inter.mean, 'SR@15', True)}</strong> {_ci(inter, 'SR@15', True)} on "
                f"{table.n_interaction} conversations.</p>"
            )
        lines.append("</div>")
    return "\n".join(lines)


def _deletion_stat(name: str, result: DeletionResult | None) -> str:
    if result is None:
        return f'<div class="stat"><div class="k">{_esc(name)}</div><div class="v">n/a</div></div>'
    return (
        f'<div class="stat"><div class="k">{_esc(name)}</div><div class="v">{result.rate.mean:.0%}</div>'
        f'<div class="small">[{result.rate.low:.0%}, {result.rate.high:.0%}] of {result.n} items; score drop '
        f"{result.drop_explained:+.3f} vs {result.drop_random:+.3f} for a random one</div></div>"
    )


def _persona_html(analysis: PersonaAnalysis, plots: list[Plot]) -> str:
    parts = [f"<h3>{_esc(analysis.dataset)} — persona ranker <code>{_esc(analysis.source)}</code></h3>"]
    parts.append('<div class="stats">')
    if analysis.agreement is not None:
        a = analysis.agreement
        parts.append(
            '<div class="stat"><div class="k">agreement with true personas</div><div '
            f'class="v">{a.mean:.0%}</div>'
            f'<div class="small">[{a.low:.0%}, {a.high:.0%}], chance {analysis.chance:.0%} (shuffled '
            "labels); "
            f"{analysis.n_truth_personas} true personas, Hungarian-matched</div></div>"
        )
    parts.append(_deletion_stat("deletion test: explaining persona", analysis.deletion_persona))
    parts.append(_deletion_stat("deletion test: explaining aspect", analysis.deletion_aspect))
    parts.append("</div>")
    parts.append(
        f'<p class="note">Over {analysis.n_pairs} (user, target) pairs of the evaluated conversations. '
        "Deletion "
        "test: removing the explaining persona (or aspect) must lower the item's score more than removing a "
        "random other one; the rate is the share of items where it does (ties count ½), 50% = no better than "
        "random.</p>"
    )
    for note in analysis.notes:
        parts.append(f'<p class="note">Note: {_esc(note)}</p>')
    parts.append('<div class="grid">' + "".join(_img(p) for p in plots) + "</div>")
    return "\n".join(parts)


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, plots as data: URIs, no scripts)."""
    colors = report.colors
    body: list[str] = [
        f'<header><h1>{_esc(report.title)}</h1><div class="meta">{_esc(report.created)} · persona-crs '
        f"{_esc(__version__)} · {len(report.inputs.evals)} evaluation runs, {len(report.inputs.trains)} "
        "train runs</div></header>"
    ]
    verdicts = "".join(
        f'<span class="verdict {_esc(v)}">{_esc(d)}: {_esc(v)}</span>' for d, v in report.verdicts.items()
    )
    body.append(
        f'<section class="answer" id="answer"><p class="q">{_esc(QUESTION)}</p>'
        f"<p>{_md_inline(report.answer)}</p>"
        + (f'<div class="verdicts">{verdicts}</div>' if verdicts else "")
        + "</section>"
    )
    if not report.tables:
        body.append(
            f'<h2>Comparison</h2><p class="unavailable">{_esc(report.unavailable.get("comparison", ""))}</p>'
        )
    for index, table in enumerate(report.tables):
        body.append(f"<h2>Comparison — {_esc(table.title)}</h2>")
        if table.separated:
            body.append(f'<div class="sep">Separate table: {_esc(table.separated)}.</div>')
        body.append(_table_html(table, colors, index))
        plots = report.table_plots.get(index, [])
        body.append('<div class="grid">' + "".join(_img(p) for p in plots) + "</div>")
    if report.train_rows:
        body.append("<h2>Training runs: their own test summaries</h2>")
        head = "".join(f"<th>{_esc(m)}</th>" for m in METRICS)
        lines = [
            '<div class="card"><table class="train"><thead><tr><th>configuration</th><th class="text">runs'
            "</th>"
            f"<th>steps</th>{head}</tr></thead><tbody>"
        ]
        for row in report.train_rows:
            cells = "".join(_metric_cell(row.metrics[m], m) for m in METRICS)
            swatch = f'<span class="swatch" style="background:{colors.get(row.label, "#999")}"></span>'
            runs = ", ".join(r.info.name for r in row.runs)
            steps = "/".join(f"{t:,}" for t in row.timesteps)
            lines.append(
                f'<tr><td class="label">{swatch}{_esc(row.label)}</td><td class="text small">{_esc(runs)}'
                "</td>"
                f"<td>{_esc(steps)}</td>{cells}</tr>"
            )
        lines.append(f'</tbody></table><p class="note">{_md_inline(TRAIN_ROWS_NOTE)}</p></div>')
        body.append("\n".join(lines))
    body.append("<h2>Learning curves</h2>")
    if report.learning is not None:
        body.append(f'<div class="grid">{_img(report.learning)}</div>')
    else:
        body.append(
            f'<p class="unavailable">Unavailable: {_esc(report.unavailable.get("learning", ""))}.</p>'
        )
    missing = [
        f"<li>{_esc(run.info.name)}: missing {_esc(', '.join(run.missing))}</li>"
        for runs in report.train_groups.values()
        for run in runs
        if run.missing
    ]
    if missing:
        body.append(f'<ul class="inputs">{"".join(missing)}</ul>')
    body.append("<h2>Persona analysis</h2>")
    if not report.persona:
        body.append(f'<p class="unavailable">Unavailable: {_esc(report.unavailable.get("persona", ""))}.</p>')
    for index, analysis in enumerate(report.persona):
        body.append(_persona_html(analysis, report.persona_plots.get(index, [])))
    body.append("<h2>Example dialogues</h2>")
    if not report.examples:
        body.append(
            f'<p class="unavailable">Unavailable: {_esc(report.unavailable.get("examples", ""))}.</p>'
        )
    for dialogue in report.examples:
        lines = []
        for turn in dialogue.turns:
            css = "success" if turn.success else turn.kind
            lines.append(f'<div class="{css}">{_esc(turn.text)}</div>')
            if turn.explanation:
                lines.append(f'<div class="why">why: {_esc(turn.explanation)}</div>')
        body.append(
            f'<div class="card"><h3>{_esc(dialogue.title)}</h3><div class="dialogue">{"".join(lines)}</div>'
            "</div>"
        )
    body.append('<h2>Inputs and notes</h2><ul class="inputs">')
    for run in report.inputs.evals:
        body.append(f"<li><code>{_esc(run.path)}</code>: {_esc(_input_text(run))}</li>")
    for run in report.inputs.trains:
        body.append(
            f"<li><code>{_esc(run.info.path)}</code>: train run "
            f"({_esc(run.info.ablation or 'flags unknown')}, "
            f"seed {_esc(run.info.seed)})</li>"
        )
    body.append("</ul>")
    if report.notes:
        body.append('<ul class="inputs">' + "".join(f"<li>{_esc(n)}</li>" for n in report.notes) + "</ul>")
    body.append(
        f"<footer>Generated by <code>crs report</code> (persona-crs {_esc(__version__)}). Metrics: SR@t, AT "
        "and "
        "hDCG@(15,10) as in UNICORN (SIGIR 2021), computed by <code>envs/metrics.py</code> from the episode "
        "records.</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(report.title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


# -------------------------------------------------------------------------------------- metrics.json
def _summary(summary: MetricSummary) -> dict[str, float]:
    return {"mean": summary.mean, "low": summary.low, "high": summary.high}


def _deletion_json(result: DeletionResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "rate": _summary(result.rate),
        "drop_explained": result.drop_explained,
        "drop_random": result.drop_random,
        "n": result.n,
    }


def _sweep_configuration(row: Row) -> dict[str, Any] | None:
    """A sweep row's configuration (dataset, policy, ablation, the sweep's group), else None."""
    task = row.runs[0].task
    if task is None:
        return None
    return {"dataset": task.dataset, "policy": task.policy, "ablation": task.ablation, "group": task.group}


def to_metrics(report: Report) -> dict[str, Any]:
    """Every figure of the report as JSON-ready data."""
    tables = []
    for table in report.tables:
        tables.append(
            {
                "test_set": {
                    "dataset": table.test_set.dataset,
                    "world_seed": table.test_set.world_seed,
                    "split": table.test_set.split,
                    "user": table.test_set.user,
                    "setting": table.test_set.setting,
                    "max_turns": table.test_set.max_turns,
                    "conversations": list(table.fingerprints),
                },
                "separated": table.separated,
                "reference": table.reference,
                "rows": [
                    {
                        "label": row.label,
                        "ablation": row.ablation,
                        "sweep": _sweep_configuration(row),
                        "ci": row.ci,
                        "runs": [str(r.path) for r in row.runs],
                        "seeds": list(row.seeds),
                        "rankers": sorted({r.ranker for r in row.runs}),
                        "conversations": row.n_conversations,
                        "best": sorted(row.best),
                        "metrics": {m: _summary(row.metrics[m]) for m in METRICS},
                    }
                    for row in table.rows
                ],
                "paired_differences": [
                    {
                        "row": d.label,
                        "reference": d.reference,
                        "pairs": d.n_pairs,
                        "metrics": {m: _summary(d.metrics[m]) for m in METRICS},
                    }
                    for d in table.diffs
                ],
                "interaction": None
                if table.interaction is None
                else {
                    "conversations": table.n_interaction,
                    **{m: _summary(v) for m, v in table.interaction.items()},
                },
            }
        )
    persona = [
        {
            "dataset": a.dataset,
            "source": a.source,
            "pairs": a.n_pairs,
            "prototypes": list(a.prototype_names),
            "usage": a.usage.tolist(),
            "groups": None if a.group_names is None else list(a.group_names),
            "heatmap": None if a.heatmap is None else np.round(a.heatmap, 6).tolist(),
            "truth_agreement": None if a.agreement is None else _summary(a.agreement),
            "truth_chance": a.chance,
            "deletion_persona": _deletion_json(a.deletion_persona),
            "deletion_aspect": _deletion_json(a.deletion_aspect),
            "notes": list(a.notes),
        }
        for a in report.persona
    ]
    learning = {
        label: [
            {
                "run": str(run.info.path),
                "seed": run.info.seed,
                "steps": None if run.curve is None else run.curve.steps.tolist(),
                "series": None
                if run.curve is None
                else {
                    name: [None if math.isnan(v) else v for v in values.tolist()]
                    for name, values in run.curve.series.items()
                },
                "missing": list(run.missing),
            }
            for run in runs
        ]
        for label, runs in report.train_groups.items()
    }
    return {
        "title": report.title,
        "created": report.created,
        "version": __version__,
        "answer": report.answer,
        "verdicts": report.verdicts,
        "tables": tables,
        "learning_curves": learning,
        "train_summaries": [
            {
                "label": row.label,
                "ablation": row.ablation,
                "runs": [str(r.info.path) for r in row.runs],
                "ci": row.ci,
                "timesteps": list(row.timesteps),
                "test_episodes": list(row.test_episodes),
                "metrics": {m: _summary(row.metrics[m]) for m in METRICS},
            }
            for row in report.train_rows
        ],
        "persona": persona,
        "examples": [
            {
                "policy": d.policy,
                "goal_index": d.goal_index,
                "title": d.title,
                "matches_record": d.matches_record,
            }
            for d in report.examples
        ],
        "unavailable": report.unavailable,
        "notes": report.notes,
        "inputs": {
            "evals": [str(r.path) for r in report.inputs.evals],
            "trains": [str(r.info.path) for r in report.inputs.trains],
        },
    }


def write_report(report: Report) -> list[Path]:
    """Write report.md, report.html and metrics.json into ``report.out``; return every file of the report."""
    out = report.out
    (out / "report.md").write_text(to_markdown(report))
    temporary = out / "report.html.tmp"
    temporary.write_text(to_html(report))
    temporary.replace(out / "report.html")
    write_json_atomic(out / "metrics.json", to_metrics(report))
    plots = [p.path for ps in report.table_plots.values() for p in ps]
    plots += [p.path for ps in report.persona_plots.values() for p in ps]
    if report.learning is not None:
        plots.append(report.learning.path)
    return [out / "report.md", out / "report.html", out / "metrics.json", *plots]
