"""Benchmark analysis: the ranker half of an end-to-end ablation, each rule over the full ranker and over
every variant's ablated ranker, paired on the same conversations.

`crs report` gives a rule over an ablation's own ranker a row of its own ("ask-4 (persona-blind ranker)")
and does not pair it with the full model (the difference would mix the rule with the ranker). Paired
with the same rule over the full model's ranker, it measures what the ranker's attention is worth on its
own. Prints, as Markdown, per rule and variant: the rule over the full ranker minus the rule over the
variant's ranker on SR@15 (or --metric), with the report's 95% bootstrap CI over the paired
conversations, then the difference per seed (the sweep tasks that tested the rule).

Example:

    python benchmarks/rules_over_ablated_rankers.py runs/sweeps/mcmipl-ablation-e2e
"""

from __future__ import annotations

import argparse

import numpy as np

from crs.report.analysis import METRICS, Row, build_tables, paired_difference
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
    head = f"rule: full ranker − variant's ranker, {args.metric}"
    print(f"| {head} | pairs | over the conversations | per seed |")
    print("|---|---:|---|---|")
    for table in tables:
        rows = {row.label: row for row in table.rows}
        for row in table.rows:
            variant = row.runs[0].ranker_variant
            base = rows.get(row.runs[0].policy)
            if variant is None or base is None:
                continue
            diff = paired_difference(base, row)
            ci = diff.metrics[args.metric]
            seeds = ", ".join(f"s{seed} {value:+.3f}" for seed, value in per_seed(base, row, args.metric))
            print(
                f"| {base.label}: full − {variant} | {diff.n_pairs} | "
                f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] | {seeds} |"
            )


if __name__ == "__main__":
    main()
