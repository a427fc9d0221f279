"""The Gymnasium environment of conversational recommendation (numpy only, no torch).

``import envs`` registers the ids ``crs/PersonaWorld-v0``, ``crs/LastFM-v0``, ``crs/LastFMStar-v0``,
``crs/YelpStar-v0``, ``crs/Yelp-v0``, ``crs/LastFMStarMulti-v0``, ``crs/MCMIPLLastFMStar-v0``,
``crs/MCMIPLMovie-v0`` and ``crs/MCMIPLYelpStar-v0`` with Gymnasium (`envs.registry.REGISTERED`).
"""

from envs.actions import ActionKind, InvalidActionError, ask, probe, recommend
from envs.env import ConversationEnv, Rewards, render_dialogue
from envs.metrics import EpisodeRecord, summarize
from envs.ranker import DialogueFacts, ExplainablePersonaRanker, PersonaAwareRanker, PreferenceRanker
from envs.registry import make_env, register_envs
from envs.rollout import ConversationPolicy, evaluation_indices, run_episode
from envs.state import DialogueState, TurnRecord

register_envs()

__all__ = [
    "ActionKind",
    "ConversationEnv",
    "ConversationPolicy",
    "DialogueFacts",
    "DialogueState",
    "EpisodeRecord",
    "ExplainablePersonaRanker",
    "InvalidActionError",
    "PersonaAwareRanker",
    "PreferenceRanker",
    "Rewards",
    "TurnRecord",
    "ask",
    "evaluation_indices",
    "make_env",
    "probe",
    "recommend",
    "register_envs",
    "render_dialogue",
    "run_episode",
    "summarize",
]
