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

from crs.app.sweep import read_metrics, read_task, sweep_task_dirs
from crs.report.analysis import seeds_interval

VARIANTS = ("full", "persona-blind", "aspect-blind", "both-off")


def per_seed(sweep: str, metric: str) -> dict[str, np.ndarray]:
    """{variant: the metric's mean per training seed, in seed order}; every variant needs the same seeds."""
    rows: dict[str, dict[int, float]] = {variant: {} for variant in VARIANTS}
    for folder in sweep_task_dirs(sweep):
        task = read_task(folder)
        if task["ablation"] in rows:
            rows[task["ablation"]][int(task["seed"])] = read_metrics(folder)[metric].mean
    seeds = sorted(rows["full"])
    if not seeds or any(sorted(values) != seeds for values in rows.values()):
        raise SystemExit(f"{sweep}: every variant of {VARIANTS} needs the same finished seeds, got {rows}")
    return {variant: np.array([values[s] for s in seeds]) for variant, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", help="a `crs sweep` directory of kind train with the four variants")
    parser.add_argument("--metric", default="SR@15")
    args = parser.parse_args()
    m = per_seed(args.sweep, args.metric)
    full, persona, aspect, both = (m[v] for v in VARIANTS)
    print(f"| variant | {' | '.join(f'seed {i}' for i in range(full.size))} | mean |")
    print("|---|" + "---|" * full.size + "---|")
    for variant in VARIANTS:
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
    main()
