"""Building a report: read the inputs, analyse, draw, and write report.md, report.html, metrics.json."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crs.report.analysis import (
    PRIMARY,
    Table,
    TrainSummaryRow,
    answer,
    build_tables,
    duplicates,
    train_summary_rows,
    trained_run_label,
    unpaired_answer,
)
from crs.report.examples import ExampleDialogue, check_targets, example_dialogues, pick_examples
from crs.report.inputs import EvalRun, Inputs, TrainRun, load_inputs
from crs.report.ledger import InputLine, input_lines
from crs.report.persona import PersonaAnalysis, analyse_personas, has_personas
from crs.report.plots import (
    Plot,
    figure_file,
    palette,
    plot_action_mix,
    plot_heatmap,
    plot_learning_curves,
    plot_persona_usage,
    plot_sessions,
    plot_sr_curves,
    plot_turns,
)
from crs.report.sessions import SessionComparison, session_comparisons, session_headlines
from envs.ranker import ExplainablePersonaRanker
from policies.rankers import RankerSpec
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError

log = logging.getLogger(__name__)

PRETRAIN_CONFIG = "config.json"
FIGURES_OFF = "figures switched off (--no-figures): no plot was drawn"


@dataclass
class Report:
    """Everything a report shows (filled by `build_report`, written by `crs.report.render`).

    Attributes:
        out: Output folder.
        title: Report title.
        created: Creation time (ISO 8601).
        inputs: What was read.
        tables: Comparison tables.
        notes: Facts about the inputs a reader must know (datasets and settings covered, dataset notes).
        answer: The generated answer paragraph (Markdown emphasis allowed).
        verdicts: "yes" / "no" / "inconclusive" per dataset label with a full model and ablations.
        table_plots: Plots per table index.
        learning: Learning-curve plot, if any train run logged a curve.
        train_groups: Train runs grouped by configuration label.
        train_rows: The train configurations' own final test figures.
        persona: Persona analyses (one per persona ranker and dataset).
        persona_plots: Plots per persona analysis index.
        examples: Replayed example dialogues.
        examples_table: The index of the table they are replayed from (the first of plain conversations).
        unavailable: Section name -> why it is missing.
        colors: Colour of each configuration label in the plots and tables.
        input_list: Which inputs were used (and in which table) and which were left out, with the
            reasons (`crs.report.ledger`); shown at the top of every output.
        sessions: Returning-user comparisons of `crs eval --sessions` folders (`crs.report.sessions`).
        session_plots: Their per-session curves, by comparison index.
        figures: Whether plots were drawn (False: ``--no-figures``, said under the title).
    """

    out: Path
    title: str
    created: str
    inputs: Inputs
    tables: list[Table]
    notes: list[str]
    answer: str
    verdicts: dict[str, str]
    table_plots: dict[int, list[Plot]] = field(default_factory=dict)
    learning: Plot | None = None
    train_groups: dict[str, list[TrainRun]] = field(default_factory=dict)
    train_rows: list[TrainSummaryRow] = field(default_factory=list)
    persona: list[PersonaAnalysis] = field(default_factory=list)
    persona_plots: dict[int, list[Plot]] = field(default_factory=dict)
    examples: list[ExampleDialogue] = field(default_factory=list)
    examples_table: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    colors: dict[str, str] = field(default_factory=dict)
    input_list: list[InputLine] = field(default_factory=list)
    sessions: list[SessionComparison] = field(default_factory=list)
    session_plots: dict[int, Plot] = field(default_factory=dict)
    figures: bool = True


Explainers = tuple[ExplainablePersonaRanker, frozenset[Path]]
"""A table's persona ranker (several personas per user) and the runs that rank with it: only their
example dialogues are explained by it."""


class _Catalogs:
    """Catalogues loaded once per (dataset, world seed, world sizes, data folder)."""

    def __init__(self, data_dir: str | Path | None) -> None:
        self.data_dir = data_dir
        self._cache: dict[tuple[str, int | None, tuple[tuple[str, int], ...], str | None], Catalog] = {}

    def folder(self, run: EvalRun) -> str | None:
        """The real-data folder of `run`'s catalogue: the report's ``--data-dir``, else the one the
        evaluation read (`EvalRun.data_dir`), else None (``$CRS_DATA_DIR``)."""
        return str(self.data_dir) if self.data_dir is not None else run.data_dir

    def get(self, run: EvalRun) -> Catalog:
        if run.summary.sessions is not None:
            raise CRSError(
                f"{run.path} is a returning-user run (`crs eval --sessions`): its conversations are "
                "sessions of returning users, not goals of the split; see its returning-user table instead"
            )
        folder = self.folder(run)
        key = (run.dataset, run.world_seed, run.world, folder)
        if key not in self._cache:
            self._cache[key] = DatasetSpec(run.dataset, folder, run.world_seed or 0, run.world).load()
        catalog = self._cache[key]
        check_catalog(run, catalog)
        return catalog


def check_catalog(run: EvalRun, catalog: Catalog) -> None:
    """Refuse a catalogue whose split does not hold the run's conversations (data or generator changed).

    Raises:
        CRSError: A record's goal index is outside the split, names another user, or a target outside
            the catalogue (`check_targets`).
    """
    interactions = catalog.splits.get(run.split)
    if interactions is None:
        raise CRSError(f"{run.path}: the {catalog.name} catalogue loaded now has no {run.split!r} split")
    for record in run.records:
        if (
            record.goal_index >= len(interactions)
            or int(interactions.users[record.goal_index]) != record.user
        ):
            raise CRSError(
                f"{run.path}: conversation {record.goal_index} was user {record.user}'s, but the "
                f"{catalog.name} "
                "catalogue loaded now differs (another world size, generator or data version); re-run `crs "
                "eval`"
            )
    check_targets(run, run.records, catalog)


def _pretrain_artifact(name: str | None) -> Path | None:
    """The `crs pretrain` artifact folder a ranker name names, else None."""
    try:
        spec = RankerSpec.parse(name) if name else None
    except CRSError:
        return None
    if spec is None or spec.kind != "artifact" or not (Path(spec.where) / PRETRAIN_CONFIG).is_file():
        return None
    return Path(spec.where)


def _gone_artifacts(table: Table) -> list[str]:
    """The pre-training artifact folders a table's runs name that are gone (moved or deleted)."""
    gone: set[str] = set()
    for row in table.rows:
        for run in row.runs:
            with contextlib.suppress(CRSError):
                spec = RankerSpec.parse(run.ranker_to_load)
                if spec.kind == "artifact" and not Path(spec.where).exists():
                    gone.add(spec.where)
    return sorted(gone)


def persona_sources(table: Table) -> dict[str, list[EvalRun]]:
    """Persona rankers named by a table's runs (pre-training artifacts), with the runs that use each;
    the full model's first, then in row order."""
    sources: dict[str, list[EvalRun]] = {}
    path_of: dict[str, str] = {}  # ranker identity -> the first path naming it (copies are one ranker)
    for row in sorted(table.rows, key=lambda r: r.ablation != "full"):
        for run in row.runs:
            for name in (run.ranker_to_load, run.train.pretrained if run.train is not None else None):
                artifact = _pretrain_artifact(name)
                if artifact is not None:
                    path = path_of.setdefault(RankerSpec("artifact", str(artifact)).identity(), str(artifact))
                    if run not in sources.setdefault(path, []):
                        sources[path].append(run)
    return sources


def _train_test_set(run: TrainRun) -> str:
    """What a train run was tested on, in words: dataset, question setting, and on the persona world its
    world seed and any world size it set. Runs of different ones never pool as seeds of one row."""
    config = run.info.config
    sizes = ", ".join(
        f"{key} {value}" for key, value in (config.get("world") or {}).items() if value is not None
    )
    seed = config.get("world_seed") or 0
    # the default world (seed 0, default sizes) goes unnamed
    world = f" · world seed {seed}" + (f" ({sizes})" if sizes else "") if seed or sizes else ""
    return f"{run.info.dataset}{world if run.info.dataset == 'persona_world' else ''} · {run.info.setting}"


def _train_label(run: TrainRun, mixed: bool, sweeps: int, ablated: bool) -> str:
    """The train configuration `run` belongs to; `mixed`: the runs span test sets (`_train_test_set`:
    datasets, settings, persona worlds), which then lead the label so that runs of different ones are
    never pooled; `sweeps`: how many sweep folders the train runs come from (with two or more, a sweep's
    runs are named by their sweep, as the comparison table names them, since two sweeps are two
    configurations); `ablated`: an ablation is among the runs (a full model is "full" only beside one,
    as in the comparison table; alone, it is named after its run)."""
    if run.task is not None:  # a sweep's train task: its configuration (this table spans datasets)
        label = (
            f"{_train_test_set(run)} · {run.task.label}"
            if mixed
            else f"{run.task.dataset} · {run.task.label}"
        )
        return f"{label} ({run.task.sweep.name})" if sweeps > 1 else label
    if run.info.ablation is not None and (ablated or run.info.ablation != "full"):
        label = run.info.ablation
    else:
        label = trained_run_label(run.info.name, run.info.dataset or "")
    return f"{_train_test_set(run)} · {label}" if mixed else label


def build_report(
    paths: Sequence[str | Path] | Inputs,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    examples: int = 3,
    persona: bool = True,
    title: str | None = None,
    seed: int = 0,
    figures: bool = True,
) -> Report:
    """Build the report of `paths` into `out` (plots included) and return it; `write_report` writes the files.

    Args:
        paths: `crs eval` output folders and/or `crs train` run folders (or folders holding them), or
            the `Inputs` that `load_inputs` read from them.
        out: Output folder (created).
        data_dir: Real-data folder, for real-data catalogues (persona analysis, example dialogues); by
            default each evaluation's own (`EvalRun.data_dir`).
        examples: How many example dialogues to replay (0: none).
        persona: Whether to run the persona analysis when a persona ranker is available.
        title: Report title.
        seed: Seed of the analysis' own sampling (persona pairs, deletion baselines).
        figures: Whether to draw the plots (drawing and writing them takes most of a report's time).

    Raises:
        CRSError: Unreadable inputs (see `load_inputs`).
    """
    inputs = paths if isinstance(paths, Inputs) else load_inputs(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables, notes = build_tables(inputs.evals)
    for run in inputs.evals:
        for note in run.summary.notes:
            text = f"{run.dataset}: {note}"
            if text not in notes:
                notes.append(text)
    text, verdicts = answer(tables) if tables else ("No evaluation records: nothing to compare.", {})
    report = Report(
        out=out,
        title=title or "persona-crs evaluation report",
        created=_dt.datetime.now().isoformat(timespec="seconds"),
        inputs=inputs,
        tables=tables,
        notes=notes,
        answer=text,
        verdicts=verdicts,
        input_list=input_lines(inputs, tables),
    )
    if not tables:
        report.unavailable["comparison"] = (
            "no evaluation records among the inputs (train runs without a final test evaluation)"
        )

    train_groups: dict[str, list[TrainRun]] = {}
    mixed = len({_train_test_set(run) for run in inputs.trains}) > 1
    sweeps = len({run.task.sweep for run in inputs.trains if run.task is not None})
    ablated = any(run.info.ablation not in (None, "full") for run in inputs.trains)
    for train_run in inputs.trains:
        train_groups.setdefault(_train_label(train_run, mixed, sweeps, ablated), []).append(train_run)
    report.train_groups = train_groups
    report.train_rows = train_summary_rows(train_groups)
    if not report.verdicts and not mixed:  # the unpaired answer compares runs of one dataset and setting
        unpaired = unpaired_answer(report.train_rows)
        if unpaired is not None:
            report.answer = unpaired
    labels = [row.label for t in tables for row in t.rows] + list(train_groups)
    ablations = {row.label: row.ablation for t in tables for row in t.rows}
    ablations.update({label: runs[0].info.ablation for label, runs in train_groups.items()})
    colors = palette(labels, ablations)
    report.colors = colors

    report.figures = figures
    if not figures:
        report.notes.append(FIGURES_OFF)
    for index, table in enumerate(tables if figures else ()):
        report.table_plots[index] = [
            plot_sr_curves(table, colors, figure_file(out, "sr_curves", index)),
            plot_turns(table, colors, figure_file(out, "turns", index)),
            plot_action_mix(table, figure_file(out, "action_mix", index)),
        ]

    repeats = {id(run) for run, _ in duplicates(inputs.evals)}  # read once, as in the tables
    report.sessions = session_comparisons([run for run in inputs.evals if id(run) not in repeats])
    report.answer = " ".join(
        [report.answer, *(line for c in report.sessions for line in session_headlines(c))]
    )
    for index, comparison in enumerate(report.sessions if figures else ()):
        report.session_plots[index] = plot_sessions(comparison, figure_file(out, "sessions", index))

    curves = any(run.curve is not None for run in inputs.trains)
    if curves and figures:
        report.learning = plot_learning_curves(train_groups, colors, figure_file(out, "learning_curves"))
    elif curves:
        report.unavailable["learning"] = (
            f"{FIGURES_OFF}; the curves' points are in metrics.json (learning_curves)"
        )
    elif inputs.trains:
        report.unavailable["learning"] = "the train runs logged no evaluation curve"
    else:
        report.unavailable["learning"] = "no `crs train` run among the inputs"

    catalogs = _Catalogs(data_dir)
    explainers: dict[str, Explainers] = {}
    if not persona:
        report.unavailable["persona"] = "persona analysis switched off (--no-persona)"
    else:
        _persona_sections(report, catalogs, explainers, seed, figures)

    if examples > 0 and tables:
        _examples(report, catalogs, explainers, examples)
    elif examples <= 0:
        report.unavailable["examples"] = "example dialogues switched off (--examples 0)"
    else:
        report.unavailable["examples"] = "no evaluation records to replay"
    return report


def _persona_sections(
    report: Report, catalogs: _Catalogs, explainers: dict[str, Explainers], seed: int, figures: bool
) -> None:
    reasons: list[str] = []
    for table in report.tables:
        if all(run.summary.sessions is not None for row in table.rows for run in row.runs):
            reasons.append(
                f"{table.test_set.dataset_label}: returning-user runs (`crs eval --sessions`), whose persona "
                "tracking is in the returning-user table instead"
            )
            continue
        sources = persona_sources(table)
        gone = _gone_artifacts(table)
        if not sources and gone:
            reasons.append(
                f"{table.test_set.dataset_label}: the persona ranker the runs name no longer exists "
                f"({', '.join(gone)}): restore it, or train again"
            )
            continue
        if not sources:
            rankers = sorted({run.ranker_name for row in table.rows for run in row.runs})
            fix = (
                "add `crs train` runs on this world with `ranker: pretrain` (a persona ranker "
                "pre-trained on the fly): `crs eval` and `crs pretrain` cannot build a world of custom sizes"
                if table.test_set.world
                else "evaluate with `--ranker <crs pretrain artifact>` or add `crs train` runs"
            )
            reasons.append(
                f"{table.test_set.dataset_label}: no persona model among the inputs (rankers: "
                f"{', '.join(rankers)}); {fix}"
            )
            continue
        if len(sources) > 1:
            skipped = ", ".join(list(sources)[1:])
            reasons.append(
                f"{table.test_set.dataset_label}: persona analysis of {next(iter(sources))} only (also: "
                f"{skipped})"
            )
        for source, runs in list(sources.items())[:1]:
            try:
                catalog = catalogs.get(runs[0])
                ranker = RankerSpec("artifact", source).build(catalog)
            except (CRSError, ImportError, OSError) as exc:
                reasons.append(
                    f"{table.test_set.dataset_label}: could not load persona ranker {source} ({exc})"
                )
                continue
            if not has_personas(ranker):
                reasons.append(f"{source} has no persona interface")
                continue
            if ranker.personas_per_user > 1:  # one persona per user explains nothing about sides
                explainers[table.test_set.dataset_label] = (ranker, frozenset(run.path for run in runs))
            label = table.test_set.dataset_label
            if [other.test_set.dataset_label for other in report.tables].count(label) > 1:
                label = table.title  # two tables of one dataset (e.g. two settings): the whole test set
            analysis = analyse_personas(ranker, catalog, runs, source, label, seed=seed)
            index = len(report.persona)
            report.persona.append(analysis)
            if not figures:
                continue
            plots = [plot_persona_usage(analysis, figure_file(report.out, "persona_usage", index))]
            if analysis.heatmap is not None:
                truth = catalog.truth
                plots.append(
                    plot_heatmap(
                        analysis,
                        None if truth is None else truth.persona_groups,
                        None if truth is None else [f"T{i} · {n}" for i, n in enumerate(truth.persona_names)],
                        figure_file(report.out, "persona_heatmap", index),
                    )
                )
            report.persona_plots[index] = plots
    if not report.persona:
        report.unavailable["persona"] = "; ".join(dict.fromkeys(reasons)) or "no evaluation records"
    elif reasons:
        report.notes.extend(reasons)


def _examples(
    report: Report,
    catalogs: _Catalogs,
    explainers: dict[str, Explainers],
    limit: int,
) -> None:
    # returning users' sessions are not replayed one by one: the first table of plain conversations
    plain = [
        i for i, t in enumerate(report.tables) if all(r.runs[0].summary.sessions is None for r in t.rows)
    ]
    if not plain:
        report.unavailable["examples"] = (
            "every table is of returning users (`crs eval --sessions`), whose sessions are not replayed "
            "one by one; see their returning-user table"
        )
        return
    report.examples_table = plain[0]
    table = report.tables[plain[0]]
    reference = table.row(table.reference) if table.reference else table.rows[0]
    others = [r for r in table.rows if r.label != reference.label]
    contrast = min(others, key=lambda r: r.metrics[PRIMARY].mean) if others else None
    picks = pick_examples(
        (reference.label, reference.runs[0]),
        None if contrast is None else (contrast.label, contrast.runs[0]),
        limit,
    )
    try:
        catalog = catalogs.get(reference.runs[0])
    except (CRSError, OSError) as exc:
        report.unavailable["examples"] = f"could not load the {reference.runs[0].dataset} catalogue ({exc})"
        return
    explainer, explained = explainers.get(table.test_set.dataset_label, (None, frozenset()))
    folder = catalogs.folder(reference.runs[0])
    dialogues, notes = example_dialogues(picks, catalog, folder, explainer, explained)
    report.examples = dialogues
    report.notes.extend(notes)
    if not dialogues:
        report.unavailable["examples"] = "; ".join(notes) or "no conversation to show"
