"""Benchmark analysis: the persona × aspect ablation of a `kind: train` sweep, paired by training seed.

Reads each finished run's own test row (`crs train`'s test: the same conversations for every run of
the sweep) and prints, as Markdown, SR@15 (or --metric) per variant and seed, then the paired
contrasts over seeds with 95% Student-t intervals (`crs.report.analysis.seeds_interval`): full minus
each ablation, the interaction, and each attention's main effect. The ablation names are those of
benchmarks/configs/mcmipl_ablation_sweep*.yaml: full, persona-blind, aspect-blind, both-off.

Example:

    python benchmarks/ablation_by_seed.py runs/sweeps/mcmipl-ablation-20k
"""

from __future__ import annotations

import argparse

import numpy as np
from _cli import run_script  # this folder is on sys.path as a script

from crs.app.sweep import read_metrics, read_task, sweep_task_dirs
from crs.report.analysis import ABLATIONS, METRICS, seeds_interval
from simulators.errors import CRSError


def per_seed(sweep: str, metric: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """The finished training seeds, in order, and {variant: the metric's mean per seed, in that order};
    every variant of `ABLATIONS` needs the same seeds.

    Raises:
        CRSError: The variants' finished seeds differ, or none finished.
    """
    rows: dict[str, dict[int, float]] = {variant: {} for variant in ABLATIONS}
    for folder in sweep_task_dirs(sweep):
        task = read_task(folder)
        if task["ablation"] in rows:
            rows[task["ablation"]][int(task["seed"])] = read_metrics(folder)[metric].mean
    seeds = sorted(rows["full"])
    if not seeds or any(sorted(values) != seeds for values in rows.values()):
        finished = "; ".join(f"{variant}: {sorted(values)}" for variant, values in rows.items())
        raise CRSError(
            f"{sweep}: every variant of {', '.join(ABLATIONS)} needs the same finished seeds, got "
            f"{finished}; finish the sweep's tasks first"
        )
    return seeds, {variant: np.array([values[s] for s in seeds]) for variant, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", help="a `crs sweep` directory of kind train with the four variants")
    parser.add_argument("--metric", default="SR@15", choices=METRICS, help="the metric compared")
    args = parser.parse_args()
    seeds, m = per_seed(args.sweep, args.metric)
    full, persona, aspect, both = (m[v] for v in ABLATIONS)
    print(f"| variant | {' | '.join(f'seed {seed}' for seed in seeds)} | mean |")
    print("|---|" + "---|" * len(seeds) + "---|")
    for variant in ABLATIONS:
        print(f"| {variant} | {' | '.join(f'{x:.3f}' for x in m[variant])} | {m[variant].mean():.3f} |")
    contrasts = {
        "full − persona-blind": full - persona,
        "full − aspect-blind": full - aspect,
        "full − both-off": full - both,
        "interaction": (full - persona) - (aspect - both),
        "persona attention's main effect": ((full - persona) + (aspect - both)) / 2,
        "aspect attention's main effect": ((full - aspect) + (persona - both)) / 2,
    }
    print("\n| contrast | per seed | mean [95% t-CI over seeds] |\n|---|---|---|")
    for name, values in contrasts.items():
        ci = seeds_interval(args.metric, values, clip=False)
        seeds = ", ".join(f"{x:+.3f}" for x in values)
        print(f"| {name} | {seeds} | {ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] |")


if __name__ == "__main__":
    run_script(main)
