"""`crs pretrain`: learn the persona × aspect embeddings and save the ranker artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from crs.app.settings import MAX_SEED
from crs.claims import FolderClaim, refuse_output_over_inputs
from crs.common import (
    DATA_DIR_HELP,
    DATASET_HELP,
    WorldSeedOption,
    check_world_seed,
    console,
    data_dir_input,
    friendly_errors,
    note_unread_data_dir,
    nothing_written,
    say_when_interrupted,
)
from crs.progress import LoggedProgress
from policies.pretrain.config import ARTIFACT_FILES, CONFIG_FILE, NEGATIVE_POOLS, PERSONA_INITS, TrainConfig
from policies.pretrain.graph import HOLDOUT_UNITS, check_holdout_unit
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec, check_dataset_name, pretrain_overlap
from simulators.errors import CRSError

DEFAULTS = TrainConfig()  # every option's default is the pre-training setting's own


@friendly_errors
def pretrain_command(
    dataset: str = typer.Option("persona_world", "--dataset", "-d", help=DATASET_HELP),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    personas: int = typer.Option(
        DEFAULTS.personas, "--personas", "-k", min=1, help="K personas per user (1 = no personas)."
    ),
    prototypes: int = typer.Option(
        DEFAULTS.prototypes, "--prototypes", min=1, help="P shared persona prototypes (>= K)."
    ),
    dim: int = typer.Option(DEFAULTS.dim, "--dim", min=2, help="Embedding dimension."),
    layers: int = typer.Option(DEFAULTS.layers, "--layers", min=0, max=4, help="KGAT propagation layers."),
    epochs: int = typer.Option(
        DEFAULTS.epochs, "--epochs", min=1, help="Maximum epochs (early stopping may end sooner)."
    ),
    patience: int = typer.Option(
        DEFAULTS.patience, "--patience", min=1, help="Epochs without a better valid NDCG@10."
    ),
    batch_size: int = typer.Option(
        DEFAULTS.batch_size, "--batch-size", min=1, help="Positive interactions per step."
    ),
    seed: int = typer.Option(
        DEFAULTS.seed, "--seed", min=0, max=MAX_SEED, help="Seed of all randomness (same seed, same weights)."
    ),
    world_seed: WorldSeedOption = None,
    out: Path = typer.Option(
        Path("runs/pretrain"),
        "--out",
        "-o",
        help="Artifact directory to write; refused if it holds files, unless --overwrite.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the artifact the directory holds; it is kept until the new one is written (a run "
        "that fails or is interrupted leaves it as it was).",
    ),
    persona_init: str = typer.Option(
        DEFAULTS.persona_init,
        "--persona-init",
        help="Start personas from k-means clusters of the training items (kmeans), from an EM-fitted "
        "persona mixture over the items' aspects (mixture: on the persona world, personas right for 0.90 "
        "of test interactions against 0.74 and a higher NDCG@10; worse ranking on LastFM*), or at random "
        "(random: better ranking on LastFM*/Yelp*, see BENCHMARKS.md); auto: kmeans on the persona world, "
        "random on real data.",
    ),
    no_shared_persona: bool = typer.Option(
        False, "--no-shared-persona", help="Drop the shared persona c0 that every user holds beside the K."
    ),
    no_aspect_attention: bool = typer.Option(
        False, "--no-aspect-attention", help="Ablation: uniform weights over an item's aspects."
    ),
    negatives_from: str = typer.Option(
        DEFAULTS.negative_pool,
        "--negatives-from",
        help='Draw negatives from "all" items or only "warm" ones (seen in training), so that items '
        "absent from training are scored by their aspects instead of being pushed down.",
    ),
    holdout_unit: str = typer.Option(
        DEFAULTS.holdout_unit,
        "--holdout-unit",
        help="Yelp* only (no train split: pre-training holds part of valid out): hold out single "
        '"interaction"s or whole target "group"s of MCMIPL\'s release (mcmipl_yelp_star: `crs train` '
        "then converses about every held-out group, where single interactions leave few whole pairs).",
    ),
) -> None:
    """Pre-train item/aspect/user embeddings with personas and aspect attention; save a ranker.

    The artifact directory holds weights.pt (state dict, loadable with torch.load(weights_only=True)),
    ranker.pt (inference arrays) and config.json (dataset, sizes, K, dim, seed, split used, metrics,
    and the sha256 of the two tensor files: a file replaced or edited afterwards is refused).
    Use it with `crs eval --ranker PATH`.

    An --out folder holding files is refused unless --overwrite, and a folder another crs command is
    writing is always refused.

    Examples:

        crs pretrain --out runs/pw-ranker

        crs pretrain -d lastfm_star --data-dir ../shared/data \\
          --out runs/lfs

        # Yelp*: each step propagates over 1.3 M edges, so few
        # layers and large batches; ~10 minutes
        crs pretrain -d yelp_star --data-dir DATA --layers 1 \\
          --batch-size 8192 --epochs 8 -o runs/yelp

        crs pretrain -d mcmipl_yelp_star --data-dir DATA --layers 1 \\
          --batch-size 8192 --epochs 5 --holdout-unit group \\
          -o runs/pretrain/mcmipl_yelp_star-groups
    """
    check_dataset_name(dataset)
    if negatives_from not in NEGATIVE_POOLS:
        raise CRSError(f"--negatives-from must be one of {', '.join(NEGATIVE_POOLS)}, got {negatives_from!r}")
    if holdout_unit not in HOLDOUT_UNITS:
        raise CRSError(f"--holdout-unit must be one of {', '.join(HOLDOUT_UNITS)}, got {holdout_unit!r}")
    if persona_init not in PERSONA_INITS:
        raise CRSError(f"--persona-init must be one of {', '.join(PERSONA_INITS)}, got {persona_init!r}")
    world_seed = check_world_seed(world_seed, dataset)
    note_unread_data_dir(data_dir, dataset)
    catalog = DatasetSpec(dataset, data_dir, world_seed).load()
    config = TrainConfig(
        dim=dim,
        personas=personas,
        prototypes=prototypes,
        layers=layers,
        aspect_mode="uniform" if no_aspect_attention else "attention",
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        persona_init=persona_init,
        shared_persona=not no_shared_persona,
        negative_pool=negatives_from,
        holdout_unit=holdout_unit,
        seed=seed,
    )
    config.model_config(catalog)  # validates K <= P and the model's size before any work
    check_holdout_unit(catalog, holdout_unit)
    refuse_output_over_inputs(out, [("data folder", data_dir_input(data_dir, dataset))], inside=True)
    with (
        say_when_interrupted(nothing_written("artifact", out, CONFIG_FILE)),
        FolderClaim(
            out,
            "pre-training artifact folder",
            overwrite=overwrite,
            hint="pass --overwrite to replace them, or --out to write elsewhere",
            marks=(CONFIG_FILE,),
            defer=True,
            owns=lambda name: name in ARTIFACT_FILES,
        ) as claim,
    ):
        _pretrain_into(out, catalog, config, claim, world_seed if catalog.truth is not None else None)


def _pretrain_into(
    out: Path, catalog: Catalog, config: TrainConfig, claim: FolderClaim, world_seed: int | None
) -> None:
    """Pre-train on `catalog` with `config`, showing progress; save the artifact into the claimed `out`.

    The artifact is written whole into a staging folder inside `out` first (`FolderClaim.staging_folder`);
    only then is an earlier artifact emptied (`claim.clear`) and the new files moved in, so a write that
    fails (a full disk) leaves the earlier one as it was.
    """
    from policies.pretrain.artifact import save_artifact  # torch and PyG load only when it runs
    from policies.pretrain.metrics import evaluation_users, rank_metrics
    from policies.pretrain.train import pretrain

    epochs, dim, layers = config.epochs, config.dim, config.layers
    console.print(
        f"[bold]pre-training[/] {catalog.name}: {catalog.n_users} users, {catalog.n_items} items, "
        f"{catalog.n_aspects} aspects; on split [bold]{catalog.pretrain_split}[/]"
        + (" [yellow](no train split: pre-training on valid)[/]" if catalog.pretrain_split == "valid" else "")
    )
    overlap = pretrain_overlap(catalog)
    leaked = {name: n for name, n in overlap.items() if n}
    if leaked:
        console.print(
            f"[yellow]warning: the {catalog.pretrain_split} split holds "
            + ", ".join(f"{n:,} {name} pairs" for name, n in leaked.items())
            + ": the model sees those held-out pairs in training, so their figures measure memory, "
            "not generalisation (config.json records it)[/]"
        )
    table = Table(title="validation per epoch", title_justify="left")
    for column in ("epoch", "loss", "Recall@10", "NDCG@10", "s"):
        table.add_column(column, justify="right")
    with LoggedProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        epochs_task = progress.add_task("epochs", total=epochs)
        steps_task: TaskID | None = None  # this epoch's steps
        epoch = 0

        def on_batch(done: int, total: int) -> None:
            nonlocal steps_task, epoch
            if done == 1:  # a new epoch: a task of its own, which a log not on a terminal reports too
                if steps_task is not None:
                    progress.remove_task(steps_task)
                epoch += 1
                steps_task = progress.add_task(f"epoch {epoch} steps", total=total)
            assert steps_task is not None
            progress.update(steps_task, completed=done)

        def on_epoch(report) -> None:
            mark = " *" if report.best else ""
            progress.update(
                epochs_task,
                advance=1,
                description=f"epoch {report.epoch}: valid NDCG@10 {report.valid.ndcg:.4f}{mark}",
            )
            table.add_row(
                str(report.epoch),
                f"{report.loss:.4f}",
                f"{report.valid.recall:.4f}",
                f"{report.valid.ndcg:.4f}" + mark,
                f"{report.seconds:.1f}",
            )

        result = pretrain(catalog, config, on_epoch=on_epoch, on_batch=on_batch)
        test = None
        if "test" in catalog.splits:
            U, I = catalog.n_users, catalog.n_items
            exclude = catalog.split(result.data.train_split).by_user(U, I)
            truth = catalog.split("test").by_user(U, I)
            users = evaluation_users(truth, None, None)
            test_task = progress.add_task("test ranking (users)", total=int(users.size))
            test = rank_metrics(
                result.ranker(catalog).full_scores,
                exclude,
                truth,
                users,
                batch_size=128,
                on_batch=lambda done: progress.update(test_task, completed=done),
            )
    staging = claim.staging_folder()
    try:
        try:
            save_artifact(result, staging, test, overlap, world_seed)
        except OSError as error:  # a full disk, ...: the earlier artifact is untouched
            raise CRSError(
                f"cannot write the artifact into {out} ({error.strerror or error}); nothing there changed"
            ) from None
        claim.move_in(staging, last=CONFIG_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    path = out
    console.print(table)
    summary = Table(title="pre-training summary", title_justify="left", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row(
        "dataset",
        f"{catalog.name} (trained on {result.data.train_split}, validated on {result.data.valid_source})",
    )
    summary.add_row(
        "model",
        f"K={config.personas}, P={result.model_config.prototypes}, dim={dim}, "
        f"layers={layers}, aspects={config.aspect_mode}, shared persona={config.shared_persona}, "
        f"persona init={result.train_config.persona_init}",
    )
    summary.add_row("best epoch", f"{result.best_epoch} of {len(result.history)}")
    summary.add_row("time", f"{result.seconds:.1f} s ({result.epochs_per_second:.3f} epochs/s)")
    if test is not None:
        summary.add_row(
            "test", f"Recall@10 {test.recall:.4f}, NDCG@10 {test.ndcg:.4f} ({test.n_users} users)"
        )
    summary.add_row("artifact", str(path))
    console.print(summary)
