"""Benchmark analysis: the rankers alone in an end-to-end ablation, per seed.

`crs report` pairs each rule over an ablation's own ranker ("ask-4 (persona-blind ranker)") with the same
rule over the full model's ranker ("The rankers alone", `crs.report.analysis.Table.ranker_diffs`): what
the attention the ablation switched off is worth to the ranker alone, over all the paired conversations.
This prints those differences on SR@15 (or --metric) as Markdown, with the difference on each seed's own
conversations (the sweep tasks that tested the rule) beside them.

Example:

    python benchmarks/rules_over_ablated_rankers.py runs/sweeps/mcmipl-ablation-e2e
"""

from __future__ import annotations

import argparse

import numpy as np
from _cli import run_script  # this folder is on sys.path as a script

from crs.report.analysis import METRICS, Row, build_tables
from crs.report.inputs import load_inputs


def per_seed(reference: Row, other: Row, metric: str) -> list[tuple[int, float]]:
    """(seed, mean of reference minus other over that seed's shared conversations) per seed, in order."""
    out = []
    for run in sorted(reference.runs, key=lambda r: r.replica_seed):
        keys = [k for k in reference.values[metric] if k[0] == run.fingerprint and k in other.values[metric]]
        if keys:
            diffs = [reference.values[metric][k] - other.values[metric][k] for k in keys]
            out.append((run.replica_seed, float(np.mean(diffs))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help="the sweep folder (or the run folders) `crs report` reads")
    parser.add_argument("--metric", default="SR@15", choices=METRICS)
    args = parser.parse_args()
    tables, _ = build_tables(load_inputs(args.inputs).evals)
    print(f"| the rankers alone, {args.metric} | pairs | over the conversations | per seed |")
    print("|---|---:|---|---|")
    for table in tables:
        for diff in table.ranker_diffs:
            ci = diff.metrics[args.metric]
            seeds = per_seed(table.row(diff.reference), table.row(diff.label), args.metric)
            print(
                f"| {diff.reference} − {diff.label} | {diff.n_pairs} | "
                f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] | "
                + ", ".join(f"s{seed} {value:+.3f}" for seed, value in seeds)
                + " |"
            )


if __name__ == "__main__":
    run_script(main)
