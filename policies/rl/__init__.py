"""The graph RL policy: persona × aspect encoder, Plackett–Luce slates, MaskablePPO training.

Modules: `config` (PPOConfig, RLConfig), `model` (vectorised envs and the MaskablePPO model), `acting`
(a trained policy as a `ConversationPolicy`, loading a run), `callbacks` (checkpoints and evaluation
during training), `run_files` (what a run directory holds), `model_file` (loading model zips safely).

The names below load on first use, so that ``policies.rl.config`` (settings) imports without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for the type checker (F401: ruff cannot read the computed __all__)
    from envs.rollout import evaluate_batched as evaluate_policy  # noqa: F401
    from policies.rl.acting import RLPolicy, load_trained_policy  # noqa: F401
    from policies.rl.config import PPOConfig, RLConfig  # noqa: F401
    from policies.rl.distribution import SlateDistribution  # noqa: F401
    from policies.rl.encoder import PersonaAspectEncoder  # noqa: F401
    from policies.rl.model import build_model, make_vec_env, pretrained_arrays  # noqa: F401
    from policies.rl.policy import SlatePolicy, SplitLatent  # noqa: F401

_EXPORTS = {
    "PersonaAspectEncoder": "policies.rl.encoder",
    "PPOConfig": "policies.rl.config",
    "RLConfig": "policies.rl.config",
    "RLPolicy": "policies.rl.acting",
    "SlateDistribution": "policies.rl.distribution",
    "SlatePolicy": "policies.rl.policy",
    "SplitLatent": "policies.rl.policy",
    "build_model": "policies.rl.model",
    "evaluate_policy": "envs.rollout",
    "load_trained_policy": "policies.rl.acting",
    "make_vec_env": "policies.rl.model",
    "pretrained_arrays": "policies.rl.model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'policies.rl' has no attribute {name!r}")
    source = "evaluate_batched" if name == "evaluate_policy" else name
    return getattr(import_module(_EXPORTS[name]), source)
