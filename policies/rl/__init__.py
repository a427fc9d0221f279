"""The graph RL policy: persona × aspect encoder, Plackett–Luce slates, MaskablePPO training."""

from policies.rl.distribution import SlateDistribution
from policies.rl.encoder import PersonaAspectEncoder
from policies.rl.policy import SlatePolicy, SplitLatent
from policies.rl.training import (
    RLConfig,
    RLPolicy,
    build_model,
    evaluate_policy,
    load_trained_policy,
    make_vec_env,
    pretrained_arrays,
)

__all__ = [
    "PersonaAspectEncoder",
    "RLConfig",
    "RLPolicy",
    "SlateDistribution",
    "SlatePolicy",
    "SplitLatent",
    "build_model",
    "evaluate_policy",
    "load_trained_policy",
    "make_vec_env",
    "pretrained_arrays",
]
