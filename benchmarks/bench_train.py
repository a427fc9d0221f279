"""Benchmark: train the graph RL policy and measure it on the test split against the rule baselines.

Prints one JSON object: training steps/s and seconds, test SR@5/10/15, AT, hDCG (with 95% CIs) of the
trained policy and of the rule baselines on the same conversations, and evaluation throughput
(conversations/s, batched and one conversation at a time), plus the wrapper's env steps/s.

Examples (2 CPU cores; torch uses 1 thread):

    python benchmarks/bench_train.py --dataset lastfm --ranker transe --steps 100000
    python benchmarks/bench_train.py --dataset lastfm_star --ranker runs/lastfm-star-ranker --steps 150000
    python benchmarks/bench_train.py --steps 40000                      # persona world, pre-trained ranker
    python benchmarks/bench_train.py --wrapper-only --dataset lastfm_star # env vs wrapped env steps/s
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _cli import HelpFormatter, positive_int, run_script  # this folder is on sys.path as a script

from envs import make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.baseline_rankers import PopularityRanker
from simulators.datasets import load_catalog

DATA_DIR = os.environ.get("CRS_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def wrapper_speed(dataset: str, seconds: float = 5.0) -> dict[str, float]:
    """Steps/s of the raw env and of the SB3 wrapper under the same random ask/recommend choices."""
    from envs import ask, recommend

    catalog = load_catalog(dataset, None if dataset == "persona_world" else DATA_DIR)
    ranker = PopularityRanker(catalog)
    rng = np.random.default_rng(0)

    env = make_env(catalog=catalog, split="valid")
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state = env.state
        aspects = state.reachable_aspects()
        if aspects.size and rng.random() < 0.5:
            action = ask(int(aspects[rng.integers(aspects.size)]))
        else:
            action = recommend(state.candidate_items()[: env.slate_size])
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        if terminated or truncated:
            env.reset()
    raw = steps / (time.perf_counter() - start)

    wrapped = SlateActionWrapper(make_env(catalog=catalog, split="valid"), ranker, WrapperConfig())
    return {
        "env_steps_per_s": round(raw),
        "wrapped_steps_per_s": round(wrapped_steps_per_second(wrapped, seconds, rng)),
    }


def wrapped_steps_per_second(wrapped: SlateActionWrapper, seconds: float, rng: np.random.Generator) -> float:
    """Steps/s of the wrapper under random valid choices, half of them "recommend" (reset with seed 0)."""
    wrapped.reset(seed=0)
    steps, start = 0, time.perf_counter()
    slots = np.arange(wrapped.slate_size)
    while time.perf_counter() - start < seconds:
        choices = np.flatnonzero(wrapped.action_masks()[: wrapped.n_choices])
        choice = choices[rng.integers(choices.size)] if rng.random() < 0.5 else wrapped.recommend_choice
        _, _, terminated, truncated, _ = wrapped.step(np.concatenate([[choice], slots]))
        steps += 1
        if terminated or truncated:
            wrapped.reset()
    return steps / (time.perf_counter() - start)


def evaluate_run(run_dir: Path, dataset: str, episodes: int, seed: int, baselines: list[str]) -> dict:
    """Test-split figures of a run's best model and of the rule baselines (same conversations)."""
    from envs.metrics import summarize
    from envs.rollout import evaluation_indices
    from policies.rl import evaluate_policy, load_trained_policy
    from policies.rl.run_files import CheckpointState
    from policies.rules import make_rule_policy

    catalog = load_catalog(dataset, None if dataset == "persona_world" else DATA_DIR)
    policy = load_trained_policy(run_dir, catalog)

    def factory():
        return make_env(catalog=catalog, split="test")

    indices = evaluation_indices(factory().goals.n_goals, episodes, seed)
    out: dict = {
        "run": str(run_dir),
        "checkpoint_steps": getattr(CheckpointState.read(run_dir), "timesteps", None),
        "test": {},
    }
    rules = [(name, make_rule_policy(name, policy.ranker)) for name in baselines]
    for label, current in [("RL", policy), *rules]:
        start = time.perf_counter()
        records = evaluate_policy(factory, current, indices, seed, batch=64)
        rate = len(records) / (time.perf_counter() - start)
        metrics = summarize(records, seed=seed)
        out["test"][label] = {k: round(v.mean, 3) for k, v in metrics.items()}
        out["test"][label]["SR@15_CI"] = [round(metrics["SR@15"].low, 3), round(metrics["SR@15"].high, 3)]
        out["test"][label]["conversations_per_s"] = round(rate, 1)
    return out


def extra_setting(text: str) -> tuple[str, Any]:
    """An argparse type: ``KEY=JSON`` (a dotted key such as ``ppo.gamma``) as (key, the decoded value)."""
    key, equals, value = text.partition("=")
    try:
        if not key or not equals:
            raise ValueError("no KEY=")
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON such as ppo.gamma=0.99, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--dataset", default="persona_world", help="a dataset `crs train` takes")
    parser.add_argument("--ranker", default=None, help="popularity, transe, pretrain or an artifact path")
    parser.add_argument("--steps", type=positive_int, default=40_000, help="PPO steps")
    parser.add_argument("--seed", type=int, default=0, help="training seed (and of the test conversations)")
    parser.add_argument("--envs", type=positive_int, default=8, help="parallel training envs")
    parser.add_argument("--test-episodes", type=positive_int, default=3000, help="test conversations")
    parser.add_argument(
        "--eval-every", type=positive_int, default=20_000, help="steps between validation evaluations"
    )
    parser.add_argument("--runs-dir", default=None, help="keep the run here; none: a temporary folder")
    parser.add_argument("--name", default=None, help="run name; none: bench-DATASET-sSEED")
    parser.add_argument(
        "--set",
        type=extra_setting,
        action="append",
        default=[],
        help="extra setting KEY=JSON, e.g. ppo.gamma=0.99 (repeatable)",
    )
    parser.add_argument("--wrapper-only", action="store_true", help="only measure env vs wrapper steps/s")
    parser.add_argument("--evaluate-run", default=None, help="only evaluate this run directory's best model")
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=["always-recommend", "ask-4", "ask-7", "max-entropy"],
        help="rule policies tested on the same conversations",
    )
    args = parser.parse_args()

    if args.wrapper_only:
        print(json.dumps({"dataset": args.dataset, **wrapper_speed(args.dataset)}))
        return
    if args.evaluate_run:
        run = Path(args.evaluate_run)
        figures = evaluate_run(run, args.dataset, args.test_episodes, args.seed, args.baselines)
        print(json.dumps(figures, indent=1))
        return

    from crs.app.settings import make_settings
    from crs.app.training import run_training
    from policies.rl import evaluate_policy, load_trained_policy

    data: dict = {
        "dataset": args.dataset,
        "data_dir": None if args.dataset == "persona_world" else DATA_DIR,
        "ranker": args.ranker,
        "steps": args.steps,
        "seed": args.seed,
        "envs": args.envs,
        "test_episodes": args.test_episodes,
        "eval_every": args.eval_every,
        "baselines": args.baselines,
    }
    for key, value in args.set:
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    settings = make_settings(data)
    runs_dir = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="bench_train_"))
    name = args.name or f"bench-{args.dataset}-s{args.seed}"
    summary = run_training(settings, name=name, runs_dir=runs_dir, show=False).to_dict()

    # one-conversation-at-a-time throughput of the loaded policy (what `crs eval` sees)
    from envs.rollout import evaluate, evaluation_indices

    catalog = load_catalog(args.dataset, None if args.dataset == "persona_world" else DATA_DIR)
    policy = load_trained_policy(runs_dir / name, catalog)
    env = make_env(catalog=catalog, split="test")
    indices = evaluation_indices(env.goals.n_goals, 300, args.seed)
    start = time.perf_counter()
    evaluate(env, policy, indices, args.seed)
    sequential = len(indices) / (time.perf_counter() - start)
    start = time.perf_counter()
    evaluate_policy(lambda: make_env(catalog=catalog, split="test"), policy, indices, args.seed, batch=64)
    batched = len(indices) / (time.perf_counter() - start)

    figures = {
        "dataset": args.dataset,
        "ranker": summary["ranker"],
        "steps": summary["timesteps"],
        "train_seconds": summary["train_seconds_this_session"],
        "train_steps_per_s": summary["steps_per_second"],
        "test_episodes": summary["test_episodes"],
        "test": {
            label: {k: round(v["mean"], 3) for k, v in metrics.items()}
            for label, metrics in summary["test"].items()
        },
        "test_ci_SR@15": {
            label: [round(metrics["SR@15"]["low"], 3), round(metrics["SR@15"]["high"], 3)]
            for label, metrics in summary["test"].items()
        },
        "eval_conversations_per_s": {"sequential": round(sequential, 1), "batched_64": round(batched, 1)},
        "run_dir": str(runs_dir / name),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    run_script(main)
