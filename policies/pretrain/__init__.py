"""Persona × aspect pre-training: graph, model, training loop, artifact, ranker, baselines and metrics.

The names below load on first use, so that ``policies.pretrain.config`` imports without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for the type checker (F401: ruff cannot read the computed __all__)
    from policies.pretrain.artifact import load_ranker, load_state_dict, save_artifact  # noqa: F401
    from policies.pretrain.config import ModelConfig, TrainConfig  # noqa: F401
    from policies.pretrain.graph import PretrainData, PretrainGraph, build_graph, pretrain_data  # noqa: F401
    from policies.pretrain.metrics import RankingMetrics, evaluation_users, rank_metrics  # noqa: F401
    from policies.pretrain.model import PersonaModel  # noqa: F401
    from policies.pretrain.ranker import PersonaRanker  # noqa: F401
    from policies.pretrain.train import EpochReport, PretrainResult, pretrain  # noqa: F401

_EXPORTS = {
    "EpochReport": "policies.pretrain.train",
    "ModelConfig": "policies.pretrain.model",
    "PersonaModel": "policies.pretrain.model",
    "PersonaRanker": "policies.pretrain.ranker",
    "PretrainData": "policies.pretrain.graph",
    "PretrainGraph": "policies.pretrain.graph",
    "PretrainResult": "policies.pretrain.train",
    "RankingMetrics": "policies.pretrain.metrics",
    "TrainConfig": "policies.pretrain.config",
    "build_graph": "policies.pretrain.graph",
    "evaluation_users": "policies.pretrain.metrics",
    "load_ranker": "policies.pretrain.artifact",
    "load_state_dict": "policies.pretrain.artifact",
    "pretrain": "policies.pretrain.train",
    "pretrain_data": "policies.pretrain.graph",
    "rank_metrics": "policies.pretrain.metrics",
    "save_artifact": "policies.pretrain.artifact",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'policies.pretrain' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
