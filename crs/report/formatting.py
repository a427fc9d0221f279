"""What report.md and report.html say the same way, written once: numbers, CIs, shared sentences, row texts.

Both pages call these helpers, so a figure reads identically in Markdown and in HTML. What only one
format needs (Markdown bold, HTML classes and escaping) stays in `render_markdown` / `render_html`;
metrics.json (`render_metrics`) stores raw numbers and uses none of this.

To change how every figure is printed (digits, the dash for a missing value), edit `number`. To add a
column to a report table, see `crs.report.columns`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from crs.app.evaluation import OWN_TARGETS_NOTE
from crs.report.analysis import Row, Table, TestSet
from crs.report.inputs import EvalRun, TrainRun
from envs.metrics import MetricSummary
from envs.setting import SETTING_NOTES
from policies.rankers import PRETRAIN_DIR
from simulators.datasets import PERSONA_WORLD
from simulators.mcmipl import DATASETS as MCMIPL_DATASETS
from simulators.mcmipl import PUBLISHED_COMPARABLE
from simulators.mcmipl import setting_of as mcmipl_setting_of

INLINE_MARKUP = re.compile(r"\*\*(.+?)\*\*|`([^`\n]+)`")
"""The markup of our own sentences (which hold names read from files): ``**bold**`` and `` `code` ``."""


def render_inline(
    text: str, plain: Callable[[str], str], bold: Callable[[str], str], code: Callable[[str], str]
) -> str:
    """`text` with its `INLINE_MARKUP` spans rendered by `bold` and `code` and the rest by `plain`, in
    one pass, so that spans never cross (``**b `c** d`` is one bold span, then plain text)."""
    out, start = [], 0
    for match in INLINE_MARKUP.finditer(text):
        out.append(plain(text[start : match.start()]))
        strong, literal = match.groups()
        out.append(bold(strong) if strong is not None else code(literal))
        start = match.end()
    return "".join(out) + plain(text[start:])


QUESTION = (
    "Do persona attention (a user is several competing tastes; the candidate decides which one speaks) and "
    "aspect attention (which item features matter to this user) work better together than apart?"
)
TRAIN_ROWS_NOTE = (
    "As each run's summary.json states them: the trained policy on its own test conversations (bootstrap CI "
    "for one run, Student-t across seeds for several); not recomputed and not paired. The comparison above "
    "pairs the runs whose records the inputs hold: a run's own test (its `tested/` folder), or "
    "`crs eval --policy <run>`."
)
INTERACTION_METRIC = "SR@15"
"""The metric whose ablation interaction (full − persona-blind − aspect-blind + both-off) the pages show."""
MISSING = "–"
"""How a missing (None or NaN) figure is printed."""


def number(value: float | None, metric: str, signed: bool = False) -> str:
    """One figure of `metric`: 2 decimals for AT (turns), 3 for the rates; `MISSING` for None or NaN.

    Args:
        value: The figure.
        metric: Its metric name (decides the decimals).
        signed: Whether to print a "+" before positive values (differences).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    digits = 2 if metric == "AT" else 3
    return f"{value:{'+' if signed else ''}.{digits}f}"


def interval(summary: MetricSummary, metric: str, signed: bool = False) -> str:
    """The 95% CI of `summary` as "[low, high]"."""
    return f"[{number(summary.low, metric, signed)}, {number(summary.high, metric, signed)}]"


def figure(summary: MetricSummary, metric: str, signed: bool = False) -> str:
    """Mean and 95% CI as "mean [low, high]"."""
    return f"{number(summary.mean, metric, signed)} {interval(summary, metric, signed)}"


def setting_note(table: Table) -> str:
    """What the table's question setting means and which published figures it compares with, then the
    notes its runs' data carry ("data: no train split in the release ...": a figure must not be read
    without them)."""
    test = table.test_set
    data = dict.fromkeys(text for row in table.rows for run in row.runs for text in run.summary.notes)
    said = any(text.startswith(OWN_TARGETS_NOTE) for text in data)
    note = f"{SETTING_NOTES.get(test.setting, f'{test.setting} setting')} ({_published(test, said)})"
    return note + (f"; data: {'; '.join(data)}" if data else "")


def _published(test: TestSet, data_said: bool = False) -> str:
    """Which published figures a table's numbers compare with, if any; `data_said`: the data notes
    already say that none does (`OWN_TARGETS_NOTE`), and where MCMIPL's own setting is."""
    if test.dataset == PERSONA_WORLD:
        return "the synthetic persona world: no published figure compares with it"
    if test.setting == "binary":
        return "compare with EAR / SCPR / UNICORN figures"
    if test.setting == "enumerated":
        return "UNICORN's and EAR's YELP, not Yelp*"
    if test.dataset in PUBLISHED_COMPARABLE:
        return "compare with MCMIPL / SAPIENT figures"
    if test.dataset in MCMIPL_DATASETS:
        return "no published figure compares with it: see the data notes"
    if data_said:
        return f"on {test.dataset}, UNICORN's data, not MCMIPL's release and rules: see the data notes"
    own = mcmipl_setting_of(test.dataset)
    where = f"-d {own}" if own else "-d " + ", -d ".join(MCMIPL_DATASETS)
    return (
        f"on {test.dataset}, UNICORN's data, not MCMIPL's release and rules: no published figure compares "
        f"with it; MCMIPL's own setting: {where}"
    )


def separate_text(table: Table) -> str:
    """Why the table stands apart, then what would merge it (the pages' words; a LaTeX caption, for a
    paper, gives the reason alone)."""
    return "; ".join(part for part in (table.separated, table.separated_fix) if part)


def ci_text(table: Table) -> str:
    """How the table's CIs were computed, for the kinds of rows it holds."""
    kinds = {row.ci for row in table.rows}
    parts = []
    users = " (whole users of returning-user runs)" if any(row.units for row in table.rows) else ""
    if "conversations" in kinds:
        parts.append(f"bootstrap over conversations{users} for single runs")
    if "seeds" in kinds:
        parts.append(
            "Student-t across seeds for repeated runs, never narrower than the bootstrap over all their "
            f"conversations{users}"
        )
    if any(row.ci == "seeds" and row.n_runs == 2 for row in table.rows):
        parts.append(
            "over 2 seeds, 1 degree of freedom: such an interval is wide; more seeds, or the paired "
            "differences, tell more"
        )
    return "; ".join(parts)


def whole_note(table: Table) -> str:
    """Why ablation rows with other rankers than the reference are paired with it; "" when none are."""
    if not table.whole:
        return ""
    return (
        f"{', '.join(table.whole)} and {table.reference} each ran over a ranker pre-trained with their "
        "attentions switched as the variant says (their own with `ablate_ranker`, or one `crs pretrain` "
        "wrote so), so their paired differences compare the variants whole: the slate's ranker and the policy"
    )


def rankers_alone_note(table: Table) -> str:
    """What `Table.ranker_diffs` measure; "" when there are none."""
    if not table.ranker_diffs:
        return ""
    return (
        f"each rule over {table.reference}'s ranker minus the same rule over an ablation's own ranker, on "
        "the same conversations, 95% bootstrap CI: what the attentions the ablation switched off are worth "
        "to the ranker alone"
    )


def own_rules_note(table: Table) -> str:
    """What `Table.own_rule_diffs` measure; "" when there are none."""
    if not table.own_rule_diffs:
        return ""
    return (
        "each variant paired whole minus each rule over the variant's own ranker, on the same conversations, "
        "95% bootstrap CI: what the trained policy adds to the rule over the ranker it sits on"
    )


def runs_note(row: Row) -> str:
    """A comparison row's runs: "2 seeds (1, 2)" or "1 run, seed 1"."""
    if row.ci == "seeds":
        return f"{row.n_runs} seeds ({', '.join(str(s) for s in row.seeds)})"
    return f"1 run, seed {row.seeds[0]}"


def ranker_text(row: Row) -> str:
    """A comparison row's rankers, artifact paths shortened to their last two parts; "each run's own (5)"
    for several runs' own pre-trained rankers (`crs train` writes them to `<run>/ranker`)."""
    rankers = sorted({run.ranker_name for run in row.runs})
    if len(rankers) > 1 and all(Path(r).name == PRETRAIN_DIR for r in rankers):
        return f"each run's own ({len(rankers)})"
    return ", ".join("/".join(Path(r).parts[-2:]) if "/" in r else r for r in rankers)


def input_text(run: EvalRun) -> str:
    """One evaluation input in words (policy, test set, seed, ranker, and where it came from)."""
    text = (
        f"{run.policy} on {run.dataset}/{run.split}, {len(run.records)} conversations, seed {run.seed}, "
        f"ranker {run.ranker_name}, {run.setting} setting"
    )
    if run.train is not None:
        text += f", trained in {run.train.path} ({run.train.ablation or 'flags unknown'})"
    if run.task is not None:
        text += f", sweep task {run.task.name} of {run.task.sweep}"
    return text


def train_input_text(run: TrainRun) -> str:
    """One train-run input in words: "train run (<ablation>, seed <seed>)"."""
    return f"train run ({run.info.ablation or 'flags unknown'}, seed {run.info.seed})"
