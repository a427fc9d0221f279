r"""Offline ranking with the users' tag profiles (`policies.content_profile`): Recall@10 / NDCG@10 over all
items, pre-training items excluded, as `bench_pretrain.py` measures them, with cold-item Recall@10
(targets absent from the pre-training split).

Rows, in one run over the same users: popularity; the tag profile alone (no training); each given
pre-training artifact as it is; and the artifact plus the tag profile at each weight of `--weights`
(`PersonaRanker.with_profile`; the profile alone ranks the same at any weight).

    python benchmarks/bench_profile.py --data-dir ../shared/data -d lastfm_star \
        --artifacts runs/pretrain/lastfm_star-full --weights 0.1 1 3 --split test
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from _cli import positive_int, run_script  # this folder is on sys.path as a script

from policies.content_profile import ContentProfile
from policies.pretrain.baselines import popularity_scores
from policies.pretrain.metrics import evaluation_users, rank_metrics
from policies.rankers import RankerSpec
from simulators.datasets import load_catalog
from simulators.errors import CRSError


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; default $CRS_DATA_DIR")
    parser.add_argument("-d", "--dataset", default="lastfm_star", help="dataset name")
    parser.add_argument("--artifacts", nargs="*", default=[], help="`crs pretrain` artifact folders")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.1, 1.0], help="profile weights")
    parser.add_argument(
        "--split",
        choices=("valid", "test"),
        default="test",
        help="split evaluated (not the pre-training one)",
    )
    parser.add_argument(
        "--max-users", type=positive_int, default=None, help="a seeded sample of evaluated users"
    )
    args = parser.parse_args()
    catalog = load_catalog(args.dataset, args.data_dir)
    n_users, n_items = catalog.n_users, catalog.n_items
    pretrain = catalog.split(catalog.pretrain_split)
    if args.split == catalog.pretrain_split:
        raise CRSError(f"{args.dataset} pre-trains on {args.split}: evaluate on another --split")
    exclude = pretrain.by_user(n_users, n_items)
    truth = catalog.split(args.split).by_user(n_users, n_items)
    users = evaluation_users(truth, args.max_users, np.random.default_rng(1))
    warm = np.zeros(n_items, dtype=bool)
    warm[pretrain.items] = True
    truth_cold = sp.csr_matrix(truth @ sp.diags((~warm).astype(np.float64)))
    truth_cold.eliminate_zeros()
    users_cold = np.intersect1d(users, np.flatnonzero(np.diff(truth_cold.indptr) > 0))
    started = time.perf_counter()
    profile = ContentProfile.of(catalog)
    built = time.perf_counter() - started
    print(
        f"{args.dataset} {args.split}: {users.size} users ({users_cold.size} with a cold target), "
        f"{truth_cold.nnz / max(truth.nnz, 1):.2f} of the targets cold; tag profiles built in {built:.2f} s"
    )
    print("| ranker | Recall@10 | NDCG@10 | cold-item Recall@10 |")
    print("|---|---|---|---|")

    def row(name: str, scores) -> None:
        overall = rank_metrics(scores, exclude, truth, users, batch_size=128)
        cold = rank_metrics(scores, exclude, truth_cold, users_cold, batch_size=128)
        print(f"| {name} | {overall.recall:.4f} | {overall.ndcg:.4f} | {cold.recall:.4f} |", flush=True)

    popularity = popularity_scores(pretrain, n_items)
    row("popularity", lambda batch: np.broadcast_to(popularity, (batch.size, n_items)))
    row("tag profile alone (no training)", profile.scores)
    for artifact in args.artifacts:
        ranker = RankerSpec.parse(artifact).build(catalog)
        row(artifact, ranker.full_scores)  # type: ignore[attr-defined]
        for weight in args.weights:
            weighted = ContentProfile(profile.users, profile.items, weight)
            row(f"{artifact} + tag profile × {weight:g}", ranker.with_profile(weighted).full_scores)  # type: ignore[attr-defined]


if __name__ == "__main__":
    run_script(main)
