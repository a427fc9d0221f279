"""Benchmark: MaskablePPO training env-steps/s with the envs in 1, 2 and 8 SubprocVecEnv worker
processes (one env each) and in-process (DummyVecEnv) for reference, side by side in one run.

Every setting keeps PPO's rollout at 512 steps per update (n_steps = 512 // envs, as `crs train` does),
so all do the same learning work per step; only where the simulated users run differs. For each
setting one warm-up update is run and not timed, then `--steps` steps are timed. Prints one JSON
object: per dataset and setting, total steps/s (collection + PPO updates) and collection-only
steps/s (rollout time, measured with a callback), and the speed-up over one worker.

Examples (2 CPU cores; torch uses 1 thread in the main process):

    python benchmarks/bench_vec_env.py                          # persona world, popularity ranker
    python benchmarks/bench_vec_env.py --dataset lastfm_star --ranker runs/pretrain/lastfm_star-full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from _cli import positive_int, run_script  # this folder is on sys.path as a script
from stable_baselines3.common.callbacks import BaseCallback

from envs import make_env
from policies.rankers import build_ranker
from policies.rl import RLConfig, build_model, make_vec_env
from simulators.datasets import load_catalog

DATA_DIR = os.environ.get("CRS_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
ROLLOUT = 512
SETTINGS = {  # name: (envs, subprocess)
    "subprocess, 1 worker": (1, True),
    "subprocess, 2 workers": (2, True),
    "subprocess, 8 workers": (8, True),
    "in-process, 1 env": (1, False),
    "in-process, 2 envs": (2, False),
    "in-process, 8 envs": (8, False),  # the default before SubprocVecEnv workers
}


class RolloutTimer(BaseCallback):
    """Sums the wall time spent collecting rollouts (env steps + policy forward passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.collecting = 0.0
        self._started = 0.0

    def _on_rollout_start(self) -> None:
        self._started = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.collecting += time.perf_counter() - self._started

    def _on_step(self) -> bool:
        return True


def measure(catalog, ranker, envs: int, subprocess: bool, steps: int, seed: int) -> dict[str, float]:
    """Train `steps` steps after one untimed update; steps/s overall and while collecting."""
    config = RLConfig(n_envs=envs, n_steps=ROLLOUT // envs, subprocess=subprocess)
    vec = make_vec_env(lambda: make_env(catalog=catalog, split="valid"), ranker, config, seed=seed)
    try:
        model = build_model(vec, ranker, config, seed=seed)
        model.learn(ROLLOUT)  # warm-up: worker start, first allocations
        timer = RolloutTimer()
        start = time.perf_counter()
        model.learn(steps, callback=timer, reset_num_timesteps=False)
        seconds = time.perf_counter() - start
        done = model.num_timesteps - ROLLOUT
    finally:
        vec.close()
    return {
        "steps": done,
        "seconds": round(seconds, 2),
        "steps_per_s": round(done / seconds, 1),
        "collect_steps_per_s": round(done / timer.collecting, 1),
        "update_seconds": round(seconds - timer.collecting, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="persona_world")
    parser.add_argument("--ranker", default="popularity", help="popularity, transe or an artifact path")
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=10_240,
        help="timed steps per setting, in whole 512-step rollouts (rounded up)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = None if args.dataset == "persona_world" else DATA_DIR
    catalog = load_catalog(args.dataset, data_dir)
    ranker = build_ranker(args.ranker, catalog, data_dir)
    results = {}
    for name, (envs, subprocess) in SETTINGS.items():
        results[name] = measure(catalog, ranker, envs, subprocess, args.steps, args.seed)
    one = results["subprocess, 1 worker"]
    for row in results.values():
        row["speedup_vs_1_worker"] = round(row["steps_per_s"] / one["steps_per_s"], 2)
        row["collect_speedup_vs_1_worker"] = round(row["collect_steps_per_s"] / one["collect_steps_per_s"], 2)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "ranker": args.ranker,
                "rollout_steps_per_update": ROLLOUT,
                "cpu_count": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "machine": platform.platform(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    run_script(main)
