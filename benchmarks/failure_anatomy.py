r"""Which conversations fail, by how many aspects the target holds: success per bin of the target's aspect
count for each given evaluation (`crs eval -o` folders over the same conversations), the failures they
share, whether the first folder's failed targets could be isolated by their own aspects, and whether
questions alone could have reached them (binary setting).

Reaching a target by questions alone: from the conversation's own opening, ask the aspect that splits the
consistent items most evenly by count, answered as the target would, "no" dropping the aspect's holders (a
hard version of the ranker's rejection penalty); after q questions, q + ceil(|S_q| / k) agent turns show
every consistent item in slates of k. A failed conversation is reachable if that fits the turn limit for
some q, whatever order the slates take. Greedy questions are not the best possible questions, so this is a
rough guide, not a bound.

    python benchmarks/failure_anatomy.py -d lastfm_star --data-dir ../shared/data \
        out/issue17/s14/ask-7-uniform+profile+split out/issue17/s14/rl-lfs-profile-s1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _cli import positive_int, run_script  # this folder is on sys.path as a script

from crs.app.evaluation import EvalSpec, build_evaluation
from crs.app.run_folder import EvalSummary, read_episodes
from envs.actions import ActionKind
from envs.registry import make_env
from envs.rollout import episode_seed
from envs.setting import check_setting
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError

BINS = ((1, 3), (4, 6), (7, 10), (11, None))  # the target's aspect count, inclusive; None: no upper end


def successes(folder: Path) -> dict[int, tuple[int, bool]]:
    """goal index -> (first target, success) of an evaluation folder's episodes.jsonl."""
    return {r.goal_index: (r.targets[0], r.success) for r in read_episodes(folder)}


def folders_catalog(folders: list[Path], dataset: str | None, data_dir: str | None) -> Catalog:
    """The catalogue every evaluation folder of `folders` was run on (their summary.json's dataset and
    world seed), checked to be one and the same, and to be `dataset` when one is given.

    Raises:
        CRSError: A folder is given twice, the folders' catalogues differ or are not `dataset`, or a
            summary.json is missing or damaged.
    """
    seen: dict[Path, Path] = {}
    for folder in folders:
        if folder.resolve() in seen:
            raise CRSError(f"{folder} is given twice (as {seen[folder.resolve()]}): give each folder once")
        seen[folder.resolve()] = folder
    summaries = {folder: EvalSummary.read(folder) for folder in folders}
    catalogs = {(s.dataset, s.world_seed or 0) for s in summaries.values()}
    if len(catalogs) > 1:
        each = ", ".join(
            f"{f} {s.dataset}" + ("" if s.world_seed is None else f" (world seed {s.world_seed})")
            for f, s in summaries.items()
        )
        raise CRSError(f"the folders were evaluated on different catalogues: {each}; compare one at a time")
    ((name, world_seed),) = catalogs
    if dataset is not None and dataset != name:
        raise CRSError(
            f"-d {dataset} but the folders were evaluated on {name}: pass -d {name}, or leave it out"
        )
    return DatasetSpec(name, data_dir, world_seed).load()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="`crs eval -o` folders, same conversations")
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; default $CRS_DATA_DIR")
    parser.add_argument(
        "-d", "--dataset", default=None, help="dataset of the folders (default: their summary.json's)"
    )
    parser.add_argument("--slate", type=positive_int, default=10, help="items per slate")
    parser.add_argument(
        "--final-ranks",
        action="store_true",
        help="replay the first folder's failures: target ranks at the last slate",
    )
    args = parser.parse_args()
    catalog = folders_catalog(args.folders, args.dataset, args.data_dir)
    holds = sp.csr_matrix(catalog.item_aspects, dtype=np.float64, copy=True)
    holds.data[:] = 1.0
    n_aspects = np.diff(holds.indptr)
    runs = {str(folder): successes(folder) for folder in args.folders}
    first = next(iter(runs.values()))
    if any(set(run) != set(first) for run in runs.values()):
        raise CRSError("the folders hold different conversations: evaluate them with the same -n and --seed")
    goals = sorted(first)
    counts = np.array([n_aspects[first[g][0]] for g in goals])
    print(f"{catalog.name}: {len(goals)} conversations; target aspects median {np.median(counts):g}")
    print("| target's aspects | conversations | " + " | ".join(runs) + " |")
    print("|---|---:|" + "---:|" * len(runs))
    for low, high in BINS:
        inside = (counts >= low) & (counts <= (high if high is not None else counts.max()))
        if not inside.any():
            continue
        shares = [
            np.mean([run[g][1] for g, keep in zip(goals, inside, strict=True) if keep])
            for run in runs.values()
        ]
        label = f"{low}–{high}" if high is not None else f"{low} or more"
        print(
            f"| {label} | {inside.sum()} ({inside.mean():.0%}) | "
            + " | ".join(f"{s:.3f}" for s in shares)
            + " |"
        )
    failed = {name: {g for g in goals if not run[g][1]} for name, run in runs.items()}
    print("failures: " + ", ".join(f"{name} {len(f)}" for name, f in failed.items()))
    print(f"failed by all: {len(set.intersection(*failed.values()))}")
    base = next(iter(failed))
    for name, f in list(failed.items())[1:]:
        print(f"{name} vs {base}: wins back {len(failed[base] - f)}, loses {len(f - failed[base])}")
    targets = [first[g][0] for g in sorted(failed[base])]
    print(f"{base}'s failed targets, aspects: {sorted(int(n_aspects[t]) for t in targets)}")
    isolating = [
        int((np.asarray(holds[:, holds[t].indices].sum(1)).ravel() == n_aspects[t]).sum()) for t in targets
    ]
    print(f"... items holding all of the target's aspects: {sorted(isolating)}")
    summary = EvalSummary.read(args.folders[0])
    env = make_env(catalog=catalog, split=summary.split, setting=check_setting(summary.setting))
    turns = summary.max_turns - 1  # the user's opening is turn 1
    by_aspect = holds.tocsc()
    reachable = 0
    for goal in sorted(failed[base]):
        env.reset(seed=episode_seed(summary.seed, goal), options={"goal_index": goal})
        left = counting_questions(by_aspect, env.state.candidates, env.user.targets[0], turns, args.slate)
        reachable += min(q + -(-n // args.slate) for q, n in enumerate(left)) <= turns
        print(f"goal {goal}: consistent items after 0, 1, ... count-halving questions: {left}")
    print(f"{base}'s failures reachable by count-halving questions: {reachable} of {len(failed[base])}")
    if args.final_ranks:
        ranks = final_slate_ranks(summary, args.data_dir, sorted(failed[base]))
        print(f"{base}'s failures, the target's rank among the candidates at the last slate:")
        for top in (2 * args.slate, 3 * args.slate, 5 * args.slate):
            print(f"  within the first {top}: {sum(r <= top for r in ranks)} of {len(ranks)}")
        print(f"  median {np.median(ranks):g}; all: {sorted(ranks)}")


def final_slate_ranks(summary: EvalSummary, data_dir: str | None, goals: list[int]) -> list[int]:
    """The target's rank (1 = best) among the candidates by the policy's ranker when each conversation of
    `goals` showed its last slate, replayed with the evaluation's own rule policy and seeds."""
    spec = EvalSpec.of(
        policy=summary.policy_spec,
        dataset=summary.dataset,
        data_dir=data_dir,
        ranker=summary.ranker,
        setting=summary.setting,
        split=summary.split,
        user=summary.user,
        world_seed=summary.world_seed or 0,
        seed=summary.seed,
    )
    env, policy, _, _ = build_evaluation(spec)
    ranker = getattr(policy, "ranker", None)
    if ranker is None:
        raise CRSError(f"{summary.policy_spec} is not a rule policy over a ranker: nothing to replay")
    ranks = []
    for goal in goals:
        seed = episode_seed(summary.seed, goal)
        env.reset(seed=seed, options={"goal_index": goal})
        policy.reset(np.random.default_rng(seed))
        rank, done = 0, False
        while not done:
            action = policy.act(env)
            if action["kind"] == ActionKind.RECOMMEND:
                state = env.state
                candidates = state.candidate_items()
                scores = ranker.item_scores(state.facts(), candidates)
                where = np.flatnonzero(candidates == env.user.targets[0])
                target = scores[where[0]] if where.size else -np.inf  # no longer a candidate: last
                rank = int((scores > target).sum()) + 1
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        ranks.append(rank)
    return ranks


def counting_questions(
    by_aspect: sp.csc_matrix, candidates: np.ndarray, target: int, n: int, k: int
) -> list[int]:
    """Consistent items after 0..n greedy count-halving questions (module docstring), stopping once the
    rest fits in one slate of `k`; `by_aspect` (items, aspects) holds 1 where an item has an aspect."""
    consistent = candidates.copy()
    asked = np.zeros(by_aspect.shape[1], dtype=np.bool_)
    left = [int(consistent.sum())]
    for _ in range(n):
        if left[-1] <= k:
            break
        count = np.asarray(by_aspect[consistent].sum(0)).ravel()
        balance = np.where(asked, -1.0, np.minimum(count, left[-1] - count))
        aspect = int(np.argmax(balance))
        asked[aspect] = True
        holders = np.zeros_like(consistent)
        holders[by_aspect[:, aspect].indices] = True
        consistent &= holders if by_aspect[target, aspect] else ~holders
        left.append(int(consistent.sum()))
    return left


if __name__ == "__main__":
    run_script(main)
