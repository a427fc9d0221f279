"""The settings of pre-training: the model's shape (`ModelConfig`) and the training run (`TrainConfig`).

Plain frozen dataclasses that check themselves, importable without torch (CLI defaults read them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from policies.pretrain.graph import HOLDOUT_UNITS
from simulators.catalog import Catalog
from simulators.errors import CRSError

ASPECT_MODES: tuple[str, ...] = ("attention", "uniform", "none")

CONFIG_FILE = "config.json"
"""A pre-training artifact's config (`policies.pretrain.artifact`): JSON, read without torch."""
WEIGHTS_FILE = "weights.pt"
EXPORT_FILE = "ranker.pt"
ARTIFACT_FILES = (CONFIG_FILE, WEIGHTS_FILE, EXPORT_FILE)
"""The files of an artifact folder (`policies.pretrain.artifact.save_artifact` writes them)."""


@dataclass(frozen=True)
class ModelShape:
    """The shape and switches of a `PersonaModel` that do not depend on the catalogue.

    Attributes:
        dim: Embedding dimension d.
        personas: K, personas per user (1 = no personas).
        prototypes: P, shared persona prototypes (>= K when K > 1; the model uses 1 when K = 1).
        layers: Propagation layers (0 = plain embeddings).
        attention_dim: Relation-space dimension of the KGAT attention.
        aspect_mode: "attention", "uniform" or "none".
        shared_persona: Add the shared persona ``c₀`` next to the K personas (see
            `policies.pretrain.model`).

    Raises:
        CRSError: A value out of range (named, with the fix).
    """

    dim: int = 64
    personas: int = 3
    prototypes: int = 8
    layers: int = 2
    attention_dim: int = 16
    aspect_mode: str = "attention"
    shared_persona: bool = True

    def __post_init__(self) -> None:
        if self.aspect_mode not in ASPECT_MODES:
            raise CRSError(f"aspect_mode must be one of {ASPECT_MODES}, got {self.aspect_mode!r}")
        if self.personas < 1 or self.prototypes < 1:
            raise CRSError(f"personas and prototypes must be >= 1, got {self.personas}, {self.prototypes}")
        if self.personas > 1 and self.prototypes < self.personas:
            raise CRSError(
                f"prototypes ({self.prototypes}) must be >= personas per user ({self.personas}); "
                "raise --prototypes or lower --personas"
            )
        if self.dim < 1 or self.layers < 0:
            raise CRSError(f"dim must be >= 1 and layers >= 0, got dim={self.dim}, layers={self.layers}")

    def shape(self) -> dict[str, Any]:
        """The `ModelShape` fields and their values."""
        return {f.name: getattr(self, f.name) for f in fields(ModelShape)}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelShape):
    """A `ModelShape` for one catalogue (what an artifact's config.json records as ``model``).

    Attributes:
        n_users: U.
        n_items: I.
        n_aspects: A.
        shared_persona: As in `ModelShape`, but False by default: artifacts written before it existed.
    """

    n_users: int
    n_items: int
    n_aspects: int
    shared_persona: bool = False

    def parameters(self) -> int:
        """The model's parameters, about: node embeddings (U + I + A) x d, prototypes P x d, the persona
        slots' logits U x K x P, offsets U x K x d and prior U x K."""
        U, K, P, d = self.n_users, self.personas, self.prototypes, self.dim
        return (U + self.n_items + self.n_aspects) * d + P * d + U * K * (P + d + 1)


MAX_PARAMETERS = 500_000_000
"""Pre-training refuses a larger model: with Adam's two moments and the gradients, 8 GB of float32."""

PERSONA_INITS: tuple[str, ...] = ("auto", "kmeans", "mixture", "random")
NEGATIVE_POOLS: tuple[str, ...] = ("all", "warm")


LOSS_WEIGHTS = (
    "l2",
    "offset_l2",
    "entropy_weight",
    "overlap_weight",
    "sharpness_weight",
    "usage_weight",
    "prototype_weight",
)


@dataclass(frozen=True)
class TrainConfig(ModelShape):
    """Hyper-parameters of pre-training: the model's shape (`ModelShape`) and the training run.

    Attributes (besides `ModelShape`'s):
        epochs: Maximum epochs.
        batch_size: Positives per step.
        negatives: Uniform negatives per positive.
        negative_pool: Where negatives are drawn from: "all" items, or only "warm" ones (items with a
            pre-training interaction), so items never seen in training are not pushed down for
            being unseen and only their aspects (through propagation) score them.
        lr: Adam learning rate.
        l2: L2 weight (per example) on touched embeddings.
        offset_l2: L2 weight (per example) on the persona offsets δ of the batch's users; large
            values keep personas close to their prototypes (so persona k means the same taste).
        entropy_weight: λ_ent.
        overlap_weight: λ_overlap.
        sharpness_weight: λ_sharp.
        usage_weight: λ_usage.
        prototype_weight: λ_proto.
        patience: Epochs without a better validation NDCG@10 before stopping.
        max_valid_users: Users sampled for per-epoch validation (None = all).
        holdout_fraction: Share of each user's interactions held out for validation when the
            catalogue has no separate validation split for its pre-training split (Yelp*).
        holdout_unit: What that hold-out is made of: single interactions, or whole target groups of
            the catalogue's MCMIPL release ("group", MCMIPL's Yelp*: `crs train` then keeps every
            held-out group, where single interactions leave few whole pairs; `policies.pretrain.graph`).
        data_init: Start from `initialise_from_data` (else from random weights).
        persona_init: With `data_init`, also start the personas from clusters of the training
            interactions: k-means of their items' spectral coordinates ("kmeans") or the personas of
            an EM-fitted persona mixture over the items' aspects ("mixture",
            `policies.pretrain.mixture`); or leave them random ("random"; only the embeddings start
            spectral). "auto": k-means on the persona world, random on real data (k-means overfits
            there; see BENCHMARKS.md).
        prototype_scale: With "kmeans" or "mixture", a member item's affinity to its cluster's
            prototype at the start.
        seed: Seed of all randomness.
    """

    epochs: int = 40
    batch_size: int = 1024
    negatives: int = 16
    negative_pool: str = "all"
    lr: float = 5e-3
    l2: float = 1e-4
    offset_l2: float = 1e-2
    entropy_weight: float = 0.1
    overlap_weight: float = 1.0
    sharpness_weight: float = 0.1
    usage_weight: float = 1.0
    prototype_weight: float = 0.1
    patience: int = 4
    max_valid_users: int | None = 2000
    holdout_fraction: float = 0.1
    holdout_unit: str = "interaction"
    data_init: bool = True
    persona_init: str = "auto"
    prototype_scale: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise CRSError(f"pre-training setting {name}={value} must be a finite number")
        for name in ("lr", "epochs", "batch_size", "patience"):
            if not getattr(self, name) > 0:
                raise CRSError(f"pre-training setting {name}={getattr(self, name)} must be > 0")
        for name in (*LOSS_WEIGHTS, "negatives", "seed"):
            if getattr(self, name) < 0:
                raise CRSError(f"pre-training setting {name}={getattr(self, name)} must be >= 0")
        if not 0 < self.holdout_fraction < 1:
            raise CRSError(f"holdout_fraction={self.holdout_fraction} must lie strictly between 0 and 1")
        if self.holdout_unit not in HOLDOUT_UNITS:
            raise CRSError(f"holdout_unit must be one of {HOLDOUT_UNITS}, got {self.holdout_unit!r}")
        if self.persona_init not in PERSONA_INITS:
            raise CRSError(f"persona_init must be one of {PERSONA_INITS}, got {self.persona_init!r}")
        if self.negative_pool not in NEGATIVE_POOLS:
            raise CRSError(f"negative_pool must be one of {NEGATIVE_POOLS}, got {self.negative_pool!r}")
        if not self.prototype_scale > 0:
            raise CRSError(f"prototype_scale must be > 0, got {self.prototype_scale}")

    def model_config(self, catalog: Catalog) -> ModelConfig:
        """The model shape for `catalog`.

        Raises:
            CRSError: The model would not fit in memory (more than `MAX_PARAMETERS` parameters).
        """
        shape = {**self.shape(), "prototypes": 1 if self.personas == 1 else self.prototypes}
        config = ModelConfig(
            n_users=catalog.n_users, n_items=catalog.n_items, n_aspects=catalog.n_aspects, **shape
        )
        if config.parameters() > MAX_PARAMETERS:
            raise CRSError(
                f"a model of dim={self.dim}, personas={self.personas} and prototypes={config.prototypes} "
                f"on {catalog.name} has {config.parameters():,} parameters, over the {MAX_PARAMETERS:,} "
                "that fit in memory with the optimiser's state: lower --dim, --personas or --prototypes"
            )
        return config


ARTIFACT_VERSION = 1
"""The layout of a `crs pretrain` artifact (its files and config.json's fields); written into config.json,
and an artifact of another version is refused."""


def read_artifact_config(path: str | Path) -> dict:
    """The config.json of an artifact directory; CRSError if missing, unreadable or of another version."""
    cfg_path = Path(path) / CONFIG_FILE
    if Path(path).is_file():
        raise CRSError(
            f"{path} is a file, not a pre-training artifact: name the folder `crs pretrain --out` wrote "
            f"(it holds {CONFIG_FILE})"
        )
    if not cfg_path.is_file():
        raise CRSError(
            f"{path} is not a pre-training artifact: {CONFIG_FILE} is missing (run `crs pretrain`)"
        )
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise CRSError(f"{cfg_path} is corrupt ({type(exc).__name__}); re-run `crs pretrain`") from None
    if not isinstance(config, dict) or config.get("kind") != "persona_pretrain":
        kind = config.get("kind") if isinstance(config, dict) else None
        raise CRSError(f"{cfg_path} is not a persona pre-training config (kind={kind!r})")
    version = config.get("artifact_version")
    if type(version) is not int or version != ARTIFACT_VERSION:
        raise CRSError(
            f"{cfg_path} records artifact_version {version!r}; this persona-crs reads version "
            f"{ARTIFACT_VERSION}: re-run `crs pretrain` with it"
        )
    model, split = config.get("model"), config.get("split")
    complete = (
        isinstance(model, dict)
        and all(isinstance(model.get(key), int) for key in ("dim", "personas"))
        and "aspect_mode" in model
        and isinstance(split, dict)
        and isinstance(config.get("seed"), int)
    )
    if not complete:
        raise CRSError(
            f"{cfg_path} lacks the model's dim, personas or aspect_mode, the split or the seed; "
            "re-run `crs pretrain`"
        )
    return config


def shape_attentions(model: Mapping[str, Any]) -> tuple[bool, bool]:
    """Which attentions a pre-trained model has, from its recorded shape (an artifact config's ``model``).

    Returns:
        (persona attention: more than one persona per user, aspect attention: attention over an item's
        aspects), the flags of the ablation variant this ranker belongs to.
    """
    return int(model["personas"]) > 1, model["aspect_mode"] == "attention"
