r"""Pre-training benchmark: test Recall@10 / NDCG@10 over all items (train items excluded).

Rows per dataset, in one run: popularity, MF/BPR (same dim), the persona × aspect model, its
ablations K = 1 (no personas) and uniform aspect weights (no aspect attention), and on LastFM
UNICORN's TransE embeddings (score e_u·e_v). Also reports epochs/s and total pre-training time.

Yelp* has no train split: every model learns from `valid` (10% of it held out for early stopping)
and is tested on `test` with all `valid` items excluded.

Usage:
    .venv/bin/python benchmarks/bench_pretrain.py --data-dir ../shared/data \
        [--datasets lastfm_star,yelp_star,lastfm] [--epochs 20] [--max-test-users 5000] [--layers 0]
        [--variants full,k1,uniform] [--persona-init random] [--save-dir runs/pretrain]

Each row also gives Recall@10 on cold items (test items absent from the pre-training split).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    comma_names,
    non_negative_int,
    positive_int,
    run_script,
)

from policies.baseline_rankers import TransERanker
from policies.pretrain.artifact import save_artifact
from policies.pretrain.baselines import popularity_scores, train_mf_bpr
from policies.pretrain.config import TrainConfig
from policies.pretrain.graph import pretrain_data
from policies.pretrain.metrics import evaluation_users, rank_metrics
from policies.pretrain.train import pretrain
from policies.rankers import transe_file
from simulators.datasets import DATASET_NAMES, load_catalog

VARIANTS = ("full", "k1", "uniform", "warmneg")
"""The persona-model variants --variants chooses from (`main` builds their configs)."""


def report_row(ctx: dict, model: str, scores, seconds: float, epochs: int | None, **extra) -> None:
    """Evaluate `scores` on the test split, print a Markdown row and keep the figures."""
    t0 = time.perf_counter()
    m = rank_metrics(scores, ctx["exclude"], ctx["truth"], ctx["users"], batch_size=64)
    cold = rank_metrics(scores, ctx["exclude"], ctx["truth_cold"], ctx["users_cold"], batch_size=64)
    row = {
        "dataset": ctx["dataset"],
        "model": model,
        "recall@10": m.recall,
        "ndcg@10": m.ndcg,
        "test_users": m.n_users,
        "cold_recall@10": cold.recall,
        "cold_test_users": cold.n_users,
        "train_seconds": seconds,
        "epochs": epochs,
        "eval_seconds": time.perf_counter() - t0,
        **extra,
    }
    ctx["results"].append(row)
    eps = f"{epochs / seconds:.3f}" if epochs and seconds else "-"
    name = ctx["dataset"]
    print(
        f"| {name} | {model} | {m.recall:.4f} | {m.ndcg:.4f} | {cold.recall:.4f} | {epochs or '-'} "
        f"| {seconds:.1f} | {eps} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; none: $CRS_DATA_DIR")
    parser.add_argument(
        "--datasets",
        type=comma_names(DATASET_NAMES),
        default="lastfm_star,yelp_star,lastfm",
        help="comma-separated datasets, in order",
    )
    parser.add_argument("--epochs", type=positive_int, default=12, help="most pre-training epochs")
    parser.add_argument("--dim", type=positive_int, default=64, help="embedding width d")
    parser.add_argument("--batch-size", type=positive_int, default=4096, help="positives per step")
    parser.add_argument(
        "--layers", type=non_negative_int, default=2, help="propagation layers (0: plain embeddings)"
    )
    parser.add_argument(
        "--max-test-users", type=positive_int, default=None, help="a seeded sample of test users; none: all"
    )
    parser.add_argument(
        "--variants",
        type=comma_names(VARIANTS),
        default="full,k1,uniform",
        help=f"comma-separated persona-model variants to train, of {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--persona-init", default="random", choices=("kmeans", "random"), help="how personas start"
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=4,
        help="epochs without a better validation NDCG@10 before stopping",
    )
    parser.add_argument("--json", default=None, help="write all figures here")
    parser.add_argument(
        "--save-dir",
        default=None,
        help="write each persona-model variant's artifact to SAVE_DIR/<dataset>-<variant>",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: list[dict] = []
    print(
        f"# bench_pretrain python {platform.python_version()} torch {torch.__version__} {platform.machine()}"
    )
    for name in args.datasets:
        catalog = load_catalog(name, args.data_dir)
        U, I = catalog.n_users, catalog.n_items
        base = TrainConfig(
            dim=args.dim,
            epochs=args.epochs,
            batch_size=args.batch_size,
            layers=args.layers,
            persona_init=args.persona_init,
            patience=args.patience,
            seed=0,
        )
        data = pretrain_data(catalog, np.random.default_rng(0), base.holdout_fraction)
        exclude = catalog.split(catalog.pretrain_split).by_user(U, I)
        truth = catalog.split("test").by_user(U, I)
        users = evaluation_users(truth, args.max_test_users, np.random.default_rng(1))
        print(
            f"settings: epochs<={args.epochs} patience={args.patience} batch={args.batch_size} "
            f"layers={args.layers} dim={args.dim} persona_init={args.persona_init}"
        )
        print(
            f"\n## {name}: {U} users, {I} items, {catalog.n_aspects} aspects; trained on "
            f"{data.train_split} ({len(data.train)}), validated on {data.valid_source} ({len(data.valid)}); "
            f"test users {users.size}",
            flush=True,
        )

        # Cold items: never in the pre-training split, so only their aspects can score them.
        warm = np.zeros(I, dtype=bool)
        warm[catalog.split(catalog.pretrain_split).items] = True
        truth_cold = (truth @ sp.diags((~warm).astype(np.float64))).tocsr()
        truth_cold.eliminate_zeros()
        users_cold = np.intersect1d(users, np.flatnonzero(np.diff(truth_cold.indptr) > 0))
        ctx = {
            "results": results,
            "dataset": name,
            "exclude": exclude,
            "truth": truth,
            "users": users,
            "truth_cold": truth_cold,
            "users_cold": users_cold,
        }

        def report(model: str, scores, seconds: float, epochs: int | None, ctx=ctx, **extra) -> None:
            report_row(ctx, model, scores, seconds, epochs, **extra)

        print("| dataset | model | Recall@10 | NDCG@10 | cold-item Recall@10 | epochs | train s | epochs/s |")
        print("|---|---|---|---|---|---|---|---|")
        pop = popularity_scores(data.train, I)
        report("popularity", lambda b, pop=pop: np.broadcast_to(pop, (b.size, pop.size)), 0.0, None)
        mf = train_mf_bpr(data.train, data.valid, U, I, np.random.default_rng(0), dim=args.dim)
        report(f"MF/BPR d={args.dim}", mf.scores, mf.seconds, mf.epochs, best_epoch=mf.best_epoch)
        if name == "lastfm":
            transe = TransERanker.from_file(transe_file(args.data_dir), catalog)
            report("UNICORN TransE (e_u·e_v)", lambda b, t=transe: t.user_emb[b] @ t.item_emb.T, 0.0, None)
        variants = {
            "full": ("persona x aspect (K=3, P=8)", base),
            "k1": ("ablation K=1 (no personas)", replace(base, personas=1)),
            "uniform": ("ablation no aspect attention (uniform)", replace(base, aspect_mode="uniform")),
            "warmneg": ("persona x aspect, negatives from warm items", replace(base, negative_pool="warm")),
        }
        for key in args.variants:
            label, cfg = variants[key]
            res = pretrain(catalog, cfg)
            if args.save_dir:
                save_artifact(res, Path(args.save_dir) / f"{name}-{key}")
            report(
                label,
                res.ranker(catalog).full_scores,
                res.seconds,
                len(res.history),
                best_epoch=res.best_epoch,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    run_script(main)
