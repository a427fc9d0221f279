"""The pre-training artifact: a directory holding weights.pt (the model's state dict), ranker.pt (its
exported inference arrays) and config.json (model shape, hyper-parameters, split, catalogue
fingerprint, metrics and history), with the checks that refuse a damaged artifact or one made for
another catalogue.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch

from policies.atomic import write_text_atomic
from policies.pretrain.config import (
    ARTIFACT_VERSION,
    CONFIG_FILE,
    EXPORT_FILE,
    WEIGHTS_FILE,
    ModelConfig,
    read_artifact_config,
)
from policies.pretrain.graph import pretrain_split
from policies.pretrain.metrics import RankingMetrics
from policies.pretrain.ranker import OPTIONAL_KEYS, WEIGHT_KEYS, PersonaRanker
from policies.pretrain.train import PretrainResult, catalog_fingerprint
from policies.weights_only import load_tensors, refusal
from simulators.catalog import Catalog, Interactions
from simulators.errors import CRSError

_LOG = logging.getLogger(__name__)


def save_artifact(
    result: PretrainResult,
    path: str | Path,
    test: RankingMetrics | None = None,
    overlap: Mapping[str, int] | None = None,
    world_seed: int | None = None,
) -> Path:
    """Write the artifact directory: weights.pt (state dict), ranker.pt (inference arrays), config.json.

    Args:
        result: Output of `pretrain`.
        path: Directory to create (or overwrite files in).
        test: Optional test-split metrics to record.
        overlap: Per held-out split, its pairs the pre-training split holds too
            (`simulators.datasets.pretrain_overlap`), recorded as ``split.shared_pairs``.
        world_seed: The persona world's seed (None for real data), recorded to name it when the
            artifact meets another world.

    Returns:
        The directory.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result.state_dict, out / WEIGHTS_FILE)
    torch.save({k: torch.from_numpy(v) for k, v in result.weights.items()}, out / EXPORT_FILE)
    best = next((h for h in result.history if h.epoch == result.best_epoch), None)
    config = {
        "artifact_version": ARTIFACT_VERSION,
        "sha256": {name: _sha256(out / name) for name in (WEIGHTS_FILE, EXPORT_FILE)},
        "kind": "persona_pretrain",
        "dataset": result.catalog_name,
        "world_seed": world_seed,
        "n_users": result.model_config.n_users,
        "n_items": result.model_config.n_items,
        "n_aspects": result.model_config.n_aspects,
        "fingerprint": result.fingerprint,
        "model": asdict(result.model_config),
        "train": asdict(result.train_config),
        "seed": result.train_config.seed,
        "split": {
            "train": result.data.train_split,
            "valid": result.data.valid_source,
            "holdout_fraction": result.data.holdout_fraction,
            "holdout_unit": result.data.holdout_unit,
            "pretrained_on_valid": result.data.train_split == "valid",
            "shared_pairs": None if overlap is None else dict(overlap),
        },
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds": result.seconds,
        "metrics": {
            "valid": None if best is None else asdict(best.valid),
            "test": None if test is None else asdict(test),
        },
        "history": [
            {
                "epoch": h.epoch,
                "loss": h.loss,
                "recall": h.valid.recall,
                "ndcg": h.valid.ndcg,
                "seconds": h.seconds,
            }
            for h in result.history
        ],
    }
    write_text_atomic(out / CONFIG_FILE, json.dumps(config, indent=2))
    return out


def check_artifact_matches(config: dict, catalog: Catalog, path: str | Path) -> None:
    """Refuse an artifact made for another dataset, other sizes, or another catalogue."""
    if config.get("dataset") != catalog.name:
        raise CRSError(
            f"artifact {path} was trained on dataset {config.get('dataset')!r}, not {catalog.name!r}; "
            "pre-train on this dataset or pass the matching --dataset"
        )
    for key, value in (
        ("n_users", catalog.n_users),
        ("n_items", catalog.n_items),
        ("n_aspects", catalog.n_aspects),
    ):
        if config.get(key) != value:
            raise CRSError(
                f"artifact {path} has {key}={config.get(key)}, catalogue {catalog.name!r} has {value}"
            )
    if config.get("fingerprint") != catalog_fingerprint(catalog):
        seed = config.get("world_seed")
        recorded = f"--world-seed {seed}" if isinstance(seed, int) else "the same --world-seed"
        raise CRSError(
            f"artifact {path} was trained on a different {catalog.name!r} catalogue (same sizes, other item "
            "aspects or interactions, e.g. another generator seed): use the catalogue it was trained on "
            f"({recorded}, data folder and dataset), or re-run `crs pretrain` on this one"
        )


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_tensors(file: Path, config: dict) -> dict[str, torch.Tensor]:
    """The tensors of an artifact file, checked against the digest its config.json records (artifacts
    written before digests were recorded have none) and refused unless a dict of finite float tensors.

    Loading goes through torch's weights-only unpickler: a file holding anything else (objects whose
    loading would run code) is refused, and nothing in it is built.
    """
    if not file.exists():
        raise CRSError(f"artifact file {file} is missing; re-run `crs pretrain`")
    if not file.is_file():
        raise CRSError(
            f"artifact file {file} is not a regular file (a folder, or a link to a device); re-run "
            "`crs pretrain`"
        )
    recorded = config.get("sha256", {}).get(file.name) if isinstance(config.get("sha256"), dict) else None
    if recorded is None:
        _LOG.warning(
            "%s records no sha256 of %s (an artifact written before digests were recorded, or its %s was "
            "edited): its tensors are checked for shapes and values only; re-run `crs pretrain` to record it",
            CONFIG_FILE,
            file,
            CONFIG_FILE,
        )
    elif recorded != _sha256(file):
        raise CRSError(
            f"artifact file {file} is not the one its {CONFIG_FILE} describes (its sha256 differs: the file "
            "was replaced or edited); re-run `crs pretrain`"
        )
    try:
        data = load_tensors(str(file))
    except Exception as exc:  # torch raises many types for a damaged file
        refused = refusal(exc)  # a global outside torch's allow-list
        if refused is not None:
            raise CRSError(f"artifact file {file} refused: {refused}. Re-run `crs pretrain`") from None
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CRSError(
            f"artifact file {file} is corrupt ({type(exc).__name__}: {first}); re-run `crs pretrain`"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CRSError(f"artifact file {file} is corrupt: expected a dict of tensors")
    views = [str(key) for key, value in data.items() if not value.is_contiguous()]
    if views:  # e.g. a one-element storage expanded to a huge shape: checking it would fill the memory
        raise CRSError(
            f"artifact file {file}: {', '.join(views[:5])} are views, not plain arrays; re-run `crs pretrain`"
        )
    not_float = [str(key) for key, value in data.items() if not value.is_floating_point()]
    if not_float:
        raise CRSError(
            f"artifact file {file}: {', '.join(not_float[:5])} are not real float tensors; "
            "re-run `crs pretrain`"
        )
    non_finite = [key for key, value in data.items() if not torch.isfinite(value).all()]
    if non_finite:
        raise CRSError(
            f"artifact file {file}: {', '.join(map(str, non_finite[:5]))} hold NaN or inf values; "
            "re-run `crs pretrain`"
        )
    return data


def load_ranker(path: str | Path, catalog: Catalog) -> PersonaRanker:
    """Load a `PersonaRanker` from an artifact directory, checked against `catalog`.

    Raises:
        CRSError: Missing or corrupt files, or an artifact for another dataset / sizes / catalogue.
    """
    config = read_artifact_config(path)
    check_artifact_matches(config, catalog, path)
    tensors = _load_tensors(Path(path) / EXPORT_FILE, config)
    missing = [k for k in WEIGHT_KEYS if k not in tensors]
    if missing:
        raise CRSError(f"artifact {path}: {EXPORT_FILE} lacks {missing}; re-run `crs pretrain`")
    model = config["model"]
    d, K = model["dim"], model["personas"]
    P = tensors["prototypes"].shape[0] if tensors["prototypes"].dim() == 2 else -1
    expected = {
        "user": (catalog.n_users, d),
        "item": (catalog.n_items, d),
        "aspect": (catalog.n_aspects, d),
        "personas": (catalog.n_users, K, d),
        "log_prior": (catalog.n_users, K),
        "prototypes": (model.get("prototypes", P), d),
        "mixtures": (catalog.n_users, K, model.get("prototypes", P)),
    }
    if "shared" in tensors:
        expected["shared"] = (d,)
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise CRSError(f"artifact {path}: {key} has shape {tuple(tensors[key].shape)}, expected {shape}")
    weights = {k: tensors[k].numpy() for k in WEIGHT_KEYS + OPTIONAL_KEYS if k in tensors}
    return PersonaRanker(weights, catalog.item_aspects, model["aspect_mode"])


def pretraining_holdout(config: dict) -> tuple[int, float, str] | None:
    """How an artifact pre-trained on ``valid`` held part of it out: its seed, fraction and unit
    (`policies.pretrain.graph.pretrain_split`'s arguments); None when it pre-trained on ``train``.

    Artifacts written before the unit was recorded held out single interactions.

    Args:
        config: The artifact's config (`read_artifact_config`).
    """
    split = config.get("split", {})
    if not split.get("pretrained_on_valid"):
        return None
    return (
        int(config["seed"]),
        float(split["holdout_fraction"]),
        str(split.get("holdout_unit", "interaction")),
    )


def unseen_valid_interactions(path: str | Path, catalog: Catalog) -> Interactions | None:
    """The ``valid`` interactions an artifact's pre-training never trained on, if it trained on valid.

    Returns None for artifacts pre-trained on ``train`` (LastFM, LastFM*, the persona world): all of
    ``valid`` is unseen. For Yelp* (pre-trained on ``valid``) returns the seeded hold-out, the only
    conversations whose target the ranker was not fitted to.
    """
    config = read_artifact_config(path)
    check_artifact_matches(config, catalog, path)
    holdout = pretraining_holdout(config)
    return None if holdout is None else pretrain_split(catalog, *holdout).valid


def load_state_dict(path: str | Path, catalog: Catalog) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The model config and full state dict of an artifact (to initialise a policy's encoder)."""
    config = read_artifact_config(path)
    check_artifact_matches(config, catalog, path)
    try:
        model = ModelConfig(**config["model"])
    except TypeError as error:  # a key the model has no field for, or one missing
        raise CRSError(
            f"artifact {path}: {CONFIG_FILE}'s model entry is damaged ({error}); re-run `crs pretrain`"
        ) from None
    return model, _load_tensors(Path(path) / WEIGHTS_FILE, config)
