"""Benchmark: persona attention × aspect attention ablation on the persona world with drift.

Trains the full policy, persona-off, aspect-off and both-off, for several seeds each, with the SAME
fixed pre-trained ranker and the same test conversations, then prints a Markdown table: per variant
the mean test SR@15 / AT / hDCG over seeds with a 95% confidence interval across seeds
(Student t, n - 1 degrees of freedom), and each seed's SR@15.

Example (2 CPU cores):

    python benchmarks/bench_ablation.py --steps 30000 --seeds 0 1 2 --drift 0.1 --runs-dir runs/ablation

With --no-ranker-features every variant's policy sees no feature computed from the ranker's scores
or persona posterior (`envs.sb3_wrapper.RANKER_DERIVED`): the ranker still proposes the candidates,
but only the encoder's own persona and aspect attention can rank them.

A ranker artifact is pre-trained once into <runs-dir>/ranker unless --ranker names one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

VARIANTS = {
    "full": {"persona_attention": True, "aspect_attention": True},
    "persona-off": {"persona_attention": False, "aspect_attention": True},
    "aspect-off": {"persona_attention": True, "aspect_attention": False},
    "both-off": {"persona_attention": False, "aspect_attention": False},
}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval across seeds (0 half-width for one seed)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return float(array.mean()), 0.0
    half = stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / np.sqrt(array.size)
    return float(array.mean()), float(half)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--drift", type=float, default=0.1)
    parser.add_argument("--test-episodes", type=int, default=1000)
    parser.add_argument("--ranker", default=None, help="artifact path (default: pre-train one once)")
    parser.add_argument("--runs-dir", default="runs/ablation")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--no-ranker-features",
        action="store_true",
        help="hide the ranker's scores and persona posterior from every variant's policy",
    )
    args = parser.parse_args()

    from crs.app.settings import make_settings
    from crs.app.training import run_training
    from policies.pretrain.artifact import save_artifact
    from policies.pretrain.config import TrainConfig
    from policies.pretrain.train import pretrain
    from simulators.datasets import load_catalog

    runs = Path(args.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    ranker = args.ranker
    if ranker is None:
        ranker = str(runs / "ranker")
        if not (runs / "ranker" / "config.json").is_file():
            started = time.perf_counter()
            save_artifact(pretrain(load_catalog("persona_world"), TrainConfig(epochs=10, seed=0)), ranker)
            print(f"pre-trained the ranker in {time.perf_counter() - started:.0f} s")

    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    baselines: dict[str, float] = {}
    for seed in args.seeds:
        for variant in args.variants:
            name = f"{variant}-s{seed}"
            summary_file = runs / name / "summary.json"
            if summary_file.is_file():
                summary = json.loads(summary_file.read_text())
            else:
                settings = make_settings(
                    {
                        "ranker": ranker,
                        "steps": args.steps,
                        "seed": seed,
                        "user_kwargs": {"drift": args.drift},
                        "test_episodes": args.test_episodes,
                        "eval_every": args.steps // 3,
                        **VARIANTS[variant],
                        "wrapper": {"ranker_features": not args.no_ranker_features},
                        # the rule baselines once: the test conversations are the same for every run
                        **({} if (seed, variant) == (args.seeds[0], args.variants[0]) else {"baselines": []}),
                    }
                )
                summary = run_training(settings, name=name, runs_dir=runs, show=False).to_dict()
            label = f"RL ({name})"
            metrics = {k: v["mean"] for k, v in summary["test"][label].items()}
            metrics["seconds"] = summary["train_seconds_this_session"]
            results[variant].append(metrics)
            print(f"{name}: SR@15 {metrics['SR@15']:.3f} AT {metrics['AT']:.2f} hDCG {metrics['hDCG']:.3f}")
            if (seed, variant) == (args.seeds[0], args.variants[0]):
                baselines = {
                    k: v["SR@15"]["mean"] for k, v in summary["test"].items() if not k.startswith("RL")
                }

    print()
    print(
        f"persona world, drift {args.drift}, {args.steps:,} steps, seeds {args.seeds}, "
        f"{args.test_episodes} test conversations per run"
        + (", ranker features hidden" if args.no_ranker_features else "")
    )
    print()
    print("| variant | SR@15 | AT | hDCG | SR@15 per seed |")
    print("|---|---|---|---|---|")
    for variant, rows in results.items():
        cells = []
        for metric, digits in (("SR@15", 3), ("AT", 2), ("hDCG", 3)):
            mean, half = mean_ci([r[metric] for r in rows])
            cells.append(f"{mean:.{digits}f} ± {half:.{digits}f}")
        per_seed = ", ".join(f"{r['SR@15']:.3f}" for r in rows)
        print(f"| {variant} | {' | '.join(cells)} | {per_seed} |")
    print()
    print(
        f"rule baselines (same conversations, from run {args.variants[0]}-s{args.seeds[0]}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in baselines.items())
    )


if __name__ == "__main__":
    main()
