"""Persona × aspect pre-training: graph, model, training loop, artifact, ranker, baselines and metrics."""

from policies.pretrain.artifact import load_ranker, load_state_dict, save_artifact
from policies.pretrain.graph import PretrainData, PretrainGraph, build_graph, pretrain_data
from policies.pretrain.metrics import RankingMetrics, evaluation_users, rank_metrics
from policies.pretrain.model import ModelConfig, PersonaModel
from policies.pretrain.ranker import PersonaRanker
from policies.pretrain.train import EpochReport, PretrainResult, TrainConfig, pretrain

__all__ = [
    "EpochReport",
    "ModelConfig",
    "PersonaModel",
    "PersonaRanker",
    "PretrainData",
    "PretrainGraph",
    "PretrainResult",
    "RankingMetrics",
    "TrainConfig",
    "build_graph",
    "evaluation_users",
    "load_ranker",
    "load_state_dict",
    "pretrain",
    "pretrain_data",
    "rank_metrics",
    "save_artifact",
]
