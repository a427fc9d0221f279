"""Persona × aspect pre-training: graph, model, training loop, artifact, ranker, baselines and metrics.

The names below load on first use, so that ``policies.pretrain.config`` imports without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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
