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
from typing import Any

import numpy as np
from _cli import HelpFormatter, positive_int, run_script  # this folder is on sys.path as a script
from scipy import stats

from simulators.errors import CRSError

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


def run_settings(args: argparse.Namespace, seed: int, variant: str, ranker: str) -> dict[str, Any]:
    """The settings (as `crs.app.settings.make_settings` takes them) of one run of the ablation; the
    rule baselines only in the first run (the test conversations are the same for every run)."""
    first = (seed, variant) == (args.seeds[0], args.variants[0])
    return {
        "ranker": ranker,
        "steps": args.steps,
        "seed": seed,
        "user_kwargs": {"drift": args.drift},
        "test_episodes": args.test_episodes,
        "eval_every": max(args.steps // 3, 1),
        **VARIANTS[variant],
        "wrapper": {"ranker_features": not args.no_ranker_features},
        **({} if first else {"baselines": []}),
    }


def check_reusable(run_dir: Path, requested: dict[str, Any]) -> None:
    """Refuse to reuse a finished run whose config.yaml records other values of the settings this
    benchmark sets (`run_settings`; ``baselines`` aside: only the first run plays them).

    Raises:
        CRSError: The settings differ (each differing key named, with the fix), or config.yaml is
            missing or damaged.
    """
    from crs.app.run_folder import RunRecord, flat_settings
    from crs.app.settings import make_settings

    recorded = flat_settings(RunRecord.read(run_dir).settings.model_dump())
    resolved = flat_settings(make_settings(requested).model_dump())
    differing = [
        f"{key} {recorded.get(key)!r} (asked {resolved.get(key)!r})"
        for key in flat_settings(requested)
        if key != "baselines" and recorded.get(key) != resolved.get(key)
    ]
    if differing:
        raise CRSError(
            f"{run_dir} was trained with other settings: {', '.join(differing)}; pass another --runs-dir, "
            f"or delete {run_dir} to train it again"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=30_000, help="PPO steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--drift", type=float, default=0.1, help="the simulated users' preference drift")
    parser.add_argument("--test-episodes", type=positive_int, default=1000, help="test conversations per run")
    parser.add_argument(
        "--ranker",
        default=None,
        help="a `crs pretrain` artifact; none: pre-train one once into RUNS_DIR/ranker",
    )
    parser.add_argument(
        "--runs-dir",
        default="runs/ablation",
        help="folder of the runs (relative to the working directory); a finished run there is reused "
        "when its settings match",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="variants to train"
    )
    parser.add_argument(
        "--no-ranker-features",
        action="store_true",
        help="hide the ranker's scores and persona posterior from every variant's policy",
    )
    args = parser.parse_args()
    for option, values in (("--seeds", args.seeds), ("--variants", args.variants)):
        if len(set(values)) < len(values):
            parser.error(f"{option} {' '.join(map(str, values))} names one twice: give each once")

    from crs.app.settings import make_settings
    from crs.app.training import run_training
    from policies.pretrain.artifact import save_artifact
    from policies.pretrain.config import TrainConfig
    from policies.pretrain.train import pretrain
    from simulators.datasets import load_catalog

    runs = Path(args.runs_dir)
    ranker = args.ranker if args.ranker is not None else str(runs / "ranker")
    plan = []  # (variant, run name, its settings, whether a finished run is reused): refusals come first
    for seed in args.seeds:
        for variant in args.variants:
            name, requested = f"{variant}-s{seed}", run_settings(args, seed, variant, ranker)
            finished = (runs / name / "summary.json").is_file()
            if finished:
                check_reusable(runs / name, requested)
            plan.append((variant, name, requested, finished))

    runs.mkdir(parents=True, exist_ok=True)
    if args.ranker is None and not (runs / "ranker" / "config.json").is_file():
        started = time.perf_counter()
        save_artifact(pretrain(load_catalog("persona_world"), TrainConfig(epochs=10, seed=0)), ranker)
        print(f"pre-trained the ranker in {time.perf_counter() - started:.0f} s")

    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    baselines: dict[str, float] = {}
    for variant, name, requested, finished in plan:
        if finished:
            summary = json.loads((runs / name / "summary.json").read_text())
        else:
            summary = run_training(make_settings(requested), name=name, runs_dir=runs, show=False).to_dict()
        label = f"RL ({name})"
        metrics = {k: v["mean"] for k, v in summary["test"][label].items()}
        metrics["seconds"] = summary["train_seconds_this_session"]
        results[variant].append(metrics)
        print(f"{name}: SR@15 {metrics['SR@15']:.3f} AT {metrics['AT']:.2f} hDCG {metrics['hDCG']:.3f}")
        if "baselines" not in requested:  # the first run: it played the rule baselines
            baselines = {k: v["SR@15"]["mean"] for k, v in summary["test"].items() if not k.startswith("RL")}

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
    run_script(main)
