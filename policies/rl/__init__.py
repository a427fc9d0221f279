"""The graph RL policy: persona × aspect encoder, Plackett–Luce slates, MaskablePPO training.

Modules: `config` (RLConfig), `model` (vectorised envs and the MaskablePPO model), `acting` (a trained
policy as a `ConversationPolicy`, loading a run), `callbacks` (checkpoints and evaluation during
training), `run_files` (what a run directory holds), `model_file` (loading model zips safely).
"""

from envs.rollout import evaluate_batched as evaluate_policy
from policies.rl.acting import RLPolicy, load_trained_policy
from policies.rl.config import RLConfig
from policies.rl.distribution import SlateDistribution
from policies.rl.encoder import PersonaAspectEncoder
from policies.rl.model import build_model, make_vec_env, pretrained_arrays
from policies.rl.policy import SlatePolicy, SplitLatent

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
