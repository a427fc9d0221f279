"""metrics.json: every figure the report pages show, as JSON-ready data (raw numbers, not page text).

`to_metrics` lists the top-level keys in file order; each nested record is built by one `_..._json`
function named after what it describes. Where to edit:

- a field of a comparison-table row: `_row_json`; of a training-runs row: `_train_row_json`
  (the same column on the pages is declared in `crs.report.columns`);
- a field of a persona analysis: `_persona_json`; of a learning curve: `_learning_json`.

Key order is part of the file format: append new keys, do not reorder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from crs import __version__
from crs.report.analysis import METRICS, PairedDiff, Row, Table, TestSet, TrainSummaryRow
from crs.report.build import Report
from crs.report.examples import ExampleDialogue
from crs.report.inputs import TrainRun
from crs.report.ledger import InputLine
from crs.report.persona import DeletionResult, PersonaAnalysis
from crs.report.sessions import sessions_json
from envs.metrics import MetricSummary


def to_metrics(report: Report) -> dict[str, Any]:
    """Every figure of the report as JSON-ready data."""
    return {
        "title": report.title,
        "created": report.created,
        "version": __version__,
        "answer": report.answer,
        "verdicts": report.verdicts,
        "tables": [_table_json(table) for table in report.tables],
        "learning_curves": _learning_json(report.train_groups),
        "train_summaries": [_train_row_json(row) for row in report.train_rows],
        "persona": [_persona_json(analysis) for analysis in report.persona],
        "examples": [_example_json(dialogue) for dialogue in report.examples],
        "unavailable": report.unavailable,
        "notes": report.notes,
        "inputs": {
            "evals": [str(r.path) for r in report.inputs.evals],
            "trains": [str(r.info.path) for r in report.inputs.trains],
        },
        "input_list": [_input_line_json(line) for line in report.input_list],
        "sessions": [sessions_json(comparison) for comparison in report.sessions],
    }


def _input_line_json(line: InputLine) -> dict[str, Any]:
    return {"used": line.used, "where": line.where, "reason": line.reason, "paths": list(line.paths)}


def _summary(summary: MetricSummary) -> dict[str, float]:
    return {"mean": summary.mean, "low": summary.low, "high": summary.high}


def _metrics_json(metrics: Mapping[str, MetricSummary]) -> dict[str, dict[str, float]]:
    return {m: _summary(metrics[m]) for m in METRICS}


def _table_json(table: Table) -> dict[str, Any]:
    return {
        "test_set": _test_set_json(table.test_set, table.fingerprints),
        "separated": table.separated,
        "separated_fix": table.separated_fix,
        "reference": table.reference,
        "rows": [_row_json(row) for row in table.rows],
        "paired_differences": [_diff_json(d) for d in table.diffs],
        "unpaired": list(table.unpaired),
        "paired_whole": list(table.whole),
        "rankers_alone": [_diff_json(d) for d in table.ranker_diffs],
        "over_own_rankers": [_diff_json(d) for d in table.own_rule_diffs],
        "interaction": None
        if table.interaction is None
        else {
            "conversations": table.n_interaction,
            **{m: _summary(v) for m, v in table.interaction.items()},
        },
    }


def _test_set_json(test_set: TestSet, fingerprints: tuple[str, ...]) -> dict[str, Any]:
    return {
        "dataset": test_set.dataset,
        "world_seed": test_set.world_seed,
        "world": dict(test_set.world),
        "split": test_set.split,
        "user": test_set.user,
        "setting": test_set.setting,
        "max_turns": test_set.max_turns,
        "sessions": test_set.sessions,
        "regime": test_set.regime,
        "pair_unit": test_set.pair_unit,
        "conversations": list(fingerprints),
    }


def _sweep_configuration(row: Row) -> dict[str, Any] | None:
    """A sweep row's configuration (dataset, policy, ablation, the sweep's group), else None."""
    task = row.runs[0].task
    if task is None:
        return None
    return {"dataset": task.dataset, "policy": task.policy, "ablation": task.ablation, "group": task.group}


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "label": row.label,
        "ablation": row.ablation,
        "sweep": _sweep_configuration(row),
        "ci": row.ci,
        "runs": [str(r.path) for r in row.runs],
        "seeds": list(row.seeds),
        "rankers": sorted({r.ranker_name for r in row.runs}),
        "conversations": row.n_conversations,  # per run; None when the runs differ
        "conversations_per_run": list(row.run_conversations),
        "best": sorted(row.best),
        "metrics": _metrics_json(row.metrics),
    }


def _diff_json(diff: PairedDiff) -> dict[str, Any]:
    return {
        "row": diff.label,
        "reference": diff.reference,
        "pairs": diff.n_pairs,
        "metrics": _metrics_json(diff.metrics),
    }


def _learning_json(groups: Mapping[str, list[TrainRun]]) -> dict[str, list[dict[str, Any]]]:
    """Each train configuration's runs: their logged evaluation curves (NaN written as null)."""
    return {label: [_curve_json(run) for run in runs] for label, runs in groups.items()}


def _curve_json(run: TrainRun) -> dict[str, Any]:
    curve = run.curve
    return {
        "run": str(run.info.path),
        "seed": run.info.seed,
        "steps": None if curve is None else curve.steps.tolist(),
        "series": None
        if curve is None
        else {
            name: [None if math.isnan(v) else v for v in values.tolist()]
            for name, values in curve.series.items()
        },
        "missing": list(run.missing),
    }


def _train_row_json(row: TrainSummaryRow) -> dict[str, Any]:
    return {
        "label": row.label,
        "ablation": row.ablation,
        "runs": [str(r.info.path) for r in row.runs],
        "ci": row.ci,
        "timesteps": list(row.timesteps),
        "test_episodes": list(row.test_episodes),
        "metrics": _metrics_json(row.metrics),
    }


def _deletion_json(result: DeletionResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "rate": _summary(result.rate),
        "drop_explained": result.drop_explained,
        "drop_random": result.drop_random,
        "n": result.n,
    }


def _persona_json(analysis: PersonaAnalysis) -> dict[str, Any]:
    a = analysis
    return {
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


def _example_json(dialogue: ExampleDialogue) -> dict[str, Any]:
    return {
        "policy": dialogue.policy,
        "goal_index": dialogue.goal_index,
        "title": dialogue.title,
        "matches_record": dialogue.matches_record,
    }
