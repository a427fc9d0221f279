"""Benchmark analysis: two arms of trained runs (e.g. with and without persona probes), paired seed by seed.

Reads `crs eval` folders evaluated on the same test conversations and prints, as Markdown:
- each folder's SR@5/10/15, AT, hDCG and the share of conversations with a probe;
- each arm's seed against the other arm's same seed, and each folder against --reference (a rule),
  paired over conversations with a 95% bootstrap CI (`envs.metrics.bootstrap_ci`);
- the arms over all seeds: per conversation, the mean over seeds of A minus that of B (bootstrap over
  conversations: the conversations' spread only), and the per-seed differences' mean with a 95%
  Student-t interval over seeds (`crs.report.analysis.seeds_interval`: the training seeds' spread).

Example (BENCHMARKS.md, "Does probing pay over tag profiles?"):

    python benchmarks/paired_arms.py --reference out/ask-4 --a out/rl-pp-s0 out/rl-pp-s1 out/rl-pp-s2 \\
        --b out/rl-np-s0 out/rl-np-s1 out/rl-np-s2 --names probes "no probes"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _cli import run_script  # this folder is on sys.path as a script

from crs.app.run_folder import read_episodes
from crs.report.analysis import seeds_interval
from envs.metrics import MetricSummary, bootstrap_ci, per_episode_metrics
from simulators.errors import CRSError

METRICS = ("SR@15", "AT", "hDCG")


def load(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """(goal indices, per-conversation metrics, share of conversations with a probe), in goal order."""
    records = sorted(read_episodes(folder), key=lambda r: r.goal_index)
    goals = np.array([r.goal_index for r in records])
    probed = float(np.mean(["probe" in r.kinds for r in records]))
    return goals, per_episode_metrics(records), probed


def _ci(summary: MetricSummary) -> str:
    return f"{summary.mean:+.3f} [{summary.low:+.3f}, {summary.high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="arm A's eval folders, one per seed")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="arm B's, in the same seed order")
    parser.add_argument("--reference", type=Path, help="an eval folder both arms are compared with (a rule)")
    parser.add_argument("--names", nargs=2, default=("A", "B"), metavar=("A", "B"), help="the arms' names")
    args = parser.parse_args()
    if len(args.a) != len(args.b):
        parser.error(f"--a has {len(args.a)} folders and --b {len(args.b)}: give one per seed to each")
    folders = ([args.reference] if args.reference else []) + args.a + args.b
    loaded = {folder: load(folder) for folder in folders}
    goals = loaded[folders[0]][0]
    for folder, (other, _, _) in loaded.items():
        if not np.array_equal(other, goals):
            raise CRSError(f"{folder} holds other conversations than {folders[0]}: evaluate both alike")
    metrics = {folder: m for folder, (_, m, _) in loaded.items()}

    print("| folder | SR@5 | SR@10 | SR@15 | AT | hDCG | conversations with a probe |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for folder, (_, m, probed) in loaded.items():
        cells = " | ".join(f"{m[k].mean():.3f}" if k != "AT" else f"{m[k].mean():.2f}" for k in m)
        print(f"| {folder} | {cells} | {probed:.1%} |")

    pairs = [(f"{a} − {b}", a, b) for a, b in zip(args.a, args.b, strict=True)]
    if args.reference:
        pairs += [(f"{f} − {args.reference}", f, args.reference) for f in args.a + args.b]
    print(f"\n| paired ({len(goals)} conversations) | {' | '.join(METRICS)} |\n|---|---|---|---|")
    for label, a, b in pairs:
        print(
            f"| {label} | {' | '.join(_ci(bootstrap_ci(metrics[a][k] - metrics[b][k])) for k in METRICS)} |"
        )

    name_a, name_b = args.names
    print(f"\n| {name_a} − {name_b}, {len(args.a)} seeds | {' | '.join(METRICS)} |\n|---|---|---|---|")
    pooled, over_seeds = [], []
    for k in METRICS:
        mean_a = np.mean([metrics[f][k] for f in args.a], axis=0)
        mean_b = np.mean([metrics[f][k] for f in args.b], axis=0)
        pooled.append(_ci(bootstrap_ci(mean_a - mean_b)))
        per_seed = [metrics[a][k].mean() - metrics[b][k].mean() for a, b in zip(args.a, args.b, strict=True)]
        over_seeds.append(_ci(seeds_interval(k, per_seed, clip=False)) if len(per_seed) > 1 else "n/a")
    print(f"| per conversation, mean over seeds (bootstrap over conversations) | {' | '.join(pooled)} |")
    print(f"| per seed, mean (t-interval over seeds) | {' | '.join(over_seeds)} |")


if __name__ == "__main__":
    run_script(main)
