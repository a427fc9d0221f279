"""Scale-out: evaluation conversations/s with 1 vs 2 workers, Ray and the local process pool, side by side.

For each backend and worker count, the same conversations are evaluated on one pool, round after
round: the first ("cold") includes starting the worker processes and each worker building its env and
policy (catalogue load + ranker); later rounds ("warm") reuse the workers, which keep their env. Runs
are interleaved round by round (the cores are shared with other jobs) and the best warm round counts.
The serial in-process run is the baseline; every parallel run's records are checked equal to it.
"CPU ms per conv" sums the workers' process CPU time: on a machine shared with other jobs (Linux
groups CPU shares by session), "cores busy" = CPU / wall shows how much of the 2 cores the run got.
Also printed: the fixed costs (Ray start, per-worker build) and the array memory of the catalogue
(what each worker holds, and what `ray.put` could share between the workers of a node).

    python benchmarks/bench_parallel.py                      # persona world, max-entropy, 1200 conversations
    python benchmarks/bench_parallel.py --dataset lastfm --data-dir ../shared/data --policy ask-7
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack

import numpy as np
from _cli import HelpFormatter, positive_int, run_script  # this folder is on sys.path as a script
from scipy import sparse

from crs.app.evaluation import EvalSpec, build_evaluation, evaluate_chunk
from crs.parallel import Task, WorkerPool, ray_installed
from envs.rollout import evaluate, evaluation_indices


def array_megabytes(obj: object, seen: set[int] | None = None) -> float:
    """MB held in numpy arrays and scipy sparse matrices reachable from `obj` (what a worker copies)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0.0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes / 1e6
    if sparse.issparse(obj):
        return sum(array_megabytes(getattr(obj, name), seen) for name in ("data", "indices", "indptr"))
    if isinstance(obj, Mapping):
        return sum(array_megabytes(value, seen) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(array_megabytes(value, seen) for value in obj)
    if hasattr(obj, "__dict__") or hasattr(obj, "__dataclass_fields__"):
        fields = getattr(obj, "__dict__", None) or {f: getattr(obj, f) for f in obj.__dataclass_fields__}
        return sum(array_megabytes(value, seen) for value in fields.values())
    return 0.0


def timed_chunk(setup: EvalSpec, indices: list[int], seed: int) -> tuple[list, float]:
    """`evaluate_chunk` plus the CPU seconds the worker process spent on it."""
    cpu = time.process_time()
    records = evaluate_chunk(setup, indices, seed)
    return records, time.process_time() - cpu


def parallel_run(pool: WorkerPool, setup: EvalSpec, indices: np.ndarray, seed: int) -> tuple[list, float]:
    """`evaluate_in_parallel`'s chunking (4 chunks per worker), with the workers' CPU seconds summed."""
    parts = np.array_split(indices, min(len(indices), 4 * pool.workers))
    results = pool.run(
        [Task(f"chunk {i}", timed_chunk, (setup, p.tolist(), seed)) for i, p in enumerate(parts)]
    )
    assert all(result.ok for result in results), [result.error for result in results]
    records = [record for result in results for record in result.value[0]]
    return records, sum(result.value[1] for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--dataset", default="persona_world", help="a dataset `crs eval -d` takes")
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; none: $CRS_DATA_DIR")
    parser.add_argument("--policy", default="max-entropy", help="the policy evaluated (a rule or a run)")
    parser.add_argument("--episodes", type=positive_int, default=1200, help="test conversations per round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the conversations")
    parser.add_argument(
        "--workers", type=positive_int, nargs="+", default=[1, 2], help="worker counts, one pool each"
    )
    parser.add_argument(
        "--backends", nargs="+", choices=("process", "ray"), default=["process", "ray"], help="pool backends"
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="warm rounds (after the cold one)")
    args = parser.parse_args()

    setup = EvalSpec(policy=args.policy, dataset=args.dataset, data_dir=args.data_dir)
    started = time.perf_counter()
    env, policy, _, _ = build_evaluation(setup)
    build_seconds = time.perf_counter() - started
    catalog_mb = array_megabytes(env.catalog)
    indices = evaluation_indices(env.goals.n_goals, args.episodes, args.seed)
    n = len(indices)

    def serial_run() -> tuple[list, float]:
        cpu = time.process_time()
        return evaluate(env, policy, indices, args.seed), time.process_time() - cpu

    reference, _ = serial_run()
    print(
        f"{args.dataset} / {args.policy}: {n} test conversations, seed {args.seed}; cores: {os.cpu_count()}"
    )
    print(f"build env + policy in one process: {build_seconds:.2f} s; catalogue arrays {catalog_mb:.1f} MB")
    print(f"load average before (1/5/15 min): {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")

    with ExitStack() as stack:
        runs: dict[str, Callable[[], tuple[list, float]]] = {"serial (in process)": serial_run}
        start_note = {"serial (in process)": "-"}
        for backend in args.backends:
            if backend == "ray":
                if not ray_installed():
                    print("ray is not installed: skipping the Ray rows")
                    continue
                import ray

                t0 = time.perf_counter()  # one local instance; each pool caps the tasks in flight
                ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
                stack.callback(ray.shutdown)
                ray_start = f"{time.perf_counter() - t0:.1f}"
            for workers in args.workers:
                pool = stack.enter_context(WorkerPool(workers, backend=backend))
                label = f"{backend}, {workers} worker{'s' if workers > 1 else ''}"
                runs[label] = functools.partial(parallel_run, pool, setup, indices, args.seed)
                start_note[label] = ray_start if backend == "ray" else "-"

        # The machine is shared: runs are interleaved round by round, and the best round counts.
        seconds: dict[str, list[float]] = {label: [] for label in runs}
        cpu_seconds: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.rounds + 1):  # the first round of a pool is "cold" (workers start and build)
            for label, run in runs.items():
                t0 = time.perf_counter()
                records, cpu = run()
                seconds[label].append(time.perf_counter() - t0)
                cpu_seconds[label].append(cpu)
                assert records == reference, f"{label}: records differ from the serial run"

    print()
    print(
        "| backend | cold conv/s | warm conv/s (best round) | speed-up over serial | "
        "CPU ms per conv (warm) | cores busy (warm) | engine start s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = n / min(seconds["serial (in process)"][1:])
    for label, times in seconds.items():
        best = 1 + int(np.argmin(times[1:]))
        cold, warm = n / times[0], n / times[best]
        cpu = cpu_seconds[label][best]
        print(
            f"| {label} | {cold:,.0f} | {warm:,.0f} | {warm / base:.2f}x | {1000 * cpu / n:.2f} | "
            f"{cpu / times[best]:.2f} | {start_note[label]} |"
        )
    load = os.getloadavg()
    print(f"\nload average after (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    run_script(main)
